//! Admin endpoints: operations that change the service's state. They need an admin key
//! (`ADMIN_API_KEY`) and answer 404 when none is configured (see [`crate::auth`]).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::AppState;

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
