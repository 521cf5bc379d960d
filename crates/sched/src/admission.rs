//! Deadline-aware admission: when would a message queued now be sent?
//!
//! [`Position`] is what a new message would find in front of it, read off
//! the scheduler in O(1) (plus a walk over its own chat's queue when it
//! would overtake some of it): the messages of its class and higher that
//! the bot must send first, its chat's bucket and group window, the bot's
//! window and pace. [`estimate`] turns that into a send time, a pure
//! function the gateway uses to refuse at once a message that would go only
//! after its deadline.
//!
//! # The estimate
//!
//! The later of what the message's own chat allows and what the bot's rate
//! allows after the work ahead of it:
//! - chat: the `k` messages of the chat that go first (and one in flight)
//!   leave at the bucket's pace, then this one; a group also waits for its
//!   window ([`crate::Window::nth_free`]);
//! - bot: `A` messages of its class and higher are queued, over `C` chats.
//!   Not all of them go first: within a class the oldest message *whose
//!   chat allows a send* goes first, so a chat with a deep queue holds the
//!   bot only at its own pace. By a time `T`, the others can have sent at
//!   most `W(T) = min(A, C * (burst + rate * T))`; the message goes once
//!   the bot's rate `R` has covered that: `T = min(A / R, C * burst /
//!   (R - C * rate))` (the second when `R > C * rate`). While bulk has
//!   work, `R` is the bot's rate less what bulk takes (its share, or what
//!   its chats can use), and only until that bulk work is done. A bulk
//!   message is served at least at its share, and at whatever the higher
//!   classes' chats cannot use: `T = min(T(all ahead, rate), T(bulk
//!   ahead, bulk's rate))`.
//!
//! It assumes that nothing of a higher class arrives later, that answers
//! come back at once (the bot's window frees a slot a window after each
//! send), and that every chat ahead has its whole burst (so deep, drained
//! queues make it late rather than early). The property test
//! `estimate_matches_the_simulated_timeline` (in `scheduler/tests_priority.rs`)
//! holds it to the scheduler's own timeline: for an actual wait of `w`
//! seconds it is at most `0.35 * (1 + w)` early and `0.5 * (1 + w)` late.
//! Where bulk messages wait behind higher-class messages of their own
//! chats, a bulk message's estimate comes out later than that: they are
//! counted as ahead of it although they wait for their chats' higher ones
//! (late is the safe side for bulk, whose deadlines are long).

use crate::{Gcra, Limits, Priority, Tick};

/// What a message queued now would find ahead of it. See the module
/// documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub now: Tick,
    pub priority: Priority,
    /// Messages of its chat that go before it (its class and higher), and
    /// one more if the chat has a request in flight.
    pub chat_ahead: u64,
    /// The chat's bucket state (GCRA `tat`, cooldowns included).
    pub chat_tat: Tick,
    /// For a group, when its window lets this message go after the
    /// `chat_ahead` before it; 0 otherwise.
    pub group_at: Tick,
    /// Earliest time the bot may send anything (cooldown, window, pace).
    pub bot_free: Tick,
    /// Messages queued in the bot of its class and higher.
    pub ahead: u64,
    /// Chats with such messages.
    pub ahead_chats: u64,
    /// Bulk messages queued, and chats whose first message is bulk.
    pub bulk: u64,
    pub bulk_chats: u64,
    /// Every message queued, and every chat with one.
    pub all: u64,
    pub all_chats: u64,
}

