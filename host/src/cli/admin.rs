//! The commands that steer a running server through its admin API:
//! `plugins`, `events`, `dlq` and `stats`. Each makes one or two calls
//! with the [`AdminClient`] and prints the answer with [`output`] (or, with
//! `--json`, as the server sent it).

use super::admin_client::{AdminClient, DeadLetterFilter, EventFilter};
use super::output;
use super::{DlqCommand, EventsCommand, PluginsCommand};
use anyhow::Context as _;
use serde_json::Value;
use std::io::Write;

/// `hookhost plugins …`.
pub async fn plugins(
    c: &AdminClient,
    cmd: &PluginsCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (answer, done) = match cmd {
        PluginsCommand::List => {
            let v = c.plugins().await?;
            return print(out, json, &v, output::plugins);
        }
        PluginsCommand::Show { name } => {
            let v = c.plugin(name).await?;
            return print(out, json, &v, output::plugin);
        }
        PluginsCommand::Reload { name } => (c.plugin_action(name, "reload").await?, "reloaded"),
        PluginsCommand::Pause { name } => (c.plugin_action(name, "pause").await?, "paused"),
        PluginsCommand::Resume { name } => (c.plugin_action(name, "resume").await?, "resumed"),
        PluginsCommand::Upload { name, file } => {
            let wasm =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            (c.upload(name, wasm).await?, "uploaded")
        }
        PluginsCommand::Delete { name } => (c.delete_plugin(name).await?, "deleted"),
    };
    print(out, json, &answer, |out, v| {
        output::plugin_after(out, done, v)
    })
}

/// `hookhost events …`.
pub async fn events(
    c: &AdminClient,
    cmd: &EventsCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::List {
            source,
            kind,
            status,
            limit,
            cursor,
        } => {
            let filter = EventFilter {
                source: source.clone(),
                kind: kind.clone(),
                status: status.clone(),
                limit: *limit,
                cursor: cursor.clone(),
            };
            let v = c.events(&filter).await?;
            print(out, json, &v, output::events)
        }
        EventsCommand::Show { id } => {
            let v = c.event(id).await?;
            print(out, json, &v, output::event)
        }
        EventsCommand::Replay { id } => {
            let v = c.replay_event(id).await?;
            print(out, json, &v, |out, v| {
                let plugins: Vec<&str> = v["plugins"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if plugins.is_empty() {
                    writeln!(out, "replayed {id}: no plugin subscribes to it now")
                } else {
                    writeln!(
                        out,
                        "replayed {id} to {}\n  hookhost events show {id}",
                        plugins.join(", ")
                    )
                }
            })
        }
    }
}

/// `hookhost dlq …`.
pub async fn dlq(
    c: &AdminClient,
    cmd: &DlqCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            filter,
            limit,
            cursor,
        } => {
            let f = DeadLetterFilter {
                plugin: filter.plugin.clone(),
                source: filter.source.clone(),
                kind: filter.kind.clone(),
                limit: *limit,
                cursor: cursor.clone(),
            };
            let v = c.dead_letters(&f).await?;
            print(out, json, &v, output::dead_letters)
        }
        DlqCommand::Show { id } => {
            let v = c.dead_letter(id).await?;
            print(out, json, &v, output::dead_letter)
        }
        DlqCommand::Replay { id: Some(id), .. } => {
            let v = c.replay_dead_letter(id).await?;
            print(out, json, &v, |out, _| {
                writeln!(
                    out,
                    "replayed {id}: its attempts start again on the plugin's current version"
                )
            })
        }
        DlqCommand::Replay {
            id: None, filter, ..
        } => {
            let f = DeadLetterFilter {
                plugin: filter.plugin.clone(),
                source: filter.source.clone(),
                kind: filter.kind.clone(),
                ..DeadLetterFilter::default()
            };
            let v = c.replay_dead_letters(&f).await?;
            print(out, json, &v, |out, v| {
                writeln!(out, "replayed {} dead letters", v["replayed"])
            })
        }
        DlqCommand::Delete { id } => {
            let v = c.delete_dead_letter(id).await?;
            print(out, json, &v, |out, _| {
                writeln!(
                    out,
                    "deleted {id} (its event's history keeps it, as deleted)"
                )
            })
        }
    }
}

/// `hookhost stats`.
pub async fn stats(c: &AdminClient, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let v = c.stats().await?;
    print(out, json, &v, output::stats)
}

/// The answer as JSON, or through `human`.
fn print(
    out: &mut dyn Write,
    json: bool,
    v: &Value,
    human: impl FnOnce(&mut dyn Write, &Value) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    if json {
        output::json(out, v)?;
    } else {
        human(out, v)?;
    }
    Ok(())
}
