//! The admin API over real HTTP against the real server, with plugins built
//! from `plugins/`: the bearer token (required, refused, accepted; probes
//! open), plugin objects with the file's SHA-256, key-value pages, events
//! with their deliveries, attempts and log lines, replay, a broken reload
//! that keeps the old version, pause/resume, and dead letters.

use hookhost_tests::server::{
    github_headers, install_plugin, plugin_setup, plugins_dir, poll_until, Answer, HttpClient,
    TestServer,
};
use serde_json::Value;
use sha2::Digest;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SECRET: &str = "admin-test-secret";
const TOKEN: &str = "admin-test-token-0123456789";

/// A data dir and a plugins folder with `plugins` (crate name, plugin
/// name) copied in; a config with one GitHub source and the admin token.
fn setup(plugins: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    plugin_setup(
        plugins,
        &format!("admin_token = \"{TOKEN}\""),
        &format!("[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]"),
    )
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

/// An admin client that sends the token.
struct Api {
    c: HttpClient,
    addr: SocketAddr,
}

impl Api {
    fn new(server: &TestServer) -> Self {
        Self {
            c: HttpClient::new(),
            addr: server.admin,
        }
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Answer {
        let auth = vec![(
            "authorization".to_string(),
            format!("Bearer {TOKEN}").into_bytes(),
        )];
        self.c
            .send(method, self.addr, path, &auth, body.as_bytes().to_vec())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path`, which must answer 200.
    async fn get(&self, path: &str) -> Value {
        let a = self.call("GET", path, "").await;
        assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
        a.json()
    }

    /// `POST path`: status and JSON body.
    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let a = self.call("POST", path, body).await;
        (a.status, a.json())
    }

    /// Poll `GET path` until `done` holds; the last answer.
    async fn wait_until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll_until(&format!("{what} (GET {path})"), || self.get(path), done).await
    }

    /// Wait until nothing is queued or running and `delivered` reached `n`.
    async fn wait_delivered(&self, n: u64) -> Value {
        self.wait_until("/admin/stats", &format!("{n} deliveries"), |s| {
            s["delivered"].as_u64() >= Some(n) && s["queued"] == 0 && s["in_flight"] == 0
        })
        .await
    }
}

/// The contract's error body, with `status` and `code`.
fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{:?}", a.body);
    let v = a.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(
        !String::from_utf8_lossy(&a.body).contains(TOKEN),
        "an answer leaks the token: {v}"
    );
}

/// Send a signed GitHub event; its hookhost event id.
async fn send(c: &HttpClient, ingest: SocketAddr, delivery: &str, event: &str) -> String {
    let body = b"{}".to_vec();
    let h = github_headers(SECRET, delivery, event, &body);
    let a = c.webhook(ingest, "github", &h, body).await.expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.json()["event_id"].as_str().expect("event_id").to_owned()
}

#[tokio::test]
async fn the_token_guards_everything_but_the_probes() {
    let (dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (admin, ingest) = (server.admin, server.ingest);

    for open in ["/healthz", "/readyz"] {
        let a = c.get(admin, open).await.expect("probe");
        assert_eq!(a.status, 200, "{open} needs no token: {:?}", a.body);
    }

    let with = |v: &str| vec![("authorization".to_string(), v.as_bytes().to_vec())];
    let new_version = hookhost_tests::variant(&hookhost_tests::wasm("echo"), "refused");
    for (method, path) in [
        ("GET", "/admin/stats"),
        ("GET", "/admin/plugins"),
        ("GET", "/admin/events"),
        ("GET", "/nope"),
        ("GET", "/metrics"),
        ("PUT", "/admin/plugins/echo"),
        ("DELETE", "/admin/plugins/echo"),
        ("POST", "/admin/plugins/echo/pause"),
        ("POST", "/admin/dead-letters/replay"),
    ] {
        // Missing, another scheme, a wrong token, a prefix of the token.
        for headers in [
            vec![],
            with(&format!("Basic {TOKEN}")),
            with("Bearer wrong"),
            with(&format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        ] {
            // A refused request carries a good new version: it must not be
            // read or used.
            let a = c
                .send(method, admin, path, &headers, new_version.clone())
                .await
                .expect("send");
            assert_error(&a, 401, "unauthorized");
            let challenge = a
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{path}: {challenge:?}");
        }
    }
    // Nothing a refused request asked for happened.
    let api = Api::new(&server);
    let echo = api.get("/admin/plugins/echo").await;
    assert_eq!(
        (&echo["state"], &echo["loads"]),
        (&"active".into(), &1.into())
    );
    assert_eq!(
        echo["sha256"],
        sha256_hex(&hookhost_tests::wasm_path("echo"))
    );
    assert!(plugins_dir(dir.path()).join("echo.wasm").exists());

    let stats = api.get("/admin/stats").await;
    assert!(stats["queued"].is_u64(), "{stats}");
    let a = api.call("GET", "/nope", "").await;
    assert_error(&a, 404, "not_found");
    let a = api.call("DELETE", "/admin/plugins", "").await;
    assert_error(&a, 405, "method_not_allowed");
    let allow = a
        .headers
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(allow.contains("GET"), "{allow:?}");
    // Ingest is not behind the admin token.
    send(&c, ingest, "t-1", "push").await;
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn plugins_events_and_kv_pages() {
    let (dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let api = Api::new(&server);
    let c = HttpClient::new();
    let sha = sha256_hex(&plugins_dir(dir.path()).join("echo.wasm"));

    let all = api.get("/admin/plugins").await;
    let list = all.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{all:#}");
    let echo = &list[0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["sha256"], sha.as_str());
    assert_eq!(echo["declared_name"], "echo");
    assert!(echo["declared_version"].is_string(), "{echo:#}");
    assert_eq!(echo["subscriptions"], serde_json::json!(["*"]));
    assert_eq!(echo["state"], "active");
    assert_eq!(echo["last_error"], Value::Null);
    assert!(echo["loaded_at_ms"].as_u64().is_some_and(|t| t > 0));
    for count in [
        "queued",
        "in_flight",
        "delivered",
        "failed_attempts",
        "dead_lettered",
    ] {
        assert_eq!(echo[count], 0, "{count}: {echo:#}");
    }
    assert_eq!(echo["breaker"], "closed");
    assert_eq!(api.get("/admin/plugins/echo").await["sha256"], sha.as_str());
    assert_error(
        &api.call("GET", "/admin/plugins/nope", "").await,
        404,
        "not_found",
    );

    // Three kinds: three counters.
    let ids = [
        send(&c, server.ingest, "d-1", "push").await,
        send(&c, server.ingest, "d-2", "ping").await,
        send(&c, server.ingest, "d-3", "issues").await,
    ];
    api.wait_delivered(3).await;
    let echo = api.get("/admin/plugins/echo").await;
    assert_eq!(
        (echo["delivered"].clone(), echo["queued"].clone()),
        (3.into(), 0.into())
    );

    // Key-value pages: limit 2, then from the cursor.
    let page = api
        .get("/admin/plugins/echo/kv?prefix=count/&limit=2")
        .await;
    let keys = |p: &Value| -> Vec<String> {
        p["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["key"].as_str().expect("key").to_owned())
            .collect()
    };
    assert_eq!(keys(&page), ["count/github:issues", "count/github:ping"]);
    assert_eq!(page["entries"][0]["value"], "1");
    assert_eq!(page["next_cursor"], "count/github:ping");
    let rest = api
        .get("/admin/plugins/echo/kv?prefix=count/&limit=2&cursor=count/github:ping")
        .await;
    assert_eq!(keys(&rest), ["count/github:push"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let empty = api
        .get("/admin/plugins/echo/kv?prefix=&limit=&cursor=")
        .await;
    assert_eq!(keys(&empty).len(), 3, "empty parameters are defaults");
    assert_error(
        &api.call("GET", "/admin/plugins/echo/kv?limit=zero", "")
            .await,
        400,
        "bad_request",
    );
    assert_error(
        &api.call("GET", "/admin/plugins/nope/kv", "").await,
        404,
        "not_found",
    );

    // Events, oldest first, filtered, paged.
    let events = api.get("/admin/events").await;
    let listed: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(listed, ids, "{events:#}");
    assert_eq!(events["next_cursor"], Value::Null);
    let first = &events["events"][0];
    assert_eq!(
        (
            &first["source"],
            &first["kind"],
            &first["provider_id"],
            &first["status"]
        ),
        (
            &"github".into(),
            &"push".into(),
            &"d-1".into(),
            &"delivered".into()
        )
    );
    let ping = api.get("/admin/events?kind=ping&status=delivered").await;
    assert_eq!(ping["events"].as_array().map(Vec::len), Some(1), "{ping:#}");
    assert_eq!(ping["events"][0]["event_id"], ids[1].as_str());
    let none = api.get("/admin/events?status=dead").await;
    assert_eq!(none["events"], serde_json::json!([]));
    let page = api.get("/admin/events?limit=2").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_cursor"], ids[1].as_str());
    let page = api
        .get(&format!("/admin/events?limit=2&cursor={}", ids[1]))
        .await;
    assert_eq!(page["events"][0]["event_id"], ids[2].as_str());
    assert_eq!(page["next_cursor"], Value::Null);
    for bad in ["cursor=evt_1", "status=done", "limit=0"] {
        assert_error(
            &api.call("GET", &format!("/admin/events?{bad}"), "").await,
            400,
            "bad_request",
        );
    }

    // One event: one delivery, one attempt, ok, with the plugin's log line.
    let event = api.get(&format!("/admin/events/{}", ids[0])).await;
    assert_eq!(event["event_id"], ids[0].as_str());
    assert_eq!(event["status"], "delivered");
    assert_eq!(
        (&event["body"], &event["body_encoding"]),
        (&"{}".into(), &"utf8".into())
    );
    assert!(
        event["headers"].to_string().contains("x-github-event"),
        "{event:#}"
    );
    let deliveries = event["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{event:#}");
    let d = &deliveries[0];
    assert_eq!(d["plugin"], "echo");
    assert_eq!(d["id"], format!("{}:echo", ids[0]));
    assert_eq!(d["state"], "done");
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{d:#}");
    let a = &attempts[0];
    assert_eq!(a["outcome"], "ok");
    assert_eq!(a["sha256"], sha.as_str());
    assert_eq!((&a["round"], &a["attempt"]), (&0.into(), &1.into()));
    assert!(a["fuel_used"].as_u64().is_some_and(|f| f > 0), "{a:#}");
    let logs = a["logs"].as_array().expect("logs");
    assert!(!logs.is_empty(), "{a:#}");
    assert_eq!(logs[0]["message"], "received event");
    assert_eq!(logs[0]["level"], "info");
    assert_eq!(logs[0]["fields"]["kind"], "push");
    assert_error(
        &api.call("GET", "/admin/events/evt_00000000000000ff", "")
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("GET", "/admin/events/nonsense", "").await,
        404,
        "not_found",
    );

    // Replay: a second round on the same plugin.
    let (status, body) = api
        .post(&format!("/admin/events/{}/replay", ids[0]), "")
        .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["replayed"], true);
    assert_eq!(body["plugins"], serde_json::json!(["echo"]));
    api.wait_delivered(4).await;
    let event = api.get(&format!("/admin/events/{}", ids[0])).await;
    let attempts = event["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(attempts.len(), 2, "{event:#}");
    assert_eq!(attempts[1]["round"], 1);
    let (status, body) = api
        .post("/admin/events/evt_00000000000000ff/replay", "")
        .await;
    assert_eq!((status, &body["error"]), (404, &"not_found".into()));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn a_broken_reload_keeps_the_old_version_serving() {
    let (dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let api = Api::new(&server);
    let file = plugins_dir(dir.path()).join("echo.wasm");
    let sha = sha256_hex(&file);

    std::fs::write(&file, b"this is not a component").expect("break the file");
    let (status, body) = api.post("/admin/plugins/echo/reload", "").await;
    assert_eq!(status, 422, "{body:#}");
    assert_eq!(body["error"], "invalid_plugin");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let echo = api.get("/admin/plugins/echo").await;
    assert_eq!(echo["sha256"], sha.as_str(), "the old version stays");
    assert_eq!(echo["state"], "active");
    assert!(echo["last_error"]["message"].is_string(), "{echo:#}");
    assert!(echo["last_error"]["at_ms"].as_u64().is_some());
    // It still delivers.
    send(&HttpClient::new(), server.ingest, "b-1", "push").await;
    api.wait_delivered(1).await;

    // A good file again: a clean reload clears the error.
    install_plugin(dir.path(), "noop", "echo");
    let (status, body) = api.post("/admin/plugins/echo/reload", "").await;
    assert_eq!(status, 200, "{body:#}");
    assert_ne!(body["sha256"], sha.as_str());
    assert_eq!(body["last_error"], Value::Null);

    // Gone: 404, and the plugin shows as removed.
    std::fs::remove_file(&file).expect("remove");
    let (status, body) = api.post("/admin/plugins/echo/reload", "").await;
    assert_eq!(
        (status, &body["error"]),
        (404, &"not_found".into()),
        "{body:#}"
    );
    assert_eq!(api.get("/admin/plugins/echo").await["state"], "removed");

    // Names that are not plugin names never reach the file system.
    for bad in ["..%2Fecho", "Echo", "a.b"] {
        let (status, _) = api.post(&format!("/admin/plugins/{bad}/reload"), "").await;
        assert_eq!(status, 404, "{bad}");
    }
    // A new file: reload loads it.
    install_plugin(dir.path(), "echo", "late");
    let (status, body) = api.post("/admin/plugins/late/reload", "").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["state"], "active");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn pause_holds_deliveries_until_resume() {
    let (_dir, config) = setup(&[("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let api = Api::new(&server);
    let c = HttpClient::new();

    let (status, body) = api.post("/admin/plugins/echo/pause", "").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        (&body["state"], &body["paused"]),
        (&"paused".into(), &true.into())
    );
    let id = send(&c, server.ingest, "p-1", "push").await;
    api.wait_until("/admin/plugins/echo", "a queued delivery", |p| {
        p["queued"].as_u64() >= Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = api.get("/admin/stats").await;
    assert_eq!(stats["delivered"], 0, "paused: nothing runs: {stats:#}");
    assert!(stats["plugins"]["echo"]["queued"].as_u64() >= Some(1));
    let event = api.get(&format!("/admin/events/{id}")).await;
    assert_eq!(event["status"], "pending");
    assert_eq!(event["deliveries"][0]["state"], "pending");
    assert_eq!(event["deliveries"][0]["next_attempt"], 1);

    let (status, body) = api.post("/admin/plugins/echo/resume", "").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["state"], "active");
    api.wait_delivered(1).await;
    let event = api.get(&format!("/admin/events/{id}")).await;
    assert_eq!(event["status"], "delivered");

    for action in ["pause", "resume", "reload"] {
        let (status, body) = api.post(&format!("/admin/plugins/nope/{action}"), "").await;
        assert_eq!(
            (status, &body["error"]),
            (404, &"not_found".into()),
            "{action}"
        );
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn dead_letters_list_replay_and_delete() {
    let (_dir, config) = setup(&[("reject-all", "nope"), ("echo", "echo")]);
    let server = TestServer::start(&config).await;
    let api = Api::new(&server);
    let c = HttpClient::new();

    let ids = [
        send(&c, server.ingest, "x-1", "push").await,
        send(&c, server.ingest, "x-2", "ping").await,
        send(&c, server.ingest, "x-3", "issues").await,
    ];
    let all = api
        .wait_until("/admin/dead-letters", "three dead letters", |d| {
            d["dead_letters"].as_array().is_some_and(|a| a.len() == 3)
        })
        .await;
    let first = &all["dead_letters"][0];
    let dl = format!("{}:nope", ids[0]);
    assert_eq!(first["id"], dl.as_str(), "{all:#}");
    assert_eq!(first["event_id"], ids[0].as_str());
    assert_eq!(first["plugin"], "nope");
    assert_eq!(first["reason"], "rejected");
    assert_eq!(first["attempts"], 1);
    assert!(first["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("rejects every event")));
    assert!(first["dead_at_ms"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(all["next_cursor"], Value::Null);

    // Filters and pages.
    let page = api.get("/admin/dead-letters?limit=2").await;
    assert_eq!(page["dead_letters"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
    let rest = api
        .get(&format!("/admin/dead-letters?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["dead_letters"][0]["event_id"], ids[2].as_str());
    assert_eq!(rest["next_cursor"], Value::Null);
    let ping = api.get("/admin/dead-letters?source=github&kind=ping").await;
    assert_eq!(ping["dead_letters"].as_array().map(Vec::len), Some(1));
    assert_eq!(ping["dead_letters"][0]["event_id"], ids[1].as_str());
    let echo = api.get("/admin/dead-letters?plugin=echo").await;
    assert_eq!(echo["dead_letters"], serde_json::json!([]));
    assert_error(
        &api.call("GET", "/admin/dead-letters?cursor=bad", "").await,
        400,
        "bad_request",
    );
    let one = api.get(&format!("/admin/dead-letters/{dl}")).await;
    assert_eq!(one["history"][0]["outcome"], "reject");

    // Replay one: it runs again (and is rejected again).
    let (status, body) = api
        .post(&format!("/admin/dead-letters/{dl}/replay"), "")
        .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["replayed"], true);
    api.wait_until(
        &format!("/admin/events/{}", ids[0]),
        "a second round",
        |e| {
            e["status"] == "dead"
                && e["deliveries"].as_array().is_some_and(|d| {
                    d.iter().any(|d| {
                        d["plugin"] == "nope" && d["attempts"].as_array().map(Vec::len) == Some(2)
                    })
                })
        },
    )
    .await;
    let (status, _) = api
        .post(&format!("/admin/dead-letters/{}:echo/replay", ids[0]), "")
        .await;
    assert_eq!(status, 404, "a done delivery is no dead letter");

    // Delete one: gone from the list, shown as deleted in its event.
    let del = api
        .call("DELETE", &format!("/admin/dead-letters/{dl}"), "")
        .await;
    assert_eq!(del.status, 200, "{:?}", del.body);
    assert_eq!(del.json()["deleted"], true);
    assert_error(
        &api.call("DELETE", &format!("/admin/dead-letters/{dl}"), "")
            .await,
        404,
        "not_found",
    );
    let event = api.get(&format!("/admin/events/{}", ids[0])).await;
    assert_eq!(event["status"], "delivered", "{event:#}");
    let stats = api
        .wait_until("/admin/stats", "two dead letters", |s| {
            s["dead_letters"] == 2 && s["queued"] == 0 && s["in_flight"] == 0
        })
        .await;
    assert_eq!(stats["dead_letters"], 2);

    // Bulk: a bad body is refused; a filter replays what it selects.
    let (status, body) = api
        .post("/admin/dead-letters/replay", r#"{"plugn":"x"}"#)
        .await;
    assert_eq!((status, &body["error"]), (400, &"bad_request".into()));
    let (status, body) = api
        .post("/admin/dead-letters/replay", r#"{"kind":"ping"}"#)
        .await;
    assert_eq!((status, &body["replayed"]), (200, &1.into()), "{body:#}");
    let (status, body) = api.post("/admin/dead-letters/replay", "").await;
    assert_eq!(status, 200, "{body:#}");
    assert!(
        body["replayed"].as_u64().is_some_and(|n| n <= 2),
        "{body:#}"
    );
    server.stop().await.expect("stop");
}
