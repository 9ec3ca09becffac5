//! `panicker`: a test fixture that panics on every event, so hookhost's tests
//! prove a panic is a trap that is retried and never takes the host down.

use hookhost_sdk::{export, Error, Event, Handler, Info};

struct Panicker;

impl Handler for Panicker {
    fn describe() -> Info {
        Info::new("panicker", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        panic!("panicker always panics (event {})", event.id);
    }
}

export!(Panicker);
