//! Builds every plugin in `plugins/` from source, once per test build: the
//! Rust ones for `wasm32-wasip2` with cargo, the Python (`*-py`) and
//! JavaScript (`*-js`) ones with `plugins/build-interpreted.sh` (which
//! installs componentize-py and jco from their pinned versions first). It
//! tells the tests where the components are (`HOOKHOST_PLUGIN_WASM_DIR`,
//! `HOOKHOST_INTERPRETED_WASM_DIR`). Tests never use checked-in binaries.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf();
    let plugins = root.join("plugins");
    // Sources only: watching all of plugins/ would include plugins/target,
    // which this script itself writes.
    for watched in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "sdk/rust",
        "sdk/python/hookhost",
        "sdk/python/requirements.txt",
        "sdk/js/hookhost.js",
        "sdk/js/package-lock.json",
        "sdk/js/tools",
        "plugins/build-interpreted.sh",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for entry in std::fs::read_dir(&plugins).expect("plugins/").flatten() {
        let path = entry.path();
        if path.join("Cargo.toml").exists() {
            println!(
                "cargo:rerun-if-changed={}",
                path.join("Cargo.toml").display()
            );
            println!("cargo:rerun-if-changed={}", path.join("src").display());
            if path.join("wit").exists() {
                println!("cargo:rerun-if-changed={}", path.join("wit").display());
            }
        }
        let interpreted = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-py") || n.ends_with("-js"));
        if interpreted {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let target_dir = plugins.join("target");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags are for the host target, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build plugins");
    if !status.success() {
        panic!(
            "building plugins/ for wasm32-wasip2 failed ({status}). \
             Is the target installed? `rustup target add wasm32-wasip2`"
        );
    }
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=HOOKHOST_PLUGIN_WASM_DIR={}", out.display());

    // Python and JavaScript plugins: the script rebuilds only what changed
    // and serializes concurrent runs itself. (A new `*-py`/`*-js` folder is
    // only seen once something above changes: watching plugins/ itself
    // would watch plugins/target too.)
    println!("cargo:rerun-if-env-changed=HOOKHOST_JS_BACKEND");
    println!("cargo:rerun-if-env-changed=HOOKHOST_FORCE");
    let interpreted = target_dir.join("interpreted");
    let status = Command::new("bash")
        .arg(root.join("plugins").join("build-interpreted.sh"))
        .arg(&interpreted)
        .status()
        .expect("running plugins/build-interpreted.sh");
    if !status.success() {
        panic!(
            "building the Python and JavaScript plugins failed ({status}); \
             plugins/build-interpreted.sh needs python3 (with venv), \
             node 20.6+ and npm, and flock"
        );
    }
    println!(
        "cargo:rustc-env=HOOKHOST_INTERPRETED_WASM_DIR={}",
        interpreted.display()
    );
    println!("cargo:rustc-env=HOOKHOST_REPO_ROOT={}", root.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by cargo"))
}
