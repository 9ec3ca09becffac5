//! A per-plugin circuit breaker: after [`BreakerConfig::failure_threshold`]
//! consecutive failed calls, the plugin's deliveries pause for a cool-down,
//! then exactly one probe call is let through; its success closes the
//! breaker, its failure re-opens it for a longer (capped) cool-down.
//!
//! Why: a plugin that fails every call would otherwise keep taking workers
//! from healthy plugins while its deliveries churn through their retries
//! (issue 4 item 6). Paused deliveries are not attempts: they keep their
//! attempt count and simply wait.
//!
//! ```text
//!            N consecutive failures                cool-down over:
//!  Closed ───────────────────────────> Open ─────────────────────> HalfOpen
//!    ^  success resets the count         ^   next admit is the probe   │
//!    │                                   └──── probe fails (cool-down ─┤
//!    │                                          grows, capped)         │
//!    └──────────────────── probe succeeds ─────────────────────────────┘
//! ```
//!
//! Every call gets a [`Permit`] from [`Breaker::admit`] and hands it back
//! with its result. A permit remembers which phase admitted it, so results of
//! calls that were already running when the breaker tripped (or that outlive
//! a whole cool-down) are ignored instead of being mistaken for the probe's.
//!
//! This module is a pure state machine: time is passed in, nothing is read
//! from a clock, nothing panics (a clock going backwards included). It must
//! not know about workers or queues; the caller holds one [`Breaker`] per
//! plugin behind whatever lock its scheduler uses.

use crate::config::EffectivePlugin;
use crate::runtime::Outcome;

/// Consecutive failures that trip the breaker. Five tells a broken plugin
/// from one unlucky event (a single bad payload fails once per retry, spread
/// over minutes, and other events' successes reset the count in between).
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// First cool-down: long enough to stop hammering a broken dependency,
/// short enough that a blip costs little latency.
pub const DEFAULT_COOL_DOWN_MS: u64 = 30_000;
/// Longest cool-down after repeated failed probes: 5 minutes keeps a fixed
/// plugin from waiting long, and stays well under the 1 h retry cap.
pub const DEFAULT_MAX_COOL_DOWN_MS: u64 = 300_000;

/// A breaker's thresholds. Not config keys (DESIGN.md names none); the
/// defaults above apply to every plugin until the contract grows some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 is treated as 1.
    pub failure_threshold: u32,
    /// Pause after the breaker first opens.
    pub cool_down_ms: u64,
    /// Cap on the pause: each failed probe doubles it up to this. Set it to
    /// `cool_down_ms` (or lower) for a fixed cool-down.
    pub max_cool_down_ms: u64,
}

impl Default for BreakerConfig {
    /// 5 failures, 30 s doubling to 5 min.
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            cool_down_ms: DEFAULT_COOL_DOWN_MS,
            max_cool_down_ms: DEFAULT_MAX_COOL_DOWN_MS,
        }
    }
}

impl BreakerConfig {
    /// A plugin's breaker from its effective settings
    /// ([`crate::config::Config::plugin_settings`]): `breaker_failures` and
    /// `breaker_cooldown_ms`, overrides applied. The cap is not a config
    /// key: it stays [`DEFAULT_MAX_COOL_DOWN_MS`], raised to the first
    /// cool-down when that is longer, so a long configured cool-down is
    /// never shortened by the cap.
    pub fn from_settings(settings: &EffectivePlugin) -> Self {
        Self {
            failure_threshold: settings.breaker_failures,
            cool_down_ms: settings.breaker_cooldown_ms,
            max_cool_down_ms: DEFAULT_MAX_COOL_DOWN_MS.max(settings.breaker_cooldown_ms),
        }
    }
}

/// Where a breaker is, for stats, the admin API and the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BreakerState {
    /// Calls flow; `consecutive_failures` is below the threshold.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// Calls are refused until `until_ms` (ms since the Unix epoch); the
    /// first admission at or after it is the probe.
    Open {
        /// End of the cool-down.
        until_ms: u64,
    },
    /// One probe call is out; every other call is refused until it reports.
    HalfOpen {
        /// When the probe was admitted.
        probe_since_ms: u64,
    },
}

