//! The same plugins written in Rust, Python and JavaScript, run through the
//! real server side by side and held to literally the same checks: signed
//! GitHub webhooks in, effects read back only through the admin API.
//!
//! One server loads every language's `github-issues`, `echo` and `flaky`
//! (twice: once failing with `Retry`, once with an uncaught exception), so
//! each interpreted component compiles once (and, with the shared artifact
//! cache, once per machine). Every plugin sees the same events; then
//! [`check_language`] runs once per [`Lang`]: the kv counters, the `counted`
//! log line, a reject that dead-letters at once, retries until success, and
//! a crash that traps until its attempts run out. The fuel and time per call
//! of each language are printed (not asserted) for a small body and a 1 MiB
//! one.

use hookhost_tests::server::{
    admin_json, github_headers, kv_entries, plugin_setup, poll_until, HttpClient, TestServer,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "languages-test-secret";

/// First readiness compiles every plugin before `/readyz` says 200: three
/// Python components take about 23 s each uncached on two cores, the
/// JavaScript ones about 5 s. Generous, since the machine is shared.
const READY_WITHIN: Duration = Duration::from_secs(240);

/// One language's versions of the plugins.
struct Lang {
    /// In plugin names and failure messages: `rust`, `py`, `js`.
    name: &'static str,
    /// What the folder of a plugin in `plugins/` ends with: `echo`,
    /// `echo-py`, `echo-js`.
    suffix: &'static str,
    /// The exception type the SDK's crash line names when `flaky` with
    /// `fail_with = "exception"` raises; `None`: the SDK writes no line (a
    /// Rust panic's message goes to stderr, which a plugin does not have).
    exception: Option<&'static str>,
}

const LANGS: [Lang; 3] = [
    Lang {
        name: "rust",
        suffix: "",
        exception: None,
    },
    Lang {
        name: "py",
        suffix: "-py",
        exception: Some("ValueError"),
    },
    Lang {
        name: "js",
        suffix: "-js",
        exception: Some("Error"),
    },
];

/// Each plugin installed per language: (folder in `plugins/` without the
/// language suffix, role). The plugin's name is `ROLE-LANG`.
const ROLES: [(&str, &str); 4] = [
    ("github-issues", "gh"),
    ("echo", "echo"),
    ("flaky", "flaky"),
    ("flaky", "crash"),
];

impl Lang {
    /// The installed plugin playing `role`.
    fn plugin(&self, role: &str) -> String {
        format!("{role}-{}", self.name)
    }
}

/// Per-plugin settings: counting plugins run one call at a time (kv
/// `increment` reads then writes), retries are tens of milliseconds apart,
/// `flaky` and `crash` each get their own kind of event. `github-issues`
/// gets two attempts, so a reject that came out as a retry fails the checks
/// at once instead of keeping the delivery queued. `flaky` and `crash` run
/// in warm mode: the same checks then hold for a reused instance (retries
/// keep it) and for one that traps (never reused).
fn plugin_tables(lang: &Lang) -> String {
    let fast = "backoff_base_ms = 20\nbackoff_max_ms = 60";
    let l = lang.name;
    format!(
        "[plugin.gh-{l}]\nconcurrency = 1\nmax_attempts = 2\n{fast}\n\n\
         [plugin.echo-{l}]\nconcurrency = 1\n\n\
         [plugin.flaky-{l}]\nconcurrency = 1\nwarm = true\nsubscribe = [\"github:check_run.*\"]\n{fast}\n\n\
         [plugin.crash-{l}]\nmax_attempts = 2\nwarm = true\nsubscribe = [\"github:deployment.*\"]\n\
         config = {{ fail_with = \"exception\" }}\n{fast}\n"
    )
}

/// The events every language's plugins saw, by hookhost event id.
struct Sent {
    /// `issues.closed` for `octo/hello`: the first of its kind.
    closed: String,
    /// `push`: no `github-issues` subscribes to it.
    push: String,
    /// `issues.opened` without a repository: `github-issues` rejects it.
    no_repo: String,
    /// `check_run.rerequested`: for `flaky`.
    flaky: String,
    /// `deployment.created`: for `crash`.
    crash: String,
    /// All of them, in the order sent.
    all: Vec<String>,
}

/// How many events [`send_all`] sends.
const EVENTS: u64 = 8;

/// Send a signed GitHub delivery; its hookhost event id.
async fn send(
    c: &HttpClient,
    ingest: SocketAddr,
    delivery: &str,
    event: &str,
    body: &Value,
) -> String {
    let body = serde_json::to_vec(body).expect("json");
    let headers = github_headers(SECRET, delivery, event, &body);
    let a = c
        .webhook(ingest, "github", &headers, body)
        .await
        .expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.json()["event_id"].as_str().expect("event_id").to_owned()
}

async fn send_all(c: &HttpClient, ingest: SocketAddr) -> Sent {
    let repo = json!({ "full_name": "octo/hello", "name": "hello" });
    let issue = |n: u64, action: &str| json!({ "action": action, "issue": { "number": n }, "repository": repo });
    let opened = [
        send(c, ingest, "d-1", "issues", &issue(1, "opened")).await,
        send(c, ingest, "d-2", "issues", &issue(2, "opened")).await,
    ];
    let closed = send(c, ingest, "d-3", "issues", &issue(1, "closed")).await;
    let pr = json!({ "action": "opened", "pull_request": { "number": 3 }, "repository": repo });
    let pr = send(c, ingest, "d-4", "pull_request", &pr).await;
    let push = json!({ "ref": "refs/heads/main", "repository": repo });
    let push = send(c, ingest, "d-5", "push", &push).await;
    let orphan = json!({ "action": "opened", "issue": { "number": 4 } });
    let no_repo = send(c, ingest, "d-6", "issues", &orphan).await;
    let check = json!({ "action": "rerequested", "repository": repo });
    let flaky = send(c, ingest, "d-7", "check_run", &check).await;
    let deploy = json!({ "action": "created", "repository": repo });
    let crash = send(c, ingest, "d-8", "deployment", &deploy).await;
    let mut all = opened.to_vec();
    all.extend([&closed, &pr, &push, &no_repo, &flaky, &crash].map(String::clone));
    assert_eq!(all.len() as u64, EVENTS);
    Sent {
        closed,
        push,
        no_repo,
        flaky,
        crash,
        all,
    }
}

/// Wait until nothing is queued or running, `delivered` reached
/// `delivered` and `dead_letters` is `dead`.
async fn settle(c: &HttpClient, admin: SocketAddr, delivered: u64, dead: u64) {
    poll_until(
        &format!("{delivered} deliveries done and {dead} dead letters"),
        || admin_json(c, admin, "/admin/stats"),
        |s| {
            s["delivered"].as_u64() >= Some(delivered)
                && s["dead_letters"] == dead
                && s["queued"] == 0
                && s["in_flight"] == 0
        },
    )
    .await;
}

/// `GET /admin/events/{id}`: the event with its deliveries and attempts.
async fn event_detail(c: &HttpClient, admin: SocketAddr, id: &str) -> Value {
    admin_json(c, admin, &format!("/admin/events/{id}")).await
}

/// The delivery of `plugin` in an event's detail, if there is one.
fn delivery<'a>(event: &'a Value, plugin: &str) -> Option<&'a Value> {
    event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["plugin"] == plugin)
}

