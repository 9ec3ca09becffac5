//! The plugins the server runs: one slot per `NAME.wasm` in the plugins
//! folder, holding the active version, the operator's settings for it, and
//! what went wrong last.
//!
//! The folder is the one source of truth: a slot's version only ever comes
//! from `plugins_dir/NAME.wasm` (the first scan at start, then reloads).
//! A file that fails to load never replaces a good version; the error is
//! kept and shown. A missing file stops new deliveries to that plugin;
//! its pending ones wait until it comes back.
//!
//! Everything that depends on the set of plugins (routing, the delivery
//! queue's policies) rebuilds from here whenever [`Registry::changes`]
//! ticks.

use crate::config::{Config, EffectivePlugin, Priority};
use crate::delivery::breaker::BreakerConfig;
use crate::delivery::retry::RetryPolicy;
use crate::delivery::routing::{Pattern, Route, Routes};
use crate::delivery::scheduler::Policy;
use crate::runtime::{CallSettings, Grants, Limits, LoadError, Plugin, Runtime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How a plugin runs, from the operator's config: fixed for a version.
#[derive(Debug)]
pub struct RunSettings {
    /// Limits and grants of each call.
    pub call: CallSettings,
    /// What happens after a failed attempt.
    pub retry: RetryPolicy,
    /// Lease order between plugins.
    pub priority: Priority,
    /// Calls at once.
    pub concurrency: u32,
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Per-key FIFO pointer.
    pub order_key: Option<String>,
    /// The operator's subscriptions, replacing the declared ones.
    pub subscribe: Option<Vec<String>>,
}

impl RunSettings {
    /// Settings from a plugin's merged config.
    pub fn from_config(s: &EffectivePlugin) -> Self {
        Self {
            call: CallSettings {
                limits: Limits {
                    fuel: s.fuel,
                    timeout: Duration::from_millis(s.timeout_ms),
                    memory_bytes: usize::try_from(s.memory_mb.saturating_mul(1 << 20))
                        .unwrap_or(usize::MAX),
                    ..Limits::default()
                },
                grants: Arc::new(Grants {
                    config: s.config.clone(),
                    secrets: s
                        .secrets
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                        .collect(),
                }),
                warm: s.warm,
            },
            retry: RetryPolicy::from_settings(s),
            priority: s.priority,
            concurrency: s.concurrency,
            breaker: BreakerConfig::from_settings(s),
            order_key: s.order_key.clone(),
            subscribe: s.subscribe.clone(),
        }
    }
}

/// The version a delivery runs with, and its settings.
#[derive(Debug, Clone)]
pub struct Active {
    /// The loaded version.
    pub plugin: Arc<Plugin>,
    /// The operator's settings for it.
    pub settings: Arc<RunSettings>,
}

/// A load that failed, kept for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadFailure {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// What was wrong, for the operator.
    pub message: String,
}

/// What the admin API shows as a plugin's `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Loaded and taking deliveries.
    Active,
    /// Loaded, but the operator paused it: deliveries wait.
    Paused,
    /// Its file never loaded: nothing to run.
    Broken,
    /// Its file is gone: deliveries wait for it to come back.
    Removed,
}

/// One plugin as the registry holds it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The plugin's name (file name without `.wasm`).
    pub name: Arc<str>,
    /// The version that runs, if one ever loaded.
    pub active: Option<Active>,
    /// Paused by the operator.
    pub paused: bool,
    /// Whether `NAME.wasm` is in the folder.
    pub file_present: bool,
    /// The last failed load since the last good one.
    pub last_error: Option<LoadFailure>,
    /// When the active version was loaded.
    pub loaded_at_ms: Option<u64>,
    /// Versions made active since the server started (the first load
    /// included; a reload of the same bytes is not counted).
    pub loads: u64,
    /// Loads that failed since the server started.
    pub load_failures: u64,
}

