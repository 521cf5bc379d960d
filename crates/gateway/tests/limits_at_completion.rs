//! The dispatcher fixes a request's slot in the bot window at the time its
//! answer came back, not at its dispatch.
//!
//! Real time on loopback (a paused clock would fire the HTTP client's
//! timeouts while a request waits on the socket): the emulator answers every
//! request 300 ms after it counted it, so the request that needs the first
//! one's slot must arrive a window *after that answer*, not a window after
//! the first one left.

use std::time::Duration;

use shardgate_gateway::local::LocalGateway;
use shardgate_gateway::{Body, GatewayConfig, Message};
use shardgate_metrics::Metrics;
use shardgate_mock::{Faults, MockConfig, MockServer, test_token};
use shardgate_registry::BotSpec;
use shardgate_sched::{Limits, Priority};
use shardgate_telegram::{BotToken, Client, ClientConfig};

const LATENCY_MS: u64 = 300;

fn message(chat_id: i64) -> Message {
    Message {
        chat_id,
        user_id: chat_id,
        body: Body::text(format!("to {chat_id}")),
        idempotency_key: None,
        client_ref: String::new(),
        bot: None,
        allow_failover: true,
        timeout: None,
        traceparent: None,
        priority: Priority::Normal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_window_slot_frees_a_window_after_the_answer() {
    let mock = MockServer::start(
        MockConfig {
            faults: Faults {
                latency_ms: (LATENCY_MS, LATENCY_MS),
                ..Faults::default()
            },
            ..MockConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("emulator starts");
    let client = Client::new(ClientConfig {
        api_base: mock.base_url(),
        ..ClientConfig::default()
    })
    .expect("client");
    let config = GatewayConfig {
        limits: Limits {
            bot_max: 3,
            bot_window: Duration::from_secs(1),
            bot_burst: 100,
            jitter_margin: Duration::ZERO,
            ..Limits::default()
        },
        ..GatewayConfig::default()
    };
    let bots = vec![BotSpec {
        name: "bot-0".into(),
        token: BotToken::parse(&test_token(4_242)).expect("token"),
        enabled: true,
    }];
    let local = LocalGateway::start(bots, config, client, Metrics::new())
        .await
        .expect("gateway starts");
    let gateway = local.gateway.clone();
    let mut ready = gateway.ready();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");

    let sends = (1..=4).map(|chat| gateway.send(message(chat), None));
    for outcome in futures::future::join_all(sends).await {
        outcome.expect("delivered");
    }

    let mut arrivals: Vec<u64> = mock
        .control()
        .deliveries(0)
        .iter()
        .map(|d| d.at_ms)
        .collect();
    arrivals.sort_unstable();
    assert_eq!(arrivals.len(), 4);
    assert_eq!(mock.control().stats().totals.rate_limited, 0, "no 429");
    // Three went at once (a fresh scheduler that takes over first waits one
    // window). The fourth needs the first one's slot: counted at dispatch it
    // would arrive ~1000 ms after it; held until the answer (300 ms after
    // the arrival) it arrives >= 1300 ms after it (1 ms for the emulator's
    // millisecond timestamps).
    let gap = arrivals[3] - arrivals[0];
    println!(
        "arrivals (ms from the first): {:?}",
        arrivals.iter().map(|a| a - arrivals[0]).collect::<Vec<_>>()
    );
    assert!(
        gap + 1 >= 1_000 + LATENCY_MS,
        "the fourth arrived {gap} ms after the first: its slot was freed before the first's answer"
    );
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}
