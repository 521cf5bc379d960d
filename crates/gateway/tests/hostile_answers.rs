//! Answers no real Bot API server sends, from the emulator on a loopback
//! port: a `retry_after` of 10^30 or 10^19 seconds, and migrations to 0, to
//! the chat itself or round in a cycle. The bot or chat they hit is dealt
//! with; every other chat and bot keeps being served, and every message is
//! answered within a bounded time.
//!
//! Real time on loopback (see `reliability.rs`); bounds are generous and
//! each test prints what it measured.

mod common;

use std::time::Duration;

use common::{bot_id, message, start};
use shardgate_gateway::{GatewayConfig, SendError};
use shardgate_mock::{ChatState, Faults, MockConfig};
use tokio::time::Instant;

/// A hostile `retry_after` on one of three bots: that bot is throttled (for
/// at most a day, not for ever, and its dispatcher lives on), its messages
/// go to the other bots, and all 60 chats are delivered.
async fn one_bot_answers_retry_after(retry_after: f64) {
    let (mock, local) = start(MockConfig::default(), 3, GatewayConfig::default()).await;
    mock.control().set_faults(
        Some(bot_id(0)),
        Faults {
            retry_after: Some(retry_after),
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let sends = (1..=60).map(|chat| {
        local.gateway.send(
            message(chat, format!("h{chat}"), Some(Duration::from_secs(30))),
            None,
        )
    });
    let outcomes = futures::future::join_all(sends).await;
    let took = started.elapsed();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(ToString::to_string))
        .collect();
    let stats = mock.control().stats();
    println!(
        "retry_after {retry_after:e} on bot-0: {} of 60 delivered in {took:?}; emulator: {} 429s, {} delivered",
        60 - failed.len(),
        stats.totals.rate_limited,
        stats.totals.delivered,
    );
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(stats.totals.delivered, 60);
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The throttled bot's dispatcher is alive: a message pinned to it with
    // failover goes to another bot at once instead of hanging.
    let mut pinned = message(99, "pinned".into(), Some(Duration::from_secs(10)));
    pinned.bot = Some("bot-0".into());
    let d = local.gateway.send(pinned, None).await.expect("failed over");
    assert_ne!(d.bot, "bot-0");
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_ten_to_the_thirty_throttles_one_bot_and_every_chat_is_delivered() {
    one_bot_answers_retry_after(1e30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_ten_to_the_nineteen_throttles_one_bot_and_every_chat_is_delivered() {
    one_bot_answers_retry_after(1e19).await;
}

/// Migrations to the chat itself, to 0 and round a cycle fail with an error
/// that says so, after a bounded number of requests and long before the
/// message's deadline; 20 other chats are delivered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_migrations_fail_clearly_and_quickly_while_other_chats_are_delivered() {
    let (mock, local) = start(MockConfig::default(), 2, GatewayConfig::default()).await;
    let control = mock.control();
    control.set_chat(-5, ChatState::Migrated { to: -5 });
    control.set_chat(-6, ChatState::Migrated { to: 0 });
    control.set_chat(-7, ChatState::Migrated { to: -8 });
    control.set_chat(-8, ChatState::Migrated { to: -7 });
    let started = Instant::now();
    let hostile = [-5, -6, -7].map(|chat| {
        local.gateway.send(
            message(chat, format!("m{chat}"), Some(Duration::from_secs(60))),
            None,
        )
    });
    let others = (1..=20).map(|chat| {
        local.gateway.send(
            message(chat, format!("o{chat}"), Some(Duration::from_secs(60))),
            None,
        )
    });
    let (hostile, others) = tokio::join!(
        futures::future::join_all(hostile),
        futures::future::join_all(others)
    );
    let took = started.elapsed();
    let stats = control.stats();
    println!(
        "impossible migrations answered in {took:?}: {hostile:?}; emulator: {} requests",
        stats.totals.requests
    );
    for (chat, outcome) in [-5, -6, -7].into_iter().zip(&hostile) {
        match outcome {
            Err(e @ SendError::Unreachable { code: 400, .. }) => {
                assert!(
                    e.to_string().contains("impossible migration"),
                    "chat {chat}: {e}"
                );
            }
            other => panic!("chat {chat}: {other:?}"),
        }
    }
    assert!(others.iter().all(Result::is_ok), "{others:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // One request each for -5 and -6, two round the cycle, 20 others.
    assert!(stats.totals.requests <= 24 + 2, "{}", stats.totals.requests);
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}