impl Slot {
    /// The state shown to operators.
    pub fn state(&self) -> PluginState {
        match (&self.active, self.file_present, self.paused) {
            (_, false, _) => PluginState::Removed,
            (None, true, _) => PluginState::Broken,
            (Some(_), true, true) => PluginState::Paused,
            (Some(_), true, false) => PluginState::Active,
        }
    }

    /// The subscriptions in force: the operator's, else the declared ones.
    pub fn subscriptions(&self) -> Vec<String> {
        match &self.active {
            Some(a) => a
                .settings
                .subscribe
                .clone()
                .unwrap_or_else(|| a.plugin.info.subscriptions.clone()),
            None => Vec::new(),
        }
    }
}

/// Why a reload did not make a new version active.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `NAME.wasm` is not in the folder (the plugin is now removed).
    #[error("{0} is not in the plugins folder")]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable plugin; the old version (if any) stays.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    runtime: Runtime,
    config: Arc<Config>,
    slots: RwLock<BTreeMap<Arc<str>, Slot>>,
    /// One lock per name: two reloads of one plugin (the folder watcher
    /// and the admin API) run one after the other, so an older file can
    /// never finish last and win.
    reloading: std::sync::Mutex<BTreeMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
    routes: RwLock<Arc<Routes>>,
    changed: watch::Sender<u64>,
}

impl Registry {
    /// An empty registry over `config.server.plugins_dir`.
    pub fn new(runtime: Runtime, config: Arc<Config>) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: config.server.plugins_dir.clone(),
                runtime,
                config,
                slots: RwLock::default(),
                reloading: Default::default(),
                routes: RwLock::default(),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// The plugins folder: the one source of versions.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The runtime plugins are loaded into.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Load every top-level `*.wasm` of the folder (subfolders, such as a
    /// build tree, are ignored) and mark plugins whose file is gone as
    /// removed. Failures are recorded per plugin, never fatal: a server
    /// with one broken plugin still serves the others. Returns how many
    /// plugins are active.
    pub async fn scan(&self) -> usize {
        let names = match plugin_files(&self.inner.dir) {
            Ok(names) => names,
            Err(e) => {
                tracing::error!(dir = %self.inner.dir.display(), error = %e, "cannot read the plugins folder");
                Vec::new()
            }
        };
        for name in &names {
            let _ = self.reload(name).await;
        }
        let gone: Vec<Arc<str>> = self
            .read()
            .keys()
            .filter(|n| !names.iter().any(|m| m == &***n))
            .cloned()
            .collect();
        for name in gone {
            let _ = self.reload(&name).await;
        }
        self.read()
            .values()
            .filter(|s| s.state() == PluginState::Active)
            .count()
    }

