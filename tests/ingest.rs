//! Ingest over real HTTP against the real server on port 0: every row of the
//! contract's status table, JSON errors for bad paths and unknown routes,
//! dedupe, split and its cap, the headers kept with an event, clients that
//! stall or trickle, `Expect: 100-continue`, readiness when the journal
//! fails, durability across a drain, a torn journal tail, and a SIGKILL in
//! the middle of a burst.

use hookhost_tests::server::{
    github_headers, hmac_sha256, now_s, parse_raw_answer, read_until_closed, standard_headers,
    write_config, ChildServer, HttpClient, TestServer,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const HMAC_SECRET: &str = "s3cret";
/// The Standard Webhooks test vector's key, base64-decoded.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const CONFIG: &str = r#"
[server]
data_dir = "{data}"
trusted_proxies = ["127.0.0.1/32"]

[[source]]
name = "github"
scheme = "github"
secrets = ["It's a Secret to Everybody"]

[[source]]
name = "std"
scheme = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[source]]
name = "stripe"
scheme = "stripe"
secrets = ["whsec_stripe_test"]

[[source]]
name = "small"
scheme = "hmac"
secrets = ["s3cret"]
max_body_bytes = 1024

[[source]]
name = "guarded"
scheme = "hmac"
secrets = ["s3cret"]
allow_ips = ["10.0.0.0/8"]

[[source]]
name = "limited"
scheme = "hmac"
secrets = ["s3cret"]
rate_limit_per_s = 2

[[source]]
name = "batch"
scheme = "hmac"
secrets = ["s3cret"]
split = ""

[[source]]
name = "slack"
scheme = "slack"
secrets = ["8f742231b10e8888abcd99yyyzzz85a5"]

[[source]]
name = "custom"
scheme = "hmac"
secrets = ["s3cret"]
id_header = "X-Delivery"
kind_header = "X-Topic"

[[source]]
name = "bulk"
scheme = "hmac"
secrets = ["s3cret"]
max_body_bytes = 8388608
"#;

fn hmac_headers(body: &[u8], id: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let sig = hex::encode(hmac_sha256(HMAC_SECRET.as_bytes(), &[body]));
    let mut h = vec![(
        "x-webhook-signature".to_string(),
        format!("sha256={sig}").into_bytes(),
    )];
    if let Some(id) = id {
        h.push(("x-webhook-id".into(), id.as_bytes().to_vec()));
    }
    h
}

fn standard_key() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(STANDARD_SECRET.trim_start_matches("whsec_"))
        .expect("key")
}

fn assert_error(a: &hookhost_tests::server::Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{:?}", a.body);
    let v = a.json();
    assert_eq!(v["error"], code, "{v}");
    let message = v["message"].as_str().expect("message");
    assert!(!message.is_empty());
    for secret in [GITHUB_SECRET, HMAC_SECRET, STANDARD_SECRET] {
        assert!(
            !message.contains(secret),
            "error message leaks a secret: {message}"
        );
    }
}

