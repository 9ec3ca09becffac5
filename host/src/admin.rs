//! The admin listener. For now `/healthz` (the process answers) and
//! `/readyz` (ingest takes events: the journal is replayed, the server is
//! not draining, and the journal and store are healthy); the admin API
//! proper joins it here. Both stay open without a token, as the contract
//! says. Every error, unknown routes and other methods included, is the
//! contract's JSON error body.

use crate::api::ApiError;
use crate::ingest::Ingest;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// The admin routes. They read ingest's state so `/readyz` and ingest
/// answer from the same facts.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("GET") })
        .with_state(ingest)
}

/// 200 `{"ready":true}` when ingest takes events, else 503
/// `{"ready":false,"reason":…}` saying why (starting, shutting down, or a
/// failed journal or store).
async fn readyz(State(ingest): State<Arc<Ingest>>) -> Response {
    match ingest.ready_pipeline() {
        Ok(_) => Json(serde_json::json!({ "ready": true })).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": why.reason() })),
        )
            .into_response(),
    }
}
