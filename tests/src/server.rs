//! A real hookhost server for tests and benchmarks: in-process on port 0,
//! or as a child process (the test binary re-executed) that can be killed
//! with SIGKILL. Plus a small HTTP client, raw TCP exchanges for clients
//! that misbehave on purpose, and provider-style signing.

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// A server running in this process.
pub struct TestServer {
    /// Where `POST /webhooks/{source}` listens.
    pub ingest: SocketAddr,
    /// Where `/healthz` and `/readyz` listen.
    pub admin: SocketAddr,
    /// Cancel to start the shutdown drain.
    pub shutdown: CancellationToken,
    /// Resolves when the server has drained.
    pub task: tokio::task::JoinHandle<Result<(), hookhost::server::ServerError>>,
}

/// Write `toml` (with `{data}` replaced by `data_dir`) to a config file.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("hookhost.toml");
    let data = dir.join("data");
    let text = toml.replace("{data}", &data.display().to_string().replace('\\', "/"));
    std::fs::write(&path, text).expect("config file");
    path
}

/// Longest a test polls for something to happen (deliveries to settle).
pub const SETTLE: Duration = Duration::from_secs(60);

/// Call `probe` every 20 ms until `done` holds for its answer, at most
/// [`SETTLE`] (then fail, naming `what` and the last answer); the answer.
pub async fn poll_until<F, Fut>(
    what: &str,
    mut probe: F,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let v = probe().await;
        if done(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {SETTLE:?} for {what}; last answer: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The plugins folder of a test directory: `DIR/plugins`.
pub fn plugins_dir(dir: &Path) -> PathBuf {
    dir.join("plugins")
}

/// Copy the component built from `krate` into `DIR/plugins` as
/// `NAME.wasm`, written beside it and renamed, as an operator's deploy
/// would.
pub fn install_plugin(dir: &Path, krate: &str, name: &str) {
    let tmp = plugins_dir(dir).join(format!(".{name}.tmp"));
    std::fs::copy(crate::wasm_path(krate), &tmp).expect("copy plugin");
    std::fs::rename(&tmp, plugins_dir(dir).join(format!("{name}.wasm"))).expect("rename");
}

/// A test directory with a plugins folder holding `plugins` (crate name,
/// plugin name) and a config file: `[server]` with the data and plugins
/// folders plus `server_keys`, then `rest` (sources, plugin tables).
pub fn plugin_setup(
    plugins: &[(&str, &str)],
    server_keys: &str,
    rest: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(plugins_dir(dir.path())).expect("plugins dir");
    for (krate, name) in plugins {
        install_plugin(dir.path(), krate, name);
    }
    let toml = format!(
        "[server]\ndata_dir = \"{{data}}\"\nplugins_dir = \"{}\"\n{server_keys}\n\n{rest}\n",
        plugins_dir(dir.path()).display()
    );
    let config = write_config(dir.path(), &toml);
    (dir, config)
}

impl TestServer {
    /// Load the config file, serve on two free loopback ports, and wait
    /// until ready.
    pub async fn start(config_file: &Path) -> Self {
        let mut server = Self::spawn(config_file).await;
        server.wait_ready().await;
        server
    }

    /// Like [`TestServer::start`], waiting up to `limit` for readiness
    /// instead of 30 s: the first scan compiles every plugin in the folder
    /// before the server is ready, and an interpreter-based one (Python,
    /// JavaScript) takes 5-25 s to compile when the artifact cache does not
    /// have it yet.
    pub async fn start_within(config_file: &Path, limit: Duration) -> Self {
        let mut server = Self::spawn(config_file).await;
        server.wait_ready_within(limit).await;
        server
    }

    /// Like [`TestServer::start`], without waiting for readiness (to see
    /// what ingest answers while the journal is replayed).
    pub async fn spawn(config_file: &Path) -> Self {
        Self::spawn_with(config_file, |_| {}).await
    }

    /// Like [`TestServer::start`], with `tweak` applied to the loaded config
    /// (settings that are not config-file keys, such as the read timeouts).
    pub async fn start_with(
        config_file: &Path,
        tweak: impl FnOnce(&mut hookhost::config::Config),
    ) -> Self {
        let mut server = Self::spawn_with(config_file, tweak).await;
        server.wait_ready().await;
        server
    }

    /// Like [`TestServer::spawn`], with `tweak` applied to the loaded config.
    pub async fn spawn_with(
        config_file: &Path,
        tweak: impl FnOnce(&mut hookhost::config::Config),
    ) -> Self {
        let mut config = hookhost::config::load(Some(config_file), &[]).expect("config");
        tweak(&mut config);
        let ingest = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (ingest_addr, admin_addr) = (
            ingest.local_addr().expect("addr"),
            admin.local_addr().expect("addr"),
        );
        let shutdown = CancellationToken::new();
        let listeners = hookhost::server::Listeners { ingest, admin };
        let task = tokio::spawn(hookhost::server::run(config, listeners, shutdown.clone()));
        Self {
            ingest: ingest_addr,
            admin: admin_addr,
            shutdown,
            task,
        }
    }

    /// Poll `/readyz` until it answers 200 (at most 30 s); a server that
    /// stops first fails with its error instead of a timeout.
    pub async fn wait_ready(&mut self) {
        self.wait_ready_within(READY_LIMIT).await;
    }

    /// Like [`TestServer::wait_ready`], for at most `limit`.
    pub async fn wait_ready_within(&mut self, limit: Duration) {
        tokio::select! {
            () = wait_ready_within(self.admin, limit) => {}
            r = &mut self.task => panic!("the server stopped before it was ready: {r:?}"),
        }
    }

    /// Drain and stop; the server's result.
    pub async fn stop(self) -> Result<(), hookhost::server::ServerError> {
        self.shutdown.cancel();
        self.task.await.expect("server task")
    }
}

/// The body of a child server process (crash test, load benchmark): load
/// `config`, serve on two free loopback ports until killed, after writing
/// `"<ingest> <admin>"` to `addr_file` (atomically, so the parent never
/// reads half an address).
pub fn serve_child(config: &Path, addr_file: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async move {
        let cfg = hookhost::config::load(Some(config), &[]).expect("config");
        let ingest = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addrs = format!(
            "{} {}",
            ingest.local_addr().expect("addr"),
            admin.local_addr().expect("addr")
        );
        let tmp = addr_file.with_extension("tmp");
        std::fs::write(&tmp, addrs).expect("addr file");
        std::fs::rename(&tmp, addr_file).expect("addr file");
        let never = CancellationToken::new();
        hookhost::server::run(cfg, hookhost::server::Listeners { ingest, admin }, never)
            .await
            .expect("serve");
    });
}

/// The body of a child-server entry point: a test marked `#[ignore]` in
/// the test binary, which [`spawn_child`] runs by name. Serves with the
/// config and address file the parent passed in the environment.
pub fn child_main() {
    let (Ok(config), Ok(addr_file)) = (
        std::env::var("HH_CHILD_CONFIG"),
        std::env::var("HH_CHILD_ADDRS"),
    ) else {
        panic!("run by spawn_child only");
    };
    serve_child(Path::new(&config), Path::new(&addr_file));
}

/// A server in a child process, to be killed with SIGKILL. Killed on drop,
/// so a failing test leaves no server running.
pub struct ChildServer {
    /// The process.
    pub process: std::process::Child,
    /// Where ingest listens.
    pub ingest: SocketAddr,
    /// Where the admin API listens.
    pub admin: SocketAddr,
}

impl ChildServer {
    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        self.process.kill().expect("SIGKILL");
        self.process.wait().expect("reaped");
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Start a server in a child process: this test binary re-executed to run
/// only the ignored test `entry` (whose body is [`child_main`]), with
/// `config`; wait until it is ready.
pub async fn spawn_child(entry: &str, config: &Path, dir: &Path) -> ChildServer {
    let addr_file = dir.join("child-addrs");
    let _ = std::fs::remove_file(&addr_file);
    let process = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            entry,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HH_CHILD_CONFIG", config)
        .env("HH_CHILD_ADDRS", &addr_file)
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child server");
    let mut addrs = String::new();
    for _ in 0..3000 {
        if let Ok(s) = std::fs::read_to_string(&addr_file) {
            if s.contains(' ') {
                addrs = s;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (ingest, admin) = addrs.split_once(' ').expect("child wrote its addresses");
    let admin: SocketAddr = admin.parse().expect("admin addr");
    wait_ready(admin).await;
    ChildServer {
        process,
        ingest: ingest.parse().expect("ingest addr"),
        admin,
    }
}

/// How long a server may take to become ready by default: enough for a
/// folder of Rust plugins on a loaded machine.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// Poll `/readyz` on `admin` until it answers 200 (at most 30 s).
pub async fn wait_ready(admin: SocketAddr) {
    wait_ready_within(admin, READY_LIMIT).await;
}

/// Poll `/readyz` on `admin` every 10 ms until it answers 200, for at most
/// `limit`.
pub async fn wait_ready_within(admin: SocketAddr, limit: Duration) {
    let client = HttpClient::new();
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(r) = client.get(admin, "/readyz").await {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server at {admin} never became ready within {limit:?}");
}

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Longest a test waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with a connection pool.
    pub fn new() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build_http();
        Self { client }
    }

    /// Send a request and read the whole answer.
    pub async fn send(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(String, Vec<u8>)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(
                k.as_str(),
                http::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?,
            );
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        // A server that stops answering fails the test instead of hanging it.
        let exchange = async {
            let res = self.client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer from {addr}{path} within {ANSWER_TIMEOUT:?}"))?
    }

    /// `GET path`.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<Answer, String> {
        self.send("GET", addr, path, &[], Vec::new()).await
    }

    /// `POST /webhooks/{source}` with these headers.
    pub async fn webhook(
        &self,
        addr: SocketAddr,
        source: &str,
        headers: &[(String, Vec<u8>)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        self.send("POST", addr, &format!("/webhooks/{source}"), headers, body)
            .await
    }
}

/// Read from a raw connection until the server closes it (end of stream or
/// reset), for at most `within`: what arrived, or an error naming what
/// arrived if the connection was still open at the deadline.
pub async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "still open after {within:?}; received {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The first HTTP/1.1 answer in raw bytes: status, head (status line and
/// headers) and the `Content-Length` body. `None` if it is not one.
pub fn parse_raw_answer(bytes: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(bytes[..end].to_vec()).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let body = bytes.get(end + 4..end + 4 + length)?.to_vec();
    Some((status, head, body))
}

/// HMAC-SHA256 of the concatenated parts.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Headers as a GitHub delivery carries them.
pub fn github_headers(
    secret: &str,
    delivery: &str,
    event: &str,
    body: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let sig = format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
    );
    vec![
        ("x-hub-signature-256".into(), sig.into_bytes()),
        ("x-github-delivery".into(), delivery.as_bytes().to_vec()),
        ("x-github-event".into(), event.as_bytes().to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
    ]
}

/// Headers as a Standard Webhooks (Svix) sender sets them, at `ts`.
pub fn standard_headers(
    secret_b64_key: &[u8],
    id: &str,
    ts: i64,
    body: &[u8],
) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let ts = ts.to_string();
    let sig = hmac_sha256(
        secret_b64_key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    let sig = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    );
    vec![
        ("webhook-id".into(), id.as_bytes().to_vec()),
        ("webhook-timestamp".into(), ts.into_bytes()),
        ("webhook-signature".into(), sig.into_bytes()),
        ("content-type".into(), b"application/json".to_vec()),
    ]
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    (hookhost::clock::now_ms() / 1000) as i64
}

/// `GET path` on the admin API, which must answer 200: its JSON body.
pub async fn admin_json(c: &HttpClient, admin: SocketAddr, path: &str) -> serde_json::Value {
    let a = c
        .get(admin, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.json()
}

/// Every key-value entry of `plugin` under `prefix`, through
/// `GET /admin/plugins/{plugin}/kv`, following its cursors.
pub async fn kv_entries(
    c: &HttpClient,
    admin: SocketAddr,
    plugin: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/plugins/{plugin}/kv?prefix={prefix}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin_json(c, admin, &path).await;
        let entries = page["entries"].as_array().expect("entries");
        for e in entries {
            out.insert(
                e["key"].as_str().expect("key").to_owned(),
                e["value"].as_str().expect("value").to_owned(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) if !entries.is_empty() => cursor = Some(next.to_owned()),
            _ => return out,
        }
    }
}
