//! Ingest under load: the real server, in its own process, loaded over
//! loopback with unique signed 1 KiB GitHub events. Durable (the default,
//! fdatasync before every 200) and with `[server] sync = false`, so the cost
//! of durability shows as a ratio:
//!
//! - closed loop: 64 keep-alive connections, each sending its next request
//!   as soon as the previous answer arrives: acks/s, and p50/p99/p99.9 of
//!   send-to-answer latency;
//! - open loop: a fixed offered rate for a fixed time; request `i` is due at
//!   `start + i/rate` and its latency is timed from that intended send time,
//!   so a slow answer is charged to every request it delays (no coordinated
//!   omission).
//!
//! Run: `RUST_LIB_BACKTRACE=0 cargo bench -p hookhost-tests --bench ingest_load`
//! (`REQUESTS=N` closed-loop requests per round, default 100000;
//! `CONCURRENCY=N`, default 64; `RATE=N` offered events/s, default 20000;
//! `SECONDS=N` open-loop duration, default 5; `CONNECTIONS=N` open-loop
//! connections, default 256; `ROUNDS=N`, default 3; `GEN_THREADS=1|2`, the
//! load generator's tokio workers, default 1; `MODES=durable,nosync`).
//!
//! The generator runs on one thread (a current-thread runtime) by default:
//! measured against a 2-worker runtime here (2 x 2 runs of 3 rounds), 1
//! thread gave the same closed-loop acks/s within noise (9.3k vs 9.1k mean)
//! for less CPU per request (13-15 µs vs 15-18 µs), leaving more to the
//! server.
//!
//! Goals (issue 3), on the 2-core machine with the load generator on the
//! same cores: at least 25,000 durable acks/s closed loop, and p99 at most
//! 10 ms at an offered 20,000/s.
//!
//! The server runs in a child process (this binary re-executed with
//! `HH_BENCH_SERVER=<config>`), on a default multi-thread tokio runtime, so
//! it shares no threads with the load generator. Every request is signed and
//! serialized to raw HTTP/1.1 bytes before its run starts: the generator only
//! writes bytes and parses answer heads. Open-loop sends wait on tokio's
//! 1 ms timer, so each can leave up to ~1 ms late; that lag is counted in the
//! latency. The "lag p99" column is how late requests left after their
//! intended time: about 1 ms when the schedule is kept, and growing without
//! bound when the server is slower than the offered rate (every connection
//! is then waiting for an answer); "acks/s" is then below the offered rate.
//!
//! The machine is shared and noisy: each figure is the median over the
//! rounds, with the range of acks/s and of p99 shown. CPU columns: the
//! server process's CPU per acknowledged event, the generator's CPU per
//! request, and how busy both cores were (of 200 %), from /proc.

use hookhost_tests::bench::{
    build_parallel, busy_cores, closed_loop, cores, cpu_model, env_or, github_request, machine_cpu,
    own_cpu, percentile_ms, process_cpu, ClosedRun, Conn, ServerProcess,
};
use hookhost_tests::server::{wait_ready, write_config};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret-of-github";

const CONFIG: &str = r#"
[server]
data_dir = "{data}"
sync = {sync}

[[source]]
name = "github"
scheme = "github"
secrets = ["bench-secret-of-github"]
"#;

const BODY_BYTES: usize = 1024;
const GOAL_ACKS: f64 = 25_000.0;
const GOAL_RATE: f64 = 20_000.0;
const GOAL_P99_MS: f64 = 10.0;
/// Pause after each run so the server's applier can move the burst into
/// sled before the next run starts.
const SETTLE: Duration = Duration::from_secs(1);

