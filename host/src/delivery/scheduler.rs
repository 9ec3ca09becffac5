//! The in-memory queue: which due delivery runs next.
//!
//! Pure (time passed in, no I/O): sled holds the durable truth
//! ([`super::records`]), and this is rebuilt from it at start. It decides:
//!
//! - **due time**: a delivery waits in a timer set until due;
//! - **per-plugin concurrency**: at most `concurrency` calls of a plugin run
//!   at once, so one slow plugin cannot take every worker;
//! - **priority**: due deliveries of `high` plugins are leased before
//!   `normal` before `low`, but a priority class with due work that was
//!   passed over [`STARVATION_LIMIT`] times in a row gets the next lease:
//!   each class with due work gets at least one lease in ten;
//! - **fairness**: plugins of one class take turns (round robin);
//! - **circuit breaker**: a plugin whose breaker is open is not leased until
//!   its cool-down ends, then exactly one probe runs;
//! - **per-key order**: for plugins with `order_key`, one delivery per key
//!   is queued or running at a time, the rest wait in arrival order;
//!   different keys run in parallel;
//! - **availability**: deliveries of paused, removed or never-loaded
//!   plugins wait, visible in the counts, and resume when it comes back.

use super::breaker::{Admission, Breaker, BreakerConfig, BreakerState, Permit};
use super::records::DeliveryKey;
use crate::config::Priority;
use crate::runtime::Outcome;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// A delivery the queue holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Which delivery.
    pub key: DeliveryKey,
    /// The attempt it runs as, 1-based within its round.
    pub attempt: u32,
    /// Its replay round.
    pub round: u32,
    /// Not before (ms since the Unix epoch).
    pub due_ms: u64,
    /// Its per-key ordering value.
    pub order_key: Option<String>,
    /// Whether sled holds its `pending` entry. A first attempt routed live
    /// has none: the journal covers it until the applier persists it (see
    /// [`Scheduler::unpersisted_through`]) or it finishes. Set on a lease
    /// from what the queue knows then.
    pub persisted: bool,
}

/// A job handed to a worker, with the breaker's permit for it.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The delivery to run.
    pub job: Job,
    /// Give it back with the outcome.
    pub permit: Permit,
}

/// How the scheduler treats one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Lease order between plugins.
    pub priority: Priority,
    /// Calls running at once.
    pub concurrency: u32,
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Loaded, file present and not paused: may be leased.
    pub available: bool,
}

/// Leases a priority class with due work may be passed over in a row
/// before it gets the next one. 8, not 9: when both lower classes starve
/// at once, one of them waits one lease longer, and still gets one lease
/// in ten.
pub const STARVATION_LIMIT: u32 = 8;

fn class(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

struct Lane {
    policy: Policy,
    running: u32,
    ready: VecDeque<Job>,
    breaker: Breaker,
    /// Per order key: whether one of its jobs is queued or running, and
    /// the ones waiting behind it.
    keys: HashMap<String, VecDeque<Job>>,
    /// Jobs waiting behind a key (counted in `queued`).
    behind: usize,
    /// Jobs in the timer set.
    timed: usize,
}

impl Lane {
    fn new(policy: Policy) -> Self {
        Self {
            policy,
            running: 0,
            ready: VecDeque::new(),
            breaker: Breaker::new(policy.breaker),
            keys: HashMap::new(),
            behind: 0,
            timed: 0,
        }
    }

    fn eligible(&self, now_ms: u64) -> bool {
        if !self.policy.available
            || self.ready.is_empty()
            || self.running >= self.policy.concurrency.max(1)
        {
            return false;
        }
        match self.breaker.state() {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until_ms } => now_ms >= until_ms,
            BreakerState::HalfOpen { .. } => false,
        }
    }
}

/// Per-plugin counts for stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStats {
    /// Waiting (due or not, behind a key included).
    pub queued: usize,
    /// Running now.
    pub running: u32,
    /// The breaker's state.
    pub breaker: BreakerState,
    /// Whether it may be leased.
    pub available: bool,
}

