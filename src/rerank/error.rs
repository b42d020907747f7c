//! Why a re-rank request failed, in the operation's own terms.
//!
//! One enum for the whole operation; the API maps each kind to exactly one HTTP status per
//! dialect (`src/api/error.rs`) and gRPC to one status code (`src/grpc/mod.rs`). The lower
//! layers' errors (routing, tokenization, admission, inference) convert into it here, once.
//! An inference failure keeps ONNX Runtime's own text for the log ([`RerankError::detail`])
//! and shows clients only that inference failed: the runtime's messages name graph nodes,
//! shapes and file paths, which are the operator's business, not the caller's.

use crate::batch::AdmissionError;
use crate::model::RankError;
use crate::serving::registry::{RouteError, UnknownModel};

#[derive(Debug, Clone, thiserror::Error)]
pub enum RerankError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    #[error(
        "the request did not finish within its deadline of {0} ms; retry, or send fewer documents"
    )]
    Timeout(u64),
    #[error("{0}")]
    Unavailable(String),
    /// The model failed on a batch holding this request's pairs; `detail` is for the log.
    #[error("inference failed on the batch that held this request's documents; retry, and report it if it persists")]
    Inference { detail: String },
}

impl RerankError {
    /// The `err` label of `te_request_failure` and the error body's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            RerankError::Validation(_) => "validation",
            RerankError::TooLarge(_) => "too_large",
            RerankError::UnknownModel(_) => "model_not_found",
            RerankError::Overloaded { .. } => "overloaded",
            RerankError::Timeout(_) => "timeout",
            RerankError::Unavailable(_) => "unavailable",
            RerankError::Inference { .. } => "inference",
        }
    }

    pub fn inference(detail: impl Into<String>) -> RerankError {
        RerankError::Inference {
            detail: detail.into(),
        }
    }

    /// What the log gets: the client's message, plus the runtime's own text for inference.
    pub fn detail(&self) -> String {
        match self {
            RerankError::Inference { detail } => detail.clone(),
            other => other.to_string(),
        }
    }
}

impl From<RouteError> for RerankError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::UnknownModel(unknown) => RerankError::UnknownModel(unknown),
            other => RerankError::Validation(other.to_string()),
        }
    }
}

impl From<RankError> for RerankError {
    fn from(error: RankError) -> Self {
        match error {
            RankError::Inference(message) => RerankError::Inference { detail: message },
            other => RerankError::Validation(other.to_string()),
        }
    }
}

impl From<AdmissionError> for RerankError {
    fn from(error: AdmissionError) -> Self {
        match error {
            AdmissionError::RequestTooLarge { .. } => RerankError::TooLarge(error.to_string()),
            _ => RerankError::Overloaded {
                message: error.to_string(),
                retry_after_secs: 1,
            },
        }
    }
}
