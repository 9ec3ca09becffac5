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
