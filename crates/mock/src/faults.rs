//! Fault injection: the probability of answering 5xx, of dropping the connection without a
//! response, added latency, and hostile answers (a `retry_after` no real server sends).
//!
//! Faults are rolled first, before the token is checked and before anything is counted
//! against a limit or delivered, so a client retry after an injected fault is always safe.
//! Latency is sampled at the same time but applied just before answering (after the limit
//! check, which uses the arrival time).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Faults to inject, globally or for one bot. `Default` injects nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability (0..=1) of answering 500 "Internal Server Error" or 502 "Bad Gateway".
    pub error_5xx: f64,
    /// Probability (0..=1) of closing the connection without any response.
    pub drop: f64,
    /// Added latency in milliseconds, uniform in `min..=max`.
    pub latency_ms: (u64, u64),
    /// Answer every `sendMessage` 429 with this `retry_after`, written as given (an
    /// integer when it is one that fits `u64`, else a float such as `1e30`): absurd values
    /// test a client's clamping and overflow checks. `None`: no such answer.
    pub retry_after: Option<f64>,
}

/// What the dice decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Process normally.
    None,
    /// Close the connection without answering.
    Drop,
    /// Answer with this 5xx status.
    Error(u16),
}

impl Faults {
    /// True when these faults inject nothing at all.
    pub fn is_none(&self) -> bool {
        clamp(self.error_5xx) == 0.0
            && clamp(self.drop) == 0.0
            && self.latency_ms.1 == 0
            && self.retry_after.is_none()
    }

    /// The hostile `retry_after` as the JSON number it is answered as.
    pub(crate) fn hostile_retry_after(&self) -> Option<serde_json::Number> {
        let v = self.retry_after?;
        if v.fract() == 0.0 && v >= 0.0 && v < u64::MAX as f64 {
            Some(serde_json::Number::from(v as u64))
        } else {
            serde_json::Number::from_f64(v)
        }
    }

    /// Rolls the fault for one request.
    pub(crate) fn roll(&self, rng: &mut impl Rng) -> Fault {
        let drop = clamp(self.drop);
        if drop > 0.0 && rng.random::<f64>() < drop {
            return Fault::Drop;
        }
        let error = clamp(self.error_5xx);
        if error > 0.0 && rng.random::<f64>() < error {
            return Fault::Error(if rng.random::<bool>() { 500 } else { 502 });
        }
        Fault::None
    }

    /// Samples the added latency for one request.
    pub(crate) fn latency(&self, rng: &mut impl Rng) -> Duration {
        let (a, b) = self.latency_ms;
        let (lo, hi) = (a.min(b), a.max(b));
        if hi == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rng.random_range(lo..=hi))
    }
}

/// A probability forced into `0..=1` (NaN counts as 0).
fn clamp(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn no_faults_by_default() {
        let mut rng = SmallRng::seed_from_u64(1);
        let f = Faults::default();
        assert!(f.is_none());
        for _ in 0..1000 {
            assert_eq!(f.roll(&mut rng), Fault::None);
            assert_eq!(f.latency(&mut rng), Duration::ZERO);
        }
    }

    #[test]
    fn certain_faults_always_happen() {
        let mut rng = SmallRng::seed_from_u64(2);
        let drop = Faults {
            drop: 1.0,
            error_5xx: 1.0,
            ..Faults::default()
        };
        assert_eq!(drop.roll(&mut rng), Fault::Drop);
        let error = Faults {
            error_5xx: 7.0, // clamped to 1
            ..Faults::default()
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            match error.roll(&mut rng) {
                Fault::Error(code) => {
                    seen.insert(code);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn probabilities_are_roughly_honoured() {
        let mut rng = SmallRng::seed_from_u64(3);
        let f = Faults {
            error_5xx: 0.2,
            drop: 0.1,
            latency_ms: (5, 10),
            retry_after: None,
        };
        let (mut drops, mut errors) = (0, 0);
        for _ in 0..10_000 {
            match f.roll(&mut rng) {
                Fault::Drop => drops += 1,
                Fault::Error(_) => errors += 1,
                Fault::None => {}
            }
            let l = f.latency(&mut rng);
            assert!(l >= Duration::from_millis(5) && l <= Duration::from_millis(10));
        }
        assert!((800..1200).contains(&drops), "{drops}");
        // 20% of the 90% not dropped.
        assert!((1500..2100).contains(&errors), "{errors}");
    }

    #[test]
    fn nan_and_negative_mean_none() {
        let f = Faults {
            error_5xx: f64::NAN,
            drop: -1.0,
            latency_ms: (0, 0),
            retry_after: None,
        };
        assert!(f.is_none());
    }

    #[test]
    fn hostile_retry_afters_are_written_as_integers_when_they_are_and_floats_otherwise() {
        let with = |v: f64| Faults {
            retry_after: Some(v),
            ..Faults::default()
        };
        assert!(!with(1e19).is_none());
        assert_eq!(
            with(1e19).hostile_retry_after().map(|n| n.to_string()),
            Some("10000000000000000000".into())
        );
        assert_eq!(
            with(1e30).hostile_retry_after().map(|n| n.to_string()),
            Some("1e+30".into())
        );
        assert_eq!(with(f64::NAN).hostile_retry_after(), None);
    }
}
