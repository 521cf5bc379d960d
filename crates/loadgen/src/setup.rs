//! Before the load: the gateway to drive (embedded, or `--target`), the
//! emulator's counters, the fleet's bots, the workload over them, the ceilings
//! the limits allow and the steady-state window the figures are cut from.

use std::sync::Arc;

use anyhow::Context;
use shardgate_proto::v1::StatusRequest;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tokio::time::Duration;
use tonic::transport::{Channel, Endpoint};

use crate::args::Args;
use crate::embedded::{self, Embedded, EmbeddedOptions};
use crate::report::window;
use crate::sampler::StatsSource;
use crate::workload::{Ceiling, Rates, Shape, Workload};

/// Everything the phases share.
pub struct Setup {
    pub embedded: Option<Embedded>,
    pub grpc_url: String,
    pub http: reqwest::Client,
    pub emulator_url: Option<String>,
    pub stats: Arc<StatsSource>,
    /// One per `--connections` (none with `--bare-only`).
    pub channels: Vec<Channel>,
    pub status_client: Option<GatewayClient<Channel>>,
    pub bot_names: Vec<String>,
    /// Numeric bot ids, when known (embedded mode).
    pub bot_ids: Vec<Option<u64>>,
    pub sched_limits: shardgate_sched::Limits,
    pub limited: bool,
    pub workload: Arc<Workload>,
    pub ceiling: Option<Ceiling>,
    pub ceiling_margin: Option<Ceiling>,
    pub ceiling_tg: Option<Ceiling>,
    pub warmup: f64,
    /// The steady-state window: from, to (s) and how it was chosen.
    pub window: (f64, f64, String),
    /// Saturation: outstanding per regular key (0: rate mode).
    pub per_key: u32,
    pub hot_rate_total: f64,
}

pub async fn connect(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let ch = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        out.push(ch);
    }
    Ok(out)
}

impl Setup {
    pub async fn start(args: &Args) -> anyhow::Result<Setup> {
        let embedded = if args.embedded {
            Some(
                Embedded::start(&EmbeddedOptions {
                    bots: args.bots,
                    no_limits: args.no_limits,
                    emulator_latency_ms: args.emulator_latency_ms,
                    max_in_flight: args.max_in_flight,
                    pool_idle_per_host: args.pool_idle_per_host,
                    jitter_margin: args
                        .jitter_margin_ms
                        .map(|m| Duration::from_secs_f64(m / 1000.0)),
                    emulator_max_deliveries: args.soak.then_some(crate::soak::EMULATOR_DELIVERIES),
                })
                .await?,
            )
        } else {
            None
        };
        let grpc_url = match (&embedded, &args.target) {
            (Some(e), _) => e.grpc_url.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => anyhow::bail!("no gateway: --embedded or --target URL"),
        };
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .build()?;
        let emulator_url = match &embedded {
            Some(e) => Some(e.mock.base_url()),
            None => args.emulator.clone(),
        };
        let stats = Arc::new(match (&embedded, &args.emulator) {
            (Some(e), _) => StatsSource::InProcess(e.mock.control()),
            (None, Some(u)) => StatsSource::Http(http.clone(), u.trim_end_matches('/').to_owned()),
            (None, None) => StatsSource::None,
        });

        // The fleet: from the embedded setup, or the gateway's Status.
        let channels = if args.bare_only {
            vec![]
        } else {
            connect(&grpc_url, args.connections).await?
        };
        let status_client = if args.bare_only {
            None
        } else {
            Some(GatewayClient::new(connect(&grpc_url, 1).await?.remove(0)))
        };
        let (bot_names, bot_ids): (Vec<String>, Vec<Option<u64>>) = match &embedded {
            Some(e) => e.bots.iter().map(|(n, i)| (n.clone(), Some(*i))).unzip(),
            None => match status_client.clone() {
                Some(mut s) => s
                    .status(StatusRequest {})
                    .await
                    .context("Status")?
                    .into_inner()
                    .bots
                    .into_iter()
                    .filter(|b| b.state == "healthy")
                    .map(|b| (b.name, None))
                    .unzip(),
                None => (
                    (0..args.bots).map(embedded::bot_name).collect(),
                    vec![None; args.bots],
                ),
            },
        };
        let sched_limits = embedded
            .as_ref()
            .map_or_else(shardgate_sched::Limits::default, |e| e.limits.clone());
        let limited = !args.no_limits;
        let shape = Shape {
            chats: args.chats,
            group_share: args.group_share,
            users_per_chat: args.users_per_chat,
            hot_chats: args.hot_chats,
            hot_rate: args.hot_rate,
        };
        let w = Arc::new(Workload::new(&shape, &bot_names));
        let regular_demand = args
            .rate
            .map_or(f64::INFINITY, |r| r / w.regular.max(1) as f64);
        let ceiling =
            limited.then(|| w.ceiling(Rates::of_sched(&sched_limits), regular_demand, &shape));
        let ceiling_margin = limited.then(|| {
            w.ceiling(
                Rates::of_sched_with_margin(&sched_limits),
                regular_demand,
                &shape,
            )
        });
        let ceiling_tg = limited.then(|| w.ceiling(Rates::telegram(), regular_demand, &shape));
        let has_groups = w.keys.iter().any(|k| k.chat_id < 0);
        let period = (limited && has_groups)
            .then(|| (sched_limits.group_window + sched_limits.jitter_margin).as_secs_f64());
        let warmup = args.warmup().min(args.duration);
        let window = window(args.duration, warmup, period);
        let per_key = if args.rate.is_some() {
            0
        } else {
            args.per_key.max(1)
        };
        Ok(Setup {
            embedded,
            grpc_url,
            http,
            emulator_url,
            stats,
            channels,
            status_client,
            bot_names,
            bot_ids,
            sched_limits,
            limited,
            workload: w,
            ceiling,
            ceiling_margin,
            ceiling_tg,
            warmup,
            window,
            per_key,
            hot_rate_total: args.hot_rate * args.hot_chats as f64,
        })
    }
}