    /// Load `NAME.wasm` again and make it the active version if it loads.
    /// If the file is gone, the plugin is marked removed.
    pub async fn reload(&self, name: &str) -> Result<Arc<Plugin>, ReloadError> {
        let lock = Arc::clone(
            self.inner
                .reloading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(Arc::from(name))
                .or_default(),
        );
        let _one_at_a_time = lock.lock().await;
        let path = self.file(name);
        // Reading and hashing a large file takes milliseconds: off the
        // async runtime, which also serves ingest.
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::read(&path).map(|wasm| {
                    let sha256 = crate::runtime::sha256_hex(&wasm);
                    (wasm, sha256)
                })
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        };
        let (wasm, sha256) = match read {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.read().contains_key(name) {
                    self.update(name, |slot| slot.file_present = false);
                }
                tracing::info!(
                    plugin = name,
                    "plugin file removed: new deliveries stop, pending ones wait"
                );
                return Err(ReloadError::Missing(path));
            }
            Err(source) => {
                let message = format!("reading {}: {source}", path.display());
                self.fail(name, message);
                return Err(ReloadError::Read { path, source });
            }
        };
        if let Some(same) = self.unchanged(name, &sha256) {
            // The same bytes again (a touched file, a copy of the same
            // build): nothing to compile; the file is back if it was gone.
            self.update(name, |slot| {
                slot.file_present = true;
                slot.last_error = None;
            });
            return Ok(same);
        }
        match self.inner.runtime.load(name, wasm).await {
            Ok(plugin) => {
                let settings = Arc::new(RunSettings::from_config(
                    &self.inner.config.plugin_settings(name),
                ));
                tracing::info!(
                    plugin = name,
                    version = &plugin.sha256[..12],
                    declared_version = %plugin.info.declared_version,
                    "plugin loaded"
                );
                let active = Active {
                    plugin: Arc::clone(&plugin),
                    settings,
                };
                self.update(name, |slot| {
                    slot.active = Some(active);
                    slot.file_present = true;
                    slot.last_error = None;
                    slot.loaded_at_ms = Some(crate::clock::now_ms());
                    slot.loads += 1;
                });
                Ok(plugin)
            }
            Err(e) => {
                self.fail(name, e.to_string());
                Err(ReloadError::Load(e))
            }
        }
    }

    fn fail(&self, name: &str, message: String) {
        tracing::error!(plugin = name, error = %message, "plugin failed to load; any previous version keeps serving");
        self.update(name, |slot| {
            slot.file_present = true;
            slot.load_failures += 1;
            slot.last_error = Some(LoadFailure {
                at_ms: crate::clock::now_ms(),
                message,
            });
        });
    }

    /// The active version of `name` when its SHA-256 is `sha256`.
    fn unchanged(&self, name: &str, sha256: &str) -> Option<Arc<Plugin>> {
        let active = self.read().get(name)?.active.clone()?;
        (active.plugin.sha256 == sha256).then_some(active.plugin)
    }

    /// Put `wasm` into the folder as `NAME.wasm` atomically: written to a
    /// hidden temporary file (which the watcher ignores), synced, renamed
    /// over the old file, and the folder synced. The watcher then loads it
    /// like any file dropped there, so the folder stays the one source of
    /// versions. Blocking.
    pub fn write_file(&self, name: &str, wasm: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{name}.wasm."))
            .suffix(UPLOAD_SUFFIX)
            .tempfile_in(&self.inner.dir)?;
        file.write_all(wasm)?;
        file.as_file().sync_all()?;
        file.persist(self.file(name)).map_err(|e| e.error)?;
        sync_dir(&self.inner.dir)
    }

    /// Remove what uploads interrupted by a crash left in the folder (their
    /// hidden temporary files, up to 64 MiB each). Call it at start only,
    /// before any upload can be under way. Blocking.
    pub fn remove_stale_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.contains(".wasm.") && name.ends_with(UPLOAD_SUFFIX) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!(file = name, "removed an interrupted upload"),
                    Err(e) => {
                        tracing::warn!(file = name, error = %e, "cannot remove an interrupted upload")
                    }
                }
            }
        }
    }

    /// Remove `NAME.wasm` from the folder (the watcher then marks the
    /// plugin removed; its deliveries wait). `Ok(false)` when it was not
    /// there. Blocking.
    pub fn remove_file(&self, name: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.file(name)) {
            Ok(()) => sync_dir(&self.inner.dir).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait until `done` holds for `name`'s slot (`None`: no slot), or
    /// until `timeout`. Returns whether it holds.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(Option<&Slot>) -> bool,
    ) -> bool {
        let mut changes = self.changes();
        let check = |r: &Self| done(r.read().get(name));
        tokio::time::timeout(timeout, async {
            while !check(self) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && check(self)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.inner.dir.join(format!("{name}.wasm"))
    }

    /// Pause (`true`) or resume a plugin. Returns false for an unknown name.
    pub fn set_paused(&self, name: &str, paused: bool) -> bool {
        if !self.read().contains_key(name) {
            return false;
        }
        self.update(name, |slot| slot.paused = paused);
        true
    }

    /// The version to run a delivery with: `None` unless the plugin is
    /// active (loaded, present, not paused).
    pub fn active(&self, name: &str) -> Option<Active> {
        let slots = self.read();
        let slot = slots.get(name)?;
        (slot.state() == PluginState::Active)
            .then(|| slot.active.clone())
            .flatten()
    }

    /// One plugin's slot.
    pub fn get(&self, name: &str) -> Option<Slot> {
        self.read().get(name).cloned()
    }

    /// Every plugin, by name.
    pub fn list(&self) -> Vec<Slot> {
        self.read().values().cloned().collect()
    }

    /// Routing's view: every loaded plugin whose file is present (paused
    /// ones included, so their deliveries are created and wait).
    pub fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.inner.routes.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// How the delivery queue should treat `name` now.
    pub fn policy(&self, name: &str) -> Policy {
        let slots = self.read();
        let slot = slots.get(name);
        let settings = slot.and_then(|s| s.active.as_ref()).map(|a| &a.settings);
        let defaults = || RunSettings::from_config(&self.inner.config.plugin_settings(name));
        let (priority, concurrency, breaker) = match settings {
            Some(s) => (s.priority, s.concurrency, s.breaker),
            None => {
                let d = defaults();
                (d.priority, d.concurrency, d.breaker)
            }
        };
        Policy {
            priority,
            concurrency,
            breaker,
            available: slot.is_some_and(|s| s.state() == PluginState::Active),
        }
    }

    /// Ticks on every change of any plugin (load, failure, pause, removal).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Arc<str>, Slot>> {
        self.inner.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Slot)) {
        // Dropped after the lock is released: freeing warm instances (and a
        // replaced version with its pool) takes time other readers of the
        // registry must not wait for.
        let (_freed, _replaced) = {
            let mut slots = self.inner.slots.write().unwrap_or_else(|p| p.into_inner());
            let slot = slots.entry(Arc::from(name)).or_insert_with(|| Slot {
                name: Arc::from(name),
                active: None,
                paused: false,
                file_present: false,
                last_error: None,
                loaded_at_ms: None,
                loads: 0,
                load_failures: 0,
            });
            let before = slot.active.clone();
            change(slot);
            // A plugin that stops running (paused, file removed) gives back
            // the memory of its warm instances; one that runs keeps them.
            let freed = slot.active.as_ref().map(|active| {
                if slot.state() == PluginState::Active {
                    active.plugin.open_warm_pool();
                    None
                } else {
                    Some(active.plugin.close_warm_pool())
                }
            });
            let replaced = before.filter(|b| {
                slot.active
                    .as_ref()
                    .is_none_or(|now| !Arc::ptr_eq(&now.plugin, &b.plugin))
            });
            let routes = Routes {
                routes: slots.values().filter_map(route_of).collect(),
            };
            *self.inner.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
            (freed, replaced)
        };
        self.inner.changed.send_modify(|n| *n += 1);
    }
}

