//! `hookhost send`: the local development loop. Reads a payload file, signs
//! it the way the source's provider would (with the source's scheme and
//! first secret, from the same config the server reads, see
//! [`crate::sign`]), posts it to the ingest listener, and says where to
//! look at the event.

use super::endpoints;
use super::output;
use super::transport::Transport;
use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deadline for ingest's answer: it answers once the event is fsynced,
/// in milliseconds; 30 s allows for a server under load.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What to send where.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// The source's name in the config (`[[source]] name`).
    #[arg(long)]
    pub source: String,
    /// The payload file, sent byte for byte; `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
    /// The event kind, for schemes that send it in a header (github's
    /// X-GitHub-Event, shopify's X-Shopify-Topic, hmac/none with a
    /// kind_header). A github kind `issues.opened` for a body with
    /// `"action":"opened"` is sent as event `issues`.
    #[arg(long)]
    pub kind: Option<String>,
    /// The provider's event id, for schemes that send it in a header
    /// (default: a new one each time, so each send is a new event; give
    /// the same one twice to see deduplication).
    #[arg(long)]
    pub id: Option<String>,
    /// Post here instead of http://<server.listen>/webhooks/<source>; a URL
    /// without a path gets /webhooks/<source> appended.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The request's Content-Type.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
}

/// Sign and post; print the server's answer (`json`: as sent).
pub async fn run(
    args: &SendArgs,
    config_path: Option<&Path>,
    env: &[(String, String)],
    timeout: Option<Duration>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let config = endpoints::load_config(config_path, env)?;
    let Some(source) = config.sources.iter().find(|s| s.name == args.source) else {
        let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no source named {:?} in {}: the configured sources are {}",
            args.source,
            config_origin(config_path),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let body = read_payload(&args.file)?;
    let id = match (&args.id, crate::sign::id_in_header(source.scheme)) {
        (Some(id), _) => Some(id.clone()),
        (None, true) => Some(fresh_id()),
        (None, false) => None,
    };
    let message = crate::sign::Message {
        body: &body,
        kind: args.kind.as_deref(),
        id: id.as_deref(),
        now_unix_s: i64::try_from(crate::clock::now_ms() / 1000).unwrap_or(i64::MAX),
    };
    let mut headers = crate::sign::sign(source, &message)
        .with_context(|| format!("signing for source {:?}", source.name))?;
    let content_type = HeaderValue::from_str(&args.content_type)
        .with_context(|| format!("--content-type {:?}", args.content_type))?;
    headers.insert(header::CONTENT_TYPE, content_type);
    let url = endpoints::ingest_url(args.url.as_deref(), &config, &source.name)?;

    let reply = Transport::new()
        .send(
            Method::POST,
            &url,
            headers,
            Bytes::from(body),
            timeout.unwrap_or(SEND_TIMEOUT),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e} (is `hookhost serve` running? --url URL or server.listen)")
        })?;
    let answer: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let Some(answer) = answer else {
        anyhow::bail!(
            "{url} answered HTTP {} with something that is not hookhost's JSON: {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
        );
    };
    if reply.status != 200 {
        anyhow::bail!(
            "ingest refused the webhook: {}: {} (HTTP {})",
            answer["error"].as_str().unwrap_or("error"),
            answer["message"].as_str().unwrap_or_default(),
            reply.status
        );
    }
    if json {
        output::json(out, &answer)?;
        return Ok(());
    }
    let mut what = vec![match source.scheme {
        crate::config::SchemeName::None => "unsigned".to_owned(),
        scheme => format!("signed as {scheme}"),
    }];
    what.extend(args.kind.as_ref().map(|k| format!("kind {k}")));
    what.extend(id.as_ref().map(|i| format!("id {i}")));
    writeln!(
        out,
        "sent {} to {url} ({})",
        args.file.display(),
        what.join(", ")
    )?;
    print_answer(out, &answer)?;
    Ok(())
}

/// The ingest answer for people: the event id(s), whether it was a
/// duplicate, and the command that shows it.
fn print_answer(out: &mut dyn Write, answer: &Value) -> std::io::Result<()> {
    let duplicate = answer["duplicate"].as_bool() == Some(true);
    let ids: Vec<&str> = match answer["event_ids"].as_array() {
        Some(ids) => ids.iter().filter_map(Value::as_str).collect(),
        None => answer["event_id"].as_str().into_iter().collect(),
    };
    if duplicate {
        writeln!(
            out,
            "duplicate: already received as {} (same source and event id; the plugins do not run again)",
            ids.join(", ")
        )?;
    } else {
        writeln!(out, "received: {}", ids.join(", "))?;
    }
    for id in ids {
        writeln!(out, "  hookhost events show {id}")?;
    }
    Ok(())
}

/// A new provider id: unique per send (time and process), so sending the
/// same file again is a new event unless `--id` says otherwise.
fn fresh_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("hookhost-send-{nanos:x}-{:x}", std::process::id())
}

fn read_payload(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading the payload from standard input")?;
        return Ok(body);
    }
    std::fs::read(path).with_context(|| format!("reading the payload {}", path.display()))
}

fn config_origin(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None if Path::new("hookhost.toml").exists() => "hookhost.toml".to_owned(),
        None => "the built-in defaults (no hookhost.toml here; --config PATH)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_say_where_to_look() {
        let mut out = Vec::new();
        print_answer(
            &mut out,
            &json!({"received":true,"event_id":"evt_0000000000000007","duplicate":false}),
        )
        .expect("print");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "received: evt_0000000000000007\n  hookhost events show evt_0000000000000007\n"
        );
        let mut out = Vec::new();
        print_answer(
            &mut out,
            &json!({"received":true,"event_ids":["evt_1","evt_2"],"duplicate":true}),
        )
        .expect("print");
        let s = String::from_utf8_lossy(&out);
        assert!(
            s.starts_with("duplicate: already received as evt_1, evt_2"),
            "{s}"
        );
        assert!(s.contains("events show evt_2"), "{s}");
    }

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(fresh_id(), fresh_id());
    }
}
