//! Per-plugin key-value namespaces kept in sled: what the `kv` host import
//! reads and writes, and what the admin API lists.
//!
//! Isolation is by construction: a call's host state holds exactly one
//! [`Namespace`] (one sled tree named after the plugin), so there is no code
//! path from one plugin's call to another plugin's keys. This module must not
//! know about events or deliveries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Caps on one namespace. Defaults keep one plugin from filling the disk or
/// making `keys` listings unbounded: 100,000 keys of at most 64 KiB is at
/// most ~6 GiB per plugin, and far more counters or customer states than a
/// webhook handler keeps; 1,000 keys a page keeps one host call small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key in bytes (sled handles more; 512 keeps listings readable).
    pub max_key_bytes: usize,
    /// Largest value in bytes: state belongs here, payload archives do not.
    pub max_value_bytes: usize,
    /// Most keys one plugin may hold.
    pub max_keys: u64,
    /// Most keys one `keys` call returns.
    pub max_page: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 64 * 1024,
            max_keys: 100_000,
            max_page: 1000,
        }
    }
}

/// Why a key-value operation failed; mirrors the WIT `kv-error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// Empty or too long key.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Value over the cap (the cap in bytes).
    #[error("value larger than {0} bytes")]
    ValueTooLarge(u64),
    /// Namespace full (the key limit).
    #[error("namespace holds the maximum of {0} keys")]
    QuotaExceeded(u64),
    /// sled failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<sled::Error> for KvError {
    fn from(e: sled::Error) -> Self {
        // The plugin gets a generic message: sled's text can name host paths.
        tracing::error!(error = %e, "plugin key-value store failed");
        Self::Unavailable("the host's store failed; retry later".into())
    }
}

/// All plugins' namespaces in one sled database. Cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    db: sled::Db,
    limits: KvLimits,
    /// Open namespaces by plugin name. A `Mutex` is enough: it is taken once
    /// per call to fetch an `Arc`, never across a guest call.
    open: Arc<Mutex<HashMap<String, Arc<NamespaceState>>>>,
}

struct NamespaceState {
    tree: sled::Tree,
    /// Key count, kept in memory because sled's `len` walks the whole tree.
    /// Counted once when the namespace is first opened.
    keys: AtomicU64,
    /// Serializes this plugin's writes so the count and the cap stay exact
    /// under concurrent deliveries. One plugin's writes only: other plugins
    /// and all reads go on in parallel; held for one sled call, never across
    /// a guest call.
    writes: Mutex<()>,
}

/// One plugin's namespace: the only kv handle a plugin call ever gets.
#[derive(Clone)]
pub struct Namespace {
    state: Arc<NamespaceState>,
    limits: KvLimits,
}

impl KvStore {
    /// Wrap an open sled database.
    pub fn new(db: sled::Db, limits: KvLimits) -> Self {
        Self {
            db,
            limits,
            open: Arc::default(),
        }
    }

    /// The namespace of `plugin`, opened on first use.
    pub fn namespace(&self, plugin: &str) -> Result<Namespace, KvError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let state = match open.get(plugin) {
            Some(s) => Arc::clone(s),
            None => {
                let tree = self.db.open_tree(tree_name(plugin))?;
                let keys = AtomicU64::new(tree.len() as u64);
                let s = Arc::new(NamespaceState {
                    tree,
                    keys,
                    writes: Mutex::new(()),
                });
                open.insert(plugin.to_owned(), Arc::clone(&s));
                s
            }
        };
        Ok(Namespace {
            state,
            limits: self.limits,
        })
    }
}

/// sled tree holding a plugin's keys. The prefix keeps plugin trees apart
/// from the host's own trees in the same database.
fn tree_name(plugin: &str) -> String {
    format!("kv/{plugin}")
}