fn route_of(slot: &Slot) -> Option<Route> {
    let active = slot.active.as_ref()?;
    if !slot.file_present {
        return None;
    }
    let patterns = slot
        .subscriptions()
        .iter()
        .filter_map(|p| {
            let parsed = Pattern::parse(p);
            if parsed.is_none() {
                tracing::warn!(plugin = %slot.name, pattern = %p, "ignoring an invalid subscription");
            }
            parsed
        })
        .collect();
    Some(Route {
        plugin: Arc::clone(&slot.name),
        patterns,
        order_key: active.settings.order_key.clone(),
    })
}

/// The end of an upload's temporary file name (`.NAME.wasm.XXXX.upload`).
const UPLOAD_SUFFIX: &str = ".upload";

/// Make a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The plugin a file of the folder is: `NAME` for `NAME.wasm`, nothing
/// for hidden files (uploads and deploys in progress) and anything else.
pub fn plugin_of_file(file_name: &str) -> Option<&str> {
    let name = file_name.strip_suffix(".wasm")?;
    (!name.is_empty() && !name.starts_with('.')).then_some(name)
}

/// Names of the top-level `*.wasm` files of `dir` (not hidden, not in
/// subfolders), sorted.
pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if !entry.file_type()?.is_file() && !path.is_file() {
            continue;
        }
        if let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(plugin_of_file)
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
