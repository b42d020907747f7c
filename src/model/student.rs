//! The encoder student (RRA-BERT): a cross-encoder over `[CLS] query [SEP] document [SEP]`
//! on ONNX Runtime.
//!
//! Owns the model's [`PairTokenizer`] (query-once, document-per-pair, document-only
//! truncation), its pool of ONNX Runtime sessions (one per inference thread, so `Session::run`'s
//! `&mut self` is never contended), the padded input tensors, and load-time validation:
//! the graph's inputs and output against the manifest, the tokenizer against the graph (its
//! highest token id must be accepted), then a warm-up on every session before the model
//! counts as loaded.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use super::manifest::{self, Manifest, ModelKind};
use super::tokenize::PairTokenizer;
use super::{ModelDescriptor, PreparedPair, PreparedQuery, RankError, Ranker, Truncation};

/// How to run the model's sessions.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub sessions: usize,
    pub intra_threads: usize,
}

pub struct EncoderRanker {
    descriptor: ModelDescriptor,
    manifest: Manifest,
    tokens: PairTokenizer,
    pad_id: i64,
    sessions: Vec<Mutex<Session>>,
}

impl EncoderRanker {
    /// Loads, validates and warms up the model folder `dir`.
    pub fn load(dir: &Path, options: &SessionOptions) -> Result<EncoderRanker> {
        let manifest = Manifest::load(dir)?;
        if manifest.kind != ModelKind::Encoder {
            bail!(
                "{}: manifest kind is {:?}; this loader serves encoder models",
                dir.display(),
                manifest.kind
            );
        }
        let tokens = PairTokenizer::from_file(
            &dir.join(manifest::TOKENIZER_FILE),
            manifest.max_sequence_length,
        )
        .map_err(|e| anyhow!("{}: {e:#}", dir.display()))?;
        let pad_id = manifest
            .pad_token_id
            .or_else(|| {
                ["[PAD]", "<pad>"]
                    .iter()
                    .find_map(|t| tokens.token_to_id(t))
                    .map(i64::from)
            })
            .unwrap_or(0);

        let model_path = dir.join(manifest::MODEL_FILE);
        if !model_path.is_file() {
            bail!("model file {} does not exist", model_path.display());
        }
        let mut sessions = Vec::with_capacity(options.sessions);
        for _ in 0..options.sessions.max(1) {
            let session = open_session(&model_path, options.intra_threads)?;
            sessions.push(Mutex::new(session));
        }
        check_graph(
            &manifest,
            &sessions[0].lock().expect("fresh mutex"),
            &model_path,
        )?;

        let descriptor = ModelDescriptor {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind,
            max_sequence_length: manifest.max_sequence_length,
            score_activation: manifest.score_activation,
            execution_provider: "cpu".into(),
            sessions: sessions.len(),
            intra_threads: options.intra_threads,
        };
        let ranker = EncoderRanker {
            descriptor,
            manifest,
            tokens,
            pad_id,
            sessions,
        };
        ranker.check_tokenizer_fits_graph(dir)?;
        ranker
            .warm_up()
            .with_context(|| format!("warm-up of {} failed", model_path.display()))?;
        Ok(ranker)
    }

    /// Feeds the tokenizer's highest id: a graph whose embedding table is smaller (a tokenizer
    /// from another model) fails here instead of on a client's rare word.
    fn check_tokenizer_fits_graph(&self, dir: &Path) -> Result<()> {
        let vocab = self.tokens.vocab_size();
        let top = (vocab.max(1) - 1) as i64;
        let pair = PreparedPair {
            input_ids: vec![top; 4],
            type_ids: vec![0; 4],
            truncated: false,
        };
        self.score(0, &[&pair]).map_err(|e| {
            anyhow!(
                "{}: the tokenizer has {vocab} tokens but the graph rejects token id {top}: \
                 tokenizer.json does not belong to this model.onnx ({e})",
                dir.display()
            )
        })?;
        Ok(())
    }

    /// Runs every session once at full window length and once short, so the first client
    /// request does not pay for ONNX Runtime's lazy initialisation.
    fn warm_up(&self) -> Result<()> {
        let query = self.prepare_query("warm up the ranking model", usize::MAX)?;
        let long_doc = "warm up ".repeat(self.manifest.max_sequence_length);
        let long = self.prepare_pair(&query, &long_doc, 0, &Truncation::default())?;
        let short = self.prepare_pair(&query, "short document", 1, &Truncation::default())?;
        for session in 0..self.sessions.len() {
            let scores = self.score(session, &[&long, &short])?;
            if scores.iter().any(|s| !s.is_finite()) {
                bail!("the model returned a non-finite score on warm-up: {scores:?}");
            }
        }
        Ok(())
    }
}

