//! The demo's stage: the Bot API emulator with Telegram's limits on a free
//! loopback port, the gateway over three emulator bots on the embedded
//! registry with one caller (so auth is on, as in real use), and a gRPC
//! client that presents that caller's key.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shardgate_callers::{ApiKey, CallerSpec, Snapshot};
use shardgate_gateway::GatewayConfig;
use shardgate_gateway::local::LocalGateway;
use shardgate_mock::{Control, MockConfig, MockServer, test_token};
use shardgate_proto::v1::StatusRequest;
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_registry::{BotSpec, CallerStore, EmbeddedCallers};
use shardgate_telegram::{BotToken, Client, ClientConfig};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The demo fleet: each bot's name and its emulator bot id.
pub const BOTS: [(&str, u64); 3] = [
    ("alpha", 7_100_001),
    ("bravo", 7_100_002),
    ("charlie", 7_100_003),
];

/// The demo's caller: the one service allowed to send.
pub const CALLER: &str = "demo";

/// A gRPC client of the gateway that presents the demo caller's key.
pub type Grpc = GatewayClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Everything the demo runs, started.
pub struct Stage {
    pub mock: MockServer,
    /// The emulator's control handle: revoke a bot, read what it counted.
    pub control: Control,
    pub local: LocalGateway,
    pub grpc: Grpc,
    /// A call without the caller's key was refused `UNAUTHENTICATED`.
    pub keyless_refused: bool,
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
        let key = ApiKey::from_random(rand::random());
        let mut caller = CallerSpec::new(CALLER);
        caller.key_sha256.push(key.digest());
        let mut snapshot = Snapshot::default();
        snapshot.callers.insert(CALLER.to_owned(), caller);
        let callers: Arc<dyn CallerStore> = Arc::new(EmbeddedCallers::from_snapshot(snapshot));
        let local = LocalGateway::start_with_callers(
            bots,
            config,
            callers,
            client,
            shardgate_metrics::Metrics::new(),
        )
        .await
        .context("starting the gateway")?;
        let channel = connect(&format!("http://{}", local.addr)).await?;
        let keyless = GatewayClient::new(channel.clone())
            .status(StatusRequest {})
            .await;
        let keyless_refused = matches!(&keyless, Err(s) if s.code() == Code::Unauthenticated);
        let bearer = format!("Bearer {}", key.expose())
            .parse()
            .context("the demo key as a header")?;
        let grpc = GatewayClient::with_interceptor(channel, Bearer(bearer));
        Ok(Stage {
            mock,
            control,
            local,
            grpc,
            keyless_refused,
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

async fn connect(url: &str) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await
        .context("connecting to the gateway")
}
