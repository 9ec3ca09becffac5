//! `hookhost new` end to end. For each language, the real CLI entry point
//! (`hookhost::cli::main_with`) writes a starter into a scratch checkout;
//! the two commands it prints are run as printed (bash, from the
//! checkout's root), which must leave `plugins/NAME.wasm`; the real runtime
//! loads that and runs events through it: it declares NAME and `*`, counts
//! in kv, logs, and rejects a body that is not JSON. And what `new`
//! refuses (exit 2, nothing written).
//!
//! The scratch checkout links this repository's `sdk/`, `.tools/` (the
//! build script's installed tools) and every entry of `plugins/` (the
//! build script, the example plugins), and copies `wit/` and the two files
//! `new` and cargo edit: `plugins/Cargo.toml` (with the SDK's path made
//! absolute, so cargo sees the very package of the real build) and
//! `plugins/Cargo.lock`. For Rust, `plugins/target` is this repository's,
//! so cargo reuses the SDK and dependencies `build.rs` compiled; Python and
//! JavaScript build into the scratch checkout's own.
//!
//! The runtime compiles each starter into a private cache: componentize-py
//! and jco never build the same bytes twice, so the shared cache would
//! never hit and only grow (by ~40 MB for Python, each run).

use hookhost::cli::{main_with, Context, Exit};
use hookhost::kv::KvLimits;
use hookhost::runtime::{CallSettings, LogLevel, Outcome};
use hookhost_tests::{event, runtime_in};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name every starter gets here: with a `-`, which the Rust
/// component's file name spells `_`.
const NAME: &str = "my-starter";

/// What one command did.
#[derive(Debug)]
struct Run {
    exit: Exit,
    out: String,
    err: String,
}

/// `hookhost new ARGS --root ROOT`.
async fn new(args: &[&str], root: &Path) -> Run {
    let root = root.display().to_string();
    let argv = ["hookhost", "new"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--root", root.as_str()]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = main_with(argv, &Context::default(), &mut out, &mut err).await;
    Run {
        exit,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("HOOKHOST_REPO_ROOT"))
}

fn link(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("linking {} to {}: {e}", link.display(), target.display()));
}

