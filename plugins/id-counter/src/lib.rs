//! `id-counter`: a test fixture for hookhost's crash test. It counts every
//! delivery of every event in its key-value store (`seen/<event id>`), so the
//! test, after killing and restarting the host mid-delivery, reads back
//! through the admin kv API how many times each event id was handled
//! (1 = once, 2 = twice) and proves no event was lost or double-handled
//! beyond what the delivery guarantee allows.

use hookhost_sdk::{export, kv, Error, Event, Handler, Info};

struct IdCounter;

impl Handler for IdCounter {
    fn describe() -> Info {
        Info::new("id-counter", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        kv::increment(&format!("seen/{}", event.id), 1)?;
        Ok(())
    }
}

export!(IdCounter);
