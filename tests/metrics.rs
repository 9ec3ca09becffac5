//! `GET /metrics` over real HTTP against the real server, with plugins built
//! from `plugins/`: known traffic (good, duplicate, badly signed, unknown
//! source, wrong method, unknown route) and deliveries that succeed, retry,
//! reject, trap and trip a breaker, plus a plugin file that fails to load;
//! then the Prometheus text is parsed and every counter checked exactly.
//! `/metrics` needs the admin token like every admin route.

use hookhost_tests::server::{
    github_headers, install_plugin, plugin_setup, poll_until, Answer, HttpClient, TestServer,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const SECRET: &str = "metrics-test-secret";
const TOKEN: &str = "metrics-test-token-0123456789";

/// Backoffs of tens of milliseconds, so retries settle at once.
const FAST_RETRIES: &str = "backoff_base_ms = 20\nbackoff_max_ms = 60";

/// One sample: its labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: the samples and each family's `# TYPE`.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
}

impl Scrape {
    /// Parse the text format (version 0.0.4): `# HELP`/`# TYPE` lines and
    /// `name{label="value",…} value` samples, label values with `\\`, `\"`
    /// and `\n` escapes. Panics, naming the line, on anything else.
    fn parse(text: &str) -> Self {
        let mut scrape = Scrape {
            samples: Vec::new(),
            types: BTreeMap::new(),
            helps: BTreeMap::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(line);
                scrape.types.insert(name.into(), kind.into());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect(line);
                scrape.helps.insert(name.into(), help.into());
            } else {
                scrape.samples.push(parse_sample(line));
            }
        }
        scrape
    }

    /// The value of the sample `name` with exactly these labels (none
    /// missing, none extra); panics if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .unwrap_or_else(|| panic!("no sample {name}{want:?}"))
            .value
    }

    /// Every sample named `name`.
    fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (name, value) = line.split_once(' ').expect(line);
            return Sample {
                name: name.into(),
                labels: BTreeMap::new(),
                value: parse_value(value, line),
            };
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').to_owned();
        if key.starts_with('}') || key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} in {line}");
        let mut value = String::new();
        loop {
            match chars.next().expect(line) {
                '\\' => match chars.next().expect(line) {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match chars.next().expect(line) {
            ',' => {}
            '}' => break,
            c => panic!("{c:?} after a label in {line}"),
        }
    }
    let value: String = chars.collect();
    Sample {
        name: name.into(),
        labels,
        value: parse_value(value.trim(), line),
    }
}

fn parse_value(v: &str, line: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("value {v:?} in {line}")),
    }
}