/// A checkout to write into, as described at the top; with this
/// repository's `plugins/target` if `cargo_target`.
fn scratch_checkout(cargo_target: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let (repo, root) = (repo(), dir.path());
    for shared in ["sdk", ".tools"] {
        link(&repo.join(shared), &root.join(shared));
    }
    // Copied: jco reads the WIT through WASI, which follows no symlink.
    std::fs::create_dir(root.join("wit")).expect("wit/");
    for entry in std::fs::read_dir(repo.join("wit")).expect("wit/").flatten() {
        assert!(
            entry.path().is_file(),
            "wit/ has folders now: copy them too"
        );
        std::fs::copy(entry.path(), root.join("wit").join(entry.file_name())).expect("copy");
    }
    let plugins = root.join("plugins");
    std::fs::create_dir(&plugins).expect("plugins/");
    for entry in std::fs::read_dir(repo.join("plugins"))
        .expect("plugins/")
        .flatten()
    {
        let name = entry.file_name();
        let copied = name == "Cargo.toml" || name == "Cargo.lock";
        let target = name == "target" && !cargo_target;
        if !copied && !target && !name.to_string_lossy().ends_with(".wasm") {
            link(&entry.path(), &plugins.join(&name));
        }
    }
    let manifest = std::fs::read_to_string(repo.join("plugins/Cargo.toml")).expect("manifest");
    let sdk = r#"path = "../sdk/rust""#;
    assert!(
        manifest.contains(sdk),
        "plugins/Cargo.toml no longer has {sdk}: update this test"
    );
    let absolute = format!(r#"path = "{}""#, repo.join("sdk/rust").display());
    std::fs::write(plugins.join("Cargo.toml"), manifest.replace(sdk, &absolute)).expect("manifest");
    std::fs::copy(repo.join("plugins/Cargo.lock"), plugins.join("Cargo.lock")).expect("lock");
    dir
}

/// The commands `new` printed after `next, from ROOT: …`.
fn next_steps(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("next, from "))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Run each command as a user would paste it, from `root`. cargo must see
/// none of the outer build's settings (its target dir, flags), and needs
/// no network: `build.rs` fetched every dependency.
fn run_steps(root: &Path, steps: &[String]) {
    for step in steps {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(step).current_dir(root);
        for var in [
            "CARGO_TARGET_DIR",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CARGO_NET_OFFLINE", "true");
        let done = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {step}: {e}"));
        assert!(
            done.status.success(),
            "{step}: {}\n{}{}",
            done.status,
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
    }
}

/// `new --lang LANG NAME`, its printed commands, then the component they
/// left in the plugins folder through the real runtime.
async fn starter_builds_and_runs(lang: &str, files: &[&str], says: &str, steps: [&str; 2]) {
    let dir = scratch_checkout(lang == "rust");
    let root = dir.path();
    let manifest = root.join("plugins/Cargo.toml");
    let mode = || {
        std::fs::metadata(&manifest)
            .expect("manifest")
            .permissions()
            .mode()
    };
    let mode_before = mode();
    let r = new(&["--lang", lang, NAME], root).await;
    assert_eq!(r.exit, Exit::Ok, "{r:#?}");
    assert!(r.err.is_empty(), "{r:#?}");
    for file in files {
        assert!(root.join(file).is_file(), "{file} written:\n{}", r.out);
        assert!(
            r.out.contains(&format!("  {file}\n")),
            "{file} in:\n{}",
            r.out
        );
    }
    assert!(r.out.contains(says), "{says:?} in:\n{}", r.out);
    assert_eq!(
        mode(),
        mode_before,
        "the workspace manifest keeps its permissions"
    );
    let printed = next_steps(&r.out);
    assert_eq!(printed, steps, "{}", r.out);
    run_steps(root, &printed);

    let wasm_path = root.join("plugins").join(format!("{NAME}.wasm"));
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| panic!("{}: {e}", wasm_path.display()));
    let data = tempfile::tempdir().expect("data dir");
    let rt = runtime_in(data.path(), KvLimits::default());
    let plugin = rt
        .load(NAME, wasm)
        .await
        .unwrap_or_else(|e| panic!("loading the {lang} starter: {e}"));
    assert_eq!(plugin.info.declared_name, NAME);
    assert_eq!(plugin.info.subscriptions, ["*"]);

    let settings = CallSettings::default();
    let opened = json!({"action": "opened", "issue": {"number": 1}});
    for n in 1..=2 {
        let ev = event("github", "issues.opened", &format!("evt_{n}"), &opened);
        let report = rt.invoke(&plugin, &settings, &ev).await;
        assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.logs);
        let lines: Vec<_> = report
            .logs
            .iter()
            .map(|l| (l.level, l.message.as_str(), l.fields.clone()))
            .collect();
        let field = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            lines,
            [(
                LogLevel::Info,
                "handled event",
                vec![
                    field("kind", "issues.opened"),
                    field("action", "opened"),
                    field("count", &n.to_string()),
                ]
            )]
        );
    }
    let counter = || {
        rt.kv()
            .namespace(NAME)
            .expect("namespace")
            .get("count/github:issues.opened")
            .expect("kv")
    };
    assert_eq!(counter().as_deref(), Some(&b"2"[..]));

    // Not JSON: rejected (dead-lettered at once), nothing counted.
    let mut garbage = event("github", "issues.opened", "evt_3", &opened);
    garbage.body = b"<html>not json</html>".to_vec();
    let report = rt.invoke(&plugin, &settings, &garbage).await;
    assert!(
        matches!(&report.outcome, Outcome::Reject(m) if m.contains("not the expected JSON")),
        "{:?}",
        report.outcome
    );
    assert_eq!(counter().as_deref(), Some(&b"2"[..]));
}

