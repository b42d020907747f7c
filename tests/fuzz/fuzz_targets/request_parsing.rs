//! Any bytes as a request body of each dialect: parsing (documents counted while parsing)
//! and the conversion into the checked job must never panic, and a job that exists must be
//! within every limit the conversion and the parse promise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rradistill::api::body::from_slice;
use rradistill::api::cohere::CohereRequest;
use rradistill::api::infinity::InfinityRequest;
use rradistill::api::tei::TeiRequest;
use rradistill::rerank::RerankJob;

const MAX_DOCUMENTS: usize = 64;

fn check(job: Result<RerankJob, rradistill::rerank::RerankError>) {
    if let Ok(job) = job {
        assert!(!job.query().trim().is_empty());
        assert!(!job.documents().is_empty() && job.documents().len() <= MAX_DOCUMENTS);
        assert_ne!(job.top_n(), Some(0));
        assert_ne!(job.truncation(true).max_document_tokens, Some(0));
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
