//! The delivery engine over real HTTP against the real server, with plugins
//! built from `plugins/`: retries until success, dead letters (panic,
//! reject), a dead letter replayed after its plugin is fixed, per-key
//! ordering under concurrency, the circuit breaker opening and recovering
//! while a healthy plugin keeps running, an unrouted event replayed once a
//! plugin subscribes, a shutdown that lets running calls finish, and a
//! SIGKILL in the middle of a burst. Backoffs are tens of milliseconds.

use hookhost_tests::server::{
    github_headers, install_plugin, plugin_setup, plugins_dir, poll_until, HttpClient, TestServer,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "delivery-test-secret";

/// A data dir and plugins folder with `plugins` (crate name, plugin name)
/// copied in, and a config with one GitHub source plus `extra`.
fn setup(plugins: &[(&str, &str)], extra: &str) -> (tempfile::TempDir, PathBuf) {
    let source = format!(
        "[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]\n{extra}"
    );
    plugin_setup(plugins, "", &source)
}

/// Send a signed GitHub event; its hookhost event id.
async fn send(
    c: &HttpClient,
    ingest: SocketAddr,
    delivery: &str,
    kind: &str,
    body: &Value,
) -> String {
    let body = serde_json::to_vec(body).expect("json");
    let h = github_headers(SECRET, delivery, kind, &body);
    let a = c.webhook(ingest, "github", &h, body).await.expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.json()["event_id"].as_str().expect("event_id").to_owned()
}

async fn get(c: &HttpClient, admin: SocketAddr, path: &str) -> Value {
    let a = c.get(admin, path).await.expect("admin GET");
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.json()
}

async fn post(c: &HttpClient, admin: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let a = c
        .send(
            "POST",
            admin,
            path,
            &[("content-type".into(), b"application/json".to_vec())],
            body.as_bytes().to_vec(),
        )
        .await
        .expect("admin POST");
    let json = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    (a.status, json)
}

/// Poll `GET path` until `done` holds; the last answer.
async fn wait_until(
    c: &HttpClient,
    admin: SocketAddr,
    path: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    poll_until(
        &format!("{what} (GET {path})"),
        || get(c, admin, path),
        done,
    )
    .await
}

/// Wait until nothing is queued or running and `delivered` reached `n`.
async fn wait_delivered(c: &HttpClient, admin: SocketAddr, n: u64) -> Value {
    wait_until(c, admin, "/admin/stats", &format!("{n} deliveries"), |s| {
        s["delivered"].as_u64() >= Some(n) && s["queued"] == 0 && s["in_flight"] == 0
    })
    .await
}

/// The single delivery of `plugin` in an event's detail.
fn delivery<'a>(event: &'a Value, plugin: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no delivery to {plugin} in {event:#}"))
}

fn outcomes(d: &Value) -> Vec<String> {
    d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().expect("outcome").to_owned())
        .collect()
}

/// Every kv entry of a plugin, following cursors.
async fn kv_all(
    c: &HttpClient,
    admin: SocketAddr,
    plugin: &str,
    prefix: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/plugins/{plugin}/kv?prefix={prefix}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get(c, admin, &path).await;
        for e in page["entries"].as_array().expect("entries") {
            out.insert(
                e["key"].as_str().expect("key").to_owned(),
                e["value"].as_str().expect("value").to_owned(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) if !page["entries"].as_array().is_some_and(Vec::is_empty) => {
                cursor = Some(next.to_owned())
            }
            _ => return out,
        }
    }
}

const FAST_RETRIES: &str = "backoff_base_ms = 20\nbackoff_max_ms = 60";

