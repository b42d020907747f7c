//! The HTTP interface: one module per wire dialect, kept thin.
//!
//! - [`cohere`]: `POST /v1/rerank` and `/v2/rerank`, the Cohere/Jina shape (Cohere's SDK,
//!   v1 and v2 clients, unchanged).
//! - [`tei`]: `POST /rerank`: Hugging Face TEI's shape, or, when the body carries `documents`
//!   instead of `texts`, Infinity's ([`infinity`]), so both peers' clients work unchanged.
//! - [`ops`]: `/health`, `/ready`, `/info`, `/v1/models`, `/metrics`, `/openapi.json`;
//!   [`admin`]: state-changing operations behind the admin key.
//! - [`body`]: reading a body as JSON, documents counted while parsing;
//!   [`error`]: the error bodies (one per dialect) and the status of each error kind;
//!   [`auth`]: the one table of who may call which path, and the middleware that applies it.
//!
//! Each dialect converts its request into the one checked [`RerankJob`] with `TryFrom`, in
//! its own module, and answers from the [`crate::rerank::RerankOutcome`]. Routes and the
//! OpenAPI document come from the same `#[utoipa::path]` annotations ([`routes`]), so the two
//! cannot drift apart; `tests/openapi.rs` checks real responses against the document.
//!
//! Cross-cutting layers, outermost first: request ids (`x-request-id`, generated or
//! propagated), `Authorization` marked sensitive (before anything can log it), a tracing span
//! per request carrying the id, a panic guard that turns a bug into a 500 instead of a
//! dropped connection, and a body-size limit.

pub mod admin;
pub mod auth;
pub mod body;
pub mod cohere;
pub mod error;
pub mod infinity;
pub mod ops;
pub mod tei;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::response::Response;
use axum::Router;
use serde::Deserialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ApiKeys;
use crate::rerank::{Limits, PairMeans, RerankError, RerankJob, RerankOutcome, RerankService};

pub use error::{ApiError, Dialect, ErrorBody, TeiErrorBody};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<RerankService>,
    pub started: Instant,
    /// The OpenAPI document, built with the router from the same handler annotations.
    pub openapi: Arc<OnceLock<serde_json::Value>>,
    pub keys: Arc<ApiKeys>,
}

impl AppState {
    pub fn new(service: Arc<RerankService>, keys: ApiKeys) -> AppState {
        AppState {
            service,
            started: Instant::now(),
            openapi: Arc::new(OnceLock::new()),
            keys: Arc::new(keys),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "rradistill", description = "Re-ranking service for students distilled from an LLM's ranking (RRADistill). \
Cohere/Jina-style (`/v1/rerank`, `/v2/rerank`), TEI-style and Infinity-style (`/rerank`) re-ranking, plus operational endpoints."),
    tags((name = "rerank", description = "Score documents against a query"),
         (name = "operations", description = "Health, readiness, information, metrics"),
         (name = "admin", description = "State-changing operations; need ADMIN_API_KEY")),
    components(schemas(ErrorBody, TeiErrorBody))
)]
struct ApiDoc;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes and the OpenAPI document, both from the handlers' `#[utoipa::path]`
/// annotations, so a route cannot exist without its documentation.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(cohere::rerank_v1))
        .routes(routes!(cohere::rerank_v2))
        .routes(routes!(tei::rerank))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::info))
        .routes(routes!(ops::models))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(admin::clear_cache))
        .routes(routes!(admin::reload))
        .split_for_parts()
}

/// The OpenAPI document with this instance's limits written into the schemas.
pub fn openapi_document(
    spec: utoipa::openapi::OpenApi,
    limits: &Limits,
    keys: &ApiKeys,
) -> serde_json::Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    for (schema, field) in [
        ("CohereRequest", "documents"),
        ("TeiRequest", "texts"),
        ("InfinityRequest", "documents"),
    ] {
        if let Some(property) = schemas[schema]["properties"][field].as_object_mut() {
            property.insert("maxItems".into(), limits.max_documents.into());
        }
    }
    let description = doc["info"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    doc["info"]["description"] = format!(
        "{description}\n\nLimits of this instance: at most {} documents per request, {} bytes per body, \
         queries of at most {} tokens (0 = half the model's window, a late model's query window), a deadline of {} ms.",
        limits.max_documents, limits.max_body_bytes, limits.max_query_tokens, limits.request_timeout_ms
    )
    .into();
    doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
    add_security(&mut doc, keys.required());
    doc
}

