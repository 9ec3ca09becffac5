//! `spin-forever`: a test fixture that never returns, spinning the CPU, so
//! hookhost's tests prove the fuel budget and the wall-clock deadline stop it.

use hookhost_sdk::{export, Error, Event, Handler, Info};

struct SpinForever;

impl Handler for SpinForever {
    fn describe() -> Info {
        Info::new("spin-forever", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(_event: Event) -> Result<(), Error> {
        let mut x: u64 = 0;
        loop {
            // black_box keeps the loop from being optimized away.
            x = core::hint::black_box(x.wrapping_add(1));
        }
    }
}

export!(SpinForever);
