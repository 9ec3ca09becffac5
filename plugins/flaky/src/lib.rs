//! `flaky`: a test fixture that fails until attempt `succeed_at` (config,
//! default 3), then succeeds and counts it in the key-value store
//! (`succeeded`), so hookhost's tests prove retries, backoff and the attempt
//! limit. It fails by asking for a retry, or, with `fail_with = "exception"`,
//! by panicking (a trap), the way `flaky-py` and `flaky-js` raise an uncaught
//! exception.

use hookhost_sdk::{config, export, kv, log, Error, Event, Handler, Info};

struct Flaky;

impl Handler for Flaky {
    fn describe() -> Info {
        Info::new("flaky", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let succeed_at: u32 = config::get("succeed_at")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3);
        let attempt = event.attempt.to_string();

        if event.attempt < succeed_at {
            log::info(
                "failing on purpose",
                &[
                    ("attempt", &attempt),
                    ("succeed_at", &succeed_at.to_string()),
                ],
            );
            let message = format!("flaky: attempt {} of {}", event.attempt, succeed_at);
            if config::get("fail_with").as_deref() == Some("exception") {
                panic!("{message}");
            }
            return Err(Error::retry(message));
        }

        kv::increment("succeeded", 1)?;
        log::info("succeeded", &[("attempt", &attempt)]);
        Ok(())
    }
}

export!(Flaky);
