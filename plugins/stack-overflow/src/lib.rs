//! `stack-overflow`: a test fixture that recurses without bound until the
//! WebAssembly call stack overflows, so hookhost's tests prove a stack
//! overflow is a trap like any other.

use hookhost_sdk::{export, Error, Event, Handler, Info};

struct StackOverflow;

/// Real recursion: the call is not in tail position and its result is mixed
/// through `black_box`, so LLVM can turn it into neither a loop nor an
/// accumulator.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let r = deep(core::hint::black_box(n - 1));
    core::hint::black_box(r.rotate_left(3) ^ n)
}

impl Handler for StackOverflow {
    fn describe() -> Info {
        Info::new("stack-overflow", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(_event: Event) -> Result<(), Error> {
        // u64::MAX levels deep: the stack runs out long before.
        core::hint::black_box(deep(u64::MAX));
        Ok(())
    }
}

export!(StackOverflow);