/// When the message at `position` would be sent, on the scheduler's clock.
pub fn estimate(position: &Position, limits: &Limits) -> Tick {
    let p = position;
    let bucket = Gcra::new(limits.chat_burst, limits.chat_rate);
    let per_token = (1_000_000.0 / limits.chat_rate).ceil() as Tick;
    let chat_at = bucket.next_free(
        p.chat_tat
            .max(p.now)
            .saturating_add(p.chat_ahead.saturating_mul(per_token)),
    );
    let rate = limits.bot_rate_per_s();
    let share = limits.bulk_min_share.clamp(0.0, 1.0);
    // What bulk can take of the bot: its share, if its chats can use it.
    let bulk_take = (share * rate).min(p.bulk_chats as f64 * limits.chat_rate);
    let secs = if p.priority == Priority::Bulk {
        // Bulk gets its share, and whatever the higher classes' chats
        // cannot use.
        let higher_chats = p.all_chats.saturating_sub(p.bulk_chats) as f64;
        let bulk_rate = (share * rate).max(rate - (higher_chats * limits.chat_rate).min(rate));
        behind(p.all, p.all_chats, rate, limits).min(behind(
            p.bulk,
            p.bulk_chats,
            bulk_rate,
            limits,
        ))
    } else {
        // Bulk takes its part only while it lasts.
        let slow = rate - bulk_take;
        let lasts = if bulk_take > 0.0 {
            p.bulk as f64 / bulk_take
        } else {
            0.0
        };
        let t = behind(p.ahead, p.ahead_chats, slow, limits);
        if t <= lasts {
            t
        } else {
            let left = p.ahead as f64 - slow * lasts;
            lasts + behind(left.max(0.0) as u64, p.ahead_chats, rate, limits)
        }
    };
    let bot_at = p.bot_free.max(p.now).saturating_add(secs_to_ticks(secs));
    chat_at.max(p.group_at).max(bot_at).max(p.now)
}

/// Seconds until the bot, sending at `rate`, has covered what `n` messages
/// over `chats` chats can send before a newcomer (see the module
/// documentation).
fn behind(n: u64, chats: u64, rate: f64, limits: &Limits) -> f64 {
    if n == 0 {
        return 0.0;
    }
    if rate <= 0.0 {
        return f64::INFINITY;
    }
    let all = n as f64 / rate;
    let c = chats as f64;
    let spare = rate - c * limits.chat_rate;
    if spare > 0.0 {
        all.min(c * f64::from(limits.chat_burst) / spare)
    } else {
        all
    }
}

fn secs_to_ticks(secs: f64) -> Tick {
    if secs.is_finite() {
        (secs * 1e6).min(Tick::MAX as f64 / 2.0) as Tick
    } else {
        Tick::MAX / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Tick = 1_000_000;

    fn at(now: Tick, priority: Priority) -> Position {
        Position {
            now,
            priority,
            chat_ahead: 0,
            chat_tat: 0,
            group_at: 0,
            bot_free: 0,
            ahead: 0,
            ahead_chats: 0,
            bulk: 0,
            bulk_chats: 0,
            all: 0,
            all_chats: 0,
        }
    }

    #[test]
    fn nothing_ahead_goes_now() {
        let l = Limits::default();
        assert_eq!(estimate(&at(5 * S, Priority::Normal), &l), 5 * S);
    }

    #[test]
    fn one_message_per_chat_ahead_waits_for_all_of_them_at_the_bot_rate() {
        let l = Limits::default();
        let p = Position {
            ahead: 300,
            ahead_chats: 300,
            all: 300,
            all_chats: 300,
            ..at(0, Priority::Normal)
        };
        // 300 chats can take more than the bot's 30/s: 10 s.
        assert_eq!(estimate(&p, &l), 10 * S);
    }

    #[test]
    fn a_deep_queue_in_few_chats_holds_the_bot_only_at_their_pace() {
        let l = Limits::default();
        let p = Position {
            ahead: 5_000,
            ahead_chats: 5,
            ..at(0, Priority::Normal)
        };
        // 5 chats take 4.5/s of 30/s: after their bursts (15) it goes.
        let t = estimate(&p, &l);
        assert!(t < S, "{t}");
    }

    #[test]
    fn bulk_is_served_at_least_at_its_share() {
        let l = Limits::default();
        let p = Position {
            bulk: 30,
            bulk_chats: 30,
            all: 100_030,
            all_chats: 100_030,
            ..at(0, Priority::Bulk)
        };
        // 30 bulk ahead at 10% of 30/s: 10 s, not the 3,334 s of all.
        assert_eq!(estimate(&p, &l), 10 * S);
    }

    #[test]
    fn the_chats_own_queue_goes_at_the_bucket_pace() {
        let l = Limits::default();
        let p = Position {
            chat_ahead: 5,
            ahead: 5,
            ahead_chats: 1,
            ..at(0, Priority::Normal)
        };
        // Burst of 3, then 1/0.9 s each: the sixth goes after 3 tokens.
        assert_eq!(estimate(&p, &l), 3 * 1_111_112);
    }
}
