//! Write [hookhost](https://github.com/hookhost) webhook plugins in Rust.
//!
//! A plugin is a type that implements [`Handler`], exported with [`export!`]
//! and built for `wasm32-wasip2` as a `cdylib`. hookhost calls
//! [`Handler::handle`] once per delivery attempt, in a fresh sandbox each time:
//! keep state in [`kv`], not in statics.
//!
//! ```
//! use hookhost_sdk::{export, kv, Error, Event, Handler, Info};
//!
//! struct CountKinds;
//!
//! impl Handler for CountKinds {
//!     fn describe() -> Info {
//!         Info::new("count-kinds", env!("CARGO_PKG_VERSION")).subscribe("github:*")
//!     }
//!
//!     fn handle(event: Event) -> Result<(), Error> {
//!         let payload: hookhost_sdk::serde_json::Value = event.json()?;
//!         let action = payload["action"].as_str().unwrap_or("none");
//!         let n = kv::increment(&format!("kind/{}", event.kind), 1)?;
//!         hookhost_sdk::info!("seen {} times (action {})", n, action);
//!         Ok(())
//!     }
//! }
//!
//! export!(CountKinds);
//! ```
//!
//! The errors a handler returns decide what happens next: [`Error::retry`]
//! asks for another attempt later, [`Error::reject`] dead-letters the event.
//! A panic is a trap: hookhost retries it like `retry`.
#![deny(missing_docs)]

pub mod config;
mod event;
pub mod kv;
pub mod log;

pub use event::{Error, Event, Info};
/// Re-exported so plugins read JSON payloads without a dependency of their own.
pub use serde_json;

/// Generated bindings: private to the SDK so plugin authors depend on the
/// curated API above, and the WIT can evolve behind it.
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "hookhost_sdk::__bindings",
    });
}

/// What a plugin implements: one type, two associated functions.
///
/// There is no `self`: every call runs in a fresh instance, so nothing a
/// handler keeps in memory survives to the next event.
pub trait Handler {
    /// Name, version and subscriptions. Called once when hookhost loads the
    /// plugin.
    fn describe() -> Info;

    /// Handle one delivery attempt of one event.
    fn handle(event: Event) -> Result<(), Error>;
}

/// Export a [`Handler`] type as the plugin's implementation of the hookhost
/// contract. Use it once per plugin crate.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        const _: () = {
            struct __HookhostPlugin;

            impl $crate::__bindings::exports::hookhost::plugin::handler::Guest for __HookhostPlugin {
                fn describe() -> $crate::__bindings::hookhost::plugin::types::Info {
                    $crate::__private::describe::<$handler>()
                }

                fn handle(
                    event: $crate::__bindings::hookhost::plugin::types::Event,
                ) -> ::core::result::Result<(), $crate::__bindings::hookhost::plugin::types::Error>
                {
                    $crate::__private::handle::<$handler>(event)
                }
            }

            $crate::__bindings::__export_plugin!(__HookhostPlugin with_types_in $crate::__bindings);
        };
    };
}

/// Glue called by [`export!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use crate::__bindings::hookhost::plugin::types as wit;

    pub fn describe<H: crate::Handler>() -> wit::Info {
        H::describe().into_wit()
    }

    pub fn handle<H: crate::Handler>(event: wit::Event) -> Result<(), wit::Error> {
        H::handle(crate::Event::from_wit(event)).map_err(crate::Error::into_wit)
    }
}
