//! Shared helpers for hookhost's end-to-end tests and benchmarks: where the
//! plugins built by `build.rs` are, and a runtime on a throwaway data dir.

use hookhost::kv::{KvLimits, KvStore};
use hookhost::runtime::{Event, Plugin, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// The folder `build.rs` built `plugins/` into.
pub const PLUGIN_WASM_DIR: &str = env!("HOOKHOST_PLUGIN_WASM_DIR");

/// Path of a plugin component by crate name (`github-issues` is built as
/// `github_issues.wasm`).
pub fn wasm_path(crate_name: &str) -> PathBuf {
    PathBuf::from(PLUGIN_WASM_DIR).join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// The bytes of a built plugin.
pub fn wasm(crate_name: &str) -> Vec<u8> {
    let path = wasm_path(crate_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A runtime on its own temporary data directory (removed on drop).
pub struct Harness {
    /// The runtime under test.
    pub runtime: Runtime,
    /// The data directory (sled and the artifact cache).
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A runtime with default kv limits.
    pub fn new() -> Self {
        Self::with_kv_limits(KvLimits::default())
    }

    /// A runtime with the given kv limits.
    pub fn with_kv_limits(limits: KvLimits) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = runtime_in(dir.path(), limits);
        Self { runtime, dir }
    }

    /// Load a built plugin under its crate name.
    pub async fn load(&self, crate_name: &str) -> Arc<Plugin> {
        self.runtime
            .load(crate_name, wasm(crate_name))
            .await
            .unwrap_or_else(|e| panic!("loading {crate_name}: {e}"))
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// A runtime whose sled database and cache live in `dir`.
pub fn runtime_in(dir: &std::path::Path, limits: KvLimits) -> Runtime {
    let db = hookhost::store::open_db(&dir.join("db")).expect("sled");
    Runtime::new(RuntimeConfig::new(dir), KvStore::new(db, limits)).expect("runtime")
}

/// An event with a JSON body, attempt 1.
pub fn event(source: &str, kind: &str, id: &str, body: &serde_json::Value) -> Event {
    Event {
        id: id.to_owned(),
        source: source.to_owned(),
        kind: kind.to_owned(),
        received_at_ms: 1_700_000_000_000,
        attempt: 1,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(body).expect("json"),
    }
}

/// A 1 KiB JSON event, as the benchmarks send.
pub fn kib_event(id: u64) -> Event {
    let pad = "x".repeat(1024 - 40);
    event(
        "bench",
        "ping",
        &format!("evt_{id}"),
        &serde_json::json!({ "id": id, "pad": pad }),
    )
}

pub mod server;

/// Helpers both benchmarks share: knobs from the environment and a
/// description of the machine for the printed results.
pub mod bench {
    /// A numeric knob from the environment, or its default.
    pub fn env_or(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Cores available to this process.
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The CPU model from /proc/cpuinfo.
    pub fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into())
    }
}
