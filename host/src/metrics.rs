//! `GET /metrics`: every metric hookhost exposes, in the Prometheus text
//! format (version 0.0.4), defined here and nowhere else: names, help
//! texts, label names and values, bucket bounds.
//!
//! Two kinds of metric, kept apart:
//!
//! - **Counted as it happens** (ingest answers, delivery attempts): the
//!   code that sees the event holds a handle resolved once (per source, per
//!   plugin) and bumps atomics through it. The ingest path never allocates,
//!   hashes a label or takes a lock here: a source's handles live in its
//!   [`crate::ingest::Source`], one per status code it can answer.
//! - **Read at scrape time** (queue depth, in flight, dead letters, events,
//!   breakers, plugin loads): the engine and the registry already know
//!   them ([`Engine::stats`], [`crate::registry::Registry::list`]), so
//!   [`Metrics::render`] copies them into gauges when scraped instead of
//!   keeping a second count that could drift. Until the engine starts
//!   (plugins still loading) these are left out rather than shown as zeros.
//!
//! This module must not decide anything: it records what ingest and the
//! engine report and renders it.
//!
//! # Crate
//!
//! The `prometheus` crate (tikv/rust-prometheus 0.14), without its default
//! `protobuf` feature, rather than `prometheus-client`: its histograms are
//! lock-free (an atomic hot/cold shard pair; a scrape never blocks an
//! observation), where `prometheus-client` 0.25 takes a mutex on every
//! `observe`, and the ingest path observes one per acknowledged request.
//! Its counters are single atomics whose child handles can be resolved once
//! and kept, and its text encoder writes the classic format every
//! Prometheus-compatible scraper reads. It has no global state we use: the
//! registries here are owned by [`Metrics`].
//!
//! # Metrics
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `hookhost_ingest_requests_total` | counter | `source`, `status` | answers of the ingest listener; `source` is `(unknown)` when the path names no configured source |
//! | `hookhost_ingest_ack_seconds` | histogram | | handler start to a 200 answer (verification, dedupe, durable journal write) |
//! | `hookhost_delivery_attempts_total` | counter | `plugin`, `outcome` | recorded attempts by how the call ended: `ok`, `retry`, `reject`, `trap_fuel`, `trap_deadline`, `trap_memory`, `trap_panic`, `trap_stack`, `trap_other` |
//! | `hookhost_delivery_results_total` | counter | `plugin`, `result` | what each recorded attempt led to: `done`, `retry_scheduled`, `dead_lettered` |
//! | `hookhost_delivery_attempt_duration_seconds` | histogram | `plugin` | wall-clock time of a plugin call, instantiation included |
//! | `hookhost_delivery_attempt_fuel` | histogram | `plugin` | fuel units a plugin call consumed |
//! | `hookhost_delivery_queue_depth` | gauge | | deliveries waiting, due or not |
//! | `hookhost_delivery_in_flight` | gauge | | deliveries running now |
//! | `hookhost_plugin_queue_depth` | gauge | `plugin` | one plugin's deliveries waiting |
//! | `hookhost_plugin_in_flight` | gauge | `plugin` | one plugin's deliveries running |
//! | `hookhost_dead_letters` | gauge | | dead letters now |
//! | `hookhost_events_stored` | gauge | | events in the store |
//! | `hookhost_delivered_total` | counter | | deliveries done since the data directory was created |
//! | `hookhost_workers` | gauge | | size of the delivery worker pool |
//! | `hookhost_plugin_breaker_state` | gauge | `plugin`, `state` | 1 for the breaker's state (`closed`, `half_open`, `open`), 0 for the others |
//! | `hookhost_plugin_state` | gauge | `plugin`, `state` | 1 for the plugin's state (`active`, `paused`, `broken`, `removed`), 0 for the others |
//! | `hookhost_plugin_loads_total` | counter | `plugin` | versions made active since start (a reload of the same bytes is not one) |
//! | `hookhost_plugin_load_failures_total` | counter | `plugin` | loads that failed since start (the old version kept serving) |
//! | `hookhost_plugin_warm_instances` | gauge | `plugin` | idle instances kept for warm mode now (0 unless the plugin runs warm) |
//!
//! Counters of attempts and results move only once the attempt is recorded
//! in sled, as the admin API counts them; a call whose event was purged
//! before it ran is a `reject` attempt with no duration or fuel observed.

