//! Retention: events whose deliveries are all finished (or that matched no
//! plugin) are forgotten after the retention period, with their delivery
//! records and dedupe entries — the retention period is also the dedupe
//! window. Events with a pending delivery or a dead letter are kept: a dead
//! letter keeps its event until it is replayed or deleted.
//!
//! Runs in the background in small batches, each a handful of sled
//! operations per event, so ingest never waits behind it.

use super::records::Records;
use crate::store::{Store, StoreError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events looked at per batch.
const BATCH: usize = 1000;

/// Pause between batches: leaves the disk and the store's locks to ingest.
const PAUSE: Duration = Duration::from_millis(2);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Events forgotten.
    pub events: usize,
    /// Expired events kept because a delivery is pending or dead.
    pub held: usize,
}

/// Forget every event received before `cutoff_ms` that nothing holds.
/// Events are visited in arrival order and the pass stops at the first
/// one received at or after the cutoff, or when `stop` is cancelled (a
/// shutdown does not wait for a long pass). Blocking: run it off the async
/// workers.
pub fn purge(
    store: &Store,
    records: &Records,
    cutoff_ms: u64,
    stop: &CancellationToken,
) -> Result<Purged, StoreError> {
    let mut done = Purged::default();
    let mut after = 0;
    while !stop.is_cancelled() {
        let page = store.range(after, BATCH)?;
        let Some((last, _)) = page.last() else {
            return Ok(done);
        };
        after = *last;
        for (seq, event) in page {
            if event.received_at_ms >= cutoff_ms {
                return Ok(done);
            }
            if records.is_held(seq)? {
                done.held += 1;
                continue;
            }
            records.purge_event(seq)?;
            store.remove(seq, &event)?;
            done.events += 1;
        }
        std::thread::sleep(PAUSE);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::records::{Attempt, DeliveryKey, Next, Pending};
    use crate::delivery::retry::DeadLetterReason;
    use crate::event::StoredEvent;
    use crate::runtime::{CallReport, Outcome};
    use crate::store::Record;
    use std::sync::Arc;

    fn event(id: &str, at: u64) -> StoredEvent {
        StoredEvent {
            source: "gh".into(),
            provider_id: id.into(),
            kind: "push".into(),
            received_at_ms: at,
            headers: vec![],
            body: b"{}".to_vec(),
        }
    }

    fn report(outcome: Outcome) -> CallReport {
        CallReport {
            outcome,
            fuel_used: 1,
            duration: Duration::from_micros(5),
            peak_memory: 0,
            logs: vec![],
            logs_dropped: 0,
        }
    }

    fn finish(records: &Records, seq: u64, next: Next) {
        let key = DeliveryKey::new(seq, "p");
        let p = Pending {
            attempt: 1,
            due_ms: 0,
            round: 0,
            order_key: None,
        };
        let outcome = match next {
            Next::Done => Outcome::Ok,
            _ => Outcome::Reject("no".into()),
        };
        let a = Attempt::new(0, 1, 1, "sha", report(outcome));
        records.record(&key, &p, false, a, next, 1).expect("record");
    }

    #[test]
    fn purges_finished_and_unrouted_events_and_keeps_pending_and_dead_ones() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let store = Store::open(db, None).expect("store");
        let records = Records::open(store.db()).expect("records");
        let p: Arc<str> = Arc::from("p");
        // 1 done, 2 unrouted, 3 pending, 4 dead: all old. 5 done but new.
        let events = [(1, 100), (2, 100), (3, 100), (4, 100), (5, 5000)];
        for (seq, at) in events {
            let e = event(&format!("id{seq}"), at);
            store.apply(&[Record::new(seq, &e)]).expect("apply");
            let targets = if seq == 2 {
                vec![]
            } else {
                vec![(Arc::clone(&p), None)]
            };
            for (key, p, _) in records.route(seq, targets, false).expect("route") {
                // What the applier does for a delivery still queued.
                if seq == 3 {
                    records.persist(&key, &p).expect("persist");
                }
            }
        }
        finish(&records, 1, Next::Done);
        finish(&records, 4, Next::Dead(DeadLetterReason::Rejected));
        finish(&records, 5, Next::Done);
        assert!(records.is_unrouted(2).expect("unrouted"));
        assert_eq!(records.count_done().expect("count"), 2);

        let purged = purge(&store, &records, 1000, &CancellationToken::new()).expect("purge");
        assert_eq!(purged, Purged { events: 2, held: 2 });
        for (seq, kept) in [(1, false), (2, false), (3, true), (4, true), (5, true)] {
            assert_eq!(store.get(seq).expect("get").is_some(), kept, "event {seq}");
        }
        assert!(records.of_event(1).expect("of").is_empty());
        assert!(!records.is_unrouted(2).expect("unrouted"));
        // The dedupe window ends with the event.
        assert_eq!(store.find_duplicate("gh", "id1").expect("dedupe"), None);
        assert_eq!(store.find_duplicate("gh", "id3").expect("dedupe"), Some(3));
        assert_eq!(store.len(), 3);
        // Purged deliveries still count as delivered.
        assert_eq!(records.count_done().expect("count"), 2);
        assert_eq!(
            purge(&store, &records, 1000, &CancellationToken::new()).expect("again"),
            Purged { events: 0, held: 2 }
        );
        // A clean stop saves the total; the next start takes it, and a
        // crash after that start finds none and counts again.
        records.save_delivered(7).expect("save");
        assert_eq!(records.take_saved_delivered().expect("take"), Some(7));
        assert_eq!(records.take_saved_delivered().expect("take"), None);
    }
}
