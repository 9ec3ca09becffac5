//! Shared helpers for hookhost's end-to-end tests and benchmarks: where the
//! plugins built by `build.rs` are, and a runtime on a throwaway data dir.

use hookhost::kv::{KvLimits, KvStore};
use hookhost::runtime::{Event, Plugin, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// The folder `build.rs` built `plugins/` into.
pub const PLUGIN_WASM_DIR: &str = env!("HOOKHOST_PLUGIN_WASM_DIR");

/// The folder `build.rs` built the Python and JavaScript plugins into.
pub const INTERPRETED_WASM_DIR: &str = env!("HOOKHOST_INTERPRETED_WASM_DIR");

/// Path of a plugin component by its folder in `plugins/`: a Rust crate
/// (`github-issues` is built as `github_issues.wasm`), or a Python or
/// JavaScript plugin (`echo-py`, `echo-js`).
pub fn wasm_path(folder: &str) -> PathBuf {
    if folder.ends_with("-py") || folder.ends_with("-js") {
        return PathBuf::from(INTERPRETED_WASM_DIR).join(format!("{folder}.wasm"));
    }
    PathBuf::from(PLUGIN_WASM_DIR).join(format!("{}.wasm", folder.replace('-', "_")))
}

/// A compiled-artifact cache shared by every test and benchmark run: an
/// interpreter-based plugin takes 5-25 s to compile, once per version
/// instead of once per test. Safe to share: artifacts are written
/// atomically under names holding the wasm's and the engine's digests.
pub fn shared_artifact_cache() -> PathBuf {
    PathBuf::from(PLUGIN_WASM_DIR).join("../../hookhost-artifact-cache")
}

/// Make `DATA/cache` (the server's artifact cache under `data_dir`) the
/// shared one: call before the server starts.
pub fn use_shared_artifact_cache(data_dir: &std::path::Path) {
    let shared = shared_artifact_cache();
    std::fs::create_dir_all(&shared).expect("shared artifact cache");
    std::fs::create_dir_all(data_dir).expect("data dir");
    let link = data_dir.join("cache");
    if !link.exists() {
        std::os::unix::fs::symlink(&shared, &link).expect("link the shared artifact cache");
    }
}

/// The bytes of a built plugin.
pub fn wasm(crate_name: &str) -> Vec<u8> {
    let path = wasm_path(crate_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `wasm` with a custom section (`hookhost-version`, holding `tag`)
/// appended: the same component under another SHA-256, so a new version
/// that the host must compile like any new build.
pub fn variant(wasm: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"hookhost-version";
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// A runtime on its own temporary data directory (removed on drop).
pub struct Harness {
    /// The runtime under test.
    pub runtime: Runtime,
    /// The data directory (sled and the artifact cache).
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A runtime with default kv limits.
    pub fn new() -> Self {
        Self::with_kv_limits(KvLimits::default())
    }

    /// A runtime with the given kv limits.
    pub fn with_kv_limits(limits: KvLimits) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = runtime_in(dir.path(), limits);
        Self { runtime, dir }
    }

    /// Load a built plugin under its crate name.
    pub async fn load(&self, crate_name: &str) -> Arc<Plugin> {
        self.runtime
            .load(crate_name, wasm(crate_name))
            .await
            .unwrap_or_else(|e| panic!("loading {crate_name}: {e}"))
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// A runtime whose sled database and cache live in `dir`. A database just
/// dropped (a restart in the same test) can stay locked for a moment while
/// sled's I/O threads finish writing: opening is retried for up to 5 s.
pub fn runtime_in(dir: &std::path::Path, limits: KvLimits) -> Runtime {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match hookhost::store::open_db(&dir.join("db")) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled: {e}"),
        }
    };
    Runtime::new(RuntimeConfig::new(dir), KvStore::new(db, limits)).expect("runtime")
}

/// An event with a JSON body, attempt 1.
pub fn event(source: &str, kind: &str, id: &str, body: &serde_json::Value) -> Event {
    Event {
        id: id.to_owned(),
        source: source.to_owned(),
        kind: kind.to_owned(),
        received_at_ms: 1_700_000_000_000,
        attempt: 1,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(body).expect("json"),
    }
}

/// A 1 KiB JSON event, as the benchmarks send.
pub fn kib_event(id: u64) -> Event {
    let pad = "x".repeat(1024 - 40);
    event(
        "bench",
        "ping",
        &format!("evt_{id}"),
        &serde_json::json!({ "id": id, "pad": pad }),
    )
}

pub mod server;

/// Helpers the benchmarks share: knobs from the environment, a description
/// of the machine, the server in a child process, pre-signed raw requests, a
/// closed-loop load generator and CPU accounting from /proc.
pub mod bench {
    use hookhost::kv::{KvLimits, KvStore};
    use hookhost::runtime::{CallSettings, Event, Outcome, Plugin, Runtime, RuntimeConfig};
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A numeric knob from the environment, or its default.
    pub fn env_or(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Cores available to this process.
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The CPU model from /proc/cpuinfo.
    pub fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into())
    }

    /// What else the machine was doing: the load averages from
    /// /proc/loadavg and the other processes whose name is one of `names`
    /// (for example `rustc`, `cargo`), counted, leaving out this process
    /// and its ancestors (the `cargo bench` that started it); for the
    /// benchmark's report, since the machine is shared with other people's
    /// builds.
    pub fn machine_load(names: &[&str]) -> String {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "?".into());
        let mine = lineage();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_none_or(|p| mine.contains(&p)) {
                continue;
            }
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            let comm = comm.trim();
            if names.contains(&comm) {
                *seen.entry(comm.to_owned()).or_default() += 1;
            }
        }
        let others = if seen.is_empty() {
            format!("no {} running", names.join("/"))
        } else {
            let list: Vec<String> = seen.iter().map(|(n, c)| format!("{n} x{c}")).collect();
            format!("running: {}", list.join(", "))
        };
        format!("load average {load}; {others}")
    }

    /// This process's pid and its ancestors', from /proc.
    fn lineage() -> Vec<u32> {
        let mut out = vec![std::process::id()];
        // Bounded: a pid chain is short, and a /proc race must not loop.
        for _ in 0..64 {
            let Some(&pid) = out.last() else { break };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // The parent pid is the second field after the command
                    // name's closing parenthesis.
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                });
            match parent {
                Some(p) if p > 1 && !out.contains(&p) => out.push(p),
                _ => break,
            }
        }
        out
    }

    // ---------------------------------------------------------- the server

    /// A hookhost server in a child process: the benchmark binary
    /// re-executed with `HH_BENCH_SERVER=<config>`, on a default
    /// multi-thread tokio runtime, so it shares no threads with the load
    /// generator and its CPU shows apart in /proc.
    pub struct ServerProcess {
        /// The child process.
        pub child: std::process::Child,
        /// Where `POST /webhooks/{source}` listens.
        pub ingest: SocketAddr,
        /// The admin listener.
        pub admin: SocketAddr,
    }

    impl ServerProcess {
        /// In the child (`HH_BENCH_SERVER` set): serve until killed and
        /// return true. Call it first thing in the benchmark's `main`.
        pub fn serve_if_child() -> bool {
            let Ok(config) = std::env::var("HH_BENCH_SERVER") else {
                return false;
            };
            let addrs = std::env::var("HH_BENCH_ADDRS").expect("HH_BENCH_ADDRS");
            crate::server::serve_child(Path::new(&config), Path::new(&addrs));
            true
        }

        /// Start a child serving `config`; its addresses are passed through
        /// a file next to the config. Does not wait for `/readyz`.
        pub fn start(config: &Path) -> Result<Self, String> {
            let addr_file: PathBuf = config.with_file_name("addrs");
            let exe = std::env::current_exe().map_err(|e| format!("bench binary: {e}"))?;
            let mut child = std::process::Command::new(exe)
                .env("HH_BENCH_SERVER", config)
                .env("HH_BENCH_ADDRS", &addr_file)
                .env("RUST_LIB_BACKTRACE", "0")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("spawn the server: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let addrs = loop {
                if let Ok(s) = std::fs::read_to_string(&addr_file) {
                    break s;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the server exited at start: {status}"));
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the server wrote no addresses within 30 s".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let parse = |a: Option<&str>| a.and_then(|a| a.trim().parse::<SocketAddr>().ok());
            let mut it = addrs.split(' ');
            match (parse(it.next()), parse(it.next())) {
                (Some(ingest), Some(admin)) => Ok(Self {
                    child,
                    ingest,
                    admin,
                }),
                _ => Err(format!("bad address file {addrs:?}")),
            }
        }

        /// The child's pid.
        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// SIGKILL: the measurement is over and the data dir is thrown away.
        pub fn stop(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    // ------------------------------------------------------------ requests

    /// A GitHub delivery signed with `secret` and serialized to raw
    /// HTTP/1.1 bytes, ready to write to a keep-alive connection.
    pub fn github_request(
        host: SocketAddr,
        secret: &str,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> Vec<u8> {
        let sig = hex::encode(crate::server::hmac_sha256(secret.as_bytes(), &[body]));
        let mut req = format!(
            "POST /webhooks/github HTTP/1.1\r\n\
             Host: {host}\r\n\
             User-Agent: GitHub-Hookshot/bench\r\n\
             Content-Type: application/json\r\n\
             X-GitHub-Event: {event}\r\n\
             X-GitHub-Delivery: {delivery}\r\n\
             X-Hub-Signature-256: sha256={sig}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    /// `make(0..n)`, on up to 4 threads (signing 100k requests takes a
    /// while on one), in order.
    pub fn build_parallel(n: usize, make: impl Fn(usize) -> Vec<u8> + Sync) -> Vec<Vec<u8>> {
        let threads = cores().clamp(1, 4);
        let chunk = n.div_ceil(threads).max(1);
        let make = &make;
        let mut out = Vec::with_capacity(n);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|from| s.spawn(move || (from..(from + chunk).min(n)).map(make).collect()))
                .collect();
            for h in handles {
                let part: Vec<Vec<u8>> = h.join().expect("signing thread");
                out.extend(part);
            }
        });
        out
    }

    // -------------------------------------------------------------- client

    /// One keep-alive HTTP/1.1 connection that writes pre-built requests
    /// and parses only the answer's head (status, length, close).
    pub struct Conn {
        addr: SocketAddr,
        stream: Option<TcpStream>,
        buf: Vec<u8>,
    }

    impl Conn {
        /// Connect (with `TCP_NODELAY`).
        pub async fn open(addr: SocketAddr) -> std::io::Result<Self> {
            let mut c = Self {
                addr,
                stream: None,
                buf: Vec::with_capacity(4096),
            };
            c.stream = Some(c.connect().await?);
            Ok(c)
        }

        async fn connect(&self) -> std::io::Result<TcpStream> {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            Ok(s)
        }

        /// Send one pre-built request and read its whole answer: the status,
        /// or what went wrong. Reconnects after an error or `connection:
        /// close`.
        pub async fn call(&mut self, req: &[u8]) -> Result<u16, String> {
            let r = self.exchange(req).await;
            match &r {
                Ok((_, false)) => {}
                Ok((_, true)) | Err(_) => self.stream = None,
            }
            r.map(|(status, _)| status)
        }

        async fn exchange(&mut self, req: &[u8]) -> Result<(u16, bool), String> {
            if self.stream.is_none() {
                self.stream = Some(self.connect().await.map_err(|e| format!("connect: {e}"))?);
            }
            let Some(stream) = self.stream.as_mut() else {
                unreachable!("connected above")
            };
            stream
                .write_all(req)
                .await
                .map_err(|e| format!("write: {}", e.kind()))?;
            self.buf.clear();
            let mut chunk = [0u8; 4096];
            let (head_end, status, len, close) = loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let (status, len, close) = parse_head(&self.buf[..end])?;
                    break (end + 4, status, len, close);
                }
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {}", e.kind()))?;
                if n == 0 {
                    return Err("connection closed before the answer".into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            };
            while self.buf.len() < head_end + len {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {}", e.kind()))?;
                if n == 0 {
                    return Err("connection closed in the body".into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            Ok((status, close))
        }
    }

    /// Status, `content-length` (0 if absent) and whether the server closes.
    fn parse_head(head: &[u8]) -> Result<(u16, usize, bool), String> {
        let text = std::str::from_utf8(head).map_err(|_| "answer head is not UTF-8".to_owned())?;
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line in {text:?}"))?;
        let (mut len, mut close) = (0, false);
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().map_err(|_| format!("bad content-length {v:?}"))?;
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked answer not expected".into());
            }
        }
        Ok((status, len, close))
    }

    // --------------------------------------------------------- closed loop

    /// What a closed-loop run saw.
    #[derive(Default)]
    pub struct ClosedRun {
        /// Send-to-answer latency of every 200, µs.
        pub lat_us: Vec<u32>,
        /// Every other outcome (`HTTP 503`, `read: ConnectionReset`, …),
        /// counted.
        pub errors: BTreeMap<String, usize>,
        /// From the start to the last answer.
        pub elapsed: Duration,
        /// Nothing finished for the stall limit: the run was abandoned.
        pub stalled: bool,
    }

    impl ClosedRun {
        /// Requests answered 200.
        pub fn acks(&self) -> usize {
            self.lat_us.len()
        }

        /// Requests that failed or got another status.
        pub fn error_count(&self) -> usize {
            self.errors.values().sum()
        }

        /// The errors as `what xN, …`.
        pub fn error_list(&self) -> String {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(e, n)| format!("{e} x{n}"))
                .collect();
            list.join(", ")
        }
    }

    fn us(d: Duration) -> u32 {
        d.as_micros().min(u32::MAX as u128) as u32
    }

    /// `concurrency` keep-alive connections, each sending its next request
    /// from `reqs` as soon as the previous answer is in. Gives up when no
    /// request finishes for `stall` (a hung server must not hang the
    /// benchmark). Spawns on the current tokio runtime.
    pub async fn closed_loop(
        addr: SocketAddr,
        reqs: Arc<Vec<Vec<u8>>>,
        concurrency: usize,
        stall: Duration,
    ) -> ClosedRun {
        let mut conns = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            match Conn::open(addr).await {
                Ok(c) => conns.push(c),
                Err(e) => {
                    let mut run = ClosedRun::default();
                    run.errors.insert(format!("connect: {e}"), reqs.len());
                    return run;
                }
            }
        }
        let next = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        struct Out {
            lat_us: Vec<u32>,
            errors: BTreeMap<String, usize>,
            last: Instant,
        }
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let (reqs, next, finished) = (reqs.clone(), next.clone(), finished.clone());
                tokio::spawn(async move {
                    let mut out = Out {
                        lat_us: Vec::with_capacity(reqs.len() / concurrency + 16),
                        errors: BTreeMap::new(),
                        last: start,
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(req) = reqs.get(i) else { break };
                        let t = Instant::now();
                        let r = conn.call(req).await;
                        let done = Instant::now();
                        finished.fetch_add(1, Ordering::Relaxed);
                        out.last = done;
                        match r {
                            Ok(200) => out.lat_us.push(us(done - t)),
                            Ok(status) => {
                                *out.errors.entry(format!("HTTP {status}")).or_default() += 1
                            }
                            Err(e) => *out.errors.entry(e).or_default() += 1,
                        }
                    }
                    out
                })
            })
            .collect();
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let gather = async move {
            let mut run = ClosedRun::default();
            let mut last = start;
            for t in tasks {
                let w = t.await.expect("load task");
                run.lat_us.extend(w.lat_us);
                for (e, n) in w.errors {
                    *run.errors.entry(e).or_default() += n;
                }
                last = last.max(w.last);
            }
            run.elapsed = last.saturating_duration_since(start);
            run
        };
        let watchdog = async move {
            let (mut seen, mut since) = (finished.load(Ordering::Relaxed), Instant::now());
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = finished.load(Ordering::Relaxed);
                if now != seen {
                    (seen, since) = (now, Instant::now());
                } else if since.elapsed() >= stall {
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
                ClosedRun { stalled: true, elapsed: start.elapsed(), ..ClosedRun::default() }
            }
        }
    }

    /// The value at quantile `q` of sorted µs samples, in ms (NaN if none).
    pub fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
        if sorted_us.is_empty() {
            return f64::NAN;
        }
        let i = ((sorted_us.len() as f64 * q) as usize).min(sorted_us.len() - 1);
        sorted_us[i] as f64 / 1000.0
    }

    // -------------------------------------------------------- plugin calls

    /// A runtime for per-call benchmarks on its own data dir, with fuel and
    /// epoch metering on (as the server runs) or off. Compiled artifacts go
    /// to `cache`, or to the data dir when `None`: interpreter-based plugins
    /// want [`crate::shared_artifact_cache`], or every run compiles them.
    pub fn call_runtime(dir: &Path, metering: bool, cache: Option<PathBuf>) -> Runtime {
        let db = hookhost::store::open_db(&dir.join("db")).expect("sled");
        let mut config = RuntimeConfig {
            metering,
            ..RuntimeConfig::new(dir)
        };
        if let Some(cache) = cache {
            std::fs::create_dir_all(&cache).expect("artifact cache");
            config.cache_dir = cache;
        }
        Runtime::new(config, KvStore::new(db, KvLimits::default())).expect("runtime")
    }

    /// Load the component at `path` as plugin `name`, outside any tokio
    /// runtime (benchmarks drive calls from plain threads).
    pub fn load_blocking(rt: &Runtime, name: &str, path: &Path) -> Arc<Plugin> {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
            .block_on(rt.load(name, bytes))
            .unwrap_or_else(|e| panic!("loading {name}: {e}"))
    }

    /// What one thread's timed calls took.
    pub struct CallRun {
        /// Each call's latency, in call order.
        pub latencies: Vec<Duration>,
        /// Wall time of all timed calls.
        pub elapsed: Duration,
        /// Fuel the timed calls used, all together.
        pub fuel: u64,
        /// Minor page faults of the whole process during the timed calls.
        pub minor_faults: u64,
        /// CPU time of the calling thread during the timed calls (user and
        /// kernel, page faults included): unlike latency, barely moved by
        /// other processes competing for the cores.
        pub cpu: Duration,
    }

    /// Events `offset..offset + n` from `make`, built before any timing.
    fn events(make: &(dyn Fn(u64) -> Event + Sync), offset: u64, n: usize) -> Vec<Event> {
        (offset..offset + n as u64).map(make).collect()
    }

    /// `warmup` untimed calls, a wait on `start` (when given, so that
    /// concurrent threads time the same window), then `calls` timed calls
    /// one after another on a current-thread tokio runtime. Every call must
    /// end `Ok`: a benchmark of failing calls measures nothing.
    pub fn run_calls(
        rt: &Runtime,
        p: &Plugin,
        settings: &CallSettings,
        (warmup, calls): (usize, usize),
        make: &(dyn Fn(u64) -> Event + Sync),
        offset: u64,
        start: Option<&std::sync::Barrier>,
    ) -> CallRun {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let warm_events = events(make, offset, warmup);
        let timed_events = events(make, offset + warmup as u64, calls);
        tokio.block_on(async {
            // Warm the pool's slots, the page cache and (in warm mode) the
            // plugin's idle instances first.
            for e in &warm_events {
                let r = rt.invoke(p, settings, e).await;
                assert_eq!(r.outcome, Outcome::Ok, "warm-up call of {}", p.name);
            }
            if let Some(b) = start {
                b.wait();
            }
            let mut latencies = Vec::with_capacity(calls);
            let mut fuel = 0;
            let faults = minor_faults();
            let cpu = thread_cpu();
            let began = Instant::now();
            for e in &timed_events {
                let t = Instant::now();
                let r = rt.invoke(p, settings, e).await;
                latencies.push(t.elapsed());
                assert_eq!(r.outcome, Outcome::Ok, "call of {}", p.name);
                fuel += r.fuel_used;
            }
            CallRun {
                latencies,
                elapsed: began.elapsed(),
                fuel,
                minor_faults: minor_faults().saturating_sub(faults),
                cpu: thread_cpu().saturating_sub(cpu),
            }
        })
    }

    /// One round's figures for one plugin and one way of calling it.
    #[derive(Debug, Clone, Copy)]
    pub struct CallStats {
        /// Median latency on one thread, µs.
        pub p50_us: f64,
        /// 99th percentile on one thread, µs.
        pub p99_us: f64,
        /// Mean latency on one thread, µs.
        pub mean_us: f64,
        /// Calls/s, one thread calling.
        pub per_s_1: f64,
        /// Calls/s, two threads calling at once (each its own tokio
        /// runtime, as two tasks on two workers would).
        pub per_s_2: f64,
        /// Fuel per call (one thread).
        pub fuel: f64,
        /// Minor page faults of the process per call (one thread).
        pub faults: f64,
        /// CPU time of the calling thread per call, µs (one thread).
        pub cpu_us: f64,
    }

    /// A round: `calls` timed calls on one thread, then `calls` on each of
    /// two threads at once; each thread makes `warmup` untimed calls first.
    pub fn call_round(
        rt: &Runtime,
        p: &Arc<Plugin>,
        settings: &CallSettings,
        (warmup, calls): (usize, usize),
        make: &(dyn Fn(u64) -> Event + Sync),
    ) -> CallStats {
        let one = run_calls(rt, p, settings, (warmup, calls), make, 0, None);
        let mut lat = one.latencies;
        lat.sort();
        let pct =
            |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
        let n = calls as f64;
        let mean_us = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / n * 1e6;

        let start = std::sync::Barrier::new(2);
        let runs: Vec<CallRun> = std::thread::scope(|s| {
            let threads: Vec<_> = (1..=2u64)
                .map(|t| {
                    let start = &start;
                    s.spawn(move || {
                        run_calls(rt, p, settings, (warmup, calls), make, t << 32, Some(start))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("calling thread"))
                .collect()
        });
        // Both started together; the window ends with the slower one.
        let window = runs.iter().map(|r| r.elapsed).max().unwrap_or_default();
        CallStats {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            mean_us,
            per_s_1: n / one.elapsed.as_secs_f64(),
            per_s_2: 2.0 * n / window.as_secs_f64(),
            fuel: one.fuel as f64 / n,
            faults: one.minor_faults as f64 / n,
            cpu_us: one.cpu.as_secs_f64() * 1e6 / n,
        }
    }

    /// The median of each figure over `rounds`, and the lowest and highest
    /// round p50: this shared machine swings between rounds, so one round
    /// says little.
    pub fn median_round(rounds: &[CallStats]) -> (CallStats, f64, f64) {
        let med = |f: fn(&CallStats) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let p50 = |s: &CallStats| s.p50_us;
        let lo = rounds.iter().map(p50).fold(f64::INFINITY, f64::min);
        let hi = rounds.iter().map(p50).fold(0.0, f64::max);
        (
            CallStats {
                p50_us: med(p50),
                p99_us: med(|s| s.p99_us),
                mean_us: med(|s| s.mean_us),
                per_s_1: med(|s| s.per_s_1),
                per_s_2: med(|s| s.per_s_2),
                fuel: med(|s| s.fuel),
                faults: med(|s| s.faults),
                cpu_us: med(|s| s.cpu_us),
            },
            lo,
            hi,
        )
    }

    // ---------------------------------------------------------------- CPU

    /// CPU time (user + system) of process `pid` so far, from /proc.
    pub fn process_cpu(pid: u32) -> Duration {
        stat_cpu(&format!("/proc/{pid}/stat"))
    }

    /// CPU time of this process (the load generator) so far.
    pub fn own_cpu() -> Duration {
        stat_cpu("/proc/self/stat")
    }

    /// Minor page faults of this process so far (field 10 of
    /// /proc/self/stat), 0 if unreadable: a fresh instance's cost is
    /// largely the pages its guest touches.
    pub fn minor_faults() -> u64 {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(7)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// CPU time of the calling thread so far, to the nanosecond (the
    /// scheduler's own account in /proc/thread-self/schedstat); zero if
    /// unreadable.
    pub fn thread_cpu() -> Duration {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos)
    }

    fn stat_cpu(path: &str) -> Duration {
        // Fields after the command name's closing parenthesis; utime and
        // stime are fields 14 and 15 of the whole line, in USER_HZ (100 on
        // Linux).
        let ticks = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_owned();
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// (busy, total) jiffies of all cores so far; idle and iowait are not
    /// busy.
    pub fn machine_cpu() -> Option<(u64, u64)> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let line = s.lines().next()?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest counted in user)
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3)? + v.get(4)?;
        Some((total - idle, total))
    }

    /// How many cores were busy on average between two [`machine_cpu`]
    /// readings (NaN if either is missing).
    pub fn busy_cores(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> f64 {
        match (before, after) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                (b1 - b0) as f64 / (t1 - t0) as f64 * cores() as f64
            }
            _ => f64::NAN,
        }
    }

    #[cfg(test)]
    mod tests {
        /// The real runtime loads a [`crate::variant`], which the reload
        /// benchmark drops into the folder: another version (the file's
        /// SHA-256), the same plugin (its `describe` answers as the
        /// original's).
        #[tokio::test(flavor = "multi_thread")]
        async fn a_variant_loads_as_a_new_version_of_the_same_plugin() {
            let h = crate::Harness::new();
            let original = h.load("echo").await;
            // A tag longer than 127 bytes: a two-byte section size.
            let tag = format!("reload 1 {}", "x".repeat(200));
            let variant = crate::variant(&crate::wasm("echo"), &tag);
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(&variant));
            let loaded = h
                .runtime
                .load("echo", variant)
                .await
                .unwrap_or_else(|e| panic!("the variant does not load: {e}"));
            assert_eq!(loaded.sha256, digest, "the version is the file's SHA-256");
            assert_ne!(loaded.sha256, original.sha256);
            assert_eq!(loaded.info.declared_name, original.info.declared_name);
            assert_eq!(loaded.info.subscriptions, original.info.subscriptions);
        }
    }
}
