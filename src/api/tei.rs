//! `POST /rerank`: Hugging Face text-embeddings-inference's re-rank shape, so TEI clients
//! work unchanged, and Infinity's on the same route ([`super::infinity`]).
//!
//! The body is read once; `texts` makes it TEI's request, `documents` Infinity's. TEI's
//! request: `query`, `texts`, `truncate` (absent: the server's `--auto-truncate`, on by
//! default, as TEI's own switch; `false`: a text over the window is a 422), `truncation_direction`
//! (`Right` keeps the beginning, `Left` the end), `raw_scores`, `return_text`, plus this
//! service's `model` and `top_n`. Response: a bare array of `{index, score, text?}`, sorted
//! by score. Errors use TEI's `{error, error_type}` body and TEI's statuses (422 for
//! validation, also too many texts or tokens; 413 only for a body over the size limit; 424
//! for a failed inference).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{self, Counted};
use super::cohere::DocumentInput;
use super::error::TeiErrorBody;
use super::infinity::{InfinityRequest, InfinityResponse};
use super::{add_outcome_headers, ApiError, AppState, Dialect};
use crate::model::TruncationSide;
use crate::rerank::{JobSpec, RerankError, RerankJob};
use crate::serving::registry::RoutingHints;

/// Which end of an over-long text is cut: `Right` keeps the beginning, `Left` the end.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
pub enum TruncationDirection {
    #[default]
    #[serde(alias = "right")]
    Right,
    #[serde(alias = "left")]
    Left,
}

/// TEI's re-rank request (plus `model` and `top_n`). Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TeiRequest {
    /// Never truncated; at most `max_query_tokens` tokens.
    #[schema(min_length = 1)]
    pub query: String,
    /// At most `max_documents`.
    #[schema(value_type = Vec<String>, min_items = 1)]
    pub texts: Counted<String>,
    /// Cut texts that do not fit the window; when absent, the server's `--auto-truncate`
    /// decides (on by default); when false, such a text is a 422.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// The model's logit instead of the sigmoid score in 0..1.
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text in its result.
    #[serde(default)]
    pub return_text: bool,
    /// Model to use; the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Return only the best `top_n` results.
    #[serde(default, deserialize_with = "super::whole_number")]
    #[schema(minimum = 1)]
    pub top_n: Option<i64>,
    /// A user or session id for sticky experiment assignment (or `x-user-id` /
    /// `x-session-id`); hashed, never stored.
    #[serde(default)]
    pub user: Option<String>,
}

impl TryFrom<TeiRequest> for RerankJob {
    type Error = RerankError;

    fn try_from(request: TeiRequest) -> Result<RerankJob, RerankError> {
        JobSpec {
            model: request.model,
            query: request.query,
            documents: request.texts.0,
            top_n: request.top_n,
            raw_scores: request.raw_scores,
            truncate: request.truncate,
            side: match request.truncation_direction {
                TruncationDirection::Right => TruncationSide::Right,
                TruncationDirection::Left => TruncationSide::Left,
            },
            max_tokens_per_doc: None,
            max_chunks_per_doc: None,
            routing: RoutingHints {
                unit: request.user,
                forced_variant: None,
            },
        }
        .try_into()
    }
}

/// What `/rerank` reads: TEI's fields and Infinity's, in one pass; `texts` or `documents`
/// decides whose request it is.
#[derive(Debug, Deserialize)]
struct RerankBody {
    query: String,
    #[serde(default)]
    texts: Option<Counted<String>>,
    #[serde(default)]
    documents: Option<Counted<DocumentInput>>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    #[serde(default)]
    return_documents: bool,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "super::whole_number")]
    top_n: Option<i64>,
    #[serde(default)]
    user: Option<String>,
}

enum RerankRequest {
    Tei(TeiRequest),
    Infinity(InfinityRequest),
}

