//! What the CLI prints: short aligned tables and detail views of the admin
//! API's answers for people, or (`--json`) the answers themselves.
//!
//! Renderers read the fields they show from the JSON and print `-` for one
//! that is missing or null, so a newer or older server still gets a table.
//! Versions are shown by the first 12 hex digits of their SHA-256 (what
//! the server's logs show); times in UTC, RFC 3339, to the second.

use serde_json::Value;
use std::io::{self, Write};

/// Hex digits of a SHA-256 shown in tables: enough to tell versions apart.
const SHORT_SHA: usize = 12;

/// Longest error text in a table cell; `show` prints it whole.
const CELL_TEXT: usize = 80;

/// The answer as pretty JSON (`--json`).
pub fn json(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
    writeln!(out, "{text}")
}

/// `plugins list`: name, state, version, subscriptions, counts; then the
/// last load error of each plugin that has one.
pub fn plugins(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    let list = items(v, None);
    if list.is_empty() {
        return writeln!(out, "no plugins (put NAME.wasm in the plugins folder, or `hookhost plugins upload NAME FILE`)");
    }
    let rows = list
        .iter()
        .map(|p| {
            vec![
                text(&p["name"]),
                text(&p["state"]),
                short_sha(&p["sha256"]),
                subscriptions(&p["subscriptions"]),
                text(&p["queued"]),
                text(&p["delivered"]),
                text(&p["dead_lettered"]),
            ]
        })
        .collect();
    table(
        out,
        &[
            "NAME",
            "STATE",
            "SHA256",
            "SUBSCRIPTIONS",
            "QUEUED",
            "DELIVERED",
            "DEAD",
        ],
        rows,
    )?;
    for p in list {
        if let Some(e) = p["last_error"].as_object() {
            writeln!(
                out,
                "{}: last load error at {}: {}",
                text(&p["name"]),
                time(&e.get("at_ms").cloned().unwrap_or(Value::Null)),
                text(e.get("message").unwrap_or(&Value::Null))
            )?;
        }
    }
    Ok(())
}

/// `plugins show NAME`: every field of the plugin object.
pub fn plugin(out: &mut dyn Write, p: &Value) -> io::Result<()> {
    let last_error = match p["last_error"].as_object() {
        Some(e) => format!(
            "at {}: {}",
            time(e.get("at_ms").unwrap_or(&Value::Null)),
            text(e.get("message").unwrap_or(&Value::Null))
        ),
        None => "-".to_owned(),
    };
    let declared = format!(
        "{} {}",
        text(&p["declared_name"]),
        text(&p["declared_version"])
    );
    let rows: Vec<(&str, String)> = vec![
        ("name", text(&p["name"])),
        ("state", text(&p["state"])),
        ("sha256", text(&p["sha256"])),
        ("declared", declared),
        ("subscriptions", subscriptions(&p["subscriptions"])),
        ("loaded at", time(&p["loaded_at_ms"])),
        ("last error", last_error),
        ("queued", text(&p["queued"])),
        ("in flight", text(&p["in_flight"])),
        ("delivered", text(&p["delivered"])),
        ("failed attempts", text(&p["failed_attempts"])),
        ("dead lettered", text(&p["dead_lettered"])),
        ("attempts/s", text(&p["attempts_per_s"])),
        (
            "duration p50/p99",
            format!(
                "{} / {}",
                micros(&p["duration_p50_us"]),
                micros(&p["duration_p99_us"])
            ),
        ),
        ("breaker", text(&p["breaker"])),
    ];
    fields(out, &rows)
}

/// One line about a plugin after an action: `paused echo: state paused,
/// sha256 0123456789ab`.
pub fn plugin_after(out: &mut dyn Write, done: &str, p: &Value) -> io::Result<()> {
    writeln!(
        out,
        "{done} {}: state {}, sha256 {}, subscribes to {}",
        text(&p["name"]),
        text(&p["state"]),
        short_sha(&p["sha256"]),
        subscriptions(&p["subscriptions"])
    )
}

