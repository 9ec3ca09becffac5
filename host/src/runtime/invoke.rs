//! One plugin call: a fresh `Store` and instance (or, in warm mode, a live
//! one from the plugin's pool) with fuel, an epoch deadline, a memory
//! limiter and an outer timeout; the result classified into an [`Outcome`]
//! with fuel, duration and peak memory.
//!
//! By default nothing survives a call: the instance, its memory and its
//! WASI context are dropped with the `Store`, and only the plugin's kv
//! writes persist. Warm mode (see [`super::warm`]) keeps a cleanly ended
//! instance for the plugin's next call.

use super::bindings::{self, exports::hookhost::plugin::handler, hookhost::plugin::types};
use super::host::{truncate, CallContext, Grants, HostState, LogCapture};
use super::limits::{Limits, MemoryLimiter};
use super::outcome::{CallReport, Outcome, TrapKind};
use super::plugin::Plugin;
use super::warm::{WarmInstance, WarmPolicy};
use super::Runtime;
use crate::kv::Namespace;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// One event as a plugin receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// hookhost's event id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Derived kind.
    pub kind: String,
    /// Receive time, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Headers that matter for handling.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// What a plugin may use during one call, besides its own kv namespace.
#[derive(Debug, Clone, Default)]
pub struct CallSettings {
    /// Fuel, deadline, memory and log caps.
    pub limits: Limits,
    /// Config values and secrets the operator granted.
    pub grants: Arc<Grants>,
    /// Reuse instances across calls (opt-in); `None`: a fresh one per call.
    pub warm: Option<WarmPolicy>,
}

/// Longest retry/reject message or trap detail kept: a plugin returning a
/// 4 MiB error string must not bloat every attempt record.
const MAX_ERROR_BYTES: usize = 4096;

/// Most bytes a guest may hand the host in one import call or one export
/// result (wasmtime's default is 128 MiB). It must fit a 64 KiB kv value
/// and a whole `keys` page; 8 MiB bounds what a hostile plugin can make the
/// host allocate per call, before the finer caps (log lines, error text)
/// cut it down.
const HOSTCALL_BYTES: usize = 8 << 20;

/// Slack on top of the deadline before the outer timeout gives up on the
/// call future; the epoch deadline normally fires first (within a tick).
const OUTER_TIMEOUT_GRACE: Duration = Duration::from_millis(500);

/// The store's data: WASI (with no preopens, env, args or network), the
/// limiter, and the hookhost imports' state.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) host: HostState,
}

