//! Error bodies and statuses.
//!
//! Each error kind has exactly one status per dialect: validation 422 (malformed JSON 400,
//! wrong content type 415), too large 413, unknown model or path 404, overloaded 429 with
//! `Retry-After`, deadline 504, shutting down 503, inference failure 500. TEI's `/rerank`
//! answers as TEI does: 413 only for a body over the size limit (too many texts or tokens
//! are 422, validation), and 424 for a failed inference. The body depends on the dialect
//! the client speaks: `{"message", "error": {"type", "message"}}` for the Cohere-style API
//! and the service's own endpoints (Cohere's SDK reads the top-level `message`), TEI's
//! `{"error", "error_type"}` on TEI's `/rerank`, so existing clients parse it.
//!
//! A 500 never carries ONNX Runtime's text: the handler logs it with the request id
//! ([`ApiError::from_rerank`]) and the client gets the request id to quote.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::rerank::RerankError;

/// The error body of the Cohere-style endpoints and the service's own.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do about it (where Cohere's clients read it).
    pub message: String,
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The error kind: validation, invalid_json, unsupported_media_type, too_large,
    /// model_not_found, not_found, method_not_allowed, overloaded, timeout, unavailable,
    /// inference, internal.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// TEI's error body, on `/rerank`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TeiErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
    /// TEI's kinds, as TEI writes them: validation, overloaded, backend, unhealthy; and
    /// model_not_found, not_found, unauthorized, forbidden.
    pub error_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Cohere,
    Tei,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    pub dialect: Dialect,
    /// The body itself was over the size limit (TEI's one 413).
    pub payload: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after_secs: None,
            dialect: Dialect::Cohere,
            payload: false,
        }
    }

    /// Marks a 413 as the body's size (not its documents or tokens).
    pub fn payload(mut self) -> ApiError {
        self.payload = true;
        self
    }

    /// A re-rank failure as the client sees it: an inference failure is logged with the
    /// runtime's text and `request_id`, and answered with the request id only.
    pub fn from_rerank(error: RerankError, request_id: &str) -> ApiError {
        let inference = matches!(error, RerankError::Inference { .. });
        if inference {
            tracing::error!(request_id, error = %error.detail(), "inference failed");
        }
        let mut api = ApiError::from(error);
        if inference && !request_id.is_empty() {
            api.message = format!("{} (request id {request_id})", api.message);
        }
        api
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    /// The error as `dialect` writes it: TEI's statuses on TEI's route.
    pub fn in_dialect(mut self, dialect: Dialect) -> ApiError {
        self.dialect = dialect;
        if dialect == Dialect::Tei {
            self.status = match (self.status, self.kind) {
                (StatusCode::PAYLOAD_TOO_LARGE, _) if !self.payload => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                (_, "inference") => StatusCode::FAILED_DEPENDENCY,
                (status, _) => status,
            };
        }
        self
    }

    /// TEI's `error_type` names where one fits.
    fn tei_type(&self) -> &'static str {
        match self.kind {
            "validation" | "invalid_json" | "too_large" | "unsupported_media_type" => "validation",
            "overloaded" => "overloaded",
            "inference" | "timeout" | "internal" => "backend",
            "unavailable" => "unhealthy",
            other => other,
        }
    }
}

impl From<RerankError> for ApiError {
    fn from(error: RerankError) -> ApiError {
        let status = match &error {
            RerankError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RerankError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RerankError::UnknownModel(_) => StatusCode::NOT_FOUND,
            RerankError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            RerankError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            RerankError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RerankError::Inference { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after_secs = match &error {
            RerankError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            RerankError::Unavailable(_) => Some(1),
            _ => None,
        };
        ApiError {
            status,
            kind: error.kind(),
            message: error.to_string(),
            retry_after_secs,
            dialect: Dialect::Cohere,
            payload: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.dialect {
            Dialect::Cohere => {
                json!(ErrorBody {
                    message: self.message.clone(),
                    error: ErrorDetail {
                        kind: self.kind.into(),
                        message: self.message.clone()
                    }
                })
            }
            Dialect::Tei => json!(TeiErrorBody {
                error: self.message.clone(),
                error_type: self.tei_type().into()
            }),
        };
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, kind = self.kind, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, kind = self.kind, message = %self.message, "request refused");
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint at {}; re-rank with POST /v1/rerank, /v2/rerank or /rerank",
            uri.path()
        ),
    )
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the service keeps running",
    )
    .into_response()
}
