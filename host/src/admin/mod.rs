//! The admin listener: `/healthz` (the process answers), `/readyz` (ingest
//! takes events) and the admin API (DESIGN.md "Admin API"):
//!
//! - [`auth`]: the bearer token every route but `/healthz` and `/readyz`
//!   needs when one is configured;
//! - [`plugins`]: the plugins (list, one, upload, delete, pause, resume,
//!   reload) and their key-value entries;
//! - [`events`]: stored events with their deliveries and attempts, and
//!   replay;
//! - [`dead_letters`]: listing, replaying (one or in bulk) and deleting
//!   dead letters;
//! - `GET /admin/stats`: the engine's counts;
//! - `GET /metrics`: the same and more in Prometheus text
//!   ([`crate::metrics`]), behind the token like the rest.
//!
//! Every error, unknown routes and other methods included, is the
//! contract's JSON error body `{"error":<code>,"message":<text>}`. Until the
//! plugins folder is scanned (the engine is not started yet), admin routes
//! answer 503 `starting`.
//!
//! Listings page with `limit` (default 100, at most 1000) and `cursor` (the
//! `next_cursor` of the previous page; `null` when there is nothing more).
//! Every scan of sled is capped, so a filter matching nothing answers
//! quickly with a cursor to go on from.

mod auth;
mod dead_letters;
mod events;
mod plugins;

use crate::api::ApiError;
use crate::config::SecretString;
use crate::delivery::Engine;
use crate::ingest::Ingest;
use crate::kv::KvStore;
use crate::store::StoreError;
use axum::extract::rejection::QueryRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
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
    /// What `/metrics` renders.
    pub metrics: crate::metrics::Metrics,
}

impl Admin {
    /// The engine, or 503 `starting` while the plugins are still loading.
    fn engine(&self) -> Result<&Engine, ApiError> {
        self.engine.get().ok_or_else(|| {
            ApiError::unavailable(
                "starting",
                "the server is starting: the plugins are still loading",
            )
        })
    }
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
        .route("/metrics", get(metrics))
        .route("/admin/plugins", get(plugins::list))
        .route(
            "/admin/plugins/{name}",
            get(plugins::one)
                .put(plugins::upload)
                .delete(plugins::delete)
                .layer(DefaultBodyLimit::max(plugins::MAX_UPLOAD_BYTES)),
        )
        .route("/admin/plugins/{name}/pause", post(plugins::pause))
        .route("/admin/plugins/{name}/resume", post(plugins::resume))
        .route("/admin/plugins/{name}/reload", post(plugins::reload))
        .route("/admin/plugins/{name}/kv", get(plugins::kv))
        .route("/admin/events", get(events::list))
        .route("/admin/events/{event_id}", get(events::one))
        .route("/admin/events/{event_id}/replay", post(events::replay))
        .route("/admin/dead-letters", get(dead_letters::list))
        .route(
            "/admin/dead-letters/replay",
            post(dead_letters::replay_matching),
        )
        .route(
            "/admin/dead-letters/{id}",
            get(dead_letters::one).delete(dead_letters::delete),
        )
        .route(
            "/admin/dead-letters/{id}/replay",
            post(dead_letters::replay_one),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            // axum adds the `Allow` header listing what the route takes.
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see the Allow header)",
            )
        })
        // On every route and the fallbacks: unknown paths need the token
        // too, so they do not reveal which routes exist.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&admin),
            auth::require_token,
        ))
        .with_state(admin)
}

async fn stats(State(admin): State<Arc<Admin>>) -> Result<Response, ApiError> {
    Ok(Json(admin.engine()?.stats()).into_response())
}

/// Prometheus text. While the plugins are still loading it answers what
/// ingest counted so far (no 503: a scraper would record the process as
/// down), without the engine's state.
async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let text = admin.metrics.render(admin.engine.get());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
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

// ------------------------------------------------------------- shared bits

/// Default page size of every listing.
const DEFAULT_LIMIT: usize = 100;
/// Largest page of every listing.
const MAX_LIMIT: usize = 1000;
/// Most records one listing request reads while filtering: a filter that
/// matches nothing must not walk the whole store.
const MAX_SCAN: usize = 10_000;

/// 400 `bad_request`.
fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// 404 `not_found` for a thing that does not exist (the route does).
fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// 503 `store_unavailable`; sled's own text is logged, not sent (it can
/// name host paths).
fn store_failed(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "admin API: the store failed");
    ApiError::unavailable("store_unavailable", "the store failed; retry later")
}

/// The query string, or 400 when it cannot be read (bad percent-encoding,
/// a parameter given twice).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| bad_request(format!("bad query string: {}", e.body_text())))
}

/// A query parameter, with an empty value (`?cursor=`) meaning absent.
fn param(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// The `limit` parameter: absent or empty is [`DEFAULT_LIMIT`], more than
/// [`MAX_LIMIT`] is [`MAX_LIMIT`], 0 or not a number is 400.
fn page_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<u64>() {
            Ok(0) | Err(_) => Err(bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}"
            ))),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
        },
    }
}

/// Bytes as JSON: a UTF-8 string as itself (`"utf8"`), anything else in
/// standard base64 (`"base64"`). Returns (value, encoding).
fn text_or_base64(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => {
            use base64::Engine as _;
            (
                base64::engine::general_purpose::STANDARD.encode(bytes),
                "base64",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_clamp_and_refuse() {
        assert_eq!(page_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(page_limit(Some("")).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(page_limit(Some("2")).ok(), Some(2));
        assert_eq!(page_limit(Some("1000")).ok(), Some(1000));
        assert_eq!(page_limit(Some("1001")).ok(), Some(MAX_LIMIT));
        assert_eq!(
            page_limit(Some("99999999999999999999999")).map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST),
            "beyond u64 is not a number"
        );
        for bad in ["0", "-1", "ten", "1.5", " 3"] {
            let e = page_limit(Some(bad)).expect_err(bad);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "bad_request"));
        }
    }

    #[test]
    fn empty_parameters_are_absent() {
        assert_eq!(param(Some(String::new())), None);
        assert_eq!(param(None), None);
        assert_eq!(param(Some("x".into())).as_deref(), Some("x"));
    }

    #[test]
    fn bytes_are_text_or_base64() {
        assert_eq!(text_or_base64(b"{\"a\":1}"), ("{\"a\":1}".into(), "utf8"));
        assert_eq!(text_or_base64(&[0xff, 0x00]), ("/wA=".into(), "base64"));
    }
}
