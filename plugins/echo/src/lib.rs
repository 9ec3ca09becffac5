//! `echo`: subscribes to every event, logs it, and counts events per kind in
//! its key-value store (`count/<source>:<kind>`). The smallest useful plugin;
//! copy it to start your own.

use hookhost_sdk::{export, kv, log, Error, Event, Handler, Info};

struct Echo;

impl Handler for Echo {
    fn describe() -> Info {
        Info::new("echo", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let key = format!("count/{}:{}", event.source, event.kind);
        let count = kv::increment(&key, 1)?.to_string();
        let size = event.body.len().to_string();
        log::info(
            "received event",
            &[
                ("source", &event.source),
                ("kind", &event.kind),
                ("bytes", &size),
                ("count", &count),
            ],
        );
        Ok(())
    }
}

export!(Echo);
