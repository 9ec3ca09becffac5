//! `instance-probe`: a test fixture that shows whether calls share an
//! instance (warm mode). It counts calls in a global and logs the count
//! (`calls` is 1 on every call of a fresh instance), and, as the event asks:
//! `{"keep_kib": N}` leaks N KiB that stay in the instance, `{"panic": true}`
//! panics, `{"spin_millions": N}` burns fuel in a loop of N million steps.

use hookhost_sdk::serde_json::Value;
use hookhost_sdk::{export, log, Error, Event, Handler, Info};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

struct InstanceProbe;

/// Calls this instance has served.
static CALLS: AtomicU64 = AtomicU64::new(0);
/// Memory kept on purpose, as a plugin's cache or leak would.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

impl Handler for InstanceProbe {
    fn describe() -> Info {
        Info::new("instance-probe", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let asked: Value = event.json().unwrap_or(Value::Null);
        if let Some(kib) = asked.get("keep_kib").and_then(Value::as_u64) {
            let block = vec![1u8; usize::try_from(kib).unwrap_or(0) * 1024];
            KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(block);
        }
        let kept: usize = KEPT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(Vec::len)
            .sum();
        let mut spun = 0u64;
        if let Some(millions) = asked.get("spin_millions").and_then(Value::as_u64) {
            for i in 0..millions * 1_000_000 {
                spun = std::hint::black_box(spun.wrapping_add(i));
            }
        }
        log::info(
            "probe",
            &[
                ("calls", &calls.to_string()),
                ("kept_kib", &(kept / 1024).to_string()),
                ("spun", &spun.to_string()),
            ],
        );
        if asked.get("panic").and_then(Value::as_bool) == Some(true) {
            panic!("instance-probe: asked to panic");
        }
        Ok(())
    }
}

export!(InstanceProbe);