impl Namespace {
    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::InvalidKey("key is empty".into()));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(KvError::InvalidKey(format!(
                "key is {} bytes, the limit is {}",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Read a key.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        Ok(self.state.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Write a key, within the value and key-count caps.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.check_key(key)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(KvError::ValueTooLarge(self.limits.max_value_bytes as u64));
        }
        let _writing = self.state.writes.lock().unwrap_or_else(|p| p.into_inner());
        let keys = &self.state.keys;
        let is_new = !self.state.tree.contains_key(key)?;
        if is_new && keys.load(Ordering::Acquire) >= self.limits.max_keys {
            return Err(KvError::QuotaExceeded(self.limits.max_keys));
        }
        self.state.tree.insert(key, value)?;
        if is_new {
            keys.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Remove a key; `true` when it existed.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        let _writing = self.state.writes.lock().unwrap_or_else(|p| p.into_inner());
        let existed = self.state.tree.remove(key)?.is_some();
        if existed {
            self.state.keys.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(existed)
    }

    /// Keys starting with `prefix`, strictly after `start_after`, at most
    /// `limit` (capped).
    pub fn keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        self.scan(prefix, start_after, limit)?
            .map(|r| r.map(|(k, _)| k))
            .collect()
    }

    /// Entries starting with `prefix`, strictly after `start_after`, at most
    /// `limit` (capped): for the admin API.
    pub fn entries(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        self.scan(prefix, start_after, limit)?.collect()
    }

    /// How many keys the namespace holds.
    pub fn len(&self) -> u64 {
        self.state.keys.load(Ordering::Acquire)
    }

    /// Whether the namespace holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn scan<'a>(
        &'a self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<impl Iterator<Item = Result<(String, Vec<u8>), KvError>> + 'a, KvError> {
        let limit = limit.min(self.limits.max_page) as usize;
        let iter = match start_after {
            // Start just past `start_after`: its successor in byte order is
            // itself followed by a zero byte.
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                let mut from = after.as_bytes().to_vec();
                from.push(0);
                self.state.tree.range(from..)
            }
            _ => self.state.tree.range(prefix.as_bytes().to_vec()..),
        };
        let prefix = prefix.as_bytes().to_vec();
        Ok(iter
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                // Keys are only ever written from `&str`, so this cannot fail;
                // a lossy conversion still never panics on a corrupted tree.
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(limits: KvLimits) -> KvStore {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary sled");
        KvStore::new(db, limits)
    }

    #[test]
    fn namespaces_are_isolated() {
        let kv = store(KvLimits::default());
        let a = kv.namespace("a").expect("a");
        let b = kv.namespace("b").expect("b");
        a.set("secret", b"1").expect("set");
        assert_eq!(b.get("secret").expect("get"), None);
        assert!(b.keys("", None, 100).expect("keys").is_empty());
        assert_eq!(a.keys("", None, 100).expect("keys"), vec!["secret"]);
    }

    #[test]
    fn caps_are_enforced() {
        let kv = store(KvLimits {
            max_keys: 2,
            max_value_bytes: 4,
            ..KvLimits::default()
        });
        let ns = kv.namespace("p").expect("ns");
        assert_eq!(
            ns.set("", b"x"),
            Err(KvError::InvalidKey("key is empty".into()))
        );
        assert!(matches!(
            ns.set(&"k".repeat(513), b"x"),
            Err(KvError::InvalidKey(_))
        ));
        assert_eq!(ns.set("a", b"12345"), Err(KvError::ValueTooLarge(4)));
        ns.set("a", b"1").expect("a");
        ns.set("b", b"1").expect("b");
        ns.set("a", b"2").expect("overwrite is not a new key");
        assert_eq!(ns.set("c", b"1"), Err(KvError::QuotaExceeded(2)));
        assert!(ns.delete("a").expect("delete"));
        ns.set("c", b"1").expect("room again after delete");
        assert_eq!(ns.len(), 2);
    }

    #[test]
    fn the_cap_is_exact_under_concurrent_writers() {
        let kv = store(KvLimits {
            max_keys: 100,
            ..KvLimits::default()
        });
        let ns = kv.namespace("p").expect("ns");
        std::thread::scope(|s| {
            for t in 0..4 {
                let ns = ns.clone();
                s.spawn(move || {
                    for i in 0..100 {
                        let _ = ns.set(&format!("{t}/{i}"), b"1");
                        let _ = ns.set("shared", b"1");
                        if i % 10 == 0 {
                            let _ = ns.delete("shared");
                        }
                    }
                });
            }
        });
        assert_eq!(ns.len(), 100, "exactly at the cap");
        assert_eq!(
            ns.keys("", None, 1000).expect("keys").len(),
            100,
            "count matches the tree"
        );
    }

    #[test]
    fn keys_page_by_prefix() {
        let kv = store(KvLimits::default());
        let ns = kv.namespace("p").expect("ns");
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            ns.set(k, b"v").expect("set");
        }
        assert_eq!(ns.keys("a/", None, 2).expect("page 1"), vec!["a/1", "a/2"]);
        assert_eq!(ns.keys("a/", Some("a/2"), 2).expect("page 2"), vec!["a/3"]);
        assert_eq!(ns.keys("", Some("a/3"), 10).expect("rest"), vec!["b/1"]);
        assert!(ns.keys("c", None, 10).expect("none").is_empty());
    }
}
