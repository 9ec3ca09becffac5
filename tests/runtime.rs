//! The plugin runtime, end to end: every plugin in `plugins/` is built from
//! source (by `build.rs`) and run through the real wasmtime host. Each
//! misbehaving fixture must end in its own typed trap while a well-behaved
//! plugin keeps being served.

use hookhost::kv::KvLimits;
use hookhost::runtime::{
    CallReport, CallSettings, Event, Grants, Limits, LoadError, Outcome, Plugin, TrapKind,
};
use hookhost_tests::{event, kib_event, wasm, Harness};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn settings(limits: Limits) -> CallSettings {
    CallSettings {
        limits,
        grants: Arc::default(),
        warm: None,
    }
}

fn trap_kind(report: &CallReport) -> TrapKind {
    match &report.outcome {
        Outcome::Trap { kind, .. } => *kind,
        other => panic!("expected a trap, got {other:?}"),
    }
}

fn logged<'a>(report: &'a CallReport, message: &str) -> &'a [(String, String)] {
    &report
        .logs
        .iter()
        .find(|l| l.message == message)
        .unwrap_or_else(|| panic!("no log line {message:?} in {:?}", report.logs))
        .fields
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {key} in {fields:?}"))
}

async fn call(h: &Harness, plugin: &Plugin, limits: Limits, ev: &Event) -> CallReport {
    h.runtime.invoke(plugin, &settings(limits), ev).await
}

fn ping() -> Event {
    event("test", "ping", "evt_ping", &json!({"hello": "world"}))
}

#[tokio::test]
async fn echo_describes_itself_counts_and_logs() {
    let h = Harness::new();
    let echo = h.load("echo").await;
    assert_eq!(echo.info.declared_name, "echo");
    assert_eq!(echo.info.subscriptions, vec!["*"]);
    assert_eq!(echo.sha256, hookhost::runtime::sha256_hex(&wasm("echo")));

    for _ in 0..3 {
        let r = call(&h, &echo, Limits::default(), &ping()).await;
        assert_eq!(r.outcome, Outcome::Ok);
        assert!(r.fuel_used > 0, "fuel is metered");
        assert!(r.peak_memory > 0, "memory is tracked");
        assert_eq!(field(logged(&r, "received event"), "kind"), "ping");
    }
    let ns = h.runtime.kv().namespace("echo").expect("ns");
    assert_eq!(ns.get("count/test:ping").expect("get"), Some(b"3".to_vec()));
}

