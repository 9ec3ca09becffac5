//! Warm mode: a plugin's instance reused across calls, within its limits.
//! The `instance-probe` fixture logs how many calls its instance has served
//! (`calls` is 1 on every call of a fresh instance), so each test reads
//! reuse straight from the plugin.

use hookhost::runtime::{
    CallReport, CallSettings, Event, Grants, Limits, Outcome, Plugin, TrapKind, WarmPolicy,
};
use hookhost_tests::server::{plugin_setup, poll_until, HttpClient, TestServer};
use hookhost_tests::{event, Harness};
use serde_json::{json, Value};
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
    assert_eq!(p.drop_warm_instances(), 1);
    assert_eq!(calls_seen(&h, &p, &s, 1).await, [1]);
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
            r.fuel_used <= limits.fuel,
            "fuel used is this call's: {}",
            r.fuel_used
        );
    }
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
    let s = warm(Limits::default(), 100, Duration::from_millis(300));
    assert_eq!(calls_seen(&h, &p, &s, 2).await, [1, 2]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(calls_seen(&h, &p, &s, 2).await, [1, 2], "expired");

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

async fn json_of(c: &HttpClient, admin: SocketAddr, path: &str) -> Value {
    let a = c.get(admin, path).await.expect("admin GET");
    assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
    a.json()
}

/// The `calls` plugin `probe` logged for one event, once it is delivered.
async fn delivered_calls(c: &HttpClient, admin: SocketAddr, event_id: &str) -> u64 {
    let path = format!("/admin/events/{event_id}");
    // The event is readable a few ms after its acknowledgement.
    let ev = poll_until(
        "the probe's delivery",
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
    let line = ev["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["plugin"] == "probe"))
        .and_then(|d| d["attempts"][0]["logs"].as_array())
        .and_then(|l| l.iter().find(|l| l["message"] == "probe"))
        .unwrap_or_else(|| panic!("no probe line from plugin probe in {ev:#}"));
    line["fields"]["calls"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no calls field in {line:#}"))
}

#[tokio::test]
async fn the_server_runs_a_plugin_warm_when_configured_and_pausing_drops_its_instances() {
    let (_dir, config) = plugin_setup(
        &[("instance-probe", "probe"), ("instance-probe", "fresh")],
        "",
        "[plugin.probe]\nwarm = true\nwarm_max_calls = 100\nconcurrency = 1\n",
    );
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let mut seen = Vec::new();
    for i in 0..3 {
        let body = serde_json::to_vec(&json!({"type": "probe", "i": i})).expect("json");
        let headers = [("X-Webhook-Id".to_owned(), format!("w-{i}").into_bytes())];
        let a = c
            .webhook(server.ingest, "demo", &headers, body)
            .await
            .expect("send");
        assert_eq!(a.status, 200);
        let id = a.json()["event_id"].as_str().expect("event_id").to_owned();
        seen.push(delivered_calls(&c, server.admin, &id).await);
    }
    assert_eq!(seen, [1, 2, 3], "one instance for probe's three events");

    let probe = json_of(&c, server.admin, "/admin/plugins/probe").await;
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
    let fresh = json_of(&c, server.admin, "/admin/plugins/fresh").await;
    assert_eq!(
        (fresh["warm"].clone(), fresh["warm_instances"].clone()),
        (Value::Null, json!(0))
    );

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
    let probe = json_of(&c, server.admin, "/admin/plugins/probe").await;
    assert_eq!(
        probe["warm_instances"], 0,
        "pausing frees the idle instance"
    );
    server.stop().await.expect("clean stop");
}
