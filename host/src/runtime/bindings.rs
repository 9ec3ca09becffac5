//! The one `bindgen!` call: Rust types and traits generated from `wit/`.
//!
//! Kept in its own small file so changes elsewhere in the runtime do not
//! re-expand it (a release rebuild of the macro output is the slow part).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Guest calls are async so a deadline can yield to tokio between epoch
    // ticks; host imports stay sync (they are short sled and log calls).
    exports: { default: async },
});
