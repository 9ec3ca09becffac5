//! `sleeper`: a test fixture that blocks in a WASI call (a one-hour sleep)
//! instead of running guest code. Epoch interruption only fires in guest
//! code, so this proves hookhost's outer timeout still ends the call.

use hookhost_sdk::{export, Error, Event, Handler, Info};

struct Sleeper;

impl Handler for Sleeper {
    fn describe() -> Info {
        Info::new("sleeper", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(_event: Event) -> Result<(), Error> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(())
    }
}

export!(Sleeper);