#[tokio::test]
async fn spin_forever_is_stopped_by_the_deadline_or_by_fuel() {
    let h = Harness::new();
    let spin = h.load("spin-forever").await;

    let ample = Limits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let r = call(&h, &spin, ample, &ping()).await;
    assert_eq!(trap_kind(&r), TrapKind::Deadline, "{:?}", r.outcome);
    let Outcome::Trap { detail, .. } = &r.outcome else {
        unreachable!()
    };
    assert!(
        !detail.contains("outer timeout"),
        "the epoch stopped it, not the backstop: {detail}"
    );
    assert!(r.duration >= Duration::from_millis(200), "{:?}", r.duration);
    assert!(
        r.duration < Duration::from_secs(1),
        "stopped well under a second: {:?}",
        r.duration
    );

    let little = Limits {
        fuel: 10_000_000,
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let r = call(&h, &spin, little, &ping()).await;
    assert_eq!(trap_kind(&r), TrapKind::Fuel, "{:?}", r.outcome);
    assert_eq!(r.fuel_used, 10_000_000);
}

#[tokio::test]
async fn memory_hog_is_stopped_at_the_cap() {
    let h = Harness::new();
    let hog = h.load("memory-hog").await;
    let cap = 16 << 20;
    let r = call(
        &h,
        &hog,
        Limits {
            memory_bytes: cap,
            ..Limits::default()
        },
        &ping(),
    )
    .await;
    // A Rust guest that cannot allocate aborts with `unreachable`, like a
    // panic: the limiter's record is what makes this `memory`.
    assert_eq!(trap_kind(&r), TrapKind::Memory, "{:?}", r.outcome);
    assert!(
        r.peak_memory <= cap,
        "peak {} over cap {cap}",
        r.peak_memory
    );
    assert!(r.peak_memory > cap / 2, "it did grow: {}", r.peak_memory);
    // What it logged before it died is kept with the attempt.
    logged(&r, "allocating");
}

#[tokio::test]
async fn panics_stack_overflows_and_rejections_are_told_apart() {
    let h = Harness::new();
    let panicker = h.load("panicker").await;
    let stack = h.load("stack-overflow").await;
    let reject = h.load("reject-all").await;

    assert_eq!(
        trap_kind(&call(&h, &panicker, Limits::default(), &ping()).await),
        TrapKind::Panic
    );
    assert_eq!(
        trap_kind(&call(&h, &stack, Limits::default(), &ping()).await),
        TrapKind::Stack
    );
    assert_eq!(
        call(&h, &reject, Limits::default(), &ping()).await.outcome,
        Outcome::Reject("reject-all rejects every event (kind ping)".into())
    );
}

#[tokio::test]
async fn flaky_retries_until_its_configured_attempt() {
    let h = Harness::new();
    let flaky = h.load("flaky").await;
    let mut grants = Grants::default();
    grants.config.insert("succeed_at".into(), "2".into());
    let s = CallSettings {
        limits: Limits::default(),
        grants: Arc::new(grants),
        warm: None,
    };
    let mut ev = ping();
    let r = h.runtime.invoke(&flaky, &s, &ev).await;
    assert_eq!(r.outcome, Outcome::Retry("flaky: attempt 1 of 2".into()));
    ev.attempt = 2;
    assert_eq!(h.runtime.invoke(&flaky, &s, &ev).await.outcome, Outcome::Ok);

    // Without the grant it falls back to 3.
    ev.attempt = 2;
    let r = call(&h, &flaky, Limits::default(), &ev).await;
    assert_eq!(r.outcome, Outcome::Retry("flaky: attempt 2 of 3".into()));
    let ns = h.runtime.kv().namespace("flaky").expect("ns");
    assert_eq!(ns.get("succeeded").expect("get"), Some(b"1".to_vec()));
}

#[tokio::test]
async fn log_floods_and_huge_errors_are_capped() {
    let h = Harness::new();
    let flood = h.load("log-flood").await;
    let limits = Limits::default();
    let r = call(&h, &flood, limits, &ping()).await;
    assert_eq!(r.outcome, Outcome::Ok);
    // One 1 MiB line with 100 big fields, then 10,000 short lines.
    assert_eq!(r.logs.len(), limits.log.max_lines);
    assert_eq!(r.logs.len() as u64 + r.logs_dropped, 10_001);
    let big = &r.logs[0];
    assert!(big.message.starts_with("yyyy"));
    assert!(
        big.message.len() < limits.log.max_line_bytes + 64,
        "{}",
        big.message.len()
    );
    assert!(big.message.ends_with("[truncated from 1048576 bytes]"));
    assert_eq!(big.fields.len(), limits.log.max_fields);
    assert!(big
        .fields
        .iter()
        .all(|(k, v)| k.len() < 320 && v.len() < 320));
    assert_eq!(r.logs[1].message, "line 0");

    // The per-call byte budget stops kept lines too.
    let tight = Limits {
        log: hookhost::runtime::LogLimits {
            max_total_bytes: 30_000,
            ..limits.log
        },
        ..limits
    };
    let r = call(&h, &flood, tight, &ping()).await;
    let kept: usize = r
        .logs
        .iter()
        .map(|l| {
            l.message.len()
                + l.fields
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    assert!(
        r.logs.len() < 1000 && r.logs.len() > 1,
        "{} lines kept",
        r.logs.len()
    );
    assert!(kept < 30_000 + 4096 + 64, "{kept} bytes kept");
    assert_eq!(r.logs.len() as u64 + r.logs_dropped, 10_001);

    let huge = event("test", "huge-error", "evt_huge", &json!({}));
    let r = call(&h, &flood, limits, &huge).await;
    let Outcome::Retry(message) = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(
        message.len() < 8192,
        "a 4 MiB error message is cut to {} bytes",
        message.len()
    );
    assert!(
        message.ends_with("[truncated from 4194304 bytes]"),
        "{}",
        &message[message.len() - 40..]
    );
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_is_ended_by_the_outer_timeout() {
    let h = Harness::new();
    let sleeper = h.load("sleeper").await;
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let r = call(&h, &sleeper, limits, &ping()).await;
    assert_eq!(trap_kind(&r), TrapKind::Deadline, "{:?}", r.outcome);
    let Outcome::Trap { detail, .. } = &r.outcome else {
        unreachable!()
    };
    assert!(detail.contains("outer timeout"), "{detail}");
    assert!(r.duration < Duration::from_secs(2), "{:?}", r.duration);
}

#[tokio::test]
async fn kv_caps_hold_and_plugins_cannot_see_each_others_keys() {
    let h = Harness::with_kv_limits(KvLimits {
        max_keys: 500,
        ..KvLimits::default()
    });
    let echo = h.load("echo").await;
    let abuser = h.load("kv-abuser").await;
    let run = |kind: &str| event("test", kind, "evt_kv", &json!({}));

    let r = call(&h, &abuser, Limits::default(), &run("oversize")).await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.logs);
    assert_eq!(
        field(logged(&r, "oversize refused"), "error"),
        "value larger than 65536 bytes"
    );

    let r = call(&h, &abuser, Limits::default(), &run("bad-key")).await;
    assert_eq!(r.outcome, Outcome::Ok);
    let f = logged(&r, "bad keys refused");
    assert_eq!(field(f, "empty"), "invalid key: key is empty");
    assert_eq!(
        field(f, "long"),
        "invalid key: key is 600 bytes, the limit is 512"
    );

    let r = call(&h, &abuser, Limits::default(), &run("flood")).await;
    let f = logged(&r, "flood stopped");
    assert_eq!(field(f, "written"), "500");
    assert_eq!(field(f, "error"), "namespace full (500 keys)");

    // echo writes `count/test:ping` in its own namespace...
    assert_eq!(
        call(&h, &echo, Limits::default(), &ping()).await.outcome,
        Outcome::Ok
    );
    // ...which kv-abuser cannot see: it sees exactly its own 500 keys.
    let r = call(&h, &abuser, Limits::default(), &run("peek")).await;
    let f = logged(&r, "peek");
    assert_eq!(field(f, "keys"), "500");
    assert_eq!(field(f, "first"), "flood/000000");
    assert_eq!(field(f, "echo_key"), "absent");
    // And echo's namespace holds only echo's key.
    let echo_ns = h.runtime.kv().namespace("echo").expect("ns");
    assert_eq!(
        echo_ns.keys("", None, 1000).expect("keys"),
        vec!["count/test:ping"]
    );
}

#[tokio::test]
async fn misbehaving_plugins_trap_while_a_good_one_keeps_serving() {
    let h = Arc::new(Harness::new());
    let echo = h.load("echo").await;
    let bad: Vec<(&str, TrapKind)> = vec![
        ("spin-forever", TrapKind::Deadline),
        ("memory-hog", TrapKind::Memory),
        ("panicker", TrapKind::Panic),
        ("stack-overflow", TrapKind::Stack),
    ];
    let limits = Limits {
        timeout: Duration::from_millis(300),
        fuel: u64::MAX / 2,
        memory_bytes: 32 << 20,
        ..Limits::default()
    };

    let done = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let good = {
        let (h, echo, done, served) = (h.clone(), echo.clone(), done.clone(), served.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::Acquire) {
                let r = h
                    .runtime
                    .invoke(&echo, &settings(Limits::default()), &kib_event(i))
                    .await;
                assert_eq!(r.outcome, Outcome::Ok);
                served.fetch_add(1, Ordering::AcqRel);
                i += 1;
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = Vec::new();
    for (name, expected) in bad {
        let plugin = h.load(name).await;
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            // Three rounds each, all at once: the host must survive them all.
            for _ in 0..3 {
                let r = h.runtime.invoke(&plugin, &settings(limits), &ping()).await;
                assert_eq!(trap_kind(&r), expected, "{name}: {:?}", r.outcome);
            }
        }));
    }
    let before = served.load(Ordering::Acquire);
    for t in tasks {
        t.await.expect("misbehaving task");
    }
    let during = served.load(Ordering::Acquire) - before;
    done.store(true, Ordering::Release);
    good.await.expect("echo task");
    assert!(during > 0, "echo was served while the others trapped");
    let ns = h.runtime.kv().namespace("echo").expect("ns");
    let count = ns.get("count/bench:ping").expect("get").expect("counted");
    assert_eq!(
        String::from_utf8(count).expect("utf8"),
        served.load(Ordering::Acquire).to_string()
    );
}

#[tokio::test]
async fn examples_keep_their_state_in_kv() {
    let h = Harness::new();
    let gh = h.load("github-issues").await;
    assert_eq!(
        gh.info.subscriptions,
        vec!["github:issues.*", "github:pull_request.*"]
    );
    let opened = json!({"action": "opened", "repository": {"full_name": "acme/rockets"}});
    let closed = json!({"action": "closed", "repository": {"full_name": "acme/rockets"}});
    for (i, (kind, body)) in [
        ("issues.opened", &opened),
        ("issues.opened", &opened),
        ("issues.closed", &closed),
    ]
    .into_iter()
    .enumerate()
    {
        let r = call(
            &h,
            &gh,
            Limits::default(),
            &event("github", kind, &format!("gh_{i}"), body),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.logs);
    }
    let ns = h.runtime.kv().namespace("github-issues").expect("ns");
    let get = |k: &str| {
        ns.get(k)
            .expect("get")
            .map(|v| String::from_utf8(v).expect("utf8"))
    };
    assert_eq!(get("repo/acme/rockets/issues.opened").as_deref(), Some("2"));
    assert_eq!(get("repo/acme/rockets/open_issues").as_deref(), Some("1"));
    let no_repo = event(
        "github",
        "issues.opened",
        "gh_x",
        &json!({"action": "opened"}),
    );
    assert!(matches!(
        call(&h, &gh, Limits::default(), &no_repo).await.outcome,
        Outcome::Reject(_)
    ));

    let stripe = h.load("stripe-billing").await;
    let paid = event(
        "stripe",
        "invoice.paid",
        "evt_1",
        &json!({"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1", "customer": "cus_9"}}}),
    );
    for _ in 0..2 {
        // The second delivery of the same event id changes nothing.
        assert_eq!(
            call(&h, &stripe, Limits::default(), &paid).await.outcome,
            Outcome::Ok
        );
    }
    let sub = event(
        "stripe",
        "customer.subscription.updated",
        "evt_2",
        &json!({"data": {"object": {"id": "sub_1", "customer": "cus_9", "status": "active",
            "items": {"data": [{"price": {"id": "price_pro"}}]}}}}),
    );
    assert_eq!(
        call(&h, &stripe, Limits::default(), &sub).await.outcome,
        Outcome::Ok
    );
    let ns = h.runtime.kv().namespace("stripe-billing").expect("ns");
    let get = |k: &str| {
        ns.get(k)
            .expect("get")
            .map(|v| String::from_utf8(v).expect("utf8"))
    };
    assert_eq!(get("customer/cus_9/paid_invoices").as_deref(), Some("1"));
    assert_eq!(get("customer/cus_9/last_invoice").as_deref(), Some("in_1"));
    let state: serde_json::Value =
        serde_json::from_str(&get("customer/cus_9").expect("state")).expect("json");
    assert_eq!(state["status"], "active");
    assert_eq!(state["plan"], "price_pro");
}

