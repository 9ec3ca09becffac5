//! Hot reload: watches the plugins folder and reloads a plugin once its
//! file has settled.
//!
//! Only top-level `NAME.wasm` files count (not hidden ones, never
//! subfolders, so a build tree or an upload's temporary file inside the
//! folder is ignored). What an event says about the file decides how long
//! to wait before reading it:
//!
//! - written and closed, renamed into place, or removed: the file is
//!   complete (or gone), so it is read after [`SETTLED`], which only
//!   gathers the burst of events one change makes;
//! - created or being written: a write is under way, so it is read once
//!   nothing has happened to it for [`QUIET`] (the close that ends the
//!   write usually comes first and shortens the wait).
//!
//! The reload itself is [`Registry::reload`], the one load path: it
//! compiles off the async runtime, validates, and swaps the version
//! atomically; a file that fails to load leaves the old version serving.
//! Calls in flight keep the version they started with. When the kernel's
//! event queue overflows, the whole folder is scanned again.

use crate::registry::Registry;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Wait after an event that says the file is complete: gathers the events
/// of one change (a rename is two or three of them) into one reload.
pub const SETTLED: Duration = Duration::from_millis(15);

/// Wait after the last event of a write that has not said it is done.
pub const QUIET: Duration = Duration::from_millis(500);

/// Why the folder cannot be watched (the server then runs without hot
/// reload; `POST /admin/plugins/{name}/reload` still works).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The folder is missing and could not be created (or resolved).
    #[error("opening the plugins folder {path}: {source}")]
    Create {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The operating system refused the watch (e.g. the inotify limits).
    #[error("watching {path}: {source}")]
    Watch {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// A running watch. Dropping it stops watching; [`FolderWatch::stop`]
/// also waits until nothing it started holds the registry any more.
pub struct FolderWatch {
    watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl FolderWatch {
    /// Stop watching and wait for the reload task (it ends at the shutdown
    /// signal, aborting reloads under way): once this returns, the watch
    /// holds no reference to the registry, so a server started next in the
    /// same process can open the same data directory.
    pub async fn stop(self) {
        drop(self.watcher);
        let _ = self.task.await;
    }
}

/// What the watcher has seen and not yet acted on.
#[derive(Default)]
struct Due {
    /// Plugin name -> when to read its file.
    names: BTreeMap<String, Instant>,
    /// When to scan the whole folder (after an overflow).
    rescan: Option<Instant>,
}

impl Due {
    fn earliest(&self) -> Option<Instant> {
        self.names.values().copied().chain(self.rescan).min()
    }
}

/// Watch `registry`'s folder until `shutdown`: every settled change of a
/// top-level `NAME.wasm` reloads plugin `NAME`. Start it before the
/// first scan, so no change between the scan and the watch is missed.
pub fn watch(registry: Registry, shutdown: CancellationToken) -> Result<FolderWatch, WatchError> {
    let dir = registry.dir().to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|source| WatchError::Create {
        path: dir.clone(),
        source,
    })?;
    // Events name paths under the folder as it was given to the watch:
    // give it the absolute path, and compare with that.
    let dir = dir.canonicalize().map_err(|source| WatchError::Create {
        path: dir.clone(),
        source,
    })?;
    let due = Arc::new(Mutex::new(Due::default()));
    let wake = Arc::new(Notify::new());
    let mut watcher = {
        let (due, wake, watched) = (due.clone(), wake.clone(), dir.clone());
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if note(&watched, event, &mut lock(&due), Instant::now()) {
                wake.notify_one();
            }
        })
        .map_err(|source| WatchError::Watch {
            path: dir.clone(),
            source,
        })?
    };
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Watch {
            path: dir.clone(),
            source,
        })?;
    let task = tokio::spawn(reload_when_due(registry, due, wake, shutdown));
    tracing::info!(dir = %dir.display(), "watching the plugins folder");
    Ok(FolderWatch { watcher, task })
}

fn lock(due: &Mutex<Due>) -> std::sync::MutexGuard<'_, Due> {
    due.lock().unwrap_or_else(|p| p.into_inner())
}

