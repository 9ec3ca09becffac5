//! The threads deliveries run on: a tokio runtime of their own, at a lower
//! CPU priority than ingest's.
//!
//! An acknowledgement is what a provider waits for; a delivery can wait a
//! moment. On the same runtime, plugin calls and their bookkeeping took CPU
//! from the acknowledgement path: a 50,000-event burst on two shared cores
//! was acknowledged in 4.2 s (median of 3) while the workers kept pace with
//! ingest. On threads at nice 19 the scheduler gives ingest the cores first
//! and deliveries the rest: 3.1 s (nice 10: 3.4 s; `SCHED_IDLE`: no better,
//! and more CPU per event), with every delivery still done within 4.5 s.
//! With idle cores nothing changes.
//!
//! The trade-off: under sustained load beyond what the cores can both
//! acknowledge and deliver, deliveries get a small share (about 1.5 % of a
//! contended core against a nice-0 thread) and the queue grows, visible in
//! `queued`; nothing is lost, and it drains once the load eases.

use tokio::runtime::{Builder, Handle, Runtime};

/// How much lower than ingest's the delivery threads' priority is (Linux
/// nice): the lowest, so acknowledgements come first (see the module doc).
pub const NICE: i32 = 19;

/// The delivery runtime. Stopped when dropped or by
/// [`DeliveryThreads::stop`] (without waiting for its tasks), or by
/// [`DeliveryThreads::stop_and_wait`].
pub struct DeliveryThreads {
    runtime: Option<Runtime>,
}

impl DeliveryThreads {
    /// A multi-thread runtime with `threads` workers, each lowering its own
    /// priority by `nice` as it starts.
    pub fn start(threads: usize, nice: i32) -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("hookhost-delivery")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// A runtime already stopped (what is left after a stop).
    pub fn stopped() -> Self {
        Self { runtime: None }
    }

    /// Where to spawn delivery tasks; `None` once stopped.
    pub fn handle(&self) -> Option<Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// Stop the runtime and wait, at most `within`, until its tasks are
    /// dropped (a call cut short runs again at next start, as after a
    /// crash). Waiting matters: what those tasks hold (the store, the
    /// registry, sled) must be released before the server returns, or a
    /// server started next on the same data dir cannot open it. The wait
    /// runs on a blocking thread.
    pub async fn stop_and_wait(&mut self, within: std::time::Duration) {
        if let Some(runtime) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || runtime.shutdown_timeout(within)).await;
        }
    }

    /// Stop the runtime without blocking: its tasks are dropped in the
    /// background (a call cut short runs again at next start).
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for DeliveryThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Raise the calling thread's nice value (on Linux, nice is per thread).
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes integers only; `who = 0` with
        // PRIO_PROCESS is the calling thread on Linux.
        #[allow(unsafe_code)]
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if r != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the delivery threads' priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
