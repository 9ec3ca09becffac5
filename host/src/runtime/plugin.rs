//! A loaded plugin: compiled, checked against the contract, linked and
//! described, ready to be instantiated once per call.
//!
//! Loading is the only place a `.wasm` file is trusted to be anything; every
//! way it can be wrong ends in a [`LoadError`] that says what to fix.

use super::bindings;
use super::host::CallContext;
use super::invoke::{CallState, Export, Returned};
use super::limits::Limits;
use super::outcome::Outcome;
use super::warm::{WarmInstance, WarmPool};
use super::{contract, Runtime};
use crate::kv::Namespace;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A plugin ready to run. Immutable: a new version is a new `Plugin`, and a
/// call in flight keeps its own `Arc` to the version it started with.
pub struct Plugin {
    /// The plugin's identity: its file name without `.wasm`.
    pub name: String,
    /// The version: SHA-256 of the `.wasm` file, 64 lowercase hex digits.
    pub sha256: String,
    /// What the plugin said about itself in `describe()`.
    pub info: PluginInfo,
    pub(crate) pre: bindings::PluginPre<CallState>,
    pub(crate) kv: Namespace,
    /// `sha256[..12]`, shared by every log line about this version.
    pub(crate) short_version: Arc<str>,
    pub(crate) name_arc: Arc<str>,
    /// Idle instances kept for warm mode; dropped with this version.
    pub(crate) warm: WarmPool,
}

impl Plugin {
    /// Stop keeping warm instances of this version (the plugin was paused
    /// or its file removed): the idle ones are returned, to be dropped
    /// where no lock is held (freeing an instance takes time), and calls
    /// still running drop theirs when they end.
    pub fn close_warm_pool(&self) -> WarmInstances {
        WarmInstances(self.warm.close())
    }

    /// Keep warm instances again after [`Plugin::close_warm_pool`].
    pub fn open_warm_pool(&self) {
        self.warm.open();
    }

    /// Idle warm instances of this version right now.
    pub fn warm_instances(&self) -> usize {
        self.warm.idle()
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Idle warm instances taken out of a closed pool; dropping this frees
/// them.
#[must_use = "dropping frees the instances: do it outside any lock"]
pub struct WarmInstances(Vec<WarmInstance>);

impl WarmInstances {
    /// How many instances there were.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What `describe()` returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The name the plugin gives itself (`declared_name`).
    pub declared_name: String,
    /// The version the plugin gives itself (`declared_version`).
    pub declared_version: String,
    /// `source:kind` patterns the plugin asks for.
    pub subscriptions: Vec<String>,
}

/// Why a plugin could not be loaded. The old version, if any, keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Plugin names are file names and appear in URLs and sled tree names.
    #[error("invalid plugin name {0:?}: use 1-64 characters from a-z, 0-9, '-' and '_'")]
    InvalidName(String),
    /// Not a component at all: garbage, a core module, a truncated file.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// wasmtime refused to compile it.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// Built against another version of the WIT contract.
    #[error(
        "built against {found}, but this host speaks {}@{}: rebuild the plugin with a matching hookhost SDK",
        contract::PACKAGE,
        contract::VERSION
    )]
    IncompatibleContract {
        /// The package and version found in the component.
        found: String,
    },
    /// A component, but not a hookhost plugin.
    #[error(
        "not a hookhost plugin: it does not export hookhost:plugin/handler (it exports {exports:?}); target the world hookhost:plugin/plugin"
    )]
    NotAPlugin {
        /// What it does export.
        exports: Vec<String>,
    },
    /// Needs something this host does not offer (sockets, HTTP, …).
    #[error("imports {0}, which this host does not provide to plugins")]
    UnsupportedImport(String),
    /// Linking failed for another reason (a type mismatch).
    #[error("cannot be linked: {0}")]
    Link(String),
    /// `describe()` trapped or returned something unusable.
    #[error("describe() failed: {0}")]
    Describe(String),
    /// The host could not open the plugin's key-value namespace.
    #[error("key-value store: {0}")]
    Kv(#[from] crate::kv::KvError),
}

/// Lowercase hex SHA-256: a plugin version.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Longest plugin name: it appears in URLs, metrics labels and log lines.
const MAX_NAME_BYTES: usize = 64;

/// Whether `name` may name a plugin: 1-64 of `a-z 0-9 - _`, because it
/// becomes a file name, a URL segment, a sled tree name and a metric label.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_name(name: &str) -> Result<(), LoadError> {
    if valid_plugin_name(name) {
        Ok(())
    } else {
        Err(LoadError::InvalidName(name.to_owned()))
    }
}

/// Tell a component from a core module or garbage by the 8-byte header,
/// before handing the bytes to the compiler.
fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT: [u8; 4] = [0x0d, 0, 1, 0];
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(LoadError::NotAComponent(format!(
            "the file ({} bytes) does not start with the WebAssembly magic number",
            wasm.len()
        )));
    }
    match <[u8; 4]>::try_from(&wasm[4..8]).unwrap_or_default() {
        COMPONENT => Ok(()),
        CORE => Err(LoadError::NotAComponent(
            "it is a core WebAssembly module; build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        )),
        _ => Err(LoadError::NotAComponent(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &wasm[4..8]
        ))),
    }
}

