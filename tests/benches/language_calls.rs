//! Per-call cost of the same plugins written in Rust, Python and
//! JavaScript: `echo` and `github-issues`, each called through
//! `Runtime::invoke` with fuel and epoch metering on (as the server runs),
//! with a fresh instance per call (the default) and in warm mode (an
//! instance reused, under the server's default warm policy), on a
//! realistic GitHub `issues.opened` delivery.
//!
//! Run: `cargo bench -p hookhost-tests --bench language_calls`
//! Knobs: `CALLS=N` timed calls per thread and round for Python and
//! JavaScript (default 1000), `RUST_CALLS=N` for Rust (default 10 × CALLS),
//! `WARMUP=N` untimed calls first (default 50; Rust 1000), `ROUNDS=N`
//! (default 3), `PLUGINS=echo,github-issues`, `LANGS=rust,python,js`,
//! `MODES=fresh,warm`. `STARLINGMONKEY_DIR=DIR` adds JavaScript built with
//! the StarlingMonkey backend (`HOOKHOST_JS_BACKEND=starlingmonkey
//! plugins/build-interpreted.sh DIR echo-js github-issues-js`).
//!
//! Python and JavaScript components are compiled once into
//! [`hookhost_tests::shared_artifact_cache`] (5-25 s each the first time).
//! The machine is shared: each figure is the median of the rounds, with the
//! range of the round p50s; compare ratios within one run.

use hookhost::runtime::{CallSettings, Event, Plugin, Runtime, WarmPolicy};
use hookhost_tests::bench::{
    call_round, call_runtime, cores, cpu_model, env_or, load_blocking, machine_load, median_round,
    CallStats,
};
use hookhost_tests::{event, shared_artifact_cache, wasm_path, INTERPRETED_WASM_DIR};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Issue 6's goals for Python and JavaScript plugins, p50 per call.
const GOAL_FRESH_MS: f64 = 2.0;
const GOAL_WARM_MS: f64 = 0.5;

/// The server's default warm policy (host/config.default.toml): an
/// instance serves 1000 calls or 60 s, then a fresh one replaces it.
const SERVER_WARM: WarmPolicy = WarmPolicy {
    max_calls: 1000,
    max_age: Duration::from_secs(60),
};

/// Processes whose presence makes the figures noisier.
const NOISY: &[&str] = &["rustc", "cargo", "node", "python3", "hookhost"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
    /// JavaScript on the StarlingMonkey (SpiderMonkey) backend.
    JsSm,
}

impl Lang {
    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JS",
            Lang::JsSm => "JS (SpiderM.)",
        }
    }

    fn interpreted(self) -> bool {
        self != Lang::Rust
    }

    /// The component of `plugin` in this language, if it was built.
    fn path(self, plugin: &str) -> Option<PathBuf> {
        let path = match self {
            Lang::Rust => wasm_path(plugin),
            Lang::Python => wasm_path(&format!("{plugin}-py")),
            Lang::Js => wasm_path(&format!("{plugin}-js")),
            Lang::JsSm => PathBuf::from(std::env::var_os("STARLINGMONKEY_DIR")?)
                .join(format!("{plugin}-js.wasm")),
        };
        path.exists().then_some(path)
    }
}

/// One measured line: a plugin in a language, fresh or warm.
struct Row {
    plugin: String,
    lang: Lang,
    warm: bool,
    stats: CallStats,
    lo: f64,
    hi: f64,
}