/// `events list`: id, source, kind, status, received time; how to go on
/// when there is a next page.
pub fn events(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    let list = items(v, Some("events"));
    if list.is_empty() {
        writeln!(out, "no events")?;
    } else {
        let rows = list
            .iter()
            .map(|e| {
                vec![
                    text(&e["event_id"]),
                    text(&e["source"]),
                    text(&e["kind"]),
                    text(&e["status"]),
                    time(&e["received_at_ms"]),
                ]
            })
            .collect();
        table(out, &["ID", "SOURCE", "KIND", "STATUS", "RECEIVED"], rows)?;
    }
    next_page(out, v, "events list")
}

/// `events show ID`: the event, then each delivery with its attempts and
/// the log lines each attempt wrote.
pub fn event(out: &mut dyn Write, e: &Value) -> io::Result<()> {
    fields(
        out,
        &[
            ("event", text(&e["event_id"])),
            ("source", text(&e["source"])),
            ("kind", text(&e["kind"])),
            ("provider id", text(&e["provider_id"])),
            ("received", time(&e["received_at_ms"])),
            ("status", text(&e["status"])),
            ("body", body(e)),
        ],
    )?;
    let deliveries = items(&e["deliveries"], None);
    if deliveries.is_empty() {
        return writeln!(out, "deliveries: none (no plugin subscribes to it)");
    }
    writeln!(out, "deliveries:")?;
    for d in deliveries {
        let mut line = format!(
            "  {}  {}  ({})",
            text(&d["plugin"]),
            text(&d["state"]),
            text(&d["id"])
        );
        if let Some(n) = d["next_attempt"].as_u64() {
            line.push_str(&format!(", next attempt {n} at {}", time(&d["due_ms"])));
        }
        if let Some(reason) = d["dead_reason"].as_str() {
            line.push_str(&format!(", dead: {reason}"));
        }
        writeln!(out, "{line}")?;
        attempts(out, &d["attempts"], "    ")?;
    }
    Ok(())
}

/// `dlq list`: id, plugin, attempts, last error.
pub fn dead_letters(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    let list = items(v, Some("dead_letters"));
    if list.is_empty() {
        writeln!(out, "no dead letters")?;
    } else {
        let rows = list
            .iter()
            .map(|d| {
                vec![
                    text(&d["id"]),
                    text(&d["plugin"]),
                    text(&d["attempts"]),
                    cell(&text(&d["last_error"])),
                ]
            })
            .collect();
        table(out, &["ID", "PLUGIN", "ATTEMPTS", "LAST ERROR"], rows)?;
    }
    next_page(out, v, "dlq list")
}

/// `dlq show ID`: the dead letter and its attempts.
pub fn dead_letter(out: &mut dyn Write, d: &Value) -> io::Result<()> {
    fields(
        out,
        &[
            ("dead letter", text(&d["id"])),
            ("event", text(&d["event_id"])),
            ("plugin", text(&d["plugin"])),
            ("dead at", time(&d["dead_at_ms"])),
            ("reason", text(&d["reason"])),
            ("last error", text(&d["last_error"])),
            ("round", text(&d["round"])),
        ],
    )?;
    writeln!(out, "attempts:")?;
    attempts(out, &d["history"], "  ")
}

