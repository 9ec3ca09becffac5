//! `kv-abuser`: a test fixture that pushes the key-value store past its
//! limits, chosen by event kind, and logs what the host answered, so
//! hookhost's tests prove the limits hold:
//!
//! - `oversize`: a 1 MiB value (must be refused)
//! - `bad-key`: an empty key and a 600-byte key (both must be refused)
//! - `flood`: up to 200,000 keys, stopping at the first error (the quota)
//! - `peek`: lists its own keys and looks for echo's `count/test:ping`, which
//!   must be invisible from another plugin's namespace

use hookhost_sdk::{export, kv, log, Error, Event, Handler, Info};

struct KvAbuser;

impl Handler for KvAbuser {
    fn describe() -> Info {
        Info::new("kv-abuser", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        match event.kind.as_str() {
            "oversize" => oversize(),
            "bad-key" => bad_key(),
            "flood" => flood(),
            "peek" => peek(),
            _ => Ok(()),
        }
    }
}

fn oversize() -> Result<(), Error> {
    match kv::set("big", &vec![7u8; 1 << 20]) {
        Err(e) => {
            log::info("oversize refused", &[("error", &e.to_string())]);
            Ok(())
        }
        Ok(()) => Err(Error::reject("oversize value accepted")),
    }
}

fn bad_key() -> Result<(), Error> {
    let empty = kv::set("", b"x");
    let long = kv::set(&"k".repeat(600), b"x");
    match (empty, long) {
        (Err(empty), Err(long)) => {
            log::info(
                "bad keys refused",
                &[("empty", &empty.to_string()), ("long", &long.to_string())],
            );
            Ok(())
        }
        _ => Err(Error::reject("bad key accepted")),
    }
}

fn flood() -> Result<(), Error> {
    for i in 0..200_000 {
        if let Err(e) = kv::set(&format!("flood/{i:06}"), b"1") {
            log::info(
                "flood stopped",
                &[("written", &i.to_string()), ("error", &e.to_string())],
            );
            return Ok(());
        }
    }
    log::info("flood stopped", &[("written", "200000"), ("error", "none")]);
    Ok(())
}

fn peek() -> Result<(), Error> {
    let keys = kv::keys("")?;
    let echo_key = if kv::get("count/test:ping")?.is_some() {
        "found"
    } else {
        "absent"
    };
    log::info(
        "peek",
        &[
            ("keys", &keys.len().to_string()),
            ("first", keys.first().map_or("", String::as_str)),
            ("echo_key", echo_key),
        ],
    );
    Ok(())
}

export!(KvAbuser);