/// The queue. Not thread-safe by itself: the dispatcher keeps it behind a
/// mutex held only for these calls.
pub struct Scheduler {
    lanes: BTreeMap<Arc<str>, Lane>,
    /// Jobs not yet due: (due, key) to the job.
    timers: BTreeMap<(u64, DeliveryKey), Job>,
    /// Consecutive leases each class was passed over with due work.
    passed_over: [u32; 3],
    /// Round-robin position per class: the plugin leased last.
    turn: [Option<Arc<str>>; 3],
    /// Policy for plugins the registry has not described (yet).
    default_policy: Policy,
    running: usize,
    /// Deliveries held (queued or running) and their replay round, so a
    /// job handed in twice (recovery and the journal's replay both finding
    /// it) is queued once.
    known: BTreeMap<DeliveryKey, u32>,
    /// Running jobs without a `pending` entry, by sequence: the journal
    /// must not be released past the oldest.
    running_unpersisted: BTreeMap<u64, usize>,
    /// Queued (not running) jobs without a `pending` entry, in arrival
    /// order: what the applier persists before releasing the journal. A
    /// leased job is unpersisted exactly when it is taken from here, so
    /// the flag on queued jobs is never searched for or updated in place.
    unpersisted: BTreeMap<DeliveryKey, Job>,
    /// Jobs handed in while the same delivery was still held (a replay
    /// landing as its last run finishes): queued once that one is done.
    again: HashMap<DeliveryKey, Job>,
}

impl Scheduler {
    /// An empty queue; plugins not yet given a policy get `default_policy`
    /// (which should say unavailable).
    pub fn new(default_policy: Policy) -> Self {
        Self {
            lanes: BTreeMap::new(),
            timers: BTreeMap::new(),
            passed_over: [0; 3],
            turn: [None, None, None],
            default_policy,
            running: 0,
            known: BTreeMap::new(),
            running_unpersisted: BTreeMap::new(),
            unpersisted: BTreeMap::new(),
            again: HashMap::new(),
        }
    }

    /// Set how a plugin is scheduled (on load, reload, pause, resume,
    /// removal). A changed breaker config starts a fresh breaker.
    pub fn set_policy(&mut self, plugin: &Arc<str>, policy: Policy) {
        match self.lanes.get_mut(plugin) {
            Some(lane) => {
                if lane.policy.breaker != policy.breaker {
                    lane.breaker = Breaker::new(policy.breaker);
                }
                lane.policy = policy;
            }
            None => {
                self.lanes.insert(Arc::clone(plugin), Lane::new(policy));
            }
        }
    }

    /// Queue a delivery. Returns false if it was already queued or running;
    /// a later round of it (a replay that lands while its last run is being
    /// recorded) is then kept and queued when that run finishes.
    pub fn push(&mut self, job: Job, now_ms: u64) -> bool {
        match self.known.get(&job.key) {
            Some(&round) if job.round > round => {
                self.again.insert(job.key.clone(), job);
                return false;
            }
            Some(_) => return false,
            None => {
                self.known.insert(job.key.clone(), job.round);
            }
        }
        if !job.persisted {
            self.unpersisted.insert(job.key.clone(), job.clone());
        }
        let default = self.default_policy;
        let lane = self
            .lanes
            .entry(Arc::clone(&job.key.plugin))
            .or_insert_with(|| Lane::new(default));
        if let Some(k) = &job.order_key {
            match lane.keys.get_mut(k) {
                Some(waiting) => {
                    waiting.push_back(job);
                    lane.behind += 1;
                    return true;
                }
                None => {
                    lane.keys.insert(k.clone(), VecDeque::new());
                }
            }
        }
        self.enqueue(job, now_ms);
        true
    }

