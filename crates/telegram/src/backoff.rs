//! Retry pacing for transient failures (5xx, timeouts, broken connections).
//! Full jitter spreads the retries of many queued messages so that a Bot API hiccup
//! does not turn into a synchronized retry storm; the delay is capped so that a
//! message is retried every few seconds while Telegram (or a proxy in front of it)
//! is down. What ends the retries is the message's deadline, not a count of
//! attempts: [`Backoff::within`] gives up only when the next attempt could not
//! start before it. (Telegram's own `retry_after` is not this: it is obeyed as
//! given, by the dispatcher's cooldowns.)

use std::time::Duration;

/// Exponential backoff with full jitter and a cap.
///
/// The delay before attempt `n + 1` (after `n` failed attempts) is uniform in
/// `[0, min(max, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Ceiling of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 250 ms, doubling up to 5 s.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(5),
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
    /// made (1 after the first failure): uniform in `[0, ceiling(attempt)]`.
    /// `attempt == 0` (nothing tried yet) is zero.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// [`delay`](Self::delay), or `None` (give up) when the next attempt would
    /// not start before the deadline, `left` from now (`None`: no deadline, never
    /// give up).
    pub fn within(
        &self,
        attempt: u32,
        left: Option<Duration>,
        rng: &mut impl rand::Rng,
    ) -> Option<Duration> {
        let delay = self.delay(attempt, rng);
        match left {
            Some(left) if delay >= left => None,
            _ => Some(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn default_schedule_is_capped_at_five_seconds() {
        let b = Backoff::default();
        let ceilings: Vec<_> = (0..=8).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [0, 250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(b.delay(0, &mut rng), Duration::ZERO);
        for n in 1..100 {
            assert!(b.delay(n, &mut rng) <= b.ceiling(n));
        }
        assert!(b.delay(u32::MAX, &mut rng) <= b.max);
    }

    #[test]
    fn retries_go_on_until_the_deadline_not_a_count() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(3);
        // No deadline: never gives up, however many attempts were made.
        assert!(b.within(1_000, None, &mut rng).is_some());
        // A deadline far off: attempt 1000 still retries.
        assert!(
            b.within(1_000, Some(Duration::from_secs(60)), &mut rng)
                .is_some()
        );
        // Nothing left: gives up, even after one attempt.
        assert_eq!(b.within(1, Some(Duration::ZERO), &mut rng), None);
    }

    #[test]
    fn jitter_spreads() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let samples: Vec<_> = (0..1000).map(|_| b.delay(1, &mut rng)).collect();
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
            attempt in 0u32..100,
            left_ms in proptest::option::of(0u64..200_000),
            seed: u64,
        ) {
            let b = Backoff {
                base: Duration::from_millis(base_ms),
                max: Duration::from_millis(max_ms),
            };
            let mut rng = StdRng::seed_from_u64(seed);
            let d = b.delay(attempt, &mut rng);
            prop_assert!(d <= b.max);
            prop_assert!(d <= b.ceiling(attempt));
            if attempt >= 1 {
                let exp = 2u128.pow((attempt - 1).min(100));
                prop_assert!(d.as_millis() <= u128::from(base_ms) * exp);
            }
            // A retry always starts before the deadline.
            let left = left_ms.map(Duration::from_millis);
            if let (Some(d), Some(left)) = (b.within(attempt, left, &mut rng), left) {
                prop_assert!(d < left);
            }
            // Ceilings never shrink as attempts grow.
            prop_assert!(b.ceiling(attempt) <= b.ceiling(attempt.saturating_add(1)));
        }

        #[test]
        fn huge_durations_do_not_overflow(attempt in 0u32..u32::MAX, seed: u64) {
            let b = Backoff { base: Duration::MAX, max: Duration::MAX };
            let mut rng = StdRng::seed_from_u64(seed);
            let _ = b.within(attempt, Some(Duration::MAX), &mut rng);
        }
    }
}