fn main() {
    // LAB.md: a captured backtrace costs microseconds where it is taken.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    if ServerProcess::serve_if_child() {
        return;
    }
    let opts = Opts::from_env();
    println!(
        "hookhost ingest load benchmark: real server in a child process, loopback, unique signed 1 KiB GitHub events"
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!(
        "load generator: {} tokio worker thread{} (GEN_THREADS; 1 and 2 measured equal in acks/s, 1 uses less CPU), raw HTTP/1.1 keep-alive, requests pre-signed; server: multi-thread tokio, default workers",
        opts.gen_threads,
        if opts.gen_threads == 1 { "" } else { "s" }
    );
    println!(
        "closed loop: {} requests (REQUESTS) at concurrency {} (CONCURRENCY); open loop: {:.0}/s (RATE) for {} s (SECONDS) over {} connections (CONNECTIONS)",
        opts.requests, opts.concurrency, opts.rate, opts.seconds, opts.connections
    );
    println!(
        "each figure: median of {} rounds (ROUNDS); latency in ms; open-loop latency from the intended send time",
        opts.rounds
    );
    println!();

    let rt = if opts.gen_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.gen_threads)
            .enable_all()
            .build()
    }
    .expect("tokio");

    println!(
        "{:<9} {:<13} {:>7} {:>11} {:>8} {:>8} {:>15} {:>8} {:>8} {:>10} {:>10} {:>5} {:>6}",
        "mode",
        "loop",
        "acks/s",
        "acks/s range",
        "p50",
        "p99",
        "p99 range",
        "p99.9",
        "lag p99",
        "srv µs/ack",
        "gen µs/req",
        "busy%",
        "errors"
    );
    let mut results: BTreeMap<(&str, &str), Summary> = BTreeMap::new();
    let mut problems = Vec::new();
    for mode in opts.modes.clone() {
        let sync = mode == "durable";
        let label = if sync { "durable" } else { "sync off" };
        let server = start_server(&rt, sync);
        let ingest = server.process.ingest;
        // Warm-up: connections, allocator, sled's first pages, the journal's
        // first segment.
        let warm = build_requests(ingest, &format!("{mode}-warm"), 5_000);
        let w = rt.block_on(closed_loop(
            ingest,
            Arc::new(warm),
            opts.concurrency,
            stall_limit(),
        ));
        if w.stalled {
            stalled(server, label, "warm-up");
        }
        if w.acks() == 0 {
            panic!("warm-up: no request acknowledged: {:?}", w.errors);
        }
        std::thread::sleep(SETTLE);

        let mut closed = Vec::new();
        let mut open = Vec::new();
        for round in 0..opts.rounds {
            let reqs = build_requests(ingest, &format!("{mode}-c{round}"), opts.requests);
            let r = measured(&server, || {
                let run = rt.block_on(closed_loop(
                    ingest,
                    Arc::new(reqs),
                    opts.concurrency,
                    stall_limit(),
                ));
                (run, Vec::new())
            });
            if r.run.stalled {
                stalled(server, label, "closed loop");
            }
            note_errors(&mut problems, label, "closed", round, &r.run);
            closed.push(r);
            std::thread::sleep(SETTLE);

            let n = (opts.rate * opts.seconds as f64) as usize;
            let reqs = build_requests(ingest, &format!("{mode}-o{round}"), n);
            let r = measured(&server, || {
                rt.block_on(open_loop(
                    ingest,
                    Arc::new(reqs),
                    opts.rate,
                    opts.connections,
                ))
            });
            if r.run.stalled {
                stalled(server, label, "open loop");
            }
            note_errors(&mut problems, label, "open", round, &r.run);
            open.push(r);
            std::thread::sleep(SETTLE);
        }
        let c = summarize(&closed);
        let o = summarize(&open);
        print_row(label, &format!("closed c={}", opts.concurrency), &c, false);
        print_row(label, &format!("open {:.0}/s", opts.rate), &o, true);
        results.insert((mode_key(sync), "closed"), c);
        results.insert((mode_key(sync), "open"), o);
        server.stop();
    }

    if !problems.is_empty() {
        println!();
        for p in &problems {
            println!("errors: {p}");
        }
    }

    println!();
    let get = |m: &'static str, l: &'static str| results.get(&(mode_key(m == "durable"), l));
    if let (Some(dc), Some(nc)) = (get("durable", "closed"), get("nosync", "closed")) {
        let (Some(d_o), Some(n_o)) = (get("durable", "open"), get("nosync", "open")) else {
            unreachable!("closed and open are measured together")
        };
        println!(
            "cost of durability (durable / sync off): closed acks/s x{:.2}, closed p99 x{:.2}, open p99 x{:.2}, server CPU per ack x{:.2}",
            dc.acks_per_s / nc.acks_per_s,
            dc.p99 / nc.p99,
            d_o.p99 / n_o.p99,
            dc.srv_us / nc.srv_us
        );
    }
    if let Some(dc) = get("durable", "closed") {
        println!(
            "goal: >= 25,000 durable acks/s, closed loop at concurrency 64: {} ({:.0} acks/s{})",
            if dc.acks_per_s >= GOAL_ACKS && dc.errors == 0 && opts.concurrency == 64 {
                "met"
            } else {
                "NOT met"
            },
            dc.acks_per_s,
            if dc.errors > 0 {
                format!(", {} errors", dc.errors)
            } else {
                String::new()
            }
        );
    }
    if let Some(d_o) = get("durable", "open") {
        // At the goal's rate only; a run at another rate says so.
        let at_goal_rate = (opts.rate - GOAL_RATE).abs() < 1.0;
        let kept_up = d_o.acks_per_s >= 0.98 * opts.rate;
        let met = at_goal_rate && kept_up && d_o.errors == 0 && d_o.p99 <= GOAL_P99_MS;
        println!(
            "goal: durable p99 <= 10 ms at an offered 20,000/s, open loop: {} (p99 {:.2} ms at offered {:.0}/s, achieved {:.0} acks/s, {} errors{})",
            if met { "met" } else { "NOT met" },
            d_o.p99,
            opts.rate,
            d_o.acks_per_s,
            d_o.errors,
            if at_goal_rate { "" } else { "; RATE is not 20000" }
        );
    }
}

