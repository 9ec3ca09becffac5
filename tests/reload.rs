//! Hot reload and plugin uploads over real HTTP against the real server,
//! with plugins built from `plugins/`: a plugin replaced in the folder
//! while 5,000 events flow (none lost, every attempt names the version
//! that ran it, both versions seen), a call in flight that finishes on the
//! version it started with, broken uploads and broken files that
//! leave the old version serving, a slow write loaded once, and a plugin
//! deleted and re-added whose waiting deliveries then run.
//!
//! New versions are the `echo` component with a custom section appended
//! (`hookhost_tests::variant`): another SHA-256, compiled like any build.

use hookhost_tests::server::{
    github_headers, install_plugin, plugin_setup, plugins_dir, poll_until, Answer, HttpClient,
    TestServer,
};
use hookhost_tests::{variant, wasm};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "reload-test-secret";

fn setup(plugins: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    plugin_setup(
        plugins,
        "",
        &format!("[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]"),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Put `bytes` into the folder as `NAME.wasm` the way a deploy does:
/// written beside it, then renamed over it.
fn deploy(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = plugins_dir(dir).join(format!(".{name}.deploy"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, plugins_dir(dir).join(format!("{name}.wasm"))).expect("rename");
}

async fn send(c: &HttpClient, ingest: SocketAddr, delivery: &str) -> String {
    let body = br#"{"action":"opened"}"#.to_vec();
    let h = github_headers(SECRET, delivery, "issues", &body);
    let a = c.webhook(ingest, "github", &h, body).await.expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.json()["event_id"].as_str().expect("event_id").to_owned()
}

async fn call(
    c: &HttpClient,
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Answer {
    c.send(method, admin, path, &[], body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn get(c: &HttpClient, admin: SocketAddr, path: &str) -> Value {
    let a = call(c, admin, "GET", path, Vec::new()).await;
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.json()
}

/// `GET path`: the answer, or null for 404 (not there yet).
async fn get_or_null(c: &HttpClient, admin: SocketAddr, path: &str) -> Value {
    let a = call(c, admin, "GET", path, Vec::new()).await;
    match a.status {
        200 => a.json(),
        404 => Value::Null,
        other => panic!("GET {path}: {other} {:?}", a.body),
    }
}

async fn wait_plugin(
    c: &HttpClient,
    admin: SocketAddr,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/admin/plugins/{name}");
    poll_until(what, || get_or_null(c, admin, &path), done).await
}

async fn wait_delivered(c: &HttpClient, admin: SocketAddr, n: u64) {
    poll_until(
        &format!("{n} deliveries"),
        || get(c, admin, "/admin/stats"),
        |s| s["delivered"].as_u64() >= Some(n) && s["queued"] == 0 && s["in_flight"] == 0,
    )
    .await;
}

/// The one delivery of an event: its state and the SHA-256 of each attempt.
async fn delivery(c: &HttpClient, admin: SocketAddr, event_id: &str) -> (String, Vec<String>) {
    let e = get(c, admin, &format!("/admin/events/{event_id}")).await;
    let deliveries = e["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{e:#}");
    let d = &deliveries[0];
    let shas = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["sha256"].as_str().expect("sha256").to_owned())
        .collect();
    (d["state"].as_str().expect("state").to_owned(), shas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_replaced_while_5000_events_flow_loses_none_and_each_attempt_names_its_version() {
    const EVENTS: usize = 5000;
    const SWAP_AFTER: usize = 1500;
    let (dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (admin, ingest) = (server.admin, server.ingest);
    let old = sha256_hex(&wasm("echo"));
    let new_bytes = variant(&wasm("echo"), "v2");
    let new = sha256_hex(&new_bytes);
    assert_eq!(get(&c, admin, "/admin/plugins/echo").await["sha256"], old);

    // 16 senders share the events; the file is replaced while they run.
    let acked = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..16)
        .map(|s| {
            let (c, acked) = (c.clone(), acked.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (s..EVENTS).step_by(16) {
                    ids.push(send(&c, ingest, &format!("d-{i}")).await);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                ids
            })
        })
        .collect();
    while acked.load(Ordering::Relaxed) < SWAP_AFTER {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    deploy(dir.path(), "echo", &new_bytes);
    let mut ids = Vec::new();
    for s in senders {
        ids.extend(s.await.expect("sender"));
    }
    assert_eq!(ids.len(), EVENTS);
    let p = wait_plugin(&c, admin, "echo", "the new version", |p| p["sha256"] == new).await;
    assert_eq!(p["state"], "active");
    assert_eq!(p["last_error"], Value::Null);
    wait_delivered(&c, admin, EVENTS as u64).await;

    // Every event delivered once, by one of the two versions.
    let mut by_version: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let (state, shas) = delivery(&c, admin, id).await;
        assert_eq!(state, "done", "{id}");
        assert_eq!(shas.len(), 1, "{id}: one attempt, not {shas:?}");
        *by_version.entry(shas[0].clone()).or_default() += 1;
    }
    assert_eq!(
        by_version.keys().cloned().collect::<Vec<_>>(),
        {
            let mut both = vec![old.clone(), new.clone()];
            both.sort();
            both
        },
        "attempts name exactly the two versions: {by_version:?}"
    );
    assert_eq!(by_version.values().sum::<usize>(), EVENTS);
    // The file changed once: one new version, no failed load.
    assert_eq!(
        (p["loads"].as_u64(), p["load_failures"].as_u64()),
        (Some(2), Some(0))
    );
    // An event sent now runs on the new version only.
    let id = send(&c, ingest, "after").await;
    wait_delivered(&c, admin, EVENTS as u64 + 1).await;
    assert_eq!(delivery(&c, admin, &id).await, ("done".into(), vec![new]));
}

#[tokio::test]
async fn a_call_in_flight_finishes_on_the_version_it_started_with() {
    let (dir, config) = plugin_setup(
        &[("id-counter", "slow")],
        "",
        &format!(
            "[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]\n\n[plugin.slow]\nconfig = {{ sleep_ms = \"2000\" }}"
        ),
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (admin, ingest) = (server.admin, server.ingest);
    let old = sha256_hex(&wasm("id-counter"));
    let new_bytes = variant(&wasm("id-counter"), "v2");
    let new = sha256_hex(&new_bytes);

    let first = send(&c, ingest, "in-flight").await;
    wait_plugin(&c, admin, "slow", "a call running", |p| p["in_flight"] == 1).await;
    deploy(dir.path(), "slow", &new_bytes);
    let p = wait_plugin(&c, admin, "slow", "the new version", |p| p["sha256"] == new).await;
    assert_eq!(
        p["in_flight"], 1,
        "the call was still running at the swap: {p}"
    );
    let second = send(&c, ingest, "after-swap").await;
    wait_delivered(&c, admin, 2).await;
    assert_eq!(
        delivery(&c, admin, &first).await,
        ("done".into(), vec![old])
    );
    assert_eq!(
        delivery(&c, admin, &second).await,
        ("done".into(), vec![new])
    );
}

#[tokio::test]
async fn a_broken_upload_is_refused_and_the_old_version_keeps_serving() {
    let (_dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (admin, ingest) = (server.admin, server.ingest);
    let old = sha256_hex(&wasm("echo"));

    // Not wasm, a core module that is no component, a component of another
    // world, and nothing at all: 422, and the folder is untouched.
    for bad in [
        b"definitely not wasm".to_vec(),
        b"\0asm\x01\0\0\0".to_vec(),
        wasm("incompatible"),
        Vec::new(),
    ] {
        let a = call(&c, admin, "PUT", "/admin/plugins/echo", bad).await;
        assert_eq!(a.status, 422, "{:?}", a.body);
        assert_eq!(a.json()["error"], "invalid_plugin");
    }
    let p = get(&c, admin, "/admin/plugins/echo").await;
    assert_eq!(
        (&p["sha256"], &p["state"]),
        (&Value::from(old.clone()), &Value::from("active"))
    );
    let id = send(&c, ingest, "after-bad-upload").await;
    wait_delivered(&c, admin, 1).await;
    assert_eq!(delivery(&c, admin, &id).await, ("done".into(), vec![old]));

    // A name that is no plugin name, and a body over 64 MiB.
    let a = call(&c, admin, "PUT", "/admin/plugins/Not.A.Name", wasm("echo")).await;
    assert_eq!(
        (a.status, a.json()["error"].clone()),
        (400, "bad_name".into())
    );
    let a = call(
        &c,
        admin,
        "PUT",
        "/admin/plugins/echo",
        vec![0; (64 << 20) + 1],
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"].clone()),
        (413, "too_large".into())
    );

    // A good new version: 200, active at once, and it runs the next event.
    let v2 = variant(&wasm("echo"), "v2");
    let a = call(&c, admin, "PUT", "/admin/plugins/echo", v2.clone()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["sha256"], sha256_hex(&v2));
    let id = send(&c, ingest, "after-good-upload").await;
    wait_delivered(&c, admin, 2).await;
    assert_eq!(delivery(&c, admin, &id).await.1, vec![sha256_hex(&v2)]);

    // A new plugin: 201, and it is a file in the folder like any other.
    let a = call(&c, admin, "PUT", "/admin/plugins/second", wasm("echo")).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.json()["state"], "active");
    let names: Vec<Value> = get(&c, admin, "/admin/plugins")
        .await
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("echo"), Value::from("second")]);
}

#[tokio::test]
async fn a_broken_file_dropped_into_the_folder_leaves_the_old_version_serving() {
    let (dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (admin, ingest) = (server.admin, server.ingest);
    let old = sha256_hex(&wasm("echo"));

    deploy(dir.path(), "echo", b"\0asm but not really");
    let p = wait_plugin(&c, admin, "echo", "the load error", |p| {
        p["last_error"] != Value::Null
    })
    .await;
    assert_eq!(
        (&p["sha256"], &p["state"]),
        (&Value::from(old.clone()), &Value::from("active"))
    );
    assert!(
        p["last_error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{p}"
    );
    assert_eq!(p["load_failures"], 1);
    let id = send(&c, ingest, "while-broken").await;
    wait_delivered(&c, admin, 1).await;
    assert_eq!(
        delivery(&c, admin, &id).await,
        ("done".into(), vec![old.clone()])
    );

    // A broken file under a new name is a broken plugin that runs nothing.
    deploy(dir.path(), "other", b"nope");
    let o = wait_plugin(&c, admin, "other", "a broken plugin", |p| {
        p["state"] == "broken"
    })
    .await;
    assert_eq!(o["sha256"], Value::Null);

    // A file in a subfolder is no plugin.
    std::fs::create_dir_all(plugins_dir(dir.path()).join("build")).expect("subfolder");
    std::fs::write(plugins_dir(dir.path()).join("build/sub.wasm"), wasm("echo")).expect("write");

    // The good file back, written in place in two parts with a pause (a
    // slow copy): loaded once, when the write is done, with no failure.
    let v2 = variant(&wasm("echo"), "v2");
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(plugins_dir(dir.path()).join("echo.wasm")).expect("create");
        f.write_all(&v2[..v2.len() / 2]).expect("first half");
        f.flush().expect("flush");
        tokio::time::sleep(Duration::from_millis(50)).await;
        f.write_all(&v2[v2.len() / 2..]).expect("second half");
    }
    let p = wait_plugin(&c, admin, "echo", "the repaired version", |p| {
        p["sha256"] == sha256_hex(&v2)
    })
    .await;
    assert_eq!(p["last_error"], Value::Null);
    assert_eq!(
        (p["loads"].as_u64(), p["load_failures"].as_u64()),
        (Some(2), Some(1))
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a = call(&c, admin, "GET", "/admin/plugins/sub", Vec::new()).await;
    assert_eq!(
        a.status, 404,
        "a file in a subfolder is no plugin: {:?}",
        a.body
    );
}

#[tokio::test]
async fn a_deleted_plugin_keeps_its_deliveries_waiting_until_it_comes_back() {
    let (dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (admin, ingest) = (server.admin, server.ingest);
    let old = sha256_hex(&wasm("echo"));

    // A delivery waiting (the plugin paused) when the plugin is deleted
    // through the API: the plugin is removed, the delivery keeps waiting,
    // resuming does not run it.
    let a = call(&c, admin, "POST", "/admin/plugins/echo/pause", Vec::new()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let waiting = send(&c, ingest, "before-delete").await;
    wait_plugin(&c, admin, "echo", "a waiting delivery", |p| {
        p["queued"] == 1
    })
    .await;
    let a = call(&c, admin, "DELETE", "/admin/plugins/echo", Vec::new()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["state"], "removed");
    assert!(!plugins_dir(dir.path()).join("echo.wasm").exists());
    let a = call(&c, admin, "POST", "/admin/plugins/echo/resume", Vec::new()).await;
    assert_eq!(a.json()["state"], "removed");
    // A removed plugin receives no new event.
    let unrouted = send(&c, ingest, "while-removed").await;
    let unrouted_path = format!("/admin/events/{unrouted}");
    poll_until(
        "the event sent while removed stored",
        || get_or_null(&c, admin, &unrouted_path),
        |e| e["status"] == "unrouted",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        delivery(&c, admin, &waiting).await,
        ("pending".into(), vec![])
    );
    let p = get(&c, admin, "/admin/plugins/echo").await;
    assert_eq!(
        (&p["queued"], &p["state"]),
        (&Value::from(1), &Value::from("removed"))
    );

    // Back in the folder: the waiting delivery runs.
    install_plugin(dir.path(), "echo", "echo");
    wait_plugin(&c, admin, "echo", "the plugin back", |p| {
        p["state"] == "active"
    })
    .await;
    wait_delivered(&c, admin, 1).await;
    assert_eq!(
        delivery(&c, admin, &waiting).await,
        ("done".into(), vec![old.clone()])
    );
    let e = get(&c, admin, &unrouted_path).await;
    assert_eq!(e["status"], "unrouted", "{e:#}");

    // Removed from the folder by hand (the watcher sees it), then
    // uploaded again: 201, a new plugin file.
    std::fs::remove_file(plugins_dir(dir.path()).join("echo.wasm")).expect("rm");
    wait_plugin(&c, admin, "echo", "removed", |p| p["state"] == "removed").await;
    let a = call(&c, admin, "PUT", "/admin/plugins/echo", wasm("echo")).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.json()["state"], "active");
    let id = send(&c, ingest, "after-upload").await;
    wait_delivered(&c, admin, 2).await;
    assert_eq!(delivery(&c, admin, &id).await, ("done".into(), vec![old]));

    // Nothing of that name: 404.
    let a = call(&c, admin, "DELETE", "/admin/plugins/nothing", Vec::new()).await;
    assert_eq!(a.status, 404, "{:?}", a.body);
}
