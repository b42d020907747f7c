//! The HTTP side of [`crate::auth`]: a middleware in front of every route.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Dialect};
use crate::auth::Caller;

/// Paths probes and scrapers reach without a key.
const OPEN: [&str; 3] = ["/health", "/ready", "/metrics"];

pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if OPEN.contains(&path) {
        return next.run(request).await;
    }
    let dialect = if path == "/rerank" {
        Dialect::Tei
    } else {
        Dialect::Cohere
    };
    let caller = state.keys.identify(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let refusal = if path.starts_with("/admin/") {
        match caller {
            _ if !state.keys.admin_enabled() => Some(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no endpoint at {path}: admin endpoints are off (set ADMIN_API_KEY to turn them on)"),
            )),
            Caller::Admin => None,
            Caller::Client => Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this endpoint needs an admin key (ADMIN_API_KEY); the key sent is a client key",
            )),
            Caller::Anonymous | Caller::Unknown => Some(unauthenticated(caller)),
        }
    } else if state.keys.allows_client(caller) {
        None
    } else {
        Some(unauthenticated(caller))
    };
    match refusal {
        None => next.run(request).await,
        Some(error) => {
            state.service.record_refused(error.kind);
            let mut response = error.in_dialect(dialect).into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

fn unauthenticated(caller: Caller) -> ApiError {
    let message = match caller {
        Caller::Anonymous => "an API key is required: send `Authorization: Bearer <key>`",
        _ => "the API key is not valid: send `Authorization: Bearer <key>` with a configured key",
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}
