//! `POST /v1/rerank` and `/v2/rerank`: the shape Cohere, Jina, Infinity and vLLM clients send.
//!
//! Request: `model`, `query`, `documents` (strings or `{"text": ...}` objects), `top_n`,
//! `return_documents`, `max_tokens_per_doc`, `raw_scores`. Response: `id` (the request id),
//! `model`, `results` sorted by score (ties by index) each with `index`, `relevance_score` and
//! (on request) `document`, the request's cost in `meta`, and Jina-style `usage`.

use std::fmt;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{
    add_outcome_headers, at_least_one, parse, routing_hints, ApiError, AppState, REQUEST_ID,
};
use crate::model::registry::Assignment;
use crate::model::Truncation;
use crate::rerank::{RerankJob, RerankMeta};

/// A re-rank request. Unknown fields are ignored, as the peers do.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CohereRequest {
    /// Model to use; the default model when absent. An unknown name is a 404 listing those served.
    #[serde(default)]
    pub model: Option<String>,
    /// The text to rank the documents against. Never truncated; at most `max_query_tokens` tokens.
    #[schema(min_length = 1)]
    pub query: String,
    /// The candidates, as strings or `{"text": ...}` objects; at most `max_documents`.
    #[schema(value_type = Vec<DocumentSchema>, min_items = 1)]
    pub documents: Vec<DocumentInput>,
    /// Return only the best `top_n` results (all when absent; more than sent is all).
    #[serde(default, deserialize_with = "super::whole_number")]
    #[schema(minimum = 1)]
    pub top_n: Option<i64>,
    /// Echo each document's text in its result.
    #[serde(default)]
    pub return_documents: bool,
    /// Cut documents to at most this many tokens (the model's window always applies).
    #[serde(default, deserialize_with = "super::whole_number")]
    #[schema(minimum = 1)]
    pub max_tokens_per_doc: Option<i64>,
    /// The model's logit instead of the sigmoid score in 0..1.
    #[serde(default)]
    pub raw_scores: bool,
    /// A user or session id: requests with the same one get the same experiment variant
    /// (hashed, never stored). `x-user-id` / `x-session-id` headers work too.
    #[serde(default)]
    pub user: Option<String>,
}

/// How a document may be sent (schema only; parsing is [`DocumentInput`]'s).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum DocumentSchema {
    Text(String),
    Object(DocumentText),
}

/// A document as sent: a bare string, or an object whose `text` is the document (other
/// fields are ignored, as Jina and Infinity do).
#[derive(Debug, Clone)]
pub struct DocumentInput(pub String);