#[tokio::test]
async fn incompatible_and_broken_files_are_refused_with_clear_errors() {
    let h = Harness::new();
    let load = |name: &'static str, bytes: Vec<u8>| {
        let rt = h.runtime.clone();
        async move { rt.load(name, bytes).await.expect_err("must be refused") }
    };

    let e = load("incompatible", wasm("incompatible")).await;
    assert!(matches!(e, LoadError::IncompatibleContract { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("hookhost:plugin@0.2.0") && msg.contains("hookhost:plugin@0.1.0"),
        "{msg}"
    );

    let e = load("garbage", b"this is not wasm at all".to_vec()).await;
    assert!(matches!(e, LoadError::NotAComponent(_)), "{e:?}");

    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let e = load("core", core_module).await;
    assert!(e.to_string().contains("core WebAssembly module"), "{e}");

    let mut truncated = wasm("echo");
    truncated.truncate(truncated.len() / 2);
    let e = load("truncated", truncated).await;
    assert!(matches!(e, LoadError::Compile(_)), "{e:?}");

    let e = load("Bad/Name", wasm("echo")).await;
    assert!(matches!(e, LoadError::InvalidName(_)), "{e:?}");

    // The host is unharmed: a good plugin still loads and runs.
    let echo = h.load("echo").await;
    assert_eq!(
        call(&h, &echo, Limits::default(), &ping()).await.outcome,
        Outcome::Ok
    );
}

#[tokio::test]
async fn compiled_artifacts_are_cached_and_damaged_ones_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    let first = hookhost_tests::runtime_in(dir.path(), KvLimits::default());
    let echo = first.load("echo", wasm("echo")).await.expect("load");
    let artifact = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&echo.sha256))
        })
        .expect("an artifact named after the wasm's sha256");
    let modified = std::fs::metadata(&artifact)
        .expect("meta")
        .modified()
        .expect("mtime");
    drop((echo, first));

    // A restart (a new runtime on the same data dir) loads from the cache
    // and does not rewrite the artifact...
    let again = hookhost_tests::runtime_in(dir.path(), KvLimits::default());
    let echo = again.load("echo", wasm("echo")).await.expect("cached load");
    assert_eq!(
        std::fs::metadata(&artifact)
            .expect("meta")
            .modified()
            .expect("mtime"),
        modified
    );
    assert_eq!(
        again
            .invoke(&echo, &CallSettings::default(), &ping())
            .await
            .outcome,
        Outcome::Ok
    );

    // ...and a damaged artifact is recompiled, not trusted.
    std::fs::write(&artifact, b"damaged").expect("damage");
    let echo = again.load("echo", wasm("echo")).await.expect("recompiled");
    assert_eq!(
        again
            .invoke(&echo, &CallSettings::default(), &ping())
            .await
            .outcome,
        Outcome::Ok
    );
    assert!(
        std::fs::metadata(&artifact).expect("meta").len() > 1000,
        "artifact rewritten"
    );
}

#[tokio::test]
async fn plugins_have_no_file_system_environment_or_network() {
    // Something to find if the sandbox leaked: the host's own environment,
    // and a port that accepts connections.
    assert!(std::env::vars().count() > 0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let h = Harness::new();
    let probe = h.load("sandbox-probe").await;
    let mut grants = Grants::default();
    grants.config.insert("port".into(), port.to_string());
    let s = CallSettings {
        limits: Limits::default(),
        grants: Arc::new(grants),
        warm: None,
    };
    let r = h.runtime.invoke(&probe, &s, &ping()).await;
    assert_eq!(r.outcome, Outcome::Ok);
    let f = logged(&r, "probe");
    for key in ["fs_root", "fs_file", "fs_cwd", "tcp", "udp"] {
        assert_eq!(field(f, key), "denied", "{key}: {f:?}");
    }
    assert_eq!(field(f, "env_vars"), "0");
}
