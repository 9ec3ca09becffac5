//! The admin listener. For now `/healthz` (the process answers) and
//! `/readyz` (ingest takes requests: the journal is replayed and the server
//! is not draining); the admin API proper joins it here. Both stay open
//! without a token, as the contract says. Every error, unknown routes and
//! other methods included, is the contract's JSON error body.

use crate::api::ApiError;
use crate::ingest::Readiness;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// The admin routes.
pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.is_ready();
                async move {
                    let status = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, Json(serde_json::json!({ "ready": ready }))).into_response()
                }
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET",
            )
        })
}
