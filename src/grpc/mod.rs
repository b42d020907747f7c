//! The gRPC interface (`proto/rerank.proto`, package `rradistill.v1`), on its own port in
//! the same process as REST.
//!
//! A thin translation onto the same [`RerankService`] the REST handlers call, so batcher,
//! cache, limits and metrics are shared. Each error kind maps to one gRPC status, with the
//! same message REST gives. gRPC health checking (`grpc.health.v1`) reports SERVING while
//! the service accepts work and NOT_SERVING once draining starts; server reflection (v1 and
//! v1alpha) lets grpcurl and k6 discover the API.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::ApiKeys;
use crate::model::registry::RoutingHints;
use crate::model::{Truncation, TruncationSide};
use crate::rerank::{RerankError, RerankJob, RerankOutcome, RerankService};

pub mod pb {
    tonic::include_proto!("rradistill.v1");

    /// The compiled descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rerank_descriptor");
}

use pb::rerank_server::Rerank;

/// The gRPC service over the shared re-rank core.
pub struct GrpcRerank {
    pub service: Arc<RerankService>,
}

impl From<RerankError> for Status {
    fn from(error: RerankError) -> Status {
        let message = error.to_string();
        match error {
            RerankError::Validation(_) | RerankError::TooLarge(_) => {
                Status::invalid_argument(message)
            }
            RerankError::UnknownModel(_) => Status::not_found(message),
            RerankError::Overloaded { .. } => Status::resource_exhausted(message),
            RerankError::Timeout(_) => Status::deadline_exceeded(message),
            RerankError::Unavailable(_) => Status::unavailable(message),
            RerankError::Inference(_) => Status::internal(message),
        }
    }
}

fn job_from(request: &pb::RerankRequest) -> Result<(RerankJob, Arc<Vec<String>>), RerankError> {
    if request.top_n == Some(0) {
        return Err(RerankError::Validation("`top_n` must be at least 1".into()));
    }
    if request.max_tokens_per_doc == Some(0) {
        return Err(RerankError::Validation(
            "`max_tokens_per_doc` must be at least 1".into(),
        ));
    }
    let side = match pb::TruncationDirection::try_from(request.truncation_direction) {
        Ok(pb::TruncationDirection::Left) => TruncationSide::Left,
        Ok(pb::TruncationDirection::Right) => TruncationSide::Right,
        Err(_) => {
            return Err(RerankError::Validation(format!(
                "`truncation_direction` {} is not a known direction",
                request.truncation_direction
            )))
        }
    };
    let documents = Arc::new(request.documents.clone());
    let job = RerankJob {
        model: (!request.model.is_empty()).then(|| request.model.clone()),
        query: request.query.clone(),
        documents: documents.clone(),
        top_n: request.top_n.map(|n| n as usize),
        raw_scores: request.raw_scores,
        truncation: Truncation {
            enabled: true,
            side,
            max_document_tokens: request.max_tokens_per_doc.map(|n| n as usize),
        },
        routing: RoutingHints {
            unit: (!request.user.is_empty()).then(|| request.user.clone()),
            forced_variant: (!request.force_variant.is_empty())
                .then(|| request.force_variant.clone()),
        },
    };
    Ok((job, documents))
}

