//! `POST /webhooks/{source}`: the front door.
//!
//! In order, as the contract lists it: readiness (replayed, not draining,
//! journal and store healthy), source lookup, client allowlist, body size
//! (decided while reading, within a deadline), signature over the raw bytes,
//! rate limit (verified requests only), Slack's URL handshake, event id and
//! kind (and the split of a batch, capped), then [`Pipeline::accept`], which
//! answers only once the event is durable. No plugin runs here and nothing a
//! client sends can panic or produce a 500: every refusal is the contract's
//! JSON error body.
//!
//! Every answer is counted by source and status, and every 200's latency
//! observed ([`crate::metrics`]), through handles resolved when the source
//! was configured: a few atomic adds per request, no lookup, no lock.

use crate::access;
use crate::api::ApiError;
use crate::clock;
use crate::event::StoredEvent;
use crate::identify::{self, HeaderRules, Identity};
use crate::metrics::{IngestMetrics, SourceMetrics};
use crate::pipeline::{Pipeline, PipelineError};
use crate::ratelimit::RateLimit;
use crate::verify::{self, Scheme, Secret};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One configured source, ready to check requests.
#[derive(Debug)]
pub struct Source {
    /// The `{source}` in the URL.
    pub name: String,
    /// Its signature scheme.
    pub scheme: Scheme,
    /// Its secrets (several during a rotation).
    pub secrets: Vec<Secret>,
    /// Timestamp tolerance, both ways.
    pub tolerance_secs: u64,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// JSON pointer to an array: one event per element.
    pub split: Option<String>,
    /// Where generic schemes read the id and kind.
    pub rules: HeaderRules,
    /// The headers stored with its events ([`kept_header_names`]), worked
    /// out once rather than per request.
    pub kept_headers: Vec<HeaderName>,
    /// Client addresses allowed (empty: any).
    pub allow_ips: Vec<IpNet>,
    /// Verified requests per second, if limited.
    pub rate_limit: Option<RateLimit>,
    /// Its answers, counted by status.
    pub metrics: SourceMetrics,
}

/// Whether ingest takes requests: not before the journal is replayed, not
/// while draining for shutdown.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Replay (and whatever else start needs) is done.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Shutdown started: answer 503 so providers retry elsewhere or later.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Taking requests now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Shutdown started; reported apart from "starting" so `/readyz` says
    /// which.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Why ingest is not taking events right now. Ingest (503) and `/readyz`
/// (503 with [`NotReady::reason`]) ask the same question, so they never
/// disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The journal is still being replayed into the store.
    Starting,
    /// Shutdown started.
    Draining,
    /// The journal or the store failed ([`Pipeline::unhealthy`]'s reason):
    /// nothing can be stored durably.
    Unhealthy(&'static str),
}

impl NotReady {
    /// For operators (`/readyz`): never a secret, a payload or a path.
    pub fn reason(&self) -> &'static str {
        match self {
            NotReady::Starting => "starting: the ingest journal is being replayed",
            NotReady::Draining => "shutting down",
            NotReady::Unhealthy(why) => why,
        }
    }
}

/// Everything the ingest handler needs. Shared by all requests.
pub struct Ingest {
    /// Sources by name.
    pub sources: HashMap<String, Arc<Source>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Durability and dedupe: set once the journal is replayed. Until then
    /// ingest answers 503.
    pub pipeline: std::sync::OnceLock<Pipeline>,
    /// Start and shutdown state.
    pub readiness: Arc<Readiness>,
    /// Requests being handled at once; past it, 503 instead of unbounded
    /// memory.
    pub in_flight: Semaphore,
    /// How long a request's body may take to arrive once its headers are in
    /// (then 408): a stalled client must not keep its `in_flight` slot.
    pub body_read_timeout: Duration,
    /// Answers for no configured source, and acknowledgement latency.
    pub metrics: IngestMetrics,
}

impl Ingest {
    /// The configured source a `/webhooks/{source}` path names, if any.
    fn source_of(&self, path: &Result<Path<String>, PathRejection>) -> Option<&Arc<Source>> {
        path.as_ref()
            .ok()
            .and_then(|Path(name)| self.sources.get(name))
    }

    /// Where an answer about `source` is counted (no source: `(unknown)`).
    fn counters_of<'a>(&'a self, source: Option<&'a Arc<Source>>) -> &'a SourceMetrics {
        source.map_or(&self.metrics.unknown_source, |s| &s.metrics)
    }