#[tokio::test]
async fn flaky_succeeds_at_attempt_three_with_three_recorded_attempts() {
    let (dir, config) = setup(
        &[("flaky", "flaky")],
        &format!("[plugin.flaky]\n{FAST_RETRIES}"),
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let id = send(
        &c,
        server.ingest,
        "f-1",
        "push",
        &serde_json::json!({"x": 1}),
    )
    .await;
    wait_delivered(&c, server.admin, 1).await;
    let event = get(&c, server.admin, &format!("/admin/events/{id}")).await;
    let d = delivery(&event, "flaky");
    assert_eq!(d["state"], "done", "{d:#}");
    assert_eq!(outcomes(d), ["retry", "retry", "ok"]);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(plugins_dir(dir.path()).join("flaky.wasm")).expect("wasm"),
    ));
    for (i, a) in d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .enumerate()
    {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["sha256"], sha.as_str());
        assert!(a["at_ms"].as_u64().is_some_and(|t| t > 0));
        assert!(a["fuel_used"].as_u64().is_some_and(|f| f > 0), "{a:#}");
        assert!(a["duration_us"].as_u64().is_some());
        assert!(
            !a["logs"].as_array().expect("logs").is_empty(),
            "the plugin logs every call: {a:#}"
        );
    }
    assert!(d["attempts"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("attempt 1 of 3")));
    let kv = kv_all(&c, server.admin, "flaky", "").await;
    assert_eq!(kv.get("succeeded").map(String::as_str), Some("1"));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn panics_dead_letter_after_max_attempts_and_rejects_at_once() {
    let (_dir, config) = setup(
        &[("panicker", "panicker"), ("reject-all", "reject-all"), ("echo", "echo")],
        &format!("[plugin.panicker]\nmax_attempts = 3\n{FAST_RETRIES}\n[plugin.reject-all]\n{FAST_RETRIES}"),
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let id = send(&c, server.ingest, "d-1", "push", &serde_json::json!({})).await;
    let stats = wait_until(&c, server.admin, "/admin/stats", "two dead letters", |s| {
        s["dead_letters"] == 2 && s["queued"] == 0 && s["in_flight"] == 0
    })
    .await;
    assert_eq!(stats["delivered"], 1, "echo still delivered: {stats:#}");
    let event = get(&c, server.admin, &format!("/admin/events/{id}")).await;
    let p = delivery(&event, "panicker");
    assert_eq!(p["state"], "dead");
    assert_eq!(outcomes(p), ["trap", "trap", "trap"]);
    assert!(p["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .all(|a| a["trap"] == "panic"));
    let r = delivery(&event, "reject-all");
    assert_eq!(r["state"], "dead");
    assert_eq!(outcomes(r), ["reject"], "a reject is never retried");
    assert_eq!(delivery(&event, "echo")["state"], "done");

    let dead = get(&c, server.admin, "/admin/dead-letters").await;
    let dead = dead["dead_letters"].as_array().expect("dead_letters");
    let by_plugin: HashMap<&str, &Value> = dead
        .iter()
        .map(|d| (d["plugin"].as_str().expect("plugin"), d))
        .collect();
    assert_eq!(by_plugin.len(), 2, "{dead:#?}");
    assert_eq!(by_plugin["panicker"]["attempts"], 3);
    assert_eq!(by_plugin["panicker"]["event_id"], id.as_str());
    assert!(by_plugin["reject-all"]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("rejects every event")));
    let only = get(&c, server.admin, "/admin/dead-letters?plugin=reject-all").await;
    assert_eq!(only["dead_letters"].as_array().map(Vec::len), Some(1));

    // Deleting one takes it off the list; the event keeps its history.
    let victim = by_plugin["reject-all"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let del = c
        .send(
            "DELETE",
            server.admin,
            &format!("/admin/dead-letters/{victim}"),
            &[],
            vec![],
        )
        .await
        .expect("delete");
    assert!((200..300).contains(&del.status), "{:?}", del.body);
    let stats = get(&c, server.admin, "/admin/stats").await;
    assert_eq!(stats["dead_letters"], 1);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn a_dead_letter_replayed_after_the_plugin_is_fixed_succeeds_on_the_new_version() {
    let (dir, config) = setup(
        &[("panicker", "billing")],
        &format!("[plugin.billing]\nmax_attempts = 2\n{FAST_RETRIES}"),
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let id = send(&c, server.ingest, "r-1", "push", &serde_json::json!({})).await;
    let dead = wait_until(
        &c,
        server.admin,
        "/admin/dead-letters",
        "a dead letter",
        |d| d["dead_letters"].as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    let dl_id = dead["dead_letters"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let old_sha = get(&c, server.admin, "/admin/plugins/billing").await["sha256"].clone();

    // The fix: a working build under the same name, then a reload.
    install_plugin(dir.path(), "echo", "billing");
    let (status, plugin) = post(&c, server.admin, "/admin/plugins/billing/reload", "").await;
    assert_eq!(status, 200, "{plugin:#}");
    assert_ne!(plugin["sha256"], old_sha, "the new version is active");
    let (status, body) = post(
        &c,
        server.admin,
        &format!("/admin/dead-letters/{dl_id}/replay"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body:#}");
    wait_delivered(&c, server.admin, 1).await;

    let event = get(&c, server.admin, &format!("/admin/events/{id}")).await;
    let d = delivery(&event, "billing");
    assert_eq!(d["state"], "done", "{d:#}");
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(
        outcomes(d),
        ["trap", "trap", "ok"],
        "history kept across the replay"
    );
    assert_eq!(
        attempts[2]["sha256"], plugin["sha256"],
        "the replay ran the fixed version"
    );
    assert_eq!(attempts[2]["attempt"], 1, "attempts start again");
    assert_eq!(attempts[0]["sha256"], old_sha);
    let stats = get(&c, server.admin, "/admin/stats").await;
    assert_eq!(stats["dead_letters"], 0);
    let replay_again = post(
        &c,
        server.admin,
        &format!("/admin/dead-letters/{dl_id}/replay"),
        "",
    )
    .await;
    assert_eq!(replay_again.0, 404, "no longer a dead letter");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn bulk_replay_takes_the_dead_letters_the_filter_selects() {
    let (_dir, config) = setup(&[("reject-all", "a"), ("reject-all", "b")], "");
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    for i in 0..3 {
        send(
            &c,
            server.ingest,
            &format!("b-{i}"),
            "push",
            &serde_json::json!({}),
        )
        .await;
    }
    wait_until(&c, server.admin, "/admin/stats", "six dead letters", |s| {
        s["dead_letters"] == 6
    })
    .await;
    let (status, body) = post(
        &c,
        server.admin,
        "/admin/dead-letters/replay",
        r#"{"plugin":"a"}"#,
    )
    .await;
    assert_eq!(
        (status, &body["replayed"]),
        (200, &Value::from(3)),
        "{body:#}"
    );
    // They fail again (reject-all), each after a second attempt record.
    let stats = wait_until(&c, server.admin, "/admin/stats", "replays done", |s| {
        s["dead_letters"] == 6 && s["queued"] == 0 && s["in_flight"] == 0
    })
    .await;
    assert_eq!(stats["plugins"]["a"]["failed_attempts"], 6);
    assert_eq!(stats["plugins"]["b"]["failed_attempts"], 3);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn deliveries_with_one_key_run_one_at_a_time_in_order_while_other_keys_overlap() {
    let (_dir, config) = setup(
        &[("order-probe", "orders")],
        "[plugin.orders]\norder_key = \"/key\"\nconcurrency = 8\nconfig = { sleep_ms = \"25\" }",
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    const KEYS: usize = 4;
    const PER_KEY: usize = 6;
    // Each key's events are sent one after another (so arrival order is n
    // order); the keys are sent concurrently.
    let mut senders = Vec::new();
    for k in 0..KEYS {
        let (c, ingest) = (c.clone(), server.ingest);
        senders.push(tokio::spawn(async move {
            for n in 0..PER_KEY {
                let body = serde_json::json!({"key": format!("k{k}"), "n": n});
                send(&c, ingest, &format!("o-{k}-{n}"), "push", &body).await;
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    wait_delivered(&c, server.admin, (KEYS * PER_KEY) as u64).await;
    let kv = kv_all(&c, server.admin, "orders", "order/").await;
    let mut spans: Vec<(usize, u64, u64)> = Vec::new();
    for k in 0..KEYS {
        let list = kv
            .get(&format!("order/k{k}"))
            .unwrap_or_else(|| panic!("no order/k{k} in {kv:?}"));
        let entries: Vec<(usize, u64, u64)> = list
            .split(',')
            .map(|e| {
                let (n, span) = e.split_once('@').expect("n@span");
                let (a, b) = span.split_once('-').expect("start-end");
                (
                    n.parse().expect("n"),
                    a.parse().expect("start"),
                    b.parse().expect("end"),
                )
            })
            .collect();
        let ns: Vec<usize> = entries.iter().map(|e| e.0).collect();
        assert_eq!(
            ns,
            (0..PER_KEY).collect::<Vec<_>>(),
            "key k{k} ran out of order or lost a call: {list}"
        );
        for w in entries.windows(2) {
            assert!(
                w[1].1 >= w[0].2,
                "key k{k}: call {} started before call {} ended: {list}",
                w[1].0,
                w[0].0
            );
        }
        spans.extend(entries.into_iter().map(|(_, a, b)| (k, a, b)));
    }
    let overlapping = spans
        .iter()
        .any(|a| spans.iter().any(|b| a.0 != b.0 && a.1 < b.2 && b.1 < a.2));
    assert!(
        overlapping,
        "different keys never ran at the same time: {spans:?}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn the_breaker_opens_holds_a_failing_plugin_and_recovers_while_others_run() {
    let (_dir, config) = setup(
        &[("outage", "outage"), ("echo", "echo")],
        &format!(
            "[plugin.outage]\nconcurrency = 1\nmax_attempts = 50\nbreaker_failures = 2\nbreaker_cooldown_ms = 500\nconfig = {{ recover_after = \"3\" }}\n{FAST_RETRIES}"
        ),
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    send(&c, server.ingest, "o-1", "push", &serde_json::json!({})).await;
    let open = wait_until(
        &c,
        server.admin,
        "/admin/stats",
        "the breaker to open",
        |s| s["plugins"]["outage"]["breaker"] == "open",
    )
    .await;
    assert_eq!(open["plugins"]["outage"]["failed_attempts"], 2, "{open:#}");
    // While it is open, a healthy plugin's deliveries run.
    for i in 0..5 {
        send(
            &c,
            server.ingest,
            &format!("h-{i}"),
            "push",
            &serde_json::json!({}),
        )
        .await;
    }
    let s = wait_until(&c, server.admin, "/admin/stats", "echo's deliveries", |s| {
        s["plugins"]["echo"]["delivered"].as_u64() >= Some(6)
    })
    .await;
    assert_eq!(
        s["plugins"]["outage"]["delivered"], 0,
        "echo ran while outage was still held by its breaker: {s:#}"
    );
    // Recovery: probes after each cool-down until the dependency is back.
    let s = wait_until(&c, server.admin, "/admin/stats", "outage to recover", |s| {
        s["plugins"]["outage"]["breaker"] == "closed" && s["plugins"]["outage"]["delivered"] == 6
    })
    .await;
    assert_eq!(s["dead_letters"], 0, "{s:#}");
    let kv = kv_all(&c, server.admin, "outage", "").await;
    assert_eq!(
        kv.get("calls").map(String::as_str),
        Some("9"),
        "3 failed calls (the last one a probe), then 6 good ones: {kv:?}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn an_unrouted_event_is_delivered_after_replay_once_a_plugin_subscribes() {
    let (dir, config) = setup(&[], "");
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let id = send(
        &c,
        server.ingest,
        "u-1",
        "issues",
        &serde_json::json!({"action": "opened"}),
    )
    .await;
    // Stored in sled just after the acknowledgement: wait for it.
    wait_until(&c, server.admin, "/admin/stats", "the event stored", |s| {
        s["events"] == 1
    })
    .await;
    let event = get(&c, server.admin, &format!("/admin/events/{id}")).await;
    assert_eq!(event["status"], "unrouted", "{event:#}");
    assert!(event["deliveries"].as_array().is_some_and(Vec::is_empty));
    let listed = get(&c, server.admin, "/admin/events?status=unrouted").await;
    assert!(listed.to_string().contains(&id), "{listed:#}");

    install_plugin(dir.path(), "echo", "late");
    let (status, _) = post(&c, server.admin, "/admin/plugins/late/reload", "").await;
    assert_eq!(status, 200);
    let (status, body) = post(&c, server.admin, &format!("/admin/events/{id}/replay"), "").await;
    assert_eq!(status, 200, "{body:#}");
    wait_delivered(&c, server.admin, 1).await;
    let kv = kv_all(&c, server.admin, "late", "count/").await;
    assert_eq!(
        kv.get("count/github:issues.opened").map(String::as_str),
        Some("1"),
        "{kv:?}"
    );
    let event = get(&c, server.admin, &format!("/admin/events/{id}")).await;
    assert_eq!(event["status"], "delivered");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn shutdown_lets_running_calls_finish_and_queued_ones_run_after_restart() {
    let (_dir, config) = setup(
        &[("order-probe", "slow")],
        "[plugin.slow]\nconcurrency = 1\nconfig = { sleep_ms = \"400\" }",
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    for n in 0..3 {
        send(
            &c,
            server.ingest,
            &format!("s-{n}"),
            "push",
            &serde_json::json!({"key": "k", "n": n}),
        )
        .await;
    }
    wait_until(&c, server.admin, "/admin/stats", "a running call", |s| {
        s["in_flight"] == 1
    })
    .await;
    server.stop().await.expect("a clean drain");

    let server = TestServer::start(&config).await;
    wait_delivered(&c, server.admin, 3).await;
    let kv = kv_all(&c, server.admin, "slow", "").await;
    let order = kv.get("order/k").expect("order/k");
    let ns: Vec<&str> = order
        .split(',')
        .map(|e| e.split('@').next().unwrap_or(""))
        .collect();
    assert_eq!(
        ns,
        ["0", "1", "2"],
        "the running call finished before the stop, none ran twice: {order}"
    );
    server.stop().await.expect("stop");
}

/// Entry point of the crash test's child process.
#[test]
#[ignore = "entry point for the crash test's child process"]
fn delivery_child_server() {
    hookhost_tests::server::child_main();
}

#[tokio::test]
async fn kill_9_during_a_burst_every_acknowledged_event_is_handled_at_least_once() {
    const EVENTS: u32 = 10_000;
    // Few enough that the burst outlasts the first journal releases, so
    // the kill lands mid-burst after the applier has persisted queued
    // deliveries and released the journal at least once.
    const SENDERS: usize = 2;
    // Few workers for the plugin, so deliveries fall behind the burst and
    // are still queued when the applier persists them and releases the
    // journal (every second): the kill then finds deliveries in every
    // state (queued with and without a pending entry, running, done).
    let (dir, config) = hookhost_tests::server::plugin_setup(
        &[("id-counter", "ids")],
        // 1 MiB journal segments (~850 events): segments fill and are
        // released during the burst, so the kill finds released ones.
        "journal_segment_mb = 1",
        &format!(
            "[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]\n[plugin.ids]\nconcurrency = 2\nconfig = {{ sleep_ms = \"1\" }}"
        ),
    );
    let mut child =
        hookhost_tests::server::spawn_child("delivery_child_server", &config, dir.path()).await;
    let c = HttpClient::new();
    let acked: Arc<Mutex<HashMap<u32, String>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let burst = |ingest: SocketAddr,
                 acked: Arc<Mutex<HashMap<u32, String>>>,
                 next: Arc<std::sync::atomic::AtomicU32>| {
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            let (c, acked, next) = (c.clone(), acked.clone(), next.clone());
            senders.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= EVENTS {
                        return;
                    }
                    let body =
                        format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(900)).into_bytes();
                    let h = github_headers(SECRET, &format!("k-{i}"), "push", &body);
                    match c.webhook(ingest, "github", &h, body).await {
                        Ok(a) if a.status == 200 => {
                            let id = a.json()["event_id"].as_str().expect("id").to_owned();
                            acked.lock().expect("lock").insert(i, id);
                        }
                        Ok(a) => panic!("unexpected {} {:?}", a.status, a.body),
                        Err(_) => return,
                    }
                }
            }));
        }
        senders
    };
    let senders = burst(child.ingest, acked.clone(), next.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();
    while acked.lock().expect("lock").len() < 3000
        || started.elapsed() < Duration::from_millis(1500)
    {
        assert!(Instant::now() < deadline, "the burst stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill();
    for s in senders {
        s.await.expect("sender");
    }
    let before_kill = acked.lock().expect("lock").len();

    // Restart on the same data, then send what was never acknowledged.
    let child =
        hookhost_tests::server::spawn_child("delivery_child_server", &config, dir.path()).await;
    let unacked: Vec<u32> = (0..EVENTS)
        .filter(|i| !acked.lock().expect("lock").contains_key(i))
        .collect();
    let rest = Arc::new(Mutex::new(unacked.into_iter()));
    let mut senders = Vec::new();
    for _ in 0..64 {
        let (c, acked, rest, ingest) = (c.clone(), acked.clone(), rest.clone(), child.ingest);
        senders.push(tokio::spawn(async move {
            loop {
                let Some(i) = rest.lock().expect("lock").next() else {
                    return;
                };
                let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(900)).into_bytes();
                let h = github_headers(SECRET, &format!("k-{i}"), "push", &body);
                let a = c
                    .webhook(ingest, "github", &h, body)
                    .await
                    .expect("send after restart");
                assert_eq!(a.status, 200, "{:?}", a.body);
                acked
                    .lock()
                    .expect("lock")
                    .insert(i, a.json()["event_id"].as_str().expect("id").to_owned());
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert_eq!(acked.len(), EVENTS as usize);
    // One delivery per event: wait for all of them (the last events reach
    // the queue a few milliseconds after their acknowledgement).
    wait_delivered(&c, child.admin, u64::from(EVENTS)).await;
    let seen = kv_all(&c, child.admin, "ids", "seen/").await;
    let mut missing = Vec::new();
    let mut twice = 0;
    for (i, id) in &acked {
        match seen
            .get(&format!("seen/{id}"))
            .map(|v| v.parse::<u32>().expect("count"))
        {
            None => missing.push(*i),
            Some(1) => {}
            Some(_) => twice += 1,
        }
    }
    println!(
        "crash test: {EVENTS} events, {before_kill} acknowledged before SIGKILL; handled twice: {twice}; never handled: {}",
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but never handled: {missing:?}"
    );
    drop(child);
}