use crate::delivery::records::Next;
use crate::delivery::Engine;
use crate::registry::PluginState;
use crate::runtime::{Outcome, TrapKind};
use axum::http::StatusCode;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `source` label of ingest answers whose path names no configured
/// source (404, a bad path, another route). Source names are `a-z0-9-_`
/// (config validation), so it cannot collide with one; a client-chosen
/// name is never a label value, or anyone could grow the series without
/// bound.
pub const UNKNOWN_SOURCE: &str = "(unknown)";

/// Every status ingest answers with (DESIGN.md's table, plus 405 and 408),
/// each given a handle up front. Another status would take the slow path
/// (a labelled lookup); none is expected.
const INGEST_STATUSES: [StatusCode; 10] = [
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// Acknowledgement latency, seconds. A group commit's `fdatasync` takes
/// about 0.1 to 10 ms on the disks we measured; the upper buckets catch a
/// stalled disk (the provider's own timeout is typically 10 to 30 s).
const ACK_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Plugin call time, seconds: a small Rust component answers in well under
/// a millisecond (fresh instance included), Python and JavaScript ones take
/// milliseconds, and the default deadline is 5 s (operators may set more).
const ATTEMPT_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Fuel per call, in half-decades from 1e3 (a trivial handler) to 1e10 (ten
/// times the default budget of 1e9, for plugins given more).
const FUEL_BUCKETS: [f64; 15] = [
    1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10,
];

/// Attempt outcomes, in the order of [`outcome_index`].
const OUTCOMES: [&str; 9] = [
    "ok",
    "retry",
    "reject",
    "trap_fuel",
    "trap_deadline",
    "trap_memory",
    "trap_panic",
    "trap_stack",
    "trap_other",
];

/// What an attempt led to, in the order of [`result_index`].
const RESULTS: [&str; 3] = ["done", "retry_scheduled", "dead_lettered"];

/// Breaker states as [`crate::delivery::breaker::BreakerState::as_str`]
/// names them.
const BREAKER_STATES: [&str; 3] = ["closed", "half_open", "open"];

/// Plugin states, with the names the admin API uses.
const PLUGIN_STATES: [(PluginState, &str); 4] = [
    (PluginState::Active, "active"),
    (PluginState::Paused, "paused"),
    (PluginState::Broken, "broken"),
    (PluginState::Removed, "removed"),
];

/// Why the metrics could not be defined (a bad name or label: a bug,
/// caught by the first test that starts a server).
#[derive(Debug, thiserror::Error)]
#[error("defining the metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// All metrics. Cheap to clone: every part is a handle to shared atomics.
#[derive(Clone)]
pub struct Metrics {
    /// What is counted as it happens.
    counted: Registry,
    ingest_requests: IntCounterVec,
    ack_seconds: Histogram,
    attempts: IntCounterVec,
    results: IntCounterVec,
    attempt_seconds: HistogramVec,
    attempt_fuel: HistogramVec,
    /// What is copied in from the engine at each scrape.
    state: Arc<StateGauges>,
}

/// The scrape-time metrics and their own registry, so they can be left
/// out while the engine is not started.
struct StateGauges {
    registry: Registry,
    /// Held while the gauges are set and gathered: two scrapes at once
    /// must not interleave their resets and sets. Scrapes are rare; ingest
    /// and deliveries never take it.
    scrape: Mutex<()>,
    queue_depth: IntGauge,
    in_flight: IntGauge,
    plugin_queue_depth: IntGaugeVec,
    plugin_in_flight: IntGaugeVec,
    dead_letters: IntGauge,
    events: IntGauge,
    delivered: IntCounter,
    workers: IntGauge,
    breaker: IntGaugeVec,
    plugin_state: IntGaugeVec,
    loads: IntCounterVec,
    load_failures: IntCounterVec,
    warm_instances: IntGaugeVec,
}

impl Metrics {
    /// Define every metric, all at zero.
    pub fn new() -> Result<Self, MetricsError> {
        let counted = Registry::new();
        let ingest_requests = IntCounterVec::new(
            Opts::new(
                "hookhost_ingest_requests_total",
                "Answers of the ingest listener, by source and HTTP status.",
            ),
            &["source", "status"],
        )?;
        let ack_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hookhost_ingest_ack_seconds",
                "Time from the ingest handler's start to a 200 answer (event durably stored), seconds.",
            )
            .buckets(ACK_BUCKETS.to_vec()),
        )?;
        let attempts = IntCounterVec::new(
            Opts::new(
                "hookhost_delivery_attempts_total",
                "Recorded delivery attempts, by plugin and how the call ended.",
            ),
            &["plugin", "outcome"],
        )?;
        let results = IntCounterVec::new(
            Opts::new(
                "hookhost_delivery_results_total",
                "What each recorded attempt led to: done, retry_scheduled or dead_lettered.",
            ),
            &["plugin", "result"],
        )?;
        let attempt_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hookhost_delivery_attempt_duration_seconds",
                "Wall-clock time of a plugin call, instantiation included, seconds.",
            )
            .buckets(ATTEMPT_BUCKETS.to_vec()),
            &["plugin"],
        )?;
        let attempt_fuel = HistogramVec::new(
            HistogramOpts::new(
                "hookhost_delivery_attempt_fuel",
                "Fuel units a plugin call consumed.",
            )
            .buckets(FUEL_BUCKETS.to_vec()),
            &["plugin"],
        )?;
        for c in [
            Box::new(ingest_requests.clone()) as Box<dyn Collector>,
            Box::new(ack_seconds.clone()),
            Box::new(attempts.clone()),
            Box::new(results.clone()),
            Box::new(attempt_seconds.clone()),
            Box::new(attempt_fuel.clone()),
        ] {
            counted.register(c)?;
        }
        Ok(Self {
            counted,
            ingest_requests,
            ack_seconds,
            attempts,
            results,
            attempt_seconds,
            attempt_fuel,
            state: Arc::new(StateGauges::new()?),
        })
    }

    /// The handles one source's answers are counted with.
    pub fn source(&self, name: &str) -> SourceMetrics {
        SourceMetrics {
            by_status: INGEST_STATUSES
                .map(|s| self.ingest_requests.with_label_values(&[name, s.as_str()])),
            name: Arc::from(name),
            all: self.ingest_requests.clone(),
        }
    }

    /// Ingest's own handles: requests for no configured source, and the
    /// acknowledgement latency.
    pub fn ingest(&self) -> IngestMetrics {
        IngestMetrics {
            unknown_source: self.source(UNKNOWN_SOURCE),
            ack_seconds: self.ack_seconds.clone(),
        }
    }

    /// The handles one plugin's attempts are counted with. Resolving them
    /// allocates its label strings: do it once per plugin, not per attempt.
    pub fn plugin(&self, name: &str) -> PluginMetrics {
        PluginMetrics {
            attempts: OUTCOMES.map(|o| self.attempts.with_label_values(&[name, o])),
            results: RESULTS.map(|r| self.results.with_label_values(&[name, r])),
            duration: self.attempt_seconds.with_label_values(&[name]),
            fuel: self.attempt_fuel.with_label_values(&[name]),
        }
    }

    /// The text of `GET /metrics`: everything counted, plus the engine's
    /// and the registry's state read now when the engine runs.
    pub fn render(&self, engine: Option<&Engine>) -> String {
        let mut families = self.counted.gather();
        if let Some(engine) = engine {
            families.extend(self.state.read(engine));
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::new();
        // Only fails on a family with no samples' type or a bad name, which
        // `gather` never returns; answer what was written so far.
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut text) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

impl StateGauges {
    fn new() -> Result<Self, MetricsError> {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let by_plugin = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let counter_by_plugin =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["plugin"]);
        let gauges = Self {
            registry: Registry::new(),
            scrape: Mutex::new(()),
            queue_depth: gauge(
                "hookhost_delivery_queue_depth",
                "Deliveries waiting, due or not.",
            )?,
            in_flight: gauge("hookhost_delivery_in_flight", "Deliveries running now.")?,
            plugin_queue_depth: by_plugin(
                "hookhost_plugin_queue_depth",
                "One plugin's deliveries waiting, due or not.",
                &["plugin"],
            )?,
            plugin_in_flight: by_plugin(
                "hookhost_plugin_in_flight",
                "One plugin's deliveries running now.",
                &["plugin"],
            )?,
            dead_letters: gauge("hookhost_dead_letters", "Dead letters now.")?,
            events: gauge("hookhost_events_stored", "Events in the store.")?,
            delivered: IntCounter::new(
                "hookhost_delivered_total",
                "Deliveries done since the data directory was created.",
            )?,
            workers: gauge("hookhost_workers", "Size of the delivery worker pool.")?,
            breaker: by_plugin(
                "hookhost_plugin_breaker_state",
                "1 for the state a plugin's circuit breaker is in (closed, half_open, open), 0 for the others.",
                &["plugin", "state"],
            )?,
            plugin_state: by_plugin(
                "hookhost_plugin_state",
                "1 for a plugin's state (active, paused, broken, removed), 0 for the others.",
                &["plugin", "state"],
            )?,
            loads: counter_by_plugin(
                "hookhost_plugin_loads_total",
                "Versions of a plugin made active since start.",
            )?,
            load_failures: counter_by_plugin(
                "hookhost_plugin_load_failures_total",
                "Loads of a plugin that failed since start (any previous version kept serving).",
            )?,
            warm_instances: by_plugin(
                "hookhost_plugin_warm_instances",
                "Idle instances of a plugin kept for warm mode now.",
                &["plugin"],
            )?,
        };
        for c in [
            Box::new(gauges.queue_depth.clone()) as Box<dyn Collector>,
            Box::new(gauges.in_flight.clone()),
            Box::new(gauges.plugin_queue_depth.clone()),
            Box::new(gauges.plugin_in_flight.clone()),
            Box::new(gauges.dead_letters.clone()),
            Box::new(gauges.events.clone()),
            Box::new(gauges.delivered.clone()),
            Box::new(gauges.workers.clone()),
            Box::new(gauges.breaker.clone()),
            Box::new(gauges.plugin_state.clone()),
            Box::new(gauges.loads.clone()),
            Box::new(gauges.load_failures.clone()),
            Box::new(gauges.warm_instances.clone()),
        ] {
            gauges.registry.register(c)?;
        }
        Ok(gauges)
    }

    /// Copy the engine's and the registry's state in and gather it. Plugins
    /// that are gone from both since the last scrape disappear (the vectors
    /// are reset first).
    fn read(&self, engine: &Engine) -> Vec<prometheus::proto::MetricFamily> {
        let stats = engine.stats();
        let slots = engine.registry().list();
        let _one_scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.queue_depth.set(count(stats.queued));
        self.in_flight.set(count(stats.in_flight));
        self.dead_letters.set(count(stats.dead_letters));
        self.events.set(count(stats.events));
        self.workers.set(i64::from(stats.workers));
        self.delivered.reset();
        self.delivered.inc_by(stats.delivered);
        for vec in [
            &self.plugin_queue_depth,
            &self.plugin_in_flight,
            &self.breaker,
            &self.plugin_state,
            &self.warm_instances,
        ] {
            vec.reset();
        }
        self.loads.reset();
        self.load_failures.reset();
        for (name, p) in &stats.plugins {
            let name = name.as_str();
            self.plugin_queue_depth
                .with_label_values(&[name])
                .set(count(p.queued));
            self.plugin_in_flight
                .with_label_values(&[name])
                .set(count(p.in_flight));
            for state in BREAKER_STATES {
                self.breaker
                    .with_label_values(&[name, state])
                    .set(i64::from(p.breaker == state));
            }
        }
        for slot in &slots {
            let name: &str = &slot.name;
            let now = slot.state();
            for (state, label) in PLUGIN_STATES {
                self.plugin_state
                    .with_label_values(&[name, label])
                    .set(i64::from(now == state));
            }
            self.loads.with_label_values(&[name]).inc_by(slot.loads);
            self.load_failures
                .with_label_values(&[name])
                .inc_by(slot.load_failures);
            let warm = slot
                .active
                .as_ref()
                .map_or(0, |a| a.plugin.warm_instances());
            self.warm_instances
                .with_label_values(&[name])
                .set(i64::try_from(warm).unwrap_or(i64::MAX));
        }
        self.registry.gather()
    }
}

