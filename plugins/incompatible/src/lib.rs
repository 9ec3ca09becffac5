//! `incompatible`: a test fixture built against a different version of the
//! contract (`hookhost:plugin@0.2.0`, while the host speaks `@0.1.0`), so
//! hookhost's tests prove the host refuses it at load and names the version
//! it found.
//!
//! It does not use the SDK on purpose: the SDK always targets the host's own
//! contract. `wit/plugin.wit` is a copy of the real contract with only the
//! package line changed, so the version is the single difference.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::hookhost::plugin::handler::Guest;
use hookhost::plugin::types::{Error, Event, Info};

struct Incompatible;

impl Guest for Incompatible {
    fn describe() -> Info {
        Info {
            name: "incompatible".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            subscriptions: vec!["*".to_string()],
        }
    }

    fn handle(_event: Event) -> Result<(), Error> {
        Ok(())
    }
}

export!(Incompatible);
