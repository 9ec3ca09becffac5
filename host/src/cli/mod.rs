//! The `hookhost` command line, in the library so tests run it as users do
//! (arguments in, text and an exit code out) against a real server.
//! `main.rs` only sets up logging and signals and calls [`main_with`].
//!
//! - this file: the clap types and the dispatch; exit codes 0 (done),
//!   1 (failed: the reason on stderr, with the server's own message when
//!   it refused) and 2 (usage);
//! - [`serve`]: `hookhost serve`, the server itself;
//! - [`plugin_file`]: `check` and `invoke`, on a `.wasm` file without a
//!   server;
//! - [`send`]: `hookhost send`, a webhook signed as its provider would
//!   sign it (with [`crate::sign`]), posted to ingest;
//! - [`admin`]: `plugins`, `events`, `dlq`, `stats` through the
//!   [`admin_client`];
//! - [`endpoints`]: which URLs and token (flags, environment, config);
//! - [`transport`]: one HTTP exchange with deadlines;
//! - [`output`]: tables and detail views, or `--json`;
//! - [`new`]: `hookhost new`, a starter plugin in a checkout (no server).
//!
//! `anyhow` carries errors here, at the edge: every message names what
//! failed and, where it can, what to do.

pub mod admin;
pub mod admin_client;
pub mod endpoints;
pub mod new;
pub mod output;
pub mod plugin_file;
pub mod send;
pub mod serve;
pub mod transport;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Receive webhooks and run them through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "hookhost", version, about)]
pub struct Cli {
    /// Options every command takes, before or after the subcommand.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Config file, the one the server reads (default: ./hookhost.toml if
    /// present, else the built-in demo defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the server's JSON answer as it is, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The admin API's URL (default: http://<server.admin_listen>).
    #[arg(long, global = true, value_name = "URL")]
    pub admin: Option<String>,
    /// The admin token (default: $HOOKHOST_ADMIN_TOKEN, else the config's
    /// admin_token). Prefer the variable: arguments show in `ps`.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Deadline for each request to the server, in seconds (default: 30,
    /// or 300 for uploads, reloads and bulk replays).
    #[arg(long, global = true, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

impl Cli {
    /// Whether this runs the server, whose logs an operator reads; the
    /// other commands print their results and need only errors logged.
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Serve)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    Invoke(plugin_file::InvokeArgs),
    /// Sign a payload as the source's provider would and post it to the
    /// server's ingest listener.
    Send(send::SendArgs),
    /// List, inspect and steer plugins.
    Plugins {
        /// What to do.
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// List, inspect and replay stored events.
    Events {
        /// What to do.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Dead letters: deliveries given up on, kept until replayed or deleted.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Queue, delivery and dead-letter counts, per plugin.
    Stats,
    /// Write a starter plugin into this hookhost checkout's plugins/, and
    /// print the commands that build it into plugins/NAME.wasm.
    New(new::NewArgs),
}

/// `hookhost plugins …`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin: state, version, subscriptions, counts.
    List,
    /// One plugin in full, with its last load error.
    Show {
        /// The plugin's name (its file name without `.wasm`).
        name: String,
    },
    /// Load NAME.wasm from the plugins folder again.
    Reload {
        /// The plugin's name.
        name: String,
    },
    /// Hold its deliveries (they queue) until `resume`.
    Pause {
        /// The plugin's name.
        name: String,
    },
    /// Let its held deliveries run.
    Resume {
        /// The plugin's name.
        name: String,
    },
    /// Validate FILE on the server and install it as NAME.wasm.
    Upload {
        /// The plugin's name.
        name: String,
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Remove NAME.wasm: new deliveries stop; pending ones wait for it.
    Delete {
        /// The plugin's name.
        name: String,
    },
}

/// `hookhost events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Stored events, oldest first.
    List {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only events in this status.
        #[arg(long, value_parser = ["unrouted", "pending", "dead", "delivered"])]
        status: Option<String>,
        /// At most this many (the server's default is 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Go on after this event id (printed after a full page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One event with every delivery, attempt and log line.
    Show {
        /// The event id ingest answered (evt_…).
        id: String,
    },
    /// Deliver it again to every plugin subscribed to it now.
    Replay {
        /// The event id.
        id: String,
    },
}

/// `hookhost dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, in the order their events arrived.
    List {
        /// Filters.
        #[command(flatten)]
        filter: DlqFilter,
        /// At most this many (the server's default is 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Go on after this dead letter id (printed after a full page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One dead letter with its attempts.
    Show {
        /// The dead letter's id (evt_…:plugin).
        id: String,
    },
    /// Replay one dead letter, or with --all every one the filters select.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Replay {
        /// The dead letter's id (evt_…:plugin).
        id: Option<String>,
        /// Replay every dead letter (of --plugin, --source, --kind if given).
        #[arg(long)]
        all: bool,
        /// Filters for --all.
        #[command(flatten)]
        filter: DlqReplayFilter,
    },
    /// Delete a dead letter (its event's history keeps it, as deleted).
    Delete {
        /// The dead letter's id (evt_…:plugin).
        id: String,
    },
}

/// Filters of `dlq list`.
#[derive(Debug, Args)]
pub struct DlqFilter {
    /// Only this plugin's.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Only events from this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only events of this kind.
    #[arg(long)]
    pub kind: Option<String>,
}

/// Filters of `dlq replay --all`: refused next to an id, so a filter is
/// never silently ignored.
#[derive(Debug, Args)]
pub struct DlqReplayFilter {
    /// Only this plugin's.
    #[arg(long, conflicts_with = "id")]
    pub plugin: Option<String>,
    /// Only events from this source.
    #[arg(long, conflicts_with = "id")]
    pub source: Option<String>,
    /// Only events of this kind.
    #[arg(long, conflicts_with = "id")]
    pub kind: Option<String>,
}

/// How a command ended, as the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: failed; the reason is on stderr.
    Failure,
    /// 2: the command line was wrong (clap's convention).
    Usage,
    /// 130: stopped by SIGINT or SIGTERM (128 + SIGINT, the shells'
    /// convention).
    Interrupted,
}

