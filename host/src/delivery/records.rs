//! The delivery records in sled: what survives a crash.
//!
//! Five trees (with `delivery_meta`'s counters), all keyed by [`DeliveryKey`] (event sequence, big-endian,
//! then plugin name) or by sequence alone, so one event's records sit
//! together and sled's order is arrival order:
//!
//! - `pending`: deliveries not finished, with their next attempt number,
//!   due time and order key ([`Pending`]): every retry, every replay, and
//!   every first attempt still queued when the applier releases the
//!   journal past its event (a first attempt that finishes before that
//!   never gets one: the journal covers it). The queue is rebuilt from
//!   this tree at start, and the journal's tail re-creates the rest; a
//!   delivery that was running when the process died runs again.
//! - `deliveries`: every delivery that has been attempted, with its state
//!   and its attempts ([`Head`]), written once per attempt.
//! - `dead`: dead letters (key to the time they died), for listing.
//! - `unrouted`: events that matched no plugin (sequence to nothing).
//!
//! Writes are plain inserts in a fixed order (attempt record before the
//! pending entry is removed); sled recovers a prefix of its writes, and the
//! journal replays events whose deliveries sled lost, so every step can be
//! repeated after a crash.

use crate::delivery::retry::DeadLetterReason;
use crate::runtime::{CallReport, LogLine, Outcome, TrapKind};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One delivery: (event sequence, plugin name). Encoded as the sequence's 8
/// big-endian bytes followed by the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey {
    /// The event's journal sequence.
    pub seq: u64,
    /// The plugin's name.
    pub plugin: Arc<str>,
}

impl DeliveryKey {
    /// A key.
    pub fn new(seq: u64, plugin: impl Into<Arc<str>>) -> Self {
        Self {
            seq,
            plugin: plugin.into(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(8 + self.plugin.len());
        k.extend_from_slice(&self.seq.to_be_bytes());
        k.extend_from_slice(self.plugin.as_bytes());
        k
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (seq, name) = bytes.split_at_checked(8)?;
        Some(Self {
            seq: u64::from_be_bytes(seq.try_into().ok()?),
            plugin: Arc::from(std::str::from_utf8(name).ok()?),
        })
    }

    /// How the admin API names a delivery (and a dead letter):
    /// `evt_…:plugin`.
    pub fn id(&self) -> String {
        format!("{}:{}", crate::event::event_id(self.seq), self.plugin)
    }

    /// The key behind [`DeliveryKey::id`].
    pub fn parse_id(id: &str) -> Option<Self> {
        let (event, plugin) = id.split_once(':')?;
        Some(Self::new(crate::event::parse_event_id(event)?, plugin))
    }
}

/// A delivery waiting to run (due or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The attempt it runs as next, 1-based within its round.
    pub attempt: u32,
    /// Not before this time (ms since the Unix epoch); 0 = at once.
    pub due_ms: u64,
    /// How many times it was replayed (0 for the first round).
    pub round: u32,
    /// Its per-key ordering value, for plugins with `order_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its next attempt.
    Pending,
    /// Handled.
    Done,
    /// Given up on; kept until replayed or deleted.
    Dead,
    /// A dead letter the operator deleted.
    Deleted,
}

impl State {
    /// The name used in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Deleted => "deleted",
        }
    }
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Replay round it belongs to.
    pub round: u32,
    /// 1-based within the round.
    pub attempt: u32,
    /// When it started, ms since the Unix epoch.
    pub at_ms: u64,
    /// SHA-256 of the plugin version that ran it.
    pub sha256: String,
    /// `ok`, `retry`, `reject` or `trap`.
    pub outcome: String,
    /// The trap's kind, when it trapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trap: Option<TrapKind>,
    /// The retry/reject message or trap detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fuel units used.
    pub fuel_used: u64,
    /// Wall-clock time of the call, in microseconds.
    pub duration_us: u64,
    /// What the plugin logged during the attempt (capped per call).
    pub logs: Vec<LogLine>,
    /// Lines dropped by the per-call caps.
    #[serde(default)]
    pub logs_dropped: u64,
}

