//! Priority classes and deadline-aware admission through the gateway, in
//! process: the emulator on a loopback port and one bot saturated by a
//! backlog, driven through the gateway's Rust API.
//!
//! Real time on loopback, like the other emulator tests (a paused clock
//! would fire the HTTP client's timeouts while a request waits on the
//! socket); every bound is generous and each test prints what it measured.

mod common;

use std::time::Duration;

use common::start as start_gateway;
use shardgate_gateway::local::LocalGateway;
use shardgate_gateway::{GatewayConfig, Message, SendError};
use shardgate_mock::{MockConfig, MockServer};
use shardgate_sched::Priority;
use tokio::time::Instant;

fn message(chat_id: i64, priority: Priority, timeout: Option<Duration>) -> Message {
    Message {
        priority,
        ..common::message(chat_id, format!("to {chat_id}"), timeout)
    }
}

/// The emulator and a ready gateway over one bot.
async fn start() -> (MockServer, LocalGateway) {
    let (mock, local) = start_gateway(MockConfig::default(), 1, GatewayConfig::default()).await;
    // A new dispatcher takes the bot over as if another process had just
    // used it: nothing for one bot window, and chats seen within a bucket's
    // refill time (3.3 s) start empty. Wait that out, so that a fresh chat
    // has room.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    (mock, local)
}

/// With the bot saturated by 300 bulk messages (10 s of its 30/s), an
/// interactive and then a normal message into fresh chats each go within a
/// few of the bot's sends, not behind the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_above_a_bulk_backlog_goes_next_through_the_emulator() {
    let (mock, local) = start().await;
    let backlog: Vec<_> = (1..=300)
        .map(|chat| {
            local
                .gateway
                .submit(message(chat, Priority::Bulk, None), None)
        })
        .collect();
    // Let the bot get going on the backlog.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut took = Vec::new();
    for (chat, priority) in [(5_001, Priority::Interactive), (5_002, Priority::Normal)] {
        let before = mock.control().stats().totals.delivered;
        let started = Instant::now();
        let outcome = local
            .gateway
            .send(message(chat, priority, None), None)
            .await;
        took.push(started.elapsed());
        let delivered = mock.control().stats().totals.delivered;
        assert!(outcome.is_ok(), "{priority:?}: {outcome:?}");
        assert!(
            delivered < 300,
            "the backlog was still there ({delivered} delivered)"
        );
        // Under 0.5 s where the backlog ahead would take about 9 s.
        assert!(
            took.last().is_some_and(|t| *t < Duration::from_millis(500)),
            "{priority:?} took {took:?} with {} delivered before it",
            delivered - before
        );
    }
    let stats = mock.control().stats();
    println!(
        "bulk backlog of 300 on one bot: interactive sent in {:?}, normal in {:?}; \
         {} delivered so far, {} 429s",
        took[0], took[1], stats.totals.delivered, stats.totals.rate_limited
    );
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    drop(backlog);
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

/// A message that the backlog ahead of it would send only after its
/// deadline is answered at once with DEADLINE_EXCEEDED, saying when it
/// would have gone; one that can make it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_would_miss_its_deadline_is_refused_at_once_saying_when_it_would_go() {
    let (mock, local) = start().await;
    let backlog: Vec<_> = (1..=300)
        .map(|chat| {
            local
                .gateway
                .submit(message(chat, Priority::Normal, None), None)
        })
        .collect();
    let started = Instant::now();
    let deadline = Some(started + Duration::from_secs(2));
    let outcome = local
        .gateway
        .send(message(6_001, Priority::Normal, None), deadline)
        .await;
    let took = started.elapsed();
    println!("behind 300 normal messages with a 2 s timeout: {outcome:?} after {took:?}");
    let err = outcome.expect_err("refused");
    assert!(
        matches!(err, SendError::WouldMissDeadline { in_secs } if (8..=11).contains(&in_secs)),
        "{err}"
    );
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    assert!(err.to_string().contains("would be sent in about"), "{err}");
    assert!(
        took < Duration::from_millis(200),
        "answered at once: {took:?}"
    );
    // Interactive goes first: the same deadline is met.
    let deadline = Some(Instant::now() + Duration::from_secs(2));
    let outcome = local
        .gateway
        .send(message(6_002, Priority::Interactive, None), deadline)
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    drop(backlog);
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}
