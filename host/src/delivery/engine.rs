//! The delivery engine: routes stored events, leases due deliveries to
//! workers, runs them through the runtime, records every attempt and
//! applies the retry policy.
//!
//! One dispatcher task leases from the [`Scheduler`] whenever a worker is
//! free, and sleeps until new work arrives (a notify), a timer or breaker
//! cool-down ends, or the plugins change — never polling. Each leased
//! delivery runs in its own task under a worker permit; the global pool
//! (`[server] workers`) and each plugin's `concurrency` bound how many run.
//!
//! Every log line about one delivery carries its `event_id`, `plugin`,
//! `version` (the first 12 hex digits of the SHA-256 that runs it) and
//! `attempt`: the lines of a run are emitted inside its `delivery` span, the
//! plugin's own lines too. Each recorded attempt is counted in
//! [`crate::metrics`] through handles kept with the plugin's counters, under
//! the lock those already take; queue and breaker state is read from here
//! at scrape time ([`Engine::stats`]).

use super::records::{
    Attempt, DeadLetter, DeliveryKey, DeliveryView, Next, Pending, Records, Scan,
};
use super::retention;
use super::retry::{self, Decision, SplitMix64};
use super::routing::Routes;
use super::scheduler::{Job, LaneStats, Lease, Policy, Scheduler};
use super::threads::{self, DeliveryThreads};
use crate::clock::now_ms;
use crate::config::Priority;
use crate::delivery::breaker::BreakerConfig;
use crate::event::{event_id, StoredEvent};
use crate::metrics::{AttemptReport, Metrics, PluginMetrics};
use crate::pipeline::OnApplied;
use crate::registry::Registry;
use crate::runtime::{Event, Outcome};
use crate::store::{Record, Store, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a delivery waits before running again when the store could not
/// be read or written for it (no attempt is counted).
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How often retention looks for expired events.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Attempts remembered per plugin for rates and latency percentiles.
const RECENT: usize = 1024;
/// The window rates are computed over.
const RATE_WINDOW_MS: u64 = 10_000;

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    records: Records,
    store: Store,
    registry: Registry,
    sched: Mutex<Scheduler>,
    wake: Notify,
    workers: Arc<Semaphore>,
    worker_count: u32,
    rng: Mutex<SplitMix64>,
    delivered: AtomicU64,
    dead_letters: AtomicU64,
    counters: Mutex<HashMap<Arc<str>, PluginCounters>>,
    /// Where each plugin's handles come from, on its first attempt.
    metrics: Metrics,
    stop_leasing: CancellationToken,
    /// Where the dispatcher and the calls run (below ingest's priority).
    threads: Mutex<DeliveryThreads>,
}

/// Per-plugin counts since start, and recent attempts.
#[derive(Debug)]
struct PluginCounters {
    done: u64,
    failed_attempts: u64,
    dead: u64,
    /// (finished at ms, duration µs) of the last [`RECENT`] attempts.
    recent: VecDeque<(u64, u64)>,
    /// The plugin's metric handles, resolved once.
    metrics: PluginMetrics,
}

/// One recorded attempt, as [`Inner::count`] takes it.
struct Counted<'a> {
    outcome: &'a Outcome,
    next: Next,
    finished_ms: u64,
    /// The call's time and fuel; `None` when no plugin ran.
    ran: Option<(Duration, u64)>,
}

/// What `GET /admin/stats` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Deliveries waiting, due or not.
    pub queued: u64,
    /// Deliveries running now.
    pub in_flight: u64,
    /// Deliveries done, since the data directory was created.
    pub delivered: u64,
    /// Dead letters now.
    pub dead_letters: u64,
    /// Events stored.
    pub events: u64,
    /// Worker pool size.
    pub workers: u32,
    /// Per plugin, by name.
    pub plugins: std::collections::BTreeMap<String, PluginStats>,
}

