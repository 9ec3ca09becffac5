//! The retry policy: what happens to a delivery after one attempt, decided
//! by [`decide`] from the attempt's [`Outcome`], its number, the plugin's
//! [`RetryPolicy`], the current time and a [`RandomSource`].
//!
//! The rules (DESIGN.md "Delivery semantics", issue 4 item 3):
//!
//! - `Ok` is done.
//! - The plugin's `reject` dead-letters at once: it said the event will never
//!   succeed, so retrying only burns fuel.
//! - The plugin's `retry`, and every trap (fuel, deadline, memory, panic,
//!   stack, other), back off exponentially with *full jitter*: the delay
//!   after attempt `n` is uniform in `[0, min(cap, base * 2^(n-1))]`. Full
//!   jitter (rather than "half" or none) spreads a burst of failures from an
//!   outage over the whole window, so a recovering plugin is not hit by all
//!   of them at once.
//! - Trap kinds the operator lists in [`RetryPolicy::dead_letter_traps`]
//!   dead-letter at once instead (e.g. `panic`, for a plugin that panics
//!   deterministically on bad input).
//! - When the attempt that just failed was the last allowed one, the
//!   delivery dead-letters.
//!
//! This module is pure: no clock, no global randomness, no I/O, no panics on
//! any input (attempt numbers, delays and times all saturate). It must not
//! know about queues or storage; the worker records what [`decide`] says.

use crate::config::{EffectivePlugin, PluginDefaults};
use crate::runtime::{Outcome, TrapKind};
use std::hash::{BuildHasher, Hasher};

/// DESIGN.md's default attempt count: with a 2 s base and a 1 h cap, the
/// eleventh retry's window is 2048 s, about an hour of retries in all.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// DESIGN.md's default first retry window: long enough for a blip to pass,
/// short enough that a flaky plugin's second try feels immediate.
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 2_000;
/// DESIGN.md's default cap on one retry window (1 h): past that, waiting
/// longer between tries only delays recovery.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_600_000;

/// How one plugin's failed deliveries are retried: the `[defaults]` retry
/// keys with the plugin's `[plugin.NAME]` overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per delivery, the first included. 0 is treated as 1: a
    /// delivery is always tried once.
    pub max_attempts: u32,
    /// Upper bound of the first retry's delay; doubles with each attempt.
    pub backoff_base_ms: u64,
    /// Cap on any retry's upper bound.
    pub backoff_max_ms: u64,
    /// Trap kinds that dead-letter at once instead of being retried. Not a
    /// config key yet (config.rs has none): empty by default, so every trap
    /// is retried as DESIGN.md's flow says.
    pub dead_letter_traps: Vec<TrapKind>,
}

impl Default for RetryPolicy {
    /// The contract's defaults: 12 attempts, 2 s base, 1 h cap, every trap
    /// retried.
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            dead_letter_traps: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// The policy of a plugin from its effective settings
    /// ([`crate::config::Config::plugin_settings`]), so per-plugin overrides
    /// apply, `dead_letter_traps` included.
    pub fn from_settings(settings: &EffectivePlugin) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            backoff_base_ms: settings.backoff_base_ms,
            backoff_max_ms: settings.backoff_max_ms,
            dead_letter_traps: settings.dead_letter_traps.clone(),
        }
    }

    /// The policy of a plugin with no overrides, from `[defaults]`.
    pub fn from_defaults(defaults: &PluginDefaults) -> Self {
        Self {
            max_attempts: defaults.max_attempts,
            backoff_base_ms: defaults.backoff_base_ms,
            backoff_max_ms: defaults.backoff_max_ms,
            dead_letter_traps: defaults.dead_letter_traps.clone(),
        }
    }

    /// The same policy with `kinds` dead-lettering at once, for when the
    /// operator lists them (a builder, so the list can come from wherever
    /// the config grows it).
    pub fn with_dead_letter_traps(mut self, kinds: impl IntoIterator<Item = TrapKind>) -> Self {
        self.dead_letter_traps = kinds.into_iter().collect();
        self
    }

    /// The upper bound of the delay after failed attempt `attempt`
    /// (1-based; 0 is read as 1): `min(cap, base * 2^(attempt-1))`,
    /// saturating instead of overflowing. Exposed for stats and docs ("next
    /// retry within ...").
    pub fn backoff_ceiling_ms(&self, attempt: u32) -> u64 {
        let exponent = attempt.max(1) - 1;
        let uncapped = 1u64
            .checked_shl(exponent)
            .and_then(|factor| self.backoff_base_ms.checked_mul(factor))
            .unwrap_or(u64::MAX);
        uncapped.min(self.backoff_max_ms)
    }
}

