//! Gateway settings that are not limits of one bot: timeouts, cooldown
//! policy, retry policy, idempotency window.

use std::time::Duration;

use shardgate_sched::Limits;
use shardgate_telegram::{Backoff, MAX_RETRY_AFTER};

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
    /// The longest cooldown honoured (`None`: every `retry_after` in full).
    /// For drills and staging, where waiting out a 4310 s `retry_after` is
    /// not an option; in production an early retry earns another 429.
    pub max_cooldown: Option<Duration>,
    /// Pacing of the retries of 5xx, timeouts and broken connections (they
    /// go on until the message's deadline).
    pub backoff: Backoff,
    /// The deadline of a message whose caller set none, counted from its
    /// acceptance: how long it may wait in queues and be retried.
    pub max_message_age: Duration,
    /// How long a delivered `idempotency_key` is remembered.
    pub idempotency_ttl: Duration,
    /// At most this many remembered keys (those past the TTL go first, then
    /// the oldest).
    pub idempotency_max: usize,
    /// At most this many bytes held by remembered keys (their strings and
    /// kept answers), the oldest forgotten first.
    pub idempotency_bytes_max: usize,
    /// Bytes of queued messages (text, strings, uploads, and a fixed
    /// overhead each) this instance holds at most; past it
    /// `RESOURCE_EXHAUSTED`. Also each caller's default bound.
    pub queue_bytes_max: u64,
    /// Answers one `SendStream` may owe at once; the stream stops reading
    /// requests until some are answered (the caller then waits on HTTP/2
    /// flow control).
    pub stream_pending_max: usize,
    /// Messages whose sending bot is remembered, for edits without `bot`
    /// (oldest forgotten first).
    pub sent_max: usize,
    /// `--auth on|off|auto`.
    pub auth: shardgate_callers::AuthMode,
    /// TLS towards peers when the gRPC port serves TLS (cluster mode):
    /// forwarding and probes verify the peer's certificate and present ours.
    pub peer_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            instance_id: "shardgate-1".into(),
            limits: Limits::default(),
            cooldown_factor: 1.1,
            bot_throttle_threshold: Duration::from_secs(30),
            max_cooldown: None,
            backoff: Backoff::default(),
            max_message_age: Duration::from_secs(600),
            idempotency_ttl: Duration::from_secs(15 * 60),
            idempotency_max: 1_000_000,
            idempotency_bytes_max: crate::idempotency::DEFAULT_IDEMPOTENCY_BYTES_MAX,
            queue_bytes_max: crate::budget::DEFAULT_QUEUE_BYTES_MAX,
            stream_pending_max: 10_000,
            sent_max: crate::sent::DEFAULT_SENT_MAX,
            auth: shardgate_callers::AuthMode::Auto,
            peer_tls: None,
        }
    }
}

impl GatewayConfig {
    /// How long a bot or chat cools down after a 429 with `retry_after`.
    ///
    /// `retry_after` is clamped to [`MAX_RETRY_AFTER`] first (the client
    /// does so too; this holds for any caller), and the product never
    /// overflows: an unrepresentable one (a huge or NaN factor) is the
    /// clamped `retry_after` itself.
    pub fn cooldown(&self, retry_after: Duration) -> Duration {
        let asked = retry_after.min(MAX_RETRY_AFTER);
        let c = Duration::try_from_secs_f64(asked.as_secs_f64() * self.cooldown_factor)
            .map_or(asked, |c| c.min(MAX_RETRY_AFTER.saturating_mul(2)));
        self.max_cooldown.map_or(c, |max| c.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooldown_is_the_retry_after_with_its_margin_capped_when_asked() {
        let mut c = GatewayConfig::default();
        assert_eq!(c.cooldown(Duration::from_secs(10)), Duration::from_secs(11));
        assert_eq!(
            c.cooldown(Duration::from_secs(4310)),
            Duration::from_secs(4741)
        );
        c.max_cooldown = Some(Duration::from_secs(10));
        assert_eq!(
            c.cooldown(Duration::from_secs(4310)),
            Duration::from_secs(10)
        );
        assert_eq!(
            c.cooldown(Duration::from_secs(2)),
            Duration::from_millis(2_200)
        );
    }

    #[test]
    fn a_cooldown_never_overflows_whatever_retry_after_and_factor_say() {
        let mut c = GatewayConfig::default();
        let day = MAX_RETRY_AFTER;
        assert_eq!(c.cooldown(Duration::MAX), day.mul_f64(1.1));
        assert_eq!(c.cooldown(Duration::from_secs(u64::MAX)), day.mul_f64(1.1));
        for factor in [f64::MAX, f64::INFINITY, f64::NAN, -1.0, 1e300] {
            c.cooldown_factor = factor;
            let got = c.cooldown(Duration::MAX);
            assert!(got <= day.saturating_mul(2), "{factor}: {got:?}");
        }
    }
}