/// A stalled run ends the benchmark: say so, stop the server (unless
/// `KEEP_STALLED=1`, to attach a debugger to it) and exit with status 3.
fn stalled(server: Server, mode: &str, what: &str) -> ! {
    println!();
    println!(
        "STALLED: the {mode} server answered nothing for {} s during the {what} (STALL_SECS); results above are incomplete",
        stall_limit().as_secs()
    );
    if std::env::var("KEEP_STALLED").is_ok_and(|v| v == "1") {
        println!(
            "server left running for inspection: pid {}",
            server.process.pid()
        );
        std::mem::forget(server);
    } else {
        println!("server pid {} killed", server.process.pid());
        server.stop();
    }
    std::process::exit(3);
}

/// How long a run may go without a request finishing before it is given up
/// (`STALL_SECS`, default 15): a hung server must not hang the benchmark.
fn stall_limit() -> Duration {
    Duration::from_secs(env_or("STALL_SECS", 15) as u64)
}

fn mode_key(sync: bool) -> &'static str {
    if sync {
        "durable"
    } else {
        "nosync"
    }
}

struct Opts {
    requests: usize,
    concurrency: usize,
    rate: f64,
    seconds: usize,
    connections: usize,
    rounds: usize,
    gen_threads: usize,
    modes: Vec<String>,
}

impl Opts {
    fn from_env() -> Self {
        let modes: Vec<String> = std::env::var("MODES")
            .unwrap_or_else(|_| "durable,nosync".into())
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| m == "durable" || m == "nosync")
            .collect();
        Self {
            requests: env_or("REQUESTS", 100_000).max(1),
            concurrency: env_or("CONCURRENCY", 64).max(1),
            rate: env_or("RATE", 20_000).max(1) as f64,
            seconds: env_or("SECONDS", 5).max(1),
            connections: env_or("CONNECTIONS", 256).max(1),
            rounds: env_or("ROUNDS", 3).max(1),
            gen_threads: env_or("GEN_THREADS", 1).clamp(1, 2),
            modes,
        }
    }
}

// ---------------------------------------------------------------- server

/// The server process and its data dir, removed when it is dropped (and
/// kept, with the process, when a stalled server is left for inspection).
struct Server {
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

fn start_server(rt: &tokio::runtime::Runtime, sync: bool) -> Server {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), &CONFIG.replace("{sync}", &sync.to_string()));
    let process = ServerProcess::start(&config).unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(wait_ready(process.admin));
    Server { process, _dir: dir }
}

impl Server {
    /// SIGKILL: the measurement is over and the data dir is thrown away.
    fn stop(self) {
        self.process.stop();
    }
}

// -------------------------------------------------------------- requests

/// `n` unique GitHub `push` deliveries, signed and serialized.
fn build_requests(ingest: SocketAddr, prefix: &str, n: usize) -> Vec<Vec<u8>> {
    build_parallel(n, |i| request(ingest, prefix, i))
}

