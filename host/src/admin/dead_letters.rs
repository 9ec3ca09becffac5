//! `/admin/dead-letters`: deliveries given up on, kept until replayed or
//! deleted. A dead letter's id is its delivery's, `evt_…:plugin`.
//!
//! A dead letter as listed:
//!
//! ```json
//! {"id":"evt_0000000000000001:echo","event_id":"evt_0000000000000001",
//!  "plugin":"echo","dead_at_ms":…,"reason":"rejected"|"trap"|"attempts_exhausted"|null,
//!  "reason_detail":{"reason":"trap","kind":"panic"}|null,"last_error":"…"|null,
//!  "round":0,"attempts":3}
//! ```

use super::events::attempt_json;
use super::{bad_request, not_found, page_limit, param, query, store_failed, Admin, MAX_SCAN};
use crate::api::ApiError;
use crate::delivery::records::DeadLetter;
use crate::delivery::{DeadLetterFilter, DeliveryKey};
use crate::event::event_id;
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// Query of `GET /admin/dead-letters`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ListQuery {
    plugin: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /admin/dead-letters?plugin=&source=&kind=&limit=&cursor=`: in
/// arrival order of their events, `{"dead_letters":[…],"next_cursor":…}`.
/// Filters are applied while scanning, at most [`MAX_SCAN`] dead letters a
/// request: a page can be short (even empty) with a `next_cursor` (a dead
/// letter id, exclusive) to go on from; null when there is nothing more.
pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(q.limit.as_deref())?;
    let after = match param(q.cursor) {
        None => None,
        Some(c) => Some(DeliveryKey::parse_id(&c).ok_or_else(|| {
            bad_request(format!(
                "cursor {c:?} is not a dead letter id (evt_…:plugin)"
            ))
        })?),
    };
    let filter = DeadLetterFilter {
        plugin: param(q.plugin),
        source: param(q.source),
        kind: param(q.kind),
        ..DeadLetterFilter::default()
    };
    let page = admin
        .engine()?
        .dead_letters(&filter, after.as_ref(), limit, MAX_SCAN)
        .map_err(store_failed)?;
    let next_cursor = page.next.map(|k| k.id());
    let page = page.items;
    let items: Vec<Value> = page.iter().map(summary).collect();
    Ok(Json(
        json!({ "dead_letters": items, "next_cursor": next_cursor }),
    ))
}

/// `GET /admin/dead-letters/{id}`: one dead letter, with its attempts in
/// full under `history` (as in `GET /admin/events/{event_id}`).
pub(super) async fn one(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_id(&id)?;
    let dead = admin
        .engine()?
        .records()
        .dead_letter(&key)
        .map_err(store_failed)?
        .ok_or_else(|| unknown(&id))?;
    let mut v = summary(&dead);
    if let Value::Object(m) = &mut v {
        m.insert(
            "history".into(),
            dead.head
                .attempts
                .iter()
                .map(attempt_json)
                .collect::<Vec<_>>()
                .into(),
        );
    }
    Ok(Json(v))
}

/// `POST /admin/dead-letters/{id}/replay`: attempts start again on the
/// plugin's current version. `{"replayed":true,"id":…}`.
pub(super) async fn replay_one(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_id(&id)?;
    if !admin.engine()?.replay_dead(&key).map_err(store_failed)? {
        return Err(unknown(&id));
    }
    tracing::info!(dead_letter = %id, "dead letter replayed by the admin API");
    Ok(Json(json!({ "replayed": true, "id": key.id() })))
}

/// `DELETE /admin/dead-letters/{id}`: it stays in its event's history as
/// `deleted`. `{"deleted":true,"id":…}`.
pub(super) async fn delete(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_id(&id)?;
    if !admin.engine()?.delete_dead(&key).map_err(store_failed)? {
        return Err(unknown(&id));
    }
    tracing::info!(dead_letter = %id, "dead letter deleted by the admin API");
    Ok(Json(json!({ "deleted": true, "id": key.id() })))
}

/// Body of `POST /admin/dead-letters/replay`: every key optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkFilter {
    plugin: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

/// `POST /admin/dead-letters/replay` with an optional JSON body
/// `{"plugin","source","kind","since_ms","until_ms"}` (no body, or `{}`:
/// every dead letter). `since_ms` is inclusive, `until_ms` exclusive, on
/// the time each died. `{"replayed":n}`.
pub(super) async fn replay_matching(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let f = parse_bulk(&body)?;
    let filter = DeadLetterFilter {
        plugin: f.plugin,
        source: f.source,
        kind: f.kind,
        since_ms: f.since_ms,
        until_ms: f.until_ms,
    };
    // It walks every dead letter: off the async workers.
    let engine = admin.engine()?.clone();
    let replayed = tokio::task::spawn_blocking(move || engine.replay_dead_matching(&filter))
        .await
        .map_err(|e| store_failed(StoreError::Sync(std::io::Error::other(e))))?
        .map_err(store_failed)?;
    tracing::info!(replayed, "dead letters replayed in bulk by the admin API");
    Ok(Json(json!({ "replayed": replayed })))
}

fn parse_bulk(body: &[u8]) -> Result<BulkFilter, ApiError> {
    if body.trim_ascii().is_empty() {
        return Ok(BulkFilter::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "the body must be a JSON object with any of plugin, source, kind (strings), since_ms, until_ms (ms since the Unix epoch): {e}"
        ))
    })
}

/// A malformed id is 404 like an unknown one.
fn parse_id(id: &str) -> Result<DeliveryKey, ApiError> {
    DeliveryKey::parse_id(id).ok_or_else(|| {
        not_found(format!(
            "{id:?} is not a dead letter id: ids are the event id and the plugin name, evt_…:plugin"
        ))
    })
}

fn unknown(id: &str) -> ApiError {
    not_found(format!("no dead letter {id}"))
}

fn summary(d: &DeadLetter) -> Value {
    json!({
        "id": d.key.id(),
        "event_id": event_id(d.key.seq),
        "plugin": &*d.key.plugin,
        "dead_at_ms": d.dead_at_ms,
        "reason": d.head.dead_reason.map(|r| r.as_str()),
        "reason_detail": d.head.dead_reason,
        "last_error": d.head.last_error,
        "round": d.head.round,
        "attempts": d.head.attempts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_filters_parse() {
        let f = parse_bulk(b"").expect("empty body");
        assert!(f.plugin.is_none() && f.since_ms.is_none());
        assert!(parse_bulk(b"  \n").is_ok());
        assert!(parse_bulk(b"{}").is_ok());
        let f = parse_bulk(br#"{"plugin":"echo","since_ms":5,"until_ms":9}"#).expect("filter");
        assert_eq!(f.plugin.as_deref(), Some("echo"));
        assert_eq!((f.since_ms, f.until_ms), (Some(5), Some(9)));
        for bad in [
            &br#"{"plugn":"echo"}"#[..],
            br#"{"since_ms":"yesterday"}"#,
            b"[1]",
            b"not json",
        ] {
            let e = parse_bulk(bad).expect_err("refused");
            assert_eq!(e.code, "bad_request");
        }
    }

    #[test]
    fn ids_parse_with_the_colon() {
        let key = parse_id("evt_0000000000000001:echo").expect("id");
        assert_eq!((key.seq, &*key.plugin), (1, "echo"));
        assert_eq!(
            parse_id("evt_1:echo").map_err(|e| e.code).err(),
            Some("not_found")
        );
        assert!(parse_id("evt_0000000000000001").is_err());
    }
}
