//! `/admin/events`: stored events, oldest first, with their delivery status;
//! one event with every delivery and attempt; replay.
//!
//! An event's `status` is derived from its deliveries: `unrouted` (none:
//! no plugin subscribed), `pending` (one still waiting or running), `dead`
//! (one dead-lettered, none pending), `delivered` (every one done, or a
//! dead letter deleted).

use super::{
    bad_request, not_found, page_limit, param, query, store_failed, text_or_base64, Admin, MAX_SCAN,
};
use crate::api::ApiError;
use crate::delivery::records::{self, Attempt, DeliveryKey, DeliveryView};
use crate::delivery::Engine;
use crate::event::{event_id, parse_event_id, StoredEvent};
use crate::store::StoreError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// An event's status, from its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unrouted,
    Pending,
    Dead,
    Delivered,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unrouted => "unrouted",
            Self::Pending => "pending",
            Self::Dead => "dead",
            Self::Delivered => "delivered",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unrouted" => Self::Unrouted,
            "pending" => Self::Pending,
            "dead" => Self::Dead,
            "delivered" => Self::Delivered,
            _ => return None,
        })
    }

    /// The status of an event with these deliveries. No delivery at all is
    /// `unrouted`: the event matched no plugin (`Records::is_unrouted`), or
    /// it is in the instant between being stored and being routed.
    fn of(deliveries: &[DeliveryView]) -> Self {
        let state = |d: &DeliveryView| delivery_state(d);
        if deliveries.is_empty() {
            Self::Unrouted
        } else if deliveries.iter().any(|d| state(d) == "pending") {
            Self::Pending
        } else if deliveries.iter().any(|d| state(d) == "dead") {
            Self::Dead
        } else {
            Self::Delivered
        }
    }
}

fn status_of(engine: &Engine, seq: u64) -> Result<Status, StoreError> {
    Ok(Status::of(&engine.deliveries_of(seq)?))
}

/// A delivery's state: `pending` while it waits (or runs), else its
/// record's (`done`, `dead`, `deleted`).
fn delivery_state(d: &DeliveryView) -> &'static str {
    match (&d.pending, &d.head) {
        (Some(_), _) | (None, None) => "pending",
        (None, Some(h)) => h.state.as_str(),
    }
}

/// Query of `GET /admin/events`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ListQuery {
    source: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Why a listing scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The page is full.
    Full,
    /// [`MAX_SCAN`] events were read.
    Budget,
    /// No more events.
    End,
}

/// `GET /admin/events?source=&kind=&status=&limit=&cursor=`: events
/// oldest first, `{"events":[{"event_id","source","kind","provider_id",
/// "received_at_ms","status"}],"next_cursor":"evt_…"|null}`. Filters are
/// applied while scanning, at most [`MAX_SCAN`] events a request: a page
/// can be short (even empty) with a `next_cursor` to go on from. `cursor`
/// is an event id (exclusive).
pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(q.limit.as_deref())?;
    let status = match param(q.status) {
        None => None,
        Some(s) => Some(Status::parse(&s).ok_or_else(|| {
            bad_request(format!(
                "status {s:?} is not one of unrouted, pending, dead, delivered"
            ))
        })?),
    };
    let after = match param(q.cursor) {
        None => 0,
        Some(c) => parse_event_id(&c).ok_or_else(|| {
            bad_request(format!(
                "cursor {c:?} is not an event id (evt_ and 16 hex digits)"
            ))
        })?,
    };
    let (source, kind) = (param(q.source), param(q.kind));
    let engine = admin.engine()?;
    let store = engine.store();

    let mut out = Vec::new();
    let mut scanned = 0;
    let mut last = after;
    let stop = 'scan: loop {
        let want = (MAX_SCAN - scanned).min(1000);
        let batch = store.range(last, want).map_err(store_failed)?;
        let got = batch.len();
        for (seq, event) in batch {
            scanned += 1;
            last = seq;
            if source.as_deref().is_some_and(|s| s != event.source)
                || kind.as_deref().is_some_and(|k| k != event.kind)
            {
                continue;
            }
            let st = status_of(engine, seq).map_err(store_failed)?;
            if status.is_some_and(|want| want != st) {
                continue;
            }
            out.push(summary(seq, &event, st));
            if out.len() >= limit {
                break 'scan Stop::Full;
            }
        }
        if got < want {
            break Stop::End;
        }
        if scanned >= MAX_SCAN {
            break Stop::Budget;
        }
    };
    let next_cursor = match stop {
        Stop::End => None,
        Stop::Full | Stop::Budget => Some(event_id(last)),
    };
    Ok(Json(json!({ "events": out, "next_cursor": next_cursor })))
}

fn summary(seq: u64, e: &StoredEvent, status: Status) -> Value {
    json!({
        "event_id": event_id(seq),
        "source": e.source,
        "kind": e.kind,
        "provider_id": e.provider_id,
        "received_at_ms": e.received_at_ms,
        "status": status.as_str(),
    })
}

/// `GET /admin/events/{event_id}`: the event (with `headers` as
/// `[name, value]` pairs and `body` as text or base64, see
/// `body_encoding`), its `status`, and `deliveries`, one per plugin, each
/// with its attempts and the log lines written during them.
pub(super) async fn one(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let seq = parse_id(&id)?;
    let engine = admin.engine()?;
    let event = engine
        .store()
        .get(seq)
        .map_err(store_failed)?
        .ok_or_else(|| unknown(&id))?;
    let deliveries = engine.deliveries_of(seq).map_err(store_failed)?;
    let status = Status::of(&deliveries);
    let mut v = summary(seq, &event, status);
    let (body, body_encoding) = text_or_base64(&event.body);
    if let Value::Object(m) = &mut v {
        m.insert("headers".into(), json!(event.headers));
        m.insert("body".into(), body.into());
        m.insert("body_encoding".into(), body_encoding.into());
        m.insert(
            "deliveries".into(),
            deliveries
                .iter()
                .map(|d| delivery_json(seq, d))
                .collect::<Vec<_>>()
                .into(),
        );
    }
    Ok(Json(v))
}

