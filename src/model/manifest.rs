//! The model folder's manifest (`manifest.json`): what the service must know about a graph
//! that the graph itself does not say, and what it checks the graph against at load.
//!
//! ```json
//! {"name": "rra-bert-mini", "version": "1", "kind": "encoder",
//!  "max_sequence_length": 256,
//!  "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
//!             "token_type_ids": "token_type_ids"},
//!  "output": "logits", "score_activation": "sigmoid"}
//! ```
//! `inputs` maps each role to the graph's input name; `token_type_ids` may be left out for
//! graphs that have no segment input, and `position_ids` is given only to graphs that take
//! positions (left-padded decoders). `pad_token_id` is optional (default: the tokenizer's
//! `[PAD]`/`<pad>` token, else 0).
//!
//! A decoder (`"kind": "decoder"`) also has a `prompt`:
//! ```json
//! "prompt": {"template": "Query: {query}\nDocument: {document}\nRelevant:",
//!            "padding_side": "right", "bos_token_id": null}
//! ```
//! The template holds `{query}` once, then `{document}` once. Its three literal pieces, the
//! query and the document are tokenized separately (no special tokens added) and their ids
//! concatenated after the optional BOS; only the document is cut to fit the window. The graph
//! reads its score at the last non-padding token, so it must be told (or compute) where that
//! is: right padding needs nothing more, left padding needs `position_ids`.
//!
//! A late-interaction model (`"kind": "late"`, RRA-BERT-m) reads the query and each document
//! apart, each in its own window, and has its own inputs:
//! ```json
//! {"kind": "late", "max_sequence_length": 256, "max_query_length": 160,
//!  "query_prefix": "query:", "document_prefix": "passage:",
//!  "inputs": {"query_ids": "query_ids", "query_mask": "query_mask", "input_ids": "input_ids",
//!             "attention_mask": "attention_mask", "query_index": "query_index"},
//!  "output": "scores", "pad_token_id": 1}
//! ```
//! `max_sequence_length` is a document's window and `max_query_length` the query's, each with
//! its prefix and the tokenizer's special tokens; the prefixes are text (`""` for none). The
//! graph computes its own positions, so `token_type_ids` and `position_ids` are not mapped.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MODEL_FILE: &str = "model.onnx";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A cross-encoder: `[CLS] query [SEP] document [SEP]`, one score per pair.
    Encoder,
    /// A decoder with a ranking layer on the last token of a prompt.
    Decoder,
    /// Late interaction: query and document read apart by one encoder (`<s> query: q </s>`,
    /// `<s> passage: d </s>`), then joined by an interaction layer; one score per pair, each
    /// distinct query of a batch encoded once.
    Late,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScoreActivation {
    /// Scores in 0..1: the logistic function of the logit.
    Sigmoid,
    /// The logit as it is.
    None,
}

impl ScoreActivation {
    pub fn apply(self, logit: f32) -> f32 {
        match self {
            ScoreActivation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
            ScoreActivation::None => logit,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNames {
    pub input_ids: String,
    pub attention_mask: String,
    #[serde(default)]
    pub token_type_ids: Option<String>,
    #[serde(default)]
    pub position_ids: Option<String>,
    /// Late models: the distinct queries of a batch, int64 `[queries, query_length]`.
    #[serde(default)]
    pub query_ids: Option<String>,
    /// Late models: their mask, int64 `[queries, query_length]`.
    #[serde(default)]
    pub query_mask: Option<String>,
    /// Late models: each pair's row in `query_ids`, int64 `[pairs]`.
    #[serde(default)]
    pub query_index: Option<String>,
}

impl InputNames {
    /// Every graph input the manifest maps.
    pub fn all(&self) -> Vec<&str> {
        let mut names = vec![self.input_ids.as_str(), self.attention_mask.as_str()];
        names.extend(self.token_type_ids.as_deref());
        names.extend(self.position_ids.as_deref());
        names.extend(self.query_ids.as_deref());
        names.extend(self.query_mask.as_deref());
        names.extend(self.query_index.as_deref());
        names
    }

    /// The roles only a late model maps, with the graph input each names (if any).
    fn tower_roles(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("query_ids", self.query_ids.as_deref()),
            ("query_mask", self.query_mask.as_deref()),
            ("query_index", self.query_index.as_deref()),
        ]
    }
}

/// Which end of a batch row the padding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    #[default]
    Right,
    Left,
}

/// How a decoder turns a (query, document) pair into one prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub template: String,
    #[serde(default)]
    pub padding_side: PaddingSide,
    #[serde(default)]
    pub bos_token_id: Option<i64>,
}

