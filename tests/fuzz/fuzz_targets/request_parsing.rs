//! Any bytes as a request body of each dialect: parsing and validation must never panic, and
//! a request that passes validation must be within every limit.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rradistill::model::registry::RoutingHints;
use rradistill::api::cohere::CohereRequest;
use rradistill::api::tei::TeiRequest;
use rradistill::model::Truncation;
use rradistill::rerank::{validate, Limits, RerankJob};

const LIMITS: Limits = Limits { max_documents: 64, max_query_tokens: 0, max_body_bytes: 1 << 20, request_timeout_ms: 1000 };

fn check(job: RerankJob) {
    if validate(&job, &LIMITS).is_ok() {
        assert!(!job.query.trim().is_empty());
        assert!(!job.documents.is_empty() && job.documents.len() <= LIMITS.max_documents);
        assert_ne!(job.top_n, Some(0));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<CohereRequest>(data) {
        let documents: Vec<String> = request.documents.into_iter().map(|d| d.0).collect();
        check(RerankJob {
            model: request.model,
            query: request.query,
            documents: Arc::new(documents),
            top_n: request.top_n.and_then(|n| usize::try_from(n).ok()),
            raw_scores: request.raw_scores,
            truncation: Truncation {
                max_document_tokens: request.max_tokens_per_doc.and_then(|n| usize::try_from(n).ok()),
                ..Truncation::default()
            },
            routing: RoutingHints { unit: request.user, forced_variant: None },
        });
    }
    if let Ok(request) = serde_json::from_slice::<TeiRequest>(data) {
        check(RerankJob {
            model: request.model,
            query: request.query,
            documents: Arc::new(request.texts),
            top_n: request.top_n.and_then(|n| usize::try_from(n).ok()),
            raw_scores: request.raw_scores,
            truncation: Truncation { enabled: request.truncate.unwrap_or(false), ..Truncation::default() },
            routing: RoutingHints { unit: request.user, forced_variant: None },
        });
    }
});
