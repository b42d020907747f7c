//! Models: what a served student is, and how it turns (query, document) pairs into scores.
//!
//! A model is a folder (`model.onnx`, `tokenizer.json`, `manifest.json`; see [`manifest`]).
//! The [`Ranker`] trait is the one seam between the serving core and a model family: it
//! prepares pairs (tokenization and truncation, the model's own business) and scores a batch
//! of prepared pairs on one of its sessions. The three students, the encoder (RRA-BERT, a
//! cross-encoder), the decoder (RRA-GPT, a prompt and a ranking layer) and the late model
//! (RRA-BERT-m: query and document read apart, then joined), are
//! [`student::StudentRanker`]: [`tokenize`] builds their inputs, [`graph`] runs them on an
//! execution provider ([`towers`] lays out a late model's batch: each distinct query once).
//! Which models a process serves, and how requests reach them, is the business of the layer
//! above ([`crate::serving`]); nothing here knows about queues.

pub mod graph;
pub mod manifest;
pub mod placement;
pub mod student;
pub mod tokenize;
pub mod towers;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

pub use manifest::{Manifest, ModelKind, ScoreActivation};

/// Which end of an over-long document is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TruncationSide {
    /// Keep the beginning (cut the end).
    #[default]
    Right,
    /// Keep the end (cut the beginning).
    Left,
}

/// How a request wants documents that do not fit the model's window handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Truncation {
    /// Cut documents that do not fit; when false, such a document is an error.
    pub enabled: bool,
    pub side: TruncationSide,
    /// A lower cut than the window leaves, in document tokens (`max_tokens_per_doc`): what
    /// all of a document's chunks read together.
    pub max_document_tokens: Option<usize>,
    /// The most windows (chunks) a document that does not fit one is read in; its score is
    /// its best chunk's. 1: cut to one window. Only when `enabled`: a document refused for
    /// its length is refused at one window.
    pub max_chunks: usize,
}

impl Truncation {
    /// The most chunks a document is read in: `max_chunks` when over-long documents are cut,
    /// else one (they are refused at one window).
    pub fn chunks(&self) -> usize {
        if self.enabled {
            self.max_chunks.max(1)
        } else {
            1
        }
    }
}

impl Default for Truncation {
    fn default() -> Self {
        Truncation {
            enabled: true,
            side: TruncationSide::Right,
            max_document_tokens: None,
            max_chunks: 1,
        }
    }
}

/// A query tokenized once per request, reused for every document of the request.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    pub(crate) encoding: tokenizers::Encoding,
    /// For a late model: the query as its tower reads it (`<s> query: q </s>`), built once
    /// and shared by every pair of the request.
    pub(crate) tower: Option<Arc<[i64]>>,
}

impl PreparedQuery {
    /// The query's own tokens (no prefix, no special tokens): what the query limit counts.
    pub fn tokens(&self) -> usize {
        self.encoding.len()
    }
}

/// One (query, document) pair as model input, unpadded. Encoders and decoders read the pair
/// in one sequence (`input_ids`, with segment ids for encoders); a late model reads the
/// query apart: `input_ids` is then the document alone and `query_ids` its query.
#[derive(Debug, Clone)]
pub struct PreparedPair {
    pub input_ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// A late model's query (`<s> prefix query </s>`), one allocation shared by the pairs
    /// of a request; None when `input_ids` holds the whole pair.
    pub query_ids: Option<Arc<[i64]>>,
    /// Whether the document was cut to fit.
    pub truncated: bool,
}

