//! Where an accepted event becomes durable and then stored.
//!
//! [`Pipeline::accept`] dedupes each event against sled and against events
//! still between the journal and sled, appends the new ones to the journal
//! (the durability point) and only then returns. The applier, on its own
//! thread, moves journaled events into sled off the acknowledgement path,
//! and releases journal segments once sled holds them durably.
//!
//! Dedupe holds across that gap: a copy of an event whose original is
//! still in an unsynced batch waits for that sync and then answers as a
//! duplicate; two copies in one batch are stored once.
//!
//! The gap is bounded: at most [`BACKLOG`] events may be journaled but not
//! yet in sled; beyond that, accepting waits for the applier, so a slow
//! store slows ingest down instead of filling memory.

use crate::event::{event_id, StoredEvent};
use crate::journal::{Journal, JournalError, Replay};
use crate::store::{dedupe_key, Record, Store, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, Semaphore};

/// How one event of a request was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// hookhost's id for it (the original's, for a duplicate).
    pub event_id: String,
    /// Whether it was already stored.
    pub duplicate: bool,
}

/// Why events could not be taken: all mean "try again later" (503).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The journal could not make the events durable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// sled could not be read for dedupe.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Events could not be applied into sled lately: refuse new ones until
    /// the applier succeeds again.
    #[error("the event store is failing; retry")]
    StoreFailing,
    /// The original of a duplicate failed to become durable.
    #[error("an earlier copy of this event is being stored and failed; retry")]
    OriginalFailed,
    /// The applier thread could not be started.
    #[error("starting the applier thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Appended, not yet synced.
    InFlight,
    /// Durable in the journal under this sequence, maybe not yet in sled.
    Durable(u64),
    /// The append failed.
    Failed,
}

/// The dedupe key: `source NUL provider id` ([`dedupe_key`]).
type Key = Vec<u8>;

/// Shards of the in-flight map: concurrent requests for different events
/// rarely share a lock. Each lock is held for a map operation and a sled
/// read, never across an await.
const SHARDS: usize = 16;

/// How often the applier makes sled durable and releases applied journal
/// segments: bounds how much journal is replayed after a crash.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// How long the applier gathers events into one sled batch.
const GATHER: Duration = Duration::from_millis(20);

/// Most events applied into sled in one batch.
const APPLY_BATCH: usize = 4096;

/// Most events journaled but not yet applied into sled (about 64 MiB of
/// 1 KiB events).
pub const BACKLOG: usize = 65_536;

/// First and longest wait before retrying a failed apply.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What happens to events once they are in sled: routing them to plugins
/// (the delivery engine). Called on the applier's thread, after every
/// batch, with the batch; an error makes the applier retry the batch
/// (storing and routing are both idempotent).
pub trait OnApplied: Send + Sync {
    /// `replayed`: the events come from the journal at start and may have
    /// been applied (and routed) before a crash.
    fn applied(&self, records: &[Record], replayed: bool) -> Result<(), StoreError>;

    /// Sled is about to be synced so the journal can be released through
    /// `through`: make durable in sled whatever the journal must stop
    /// covering, and say how far it may be released (at most `through`).
    fn releasable(&self, through: u64) -> u64 {
        through
    }
}

/// Nothing happens after applying: for tests of ingest alone.
pub struct StoreOnly;