/// The event store of a stopped server's data directory.
async fn open_store(dir: &std::path::Path) -> hookhost::store::Store {
    // sled's flusher thread lets go of the file lock up to a flush interval
    // after the server dropped its handles.
    let mut db = None;
    for _ in 0..100 {
        match hookhost::store::open_db(&dir.join("data/db")) {
            Ok(d) => {
                db = Some(d);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let db = db.expect("sled reopens after the server stopped");
    hookhost::store::Store::open(db, None).expect("store")
}

/// A raw request's bytes: `head` lines, then the body as given.
fn raw_request(head: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// The JSON error body of a raw answer, checked for status and code.
fn assert_raw_error(bytes: &[u8], status: u16, code: &str) {
    let (got, head, body) = parse_raw_answer(bytes)
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(bytes)));
    assert_eq!(got, status, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

async fn start() -> (tempfile::TempDir, TestServer, HttpClient) {
    let dir = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(&write_config(dir.path(), CONFIG)).await;
    (dir, server, HttpClient::new())
}

#[tokio::test]
async fn every_row_of_the_status_table() {
    let (_dir, s, c) = start().await;
    let body = br#"{"action":"opened","issue":{"number":1}}"#.to_vec();

    // 200, then 200 duplicate with the original's id.
    let h = github_headers(GITHUB_SECRET, "d-1", "issues", &body);
    let first = c
        .webhook(s.ingest, "github", &h, body.clone())
        .await
        .expect("send");
    assert_eq!(first.status, 200, "{:?}", first.body);
    let v = first.json();
    assert_eq!(v["received"], true);
    assert_eq!(v["duplicate"], false);
    let id = v["event_id"].as_str().expect("event_id").to_owned();
    assert!(id.starts_with("evt_"), "{id}");
    let again = c
        .webhook(s.ingest, "github", &h, body.clone())
        .await
        .expect("send")
        .json();
    assert_eq!(
        (again["duplicate"].clone(), again["event_id"].clone()),
        (true.into(), id.clone().into())
    );
    // The same provider id on another source is another event.
    let other = c
        .webhook(
            s.ingest,
            "small",
            &hmac_headers(&body, Some("d-1")),
            body.clone(),
        )
        .await
        .expect("send");
    assert_eq!(other.json()["duplicate"], false);
    assert_ne!(other.json()["event_id"], id.as_str());

    // 400: missing signature, malformed signature, missing id header, body not JSON where needed.
    let mut no_sig = h.clone();
    no_sig.retain(|(k, _)| k != "x-hub-signature-256");
    assert_error(
        &c.webhook(s.ingest, "github", &no_sig, body.clone())
            .await
            .expect("send"),
        400,
        "missing_signature",
    );
    let mut bad_sig = h.clone();
    bad_sig[0].1 = b"sha256=zz".to_vec();
    assert_error(
        &c.webhook(s.ingest, "github", &bad_sig, body.clone())
            .await
            .expect("send"),
        400,
        "malformed_signature",
    );
    let mut no_delivery = h.clone();
    no_delivery.retain(|(k, _)| k != "x-github-delivery");
    assert_error(
        &c.webhook(s.ingest, "github", &no_delivery, body.clone())
            .await
            .expect("send"),
        400,
        "missing_header",
    );
    let mut std_no_id = standard_headers(&standard_key(), "msg_1", now_s(), &body);
    std_no_id.retain(|(k, _)| k != "webhook-id");
    assert_eq!(
        c.webhook(s.ingest, "std", &std_no_id, body.clone())
            .await
            .expect("send")
            .status,
        400
    );
    let ts = now_s().to_string();
    let not_json = b"<xml/>".to_vec();
    let stripe_sig = hex::encode(hmac_sha256(
        b"whsec_stripe_test",
        &[ts.as_bytes(), b".", &not_json],
    ));
    let stripe_h = vec![(
        "stripe-signature".to_string(),
        format!("t={ts},v1={stripe_sig}").into_bytes(),
    )];
    assert_error(
        &c.webhook(s.ingest, "stripe", &stripe_h, not_json)
            .await
            .expect("send"),
        400,
        "body_not_json",
    );
    let non_utf8 = vec![("x-hub-signature-256".to_string(), vec![b's', 0xff, 0xfe])];
    assert_eq!(
        c.webhook(s.ingest, "github", &non_utf8, body.clone())
            .await
            .expect("send")
            .status,
        400
    );

    // 401: wrong secret, one tampered byte, timestamp outside tolerance.
    let wrong = github_headers("not the secret", "d-2", "issues", &body);
    assert_error(
        &c.webhook(s.ingest, "github", &wrong, body.clone())
            .await
            .expect("send"),
        401,
        "signature_mismatch",
    );
    let mut tampered = body.clone();
    tampered[3] ^= 1;
    assert_error(
        &c.webhook(s.ingest, "github", &h, tampered)
            .await
            .expect("send"),
        401,
        "signature_mismatch",
    );
    let old = standard_headers(&standard_key(), "msg_old", now_s() - 301, &body);
    assert_error(
        &c.webhook(s.ingest, "std", &old, body.clone())
            .await
            .expect("send"),
        401,
        "timestamp_out_of_tolerance",
    );
    let fresh = standard_headers(&standard_key(), "msg_fresh", now_s() - 5, &body);
    assert_eq!(
        c.webhook(s.ingest, "std", &fresh, body.clone())
            .await
            .expect("send")
            .status,
        200
    );

    // 403: outside the allowlist; inside it through a trusted proxy's X-Forwarded-For.
    let gh = hmac_headers(&body, Some("g-1"));
    assert_error(
        &c.webhook(s.ingest, "guarded", &gh, body.clone())
            .await
            .expect("send"),
        403,
        "forbidden",
    );
    let mut via_proxy = gh.clone();
    via_proxy.push(("x-forwarded-for".into(), b"10.1.2.3".to_vec()));
    assert_eq!(
        c.webhook(s.ingest, "guarded", &via_proxy, body.clone())
            .await
            .expect("send")
            .status,
        200
    );

    // 404 unknown source, 405 other methods.
    assert_error(
        &c.webhook(s.ingest, "nope", &gh, body.clone())
            .await
            .expect("send"),
        404,
        "unknown_source",
    );
    let get = c
        .send("GET", s.ingest, "/webhooks/github", &[], vec![])
        .await
        .expect("send");
    assert_error(&get, 405, "method_not_allowed");

    // 413 at 1 KiB, decided while reading; the client sees it (no reset),
    // also for a body far past the limit, as long as it is within what the
    // server drains before answering (past that, a reset is allowed).
    for size in [1025, 4 * 1024, hookhost::ingest::DRAIN_FACTOR * 1024] {
        let big = vec![b'x'; size];
        let a = c
            .webhook(s.ingest, "small", &hmac_headers(&big, None), big)
            .await
            .expect("413, not a reset");
        assert_error(&a, 413, "body_too_large");
    }
    let fits = vec![b'x'; 1024];
    assert_eq!(
        c.webhook(s.ingest, "small", &hmac_headers(&fits, None), fits)
            .await
            .expect("send")
            .status,
        200
    );

    // 429 counts verified requests only.
    for _ in 0..5 {
        let forged = vec![("x-webhook-signature".to_string(), b"00".to_vec())];
        assert_eq!(
            c.webhook(s.ingest, "limited", &forged, body.clone())
                .await
                .expect("send")
                .status,
            401
        );
    }
    for i in 0..2 {
        let b = format!("{{\"n\":{i}}}").into_bytes();
        assert_eq!(
            c.webhook(s.ingest, "limited", &hmac_headers(&b, None), b)
                .await
                .expect("send")
                .status,
            200
        );
    }
    let b = b"{\"n\":3}".to_vec();
    let limited = c
        .webhook(s.ingest, "limited", &hmac_headers(&b, None), b)
        .await
        .expect("send");
    assert_error(&limited, 429, "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());

    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn split_batches_slack_handshakes_and_concurrent_copies() {
    let (dir, s, c) = start().await;

    let batch = br#"[{"type":"a","n":1.50},{"type":"b"},{"n":3}]"#.to_vec();
    let h = hmac_headers(&batch, Some("batch-1"));
    let v = c
        .webhook(s.ingest, "batch", &h, batch.clone())
        .await
        .expect("send")
        .json();
    let ids = v["event_ids"].as_array().expect("event_ids").clone();
    assert_eq!(ids.len(), 3);
    assert_eq!(v["duplicate"], false);
    let again = c
        .webhook(s.ingest, "batch", &h, batch)
        .await
        .expect("send")
        .json();
    assert_eq!(
        (
            again["event_ids"].as_array().expect("ids"),
            &again["duplicate"]
        ),
        (&ids, &true.into())
    );

    // Slack's URL handshake is answered inline, after verification.
    let body = br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let ts = now_s().to_string();
    let sig = hex::encode(hmac_sha256(
        b"8f742231b10e8888abcd99yyyzzz85a5",
        &[b"v0:", ts.as_bytes(), b":", body],
    ));
    let slack = vec![
        ("x-slack-request-timestamp".to_string(), ts.into_bytes()),
        (
            "x-slack-signature".to_string(),
            format!("v0={sig}").into_bytes(),
        ),
    ];
    let a = c
        .webhook(s.ingest, "slack", &slack, body.to_vec())
        .await
        .expect("send");
    assert_eq!(
        a.json()["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    // 20 copies of one event at once: one is new, all name the same event.
    let body = b"\xff\xfe not utf-8, not json".to_vec();
    let h = hmac_headers(&body, Some("copy-1"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, h, body, addr) = (c.clone(), h.clone(), body.clone(), s.ingest);
        tasks.push(tokio::spawn(async move {
            c.webhook(addr, "small", &h, body)
                .await
                .expect("send")
                .json()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    assert_eq!(
        answers.iter().filter(|a| a["duplicate"] == false).count(),
        1,
        "{answers:?}"
    );
    let ids: HashSet<_> = answers
        .iter()
        .map(|a| a["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().expect("id");

    // After a clean drain the store holds the body byte for byte.
    s.stop().await.expect("clean stop");
    let store = open_store(dir.path()).await;
    let seq = hookhost::event::parse_event_id(&id).expect("our id");
    let stored = store.get(seq).expect("get").expect("stored");
    assert_eq!(stored.body, body);
    assert_eq!(
        (
            stored.source.as_str(),
            stored.provider_id.as_str(),
            stored.kind.as_str()
        ),
        ("small", "copy-1", "webhook")
    );
}

#[tokio::test]
async fn bad_paths_unknown_routes_and_methods_answer_json() {
    let (_dir, s, c) = start().await;
    let post = |addr, path: &'static str| {
        let c = c.clone();
        async move { c.send("POST", addr, path, &[], b"{}".to_vec()).await }
    };
    // Not percent-encoded UTF-8: axum's own answer would be plain text.
    let a = post(s.ingest, "/webhooks/%FF").await.expect("send");
    assert_error(&a, 400, "bad_path");
    let a = post(s.ingest, "/webhooks/%C3%28").await.expect("send");
    assert_error(&a, 400, "bad_path");
    assert_error(
        &post(s.ingest, "/webhooks/github/extra")
            .await
            .expect("send"),
        404,
        "not_found",
    );
    assert_error(&post(s.ingest, "/").await.expect("send"), 404, "not_found");
    let put = c
        .send("PUT", s.ingest, "/webhooks/github", &[], vec![])
        .await
        .expect("send");
    assert_error(&put, 405, "method_not_allowed");
    // The admin listener too.
    assert_error(
        &c.get(s.admin, "/nope").await.expect("send"),
        404,
        "not_found",
    );
    assert_error(
        &post(s.admin, "/readyz").await.expect("send"),
        405,
        "method_not_allowed",
    );
    let ready = c.get(s.admin, "/readyz").await.expect("readyz");
    assert_eq!(
        (ready.status, ready.json()["ready"].clone()),
        (200, true.into())
    );
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_headers_a_source_reads_its_id_and_kind_from_are_stored() {
    let (dir, s, c) = start().await;
    let body = br#"{"type":"from-body"}"#.to_vec();
    let mut h = hmac_headers(&body, None);
    h.push(("x-delivery".into(), b"dlv-1".to_vec()));
    h.push(("x-topic".into(), b"order.paid".to_vec()));
    h.push(("authorization".into(), b"Bearer not-kept".to_vec()));
    let a = c.webhook(s.ingest, "custom", &h, body).await.expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    let id = a.json()["event_id"].as_str().expect("id").to_owned();
    s.stop().await.expect("clean stop");

    let store = open_store(dir.path()).await;
    let seq = hookhost::event::parse_event_id(&id).expect("our id");
    let stored = store.get(seq).expect("get").expect("stored");
    assert_eq!(
        (stored.provider_id.as_str(), stored.kind.as_str()),
        ("dlv-1", "order.paid")
    );
    let header = |name: &str| {
        stored
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // The plugin sees what the id and kind came from.
    assert_eq!(header("x-delivery"), Some("dlv-1"));
    assert_eq!(header("x-topic"), Some("order.paid"));
    assert_eq!(header("authorization"), None);
}

#[tokio::test]
async fn split_batches_are_capped() {
    let (_dir, s, c) = start().await;
    let max = hookhost::ingest::MAX_SPLIT_EVENTS;
    let batch = |n: usize, id: &str| {
        let body = format!("[{}]", vec!["{}"; n].join(",")).into_bytes();
        (hmac_headers(&body, Some(id)), body)
    };
    let (h, body) = batch(max + 1, "big");
    let a = c.webhook(s.ingest, "batch", &h, body).await.expect("send");
    assert_error(&a, 413, "too_many_events");
    let (h, body) = batch(max, "full");
    let a = c.webhook(s.ingest, "batch", &h, body).await.expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["event_ids"].as_array().map(Vec::len), Some(max));
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_header_deadline_does_not_cut_a_request_being_served() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), CONFIG);
    let header_timeout = Duration::from_secs(1);
    let s = TestServer::start_with(&config, |c| {
        c.server.header_read_timeout = header_timeout;
        c.server.body_read_timeout = Duration::from_secs(10);
    })
    .await;

    // Headers at once, then the body a byte at a time over more than twice
    // the header deadline: the body has its own, longer one.
    let body = br#"{"slow":"but steady"}"#.to_vec();
    let sig = hmac_headers(&body, Some("slow-1"));
    let mut head = vec![
        "POST /webhooks/small HTTP/1.1".to_string(),
        "host: test".into(),
        "connection: close".into(),
        format!("content-length: {}", body.len()),
    ];
    head.extend(
        sig.iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v))),
    );
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut conn = TcpStream::connect(s.ingest).await.expect("connect");
    conn.write_all(&raw_request(&head, b""))
        .await
        .expect("head");
    let pause = header_timeout * 5 / 2 / body.len() as u32;
    for byte in &body {
        tokio::time::sleep(pause).await;
        conn.write_all(std::slice::from_ref(byte))
            .await
            .expect("the connection stays open while the body arrives");
    }
    let answer = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .expect("answered");
    let (status, head, body) = parse_raw_answer(&answer).expect("an HTTP answer");
    assert_eq!(status, 200, "{head} {}", String::from_utf8_lossy(&body));
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_frees_its_slot() {
    let dir = tempfile::tempdir().expect("tmp");
    // One request in flight at a time: the stalled one holds the only slot.
    let config = write_config(
        dir.path(),
        &CONFIG.replace("[server]\n", "[server]\nmax_connections = 1\n"),
    );
    let timeout = Duration::from_secs(3);
    let s = TestServer::start_with(&config, |c| c.server.body_read_timeout = timeout).await;
    let c = HttpClient::new();

    // Headers, then 10 of the 100 bytes announced, then nothing.
    let mut stalled = TcpStream::connect(s.ingest).await.expect("connect");
    stalled
        .write_all(&raw_request(
            &[
                "POST /webhooks/small HTTP/1.1",
                "host: test",
                "content-length: 100",
                "x-webhook-signature: sha256=00",
            ],
            b"0123456789",
        ))
        .await
        .expect("write");
    let sent = Instant::now();

    // While it stalls, the slot is taken (so freeing it below means something).
    let mut n = 0;
    loop {
        assert!(
            sent.elapsed() < timeout,
            "the stalled request never took the slot"
        );
        let body = format!("{{\"n\":{n}}}").into_bytes();
        n += 1;
        let a = c
            .webhook(s.ingest, "small", &hmac_headers(&body, None), body)
            .await
            .expect("send");
        if a.status == 503 {
            assert_error(&a, 503, "overloaded");
            break;
        }
        assert_eq!(a.status, 200, "{:?}", a.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let answer = read_until_closed(&mut stalled, timeout + Duration::from_secs(10))
        .await
        .expect("the server gives up on the body and closes");
    let waited = sent.elapsed();
    assert_raw_error(&answer, 408, "body_timeout");
    assert!(
        waited >= timeout - Duration::from_millis(200),
        "answered after {waited:?}, before the body deadline"
    );

    // The slot is free again.
    let body = b"{\"after\":1}".to_vec();
    let a = c
        .webhook(s.ingest, "small", &hmac_headers(&body, None), body)
        .await
        .expect("send");
    assert_eq!(a.status, 200, "{:?}", a.body);
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn slow_headers_are_cut_off_on_both_listeners() {
    let (dir, config) = {
        let dir = tempfile::tempdir().expect("tmp");
        let config = write_config(dir.path(), CONFIG);
        (dir, config)
    };
    let timeout = Duration::from_secs(2);
    let s = TestServer::start_with(&config, |c| c.server.header_read_timeout = timeout).await;
    let bound = timeout + Duration::from_secs(5);

    // Half a request's headers, then nothing: a JSON 408, then closed.
    for addr in [s.ingest, s.admin] {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"POST /webhooks/small HTTP/1.1\r\nhost: test\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        let answer = read_until_closed(&mut conn, bound)
            .await
            .expect("closed after the header deadline");
        assert_raw_error(&answer, 408, "header_timeout");
        assert!(
            started.elapsed() >= timeout - Duration::from_millis(200),
            "cut off after {:?}, before the deadline",
            started.elapsed()
        );
    }

    // Connected, sending nothing: closed, silently.
    let mut idle = TcpStream::connect(s.admin).await.expect("connect");
    let answer = read_until_closed(&mut idle, bound)
        .await
        .expect("an idle connection is closed");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

    // Slowloris: a header byte every 100 ms, never finishing. Data keeps
    // arriving, yet the connection is closed at the deadline.
    let conn = TcpStream::connect(s.ingest).await.expect("connect");
    let (mut read, mut write) = conn.into_split();
    let trickle = tokio::spawn(async move {
        if write
            .write_all(b"POST /webhooks/small HTTP/1.1\r\nx-slow: ")
            .await
            .is_err()
        {
            return;
        }
        for _ in 0..200 {
            if write.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    read_until_closed(&mut read, bound)
        .await
        .expect("a trickling client is cut off");
    assert!(started.elapsed() >= timeout - Duration::from_millis(200));
    trickle.abort();

    // A kept-alive connection gets a fresh deadline for each request: four
    // requests a third of the deadline apart outlive one deadline.
    let mut conn = TcpStream::connect(s.admin).await.expect("connect");
    for _ in 0..4 {
        tokio::time::sleep(timeout / 3).await;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while parse_raw_answer(&got).is_none() {
            let n = tokio::time::timeout(bound, conn.read(&mut buf))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed while a request was pending");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(parse_raw_answer(&got).map(|a| a.0), Some(200));
    }

    // Everyone else is served as usual.
    let c = HttpClient::new();
    let body = b"{}".to_vec();
    let a = c
        .webhook(s.ingest, "small", &hmac_headers(&body, Some("ok")), body)
        .await
        .expect("send");
    assert_eq!(a.status, 200);
    s.stop().await.expect("clean stop");
    drop(dir);
}

#[tokio::test]
async fn expect_continue_over_the_limit_is_refused_before_the_body() {
    let (_dir, s, _c) = start().await;

    // 4 KiB announced to a 1 KiB source: 413 at once, no `100 Continue`,
    // and the body is never asked for.
    let mut conn = TcpStream::connect(s.ingest).await.expect("connect");
    conn.write_all(&raw_request(
        &[
            "POST /webhooks/small HTTP/1.1",
            "host: test",
            "content-length: 4096",
            "expect: 100-continue",
            "x-webhook-signature: sha256=00",
        ],
        b"",
    ))
    .await
    .expect("write");
    let started = Instant::now();
    let answer = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    assert_raw_error(&answer, 413, "body_too_large");
    assert!(
        started.elapsed() < hookhost::ingest::DRAIN_TIME,
        "waited {:?}: it tried to read the body",
        started.elapsed()
    );

    // Within the limit, the body is invited and taken.
    let body = br#"{"fits":true}"#.to_vec();
    let sig = format!(
        "x-webhook-signature: sha256={}",
        hex::encode(hmac_sha256(HMAC_SECRET.as_bytes(), &[&body]))
    );
    let length = format!("content-length: {}", body.len());
    let mut conn = TcpStream::connect(s.ingest).await.expect("connect");
    conn.write_all(&raw_request(
        &[
            "POST /webhooks/small HTTP/1.1",
            "host: test",
            &length,
            "expect: 100-continue",
            "connection: close",
            &sig,
        ],
        b"",
    ))
    .await
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while parse_raw_answer(&got).is_none() {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .expect("read");
        assert!(n > 0, "closed before inviting the body");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse_raw_answer(&got).map(|a| a.0), Some(100));
    conn.write_all(&body).await.expect("write body");
    let rest = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    got.extend_from_slice(&rest);
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the 100");
    let (status, _, answer) = parse_raw_answer(&got[end + 4..]).expect("final answer");
    assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&answer));
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_failed_journal_turns_readyz_and_ingest_to_503() {
    let (dir, s, c) = start().await;
    let ready = c.get(s.admin, "/readyz").await.expect("readyz");
    assert_eq!(ready.status, 200);

    // The journal's directory is swapped for a file: appends to the open
    // segment still work, but starting the next segment fails, which fails
    // the journal.
    let journal = dir.path().join("data/journal");
    std::fs::rename(&journal, dir.path().join("data/journal-aside")).expect("move journal");
    std::fs::write(&journal, b"not a directory").expect("file in its place");

    // Fill the open segment with 4 MiB events until ingest refuses.
    let segment = hookhost::journal::JournalConfig::new(journal.clone()).segment_bytes;
    let chunk = 4 << 20;
    let most = segment as usize / chunk + 3;
    let mut refused = None;
    for i in 0..most {
        let body = vec![b'x'; chunk];
        let h = hmac_headers(&body, Some(&format!("bulk-{i}")));
        let a = c.webhook(s.ingest, "bulk", &h, body).await.expect("send");
        if a.status == 503 {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let refused = refused.expect("ingest kept answering 200 after the journal failed");
    assert_error(&refused, 503, "store_unavailable");

    // /readyz says so, with a reason; ingest answers 503 before reading.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let a = c.get(s.admin, "/readyz").await.expect("readyz");
        if a.status == 503 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready.status, 503, "{:?}", ready.body);
    let v = ready.json();
    assert_eq!(v["ready"], false);
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains("journal")),
        "{v}"
    );
    let body = b"{}".to_vec();
    let a = c
        .webhook(s.ingest, "small", &hmac_headers(&body, Some("late")), body)
        .await
        .expect("send");
    assert_error(&a, 503, "store_unavailable");
    assert!(a.headers.get("retry-after").is_some());

    // Stopping still finishes.
    tokio::time::timeout(Duration::from_secs(60), s.stop())
        .await
        .expect("stops in time")
        .ok();
}

#[tokio::test]
async fn ingest_answers_503_until_the_journal_is_replayed() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), CONFIG);
    // A long journal to replay: 40,000 events written straight to it (none
    // in sled), then a power cut mid-write: a partial record at its tail.
    {
        let cfg = hookhost::journal::JournalConfig {
            // Records end where the file does: the tear goes right after them.
            preallocate: false,
            ..hookhost::journal::JournalConfig::new(dir.path().join("data/journal"))
        };
        let (journal, _) = hookhost::journal::Journal::open(cfg).expect("journal");
        let event = |i: u32| hookhost::event::StoredEvent {
            source: "small".into(),
            provider_id: format!("pre-{i}"),
            kind: "webhook".into(),
            received_at_ms: 1,
            headers: vec![],
            body: vec![b'x'; 1024],
        };
        for chunk in (0..40_000).collect::<Vec<_>>().chunks(1000) {
            journal
                .append(chunk.iter().map(|i| event(*i).encode()).collect())
                .await
                .expect("append");
        }
        journal.shutdown().await;
        let segment = std::fs::read_dir(dir.path().join("data/journal"))
            .expect("journal dir")
            .map(|e| e.expect("entry").path())
            .max()
            .expect("a segment");
        let mut tail = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("segment");
        std::io::Write::write_all(
            &mut tail,
            // Length 200, a checksum, sequence 40,001, two bytes of payload.
            &[
                200, 0, 0, 0, 1, 2, 3, 4, 0x41, 0x9c, 0, 0, 0, 0, 0, 0, b'{', b'"',
            ],
        )
        .expect("tear");
    }
    let server = TestServer::spawn(&config).await;
    let (ingest_addr, admin_addr) = (server.ingest, server.admin);

    let c = HttpClient::new();
    let body = b"{}".to_vec();
    let h = hmac_headers(&body, Some("pre-7"));
    let mut statuses = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "never ready");
        assert!(!server.task.is_finished(), "the server stopped");
        // Readiness only ever turns on: once `/readyz` said ready, ingest
        // must take events. (An error means the listener is not up yet.)
        let ready_before = c.get(admin_addr, "/readyz").await.map(|a| a.status);
        if let Ok(a) = c.webhook(ingest_addr, "small", &h, body.clone()).await {
            statuses.push(a.status);
            if a.status == 200 {
                // The replayed copy is found: this is a duplicate.
                assert_eq!(a.json()["duplicate"], true);
                break;
            }
            assert_error(&a, 503, "unavailable");
            assert!(a.headers.get("retry-after").is_some());
            assert_eq!(ready_before, Ok(503), "ready, yet ingest answered 503");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(statuses.first(), Some(&503), "answered 503 while replaying");
    assert_eq!(
        c.get(admin_addr, "/readyz").await.expect("readyz").status,
        200
    );
    let send = |id: &'static str| {
        let (c, h, body) = (c.clone(), hmac_headers(&body, Some(id)), body.clone());
        async move {
            c.webhook(ingest_addr, "small", &h, body)
                .await
                .expect("send")
        }
    };
    // The torn record was cut; the last whole one before it was kept.
    let last = send("pre-39999").await;
    assert_eq!(
        (last.status, &last.json()["duplicate"]),
        (200, &true.into())
    );
    let after = send("post-1").await;
    // Sequences go on after the last whole record, not after the tear.
    assert_eq!(
        after.json()["event_id"],
        hookhost::event::event_id(40_001),
        "{after:?}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn acknowledged_events_survive_a_drain_and_a_torn_journal_tail() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), CONFIG);
    let c = HttpClient::new();
    let send = |s: &TestServer, i: u32| {
        let body = format!("{{\"i\":{i}}}").into_bytes();
        let h = hmac_headers(&body, Some(&format!("e-{i}")));
        let (c, addr) = (c.clone(), s.ingest);
        async move {
            c.webhook(addr, "small", &h, body)
                .await
                .expect("send")
                .json()
        }
    };
    let s = TestServer::start(&config).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(send(&s, i).await["event_id"].clone());
    }
    s.stop().await.expect("drained");

    // A power cut mid-write: a partial record at the journal's tail.
    let journal = dir.path().join("data/journal");
    let last = std::fs::read_dir(&journal)
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a segment");
    // Right after the last record (the segment is preallocated: past its
    // end marker the tear would never be read).
    let mut segment = std::fs::read(&last).expect("segment");
    let end = records_end(&segment);
    segment.truncate(end);
    segment.extend_from_slice(&[
        200, 0, 0, 0, 1, 2, 3, 4, 51, 0, 0, 0, 0, 0, 0, 0, b'{', b'"',
    ]);
    std::fs::write(&last, segment).expect("tear");

    let s = TestServer::start(&config).await;
    for (i, id) in ids.iter().enumerate() {
        let a = send(&s, i as u32).await;
        assert_eq!(
            (&a["duplicate"], &a["event_id"]),
            (&true.into(), id),
            "event {i}"
        );
    }
    assert_eq!(
        send(&s, 1000).await["duplicate"],
        false,
        "new events still go in"
    );
    s.stop().await.expect("drained");
}

/// Where a journal segment's records end: the first zero header (the end
/// marker every write leaves) or the end of the file. Headers are 16 bytes,
/// the payload length first.
fn records_end(segment: &[u8]) -> usize {
    let mut at = 0;
    while let Some(header) = segment.get(at..at + 16) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if header.iter().all(|b| *b == 0) {
            break;
        }
        at += 16 + len;
    }
    at.min(segment.len())
}

/// Entry point of the crash test's child process: runs a server on port 0
/// until killed, after writing its addresses to a file. Not a test by
/// itself; `kill_9_during_a_burst_loses_no_acknowledged_event` runs it.
#[test]
#[ignore = "entry point for the crash test's child process"]
fn crash_child_server() {
    hookhost_tests::server::child_main();
}

async fn spawn_child(config: &std::path::Path, dir: &std::path::Path) -> ChildServer {
    hookhost_tests::server::spawn_child("crash_child_server", config, dir).await
}

#[tokio::test]
async fn kill_9_during_a_burst_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), CONFIG);
    let mut child = spawn_child(&config, dir.path()).await;

    // 64 senders of unique signed events until the kill; remember every 200.
    let acked: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = HttpClient::new();
    let mut senders = Vec::new();
    for _ in 0..64 {
        let (c, acked, next, addr) = (c.clone(), acked.clone(), next.clone(), child.ingest);
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(900)).into_bytes();
                let h = github_headers(GITHUB_SECRET, &format!("crash-{i}"), "push", &body);
                match c.webhook(addr, "github", &h, body).await {
                    Ok(a) if a.status == 200 => {
                        let id = a.json()["event_id"].as_str().expect("id").to_owned();
                        acked.lock().expect("lock").push((i, id));
                    }
                    Ok(a) => panic!("unexpected {} {:?}", a.status, a.body),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill it mid-burst, with requests in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acked.lock().expect("lock").len() < 2000 {
        assert!(
            std::time::Instant::now() < deadline && !senders.iter().all(|s| s.is_finished()),
            "the burst stalled before 2000 acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill();
    for s in senders {
        s.await.expect("sender");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    let sent = next.load(std::sync::atomic::Ordering::Relaxed);

    // Restart on the same data: it opens cleanly, and every acknowledged
    // event is there (a resend is a duplicate with the same id).
    let mut child = spawn_child(&config, dir.path()).await;
    let mut missing = Vec::new();
    for (i, id) in &acked {
        let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(900)).into_bytes();
        let h = github_headers(GITHUB_SECRET, &format!("crash-{i}"), "push", &body);
        let a = c
            .webhook(child.ingest, "github", &h, body)
            .await
            .expect("resend")
            .json();
        if a["duplicate"] != true || a["event_id"] != id.as_str() {
            missing.push((i, a));
        }
    }
    child.kill();
    println!(
        "crash test: {} sent, {} acknowledged before SIGKILL, {} lost",
        sent,
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}
