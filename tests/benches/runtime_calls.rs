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

use hookhost::kv::{KvLimits, KvStore};
use hookhost::runtime::{CallSettings, Limits, Outcome, Plugin, Runtime, RuntimeConfig};
use hookhost_tests::{kib_event, wasm};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Stats {
    p50_us: f64,
    p99_us: f64,
    per_s_1: f64,
    per_s_2: f64,
}

/// The median of each figure over the rounds, and the range of the p50s.
fn median_of(rounds: &[Stats]) -> (Stats, f64, f64) {
    let med = |f: fn(&Stats) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let p50 = |s: &Stats| s.p50_us;
    let lo = rounds.iter().map(p50).fold(f64::INFINITY, f64::min);
    let hi = rounds.iter().map(p50).fold(0.0, f64::max);
    (
        Stats {
            p50_us: med(p50),
            p99_us: med(|s| s.p99_us),
            per_s_1: med(|s| s.per_s_1),
            per_s_2: med(|s| s.per_s_2),
        },
        lo,
        hi,
    )
}

use hookhost_tests::bench::{cores, cpu_model, env_or};

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
            let rt = runtime(dir.path(), metering);
            let p = load(&rt, plugin);
            let all: Vec<Stats> = (0..rounds).map(|_| measure(&rt, &p, calls)).collect();
            let (s, lo, hi) = median_of(&all);
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

fn runtime(dir: &std::path::Path, metering: bool) -> Runtime {
    let db = hookhost::store::open_db(&dir.join("db")).expect("sled");
    let config = RuntimeConfig {
        metering,
        ..RuntimeConfig::new(dir)
    };
    Runtime::new(config, KvStore::new(db, KvLimits::default())).expect("runtime")
}

fn load(rt: &Runtime, name: &str) -> Arc<Plugin> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(rt.load(name, wasm(name)))
        .expect("load")
}

/// `calls` sequential calls on one thread, recording each latency.
fn run_thread(rt: &Runtime, p: &Plugin, calls: usize, offset: u64) -> (Vec<Duration>, Duration) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let settings = CallSettings::default();
    let events: Vec<_> = (0..calls as u64).map(|i| kib_event(offset + i)).collect();
    tokio.block_on(async {
        // Warm the pool's slots and the page cache first.
        for e in events.iter().take(2000) {
            rt.invoke(p, &settings, e).await;
        }
        let mut lat = Vec::with_capacity(calls);
        let start = Instant::now();
        for e in &events {
            let t = Instant::now();
            let r = rt.invoke(p, &settings, e).await;
            lat.push(t.elapsed());
            assert_eq!(r.outcome, Outcome::Ok);
        }
        (lat, start.elapsed())
    })
}

fn measure(rt: &Runtime, p: &Arc<Plugin>, calls: usize) -> Stats {
    let (mut lat, total) = run_thread(rt, p, calls, 0);
    lat.sort();
    let pct =
        |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    let per_s_1 = calls as f64 / total.as_secs_f64();

    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (rt, p) = (rt.clone(), p.clone());
            s.spawn(move || run_thread(&rt, &p, calls, (t + 1) << 32));
        }
    });
    // Each thread's warm-up is inside the timed window; count it.
    let per_s_2 = (2 * (calls + 2000)) as f64 / start.elapsed().as_secs_f64();
    Stats {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        per_s_1,
        per_s_2,
    }
}

/// How long after a 200 ms deadline `spin-forever` is stopped.
fn deadline_overshoot() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime(dir.path(), true);
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
