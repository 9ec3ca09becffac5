//! The host side of the plugin's imports: `log` into `tracing` (and the
//! attempt's record), `kv` onto the plugin's own sled namespace, `config`
//! from what the operator granted.
//!
//! A call's [`HostState`] holds only that plugin's handles; nothing here can
//! reach another plugin's data.

use super::bindings::hookhost::plugin::{config, kv, log, types};
use super::limits::LogLimits;
use super::outcome::{LogLevel, LogLine};
use crate::kv::{KvError, Namespace};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Values and secrets the operator granted one plugin
/// (`[plugin.NAME] config = {...}`, `secrets = {...}`).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Grants {
    /// Plain values, readable with `config.get`.
    pub config: BTreeMap<String, String>,
    /// Secrets, readable with `config.secret`; never logged or shown.
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("config", &self.config)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Who is calling, attached to every log line about the call.
#[derive(Debug, Clone)]
pub(crate) struct CallContext {
    pub(crate) plugin: Arc<str>,
    /// First 12 hex digits of the plugin's SHA-256: enough to tell versions
    /// apart in a log line.
    pub(crate) version: Arc<str>,
    pub(crate) event_id: String,
    pub(crate) attempt: u32,
}

/// Per-call state behind the plugin's imports.
pub(crate) struct HostState {
    pub(crate) call: CallContext,
    /// `None` while describing a plugin: `describe` must not touch state.
    pub(crate) kv: Option<Namespace>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) logs: LogCapture,
}

/// The lines kept for the attempt record, within the caps.
pub(crate) struct LogCapture {
    limits: LogLimits,
    pub(crate) lines: Vec<LogLine>,
    bytes: usize,
    pub(crate) dropped: u64,
}

impl LogCapture {
    pub(crate) fn new(limits: LogLimits) -> Self {
        Self {
            limits,
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
        }
    }
}

/// Cut a string to at most `max` bytes on a character boundary, marking
/// the cut so a reader knows the text is incomplete.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let total = s.len();
        s.truncate(end);
        s.push_str(&format!("… [truncated from {total} bytes]"));
    }
    s
}

/// Longest field key or value kept in a log line: fields are for ids and
/// counts; text belongs in the message.
const MAX_FIELD_BYTES: usize = 256;

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let cap = &mut self.logs;
        if cap.lines.len() >= cap.limits.max_lines || cap.bytes >= cap.limits.max_total_bytes {
            cap.dropped += 1;
            return;
        }
        let message = truncate(message, cap.limits.max_line_bytes);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(cap.limits.max_fields)
            .map(|(k, v)| (truncate(k, MAX_FIELD_BYTES), truncate(v, MAX_FIELD_BYTES)))
            .collect();
        cap.bytes += message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        emit(&self.call, level, &message, &fields);
        cap.lines.push(LogLine {
            at_ms: crate::clock::now_ms(),
            level,
            message,
            fields,
        });
    }
}

/// Forward a plugin's line to `tracing`, under the `plugin` target, with the
/// call's identity as fields. `tracing` needs the level as a constant, hence
/// the match.
fn emit(call: &CallContext, level: LogLevel, message: &str, fields: &[(String, String)]) {
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(
                target: "hookhost::plugin",
                $lvl,
                plugin = %call.plugin,
                version = %call.version,
                event_id = %call.event_id,
                attempt = call.attempt,
                fields = ?fields,
                // Debug-quoted: a plugin's `\n` must not forge a host log line.
                message = ?message,
                "plugin log"
            )
        };
    }
    match level {
        LogLevel::Trace => at!(tracing::Level::TRACE),
        LogLevel::Debug => at!(tracing::Level::DEBUG),
        LogLevel::Info => at!(tracing::Level::INFO),
        LogLevel::Warn => at!(tracing::Level::WARN),
        LogLevel::Error => at!(tracing::Level::ERROR),
    }
}

impl From<KvError> for kv::KvError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::InvalidKey(m) => Self::InvalidKey(m),
            KvError::ValueTooLarge(n) => Self::ValueTooLarge(n),
            KvError::QuotaExceeded(n) => Self::QuotaExceeded(n),
            KvError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

impl HostState {
    fn namespace(&self) -> Result<&Namespace, kv::KvError> {
        self.kv.as_ref().ok_or_else(|| {
            kv::KvError::Unavailable("the key-value store is not available during describe".into())
        })
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        Ok(self.namespace()?.get(&key)?)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), kv::KvError> {
        Ok(self.namespace()?.set(&key, &value)?)
    }

    fn delete(&mut self, key: String) -> Result<bool, kv::KvError> {
        Ok(self.namespace()?.delete(&key)?)
    }

    fn keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, kv::KvError> {
        Ok(self
            .namespace()?
            .keys(&prefix, start_after.as_deref(), limit)?)
    }
}

impl config::Host for HostState {
    fn get(&mut self, name: String) -> Option<String> {
        self.grants.config.get(&name).cloned()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.grants.secrets.get(&name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("short".into(), 10), "short");
        let t = truncate("ééé".into(), 3);
        assert!(t.starts_with("é…"), "{t}");
        assert!(t.ends_with("[truncated from 6 bytes]"));
    }
}
