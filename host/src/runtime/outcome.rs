//! What one plugin call ended in, classified by what happened: the plugin's
//! own answer (`Ok`, `Retry`, `Reject`) or a trap and its cause.
//!
//! The retry policy reads this classification; it never reads message text.

use std::time::Duration;

/// Why a call trapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// The fuel budget ran out (CPU spent in guest code).
    Fuel,
    /// The wall-clock deadline passed.
    Deadline,
    /// The memory cap refused a grow.
    Memory,
    /// The guest aborted (a Rust panic, an `unreachable`).
    Panic,
    /// The guest's call stack overflowed.
    Stack,
    /// Anything else: a bad memory access, a host failure.
    Other,
}

impl TrapKind {
    /// Every kind, in the order errors and docs list them.
    pub const ALL: [TrapKind; 6] = [
        Self::Fuel,
        Self::Deadline,
        Self::Memory,
        Self::Panic,
        Self::Stack,
        Self::Other,
    ];

    /// The name used in logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fuel => "fuel",
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::Panic => "panic",
            Self::Stack => "stack",
            Self::Other => "other",
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin handled the event.
    Ok,
    /// The plugin asked to be called again later.
    Retry(String),
    /// The plugin refused the event for good.
    Reject(String),
    /// The call did not finish.
    Trap {
        /// What stopped it.
        kind: TrapKind,
        /// A short, bounded description for operators.
        detail: String,
    },
}

impl Outcome {
    /// The name used in logs, metrics and the admin API.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retry(_) => "retry",
            Self::Reject(_) => "reject",
            Self::Trap { .. } => "trap",
        }
    }
}

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// One line a plugin logged during a call, after the caps were applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Severity.
    pub level: LogLevel,
    /// The message, truncated to the line cap.
    pub message: String,
    /// Key-value fields, capped in count and size.
    pub fields: Vec<(String, String)>,
}

/// Everything known about one finished call: recorded with the attempt.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Fuel units consumed.
    pub fuel_used: u64,
    /// Wall-clock time of the call, instantiation included.
    pub duration: Duration,
    /// Most linear memory held at once, in bytes.
    pub peak_memory: usize,
    /// What the plugin logged (capped).
    pub logs: Vec<LogLine>,
    /// Lines dropped by the per-call caps.
    pub logs_dropped: u64,
}
