//! Starting and stopping hookhost: open the stores, replay the journal,
//! serve ingest and admin, and on shutdown drain in order.
//!
//! Start: both listeners answer at once (ingest with 503, `/readyz` not
//! ready) while the journal is replayed into sled; then ingest opens.
//! Shutdown (the token is cancelled): ingest answers 503 to requests on
//! open connections, both listeners stop accepting and let in-flight
//! requests finish (up to the grace period), then the journal's queued
//! appends are synced, the applier drains into sled, and sled is flushed
//! last.
//!
//! Slow clients: every connection must deliver each request's headers within
//! `header_read_timeout` (or be closed, with a JSON 408 when it had started
//! one), and ingest gives each body `body_read_timeout`. axum's `serve` sets
//! no hyper timer, so hyper's own header timeout is off there; the deadline
//! is kept here instead, by `TimedListener`'s connections and a middleware
//! that tells each connection when a request is being served.

use crate::config::Config;
use crate::delivery::Engine;
use crate::ingest::{Ingest, Readiness, Source};
use crate::journal::{Journal, JournalConfig};
use crate::kv::{KvLimits, KvStore};
use crate::metrics::Metrics;
use crate::pipeline::{OnApplied, Pipeline};
use crate::ratelimit::RateLimit;
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{self, Store};
use crate::verify::{Scheme, Secret};
use crate::{admin, identify, ingest};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use http::HeaderName;
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// The sockets to serve on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// Webhook ingest.
    pub ingest: TcpListener,
    /// Admin API, health and readiness.
    pub admin: TcpListener,
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting that only fails when it is put to use (a secret's format).
    #[error("config: {key}: {message}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The data directory could not be opened.
    #[error("opening {what}: {message}")]
    Open {
        /// Which store.
        what: &'static str,
        /// The failure.
        message: String,
    },
    /// Serving HTTP failed.
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
}

