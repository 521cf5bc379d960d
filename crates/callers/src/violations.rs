//! Violation scores and timed bans.
//!
//! Each refused request (over quota, over `max_in_flight`, a bot or chat not
//! allowed, ...) adds `violation_score` to the caller's score. The score
//! returns to 0 once `violation_window_secs` pass without a violation. At
//! `ban_threshold` the caller is banned for `ban_secs` and the score starts
//! again from 0. Refusals during a ban do not add to the score (the gateway
//! checks the ban first and never calls [`Score::violate`] then).

use crate::model::ViolationSettings;

/// Why a caller's request was refused: the `kind` of a violation (a metric
/// label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalKind {
    /// Over `messages_per_window`.
    Quota,
    /// Over `max_in_flight`.
    InFlight,
    /// Over the caller's bytes queued on this instance.
    Bytes,
    /// A bot outside the caller's `bots`.
    Bot,
    /// A chat outside the caller's `chats`.
    Chat,
    /// `allow_paid_broadcast` without `paid_broadcast = true`.
    Paid,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 6] = [
        RefusalKind::Quota,
        RefusalKind::InFlight,
        RefusalKind::Bytes,
        RefusalKind::Bot,
        RefusalKind::Chat,
        RefusalKind::Paid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Quota => "quota",
            RefusalKind::InFlight => "in_flight",
            RefusalKind::Bytes => "bytes",
            RefusalKind::Bot => "bot",
            RefusalKind::Chat => "chat",
            RefusalKind::Paid => "paid",
        }
    }
}

impl std::fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one violation led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The score after this violation (under the threshold).
    Scored { score: u32 },
    /// The threshold was reached: banned until `until_s` (Unix seconds);
    /// `score` is the score that reached it.
    Banned { until_s: u64, score: u32 },
}

/// One caller's score on one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score {
    score: u32,
    /// Unix ms of the last violation.
    last_ms: u64,
}

impl Score {
    /// The score at `now_ms` (0 once the window passed since the last one).
    pub fn current(&self, now_ms: u64, settings: &ViolationSettings) -> u32 {
        let window_ms = settings.violation_window_secs.saturating_mul(1000);
        if self.score == 0 || now_ms.saturating_sub(self.last_ms) >= window_ms {
            0
        } else {
            self.score
        }
    }

    /// Records a violation at `now_ms`.
    pub fn violate(&mut self, now_ms: u64, settings: &ViolationSettings) -> Verdict {
        let score = self
            .current(now_ms, settings)
            .saturating_add(settings.violation_score);
        self.last_ms = now_ms;
        if score >= settings.ban_threshold {
            self.score = 0;
            let until_s = now_ms.div_ceil(1000).saturating_add(settings.ban_secs);
            Verdict::Banned { until_s, score }
        } else {
            self.score = score;
            Verdict::Scored { score }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn five_violations_at_the_defaults_ban_for_two_hours() {
        let s = ViolationSettings::default();
        let mut score = Score::default();
        for (i, want) in [20, 40, 60, 80].into_iter().enumerate() {
            assert_eq!(
                score.violate(1_000 * i as u64, &s),
                Verdict::Scored { score: want }
            );
        }
        assert_eq!(
            score.violate(10_000, &s),
            Verdict::Banned {
                until_s: 10 + 7200,
                score: 100
            }
        );
        assert_eq!(score.current(10_001, &s), 0, "a ban starts a fresh score");
    }

    #[test]
    fn the_score_returns_to_zero_after_twenty_clean_minutes() {
        let s = ViolationSettings::default();
        let mut score = Score::default();
        score.violate(0, &s);
        score.violate(1_000, &s);
        assert_eq!(score.current(1_000 + 1_199_999, &s), 40);
        assert_eq!(score.current(1_000 + 1_200_000, &s), 0);
        assert_eq!(
            score.violate(1_000 + 1_200_000, &s),
            Verdict::Scored { score: 20 }
        );
    }

    proptest! {
        /// Violations closer together than the window ban after exactly
        /// ceil(threshold / score) of them.
        #[test]
        fn a_ban_comes_after_ceil_threshold_over_score_violations(
            per in 1u32..200,
            threshold in 1u32..1_000,
            gaps in proptest::collection::vec(0u64..1_199_999, 1..100),
        ) {
            let s = ViolationSettings {
                violation_score: per,
                ban_threshold: threshold,
                ..ViolationSettings::default()
            };
            let mut score = Score::default();
            let mut now = 0;
            let needed = threshold.div_ceil(per) as usize;
            for (i, gap) in gaps.iter().enumerate() {
                now += gap;
                let v = score.violate(now, &s);
                let banned = matches!(v, Verdict::Banned { .. });
                prop_assert_eq!(banned, (i + 1) % needed == 0, "violation {}: {:?}", i + 1, v);
            }
        }
    }
}
