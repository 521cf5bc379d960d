//! `--embedded`: the Bot API emulator and the gateway in this process, the way
//! `shardgate demo` starts them, on loopback ports.

use std::time::Duration;

use anyhow::Context;
use shardgate_gateway::GatewayConfig;
use shardgate_gateway::local::LocalGateway;
use shardgate_mock::{Faults, MockConfig, MockServer, test_token};
use shardgate_registry::BotSpec;
use shardgate_sched::Limits;
use shardgate_telegram::{BotToken, Client, ClientConfig};

/// First numeric bot id; bot `i` is `BOT_ID_BASE + i`, named `bot-NN`.
pub const BOT_ID_BASE: u64 = 7_200_000;

pub fn bot_name(i: usize) -> String {
    format!("bot-{i:02}")
}

/// Limits that never bind, for cost-per-message runs. No window or pace is
/// ever full, so the scheduler never answers `WaitUntil` (whose sleep has the
/// timer's millisecond granularity).
pub fn lifted_limits(max_in_flight: u32) -> Limits {
    Limits {
        chat_burst: 1_000_000,
        chat_rate: 1e9,
        group_max: 100_000,
        group_window: Duration::from_micros(1),
        bot_max: 100_000,
        bot_window: Duration::from_micros(1),
        paid_bot_max: 0,
        bot_burst: 100_000,
        jitter_margin: Duration::ZERO,
        max_in_flight,
        queue_max: 10_000_000,
        chat_queue_max: 100_000,
        bulk_min_share: 0.10,
    }
}

pub struct EmbeddedOptions {
    pub bots: usize,
    pub no_limits: bool,
    pub emulator_latency_ms: u64,
    pub max_in_flight: Option<u32>,
    pub pool_idle_per_host: Option<usize>,
    /// Overrides the limits' jitter margin (official limits only).
    pub jitter_margin: Option<Duration>,
    /// Deliveries the emulator remembers (log, duplicates, stored messages)
    /// and the gateway's memory of which bot sent which message; `None`:
    /// their defaults. The soak keeps both small, so that these bounded
    /// stores are full early and what grows after is a leak.
    pub emulator_max_deliveries: Option<usize>,
}

pub struct Embedded {
    pub mock: MockServer,
    pub grpc_url: String,
    pub bots: Vec<(String, u64)>,
    pub limits: Limits,
    local: Option<LocalGateway>,
}

impl Embedded {
    pub async fn start(o: &EmbeddedOptions) -> anyhow::Result<Embedded> {
        let mut mock_config = if o.no_limits {
            MockConfig::unlimited()
        } else {
            MockConfig::default()
        };
        if let Some(max) = o.emulator_max_deliveries {
            mock_config.max_deliveries = max;
        }
        if o.emulator_latency_ms > 0 {
            mock_config.faults = Faults {
                latency_ms: (o.emulator_latency_ms, o.emulator_latency_ms),
                ..Faults::default()
            };
        }
        let mock = MockServer::start(mock_config, "127.0.0.1:0".parse()?)
            .await
            .context("starting the Bot API emulator")?;
        let bots: Vec<(String, u64)> = (0..o.bots)
            .map(|i| (bot_name(i), BOT_ID_BASE + i as u64))
            .collect();
        let specs = bots
            .iter()
            .map(|(name, id)| {
                Ok(BotSpec {
                    name: name.clone(),
                    token: BotToken::parse(&test_token(*id))?,
                    enabled: true,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut client_config = ClientConfig {
            api_base: mock.base_url(),
            ..ClientConfig::default()
        };
        if let Some(n) = o.pool_idle_per_host {
            client_config.pool_idle_per_host = n;
        }
        let client = Client::new(client_config)?;
        let default_limits = Limits::default();
        let mut limits = if o.no_limits {
            lifted_limits(o.max_in_flight.unwrap_or(default_limits.max_in_flight))
        } else {
            default_limits
        };
        if let Some(m) = o.max_in_flight {
            limits.max_in_flight = m;
        }
        if let (Some(m), false) = (o.jitter_margin, o.no_limits) {
            limits.jitter_margin = m;
        }
        let mut config = GatewayConfig {
            instance_id: "loadgen-1".into(),
            limits: limits.clone(),
            ..GatewayConfig::default()
        };
        if let Some(max) = o.emulator_max_deliveries {
            config.sent_max = max;
        }
        let local = LocalGateway::start(specs, config, client, shardgate_metrics::Metrics::new())
            .await
            .context("starting the gateway")?;
        let gateway = local.gateway.clone();
        let grpc_addr = local.addr;
        // Ready once a bot can take traffic.
        let mut ready = gateway.ready();
        let _ = tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r)).await;
        Ok(Embedded {
            mock,
            grpc_url: format!("http://{grpc_addr}"),
            bots,
            limits,
            local: Some(local),
        })
    }

    pub async fn stop(mut self) {
        // Queued messages of a saturating run are not waited for.
        if let Some(local) = self.local.take() {
            local
                .stop(Duration::from_millis(200), Duration::from_secs(5))
                .await;
        }
        self.mock.shutdown().await;
    }
}
