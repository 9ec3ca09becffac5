//! The plugin runtime: one wasmtime engine, plugins compiled once and
//! pre-instantiated, and a fresh sandboxed instance for every call (or, for
//! plugins the operator opted into warm mode, a reused one).
//!
//! - [`engine`]: the shared engine (pooling allocator, fuel, epochs) and
//!   the epoch ticker.
//! - [`plugin`]: loading a `.wasm` into a [`Plugin`], or a [`LoadError`].
//! - [`contract`]: the contract version check.
//! - [`invoke`]: one call under limits, ending in a [`CallReport`].
//! - [`host`]: the `log`, `kv` and `config` imports.
//! - [`limits`], [`outcome`]: the limits and the classified results.
//! - [`warm`]: opt-in reuse of live instances (warm mode).
//! - `cache`: compiled artifacts on disk; `bindings`: the one `bindgen!`.
//!
//! It must not know about HTTP, queues or retries: it runs one call and
//! reports what happened.

mod bindings;
mod cache;
pub mod contract;
pub mod engine;
pub mod host;
pub mod invoke;
pub mod limits;
pub mod outcome;
pub mod plugin;
pub mod warm;

pub use engine::PoolSize;
pub use host::Grants;
pub use invoke::{CallSettings, Event};
pub use limits::{Limits, LogLimits};
pub use outcome::{CallReport, LogLevel, LogLine, Outcome, TrapKind};
pub use plugin::{sha256_hex, valid_plugin_name, LoadError, Plugin, PluginInfo};
pub use warm::WarmPolicy;

use crate::kv::KvStore;
use cache::ArtifactCache;
use invoke::CallState;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine refused its configuration (e.g. the pool cannot be
    /// reserved on this machine).
    #[error("wasmtime engine: {0}")]
    Engine(String),
    /// Host imports could not be linked (a bug, not an operator error).
    #[error("linking host imports: {0}")]
    Link(String),
    /// The artifact cache folder could not be created.
    #[error("artifact cache {path}: {source}")]
    Cache {
        /// The folder.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

/// Where the runtime keeps its files and how big its pool is.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Folder for compiled artifacts (inside the data directory).
    pub cache_dir: PathBuf,
    /// Instance pool sizes.
    pub pool: PoolSize,
    /// Fuel metering and epoch deadlines. Always on in the server; off only
    /// in benchmarks, to measure what the instrumentation costs.
    pub metering: bool,
}

impl RuntimeConfig {
    /// Defaults for a data directory: cache in `DATA/cache`, metering on.
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            cache_dir: data_dir.join("cache"),
            pool: PoolSize::default(),
            metering: true,
        }
    }
}

/// The plugin runtime. Cheap to clone: all clones share one engine.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ArtifactCache,
    kv: KvStore,
    metering: bool,
    /// Loads compiling at once (see [`MAX_COMPILES`]).
    compiles: tokio::sync::Semaphore,
}

/// Most plugins compiling at once: a compile keeps a core busy (seconds
/// and hundreds of MB for an interpreter-based plugin), so many new files
/// or uploads at once queue instead of starving ingest.
pub const MAX_COMPILES: usize = 2;

impl Runtime {
    /// Build the engine, link the host imports and start the epoch ticker.
    pub fn new(config: RuntimeConfig, kv: KvStore) -> Result<Self, RuntimeError> {
        let engine = engine::build(config.pool, config.metering)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        bindings::Plugin::add_to_linker::<_, HasSelf<host::HostState>>(&mut linker, |s| {
            &mut s.host
        })
        .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let cache = ArtifactCache::new(config.cache_dir.clone(), &engine).map_err(|source| {
            RuntimeError::Cache {
                path: config.cache_dir,
                source,
            }
        })?;
        engine::start_ticker(&engine);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                kv,
                metering: config.metering,
                compiles: tokio::sync::Semaphore::new(MAX_COMPILES),
            }),
        })
    }

    /// The key-value store plugins write to (for the admin API).
    pub fn kv(&self) -> &KvStore {
        &self.inner.kv
    }
}
