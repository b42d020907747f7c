//! What a re-rank request is once it has been read: a [`RerankJob`], valid by construction.
//!
//! Every wire dialect (Cohere/Jina, TEI, Infinity, gRPC) converts its request with
//! `TryFrom<wire> for RerankJob`, which fills a [`JobSpec`] (the fields in the operation's
//! terms, unchecked) and converts that: [`RerankJob::try_from`] is the one place that
//! checks what a request must satisfy on its own (a query, at least one document, `top_n`,
//! `max_tokens_per_doc` and `max_chunks_per_doc` at least 1). Nothing downstream checks these again. What depends
//! on the instance (`--max-documents`) or the model (the query's length in tokens) is checked
//! where those are known: the service and the pipeline.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::RerankError;
use crate::model::{Truncation, TruncationSide};
use crate::serving::registry::RoutingHints;

/// Request limits that do not depend on the model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    /// Most documents in one request (413 past it; counted while the body is parsed).
    pub max_documents: usize,
    /// Most tokens in a query (422 past it); 0 means half the model's window (a late
    /// model's own query window).
    pub max_query_tokens: usize,
    /// Most bytes in a request body (413 past it).
    pub max_body_bytes: usize,
    /// Deadline of one re-rank request (504 past it).
    pub request_timeout_ms: u64,
    /// Whether a request that does not say (TEI's `truncate` absent) has over-long documents
    /// cut to the window (`--auto-truncate`) or refused.
    pub auto_truncate: bool,
    /// The most chunks a document longer than the window is read in, its score its best
    /// chunk's (`--max-chunks-per-document`; 1: cut to one window). A request's
    /// `max_chunks_per_doc` can ask for fewer, never more.
    pub max_chunks_per_document: usize,
}

/// A request's fields in the operation's terms, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<String>,
    pub top_n: Option<i64>,
    pub raw_scores: bool,
    /// Cut documents that do not fit; None: the server's `--auto-truncate` decides.
    pub truncate: Option<bool>,
    pub side: TruncationSide,
    pub max_tokens_per_doc: Option<i64>,
    /// The most chunks a long document is read in (Cohere's `max_chunks_per_doc`); None: the
    /// server's `--max-chunks-per-document`.
    pub max_chunks_per_doc: Option<i64>,
    /// Who is asking (sticky experiment assignment), and any variant forced for debugging.
    pub routing: RoutingHints,
}

/// A checked re-rank request, as every dialect sees it.
#[derive(Debug, Clone)]
pub struct RerankJob {
    model: Option<String>,
    query: String,
    documents: Arc<Vec<String>>,
    top_n: Option<usize>,
    raw_scores: bool,
    truncate: Option<bool>,
    side: TruncationSide,
    max_document_tokens: Option<usize>,
    max_chunks: Option<usize>,
    routing: RoutingHints,
}

fn at_least_one(field: &str, value: Option<i64>) -> Result<Option<usize>, RerankError> {
    match value {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(RerankError::Validation(format!(
            "`{field}` is {n}; it must be at least 1"
        ))),
    }
}

impl TryFrom<JobSpec> for RerankJob {
    type Error = RerankError;

    fn try_from(spec: JobSpec) -> Result<RerankJob, RerankError> {
        if spec.query.trim().is_empty() {
            return Err(RerankError::Validation(
                "`query` is empty: send the text to rank the documents against".into(),
            ));
        }
        if spec.documents.is_empty() {
            return Err(RerankError::Validation(
                "no documents: send at least one document to rank".into(),
            ));
        }
        Ok(RerankJob {
            top_n: at_least_one("top_n", spec.top_n)?,
            max_document_tokens: at_least_one("max_tokens_per_doc", spec.max_tokens_per_doc)?,
            max_chunks: at_least_one("max_chunks_per_doc", spec.max_chunks_per_doc)?,
            model: spec.model.filter(|m| !m.is_empty()),
            query: spec.query,
            documents: Arc::new(spec.documents),
            raw_scores: spec.raw_scores,
            truncate: spec.truncate,
            side: spec.side,
            routing: spec.routing,
        })
    }
}

