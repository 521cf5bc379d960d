//! What one bot's paid broadcasts cost: messages that went over its free
//! rate (`allow_paid_broadcast`), counted per minute for a log line with the
//! estimated Stars spent.
//!
//! Telegram bills each message a bot sends over its free rate with the flag
//! (0.1 Star each at the time of writing); the gateway does not see the
//! bill, so the figure is an estimate from its own count.

use std::time::Duration;

use tokio::time::Instant;

/// Stars Telegram charges per message over the free rate.
pub const STARS_PER_PAID_MESSAGE: f64 = 0.1;

/// How often at most a bot reports its paid traffic.
const EVERY: Duration = Duration::from_secs(60);

/// Paid messages of one bot since the last report.
#[derive(Debug, Default)]
pub struct PaidMinute {
    /// When the first message counted was sent.
    since: Option<Instant>,
    messages: u64,
}

/// Paid traffic to log: `messages` over the free rate in the `over` before
/// the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaidReport {
    pub messages: u64,
    pub stars: f64,
    pub over: Duration,
}

impl PaidMinute {
    /// Counts `n` paid messages sent at `now`. When the first message counted
    /// is a minute old or more, hands back what was counted before this one
    /// (over the time since the first) and starts over with this one. So a
    /// bot reports at most once a minute, and only while paid traffic flows
    /// (a report after a quiet spell says how long it covers).
    pub fn sent(&mut self, n: u64, now: Instant) -> Option<PaidReport> {
        let report = match self.since {
            Some(since) if now.saturating_duration_since(since) >= EVERY => {
                let messages = std::mem::take(&mut self.messages);
                self.since = None;
                Some(PaidReport {
                    messages,
                    stars: messages as f64 * STARS_PER_PAID_MESSAGE,
                    over: now.saturating_duration_since(since),
                })
            }
            _ => None,
        };
        self.since.get_or_insert(now);
        self.messages += n;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_at_most_once_a_minute_with_the_stars_of_what_it_covers() {
        let mut m = PaidMinute::default();
        let start = Instant::now();
        assert_eq!(m.sent(1, start), None, "the first starts the minute");
        for s in 1..60 {
            assert_eq!(m.sent(10, start + Duration::from_secs(s)), None);
        }
        let r = m.sent(9, start + EVERY).expect("a minute has passed");
        assert_eq!(r.messages, 1 + 59 * 10, "what the minute held");
        assert!((r.stars - 59.1).abs() < 1e-9, "{}", r.stars);
        assert_eq!(r.over, EVERY);
        assert_eq!(m.sent(1, start + EVERY), None, "a new minute has begun");
        // A quiet hour, then one paid message: the report says what it covers.
        let later = start + Duration::from_secs(3_660);
        let r = m.sent(1, later).expect("the minute's first is old");
        assert_eq!(r.messages, 10);
        assert_eq!(r.over, Duration::from_secs(3_600));
        assert_eq!(m.sent(1, later), None);
    }
}