fn response_from(
    id: String,
    outcome: RerankOutcome,
    documents: &[String],
    return_documents: bool,
) -> pb::RerankResponse {
    let ns = |ms: f64| (ms * 1e6).round() as u64;
    let m = &outcome.meta;
    let assignment = outcome.assignment;
    pb::RerankResponse {
        id,
        model: outcome.model,
        results: outcome
            .results
            .iter()
            .map(|r| pb::RankedDocument {
                index: r.index as u32,
                relevance_score: r.score,
                document: return_documents.then(|| documents[r.index].clone()),
            })
            .collect(),
        meta: Some(pb::Meta {
            documents: m.documents as u32,
            input_tokens: m.input_tokens as u32,
            input_characters: m.input_characters as u32,
            documents_truncated: m.documents_truncated as u32,
            cache_hits: m.cache_hits as u32,
            batches: m.batches as u32,
            queue_time_ns: ns(m.queue_ms),
            tokenization_time_ns: ns(m.tokenization_ms),
            inference_time_ns: ns(m.inference_ms),
            total_time_ns: ns(m.total_ms),
            model_version: outcome.model_version,
        }),
        experiment: assignment
            .as_ref()
            .map(|a| a.experiment.clone())
            .unwrap_or_default(),
        variant: assignment
            .as_ref()
            .map(|a| a.variant.clone())
            .unwrap_or_default(),
        assigned_by: assignment
            .as_ref()
            .map(|a| a.by.as_str().to_string())
            .unwrap_or_default(),
    }
}

fn request_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

async fn rerank_one(
    service: &RerankService,
    id: String,
    request: pb::RerankRequest,
) -> Result<pb::RerankResponse, Status> {
    let (job, documents) = job_from(&request).inspect_err(|e| service.record_refused(e.kind()))?;
    let outcome = service.rerank(job).await?;
    Ok(response_from(
        id,
        outcome,
        &documents,
        request.return_documents,
    ))
}

/// The gRPC side of [`crate::auth`]: `authorization: Bearer KEY` metadata, 16 = UNAUTHENTICATED
/// when missing or unknown.
pub fn require_key(
    keys: Arc<ApiKeys>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if keys.allows_client(keys.identify(presented)) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "a valid API key is required: send `authorization: Bearer <key>` metadata",
            ))
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::RerankResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Rerank for GrpcRerank {
    async fn rerank(
        &self,
        request: Request<pb::RerankRequest>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let id = request_id(&request);
        let span = tracing::info_span!("grpc_request", id = %id, method = "Rerank");
        rerank_one(&self.service, id, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    type RerankStreamStream = ResponseStream;

    async fn rerank_stream(
        &self,
        request: Request<Streaming<pb::RerankRequest>>,
    ) -> Result<Response<Self::RerankStreamStream>, Status> {
        let id = request_id(&request);
        let service = self.service.clone();
        let inbound = request.into_inner();
        let outbound = inbound.enumerate().then(move |(n, item)| {
            let service = service.clone();
            let id = format!("{id}-{n}");
            async move {
                match item {
                    Ok(request) => rerank_one(&service, id, request).await,
                    Err(status) => Err(status),
                }
            }
        });
        // The first failure ends the stream with its status.
        let outbound = outbound.scan(false, |failed, item| {
            let emit = if *failed { None } else { Some(item) };
            if let Some(Err(_)) = &emit {
                *failed = true;
            }
            futures::future::ready(emit)
        });
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn info(
        &self,
        _request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let service = &self.service;
        let registry = service.registry();
        let models = registry
            .models()
            .iter()
            .map(|m| {
                let d = &m.descriptor;
                let batch = m.batcher.config();
                pb::ModelInfo {
                    name: d.name.clone(),
                    version: d.version.clone(),
                    kind: format!("{:?}", d.kind).to_lowercase(),
                    max_sequence_length: d.max_sequence_length as u32,
                    score_activation: format!("{:?}", d.score_activation).to_lowercase(),
                    execution_provider: d.execution_provider.clone(),
                    sessions: d.sessions as u32,
                    intra_threads: d.intra_threads as u32,
                    max_batch_tokens: batch.max_batch_tokens as u32,
                    max_batch_size: batch.max_batch_size as u32,
                    max_queue_tokens: m.admission.max_tokens() as u64,
                }
            })
            .collect();
        Ok(Response::new(pb::InfoResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            default_model: registry.default_name().unwrap_or_default(),
            models,
            max_documents: service.limits.max_documents as u32,
            max_query_tokens: service.limits.max_query_tokens as u32,
            request_timeout_ms: service.limits.request_timeout_ms,
        }))
    }
}