impl OnApplied for StoreOnly {
    fn applied(&self, _: &[Record], _: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The ingest pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
    /// Kept out of [`Inner`], which the applier holds too: once every
    /// pipeline handle is gone the channel closes and the applier stops
    /// (a runtime shutting down waits for it).
    to_apply: mpsc::Sender<ToApplier>,
}

struct Inner {
    journal: Journal,
    store: Store,
    pending: Vec<Mutex<HashMap<Key, watch::Sender<Pending>>>>,
    hasher: std::collections::hash_map::RandomState,
    /// Permits for [`BACKLOG`]: taken when events are journaled, given
    /// back when they are in sled.
    backlog: Semaphore,
    /// Set while applying into sled fails.
    store_failing: AtomicBool,
    /// Routing, after each applied batch.
    on_applied: Arc<dyn OnApplied>,
    /// Set by [`Pipeline::shutdown`]: an applier retrying a failing store
    /// gives up (the journal keeps the events) instead of holding the
    /// shutdown forever.
    stopping: AtomicBool,
}

enum ToApplier {
    Records(Vec<Record>),
    /// Apply everything queued, make it durable and stop.
    Stop,
}

enum Taken {
    New(usize),
    Duplicate(u64),
    Wait(watch::Receiver<Pending>),
}

impl Pipeline {
    /// Apply what the journal replayed into sled (so ingest can start from
    /// a complete store), then start the applier thread.
    ///
    /// Returns the pipeline and the applier's end: await it after
    /// [`Pipeline::shutdown`] to know everything reached sled.
    pub fn start(
        journal: Journal,
        replay: Replay,
        store: Store,
        on_applied: Arc<dyn OnApplied>,
    ) -> Result<(Self, oneshot::Receiver<()>), PipelineError> {
        let mut records = Vec::with_capacity(replay.records.len());
        for (seq, bytes) in replay.records {
            match StoredEvent::decode(&bytes) {
                Ok(e) => records.push(Record {
                    seq,
                    dedupe: dedupe_key(&e.source, &e.provider_id),
                    bytes,
                }),
                // Checksummed, so this is a format bug, not a torn write:
                // keep going with the rest and say so.
                Err(e) => {
                    tracing::error!(seq, error = %e, "skipping an undecodable journal record")
                }
            }
        }
        for chunk in records.chunks(APPLY_BATCH) {
            store.apply(chunk)?;
            on_applied.applied(chunk, true)?;
        }
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            journal: journal.clone(),
            store: store.clone(),
            pending: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            backlog: Semaphore::new(BACKLOG),
            store_failing: AtomicBool::new(false),
            on_applied,
            stopping: AtomicBool::new(false),
        });
        let corrupt = !replay.corrupt_segments.is_empty();
        if corrupt {
            tracing::error!(
                "the journal has a damaged segment: its segments are kept (not released) for inspection"
            );
        }
        let applier = Applier {
            inner: Arc::clone(&inner),
            watermark: replay.next_seq.saturating_sub(1),
            above: BTreeSet::new(),
            released: 0,
            keep_journal: corrupt,
            retry_wait: RETRY_FIRST,
        };
        // A thread of its own rather than the runtime's blocking pool: a
        // runtime being dropped waits for its blocking tasks, and the
        // applier may be retrying a failing store.
        let (done, applied) = oneshot::channel();
        std::thread::Builder::new()
            .name("hookhost-applier".into())
            .spawn(move || {
                applier.run(rx);
                let _ = done.send(());
            })
            .map_err(PipelineError::Thread)?;
        Ok((
            Self {
                inner,
                to_apply: tx,
            },
            applied,
        ))
    }

    /// The store events are applied into.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Make `events` durable (or find them already stored) and say which id
    /// each has. Returns only after the journal's sync.
    pub async fn accept(&self, events: Vec<StoredEvent>) -> Result<Vec<Accepted>, PipelineError> {
        let inner = &self.inner;
        if inner.store_failing.load(Ordering::Relaxed) {
            return Err(PipelineError::StoreFailing);
        }
        let mut taken = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        let mut fresh_keys = Vec::new();
        for event in events {
            let key = dedupe_key(&event.source, &event.provider_id);
            let mut shard = inner.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
            if let Some(rx) = shard.get(&key).map(watch::Sender::subscribe) {
                taken.push(Taken::Wait(rx));
            } else if let Some(seq) = inner.store.find_duplicate_key(&key)? {
                taken.push(Taken::Duplicate(seq));
            } else {
                shard.insert(key.clone(), watch::channel(Pending::InFlight).0);
                taken.push(Taken::New(fresh.len()));
                fresh.push(event.encode());
                fresh_keys.push(key);
            }
        }

        let mut seqs = Vec::new();
        if !fresh.is_empty() {
            // In its own task: if the client disconnects, hyper drops this
            // future, but the append, the pending state and the hand-off
            // to the applier must still complete, or copies would wait on
            // an `InFlight` entry forever and the applier's watermark stall.
            let inner = Arc::clone(&self.inner);
            let to_apply = self.to_apply.clone();
            let durable = tokio::spawn(async move {
                let appended = match inner.backlog.acquire_many(fresh.len() as u32).await {
                    Ok(permits) => {
                        // Given back by the applier once the events are in sled.
                        permits.forget();
                        inner.journal.append(fresh).await
                    }
                    Err(_) => Err(JournalError::Closed),
                };
                match appended {
                    Ok((range, payloads)) => {
                        let mut records = Vec::with_capacity(fresh_keys.len());
                        let mut seqs = Vec::with_capacity(fresh_keys.len());
                        for ((seq, key), bytes) in range.zip(fresh_keys).zip(payloads) {
                            inner.set(&key, Pending::Durable(seq));
                            records.push(Record {
                                seq,
                                dedupe: key,
                                bytes,
                            });
                            seqs.push(seq);
                        }
                        // If the applier is gone the server is stopping, and
                        // replay applies these at next start.
                        let _ = to_apply.send(ToApplier::Records(records));
                        Ok(seqs)
                    }
                    Err(e) => {
                        inner.backlog.add_permits(fresh_keys.len());
                        for key in fresh_keys {
                            inner.set(&key, Pending::Failed);
                            inner.remove_if(&key, |_| true);
                        }
                        Err(PipelineError::from(e))
                    }
                }
            });
            seqs = durable
                .await
                .map_err(|_| PipelineError::Journal(JournalError::Closed))??;
        }

        let mut out = Vec::with_capacity(taken.len());
        for t in taken {
            out.push(match t {
                Taken::New(i) => Accepted {
                    event_id: event_id(seqs[i]),
                    duplicate: false,
                },
                Taken::Duplicate(seq) => Accepted {
                    event_id: event_id(seq),
                    duplicate: true,
                },
                Taken::Wait(mut rx) => {
                    let state = rx
                        .wait_for(|s| *s != Pending::InFlight)
                        .await
                        .map(|s| s.clone())
                        .unwrap_or(Pending::Failed);
                    match state {
                        Pending::Durable(seq) => Accepted {
                            event_id: event_id(seq),
                            duplicate: true,
                        },
                        _ => return Err(PipelineError::OriginalFailed),
                    }
                }
            });
        }
        Ok(out)
    }

    /// Why ingest cannot take events now, if it cannot: the journal failed
    /// (until restart) or applying into sled is failing (until it works
    /// again). Readiness reports it.
    pub fn unhealthy(&self) -> Option<&'static str> {
        if self.inner.journal.is_failed() {
            Some("the journal failed after an I/O error; restart to recover")
        } else if self.inner.store_failing.load(Ordering::Relaxed) {
            Some("applying events into sled is failing")
        } else {
            None
        }
    }

    /// Stop taking events: finish the journal's queued appends, then let the
    /// applier drain into sled and sync. An event journaled in the last
    /// instant but not yet handed over is replayed at the next start.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.journal.shutdown().await;
        self.inner.backlog.close();
        let _ = self.to_apply.send(ToApplier::Stop);
    }
}

