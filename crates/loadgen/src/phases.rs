//! The load phases: the gateway (`SendStream` or unary `Send`), the bare
//! reqwest loop straight to the emulator, and the quiet period after them.
//! Each phase drives the workload until its deadline, samples once a second,
//! and returns its figures over the steady-state window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use shardgate_mock::test_token;
use shardgate_proto::v1::StatusRequest;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tokio::time::Instant;

use crate::args::{Api, Args};
use crate::drive::{self, DriveConfig, Unary};
use crate::embedded::BOT_ID_BASE;
use crate::procfs::{cpu_at, cpu_times, rss_kb};
use crate::record::{Recorder, Shared};
use crate::report::{Latency, Phase, phase_of, set_cpu};
use crate::sampler::{Sample, start_sampler};
use crate::setup::Setup;
use crate::workload::Class;

/// How one phase is driven: its name in the report and on the progress line,
/// its concurrency, where its message numbers start, and whether the sampler
/// polls the gateway's `Status`.
struct PhaseSpec<'a> {
    name: &'static str,
    progress_label: &'static str,
    concurrency: usize,
    report_concurrency: Option<usize>,
    counter_base: u64,
    status: Option<GatewayClient<tonic::transport::Channel>>,
    setup: &'a Setup,
}

/// A phase's figures with the per-second samples taken during it.
pub struct Measured {
    pub phase: Phase,
    /// Delivered per bot and per class in the steady-state window.
    pub per_bot: Vec<u64>,
    pub per_class: BTreeMap<Class, u64>,
    pub class_latency: BTreeMap<Class, Latency>,
    pub samples: Vec<Sample>,
}

/// Runs `drive` (given the phase's settings and recorder) under the sampler
/// and the CPU clock, and cuts the figures from the steady-state window.
async fn measured<F, Fut>(
    args: &Args,
    p: PhaseSpec<'_>,
    tty: bool,
    drive: F,
) -> anyhow::Result<Measured>
where
    F: FnOnce(Arc<DriveConfig>, Shared) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let s = p.setup;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let cpu0 = cpu_times();
    let cpu1 = cpu_at(deadline);
    let rec = Shared(Arc::new(Mutex::new(Recorder::new(
        start,
        Duration::from_secs_f64(s.warmup),
        Duration::from_secs_f64(args.duration),
        s.bot_names.clone(),
    ))));
    let cfg = Arc::new(DriveConfig {
        start,
        deadline,
        per_key: s.per_key,
        rate: args.rate.unwrap_or(0.0),
        hot_rate_total: s.hot_rate_total,
        concurrency: p.concurrency,
        text_len: args.text_len,
        drain: Duration::from_secs_f64(args.drain),
        counter: AtomicU64::new(p.counter_base),
        outstanding: AtomicI64::new(0),
    });
    let sampler = start_sampler(
        p.status,
        s.stats.clone(),
        rec.clone(),
        start,
        args.duration,
        s.embedded.is_some(),
        tty,
        p.progress_label,
    );
    drive(cfg, rec.clone()).await?;
    let samples = sampler.finish().await;
    let cpu_end = cpu1.await.ok().flatten();
    if tty {
        eprintln!();
    }
    let r = rec.lock();
    let (from, to, note) = &s.window;
    let (mut phase, per_bot, per_class) =
        phase_of(p.name, p.report_concurrency, &r, *from, *to, note.clone());
    // Messages answered over the whole load, for the CPU cost per message.
    let answered: u64 = r
        .window(Duration::ZERO, Duration::from_secs_f64(args.duration))
        .0
        .iter()
        .sum();
    set_cpu(&mut phase, cpu0, cpu_end, answered, args.duration);
    let class_latency = r
        .latency_class
        .iter()
        .map(|(c, h)| (*c, Latency::of(h)))
        .collect();
    Ok(Measured {
        phase,
        per_bot,
        per_class,
        class_latency,
        samples,
    })
}

pub async fn gateway(args: &Args, s: &Setup, tty: bool) -> anyhow::Result<Measured> {
    let spec = PhaseSpec {
        name: match args.api {
            Api::Stream => "gateway-stream",
            Api::Unary => "gateway-unary",
        },
        progress_label: "gateway",
        concurrency: args.concurrency,
        report_concurrency: (args.api == Api::Unary).then_some(args.concurrency),
        counter_base: 0,
        status: s.status_client.clone(),
        setup: s,
    };
    measured(args, spec, tty, |cfg, rec| async move {
        match args.api {
            Api::Stream => {
                drive::run_streams(s.channels.clone(), s.workload.clone(), cfg, rec).await
            }
            Api::Unary => {
                let clients = s.channels.iter().cloned().map(GatewayClient::new).collect();
                drive::run_unary(Unary::Grpc(clients), s.workload.clone(), cfg, rec).await;
                Ok(())
            }
        }
    })
    .await
}

pub async fn bare_http(args: &Args, s: &Setup, tty: bool) -> anyhow::Result<Phase> {
    let Some(base) = s.emulator_url.clone() else {
        bail!("--bare-http needs the emulator: --embedded or --emulator URL");
    };
    let tokens: Vec<String> = (0..s.bot_names.len())
        .map(|i| {
            test_token(
                s.bot_ids
                    .get(i)
                    .copied()
                    .flatten()
                    .unwrap_or(BOT_ID_BASE + i as u64),
            )
        })
        .collect();
    let conc = args.bare_concurrency.unwrap_or(args.concurrency);
    let spec = PhaseSpec {
        name: "bare-http",
        progress_label: "bare-http",
        concurrency: conc,
        report_concurrency: Some(conc),
        counter_base: 1 << 40,
        status: None,
        setup: s,
    };
    let target = Unary::Bare {
        http: s.http.clone(),
        base: Arc::from(base.trim_end_matches('/')),
        tokens: Arc::new(tokens),
    };
    let m = measured(args, spec, tty, |cfg, rec| async move {
        drive::run_unary(target, s.workload.clone(), cfg, rec).await;
        Ok(())
    })
    .await?;
    Ok(m.phase)
}

/// After the load: does idle chat state go away? (RSS, tracked chats.)
pub async fn quiet(args: &Args, s: &Setup) -> (Option<u64>, Option<u64>) {
    if args.quiet_secs <= 0.0 {
        return (None, None);
    }
    eprintln!("quiet for {:.0} s ...", args.quiet_secs);
    tokio::time::sleep(Duration::from_secs_f64(args.quiet_secs)).await;
    let rss = rss_kb();
    let mut tracked = None;
    if let Some(mut c) = s.status_client.clone()
        && let Ok(r) = c.status(StatusRequest {}).await
    {
        tracked = Some(r.into_inner().bots.iter().map(|b| b.active_chats).sum());
    }
    (rss, tracked)
}
