//! The per-chat token bucket, as GCRA: one `u64` of state per chat.
//!
//! GCRA ("generic cell rate algorithm") is a token bucket stored as the
//! theoretical arrival time of the next message, so a million chats cost
//! eight bytes each and no refill loop.

use crate::Tick;

/// A token bucket of `burst` tokens refilled at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Ticks per token.
    interval: Tick,
    /// How far ahead of `now` the theoretical arrival time may run.
    tolerance: Tick,
}

impl Gcra {
    pub fn new(burst: u32, rate_per_s: f64) -> Self {
        let interval = (1_000_000.0 / rate_per_s).ceil() as Tick;
        Gcra {
            interval,
            tolerance: interval.saturating_mul(Tick::from(burst.saturating_sub(1))),
        }
    }

    /// Earliest time a message may go for a chat whose state is `tat`.
    pub fn next_free(&self, tat: Tick) -> Tick {
        tat.saturating_sub(self.tolerance)
    }

    /// The state after a message sent at `now` (which must be `>= next_free`).
    pub fn consume(&self, tat: Tick, now: Tick) -> Tick {
        self.consume_n(tat, now, 1)
    }

    /// Earliest time a request of `n` messages may go: when the bucket has
    /// room for `min(n, burst)` of them (a request larger than the bucket
    /// waits for a full one; Telegram and the emulator count it so).
    pub fn next_free_n(&self, tat: Tick, n: u32) -> Tick {
        let burst_less_one = self.tolerance / self.interval.max(1);
        let k = Tick::from(n.max(1) - 1).min(burst_less_one);
        tat.saturating_add(k.saturating_mul(self.interval))
            .saturating_sub(self.tolerance)
    }

    /// The state after a request of `n` messages at `now`: all `n` are
    /// charged, so the bucket may go into debt (the next message waits until
    /// it is paid back).
    pub fn consume_n(&self, tat: Tick, now: Tick, n: u32) -> Tick {
        tat.max(now)
            .saturating_add(self.interval.saturating_mul(Tick::from(n.max(1))))
    }

    /// The state after a cooldown until `until`: one message may go at
    /// `until`, and the bucket starts empty there (no burst after a 429).
    pub fn cool_until(&self, tat: Tick, until: Tick) -> Tick {
        tat.max(until.saturating_add(self.tolerance))
    }

    /// True once the bucket is full again at `now`: the state carries no
    /// information and may be forgotten.
    pub fn is_idle(&self, tat: Tick, now: Tick) -> bool {
        tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Tick = 1_000_000;

    #[test]
    fn burst_then_rate() {
        let g = Gcra::new(3, 1.0);
        let mut tat = 0;
        for _ in 0..3 {
            assert_eq!(g.next_free(tat), 0);
            tat = g.consume(tat, 0);
        }
        assert_eq!(g.next_free(tat), S);
        tat = g.consume(tat, S);
        assert_eq!(g.next_free(tat), 2 * S);
        assert!(!g.is_idle(tat, 2 * S));
        assert!(g.is_idle(tat, 4 * S));
    }

    #[test]
    fn a_request_of_many_needs_room_for_at_most_a_full_bucket_and_pays_for_all() {
        let g = Gcra::new(3, 1.0);
        // Fresh: room for 3, so one of 1, 3 or 10 may go at once.
        for n in [1, 3, 10] {
            assert_eq!(g.next_free_n(0, n), 0, "{n}");
        }
        let tat = g.consume_n(0, 0, 10);
        assert_eq!(
            tat,
            10 * S,
            "all ten are charged: seven seconds of debt past the burst"
        );
        assert_eq!(
            g.next_free_n(tat, 1),
            8 * S,
            "the next message waits for the debt"
        );
        assert_eq!(
            g.next_free_n(tat, 10),
            10 * S,
            "another album waits for a full bucket"
        );
        // One message sent: room for two more, not three.
        let one = g.consume(0, 0);
        assert_eq!(g.next_free_n(one, 2), 0);
        assert_eq!(g.next_free_n(one, 3), S);
        assert_eq!(g.next_free_n(one, 1), g.next_free(one));
    }

    #[test]
    fn cooldown_leaves_an_empty_bucket() {
        let g = Gcra::new(3, 1.0);
        let tat = g.cool_until(0, 10 * S);
        assert_eq!(g.next_free(tat), 10 * S);
        let tat = g.consume(tat, 10 * S);
        assert_eq!(g.next_free(tat), 11 * S);
    }
}