/// Run until `shutdown` is cancelled, then drain and return.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    crate::allocator::tune();
    let config = Arc::new(config);
    let metrics = Metrics::new().map_err(|e| open_error("the metrics", e))?;
    let sources = sources(&config, &metrics)?;
    let data = &config.server.data_dir;
    std::fs::create_dir_all(data).map_err(|e| open_error("the data directory", e))?;
    let db_dir = data.join("db");
    let db = store::open_db(&db_dir).map_err(|e| open_error("sled", e))?;
    let store =
        Store::open(db.clone(), Some(&db_dir)).map_err(|e| open_error("the event store", e))?;
    let kv = KvStore::new(db.clone(), KvLimits::default());
    let runtime = Runtime::new(RuntimeConfig::new(data), kv.clone())
        .map_err(|e| open_error("the plugin runtime", e))?;
    let registry = Registry::new(runtime, Arc::clone(&config));
    let journal_config = JournalConfig {
        sync: config.server.sync,
        segment_bytes: config.server.journal_segment_mb << 20,
        ..JournalConfig::new(data.join("journal"))
    };

    let readiness = Arc::new(Readiness::default());
    // Ingest answers at once, with 503 until the plugins are loaded and the
    // journal is replayed: the store must hold every acknowledged event
    // before dedupe can trust it, and no event may be routed against an
    // empty registry.
    let ingest_state = Arc::new(Ingest {
        sources,
        trusted_proxies: config.server.trusted_proxies.clone(),
        pipeline: Default::default(),
        readiness: readiness.clone(),
        in_flight: tokio::sync::Semaphore::new(config.server.max_connections),
        body_read_timeout: config.server.body_read_timeout,
        metrics: metrics.ingest(),
    });
    let admin_state = Arc::new(admin::Admin {
        ingest: ingest_state.clone(),
        engine: Default::default(),
        kv,
        token: config.server.admin_token.clone(),
        metrics: metrics.clone(),
    });
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let header_timeout = config.server.header_read_timeout;
    let admin_task = tokio::spawn(serve(
        TimedListener::new(listeners.admin, header_timeout),
        admin::router(admin_state.clone()),
        shutdown.clone(),
        grace,
    ));
    let ingest_server = tokio::spawn(serve(
        TimedListener::new(listeners.ingest, header_timeout),
        ingest::router(ingest_state.clone()),
        shutdown.clone(),
        grace,
    ));

    // Watching starts before the first scan, so a file changed between
    // the two is not missed. Without a watch the server still runs;
    // reloads then come only from the admin API.
    let folder_watch = match crate::watcher::watch(registry.clone(), shutdown.clone()) {
        Ok(watch) => Some(watch),
        Err(e) => {
            tracing::error!(error = %e, "hot reload is off: the plugins folder cannot be watched");
            None
        }
    };
    registry.remove_stale_uploads();
    let started = Instant::now();
    let active = registry.scan().await;
    tracing::info!(
        active,
        plugins = registry.list().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "plugins folder scanned"
    );
    // Leasing stops at the shutdown signal; running calls are drained
    // after ingest (see below).
    let engine = Engine::start(
        store.clone(),
        registry.clone(),
        config.server.workers,
        config.server.retention(),
        shutdown.child_token(),
        metrics,
    )
    .map_err(|e| open_error("the delivery queue", e))?;
    let _ = admin_state.engine.set(engine.clone());

    // Replay reads and applies the whole unreleased journal: blocking work,
    // kept off the async workers so ingest and /readyz answer meanwhile.
    let started = Instant::now();
    let router: Arc<dyn OnApplied> = Arc::new(engine.clone());
    let (pipeline, applier, replayed) = tokio::task::spawn_blocking(move || {
        let (journal, replay) = Journal::open(journal_config).map_err(|e| open_error("the journal", e))?;
        let replayed = replay.records.len();
        if replay.torn_bytes > 0 {
            tracing::warn!(bytes = replay.torn_bytes, "cut a torn record from the journal's tail");
        }
        for seg in &replay.corrupt_segments {
            tracing::error!(segment = %seg.display(), "journal segment has a damaged record; the rest of it was skipped");
        }
        let (pipeline, applier) = Pipeline::start(journal, replay, store, router)
            .map_err(|e| open_error("the journal replay", e))?;
        Ok::<_, ServerError>((pipeline, applier, replayed))
    })
    .await
    .map_err(|e| open_error("the journal replay", e))??;
    tracing::info!(
        events = replayed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "journal replayed"
    );
    let _ = ingest_state.pipeline.set(pipeline.clone());
    readiness.set_ready();
    tracing::info!("ready");

    // One grace period for the whole drain: in-flight requests, then
    // running deliveries get what is left of it.
    let drain_started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let ingest_result = {
        let readiness = readiness.clone();
        let draining = shutdown.clone();
        let since = drain_started.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            let _ = since.set(Instant::now());
            readiness.set_draining();
        });
        match ingest_server.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    };
    // In-flight requests are done (or out of time): nothing more is
    // appended. Sync what is queued, apply (and route) it, let running
    // deliveries finish, flush sled.
    pipeline.shutdown().await;
    let _ = applier.await;
    let spent = drain_started.get().map_or(Duration::ZERO, Instant::elapsed);
    engine.drain(grace.saturating_sub(spent)).await;
    if let Some(watch) = folder_watch {
        watch.stop().await;
    }
    db.flush_async()
        .await
        .map_err(|e| open_error("sled (final flush)", e))?;
    let _ = admin_task.await;
    tracing::info!("stopped");
    ingest_result
}

/// Serve `router` until `shutdown`, then stop accepting and wait for
/// in-flight requests, at most `grace`.
async fn serve(
    listener: TimedListener,
    router: axum::Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), ServerError> {
    let app = router
        .layer(axum::middleware::from_fn(track_request))
        .into_make_service_with_connect_info::<Peer>();
    let stop = shutdown.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the shutdown grace period");
        }
    }
    Ok(())
}

/// A TCP listener whose connections must deliver each request's headers
/// within a deadline (see [`TimedStream`]).
struct TimedListener {
    inner: TcpListener,
    header_timeout: Duration,
}

impl TimedListener {
    /// Wrap a bound listener; `header_timeout` is the headers' deadline.
    fn new(inner: TcpListener, header_timeout: Duration) -> Self {
        Self {
            inner,
            header_timeout,
        }
    }
}

