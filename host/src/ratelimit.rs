//! Per-source rate limit: a token bucket holding one second's worth of
//! requests. Only verified requests take a token, so forged traffic cannot
//! use up a provider's allowance.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket refilled at `per_s` tokens a second, at most `per_s`
/// held (a burst of one second's allowance).
#[derive(Debug)]
pub struct RateLimit {
    per_s: f64,
    /// (tokens, when last refilled). A `Mutex` is enough: held for a few
    /// arithmetic operations, never across an await.
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(per_s: u32, now: Instant) -> Self {
        let per_s = f64::from(per_s.max(1));
        Self {
            per_s,
            state: Mutex::new((per_s, now)),
        }
    }

    /// Take a token, or say how long until one is there.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.per_s).min(self.per_s);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.per_s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let t0 = Instant::now();
        let rl = RateLimit::new(10, t0);
        for _ in 0..10 {
            assert!(rl.take(t0).is_ok());
        }
        let wait = rl.take(t0).expect_err("empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(rl.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(rl.take(t0 + Duration::from_millis(100)).is_err());
        // Never more than one second's allowance.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| rl.take(later).is_ok()).count(), 10);
    }
}