    /// The pipeline, when ingest takes events now; else why not.
    pub fn ready_pipeline(&self) -> Result<&Pipeline, NotReady> {
        if self.readiness.is_draining() {
            return Err(NotReady::Draining);
        }
        let pipeline = match self.pipeline.get() {
            Some(p) if self.readiness.is_ready() => p,
            _ => return Err(NotReady::Starting),
        };
        match pipeline.unhealthy() {
            Some(why) => Err(NotReady::Unhealthy(why)),
            None => Ok(pipeline),
        }
    }
}

/// An oversized body is read on and discarded up to this many times the
/// limit (the first `limit` bytes included), or [`DRAIN_TIME`], so the
/// client sees the 413 instead of a reset (DESIGN.md: "up to 8× the limit
/// or 1 s"). A client that sends more may see a reset.
pub const DRAIN_FACTOR: usize = 8;
/// The other bound of the drain before a 413.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Most bytes reserved up front for a body, whatever its `Content-Length`
/// says: a client may lie, and many lying at once would otherwise reserve
/// `max_body_bytes` each before sending a byte. Larger bodies grow as they
/// arrive.
const MAX_INITIAL_CAPACITY: usize = 64 << 10;

/// Most events one `split` request may become (413 `too_many_events` above
/// it). Each is a journal record, a dedupe check and an id in the answer;
/// without a cap a 1 MiB body of `[0,0,…]` would fan out into half a million
/// events. Batching providers send a few hundred at most. Not a config key:
/// DESIGN.md names none.
pub const MAX_SPLIT_EVENTS: usize = 1000;

// One request's events are journaled under one grant of the pipeline's
// backlog: more than it holds would wait forever.
const _: () = assert!(MAX_SPLIT_EVENTS <= crate::pipeline::BACKLOG);

/// Headers a handler may need, kept with the event (names lower-case).
/// The providers' signature headers are kept: plugins may want to
/// re-verify or forward. The headers a source reads its id and kind from
/// (`id_header`, `kind_header`) are kept too, see [`kept_headers`].
const KEPT_HEADERS: [&str; 17] = [
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "stripe-signature",
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-hmac-sha256",
    "x-slack-request-timestamp",
    "x-slack-signature",
    "x-webhook-id",
    "x-hub-signature-256",
];

/// The ingest routes. Every answer that is not a success is the JSON error
/// body, unknown routes (404) and other methods (405) included.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(receive).fallback(wrong_method))
        .fallback(no_route)
        .with_state(ingest)
}