/// One source's answer counters, one per status in [`INGEST_STATUSES`].
pub struct SourceMetrics {
    by_status: [IntCounter; INGEST_STATUSES.len()],
    /// For a status outside the list (not expected): the labelled lookup.
    name: Arc<str>,
    all: IntCounterVec,
}

impl SourceMetrics {
    /// Count one answer: one relaxed atomic add.
    pub fn answered(&self, status: StatusCode) {
        match status_index(status) {
            Some(i) => self.by_status[i].inc(),
            None => self
                .all
                .with_label_values(&[&*self.name, status.as_str()])
                .inc(),
        }
    }
}

impl std::fmt::Debug for SourceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceMetrics")
            .field("source", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where `status` sits in [`INGEST_STATUSES`]; a match the compiler turns
/// into a jump table.
fn status_index(status: StatusCode) -> Option<usize> {
    Some(match status.as_u16() {
        200 => 0,
        400 => 1,
        401 => 2,
        403 => 3,
        404 => 4,
        405 => 5,
        408 => 6,
        413 => 7,
        429 => 8,
        503 => 9,
        _ => return None,
    })
}

/// Ingest's handles that belong to no configured source.
pub struct IngestMetrics {
    /// Answers whose path names no configured source.
    pub unknown_source: SourceMetrics,
    ack_seconds: Histogram,
}

impl IngestMetrics {
    /// A 200 answered `elapsed` after the handler started.
    pub fn acknowledged(&self, elapsed: Duration) {
        self.ack_seconds.observe(elapsed.as_secs_f64());
    }
}

/// One plugin's attempt handles.
pub struct PluginMetrics {
    attempts: [IntCounter; OUTCOMES.len()],
    results: [IntCounter; RESULTS.len()],
    duration: Histogram,
    fuel: Histogram,
}

/// One recorded attempt, as [`PluginMetrics::attempt`] counts it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptReport<'a> {
    /// How the call ended.
    pub outcome: &'a Outcome,
    /// What it led to.
    pub next: &'a Next,
    /// The call's time and fuel; `None` when no plugin ran (the event was
    /// gone).
    pub ran: Option<(Duration, u64)>,
}

