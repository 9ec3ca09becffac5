//! The admin listener. For now `/healthz` (the process answers) and
//! `/readyz` (ingest takes events: the journal is replayed, the server is
//! not draining, and the journal and store are healthy); the admin API
//! proper joins it here. Both stay open without a token, as the contract
//! says. Every error, unknown routes and other methods included, is the
//! contract's JSON error body.

use crate::api::ApiError;
use crate::config::SecretString;
use crate::delivery::Engine;
use crate::ingest::Ingest;
use crate::kv::KvStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What the admin API reads and steers.
pub struct Admin {
    /// Ingest's state: `/readyz` and ingest answer from the same facts.
    pub ingest: Arc<Ingest>,
    /// The delivery engine, once the plugins folder is scanned.
    pub engine: std::sync::OnceLock<Engine>,
    /// The plugins' key-value namespaces.
    pub kv: KvStore,
    /// The bearer token every admin route but `/healthz` and `/readyz`
    /// needs, when configured.
    pub token: Option<SecretString>,
}

/// The admin routes.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/admin/stats", get(stats))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("GET") })
        .with_state(admin)
}

async fn stats(State(admin): State<Arc<Admin>>) -> Response {
    match admin.engine.get() {
        Some(engine) => Json(engine.stats()).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "starting", "message": "the plugins are still loading" })),
        )
            .into_response(),
    }
}

/// 200 `{"ready":true}` when ingest takes events, else 503
/// `{"ready":false,"reason":…}` saying why (starting, shutting down, or a
/// failed journal or store).
async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    match admin.ingest.ready_pipeline() {
        Ok(_) => Json(serde_json::json!({ "ready": true })).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": why.reason() })),
        )
            .into_response(),
    }
}