/// `POST /admin/events/{event_id}/replay`: every plugin subscribed to the
/// event now gets a fresh delivery (a delivery still pending is left to
/// run). `{"replayed":true,"event_id":…,"plugins":[…]}`; `plugins` is
/// empty when no plugin subscribes to it any more.
pub(super) async fn replay(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let seq = parse_id(&id)?;
    let engine = admin.engine()?;
    let plugins = engine
        .replay_event(seq)
        .map_err(store_failed)?
        .ok_or_else(|| unknown(&id))?;
    tracing::info!(event_id = %id, plugins = plugins.len(), "event replayed by the admin API");
    Ok(Json(
        json!({ "replayed": true, "event_id": event_id(seq), "plugins": plugins }),
    ))
}

/// A malformed id is 404 like an unknown one (no such resource), with a
/// message saying what an id looks like.
fn parse_id(id: &str) -> Result<u64, ApiError> {
    parse_event_id(id).ok_or_else(|| {
        not_found(format!(
            "{id:?} is not an event id: ids are evt_ and 16 hex digits, as ingest answers them"
        ))
    })
}

fn unknown(id: &str) -> ApiError {
    not_found(format!("no event {id}"))
}

/// One delivery of an event (see [`one`]).
fn delivery_json(seq: u64, d: &DeliveryView) -> Value {
    let key = DeliveryKey::new(seq, d.plugin.clone());
    let state = delivery_state(d);
    let head = d.head.as_ref();
    let dead =
        head.is_some_and(|h| matches!(h.state, records::State::Dead | records::State::Deleted));
    json!({
        "plugin": &*d.plugin,
        "id": key.id(),
        "state": state,
        "round": d.pending.as_ref().map(|p| p.round).or(head.map(|h| h.round)).unwrap_or(0),
        "next_attempt": d.pending.as_ref().map(|p| p.attempt),
        "due_ms": d.pending.as_ref().map(|p| p.due_ms),
        "dead_reason": head
            .filter(|_| dead && d.pending.is_none())
            .and_then(|h| h.dead_reason)
            .map(|r| r.as_str()),
        "last_error": head.and_then(|h| h.last_error.as_deref()),
        "updated_ms": head.map(|h| h.updated_ms),
        "attempts": head.map_or_else(Vec::new, |h| h.attempts.iter().map(attempt_json).collect()),
    })
}

/// One attempt, every field present (`null` when it does not apply).
pub(super) fn attempt_json(a: &Attempt) -> Value {
    let logs: Vec<Value> = a
        .logs
        .iter()
        .map(|l| {
            let fields: Map<String, Value> = l
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            json!({
                "at_ms": l.at_ms,
                "level": l.level,
                "message": l.message,
                "fields": fields,
            })
        })
        .collect();
    json!({
        "round": a.round,
        "attempt": a.attempt,
        "at_ms": a.at_ms,
        "sha256": a.sha256,
        "outcome": a.outcome,
        "trap": a.trap,
        "error": a.error,
        "fuel_used": a.fuel_used,
        "duration_us": a.duration_us,
        "logs": logs,
        "logs_dropped": a.logs_dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::records::{Head, Pending, State as DState};

    fn view(pending: bool, state: Option<DState>) -> DeliveryView {
        DeliveryView {
            plugin: "p".into(),
            head: state.map(|state| Head {
                state,
                round: 0,
                dead_reason: None,
                last_error: None,
                updated_ms: 0,
                attempts: Vec::new(),
            }),
            pending: pending.then_some(Pending {
                attempt: 2,
                due_ms: 5,
                round: 0,
                order_key: None,
            }),
        }
    }

    #[test]
    fn status_follows_the_deliveries() {
        assert_eq!(Status::of(&[]), Status::Unrouted);
        assert_eq!(Status::of(&[view(true, None)]), Status::Pending);
        assert_eq!(
            Status::of(&[
                view(false, Some(DState::Done)),
                view(true, Some(DState::Pending))
            ]),
            Status::Pending
        );
        assert_eq!(
            Status::of(&[view(false, Some(DState::Dead)), view(true, None)]),
            Status::Pending,
            "pending wins over dead"
        );
        assert_eq!(
            Status::of(&[
                view(false, Some(DState::Dead)),
                view(false, Some(DState::Done))
            ]),
            Status::Dead
        );
        assert_eq!(
            Status::of(&[
                view(false, Some(DState::Done)),
                view(false, Some(DState::Deleted))
            ]),
            Status::Delivered
        );
    }

    #[test]
    fn statuses_parse_by_name() {
        for s in [
            Status::Unrouted,
            Status::Pending,
            Status::Dead,
            Status::Delivered,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("done"), None);
    }

    #[test]
    fn a_waiting_delivery_shows_its_next_attempt() {
        let v = delivery_json(1, &view(true, Some(DState::Pending)));
        assert_eq!(v["id"], "evt_0000000000000001:p");
        assert_eq!(v["state"], "pending");
        assert_eq!(v["next_attempt"], 2);
        assert_eq!(v["due_ms"], 5);
        assert_eq!(v["dead_reason"], Value::Null);
        assert_eq!(v["attempts"], json!([]));
    }
}