fn attempts(d: &Value) -> &[Value] {
    d["attempts"].as_array().expect("attempts")
}

fn outcomes(d: &Value) -> Vec<&str> {
    attempts(d)
        .iter()
        .map(|a| a["outcome"].as_str().expect("outcome"))
        .collect()
}

/// The log lines of an attempt as (level, message, fields).
fn logs(attempt: &Value) -> Vec<(String, String, BTreeMap<String, String>)> {
    attempt["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            let fields = l["fields"]
                .as_object()
                .expect("fields")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("field value").to_owned()))
                .collect();
            let text = |k: &str| l[k].as_str().expect(k).to_owned();
            (text("level"), text("message"), fields)
        })
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The one dead letter of `plugin` (failing the check of language `l`
/// unless there is exactly one).
async fn only_dead_letter(c: &HttpClient, admin: SocketAddr, plugin: &str, l: &str) -> Value {
    let dead = admin_json(c, admin, &format!("/admin/dead-letters?plugin={plugin}")).await;
    let dead = dead["dead_letters"].as_array().expect("dead_letters");
    assert_eq!(dead.len(), 1, "{l}: {dead:#?}");
    dead[0].clone()
}

/// Every check, the same for each language.
async fn check_language(c: &HttpClient, admin: SocketAddr, lang: &Lang, sent: &Sent) {
    let l = lang.name;
    let event = |id| event_detail(c, admin, id);

    // github-issues: the same counters in every language; the push and the
    // rejected event counted nowhere.
    let gh = lang.plugin("gh");
    let expected = fields(&[
        ("repo/octo/hello/issues.closed", "1"),
        ("repo/octo/hello/issues.opened", "2"),
        ("repo/octo/hello/open_issues", "1"),
        ("repo/octo/hello/open_pulls", "1"),
        ("repo/octo/hello/pull_request.opened", "1"),
    ]);
    assert_eq!(
        kv_entries(c, admin, &gh, "").await,
        expected,
        "{l}: {gh}'s kv"
    );

    let closed = event(&sent.closed).await;
    let d = delivery(&closed, &gh).unwrap_or_else(|| panic!("{l}: no {gh} delivery: {closed:#}"));
    assert_eq!(
        (&d["state"], outcomes(d)),
        (&json!("done"), vec!["ok"]),
        "{l}: {d:#}"
    );
    let counted = fields(&[
        ("repo", "octo/hello"),
        ("kind", "issues.closed"),
        ("count", "1"),
    ]);
    assert_eq!(
        logs(&attempts(d)[0]),
        [("info".to_owned(), "counted".to_owned(), counted)],
        "{l}: {gh}'s log of issues.closed"
    );
    let push = event(&sent.push).await;
    assert!(
        delivery(&push, &gh).is_none(),
        "{l}: {gh} does not subscribe to push: {push:#}"
    );

    // A payload without repository.full_name: rejected at attempt 1, dead.
    let reject_message = "no repository.full_name in payload";
    let no_repo = event(&sent.no_repo).await;
    let d = delivery(&no_repo, &gh).unwrap_or_else(|| panic!("{l}: no {gh} delivery: {no_repo:#}"));
    assert_eq!(
        (&d["state"], outcomes(d)),
        (&json!("dead"), vec!["reject"]),
        "{l}: {d:#}"
    );
    assert_eq!(attempts(d)[0]["error"], reject_message, "{l}: {d:#}");
    let dead = only_dead_letter(c, admin, &gh, l).await;
    assert_eq!(
        (&dead["event_id"], &dead["reason"], &dead["attempts"]),
        (&json!(sent.no_repo), &json!("rejected"), &json!(1)),
        "{l}: {dead:#}"
    );
    assert_eq!(dead["last_error"], reject_message, "{l}");

    // echo: one count per event, by source and kind.
    let echo = lang.plugin("echo");
    let expected = fields(&[
        ("count/github:check_run.rerequested", "1"),
        ("count/github:deployment.created", "1"),
        ("count/github:issues.closed", "1"),
        ("count/github:issues.opened", "3"),
        ("count/github:pull_request.opened", "1"),
        ("count/github:push", "1"),
    ]);
    assert_eq!(
        kv_entries(c, admin, &echo, "").await,
        expected,
        "{l}: {echo}'s kv"
    );

    // flaky: Retry twice, each recorded with its message, then success.
    let flaky = lang.plugin("flaky");
    let ev = event(&sent.flaky).await;
    let d = delivery(&ev, &flaky).unwrap_or_else(|| panic!("{l}: no {flaky} delivery: {ev:#}"));
    assert_eq!(
        (&d["state"], outcomes(d)),
        (&json!("done"), vec!["retry", "retry", "ok"]),
        "{l}: {d:#}"
    );
    for (i, a) in attempts(d).iter().enumerate() {
        let n = (i + 1).to_string();
        assert_eq!(a["attempt"], i + 1, "{l}: {d:#}");
        let (error, line) = if i < 2 {
            let failing = fields(&[("attempt", &n), ("succeed_at", "3")]);
            (
                json!(format!("flaky: attempt {n} of 3")),
                ("failing on purpose", failing),
            )
        } else {
            (Value::Null, ("succeeded", fields(&[("attempt", &n)])))
        };
        assert_eq!(a["error"], error, "{l}: attempt {n} of {flaky}: {a:#}");
        assert_eq!(
            logs(a),
            [("info".to_owned(), line.0.to_owned(), line.1)],
            "{l}: attempt {n} of {flaky}"
        );
    }
    assert_eq!(
        kv_entries(c, admin, &flaky, "").await,
        fields(&[("succeeded", "1")]),
        "{l}: {flaky}'s kv"
    );
    let warm = |p: Value| (p["warm"]["max_calls"].clone(), p["warm_instances"].clone());
    assert_eq!(
        warm(admin_json(c, admin, &format!("/admin/plugins/{flaky}")).await),
        (json!(1000), json!(1)),
        "{l}: {flaky} ended cleanly, so its warm instance is kept"
    );

    // crash: an uncaught exception (a panic in Rust) traps every attempt;
    // the SDK leaves one error line naming it; dead after max_attempts.
    let crash = lang.plugin("crash");
    let ev = event(&sent.crash).await;
    let d = delivery(&ev, &crash).unwrap_or_else(|| panic!("{l}: no {crash} delivery: {ev:#}"));
    assert_eq!(
        (&d["state"], outcomes(d)),
        (&json!("dead"), vec!["trap", "trap"]),
        "{l}: {d:#}"
    );
    for (i, a) in attempts(d).iter().enumerate() {
        let n = (i + 1).to_string();
        assert_eq!(a["trap"], "panic", "{l}: attempt {n} of {crash}: {a:#}");
        let lines = logs(a);
        let failing = fields(&[("attempt", &n), ("succeed_at", "3")]);
        assert_eq!(
            lines.first(),
            Some(&("info".to_owned(), "failing on purpose".to_owned(), failing)),
            "{l}: attempt {n} of {crash}"
        );
        let errors: Vec<_> = lines
            .iter()
            .filter(|(level, ..)| level == "error")
            .collect();
        match lang.exception {
            Some(ty) => {
                let named = format!("{ty}: flaky: attempt {n} of 3");
                assert!(
                    errors.len() == 1
                        && errors[0].1 == "unhandled exception"
                        && errors[0].2.get("error").is_some_and(|e| e.starts_with(&named)),
                    "{l}: attempt {n} of {crash} should log one error line naming {named:?}: {lines:#?}"
                );
            }
            None => assert!(errors.is_empty(), "{l}: {lines:#?}"),
        }
        assert_eq!(lines.len(), 1 + errors.len(), "{l}: {lines:#?}");
    }
    let dead = only_dead_letter(c, admin, &crash, l).await;
    assert_eq!(
        (&dead["event_id"], &dead["reason"], &dead["attempts"]),
        (&json!(sent.crash), &json!("attempts_exhausted"), &json!(2)),
        "{l}: {dead:#}"
    );
    assert!(
        kv_entries(c, admin, &crash, "").await.is_empty(),
        "{l}: {crash} never got past the exception"
    );
    assert_eq!(
        warm(admin_json(c, admin, &format!("/admin/plugins/{crash}")).await),
        (json!(1000), json!(0)),
        "{l}: {crash} trapped, so no instance of it is kept"
    );
}

/// Fuel and time of `plugin`'s successful calls among `events`, for the
/// report: fuel (one value when every call spent the same) and the
/// fastest and median duration.
fn cost(events: &[Value], plugin: &str) -> String {
    let mut calls: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| delivery(e, plugin))
        .flat_map(attempts)
        .filter(|a| a["outcome"] == "ok")
        .map(|a| {
            let n = |k: &str| a[k].as_u64().unwrap_or(0);
            (n("fuel_used"), n("duration_us"))
        })
        .collect();
    if calls.is_empty() {
        return "no successful call".to_owned();
    }
    let (lo, hi) = calls
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), c| (lo.min(c.0), hi.max(c.0)));
    let fuel = if lo == hi {
        format!("{lo}")
    } else {
        format!("{lo}-{hi}")
    };
    calls.sort_by_key(|c| c.1);
    format!(
        "{} call(s): fuel {fuel}; {} µs fastest, {} µs median",
        calls.len(),
        calls[0].1,
        calls[calls.len() / 2].1
    )
}

