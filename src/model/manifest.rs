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
}

impl InputNames {
    /// Every graph input the manifest maps.
    pub fn all(&self) -> Vec<&str> {
        let mut names = vec![self.input_ids.as_str(), self.attention_mask.as_str()];
        names.extend(self.token_type_ids.as_deref());
        names.extend(self.position_ids.as_deref());
        names
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
            (ModelKind::Encoder, None) => {}
        }
        Ok(())
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
}
