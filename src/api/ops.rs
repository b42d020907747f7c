//! Operational endpoints: liveness, readiness, what is served, metrics, and the API's own
//! OpenAPI description.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::model::ModelDescriptor;
use crate::rerank::Limits;
use crate::runtime::ORT_VERSION;
use crate::serving::catalog::{ExperimentEntry, ShadowEntry, VariantEntry};

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    /// `ok` (health), `ready` or `draining` (readiness).
    pub status: String,
}

/// Liveness: the process answers. Never depends on the model.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = StatusBody)))]
pub async fn health() -> Json<StatusBody> {
    Json(StatusBody {
        status: "ok".into(),
    })
}

/// Readiness: every model is loaded and warm, and shutdown has not begun.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = StatusBody),
        (status = 503, description = "Draining: shutdown has begun", body = StatusBody)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.service.is_accepting() {
        Json(StatusBody {
            status: "ready".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(StatusBody {
                status: "draining".into(),
            }),
        )
            .into_response()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchingInfo {
    /// Most tokens in one batch, padding included.
    pub max_batch_tokens: usize,
    /// Most pairs in one batch.
    pub max_batch_size: usize,
    /// The most of a batch's padded tokens that may be padding (absent: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_padding: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueInfo {
    pub pairs_waiting: usize,
    /// Tokens admitted for inference and not yet answered.
    pub tokens_in_flight: usize,
    /// Tokens held against `max_queue_tokens` (tokenizing, queued or in inference).
    pub tokens_held: usize,
    /// The memory cap: past it, requests get 429; a request larger than it gets 413.
    pub max_queue_tokens: usize,
    /// Requests admitted and not yet answered.
    pub requests_in_flight: usize,
    /// Requests in flight past which requests get 429.
    pub max_concurrent_requests: usize,
    /// The wait target: a request expected to wait longer for the queued work gets 429.
    pub max_queue_wait_ms: u64,
    /// How long the queued work takes to clear at the measured throughput (absent until
    /// the first batch is measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_queue_wait_ms: Option<f64>,
    /// Tokens per second the model is measured to score (absent until the first batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_tokens_per_second: Option<f64>,
    /// Answered requests' time from admission to their last score over what the queued
    /// tokens and the throughput predicted, moving mean plus `queue_wait_spread` standard
    /// deviations (1.0 until one is answered): the expected wait is scaled by it.
    pub wait_estimate_correction: f64,
    /// Standard deviations of lateness the correction adds to its mean
    /// (`--queue-wait-spread` or the model's `queue_wait_spread`).
    pub queue_wait_spread: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServedModelInfo {
    pub model: ModelDescriptor,
    pub batching: BatchingInfo,
    pub queue: QueueInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheInfo {
    pub enabled: bool,
    pub entries: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthInfo {
    /// How many client keys are configured (0: client endpoints are open).
    pub api_keys: usize,
    /// Whether admin endpoints are on.
    pub admin_endpoints: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InfoBody {
    pub service: String,
    pub version: String,
    pub onnxruntime_version: String,
    /// The model (or experiment) used when a request names none.
    pub default_model: Option<String>,
    pub models: Vec<ServedModelInfo>,
    /// Experiments: requests naming one are split between its variants by weight.
    pub experiments: Vec<ExperimentEntry>,
    /// Shadow comparisons: a sample of a model's requests also scored by another.
    pub shadows: Vec<ShadowEntry>,
    pub limits: Limits,
    pub cache: CacheInfo,
    pub auth: AuthInfo,
    pub uptime_secs: u64,
}

/// The models served, their execution providers, and every limit in force.
#[utoipa::path(get, path = "/info", tag = "operations",
    responses((status = 200, description = "What is served, and the limits", body = InfoBody)))]
pub async fn info(State(state): State<AppState>) -> Json<InfoBody> {
    let service = &state.service;
    let registry = service.registry();
    let models = registry
        .models()
        .iter()
        .map(|m| {
            let batch = m.batcher.config();
            ServedModelInfo {
                model: m.descriptor.clone(),
                batching: BatchingInfo {
                    max_batch_tokens: batch.max_batch_tokens,
                    max_batch_size: batch.max_batch_size,
                    max_batch_padding: batch.max_batch_padding,
                },
                queue: QueueInfo {
                    pairs_waiting: m.batcher.queue_len(),
                    tokens_in_flight: m.admission.queued_tokens(),
                    tokens_held: m.admission.held_tokens(),
                    max_queue_tokens: m.admission.max_tokens(),
                    requests_in_flight: m.admission.in_flight(),
                    max_concurrent_requests: m.admission.max_requests(),
                    max_queue_wait_ms: m.admission.limits().max_wait.as_millis() as u64,
                    expected_queue_wait_ms: m
                        .admission
                        .expected_wait()
                        .filter(|_| m.admission.throughput().is_some())
                        .map(|w| w.as_secs_f64() * 1e3),
                    throughput_tokens_per_second: m.admission.throughput(),
                    wait_estimate_correction: m.admission.correction(),
                    queue_wait_spread: m.admission.limits().spread,
                },
            }
        })
        .collect();
    Json(InfoBody {
        service: "rradistill".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        onnxruntime_version: crate::runtime::loaded_version()
            .unwrap_or(ORT_VERSION)
            .into(),
        default_model: registry.default_name(),
        models,
        experiments: registry.experiments().to_vec(),
        shadows: registry.shadows().to_vec(),
        limits: service.limits,
        cache: CacheInfo {
            enabled: service.cache.enabled(),
            entries: service.cache.entry_count(),
        },
        auth: AuthInfo {
            api_keys: state.keys.client_key_count(),
            admin_endpoints: state.keys.admin_enabled(),
        },
        uptime_secs: state.started.elapsed().as_secs(),
    })
}

/// One entry of `/v1/models` (the OpenAI / Infinity list shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelListEntry {
    /// The name requests put in `model`.
    pub id: String,
    /// `model`, `experiment` for a name that splits traffic between models, or `alias`.
    pub object: String,
    pub owned_by: String,
    /// The model's details (absent for experiments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ModelDescriptor>,
    /// An experiment's variants (absent for models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantEntry>>,
    /// For an alias (`object: alias`): the model or experiment it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_of: Option<String>,
    /// Whether a request without `model` lands here.
    pub default: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelListEntry>,
}

/// The names a request may put in `model`: every model served, every experiment, and every
/// alias (a served-model name such as a Cohere model's).
#[utoipa::path(get, path = "/v1/models", tag = "operations",
    responses((status = 200, description = "Models and experiments", body = ModelList)))]
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    let registry = state.service.registry();
    let default = registry.default_name();
    let mut data: Vec<ModelListEntry> = registry
        .models()
        .iter()
        .map(|m| ModelListEntry {
            id: m.name().to_string(),
            object: "model".into(),
            owned_by: "rradistill".into(),
            details: Some(m.descriptor.clone()),
            variants: None,
            alias_of: None,
            default: default.as_deref() == Some(m.name()),
        })
        .collect();
    data.extend(registry.experiments().iter().map(|e| ModelListEntry {
        id: e.name.clone(),
        object: "experiment".into(),
        owned_by: "rradistill".into(),
        details: None,
        variants: Some(e.variants.clone()),
        alias_of: None,
        default: default.as_deref() == Some(e.name.as_str()),
    }));
    data.extend(
        registry
            .aliases()
            .iter()
            .map(|(alias, target)| ModelListEntry {
                id: alias.clone(),
                object: "alias".into(),
                owned_by: "rradistill".into(),
                details: None,
                variants: None,
                alias_of: Some(target.clone()),
                default: false,
            }),
    );
    Json(ModelList {
        object: "list".into(),
        data,
    })
}

/// Prometheus metrics in the text exposition format (see the README's metrics table).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.service.metrics.render(),
    )
        .into_response()
}

/// This API's OpenAPI 3.1 description, with the limits of this instance filled in.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    match state.openapi.get() {
        Some(spec) => Json(spec.clone()).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the OpenAPI document is not built yet",
        )
            .into_response(),
    }
}
