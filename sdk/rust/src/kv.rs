//! The plugin's private, durable key-value store.
//!
//! Keys are strings (at most 512 bytes), values bytes (at most 64 KiB). The
//! typed helpers store text and JSON so operators can read them through the
//! admin API. Every operation is a host call; there is no cache in between.

use crate::__bindings::hookhost::plugin::kv as wit;
use std::fmt;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The key is empty or too long.
    InvalidKey(String),
    /// The value is larger than the cap (the cap in bytes).
    ValueTooLarge(u64),
    /// The namespace is full (the key limit).
    QuotaExceeded(u64),
    /// The host's store failed; worth retrying.
    Unavailable(String),
    /// A stored value was not of the type asked for.
    Decode(String),
    /// A value could not be encoded for storing.
    Encode(String),
}

impl From<wit::KvError> for KvError {
    fn from(e: wit::KvError) -> Self {
        match e {
            wit::KvError::InvalidKey(m) => Self::InvalidKey(m),
            wit::KvError::ValueTooLarge(n) => Self::ValueTooLarge(n),
            wit::KvError::QuotaExceeded(n) => Self::QuotaExceeded(n),
            wit::KvError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey(m) => write!(f, "invalid key: {m}"),
            Self::ValueTooLarge(n) => write!(f, "value larger than {n} bytes"),
            Self::QuotaExceeded(n) => write!(f, "namespace full ({n} keys)"),
            Self::Unavailable(m) => write!(f, "store unavailable: {m}"),
            Self::Decode(m) => write!(f, "stored value has the wrong type: {m}"),
            Self::Encode(m) => write!(f, "value cannot be encoded: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

/// An unavailable store is transient (retry); everything else is a bug or a
/// limit that another attempt will hit again (reject).
impl From<KvError> for crate::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Unavailable(_) => crate::Error::retry(e.to_string()),
            _ => crate::Error::reject(e.to_string()),
        }
    }
}

/// Read a key's raw bytes.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    Ok(wit::get(key)?)
}

/// Write a key's raw bytes.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    Ok(wit::set(key, value)?)
}

/// Remove a key; `true` when it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    Ok(wit::delete(key)?)
}

/// One page of keys starting with `prefix`, strictly after `start_after`.
pub fn keys_page(
    prefix: &str,
    start_after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, KvError> {
    Ok(wit::keys(prefix, start_after, limit)?)
}

/// Every key starting with `prefix`, fetched page by page.
pub fn keys(prefix: &str) -> Result<Vec<String>, KvError> {
    const PAGE: u32 = 1000;
    let mut all = Vec::new();
    loop {
        let page = keys_page(prefix, all.last().map(String::as_str), PAGE)?;
        let done = page.len() < PAGE as usize;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// Read a key as UTF-8 text.
pub fn get_str(key: &str) -> Result<Option<String>, KvError> {
    get(key)?
        .map(|b| String::from_utf8(b).map_err(|e| KvError::Decode(e.to_string())))
        .transpose()
}

/// Write a key as UTF-8 text.
pub fn set_str(key: &str, value: &str) -> Result<(), KvError> {
    set(key, value.as_bytes())
}

/// Read a key as JSON.
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, KvError> {
    get(key)?
        .map(|b| serde_json::from_slice(&b).map_err(|e| KvError::Decode(e.to_string())))
        .transpose()
}

/// Write a key as JSON.
pub fn set_json<T: serde::Serialize>(key: &str, value: &T) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError::Encode(e.to_string()))?;
    set(key, &bytes)
}

/// Read a counter kept by [`increment`] (0 when absent).
pub fn get_counter(key: &str) -> Result<i64, KvError> {
    match get_str(key)? {
        None => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| KvError::Decode(format!("{key} is not a counter"))),
    }
}

/// Add `by` to a decimal counter and return the new value.
///
/// Not atomic across concurrent deliveries of the same plugin: use it for
/// statistics, or enable per-key ordering for exact counts.
pub fn increment(key: &str, by: i64) -> Result<i64, KvError> {
    let next = get_counter(key)?.saturating_add(by);
    set_str(key, &next.to_string())?;
    Ok(next)
}