fn open_session(model_path: &Path, intra_threads: usize) -> Result<Session> {
    let fail = |e: String| anyhow!("cannot load ONNX model {}: {e}", model_path.display());
    let environment = crate::runtime::environment()?;
    Session::builder(environment)
        .map_err(|e| fail(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(|e| fail(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| fail(e.to_string()))?
        .commit_from_file(model_path)
        .map_err(|e| fail(e.to_string()))
}

/// The graph's inputs must be exactly the manifest's (int64, [batch, sequence]) and its score
/// output must exist and be float32 with one score per row.
fn check_graph(manifest: &Manifest, session: &Session, model_path: &Path) -> Result<()> {
    let graph_inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let mut expected = vec![&manifest.inputs.input_ids, &manifest.inputs.attention_mask];
    expected.extend(manifest.inputs.token_type_ids.as_ref());
    for name in &expected {
        let Some(outlet) = session.inputs().iter().find(|o| o.name() == name.as_str()) else {
            bail!(
                "{}: the manifest names input `{name}` but the graph's inputs are {graph_inputs:?}",
                model_path.display()
            );
        };
        match outlet.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Int64,
                shape,
                ..
            } if shape.len() == 2 => {}
            other => bail!(
                "{}: graph input `{name}` is {other}; expected int64 [batch, sequence]",
                model_path.display()
            ),
        }
    }
    for name in &graph_inputs {
        if !expected.iter().any(|e| e.as_str() == *name) {
            bail!(
                "{}: the graph has input `{name}`, which the manifest does not map \
                 (manifest inputs: {expected:?})",
                model_path.display()
            );
        }
    }
    let graph_outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let Some(output) = session
        .outputs()
        .iter()
        .find(|o| o.name() == manifest.output)
    else {
        bail!(
            "{}: the manifest names output `{}` but the graph's outputs are {graph_outputs:?}",
            model_path.display(),
            manifest.output
        );
    };
    match output.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } if shape.len() == 1 || (shape.len() == 2 && (shape[1] == 1 || shape[1] == -1)) => {}
        other => bail!(
            "{}: graph output `{}` is {other}; expected float32 [batch] or [batch, 1]",
            model_path.display(),
            manifest.output
        ),
    }
    Ok(())
}

impl Ranker for EncoderRanker {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    fn prepare_query(
        &self,
        query: &str,
        max_query_tokens: usize,
    ) -> Result<PreparedQuery, RankError> {
        self.tokens.prepare_query(query, max_query_tokens)
    }

    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError> {
        self.tokens.prepare_pair(query, document, index, truncation)
    }

    fn sessions(&self) -> usize {
        self.sessions.len()
    }

    fn score(&self, session: usize, batch: &[&PreparedPair]) -> Result<Vec<f32>, RankError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows = batch.len();
        let width = batch.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; rows * width];
        let mut mask = vec![0i64; rows * width];
        let mut types = vec![0i64; rows * width];
        for (row, pair) in batch.iter().enumerate() {
            let start = row * width;
            ids[start..start + pair.len()].copy_from_slice(&pair.input_ids);
            types[start..start + pair.len()].copy_from_slice(&pair.type_ids);
            mask[start..start + pair.len()].fill(1);
        }
        let tensor = |data: Vec<i64>| {
            Tensor::from_array((vec![rows as i64, width as i64], data))
                .map_err(|e| RankError::Inference(format!("cannot build input tensor: {e}")))
        };
        let names = &self.manifest.inputs;
        let mut inputs = vec![
            (names.input_ids.clone(), tensor(ids)?.into_dyn()),
            (names.attention_mask.clone(), tensor(mask)?.into_dyn()),
        ];
        if let Some(name) = &names.token_type_ids {
            inputs.push((name.clone(), tensor(types)?.into_dyn()));
        }

        let slot = self
            .sessions
            .get(session)
            .ok_or_else(|| RankError::Inference(format!("no session {session}")))?;
        // A panic while a session ran poisons its mutex; the session itself is still sound.
        let mut session = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session
            .run(inputs)
            .map_err(|e| RankError::Inference(e.to_string()))?;
        let value = outputs.get(&self.manifest.output).ok_or_else(|| {
            RankError::Inference(format!("the graph returned no `{}`", self.manifest.output))
        })?;
        let (shape, scores) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| RankError::Inference(e.to_string()))?;
        let per_row = scores.len().checked_div(rows).unwrap_or(0);
        if shape.first().copied() != Some(rows as i64) || per_row != 1 {
            return Err(RankError::Inference(format!(
                "the graph returned shape {shape:?} for a batch of {rows}; expected [{rows}] or [{rows}, 1]"
            )));
        }
        Ok(scores.to_vec())
    }
}