impl Exit {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// What a command gets from the process, passed in so tests choose it.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The environment: `env:NAME` secrets, `HOOKHOST_*` overrides and
    /// `HOOKHOST_ADMIN_TOKEN` are read from it, never from the process.
    pub env: Vec<(String, String)>,
    /// Cancelled to make `serve` drain and return (on SIGTERM or Ctrl-C).
    pub shutdown: CancellationToken,
}

/// Parse `args` (the program name first), run the command, print results
/// to `out` and errors to `err`; the exit status.
pub async fn main_with<I, T>(
    args: I,
    ctx: &Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match parse(args, out, err) {
        Ok(cli) => execute(cli, ctx, out, err).await,
        Err(exit) => exit,
    }
}

/// Parse `args`; on a usage error print clap's message to `err`
/// ([`Exit::Usage`]), for `--help` and `--version` print to `out`
/// ([`Exit::Ok`]).
pub fn parse<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> Result<Cli, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|e| {
        let text = e.render().to_string();
        if e.use_stderr() {
            let _ = write!(err, "{text}");
            Exit::Usage
        } else {
            let _ = write!(out, "{text}");
            Exit::Ok
        }
    })
}

/// Run a parsed command, printing a failure's reason to `err`.
pub async fn execute(cli: Cli, ctx: &Context, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    match run(cli, ctx, out).await {
        Ok(Exit::Interrupted) => {
            let _ = writeln!(err, "interrupted");
            Exit::Interrupted
        }
        Ok(exit) => exit,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            if e.is::<new::Refused>() {
                Exit::Usage
            } else {
                Exit::Failure
            }
        }
    }
}

/// Run a parsed command. A cancelled [`Context::shutdown`] makes `serve`
/// drain and return, and interrupts any other command
/// ([`Exit::Interrupted`]).
pub async fn run(cli: Cli, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<Exit> {
    if let Command::Serve = cli.command {
        serve::run(cli.global.config.as_deref(), ctx).await?;
        return Ok(Exit::Ok);
    }
    tokio::select! {
        exit = run_command(&cli, ctx, out) => exit,
        () = ctx.shutdown.cancelled() => Ok(Exit::Interrupted),
    }
}

async fn run_command(cli: &Cli, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let g = &cli.global;
    let timeout = g.timeout.map(Duration::from_secs);
    let admin_client = || -> anyhow::Result<admin_client::AdminClient> {
        let target = endpoints::admin_target(
            g.admin.as_deref(),
            g.token.as_deref(),
            g.config.as_deref(),
            &ctx.env,
        )?;
        Ok(admin_client::AdminClient::new(target, timeout))
    };
    match &cli.command {
        Command::Serve => serve::run(g.config.as_deref(), ctx).await?,
        Command::Check { plugin } => plugin_file::check(plugin, g.json, out).await?,
        Command::Invoke(a) => {
            if !plugin_file::invoke(a, out).await? {
                return Ok(Exit::Failure);
            }
        }
        Command::Send(a) => {
            send::run(a, g.config.as_deref(), &ctx.env, timeout, g.json, out).await?;
        }
        Command::Plugins { command } => {
            admin::plugins(&admin_client()?, command, g.json, out).await?;
        }
        Command::Events { command } => {
            admin::events(&admin_client()?, command, g.json, out).await?;
        }
        Command::Dlq { command } => admin::dlq(&admin_client()?, command, g.json, out).await?,
        Command::Stats => admin::stats(&admin_client()?, g.json, out).await?,
        Command::New(a) => new::run(a, out)?,
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hookhost").chain(args.iter().copied()))
    }

    #[test]
    fn globals_go_before_or_after_the_subcommand() {
        for args in [
            &["--config", "x.toml", "--json", "plugins", "list"][..],
            &["plugins", "list", "--config", "x.toml", "--json"],
            &["plugins", "--json", "list", "--config=x.toml"],
        ] {
            let cli = parse(args).expect("parses");
            assert_eq!(cli.global.config, Some(PathBuf::from("x.toml")), "{args:?}");
            assert!(cli.global.json, "{args:?}");
        }
    }

    #[test]
    fn dlq_replay_takes_an_id_or_all() {
        assert!(parse(&["dlq", "replay", "evt_1:p"]).is_ok());
        assert!(parse(&["dlq", "replay", "--all"]).is_ok());
        assert!(parse(&["dlq", "replay", "--all", "--plugin", "p"]).is_ok());
        for bad in [
            &["dlq", "replay"][..],
            &["dlq", "replay", "evt_1:p", "--all"],
            &["dlq", "replay", "evt_1:p", "--plugin", "p"],
            &["events", "list", "--status", "done"],
            &["events", "list", "--limit", "0"],
            &["send", "--file", "x.json"],
        ] {
            let e = parse(bad).expect_err("refused");
            assert!(e.use_stderr(), "{bad:?}");
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
