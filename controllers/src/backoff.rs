//! Per-key exponential backoff with jitter: how long a key that failed
//! waits before its next attempt.
//!
//! The runtime's policy is 100 ms doubling to a 5 min cap, reset when the
//! key reconciles successfully. Jitter only ever shortens a delay (by up to
//! [`BackoffPolicy::jitter`] of it), so the cap is a real upper bound, and
//! keys that failed together spread out instead of retrying in lockstep.

use std::time::Duration;

use rand::Rng;

/// How delays grow.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// The fraction (0.0 to 1.0) a delay may be shortened by at random.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    /// 100 ms doubling to 5 min, with 10 % jitter.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

impl BackoffPolicy {
    /// The delay before attempt `failures + 1`, after `failures` (≥ 1)
    /// consecutive failures, before jitter: `initial · 2^(failures-1)`,
    /// capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// [`Self::base_delay`] shortened by a random part of up to `jitter`.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self.base_delay(failures);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return base;
        }
        let cut = rand::rng().random_range(0.0..=jitter);
        base.mul_f64(1.0 - cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_100_ms_and_stop_at_5_minutes() {
        let p = BackoffPolicy::default();
        assert_eq!(p.base_delay(1), Duration::from_millis(100));
        assert_eq!(p.base_delay(2), Duration::from_millis(200));
        assert_eq!(p.base_delay(5), Duration::from_millis(1600));
        assert_eq!(
            p.base_delay(12),
            Duration::from_secs(204) + Duration::from_millis(800)
        );
        assert_eq!(p.base_delay(13), Duration::from_secs(300));
        assert_eq!(p.base_delay(1000), Duration::from_secs(300));
    }

    #[test]
    fn jitter_only_shortens_a_delay_and_by_at_most_its_fraction() {
        let p = BackoffPolicy::default();
        for failures in [1, 4, 20] {
            for _ in 0..100 {
                let d = p.delay(failures);
                let base = p.base_delay(failures);
                assert!(d <= base && d >= base.mul_f64(0.9), "{d:?} vs {base:?}");
            }
        }
    }
}
