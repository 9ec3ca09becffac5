//! `/admin/plugins`: what the registry holds, the delivery counts of each
//! plugin, pause/resume/reload, and a plugin's key-value entries.
//!
//! A plugin object:
//!
//! ```json
//! {"name":"echo","sha256":"<64 hex>"|null,"declared_name":"echo"|null,
//!  "declared_version":"0.1.0"|null,"subscriptions":["*"],
//!  "state":"active"|"paused"|"broken"|"removed","paused":false,
//!  "last_error":null|{"at_ms":…,"message":"…"},"loaded_at_ms":…|null,
//!  "queued":0,"in_flight":0,"delivered":3,"failed_attempts":0,
//!  "dead_lettered":0,"attempts_per_s":0.3,"duration_p50_us":…,
//!  "duration_p99_us":…,"breaker":"closed"|"open"|"half_open"}
//! ```
//!
//! `sha256` and the declared fields are the active version's (null when
//! none ever loaded); `subscriptions` are the effective ones (the
//! operator's `subscribe`, else the declared ones); the counts are since
//! the server started, except `queued` and `in_flight`, which are now.

use super::{bad_request, not_found, page_limit, param, query, text_or_base64, Admin};
use crate::api::ApiError;
use crate::delivery::engine::PluginStats;
use crate::kv::KvError;
use crate::registry::{ReloadError, Slot};
use crate::runtime::LoadError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /admin/plugins`: every plugin, by name.
pub(super) async fn list(State(admin): State<Arc<Admin>>) -> Result<Json<Value>, ApiError> {
    let engine = admin.engine()?;
    let stats = engine.stats();
    let all: Vec<Value> = engine
        .registry()
        .list()
        .iter()
        .map(|slot| plugin_json(slot, stats.plugins.get(&*slot.name)))
        .collect();
    Ok(Json(Value::Array(all)))
}

/// `GET /admin/plugins/{name}`.
pub(super) async fn one(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    current(&admin, &name)
}

/// `POST /admin/plugins/{name}/pause`: its deliveries wait (they are still
/// created for new events). Answers the plugin object.
pub(super) async fn pause(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&admin, &name, true)
}

/// `POST /admin/plugins/{name}/resume`. Answers the plugin object.
pub(super) async fn resume(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&admin, &name, false)
}

fn set_paused(admin: &Admin, name: &str, paused: bool) -> Result<Json<Value>, ApiError> {
    let engine = admin.engine()?;
    if !engine.registry().set_paused(name, paused) {
        return Err(unknown(name));
    }
    tracing::info!(
        plugin = name,
        paused,
        "plugin paused or resumed by the admin API"
    );
    current(admin, name)
}

/// `POST /admin/plugins/{name}/reload`: load `NAME.wasm` again (or for
/// the first time: a file dropped into the folder since the last scan).
/// 200 with the plugin object when the new version is active; 422
/// `invalid_plugin` when the file does not load (the old version keeps
/// serving, and the error shows in `last_error`); 404 when the file is not
/// there (a known plugin is then `removed`: its deliveries wait).
///
/// The name becomes a file path: a name that is not a valid plugin name
/// (1-64 of `a-z 0-9 - _`) and not already known is 404 without touching
/// the file system.
pub(super) async fn reload(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = admin.engine()?;
    let registry = engine.registry();
    let known = registry.get(&name).is_some();
    if !known && !valid_name(&name) {
        return Err(unknown(&name));
    }
    match registry.reload(&name).await {
        Ok(_) => current(&admin, &name),
        Err(ReloadError::Missing(_)) if !known => Err(not_found(format!(
            "no plugin named {name:?}, and no {name}.wasm in the plugins folder"
        ))),
        Err(ReloadError::Missing(_)) => Err(not_found(format!(
            "{name}.wasm is not in the plugins folder: the plugin is now removed, and its pending deliveries wait for the file to come back"
        ))),
        Err(ReloadError::Read { source, .. }) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_unreadable",
            format!("{name}.wasm could not be read: {}", source.kind()),
        )),
        Err(ReloadError::Load(LoadError::Kv(e))) => Err(kv_failed(e)),
        Err(ReloadError::Load(e)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
            e.to_string(),
        )),
    }
}

/// Query of `GET /admin/plugins/{name}/kv`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct KvQuery {
    prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /admin/plugins/{name}/kv?prefix=&limit=&cursor=`: the plugin's