impl Attempt {
    /// The record of one call.
    pub fn new(round: u32, attempt: u32, at_ms: u64, sha256: &str, report: CallReport) -> Self {
        let outcome = report.outcome.name();
        let (trap, error) = match report.outcome {
            Outcome::Ok => (None, None),
            Outcome::Retry(m) | Outcome::Reject(m) => (None, Some(m)),
            Outcome::Trap { kind, detail } => (Some(kind), Some(detail)),
        };
        Self {
            round,
            attempt,
            at_ms,
            sha256: sha256.to_owned(),
            outcome: outcome.to_owned(),
            trap,
            error,
            fuel_used: report.fuel_used,
            duration_us: u64::try_from(report.duration.as_micros()).unwrap_or(u64::MAX),
            logs: report.logs,
            logs_dropped: report.logs_dropped,
        }
    }
}

/// A delivery's state and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Where it stands.
    pub state: State,
    /// The current replay round.
    pub round: u32,
    /// Why it was dead-lettered (last time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<DeadLetterReason>,
    /// The last failed attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it last changed, ms since the Unix epoch.
    pub updated_ms: u64,
    /// The attempts, oldest first; at most [`MAX_ATTEMPTS_KEPT`], and only
    /// the last [`MAX_ATTEMPTS_WITH_LOGS`] keep their log lines.
    pub attempts: Vec<Attempt>,
}

/// Most attempts kept per delivery (the oldest go first): a plugin replayed
/// again and again must not grow one record without bound.
pub const MAX_ATTEMPTS_KEPT: usize = 50;
/// Attempts that keep their log lines (up to 256 KiB each).
pub const MAX_ATTEMPTS_WITH_LOGS: usize = 5;

/// What the dispatcher decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Handled: finished.
    Done,
    /// Run again at this time as the next attempt.
    RetryAt(u64),
    /// Given up on.
    Dead(DeadLetterReason),
}

/// A dead letter as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The delivery.
    pub key: DeliveryKey,
    /// When it died.
    pub dead_at_ms: u64,
    /// Its record (reason, last error, attempts).
    pub head: Head,
}

/// What a scan does with the record it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Return it.
    Take,
    /// Pass over it.
    Skip,
    /// End the scan before it.
    Stop,
}

/// One delivery of an event, as the admin API shows it.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    /// The plugin.
    pub plugin: Arc<str>,
    /// The record, if it was attempted at least once.
    pub head: Option<Head>,
    /// The waiting entry, if not finished.
    pub pending: Option<Pending>,
}

/// The delivery trees. Cheap to clone.
#[derive(Clone)]
pub struct Records {
    pending: sled::Tree,
    deliveries: sled::Tree,
    dead: sled::Tree,
    unrouted: sled::Tree,
    /// Counters that outlive the records they count (`purged_done`).
    meta: sled::Tree,
}

/// `meta` key: deliveries done whose records retention purged, so the
/// `delivered` total stays a total.
const PURGED_DONE: &[u8] = b"purged_done";

/// `meta` key: the `delivered` total written at a clean stop, removed at
/// start; its absence means the last stop was not clean.
const CLEAN_STOP_DELIVERED: &[u8] = b"clean_stop_delivered";

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|_| StoreError::Decode(crate::event::DecodeError::new("delivery record")))
}

