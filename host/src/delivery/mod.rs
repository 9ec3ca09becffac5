//! The delivery engine: gets every stored event to every plugin subscribed
//! to it, at least once, surviving crashes, with retries, dead letters and
//! protection of healthy plugins from broken ones (DESIGN.md "Delivery
//! semantics", issue 4).
//!
//! When finished it is made of:
//!
//! - **routing**, in the pipeline's applier: in the same sled batch as the
//!   event, one delivery per plugin whose subscriptions (or the operator's
//!   `subscribe`) match `source:kind`; an event matching none is kept as
//!   unrouted and can be replayed;
//! - **the queue**, in sled: deliveries ordered by due time and priority,
//!   leased by workers, recorded in one write per attempt; leases that never
//!   finished (a `kill -9`) run again;
//! - **workers**: lease a due delivery, run it in a fresh sandbox through
//!   [`crate::runtime`] under the plugin's limits and concurrency, record the
//!   attempt, and apply the retry decision; woken by new work and the next
//!   due time, never by polling;
//! - [`retry`]: the pure policy turning one attempt's outcome into done,
//!   retry at a time (exponential backoff, full jitter) or dead letter;
//! - [`breaker`]: the pure per-plugin circuit breaker that pauses a plugin
//!   after consecutive failures and lets one probe through after a
//!   cool-down, so a broken plugin cannot starve healthy ones of workers.
//!
//! Modules: [`routing`] (subscriptions and order keys), [`records`] (the
//! sled trees), [`scheduler`] (the in-memory queue), [`engine`] (the
//! dispatcher, workers and replays), [`threads`] (the lower-priority
//! runtime they run on), [`retry`], [`breaker`] and [`retention`].
//!
//! This module must not verify or store webhooks (that is ingest and the
//! pipeline) and must not know how a plugin is instantiated (that is the
//! runtime): it decides what runs when, and what happens after.

pub mod breaker;
pub mod engine;
pub mod records;
pub mod retention;
pub mod retry;
pub mod routing;
pub mod scheduler;
pub mod threads;

pub use engine::{DeadLetterFilter, Engine, Stats};
pub use records::DeliveryKey;