impl axum::serve::Listener for TimedListener {
    type Io = TimedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's accept retries and backs off on errors (too many open
        // files included).
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (TimedStream::new(stream, self.header_timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Where a connection is in its request cycle, shared between the
/// connection ([`TimedStream`]) and the middleware that sees its requests
/// ([`track_request`]). One counter: even while waiting for a request's
/// headers, odd while a request is served; every change bumps it, so the
/// connection restarts its deadline for each new wait. Atomic because the
/// two sides run on different tasks; nothing else is shared.
#[derive(Debug, Default)]
struct Phase(AtomicU64);

impl Phase {
    fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A request being served; on drop (answered, or abandoned) the connection
/// waits for the next request's headers, under a fresh deadline.
struct Serving(Arc<Phase>);

impl Serving {
    fn start(phase: Arc<Phase>) -> Self {
        phase.0.fetch_add(1, Ordering::AcqRel);
        Self(phase)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0 .0.fetch_add(1, Ordering::AcqRel);
    }
}

/// An accepted connection that fails its reads once it has waited longer
/// than the deadline for a request's headers, so hyper closes it: a
/// slowloris client that trickles header bytes, or never sends any, cannot
/// hold it. While a request is served the deadline is off (ingest bounds the
/// body itself); it restarts when the answer is ready.
struct TimedStream {
    inner: TcpStream,
    phase: Arc<Phase>,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// The phase the deadline was set for.
    armed_for: u64,
    /// Bytes of the awaited request received so far: a client that started
    /// one is told why it is cut off.
    head_bytes: usize,
    /// The last write waited for the client to read: an answer is still
    /// going out, so no 408 may be written into it.
    write_blocked: bool,
}

impl TimedStream {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        Self {
            inner,
            phase: Arc::default(),
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            armed_for: 0,
            head_bytes: 0,
            write_blocked: false,
        }
    }

    /// The `408` sent to a client cut off mid-headers: hyper has no request
    /// to answer, so it is written here, once, if the socket takes it.
    fn refuse_late_headers(&self) {
        let body =
            r#"{"error":"header_timeout","message":"the request headers did not arrive in time"}"#;
        let answer = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = self.inner.try_write(answer.as_bytes());
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.phase.current();
        let awaiting_headers = phase.is_multiple_of(2);
        if awaiting_headers {
            if phase != this.armed_for {
                this.armed_for = phase;
                this.head_bytes = 0;
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(deadline);
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                if this.head_bytes > 0 && !this.write_blocked {
                    this.refuse_late_headers();
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if awaiting_headers {
            this.head_bytes += buf.filled().len() - before;
        }
        read
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_blocked = written.is_pending();
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.write_blocked = written.is_pending();
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        this.write_blocked = flushed.is_pending();
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection's peer and request phase, handed to every request on it as
/// `ConnectInfo<Peer>`; handlers read the address as
/// `ConnectInfo<SocketAddr>`, set by [`track_request`].
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    phase: Arc<Phase>,
}

impl Connected<IncomingStream<'_, TimedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TimedListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            phase: stream.io().phase.clone(),
        }
    }
}

/// Marks the request's connection as serving (no header deadline) until the
/// answer is ready, and gives handlers the peer's address.
async fn track_request(mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<Peer>>().cloned();
    let _serving = peer.map(|ConnectInfo(peer)| {
        request.extensions_mut().insert(ConnectInfo(peer.addr));
        Serving::start(peer.phase)
    });
    next.run(request).await
}

fn open_error(what: &'static str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Open {
        what,
        message: e.to_string(),
    }
}

/// Turn configured sources into ready-to-use ones: parse secrets for their
/// scheme and header names, each with its answer counters.
fn sources(
    config: &Config,
    metrics: &Metrics,
) -> Result<HashMap<String, Arc<Source>>, ServerError> {
    let mut out = HashMap::new();
    for (i, s) in config.sources.iter().enumerate() {
        let key = |field: &str| format!("source[{i}].{field}");
        let header = |field: &str, v: &Option<String>| -> Result<Option<HeaderName>, ServerError> {
            v.as_deref()
                .map(|h| {
                    HeaderName::try_from(h.to_ascii_lowercase()).map_err(|_| ServerError::Config {
                        key: key(field),
                        message: format!("{h:?} is not a header name"),
                    })
                })
                .transpose()
        };
        let scheme =
            Scheme::from_config(s.scheme, header("signature_header", &s.signature_header)?);
        let secrets = s
            .secrets
            .iter()
            .enumerate()
            .map(|(j, raw)| {
                Secret::parse(&scheme, raw.expose()).map_err(|e| ServerError::Config {
                    key: format!("source[{i}].secrets[{j}]"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rules = identify::HeaderRules {
            id_header: header("id_header", &s.id_header)?,
            kind_header: header("kind_header", &s.kind_header)?,
        };
        let source = Source {
            name: s.name.clone(),
            secrets,
            tolerance_secs: s.tolerance_secs,
            max_body_bytes: s.max_body_bytes,
            split: s.split.clone(),
            kept_headers: ingest::kept_header_names(&rules),
            rules,
            allow_ips: s.allow_ips.clone(),
            rate_limit: s
                .rate_limit_per_s
                .map(|n| RateLimit::new(n, Instant::now())),
            scheme,
            metrics: metrics.source(&s.name),
        };
        out.insert(s.name.clone(), Arc::new(source));
    }
    Ok(out)
}