impl Records {
    /// Open the trees in the event store's database.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            pending: db.open_tree("pending")?,
            deliveries: db.open_tree("deliveries")?,
            dead: db.open_tree("dead")?,
            unrouted: db.open_tree("unrouted")?,
            meta: db.open_tree("delivery_meta")?,
        })
    }

    /// Route a newly stored event: the deliveries to create, each with
    /// whether sled already holds its `pending` entry. A new delivery's
    /// entry is not written here: the journal holds the event until the
    /// applier persists what is still queued ([`Records::persist`]) or the
    /// delivery is recorded, so a first attempt that succeeds costs no
    /// `pending` write. `targets` may be empty: the event is then marked
    /// unrouted. With `replayed`, the event may have been routed before a
    /// crash: a delivery already recorded is left alone, and a waiting
    /// entry is handed back (the queue ignores one it holds).
    pub fn route(
        &self,
        seq: u64,
        targets: impl IntoIterator<Item = (Arc<str>, Option<String>)>,
        replayed: bool,
    ) -> Result<Vec<(DeliveryKey, Pending, bool)>, StoreError> {
        let mut created = Vec::new();
        let mut any = false;
        for (plugin, order_key) in targets {
            any = true;
            let key = DeliveryKey::new(seq, plugin);
            if replayed {
                let k = key.encode();
                if let Some(v) = self.pending.get(&k)? {
                    created.push((key, decode(&v)?, true));
                    continue;
                }
                if self.deliveries.contains_key(&k)? {
                    continue;
                }
            }
            let p = Pending {
                attempt: 1,
                due_ms: 0,
                round: 0,
                order_key,
            };
            created.push((key, p, false));
        }
        let routed_before = replayed && self.has_any(seq)?;
        if !any && !routed_before {
            self.unrouted.insert(seq.to_be_bytes(), &[])?;
        }
        Ok(created)
    }

    /// Write the `pending` entry of a queued delivery routed without one.
    pub fn persist(&self, key: &DeliveryKey, pending: &Pending) -> Result<(), StoreError> {
        self.pending.insert(key.encode(), encode(pending))?;
        Ok(())
    }

    fn has_any(&self, seq: u64) -> Result<bool, StoreError> {
        let prefix = seq.to_be_bytes();
        Ok(self
            .pending
            .scan_prefix(prefix)
            .next()
            .transpose()?
            .is_some()
            || self
                .deliveries
                .scan_prefix(prefix)
                .next()
                .transpose()?
                .is_some())
    }

    /// Record one attempt and what comes next, in this order: the attempt
    /// and state in `deliveries`, the dead-letter index, then the pending
    /// entry (written for a retry, removed otherwise when `persisted` says
    /// there is one). Returns the pending entry for a retry.
    pub fn record(
        &self,
        key: &DeliveryKey,
        pending: &Pending,
        persisted: bool,
        attempt: Attempt,
        next: Next,
        now_ms: u64,
    ) -> Result<Option<Pending>, StoreError> {
        let k = key.encode();
        let mut head = match self.deliveries.get(&k)? {
            Some(v) => decode::<Head>(&v)?,
            None => Head {
                state: State::Pending,
                round: pending.round,
                dead_reason: None,
                last_error: None,
                updated_ms: now_ms,
                attempts: Vec::new(),
            },
        };
        head.round = pending.round;
        if attempt.outcome != "ok" {
            head.last_error.clone_from(&attempt.error);
        }
        head.attempts.push(attempt);
        trim(&mut head.attempts);
        head.updated_ms = now_ms;
        head.state = match next {
            Next::Done => State::Done,
            Next::RetryAt(_) => State::Pending,
            Next::Dead(reason) => {
                head.dead_reason = Some(reason);
                State::Dead
            }
        };
        let was_dead_before = head.dead_reason.is_some() && !matches!(next, Next::Dead(_));
        self.deliveries.insert(k.as_slice(), encode(&head))?;
        if was_dead_before {
            // A dead letter replayed, or one whose pending entry survived a
            // crash: it must not stay listed once it runs again.
            self.dead.remove(k.as_slice())?;
        }
        match next {
            Next::RetryAt(due_ms) => {
                let p = Pending {
                    attempt: pending.attempt.saturating_add(1),
                    due_ms,
                    round: pending.round,
                    order_key: pending.order_key.clone(),
                };
                self.pending.insert(k, encode(&p))?;
                Ok(Some(p))
            }
            Next::Dead(_) => {
                self.dead.insert(k.as_slice(), &now_ms.to_be_bytes())?;
                if persisted {
                    self.pending.remove(k)?;
                }
                Ok(None)
            }
            Next::Done => {
                if persisted {
                    self.pending.remove(k)?;
                }
                Ok(None)
            }
        }
    }

    /// Every unfinished delivery, in arrival order: the queue after a
    /// restart. A record that cannot be decoded is skipped and logged.
    pub fn recover(&self) -> Result<Vec<(DeliveryKey, Pending)>, StoreError> {
        let mut out = Vec::new();
        for item in self.pending.iter() {
            let (k, v) = item?;
            match (DeliveryKey::decode(&k), decode::<Pending>(&v)) {
                (Some(key), Ok(p)) => out.push((key, p)),
                _ => tracing::error!("skipping an undecodable pending delivery record"),
            }
        }
        Ok(out)
    }

    /// Start a delivery over (a replay): a new round from attempt 1, due
    /// now, whatever state it was in. Returns the new pending entry (`None`
    /// if it is still pending: it will run anyway) and whether this call
    /// took it off the dead letters.
    pub fn restart(
        &self,
        key: &DeliveryKey,
        order_key: Option<String>,
        now_ms: u64,
    ) -> Result<(Option<Pending>, bool), StoreError> {
        let k = key.encode();
        if self.pending.contains_key(&k)? {
            return Ok((None, false));
        }
        let round = match self.deliveries.get(&k)? {
            Some(v) => {
                let mut head = decode::<Head>(&v)?;
                head.round = head.round.saturating_add(1);
                head.state = State::Pending;
                head.updated_ms = now_ms;
                self.deliveries.insert(k.as_slice(), encode(&head))?;
                head.round
            }
            None => 0,
        };
        let p = Pending {
            attempt: 1,
            due_ms: 0,
            round,
            order_key,
        };
        self.pending.insert(k.as_slice(), encode(&p))?;
        let was_dead = self.dead.remove(k)?.is_some();
        self.unrouted.remove(key.seq.to_be_bytes())?;
        Ok((Some(p), was_dead))
    }

    /// A dead letter's record, if `key` is one.
    pub fn dead_letter(&self, key: &DeliveryKey) -> Result<Option<DeadLetter>, StoreError> {
        let k = key.encode();
        let Some(at) = self.dead.get(&k)? else {
            return Ok(None);
        };
        let Some(head) = self.deliveries.get(&k)? else {
            return Ok(None);
        };
        Ok(Some(DeadLetter {
            key: key.clone(),
            dead_at_ms: be_u64(&at),
            head: decode(&head)?,
        }))
    }

    /// Dead letters after `after` (exclusive), in arrival order, as long
    /// as `visit` (given each one's key and time of death) does not say
    /// [`Scan::Stop`]; those it says [`Scan::Take`] to are returned.
    pub fn dead_letters(
        &self,
        after: Option<&DeliveryKey>,
        mut visit: impl FnMut(&DeliveryKey, u64) -> Scan,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let start = after.map(|a| {
            let mut k = a.encode();
            k.push(0);
            k
        });
        let range = match &start {
            Some(s) => self.dead.range(s.as_slice()..),
            None => self.dead.iter(),
        };
        let mut out = Vec::new();
        for item in range {
            let (k, at) = item?;
            let Some(key) = DeliveryKey::decode(&k) else {
                continue;
            };
            let dead_at_ms = be_u64(&at);
            match visit(&key, dead_at_ms) {
                Scan::Stop => break,
                Scan::Skip => continue,
                Scan::Take => {}
            }
            if let Some(head) = self.deliveries.get(&k)? {
                out.push(DeadLetter {
                    key,
                    dead_at_ms,
                    head: decode(&head)?,
                });
            }
        }
        Ok(out)
    }

    /// Delete a dead letter: it stays in the event's history as `deleted`.
    /// Returns whether it was one.
    pub fn delete_dead(&self, key: &DeliveryKey, now_ms: u64) -> Result<bool, StoreError> {
        let k = key.encode();
        if self.dead.remove(&k)?.is_none() {
            return Ok(false);
        }
        if let Some(v) = self.deliveries.get(&k)? {
            let mut head = decode::<Head>(&v)?;
            head.state = State::Deleted;
            head.updated_ms = now_ms;
            self.deliveries.insert(k, encode(&head))?;
        }
        Ok(true)
    }

    /// How many dead letters there are (walks the index: for start-up).
    pub fn count_dead(&self) -> usize {
        self.dead.len()
    }

    /// How many deliveries are done, purged ones included, by walking
    /// every record: only after an unclean stop (see
    /// [`Records::take_saved_delivered`]). Reads the state from the
    /// record's first bytes (`state` is the first field written) instead of
    /// decoding records that may hold 256 KiB of log lines.
    pub fn count_done(&self) -> Result<u64, StoreError> {
        const DONE: &[u8] = b"{\"state\":\"done\"";
        let mut n = self.meta.get(PURGED_DONE)?.map_or(0, |v| be_u64(&v));
        for item in self.deliveries.iter() {
            let (_, v) = item?;
            if v.starts_with(DONE) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The `delivered` total saved by the last clean stop, if the last stop
    /// was clean; taking it marks the data as in use, so a crash from here
    /// on makes the next start count again.
    pub fn take_saved_delivered(&self) -> Result<Option<u64>, StoreError> {
        let Some(v) = self.meta.remove(CLEAN_STOP_DELIVERED)? else {
            return Ok(None);
        };
        Ok(Some(be_u64(&v)))
    }

    /// Save the `delivered` total at a clean stop (before the final flush),
    /// so the next start need not walk every record.
    pub fn save_delivered(&self, delivered: u64) -> Result<(), StoreError> {
        self.meta
            .insert(CLEAN_STOP_DELIVERED, &delivered.to_be_bytes())?;
        Ok(())
    }

    /// Every delivery of one event.
    pub fn of_event(&self, seq: u64) -> Result<Vec<DeliveryView>, StoreError> {
        let prefix = seq.to_be_bytes();
        let mut out: Vec<DeliveryView> = Vec::new();
        for item in self.deliveries.scan_prefix(prefix) {
            let (k, v) = item?;
            if let Some(key) = DeliveryKey::decode(&k) {
                out.push(DeliveryView {
                    plugin: key.plugin,
                    head: Some(decode(&v)?),
                    pending: None,
                });
            }
        }
        for item in self.pending.scan_prefix(prefix) {
            let (k, v) = item?;
            let Some(key) = DeliveryKey::decode(&k) else {
                continue;
            };
            let p = decode::<Pending>(&v)?;
            match out.iter_mut().find(|d| d.plugin == key.plugin) {
                Some(d) => d.pending = Some(p),
                None => out.push(DeliveryView {
                    plugin: key.plugin,
                    head: None,
                    pending: Some(p),
                }),
            }
        }
        out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        Ok(out)
    }

    /// Whether the event matched no plugin (and was not replayed since).
    pub fn is_unrouted(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.unrouted.contains_key(seq.to_be_bytes())?)
    }

    /// Forget every record of an event (retention). Its pending entries
    /// must be gone already: a pending delivery is never purged. Done
    /// deliveries are added to the purged total first.
    pub fn purge_event(&self, seq: u64) -> Result<(), StoreError> {
        let prefix = seq.to_be_bytes();
        let mut keys = Vec::new();
        let mut done = 0u64;
        for item in self.deliveries.scan_prefix(prefix) {
            let (k, v) = item?;
            if decode::<Head>(&v).is_ok_and(|h| h.state == State::Done) {
                done += 1;
            }
            keys.push(k);
        }
        if done > 0 {
            self.meta.update_and_fetch(PURGED_DONE, |old| {
                let total = old.map_or(0, be_u64).saturating_add(done);
                Some(total.to_be_bytes().to_vec())
            })?;
        }
        for k in keys {
            self.deliveries.remove(k)?;
        }
        self.unrouted.remove(prefix)?;
        Ok(())
    }

    /// Whether an event has a delivery that is pending or dead: such an
    /// event is kept past retention.
    pub fn is_held(&self, seq: u64) -> Result<bool, StoreError> {
        let prefix = seq.to_be_bytes();
        if self
            .pending
            .scan_prefix(prefix)
            .next()
            .transpose()?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self.dead.scan_prefix(prefix).next().transpose()?.is_some())
    }
}

fn be_u64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Keep the newest [`MAX_ATTEMPTS_KEPT`] attempts, and log lines only on the
/// newest [`MAX_ATTEMPTS_WITH_LOGS`].
fn trim(attempts: &mut Vec<Attempt>) {
    if attempts.len() > MAX_ATTEMPTS_KEPT {
        attempts.drain(..attempts.len() - MAX_ATTEMPTS_KEPT);
    }
    let with_logs = attempts.len().saturating_sub(MAX_ATTEMPTS_WITH_LOGS);
    for a in &mut attempts[..with_logs] {
        if !a.logs.is_empty() {
            a.logs_dropped += a.logs.len() as u64;
            a.logs = Vec::new();
        }
    }
}
