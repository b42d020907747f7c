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

use super::{add_timing_headers, parse, refuse, ApiError, AppState, REQUEST_ID};
use crate::model::Truncation;
use crate::rerank::{RerankJob, RerankMeta};

#[derive(Debug, Deserialize)]
pub struct CohereRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<DocumentInput>,
    #[serde(default)]
    pub top_n: Option<i64>,
    #[serde(default)]
    pub return_documents: bool,
    #[serde(default)]
    pub max_tokens_per_doc: Option<i64>,
    #[serde(default)]
    pub raw_scores: bool,
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

#[derive(Debug, Serialize, Deserialize)]
pub struct CohereResponse {
    pub id: String,
    pub model: String,
    pub results: Vec<CohereResult>,
    pub meta: CohereMeta,
    pub usage: Usage,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CohereResult {
    pub index: usize,
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DocumentText {
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CohereMeta {
    pub model_version: String,
    #[serde(flatten)]
    pub cost: RerankMetaWire,
}

/// [`RerankMeta`] on the wire (kept separate so the core type needs no `Deserialize`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RerankMetaWire {
    pub documents: usize,
    pub input_tokens: usize,
    pub input_characters: usize,
    pub documents_truncated: usize,
    pub cache_hits: usize,
    pub batches: usize,
    pub queue_ms: f64,
    pub tokenization_ms: f64,
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

#[derive(Debug, Serialize, Deserialize)]
pub struct Usage {
    pub total_tokens: usize,
}

pub async fn rerank(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CohereRequest>, JsonRejection>,
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
    let max_document_tokens = match request.max_tokens_per_doc {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            let message = format!("`max_tokens_per_doc` is {n}; it must be at least 1");
            return Err(refuse(&state, ApiError::validation(message)));
        }
    };
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
        model: outcome.model,
        results,
        meta: CohereMeta {
            model_version: outcome.model_version,
            cost: (&outcome.meta).into(),
        },
        usage: Usage {
            total_tokens: outcome.meta.input_tokens,
        },
    };
    let mut response = Json(body).into_response();
    add_timing_headers(&mut response, &outcome.meta);
    Ok(response)
}