/// The handler: [`accept`] the request, then count its answer under its
/// source (when the path names one) and, for a 200, observe the time since
/// the handler started. A request whose client went away before the answer
/// is not counted.
async fn receive(
    State(ingest): State<Arc<Ingest>>,
    path: Result<Path<String>, PathRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    // The one lookup of the source: its counters and its checks.
    let source = ingest.source_of(&path);
    let response = accept(&ingest, source, path, peer, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    ingest.counters_of(source).answered(status);
    if status == StatusCode::OK {
        ingest.metrics.acknowledged(started.elapsed());
    }
    response
}

/// 405 for `/webhooks/{source}` with another method than POST, counted.
async fn wrong_method(
    State(ingest): State<Arc<Ingest>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiError {
    ingest
        .counters_of(ingest.source_of(&path))
        .answered(StatusCode::METHOD_NOT_ALLOWED);
    ApiError::method_not_allowed("POST")
}

/// 404 for any other path, counted under no source.
async fn no_route(State(ingest): State<Arc<Ingest>>) -> ApiError {
    ingest
        .metrics
        .unknown_source
        .answered(StatusCode::NOT_FOUND);
    ApiError::not_found()
}

/// Every check of the contract, in its order, then the durable write.
/// `source` is the configured source the path names, if any.
async fn accept(
    ingest: &Ingest,
    source: Option<&Arc<Source>>,
    path: Result<Path<String>, PathRejection>,
    peer: SocketAddr,
    request: Request,
) -> Result<Response, ApiError> {
    let pipeline = ingest.ready_pipeline().map_err(not_ready_error)?;
    // axum's own rejection is plain text; the contract wants JSON.
    let Path(name) = path.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the source name in the path is not valid percent-encoded UTF-8",
        )
    })?;
    let Ok(_permit) = ingest.in_flight.try_acquire() else {
        return Err(ApiError::unavailable(
            "overloaded",
            "too many requests in flight; retry",
        ));
    };
    let source = source.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named {name:?}"),
        )
    })?;

    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let client = access::client_ip(peer.ip(), &headers, &ingest.trusted_proxies);
    if !access::allowed(client, &source.allow_ips) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "client address not allowed for this source",
        ));
    }

    let body = read_limited(
        body,
        &headers,
        source.max_body_bytes,
        ingest.body_read_timeout,
    )
    .await?;

    let now_s = (clock::now_ms() / 1000) as i64;
    verify::verify(
        &source.scheme,
        &source.secrets,
        &headers,
        &body,
        now_s,
        source.tolerance_secs,
    )
    .map_err(verify_error)?;

    if let Some(limit) = &source.rate_limit {
        if let Err(wait) = limit.take(Instant::now()) {
            return Err(ApiError {
                retry_after: Some(wait.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "source rate limit exceeded",
                )
            });
        }
    }

    if matches!(source.scheme, Scheme::Slack) {
        if let Some(challenge) = slack_challenge(&body) {
            return Ok(Json(serde_json::json!({ "challenge": challenge })).into_response());
        }
    }

    let request = identify::identify(&source.scheme, &source.rules, &headers, &body)
        .map_err(identify_error)?;
    let kept = kept_headers(&headers, &source.kept_headers);
    let received_at_ms = clock::now_ms();
    let stored = |identity: Identity, headers: Vec<(String, String)>, body: Vec<u8>| StoredEvent {
        source: source.name.clone(),
        provider_id: identity.provider_id,
        kind: identity.kind,
        received_at_ms,
        headers,
        body,
    };
    let events = match &source.split {
        None => vec![stored(request, kept, body)],
        Some(pointer) => identify::split(&request, &body, pointer, MAX_SPLIT_EVENTS)
            .map_err(identify_error)?
            .into_iter()
            .map(|(identity, bytes)| stored(identity, kept.clone(), bytes))
            .collect(),
    };

    let accepted = pipeline.accept(events).await.map_err(pipeline_error)?;
    let all_duplicate = !accepted.is_empty() && accepted.iter().all(|a| a.duplicate);
    let answer = match (&source.split, accepted.as_slice()) {
        (None, [one]) => serde_json::json!({
            "received": true,
            "event_id": one.event_id,
            "duplicate": one.duplicate,
        }),
        _ => serde_json::json!({
            "received": true,
            "event_ids": accepted.iter().map(|a| a.event_id.as_str()).collect::<Vec<_>>(),
            "duplicate": all_duplicate,
        }),
    };
    Ok(Json(answer).into_response())
}

/// How a body read stopped short of the whole body.
enum Cut {
    /// The body passed the limit after this many bytes.
    TooLarge(usize),
    /// The connection broke mid-body.
    Broken,
}

/// Read the body within `timeout` (408 after it), refusing it once it
/// passes `limit` (413). The excess is read and dropped (bounded) before the
/// 413, so the client sees the answer; a client that announced an oversized
/// body and waits for `100 Continue` is answered at once, unread.
async fn read_limited(
    mut body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body larger than {limit} bytes"),
        )
        .closing()
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // hyper sends `100 Continue` when the body is first polled: a client
        // that waits for it has sent nothing, so there is nothing to drain.
        if !expects_continue(headers) {
            drain(body, 0, limit).await;
        }
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(initial_capacity(declared, limit));
    let read = tokio::time::timeout(timeout, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(Cut::Broken);
            };
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(Cut::TooLarge(out.len() + data.len()));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(out),
        Ok(Err(Cut::TooLarge(seen))) => {
            drain(body, seen, limit).await;
            Err(too_large())
        }
        Ok(Err(Cut::Broken)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "could not read the request body",
        )),
        Err(_) => {
            tracing::debug!(
                timeout_ms = timeout.as_millis() as u64,
                "request body not received in time"
            );
            // The rest of the body may still come: do not wait for it.
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            )
            .closing())
        }
    }
}

/// Bytes to reserve for a body before reading it: what it declares, but
/// never more than the limit or [`MAX_INITIAL_CAPACITY`]; 8 KiB when it
/// declares nothing (chunked).
fn initial_capacity(declared: Option<u64>, limit: usize) -> usize {
    let declared = declared.map_or(8 << 10, |n| usize::try_from(n).unwrap_or(usize::MAX));
    declared.min(limit).min(MAX_INITIAL_CAPACITY)
}