impl CallState {
    /// Make a warm instance's state this call's: its context in log lines,
    /// an empty log capture, memory peak and refusals counted from now.
    fn begin_call(&mut self, call: CallContext, limits: &Limits) {
        self.host.call = call;
        self.host.logs = LogCapture::new(limits.log);
        self.limiter.begin_call();
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Which export to call.
pub(crate) enum Export {
    Describe,
    Handle(types::Event),
}

/// What the export returned when it did not trap.
pub(crate) enum Returned {
    Info(types::Info),
    Handled(Result<(), types::Error>),
}

impl Runtime {
    /// Deliver one event to one plugin. Never fails: every way a call can
    /// end is an [`Outcome`] in the report.
    pub async fn invoke(
        &self,
        plugin: &Plugin,
        settings: &CallSettings,
        event: &Event,
    ) -> CallReport {
        let ctx = CallContext {
            plugin: Arc::clone(&plugin.name_arc),
            version: Arc::clone(&plugin.short_version),
            event_id: event.id.clone(),
            attempt: event.attempt,
        };
        let wit_event = types::Event {
            id: event.id.clone(),
            source: event.source.clone(),
            kind: event.kind.clone(),
            received_at: event.received_at_ms,
            attempt: event.attempt,
            headers: event.headers.clone(),
            body: event.body.clone(),
        };
        let kv = Some(plugin.kv.clone());
        let (_, report) = self
            .call(
                plugin,
                &settings.limits,
                &settings.grants,
                kv,
                ctx,
                Export::Handle(wit_event),
                settings.warm.as_ref(),
            )
            .await;
        report
    }

    /// Call one export of `plugin`: in a fresh store and instance, or with
    /// a `warm` policy in an idle instance from the plugin's pool (a new
    /// one if none is idle), returned to the pool if the call ended
    /// cleanly.
    #[allow(clippy::too_many_arguments)] // one call's whole context
    pub(crate) async fn call(
        &self,
        plugin: &Plugin,
        limits: &Limits,
        grants: &Arc<Grants>,
        kv: Option<Namespace>,
        ctx: CallContext,
        export: Export,
        warm: Option<&WarmPolicy>,
    ) -> (Option<Returned>, CallReport) {
        let started = Instant::now();
        let reused = warm.and_then(|policy| plugin.warm.take(policy, limits, grants));
        let (mut store, exports, calls, born) = match reused {
            Some(w) => {
                let mut store = w.store;
                store.data_mut().begin_call(ctx, limits);
                (store, Some(w.exports), w.calls, w.born)
            }
            None => {
                let store = self.new_store(limits, Arc::clone(grants), kv, ctx);
                (store, None, 0, started)
            }
        };
        self.arm(&mut store, limits);
        let outer = limits.timeout + OUTER_TIMEOUT_GRACE;
        let result =
            tokio::time::timeout(outer, run(&plugin.pre, &mut store, exports, export)).await;

        let state = store.data();
        let mut kept = None;
        let (returned, outcome) = match result {
            Ok(Ok((exports, returned))) => {
                // Ended cleanly (retry and reject included): reusable, unless
                // it hit its memory cap (a guest that caught the failed
                // allocation would stay stuck at the cap).
                kept = (!state.limiter.refused).then_some(exports);
                match returned {
                    Returned::Handled(Err(types::Error::Retry(m))) => {
                        (None, Outcome::Retry(truncate(m, MAX_ERROR_BYTES)))
                    }
                    Returned::Handled(Err(types::Error::Reject(m))) => {
                        (None, Outcome::Reject(truncate(m, MAX_ERROR_BYTES)))
                    }
                    r => (Some(r), Outcome::Ok),
                }
            }
            Ok(Err(e)) => (None, classify(&e, &state.limiter, limits)),
            Err(_elapsed) => (
                None,
                Outcome::Trap {
                    kind: TrapKind::Deadline,
                    detail: format!("outer timeout: no answer within {outer:?}"),
                },
            ),
        };
        let fuel_used = match store.get_fuel() {
            Ok(left) => limits.fuel.saturating_sub(left),
            Err(_) => 0, // metering off (benchmarks only)
        };
        let state = store.data_mut();
        let logs = std::mem::replace(&mut state.host.logs, LogCapture::new(limits.log));
        let report = CallReport {
            outcome,
            fuel_used,
            duration: started.elapsed(),
            peak_memory: state.limiter.peak,
            logs: logs.lines,
            logs_dropped: logs.dropped,
        };
        // A trapped or timed-out instance is dropped here, never reused.
        if let (Some(policy), Some(exports)) = (warm, kept) {
            plugin.warm.put(
                policy,
                WarmInstance {
                    store,
                    exports,
                    calls: calls + 1,
                    born,
                    limits: *limits,
                    grants: Arc::clone(grants),
                },
            );
        }
        (returned, report)
    }

    fn new_store(
        &self,
        limits: &Limits,
        grants: Arc<Grants>,
        kv: Option<Namespace>,
        call: CallContext,
    ) -> Store<CallState> {
        // The builder's defaults grant nothing (no preopened directories,
        // no environment, no arguments, stdio to nowhere); network use is
        // switched off explicitly as well.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            host: HostState {
                call,
                kv,
                grants,
                logs: LogCapture::new(limits.log),
            },
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(HOSTCALL_BYTES);
        store
    }

    /// Give one call its fuel and deadline (before every call: a warm
    /// instance starts each call with a full tank and a new deadline).
    fn arm(&self, store: &mut Store<CallState>, limits: &Limits) {
        if !self.inner.metering {
            return;
        }
        // Cannot fail: fuel is enabled on the engine.
        let _ = store.set_fuel(limits.fuel);
        // Wake every tick: past the deadline, interrupt (a typed
        // `Trap::Interrupt`); before it, yield so other tasks run.
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
    }
}

/// Instantiate (unless warm `exports` are given) and call `export`; the
/// instance's exports come back with the result, for reuse.
async fn run(
    pre: &bindings::PluginPre<CallState>,
    store: &mut Store<CallState>,
    exports: Option<bindings::Plugin>,
    export: Export,
) -> wasmtime::Result<(bindings::Plugin, Returned)> {
    let instance = match exports {
        Some(live) => live,
        None => pre.instantiate_async(&mut *store).await?,
    };
    let handler: &handler::Guest = instance.hookhost_plugin_handler();
    let returned = match export {
        Export::Describe => Returned::Info(handler.call_describe(&mut *store).await?),
        Export::Handle(event) => Returned::Handled(handler.call_handle(&mut *store, &event).await?),
    };
    Ok((instance, returned))
}

/// Classify a trap by what happened, never by its message. Fuel, deadline
/// and stack traps are what they say. Any other trap after a refused memory
/// grow is `memory`: a Rust guest that cannot allocate aborts with
/// `unreachable`, exactly like a panic.
fn classify(err: &wasmtime::Error, limiter: &MemoryLimiter, limits: &Limits) -> Outcome {
    let (kind, detail) = match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (TrapKind::Fuel, format!("{err:#}")),
        Some(Trap::Interrupt) => (TrapKind::Deadline, format!("{err:#}")),
        Some(Trap::StackOverflow) => (TrapKind::Stack, format!("{err:#}")),
        _ if limiter.refused => (
            TrapKind::Memory,
            format!(
                "memory cap of {} bytes reached (peak {} bytes)",
                limits.memory_bytes, limiter.peak
            ),
        ),
        Some(Trap::UnreachableCodeReached) => (TrapKind::Panic, format!("{err:#}")),
        _ => (TrapKind::Other, format!("{err:#}")),
    };
    Outcome::Trap {
        kind,
        detail: truncate(detail, MAX_ERROR_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_grow_turns_an_abort_into_memory_but_not_a_limit_trap() {
        let mut limiter = MemoryLimiter::new(1);
        wasmtime::ResourceLimiter::memory_growing(&mut limiter, 0, 2, None).expect("grow");
        let kind = |trap: Trap| match classify(
            &wasmtime::Error::new(trap),
            &limiter,
            &Limits::default(),
        ) {
            Outcome::Trap { kind, .. } => kind,
            other => panic!("not a trap: {other:?}"),
        };
        assert_eq!(kind(Trap::UnreachableCodeReached), TrapKind::Memory);
        assert_eq!(kind(Trap::MemoryOutOfBounds), TrapKind::Memory);
        // A guest that survived a refused grow and then spun is `deadline`.
        assert_eq!(kind(Trap::Interrupt), TrapKind::Deadline);
        assert_eq!(kind(Trap::OutOfFuel), TrapKind::Fuel);
    }

    #[test]
    fn trap_codes_map_to_kinds() {
        let limiter = MemoryLimiter::new(1 << 20);
        for (trap, kind) in [
            (Trap::OutOfFuel, TrapKind::Fuel),
            (Trap::Interrupt, TrapKind::Deadline),
            (Trap::StackOverflow, TrapKind::Stack),
            (Trap::UnreachableCodeReached, TrapKind::Panic),
            (Trap::MemoryOutOfBounds, TrapKind::Other),
        ] {
            let err = wasmtime::Error::new(trap);
            let Outcome::Trap { kind: got, .. } = classify(&err, &limiter, &Limits::default())
            else {
                panic!("not a trap")
            };
            assert_eq!(got, kind, "{trap:?}");
        }
        let host = wasmtime::Error::msg("host failure");
        assert!(matches!(
            classify(&host, &limiter, &Limits::default()),
            Outcome::Trap {
                kind: TrapKind::Other,
                ..
            }
        ));
    }
}
