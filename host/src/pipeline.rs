//! Where an accepted event becomes durable and then stored.
//!
//! [`Pipeline::accept`] dedupes each event against sled and against events
//! still between the journal and sled, appends the new ones to the journal
//! (the durability point) and only then returns. The applier task moves
//! journaled events into sled off the acknowledgement path, and releases
//! journal segments once sled holds them.
//!
//! Dedupe holds across that gap: a copy of an event whose original is
//! still in an unsynced batch waits for that sync and then answers as a
//! duplicate; two copies in one batch are stored once.

use crate::event::{event_id, StoredEvent};
use crate::journal::{Journal, JournalError, Replay};
use crate::store::{Store, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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
    /// The original of a duplicate failed to become durable.
    #[error("an earlier copy of this event is being stored and failed; retry")]
    OriginalFailed,
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

type Key = (String, String);

/// Shards of the in-flight map: concurrent requests for different events
/// rarely share a lock. Each lock is held for a map operation and a sled
/// read, never across an await.
const SHARDS: usize = 16;

/// How often the applier flushes sled and releases applied journal
/// segments: bounds how much journal is replayed after a crash.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Most events applied into sled in one batch.
const APPLY_BATCH: usize = 4096;

/// The ingest pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    store: Store,
    pending: Vec<Mutex<HashMap<Key, watch::Sender<Pending>>>>,
    hasher: std::collections::hash_map::RandomState,
    to_apply: mpsc::Sender<Vec<(u64, StoredEvent)>>,
    /// Tells the applier to drain and stop: it cannot wait for the channel
    /// to close, since it shares `Inner` (and so the sender) with us.
    stop: tokio_util::sync::CancellationToken,
}

enum Taken {
    New(usize),
    Duplicate(u64),
    Wait(watch::Receiver<Pending>),
}

impl Pipeline {
    /// Apply what the journal replayed into sled (so ingest can start from
    /// a complete store), then start the applier task.
    ///
    /// Returns the pipeline and the applier's handle: await it after
    /// [`Pipeline::shutdown`] to know everything reached sled.
    pub fn start(
        journal: Journal,
        replay: Replay,
        store: Store,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), PipelineError> {
        let mut decoded = Vec::with_capacity(replay.records.len());
        for (seq, bytes) in replay.records {
            match StoredEvent::decode(&bytes) {
                Ok(e) => decoded.push((seq, e)),
                // Checksummed, so this is a format bug, not a torn write:
                // keep going with the rest and say so.
                Err(e) => {
                    tracing::error!(seq, error = %e, "skipping an undecodable journal record")
                }
            }
        }
        for chunk in decoded.chunks(APPLY_BATCH) {
            store.apply(chunk)?;
        }
        let (tx, rx) = mpsc::channel(1024);
        let inner = Arc::new(Inner {
            journal: journal.clone(),
            store: store.clone(),
            pending: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            to_apply: tx,
            stop: Default::default(),
        });
        let applier = Applier {
            inner: Arc::clone(&inner),
            watermark: replay.next_seq.saturating_sub(1),
            above: BTreeSet::new(),
            released: 0,
        };
        let handle = tokio::spawn(applier.run(rx));
        Ok((Self { inner }, handle))
    }