impl PreparedPair {
    /// The pair's tokens: what it costs in a batch and in admission, and what `input_tokens`
    /// reports. For a late model, the document's and its query's (the query's tower runs
    /// once per distinct query in a batch, so this over-counts a batch that shares queries:
    /// a conservative budget, the same rule as for encoders, which read the query per pair).
    pub fn len(&self) -> usize {
        self.input_ids.len() + self.query_ids.as_ref().map_or(0, |q| q.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a model could not prepare or score something. The messages are meant for the client
/// (input problems) or the operator (inference problems) as they stand.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RankError {
    #[error(
        "query is {tokens} tokens long; the most this model accepts is {limit}: shorten the query"
    )]
    QueryTooLong { tokens: usize, limit: usize },
    #[error(
        "document {index} is {tokens} tokens long {counted}, over the model's window of {window}: \
         shorten it or allow truncation"
    )]
    DocumentTooLong {
        index: usize,
        tokens: usize,
        window: usize,
        /// What the count includes besides the document ("with the query", ...).
        counted: &'static str,
    },
    #[error("tokenization failed: {0}")]
    Tokenization(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// What the service tells clients and operators about a loaded model.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModelDescriptor {
    /// The name requests use (the models file's, else the manifest's).
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    /// The window in tokens: the whole pair's, or a late model's document window.
    pub max_sequence_length: usize,
    /// A late model's query window in tokens (its prefix and special tokens included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_query_length: Option<usize>,
    pub score_activation: ScoreActivation,
    /// Where the graph runs now: `cpu`, `cuda` or `tensorrt`.
    pub execution_provider: String,
    /// The provider asked for, when it could not be registered and CPU serves instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_provider_fallback_from: Option<String>,
    /// Why the requested provider failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_provider_fallback_reason: Option<String>,
    /// Where ONNX Runtime ran the graph's nodes in a profiled batch at load (by provider,
    /// with the share of the work on CPU and the operators that did work there); absent when
    /// the profile could not be had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_placement: Option<placement::Placement>,
    /// The GPU, for CUDA and TensorRT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<i32>,
    pub sessions: usize,
    pub intra_threads: usize,
    /// A hash of the folder's manifest, tokenizer and graph: two loads with the same
    /// fingerprint score identically; the score cache keys on it.
    pub fingerprint: String,
}

impl ModelDescriptor {
    pub(crate) fn new(
        dir: &Path,
        manifest: &Manifest,
        graph: &graph::Graph,
        options: &graph::SessionOptions,
    ) -> Result<ModelDescriptor> {
        let provider = graph.provider();
        Ok(ModelDescriptor {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind,
            max_sequence_length: manifest.max_sequence_length,
            max_query_length: manifest.max_query_length,
            score_activation: manifest.score_activation,
            execution_provider: provider.provider.as_str().into(),
            execution_provider_fallback_from: provider
                .fell_back_from
                .map(|p| p.as_str().to_string()),
            execution_provider_fallback_reason: provider.fallback_reason.clone(),
            node_placement: provider.placement.clone(),
            device_id: (provider.provider != graph::Provider::Cpu).then_some(options.device_id),
            sessions: graph.sessions(),
            intra_threads: options.intra_threads,
            fingerprint: fingerprint(dir)?,
        })
    }
}

impl ModelDescriptor {
    /// The query limit when none is configured (`--max-query-tokens 0`): half the window for
    /// models that read query and document in one window; a late model's own query window
    /// (its tokenizer then takes off the prefix and special tokens).
    pub fn default_max_query_tokens(&self) -> usize {
        self.max_query_length
            .unwrap_or(self.max_sequence_length / 2)
    }

    /// The most tokens one pair can count ([`PreparedPair::len`]): the window, plus the query
    /// window for a late model.
    pub fn max_pair_tokens(&self) -> usize {
        self.max_sequence_length + self.max_query_length.unwrap_or(0)
    }
}

/// xxh3-128 over the files that decide a model's scores, in hex.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for file in [
        manifest::MANIFEST_FILE,
        manifest::TOKENIZER_FILE,
        manifest::MODEL_FILE,
    ] {
        let path = dir.join(file);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// A served student. Implementations are shared across threads; `score` is called by one
/// inference thread per session index, so a session is never used by two threads at once.
pub trait Ranker: Send + Sync + 'static {
    fn descriptor(&self) -> &ModelDescriptor;

    /// Tokenizes a query once for all the documents of a request.
    fn prepare_query(
        &self,
        query: &str,
        max_query_tokens: usize,
    ) -> Result<PreparedQuery, RankError>;

    /// Builds the model input for one document of a request, cut to one window (`index` is
    /// for error messages).
    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError>;

    /// Builds one pair per chunk of a document (`truncation.max_chunks` at most, the first
    /// being what [`Ranker::prepare_pair`] builds); the document scores as its best chunk.
    fn prepare_chunks(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<Vec<PreparedPair>, RankError>;

    /// How many sessions `score` can be called with (indices `0..sessions()`).
    fn sessions(&self) -> usize;

    /// Raw scores (logits) for a batch of pairs, in order, on session `session`.
    fn score(&self, session: usize, batch: &[&PreparedPair]) -> Result<Vec<f32>, RankError>;

    /// The client-facing score for a raw score.
    fn activate(&self, logit: f32) -> f32 {
        self.descriptor().score_activation.apply(logit)
    }
}

impl fmt::Debug for dyn Ranker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ranker")
            .field("descriptor", self.descriptor())
            .finish()
    }
}
