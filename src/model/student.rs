//! A student on ONNX Runtime: the encoder (RRA-BERT, a cross-encoder over
//! `[CLS] query [SEP] document [SEP]`), the decoder (RRA-GPT, a prompt scored by a ranking
//! layer on its last token, one forward pass, no generation) or the late model (RRA-BERT-m:
//! query and document each through the encoder alone, then an interaction layer). The
//! manifest's `kind` decides.
//!
//! Owns the model's tokenization ([`PairTokenizer`], [`PromptTokenizer`] or
//! [`TowerTokenizer`]: query-once, document-per-pair, document-only truncation) and load-time
//! validation: the manifest, the graph against the manifest ([`Graph`]), the tokenizer against
//! the graph (its highest token id must be accepted, in the query tower too), then a warm-up
//! on every session before the model counts as loaded.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::graph::{Graph, SessionOptions};
use super::manifest::{self, Manifest, ModelKind, PaddingSide};
use super::tokenize::{PairEncoder, PairTokenizer, PromptTokenizer, TowerTokenizer};
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
        let in_dir = |e: anyhow::Error| anyhow!("{}: {e:#}", dir.display());
        // Manifest::load has checked that each kind has what it needs (prompt, towers).
        let (tokens, padding): (Box<dyn PairEncoder>, PaddingSide) =
            match (manifest.kind, &manifest.prompt, manifest.towers()) {
                (ModelKind::Decoder, Some(prompt), _) => (
                    Box::new(
                        PromptTokenizer::from_file(&tokenizer_path, prompt, window)
                            .map_err(in_dir)?,
                    ),
                    prompt.padding_side,
                ),
                (ModelKind::Late, _, Some(towers)) => (
                    Box::new(
                        TowerTokenizer::from_file(&tokenizer_path, &towers, window)
                            .map_err(in_dir)?,
                    ),
                    PaddingSide::Right,
                ),
                _ => (
                    Box::new(PairTokenizer::from_file(&tokenizer_path, window).map_err(in_dir)?),
                    PaddingSide::Right,
                ),
            };
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
            // A late model's query tower reads the same table.
            query_ids: (self.manifest.kind == ModelKind::Late).then(|| Arc::from(vec![top; 4])),
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
        // Two queries, so a late model also runs its multi-query path (and others a third pair).
        let other = self.prepare_query("a second query", usize::MAX)?;
        let third = self.prepare_pair(&other, "short document", 2, &Truncation::default())?;
        for session in 0..self.graph.sessions() {
            let scores = self.score(session, &[&long, &short, &third])?;
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

    fn prepare_chunks(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<Vec<PreparedPair>, RankError> {
        self.tokens
            .prepare_chunks(query, document, index, truncation)
    }

    fn sessions(&self) -> usize {
        self.graph.sessions()
    }

    fn score(&self, session: usize, batch: &[&PreparedPair]) -> Result<Vec<f32>, RankError> {
        self.graph.run(session, batch)
    }
}