/// `Expect: 100-continue`: the client sends the body only once invited.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Read and discard up to `DRAIN_FACTOR * limit` bytes in all, for at most
/// `DRAIN_TIME`.
async fn drain(mut body: Body, mut seen: usize, limit: usize) {
    let cap = limit.saturating_mul(DRAIN_FACTOR);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen < cap {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}

/// The headers stored with a source's events: [`KEPT_HEADERS`] plus the
/// ones it reads its id and kind from, since plugins see only what is
/// stored.
pub fn kept_header_names(rules: &HeaderRules) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = KEPT_HEADERS.map(HeaderName::from_static).to_vec();
    for name in [&rules.id_header, &rules.kind_header].into_iter().flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The values of `names` this request has (text ones only).
fn kept_headers(headers: &HeaderMap, names: &[HeaderName]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let v = headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Slack's `url_verification` handshake: answer the challenge inline.
fn slack_challenge(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("type")?.as_str()? != "url_verification" {
        return None;
    }
    Some(v.get("challenge")?.as_str()?.to_owned())
}

fn not_ready_error(why: NotReady) -> ApiError {
    match why {
        // Logged where it happened (journal, applier), not once per request.
        NotReady::Unhealthy(_) => ApiError::unavailable(
            "store_unavailable",
            "events cannot be stored durably right now; retry",
        ),
        NotReady::Starting | NotReady::Draining => {
            ApiError::unavailable("unavailable", "starting or shutting down; retry")
        }
    }
}

fn verify_error(e: verify::VerifyError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        // A verifying source without secrets: config validation prevents it.
        tracing::error!(error = %e, "source cannot verify requests");
        return ApiError::unavailable("misconfigured", "this source cannot verify requests");
    }
    ApiError::new(status, e.code(), e.to_string())
}

fn identify_error(e: identify::IdentifyError) -> ApiError {
    if let identify::IdentifyError::TooMany { .. } = e {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            e.to_string(),
        );
    }
    let code = match e {
        identify::IdentifyError::NotJson(_) => "body_not_json",
        identify::IdentifyError::MissingHeader(_) => "missing_header",
        identify::IdentifyError::Split(_) => "bad_split",
        _ => "bad_event",
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

fn pipeline_error(e: PipelineError) -> ApiError {
    tracing::error!(error = %e, "could not store an event");
    ApiError::unavailable(
        "store_unavailable",
        "the event could not be stored durably; retry",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_capacity_never_trusts_a_large_declaration() {
        let mib = 1 << 20;
        // (declared, limit, reserved)
        let cases = [
            (Some(100), mib, 100),
            (Some(10 * mib as u64), 64 * mib, MAX_INITIAL_CAPACITY),
            (Some(u64::MAX), 64 * mib, MAX_INITIAL_CAPACITY),
            (Some(5000), 1024, 1024),
            (None, mib, 8 << 10),
            (None, 100, 100),
            (Some(0), mib, 0),
        ];
        for (declared, limit, want) in cases {
            assert_eq!(
                initial_capacity(declared, limit),
                want,
                "{declared:?} {limit}"
            );
        }
    }

    #[test]
    fn configured_id_and_kind_headers_are_kept_once() {
        let mut h = HeaderMap::new();
        h.insert("x-delivery", "d-1".parse().expect("value"));
        h.insert("x-topic", "order.paid".parse().expect("value"));
        h.insert("x-webhook-id", "w-1".parse().expect("value"));
        h.insert("authorization", "Bearer hidden".parse().expect("value"));
        let rules = HeaderRules {
            id_header: Some(http::HeaderName::from_static("x-delivery")),
            kind_header: Some(http::HeaderName::from_static("x-topic")),
        };
        let kept = kept_headers(&h, &kept_header_names(&rules));
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-webhook-id", "x-delivery", "x-topic"]);
        let same = HeaderRules {
            id_header: Some(http::HeaderName::from_static("x-webhook-id")),
            kind_header: None,
        };
        assert_eq!(kept_headers(&h, &kept_header_names(&same)).len(), 1);
        assert!(
            kept_headers(&h, &kept_header_names(&HeaderRules::default()))
                .iter()
                .all(|(n, _)| n == "x-webhook-id")
        );
    }
}