/// One plugin's counts in [`Stats`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStats {
    /// Deliveries waiting.
    pub queued: u64,
    /// Running now.
    pub in_flight: u64,
    /// Done since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failed_attempts: u64,
    /// Dead-lettered since start.
    pub dead_lettered: u64,
    /// Attempts per second over the last ten seconds.
    pub attempts_per_s: f64,
    /// Attempt duration percentiles over the recent attempts, µs.
    pub duration_p50_us: u64,
    /// 99th percentile.
    pub duration_p99_us: u64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The delivery records could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The delivery threads could not be started.
    #[error("starting the delivery threads: {0}")]
    Threads(std::io::Error),
}

/// One page of dead letters.
#[derive(Debug, Clone)]
pub struct DeadLetterPage {
    /// The dead letters selected.
    pub items: Vec<DeadLetter>,
    /// Where the next page starts (exclusive), when the scan stopped
    /// early (page full or scan budget spent).
    pub next: Option<DeliveryKey>,
}

/// Which dead letters a bulk replay takes.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this plugin's.
    pub plugin: Option<String>,
    /// Only events from this source.
    pub source: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only those that died at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Only those that died before this time (ms).
    pub until_ms: Option<u64>,
}

impl Engine {
    /// Rebuild the queue from sled (every unfinished delivery runs again,
    /// those that were running at a crash included) and start dispatching.
    /// Leasing stops when `shutdown` is cancelled; attempts are counted in
    /// `metrics`.
    pub fn start(
        store: Store,
        registry: Registry,
        workers: usize,
        retention: Duration,
        shutdown: CancellationToken,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        let records = Records::open(store.db())?;
        let unavailable = Policy {
            priority: Priority::Normal,
            concurrency: 1,
            breaker: BreakerConfig::default(),
            available: false,
        };
        let mut sched = Scheduler::new(unavailable);
        let recovered = records.recover()?;
        let now = now_ms();
        for slot in registry.list() {
            sched.set_policy(&slot.name, registry.policy(&slot.name));
        }
        let count = recovered.len();
        for (key, p) in recovered {
            sched.push(job(key, p, true), now);
        }
        let delivered = match records.take_saved_delivered()? {
            Some(n) => n,
            None => records.count_done()?,
        };
        let dead = records.count_dead() as u64;
        tracing::info!(
            pending = count,
            delivered,
            dead_letters = dead,
            "delivery queue recovered"
        );
        let worker_count =
            u32::try_from(workers.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = DeliveryThreads::start(cores, threads::NICE).map_err(StartError::Threads)?;
        let handle = threads
            .handle()
            .ok_or_else(|| StartError::Threads(std::io::Error::other("stopped at start")))?;
        let engine = Self {
            inner: Arc::new(Inner {
                records,
                store,
                registry,
                sched: Mutex::new(sched),
                wake: Notify::new(),
                workers: Arc::new(Semaphore::new(worker_count as usize)),
                worker_count,
                rng: Mutex::new(SplitMix64::from_entropy()),
                delivered: AtomicU64::new(delivered),
                dead_letters: AtomicU64::new(dead),
                counters: Mutex::default(),
                metrics,
                stop_leasing: shutdown,
                threads: Mutex::new(threads),
            }),
        };
        handle.spawn(dispatch(Arc::clone(&engine.inner)));
        tokio::spawn(follow_registry(Arc::clone(&engine.inner)));
        tokio::spawn(retain(Arc::clone(&engine.inner), retention));
        Ok(engine)
    }

    /// The delivery records (for the admin API).
    pub fn records(&self) -> &Records {
        &self.inner.records
    }

    /// The plugins.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The event store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Route stored events and queue their deliveries (the applier calls
    /// this through [`OnApplied`]).
    pub fn route(&self, records: &[Record], replayed: bool) -> Result<(), StoreError> {
        let routes = self.inner.registry.routes();
        let mut created = Vec::new();
        for r in records {
            let event = StoredEvent::decode(&r.bytes)?;
            created.extend(self.route_one(&routes, r.seq, &event, replayed)?);
        }
        self.enqueue(created);
        Ok(())
    }

    fn route_one(
        &self,
        routes: &Routes,
        seq: u64,
        event: &StoredEvent,
        replayed: bool,
    ) -> Result<Vec<(DeliveryKey, Pending, bool)>, StoreError> {
        let targets = routes.targets(&event.source, &event.kind, &event.body);
        self.inner.records.route(
            seq,
            targets.into_iter().map(|t| (t.plugin, t.order_key)),
            replayed,
        )
    }

    /// Queue deliveries: (key, entry, whether sled holds the entry).
    fn enqueue(&self, created: Vec<(DeliveryKey, Pending, bool)>) {
        if created.is_empty() {
            return;
        }
        let now = now_ms();
        {
            let mut sched = self.inner.lock_sched();
            for (key, p, persisted) in created {
                sched.push(job(key, p, persisted), now);
            }
        }
        self.inner.wake.notify_one();
    }

    /// Replay an event: every plugin subscribed to it now gets a fresh
    /// delivery (attempts start again; a delivery still pending is left to
    /// run). Returns the plugins it goes to, or `None` for an unknown event.
    pub fn replay_event(&self, seq: u64) -> Result<Option<Vec<String>>, StoreError> {
        let Some(event) = self.inner.store.get(seq)? else {
            return Ok(None);
        };
        let routes = self.inner.registry.routes();
        let targets = routes.targets(&event.source, &event.kind, &event.body);
        let now = now_ms();
        let mut created = Vec::new();
        let mut plugins = Vec::new();
        let held = self.inner.lock_sched().held_of(seq);
        for t in targets {
            let key = DeliveryKey::new(seq, Arc::clone(&t.plugin));
            plugins.push(t.plugin.to_string());
            if held.iter().any(|(p, _)| *p == t.plugin) {
                // Queued or running: it runs anyway.
                continue;
            }
            let (pending, was_dead) = self.inner.records.restart(&key, t.order_key, now)?;
            if was_dead {
                self.inner.dead_letters.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(p) = pending {
                created.push((key, p, true));
            }
        }
        self.enqueue(created);
        Ok(Some(plugins))
    }

    /// Replay one dead letter (attempts start again, on the plugin's current
    /// version). Returns false if `key` is not a dead letter.
    pub fn replay_dead(&self, key: &DeliveryKey) -> Result<bool, StoreError> {
        if self.inner.records.dead_letter(key)?.is_none() {
            return Ok(false);
        }
        let order_key = self.order_key_of(key)?;
        let (pending, was_dead) = self.inner.records.restart(key, order_key, now_ms())?;
        if was_dead {
            self.inner.dead_letters.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(p) = pending {
            self.enqueue(vec![(key.clone(), p, true)]);
        }
        Ok(was_dead)
    }

    /// The order key a replayed delivery queues under: read again from the
    /// event with the plugin's current `order_key`.
    fn order_key_of(&self, key: &DeliveryKey) -> Result<Option<String>, StoreError> {
        let Some(event) = self.inner.store.get(key.seq)? else {
            return Ok(None);
        };
        let routes = self.inner.registry.routes();
        Ok(routes
            .targets(&event.source, &event.kind, &event.body)
            .into_iter()
            .find(|t| t.plugin == key.plugin)
            .and_then(|t| t.order_key))
    }

    /// Replay every dead letter `filter` selects. Returns how many.
    /// Blocking (it walks the dead letters): call it off the async workers.
    pub fn replay_dead_matching(&self, filter: &DeadLetterFilter) -> Result<usize, StoreError> {
        let mut replayed = 0;
        let mut after: Option<DeliveryKey> = None;
        loop {
            let page = self.dead_letters(filter, after.as_ref(), 1000, usize::MAX)?;
            for d in &page.items {
                if self.replay_dead(&d.key)? {
                    replayed += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(replayed),
            }
        }
    }

    /// Dead letters `filter` selects, after `after`, at most `limit`,
    /// looking at no more than `max_scan` of them: a page can be short
    /// with a `next` to go on from.
    pub fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&DeliveryKey>,
        limit: usize,
        max_scan: usize,
    ) -> Result<DeadLetterPage, StoreError> {
        let store = &self.inner.store;
        let mut scanned = 0usize;
        let mut taken = 0usize;
        let mut last: Option<DeliveryKey> = None;
        let mut failure: Option<StoreError> = None;
        // One event's dead letters sit together: look it up once.
        let mut event_of: Option<(u64, Option<(String, String)>)> = None;
        let mut event_matches = |seq: u64| -> bool {
            if filter.source.is_none() && filter.kind.is_none() {
                return true;
            }
            if event_of.as_ref().is_none_or(|(s, _)| *s != seq) {
                let found = match store.get(seq) {
                    Ok(e) => e.map(|e| (e.source, e.kind)),
                    Err(e) => {
                        failure = Some(e);
                        None
                    }
                };
                event_of = Some((seq, found));
            }
            matches!(&event_of, Some((_, Some((source, kind))))
                if filter.source.as_deref().is_none_or(|s| s == source)
                    && filter.kind.as_deref().is_none_or(|k| k == kind))
        };
        let items = self.inner.records.dead_letters(after, |key, dead_at| {
            if taken >= limit || scanned >= max_scan {
                return Scan::Stop;
            }
            scanned += 1;
            last = Some(key.clone());
            let selected = filter.plugin.as_deref().is_none_or(|p| p == &*key.plugin)
                && filter.since_ms.is_none_or(|t| dead_at >= t)
                && filter.until_ms.is_none_or(|t| dead_at < t)
                && event_matches(key.seq);
            if selected {
                taken += 1;
                Scan::Take
            } else {
                Scan::Skip
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let next = if taken >= limit || scanned >= max_scan {
            last
        } else {
            None
        };
        Ok(DeadLetterPage { items, next })
    }

    /// Delete a dead letter. Returns false if `key` is not one.
    pub fn delete_dead(&self, key: &DeliveryKey) -> Result<bool, StoreError> {
        let deleted = self.inner.records.delete_dead(key, now_ms())?;
        if deleted {
            self.inner.dead_letters.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(deleted)
    }

    /// Counts for `GET /admin/stats`.
    pub fn stats(&self) -> Stats {
        let (queued, in_flight, lanes) = {
            let sched = self.inner.lock_sched();
            (sched.queued(), sched.running(), sched.all_lane_stats())
        };
        let now = now_ms();
        let counters = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut plugins = std::collections::BTreeMap::new();
        let mut names: Vec<Arc<str>> = lanes.iter().map(|(n, _)| Arc::clone(n)).collect();
        names.extend(self.inner.registry.list().into_iter().map(|s| s.name));
        names.sort();
        names.dedup();
        for name in names {
            let lane = lanes.iter().find(|(n, _)| *n == name).map(|(_, l)| l);
            plugins.insert(
                name.to_string(),
                plugin_stats(lane, counters.get(&name), now),
            );
        }
        Stats {
            queued: queued as u64,
            in_flight: in_flight as u64,
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            dead_letters: self.inner.dead_letters.load(Ordering::Relaxed),
            events: self.inner.store.len() as u64,
            workers: self.inner.worker_count,
            plugins,
        }
    }

    /// Every delivery of one event: its records, plus deliveries the queue
    /// holds that sled has no entry for yet (a first attempt routed moments
    /// ago).
    pub fn deliveries_of(&self, seq: u64) -> Result<Vec<DeliveryView>, StoreError> {
        let mut out = self.inner.records.of_event(seq)?;
        let held = self.inner.lock_sched().held_of(seq);
        for (plugin, round) in held {
            if !out.iter().any(|d| d.plugin == plugin) {
                out.push(DeliveryView {
                    plugin,
                    head: None,
                    pending: Some(Pending {
                        attempt: 1,
                        due_ms: 0,
                        round,
                        order_key: None,
                    }),
                });
            }
        }
        out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        Ok(out)
    }

    /// One plugin's queue counts (for the admin API's plugin objects).
    pub fn lane(&self, plugin: &str) -> Option<LaneStats> {
        self.inner.lock_sched().lane_stats(plugin)
    }

    /// After leasing stopped (the shutdown token): wait for running calls to
    /// finish, at most `grace`. Unfinished ones run again at next start.
    pub async fn drain(&self, grace: Duration) {
        self.inner.stop_leasing.cancel();
        let all = self.inner.worker_count;
        match tokio::time::timeout(grace, self.inner.workers.acquire_many(all)).await {
            Ok(_) => tracing::info!("deliveries drained"),
            Err(_) => tracing::warn!(
                in_flight = self.inner.lock_sched().running(),
                "deliveries still running at the end of the grace period; they run again at next start"
            ),
        }
        // Taken out of the lock first: the wait is async.
        let mut threads = std::mem::replace(
            &mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()),
            DeliveryThreads::stopped(),
        );
        threads.stop_and_wait(THREADS_STOP_WAIT).await;
        let delivered = self.inner.delivered.load(Ordering::Relaxed);
        if let Err(e) = self.inner.records.save_delivered(delivered) {
            tracing::error!(error = %e, "saving the delivered total failed; the next start counts again");
        }
    }
}

/// Longest a drain waits for the delivery threads' tasks to be dropped
/// once their time is up (they stop at their next yield; a call yields
/// every epoch tick).
const THREADS_STOP_WAIT: Duration = Duration::from_secs(5);

impl OnApplied for Engine {
    fn applied(&self, records: &[Record], replayed: bool) -> Result<(), StoreError> {
        self.route(records, replayed)
    }

    /// Persist the queued deliveries of events up to `through` that have
    /// no `pending` entry yet, under the queue's lock (so none is leased
    /// half-written), and hold the release before the oldest event with a
    /// running delivery that has none: the journal is what recreates those
    /// after a crash.
    fn releasable(&self, through: u64) -> u64 {
        let mut sched = self.inner.lock_sched();
        let mut bound = through;
        let mut written = Vec::new();
        for j in sched.unpersisted_through(through) {
            let p = Pending {
                attempt: j.attempt,
                due_ms: j.due_ms,
                round: j.round,
                order_key: j.order_key.clone(),
            };
            match self.inner.records.persist(&j.key, &p) {
                Ok(()) => written.push(j.key),
                Err(e) => {
                    // Queued, not running: no version has been picked to
                    // run it yet, so the line has no `version`.
                    tracing::error!(
                        event_id = %event_id(j.key.seq),
                        plugin = %j.key.plugin,
                        attempt = j.attempt,
                        error = %e,
                        "persisting a queued delivery failed; the journal keeps its event"
                    );
                    bound = bound.min(j.key.seq.saturating_sub(1));
                }
            }
        }
        sched.mark_persisted(&written);
        if let Some(seq) = sched.oldest_running_unpersisted() {
            bound = bound.min(seq.saturating_sub(1));
        }
        bound
    }
}

fn job(key: DeliveryKey, p: Pending, persisted: bool) -> Job {
    Job {
        key,
        attempt: p.attempt,
        round: p.round,
        due_ms: p.due_ms,
        order_key: p.order_key,
        persisted,
    }
}

fn plugin_stats(lane: Option<&LaneStats>, c: Option<&PluginCounters>, now: u64) -> PluginStats {
    let mut durations: Vec<u64> = c
        .map(|c| c.recent.iter().map(|r| r.1).collect())
        .unwrap_or_default();
    durations.sort_unstable();
    let pct = |q: f64| -> u64 {
        if durations.is_empty() {
            return 0;
        }
        let i = ((durations.len() - 1) as f64 * q).round() as usize;
        durations[i.min(durations.len() - 1)]
    };
    let recent = c.map_or(0, |c| {
        c.recent
            .iter()
            .filter(|r| r.0 + RATE_WINDOW_MS >= now)
            .count()
    });
    PluginStats {
        queued: lane.map_or(0, |l| l.queued as u64),
        in_flight: lane.map_or(0, |l| u64::from(l.running)),
        delivered: c.map_or(0, |c| c.done),
        failed_attempts: c.map_or(0, |c| c.failed_attempts),
        dead_lettered: c.map_or(0, |c| c.dead),
        attempts_per_s: recent as f64 * 1000.0 / RATE_WINDOW_MS as f64,
        duration_p50_us: pct(0.5),
        duration_p99_us: pct(0.99),
        breaker: lane.map_or("closed", |l| l.breaker.as_str()),
    }
}

impl Inner {
    fn lock_sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, plugin: &Arc<str>, a: Counted<'_>) {
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let c = all
            .entry(Arc::clone(plugin))
            .or_insert_with(|| PluginCounters {
                done: 0,
                failed_attempts: 0,
                dead: 0,
                recent: VecDeque::new(),
                metrics: self.metrics.plugin(plugin),
            });
        c.metrics.attempt(AttemptReport {
            outcome: a.outcome,
            next: &a.next,
            ran: a.ran,
        });
        if *a.outcome != Outcome::Ok {
            c.failed_attempts += 1;
        }
        match a.next {
            Next::Done => c.done += 1,
            Next::Dead(_) => c.dead += 1,
            Next::RetryAt(_) => {}
        }
        if c.recent.len() == RECENT {
            c.recent.pop_front();
        }
        let us = a
            .ran
            .map_or(0, |(d, _)| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        c.recent.push_back((a.finished_ms, us));
    }
}

/// Lease due deliveries while workers are free; sleep until something can
/// change that.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&inner.workers).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = inner.stop_leasing.cancelled() => return,
        };
        let lease = loop {
            let notified = inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_ms();
            let (lease, wake_at) = {
                let mut sched = inner.lock_sched();
                (sched.lease(now), sched.next_wake())
            };
            if let Some(lease) = lease {
                break lease;
            }
            let sleep = wake_at.map(|t| Duration::from_millis(t.saturating_sub(now).max(1)));
            tokio::select! {
                _ = &mut notified => {}
                _ = async { match sleep { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
                _ = inner.stop_leasing.cancelled() => return,
            }
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            run(&inner, lease).await;
            drop(permit);
            inner.wake.notify_one();
        });
    }
}

/// Purge expired events every [`PURGE_EVERY`], off the async workers.
async fn retain(inner: Arc<Inner>, retention: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = inner.stop_leasing.cancelled() => return,
        }
        let cutoff =
            now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let (store, records, stop) = (
            inner.store.clone(),
            inner.records.clone(),
            inner.stop_leasing.clone(),
        );
        match tokio::task::spawn_blocking(move || retention::purge(&store, &records, cutoff, &stop))
            .await
        {
            Ok(Ok(p)) if p.events > 0 => tracing::info!(
                events = p.events,
                held = p.held,
                "retention purged expired events"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "retention pass failed; retrying at the next one")
            }
            Err(e) => tracing::error!(error = %e, "retention pass panicked"),
        }
    }
}

/// Keep the queue's plugin policies in step with the registry.
async fn follow_registry(inner: Arc<Inner>) {
    let mut changes = inner.registry.changes();
    loop {
        {
            let names: Vec<Arc<str>> = {
                let sched = inner.lock_sched();
                sched.all_lane_stats().into_iter().map(|(n, _)| n).collect()
            };
            let mut all = names;
            all.extend(inner.registry.list().into_iter().map(|s| s.name));
            // Read under the queue's lock (see `run`): the last policy set
            // is the registry's latest.
            let mut sched = inner.lock_sched();
            for name in &all {
                sched.set_policy(name, inner.registry.policy(name));
            }
        }
        inner.wake.notify_one();
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = inner.stop_leasing.cancelled() => return,
        }
    }
}

