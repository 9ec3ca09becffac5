//! Warm mode: an opt-in pool of live instances per plugin version, reused
//! across calls.
//!
//! A fresh instance per call is the default and the isolation guarantee:
//! nothing an event leaves in memory reaches the next one. Interpreter-based
//! plugins pay for it, though: a fresh Python or JavaScript call spends most
//! of its time bringing the interpreter's heap back in. With a
//! [`WarmPolicy`], an instance that ended its call cleanly goes back to its
//! plugin's pool and serves later calls, until it has served `max_calls` or
//! lived `max_age`.
//!
//! What is never shared: instances of different plugins or versions (the
//! pool lives in the [`Plugin`](super::Plugin), one per loaded version), an
//! instance after a trap or timeout (dropped, never returned), or an
//! instance across a change of limits or grants (dropped when taken). Each
//! call still gets its own fuel, deadline, memory cap and log capture.

use super::bindings;
use super::host::Grants;
use super::invoke::CallState;
use super::limits::Limits;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::Store;

/// How long one warm instance may serve, from the operator's config
/// (`warm_max_calls`, `warm_max_secs`): bounds what a leak or stale state
/// inside it can grow into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmPolicy {
    /// Calls one instance serves before it is dropped.
    pub max_calls: u32,
    /// Time one instance lives (from its creation) before it is dropped.
    pub max_age: Duration,
}

/// A live instance between calls: its store (memory, WASI state, the host
/// imports' state) and its exports.
pub(crate) struct WarmInstance {
    pub(crate) store: Store<CallState>,
    pub(crate) exports: bindings::Plugin,
    /// Calls served so far.
    pub(crate) calls: u32,
    pub(crate) born: Instant,
    /// What it was created under: a call with other limits or grants must
    /// not run in it (its memory cap is the limiter's, its grants are in
    /// the store).
    pub(crate) limits: Limits,
    pub(crate) grants: Arc<Grants>,
}

impl WarmInstance {
    fn usable(&self, policy: &WarmPolicy, limits: &Limits, grants: &Arc<Grants>) -> bool {
        self.calls < policy.max_calls
            && self.born.elapsed() < policy.max_age
            && self.limits == *limits
            && Arc::ptr_eq(&self.grants, grants)
    }
}

/// Idle warm instances of one plugin version. Holds at most as many as ran
/// at once (each comes back from a call), so `concurrency` bounds it.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    instances: Vec<WarmInstance>,
    /// Set while the plugin does not run (paused, file removed): a call
    /// still finishing then drops its instance instead of returning it.
    closed: bool,
}

impl WarmPool {
    /// An idle instance that may serve a call under `limits` and `grants`;
    /// unusable ones met on the way are dropped.
    pub(crate) fn take(
        &self,
        policy: &WarmPolicy,
        limits: &Limits,
        grants: &Arc<Grants>,
    ) -> Option<WarmInstance> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match idle.instances.pop() {
                    None => break None,
                    Some(w) if w.usable(policy, limits, grants) => break Some(w),
                    Some(w) => stale.push(w),
                }
            }
        };
        drop(stale); // outside the lock: freeing an instance takes time
        found
    }

    /// Return an instance after a clean call, unless it has served its
    /// time or the pool is closed (then it is dropped, outside the lock).
    pub(crate) fn put(&self, policy: &WarmPolicy, instance: WarmInstance) {
        if instance.calls >= policy.max_calls || instance.born.elapsed() >= policy.max_age {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.closed {
            drop(idle);
            drop(instance);
            return;
        }
        idle.instances.push(instance);
    }

    /// Close the pool (the plugin stopped running): the idle instances are
    /// handed back for the caller to drop where no lock is held, and calls
    /// still running drop theirs when they end.
    pub(crate) fn close(&self) -> Vec<WarmInstance> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.closed = true;
        std::mem::take(&mut idle.instances)
    }

    /// Reopen a closed pool (the plugin runs again).
    pub(crate) fn open(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).closed = false;
    }

    /// Idle instances now (for the admin API and tests).
    pub(crate) fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .instances
            .len()
    }
}
