//! Retry pacing for transient failures (5xx, timeouts, broken connections).
//! Full jitter spreads the retries of many queued messages so that a Bot API hiccup
//! does not turn into a synchronized retry storm; the attempt bound makes every
//! message end, delivered or failed. (Telegram's own `retry_after` is not this:
//! it is obeyed as given, by the dispatcher's cooldowns.)

use std::time::Duration;

/// Exponential backoff with full jitter, bounded by attempts.
///
/// The delay before attempt `n + 1` (after `n` failed attempts) is uniform in
/// `[0, min(max, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Ceiling of any delay.
    pub max: Duration,
    /// Total attempts allowed, the first one included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 250 ms, 8 s, 6 attempts.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(8),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    /// The upper bound of the delay after `attempt` attempts (without jitter).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let exp = (attempt - 1).min(31);
        self.base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// How long to wait before the next attempt, given `attempt` attempts already
    /// made (1 after the first failure). `None` when `attempt >= max_attempts`: give
    /// up. `attempt == 0` (nothing tried yet) is `Some(ZERO)`.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Some(Duration::ZERO);
        }
        Some(Duration::from_nanos(rng.random_range(0..=nanos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn default_schedule() {
        let b = Backoff::default();
        let ceilings: Vec<_> = (0..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [0, 250, 500, 1000, 2000, 4000, 8000]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(b.delay(0, &mut rng), Some(Duration::ZERO));
        for n in 1..6 {
            let d = b.delay(n, &mut rng).expect("more attempts");
            assert!(d <= b.ceiling(n));
        }
        assert_eq!(b.delay(6, &mut rng), None);
        assert_eq!(b.delay(u32::MAX, &mut rng), None);
    }

    #[test]
    fn jitter_spreads() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
            max_attempts: 10,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let samples: Vec<_> = (0..1000)
            .map(|_| b.delay(1, &mut rng).expect("some"))
            .collect();
        let low = samples
            .iter()
            .filter(|d| **d < Duration::from_millis(500))
            .count();
        assert!((350..650).contains(&low), "{low}");
    }

    proptest! {
        #[test]
        fn bounded(
            base_ms in 0u64..10_000,
            max_ms in 0u64..120_000,
            max_attempts in 0u32..50,
            attempt in 0u32..100,
            seed: u64,
        ) {
            let b = Backoff {
                base: Duration::from_millis(base_ms),
                max: Duration::from_millis(max_ms),
                max_attempts,
            };
            let mut rng = StdRng::seed_from_u64(seed);
            match b.delay(attempt, &mut rng) {
                None => prop_assert!(attempt >= max_attempts),
                Some(d) => {
                    prop_assert!(attempt < max_attempts);
                    prop_assert!(d <= b.max);
                    prop_assert!(d <= b.ceiling(attempt));
                    if attempt >= 1 {
                        let exp = 2u128.pow((attempt - 1).min(100));
                        prop_assert!(d.as_millis() <= u128::from(base_ms) * exp);
                    }
                }
            }
            // Ceilings never shrink as attempts grow.
            prop_assert!(b.ceiling(attempt) <= b.ceiling(attempt.saturating_add(1)));
        }

        #[test]
        fn huge_durations_do_not_overflow(attempt in 0u32..u32::MAX, seed: u64) {
            let b = Backoff { base: Duration::MAX, max: Duration::MAX, max_attempts: u32::MAX };
            let mut rng = StdRng::seed_from_u64(seed);
            let _ = b.delay(attempt, &mut rng);
        }
    }
}
