//! How fast a job can go and when it ends: pure functions of what remains,
//! what the fleet allows and what the job's cap says. No clock here: the
//! caller passes times in.
//!
//! The rate a job may use is the least of the fleet's allowed rate (the sum
//! of the healthy bots' bulk rates, times the share jobs get) and the job's
//! own cap. Each recipient is a distinct chat, so per-chat and per-group
//! limits never bind within one job: a bot's overall rate is what does.
//! While a job runs, the observed delivery rate is the better guide (bots
//! may be busy with interactive traffic), so [`estimate`] prefers it when
//! there is one, but never above what the limits allow.

/// A plan: the rate the job goes at and how long until it ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Messages per second.
    pub rate_per_s: f64,
    /// Seconds from now until the last recipient is sent; `None` when the
    /// rate is 0 (no healthy bot) so no end can be promised.
    pub eta_s: Option<f64>,
}

/// The rate a job may use: the fleet's allowed rate, capped by the job's
/// `rate_per_s` (0 = no cap). Negative or non-finite input counts as 0.
pub fn allowed_rate(fleet_rate_per_s: f64, cap_per_s: u32) -> f64 {
    let fleet = if fleet_rate_per_s.is_finite() {
        fleet_rate_per_s.max(0.0)
    } else {
        0.0
    };
    if cap_per_s == 0 {
        fleet
    } else {
        fleet.min(f64::from(cap_per_s))
    }
}

/// The fleet's rate for bulk work: the sum of the given bots' rates times
/// the share of it jobs get (0..=1).
pub fn fleet_rate(bot_rates_per_s: &[f64], share: f64) -> f64 {
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    bot_rates_per_s
        .iter()
        .filter(|r| r.is_finite() && **r > 0.0)
        .sum::<f64>()
        * share
}

/// When `remaining` recipients are sent at the allowed rate (or the
/// observed one, if lower and positive), starting `wait_s` from now (a
/// future `start_at`).
pub fn estimate(
    remaining: u64,
    allowed_per_s: f64,
    observed_per_s: Option<f64>,
    wait_s: f64,
) -> Estimate {
    let allowed = allowed_rate(allowed_per_s, 0);
    let rate = match observed_per_s {
        Some(o) if o.is_finite() && o > 0.0 => o.min(allowed),
        _ => allowed,
    };
    let wait = if wait_s.is_finite() {
        wait_s.max(0.0)
    } else {
        0.0
    };
    let eta_s = if remaining == 0 {
        Some(0.0)
    } else if rate > 0.0 {
        Some(wait + remaining as f64 / rate)
    } else {
        None
    };
    Estimate {
        rate_per_s: rate,
        eta_s,
    }
}

/// A delivery rate over a sliding span, from samples the caller takes
/// (seconds since any fixed point, delivered + failed so far).
#[derive(Clone, Debug)]
pub struct RateMeter {
    span_s: f64,
    samples: std::collections::VecDeque<(f64, u64)>,
}

/// Samples kept at most, whatever the span (one a second covers a minute).
const MAX_SAMPLES: usize = 64;

impl RateMeter {
    /// A meter averaging over the last `span_s` seconds.
    pub fn new(span_s: f64) -> RateMeter {
        RateMeter {
            span_s: if span_s.is_finite() && span_s > 0.0 {
                span_s
            } else {
                10.0
            },
            samples: std::collections::VecDeque::new(),
        }
    }

    /// Notes that `done` recipients were finished at time `at_s`. Samples
    /// out of order (a clock step back) are ignored.
    pub fn sample(&mut self, at_s: f64, done: u64) {
        if self
            .samples
            .back()
            .is_some_and(|&(t, d)| at_s <= t || done < d)
        {
            return;
        }
        self.samples.push_back((at_s, done));
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() > 2
                && self
                    .samples
                    .front()
                    .is_some_and(|&(t, _)| at_s - t > self.span_s))
        {
            self.samples.pop_front();
        }
    }

    /// Recipients per second over the span; `None` before two samples.
    pub fn rate(&self) -> Option<f64> {
        let (&(t0, d0), &(t1, d1)) = (self.samples.front()?, self.samples.back()?);
        (t1 > t0).then(|| (d1 - d0) as f64 / (t1 - t0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_million_recipients_over_ten_bulk_bots_take_about_an_hour() {
        let fleet = fleet_rate(&[30.0; 10], 0.9);
        let e = estimate(1_000_000, allowed_rate(fleet, 0), None, 0.0);
        assert!((e.rate_per_s - 270.0).abs() < 1e-9);
        let eta = e.eta_s.unwrap();
        assert!((eta - 1_000_000.0 / 270.0).abs() < 1e-6, "{eta}");
    }

    #[test]
    fn the_job_cap_and_a_slower_observed_rate_win_and_a_later_start_adds_its_wait() {
        assert_eq!(allowed_rate(300.0, 50), 50.0);
        assert_eq!(allowed_rate(30.0, 50), 30.0);
        let e = estimate(100, 50.0, Some(10.0), 20.0);
        assert_eq!((e.rate_per_s, e.eta_s), (10.0, Some(30.0)));
        let e = estimate(100, 50.0, Some(500.0), 0.0);
        assert_eq!(e.rate_per_s, 50.0, "observed never above the limits");
    }

    #[test]
    fn no_healthy_bot_means_no_promised_end_but_nothing_left_means_now() {
        assert_eq!(estimate(5, 0.0, None, 0.0).eta_s, None);
        assert_eq!(estimate(0, 0.0, None, 0.0).eta_s, Some(0.0));
        assert_eq!(fleet_rate(&[f64::NAN, -3.0, 30.0], 1.0), 30.0);
        assert_eq!(allowed_rate(f64::INFINITY, 0), 0.0);
    }

    #[test]
    fn the_rate_meter_averages_over_its_span_and_ignores_steps_back() {
        let mut m = RateMeter::new(10.0);
        assert_eq!(m.rate(), None);
        for s in 0..=30u64 {
            m.sample(s as f64, s * 25);
        }
        m.sample(5.0, 0); // a step back
        let r = m.rate().unwrap();
        assert!((r - 25.0).abs() < 1e-9, "{r}");
        assert!(m.samples.len() <= MAX_SAMPLES);
    }

    proptest! {
        #[test]
        fn the_eta_shrinks_as_recipients_are_sent_and_grows_as_the_rate_falls(
            remaining in 1u64..2_000_000, rate in 0.1f64..5000.0, wait in 0.0f64..1e5,
        ) {
            let e = estimate(remaining, rate, None, wait).eta_s.unwrap();
            let fewer = estimate(remaining - 1, rate, None, wait).eta_s.unwrap();
            let slower = estimate(remaining, rate / 2.0, None, wait).eta_s.unwrap();
            prop_assert!(fewer <= e && e < slower);
            prop_assert!(e >= wait);
        }
    }
}