impl RerankJob {
    /// The model or experiment named; None: the default.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub fn query(&self) -> &str {
        &self.query
    }

    /// The documents, shared (responses that echo them read them from here).
    pub fn documents(&self) -> &Arc<Vec<String>> {
        &self.documents
    }

    pub fn top_n(&self) -> Option<usize> {
        self.top_n
    }

    pub fn raw_scores(&self) -> bool {
        self.raw_scores
    }

    pub fn routing(&self) -> &RoutingHints {
        &self.routing
    }

    /// Fills who is asking and any forced variant from outside the body (headers, metadata)
    /// where the body did not say.
    pub fn with_routing_defaults(mut self, unit: Option<String>, forced: Option<String>) -> Self {
        if self.routing.unit.is_none() {
            self.routing.unit = unit;
        }
        if self.routing.forced_variant.is_none() {
            self.routing.forced_variant = forced;
        }
        self
    }

    /// How documents are cut, given the server's `--auto-truncate` and
    /// `--max-chunks-per-document` (which caps what the request asks).
    pub fn truncation(&self, limits: &Limits) -> Truncation {
        let server = limits.max_chunks_per_document.max(1);
        Truncation {
            enabled: self.truncate.unwrap_or(limits.auto_truncate),
            side: self.side,
            max_document_tokens: self.max_document_tokens,
            max_chunks: self.max_chunks.map_or(server, |asked| asked.min(server)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            query: "q".into(),
            documents: vec!["d".into()],
            ..JobSpec::default()
        }
    }

    #[test]
    fn the_one_place_that_checks_a_request() {
        assert!(RerankJob::try_from(spec()).is_ok());
        let refused = |s: JobSpec| RerankJob::try_from(s).unwrap_err().to_string();
        assert!(refused(JobSpec {
            query: "  ".into(),
            ..spec()
        })
        .contains("`query` is empty"));
        assert!(refused(JobSpec {
            documents: vec![],
            ..spec()
        })
        .contains("no documents"));
        assert!(refused(JobSpec {
            top_n: Some(0),
            ..spec()
        })
        .contains("`top_n` is 0"));
        assert!(refused(JobSpec {
            top_n: Some(-3),
            ..spec()
        })
        .contains("`top_n` is -3"));
        assert!(refused(JobSpec {
            max_tokens_per_doc: Some(0),
            ..spec()
        })
        .contains("`max_tokens_per_doc` is 0"));
        assert!(refused(JobSpec {
            max_chunks_per_doc: Some(0),
            ..spec()
        })
        .contains("`max_chunks_per_doc` is 0"));
    }

    fn limits(auto_truncate: bool, max_chunks_per_document: usize) -> Limits {
        Limits {
            max_documents: 10,
            max_query_tokens: 0,
            max_body_bytes: 1 << 20,
            request_timeout_ms: 1000,
            auto_truncate,
            max_chunks_per_document,
        }
    }

    #[test]
    fn truncation_follows_the_request_then_the_server() {
        let unsaid = RerankJob::try_from(spec()).unwrap();
        assert!(unsaid.truncation(&limits(true, 1)).enabled);
        assert!(!unsaid.truncation(&limits(false, 1)).enabled);
        assert_eq!(unsaid.truncation(&limits(true, 4)).max_chunks, 4);
        let refused = RerankJob::try_from(JobSpec {
            truncate: Some(false),
            ..spec()
        })
        .unwrap();
        assert!(!refused.truncation(&limits(true, 1)).enabled);
        assert_eq!(refused.truncation(&limits(true, 4)).chunks(), 1);
        // A request asks for fewer chunks than the server allows, never more.
        let chunked = |asked| {
            RerankJob::try_from(JobSpec {
                max_chunks_per_doc: Some(asked),
                ..spec()
            })
            .unwrap()
        };
        assert_eq!(chunked(2).truncation(&limits(true, 4)).max_chunks, 2);
        assert_eq!(chunked(10).truncation(&limits(true, 4)).max_chunks, 4);
        assert_eq!(chunked(10).truncation(&limits(true, 1)).max_chunks, 1);
        let named = RerankJob::try_from(JobSpec {
            model: Some(String::new()),
            ..spec()
        })
        .unwrap();
        assert_eq!(named.model(), None, "an empty name is the default model");
    }
}
