//! `/admin/plugins`: what the registry holds, the delivery counts of each
//! plugin, uploads and deletions (through the plugins folder),
//! pause/resume/reload, and a plugin's key-value entries.
//!
//! A plugin object:
//!
//! ```json
//! {"name":"echo","sha256":"<64 hex>"|null,"declared_name":"echo"|null,
//!  "declared_version":"0.1.0"|null,"subscriptions":["*"],
//!  "state":"active"|"paused"|"broken"|"removed","paused":false,
//!  "last_error":null|{"at_ms":…,"message":"…"},"loaded_at_ms":…|null,
//!  "loads":1,"load_failures":0,
//!  "warm":null|{"max_calls":1000,"max_secs":60},"warm_instances":0,
//!  "queued":0,"in_flight":0,"delivered":3,"failed_attempts":0,
//!  "dead_lettered":0,"attempts_per_s":0.3,"duration_p50_us":…,
//!  "duration_p99_us":…,"breaker":"closed"|"open"|"half_open"}
//! ```
//!
//! `sha256` and the declared fields are the active version's (null when
//! none ever loaded); `subscriptions` are the effective ones (the
//! operator's `subscribe`, else the declared ones); the counts are since
//! the server started, except `queued`, `in_flight` and `warm_instances`
//! (idle instances kept for warm mode), which are now.

use super::{bad_request, not_found, page_limit, param, query, text_or_base64, Admin};
use crate::api::ApiError;
use crate::delivery::engine::PluginStats;
use crate::kv::KvError;
use crate::registry::{ReloadError, Slot};
use crate::runtime::{valid_plugin_name, LoadError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

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
    if !known && !valid_plugin_name(&name) {
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

/// Largest upload: Python and JavaScript components are 12-18 MB.
pub(super) const MAX_UPLOAD_BYTES: usize = 64 << 20;

/// How long an upload or a deletion waits for the folder watcher to act
/// on the file before doing the reload itself (the watcher may be off).
const WATCHER_WAIT: Duration = Duration::from_secs(5);

/// `PUT /admin/plugins/{name}` with the `.wasm` as the body (up to 64
/// MiB): validated first (compiled, checked against the contract,
/// `describe` run) without touching the folder; a file that does not load
/// is 422 `invalid_plugin` and the running version stays. A valid one is
/// written into the plugins folder atomically, and the folder watcher
/// loads it from there like any file dropped into the folder (its
/// compiled code is already cached by the validation; should the watcher
/// not act within 5 s, the upload is loaded directly). Answers the plugin
/// object once the upload is the active version: 201 for a new plugin, 200
/// for a new version; 409 `superseded` when another change to the file
/// (a second upload, a deletion) won the race.
pub(super) async fn upload(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !valid_plugin_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "a plugin name is 1-64 of a-z, 0-9, - and _ (it becomes NAME.wasm)",
        ));
    }
    let wasm = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a plugin may be at most {} MiB", MAX_UPLOAD_BYTES >> 20),
        ),
        _ => bad_request(format!("reading the upload failed: {}", e.body_text())),
    })?;
    let engine = admin.engine()?;
    let registry = engine.registry().clone();
    let validated = match registry.runtime().load(&name, wasm.to_vec()).await {
        Ok(plugin) => plugin,
        Err(LoadError::Kv(e)) => return Err(kv_failed(e)),
        Err(e) => {
            tracing::warn!(plugin = %name, error = %e, "plugin upload refused; the running version stays");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin",
                e.to_string(),
            ));
        }
    };
    let sha256 = validated.sha256.clone();
    let created = registry.get(&name).is_none_or(|s| !s.file_present);
    let writer = registry.clone();
    let file_name = name.clone();
    tokio::task::spawn_blocking(move || writer.write_file(&file_name, &wasm))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| file_failed("writing", &name, &e))?;
    tracing::info!(plugin = %name, version = &sha256[..12], "plugin uploaded into the plugins folder");
    let active = |slot: Option<&Slot>| {
        slot.is_some_and(|s| {
            s.file_present && s.active.as_ref().is_some_and(|a| a.plugin.sha256 == sha256)
        })
    };
    if !registry.wait_for(&name, WATCHER_WAIT, active).await {
        tracing::warn!(plugin = %name, "the folder watcher did not load the upload in time; loading it now");
        let _ = registry.reload(&name).await;
    }
    if !active(registry.get(&name).as_ref()) {
        return Err(superseded(
            &name,
            "the file changed again before this upload became active (another upload, a deletion, or a file written into the folder)",
        ));
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, current(&admin, &name)?))
}

/// `DELETE /admin/plugins/{name}`: removes `NAME.wasm` from the plugins
/// folder. The plugin stops receiving new deliveries; its pending ones
/// wait, visible, and run if the file comes back. Answers the plugin
/// object (`state` `removed`); 404 when there is neither a plugin nor a
/// file of that name.
pub(super) async fn delete(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = admin.engine()?;
    let registry = engine.registry().clone();
    let known = registry.get(&name).is_some();
    if !known && !valid_plugin_name(&name) {
        return Err(unknown(&name));
    }
    let remover = registry.clone();
    let file_name = name.clone();
    let removed = tokio::task::spawn_blocking(move || remover.remove_file(&file_name))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| file_failed("removing", &name, &e))?;
    if !removed && !known {
        return Err(unknown(&name));
    }
    tracing::info!(plugin = %name, "plugin file deleted by the admin API; its pending deliveries wait");
    let gone = |slot: Option<&Slot>| slot.is_none_or(|s| !s.file_present);
    if !registry.wait_for(&name, WATCHER_WAIT, gone).await {
        let _ = registry.reload(&name).await;
    }
    if !gone(registry.get(&name).as_ref()) {
        return Err(superseded(
            &name,
            "the file came back (an upload, or a file written into the folder) right after it was deleted",
        ));
    }
    match registry.get(&name) {
        Some(_) => current(&admin, &name),
        // A file the registry never saw: nothing waits for it.
        None => Ok(Json(json!({ "name": name, "state": "removed" }))),
    }
}

/// 409 `superseded`: another change to the plugin's file won the race.
fn superseded(name: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "superseded",
        format!("{name}: {what}; GET /admin/plugins/{name} shows what is active now"),
    )
}

/// 500 for a plugins folder the server cannot write: the operator's
/// problem, not the client's. The path is logged, not sent.
fn file_failed(what: &str, name: &str, e: &std::io::Error) -> ApiError {
    tracing::error!(plugin = name, error = %e, "{what} a plugin file failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "plugins_folder_failed",
        format!(
            "{what} {name}.wasm in the plugins folder failed: {}",
            e.kind()
        ),
    )
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
    let entries = if valid_plugin_name(&name) {
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
        "loads": slot.loads,
        "load_failures": slot.load_failures,
        "warm": slot.active.as_ref().and_then(|a| a.settings.call.warm).map(|w| json!({
            "max_calls": w.max_calls,
            "max_secs": w.max_age.as_secs(),
        })),
        "warm_instances": active.map_or(0, |p| p.warm_instances()),
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
            assert!(valid_plugin_name(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "Echo", "a.b", "a:b", &"x".repeat(65)] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
    }
}