/// Report only (nothing asserted): what a call costs each language on the
/// small events already sent and on a ~1 MiB issue, printed for the test's
/// output (`--nocapture`).
async fn report_costs(c: &HttpClient, server: &TestServer, sent: &Sent) {
    let item = json!({ "id": 123456, "body": "x".repeat(100), "labels": ["bug", "help wanted"] });
    let per_item = serde_json::to_vec(&item).expect("json").len() + 1;
    let items: Vec<Value> = (0..(1 << 20) / per_item).map(|_| item.clone()).collect();
    let big = json!({
        "action": "opened",
        "issue": { "number": 5, "comments": items },
        "repository": { "full_name": "octo/big" },
    });
    let big_len = serde_json::to_vec(&big).expect("json").len();
    let big = send(c, server.ingest, "d-big", "issues", &big).await;
    // Whatever the outcome, every delivery of it made its first attempt.
    // (The event is stored just after ingest answers: a 404 first is fine.)
    let big_path = format!("/admin/events/{big}");
    let big = poll_until(
        "the first attempts at the 1 MiB event",
        || async {
            let a = c.get(server.admin, &big_path).await.expect("GET event");
            serde_json::from_slice(&a.body).unwrap_or(Value::Null)
        },
        |e| {
            e["deliveries"].as_array().is_some_and(|ds| {
                ds.len() == 2 * LANGS.len() && ds.iter().all(|d| !attempts(d).is_empty())
            })
        },
    )
    .await;
    let mut small = Vec::new();
    for id in &sent.all {
        small.push(event_detail(c, server.admin, id).await);
    }
    eprintln!("cost per call (default budget: 5 G fuel a call):");
    for lang in &LANGS {
        for role in ["gh", "echo"] {
            let plugin = lang.plugin(role);
            eprintln!("  {plugin:<10} small events   {}", cost(&small, &plugin));
            eprintln!(
                "  {plugin:<10} {big_len} B event {}",
                cost(std::slice::from_ref(&big), &plugin)
            );
            if let Some(d) = delivery(&big, &plugin) {
                if d["state"] != "done" {
                    eprintln!("  {plugin:<10} {big_len} B event: {:#}", attempts(d)[0]);
                }
            }
        }
    }
}

