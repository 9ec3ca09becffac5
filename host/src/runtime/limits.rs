//! The limits every plugin call runs under, and the memory limiter that
//! enforces the memory cap and remembers whether it refused a grow.

use std::time::Duration;

/// The limits one plugin runs under. Defaults follow the contract's
/// `[defaults]` section; the operator overrides them per plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call. 5 G units is ~0.45 s of a tight loop here and leaves
    /// interpreted guests room (a 1 MiB JSON body costs JavaScript/QuickJS
    /// ~0.5 G, Python ~0.15 G, Rust ~0.06 G); the deadline bounds time for
    /// every language alike.
    pub fuel: u64,
    /// Wall-clock deadline per call, enforced by epoch interruption.
    pub timeout: Duration,
    /// Total linear memory per call, across all memories of the component.
    pub memory_bytes: usize,
    /// Caps on what a call may log.
    pub log: LogLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 5_000_000_000,
            timeout: Duration::from_millis(5000),
            memory_bytes: 64 << 20,
            log: LogLimits::default(),
        }
    }
}

/// Caps on what one call may log: a chatty plugin must not flood the
/// operator's logs or the attempt records that keep its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Longest message kept, in bytes; longer ones are truncated. 4 KiB fits
    /// any useful message and a stack trace's first lines.
    pub max_line_bytes: usize,
    /// Most lines kept per call; later lines are counted, not kept. Every
    /// kept line is stored with the attempt and shown in the admin API.
    pub max_lines: usize,
    /// Most bytes kept per call, all lines together: bounds one attempt's
    /// record whatever the mix of line counts and lengths.
    pub max_total_bytes: usize,
    /// Most key-value fields per line (a structured line rarely needs ten).
    pub max_fields: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: 4096,
            max_lines: 1000,
            max_total_bytes: 256 * 1024,
            max_fields: 32,
        }
    }
}

/// Caps linear memory and tables for one call, and records what it refused.
///
/// The record is what tells "out of memory" apart from a panic: a Rust guest
/// whose allocation fails aborts with `unreachable`, exactly like a panic.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// Bytes of linear memory currently held, all memories together.
    current: usize,
    /// The most held at any time during the call.
    pub(crate) peak: usize,
    /// Whether a memory grow was refused during this call.
    pub(crate) refused: bool,
    /// `(current, peak)` before the last approved grow: wasmtime may still
    /// fail a grow it asked us about, and then it must not count.
    before_last_grant: Option<(usize, usize)>,
}

/// Table elements a component may hold: far above what real guests use
/// (function tables of a few thousand), far below what would hurt the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryLimiter {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            current: 0,
            peak: 0,
            refused: false,
            before_last_grant: None,
        }
    }

    /// A warm instance's next call: the memory it holds stays counted
    /// against the cap; the peak and the refusal are this call's.
    pub(crate) fn begin_call(&mut self) {
        self.peak = self.current;
        self.refused = false;
        self.before_last_grant = None;
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `desired` comes from the guest (a 64-bit `memory.grow` can ask for
        // nearly `usize::MAX`): checked arithmetic, never wrapping.
        let next = self
            .current
            .checked_sub(current)
            .and_then(|others| others.checked_add(desired))
            .filter(|&n| desired <= self.max_bytes && n <= self.max_bytes);
        let Some(next) = next else {
            self.refused = true;
            return Ok(false);
        };
        self.before_last_grant = Some((self.current, self.peak));
        self.current = next;
        self.peak = self.peak.max(next);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Approved, but wasmtime could not grow it (the pool slot is full):
        // the bytes were never handed out. The guest sees `memory.grow`
        // return -1, as for a refusal.
        if let Some((current, peak)) = self.before_last_grant.take() {
            self.current = current;
            self.peak = peak;
        }
        self.refused = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limiter_counts_all_memories_and_records_refusals() {
        let mut l = MemoryLimiter::new(10);
        assert!(l.memory_growing(0, 4, None).expect("grow"));
        assert!(l.memory_growing(0, 4, None).expect("second memory"));
        assert!(l.memory_growing(4, 6, None).expect("grow first"));
        assert_eq!((l.current, l.peak, l.refused), (10, 10, false));
        assert!(!l.memory_growing(6, 7, None).expect("over the cap"));
        assert!(l.refused);
        assert_eq!(l.current, 10);
    }

    #[test]
    fn huge_requests_are_refused_without_overflow() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 16, None).expect("grow"));
        assert!(!l
            .memory_growing(1 << 16, usize::MAX - 65535, None)
            .expect("huge"));
        // An inconsistent `current` larger than what we hold is refused too.
        assert!(!l.memory_growing(usize::MAX, 1, None).expect("odd current"));
        assert_eq!(l.current, 1 << 16, "nothing was counted down");
    }

    #[test]
    fn a_failed_grow_is_taken_back() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 10, None).expect("grow"));
        assert!(l.memory_growing(10, 60, None).expect("grow"));
        l.memory_grow_failed(wasmtime::Error::msg("pool slot full"))
            .expect("failed");
        assert_eq!((l.current, l.peak), (10, 10));
        assert!(l
            .memory_growing(10, 100, None)
            .expect("the full cap is still there"));
    }
}
