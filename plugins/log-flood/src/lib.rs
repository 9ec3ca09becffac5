//! `log-flood`: a test fixture that writes far more log than hookhost allows
//! (10,000 lines, then one 1 MiB line), or, for kind `huge-error`, returns a
//! 4 MiB error message, so hookhost's tests prove log and error caps hold.

use hookhost_sdk::{export, log, Error, Event, Handler, Info};

struct LogFlood;

impl Handler for LogFlood {
    fn describe() -> Info {
        Info::new("log-flood", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        if event.kind == "huge-error" {
            return Err(Error::retry("x".repeat(4 << 20)));
        }
        for i in 0..10_000 {
            let i = i.to_string();
            log::info(&format!("line {i}"), &[("i", &i)]);
        }
        log::info(&"y".repeat(1 << 20), &[]);
        Ok(())
    }
}

export!(LogFlood);
