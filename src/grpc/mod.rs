//! The gRPC interface (`proto/rerank.proto`, package `rradistill.v1`), on its own port in
//! the same process as REST; TEI's gRPC re-rank interface (`tei.v1`) beside it ([`tei`]).
//!
//! A thin translation onto the same [`RerankService`] the REST handlers call, so batcher,
//! cache, limits and metrics are shared: a request converts with `TryFrom` into the one
//! checked [`RerankJob`]. Each error kind maps to one gRPC status, with the same message REST
//! gives (an inference failure carries the request id; the runtime's text goes to the log).
//! gRPC health checking (`grpc.health.v1`) reports SERVING while the service accepts work
//! and NOT_SERVING once draining starts; server reflection (v1 and v1alpha) lets grpcurl and
//! k6 discover the API.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::ApiKeys;
use crate::model::TruncationSide;
use crate::rerank::{JobSpec, RerankError, RerankJob, RerankOutcome, RerankService};
use crate::serving::registry::RoutingHints;

pub mod pb {
    tonic::include_proto!("rradistill.v1");

    /// The compiled descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rerank_descriptor");
}

pub mod tei;

use pb::rerank_server::Rerank;

/// The service name in spans (`otel.name`).
const SERVICE: &str = "rradistill.v1.Rerank";

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
            RerankError::Inference { .. } => Status::internal(message),
        }
    }
}

/// A failure as the client sees it: an inference failure is logged with the runtime's text
/// and the request id, and answered with the request id only.
fn status(error: RerankError, id: &str) -> Status {
    match error {
        RerankError::Inference { .. } => {
            tracing::error!(request_id = id, error = %error.detail(), "inference failed");
            Status::internal(format!("{error} (request id {id})"))
        }
        other => other.into(),
    }
}

impl TryFrom<pb::RerankRequest> for RerankJob {
    type Error = RerankError;

    fn try_from(request: pb::RerankRequest) -> Result<RerankJob, RerankError> {
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
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        JobSpec {
            model: nonempty(request.model),
            query: request.query,
            documents: request.documents,
            top_n: request.top_n.map(i64::from),
            raw_scores: request.raw_scores,
            truncate: Some(true),
            side,
            max_tokens_per_doc: request.max_tokens_per_doc.map(i64::from),
            max_chunks_per_doc: request.max_chunks_per_doc.map(i64::from),
            routing: RoutingHints {
                unit: nonempty(request.user),
                forced_variant: nonempty(request.force_variant),
            },
        }
        .try_into()
    }
}

/// Milliseconds as whole nanoseconds, the unit of both interfaces' times.
fn nanos(ms: f64) -> u64 {
    (ms * 1e6).round() as u64
}

fn response_from(
    id: String,
    outcome: RerankOutcome,
    documents: &[String],
    return_documents: bool,
) -> pb::RerankResponse {
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
            queue_time_ns: nanos(m.queue_ms),
            tokenization_time_ns: nanos(m.tokenization_ms),
            inference_time_ns: nanos(m.inference_ms),
            total_time_ns: nanos(m.total_ms),
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

/// One re-rank's span (one per message of a stream), a child of `caller`, the trace context
/// its metadata named ([`crate::telemetry::caller_trace`]), when there is one.
fn request_span(
    id: &str,
    service: &'static str,
    method: &'static str,
    caller: Option<&opentelemetry::Context>,
) -> tracing::Span {
    let span = tracing::info_span!("grpc_request", id = %id, method = method,
        otel.name = %format_args!("{service}/{method}"), otel.kind = "server");
    crate::telemetry::adopt(&span, caller);
    span
}

/// A call's request id (`x-request-id` metadata, else a new one) and its span, a child of
/// the trace context its metadata names.
fn call_span<T>(
    request: &Request<T>,
    service: &'static str,
    method: &'static str,
) -> (String, tracing::Span) {
    let id = request_id(request);
    let caller = crate::telemetry::caller_trace(request.metadata().as_ref());
    let span = request_span(&id, service, method, caller.as_ref());
    (id, span)
}

/// `request` checked into a job (a refusal counted in the metrics) and re-ranked, with the
/// job's documents (for responses that echo them); a failure as the client sees it.
async fn checked_rerank<R: TryInto<RerankJob, Error = RerankError>>(
    service: &RerankService,
    request: R,
    id: &str,
) -> Result<(Arc<Vec<String>>, RerankOutcome), Status> {
    let job: RerankJob = request
        .try_into()
        .inspect_err(|e| service.record_refused(e.kind()))?;
    let documents = job.documents().clone();
    let outcome = service.rerank(job).await.map_err(|e| status(e, id))?;
    Ok((documents, outcome))
}

async fn rerank_one(
    service: &RerankService,
    id: String,
    request: pb::RerankRequest,
) -> Result<pb::RerankResponse, Status> {
    let return_documents = request.return_documents;
    let (documents, outcome) = checked_rerank(service, request, &id).await?;
    Ok(response_from(id, outcome, &documents, return_documents))
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
        let (id, span) = call_span(&request, SERVICE, "Rerank");
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
        // Read once: every message's span joins the same caller trace.
        let caller = crate::telemetry::caller_trace(request.metadata().as_ref());
        let inbound = request.into_inner();
        let outbound = inbound.enumerate().then(move |(n, item)| {
            let service = service.clone();
            let id = format!("{id}-{n}");
            let span = request_span(&id, SERVICE, "RerankStream", caller.as_ref());
            async move {
                match item {
                    Ok(request) => rerank_one(&service, id, request).await,
                    Err(status) => Err(status),
                }
            }
            .instrument(span)
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
                    max_batch_padding: batch.max_batch_padding,
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
