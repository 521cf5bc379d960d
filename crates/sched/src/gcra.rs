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
        tat.max(now).saturating_add(self.interval)
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
    fn cooldown_leaves_an_empty_bucket() {
        let g = Gcra::new(3, 1.0);
        let tat = g.cool_until(0, 10 * S);
        assert_eq!(g.next_free(tat), 10 * S);
        let tat = g.consume(tat, 10 * S);
        assert_eq!(g.next_free(tat), 11 * S);
    }
}