/// A GitHub `issues.opened` delivery as GitHub sends it, trimmed of the
/// repository's rarely used URL templates: about 4 KiB. Each `n` is
/// another issue number and delivery id.
fn issue_opened(n: u64) -> Event {
    let user = |login: &str, id: u64| {
        json!({
            "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
            "gravatar_id": "", "url": format!("https://api.github.com/users/{login}"),
            "html_url": format!("https://github.com/{login}"),
            "followers_url": format!("https://api.github.com/users/{login}/followers"),
            "repos_url": format!("https://api.github.com/users/{login}/repos"),
            "type": "User", "user_view_type": "public", "site_admin": false
        })
    };
    let repo = "hookhost/bench";
    let api = format!("https://api.github.com/repos/{repo}");
    let body = json!({
        "action": "opened",
        "issue": {
            "url": format!("{api}/issues/{n}"),
            "repository_url": api,
            "labels_url": format!("{api}/issues/{n}/labels{{/name}}"),
            "comments_url": format!("{api}/issues/{n}/comments"),
            "events_url": format!("{api}/issues/{n}/events"),
            "html_url": format!("https://github.com/{repo}/issues/{n}"),
            "id": 2_000_000_000 + n, "node_id": format!("I_kwDOLbench{n}"), "number": n,
            "title": format!("Deliveries stall after a plugin reload (#{n})"),
            "user": user("octocat", 583_231),
            "labels": [{
                "id": 6_543_210, "node_id": "LA_kwDOLbench", "url": format!("{api}/labels/bug"),
                "name": "bug", "color": "d73a4a", "default": true,
                "description": "Something isn't working"
            }],
            "state": "open", "locked": false, "assignee": null, "assignees": [],
            "milestone": null, "comments": 0,
            "created_at": "2026-11-23T10:15:30Z", "updated_at": "2026-11-23T10:15:30Z",
            "closed_at": null, "author_association": "CONTRIBUTOR", "active_lock_reason": null,
            "body": "After replacing echo.wasm in the plugins folder, deliveries to it stop \
                     for a few seconds and the admin API shows the old version.\n\n\
                     Steps:\n1. start the server\n2. copy a new build over the file\n\
                     3. send a webhook\n\nExpected: the new version handles it.",
            "reactions": {
                "url": format!("{api}/issues/{n}/reactions"), "total_count": 0, "+1": 0,
                "-1": 0, "laugh": 0, "hooray": 0, "confused": 0, "heart": 0, "rocket": 0,
                "eyes": 0
            },
            "timeline_url": format!("{api}/issues/{n}/timeline"),
            "performed_via_github_app": null, "state_reason": null
        },
        "repository": {
            "id": 812_345_678, "node_id": "R_kgDOLbench", "name": "bench", "full_name": repo,
            "private": false, "owner": user("hookhost", 151_000_000),
            "html_url": format!("https://github.com/{repo}"),
            "description": "Webhook receiver with WebAssembly plugins", "fork": false,
            "url": api, "issues_url": format!("{api}/issues{{/number}}"),
            "pulls_url": format!("{api}/pulls{{/number}}"),
            "git_url": format!("git://github.com/{repo}.git"),
            "ssh_url": format!("git@github.com:{repo}.git"),
            "clone_url": format!("https://github.com/{repo}.git"),
            "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-11-23T09:59:01Z",
            "pushed_at": "2026-11-23T09:58:47Z", "homepage": null, "size": 1843,
            "stargazers_count": 412, "watchers_count": 412, "language": "Rust",
            "has_issues": true, "has_projects": false, "has_wiki": false,
            "forks_count": 23, "archived": false, "disabled": false, "open_issues_count": 17,
            "license": {"key": "apache-2.0", "name": "Apache License 2.0", "spdx_id": "Apache-2.0"},
            "topics": ["webhooks", "wasm", "wasmtime"], "visibility": "public",
            "default_branch": "main"
        },
        "sender": user("octocat", 583_231)
    });
    let mut e = event("github", "issues.opened", &format!("evt_{n}"), &body);
    e.headers.extend([
        ("x-github-event".into(), "issues".into()),
        (
            "x-github-delivery".into(),
            format!("6f1c2a40-bench-{n:012}"),
        ),
        ("user-agent".into(), "GitHub-Hookshot/bench".into()),
    ]);
    e
}

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Which backend built the JavaScript plugins (the build script records
/// it beside each component).
fn js_backend() -> String {
    std::fs::read_to_string(PathBuf::from(INTERPRETED_WASM_DIR).join(".echo-js.backend"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    // LAB.md: a captured backtrace on every Store drop costs 6-10 us.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    let calls = env_or("CALLS", 1000).max(1);
    let rust_calls = env_or("RUST_CALLS", 10 * calls).max(1);
    let warmup = env_or("WARMUP", 50);
    let rounds = env_or("ROUNDS", 3).max(1);
    let plugins = list("PLUGINS", "echo,github-issues");
    let modes = list("MODES", "fresh,warm");
    let mut langs = Vec::new();
    for l in list("LANGS", "rust,python,js") {
        match l.as_str() {
            "rust" => langs.push(Lang::Rust),
            "python" | "py" => langs.push(Lang::Python),
            "js" => langs.push(Lang::Js),
            other => panic!("LANGS: unknown language {other} (rust, python, js)"),
        }
    }
    if std::env::var_os("STARLINGMONKEY_DIR").is_some() {
        langs.push(Lang::JsSm);
    }
    let size = issue_opened(1).body.len();

    println!(
        "hookhost language benchmark: Runtime::invoke, fuel + epoch on, a GitHub issues.opened delivery ({size} bytes)"
    );
    println!(
        "fresh = new instance per call; warm = instance reused (server default: {} calls / {} s per instance)",
        SERVER_WARM.max_calls,
        SERVER_WARM.max_age.as_secs()
    );
    println!(
        "median of {rounds} rounds; per round and thread {calls} timed calls (Rust {rust_calls}) after {warmup} untimed (Rust {}); JS backend: {}",
        rust_warmup(warmup),
        js_backend()
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!("before: {}", machine_load(NOISY));
    println!(
        "latency and CPU (the calling thread's, kernel included) on 1 thread; calls/s on 1 thread and on 2 at once; faults: minor page faults of the process per call"
    );
    println!();
    println!(
        "{:<14} {:<13} {:<5} {:>8} {:>13} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>7}",
        "plugin",
        "language",
        "mode",
        "p50 ms",
        "p50 range",
        "p99 ms",
        "mean ms",
        "CPU ms",
        "calls/s 1",
        "calls/s 2",
        "fuel/call",
        "faults"
    );

    let mut rows = Vec::new();
    for plugin in &plugins {
        for &lang in &langs {
            let Some(path) = lang.path(plugin) else {
                println!("{plugin:<14} {:<13} not built, skipped", lang.label());
                continue;
            };
            let dir = tempfile::tempdir().expect("tmp");
            let cache = lang.interpreted().then(shared_artifact_cache);
            let rt = call_runtime(dir.path(), true, cache);
            let p = load_blocking(&rt, plugin, &path);
            let (warmup, calls) = if lang.interpreted() {
                (warmup, calls)
            } else {
                (rust_warmup(warmup), rust_calls)
            };
            for mode in &modes {
                let warm = match mode.as_str() {
                    "fresh" => false,
                    "warm" => true,
                    other => panic!("MODES: unknown mode {other} (fresh, warm)"),
                };
                let row = measure(&rt, &p, lang, warm, rounds, (warmup, calls));
                print_row(&row);
                rows.push(row);
            }
        }
    }
    print_ratios(&rows, &plugins);
    print_goals(&rows);
    println!();
    println!("after: {}", machine_load(NOISY));
}

/// Untimed calls before Rust's timed ones: enough to warm the pool slots.
fn rust_warmup(warmup: usize) -> usize {
    (warmup * 20).min(1000)
}

fn measure(
    rt: &Runtime,
    p: &Arc<Plugin>,
    lang: Lang,
    warm: bool,
    rounds: usize,
    counts: (usize, usize),
) -> Row {
    let settings = CallSettings {
        warm: warm.then_some(SERVER_WARM),
        ..CallSettings::default()
    };
    let all: Vec<CallStats> = (0..rounds)
        .map(|_| call_round(rt, p, &settings, counts, &issue_opened))
        .collect();
    // Idle instances of this mode must not serve the next one.
    drop(p.close_warm_pool());
    p.open_warm_pool();
    let (stats, lo, hi) = median_round(&all);
    Row {
        plugin: p.name.clone(),
        lang,
        warm,
        stats,
        lo,
        hi,
    }
}

fn mode(warm: bool) -> &'static str {
    if warm {
        "warm"
    } else {
        "fresh"
    }
}

fn print_row(r: &Row) {
    let s = &r.stats;
    let range = format!("{:.3}-{:.3}", r.lo / 1e3, r.hi / 1e3);
    println!(
        "{:<14} {:<13} {:<5} {:>8.3} {range:>13} {:>8.3} {:>8.3} {:>8.3} {:>10.0} {:>10.0} {:>10} {:>7.0}",
        r.plugin,
        r.lang.label(),
        mode(r.warm),
        s.p50_us / 1e3,
        s.p99_us / 1e3,
        s.mean_us / 1e3,
        s.cpu_us / 1e3,
        s.per_s_1,
        s.per_s_2,
        fuel(s.fuel),
        s.faults
    );
}

/// Fuel units, short: 22.7k, 3.61M.
fn fuel(units: f64) -> String {
    if units >= 1e6 {
        format!("{:.2}M", units / 1e6)
    } else {
        format!("{:.1}k", units / 1e3)
    }
}

fn find<'a>(rows: &'a [Row], plugin: &str, lang: Lang, warm: bool) -> Option<&'a CallStats> {
    rows.iter()
        .find(|r| r.plugin == plugin && r.lang == lang && r.warm == warm)
        .map(|r| &r.stats)
}

/// p50 ratios against Rust, and warm against fresh (p50 and calls/s on
/// two threads), for every pair measured.
fn print_ratios(rows: &[Row], plugins: &[String]) {
    println!();
    println!("ratios of p50 (calls/s on 2 threads for warm/fresh in brackets):");
    for plugin in plugins {
        let mut parts = Vec::new();
        for lang in [Lang::Python, Lang::Js, Lang::JsSm] {
            for warm in [false, true] {
                let rust = find(rows, plugin, Lang::Rust, warm);
                if let (Some(l), Some(r)) = (find(rows, plugin, lang, warm), rust) {
                    parts.push(format!(
                        "{}/Rust {} x{:.0}",
                        lang.label(),
                        mode(warm),
                        l.p50_us / r.p50_us
                    ));
                }
            }
        }
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::JsSm] {
            let fresh = find(rows, plugin, lang, false);
            if let (Some(w), Some(f)) = (find(rows, plugin, lang, true), fresh) {
                parts.push(format!(
                    "{} warm/fresh x{:.2} (x{:.1})",
                    lang.label(),
                    w.p50_us / f.p50_us,
                    w.per_s_2 / f.per_s_2
                ));
            }
        }
        if !parts.is_empty() {
            println!("  {plugin}: {}", parts.join("; "));
        }
    }
}

fn print_goals(rows: &[Row]) {
    println!();
    println!(
        "goals (issue 6), Python and JavaScript p50: fresh <= {GOAL_FRESH_MS} ms, warm <= {GOAL_WARM_MS} ms"
    );
    for r in rows.iter().filter(|r| r.lang.interpreted()) {
        let goal = if r.warm { GOAL_WARM_MS } else { GOAL_FRESH_MS };
        let p50 = r.stats.p50_us / 1e3;
        println!(
            "  {:<14} {:<13} {:<5} {p50:>7.3} ms: {}",
            r.plugin,
            r.lang.label(),
            mode(r.warm),
            if p50 <= goal { "met" } else { "NOT met" }
        );
    }
}
