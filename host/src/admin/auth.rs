//! The admin token. When `server.admin_token` is set, every request on the
//! admin listener except `/healthz` and `/readyz` must carry
//! `Authorization: Bearer <token>`; `/metrics`, unknown routes and the 503
//! answers while starting included.
//!
//! A missing or malformed header and a wrong token both get 401
//! `unauthorized` with `WWW-Authenticate: Bearer` (RFC 6750: a wrong token
//! is `invalid_token`, which is a 401 too), so a client only needs one
//! case. The comparison is constant-time: both sides are hashed with
//! SHA-256 and the digests compared byte by byte without an early exit, so
//! the time taken says nothing about the token, not even its length. The
//! token is never logged, and neither is what a client sent.

use super::Admin;
use crate::api::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Routes that never need the token (DESIGN.md: probes must work without
/// credentials).
const OPEN: [&str; 2] = ["/healthz", "/readyz"];

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization` header, or not a `Bearer` one.
    Missing,
    /// A bearer token that is not the configured one.
    Wrong,
}

/// The middleware: pass open routes and requests with the right token.
pub(super) async fn require_token(
    State(admin): State<Arc<Admin>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &admin.token else {
        return next.run(request).await;
    };
    if OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match check(
        token.expose().as_bytes(),
        request.headers().get(header::AUTHORIZATION),
    ) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refuse(refusal),
    }
}

fn refuse(refusal: Refusal) -> Response {
    let (message, challenge) = match refusal {
        Refusal::Missing => (
            "this route needs `Authorization: Bearer <admin token>`",
            "Bearer",
        ),
        Refusal::Wrong => (
            "the bearer token is not the admin token",
            "Bearer error=\"invalid_token\"",
        ),
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Check an `Authorization` header against the expected token.
fn check(expected: &[u8], header: Option<&HeaderValue>) -> Result<(), Refusal> {
    let value = header.ok_or(Refusal::Missing)?.as_bytes();
    let presented = bearer(value).ok_or(Refusal::Missing)?;
    if digests_equal(expected, presented) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235), or
/// `None` for another scheme or an empty token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `a == b`, in time that depends on neither: compares SHA-256
/// digests (always 32 bytes) by OR-ing the XOR of every byte pair.
fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    let diff = da
        .iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).expect("header")
    }

    #[test]
    fn the_right_token_passes() {
        assert_eq!(check(b"s3cret", Some(&header("Bearer s3cret"))), Ok(()));
        assert_eq!(check(b"s3cret", Some(&header("bearer s3cret"))), Ok(()));
        assert_eq!(check(b"s3cret", Some(&header("BEARER  s3cret "))), Ok(()));
    }

    #[test]
    fn missing_and_malformed_headers_are_missing() {
        assert_eq!(check(b"s3cret", None), Err(Refusal::Missing));
        for v in [
            "",
            "s3cret",
            "Basic czNjcmV0",
            "Bearer",
            "Bearer ",
            "Bearers3cret",
        ] {
            assert_eq!(
                check(b"s3cret", Some(&header(v))),
                Err(Refusal::Missing),
                "{v:?}"
            );
        }
    }

    #[test]
    fn wrong_tokens_are_wrong() {
        for v in [
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer S3CRET",
            "Bearer other",
        ] {
            assert_eq!(
                check(b"s3cret", Some(&header(v))),
                Err(Refusal::Wrong),
                "{v:?}"
            );
        }
    }

    #[test]
    fn digests_compare_whole_values() {
        assert!(digests_equal(b"", b""));
        assert!(digests_equal(b"abc", b"abc"));
        assert!(!digests_equal(b"abc", b"abd"));
        assert!(!digests_equal(b"abc", b"abcd"), "a prefix is not a match");
        assert!(!digests_equal(b"abc", b""));
    }

    #[test]
    fn refusals_carry_a_bearer_challenge() {
        for r in [Refusal::Missing, Refusal::Wrong] {
            let response = refuse(r);
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
    }
}
