//! `log-flood`: a test fixture that writes far more log than hookhost allows
//! (one 1 MiB line with 100 fields of 1 KiB keys and values, then 10,000
//! short lines), or, for kind `huge-error`, returns a 4 MiB error message,
//! so hookhost's tests prove log and error caps hold.

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
        let big_key = "k".repeat(1024);
        let big_value = "v".repeat(1024);
        let fields: Vec<(&str, &str)> = (0..100)
            .map(|_| (big_key.as_str(), big_value.as_str()))
            .collect();
        log::info(&"y".repeat(1 << 20), &fields);
        for i in 0..10_000 {
            let i = i.to_string();
            log::info(&format!("line {i}"), &[("i", &i)]);
        }
        Ok(())
    }
}

export!(LogFlood);
