//! Starting and stopping hookhost: open the stores, replay the journal,
//! serve ingest and admin, and on shutdown drain in order.
//!
//! Start: both listeners answer at once (ingest with 503, `/readyz` not
//! ready) while the journal is replayed into sled; then ingest opens.
//! Shutdown (the token is cancelled): ingest answers 503 to requests on
//! open connections, stops accepting, lets in-flight requests finish (up to
//! the grace period), then the journal's queued appends are synced, the
//! applier drains into sled, and sled is flushed last.

use crate::config::{Config, SchemeName};
use crate::ingest::{Ingest, Readiness, Source};
use crate::journal::{Journal, JournalConfig};
use crate::pipeline::Pipeline;
use crate::ratelimit::RateLimit;
use crate::store::{self, Store};
use crate::verify::{Scheme, Secret};
use crate::{admin, identify, ingest};
use http::HeaderName;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
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
    let sources = sources(&config)?;
    let data = &config.server.data_dir;
    std::fs::create_dir_all(data).map_err(|e| open_error("the data directory", e))?;
    let db_dir = data.join("db");
    let db = store::open_db(&db_dir).map_err(|e| open_error("sled", e))?;
    let store =
        Store::open(db.clone(), Some(&db_dir)).map_err(|e| open_error("the event store", e))?;
    let journal_config = JournalConfig {
        sync: config.server.sync,
        ..JournalConfig::new(data.join("journal"))
    };

    let readiness = Arc::new(Readiness::default());
    let admin_server = serve(
        listeners.admin,
        admin::router(readiness.clone()),
        shutdown.clone(),
        None,
    );
    let admin_task = tokio::spawn(admin_server);

    // Ingest answers at once, with 503 until the journal is replayed: the
    // store must hold every acknowledged event before dedupe can trust it.
    let ingest_state = Arc::new(Ingest {
        sources,
        trusted_proxies: config.server.trusted_proxies.clone(),
        pipeline: Default::default(),
        readiness: readiness.clone(),
        in_flight: tokio::sync::Semaphore::new(config.server.max_connections),
    });
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let ingest_server = tokio::spawn(serve(
        listeners.ingest,
        ingest::router(ingest_state.clone()),
        shutdown.clone(),
        Some(grace),
    ));

    // Replay reads and applies the whole unreleased journal: blocking work,
    // kept off the async workers so ingest and /readyz answer meanwhile.
    let started = Instant::now();
    let (pipeline, applier, replayed) = tokio::task::spawn_blocking(move || {
        let (journal, replay) = Journal::open(journal_config).map_err(|e| open_error("the journal", e))?;
        let replayed = replay.records.len();
        if replay.torn_bytes > 0 {
            tracing::warn!(bytes = replay.torn_bytes, "cut a torn record from the journal's tail");
        }
        for seg in &replay.corrupt_segments {
            tracing::error!(segment = %seg.display(), "journal segment has a damaged record; the rest of it was skipped");
        }
        let (pipeline, applier) =
            Pipeline::start(journal, replay, store).map_err(|e| open_error("the journal replay", e))?;
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

    let ingest_result = {
        let readiness = readiness.clone();
        let draining = shutdown.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            readiness.set_draining();
        });
        match ingest_server.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    };
    // In-flight requests are done (or out of time): nothing more is
    // appended. Sync what is queued, apply it, flush sled.
    pipeline.shutdown().await;
    let _ = applier.await;
    db.flush_async()
        .await
        .map_err(|e| open_error("sled (final flush)", e))?;
    let _ = admin_task.await;
    tracing::info!("stopped");
    ingest_result
}

/// Serve `router` until `shutdown`, then stop accepting and wait for
/// in-flight requests (at most `grace`, when given).
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    grace: Option<Duration>,
) -> Result<(), ServerError> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
    match grace {
        None => server.await?,
        Some(grace) => {
            tokio::pin!(server);
            tokio::select! {
                r = &mut server => r?,
                _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the shutdown grace period");
                }
            }
        }
    }
    Ok(())
}

fn open_error(what: &'static str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Open {
        what,
        message: e.to_string(),
    }
}

/// Turn configured sources into ready-to-use ones: parse secrets for their
/// scheme and header names.
fn sources(config: &Config) -> Result<HashMap<String, Arc<Source>>, ServerError> {
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
        let scheme = match s.scheme {
            SchemeName::Standard => Scheme::Standard,
            SchemeName::Github => Scheme::Github,
            SchemeName::Stripe => Scheme::Stripe,
            SchemeName::Shopify => Scheme::Shopify,
            SchemeName::Slack => Scheme::Slack,
            SchemeName::None => Scheme::None,
            SchemeName::Hmac => match header("signature_header", &s.signature_header)? {
                Some(h) => Scheme::Hmac {
                    signature_header: h,
                },
                None => Scheme::hmac_default(),
            },
        };
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
        let source = Source {
            name: s.name.clone(),
            secrets,
            tolerance_secs: s.tolerance_secs,
            max_body_bytes: s.max_body_bytes,
            split: s.split.clone(),
            rules: identify::HeaderRules {
                id_header: header("id_header", &s.id_header)?,
                kind_header: header("kind_header", &s.kind_header)?,
            },
            allow_ips: s.allow_ips.clone(),
            rate_limit: s
                .rate_limit_per_s
                .map(|n| RateLimit::new(n, Instant::now())),
            scheme,
        };
        out.insert(s.name.clone(), Arc::new(source));
    }
    Ok(out)
}
