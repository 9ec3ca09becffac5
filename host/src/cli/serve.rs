//! `hookhost serve`: load the config, bind both listeners and run the
//! server until the context's shutdown token is cancelled (`main` cancels
//! it on SIGTERM or Ctrl-C), then drain.

use super::{endpoints, Context};
use anyhow::Context as _;
use std::path::Path;

/// Run the server to the end of its drain.
pub async fn run(config_path: Option<&Path>, ctx: &Context) -> anyhow::Result<()> {
    let config = endpoints::load_config(config_path, &ctx.env)?;
    let listeners = crate::server::Listeners {
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
    crate::server::run(config, listeners, ctx.shutdown.clone()).await?;
    Ok(())
}