fn request(ingest: SocketAddr, prefix: &str, i: usize) -> Vec<u8> {
    let delivery = format!("{prefix}-{i:08}");
    let head = format!(
        r#"{{"ref":"refs/heads/main","delivery":"{delivery}","seq":{i},"repository":{{"full_name":"hookhost/bench"}},"pad":""#
    );
    let tail = "\"}";
    let pad = BODY_BYTES.saturating_sub(head.len() + tail.len());
    let body = format!("{head}{}{tail}", "x".repeat(pad));
    debug_assert_eq!(body.len(), BODY_BYTES);
    github_request(ingest, SECRET, "push", &delivery, body.as_bytes())
}

// ----------------------------------------------------------------- loads

// The closed loop is the shared `bench::closed_loop`; the open loop is this
// benchmark's own. It reports what the closed loop does (a `ClosedRun`) plus
// how late each request left after its intended time.

/// Open-loop requests finished (answered or failed), for the stall watchdog.
static FINISHED: AtomicUsize = AtomicUsize::new(0);

struct WorkerOut {
    lat_us: Vec<u32>,
    lag_us: Vec<u32>,
    errors: BTreeMap<String, usize>,
    last: Instant,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn record(out: &mut WorkerOut, r: Result<u16, String>, lat: Duration) {
    match r {
        Ok(200) => out.lat_us.push(us(lat)),
        Ok(status) => *out.errors.entry(format!("HTTP {status}")).or_default() += 1,
        Err(e) => *out.errors.entry(e).or_default() += 1,
    }
}

async fn connect_all(addr: SocketAddr, n: usize) -> Vec<Conn> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(addr).await.expect("connect"));
    }
    conns
}

