//! Compiled plugins on disk, so a restart loads in a fraction of a
//! millisecond instead of recompiling (40-100 ms for a Rust plugin, ~10 s
//! for a Python or JavaScript one).
//!
//! An artifact's file name is the wasm's SHA-256 plus a digest of the
//! engine's compatibility hash: a different wasmtime version or engine
//! setting (fuel, epochs) simply misses the cache instead of loading code
//! compiled for another configuration.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A folder of precompiled components.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    /// Hex digest of the engine's compatibility hash, part of every name.
    engine_key: String,
}

/// Feeds `Hash` output into SHA-256: stable across Rust versions, unlike
/// `DefaultHasher`, so the cache survives a toolchain upgrade.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..8]);
        Ok(Self { dir, engine_key })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Load the artifact for `wasm` (whose digest is `sha256`), compiling
    /// and storing it on a miss. Blocking: call it off the async runtime.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.path(sha256);
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    // A stale or damaged artifact: recompile and replace it.
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled artifact");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = self.store(&path, &component) {
            // The cache is an optimization: a full disk must not stop a load.
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled artifact");
        }
        Ok(component)
    }

    /// Write atomically (a unique temp file, synced, then renamed) so a
    /// crash or a concurrent load of the same wasm never leaves a partial
    /// artifact under the final name.
    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The one unsafe call in hookhost.
///
/// The file is read into memory rather than mapped (`deserialize_file`): a
/// mapped artifact that is truncated or rewritten in place while its code
/// runs kills the process with SIGBUS. Reading costs one copy at load time.
///
/// SAFETY: `deserialize` trusts the bytes to be an artifact produced by
/// `Component::serialize` for a compatible engine. Only this module writes
/// into the cache folder (atomically, under a name that includes the
/// engine's compatibility hash), and wasmtime itself still checks the
/// header, version and engine settings and refuses a mismatch. The cache
/// folder lives in the operator's data directory, which hookhost trusts as
/// much as its own binary.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    unsafe { Component::deserialize(engine, bytes) }
}
