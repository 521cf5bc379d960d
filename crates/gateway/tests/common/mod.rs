//! What the in-process tests share: a message, a fleet of emulator bots and
//! a ready gateway in front of the emulator on a loopback port.

#![allow(dead_code)]

use std::time::Duration;

use shardgate_gateway::local::LocalGateway;
use shardgate_gateway::{GatewayConfig, Message};
use shardgate_metrics::Metrics;
use shardgate_mock::{MockConfig, MockServer, test_token};
use shardgate_registry::BotSpec;
use shardgate_telegram::{BotToken, Client, ClientConfig};

/// The bot id of `bot-{i}` at the emulator.
pub fn bot_id(i: u64) -> u64 {
    7_100 + i
}

pub fn message(chat_id: i64, text: String, timeout: Option<Duration>) -> Message {
    Message {
        chat_id,
        user_id: chat_id,
        body: shardgate_gateway::Body::text(text),
        idempotency_key: None,
        client_ref: String::new(),
        bot: None,
        allow_failover: true,
        timeout,
        traceparent: None,
        priority: shardgate_sched::Priority::Normal,
    }
}

pub fn bots(n: u64) -> Vec<BotSpec> {
    (0..n)
        .map(|i| BotSpec {
            name: format!("bot-{i}"),
            token: BotToken::parse(&test_token(bot_id(i))).expect("token"),
            enabled: true,
        })
        .collect()
}

/// The emulator with `config` and a ready gateway over `n` bots.
pub async fn start(
    config: MockConfig,
    n: u64,
    gateway: GatewayConfig,
) -> (MockServer, LocalGateway) {
    start_with_metrics(config, n, gateway, Metrics::new()).await
}

/// [`start`] with the gateway's metrics registry given (to read it).
pub async fn start_with_metrics(
    config: MockConfig,
    n: u64,
    gateway: GatewayConfig,
    metrics: Metrics,
) -> (MockServer, LocalGateway) {
    let mock = MockServer::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("emulator starts");
    let client = Client::new(ClientConfig {
        api_base: mock.base_url(),
        ..ClientConfig::default()
    })
    .expect("client");
    let local = LocalGateway::start(bots(n), gateway, client, metrics)
        .await
        .expect("gateway starts");
    let mut ready = local.gateway.ready();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");
    (mock, local)
}
