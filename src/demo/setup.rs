//! The demo's stage: the Bot API emulator with Telegram's limits on a free
//! loopback port, the gateway over three emulator bots on the embedded
//! registry, and a gRPC client of it.

use std::time::Duration;

use anyhow::Context;
use shardgate_gateway::GatewayConfig;
use shardgate_gateway::local::LocalGateway;
use shardgate_mock::{Control, MockConfig, MockServer, test_token};
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_registry::BotSpec;
use shardgate_telegram::{BotToken, Client, ClientConfig};
use tonic::transport::Channel;

/// The demo fleet: each bot's name and its emulator bot id.
pub const BOTS: [(&str, u64); 3] = [
    ("alpha", 7_100_001),
    ("bravo", 7_100_002),
    ("charlie", 7_100_003),
];

/// Everything the demo runs, started.
pub struct Stage {
    pub mock: MockServer,
    /// The emulator's control handle: revoke a bot, read what it counted.
    pub control: Control,
    pub local: LocalGateway,
    pub grpc: GatewayClient<Channel>,
}

impl Stage {
    pub async fn start() -> anyhow::Result<Stage> {
        let mock = MockServer::start(MockConfig::default(), "127.0.0.1:0".parse()?)
            .await
            .context("starting the Bot API emulator")?;
        let control = mock.control();
        let bots = BOTS
            .iter()
            .map(|(name, id)| {
                Ok(BotSpec {
                    name: (*name).to_owned(),
                    token: BotToken::parse(&test_token(*id))?,
                    enabled: true,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let client = Client::new(ClientConfig {
            api_base: mock.base_url(),
            ..ClientConfig::default()
        })?;
        let config = GatewayConfig {
            instance_id: "demo-1".into(),
            ..GatewayConfig::default()
        };
        let local = LocalGateway::start(bots, config, client, shardgate_metrics::Metrics::new())
            .await
            .context("starting the gateway")?;
        let grpc = connect(&format!("http://{}", local.addr)).await?;
        Ok(Stage {
            mock,
            control,
            local,
            grpc,
        })
    }

    /// Stops the gateway (drain up to 2 s, stop within 30 s), then the emulator.
    pub async fn stop(self) {
        self.local
            .stop(Duration::from_secs(2), Duration::from_secs(30))
            .await;
        self.mock.shutdown().await;
    }
}

async fn connect(url: &str) -> anyhow::Result<GatewayClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await
        .context("connecting to the gateway")?;
    Ok(GatewayClient::new(channel))
}