/// Record what one event means for the plugins. Returns whether anything
/// became due.
fn note(dir: &Path, event: notify::Result<notify::Event>, due: &mut Due, now: Instant) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            // The watch may have lost events: look at everything again.
            tracing::warn!(error = %e, "plugins folder watch error; scanning the folder again");
            due.rescan = Some(now + SETTLED);
            return true;
        }
    };
    if event.need_rescan() {
        tracing::warn!("plugins folder events were lost; scanning the folder again");
        due.rescan = Some(now + SETTLED);
        return true;
    }
    let wait = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => SETTLED,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any => QUIET,
        // Reads (ours included) and the rest change nothing.
        EventKind::Access(_) | EventKind::Other => return false,
    };
    let mut any = false;
    for path in &event.paths {
        if let Some(name) = plugin_name(dir, path) {
            tracing::debug!(plugin = name, kind = ?event.kind, "plugins folder event");
            due.names.insert(name.to_owned(), now + wait);
            any = true;
        }
    }
    any
}

/// `NAME` when `path` is a top-level, not hidden `NAME.wasm` of `dir`.
fn plugin_name<'a>(dir: &Path, path: &'a Path) -> Option<&'a str> {
    if path.parent()? != dir {
        return None;
    }
    crate::registry::plugin_of_file(path.file_name()?.to_str()?)
}

/// Reload each plugin once its wait is over; sleeps until the next due
/// time or a new event, never polls.
async fn reload_when_due(
    registry: Registry,
    due: Arc<Mutex<Due>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut reloads = tokio::task::JoinSet::new();
    loop {
        // Forget finished reloads (their results are in the registry).
        while reloads.try_join_next().is_some() {}
        let next = lock(&due).earliest();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {
                reloads.shutdown().await;
                return;
            }
            () = wake.notified() => continue,
            () = sleep => {}
        }
        let now = Instant::now();
        let (names, rescan) = {
            let mut due = lock(&due);
            let ready: Vec<String> = due
                .names
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(name, _)| name.clone())
                .collect();
            for name in &ready {
                due.names.remove(name);
            }
            let rescan = due.rescan.is_some_and(|at| at <= now);
            if rescan {
                due.rescan = None;
            }
            (ready, rescan)
        };
        if rescan {
            let registry = registry.clone();
            reloads.spawn(async move {
                registry.scan().await;
            });
        }
        for name in names {
            // One task per plugin: a slow compile (an interpreter-based
            // plugin takes seconds) holds up no other plugin. Reloads of
            // one plugin queue behind each other in the registry.
            let registry = registry.clone();
            reloads.spawn(async move {
                let _ = registry.reload(&name).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> notify::Result<notify::Event> {
        Ok(notify::Event::new(kind).add_path(PathBuf::from(path)))
    }

    #[test]
    fn only_top_level_visible_wasm_files_are_plugins() {
        let dir = Path::new("/p");
        assert_eq!(plugin_name(dir, Path::new("/p/echo.wasm")), Some("echo"));
        for other in [
            "/p/sub/echo.wasm",
            "/p/.echo.wasm",
            "/p/.echo.wasm.upload-1",
            "/p/echo.wat",
            "/p/.wasm",
            "/q/echo.wasm",
            "/p",
        ] {
            assert_eq!(plugin_name(dir, Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn a_finished_change_is_due_soon_and_a_write_under_way_waits_for_quiet() {
        let dir = Path::new("/p");
        let now = Instant::now();
        let mut due = Due::default();
        assert!(note(
            dir,
            event(EventKind::Create(CreateKind::File), "/p/a.wasm"),
            &mut due,
            now
        ));
        assert!(note(
            dir,
            event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "/p/a.wasm"
            ),
            &mut due,
            now
        ));
        assert_eq!(due.names["a"], now + QUIET);
        // The close that ends the write makes it due at once.
        note(
            dir,
            event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/p/a.wasm",
            ),
            &mut due,
            now,
        );
        assert_eq!(due.names["a"], now + SETTLED);
        for (kind, name) in [
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), "b"),
            (EventKind::Remove(RemoveKind::File), "c"),
        ] {
            note(dir, event(kind, &format!("/p/{name}.wasm")), &mut due, now);
            assert_eq!(due.names[name], now + SETTLED, "{name}");
        }
        assert_eq!(due.earliest(), Some(now + SETTLED));
    }

    #[test]
    fn reads_and_other_files_are_ignored_and_lost_events_rescan() {
        let dir = Path::new("/p");
        let now = Instant::now();
        let mut due = Due::default();
        // The registry reading a file must not make it due again.
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!note(dir, event(kind, "/p/a.wasm"), &mut due, now));
        }
        assert!(!note(
            dir,
            event(EventKind::Remove(RemoveKind::File), "/p/sub/a.wasm"),
            &mut due,
            now
        ));
        assert!(due.names.is_empty());
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(note(dir, Ok(overflow), &mut due, now));
        assert_eq!(due.rescan, Some(now + SETTLED));
    }
}
