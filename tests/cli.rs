//! The `hookhost` command line against a real server on loopback, run
//! in-process through `hookhost::cli::main_with` (arguments in; stdout,
//! stderr and the exit status out): the local loop (`serve`, `send` signed
//! for a GitHub and a Standard Webhooks source, `events show`, `plugins
//! list`), the admin commands (pause/resume, dead letters listed, replayed
//! and deleted), the server's refusals (a wrong token, an unknown plugin, a
//! source the server does not have) and `check` of a broken file.

use base64::Engine as _;
use hookhost::cli::{main_with, Context, Exit};
use hookhost_tests::server::{plugin_setup, poll_until, wait_ready, HttpClient, TestServer};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;

const GITHUB_SECRET: &str = "cli-test-github-secret";
const STANDARD_KEY: &[u8] = b"cli-test-standard-key";
const TOKEN: &str = "cli-test-admin-token-0123456789";

/// What one command did.
#[derive(Debug)]
struct Run {
    exit: Exit,
    out: String,
    err: String,
}

impl Run {
    /// Fail unless it exited 0; its stdout.
    fn ok(self) -> String {
        assert_eq!(self.exit, Exit::Ok, "{self:#?}");
        self.out
    }
}

/// Run `hookhost ARGS` with `env` as its whole environment.
async fn hookhost(args: &[&str], env: &[(&str, &str)]) -> Run {
    let ctx = Context {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Context::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("hookhost").chain(args.iter().copied());
    let exit = main_with(argv, &ctx, &mut out, &mut err).await;
    Run {
        exit,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// The sources every test server has: GitHub and Standard Webhooks, with
/// these secrets (literal, or `env:NAME`).
fn sources(github: &str, standard: &str) -> String {
    format!(
        "[[source]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [\"{github}\"]\n\n\
         [[source]]\nname = \"std\"\nscheme = \"standard\"\nsecrets = [\"{standard}\"]\n"
    )
}

/// A server with the admin token and `plugins`, whose config file (literal
/// secrets) the CLI reads too.
async fn start(plugins: &[(&str, &str)]) -> (tempfile::TempDir, String, TestServer) {
    let (dir, config) = plugin_setup(
        plugins,
        &format!("admin_token = \"{TOKEN}\""),
        &sources(GITHUB_SECRET, &standard_secret()),
    );
    let server = TestServer::start(&config).await;
    (dir, config.display().to_string(), server)
}

fn standard_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(STANDARD_KEY)
    )
}

/// The environment the CLI and the server read the secrets from.
fn secrets_env(std_secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GH_SECRET", GITHUB_SECRET.to_owned()),
        ("STD_SECRET", std_secret.to_owned()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Two distinct loopback ports free right now (for a server that binds what
/// its config says, like `hookhost serve`): both are held until both are
/// known, so they differ.
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port();
    (port(&a), port(&b))
}

/// `GET path` on the admin API with the token: status and JSON body.
async fn admin_call(admin: SocketAddr, path: &str) -> (u16, Value) {
    let auth = [(
        "authorization".to_owned(),
        format!("Bearer {TOKEN}").into_bytes(),
    )];
    let a = HttpClient::new()
        .send("GET", admin, path, &auth, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (a.status, a.json())
}

/// `GET path`, which must answer 200.
async fn admin_get(admin: SocketAddr, path: &str) -> Value {
    let (status, v) = admin_call(admin, path).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Poll `GET path` until `done` holds for its body (an event is stored in
/// sled just after ingest answers: a 404 first is fine).
async fn wait_for(
    admin: SocketAddr,
    path: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    poll_until(what, || async { admin_call(admin, path).await.1 }, done).await
}

/// The event id in `send`'s output (`received: evt_…`).
fn event_id(send_output: &str) -> String {
    send_output
        .lines()
        .find_map(|l| l.strip_prefix("received: "))
        .unwrap_or_else(|| panic!("no event id in {send_output:?}"))
        .trim()
        .to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write payload");
    path.display().to_string()
}

#[test]
fn the_local_loop_serve_send_and_look() {
    // `hookhost serve` on its own thread and runtime, binding the ports
    // its config names; the rest of the CLI finds it through the same
    // config file.
    let (ingest, admin) = free_ports();
    let (dir, config) = plugin_setup(
        &[("echo", "echo")],
        &format!(
            "listen = \"127.0.0.1:{ingest}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nadmin_token = \"env:TEST_ADMIN_TOKEN\""
        ),
        &sources("env:GH_SECRET", "env:STD_SECRET"),
    );
    let config = config.display().to_string();
    let std_secret = standard_secret();
    let mut env = secrets_env(&std_secret);
    env.push(("TEST_ADMIN_TOKEN", TOKEN.to_owned()));
    let serve_ctx = Context {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Context::default()
    };
    let shutdown = serve_ctx.shutdown.clone();
    let serve_config = config.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        rt.block_on(async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let exit = main_with(
                ["hookhost", "serve", "--config", &serve_config],
                &serve_ctx,
                &mut out,
                &mut err,
            )
            .await;
            (exit, String::from_utf8_lossy(&err).into_owned())
        })
    });

    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async {
        let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
        wait_ready(admin).await;
        let env = as_refs(&env);

        let push = write(dir.path(), "push.json", r#"{"ref":"refs/heads/main"}"#);
        let out = hookhost(
            &[
                "send", "--source", "github", "--file", &push, "--kind", "push", "--config",
                &config,
            ],
            &env,
        )
        .await
        .ok();
        assert!(
            out.contains("/webhooks/github (signed as github, kind push, id hookhost-send-"),
            "{out}"
        );
        let github_event = event_id(&out);
        assert!(
            out.contains(&format!("hookhost events show {github_event}")),
            "{out}"
        );

        let invoice = write(
            dir.path(),
            "invoice.json",
            r#"{"type":"invoice.paid","data":{}}"#,
        );
        let out = hookhost(
            &[
                "--config", &config, "send", "--source", "std", "--file", &invoice, "--id", "msg_1",
            ],
            &env,
        )
        .await
        .ok();
        let std_event = event_id(&out);
        // The same id again is a duplicate of the same event.
        let again = hookhost(
            &[
                "--config", &config, "send", "--source", "std", "--file", &invoice, "--id", "msg_1",
            ],
            &env,
        )
        .await
        .ok();
        assert!(
            again.contains(&format!("duplicate: already received as {std_event}")),
            "{again}"
        );

        // The server derived the kinds a real provider's request gets, and
        // echo ran each event once.
        for (id, kind) in [(&github_event, "push"), (&std_event, "invoice.paid")] {
            let event = wait_for(admin, &format!("/admin/events/{id}"), "delivered", |e| {
                e["status"] == "delivered"
            })
            .await;
            assert_eq!(event["kind"], kind, "{event:#}");
        }
        let kv = admin_get(admin, "/admin/plugins/echo/kv?prefix=count/").await;
        let counts: Vec<(String, String)> = kv["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap_or_default().to_owned(),
                    e["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                ("count/github:push".to_owned(), "1".to_owned()),
                ("count/std:invoice.paid".to_owned(), "1".to_owned())
            ],
            "{kv:#}"
        );

        // What `events show` and `plugins list` print.
        let show = hookhost(
            &["events", "show", &github_event, "--config", &config],
            &env,
        )
        .await
        .ok();
        for want in [
            format!("event        {github_event}"),
            "kind         push".to_owned(),
            "status       delivered".to_owned(),
            format!("  echo  done  ({github_event}:echo)"),
            "    attempt 1 (round 0) at ".to_owned(),
            "      [info] received event".to_owned(),
        ] {
            assert!(show.contains(&want), "{want:?} in:\n{show}");
        }
        let list = hookhost(&["plugins", "list", "--config", &config], &env)
            .await
            .ok();
        let row = list
            .lines()
            .find(|l| l.starts_with("echo "))
            .unwrap_or_else(|| panic!("no echo row in:\n{list}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            (
                cells[1],
                cells[2].len(),
                cells[3],
                cells[4],
                cells[5],
                cells[6]
            ),
            ("active", 12, "*", "0", "2", "0"),
            "{list}"
        );

        // A source the config does not have: refused before anything is sent.
        let r = hookhost(
            &[
                "send", "--source", "nope", "--file", &push, "--config", &config,
            ],
            &env,
        )
        .await;
        assert_eq!(r.exit, Exit::Failure, "{r:#?}");
        assert!(
            r.err.contains("no source named \"nope\"") && r.err.contains("github, std"),
            "{}",
            r.err
        );
        // GitHub needs a kind.
        let r = hookhost(
            &[
                "send", "--source", "github", "--file", &push, "--config", &config,
            ],
            &env,
        )
        .await;
        assert_eq!(r.exit, Exit::Failure, "{r:#?}");
        assert!(r.err.contains("--kind push"), "{}", r.err);
    });
    shutdown.cancel();
    let (exit, err) = server.join().expect("server thread");
    assert_eq!(exit, Exit::Ok, "serve: {err}");
}

#[tokio::test]
async fn plugins_pause_resume_and_refusals() {
    let (dir, config, server) = start(&[("echo", "echo")]).await;
    let env: Vec<(&str, &str)> = Vec::new();
    let admin_url = format!("http://{}", server.admin);
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str(), "--admin", admin_url.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let env = env.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            hookhost(&refs, &env).await
        }
    };

    // The token comes from the config file.
    let out = run(cli(&["plugins", "pause", "echo"])).await.ok();
    assert!(
        out.starts_with("paused echo: state paused, sha256 "),
        "{out}"
    );
    assert_eq!(
        admin_get(server.admin, "/admin/plugins/echo").await["state"],
        "paused"
    );
    let show = run(cli(&["plugins", "show", "echo"])).await.ok();
    assert!(
        show.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["state", "paused"]),
        "{show}"
    );
    let out = run(cli(&["plugins", "resume", "echo"])).await.ok();
    assert!(out.starts_with("resumed echo: state active"), "{out}");
    assert_eq!(
        admin_get(server.admin, "/admin/plugins/echo").await["state"],
        "active"
    );

    // --json prints the server's object.
    let json: Value =
        serde_json::from_str(&run(cli(&["--json", "plugins", "show", "echo"])).await.ok())
            .expect("--json prints JSON");
    assert_eq!(
        (&json["name"], &json["state"]),
        (&"echo".into(), &"active".into())
    );
    let stats = run(cli(&["stats"])).await.ok();
    assert!(stats.starts_with("events 0  queued 0"), "{stats}");

    // A wrong token: the server's words, and where a token comes from.
    let r = run(cli(&["plugins", "list", "--token", "wrong"])).await;
    assert_eq!(r.exit, Exit::Failure, "{r:#?}");
    assert!(
        r.err
            .starts_with("error: unauthorized: the bearer token is not the admin token (HTTP 401)")
            && r.err.contains("--token or HOOKHOST_ADMIN_TOKEN"),
        "{}",
        r.err
    );
    assert!(r.out.is_empty(), "{}", r.out);
    // The variable wins over the config's token.
    let mut with_env = env.clone();
    with_env.push(("HOOKHOST_ADMIN_TOKEN", "also-wrong"));
    let args = cli(&["stats"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = hookhost(&refs, &with_env).await;
    assert!(r.err.contains("unauthorized"), "{r:#?}");

    let r = run(cli(&["plugins", "show", "nope"])).await;
    assert_eq!(r.exit, Exit::Failure);
    assert_eq!(
        r.err,
        "error: not_found: no plugin named \"nope\" (HTTP 404)\n"
    );
    let r = run(cli(&["events", "list", "--status", "done"])).await;
    assert_eq!(r.exit, Exit::Usage, "{r:#?}");
    assert!(r.err.contains("--status"), "{}", r.err);

    // A source this CLI's config has and the server's does not: the
    // server's refusal, said as ingest said it.
    let extra = dir.path().join("cli-only.toml");
    std::fs::write(
        &extra,
        format!(
            "{}\n[[source]]\nname = \"ghost\"\nscheme = \"github\"\nsecrets = [\"x\"]\n",
            sources(GITHUB_SECRET, &standard_secret())
        ),
    )
    .expect("write");
    let payload = write(dir.path(), "p.json", "{}");
    let url = format!("http://{}", server.ingest);
    let extra = extra.display().to_string();
    let r = hookhost(
        &[
            "send", "--config", &extra, "--url", &url, "--source", "ghost", "--kind", "push",
            "--file", &payload,
        ],
        &env,
    )
    .await;
    assert_eq!(r.exit, Exit::Failure, "{r:#?}");
    assert!(
        r.err
            .starts_with("error: ingest refused the webhook: unknown_source: ")
            && r.err.contains("(HTTP 404)"),
        "{}",
        r.err
    );
    // Nothing listening: says where it tried.
    let r = run(vec![
        "--admin".into(),
        "http://127.0.0.1:1".into(),
        "--token".into(),
        "t".into(),
        "stats".into(),
    ])
    .await;
    assert_eq!(r.exit, Exit::Failure);
    assert!(
        r.err
            .contains("cannot reach http://127.0.0.1:1/admin/stats"),
        "{}",
        r.err
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn dead_letters_list_show_replay_and_delete() {
    let (dir, config, server) = start(&[("reject-all", "nope"), ("echo", "echo")]).await;
    let env: Vec<(&str, &str)> = Vec::new();
    let admin_url = format!("http://{}", server.admin);
    let ingest_url = format!("http://{}", server.ingest);
    let base = ["--config", config.as_str(), "--admin", admin_url.as_str()];
    let run = |args: &[&str]| {
        let all: Vec<String> = base.iter().chain(args).map(|s| (*s).to_owned()).collect();
        let env = env.clone();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            hookhost(&refs, &env).await
        }
    };

    let payload = write(dir.path(), "issue.json", r#"{"action":"opened"}"#);
    let mut ids = Vec::new();
    for n in 0..2 {
        let out = run(&[
            "send",
            "--url",
            &ingest_url,
            "--source",
            "github",
            "--file",
            &payload,
            "--kind",
            "issues.opened",
            "--id",
            &format!("d-{n}"),
        ])
        .await
        .ok();
        ids.push(event_id(&out));
    }
    wait_for(
        server.admin,
        "/admin/dead-letters",
        "two dead letters",
        |d| d["dead_letters"].as_array().is_some_and(|a| a.len() == 2),
    )
    .await;

    let list = run(&["dlq", "list"]).await.ok();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LAST ERROR"),
        "{list}"
    );
    for (line, id) in lines[1..].iter().zip(&ids) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[..3], [&format!("{id}:nope"), "nope", "1"], "{list}");
        assert!(
            line.contains("reject-all rejects every event (kind issues.opened)"),
            "{list}"
        );
    }
    assert_eq!(
        run(&["dlq", "list", "--plugin", "echo"]).await.ok(),
        "no dead letters\n"
    );
    let show = run(&["dlq", "show", &format!("{}:nope", ids[0])])
        .await
        .ok();
    assert!(show.contains("reason       rejected"), "{show}");

    // Replay one: it runs again (and is rejected again): two attempts.
    let first = format!("{}:nope", ids[0]);
    let out = run(&["dlq", "replay", &first]).await.ok();
    assert!(out.starts_with(&format!("replayed {first}")), "{out}");
    wait_for(
        server.admin,
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
    let show = run(&["events", "show", &ids[0]]).await.ok();
    for want in [
        "status       dead".to_owned(),
        format!("  nope  dead  ({first}), dead: rejected"),
        "    attempt 1 (round 0) at ".to_owned(),
        "    attempt 1 (round 1) at ".to_owned(),
        format!("  echo  done  ({}:echo)", ids[0]),
    ] {
        assert!(show.contains(&want), "{want:?} in:\n{show}");
    }
    assert!(show.contains(": reject, version "), "{show}");

    // Delete the other; the bulk replay then finds only the first.
    let second = format!("{}:nope", ids[1]);
    let out = run(&["dlq", "delete", &second]).await.ok();
    assert!(out.starts_with(&format!("deleted {second}")), "{out}");
    let r = run(&["dlq", "delete", &second]).await;
    assert_eq!(r.exit, Exit::Failure);
    assert!(r.err.contains("not_found: no dead letter"), "{}", r.err);
    let out = run(&["dlq", "replay", "--all", "--plugin", "nope"])
        .await
        .ok();
    assert_eq!(out, "replayed 1 dead letters\n");
    let r = run(&["dlq", "replay"]).await;
    assert_eq!(r.exit, Exit::Usage, "{r:#?}");

    // Events: filtered list, replay.
    let list = run(&["events", "list", "--kind", "issues.opened", "--limit", "1"])
        .await
        .ok();
    assert!(list.contains(&ids[0]) && !list.contains(&ids[1]), "{list}");
    assert!(
        list.contains(&format!("more: hookhost events list --cursor {}", ids[0])),
        "{list}"
    );
    let out = run(&["events", "replay", &ids[1]]).await.ok();
    assert!(
        out.starts_with(&format!("replayed {} to ", ids[1])),
        "{out}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn check_says_what_is_wrong_with_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let broken = write(dir.path(), "broken.wasm", "this is not a component");
    let r = hookhost(&["check", &broken], &[]).await;
    assert_eq!(r.exit, Exit::Failure, "{r:#?}");
    assert!(
        r.err.starts_with(&format!(
            "error: {broken} is not a usable hookhost plugin: not a WebAssembly component: "
        )),
        "{}",
        r.err
    );
    let r = hookhost(
        &[
            "check",
            &dir.path().join("missing.wasm").display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.exit, Exit::Failure);
    assert!(
        r.err.starts_with("error: reading ") && r.err.contains("missing.wasm"),
        "{}",
        r.err
    );

    let echo = hookhost_tests::wasm_path("echo").display().to_string();
    let out = hookhost(&["check", &echo], &[]).await.ok();
    assert!(out.contains("subscriptions    *"), "{out}");
    let json: Value =
        serde_json::from_str(&hookhost(&["check", &echo, "--json"], &[]).await.ok()).expect("json");
    assert_eq!(json["declared_name"], "echo");
}

#[tokio::test]
async fn plugins_upload_and_delete() {
    let (dir, config, server) = start(&[("echo", "echo")]).await;
    let admin_url = format!("http://{}", server.admin);
    let base = ["--config", config.as_str(), "--admin", admin_url.as_str()];
    let run = |args: &[&str]| {
        let all: Vec<String> = base.iter().chain(args).map(|s| (*s).to_owned()).collect();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            hookhost(&refs, &[]).await
        }
    };
    let noop = hookhost_tests::wasm_path("noop").display().to_string();
    let out = run(&["plugins", "upload", "second", &noop]).await.ok();
    assert!(out.starts_with("uploaded second: state "), "{out}");
    wait_for(
        server.admin,
        "/admin/plugins/second",
        "second active",
        |p| p["state"] == "active",
    )
    .await;
    let list = run(&["plugins", "list"]).await.ok();
    assert!(list.lines().any(|l| l.starts_with("second ")), "{list}");

    // A broken upload: the server's 4xx and its words; the good version
    // stays.
    let broken = write(dir.path(), "broken.wasm", "not a component");
    let r = run(&["plugins", "upload", "second", &broken]).await;
    assert_eq!(r.exit, Exit::Failure, "{r:#?}");
    assert!(r.err.contains("(HTTP 4"), "{}", r.err);
    assert_eq!(
        admin_get(server.admin, "/admin/plugins/second").await["state"],
        "active"
    );

    let out = run(&["plugins", "delete", "second"]).await.ok();
    assert!(out.starts_with("deleted second: state "), "{out}");
    wait_for(
        server.admin,
        "/admin/plugins/second",
        "second removed",
        |p| p["state"] == "removed",
    )
    .await;
    server.stop().await.expect("stop");
}
