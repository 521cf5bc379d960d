//! The knobs of one bot's limits, with Telegram's published figures (and our
//! safety margins) as defaults.

use std::time::Duration;

/// Limits for one bot. Defaults follow Telegram's limits: per-chat bucket of 3 refilled at
/// 0.9/s (under Telegram's ~1/s), 20 per 60 s per group, 30 per 1 s per bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Messages a chat may get in a burst.
    pub chat_burst: u32,
    /// Sustained messages per second into one chat.
    pub chat_rate: f64,
    /// At most this many messages into one group (chat_id < 0) ...
    pub group_max: u32,
    /// ... in any window of this length.
    pub group_window: Duration,
    /// At most this many messages from the bot ...
    pub bot_max: u32,
    /// ... in any window of this length.
    pub bot_window: Duration,
    /// Messages sent with `allow_paid_broadcast` may take the bot past
    /// `bot_max` up to this many in any `bot_window` (Telegram bills each
    /// one over the free rate). The free rate is used first. Not above
    /// `bot_max`: no paid lane.
    pub paid_bot_max: u32,
    /// The bot's sends are also spaced evenly at `bot_max / bot_window`,
    /// with at most this many back to back, so that Telegram never sees the
    /// whole window's allowance arrive at once. 2 absorbs timer lateness
    /// without losing rate.
    pub bot_burst: u32,
    /// Extra slack added to both windows (and to the bot's even spacing).
    /// Not needed for correctness: the windows count a request in flight as
    /// "now" and fix it at its completion, so they hold at Telegram's arrival
    /// count whatever the delay between our send and its arrival (see
    /// [`crate::Window`]). Kept for a server whose clock might run slow
    /// against ours; 0 by default.
    pub jitter_margin: Duration,
    /// Requests of this bot waiting for Telegram's answer at once.
    pub max_in_flight: u32,
    /// Messages queued for this bot in all; past it, pushes are refused.
    pub queue_max: usize,
    /// Messages queued for one chat; past it, pushes for that chat are refused.
    pub chat_queue_max: usize,
    /// Fraction of the bot's sends (0..=1) that bulk messages keep while
    /// they wait, however busy the higher classes keep the bot.
    pub bulk_min_share: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chat_burst: 3,
            chat_rate: 0.9,
            group_max: 20,
            group_window: Duration::from_secs(60),
            bot_max: 30,
            bot_window: Duration::from_secs(1),
            paid_bot_max: 1_000,
            bot_burst: 2,
            jitter_margin: Duration::ZERO,
            max_in_flight: 16,
            queue_max: 100_000,
            chat_queue_max: 1_000,
            bulk_min_share: 0.10,
        }
    }
}

/// Why a set of limits cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid limits: {0}")]
pub struct InvalidLimits(pub &'static str);

impl Limits {
    /// Checks that the limits describe something a scheduler can meet.
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        if self.chat_burst == 0 {
            return Err(InvalidLimits("chat_burst must be at least 1"));
        }
        if !(self.chat_rate.is_finite() && self.chat_rate > 0.0) {
            return Err(InvalidLimits("chat_rate must be a positive number"));
        }
        if self.group_max == 0 || self.group_window.is_zero() {
            return Err(InvalidLimits("group_max and group_window must be positive"));
        }
        if self.bot_max == 0 || self.bot_window.is_zero() || self.bot_burst == 0 {
            return Err(InvalidLimits(
                "bot_max, bot_window and bot_burst must be positive",
            ));
        }
        if self.max_in_flight == 0 || self.queue_max == 0 || self.chat_queue_max == 0 {
            return Err(InvalidLimits(
                "max_in_flight, queue_max and chat_queue_max must be positive",
            ));
        }
        if !(0.0..=1.0).contains(&self.bulk_min_share) {
            return Err(InvalidLimits("bulk_min_share must be between 0 and 1"));
        }
        Ok(())
    }

    /// The bot's sustained sends per second: `bot_max` per window
    /// (with the margin).
    pub fn bot_rate_per_s(&self) -> f64 {
        f64::from(self.bot_max) / (self.bot_window + self.jitter_margin).as_secs_f64()
    }

    /// Room of the paid lane per `bot_window`: the messages that may go over
    /// the free rate, `paid_bot_max - bot_max` (the free rate's `bot_max`
    /// come on top, so the bot stays within `paid_bot_max`); `None` when
    /// there is no paid lane.
    pub fn paid_lane(&self) -> Option<u32> {
        self.paid_bot_max
            .checked_sub(self.bot_max)
            .filter(|room| *room > 0)
    }

    /// Messages per second this bot can deliver with enough demand over
    /// `private_chats` private chats and `groups` groups: the ceiling that
    /// benchmarks compare delivered throughput with.
    pub fn ceiling_per_s(&self, private_chats: u64, groups: u64) -> f64 {
        let group_rate =
            (self.group_max as f64 / self.group_window.as_secs_f64()).min(self.chat_rate);
        let demand = private_chats as f64 * self.chat_rate + groups as f64 * group_rate;
        demand.min(self.bot_max as f64 / self.bot_window.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_is_the_binding_limit() {
        let l = Limits::default();
        assert_eq!(l.ceiling_per_s(2_000, 0), 30.0);
        assert!((l.ceiling_per_s(20, 0) - 18.0).abs() < 1e-9);
        assert!((l.ceiling_per_s(0, 40) - 40.0 / 3.0).abs() < 1e-9);
        assert!(Limits::default().validate().is_ok());
        assert!(
            Limits {
                bot_burst: 0,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
        for share in [-0.1, 1.5, f64::NAN] {
            let l = Limits {
                bulk_min_share: share,
                ..Limits::default()
            };
            assert!(l.validate().is_err(), "{share}");
        }
    }
}
