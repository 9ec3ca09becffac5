//! Builds every plugin in `plugins/` from source for `wasm32-wasip2`, once
//! per test build, and tells the tests where the components are
//! (`HOOKHOST_PLUGIN_WASM_DIR`). Tests never use checked-in binaries.

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
    println!("cargo:rustc-env=HOOKHOST_REPO_ROOT={}", root.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by cargo"))
}