/// Run one leased delivery and record it.
async fn run(inner: &Inner, lease: Lease) {
    let key = lease.job.key.clone();
    let Some(active) = inner.registry.active(&key.plugin) else {
        // Paused or removed since it was leased: it waits, and the queue
        // learns now (not only when the registry watcher runs) that the
        // plugin is unavailable, so it is not leased again meanwhile.
        // The policy is read under the queue's lock, so a newer one set
        // by `follow_registry` (the plugin back already) is never
        // overwritten by this older view.
        let mut sched = inner.lock_sched();
        sched.set_policy(&key.plugin, inner.registry.policy(&key.plugin));
        sched.give_back(lease, 0, now_ms());
        return;
    };
    let id = event_id(key.seq);
    let span = tracing::info_span!(
        "delivery",
        event_id = %id,
        plugin = %key.plugin,
        version = &active.plugin.sha256[..12],
        attempt = lease.job.attempt,
    );
    let event = match inner.store.get(key.seq) {
        Ok(Some(e)) => Some(e),
        Ok(None) => None,
        Err(e) => {
            span.in_scope(
                || tracing::error!(error = %e, "reading the event failed; the delivery waits"),
            );
            let now = now_ms();
            inner
                .lock_sched()
                .give_back(lease, now + STORE_RETRY.as_millis() as u64, now);
            return;
        }
    };
    let job = &lease.job;
    let plugin_runs = event.is_some();
    let started_ms = now_ms();
    let report = match event {
        Some(e) => {
            let ev = Event {
                id,
                source: e.source,
                kind: e.kind,
                received_at_ms: e.received_at_ms,
                attempt: job.attempt,
                headers: e.headers,
                body: e.body,
            };
            inner
                .registry
                .runtime()
                .invoke(&active.plugin, &active.settings.call, &ev)
                .instrument(span.clone())
                .await
        }
        None => crate::runtime::CallReport {
            outcome: Outcome::Reject("the event is no longer stored".into()),
            fuel_used: 0,
            duration: Duration::ZERO,
            peak_memory: 0,
            logs: Vec::new(),
            logs_dropped: 0,
        },
    };
    let now = now_ms();
    let decision = {
        let mut rng = inner.rng.lock().unwrap_or_else(|p| p.into_inner());
        retry::decide(
            &report.outcome,
            job.attempt,
            &active.settings.retry,
            now,
            &mut *rng,
        )
    };
    let next = match decision {
        Decision::Done => Next::Done,
        Decision::Retry { at_ms, .. } => Next::RetryAt(at_ms),
        Decision::DeadLetter(reason) => Next::Dead(reason),
    };
    let _enter = span.enter();
    match (&report.outcome, next) {
        (Outcome::Ok, _) => tracing::debug!(
            duration_us = report.duration.as_micros() as u64,
            "delivered"
        ),
        (o, Next::RetryAt(at)) => tracing::info!(
            outcome = o.name(),
            retry_in_ms = at.saturating_sub(now),
            "attempt failed; will retry"
        ),
        (o, Next::Dead(reason)) => tracing::warn!(
            outcome = o.name(),
            reason = reason.as_str(),
            "dead-lettered"
        ),
        (_, Next::Done) => {}
    }
    let outcome = report.outcome.clone();
    let ran = plugin_runs.then_some((report.duration, report.fuel_used));
    let attempt = Attempt::new(
        job.round,
        job.attempt,
        started_ms,
        &active.plugin.sha256,
        report,
    );
    let pending = Pending {
        attempt: job.attempt,
        due_ms: job.due_ms,
        round: job.round,
        order_key: job.order_key.clone(),
    };
    if let Err(e) = inner
        .records
        .record(&key, &pending, job.persisted, attempt, next, now)
    {
        // Still pending in sled: it runs again; the attempt is not counted.
        tracing::error!(error = %e, "recording the attempt failed; the delivery runs again");
        inner
            .lock_sched()
            .give_back(lease, now + STORE_RETRY.as_millis() as u64, now);
        return;
    }
    drop(_enter);
    match next {
        Next::Done => {
            inner.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Next::Dead(_) => {
            inner.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
        Next::RetryAt(_) => {}
    }
    inner.count(
        &key.plugin,
        Counted {
            outcome: &outcome,
            next,
            finished_ms: now,
            ran,
        },
    );
    let retry_at = match next {
        Next::RetryAt(at) => Some(at),
        _ => None,
    };
    inner.lock_sched().finish(lease, &outcome, retry_at, now);
}
