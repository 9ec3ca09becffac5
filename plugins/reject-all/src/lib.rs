//! `reject-all`: a test fixture that rejects every event, so hookhost's tests
//! prove a rejection dead-letters the event at once, without retries.

use hookhost_sdk::{export, Error, Event, Handler, Info};

struct RejectAll;

impl Handler for RejectAll {
    fn describe() -> Info {
        Info::new("reject-all", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        Err(Error::reject(format!(
            "reject-all rejects every event (kind {})",
            event.kind
        )))
    }
}

export!(RejectAll);