/// What to do with a delivery after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The plugin handled the event: the delivery is finished.
    Done,
    /// Try again no earlier than `at_ms` (ms since the Unix epoch).
    Retry {
        /// When the next attempt is due: `now_ms + delay_ms`, saturating.
        at_ms: u64,
        /// The jittered delay, for the attempt record and logs.
        delay_ms: u64,
    },
    /// Stop trying: keep the delivery as a dead letter, replayable.
    DeadLetter(DeadLetterReason),
}

/// Why a delivery was dead-lettered, so the admin API and metrics can say
/// so without parsing error text (the error itself is in the attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum DeadLetterReason {
    /// The plugin answered `reject`.
    Rejected,
    /// The call trapped with a kind the operator listed as final.
    Trap {
        /// The listed kind that stopped it.
        kind: TrapKind,
    },
    /// The last allowed attempt failed.
    AttemptsExhausted {
        /// How many attempts were made.
        attempts: u32,
    },
}

impl DeadLetterReason {
    /// The name used in logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Trap { .. } => "trap",
            Self::AttemptsExhausted { .. } => "attempts_exhausted",
        }
    }
}

/// Where [`decide`] gets its jitter: any uniformly distributed `u64`. A
/// trait rather than a dependency on `rand`, so tests pass fixed values and
/// production uses the small [`SplitMix64`].
pub trait RandomSource {
    /// The next uniformly distributed 64-bit value.
    fn next_u64(&mut self) -> u64;
}

/// Any `FnMut() -> u64` is a random source, so a test can write
/// `&mut || u64::MAX`.
impl<F: FnMut() -> u64> RandomSource for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// A tiny, fast, seedable generator (SplitMix64) for jitter. Jitter needs
/// spread, not secrecy, so this is enough and adds no dependency. Keep one
/// per worker: it is not shared, so it needs no lock.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with a fixed seed: reproducible sequences for tests.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the standard library's per-process random
    /// hash keys, so two workers (or two restarts) do not retry in step.
    pub fn from_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(crate::clock::now_ms());
        Self::new(hasher.finish())
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Maps a uniform `u64` onto `[0, ceiling]`, both ends included, by
/// multiply-and-shift: monotonic (0 gives 0, `u64::MAX` gives `ceiling`),
/// no division, and a bias below `(ceiling + 1) / 2^64`, far too small to
/// matter for jitter.
fn scale(random: u64, ceiling: u64) -> u64 {
    let span = u128::from(ceiling) + 1;
    // random < 2^64, so the product is < span * 2^64 and the shift < span.
    u64::try_from((u128::from(random) * span) >> 64).unwrap_or(ceiling)
}

