//! Operational endpoints: liveness, readiness, what is served, and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::runtime::ORT_VERSION;

/// Alive: the process answers. Never depends on the model.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: every model is loaded and warm, and shutdown has not begun.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.service.is_accepting() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response()
    }
}

/// The models served, their execution providers, and every limit in force.
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let service = &state.service;
    let models: Vec<_> = service
        .registry
        .models()
        .iter()
        .map(|m| {
            json!({
                "model": m.ranker.descriptor(),
                "batching": {
                    "max_batch_tokens": m.batcher.config().max_batch_tokens,
                    "max_batch_size": m.batcher.config().max_batch_size,
                },
                "queue": {
                    "pairs_waiting": m.batcher.queue_len(),
                    "tokens_in_flight": m.admission.queued_tokens(),
                    "max_queue_tokens": m.admission.max_tokens(),
                },
            })
        })
        .collect();
    let default = service.registry.names().into_iter().next();
    Json(json!({
        "service": "rradistill",
        "version": env!("CARGO_PKG_VERSION"),
        "onnxruntime_version": ORT_VERSION,
        "default_model": default,
        "models": models,
        "limits": service.limits,
        "cache": {
            "enabled": service.cache.enabled(),
            "entries": service.cache.entry_count(),
        },
        "uptime_secs": state.started.elapsed().as_secs(),
    }))
}

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