impl BreakerState {
    /// The name used in logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

/// Proof that [`Breaker::admit`] let a call through; hand it back to
/// [`Breaker::on_success`], [`Breaker::on_failure`] or [`Breaker::abandon`].
/// Copy, so losing it costs nothing, but a lost probe permit keeps the
/// breaker half-open: always report or abandon it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The phase that issued it (see [`Breaker`]'s `phase`).
    phase: u64,
    /// Whether this call is the half-open probe.
    probe: bool,
}

impl Permit {
    /// Whether this call is the probe, so the worker can log it as such.
    pub fn is_probe(self) -> bool {
        self.probe
    }
}

/// The answer of [`Breaker::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Run the call, then report its result with this permit.
    Admitted(Permit),
    /// The breaker is open: leave the delivery queued (it does not count as
    /// an attempt) and ask again at `until_ms`.
    OpenUntil {
        /// End of the cool-down.
        until_ms: u64,
    },
    /// A probe is out: wait for its result before admitting anything.
    ProbeInFlight,
}

/// One plugin's circuit breaker. See the module doc for the states.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Bumped on every state change; permits from an older phase are stale.
    phase: u64,
    /// The cool-down the next opening uses (grows with failed probes).
    cool_down_ms: u64,
    /// When the breaker last opened, to notice the clock going backwards.
    opened_at_ms: u64,
}

impl Breaker {
    /// A closed breaker with no failures.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
            phase: 0,
            cool_down_ms: config.cool_down_ms,
            opened_at_ms: 0,
        }
    }

    /// Where the breaker is now (as of the last call into it: an open
    /// breaker whose cool-down is over still shows `Open` until the next
    /// [`Breaker::admit`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The thresholds this breaker runs with.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// May a call start at `now_ms`? Closed: yes. Open: no, until the
    /// cool-down is over; then this call is the probe and the breaker is
    /// half-open. Half-open: no, one probe at a time.
    ///
    /// If the clock went backwards past the moment the breaker opened, the
    /// cool-down restarts from `now_ms`, so a clock jump cannot pause a
    /// plugin for longer than one cool-down.
    pub fn admit(&mut self, now_ms: u64) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Admitted(Permit {
                phase: self.phase,
                probe: false,
            }),
            BreakerState::HalfOpen { .. } => Admission::ProbeInFlight,
            BreakerState::Open { until_ms } => {
                if now_ms < self.opened_at_ms {
                    self.open(now_ms);
                    return Admission::OpenUntil {
                        until_ms: now_ms.saturating_add(self.cool_down_ms),
                    };
                }
                if now_ms < until_ms {
                    return Admission::OpenUntil { until_ms };
                }
                self.enter(BreakerState::HalfOpen {
                    probe_since_ms: now_ms,
                });
                Admission::Admitted(Permit {
                    phase: self.phase,
                    probe: true,
                })
            }
        }
    }

    /// A call admitted with `permit` succeeded. Closed: the failure count
    /// resets. The probe: the breaker closes and the cool-down returns to
    /// its base. Stale permits change nothing.
    pub fn on_success(&mut self, permit: Permit) {
        if permit.phase != self.phase {
            return;
        }
        match self.state {
            BreakerState::Closed { .. } => {
                self.state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
            }
            BreakerState::HalfOpen { .. } if permit.probe => {
                self.cool_down_ms = self.config.cool_down_ms;
                self.enter(BreakerState::Closed {
                    consecutive_failures: 0,
                });
            }
            BreakerState::HalfOpen { .. } | BreakerState::Open { .. } => {}
        }
    }

    /// A call admitted with `permit` failed at `now_ms`. Closed: one more
    /// consecutive failure, opening the breaker at the threshold. The probe:
    /// the breaker re-opens with the cool-down doubled (capped). Stale
    /// permits change nothing.
    pub fn on_failure(&mut self, permit: Permit, now_ms: u64) {
        if permit.phase != self.phase {
            return;
        }
        match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold.max(1) {
                    self.open(now_ms);
                } else {
                    self.state = BreakerState::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            BreakerState::HalfOpen { .. } if permit.probe => {
                let cap = self.config.max_cool_down_ms.max(self.config.cool_down_ms);
                self.cool_down_ms = self.cool_down_ms.saturating_mul(2).min(cap);
                self.open(now_ms);
            }
            BreakerState::HalfOpen { .. } | BreakerState::Open { .. } => {}
        }
    }

    /// Reports a result by the attempt's [`Outcome`], using
    /// [`counts_as_failure`].
    pub fn on_outcome(&mut self, permit: Permit, outcome: &Outcome, now_ms: u64) {
        if counts_as_failure(outcome) {
            self.on_failure(permit, now_ms);
        } else {
            self.on_success(permit);
        }
    }

    /// The call admitted with `permit` never ran to a result (shutdown, the
    /// plugin was removed, the delivery was cancelled). An abandoned probe
    /// returns the breaker to open with its cool-down already over, so the
    /// next [`Breaker::admit`] sends a new probe; other permits change
    /// nothing.
    pub fn abandon(&mut self, permit: Permit, now_ms: u64) {
        if permit.phase != self.phase || !permit.probe {
            return;
        }
        if let BreakerState::HalfOpen { .. } = self.state {
            self.opened_at_ms = now_ms;
            self.enter(BreakerState::Open { until_ms: now_ms });
        }
    }

    fn open(&mut self, now_ms: u64) {
        self.opened_at_ms = now_ms;
        self.enter(BreakerState::Open {
            until_ms: now_ms.saturating_add(self.cool_down_ms),
        });
    }

    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.phase = self.phase.wrapping_add(1);
    }
}

