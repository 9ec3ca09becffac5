//! `id-counter`: a test fixture for hookhost's crash test. It counts every
//! delivery of every event in its key-value store (`seen/<event id>`), so the
//! test, after killing and restarting the host mid-delivery, reads back
//! through the admin kv API how many times each event id was handled
//! (1 = once, 2 = twice) and proves no event was lost or double-handled
//! beyond what the delivery guarantee allows. An optional `sleep_ms`
//! config value slows each call, so deliveries fall behind a burst and the
//! kill finds many still queued.

use hookhost_sdk::{config, export, kv, Error, Event, Handler, Info};

struct IdCounter;

impl Handler for IdCounter {
    fn describe() -> Info {
        Info::new("id-counter", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        if let Some(ms) = config::get("sleep_ms").and_then(|v| v.parse::<u64>().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        kv::increment(&format!("seen/{}", event.id), 1)?;
        Ok(())
    }
}

export!(IdCounter);
