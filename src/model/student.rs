//! A student on ONNX Runtime: the encoder (RRA-BERT, a cross-encoder over
//! `[CLS] query [SEP] document [SEP]`) or the decoder (RRA-GPT, a prompt scored by a ranking
//! layer on its last token, one forward pass, no generation). The manifest's `kind` decides.
//!
//! Owns the model's tokenization ([`PairTokenizer`] or [`PromptTokenizer`]: query-once,
//! document-per-pair, document-only truncation) and load-time validation: the graph against
//! the manifest ([`Graph`]), the tokenizer against the graph (its highest token id must be
//! accepted), then a warm-up on every session before the model counts as loaded.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::graph::{Graph, SessionOptions};
use super::manifest::{self, Manifest, ModelKind, PaddingSide};
use super::tokenize::{PairEncoder, PairTokenizer, PromptTokenizer};
use super::{ModelDescriptor, PreparedPair, PreparedQuery, RankError, Ranker, Truncation};

pub struct StudentRanker {
    descriptor: ModelDescriptor,
    manifest: Manifest,
    tokens: Box<dyn PairEncoder>,
    graph: Graph,
}

impl StudentRanker {
    /// Loads, validates and warms up the model folder `dir` (either kind).
    pub fn load(dir: &Path, options: &SessionOptions) -> Result<StudentRanker> {
        let manifest = Manifest::load(dir)?;
        let tokenizer_path = dir.join(manifest::TOKENIZER_FILE);
        let window = manifest.max_sequence_length;
        let (tokens, padding): (Box<dyn PairEncoder>, PaddingSide) = match &manifest.prompt {
            None => (
                Box::new(
                    PairTokenizer::from_file(&tokenizer_path, window)
                        .map_err(|e| anyhow!("{}: {e:#}", dir.display()))?,
                ),
                PaddingSide::Right,
            ),
            Some(prompt) => (
                Box::new(
                    PromptTokenizer::from_file(&tokenizer_path, prompt, window)
                        .map_err(|e| anyhow!("{}: {e:#}", dir.display()))?,
                ),
                prompt.padding_side,
            ),
        };
        debug_assert_eq!(
            manifest.prompt.is_some(),
            manifest.kind == ModelKind::Decoder
        );
        let pad_id = manifest
            .pad_token_id
            .or_else(|| {
                ["[PAD]", "<pad>", "<|endoftext|>"]
                    .iter()
                    .find_map(|t| tokens.token_to_id(t))
                    .map(i64::from)
            })
            .unwrap_or(0);

        let model_path = dir.join(manifest::MODEL_FILE);
        let graph = Graph::open(&model_path, &manifest, pad_id, padding, options)?;
        let descriptor = ModelDescriptor::new(dir, &manifest, &graph, options)?;
        let ranker = StudentRanker {
            descriptor,
            manifest,
            tokens,
            graph,
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
        for session in 0..self.graph.sessions() {
            let scores = self.score(session, &[&long, &short])?;
            if scores.iter().any(|s| !s.is_finite()) {
                bail!("the model returned a non-finite score on warm-up: {scores:?}");
            }
        }
        Ok(())
    }
}

impl Ranker for StudentRanker {
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
        self.graph.sessions()
    }

    fn score(&self, session: usize, batch: &[&PreparedPair]) -> Result<Vec<f32>, RankError> {
        self.graph.run(session, batch)
    }
}
