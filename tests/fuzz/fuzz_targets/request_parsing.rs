//! Any bytes as a request body of each dialect: parsing (documents counted while parsing)
//! and the conversion into the checked job must never panic, and a job that exists must be
//! within every limit the conversion and the parse promise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rradistill::api::body::from_slice;
use rradistill::api::cohere::CohereRequest;
use rradistill::api::infinity::InfinityRequest;
use rradistill::api::tei::TeiRequest;
use rradistill::rerank::{Limits, RerankJob};

const MAX_DOCUMENTS: usize = 64;

fn check(job: Result<RerankJob, rradistill::rerank::RerankError>) {
    if let Ok(job) = job {
        assert!(!job.query().trim().is_empty());
        assert!(!job.documents().is_empty() && job.documents().len() <= MAX_DOCUMENTS);
        assert_ne!(job.top_n(), Some(0));
        let limits = Limits {
            max_documents: MAX_DOCUMENTS,
            max_query_tokens: 0,
            max_body_bytes: 1 << 20,
            request_timeout_ms: 1000,
            auto_truncate: true,
            max_chunks_per_document: 8,
        };
        let truncation = job.truncation(&limits);
        assert_ne!(truncation.max_document_tokens, Some(0));
        // At least one chunk, and never more than the server allows.
        assert!((1..=8).contains(&truncation.max_chunks));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = from_slice::<CohereRequest>(data, MAX_DOCUMENTS) {
        check(RerankJob::try_from(request));
    }
    if let Ok(request) = from_slice::<TeiRequest>(data, MAX_DOCUMENTS) {
        check(RerankJob::try_from(request));
    }
    if let Ok(request) = from_slice::<InfinityRequest>(data, MAX_DOCUMENTS) {
        check(RerankJob::try_from(request));
    }
});