/// Wait for the workers: the run and each request's lag (µs). Give up on
/// the run if no request finishes for [`stall_limit`].
async fn collect(
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<WorkerOut>>,
) -> (ClosedRun, Vec<u32>) {
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let gather = async move {
        let mut run = ClosedRun::default();
        let mut lag_us = Vec::new();
        let mut last = start;
        for t in tasks {
            let w = t.await.expect("worker");
            run.lat_us.extend(w.lat_us);
            lag_us.extend(w.lag_us);
            for (e, n) in w.errors {
                *run.errors.entry(e).or_default() += n;
            }
            last = last.max(w.last);
        }
        run.elapsed = last.saturating_duration_since(start);
        (run, lag_us)
    };
    let stall = stall_limit();
    let watchdog = async move {
        let (mut seen, mut since) = (FINISHED.load(Ordering::Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = FINISHED.load(Ordering::Relaxed);
            if now != seen {
                (seen, since) = (now, Instant::now());
            } else if since.elapsed() >= stall && Instant::now() > start {
                return;
            }
        }
    };
    tokio::select! {
        run = gather => run,
        () = watchdog => {
            for a in aborts {
                a.abort();
            }
            (ClosedRun { stalled: true, ..ClosedRun::default() }, Vec::new())
        }
    }
}

/// Request `i` is due at `start + i/rate`; a free connection takes the next
/// index, waits for its time if that is still ahead, and the latency is
/// measured from the intended time.
async fn open_loop(
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    rate: f64,
    connections: usize,
) -> (ClosedRun, Vec<u32>) {
    let conns = connect_all(addr, connections).await;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let tasks = conns
        .into_iter()
        .map(|mut conn| {
            let (reqs, next) = (reqs.clone(), next.clone());
            tokio::spawn(async move {
                let cap = reqs.len() / connections + 16;
                let mut out = WorkerOut {
                    lat_us: Vec::with_capacity(cap),
                    lag_us: Vec::with_capacity(cap),
                    errors: BTreeMap::new(),
                    last: start,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = reqs.get(i) else { break };
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    out.lag_us
                        .push(us(Instant::now().saturating_duration_since(due)));
                    let r = conn.call(req).await;
                    let done = Instant::now();
                    FINISHED.fetch_add(1, Ordering::Relaxed);
                    out.last = done;
                    record(&mut out, r, done.saturating_duration_since(due));
                }
                out
            })
        })
        .collect();
    collect(start, tasks).await
}

// ------------------------------------------------------------ measurement

/// A run plus the CPU it cost, from /proc.
struct Measured {
    run: ClosedRun,
    /// Open loop: how late each request left after its intended time, µs.
    lag_us: Vec<u32>,
    server_cpu: Duration,
    gen_cpu: Duration,
    /// Busy time of all cores over the run, as a fraction of one core.
    busy_cores: f64,
}

fn measured(server: &Server, f: impl FnOnce() -> (ClosedRun, Vec<u32>)) -> Measured {
    let pid = server.process.pid();
    let (s0, g0, m0) = (process_cpu(pid), own_cpu(), machine_cpu());
    let (run, lag_us) = f();
    let (s1, g1, m1) = (process_cpu(pid), own_cpu(), machine_cpu());
    Measured {
        run,
        lag_us,
        server_cpu: s1.saturating_sub(s0),
        gen_cpu: g1.saturating_sub(g0),
        busy_cores: busy_cores(m0, m1),
    }
}

fn note_errors(problems: &mut Vec<String>, mode: &str, kind: &str, round: usize, run: &ClosedRun) {
    if !run.errors.is_empty() {
        problems.push(format!(
            "{mode} {kind} round {}: {}",
            round + 1,
            run.error_list()
        ));
    }
}

/// Median figures of several rounds.
struct Summary {
    acks_per_s: f64,
    acks_lo: f64,
    acks_hi: f64,
    p50: f64,
    p99: f64,
    p99_lo: f64,
    p99_hi: f64,
    p999: f64,
    lag_p99: f64,
    srv_us: f64,
    gen_us: f64,
    busy_pct: f64,
    errors: usize,
}

fn summarize(rounds: &[Measured]) -> Summary {
    struct One {
        acks_per_s: f64,
        p50: f64,
        p99: f64,
        p999: f64,
        lag_p99: f64,
        srv_us: f64,
        gen_us: f64,
        busy_pct: f64,
    }
    let ones: Vec<One> = rounds
        .iter()
        .map(|m| {
            let mut lat = m.run.lat_us.clone();
            lat.sort_unstable();
            let mut lag = m.lag_us.clone();
            lag.sort_unstable();
            let sent = (m.run.acks() + m.run.error_count()).max(1);
            One {
                acks_per_s: m.run.acks() as f64 / m.run.elapsed.as_secs_f64().max(1e-9),
                p50: percentile_ms(&lat, 0.50),
                p99: percentile_ms(&lat, 0.99),
                p999: percentile_ms(&lat, 0.999),
                lag_p99: percentile_ms(&lag, 0.99),
                srv_us: m.server_cpu.as_secs_f64() * 1e6 / m.run.acks().max(1) as f64,
                gen_us: m.gen_cpu.as_secs_f64() * 1e6 / sent as f64,
                busy_pct: m.busy_cores * 100.0,
            }
        })
        .collect();
    let med = |f: fn(&One) -> f64| {
        let mut v: Vec<f64> = ones.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let lo = |f: fn(&One) -> f64| ones.iter().map(f).fold(f64::INFINITY, f64::min);
    let hi = |f: fn(&One) -> f64| ones.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
    Summary {
        acks_per_s: med(|o| o.acks_per_s),
        acks_lo: lo(|o| o.acks_per_s),
        acks_hi: hi(|o| o.acks_per_s),
        p50: med(|o| o.p50),
        p99: med(|o| o.p99),
        p99_lo: lo(|o| o.p99),
        p99_hi: hi(|o| o.p99),
        p999: med(|o| o.p999),
        lag_p99: med(|o| o.lag_p99),
        srv_us: med(|o| o.srv_us),
        gen_us: med(|o| o.gen_us),
        busy_pct: med(|o| o.busy_pct),
        errors: rounds.iter().map(|m| m.run.error_count()).sum(),
    }
}

fn print_row(mode: &str, kind: &str, s: &Summary, open: bool) {
    let acks_range = format!("{:.1}-{:.1}k", s.acks_lo / 1000.0, s.acks_hi / 1000.0);
    let p99_range = format!("{:.2}-{:.2}", s.p99_lo, s.p99_hi);
    let lag = if open {
        format!("{:.2}", s.lag_p99)
    } else {
        "-".into()
    };
    println!(
        "{mode:<9} {kind:<13} {:>7.0} {acks_range:>11} {:>8.2} {:>8.2} {p99_range:>15} {:>8.2} {lag:>8} {:>10.1} {:>10.1} {:>5.0} {:>6}",
        s.acks_per_s, s.p50, s.p99, s.p999, s.srv_us, s.gen_us, s.busy_pct, s.errors
    );
}
