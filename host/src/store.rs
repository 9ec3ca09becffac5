//! The events in sled: what everything after ingest reads.
//!
//! Two trees: `events` (journal sequence, big-endian, to the encoded
//! [`StoredEvent`]) and `dedupe` (`source NUL provider id` to the sequence
//! of the first copy). Applying is idempotent, so replaying the journal
//! after a crash rewrites what is already there and adds what is not.
//!
//! sled is not the durability point (the journal is): this module never
//! syncs on the acknowledgement path.

use crate::event::StoredEvent;
use std::sync::atomic::Ordering;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// sled's data file could not be `fsync`ed.
    #[error("syncing sled's data file: {0}")]
    Sync(std::io::Error),
    /// A stored value could not be decoded.
    #[error(transparent)]
    Decode(#[from] crate::event::DecodeError),
}

/// The event store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    events: sled::Tree,
    dedupe: sled::Tree,
    data_file: Option<std::path::PathBuf>,
    /// Events stored, kept in memory: sled's `len` walks the whole tree,
    /// and stats are read often. Counted once at open.
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The dedupe index key of an event: `source NUL provider id`. The pipeline
/// keys its in-flight map the same way.
pub fn dedupe_key(source: &str, provider_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + provider_id.len());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(provider_id.as_bytes());
    k
}

/// One journaled event to store: the bytes the journal holds, stored as
/// they are (no second encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Journal sequence: the event's id.
    pub seq: u64,
    /// [`dedupe_key`] of the event.
    pub dedupe: Vec<u8>,
    /// The encoded [`StoredEvent`].
    pub bytes: Vec<u8>,
}

impl Record {
    /// A record for an event, encoding it.
    pub fn new(seq: u64, event: &StoredEvent) -> Self {
        Self {
            seq,
            dedupe: dedupe_key(&event.source, &event.provider_id),
            bytes: event.encode(),
        }
    }
}

fn seq_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// sled's write buffer and on-disk segment size. Each full buffer is
/// written by a thread of sled's pool; the 512 KiB default meant dozens of
/// hand-offs a second under load. Persisted in the database: fixed here.
const SEGMENT_SIZE: usize = 8 << 20;

/// Open (or create) the sled database at `path`, tuned for ingest:
/// `HighThroughput` (less segment cleaning than the default `LowSpace`),
/// large segments, and no background flush: the applier syncs sled every
/// second (see [`Store::sync`]), and sled's own flush is no durability
/// point (the journal is).
pub fn open_db(path: &std::path::Path) -> Result<sled::Db, StoreError> {
    Ok(sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .segment_size(SEGMENT_SIZE)
        .flush_every_ms(None)
        .open()?)
}

impl Store {
    /// Open the event trees in an open sled database (shared with the
    /// plugins' kv trees). `dir` is where [`open_db`] opened it, so that
    /// [`Store::sync`] can `fsync` its data file; `None` for a temporary
    /// database.
    pub fn open(db: sled::Db, dir: Option<&std::path::Path>) -> Result<Self, StoreError> {
        let events = db.open_tree("events")?;
        let count = std::sync::Arc::new((events.len() as u64).into());
        Ok(Self {
            events,
            dedupe: db.open_tree("dedupe")?,
            data_file: dir.map(|d| d.join("db")),
            count,
            db,
        })
    }

