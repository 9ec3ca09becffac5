//! The `hookhost` command line: parses arguments, sets up logging and calls
//! into the library. Nothing here is needed by tests.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookhost::kv::{KvLimits, KvStore};
use hookhost::runtime::{CallSettings, Event, Grants, Limits, Outcome, Runtime, RuntimeConfig};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Receive webhooks and run them through sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (default: ./hookhost.toml if present, else built-in
    /// demo defaults). Accepted before or after the subcommand.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: ingest, admin API and plugin runtime.
    Serve,
    /// Check a plugin against the contract without starting a server, and
    /// print what it declares and subscribes to.
    Check {
        /// The plugin's `.wasm` file.
        plugin: PathBuf,
    },
    /// Run one event through a plugin, the way the server would, and print
    /// the outcome, the plugin's log lines and its key-value entries.
    Invoke {
        /// The plugin's `.wasm` file (its file name is the plugin's name).
        plugin: PathBuf,
        /// Source the event claims to come from.
        #[arg(long, default_value = "local")]
        source: String,
        /// Event kind, e.g. `issues.opened`.
        #[arg(long)]
        kind: String,
        /// File with the request body (default: `{}`).
        #[arg(long)]
        body: Option<PathBuf>,
        /// Attempt number to present to the plugin.
        #[arg(long, default_value_t = 1)]
        attempt: u32,
        /// A config value for the plugin, `KEY=VALUE` (repeatable).
        #[arg(long = "set", id = "set", value_parser = parse_pair)]
        set: Vec<(String, String)>,
        /// Data directory: the plugin's key-value entries persist here.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Wall-clock deadline in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let tokio = match tokio::runtime::Runtime::new() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tokio.block_on(run(cli.command, cli.config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let config = hookhost::config::load(config_path.as_deref(), &env)?;
            let listeners = hookhost::server::Listeners {
                ingest: tokio::net::TcpListener::bind(config.server.listen)
                    .await
                    .with_context(|| format!("binding server.listen {}", config.server.listen))?,
                admin: tokio::net::TcpListener::bind(config.server.admin_listen)
                    .await
                    .with_context(|| {
                        format!("binding server.admin_listen {}", config.server.admin_listen)
                    })?,
            };
            tracing::info!(ingest = %config.server.listen, admin = %config.server.admin_listen, "listening");
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            hookhost::server::run(config, listeners, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { plugin } => {
            // Compile into a throwaway directory: checking leaves no trace.
            let scratch = tempfile::tempdir().context("creating a scratch directory")?;
            let rt = runtime(scratch.path())?;
            let p = rt.load(&plugin_name(&plugin)?, read(&plugin)?).await?;
            println!("ok: {} is a hookhost plugin", plugin.display());
            println!("  name             {}", p.name);
            println!("  sha256           {}", p.sha256);
            println!("  declared_name    {}", p.info.declared_name);
            println!("  declared_version {}", p.info.declared_version);
            println!("  subscriptions    {}", p.info.subscriptions.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Invoke {
            plugin,
            source,
            kind,
            body,
            attempt,
            set,
            data_dir,
            timeout_ms,
        } => {
            let rt = runtime(&data_dir)?;
            let name = plugin_name(&plugin)?;
            let p = rt.load(&name, read(&plugin)?).await?;
            let body = match body {
                Some(path) => read(&path)?,
                None => b"{}".to_vec(),
            };
            let event = Event {
                id: format!("evt_local_{}", hookhost::clock::now_ms()),
                source,
                kind,
                received_at_ms: hookhost::clock::now_ms(),
                attempt,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            };
            let settings = CallSettings {
                limits: Limits {
                    timeout: Duration::from_millis(timeout_ms),
                    ..Limits::default()
                },
                grants: Arc::new(Grants {
                    config: set.into_iter().collect(),
                    ..Grants::default()
                }),
            };
            let r = rt.invoke(&p, &settings, &event).await;
            println!("{} {} -> {:?}", name, &p.sha256[..12], r.outcome);
            println!(
                "  fuel {}  duration {:?}  peak memory {} KiB",
                r.fuel_used,
                r.duration,
                r.peak_memory / 1024
            );
            for l in &r.logs {
                println!("  log {:?} {} {:?}", l.level, l.message, l.fields);
            }
            let ns = rt.kv().namespace(&name)?;
            for (k, v) in ns.entries("", None, 50)? {
                println!("  kv {k} = {}", String::from_utf8_lossy(&v));
            }
            Ok(if r.outcome == Outcome::Ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// SIGTERM or Ctrl-C starts the drain; the server exits 0 once drained.
async fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot listen for SIGTERM");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: draining"),
    }
    shutdown.cancel();
}

fn runtime(data_dir: &Path) -> anyhow::Result<Runtime> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let db = hookhost::store::open_db(&data_dir.join("db"))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    Ok(Runtime::new(
        RuntimeConfig::new(data_dir),
        KvStore::new(db, KvLimits::default()),
    )?)
}

fn plugin_name(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no usable file name", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
