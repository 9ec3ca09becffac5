//! The event a handler receives, the error it returns and the info it
//! declares: plain Rust types in front of the generated WIT types.

use crate::__bindings::hookhost::plugin::types as wit;
use std::fmt;

/// One stored webhook, delivered to this plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// hookhost's id for the event: stable across retries, so use it for
    /// idempotency.
    pub id: String,
    /// The source it arrived on (`POST /webhooks/{source}`).
    pub source: String,
    /// The kind derived from the provider's payload, e.g. `issues.opened`.
    pub kind: String,
    /// When hookhost received it, in milliseconds since the Unix epoch.
    pub received_at: u64,
    /// 1 for the first attempt; more after a retry or a replay.
    pub attempt: u32,
    /// Request headers that matter for handling, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte as the provider sent it.
    pub body: Vec<u8>,
}

impl Event {
    pub(crate) fn from_wit(e: wit::Event) -> Self {
        Self {
            id: e.id,
            source: e.source,
            kind: e.kind,
            received_at: e.received_at,
            attempt: e.attempt,
            headers: e.headers,
            body: e.body,
        }
    }

    /// Parse the body as JSON. A body that does not parse is a permanent
    /// failure, so the error converts into [`Error::reject`] with `?`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::reject(format!("body is not the expected JSON: {e}")))
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text, if it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// Why a delivery failed, and so what hookhost does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Try again later, with backoff.
    Retry(String),
    /// Never try again: dead-letter the event now.
    Reject(String),
}

impl Error {
    /// A transient failure: hookhost retries with exponential backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry(message.into())
    }

    /// A permanent failure: hookhost dead-letters the event at once.
    pub fn reject(message: impl Into<String>) -> Self {
        Self::Reject(message.into())
    }

    pub(crate) fn into_wit(self) -> wit::Error {
        match self {
            Self::Retry(m) => wit::Error::Retry(m),
            Self::Reject(m) => wit::Error::Reject(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry(m) => write!(f, "retry: {m}"),
            Self::Reject(m) => write!(f, "reject: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// What the plugin declares about itself: name, version and the events it
/// wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The plugin's own name (shown as `declared_name`).
    pub name: String,
    /// The plugin's own version (shown as `declared_version`).
    pub version: String,
    /// `source:kind` patterns with `*` wildcards.
    pub subscriptions: Vec<String>,
}

impl Info {
    /// Info with no subscriptions yet; add them with [`Info::subscribe`].
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            subscriptions: Vec::new(),
        }
    }

    /// Also receive events matching `pattern` (`*`, `github:*`,
    /// `stripe:invoice.*`).
    pub fn subscribe(mut self, pattern: impl Into<String>) -> Self {
        self.subscriptions.push(pattern.into());
        self
    }

    pub(crate) fn into_wit(self) -> wit::Info {
        wit::Info {
            name: self.name,
            version: self.version,
            subscriptions: self.subscriptions,
        }
    }
}
