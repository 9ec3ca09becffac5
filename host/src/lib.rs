//! hookhost receives webhooks, verifies and durably stores them, and hands
//! every event to sandboxed WebAssembly components (plugins) that users
//! write in any language against the WIT contract in `wit/`.
//!
//! # Layout
//!
//! - [`runtime`]: where a plugin runs. One wasmtime engine; each call gets a
//!   fresh instance under fuel, a wall-clock deadline and a memory cap, and
//!   ends in a typed [`runtime::Outcome`].
//! - [`journal`]: the ingest journal, where a webhook becomes durable:
//!   append-only, checksummed, group-committed with one `fdatasync`.
//! - [`kv`]: the per-plugin key-value namespaces in sled behind the `kv`
//!   import.
//! - [`verify`]: signature schemes (Standard Webhooks, GitHub, Stripe,
//!   Shopify, Slack, generic HMAC) checked over the raw bytes in constant
//!   time, with rotation and timestamp tolerance. Pure functions.
//! - [`clock`]: wall-clock milliseconds, read only at the edges.
//!
//! # Flow of one webhook
//!
//! `POST /webhooks/{source}` is verified over the raw bytes, appended to the
//! ingest log and fsynced (the durability point, then `200`), applied into
//! sled, routed to every subscribed plugin, and run by [`runtime`] with
//! retries and dead letters on failure. Today the crate holds the last step,
//! the sandbox; ingest, the queue and the admin API are the next modules.

pub mod clock;
pub mod journal;
pub mod kv;
pub mod runtime;
pub mod verify;
