//! `outage`: a test fixture for hookhost's circuit-breaker test. It simulates
//! a dependency outage: every call bumps `calls`, and while that count is at
//! most `recover_after` (config, default 5) the call asks for a retry; after
//! that the dependency is "back", so calls succeed and bump `ok`. The test
//! compares `calls` and `ok` with the deliveries it sent to see when the
//! breaker opened (calls stop reaching the plugin) and that it closed again
//! once calls succeed.

use hookhost_sdk::{config, export, kv, log, Error, Event, Handler, Info};

struct Outage;

impl Handler for Outage {
    fn describe() -> Info {
        Info::new("outage", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let recover_after: i64 = config::get("recover_after")
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        let call = kv::increment("calls", 1)?;
        let call_s = call.to_string();
        let attempt = event.attempt.to_string();

        if call <= recover_after {
            log::warn(
                "dependency down",
                &[
                    ("call", &call_s),
                    ("recover_after", &recover_after.to_string()),
                    ("event", &event.id),
                    ("attempt", &attempt),
                ],
            );
            return Err(Error::retry(format!(
                "outage: dependency down (call {call})"
            )));
        }

        let ok = kv::increment("ok", 1)?.to_string();
        log::info(
            "dependency up",
            &[
                ("call", &call_s),
                ("ok", &ok),
                ("event", &event.id),
                ("attempt", &attempt),
            ],
        );
        Ok(())
    }
}

export!(Outage);