#[tokio::test]
async fn a_rust_starter_builds_in_the_plugins_workspace_and_runs() {
    starter_builds_and_runs(
        "rust",
        &["plugins/my-starter/Cargo.toml", "plugins/my-starter/src/lib.rs"],
        "  plugins/Cargo.toml: \"my-starter\" added to the workspace members\n",
        [
            "cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml -p my-starter",
            "cp plugins/target/wasm32-wasip2/release/my_starter.wasm plugins/my-starter.wasm",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_python_starter_builds_with_the_build_script_and_runs() {
    starter_builds_and_runs(
        "python",
        &["plugins/my-starter-py/app.py"],
        "created plugins/my-starter-py/, a Python plugin, in ",
        [
            "plugins/build-interpreted.sh plugins/target/interpreted my-starter-py",
            "cp plugins/target/interpreted/my-starter-py.wasm plugins/my-starter.wasm",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_javascript_starter_builds_with_the_build_script_and_runs() {
    starter_builds_and_runs(
        "js",
        &["plugins/my-starter-js/plugin.js"],
        "created plugins/my-starter-js/, a JavaScript plugin, in ",
        [
            "plugins/build-interpreted.sh plugins/target/interpreted my-starter-js",
            "cp plugins/target/interpreted/my-starter-js.wasm plugins/my-starter.wasm",
        ],
    )
    .await;
}

/// Every entry of a folder, sorted: what a refusal must leave as it was.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn new_refuses_bad_names_existing_folders_and_unknown_languages() {
    let dir = scratch_checkout(false);
    let (root, plugins) = (dir.path(), dir.path().join("plugins"));
    let manifest = || std::fs::read_to_string(plugins.join("Cargo.toml")).expect("manifest");
    let (files_before, manifest_before) = (listing(&plugins), manifest());

    for (args, says) in [
        (
            &["--lang", "rust", "Hello"][..],
            "error: \"Hello\" is not a plugin name: a plugin name is 1-64 of a-z, 0-9, - and _",
        ),
        (&["--lang", "python", "a.b"], "\"a.b\" is not a plugin name"),
        (
            &["--lang", "rust", "1st"],
            "cargo wants package names that start with a letter or _",
        ),
        (
            &["--lang", "rust", "github_issues"],
            "plugins/github-issues already builds github_issues.wasm",
        ),
        (
            &["--lang", "rust", "echo"],
            "error: plugins/echo already exists: `hookhost new` never overwrites",
        ),
        (
            &["--lang", "python", "echo"],
            "plugins/echo-py already exists",
        ),
        (&["--lang", "js", "echo"], "plugins/echo-js already exists"),
        (
            &["--lang", "go", "x"],
            "invalid value 'go' for '--lang <LANG>'",
        ),
        (&["x"], "--lang <LANG>"),
    ] {
        let r = new(args, root).await;
        assert_eq!(r.exit, Exit::Usage, "{args:?}: {r:#?}");
        assert!(r.err.contains(says), "{args:?}: {says:?} in {}", r.err);
        assert!(r.out.is_empty(), "{args:?}: {}", r.out);
    }
    let r = new(&["--lang", "go", "x"], root).await;
    assert!(
        r.err.contains("[possible values: rust, python, js]"),
        "{}",
        r.err
    );
    assert_eq!(listing(&plugins), files_before);
    assert_eq!(manifest(), manifest_before);

    // Not a checkout: nothing written there either.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let r = new(&["--lang", "js", "x"], elsewhere.path()).await;
    assert_eq!(r.exit, Exit::Usage, "{r:#?}");
    assert!(
        r.err
            .contains("is not a hookhost checkout (it has no wit/plugin.wit and sdk/)"),
        "{}",
        r.err
    );
    assert!(listing(elsewhere.path()).is_empty());

    // The same name twice: the second run leaves the first's file alone.
    let r = new(&["--lang", "js", "twice"], root).await;
    assert_eq!(r.exit, Exit::Ok, "{r:#?}");
    let file = plugins.join("twice-js/plugin.js");
    std::fs::write(&file, "// edited").expect("edit");
    let r = new(&["--lang", "js", "twice"], root).await;
    assert_eq!(r.exit, Exit::Usage, "{r:#?}");
    assert!(
        r.err.contains("plugins/twice-js already exists"),
        "{}",
        r.err
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "// edited");
    assert_eq!(
        manifest(),
        manifest_before,
        "only a Rust starter joins the workspace"
    );
}
