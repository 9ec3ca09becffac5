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

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
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
}

fn dedupe_key(source: &str, provider_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + provider_id.len());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(provider_id.as_bytes());
    k
}

fn seq_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

impl Store {
    /// Open the event trees in an open sled database (shared with the
    /// plugins' kv trees).
    pub fn open(db: sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            events: db.open_tree("events")?,
            dedupe: db.open_tree("dedupe")?,
            db,
        })
    }

    /// Store events read from the journal. Idempotent: the first copy of a
    /// provider id keeps the dedupe entry.
    pub fn apply(&self, records: &[(u64, StoredEvent)]) -> Result<(), StoreError> {
        let mut events = sled::Batch::default();
        for (seq, event) in records {
            events.insert(&seq.to_be_bytes(), event.encode());
        }
        self.events.apply_batch(events)?;
        for (seq, event) in records {
            let key = dedupe_key(&event.source, &event.provider_id);
            // Keep the lowest sequence: on replay the original wins again.
            self.dedupe
                .fetch_and_update(key, |old| match old.and_then(seq_of) {
                    Some(first) if first <= *seq => old.map(<[u8]>::to_vec),
                    _ => Some(seq.to_be_bytes().to_vec()),
                })?;
        }
        Ok(())
    }

    /// The sequence of the stored copy of `(source, provider_id)`, if any.
    pub fn find_duplicate(
        &self,
        source: &str,
        provider_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .dedupe
            .get(dedupe_key(source, provider_id))?
            .and_then(|v| seq_of(&v)))
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
        self.events.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Write sled's buffers out (not an fsync; see the module doc).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
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
        let store = Store::open(db).expect("store");
        let records = vec![
            (1, event("gh", "a")),
            (2, event("gh", "b")),
            (3, event("st", "a")),
        ];
        store.apply(&records).expect("apply");
        store.apply(&records).expect("replay");
        store.apply(&[(9, event("gh", "a"))]).expect("late copy");
        assert_eq!(store.find_duplicate("gh", "a").expect("find"), Some(1));
        assert_eq!(store.find_duplicate("st", "a").expect("find"), Some(3));
        assert_eq!(store.find_duplicate("gh", "zzz").expect("find"), None);
        assert_eq!(store.get(2).expect("get"), Some(event("gh", "b")));
        assert_eq!(store.len(), 4);
    }
}