/// Whether an attempt's outcome counts against the plugin's health: traps
/// and the plugin's `retry` do; `ok` and `reject` do not, because a plugin
/// that rejects a bad event is working as designed.
pub fn counts_as_failure(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Ok | Outcome::Reject(_) => false,
        Outcome::Retry(_) | Outcome::Trap { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TrapKind;

    const T: u64 = 1_700_000_000_000;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            cool_down_ms: 1_000,
            max_cool_down_ms: 3_000,
        }
    }

    fn closed(consecutive_failures: u32) -> BreakerState {
        BreakerState::Closed {
            consecutive_failures,
        }
    }

    fn admitted(breaker: &mut Breaker, now: u64) -> Permit {
        match breaker.admit(now) {
            Admission::Admitted(permit) => permit,
            other => panic!("expected admission at {now}, got {other:?}"),
        }
    }

    /// A breaker opened at `T` (cool-down 1 s).
    fn opened() -> Breaker {
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            let p = admitted(&mut b, T);
            b.on_failure(p, T);
        }
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until_ms: T + 1_000
            }
        );
        b
    }

    /// A breaker half-open at `T + 1 s`, with its probe permit.
    fn half_open() -> (Breaker, Permit) {
        let mut b = opened();
        let probe = admitted(&mut b, T + 1_000);
        assert!(probe.is_probe());
        (b, probe)
    }

    /// One step of a scripted run.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// Admit at a time and report success.
        Ok(u64),
        /// Admit at a time and report failure.
        Fail(u64),
        /// Admit at a time; expect a refusal.
        Refused(u64, Admission),
    }

    fn run(breaker: &mut Breaker, steps: &[Step]) {
        for step in steps {
            match *step {
                Step::Ok(now) => {
                    let p = admitted(breaker, now);
                    breaker.on_success(p);
                }
                Step::Fail(now) => {
                    let p = admitted(breaker, now);
                    breaker.on_failure(p, now);
                }
                Step::Refused(now, want) => assert_eq!(breaker.admit(now), want, "{step:?}"),
            }
        }
    }

    #[test]
    fn transitions() {
        use Step::*;
        // (name, steps from a fresh breaker, state after).
        let cases: Vec<(&str, Vec<Step>, BreakerState)> = vec![
            ("fresh", vec![], closed(0)),
            ("successes stay closed", vec![Ok(T), Ok(T)], closed(0)),
            (
                "failures below threshold",
                vec![Fail(T), Fail(T)],
                closed(2),
            ),
            (
                "success resets the count while closed",
                vec![Fail(T), Fail(T), Ok(T), Fail(T), Fail(T)],
                closed(2),
            ),
            (
                "threshold opens",
                vec![Fail(T), Fail(T), Fail(T + 5)],
                BreakerState::Open {
                    until_ms: T + 1_005,
                },
            ),
            (
                "refused while open",
                vec![
                    Fail(T),
                    Fail(T),
                    Fail(T),
                    Refused(
                        T + 999,
                        Admission::OpenUntil {
                            until_ms: T + 1_000,
                        },
                    ),
                ],
                BreakerState::Open {
                    until_ms: T + 1_000,
                },
            ),
            (
                "probe succeeds: closed",
                vec![Fail(T), Fail(T), Fail(T), Ok(T + 1_000)],
                closed(0),
            ),
            (
                "probe fails: open again, cool-down doubled",
                vec![Fail(T), Fail(T), Fail(T), Fail(T + 1_000)],
                BreakerState::Open {
                    until_ms: T + 3_000,
                },
            ),
            (
                "cool-down grows to its cap",
                vec![
                    Fail(T),
                    Fail(T),
                    Fail(T),
                    Fail(T + 1_000), // 2 s
                    Fail(T + 3_000), // 3 s (capped from 4 s)
                    Fail(T + 6_000), // 3 s
                ],
                BreakerState::Open {
                    until_ms: T + 9_000,
                },
            ),
            (
                "cool-down back to base after a good probe",
                vec![
                    Fail(T),
                    Fail(T),
                    Fail(T),
                    Fail(T + 1_000),
                    Ok(T + 3_000),
                    Fail(T + 4_000),
                    Fail(T + 4_000),
                    Fail(T + 4_000),
                ],
                BreakerState::Open {
                    until_ms: T + 5_000,
                },
            ),
        ];
        for (name, steps, want) in cases {
            let mut b = Breaker::new(config());
            run(&mut b, &steps);
            assert_eq!(b.state(), want, "{name}");
        }
    }

    #[test]
    fn a_second_request_while_half_open_is_refused() {
        let (mut b, probe) = half_open();
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen {
                probe_since_ms: T + 1_000
            }
        );
        for now in [T + 1_000, T + 1_000_000, 0, u64::MAX] {
            assert_eq!(b.admit(now), Admission::ProbeInFlight, "at {now}");
        }
        b.on_success(probe);
        assert_eq!(b.state(), closed(0));
        assert!(!admitted(&mut b, T + 1_001).is_probe());
    }

    #[test]
    fn stale_permits_are_ignored() {
        // Calls admitted while closed, still running when the breaker trips.
        let mut b = Breaker::new(config());
        let early: Vec<Permit> = (0..4).map(|_| admitted(&mut b, T)).collect();
        for p in &early[..3] {
            b.on_failure(*p, T);
        }
        let open = BreakerState::Open {
            until_ms: T + 1_000,
        };
        assert_eq!(b.state(), open);
        b.on_success(early[3]);
        b.on_failure(early[3], T);
        assert_eq!(b.state(), open, "late results while open change nothing");

        // They finish during the probe: still not the probe.
        let probe = admitted(&mut b, T + 1_000);
        b.on_failure(early[3], T + 1_000);
        b.on_success(early[3]);
        let half = BreakerState::HalfOpen {
            probe_since_ms: T + 1_000,
        };
        assert_eq!(b.state(), half);
        b.abandon(early[3], T + 1_000);
        assert_eq!(b.state(), half, "only the probe can be abandoned");

        // And after it closed again, an old permit cannot count a failure.
        b.on_success(probe);
        b.on_failure(early[3], T + 2_000);
        b.on_failure(probe, T + 2_000);
        assert_eq!(b.state(), closed(0));
    }

    #[test]
    fn abandoned_probe_lets_the_next_admit_probe() {
        let (mut b, probe) = half_open();
        b.abandon(probe, T + 1_500);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until_ms: T + 1_500
            }
        );
        let next = admitted(&mut b, T + 1_500);
        assert!(next.is_probe());
        // The abandoned permit is stale now.
        b.on_failure(probe, T + 1_600);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen {
                probe_since_ms: T + 1_500
            }
        );
        b.on_success(next);
        assert_eq!(b.state(), closed(0));
    }

    #[test]
    fn time_going_backwards_never_panics_or_stalls() {
        // Opened at T; the clock jumps back an hour: the cool-down restarts
        // from the new "now" instead of lasting an hour and a second.
        let mut b = opened();
        let back = T - 3_600_000;
        assert_eq!(
            b.admit(back),
            Admission::OpenUntil {
                until_ms: back + 1_000
            }
        );
        assert!(admitted(&mut b, back + 1_000).is_probe());

        // A failed probe reported with a time before it was admitted.
        let (mut b, probe) = half_open();
        b.on_failure(probe, 0);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 2_000 });
        assert!(admitted(&mut b, 2_000).is_probe());

        // Failures reported out of order while closed.
        let mut b = Breaker::new(config());
        run(&mut b, &[Step::Fail(T), Step::Fail(0), Step::Fail(T - 1)]);
        assert_eq!(b.state(), BreakerState::Open { until_ms: T + 999 });
        assert_eq!(b.admit(T - 2), Admission::OpenUntil { until_ms: T + 998 });
    }

    #[test]
    fn extreme_configs_and_times_saturate() {
        // Threshold 0 acts as 1; a cap below the base means a fixed cool-down.
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            cool_down_ms: u64::MAX,
            max_cool_down_ms: 0,
        });
        run(&mut b, &[Step::Fail(u64::MAX - 1)]);
        assert_eq!(b.state(), BreakerState::Open { until_ms: u64::MAX });
        let probe = admitted(&mut b, u64::MAX);
        b.on_failure(probe, u64::MAX);
        assert_eq!(b.state(), BreakerState::Open { until_ms: u64::MAX });

        // A huge threshold: the count saturates, never wraps.
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: u32::MAX,
            ..config()
        });
        b.state = closed(u32::MAX - 1);
        run(&mut b, &[Step::Fail(T)]);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until_ms: T + 1_000
            }
        );

        // Zero cool-down: the very next admit is the probe.
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            cool_down_ms: 0,
            max_cool_down_ms: 0,
        });
        run(&mut b, &[Step::Fail(T)]);
        assert!(admitted(&mut b, T).is_probe());
    }

    #[test]
    fn outcomes_map_to_health() {
        let trap = |kind| Outcome::Trap {
            kind,
            detail: String::new(),
        };
        let cases = [
            (Outcome::Ok, false),
            (Outcome::Reject("no".into()), false),
            (Outcome::Retry("later".into()), true),
            (trap(TrapKind::Fuel), true),
            (trap(TrapKind::Deadline), true),
            (trap(TrapKind::Memory), true),
            (trap(TrapKind::Panic), true),
            (trap(TrapKind::Stack), true),
            (trap(TrapKind::Other), true),
        ];
        for (outcome, failure) in cases {
            assert_eq!(counts_as_failure(&outcome), failure, "{outcome:?}");
        }
        let mut b = Breaker::new(config());
        for outcome in [trap(TrapKind::Panic), Outcome::Retry("x".into())] {
            let p = admitted(&mut b, T);
            b.on_outcome(p, &outcome, T);
        }
        let p = admitted(&mut b, T);
        b.on_outcome(p, &Outcome::Reject("x".into()), T);
        assert_eq!(b.state(), closed(0));
    }

    #[test]
    fn defaults_and_names() {
        assert_eq!(
            BreakerConfig::default(),
            BreakerConfig {
                failure_threshold: 5,
                cool_down_ms: 30_000,
                max_cool_down_ms: 300_000,
            }
        );
        let cases = [
            (
                closed(2),
                "closed",
                r#"{"state":"closed","consecutive_failures":2}"#,
            ),
            (
                BreakerState::Open { until_ms: 7 },
                "open",
                r#"{"state":"open","until_ms":7}"#,
            ),
            (
                BreakerState::HalfOpen { probe_since_ms: 9 },
                "half_open",
                r#"{"state":"half_open","probe_since_ms":9}"#,
            ),
        ];
        for (state, name, json) in cases {
            assert_eq!(state.as_str(), name);
            assert_eq!(serde_json::to_string(&state).expect("serializes"), json);
        }
    }

    #[test]
    fn built_from_config_defaults_and_overrides() {
        let config = crate::config::load_str(
            "[plugin.fast]\nbreaker_failures = 2\nbreaker_cooldown_ms = 1000\n\
             [plugin.slow]\nbreaker_cooldown_ms = 600000\n",
            &[],
        )
        .expect("config loads");
        // (plugin, expected config): the shipped defaults are the
        // constants'; a cool-down above the default cap raises the cap.
        let cases = [
            ("other", BreakerConfig::default()),
            (
                "fast",
                BreakerConfig {
                    failure_threshold: 2,
                    cool_down_ms: 1_000,
                    max_cool_down_ms: DEFAULT_MAX_COOL_DOWN_MS,
                },
            ),
            (
                "slow",
                BreakerConfig {
                    failure_threshold: DEFAULT_FAILURE_THRESHOLD,
                    cool_down_ms: 600_000,
                    max_cool_down_ms: 600_000,
                },
            ),
        ];
        for (name, want) in cases {
            let got = BreakerConfig::from_settings(&config.plugin_settings(name));
            assert_eq!(got, want, "{name}");
        }
    }
}