/// Decides what follows attempt number `attempt` (1-based; 0 is read as 1)
/// that ended in `outcome`, at `now_ms` (ms since the Unix epoch). `random`
/// is read only when the answer is a retry.
pub fn decide(
    outcome: &Outcome,
    attempt: u32,
    policy: &RetryPolicy,
    now_ms: u64,
    random: &mut impl RandomSource,
) -> Decision {
    let attempt = attempt.max(1);
    match outcome {
        Outcome::Ok => return Decision::Done,
        Outcome::Reject(_) => return Decision::DeadLetter(DeadLetterReason::Rejected),
        Outcome::Trap { kind, .. } if policy.dead_letter_traps.contains(kind) => {
            return Decision::DeadLetter(DeadLetterReason::Trap { kind: *kind });
        }
        Outcome::Retry(_) | Outcome::Trap { .. } => {}
    }
    if attempt >= policy.max_attempts.max(1) {
        return Decision::DeadLetter(DeadLetterReason::AttemptsExhausted { attempts: attempt });
    }
    let delay_ms = scale(random.next_u64(), policy.backoff_ceiling_ms(attempt));
    Decision::Retry {
        at_ms: now_ms.saturating_add(delay_ms),
        delay_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn trap(kind: TrapKind) -> Outcome {
        Outcome::Trap {
            kind,
            detail: "x".into(),
        }
    }

    fn retry_in(delay_ms: u64) -> Decision {
        Decision::Retry {
            at_ms: NOW + delay_ms,
            delay_ms,
        }
    }

    const ALL_TRAPS: [TrapKind; 6] = TrapKind::ALL;

    #[test]
    fn every_outcome_kind_on_the_first_attempt() {
        let policy = RetryPolicy::default();
        let mut cases = vec![
            (Outcome::Ok, Decision::Done),
            (
                Outcome::Reject("bad".into()),
                Decision::DeadLetter(DeadLetterReason::Rejected),
            ),
            (Outcome::Retry("later".into()), retry_in(2_000)),
        ];
        for kind in ALL_TRAPS {
            cases.push((trap(kind), retry_in(2_000)));
        }
        for (outcome, want) in cases {
            // The random source at its maximum picks the ceiling (base).
            let got = decide(&outcome, 1, &policy, NOW, &mut || u64::MAX);
            assert_eq!(got, want, "{outcome:?}");
        }
    }

    #[test]
    fn reject_and_ok_ignore_the_attempt_count() {
        let policy = RetryPolicy::default();
        for attempt in [0, 1, 11, 12, 13, u32::MAX] {
            let got = decide(&Outcome::Ok, attempt, &policy, NOW, &mut || 0);
            assert_eq!(got, Decision::Done, "attempt {attempt}");
            let got = decide(
                &Outcome::Reject("r".into()),
                attempt,
                &policy,
                NOW,
                &mut || 0,
            );
            assert_eq!(
                got,
                Decision::DeadLetter(DeadLetterReason::Rejected),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_attempts_run_out() {
        let policy = RetryPolicy::default();
        // (attempt that failed, ceiling of the delay before the next one).
        let cases = [
            (0, 2_000), // read as attempt 1
            (1, 2_000),
            (2, 4_000),
            (3, 8_000),
            (10, 1_024_000),
            (11, 2_048_000),
        ];
        for (attempt, ceiling) in cases {
            assert_eq!(policy.backoff_ceiling_ms(attempt), ceiling, "{attempt}");
            let got = decide(
                &Outcome::Retry("x".into()),
                attempt,
                &policy,
                NOW,
                &mut || u64::MAX,
            );
            assert_eq!(got, retry_in(ceiling), "attempt {attempt}");
        }
        for attempt in [12, 13, u32::MAX] {
            let got = decide(&trap(TrapKind::Fuel), attempt, &policy, NOW, &mut || 0);
            assert_eq!(
                got,
                Decision::DeadLetter(DeadLetterReason::AttemptsExhausted { attempts: attempt }),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn cap_bounds_the_window_and_huge_values_saturate() {
        let capped = RetryPolicy {
            max_attempts: u32::MAX,
            backoff_base_ms: 1_000,
            backoff_max_ms: 5_000,
            dead_letter_traps: Vec::new(),
        };
        let huge = RetryPolicy {
            max_attempts: u32::MAX,
            backoff_base_ms: u64::MAX,
            backoff_max_ms: u64::MAX,
            dead_letter_traps: Vec::new(),
        };
        let inverted = RetryPolicy {
            backoff_base_ms: 10_000,
            backoff_max_ms: 100,
            ..capped.clone()
        };
        // (policy, attempt, ceiling).
        let cases = [
            (&capped, 3, 4_000),
            (&capped, 4, 5_000),
            (&capped, 64, 5_000),
            (&capped, 65, 5_000),
            (&capped, u32::MAX - 1, 5_000),
            (&huge, 1, u64::MAX),
            (&huge, 2, u64::MAX),
            (&huge, u32::MAX - 1, u64::MAX),
            (&inverted, 1, 100),
        ];
        for (policy, attempt, ceiling) in cases {
            assert_eq!(policy.backoff_ceiling_ms(attempt), ceiling, "{attempt}");
            let got = decide(
                &Outcome::Retry("x".into()),
                attempt,
                policy,
                NOW,
                &mut || u64::MAX,
            );
            let Decision::Retry { at_ms, delay_ms } = got else {
                panic!("attempt {attempt}: {got:?}");
            };
            assert_eq!(delay_ms, ceiling, "attempt {attempt}");
            assert_eq!(at_ms, NOW.saturating_add(ceiling), "attempt {attempt}");
        }
    }

    #[test]
    fn now_near_the_end_of_time_saturates() {
        let policy = RetryPolicy::default();
        for now in [u64::MAX - 1, u64::MAX] {
            let got = decide(&Outcome::Retry("x".into()), 1, &policy, now, &mut || {
                u64::MAX
            });
            assert_eq!(
                got,
                Decision::Retry {
                    at_ms: u64::MAX,
                    delay_ms: 2_000
                }
            );
        }
        let got = decide(&Outcome::Retry("x".into()), 1, &policy, 0, &mut || 0);
        assert_eq!(
            got,
            Decision::Retry {
                at_ms: 0,
                delay_ms: 0
            }
        );
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        let policy = RetryPolicy::default();
        // (random value, attempt, delay): the source's min gives 0, its max
        // the ceiling, the middle about half of it.
        let cases = [
            (0, 1, 0),
            (u64::MAX, 1, 2_000),
            (1 << 63, 1, 1_000),
            (0, 11, 0),
            (u64::MAX, 11, 2_048_000),
            (1 << 63, 11, 1_024_000),
            (1, 1, 0),
            (u64::MAX - 1, 1, 2_000),
        ];
        for (random, attempt, delay) in cases {
            let got = decide(
                &trap(TrapKind::Deadline),
                attempt,
                &policy,
                NOW,
                &mut || random,
            );
            assert_eq!(got, retry_in(delay), "random {random} attempt {attempt}");
        }
        // With a real generator every delay stays in bounds.
        let mut rng = SplitMix64::new(7);
        let (mut low, mut high) = (u64::MAX, 0);
        for _ in 0..10_000 {
            match decide(&Outcome::Retry("x".into()), 3, &policy, NOW, &mut rng) {
                Decision::Retry { delay_ms, at_ms } => {
                    assert!(delay_ms <= 8_000, "{delay_ms}");
                    assert_eq!(at_ms, NOW + delay_ms);
                    low = low.min(delay_ms);
                    high = high.max(delay_ms);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(low < 100 && high > 7_900, "poor spread: {low}..{high}");
    }

    #[test]
    fn listed_trap_kinds_dead_letter_at_once() {
        let policy =
            RetryPolicy::default().with_dead_letter_traps([TrapKind::Panic, TrapKind::Memory]);
        // (outcome, attempt, decision).
        let cases = [
            (
                trap(TrapKind::Panic),
                1,
                Decision::DeadLetter(DeadLetterReason::Trap {
                    kind: TrapKind::Panic,
                }),
            ),
            (
                trap(TrapKind::Memory),
                1,
                Decision::DeadLetter(DeadLetterReason::Trap {
                    kind: TrapKind::Memory,
                }),
            ),
            // Listed kinds win over exhaustion: the reason is the trap.
            (
                trap(TrapKind::Panic),
                12,
                Decision::DeadLetter(DeadLetterReason::Trap {
                    kind: TrapKind::Panic,
                }),
            ),
            (trap(TrapKind::Fuel), 1, retry_in(2_000)),
            (trap(TrapKind::Deadline), 2, retry_in(4_000)),
            (Outcome::Retry("x".into()), 1, retry_in(2_000)),
            (
                trap(TrapKind::Stack),
                12,
                Decision::DeadLetter(DeadLetterReason::AttemptsExhausted { attempts: 12 }),
            ),
        ];
        for (outcome, attempt, want) in cases {
            let got = decide(&outcome, attempt, &policy, NOW, &mut || u64::MAX);
            assert_eq!(got, want, "{outcome:?} attempt {attempt}");
        }
    }

    #[test]
    fn single_attempt_policies_never_retry() {
        for max_attempts in [0, 1] {
            let policy = RetryPolicy {
                max_attempts,
                ..RetryPolicy::default()
            };
            let got = decide(&Outcome::Retry("x".into()), 1, &policy, NOW, &mut || 0);
            assert_eq!(
                got,
                Decision::DeadLetter(DeadLetterReason::AttemptsExhausted { attempts: 1 })
            );
        }
    }

    #[test]
    fn built_from_config_defaults_and_overrides() {
        let config = crate::config::load_str(
            "[defaults]\nmax_attempts = 5\nbackoff_base_ms = 100\nbackoff_max_ms = 1000\n\
             dead_letter_traps = [\"panic\"]\n\
             [plugin.billing]\nmax_attempts = 3\nbackoff_max_ms = 500\n\
             dead_letter_traps = [\"memory\", \"stack\"]\n\
             [plugin.lenient]\ndead_letter_traps = []\n",
            &[],
        )
        .expect("config loads");
        let defaults = RetryPolicy::from_defaults(&config.defaults);
        assert_eq!(
            defaults,
            RetryPolicy {
                max_attempts: 5,
                backoff_base_ms: 100,
                backoff_max_ms: 1_000,
                dead_letter_traps: vec![TrapKind::Panic],
            }
        );
        assert_eq!(
            RetryPolicy::from_settings(&config.plugin_settings("other")),
            defaults
        );
        assert_eq!(
            RetryPolicy::from_settings(&config.plugin_settings("billing")),
            RetryPolicy {
                max_attempts: 3,
                backoff_base_ms: 100,
                backoff_max_ms: 500,
                dead_letter_traps: vec![TrapKind::Memory, TrapKind::Stack],
            }
        );
        // A plugin's empty list replaces the defaults': every trap retried.
        assert_eq!(
            RetryPolicy::from_settings(&config.plugin_settings("lenient")),
            RetryPolicy {
                dead_letter_traps: Vec::new(),
                ..defaults
            }
        );
        // The listed kinds dead-letter through decide, not just on paper.
        let policy = RetryPolicy::from_settings(&config.plugin_settings("billing"));
        assert_eq!(
            decide(&trap(TrapKind::Stack), 1, &policy, NOW, &mut || 0),
            Decision::DeadLetter(DeadLetterReason::Trap {
                kind: TrapKind::Stack
            })
        );
        assert_eq!(
            decide(&trap(TrapKind::Panic), 1, &policy, NOW, &mut || 0),
            retry_in(0)
        );
        // The shipped defaults are the contract's.
        let shipped = crate::config::load_str("", &[]).expect("defaults load");
        assert_eq!(
            RetryPolicy::from_defaults(&shipped.defaults),
            RetryPolicy::default()
        );
    }

    #[test]
    fn reasons_have_stable_names() {
        let cases = [
            (DeadLetterReason::Rejected, "rejected"),
            (
                DeadLetterReason::Trap {
                    kind: TrapKind::Panic,
                },
                "trap",
            ),
            (
                DeadLetterReason::AttemptsExhausted { attempts: 3 },
                "attempts_exhausted",
            ),
        ];
        for (reason, name) in cases {
            assert_eq!(reason.as_str(), name);
        }
        let json = serde_json::to_string(&DeadLetterReason::Trap {
            kind: TrapKind::Panic,
        })
        .expect("serializes");
        assert_eq!(json, r#"{"reason":"trap","kind":"panic"}"#);
    }

    #[test]
    fn split_mix_is_reproducible_and_seeds_differ() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(1);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(1);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(SplitMix64::new(2).next_u64(), a[0]);
        // Entropy-seeded generators do not start in step.
        assert_ne!(
            SplitMix64::from_entropy().next_u64(),
            SplitMix64::from_entropy().next_u64()
        );
    }
}