impl PluginMetrics {
    /// Count one recorded attempt.
    pub fn attempt(&self, a: AttemptReport<'_>) {
        self.attempts[outcome_index(a.outcome)].inc();
        self.results[result_index(a.next)].inc();
        if let Some((duration, fuel)) = a.ran {
            self.duration.observe(duration.as_secs_f64());
            self.fuel.observe(fuel as f64);
        }
    }
}

impl std::fmt::Debug for PluginMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginMetrics").finish_non_exhaustive()
    }
}

/// Where an outcome's label sits in [`OUTCOMES`].
fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Retry(_) => 1,
        Outcome::Reject(_) => 2,
        Outcome::Trap { kind, .. } => match kind {
            TrapKind::Fuel => 3,
            TrapKind::Deadline => 4,
            TrapKind::Memory => 5,
            TrapKind::Panic => 6,
            TrapKind::Stack => 7,
            TrapKind::Other => 8,
        },
    }
}

/// Where a decision's label sits in [`RESULTS`].
fn result_index(next: &Next) -> usize {
    match next {
        Next::Done => 0,
        Next::RetryAt(_) => 1,
        Next::Dead(_) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_handle() {
        for (i, s) in INGEST_STATUSES.iter().enumerate() {
            assert_eq!(status_index(*s), Some(i), "{s}");
        }
        assert_eq!(status_index(StatusCode::INTERNAL_SERVER_ERROR), None);
    }

    #[test]
    fn outcome_labels_line_up() {
        assert_eq!(OUTCOMES[outcome_index(&Outcome::Ok)], "ok");
        assert_eq!(
            OUTCOMES[outcome_index(&Outcome::Retry(String::new()))],
            "retry"
        );
        assert_eq!(
            OUTCOMES[outcome_index(&Outcome::Reject(String::new()))],
            "reject"
        );
        for kind in TrapKind::ALL {
            let trap = Outcome::Trap {
                kind,
                detail: String::new(),
            };
            assert_eq!(
                OUTCOMES[outcome_index(&trap)],
                format!("trap_{}", kind.as_str())
            );
        }
    }

    #[test]
    fn counted_metrics_render_with_their_labels() {
        let m = Metrics::new().expect("metrics");
        let github = m.source("github");
        github.answered(StatusCode::OK);
        github.answered(StatusCode::OK);
        github.answered(StatusCode::UNAUTHORIZED);
        github.answered(StatusCode::INTERNAL_SERVER_ERROR);
        let ingest = m.ingest();
        ingest.unknown_source.answered(StatusCode::NOT_FOUND);
        ingest.acknowledged(Duration::from_micros(700));
        let echo = m.plugin("echo");
        echo.attempt(AttemptReport {
            outcome: &Outcome::Trap {
                kind: TrapKind::Fuel,
                detail: String::new(),
            },
            next: &Next::RetryAt(1),
            ran: Some((Duration::from_millis(3), 5_000)),
        });
        let text = m.render(None);
        for line in [
            r#"hookhost_ingest_requests_total{source="github",status="200"} 2"#,
            r#"hookhost_ingest_requests_total{source="github",status="401"} 1"#,
            r#"hookhost_ingest_requests_total{source="github",status="500"} 1"#,
            r#"hookhost_ingest_requests_total{source="github",status="429"} 0"#,
            r#"hookhost_ingest_requests_total{source="(unknown)",status="404"} 1"#,
            r#"hookhost_ingest_ack_seconds_bucket{le="0.0005"} 0"#,
            r#"hookhost_ingest_ack_seconds_bucket{le="0.001"} 1"#,
            "hookhost_ingest_ack_seconds_count 1",
            r#"hookhost_delivery_attempts_total{outcome="trap_fuel",plugin="echo"} 1"#,
            r#"hookhost_delivery_attempts_total{outcome="ok",plugin="echo"} 0"#,
            r#"hookhost_delivery_results_total{plugin="echo",result="retry_scheduled"} 1"#,
            r#"hookhost_delivery_attempt_duration_seconds_count{plugin="echo"} 1"#,
            r#"hookhost_delivery_attempt_fuel_bucket{plugin="echo",le="3000"} 0"#,
            r#"hookhost_delivery_attempt_fuel_bucket{plugin="echo",le="10000"} 1"#,
            "# TYPE hookhost_delivery_attempt_fuel histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            !text.contains("hookhost_delivery_queue_depth"),
            "no engine, no engine state:\n{text}"
        );
    }
}
