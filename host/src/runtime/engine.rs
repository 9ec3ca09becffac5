//! The one wasmtime `Engine` every plugin shares, and the thread that ticks
//! its epoch so deadlines can fire.
//!
//! Choices measured on the project's 2-core machines (../shared/LAB.md):
//! the pooling allocator with copy-on-write memory images makes a fresh
//! instance cost ~15 us; the on-demand allocator costs 80 us and serializes
//! on mmap. Fuel and epoch instrumentation cost under 5 %.
//!
//! Python and JavaScript guests (issue 6; `language_calls` benchmark, CPU
//! of the calling thread per fresh call, 2026-11-24, load average ~2): a
//! fresh Python call costs 1.4 ms (`echo`) to 1.9 ms (`github-issues`).
//! Split by phase: instantiation ~0.66 ms, most of it ~5,650 `ref.func`
//! libcalls with which componentize-py's start code refills its function
//! table (wasmtime resolves each one by binary searches; upstream issue
//! bytecodealliance/wasmtime#8212); `handle` ~0.6 ms, of which ~0.5 ms are
//! 168-248 page faults; the reset on drop ~0.13 ms. The faults come from
//! wasmtime 48's `pagemap_scan` reset, which collects at most 32 dirty
//! regions and decommits all memory after the 32nd: a Python heap has more,
//! so every new instance faults that part in again, whatever
//! `linear_memory_keep_resident` is. A wasmtime whose scan resumes past 32
//! regions (upstream PR bytecodealliance/wasmtime#14357, prototyped here)
//! has no faults: Python 1.40 -> 0.90 ms, 1.9 -> 1.13 ms; Rust and JS as
//! before.
//!
//! Settings measured against the ones below (two interleaved runs, CPU per
//! fresh call; Rust `echo` 18 µs, Python `echo` 1.36-1.48 ms, JS `echo`
//! 0.17-0.23 ms): within noise for every language with
//! `linear_memory_keep_resident` 16 or 64 MiB, `table_keep_resident`
//! 1 MiB, `decommit_batch_size` 8 or 32, `max_memory_size` 256 MiB.
//! Worse: `table_lazy_init(false)` (Rust 21 µs), `pagemap_scan` off (Rust
//! 41 µs, Python 1.77-2.05 ms, JS up to 0.43 ms), `memory_init_cow(false)`
//! with 64 MiB kept resident (no faults, but every instance copies the
//! data segments: Python 2.2 ms, JS 0.47-0.49 ms).

use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A deadline fires at most one tick late,
/// and a running guest yields to tokio at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizes of the instance pool: how many plugin calls may be alive at once,
/// across all plugins.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Concurrent component instances: calls in flight plus the idle
    /// instances warm plugins keep (at most `concurrency` per warm plugin).
    pub instances: u32,
    /// The largest memory cap any plugin may be given.
    pub max_memory_bytes: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self {
            // Far above `concurrency = 16` times a few dozen plugins; each
            // slot costs address space only until used.
            instances: 1000,
            // Python and JavaScript components need tens of MiB; 1 GiB is
            // the ceiling an operator can raise a plugin's `memory_mb` to.
            max_memory_bytes: 1 << 30,
        }
    }
}

pub(crate) fn build(pool: PoolSize, metering: bool) -> wasmtime::Result<Engine> {
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(pool.instances)
        // A component holds several core instances and memories (a Rust
        // guest 3-4 instances, 1-2 memories; Python or JS a few more).
        .total_core_instances(pool.instances * 8)
        .total_memories(pool.instances * 2)
        .total_tables(pool.instances * 4)
        .total_stacks(pool.instances)
        .max_memory_size(pool.max_memory_bytes)
        // Reset the first 2 MiB of a freed memory with memset, not madvise:
        // small guests (a Rust plugin's 1 MiB stack plus heap) then reuse
        // resident pages instead of faulting them in again on every call.
        .linear_memory_keep_resident(2 << 20)
        // Tables are small (function references): 64 KiB covers them.
        .table_keep_resident(64 << 10)
        // Where the kernel supports it (Linux 6.7+), reset only the pages a
        // call actually dirtied.
        .pagemap_scan(Enabled::Auto);

    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(metering)
        .epoch_interruption(metering)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(p))
        // Copy-on-write memory images: instantiation maps the data segments
        // instead of copying them.
        .memory_init_cow(true)
        // Guest call stack (wasmtime's default): a deeper recursion traps as
        // `stack`. The async fiber stack must exceed it, since host frames
        // (WASI, kv, log) run on it too; 2 MiB is wasmtime's default.
        .max_wasm_stack(512 << 10)
        .async_stack_size(2 << 20);
    Engine::new(&c)
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
/// A plain thread: it must keep ticking even when tokio's workers are all
/// busy running guests.
pub(crate) fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("hookhost-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        });
    if let Err(e) = spawned {
        // Without the ticker, deadlines never fire: fuel still bounds CPU.
        tracing::error!(error = %e, "could not start the epoch thread; deadlines are off");
    }
}