    /// Into the lane's ready queue or the timer set, by due time.
    fn enqueue(&mut self, job: Job, now_ms: u64) {
        let Some(lane) = self.lanes.get_mut(&job.key.plugin) else {
            return;
        };
        if job.due_ms <= now_ms {
            lane.ready.push_back(job);
        } else {
            lane.timed += 1;
            self.timers.insert((job.due_ms, job.key.clone()), job);
        }
    }

    fn promote_due(&mut self, now_ms: u64) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let job = entry.remove();
            if let Some(lane) = self.lanes.get_mut(&job.key.plugin) {
                lane.timed -= 1;
                lane.ready.push_back(job);
            }
        }
    }

    /// The next delivery to run, if one is due and may run.
    pub fn lease(&mut self, now_ms: u64) -> Option<Lease> {
        self.promote_due(now_ms);
        let mut has_work = [false; 3];
        for lane in self.lanes.values() {
            if lane.eligible(now_ms) {
                has_work[class(lane.policy.priority)] = true;
            }
        }
        let starving = (0..3).find(|&c| has_work[c] && self.passed_over[c] >= STARVATION_LIMIT);
        let chosen = starving.or_else(|| (0..3).find(|&c| has_work[c]))?;
        for (c, passed) in self.passed_over.iter_mut().enumerate() {
            *passed = if c != chosen && has_work[c] {
                *passed + 1
            } else {
                0
            };
        }
        let plugin = self.next_in_turn(chosen, now_ms)?;
        let lane = self.lanes.get_mut(&plugin)?;
        let Admission::Admitted(permit) = lane.breaker.admit(now_ms) else {
            return None;
        };
        let mut job = lane.ready.pop_front()?;
        lane.running += 1;
        self.running += 1;
        job.persisted = self.unpersisted.remove(&job.key).is_none();
        if !job.persisted {
            *self.running_unpersisted.entry(job.key.seq).or_default() += 1;
        }
        self.turn[chosen] = Some(plugin);
        Some(Lease { job, permit })
    }

    /// The eligible plugin of `class` after the one leased last.
    fn next_in_turn(&self, c: usize, now_ms: u64) -> Option<Arc<str>> {
        let eligible = |(name, lane): (&Arc<str>, &Lane)| {
            (class(lane.policy.priority) == c && lane.eligible(now_ms)).then(|| Arc::clone(name))
        };
        let after = self.turn[c].clone();
        let later = match &after {
            Some(last) => self
                .lanes
                .range::<Arc<str>, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .find_map(eligible),
            None => None,
        };
        later.or_else(|| self.lanes.iter().find_map(eligible))
    }

    /// A leased job finished with `outcome`: `retry_at` is its next due
    /// time if it runs again, `None` if it is finished (done or dead).
    pub fn finish(&mut self, lease: Lease, outcome: &Outcome, retry_at: Option<u64>, now_ms: u64) {
        let Lease { mut job, permit } = lease;
        self.running = self.running.saturating_sub(1);
        self.not_running(&job);
        if let Some(lane) = self.lanes.get_mut(&job.key.plugin) {
            lane.running = lane.running.saturating_sub(1);
            lane.breaker.on_outcome(permit, outcome, now_ms);
        }
        match retry_at {
            Some(due) => {
                job.attempt = job.attempt.saturating_add(1);
                job.due_ms = due;
                // Recording the retry wrote its pending entry.
                job.persisted = true;
                self.enqueue(job, now_ms);
            }
            None => self.forget(&job, now_ms),
        }
    }

    /// A leased job did not run (its plugin vanished, the store could not
    /// be read): back to the front of its queue, untouched, or to the timer
    /// set if `due_ms` is later than now. The breaker does not count it.
    pub fn give_back(&mut self, lease: Lease, due_ms: u64, now_ms: u64) {
        self.running = self.running.saturating_sub(1);
        let Lease { mut job, permit } = lease;
        self.not_running(&job);
        if !job.persisted {
            self.unpersisted.insert(job.key.clone(), job.clone());
        }
        let Some(lane) = self.lanes.get_mut(&job.key.plugin) else {
            return;
        };
        lane.running = lane.running.saturating_sub(1);
        lane.breaker.abandon(permit, now_ms);
        if due_ms <= now_ms {
            lane.ready.push_front(job);
        } else {
            job.due_ms = due_ms;
            self.enqueue(job, now_ms);
        }
    }

    fn not_running(&mut self, job: &Job) {
        if job.persisted {
            return;
        }
        if let Some(n) = self.running_unpersisted.get_mut(&job.key.seq) {
            *n -= 1;
            if *n == 0 {
                self.running_unpersisted.remove(&job.key.seq);
            }
        }
    }

    /// Queued (not running) jobs of events up to `through` that sled holds
    /// no `pending` entry for: the applier writes them before the journal
    /// is released past them, then calls [`Scheduler::mark_persisted`].
    pub fn unpersisted_through(&self, through: u64) -> Vec<Job> {
        self.unpersisted
            .values()
            .take_while(|j| j.key.seq <= through)
            .cloned()
            .collect()
    }

    /// These queued jobs now have their `pending` entries.
    pub fn mark_persisted(&mut self, keys: &[DeliveryKey]) {
        for key in keys {
            self.unpersisted.remove(key);
        }
    }

    /// The oldest event with a running job that has no `pending` entry.
    pub fn oldest_running_unpersisted(&self) -> Option<u64> {
        self.running_unpersisted.keys().next().copied()
    }

    /// The deliveries of one event the queue holds (queued or running),
    /// with their replay rounds.
    pub fn held_of(&self, seq: u64) -> Vec<(Arc<str>, u32)> {
        let from = DeliveryKey::new(seq, "");
        self.known
            .range(from..)
            .take_while(|(k, _)| k.seq == seq)
            .map(|(k, round)| (Arc::clone(&k.plugin), *round))
            .collect()
    }

    /// A job is finished: let the next of its key go, or the same delivery
    /// again if it was handed in meanwhile.
    fn forget(&mut self, job: &Job, now_ms: u64) {
        self.known.remove(&job.key);
        if let Some(again) = self.again.remove(&job.key) {
            // Its key (if any) stays held: the new run goes first.
            self.known.insert(again.key.clone(), again.round);
            self.enqueue(again, now_ms);
            return;
        }
        let Some(k) = &job.order_key else {
            return;
        };
        let Some(lane) = self.lanes.get_mut(&job.key.plugin) else {
            return;
        };
        let next = match lane.keys.get_mut(k) {
            Some(waiting) => waiting.pop_front(),
            None => None,
        };
        match next {
            Some(next) => {
                lane.behind -= 1;
                self.enqueue(next, now_ms);
            }
            None => {
                lane.keys.remove(k);
            }
        }
    }

    /// When the queue may next have work without anything new arriving: the
    /// earliest timer, or the end of a breaker cool-down of a plugin with
    /// due work.
    pub fn next_wake(&self) -> Option<u64> {
        let timer = self.timers.keys().next().map(|(due, _)| *due);
        let breaker = self
            .lanes
            .values()
            .filter(|l| {
                // A plugin at its concurrency limit is woken by a finish,
                // not by the clock.
                l.policy.available && !l.ready.is_empty() && l.running < l.policy.concurrency.max(1)
            })
            .filter_map(|l| match l.breaker.state() {
                BreakerState::Open { until_ms } => Some(until_ms),
                _ => None,
            })
            .min();
        match (timer, breaker) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Deliveries waiting (due or not), all plugins.
    pub fn queued(&self) -> usize {
        self.lanes
            .values()
            .map(|l| l.ready.len() + l.behind + l.timed)
            .sum()
    }

    /// Calls running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Counts of one plugin.
    pub fn lane_stats(&self, plugin: &str) -> Option<LaneStats> {
        self.lanes.get(plugin).map(|l| LaneStats {
            queued: l.ready.len() + l.behind + l.timed,
            running: l.running,
            breaker: l.breaker.state(),
            available: l.policy.available,
        })
    }

    /// Every plugin the queue knows, with its counts.
    pub fn all_lane_stats(&self) -> Vec<(Arc<str>, LaneStats)> {
        self.lanes
            .keys()
            .filter_map(|name| Some((Arc::clone(name), self.lane_stats(name)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn policy(priority: Priority, concurrency: u32) -> Policy {
        Policy {
            priority,
            concurrency,
            breaker: BreakerConfig {
                failure_threshold: 3,
                cool_down_ms: 100,
                max_cool_down_ms: 1000,
            },
            available: true,
        }
    }

    fn job(seq: u64, plugin: &str) -> Job {
        Job {
            key: DeliveryKey::new(seq, plugin),
            attempt: 1,
            round: 0,
            due_ms: 0,
            order_key: None,
            persisted: true,
        }
    }

    fn keyed(seq: u64, plugin: &str, key: &str) -> Job {
        Job {
            order_key: Some(key.into()),
            ..job(seq, plugin)
        }
    }

    fn sched(plugins: &[(&str, Priority, u32)]) -> Scheduler {
        let mut s = Scheduler::new(Policy {
            available: false,
            ..policy(Priority::Normal, 1)
        });
        for (name, p, c) in plugins {
            s.set_policy(&Arc::from(*name), policy(*p, *c));
        }
        s
    }

    fn seqs(leases: &[Lease]) -> Vec<u64> {
        leases.iter().map(|l| l.job.key.seq).collect()
    }

    #[test]
    fn concurrency_caps_each_plugin_and_others_still_run() {
        let mut s = sched(&[("slow", Priority::Normal, 2), ("fast", Priority::Normal, 8)]);
        for i in 0..10 {
            s.push(job(i, "slow"), NOW);
        }
        s.push(job(100, "fast"), NOW);
        let mut got = Vec::new();
        while let Some(l) = s.lease(NOW) {
            got.push(l);
        }
        assert_eq!(seqs(&got), vec![100, 0, 1], "two of slow, and fast's one");
        assert_eq!(s.running(), 3);
        assert_eq!(s.queued(), 8);
        let l = got.remove(1);
        s.finish(l, &Outcome::Ok, None, NOW);
        assert_eq!(s.lease(NOW).map(|l| l.job.key.seq), Some(2));
    }

    #[test]
    fn high_priority_first_but_lower_classes_get_one_lease_in_ten() {
        let mut s = sched(&[
            ("pay", Priority::High, 1000),
            ("stars", Priority::Low, 1000),
            ("misc", Priority::Normal, 1000),
        ]);
        for i in 0..100 {
            s.push(job(i, "pay"), NOW);
            s.push(job(1000 + i, "stars"), NOW);
            s.push(job(2000 + i, "misc"), NOW);
        }
        let first: Vec<Arc<str>> = (0..30)
            .map(|_| s.lease(NOW).expect("work").job.key.plugin)
            .collect();
        for window in first.windows(10) {
            for class in ["stars", "misc"] {
                assert!(
                    window.iter().any(|p| &**p == class),
                    "{class} got no lease in {window:?}"
                );
            }
        }
        let count = |name: &str| first.iter().filter(|p| &***p == name).count();
        assert!(count("pay") >= 20, "high got {} of 30", count("pay"));
        assert_eq!(&*first[0], "pay");
        // With high's work gone, normal goes before low.
        let mut s = sched(&[("stars", Priority::Low, 10), ("misc", Priority::Normal, 10)]);
        s.push(job(1, "stars"), NOW);
        s.push(job(2, "misc"), NOW);
        assert_eq!(s.lease(NOW).map(|l| l.job.key.seq), Some(2));
        assert_eq!(s.lease(NOW).map(|l| l.job.key.seq), Some(1));
    }

    #[test]
    fn plugins_of_one_class_take_turns() {
        let mut s = sched(&[("a", Priority::Normal, 100), ("b", Priority::Normal, 100)]);
        for i in 0..5 {
            s.push(job(i, "a"), NOW);
        }
        for i in 10..12 {
            s.push(job(i, "b"), NOW);
        }
        let got: Vec<u64> = std::iter::from_fn(|| s.lease(NOW))
            .map(|l| l.job.key.seq)
            .collect();
        assert_eq!(got, vec![0, 10, 1, 11, 2, 3, 4]);
    }

    #[test]
    fn timers_hold_jobs_until_due_and_retries_go_back_to_them() {
        let mut s = sched(&[("p", Priority::Normal, 10)]);
        s.push(
            Job {
                due_ms: NOW + 50,
                ..job(1, "p")
            },
            NOW,
        );
        assert!(s.lease(NOW).is_none());
        assert_eq!(s.next_wake(), Some(NOW + 50));
        assert_eq!(s.queued(), 1);
        let l = s.lease(NOW + 50).expect("due");
        s.finish(l, &Outcome::Retry("x".into()), Some(NOW + 80), NOW + 51);
        assert!(s.lease(NOW + 79).is_none());
        let l = s.lease(NOW + 80).expect("due again");
        assert_eq!(l.job.attempt, 2);
        s.finish(l, &Outcome::Ok, None, NOW + 81);
        assert_eq!((s.queued(), s.running(), s.next_wake()), (0, 0, None));
    }

    #[test]
    fn one_job_per_key_at_a_time_in_arrival_order_other_keys_in_parallel() {
        let mut s = sched(&[("o", Priority::Normal, 10)]);
        s.push(keyed(1, "o", "a"), NOW);
        s.push(keyed(2, "o", "a"), NOW);
        s.push(keyed(3, "o", "b"), NOW);
        s.push(keyed(4, "o", "a"), NOW);
        s.push(job(5, "o"), NOW);
        let first: Vec<Lease> = std::iter::from_fn(|| s.lease(NOW)).collect();
        assert_eq!(seqs(&first), vec![1, 3, 5]);
        assert_eq!(s.queued(), 2);
        let mut first = first.into_iter();
        let a1 = first.next().expect("a1");
        // A retry keeps the key: 2 must not overtake 1.
        s.finish(a1, &Outcome::Retry("x".into()), Some(NOW + 10), NOW);
        assert!(s.lease(NOW).is_none());
        let a1 = s.lease(NOW + 10).expect("retry of 1");
        assert_eq!(a1.job.key.seq, 1);
        s.finish(a1, &Outcome::Ok, None, NOW + 10);
        assert_eq!(s.lease(NOW + 10).map(|l| l.job.key.seq), Some(2));
        // A dead letter also lets the key go on.
        assert!(s.lease(NOW + 10).is_none());
    }

    #[test]
    fn an_open_breaker_holds_the_plugin_and_lets_one_probe_through() {
        let mut s = sched(&[
            ("bad", Priority::Normal, 10),
            ("good", Priority::Normal, 10),
        ]);
        for i in 0..6 {
            s.push(job(i, "bad"), NOW);
        }
        let bad: Vec<Lease> = (0..3).map(|_| s.lease(NOW).expect("bad")).collect();
        for l in bad {
            s.finish(l, &Outcome::Retry("down".into()), Some(NOW + 10_000), NOW);
        }
        let stats = s.lane_stats("bad").expect("lane");
        assert_eq!(stats.breaker.as_str(), "open");
        assert!(s.lease(NOW + 50).is_none(), "open: nothing leased");
        s.push(job(100, "good"), NOW + 50);
        assert_eq!(
            s.lease(NOW + 50).map(|l| l.job.key.seq),
            Some(100),
            "a healthy plugin still runs"
        );
        assert_eq!(s.next_wake(), Some(NOW + 100));
        let probe = s.lease(NOW + 100).expect("probe");
        assert!(probe.permit.is_probe());
        assert!(s.lease(NOW + 100).is_none(), "one probe at a time");
        s.finish(probe, &Outcome::Ok, None, NOW + 101);
        assert_eq!(
            s.lane_stats("bad").expect("lane").breaker.as_str(),
            "closed"
        );
        assert!(s.lease(NOW + 101).is_some());
    }

    #[test]
    fn unavailable_plugins_keep_their_jobs_until_they_come_back() {
        let mut s = sched(&[]);
        s.push(job(1, "later"), NOW);
        assert!(s.lease(NOW).is_none());
        assert_eq!(s.queued(), 1);
        s.set_policy(&Arc::from("later"), policy(Priority::Normal, 1));
        assert_eq!(s.lease(NOW).map(|l| l.job.key.seq), Some(1));
    }

    #[test]
    fn a_delivery_handed_in_while_it_runs_runs_again_after() {
        let mut s = sched(&[("p", Priority::Normal, 10)]);
        s.push(keyed(1, "p", "k"), NOW);
        s.push(keyed(2, "p", "k"), NOW);
        let running = s.lease(NOW).expect("1");
        // The same round handed in again (recovery and journal replay both
        // found it) is ignored; a replay of 1 (the next round) landing
        // while its run is being recorded runs after it.
        assert!(!s.push(keyed(1, "p", "k"), NOW));
        assert!(!s.push(
            Job {
                round: 1,
                ..keyed(1, "p", "k")
            },
            NOW
        ));
        s.finish(running, &Outcome::Ok, None, NOW);
        let again = s.lease(NOW).expect("1 again");
        assert_eq!((again.job.key.seq, again.job.round), (1, 1));
        assert!(s.lease(NOW).is_none(), "2 still waits behind its key");
        s.finish(again, &Outcome::Ok, None, NOW);
        assert_eq!(s.lease(NOW).map(|l| l.job.key.seq), Some(2));
    }

    #[test]
    fn jobs_without_a_pending_entry_are_tracked_until_persisted_or_finished() {
        let mut s = sched(&[("p", Priority::Normal, 1)]);
        let fresh = |seq| Job {
            persisted: false,
            ..job(seq, "p")
        };
        s.push(fresh(1), NOW);
        s.push(fresh(2), NOW);
        s.push(fresh(9), NOW);
        let running = s.lease(NOW).expect("1");
        assert_eq!(s.oldest_running_unpersisted(), Some(1));
        let queued: Vec<u64> = s.unpersisted_through(5).iter().map(|j| j.key.seq).collect();
        assert_eq!(queued, vec![2], "queued, not running, and within the bound");
        s.mark_persisted(&[DeliveryKey::new(2, "p")]);
        assert!(s.unpersisted_through(5).is_empty());
        s.finish(running, &Outcome::Ok, None, NOW);
        assert_eq!(s.oldest_running_unpersisted(), None);
        let two = s.lease(NOW).expect("2");
        assert!(two.job.persisted);
        assert_eq!(s.oldest_running_unpersisted(), None);
        // A retry is recorded with its pending entry.
        s.finish(two, &Outcome::Retry("x".into()), Some(NOW), NOW);
        let nine = s.lease(NOW).expect("9");
        assert_eq!(s.oldest_running_unpersisted(), Some(9));
        s.give_back(nine, 0, NOW);
        assert_eq!(s.oldest_running_unpersisted(), None);
        assert_eq!(s.held_of(9).len(), 1);
    }

    #[test]
    fn a_job_is_queued_once_and_given_back_to_the_front() {
        let mut s = sched(&[("p", Priority::Normal, 10)]);
        assert!(s.push(job(1, "p"), NOW));
        assert!(!s.push(job(1, "p"), NOW), "already queued");
        s.push(job(2, "p"), NOW);
        let l = s.lease(NOW).expect("1");
        s.give_back(l, 0, NOW);
        assert_eq!(s.lease(NOW).map(|l| l.job.key.seq), Some(1));
    }
}