/// `stats`: the totals, then one row per plugin.
pub fn stats(out: &mut dyn Write, s: &Value) -> io::Result<()> {
    writeln!(
        out,
        "events {}  queued {}  in flight {}  delivered {}  dead letters {}  workers {}",
        text(&s["events"]),
        text(&s["queued"]),
        text(&s["in_flight"]),
        text(&s["delivered"]),
        text(&s["dead_letters"]),
        text(&s["workers"]),
    )?;
    let Some(plugins) = s["plugins"].as_object().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    writeln!(out)?;
    let rows = plugins
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                text(&p["queued"]),
                text(&p["in_flight"]),
                text(&p["delivered"]),
                text(&p["failed_attempts"]),
                text(&p["dead_lettered"]),
                text(&p["attempts_per_s"]),
                micros(&p["duration_p50_us"]),
                micros(&p["duration_p99_us"]),
                text(&p["breaker"]),
            ]
        })
        .collect();
    table(
        out,
        &[
            "PLUGIN",
            "QUEUED",
            "IN FLIGHT",
            "DELIVERED",
            "FAILED",
            "DEAD",
            "ATTEMPTS/S",
            "P50",
            "P99",
            "BREAKER",
        ],
        rows,
    )
}

// ------------------------------------------------------------------ parts

/// Attempts, one line each, with their log lines below.
fn attempts(out: &mut dyn Write, list: &Value, indent: &str) -> io::Result<()> {
    let list = items(list, None);
    if list.is_empty() {
        return writeln!(out, "{indent}no attempts yet");
    }
    for a in list {
        let mut line = format!(
            "{indent}attempt {} (round {}) at {}: {}",
            text(&a["attempt"]),
            text(&a["round"]),
            time(&a["at_ms"]),
            text(&a["outcome"]),
        );
        if let Some(trap) = a["trap"].as_str() {
            line.push_str(&format!(" ({trap})"));
        }
        line.push_str(&format!(
            ", version {}, {}, fuel {}",
            short_sha(&a["sha256"]),
            micros(&a["duration_us"]),
            text(&a["fuel_used"])
        ));
        if let Some(error) = a["error"].as_str() {
            line.push_str(&format!(": {error}"));
        }
        writeln!(out, "{line}")?;
        for l in items(&a["logs"], None) {
            let mut log = format!("{indent}  [{}] {}", text(&l["level"]), text(&l["message"]));
            if let Some(fields) = l["fields"].as_object() {
                for (k, v) in fields {
                    log.push_str(&format!(" {k}={}", text(v)));
                }
            }
            writeln!(out, "{log}")?;
        }
        if let Some(n) = a["logs_dropped"].as_u64().filter(|n| *n > 0) {
            writeln!(out, "{indent}  ({n} more log lines dropped)")?;
        }
    }
    Ok(())
}

/// The elements of an array, found at `key` of an object or as `v` itself.
fn items<'a>(v: &'a Value, key: Option<&str>) -> &'a [Value] {
    let v = match key {
        Some(k) => &v[k],
        None => v,
    };
    v.as_array().map_or(&[], Vec::as_slice)
}

/// "More: …" when the answer has a `next_cursor`.
fn next_page(out: &mut dyn Write, v: &Value, command: &str) -> io::Result<()> {
    match v["next_cursor"].as_str() {
        Some(cursor) => writeln!(
            out,
            "more: hookhost {command} --cursor {cursor} (with the same filters)"
        ),
        None => Ok(()),
    }
}

/// A body, shown when it is short text.
fn body(e: &Value) -> String {
    let Some(body) = e["body"].as_str() else {
        return "-".to_owned();
    };
    let short = body.trim_end();
    match e["body_encoding"].as_str() {
        Some("utf8") if short.len() <= 200 && !short.contains('\n') => short.to_owned(),
        Some(encoding) => format!("{} bytes ({encoding}; --json shows it)", body.len()),
        None => "-".to_owned(),
    }
}

/// Rows of label, value.
fn fields(out: &mut dyn Write, rows: &[(&str, String)]) -> io::Result<()> {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    Ok(())
}

/// An aligned table; the last column is not padded.
fn table(out: &mut dyn Write, headers: &[&str], rows: Vec<Vec<String>>) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        s
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A JSON value as text: strings as themselves, null or missing as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        // Event kinds, bodies and log lines come from senders and plugins:
        // control characters are shown escaped, never sent to the terminal
        // (an escape sequence could rewrite the screen or the clipboard).
        Value::String(s) => s
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Text for a table cell: one line, at most [`CELL_TEXT`] characters.
fn cell(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= CELL_TEXT {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(CELL_TEXT - 1).collect();
    cut.push('…');
    cut
}

fn short_sha(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.chars().take(SHORT_SHA).collect(),
        None => "-".to_owned(),
    }
}

