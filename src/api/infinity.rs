//! Infinity's re-rank shape, as Infinity's own client (`infinity_client`) posts it to
//! `/rerank`: `{query, documents, return_documents, raw_scores, model, top_n}`, answered with
//! `{object: "rerank", id, created, model, results: [{relevance_score, index, document?}],
//! usage: {prompt_tokens, total_tokens}}`, where `document` is the text itself. `/rerank` is
//! also TEI's route: [`super::tei`] reads the body once and hands it here when it carries
//! `documents` instead of TEI's `texts`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::Counted;
use super::cohere::{DocumentInput, DocumentSchema};
use crate::rerank::{JobSpec, RerankError, RerankJob, RerankOutcome};
use crate::serving::registry::RoutingHints;

/// The `model` Infinity's client sends when its caller names none: the default model.
pub const UNSPECIFIED_MODEL: &str = "default/not-specified";

/// Infinity's re-rank request (Cohere-aligned). Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InfinityRequest {
    /// Never truncated; at most `max_query_tokens` tokens.
    #[schema(min_length = 1)]
    pub query: String,
    /// The candidates (strings, or `{"text": ...}` objects); at most `max_documents`.
    #[schema(value_type = Vec<DocumentSchema>, min_items = 1)]
    pub documents: Counted<DocumentInput>,
    /// Echo each document's text in its result.
    #[serde(default)]
    pub return_documents: bool,
    /// The model's logit instead of the sigmoid score in 0..1.
    #[serde(default)]
    pub raw_scores: bool,
    /// Model to use; the default model when absent or `default/not-specified`.
    #[serde(default)]
    pub model: Option<String>,
    /// Return only the best `top_n` results.
    #[serde(default, deserialize_with = "super::whole_number")]
    #[schema(minimum = 1)]
    pub top_n: Option<i64>,
    /// A user or session id for sticky experiment assignment; hashed, never stored.
    #[serde(default)]
    pub user: Option<String>,
}

impl TryFrom<InfinityRequest> for RerankJob {
    type Error = RerankError;

    fn try_from(request: InfinityRequest) -> Result<RerankJob, RerankError> {
        JobSpec {
            model: request.model.filter(|m| m != UNSPECIFIED_MODEL),
            query: request.query,
            documents: request.documents.0.into_iter().map(|d| d.0).collect(),
            top_n: request.top_n,
            raw_scores: request.raw_scores,
            truncate: Some(true),
            routing: RoutingHints {
                unit: request.user,
                forced_variant: None,
            },
            ..JobSpec::default()
        }
        .try_into()
    }
}

/// Infinity's re-rank response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InfinityResponse {
    /// Always `rerank`.
    pub object: String,
    /// The request id (`x-request-id`).
    pub id: String,
    /// Unix time of the answer, seconds.
    pub created: u64,
    pub model: String,
    pub results: Vec<InfinityResult>,
    pub usage: InfinityUsage,
}

/// One document's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InfinityResult {
    /// sigmoid(logit) in 0..1, or the logit with `raw_scores`.
    pub relevance_score: f32,
    /// Position of the document in the request.
    pub index: usize,
    /// The document's text, with `return_documents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InfinityUsage {
    /// Tokens of all (query, document) pairs.
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl InfinityResponse {
    pub fn new(
        id: String,
        outcome: &RerankOutcome,
        documents: &[String],
        return_documents: bool,
    ) -> InfinityResponse {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        InfinityResponse {
            object: "rerank".into(),
            id,
            created,
            model: outcome.model.clone(),
            results: outcome
                .results
                .iter()
                .map(|r| InfinityResult {
                    relevance_score: r.score,
                    index: r.index,
                    document: return_documents.then(|| documents[r.index].clone()),
                })
                .collect(),
            usage: InfinityUsage {
                prompt_tokens: outcome.meta.input_tokens,
                total_tokens: outcome.meta.input_tokens,
            },
        }
    }
}