/// entries in key order,
/// `{"entries":[{"key":…,"value":…,"encoding":"utf8"|"base64"}],"next_cursor":…}`.
/// `cursor` is the last key of the previous page; `next_cursor` is null
/// when this page is the last.
pub(super) async fn kv(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    q: Result<Query<KvQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(q.limit.as_deref())?;
    let engine = admin.engine()?;
    if engine.registry().get(&name).is_none() {
        return Err(unknown(&name));
    }
    let prefix = q.prefix.unwrap_or_default();
    let cursor = param(q.cursor);
    let page_size = u32::try_from(limit).map_err(|_| bad_request("limit is too large"))?;
    // A name the runtime refuses never ran, so it has no entries; opening
    // its namespace would only create an empty tree.
    let entries = if valid_name(&name) {
        admin
            .kv
            .namespace(&name)
            .and_then(|ns| ns.entries(&prefix, cursor.as_deref(), page_size))
            .map_err(kv_failed)?
    } else {
        Vec::new()
    };
    let next_cursor = (entries.len() >= limit)
        .then(|| entries.last().map(|(k, _)| k.clone()))
        .flatten();
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(key, value)| {
            let (value, encoding) = text_or_base64(&value);
            json!({ "key": key, "value": value, "encoding": encoding })
        })
        .collect();
    Ok(Json(
        json!({ "entries": entries, "next_cursor": next_cursor }),
    ))
}

/// The plugin object of `name` now, or 404.
fn current(admin: &Admin, name: &str) -> Result<Json<Value>, ApiError> {
    let engine = admin.engine()?;
    let slot = engine.registry().get(name).ok_or_else(|| unknown(name))?;
    let stats = engine.stats();
    Ok(Json(plugin_json(&slot, stats.plugins.get(name))))
}

/// The runtime's rule for plugin names (they are file names, URL segments
/// and sled tree names).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn unknown(name: &str) -> ApiError {
    not_found(format!("no plugin named {name:?}"))
}

fn kv_failed(e: KvError) -> ApiError {
    tracing::error!(error = %e, "admin API: the key-value store failed");
    ApiError::unavailable("store_unavailable", "the store failed; retry later")
}

/// A plugin as the admin API shows it (see the module docs).
fn plugin_json(slot: &Slot, stats: Option<&PluginStats>) -> Value {
    let active = slot.active.as_ref().map(|a| &a.plugin);
    let mut v = json!({
        "name": &*slot.name,
        "sha256": active.map(|p| &p.sha256),
        "declared_name": active.map(|p| &p.info.declared_name),
        "declared_version": active.map(|p| &p.info.declared_version),
        "subscriptions": slot.subscriptions(),
        "state": slot.state(),
        "paused": slot.paused,
        "last_error": slot.last_error,
        "loaded_at_ms": slot.loaded_at_ms,
    });
    let counts = json!({
        "queued": stats.map_or(0, |s| s.queued),
        "in_flight": stats.map_or(0, |s| s.in_flight),
        "delivered": stats.map_or(0, |s| s.delivered),
        "failed_attempts": stats.map_or(0, |s| s.failed_attempts),
        "dead_lettered": stats.map_or(0, |s| s.dead_lettered),
        "attempts_per_s": stats.map_or(0.0, |s| s.attempts_per_s),
        "duration_p50_us": stats.map_or(0, |s| s.duration_p50_us),
        "duration_p99_us": stats.map_or(0, |s| s.duration_p99_us),
        "breaker": stats.map_or("closed", |s| s.breaker),
    });
    if let (Value::Object(v), Value::Object(counts)) = (&mut v, counts) {
        v.extend(counts);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_folder_are_not_plugin_names() {
        for ok in ["echo", "stripe-billing", "a_1", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "Echo", "a.b", "a:b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
