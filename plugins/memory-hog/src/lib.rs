//! `memory-hog`: a test fixture that allocates 1 MiB after 1 MiB until
//! allocation fails, so hookhost's tests prove the memory cap stops it (the
//! guest aborts, which the host sees as a trap).

use hookhost_sdk::{export, log, Error, Event, Handler, Info};

struct MemoryHog;

impl Handler for MemoryHog {
    fn describe() -> Info {
        Info::new("memory-hog", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(_event: Event) -> Result<(), Error> {
        log::info("allocating", &[]);
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Nonzero, so every page is really written.
            hoard.push(vec![1u8; 1 << 20]);
            core::hint::black_box(&mut hoard);
        }
    }
}

export!(MemoryHog);
