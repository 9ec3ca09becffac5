//! Per-call cost of the plugin runtime: a fresh instance per call, a 1 KiB
//! event, with fuel and epoch metering on and off; calls/s on 1 and 2
//! threads; and how far past a 200 ms deadline an infinite loop runs.
//!
//! Run: `cargo bench -p hookhost-tests --bench runtime_calls`
//! (`CALLS=N` calls per round, `ROUNDS=N` rounds; `PLUGINS=noop,echo`).
//!
//! The project's machines are shared and noisy: the same binary measures
//! 11 us in one round and 16 us in the next. Each figure is therefore the
//! median over several rounds, with the spread of the round medians shown.

use hookhost::runtime::{CallSettings, Limits, Outcome, Plugin, Runtime};
use hookhost_tests::bench::{call_round, call_runtime, cores, cpu_model, env_or, median_round};
use hookhost_tests::{kib_event, wasm_path};
use std::sync::Arc;
use std::time::Duration;

/// Untimed calls each calling thread makes first.
const WARMUP: usize = 2000;

fn main() {
    // LAB.md: a captured backtrace on every Store drop costs 6-10 us.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    let calls: usize = env_or("CALLS", 20_000);
    let rounds: usize = env_or("ROUNDS", 5);
    let plugins = std::env::var("PLUGINS").unwrap_or_else(|_| "noop,echo".into());
    println!(
        "hookhost runtime benchmark: fresh instance per call, 1 KiB event; median of {rounds} rounds of {calls} calls"
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();
    println!(
        "{:<28} {:>9} {:>14} {:>9} {:>14} {:>14}",
        "plugin / metering", "p50 µs", "p50 range", "p99 µs", "calls/s 1 thr", "calls/s 2 thr"
    );

    let mut on_off = Vec::new();
    for plugin in plugins.split(',') {
        for metering in [true, false] {
            let dir = tempfile::tempdir().expect("tmp");
            let rt = call_runtime(dir.path(), metering, None);
            let p = load(&rt, plugin);
            let settings = CallSettings::default();
            let all: Vec<_> = (0..rounds)
                .map(|_| call_round(&rt, &p, &settings, (WARMUP, calls), &kib_event))
                .collect();
            let (s, lo, hi) = median_round(&all);
            let label = format!(
                "{plugin} / {}",
                if metering { "fuel+epoch on" } else { "off" }
            );
            let range = format!("{lo:.1}-{hi:.1}");
            println!(
                "{label:<28} {:>9.1} {range:>14} {:>9.1} {:>14.0} {:>14.0}",
                s.p50_us, s.p99_us, s.per_s_1, s.per_s_2
            );
            if plugin == "noop" {
                on_off.push(s);
            }
        }
    }
    if let [on, off] = &on_off[..] {
        println!();
        println!(
            "metering cost (noop): p50 x{:.2}, calls/s on 2 threads x{:.2} (on/off)",
            on.p50_us / off.p50_us,
            on.per_s_2 / off.per_s_2
        );
        println!(
            "2-thread scaling (noop, on): x{:.2}; goal: p50 <= 15 µs and >= 60,000 calls/s on 2 threads: {}",
            on.per_s_2 / on.per_s_1,
            if on.p50_us <= 15.0 && on.per_s_2 >= 60_000.0 { "met" } else { "NOT met" }
        );
    }
    deadline_overshoot();
}

fn load(rt: &Runtime, name: &str) -> Arc<Plugin> {
    hookhost_tests::bench::load_blocking(rt, name, &wasm_path(name))
}

/// How long after a 200 ms deadline `spin-forever` is stopped.
fn deadline_overshoot() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = call_runtime(dir.path(), true, None);
    let p = load(&rt, "spin-forever");
    let deadline = Duration::from_millis(200);
    let settings = CallSettings {
        limits: Limits {
            fuel: u64::MAX / 2,
            timeout: deadline,
            ..Limits::default()
        },
        grants: Arc::default(),
        warm: None,
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut over: Vec<f64> = (0..10)
        .map(|i| {
            let r = tokio.block_on(rt.invoke(&p, &settings, &kib_event(i)));
            assert!(matches!(r.outcome, Outcome::Trap { .. }), "{:?}", r.outcome);
            (r.duration.saturating_sub(deadline)).as_secs_f64() * 1e3
        })
        .collect();
    over.sort_by(f64::total_cmp);
    println!();
    println!(
        "spin-forever, 200 ms deadline, ample fuel (10 runs): overshoot p50 {:.1} ms, max {:.1} ms (epoch tick {} ms)",
        over[over.len() / 2],
        over[over.len() - 1],
        hookhost::runtime::engine::EPOCH_TICK.as_millis()
    );
}