impl Inner {
    fn shard(&self, key: &[u8]) -> &Mutex<HashMap<Key, watch::Sender<Pending>>> {
        &self.pending[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn set(&self, key: &[u8], state: Pending) {
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = shard.get(key) {
            tx.send_replace(state);
        }
    }

    fn remove_if(&self, key: &[u8], pred: impl Fn(&Pending) -> bool) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.get(key).is_some_and(|tx| pred(&tx.borrow())) {
            shard.remove(key);
        }
    }
}

/// Moves journaled events into sled and tracks how far that has got.
struct Applier {
    inner: Arc<Inner>,
    /// Every sequence up to here is in sled.
    watermark: u64,
    /// Applied sequences beyond the watermark (requests finish out of
    /// order).
    above: BTreeSet<u64>,
    /// The watermark last handed to the journal's release.
    released: u64,
    /// The journal had a damaged segment: release nothing, keep it all.
    keep_journal: bool,
    /// How long to wait before the next retry of a failed apply.
    retry_wait: Duration,
}

impl Applier {
    fn run(mut self, rx: mpsc::Receiver<ToApplier>) {
        let mut last_release = Instant::now();
        let mut stopping = false;
        while !stopping {
            let wait = RELEASE_EVERY.saturating_sub(last_release.elapsed());
            let mut batch = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(ToApplier::Records(records)) => batch = records,
                Ok(ToApplier::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Whatever else arrives in the next moments joins this batch.
            // Sleep through them rather than wait on the channel: every
            // request hands over its own records, and waking for each cost
            // a context switch per request (~6k/s under load) on both
            // sides; a sleeping receiver makes a send a plain push.
            if !batch.is_empty() && !stopping {
                std::thread::sleep(GATHER);
            }
            while batch.len() < APPLY_BATCH && !stopping {
                match rx.try_recv() {
                    Ok(ToApplier::Records(more)) => batch.extend(more),
                    Ok(ToApplier::Stop) => stopping = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.apply_until_done(batch, stopping);
            }
            if stopping || last_release.elapsed() >= RELEASE_EVERY {
                self.release();
                last_release = Instant::now();
            }
        }
    }

    /// Apply `batch`, retrying with backoff while sled fails (ingest answers
    /// 503 meanwhile). When stopping, one try: the journal keeps the events
    /// for the next start.
    fn apply_until_done(&mut self, batch: Vec<Record>, stopping: bool) {
        let mut retried = false;
        loop {
            // A retry may find part of the batch routed already.
            let applied = self
                .inner
                .store
                .apply(&batch)
                .and_then(|()| self.inner.on_applied.applied(&batch, retried));
            retried = true;
            match applied {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, events = batch.len(), "applying events into sled failed; retrying");
                    self.inner.store_failing.store(true, Ordering::Relaxed);
                    if stopping || self.inner.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(self.retry_wait);
                    self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
                }
            }
        }
        if self.inner.store_failing.swap(false, Ordering::Relaxed) {
            tracing::info!("applying events into sled works again");
        }
        self.retry_wait = RETRY_FIRST;
        self.inner.backlog.add_permits(batch.len());
        for r in batch {
            self.inner
                .remove_if(&r.dedupe, |s| *s == Pending::Durable(r.seq));
            self.above.insert(r.seq);
        }
        while self.above.remove(&(self.watermark + 1)) {
            self.watermark += 1;
        }
    }

    /// Sync sled, then let the journal delete what sled now holds (with
    /// nothing new to release, sync only what else was written).
    fn release(&mut self) {
        let through = if self.keep_journal {
            self.released
        } else {
            self.inner.on_applied.releasable(self.watermark)
        };
        if through <= self.released {
            if let Err(e) = self.inner.store.sync_if_written() {
                tracing::error!(error = %e, "syncing sled failed");
            }
            return;
        }
        if let Err(e) = self.inner.store.sync() {
            tracing::error!(error = %e, "syncing sled failed; keeping the journal");
            return;
        }
        if self.inner.journal.release_through(through).is_ok() {
            self.released = through;
        }
    }
}
