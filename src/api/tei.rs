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
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{add_timing_headers, parse, refuse, ApiError, AppState, Dialect};
use crate::model::{Truncation, TruncationSide};
use crate::rerank::RerankJob;

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum TruncationDirection {
    #[default]
    #[serde(alias = "right")]
    Right,
    #[serde(alias = "left")]
    Left,
}

#[derive(Debug, Deserialize)]
pub struct TeiRequest {
    pub query: String,
    pub texts: Vec<String>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub return_text: bool,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub top_n: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TeiRank {
    pub index: usize,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

pub async fn rerank(
    State(state): State<AppState>,
    body: Result<Json<TeiRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    handle(state, body)
        .await
        .map_err(|e| e.in_dialect(Dialect::Tei))
}

async fn handle(
    state: AppState,
    body: Result<Json<TeiRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = parse(&state, body)?;
    let top_n = match request.top_n {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            return Err(refuse(
                &state,
                ApiError::validation(format!("`top_n` is {n}; it must be at least 1")),
            ))
        }
    };
    let texts = Arc::new(request.texts);
    let side = match request.truncation_direction {
        TruncationDirection::Right => TruncationSide::Right,
        TruncationDirection::Left => TruncationSide::Left,
    };
    let job = RerankJob {
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
    add_timing_headers(&mut response, &outcome.meta);
    Ok(response)
}
