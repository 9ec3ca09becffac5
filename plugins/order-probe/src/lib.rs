//! `order-probe`: a test fixture for hookhost's per-key ordering test. The
//! body is JSON `{"key":"k1","n":7}`. Each call records its wall-clock span:
//! it reads the start time, sleeps `sleep_ms` (config, default 20), reads the
//! end time, then appends `"{n}@{start}-{end}"` (milliseconds since the Unix
//! epoch) to the comma-separated list in `order/<key>` with a non-atomic
//! read-modify-write, and bumps `calls`.
//!
//! If the host breaks per-key ordering (two calls for one key at once), the
//! test sees overlapping spans or lost entries in a key's list; the spans of
//! different keys show whether they ever ran in parallel. A body that is not
//! the expected JSON is rejected.

use hookhost_sdk::{config, export, kv, log, Error, Event, Handler, Info};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct OrderProbe;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl Handler for OrderProbe {
    fn describe() -> Info {
        Info::new("order-probe", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let body: hookhost_sdk::serde_json::Value = event.json()?;
        let key = body["key"]
            .as_str()
            .ok_or_else(|| Error::reject("order-probe: body needs a string \"key\""))?;
        let n = body["n"]
            .as_i64()
            .ok_or_else(|| Error::reject("order-probe: body needs an integer \"n\""))?;
        let sleep_ms: u64 = config::get("sleep_ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(20);

        let start = now_ms();
        std::thread::sleep(Duration::from_millis(sleep_ms));
        let end = now_ms();

        let entry = format!("{n}@{start}-{end}");
        let list_key = format!("order/{key}");
        let list = match kv::get_str(&list_key)? {
            Some(existing) if !existing.is_empty() => format!("{existing},{entry}"),
            _ => entry.clone(),
        };
        kv::set_str(&list_key, &list)?;
        kv::increment("calls", 1)?;

        log::info("recorded span", &[("key", key), ("entry", &entry)]);
        Ok(())
    }
}

export!(OrderProbe);
