//! Commands on a plugin file, without a server: `check` (does it load as
//! the server would load it, and what does it subscribe to) and `invoke`
//! (run one event through it and show what happened). Both use the real
//! runtime: the same compile, contract check and `describe()` call.

use super::output;
use crate::kv::{KvLimits, KvStore};
use crate::runtime::{CallSettings, Event, Grants, Limits, Outcome, Runtime, RuntimeConfig};
use anyhow::Context as _;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `invoke` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct InvokeArgs {
    /// The plugin's `.wasm` file (its file name is the plugin's name).
    pub plugin: PathBuf,
    /// Source the event claims to come from.
    #[arg(long, default_value = "local")]
    pub source: String,
    /// Event kind, e.g. `issues.opened`.
    #[arg(long)]
    pub kind: String,
    /// File with the request body (default: `{}`).
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// Attempt number to present to the plugin.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// A config value for the plugin, `KEY=VALUE` (repeatable).
    #[arg(long = "set", id = "set", value_parser = parse_pair)]
    pub set: Vec<(String, String)>,
    /// Data directory: the plugin's key-value entries persist here.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Wall-clock deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// `check FILE`: load it into a throwaway runtime; print what it declares.
/// A file that does not load is an error naming the file and the reason.
pub async fn check(path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    // Compile into a throwaway directory: checking leaves no trace.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let rt = runtime(scratch.path())?;
    let name = plugin_name(path)?;
    let bytes = read(path)?;
    let p = rt
        .load(&name, bytes)
        .await
        .with_context(|| format!("{} is not a usable hookhost plugin", path.display()))?;
    if json {
        output::json(
            out,
            &json!({
                "name": p.name,
                "sha256": p.sha256,
                "declared_name": p.info.declared_name,
                "declared_version": p.info.declared_version,
                "subscriptions": p.info.subscriptions,
            }),
        )?;
        return Ok(());
    }
    writeln!(out, "ok: {} is a hookhost plugin", path.display())?;
    writeln!(out, "  name             {}", p.name)?;
    writeln!(out, "  sha256           {}", p.sha256)?;
    writeln!(out, "  declared_name    {}", p.info.declared_name)?;
    writeln!(out, "  declared_version {}", p.info.declared_version)?;
    writeln!(
        out,
        "  subscriptions    {}",
        p.info.subscriptions.join(", ")
    )?;
    Ok(())
}

/// `invoke`: one event through the plugin, as the server would run it.
/// `Ok(false)` when the plugin's outcome is not `ok`.
pub async fn invoke(a: &InvokeArgs, out: &mut dyn Write) -> anyhow::Result<bool> {
    let rt = runtime(&a.data_dir)?;
    let name = plugin_name(&a.plugin)?;
    let p = rt
        .load(&name, read(&a.plugin)?)
        .await
        .with_context(|| format!("{} is not a usable hookhost plugin", a.plugin.display()))?;
    let body = match &a.body {
        Some(path) => read(path)?,
        None => b"{}".to_vec(),
    };
    let event = Event {
        id: format!("evt_local_{}", crate::clock::now_ms()),
        source: a.source.clone(),
        kind: a.kind.clone(),
        received_at_ms: crate::clock::now_ms(),
        attempt: a.attempt,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    let settings = CallSettings {
        limits: Limits {
            timeout: Duration::from_millis(a.timeout_ms),
            ..Limits::default()
        },
        grants: Arc::new(Grants {
            config: a.set.iter().cloned().collect(),
            ..Grants::default()
        }),
        warm: None,
    };
    let r = rt.invoke(&p, &settings, &event).await;
    writeln!(
        out,
        "{} {} -> {:?}",
        name,
        p.sha256.get(..12).unwrap_or(&p.sha256),
        r.outcome
    )?;
    writeln!(
        out,
        "  fuel {}  duration {:?}  peak memory {} KiB",
        r.fuel_used,
        r.duration,
        r.peak_memory / 1024
    )?;
    for l in &r.logs {
        writeln!(out, "  log {:?} {} {:?}", l.level, l.message, l.fields)?;
    }
    let ns = rt.kv().namespace(&name)?;
    for (k, v) in ns.entries("", None, 50)? {
        writeln!(out, "  kv {k} = {}", String::from_utf8_lossy(&v))?;
    }
    Ok(r.outcome == Outcome::Ok)
}

fn runtime(data_dir: &Path) -> anyhow::Result<Runtime> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let db = crate::store::open_db(&data_dir.join("db"))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    Ok(Runtime::new(
        RuntimeConfig::new(data_dir),
        KvStore::new(db, KvLimits::default()),
    )?)
}

/// The plugin's name: its file name without `.wasm`, as in the plugins
/// folder.
fn plugin_name(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no usable file name", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