impl<'de> Deserialize<'de> for DocumentInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocumentVisitor;
        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = DocumentInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document: a string or an object with a `text` string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DocumentInput, E> {
                Ok(DocumentInput(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<DocumentInput, E> {
                Ok(DocumentInput(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DocumentInput, A::Error> {
                let mut text = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "text" {
                        text = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                text.map(DocumentInput)
                    .ok_or_else(|| de::Error::missing_field("text"))
            }
        }
        deserializer.deserialize_any(DocumentVisitor)
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CohereResponse {
    /// The request id (`x-request-id`).
    pub id: String,
    pub model: String,
    pub results: Vec<CohereResult>,
    pub meta: CohereMeta,
    pub usage: Usage,
}

/// One document's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CohereResult {
    /// Position of the document in the request.
    pub index: usize,
    /// sigmoid(logit) in 0..1, or the logit with `raw_scores`.
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentText {
    pub text: String,
}

/// What the request cost.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CohereMeta {
    pub model_version: String,
    /// The experiment and variant, when the request named (or defaulted to) an experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Assignment>,
    #[serde(flatten)]
    pub cost: RerankMetaWire,
}

/// [`RerankMeta`] on the wire (kept separate so the core type needs no `Deserialize`).
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RerankMetaWire {
    pub documents: usize,
    /// Tokens of all (query, document) pairs, special tokens included, cached ones too.
    pub input_tokens: usize,
    pub input_characters: usize,
    /// Documents cut to fit the window or `max_tokens_per_doc`.
    pub documents_truncated: usize,
    /// Pairs answered from the score cache.
    pub cache_hits: usize,
    /// Batches the request's pairs ran in.
    pub batches: usize,
    /// Longest wait of a pair for its batch.
    pub queue_ms: f64,
    pub tokenization_ms: f64,
    /// Inference time of the batches the pairs ran in.
    pub inference_ms: f64,
    pub total_ms: f64,
}

impl From<&RerankMeta> for RerankMetaWire {
    fn from(m: &RerankMeta) -> Self {
        RerankMetaWire {
            documents: m.documents,
            input_tokens: m.input_tokens,
            input_characters: m.input_characters,
            documents_truncated: m.documents_truncated,
            cache_hits: m.cache_hits,
            batches: m.batches,
            queue_ms: m.queue_ms,
            tokenization_ms: m.tokenization_ms,
            inference_ms: m.inference_ms,
            total_ms: m.total_ms,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub total_tokens: usize,
}

/// Re-rank documents against a query (Cohere v1, Jina, Infinity shape).
#[utoipa::path(post, path = "/v1/rerank", tag = "rerank", request_body = CohereRequest,
    responses(
        (status = 200, description = "Documents sorted by score", body = CohereResponse, headers(
            ("x-request-id" = String, description = "The client's request id, or a new UUID"),
            ("x-total-time" = u64, description = "Milliseconds in the service"),
            ("x-queue-time" = u64, description = "Milliseconds waiting for a batch"),
            ("x-tokenization-time" = u64, description = "Milliseconds tokenizing"),
            ("x-inference-time" = u64, description = "Milliseconds of inference"),
            ("x-compute-tokens" = u64, description = "Tokens scored"),
            ("x-compute-characters" = u64, description = "Characters scored"),
            ("x-cache-hits" = u64, description = "Pairs answered from the cache"),
            ("x-documents-truncated" = u64, description = "Documents cut to fit"))),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body, documents or tokens over their limits", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "A field is missing, mistyped or out of range", body = ErrorBody),
        (status = 429, description = "Queue full; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds"))),
        (status = 500, description = "Inference failed for this request's batch", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 504, description = "Past the request deadline", body = ErrorBody),
    ))]
pub async fn rerank_v1(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CohereRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    rerank(state, headers, body).await
}

/// Re-rank documents against a query (Cohere v2 path; same body and answer as `/v1/rerank`).
#[utoipa::path(post, path = "/v2/rerank", tag = "rerank", request_body = CohereRequest,
    responses(
        (status = 200, description = "Documents sorted by score (headers as `/v1/rerank`)", body = CohereResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body, documents or tokens over their limits", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "A field is missing, mistyped or out of range", body = ErrorBody),
        (status = 429, description = "Queue full; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 500, description = "Inference failed for this request's batch", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 504, description = "Past the request deadline", body = ErrorBody),
    ))]
pub async fn rerank_v2(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CohereRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    rerank(state, headers, body).await
}

async fn rerank(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CohereRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = parse(&state, body)?;
    let top_n = at_least_one(&state, "top_n", request.top_n)?;
    let max_document_tokens =
        at_least_one(&state, "max_tokens_per_doc", request.max_tokens_per_doc)?;
    let documents: Arc<Vec<String>> =
        Arc::new(request.documents.into_iter().map(|d| d.0).collect());
    let job = RerankJob {
        model: request.model,
        query: request.query,
        documents: documents.clone(),
        top_n,
        raw_scores: request.raw_scores,
        truncation: Truncation {
            max_document_tokens,
            ..Truncation::default()
        },
        routing: routing_hints(&headers, request.user),
    };
    let outcome = state.service.rerank(job).await?;

    let id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let results = outcome
        .results
        .iter()
        .map(|r| CohereResult {
            index: r.index,
            relevance_score: r.score,
            document: request.return_documents.then(|| DocumentText {
                text: documents[r.index].clone(),
            }),
        })
        .collect();
    let body = CohereResponse {
        id,
        model: outcome.model.clone(),
        results,
        meta: CohereMeta {
            model_version: outcome.model_version.clone(),
            experiment: outcome.assignment.clone(),
            cost: (&outcome.meta).into(),
        },
        usage: Usage {
            total_tokens: outcome.meta.input_tokens,
        },
    };
    let mut response = Json(body).into_response();
    add_outcome_headers(&mut response, &outcome);
    Ok(response)
}