#[tokio::test]
async fn every_language_has_the_same_effects_through_the_real_server() {
    let mut plugins = Vec::new();
    for lang in &LANGS {
        for (folder, role) in ROLES {
            plugins.push((format!("{folder}{}", lang.suffix), lang.plugin(role)));
        }
    }
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(f, n)| (f.as_str(), n.as_str()))
        .collect();
    let tables: String = LANGS.iter().map(plugin_tables).collect();
    // Bodies up to 2 MiB, for the 1 MiB measurement.
    let source = format!(
        "[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]\n\
         max_body_bytes = 2097152\n\n{tables}"
    );
    let (dir, config) = plugin_setup(&plugins, "", &source);
    hookhost_tests::use_shared_artifact_cache(&dir.path().join("data"));
    let started = Instant::now();
    let server = TestServer::start_within(&config, READY_WITHIN).await;
    eprintln!("ready after {:?}", started.elapsed());
    let c = HttpClient::new();

    let sent = send_all(&c, server.ingest).await;
    // Per language: github-issues 4 done + 1 dead, echo 8 done, flaky 1
    // done, crash 1 dead.
    let langs = LANGS.len() as u64;
    settle(&c, server.admin, langs * (4 + EVENTS + 1), langs * 2).await;
    for lang in &LANGS {
        check_language(&c, server.admin, lang, &sent).await;
    }

    report_costs(&c, &server, &sent).await;
    server.stop().await.expect("stop");
}