/// `GET path` on the admin listener with this `Authorization` value.
async fn get_with(c: &HttpClient, admin: SocketAddr, path: &str, auth: Option<&str>) -> Answer {
    let headers: Vec<(String, Vec<u8>)> = auth
        .map(|v| vec![("authorization".to_string(), v.as_bytes().to_vec())])
        .unwrap_or_default();
    c.send("GET", admin, path, &headers, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Send a GitHub delivery signed with `secret`; the status.
async fn send(
    c: &HttpClient,
    ingest: SocketAddr,
    source: &str,
    secret: &str,
    delivery: &str,
    kind: &str,
) -> u16 {
    let body = b"{}".to_vec();
    let h = github_headers(secret, delivery, kind, &body);
    c.webhook(ingest, source, &h, body)
        .await
        .expect("send")
        .status
}

#[tokio::test]
async fn metrics_count_known_traffic_exactly() {
    let plugins = format!(
        "[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{SECRET}\"]\n\
         [plugin.flaky]\nsubscribe = [\"github:push\"]\nbreaker_failures = 100\n{FAST_RETRIES}\n\
         [plugin.reject-all]\nsubscribe = [\"github:issues\"]\n\
         [plugin.panicker]\nsubscribe = [\"github:panic\"]\nmax_attempts = 2\n\
         breaker_failures = 2\nbreaker_cooldown_ms = 600000\n{FAST_RETRIES}\n"
    );
    let (dir, config) = plugin_setup(
        &[
            ("echo", "echo"),
            ("flaky", "flaky"),
            ("reject-all", "reject-all"),
            ("panicker", "panicker"),
        ],
        &format!("admin_token = \"{TOKEN}\"\nworkers = 3"),
        &plugins,
    );
    // A file that never loads: a load failure and a broken plugin.
    install_plugin(dir.path(), "incompatible", "broken");
    let server = TestServer::start(&config).await;
    let c = HttpClient::new();
    let (ingest, admin) = (server.ingest, server.admin);

    // The token rule: none and a wrong one are refused.
    let a = get_with(&c, admin, "/metrics", None).await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    let a = get_with(&c, admin, "/metrics", Some("Bearer not-the-token")).await;
    assert_eq!(a.status, 401, "{:?}", a.body);

    // Five events (three pushes, one issue, one panic), a duplicate, a bad
    // signature, an unknown source, a wrong method, an unknown route.
    for (delivery, kind) in [
        ("p-1", "push"),
        ("p-2", "push"),
        ("p-3", "push"),
        ("i-1", "issues"),
        ("x-1", "panic"),
        ("p-1", "push"),
    ] {
        assert_eq!(
            send(&c, ingest, "github", SECRET, delivery, kind).await,
            200
        );
    }
    assert_eq!(
        send(&c, ingest, "github", "wrong", "b-1", "push").await,
        401
    );
    assert_eq!(send(&c, ingest, "nope", SECRET, "u-1", "push").await, 404);
    let a = c.get(ingest, "/webhooks/github").await.expect("GET");
    assert_eq!(a.status, 405);
    let a = c.get(ingest, "/elsewhere").await.expect("GET");
    assert_eq!(a.status, 404);

    // Settled: echo 5 + flaky 3 done, reject-all and panicker dead.
    let auth = format!("Bearer {TOKEN}");
    poll_until(
        "deliveries to settle",
        || async {
            get_with(&c, admin, "/admin/stats", Some(&auth))
                .await
                .json()
        },
        |s| {
            s["delivered"] == 8 && s["dead_letters"] == 2 && s["queued"] == 0 && s["in_flight"] == 0
        },
    )
    .await;

    let a = get_with(&c, admin, "/metrics", Some(&auth)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let content_type = a
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = String::from_utf8(a.body.to_vec()).expect("utf-8");
    let m = Scrape::parse(&text);

    // Every sample belongs to a family with a type and a help text.
    for s in &m.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                s.name
                    .strip_suffix(suffix)
                    .filter(|f| m.types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&s.name);
        assert!(m.types.contains_key(family), "no TYPE for {}", s.name);
        assert!(m.helps.contains_key(family), "no HELP for {}", s.name);
    }

    // Ingest, by source and status.
    let requests = |source: &str, status: &str| {
        m.value(
            "hookhost_ingest_requests_total",
            &[("source", source), ("status", status)],
        )
    };
    assert_eq!(requests("github", "200"), 6.0);
    assert_eq!(requests("github", "401"), 1.0);
    assert_eq!(requests("github", "405"), 1.0);
    assert_eq!(requests("github", "404"), 0.0);
    assert_eq!(requests("(unknown)", "404"), 2.0);
    assert_eq!(requests("(unknown)", "200"), 0.0);
    let total: f64 = m
        .all("hookhost_ingest_requests_total")
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 10.0, "every answer counted once");
    assert_eq!(m.types["hookhost_ingest_requests_total"], "counter");

    // Acknowledgement latency: one observation per 200.
    assert_eq!(m.types["hookhost_ingest_ack_seconds"], "histogram");
    assert_eq!(m.value("hookhost_ingest_ack_seconds_count", &[]), 6.0);
    assert_eq!(
        m.value("hookhost_ingest_ack_seconds_bucket", &[("le", "+Inf")]),
        6.0
    );
    let ack_sum = m.value("hookhost_ingest_ack_seconds_sum", &[]);
    assert!(ack_sum > 0.0 && ack_sum < 60.0, "{ack_sum}");

    // Attempts by plugin and outcome; every other outcome is zero.
    let expected_attempts: &[(&str, &str, f64)] = &[
        ("echo", "ok", 5.0),
        ("flaky", "retry", 6.0),
        ("flaky", "ok", 3.0),
        ("reject-all", "reject", 1.0),
        ("panicker", "trap_panic", 2.0),
    ];
    for s in m.all("hookhost_delivery_attempts_total") {
        let (plugin, outcome) = (&s.labels["plugin"], &s.labels["outcome"]);
        let want = expected_attempts
            .iter()
            .find(|(p, o, _)| p == plugin && o == outcome)
            .map_or(0.0, |e| e.2);
        assert_eq!(s.value, want, "attempts of {plugin} ending {outcome}");
    }
    for (plugin, outcome, n) in expected_attempts {
        let got = m.value(
            "hookhost_delivery_attempts_total",
            &[("plugin", plugin), ("outcome", outcome)],
        );
        assert_eq!(got, *n, "{plugin} {outcome}");
    }
    assert_eq!(
        m.all("hookhost_delivery_attempts_total").len(),
        4 * 9,
        "nine outcomes for each plugin that ran"
    );

    // What the attempts led to.
    let results = |plugin: &str, result: &str| {
        m.value(
            "hookhost_delivery_results_total",
            &[("plugin", plugin), ("result", result)],
        )
    };
    for (plugin, done, retry, dead) in [
        ("echo", 5.0, 0.0, 0.0),
        ("flaky", 3.0, 6.0, 0.0),
        ("reject-all", 0.0, 0.0, 1.0),
        ("panicker", 0.0, 1.0, 1.0),
    ] {
        assert_eq!(results(plugin, "done"), done, "{plugin} done");
        assert_eq!(results(plugin, "retry_scheduled"), retry, "{plugin} retry");
        assert_eq!(results(plugin, "dead_lettered"), dead, "{plugin} dead");
    }

    // Duration and fuel: one observation per attempt, fuel spent.
    for (plugin, n) in [
        ("echo", 5.0),
        ("flaky", 9.0),
        ("reject-all", 1.0),
        ("panicker", 2.0),
    ] {
        let p = [("plugin", plugin)];
        for h in [
            "hookhost_delivery_attempt_duration_seconds",
            "hookhost_delivery_attempt_fuel",
        ] {
            assert_eq!(m.types[h], "histogram");
            assert_eq!(m.value(&format!("{h}_count"), &p), n, "{h} {plugin}");
            assert_eq!(
                m.value(
                    &format!("{h}_bucket"),
                    &[("plugin", plugin), ("le", "+Inf")]
                ),
                n,
                "{h} {plugin}"
            );
            assert!(m.value(&format!("{h}_sum"), &p) > 0.0, "{h} {plugin}");
        }
    }

    // State read at scrape time.
    for (name, want) in [
        ("hookhost_delivery_queue_depth", 0.0),
        ("hookhost_delivery_in_flight", 0.0),
        ("hookhost_dead_letters", 2.0),
        ("hookhost_events_stored", 5.0),
        ("hookhost_delivered_total", 8.0),
        ("hookhost_workers", 3.0),
    ] {
        assert_eq!(m.value(name, &[]), want, "{name}");
    }
    assert_eq!(m.types["hookhost_dead_letters"], "gauge");
    assert_eq!(m.types["hookhost_delivered_total"], "counter");
    for plugin in ["echo", "flaky", "reject-all", "panicker"] {
        let p = [("plugin", plugin)];
        assert_eq!(m.value("hookhost_plugin_queue_depth", &p), 0.0, "{plugin}");
        assert_eq!(m.value("hookhost_plugin_in_flight", &p), 0.0, "{plugin}");
        assert_eq!(m.value("hookhost_plugin_loads_total", &p), 1.0, "{plugin}");
        assert_eq!(
            m.value("hookhost_plugin_load_failures_total", &p),
            0.0,
            "{plugin}"
        );
        let state = |s: &str| m.value("hookhost_plugin_state", &[("plugin", plugin), ("state", s)]);
        assert_eq!(
            (
                state("active"),
                state("paused"),
                state("broken"),
                state("removed")
            ),
            (1.0, 0.0, 0.0, 0.0),
            "{plugin}"
        );
    }
    // Two consecutive panics opened panicker's breaker; the others are closed.
    let breaker = |plugin: &str, state: &str| {
        m.value(
            "hookhost_plugin_breaker_state",
            &[("plugin", plugin), ("state", state)],
        )
    };
    for plugin in ["echo", "flaky", "reject-all"] {
        assert_eq!(
            (
                breaker(plugin, "closed"),
                breaker(plugin, "half_open"),
                breaker(plugin, "open")
            ),
            (1.0, 0.0, 0.0),
            "{plugin}"
        );
    }
    assert_eq!(
        (
            breaker("panicker", "closed"),
            breaker("panicker", "half_open"),
            breaker("panicker", "open")
        ),
        (0.0, 0.0, 1.0)
    );
    // The file that never loaded.
    let broken = [("plugin", "broken")];
    assert_eq!(m.value("hookhost_plugin_loads_total", &broken), 0.0);
    assert_eq!(m.value("hookhost_plugin_load_failures_total", &broken), 1.0);
    assert_eq!(
        m.value(
            "hookhost_plugin_state",
            &[("plugin", "broken"), ("state", "broken")]
        ),
        1.0
    );
    assert!(
        !text.contains(TOKEN) && !text.contains(SECRET),
        "the scrape leaks a secret"
    );

    server.stop().await.expect("stop");
}
