//! The paid broadcast lane through the gateway, in process: one bot in front
//! of the emulator on a loopback port, which enforces Telegram's limits and
//! the paid lane's `paid_bot_max` (1000 per second).
//!
//! Real time on loopback, like the other emulator tests (a paused clock
//! would fire the HTTP client's timeouts while a request waits on the
//! socket). Rates are read from the emulator's own arrival times, and every
//! bound is generous; each test prints what it measured.

mod common;

use std::time::Duration;

use shardgate_gateway::local::LocalGateway;
use shardgate_gateway::{Body, GatewayConfig, Message, Text};
use shardgate_metrics::Metrics;
use shardgate_mock::{MockConfig, MockServer};
use shardgate_telegram::Extras;

fn message(chat_id: i64, paid: bool) -> Message {
    Message {
        body: Body::Text(Text {
            text: format!("to {chat_id}"),
            extras: Extras {
                allow_paid_broadcast: paid,
                ..Extras::default()
            },
            ..Text::default()
        }),
        ..common::message(chat_id, String::new(), None)
    }
}

/// The emulator and a ready gateway over one bot (with its metrics), past
/// the take-over wait (nothing for one bot window; chats seen within a
/// bucket's refill time start empty).
async fn start() -> (MockServer, LocalGateway, Metrics) {
    let metrics = Metrics::new();
    let (mock, local) = common::start_with_metrics(
        MockConfig::default(),
        1,
        GatewayConfig::default(),
        metrics.clone(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    (mock, local, metrics)
}

/// Sends `n` messages into distinct fresh chats from `first` on and waits for
/// all of them; returns (messages per second between the first and the last
/// arrival, the most that arrived in any one second), from the emulator's
/// arrival times.
async fn blast(
    mock: &MockServer,
    local: &LocalGateway,
    first: i64,
    n: i64,
    paid: bool,
) -> (f64, usize) {
    let since = mock.control().stats().last_seq;
    let sends: Vec<_> = (first..first + n)
        .map(|chat| local.gateway.submit(message(chat, paid), None))
        .collect();
    for send in sends {
        let outcome = send.wait(None).await;
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    let mut at: Vec<u64> = mock
        .control()
        .deliveries(since)
        .iter()
        .map(|d| d.at_ms)
        .collect();
    assert_eq!(at.len(), n as usize, "every message arrived once");
    at.sort_unstable();
    let span_ms = (at[at.len() - 1] - at[0]).max(1);
    let rate = (at.len() - 1) as f64 * 1_000.0 / span_ms as f64;
    let mut most = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= 1_000 {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    (rate, most)
}

/// One bot delivers at least 200 paid messages a second into distinct
/// chats with no 429 (the emulator holds it to its paid lane), counting
/// what went over the free rate; the same load without the flag stays at
/// the free 30 a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paid_lane_goes_past_the_free_rate_without_a_429_and_unflagged_load_does_not() {
    let (mock, local, metrics) = start().await;
    assert_eq!(mock.control().paid_bot_max(), 1_000);

    let (paid_rate, paid_most) = blast(&mock, &local, 1, 3_000, true).await;
    let stats = mock.control().stats();
    let paid_at_emulator = stats.totals.paid;
    let counted = metrics.bot("bot-0").paid_total();
    println!(
        "paid lane: 3000 messages at {paid_rate:.0}/s (at most {paid_most} in any second), \
         {} 429s, {paid_at_emulator} over the free rate at the emulator, {counted} counted by the gateway",
        stats.totals.rate_limited
    );
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    assert!(paid_rate >= 200.0, "{paid_rate:.0}/s");
    assert!(paid_most <= 1_000, "{paid_most} in one second");
    assert!(paid_at_emulator > 0, "messages went over the free rate");
    assert!(counted > 0 && counted <= 3_000, "{counted}");

    // Fresh chats again, without the flag: the free rate.
    let (free_rate, free_most) = blast(&mock, &local, 10_001, 150, false).await;
    let stats = mock.control().stats();
    println!(
        "without the flag: 150 messages at {free_rate:.1}/s (at most {free_most} in any second), {} 429s",
        stats.totals.rate_limited
    );
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    assert!(free_most <= 30, "{free_most} in one second");
    assert!((20.0..=31.0).contains(&free_rate), "{free_rate:.1}/s");
    assert_eq!(stats.totals.paid, paid_at_emulator, "nothing more was paid");

    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}
