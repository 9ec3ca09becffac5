//! `noop`: a test fixture that does nothing and makes no host calls, so
//! hookhost's benchmarks measure the bare cost of one call into a plugin.

use hookhost_sdk::{export, Error, Event, Handler, Info};

struct Noop;

impl Handler for Noop {
    fn describe() -> Info {
        Info::new("noop", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        core::hint::black_box(event.body.len());
        Ok(())
    }
}

export!(Noop);