    /// Store events read from the journal. Idempotent: the first copy of a
    /// provider id keeps the dedupe entry. Only one thread may apply at a
    /// time (the applier, or replay before it starts): the dedupe check
    /// reads before the insert writes.
    pub fn apply(&self, records: &[Record]) -> Result<(), StoreError> {
        // Plain inserts, not `sled::Batch`: every batch seals and writes
        // sled's log buffer with a `sync_file_range`, competing with the
        // journal's `fdatasync` for the disk. Atomicity is not needed:
        // the journal is replayed (idempotently) until sled is synced.
        for r in records {
            if self
                .events
                .insert(r.seq.to_be_bytes(), r.bytes.as_slice())?
                .is_none()
            {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
            match self.dedupe.get(&r.dedupe)?.and_then(|v| seq_of(&v)) {
                Some(first) if first <= r.seq => {}
                _ => {
                    self.dedupe
                        .insert(r.dedupe.as_slice(), &r.seq.to_be_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// The sequence of the stored copy of `(source, provider_id)`, if any.
    pub fn find_duplicate(
        &self,
        source: &str,
        provider_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.find_duplicate_key(&dedupe_key(source, provider_id))
    }

    /// [`Store::find_duplicate`] by [`dedupe_key`].
    pub fn find_duplicate_key(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        Ok(self.dedupe.get(key)?.and_then(|v| seq_of(&v)))
    }

    /// One event by journal sequence.
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        match self.events.get(seq.to_be_bytes())? {
            Some(v) => Ok(Some(StoredEvent::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// How many events are stored.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events after sequence `after`, oldest first, at most `limit`: for
    /// listing and for retention. Undecodable records are skipped.
    pub fn range(&self, after: u64, limit: usize) -> Result<Vec<(u64, StoredEvent)>, StoreError> {
        let mut out = Vec::new();
        let Some(start) = after.checked_add(1) else {
            return Ok(out);
        };
        for item in self.events.range(start.to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Some(seq) = seq_of(&k) else { continue };
            match StoredEvent::decode(&v) {
                Ok(e) => out.push((seq, e)),
                Err(e) => tracing::error!(seq, error = %e, "skipping an undecodable stored event"),
            }
        }
        Ok(out)
    }

    /// Forget an event and, if it is the copy the dedupe index points to,
    /// its dedupe entry (retention: the dedupe window ends with the event).
    pub fn remove(&self, seq: u64, event: &StoredEvent) -> Result<(), StoreError> {
        let key = dedupe_key(&event.source, &event.provider_id);
        if self.find_duplicate_key(&key)? == Some(seq) {
            self.dedupe.remove(key)?;
        }
        if self.events.remove(seq.to_be_bytes())?.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The sled database (the delivery records live in it too).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Make what sled holds durable, as far as a power cut goes: sled's
    /// flush ends in `sync_file_range` (neither the disk cache nor the
    /// file's metadata), so the data file is `fsync`ed after it. Journal
    /// segments are only released after this. Blocking.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.fsync()
    }

    /// Like [`Store::sync`], but skip the `fsync` when sled had nothing
    /// buffered: what the applier runs each second while no events arrive,
    /// so writes that do not come through the journal (plugins' key-value
    /// state shares this database, and sled's own background flush is off)
    /// still reach the disk, and an idle server does not sync the disk
    /// every second. Returns whether it synced.
    pub fn sync_if_written(&self) -> Result<bool, StoreError> {
        if self.db.flush()? == 0 {
            return Ok(false);
        }
        self.fsync().map(|()| true)
    }

    fn fsync(&self) -> Result<(), StoreError> {
        if let Some(path) = &self.data_file {
            std::fs::File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::Sync)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, provider_id: &str) -> StoredEvent {
        StoredEvent {
            source: source.into(),
            provider_id: provider_id.into(),
            kind: "k".into(),
            received_at_ms: 1,
            headers: vec![],
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn apply_is_idempotent_and_the_first_copy_wins() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let store = Store::open(db, None).expect("store");
        let records = vec![
            Record::new(1, &event("gh", "a")),
            Record::new(2, &event("gh", "b")),
            Record::new(3, &event("st", "a")),
            // A second copy in the same batch: the first keeps the entry.
            Record::new(4, &event("gh", "a")),
        ];
        store.apply(&records).expect("apply");
        store.apply(&records).expect("replay");
        store
            .apply(&[Record::new(9, &event("gh", "a"))])
            .expect("late copy");
        assert_eq!(store.find_duplicate("gh", "a").expect("find"), Some(1));
        assert_eq!(store.find_duplicate("st", "a").expect("find"), Some(3));
        assert_eq!(store.find_duplicate("gh", "zzz").expect("find"), None);
        assert_eq!(store.get(2).expect("get"), Some(event("gh", "b")));
        assert_eq!(store.len(), 5);
        store.sync().expect("sync");
    }

    #[test]
    fn sync_fsyncs_the_data_file_of_an_on_disk_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let store =
            Store::open(open_db(dir.path()).expect("open"), Some(dir.path())).expect("store");
        store
            .apply(&[Record::new(1, &event("gh", "a"))])
            .expect("apply");
        store.sync().expect("sync");
        assert!(!store.sync_if_written().expect("idle"), "nothing new");
        store
            .apply(&[Record::new(2, &event("gh", "b"))])
            .expect("apply");
        assert!(store.sync_if_written().expect("sync"), "one new event");
        assert!(!store.sync_if_written().expect("idle"), "nothing new");
        let missing = Store::open(
            sled::Config::new().temporary(true).open().expect("sled"),
            Some(&dir.path().join("nowhere")),
        )
        .expect("store");
        assert!(
            missing.sync().is_err(),
            "a data file that is not there is an error, not a silent success"
        );
    }
}
