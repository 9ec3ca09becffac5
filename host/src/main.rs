//! The `hookhost` binary: parses the command line, sets up logging and
//! signal handling, then runs the command, which lives in the library
//! ([`hookhost::cli`]) so tests can run it.

use hookhost::cli::{execute, parse, Context, Exit};
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match parse(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ) {
        Ok(cli) => cli,
        Err(exit) => return exit.into(),
    };
    // The server logs what it does; other commands print their results,
    // and a config warning on every `hookhost send` would be noise.
    let default_filter = if cli.is_server() {
        "info,cranelift=warn,wasmtime=warn"
    } else {
        "error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let tokio = match tokio::runtime::Runtime::new() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    let ctx = Context {
        env: std::env::vars().collect(),
        shutdown: CancellationToken::new(),
    };
    tokio.block_on(async {
        tokio::spawn(cancel_on_signal(ctx.shutdown.clone()));
        // Unlocked handles: holding stderr's lock for the whole command
        // would block every other thread's log line (the server's).
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        execute(cli, &ctx, &mut out, &mut err).await.into()
    })
}

/// SIGTERM or Ctrl-C cancels the context's token: `serve` drains and exits
/// 0 once drained; any other command stops at once (exit 130).
async fn cancel_on_signal(shutdown: CancellationToken) {
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