fn subscriptions(v: &Value) -> String {
    let list: Vec<String> = items(v, None).iter().map(text).collect();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(", ")
    }
}

/// Microseconds as `850 µs`, `12.3 ms` or `1.20 s`.
fn micros(v: &Value) -> String {
    let Some(us) = v.as_u64() else {
        return "-".to_owned();
    };
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Milliseconds since the Unix epoch as `2025-01-31T12:34:56Z`.
fn time(v: &Value) -> String {
    let Some(ms) = v.as_u64() else {
        return "-".to_owned();
    };
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("render");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time(&json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(&json!(951_782_400_000_u64)), "2000-02-29T00:00:00Z");
        assert_eq!(time(&json!(1_700_000_000_123_u64)), "2023-11-14T22:13:20Z");
        assert_eq!(time(&Value::Null), "-");
    }

    #[test]
    fn tables_align_and_missing_fields_are_dashes() {
        let v = json!([
            {"name":"echo","state":"active","sha256":"0123456789abcdef","subscriptions":["*"],
             "queued":0,"delivered":12,"dead_lettered":0,"last_error":null},
            {"name":"billing-long","state":"broken","sha256":null,"subscriptions":["stripe:invoice.*","github:*"],
             "last_error":{"at_ms":0,"message":"not a WebAssembly component"}}
        ]);
        let s = render(|o| plugins(o, &v));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "NAME          STATE   SHA256        SUBSCRIPTIONS               QUEUED  DELIVERED  DEAD"
        );
        assert_eq!(
            lines[1],
            "echo          active  0123456789ab  *                           0       12         0"
        );
        assert_eq!(
            lines[2],
            "billing-long  broken  -             stripe:invoice.*, github:*  -       -          -"
        );
        assert_eq!(
            lines[3],
            "billing-long: last load error at 1970-01-01T00:00:00Z: not a WebAssembly component"
        );
    }

    #[test]
    fn long_errors_are_cut_in_tables() {
        let long = "x".repeat(200);
        assert_eq!(cell(&long).chars().count(), CELL_TEXT);
        assert_eq!(cell("a\nb"), "a b");
        assert_eq!(micros(&json!(999)), "999 µs");
        assert_eq!(micros(&json!(1500)), "1.5 ms");
        assert_eq!(micros(&json!(2_500_000)), "2.50 s");
    }

    #[test]
    fn event_details_show_attempts_and_logs() {
        let e = json!({
            "event_id":"evt_0000000000000001","source":"github","kind":"push","provider_id":"d-1",
            "received_at_ms":0,"status":"dead","body":"{}","body_encoding":"utf8",
            "deliveries":[{"plugin":"nope","id":"evt_0000000000000001:nope","state":"dead",
              "dead_reason":"rejected","attempts":[{"round":0,"attempt":1,"at_ms":0,
              "sha256":"abcdefabcdefabcdef","outcome":"reject","trap":null,"error":"no thanks",
              "fuel_used":10,"duration_us":1500,"logs":[{"level":"info","message":"hi","fields":{"k":"v"}}],
              "logs_dropped":0}]}]
        });
        let s = render(|o| event(o, &e));
        assert!(s.contains("status       dead"), "{s}");
        assert!(
            s.contains("  nope  dead  (evt_0000000000000001:nope), dead: rejected"),
            "{s}"
        );
        assert!(
            s.contains("    attempt 1 (round 0) at 1970-01-01T00:00:00Z: reject, version abcdefabcdef, 1.5 ms, fuel 10: no thanks"),
            "{s}"
        );
        assert!(s.contains("      [info] hi k=v"), "{s}");
    }
}
