//! The HTTP side of [`crate::auth`]: one table of who may call which path ([`rule`]), read
//! by the middleware in front of every route and by the OpenAPI document's security section,
//! so the two cannot disagree.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Dialect};
use crate::auth::Caller;

/// Who may call a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes and scrapers, which carry no keys.
    Open,
    /// Any client key (an admin key too); open when `API_KEY` is unset.
    Client,
    /// Only an admin key; the path does not exist when `ADMIN_API_KEY` is unset.
    Admin,
}

/// What the table says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRule {
    pub access: Access,
    /// The dialect its refusals are written in.
    pub dialect: Dialect,
}

/// Paths (exact, or a prefix when they end in `/`) and their rule; any other path is a
/// client path answering in the Cohere-style body.
const PATH_RULES: [(&str, Access, Dialect); 5] = [
    ("/health", Access::Open, Dialect::Cohere),
    ("/ready", Access::Open, Dialect::Cohere),
    ("/metrics", Access::Open, Dialect::Cohere),
    ("/rerank", Access::Client, Dialect::Tei),
    ("/admin/", Access::Admin, Dialect::Cohere),
];

/// The rule for `path`.
pub fn rule(path: &str) -> PathRule {
    PATH_RULES
        .iter()
        .find(|(pattern, _, _)| {
            path == *pattern || (pattern.ends_with('/') && path.starts_with(pattern))
        })
        .map_or(
            PathRule {
                access: Access::Client,
                dialect: Dialect::Cohere,
            },
            |&(_, access, dialect)| PathRule { access, dialect },
        )
}

pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let PathRule { access, dialect } = rule(path);
    if access == Access::Open {
        return next.run(request).await;
    }
    let caller = state.keys.identify(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let refusal = if access == Access::Admin {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_decides_every_path() {
        assert_eq!(rule("/health").access, Access::Open);
        assert_eq!(rule("/metrics").access, Access::Open);
        assert_eq!(
            rule("/rerank"),
            PathRule {
                access: Access::Client,
                dialect: Dialect::Tei
            }
        );
        assert_eq!(rule("/v2/rerank").dialect, Dialect::Cohere);
        assert_eq!(rule("/admin/reload").access, Access::Admin);
        assert_eq!(rule("/administrator").access, Access::Client);
        assert_eq!(rule("/healthz").access, Access::Client, "exact paths only");
    }
}
