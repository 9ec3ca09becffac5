//! Warm mode: a plugin's instance reused across calls, within its limits.
//! The `instance-probe` fixture logs how many calls its instance has served
//! (`calls` is 1 on every call of a fresh instance), so each test reads
//! reuse straight from the plugin.

use hookhost::runtime::{
    CallReport, CallSettings, Event, Grants, Limits, Outcome, Plugin, TrapKind, WarmPolicy,
};
use hookhost_tests::server::{admin_json, plugin_setup, poll_until, HttpClient, TestServer};
use hookhost_tests::{event, Harness};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn warm(limits: Limits, max_calls: u32, max_age: Duration) -> CallSettings {
    CallSettings {
        limits,
        grants: Arc::default(),
        warm: Some(WarmPolicy { max_calls, max_age }),
    }
}

fn asking(body: Value) -> Event {
    event("test", "probe", "evt_probe", &body)
}

/// A field of the probe's log line.
fn probe(report: &CallReport, key: &str) -> u64 {
    let line = report
        .logs
        .iter()
        .find(|l| l.message == "probe")
        .unwrap_or_else(|| panic!("no probe line in {report:?}"));
    line.fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key} in {:?}", line.fields))
}

/// The `calls` each of `n` plain calls logged.
async fn calls_seen(h: &Harness, p: &Plugin, s: &CallSettings, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = h.runtime.invoke(p, s, &asking(json!({}))).await;
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        seen.push(probe(&r, "calls"));
    }
    seen
}

