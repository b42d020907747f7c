//! `POST /rerank`: Hugging Face text-embeddings-inference's re-rank shape, so TEI clients
//! work unchanged.
//!
//! Request: `query`, `texts`, `truncate` (default false: a text over the window is a 422, as
//! in TEI), `truncation_direction` (`Right` keeps the beginning, `Left` the end), `raw_scores`,
//! `return_text`, plus this service's `model` and `top_n`. Response: a bare array of
//! `{index, score, text?}`, sorted by score. Errors use TEI's `{error, error_type}` body.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::TeiErrorBody;
use super::{add_outcome_headers, at_least_one, parse, routing_hints, ApiError, AppState, Dialect};
use crate::model::{Truncation, TruncationSide};
use crate::rerank::RerankJob;

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
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// Cut texts that do not fit the window; when false (the default, as in TEI) such a text is a 422.
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

/// One text's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TeiRank {
    pub index: usize,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Re-rank texts against a query (Hugging Face TEI's shape; errors in TEI's body).
#[utoipa::path(post, path = "/rerank", tag = "rerank", request_body = TeiRequest,
    responses(
        (status = 200, description = "Texts sorted by score (timing headers as `/v1/rerank`)", body = Vec<TeiRank>),
        (status = 400, description = "The body is not JSON", body = TeiErrorBody),
        (status = 404, description = "Unknown model", body = TeiErrorBody),
        (status = 413, description = "Body, texts or tokens over their limits", body = TeiErrorBody),
        (status = 415, description = "Not sent as application/json", body = TeiErrorBody),
        (status = 422, description = "A field is missing, mistyped or out of range, or a text is over the window without `truncate`", body = TeiErrorBody),
        (status = 429, description = "Queue full; retry after `Retry-After` seconds", body = TeiErrorBody),
        (status = 500, description = "Inference failed for this request's batch", body = TeiErrorBody),
        (status = 503, description = "Shutting down", body = TeiErrorBody),
        (status = 504, description = "Past the request deadline", body = TeiErrorBody),
    ))]
pub async fn rerank(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<TeiRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    handle(state, headers, body)
        .await
        .map_err(|e| e.in_dialect(Dialect::Tei))
}

async fn handle(
    state: AppState,
    headers: HeaderMap,
    body: Result<Json<TeiRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = parse(&state, body)?;
    let top_n = at_least_one(&state, "top_n", request.top_n)?;
    let texts = Arc::new(request.texts);
    let side = match request.truncation_direction {
        TruncationDirection::Right => TruncationSide::Right,
        TruncationDirection::Left => TruncationSide::Left,
    };
    let job = RerankJob {
        routing: routing_hints(&headers, request.user.clone()),
        model: request.model,
        query: request.query,
        documents: texts.clone(),
        top_n,
        raw_scores: request.raw_scores,
        truncation: Truncation {
            enabled: request.truncate.unwrap_or(false),
            side,
            max_document_tokens: None,
        },
    };
    let outcome = state.service.rerank(job).await?;
    let ranks: Vec<TeiRank> = outcome
        .results
        .iter()
        .map(|r| TeiRank {
            index: r.index,
            score: r.score,
            text: request.return_text.then(|| texts[r.index].clone()),
        })
        .collect();
    let mut response = Json(ranks).into_response();
    add_outcome_headers(&mut response, &outcome);
    Ok(response)
}
