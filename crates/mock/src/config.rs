//! The emulator's starting configuration: limits, faults and log size. `Control::reset`
//! returns to it.

use crate::faults::Faults;
use crate::limits::{Limits, PAID_BOT_MAX};

/// How a [`crate::MockServer`] starts (and what `reset` returns to).
#[derive(Clone, Debug, PartialEq)]
pub struct MockConfig {
    /// Rate limits to enforce; `None` disables them entirely (throughput benchmarks).
    pub limits: Option<Limits>,
    /// Global faults to inject from the start.
    pub faults: Faults,
    /// Deliveries kept in the log and remembered for duplicate detection;
    /// older ones are forgotten (sequence numbers keep counting; a repeat of
    /// a message older than the last `max_deliveries` is not called a
    /// duplicate). The stored messages are bounded by the smaller of this
    /// and 200,000.
    pub max_deliveries: usize,
    /// Seed for the fault dice; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Messages per bot window a bot may send with `allow_paid_broadcast` (Telegram: 1000
    /// per second); 0 turns the paid lane off.
    pub paid_bot_max: u32,
}

impl Default for MockConfig {
    /// Official limits (paid lane 1000/s), no faults, a log of one million deliveries.
    fn default() -> Self {
        MockConfig {
            limits: Some(Limits::official()),
            faults: Faults::default(),
            max_deliveries: 1_000_000,
            seed: None,
            paid_bot_max: PAID_BOT_MAX,
        }
    }
}

impl MockConfig {
    /// The default configuration without any rate limit.
    pub fn unlimited() -> Self {
        MockConfig {
            limits: None,
            ..MockConfig::default()
        }
    }
}