/// Longest declared name or version kept: they are labels in the admin API.
const MAX_LABEL_BYTES: usize = 128;
/// Most subscription patterns, and the longest: a plugin interested in more
/// should subscribe to `source:*` and filter.
const MAX_SUBSCRIPTIONS: usize = 64;
const MAX_PATTERN_BYTES: usize = 256;

/// `describe()` output within bounds: patterns are `*` or `source:kind`
/// (each side may use `*`).
fn check_info(info: &PluginInfo) -> Result<(), LoadError> {
    let subs = &info.subscriptions;
    if info.declared_name.len() > MAX_LABEL_BYTES || info.declared_version.len() > MAX_LABEL_BYTES {
        return Err(LoadError::Describe(format!(
            "declared name and version must be at most {MAX_LABEL_BYTES} bytes"
        )));
    }
    if subs.len() > MAX_SUBSCRIPTIONS {
        return Err(LoadError::Describe(format!(
            "{} subscriptions; at most {MAX_SUBSCRIPTIONS} are allowed",
            subs.len()
        )));
    }
    for s in subs {
        if s.is_empty() || s.len() > MAX_PATTERN_BYTES || (s != "*" && !s.contains(':')) {
            return Err(LoadError::Describe(format!(
                "invalid subscription {s:?}: use `*` or `source:kind` patterns"
            )));
        }
    }
    Ok(())
}

impl Runtime {
    /// Compile (or load from the cache), check, link and describe a plugin.
    ///
    /// Compilation runs on a blocking thread, never on the async runtime.
    pub async fn load(&self, name: &str, wasm: Vec<u8>) -> Result<Arc<Plugin>, LoadError> {
        check_name(name)?;
        // A folder of new plugins or several uploads compile a few at a
        // time, not all at once. The semaphore is never closed.
        let _permit = self.inner.compiles.acquire().await.ok();
        let rt = self.clone();
        let (sha256, pre) = tokio::task::spawn_blocking(move || {
            // Hashing a large component takes milliseconds: off the
            // async runtime too.
            check_header(&wasm)?;
            let sha256 = sha256_hex(&wasm);
            let pre = rt.compile_and_link(&sha256, &wasm)?;
            Ok::<_, LoadError>((sha256, pre))
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compile task failed: {e}")))??;

        let kv = self.inner.kv.namespace(name)?;
        let mut plugin = Plugin {
            name: name.to_owned(),
            short_version: Arc::from(&sha256[..12]),
            name_arc: Arc::from(name),
            sha256,
            info: PluginInfo {
                declared_name: String::new(),
                declared_version: String::new(),
                subscriptions: Vec::new(),
            },
            pre,
            kv,
            warm: WarmPool::default(),
        };
        plugin.info = self.describe(&plugin).await?;
        check_info(&plugin.info)?;
        Ok(Arc::new(plugin))
    }

    fn compile_and_link(
        &self,
        sha256: &str,
        wasm: &[u8],
    ) -> Result<bindings::PluginPre<CallState>, LoadError> {
        let engine = &self.inner.engine;
        let component = self
            .inner
            .cache
            .load_or_compile(engine, sha256, wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        contract::check(engine, &component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        bindings::PluginPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))
    }

    /// Call `describe()` under the default limits, without kv access.
    async fn describe(&self, plugin: &Plugin) -> Result<PluginInfo, LoadError> {
        let ctx = CallContext {
            plugin: Arc::clone(&plugin.name_arc),
            version: Arc::clone(&plugin.short_version),
            event_id: "describe".into(),
            attempt: 0,
        };
        let (returned, report) = self
            .call(
                plugin,
                &Limits::default(),
                &Arc::default(),
                None,
                ctx,
                Export::Describe,
                None,
            )
            .await;
        match (returned, report.outcome) {
            (Some(Returned::Info(info)), _) => Ok(PluginInfo {
                declared_name: info.name,
                declared_version: info.version,
                subscriptions: info.subscriptions,
            }),
            (_, Outcome::Trap { kind, detail }) => Err(LoadError::Describe(format!(
                "trapped ({}): {detail}",
                kind.as_str()
            ))),
            (_, other) => Err(LoadError::Describe(format!("ended in {}", other.name()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted() {
        assert!(check_name("github-issues").is_ok());
        assert!(check_name("a_1").is_ok());
        for bad in ["", "A", "../x", "a.wasm", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_tell_components_from_modules_and_garbage() {
        assert!(check_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        let core = check_header(b"\0asm\x01\0\0\0")
            .expect_err("core module")
            .to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");
        let junk = check_header(b"hello world")
            .expect_err("garbage")
            .to_string();
        assert!(junk.contains("magic number"), "{junk}");
        assert!(check_header(b"\0as").is_err());
    }

    #[test]
    fn subscriptions_are_patterns() {
        let ok = |s: &[&str]| {
            check_info(&PluginInfo {
                declared_name: "p".into(),
                declared_version: "1".into(),
                subscriptions: s.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert!(ok(&vec!["a:*"; MAX_SUBSCRIPTIONS + 1]).is_err());
        assert!(ok(&["*", "github:*", "stripe:invoice.*"]).is_ok());
        assert!(ok(&["github"]).is_err());
        assert!(ok(&[""]).is_err());
    }
}
