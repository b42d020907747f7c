//! Models: what a served student is, and how it turns (query, document) pairs into scores.
//!
//! A model is a folder (`model.onnx`, `tokenizer.json`, `manifest.json`; see [`manifest`]).
//! The [`Ranker`] trait is the one seam between the serving core and a model family: it
//! prepares pairs (tokenization and truncation, the model's own business) and scores a batch
//! of prepared pairs on one of its sessions. The encoder student (RRA-BERT, a cross-encoder)
//! is [`encoder::EncoderRanker`]; the decoder student implements the same trait. The
//! [`registry`] holds the models a process serves.

pub mod encoder;
pub mod manifest;
pub mod registry;
pub mod tokenize;

use std::fmt;

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
    /// A lower cut than the window leaves, in document tokens (`max_tokens_per_doc`).
    pub max_document_tokens: Option<usize>,
}

impl Default for Truncation {
    fn default() -> Self {
        Truncation {
            enabled: true,
            side: TruncationSide::Right,
            max_document_tokens: None,
        }
    }
}

/// A query tokenized once per request, reused for every document of the request.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    pub(crate) encoding: tokenizers::Encoding,
}

impl PreparedQuery {
    pub fn tokens(&self) -> usize {
        self.encoding.len()
    }
}

/// One (query, document) pair as model input: token ids and segment ids, unpadded.
#[derive(Debug, Clone)]
pub struct PreparedPair {
    pub input_ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// Whether the document was cut to fit.
    pub truncated: bool,
}

impl PreparedPair {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
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
        "document {index} is {tokens} tokens long with the query, over the model's window of {window}: \
         shorten it or allow truncation"
    )]
    DocumentTooLong {
        index: usize,
        tokens: usize,
        window: usize,
    },
    #[error("tokenization failed: {0}")]
    Tokenization(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// What the service tells clients and operators about a loaded model.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModelDescriptor {
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    pub max_sequence_length: usize,
    pub score_activation: ScoreActivation,
    pub execution_provider: String,
    pub sessions: usize,
    pub intra_threads: usize,
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

    /// Builds the model input for one document of a request (`index` is for error messages).
    fn prepare_pair(
        &self,
        query: &PreparedQuery,
        document: &str,
        index: usize,
        truncation: &Truncation,
    ) -> Result<PreparedPair, RankError>;

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