    /// The store events are applied into.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Make `events` durable (or find them already stored) and say which id
    /// each has. Returns only after the journal's sync.
    pub async fn accept(&self, events: Vec<StoredEvent>) -> Result<Vec<Accepted>, PipelineError> {
        let inner = &self.inner;
        let mut taken = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        let mut fresh_keys = Vec::new();
        for event in events {
            let key = (event.source.clone(), event.provider_id.clone());
            let mut shard = inner.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
            if let Some(rx) = shard.get(&key).map(watch::Sender::subscribe) {
                taken.push(Taken::Wait(rx));
            } else if let Some(seq) = inner.store.find_duplicate(&key.0, &key.1)? {
                taken.push(Taken::Duplicate(seq));
            } else {
                shard.insert(key.clone(), watch::channel(Pending::InFlight).0);
                taken.push(Taken::New(fresh.len()));
                fresh.push(event.encode());
                fresh_keys.push((key, event));
            }
        }

        let mut seqs = Vec::new();
        if !fresh.is_empty() {
            // In its own task: if the client disconnects, hyper drops this
            // future, but the append, the pending state and the hand-off
            // to the applier must still complete, or copies would wait on
            // an `InFlight` entry forever and the applier's watermark stall.
            let inner = Arc::clone(&self.inner);
            let durable = tokio::spawn(async move {
                match inner.journal.append(fresh).await {
                    Ok(range) => {
                        let mut applied = Vec::with_capacity(fresh_keys.len());
                        let mut seqs = Vec::with_capacity(fresh_keys.len());
                        for (seq, (key, event)) in range.zip(fresh_keys) {
                            inner.set(&key, Pending::Durable(seq));
                            applied.push((seq, event));
                            seqs.push(seq);
                        }
                        // Never dropped: if the applier is gone the server
                        // is stopping, and replay applies these at next start.
                        let _ = inner.to_apply.send(applied).await;
                        Ok(seqs)
                    }
                    Err(e) => {
                        for (key, _) in fresh_keys {
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

    /// Stop taking events: finish the journal's queued appends, then let the
    /// applier drain into sled and flush. An event journaled in the last
    /// instant but not yet handed over is replayed at the next start.
    pub async fn shutdown(&self) {
        self.inner.journal.shutdown().await;
        self.inner.stop.cancel();
    }
}

impl Inner {
    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, watch::Sender<Pending>>> {
        &self.pending[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn set(&self, key: &Key, state: Pending) {
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = shard.get(key) {
            tx.send_replace(state);
        }
    }

    fn remove_if(&self, key: &Key, pred: impl Fn(&Pending) -> bool) {
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
}

impl Applier {
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<(u64, StoredEvent)>>) {
        let mut tick = tokio::time::interval(RELEASE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.inner.stop.clone();
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => self.apply_with_queued(batch, &mut rx),
                    None => break,
                },
                _ = tick.tick() => self.release().await,
                _ = stop.cancelled() => {
                    while let Ok(batch) = rx.try_recv() {
                        self.apply_with_queued(batch, &mut rx);
                    }
                    break;
                }
            }
        }
        self.release().await;
    }

    /// Apply `batch` and whatever else is queued, up to [`APPLY_BATCH`].
    fn apply_with_queued(
        &mut self,
        mut batch: Vec<(u64, StoredEvent)>,
        rx: &mut mpsc::Receiver<Vec<(u64, StoredEvent)>>,
    ) {
        while batch.len() < APPLY_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        self.apply(batch);
    }

    fn apply(&mut self, batch: Vec<(u64, StoredEvent)>) {
        if let Err(e) = self.inner.store.apply(&batch) {
            // The events are durable in the journal; a restart replays them.
            // Until then they stay in the pending map, so dedupe still holds.
            tracing::error!(error = %e, events = batch.len(), "applying events into sled failed");
            return;
        }
        for (seq, event) in batch {
            let key = (event.source, event.provider_id);
            self.inner.remove_if(&key, |s| *s == Pending::Durable(seq));
            self.above.insert(seq);
        }
        while self.above.remove(&(self.watermark + 1)) {
            self.watermark += 1;
        }
    }

    async fn release(&mut self) {
        if self.watermark == self.released {
            return;
        }
        // sled's flush is not an fsync (see store.rs): a process crash
        // cannot lose what it wrote, a power cut could. Segments are only
        // released after it, and whole segments only (64 MiB by default).
        if let Err(e) = self.inner.store.flush().await {
            tracing::error!(error = %e, "flushing sled failed; keeping the journal");
            return;
        }
        if self
            .inner
            .journal
            .release_through(self.watermark)
            .await
            .is_ok()
        {
            self.released = self.watermark;
        }
    }
}