#[tokio::test]
async fn an_instance_serves_up_to_max_calls_and_fresh_mode_never_reuses() {
    let h = Harness::new();
    let p = h.load("instance-probe").await;
    let fresh = CallSettings::default();
    assert_eq!(calls_seen(&h, &p, &fresh, 3).await, [1, 1, 1]);
    assert_eq!(p.warm_instances(), 0, "fresh mode keeps nothing");

    let s = warm(Limits::default(), 3, Duration::from_secs(60));
    assert_eq!(calls_seen(&h, &p, &s, 7).await, [1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(p.warm_instances(), 1, "the instance of the 7th call waits");
    assert_eq!(p.close_warm_pool().len(), 1);
    assert_eq!(
        calls_seen(&h, &p, &s, 2).await,
        [1, 1],
        "closed: nothing kept"
    );
    p.open_warm_pool();
    assert_eq!(calls_seen(&h, &p, &s, 2).await, [1, 2]);
}

#[tokio::test]
async fn a_trap_is_never_followed_by_the_same_instance() {
    let h = Harness::new();
    let p = h.load("instance-probe").await;
    let s = warm(Limits::default(), 100, Duration::from_secs(60));
    assert_eq!(calls_seen(&h, &p, &s, 2).await, [1, 2]);
    let r = h
        .runtime
        .invoke(&p, &s, &asking(json!({"panic": true})))
        .await;
    assert!(
        matches!(
            r.outcome,
            Outcome::Trap {
                kind: TrapKind::Panic,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        probe(&r, "calls"),
        3,
        "the panicking call ran in the warm one"
    );
    assert_eq!(p.warm_instances(), 0);
    assert_eq!(calls_seen(&h, &p, &s, 2).await, [1, 2]);
}

#[tokio::test]
async fn every_call_gets_its_own_fuel() {
    let h = Harness::new();
    let p = h.load("instance-probe").await;
    let spin = asking(json!({"spin_millions": 2}));
    let once = h.runtime.invoke(&p, &CallSettings::default(), &spin).await;
    assert_eq!(once.outcome, Outcome::Ok);
    // Room for one spin and a half: a tank not refilled between calls
    // would run dry in the second call.
    let limits = Limits {
        fuel: once.fuel_used * 3 / 2,
        ..Limits::default()
    };
    let s = warm(limits, 100, Duration::from_secs(60));
    for n in 1..=5 {
        let r = h.runtime.invoke(&p, &s, &spin).await;
        assert_eq!(r.outcome, Outcome::Ok, "call {n}: {r:?}");
        assert_eq!(probe(&r, "calls"), n, "one instance throughout");
        assert!(
            r.fuel_used.abs_diff(once.fuel_used) < once.fuel_used / 10,
            "fuel used is this call's: {} against {} fresh",
            r.fuel_used,
            once.fuel_used
        );
    }
}

#[tokio::test]
async fn every_call_gets_its_own_deadline() {
    let h = Harness::new();
    let p = h.load("instance-probe").await;
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = warm(limits, 100, Duration::from_secs(60));
    assert_eq!(calls_seen(&h, &p, &s, 1).await, [1]);
    // Past the first call's deadline: a deadline not renewed would
    // interrupt the next call at once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(calls_seen(&h, &p, &s, 1).await, [2]);
}

#[tokio::test]
async fn memory_kept_across_calls_counts_against_the_cap_and_the_trap_starts_fresh() {
    let h = Harness::new();
    let p = h.load("instance-probe").await;
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let s = warm(limits, 100, Duration::from_secs(60));
    let keep = asking(json!({"keep_kib": 1024}));
    let mut kept_before_trap = 0;
    for n in 1..=10 {
        let r = h.runtime.invoke(&p, &s, &keep).await;
        match r.outcome {
            Outcome::Ok => {
                assert_eq!(probe(&r, "calls"), n);
                kept_before_trap = probe(&r, "kept_kib");
                assert_eq!(kept_before_trap, n * 1024, "the leak persists");
            }
            Outcome::Trap {
                kind: TrapKind::Memory,
                ..
            } => break,
            other => panic!("call {n}: {other:?}"),
        }
    }
    assert!(
        (2048..8192).contains(&kept_before_trap),
        "the 8 MiB cap stopped the leak after {kept_before_trap} KiB"
    );
    let r = h.runtime.invoke(&p, &s, &asking(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!((probe(&r, "calls"), probe(&r, "kept_kib")), (1, 0));
}

#[tokio::test]
async fn an_instance_expires_and_never_serves_other_limits_or_grants() {
    let h = Harness::new();
    let p = h.load("instance-probe").await;
    let expired = warm(Limits::default(), 100, Duration::ZERO);
    assert_eq!(calls_seen(&h, &p, &expired, 2).await, [1, 1], "expired");

    let longer = warm(
        Limits {
            timeout: Duration::from_secs(9),
            ..Limits::default()
        },
        100,
        Duration::from_secs(60),
    );
    assert_eq!(calls_seen(&h, &p, &longer, 1).await, [1], "other limits");
    let granted = CallSettings {
        grants: Arc::new(Grants {
            config: [("k".to_owned(), "v".to_owned())].into(),
            ..Grants::default()
        }),
        ..longer.clone()
    };
    assert_eq!(
        calls_seen(&h, &p, &granted, 2).await,
        [1, 2],
        "other grants"
    );
    assert_eq!(calls_seen(&h, &p, &longer, 1).await, [1]);
}

/// The `calls` each plugin logged for one event, once it is delivered.
async fn delivered_calls(
    c: &HttpClient,
    admin: SocketAddr,
    event_id: &str,
) -> BTreeMap<String, u64> {
    let path = format!("/admin/events/{event_id}");
    // The event is readable a few ms after its acknowledgement.
    let ev = poll_until(
        "the probes' deliveries",
        || async {
            let a = c.get(admin, &path).await.expect("admin GET");
            if a.status == 200 {
                a.json()
            } else {
                Value::Null
            }
        },
        |v| v["status"] == "delivered",
    )
    .await;
    let mut seen = BTreeMap::new();
    for d in ev["deliveries"].as_array().expect("deliveries") {
        let calls = d["attempts"][0]["logs"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["message"] == "probe"))
            .and_then(|l| l["fields"]["calls"].as_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no probe line with calls in {d:#}"));
        seen.insert(d["plugin"].as_str().expect("plugin").to_owned(), calls);
    }
    seen
}

/// Send one event to the demo source; what each probe logged for it.
async fn send_probe(c: &HttpClient, server: &TestServer, id: &str) -> BTreeMap<String, u64> {
    let body = serde_json::to_vec(&json!({"type": "probe", "id": id})).expect("json");
    let headers = [("X-Webhook-Id".to_owned(), id.as_bytes().to_vec())];
    let a = c
        .webhook(server.ingest, "demo", &headers, body)
        .await
        .expect("send");
    assert_eq!(a.status, 200);
    let event_id = a.json()["event_id"].as_str().expect("event_id").to_owned();
    delivered_calls(c, server.admin, &event_id).await
}

fn calls(probe: u64, twin: u64, fresh: u64) -> BTreeMap<String, u64> {
    [("probe", probe), ("twin", twin), ("fresh", fresh)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[tokio::test]
async fn the_server_runs_plugins_warm_when_configured_never_sharing_across_plugins_or_versions() {
    let (dir, config) = plugin_setup(
        &[
            ("instance-probe", "probe"),
            ("instance-probe", "twin"),
            ("instance-probe", "fresh"),
        ],
        "",
        "[plugin.probe]\nwarm = true\nwarm_max_calls = 100\nconcurrency = 1\n\
         [plugin.twin]\nwarm = true\nconcurrency = 1\n",
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    // Same bytes for all three: each warm plugin has its own instance.
    for n in 1..=3 {
        let seen = send_probe(&c, &server, &format!("w-{n}")).await;
        assert_eq!(seen, calls(n, n, 1), "event {n}");
    }

    let probe = admin_json(&c, server.admin, "/admin/plugins/probe").await;
    assert_eq!(probe["warm"], json!({"max_calls": 100, "max_secs": 60}));
    assert_eq!(probe["warm_instances"], 1);
    let metrics = c.get(server.admin, "/metrics").await.expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "hookhost_plugin_warm_instances{plugin=\"probe\"} 1",
        "hookhost_plugin_warm_instances{plugin=\"fresh\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    let fresh = admin_json(&c, server.admin, "/admin/plugins/fresh").await;
    assert_eq!(
        (fresh["warm"].clone(), fresh["warm_instances"].clone()),
        (Value::Null, json!(0))
    );

    // A new version of probe (same code, other bytes) starts fresh; its
    // twin keeps its instance.
    let v2 = hookhost_tests::variant(&hookhost_tests::wasm("instance-probe"), "v2");
    let plugins = hookhost_tests::server::plugins_dir(dir.path());
    std::fs::write(plugins.join(".probe.tmp"), &v2).expect("write");
    std::fs::rename(plugins.join(".probe.tmp"), plugins.join("probe.wasm")).expect("rename");
    let v2_sha = hookhost::runtime::sha256_hex(&v2);
    poll_until(
        "probe's new version",
        || admin_json(&c, server.admin, "/admin/plugins/probe"),
        |p| p["sha256"] == v2_sha.as_str(),
    )
    .await;
    assert_eq!(send_probe(&c, &server, "w-4").await, calls(1, 4, 1));

    let paused = c
        .send(
            "POST",
            server.admin,
            "/admin/plugins/probe/pause",
            &[],
            Vec::new(),
        )
        .await
        .expect("pause");
    assert_eq!(paused.status, 200);
    let probe = admin_json(&c, server.admin, "/admin/plugins/probe").await;
    assert_eq!(
        probe["warm_instances"], 0,
        "pausing frees the idle instance"
    );
    let resumed = c
        .send(
            "POST",
            server.admin,
            "/admin/plugins/probe/resume",
            &[],
            Vec::new(),
        )
        .await
        .expect("resume");
    assert_eq!(resumed.status, 200);
    assert_eq!(send_probe(&c, &server, "w-5").await, calls(1, 5, 1));
    assert_eq!(send_probe(&c, &server, "w-6").await, calls(2, 6, 1));
    server.stop().await.expect("clean stop");
}