/// Bearer keys in the document, from the same table the middleware applies
/// ([`auth::rule`]): open probes need none; client operations may answer 401 when `API_KEY`
/// is set (without keys they declare the key optional); admin ones always need
/// `ADMIN_API_KEY`.
fn add_security(doc: &mut serde_json::Value, keys_required: bool) {
    use serde_json::json;
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "API_KEY for client endpoints, ADMIN_API_KEY for /admin/*; none needed when unset"}});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let rule = auth::rule(path);
        if rule.access == auth::Access::Open {
            continue;
        }
        let body = match rule.dialect {
            Dialect::Tei => "TeiErrorBody",
            Dialect::Cohere => "ErrorBody",
        };
        let optional = !keys_required && rule.access == auth::Access::Client;
        for operation in operations
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            operation["security"] = if optional {
                json!([{"bearer": []}, {}])
            } else {
                json!([{"bearer": []}])
            };
            let responses = &mut operation["responses"];
            if responses.get("401").is_none() {
                responses["401"] = json!({"description": "No API key, or an unknown one (when API_KEY is set)",
                    "headers": {"www-authenticate": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.service.limits.max_body_bytes;
    let (routes, spec) = routes();
    let _ = state
        .openapi
        .set(openapi_document(spec, &state.service.limits, &state.keys));
    let auth = axum::middleware::from_fn_with_state(state.clone(), auth::require_key);
    // Each `.layer` wraps the ones before it: the last is the outermost.
    routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(auth)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or("");
                    // `Sensitive` when a key was sent: the layer outside this one has marked it.
                    let authorization = request.headers().get(header::AUTHORIZATION);
                    let span = tracing::info_span!("request", id = %id, method = %request.method(),
                path = %request.uri().path(), authorization = ?authorization,
                otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
                otel.kind = "server", http.response.status_code = tracing::field::Empty);
                    crate::telemetry::adopt_caller_trace(&span, request.headers());
                    span
                })
                .on_response(
                    |response: &Response, latency: std::time::Duration, span: &tracing::Span| {
                        span.record("http.response.status_code", response.status().as_u16());
                        DefaultOnResponse::default().on_response(response, latency, span);
                    },
                ),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// An optional integer that also accepts a float with no fractional part (`1.0`), as JSON
/// Schema's `integer` does; other floats are refused with a message naming the value.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(D::Error::custom(format!("{n} is not a whole number"))),
        },
    }
}

/// Counts a request refused in the API layer and passes its error on.
pub fn refuse(state: &AppState, error: ApiError) -> ApiError {
    state.service.record_refused(error.kind);
    error
}

/// Headers that route a request in an experiment: a user or session id (sticky assignment,
/// when the body has no `user`) and a forced variant (debugging).
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
pub const FORCE_VARIANT: HeaderName = HeaderName::from_static("x-rradistill-variant");

/// A converted request as a job, with who is asking (the body's `user`, else `x-user-id`,
/// else `x-session-id`) and any forced variant from the headers; a conversion that failed is
/// counted and answered.
pub fn job(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    converted: Result<RerankJob, RerankError>,
) -> Result<RerankJob, ApiError> {
    let header = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let job = converted.map_err(|error| refuse(state, ApiError::from(error)))?;
    Ok(job.with_routing_defaults(
        header(&USER_ID).or_else(|| header(&SESSION_ID)),
        header(&FORCE_VARIANT),
    ))
}

/// The id the request-id layer gave this request (or the client sent).
pub fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Runs `job` and answers a failure as the client should see it (see [`ApiError::from_rerank`]).
pub async fn rerank(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    job: RerankJob,
) -> Result<RerankOutcome, ApiError> {
    state
        .service
        .rerank(job)
        .await
        .map_err(|error| ApiError::from_rerank(error, &request_id(headers)))
}

/// TEI's timing headers, and the experiment's assignment when one routed the request.
pub fn add_outcome_headers(response: &mut Response, outcome: &RerankOutcome) {
    add_timing_headers(response, outcome);
    if let Some(a) = &outcome.assignment {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-rradistill-experiment", a.experiment.as_str()),
            ("x-rradistill-variant", a.variant.as_str()),
            ("x-rradistill-assigned-by", a.by.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

/// What TEI reports of a re-rank, in its headers (REST) and its gRPC `Metadata`, as TEI
/// computes it: the time in the service, and the queue, tokenization and inference times as
/// means over the scored pairs (TEI reports each text's own, averaged).
#[derive(Debug, Clone, Default)]
pub struct TeiTiming {
    pub provider: String,
    pub total_ms: f64,
    pub characters: usize,
    pub tokens: usize,
    pub means: PairMeans,
}

impl TeiTiming {
    pub fn of(outcome: &RerankOutcome) -> TeiTiming {
        TeiTiming {
            provider: outcome.execution_provider.clone(),
            total_ms: outcome.meta.total_ms,
            characters: outcome.meta.input_characters,
            tokens: outcome.meta.input_tokens,
            means: outcome.pair_means,
        }
    }

    /// TEI's headers (`x-compute-time`, `x-queue-time`, ...), times in whole milliseconds.
    pub fn headers(&self) -> [(&'static str, String); 8] {
        let ms = |v: f64| format!("{}", v.round() as u64);
        [
            ("x-compute-type", self.provider.clone()),
            ("x-compute-time", ms(self.total_ms)),
            ("x-compute-characters", self.characters.to_string()),
            ("x-compute-tokens", self.tokens.to_string()),
            ("x-total-time", ms(self.total_ms)),
            ("x-tokenization-time", ms(self.means.tokenization_ms)),
            ("x-queue-time", ms(self.means.queue_ms)),
            ("x-inference-time", ms(self.means.inference_ms)),
        ]
    }
}

/// TEI's headers ([`TeiTiming`]), and the request's cache hits and documents cut.
fn add_timing_headers(response: &mut Response, outcome: &RerankOutcome) {
    let meta = &outcome.meta;
    let headers = response.headers_mut();
    let ours = [
        ("x-cache-hits", meta.cache_hits.to_string()),
        (
            "x-documents-truncated",
            meta.documents_truncated.to_string(),
        ),
    ];
    for (name, value) in TeiTiming::of(outcome).headers().into_iter().chain(ours) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}
