//! Gateway settings that are not limits of one bot: timeouts, cooldown
//! policy, retry policy, idempotency window.

use std::time::Duration;

use shardgate_sched::Limits;
use shardgate_telegram::Backoff;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// This instance's id (appears in `Status` and health records).
    pub instance_id: String,
    /// Every bot's limits.
    pub limits: Limits,
    /// A 429's `retry_after` is multiplied by this before the cooldown ends.
    pub cooldown_factor: f64,
    /// A 429 with `retry_after` at or over this throttles the whole bot.
    pub bot_throttle_threshold: Duration,
    /// Retries of 5xx, timeouts and broken connections.
    pub backoff: Backoff,
    /// How long a delivered `idempotency_key` is remembered.
    pub idempotency_ttl: Duration,
    /// At most this many remembered keys (oldest forgotten first).
    pub idempotency_max: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            instance_id: "shardgate-1".into(),
            limits: Limits::default(),
            cooldown_factor: 1.1,
            bot_throttle_threshold: Duration::from_secs(30),
            backoff: Backoff::default(),
            idempotency_ttl: Duration::from_secs(15 * 60),
            idempotency_max: 1_000_000,
        }
    }
}
