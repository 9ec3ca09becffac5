//! hookhost receives webhooks, verifies and durably stores them, and hands
//! every event to sandboxed WebAssembly components (plugins) that users
//! write in any language against the WIT contract in `wit/`.
//!
//! # Layout
//!
//! Where a webhook goes, in order:
//!
//! - [`server`]: starts and stops everything: stores, journal replay,
//!   listeners, and the shutdown drain.
//! - [`config`]: the layered configuration (defaults, file, environment),
//!   validated once at start.
//! - [`ingest`]: `POST /webhooks/{source}`, the front door, with [`access`]
//!   (client address and allowlist), [`ratelimit`], [`verify`] (signatures
//!   over the raw bytes) and [`identify`] (event id, kind, split).
//! - [`pipeline`]: dedupe, then the [`journal`] (append, group commit,
//!   `fdatasync`: the durability point) and the applier into the [`store`]
//!   (sled), off the acknowledgement path.
//! - [`event`]: the stored event and its encoding.
//! - [`runtime`]: where a plugin runs. One wasmtime engine; each call gets a
//!   fresh instance under fuel, a wall-clock deadline and a memory cap, and
//!   ends in a typed [`runtime::Outcome`]. [`kv`] holds the plugins'
//!   key-value namespaces.
//! - [`registry`]: the plugins folder: one slot per `NAME.wasm`, its
//!   active version, the operator's settings for it, its last load error;
//!   [`watcher`] reloads a plugin when its file changes (hot reload).
//! - [`delivery`]: what happens to a stored event next: routing by
//!   subscription in the applier, the delivery records in sled, the
//!   in-memory scheduler (due times, concurrency, priority, breaker,
//!   per-key order), the workers, retries, dead letters and retention.
//! - [`admin`]: the admin listener: health, readiness, plugins, events,
//!   dead letters, kv, stats; [`api`] is the JSON error shape every HTTP
//!   module answers with.
//! - [`cli`]: the `hookhost` command line (`serve`, `check`, `send`, and
//!   the admin commands), in the library so tests run it; [`sign`] is the
//!   provider's side of every signature scheme, for `hookhost send`.
//! - [`metrics`]: `GET /metrics` (Prometheus text): every metric's name and
//!   help, the handles ingest and the engine count with, and the state
//!   read at scrape time.
//! - [`clock`]: wall-clock milliseconds, read only at the edges.
//! - [`allocator`]: the process's memory allocator (mimalloc) and its
//!   tuning.
//!
//! # Flow of one webhook
//!
//! ```text
//! POST /webhooks/{source}  ingest: source? allowed? size? signature? rate?
//!   -> identify            event id + kind (+ split)
//!   -> pipeline.accept     dedupe (sled, then events still in flight)
//!   -> journal             one write + one fdatasync per group of requests
//!   -> 200                 only now
//!   -> applier             into sled (store), off the acknowledgement path
//!   -> routing             one delivery per subscribed plugin (same applier)
//!   -> scheduler, workers  a fresh sandbox per attempt; retry or dead letter
//! ```

pub mod access;
pub mod admin;
pub mod allocator;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod event;
pub mod identify;
pub mod ingest;
pub mod journal;
pub mod kv;
pub mod metrics;
pub mod pipeline;
pub mod ratelimit;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod sign;
pub mod store;
pub mod verify;
pub mod watcher;