/// How a late model reads its query and documents apart (from the manifest's top level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TowerSpec {
    /// The query's window, its prefix and special tokens included (`max_query_length`).
    pub query_window: usize,
    /// Text put before the query (`query_prefix`, e5's `query:`), tokenized alone.
    pub query_prefix: String,
    /// Text put before every document (`document_prefix`, e5's `passage:`), tokenized alone.
    pub document_prefix: String,
}

/// The template cut at its two slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPieces {
    pub prefix: String,
    pub middle: String,
    pub suffix: String,
}

impl PromptSpec {
    pub const QUERY_SLOT: &'static str = "{query}";
    pub const DOCUMENT_SLOT: &'static str = "{document}";

    /// Splits the template into the text before `{query}`, between the slots, and after
    /// `{document}`.
    pub fn pieces(&self) -> Result<PromptPieces> {
        let t = &self.template;
        let count = |slot: &str| t.matches(slot).count();
        if count(Self::QUERY_SLOT) != 1 || count(Self::DOCUMENT_SLOT) != 1 {
            bail!(
                "`prompt.template` must hold `{{query}}` exactly once and `{{document}}` exactly \
                 once; it holds them {} and {} times",
                count(Self::QUERY_SLOT),
                count(Self::DOCUMENT_SLOT)
            );
        }
        let (prefix, rest) = t.split_once(Self::QUERY_SLOT).expect("counted");
        let Some((middle, suffix)) = rest.split_once(Self::DOCUMENT_SLOT) else {
            bail!("`prompt.template` must put `{{query}}` before `{{document}}`");
        };
        Ok(PromptPieces {
            prefix: prefix.to_string(),
            middle: middle.to_string(),
            suffix: suffix.to_string(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    pub max_sequence_length: usize,
    pub inputs: InputNames,
    pub output: String,
    pub score_activation: ScoreActivation,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// The prompt of a decoder model (required for `kind = decoder`).
    #[serde(default)]
    pub prompt: Option<PromptSpec>,
    /// A late model's query window, prefix and special tokens included (required for
    /// `kind = late`).
    #[serde(default)]
    pub max_query_length: Option<usize>,
    /// Text before the query in a late model's query tower (required for `kind = late`;
    /// `""` for none).
    #[serde(default)]
    pub query_prefix: Option<String>,
    /// Text before each document in a late model's document tower (required for
    /// `kind = late`; `""` for none).
    #[serde(default)]
    pub document_prefix: Option<String>,
    /// Anything else the toolkit recorded (description, training data, metrics, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the model manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        manifest
            .check()
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        Ok(manifest)
    }

    fn check(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            bail!("`name` is empty");
        }
        if self.version.trim().is_empty() {
            bail!("`version` is empty");
        }
        if !(8..=65_536).contains(&self.max_sequence_length) {
            bail!(
                "`max_sequence_length` is {}; it must be between 8 and 65536",
                self.max_sequence_length
            );
        }
        match (self.kind, &self.prompt) {
            (ModelKind::Decoder, None) => {
                bail!("a decoder model needs a `prompt` (template, padding_side)")
            }
            (ModelKind::Decoder, Some(prompt)) => {
                prompt.pieces()?;
                if prompt.padding_side == PaddingSide::Left && self.inputs.position_ids.is_none() {
                    bail!(
                        "`prompt.padding_side` is left but `inputs.position_ids` is not mapped: \
                         a left-padded decoder needs positions to score correctly"
                    );
                }
            }
            (ModelKind::Encoder, Some(_)) => bail!("an encoder model takes no `prompt`"),
            (ModelKind::Late, Some(_)) => bail!("a late model takes no `prompt`"),
            (ModelKind::Encoder | ModelKind::Late, None) => {}
        }
        if self.kind == ModelKind::Late {
            self.check_late()
        } else {
            self.check_not_late()
        }
    }

    /// A late model's query window, prefixes and tower inputs are all there, and it maps no
    /// input its graph computes itself.
    fn check_late(&self) -> Result<()> {
        let Some(query_window) = self.max_query_length else {
            bail!(
                "a late model needs `max_query_length`: the query's window in tokens, its prefix \
                 and special tokens included (e.g. 160)"
            );
        };
        if !(4..=65_536).contains(&query_window) {
            bail!("`max_query_length` is {query_window}; it must be between 4 and 65536");
        }
        for (field, value) in [
            ("query_prefix", &self.query_prefix),
            ("document_prefix", &self.document_prefix),
        ] {
            if value.is_none() {
                bail!(
                    "a late model needs `{field}`: the text its tower reads before the {} \
                     (e5: `query:` and `passage:`), or \"\" for none",
                    if field == "query_prefix" {
                        "query"
                    } else {
                        "document"
                    }
                );
            }
        }
        for (role, name) in self.inputs.tower_roles() {
            if name.is_none() {
                bail!(
                    "a late model needs `inputs.{role}`: its graph takes query_ids and query_mask \
                     [queries, query_length] and query_index [pairs] besides input_ids and \
                     attention_mask"
                );
            }
        }
        for (role, name) in [
            ("token_type_ids", &self.inputs.token_type_ids),
            ("position_ids", &self.inputs.position_ids),
        ] {
            if name.is_some() {
                bail!(
                    "a late model's graph computes its own segments and positions: remove \
                     `inputs.{role}` (the service feeds only query_ids, query_mask, input_ids, \
                     attention_mask and query_index)"
                );
            }
        }
        Ok(())
    }

    /// The fields of a late model are not silently ignored on another kind.
    fn check_not_late(&self) -> Result<()> {
        for (field, set) in [
            ("max_query_length", self.max_query_length.is_some()),
            ("query_prefix", self.query_prefix.is_some()),
            ("document_prefix", self.document_prefix.is_some()),
        ] {
            if set {
                bail!(
                    "`{field}` is for late models (`\"kind\": \"late\"`); a {} reads the query \
                     and the document in one window: remove it",
                    kind_name(self.kind)
                );
            }
        }
        for (role, name) in self.inputs.tower_roles() {
            if name.is_some() {
                bail!(
                    "`inputs.{role}` is for late models (`\"kind\": \"late\"`); a {} takes no \
                     separate query: remove it",
                    kind_name(self.kind)
                );
            }
        }
        Ok(())
    }

    /// How a late model reads its query and documents (None for the other kinds).
    pub fn towers(&self) -> Option<TowerSpec> {
        (self.kind == ModelKind::Late).then(|| TowerSpec {
            query_window: self.max_query_length.unwrap_or(self.max_sequence_length),
            query_prefix: self.query_prefix.clone().unwrap_or_default(),
            document_prefix: self.document_prefix.clone().unwrap_or_default(),
        })
    }
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Encoder => "cross-encoder",
        ModelKind::Decoder => "decoder",
        ModelKind::Late => "late model",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(kind: &str, prompt: serde_json::Value, position_ids: bool) -> Result<Manifest> {
        let mut inputs =
            serde_json::json!({"input_ids": "input_ids", "attention_mask": "attention_mask"});
        if position_ids {
            inputs["position_ids"] = "position_ids".into();
        }
        let mut value = serde_json::json!({"name": "m", "version": "1", "kind": kind,
            "max_sequence_length": 64, "inputs": inputs, "output": "scores",
            "score_activation": "sigmoid"});
        if !prompt.is_null() {
            value["prompt"] = prompt;
        }
        let manifest: Manifest = serde_json::from_value(value)?;
        manifest.check()?;
        Ok(manifest)
    }

    #[test]
    fn a_decoder_prompt_is_cut_at_its_slots() {
        let m = manifest(
            "decoder",
            serde_json::json!({"template": "Q: {query}\nD: {document}\nRelevant:"}),
            false,
        )
        .unwrap();
        let pieces = m.prompt.unwrap().pieces().unwrap();
        assert_eq!(
            pieces,
            PromptPieces {
                prefix: "Q: ".into(),
                middle: "\nD: ".into(),
                suffix: "\nRelevant:".into()
            }
        );
    }

    #[test]
    fn bad_prompts_are_refused_with_the_reason() {
        let cases = [
            (
                "decoder",
                serde_json::Value::Null,
                false,
                "needs a `prompt`",
            ),
            (
                "encoder",
                serde_json::json!({"template": "{query} {document}"}),
                false,
                "takes no `prompt`",
            ),
            (
                "decoder",
                serde_json::json!({"template": "{document} only"}),
                false,
                "exactly once",
            ),
            (
                "decoder",
                serde_json::json!({"template": "{query} {query} {document}"}),
                false,
                "2 and 1 times",
            ),
            (
                "decoder",
                serde_json::json!({"template": "{document} then {query}"}),
                false,
                "before `{document}`",
            ),
            (
                "decoder",
                serde_json::json!({"template": "{query} {document}", "padding_side": "left"}),
                false,
                "needs positions",
            ),
        ];
        for (kind, prompt, positions, expected) in cases {
            let error = format!(
                "{:#}",
                manifest(kind, prompt.clone(), positions).unwrap_err()
            );
            assert!(error.contains(expected), "{kind} {prompt}: {error}");
        }
        // Left padding with positions mapped is fine.
        manifest(
            "decoder",
            serde_json::json!({"template": "{query} {document}", "padding_side": "left"}),
            true,
        )
        .unwrap();
    }

    fn late(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Manifest> {
        let mut value = serde_json::json!({"name": "m", "version": "1", "kind": "late",
            "max_sequence_length": 256, "max_query_length": 160,
            "query_prefix": "query:", "document_prefix": "passage:",
            "inputs": {"query_ids": "query_ids", "query_mask": "query_mask",
                       "input_ids": "input_ids", "attention_mask": "attention_mask",
                       "query_index": "query_index"},
            "output": "scores", "score_activation": "sigmoid", "pad_token_id": 1});
        edit(&mut value);
        let manifest: Manifest = serde_json::from_value(value)?;
        manifest.check()?;
        Ok(manifest)
    }

    #[test]
    fn a_late_manifest_gives_its_towers() {
        let m = late(|_| {}).unwrap();
        assert_eq!(
            m.towers(),
            Some(TowerSpec {
                query_window: 160,
                query_prefix: "query:".into(),
                document_prefix: "passage:".into()
            })
        );
        assert_eq!(m.inputs.all().len(), 5);
        // No prefix at all is said with "".
        let m = late(|v| v["query_prefix"] = "".into()).unwrap();
        assert_eq!(m.towers().unwrap().query_prefix, "");
        assert_eq!(
            manifest("encoder", serde_json::Value::Null, false)
                .unwrap()
                .towers(),
            None
        );
    }

    #[test]
    fn bad_late_manifests_are_refused_with_what_to_fix() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(Edit, &str); 9] = [
            (
                |v| drop(v.as_object_mut().unwrap().remove("max_query_length")),
                "needs `max_query_length`",
            ),
            (|v| v["max_query_length"] = 2.into(), "between 4 and 65536"),
            (
                |v| drop(v.as_object_mut().unwrap().remove("document_prefix")),
                "needs `document_prefix`",
            ),
            (
                |v| drop(v["inputs"].as_object_mut().unwrap().remove("query_index")),
                "needs `inputs.query_index`",
            ),
            (
                |v| drop(v["inputs"].as_object_mut().unwrap().remove("query_mask")),
                "needs `inputs.query_mask`",
            ),
            (
                |v| v["inputs"]["token_type_ids"] = "token_type_ids".into(),
                "remove `inputs.token_type_ids`",
            ),
            (
                |v| v["inputs"]["position_ids"] = "position_ids".into(),
                "remove `inputs.position_ids`",
            ),
            (
                |v| v["prompt"] = serde_json::json!({"template": "{query} {document}"}),
                "takes no `prompt`",
            ),
            (
                |v| v["kind"] = "encoder".into(),
                "`max_query_length` is for late models",
            ),
        ];
        for (edit, expected) in cases {
            let error = format!("{:#}", late(edit).unwrap_err());
            assert!(error.contains(expected), "expected {expected:?} in {error}");
        }
        // An encoder or decoder that maps a query tower input is refused too.
        let mut value = serde_json::json!({"name": "m", "version": "1", "kind": "encoder",
            "max_sequence_length": 64, "output": "logits", "score_activation": "sigmoid",
            "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                       "query_ids": "query_ids"}});
        let manifest: Manifest = serde_json::from_value(value.take()).unwrap();
        let error = format!("{:#}", manifest.check().unwrap_err());
        assert!(
            error.contains("`inputs.query_ids` is for late models"),
            "{error}"
        );
    }
}
