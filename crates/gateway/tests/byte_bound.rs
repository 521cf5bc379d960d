//! The instance's byte bound: queued messages hold their bytes until they
//! are answered; past `queue_bytes_max` a submit is `RESOURCE_EXHAUSTED`
//! at once and nothing is queued.
//!
//! The emulator answers each request 2 s after it counted it, so nothing
//! submitted in the loop below (microseconds) is answered before the loop
//! ends.

use std::time::Duration;

use shardgate_gateway::budget::MESSAGE_OVERHEAD_BYTES;
use shardgate_gateway::local::LocalGateway;
use shardgate_gateway::{Body, GatewayConfig, Message, SendError};
use shardgate_metrics::Metrics;
use shardgate_mock::{Faults, MockConfig, MockServer, test_token};
use shardgate_registry::BotSpec;
use shardgate_sched::Priority;
use shardgate_telegram::{BotToken, Client, ClientConfig};

const TEXT_CHARS: usize = 4_000;
const BOUND: u64 = 64 * 1024;

fn message(chat_id: i64, i: usize) -> Message {
    let mut text = format!("{i:06} ");
    text.push_str(&"x".repeat(TEXT_CHARS - text.len()));
    Message {
        chat_id,
        user_id: 0,
        body: Body::text(text),
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
async fn queued_bytes_stop_at_the_bound_and_are_given_back_when_answered() {
    let mock = MockServer::start(
        MockConfig {
            faults: Faults {
                latency_ms: (2_000, 2_000),
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
        queue_bytes_max: BOUND,
        ..GatewayConfig::default()
    };
    let bots = vec![BotSpec {
        name: "bot-0".into(),
        token: BotToken::parse(&test_token(4_243)).expect("token"),
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

    let cost = message(-100, 0).cost_bytes();
    assert_eq!(cost, TEXT_CHARS as u64 + MESSAGE_OVERHEAD_BYTES);
    let fits = usize::try_from(BOUND / cost).expect("small");
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..fits + 5 {
        let pending = gateway.submit(message(1_000 + i as i64, i), None);
        if gateway.bytes().used() > BOUND {
            panic!("used {} past the bound", gateway.bytes().used());
        }
        match i < fits {
            true => accepted.push(pending),
            false => {
                let outcome = tokio::time::timeout(Duration::from_millis(500), pending.wait(None))
                    .await
                    .expect("a refusal is answered at once");
                refused.get_or_insert(outcome);
            }
        }
    }
    assert_eq!(gateway.bytes().used(), cost * fits as u64);
    match refused.expect("refusals") {
        Err(e @ SendError::QueueFull(_)) => {
            assert_eq!(e.code(), tonic::Code::ResourceExhausted);
            assert!(e.to_string().contains("queue_bytes_max"), "{e}");
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    // Every accepted message ends (one per chat: no limit waits) and
    // gives its bytes back.
    for p in accepted {
        let outcome = tokio::time::timeout(Duration::from_secs(30), p.wait(None))
            .await
            .expect("answered");
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert_eq!(gateway.bytes().used(), 0);
    local
        .stop(Duration::from_secs(1), Duration::from_secs(5))
        .await;
}
