//! Admin endpoints: operations that change the service's state. They need an admin key
//! (`ADMIN_API_KEY`) and answer 404 when none is configured (see [`crate::auth`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::serving::registry::ReloadReport;

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheCleared {
    /// Entries the cache held before it was cleared.
    pub entries_removed: u64,
}

/// Empties the score cache (e.g. after changing a model's files in place without a new version).
#[utoipa::path(post, path = "/admin/cache/clear", tag = "admin",
    responses(
        (status = 200, description = "The cache is empty", body = CacheCleared),
        (status = 401, description = "No key, or an unknown key", body = ErrorBody),
        (status = 403, description = "A client key, not an admin key", body = ErrorBody),
        (status = 404, description = "Admin endpoints are off (no ADMIN_API_KEY)", body = ErrorBody)))]
pub async fn clear_cache(State(state): State<AppState>) -> Json<CacheCleared> {
    let entries_removed = state.service.cache.clear();
    tracing::info!(entries_removed, "score cache cleared by an admin request");
    Json(CacheCleared { entries_removed })
}

/// Reloads the models file (or model folder), as SIGHUP does: changed and new models are
/// loaded and warmed beside the old ones and swapped in atomically, without dropping a
/// request in flight; if any fails to load or validate, nothing changes (409, saying why).
#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "The new models serve", body = ReloadReport),
        (status = 401, description = "No key, or an unknown key", body = ErrorBody),
        (status = 403, description = "A client key, not an admin key", body = ErrorBody),
        (status = 404, description = "Admin endpoints are off (no ADMIN_API_KEY)", body = ErrorBody),
        (status = 409, description = "The new models failed to load; the old ones keep serving", body = ErrorBody)))]
pub async fn reload(State(state): State<AppState>) -> Result<Json<ReloadReport>, ApiError> {
    match state.service.reload().await {
        Ok(report) => {
            tracing::info!(kept = ?report.kept, loaded = ?report.loaded, removed = ?report.removed,
                "models reloaded by an admin request");
            Ok(Json(report))
        }
        Err(error) => {
            let message = format!("reload failed; the previous models keep serving: {error:#}");
            tracing::error!(error = %message, "reload failed");
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "reload_failed",
                message,
            ))
        }
    }
}
