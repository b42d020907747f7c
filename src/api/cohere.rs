//! `POST /v1/rerank` and `/v2/rerank`: the shape Cohere (v1 and v2 clients), Jina and vLLM
//! clients send.
//!
//! Request: `model` (a model, an alias such as Cohere's `rerank-v3.5`, or an experiment),
//! `query`, `documents` (strings or `{"text": ...}` objects), `top_n`, `return_documents`,
//! `max_tokens_per_doc`, `max_chunks_per_doc`, `raw_scores`. Response: `id` (the request id),
//! `model`, `results` sorted by score (ties by index) each with `index`, `relevance_score` and
//! (on request) `document`, the request's cost in `meta`, and Jina-style `usage`. Documents
//! are always cut, never refused, as Cohere cuts them to `max_tokens_per_doc`: to the window,
//! or read in chunks (each scored, the document as its best) where `max_chunks_per_doc` and
//! the server allow more than one.

use std::fmt;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::body::{self, Counted};
use super::error::ErrorBody;
use super::{add_outcome_headers, ApiError, AppState};
use crate::rerank::{JobSpec, RerankError, RerankJob, RerankMeta};
use crate::serving::registry::{Assignment, RoutingHints};

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
    pub documents: Counted<DocumentInput>,
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
    /// Read a document longer than the window in up to this many chunks and score it as its
    /// best chunk (Cohere v1's field); the server's `--max-chunks-per-document` when absent,
    /// and never more than it.
    #[serde(default, deserialize_with = "super::whole_number")]
    #[schema(minimum = 1)]
    pub max_chunks_per_doc: Option<i64>,
    /// The model's logit instead of the sigmoid score in 0..1.
    #[serde(default)]
    pub raw_scores: bool,
    /// A user or session id: requests with the same one get the same experiment variant
    /// (hashed, never stored). `x-user-id` / `x-session-id` headers work too.
    #[serde(default)]
    pub user: Option<String>,
}

impl TryFrom<CohereRequest> for RerankJob {
    type Error = RerankError;

    fn try_from(request: CohereRequest) -> Result<RerankJob, RerankError> {
        JobSpec {
            model: request.model,
            query: request.query,
            documents: request.documents.0.into_iter().map(|d| d.0).collect(),
            top_n: request.top_n,
            raw_scores: request.raw_scores,
            truncate: Some(true),
            max_tokens_per_doc: request.max_tokens_per_doc,
            max_chunks_per_doc: request.max_chunks_per_doc,
            routing: RoutingHints {
                unit: request.user,
                forced_variant: None,
            },
            ..JobSpec::default()
        }
        .try_into()
    }
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
    pub cost: RerankMeta,
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
        (status = 500, description = "Inference failed for this request's batch (the message carries the request id; the cause is in the service's log)", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 504, description = "Past the request deadline", body = ErrorBody),
    ))]
pub async fn rerank_v1(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
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
        (status = 500, description = "Inference failed for this request's batch (the message carries the request id; the cause is in the service's log)", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
        (status = 504, description = "Past the request deadline", body = ErrorBody),
    ))]
pub async fn rerank_v2(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    rerank(state, headers, body).await
}

async fn rerank(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CohereRequest = body::parse(&state, &headers, body)?;
    let return_documents = request.return_documents;
    let job = super::job(&state, &headers, RerankJob::try_from(request))?;
    let documents = job.documents().clone();
    let outcome = super::rerank(&state, &headers, job).await?;
    let results = outcome
        .results
        .iter()
        .map(|r| CohereResult {
            index: r.index,
            relevance_score: r.score,
            document: return_documents.then(|| DocumentText {
                text: documents[r.index].clone(),
            }),
        })
        .collect();
    let body = CohereResponse {
        id: super::request_id(&headers),
        model: outcome.model.clone(),
        results,
        meta: CohereMeta {
            model_version: outcome.model_version.clone(),
            experiment: outcome.assignment.clone(),
            cost: outcome.meta.clone(),
        },
        usage: Usage {
            total_tokens: outcome.meta.input_tokens,
        },
    };
    let mut response = Json(body).into_response();
    add_outcome_headers(&mut response, &outcome);
    Ok(response)
}
