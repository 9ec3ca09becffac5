//! The JSON error shape every HTTP module answers with:
//! `{"error":"<code>","message":"<human text>"}`. Messages are written for
//! the client and never carry secrets, stored data or internal paths.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer: status, machine code, human message, optional headers.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable code, e.g. `signature_mismatch`.
    pub code: &'static str,
    /// What the client should know.
    pub message: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
    /// Close the connection after answering (413: the rest of an oversized
    /// body is not read).
    pub close: bool,
}

impl ApiError {
    /// An error with no extra headers.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// 404 for a route that does not exist (every listener's fallback).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 405 for a route that exists, with the method it takes.
    pub fn method_not_allowed(allowed: &'static str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("use {allowed}"),
        )
    }

    /// The same answer, closing the connection after it (the rest of the
    /// request body will not be read).
    pub fn closing(self) -> Self {
        Self {
            close: true,
            ..self
        }
    }

    /// 503: try again later (starting, draining, store failure, overload).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert("retry-after", HeaderValue::from(secs));
        }
        if self.close {
            headers.insert("connection", HeaderValue::from_static("close"));
        }
        response
    }
}
