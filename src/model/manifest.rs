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
//! graphs that have no segment input. `pad_token_id` is optional (default: the tokenizer's
//! `[PAD]`/`<pad>` token, else 0).

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
        Ok(())
    }
}