impl RerankBody {
    fn into_request(self) -> Result<RerankRequest, ApiError> {
        match (self.texts, self.documents) {
            (Some(texts), None) => Ok(RerankRequest::Tei(TeiRequest {
                query: self.query,
                texts,
                truncate: self.truncate,
                truncation_direction: self.truncation_direction,
                raw_scores: self.raw_scores,
                return_text: self.return_text,
                model: self.model,
                top_n: self.top_n,
                user: self.user,
            })),
            (None, Some(documents)) => Ok(RerankRequest::Infinity(InfinityRequest {
                query: self.query,
                documents,
                return_documents: self.return_documents,
                raw_scores: self.raw_scores,
                model: self.model,
                top_n: self.top_n,
                user: self.user,
            })),
            (Some(_), Some(_)) => Err(ApiError::validation(
                "the body has both `texts` (TEI) and `documents` (Infinity/Cohere): send one",
            )),
            (None, None) => Err(ApiError::validation(
                "Failed to deserialize the JSON body into the target type: missing field `texts` \
                 (TEI's request) or `documents` (Infinity's)",
            )),
        }
    }
}

/// The request body of `/rerank`: TEI's or Infinity's (schema only).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RerankBodySchema {
    Tei(TeiRequest),
    Infinity(InfinityRequest),
}

/// The answer of `/rerank`: TEI's bare array, or Infinity's object (schema only).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RerankAnswerSchema {
    Tei(Vec<TeiRank>),
    Infinity(InfinityResponse),
}

/// One text's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TeiRank {
    pub index: usize,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Re-rank texts against a query: Hugging Face TEI's shape (`texts`), or Infinity's
/// (`documents`); errors in TEI's body and with TEI's statuses.
#[utoipa::path(post, path = "/rerank", tag = "rerank", request_body = RerankBodySchema,
    responses(
        (status = 200, description = "TEI: texts sorted by score; Infinity: its `rerank` object (timing headers as `/v1/rerank`)", body = RerankAnswerSchema),
        (status = 400, description = "The body is not JSON", body = TeiErrorBody),
        (status = 404, description = "Unknown model", body = TeiErrorBody),
        (status = 413, description = "The body is over the size limit", body = TeiErrorBody),
        (status = 415, description = "Not sent as application/json", body = TeiErrorBody),
        (status = 422, description = "A field is missing, mistyped or out of range, too many texts or tokens, or a text is over the window with `truncate: false`", body = TeiErrorBody),
        (status = 424, description = "Inference failed for this request's batch (the message carries the request id; the cause is in the service's log)", body = TeiErrorBody),
        (status = 429, description = "Overloaded; retry after `Retry-After` seconds", body = TeiErrorBody),
        (status = 503, description = "Shutting down", body = TeiErrorBody),
        (status = 504, description = "Past the request deadline", body = TeiErrorBody),
    ))]
pub async fn rerank(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle(state, headers, body)
        .await
        .map_err(|e| e.in_dialect(Dialect::Tei))
}

async fn handle(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: RerankBody = body::parse(&state, &headers, body)?;
    let request = body.into_request().map_err(|e| super::refuse(&state, e))?;
    let response = match request {
        RerankRequest::Tei(request) => {
            let return_text = request.return_text;
            let job = super::job(&state, &headers, RerankJob::try_from(request))?;
            let texts = job.documents().clone();
            let outcome = super::rerank(&state, &headers, job).await?;
            let ranks: Vec<TeiRank> = outcome
                .results
                .iter()
                .map(|r| TeiRank {
                    index: r.index,
                    score: r.score,
                    text: return_text.then(|| texts[r.index].clone()),
                })
                .collect();
            let mut response = Json(ranks).into_response();
            add_outcome_headers(&mut response, &outcome);
            response
        }
        RerankRequest::Infinity(request) => {
            let return_documents = request.return_documents;
            let job = super::job(&state, &headers, RerankJob::try_from(request))?;
            let documents = job.documents().clone();
            let outcome = super::rerank(&state, &headers, job).await?;
            let body = InfinityResponse::new(
                super::request_id(&headers),
                &outcome,
                &documents,
                return_documents,
            );
            let mut response = Json(body).into_response();
            add_outcome_headers(&mut response, &outcome);
            response
        }
    };
    Ok(response)
}
