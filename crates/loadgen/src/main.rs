//! `loadgen`: drives Shardgate's gRPC API (`SendStream` over N connections or
//! unary `Send`), or the Bot API emulator directly (`--bare-http`), and
//! reports what got through against the ceiling the limits allow.
//!
//! Two ways to run:
//! - `--embedded`: starts the emulator (official or lifted limits) and the
//!   gateway in this process, like `shardgate demo` does;
//! - `--target URL`: an already running gateway; `--emulator URL` lets it read
//!   the emulator's counters (`GET /_mock/stats`) for the 429s.
//!
//! The final table: delivered/s overall, per bot and per class of chat; the
//! ceiling per bot (`min(bot rate, sum of the per-chat/group rates of the
//! chats routed to it)`, i.e. `Limits::ceiling_per_s` per bot) and the ratio,
//! both over the steady-state window (warm-up excluded; with groups the window
//! is a whole number of group windows, since groups send in bursts);
//! 429s from the emulator; latency p50/p95/p99/max; queue depth over time
//! (`Status`, every second); RSS of this process (embedded mode).

mod drive;
mod embedded;
mod record;
mod workload;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use shardgate_mock::{Control, Stats, test_token};
use shardgate_proto::v1::StatusRequest;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::drive::{DriveConfig, Unary};
use crate::embedded::{BOT_ID_BASE, Embedded, EmbeddedOptions};
use crate::record::{Recorder, Shared};
use crate::workload::{Class, Rates, Shape, Workload};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Api {
    /// `SendStream`, one stream per connection.
    Stream,
    /// Unary `Send`, `--concurrency` at a time.
    Unary,
}

/// Load generator for Shardgate.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "loadgen", version)]
struct Args {
    /// A running gateway's gRPC URL (e.g. http://127.0.0.1:7443).
    #[arg(long, conflicts_with = "embedded")]
    target: Option<String>,
    /// The Bot API emulator's base URL, to read its counters (429s) and for
    /// `--bare-http` in `--target` mode.
    #[arg(long)]
    emulator: Option<String>,
    /// Start the emulator and the gateway in this process.
    #[arg(long)]
    embedded: bool,
    /// Embedded: bots in the fleet.
    #[arg(long, default_value_t = 3)]
    bots: usize,
    /// Lift every limit (cost-per-message runs). Embedded: in the emulator
    /// and the gateway. With `--target`: says the target runs lifted, so no
    /// ceiling is computed.
    #[arg(long)]
    no_limits: bool,
    /// Embedded: the emulator answers after this many milliseconds.
    #[arg(long, default_value_t = 0)]
    emulator_latency_ms: u64,
    /// Embedded: the gateway's requests in flight per bot (default: its Limits).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Embedded: idle HTTP connections the gateway's client keeps per host.
    #[arg(long)]
    pool_idle_per_host: Option<usize>,
    /// Embedded: the scheduler's jitter margin in ms (default: its Limits, 0),
    /// added to the bot and group windows.
    #[arg(long)]
    jitter_margin_ms: Option<f64>,
    /// Report the RSS of this process id (e.g. a `shardgate serve` under
    /// test) instead of the load generator's own.
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Embedded: install a tracing subscriber at this level (writing to a
    /// sink), as `shardgate serve` does at `info`; default none.
    #[arg(long)]
    tracing: Option<String>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    worker_threads: Option<usize>,

    /// gRPC API to drive.
    #[arg(long, value_enum, default_value_t = Api::Stream)]
    api: Api,
    /// gRPC connections (one SendStream each; unary calls spread over them).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Unary and bare HTTP: requests in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Regular chats (private and groups).
    #[arg(long, default_value_t = 1000)]
    chats: u64,
    /// Share of the regular chats that are groups (chat_id < 0).
    #[arg(long, default_value_t = 0.0)]
    group_share: f64,
    /// Senders per chat; each (chat, user) is a shard key of its own.
    #[arg(long, default_value_t = 1)]
    users_per_chat: u64,
    /// Hot groups, each driven at `--hot-rate` msg/s (open loop).
    #[arg(long, default_value_t = 0)]
    hot_chats: u64,
    /// Demand of each hot group, msg/s.
    #[arg(long, default_value_t = 50.0)]
    hot_rate: f64,
    /// Demand over the regular chats, msg/s in all (open loop). Without it,
    /// the load saturates: every key keeps `--per-key` requests outstanding.
    #[arg(long)]
    rate: Option<f64>,
    /// Saturation: requests outstanding per regular (chat, user) key.
    #[arg(long, default_value_t = 2)]
    per_key: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds excluded at the start (default: 5, or a quarter of short runs).
    #[arg(long)]
    warmup: Option<f64>,
    /// Seconds to wait for outstanding answers after the load stops.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// After the load, stay this many seconds and sample RSS and tracked chats
    /// (idle chat state should be dropped).
    #[arg(long, default_value_t = 0.0)]
    quiet_secs: f64,
    /// Characters per message text.
    #[arg(long, default_value_t = 64)]
    text_len: usize,

    /// Also run a bare reqwest loop posting sendMessage straight to the
    /// emulator (same concurrency, rate and duration) and compare.
    #[arg(long)]
    bare_http: bool,
    /// Only the bare HTTP loop (no gateway phase).
    #[arg(long)]
    bare_only: bool,
    /// Bare loop: requests in flight (default: --concurrency).
    #[arg(long)]
    bare_concurrency: Option<usize>,

    /// CI smoke: embedded, 2 bots, 300 private chats, 10 s; asserts 0 429s
    /// and delivered/ceiling >= 0.95.
    #[arg(long)]
    smoke: bool,
    /// Exit non-zero when delivered/ceiling is below this.
    #[arg(long)]
    assert_ratio: Option<f64>,
    /// Exit non-zero when the emulator answered any 429.
    #[arg(long)]
    assert_no_429: bool,
    /// Print the report as JSON (and nothing else on stdout).
    #[arg(long)]
    json: bool,
    /// A name for this run, echoed in the report.
    #[arg(long)]
    label: Option<String>,
}

impl Args {
    fn apply_smoke(&mut self) {
        if !self.smoke {
            return;
        }
        self.embedded = true;
        self.target = None;
        self.bots = 2;
        self.chats = 300;
        self.duration = 10.0;
        self.warmup.get_or_insert(3.0);
        self.rate = None;
        self.assert_ratio.get_or_insert(0.95);
        self.assert_no_429 = true;
    }

    fn warmup(&self) -> f64 {
        self.warmup.unwrap_or(if self.duration >= 20.0 {
            5.0
        } else {
            self.duration / 4.0
        })
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let mut args = Args::parse();
    args.apply_smoke();
    // reqwest is built without a default crypto provider (workspace-wide);
    // the bare-HTTP loop and `--emulator` stats need one even for http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !args.embedded && args.target.is_none() {
        bail!("say where to send: --embedded, or --target URL of a running gateway");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.worker_threads {
        rt.worker_threads(n);
    }
    rt.build()?.block_on(run(args))
}

/// Where the emulator's counters come from.
enum StatsSource {
    InProcess(Control),
    Http(reqwest::Client, String),
    None,
}

impl StatsSource {
    async fn get(&self) -> Option<Stats> {
        match self {
            StatsSource::InProcess(c) => Some(c.stats()),
            StatsSource::Http(http, base) => {
                let r = http.get(format!("{base}/_mock/stats")).send().await.ok()?;
                r.json().await.ok()
            }
            StatsSource::None => None,
        }
    }
}

/// The process whose RSS is reported: this one, or `--rss-pid`.
static RSS_PID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

fn rss_kb() -> Option<u64> {
    let path = match RSS_PID.get().copied().flatten() {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[derive(Serialize, Clone, Debug)]
struct Sample {
    t_s: f64,
    queue_depth: Vec<u64>,
    in_flight: Vec<u32>,
    tracked_chats: Vec<u64>,
    rss_kb: Option<u64>,
    rate_limited: Option<u64>,
    delivered: u64,
}

#[derive(Serialize, Debug, Default)]
struct Latency {
    count: u64,
    p50_us: u64,
    p95_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Serialize, Debug)]
struct BotRow {
    name: String,
    private_chats: u64,
    groups: u64,
    delivered: u64,
    per_s: f64,
    ceiling_per_s: Option<f64>,
    ratio: Option<f64>,
    rate_limited: Option<u64>,
    queue_depth_max: u64,
    queue_depth_mean: f64,
}

#[derive(Serialize, Debug)]
struct ClassRow {
    class: Class,
    delivered: u64,
    per_s: f64,
    ceiling_per_s: Option<f64>,
    ratio: Option<f64>,
    latency: Latency,
}

#[derive(Serialize, Debug)]
struct Phase {
    /// "gateway-stream", "gateway-unary" or "bare-http".
    name: String,
    concurrency: Option<usize>,
    sent: u64,
    delivered: u64,
    errors: BTreeMap<String, u64>,
    window_from_s: f64,
    window_to_s: f64,
    window_note: String,
    delivered_per_s: f64,
    latency: Latency,
    per_second: Vec<u64>,
    /// CPU time of this whole process (load generator, and in embedded mode
    /// the gateway and the emulator too) from the start of the load to its
    /// end, per message answered in that time.
    cpu_user_us_per_msg: Option<f64>,
    cpu_sys_us_per_msg: Option<f64>,
    /// Average cores busy over the load.
    cpu_cores_busy: Option<f64>,
}

/// (user, system) CPU seconds of this process so far.
fn cpu_times() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let tick = 100.0;
    Some((
        f.get(11)?.parse::<f64>().ok()? / tick,
        f.get(12)?.parse::<f64>().ok()? / tick,
    ))
}

/// Reads the CPU times at `at`.
fn cpu_at(at: Instant) -> tokio::task::JoinHandle<Option<(f64, f64)>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        cpu_times()
    })
}

fn set_cpu(
    p: &mut Phase,
    c0: Option<(f64, f64)>,
    c1: Option<(f64, f64)>,
    answered: u64,
    secs: f64,
) {
    if let (Some(a), Some(b)) = (c0, c1) {
        let n = answered.max(1) as f64;
        p.cpu_user_us_per_msg = Some((b.0 - a.0) * 1e6 / n);
        p.cpu_sys_us_per_msg = Some((b.1 - a.1) * 1e6 / n);
        p.cpu_cores_busy = Some((b.0 - a.0 + b.1 - a.1) / secs.max(1e-9));
    }
}

#[derive(Serialize, Debug)]
struct Report {
    label: Option<String>,
    args: Args,
    unix_time: u64,
    mode: String,
    limits: String,
    bots: Vec<BotRow>,
    classes: Vec<ClassRow>,
    gateway: Option<Phase>,
    ceiling_per_s: Option<f64>,
    ratio: Option<f64>,
    /// The most the scheduler can deliver with its jitter margin added to the
    /// windows (30 per 1.02 s per bot, 20 per 60.02 s per group).
    ceiling_with_margin_per_s: Option<f64>,
    ratio_vs_margin: Option<f64>,
    /// The ceiling under Telegram's own limits (what the emulator enforces).
    ceiling_telegram_per_s: Option<f64>,
    ratio_vs_telegram: Option<f64>,
    rate_limited_429: Option<u64>,
    rate_limited_by_scope: Option<BTreeMap<String, u64>>,
    emulator_duplicates: Option<u64>,
    emulator_max_delivered_per_s: Option<u64>,
    /// Shortest span (ms, at the emulator) of `bot_max + 1` consecutive
    /// deliveries of one bot (Telegram: >= 1000), and of `group_max + 1` of
    /// one (bot, group) (>= 60000).
    tightest_bot_span_ms: Option<u64>,
    tightest_group_span_ms: Option<u64>,
    queue_depth: Vec<Sample>,
    rss_baseline_kb: Option<u64>,
    rss_peak_kb: Option<u64>,
    rss_end_kb: Option<u64>,
    rss_after_quiet_kb: Option<u64>,
    tracked_chats_peak: Option<u64>,
    tracked_chats_after_quiet: Option<u64>,
    bare: Option<Phase>,
    gateway_vs_bare: Option<f64>,
    p99_added_us: Option<i64>,
    pass: bool,
    failures: Vec<String>,
}

async fn connect(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
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

fn progress(line: &str, tty: bool) {
    let mut e = std::io::stderr().lock();
    if tty {
        let _ = write!(e, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(e, "{line}");
    }
    let _ = e.flush();
}

/// The steady-state window: `[warmup, warmup + L]` where L is the rest of the
/// run, cut to a whole number of group windows when groups are in the load
/// (a group sends its 20 in a burst, then waits; any whole number of windows
/// holds the same count).
fn window(duration: f64, warmup: f64, period: Option<f64>) -> (f64, f64, String) {
    let rest = (duration - warmup).max(0.0);
    match period {
        Some(p) if rest >= p => {
            let k = (rest / p).floor();
            (
                warmup,
                warmup + k * p,
                format!(
                    "{warmup:.1}-{:.2} s: warm-up of {warmup:.1} s excluded, then {k} whole group window(s) of {p:.2} s",
                    warmup + k * p
                ),
            )
        }
        Some(p) => (
            warmup,
            duration,
            format!(
                "{warmup:.1}-{duration:.1} s: warm-up excluded; shorter than one group window ({p:.2} s), so group figures are not steady"
            ),
        ),
        None => (
            warmup,
            duration,
            format!(
                "{warmup:.1}-{duration:.1} s: the first {warmup:.1} s (warm-up: bursts, connection setup) excluded"
            ),
        ),
    }
}

struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[allow(clippy::too_many_arguments)] // one call site; each is a distinct knob
fn start_sampler(
    status: Option<GatewayClient<Channel>>,
    stats: Arc<StatsSource>,
    rec: Shared,
    start: Instant,
    total: f64,
    embedded: bool,
    tty: bool,
    label: &'static str,
) -> Sampler {
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let base_429 = Arc::new(Mutex::new(None::<u64>));
    let task = tokio::spawn({
        let samples = samples.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_delivered = 0u64;
            let mut last_t = 0.0f64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => return,
                }
                let t = start.elapsed().as_secs_f64();
                let (mut q, mut f, mut c) = (vec![], vec![], vec![]);
                if let Some(mut s) = status.clone() {
                    let call = tokio::time::timeout(
                        Duration::from_millis(800),
                        s.status(StatusRequest {}),
                    );
                    if let Ok(Ok(r)) = call.await {
                        for b in r.into_inner().bots {
                            q.push(b.queue_depth);
                            f.push(b.in_flight);
                            c.push(b.active_chats);
                        }
                    }
                }
                let r429 = stats.get().await.map(|s| s.totals.rate_limited);
                let r429 = r429.map(|v| {
                    let mut b = base_429.lock().unwrap_or_else(|p| p.into_inner());
                    v - *b.get_or_insert(v)
                });
                let rss = if embedded || RSS_PID.get().copied().flatten().is_some() {
                    rss_kb()
                } else {
                    None
                };
                let (delivered, sent, errors) = {
                    let r = rec.lock();
                    (r.delivered_total, r.sent, r.errors.values().sum::<u64>())
                };
                let now_rate = (delivered - last_delivered) as f64 / (t - last_t).max(1e-3);
                last_delivered = delivered;
                last_t = t;
                progress(
                    &format!(
                        "[{label} {t:5.1}/{total:.0} s] sent {sent} delivered {delivered} ({now_rate:.0}/s) errors {errors} | 429s {} | queued {} | in flight {} | chats {}{}",
                        r429.map_or("?".into(), |v| v.to_string()),
                        q.iter().sum::<u64>(),
                        f.iter().sum::<u32>(),
                        c.iter().sum::<u64>(),
                        rss.map_or(String::new(), |r| format!(" | rss {} MiB", r / 1024)),
                    ),
                    tty,
                );
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Sample {
                        t_s: (t * 10.0).round() / 10.0,
                        queue_depth: q,
                        in_flight: f,
                        tracked_chats: c,
                        rss_kb: rss,
                        rate_limited: r429,
                        delivered,
                    });
            }
        }
    });
    Sampler {
        samples,
        stop,
        task,
    }
}

impl Sampler {
    async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn phase_of(
    name: &str,
    concurrency: Option<usize>,
    rec: &Recorder,
    from: f64,
    to: f64,
    note: String,
) -> (Phase, Vec<u64>, BTreeMap<Class, u64>) {
    let (per_bot, per_class) =
        rec.window(Duration::from_secs_f64(from), Duration::from_secs_f64(to));
    let delivered: u64 = per_bot.iter().sum();
    let len = (to - from).max(1e-9);
    (
        Phase {
            name: name.into(),
            concurrency,
            sent: rec.sent,
            delivered: rec.delivered_total,
            errors: rec.errors.clone(),
            window_from_s: from,
            window_to_s: to,
            window_note: note,
            delivered_per_s: delivered as f64 / len,
            latency: Latency::of(&rec.latency),
            per_second: rec.per_second(),
            cpu_user_us_per_msg: None,
            cpu_sys_us_per_msg: None,
            cpu_cores_busy: None,
        },
        per_bot,
        per_class,
    )
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tty = std::io::stderr().is_terminal();
    if let (Some(level), true) = (&args.tracing, args.embedded) {
        let filter = tracing_subscriber::EnvFilter::new(level);
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .init();
    }
    let _ = RSS_PID.set(args.rss_pid);
    let rss_baseline = rss_kb();
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
            })
            .await?,
        )
    } else {
        None
    };
    let grpc_url = match (&embedded, &args.target) {
        (Some(e), _) => e.grpc_url.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => unreachable!("checked in main"),
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
    let (from, to, note) = window(args.duration, warmup, period);
    let per_key = if args.rate.is_some() {
        0
    } else {
        args.per_key.max(1)
    };
    let hot_rate_total = args.hot_rate * args.hot_chats as f64;

    let stats0 = stats.get().await;
    let mut failures = Vec::new();
    let mut report_gateway = None;
    let mut per_bot_window = vec![0u64; bot_names.len()];
    let mut per_class_window = BTreeMap::new();
    let mut samples = Vec::new();
    let mut class_latency = BTreeMap::new();
    let mut stats_end = None;

    if !args.bare_only {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.duration);
        let cpu0 = cpu_times();
        let cpu1 = cpu_at(deadline);
        let rec = Shared(Arc::new(Mutex::new(Recorder::new(
            start,
            Duration::from_secs_f64(warmup),
            Duration::from_secs_f64(args.duration),
            bot_names.clone(),
        ))));
        let cfg = Arc::new(DriveConfig {
            start,
            deadline,
            per_key,
            rate: args.rate.unwrap_or(0.0),
            hot_rate_total,
            concurrency: args.concurrency,
            text_len: args.text_len,
            drain: Duration::from_secs_f64(args.drain),
            counter: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
        });
        let sampler = start_sampler(
            status_client.clone(),
            stats.clone(),
            rec.clone(),
            start,
            args.duration,
            embedded.is_some(),
            tty,
            "gateway",
        );
        // Counters at the end of the load (before the drain).
        let stats_at_end = {
            let stats = stats.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                stats.get().await
            })
        };
        match args.api {
            Api::Stream => {
                drive::run_streams(channels.clone(), w.clone(), cfg, rec.clone()).await?
            }
            Api::Unary => {
                let clients = channels.iter().cloned().map(GatewayClient::new).collect();
                drive::run_unary(Unary::Grpc(clients), w.clone(), cfg, rec.clone()).await;
            }
        }
        stats_end = stats_at_end.await.ok().flatten();
        samples = sampler.finish().await;
        let cpu_end = cpu1.await.ok().flatten();
        if tty {
            eprintln!();
        }
        let r = rec.lock();
        let name = match args.api {
            Api::Stream => "gateway-stream",
            Api::Unary => "gateway-unary",
        };
        let conc = (args.api == Api::Unary).then_some(args.concurrency);
        let (mut phase, pb, pc) = phase_of(name, conc, &r, from, to, note.clone());
        let answered: u64 = r
            .window(Duration::ZERO, Duration::from_secs_f64(args.duration))
            .0
            .iter()
            .sum();
        set_cpu(&mut phase, cpu0, cpu_end, answered, args.duration);
        per_bot_window = pb;
        per_class_window = pc;
        for (c, h) in &r.latency_class {
            class_latency.insert(*c, Latency::of(h));
        }
        report_gateway = Some(phase);
    }
    let rss_end = rss_kb();

    // Bare HTTP phase.
    let mut bare = None;
    if args.bare_http || args.bare_only {
        let Some(base) = emulator_url.clone() else {
            bail!("--bare-http needs the emulator: --embedded or --emulator URL");
        };
        let tokens: Vec<String> = (0..bot_names.len())
            .map(|i| {
                test_token(
                    bot_ids
                        .get(i)
                        .copied()
                        .flatten()
                        .unwrap_or(BOT_ID_BASE + i as u64),
                )
            })
            .collect();
        let conc = args.bare_concurrency.unwrap_or(args.concurrency);
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.duration);
        let cpu0 = cpu_times();
        let cpu1 = cpu_at(deadline);
        let rec = Shared(Arc::new(Mutex::new(Recorder::new(
            start,
            Duration::from_secs_f64(warmup),
            Duration::from_secs_f64(args.duration),
            bot_names.clone(),
        ))));
        let cfg = Arc::new(DriveConfig {
            start,
            deadline,
            per_key,
            rate: args.rate.unwrap_or(0.0),
            hot_rate_total,
            concurrency: conc,
            text_len: args.text_len,
            drain: Duration::from_secs_f64(args.drain),
            counter: AtomicU64::new(1 << 40),
            outstanding: AtomicI64::new(0),
        });
        let sampler = start_sampler(
            None,
            stats.clone(),
            rec.clone(),
            start,
            args.duration,
            embedded.is_some(),
            tty,
            "bare-http",
        );
        let target = Unary::Bare {
            http: http.clone(),
            base: Arc::from(base.trim_end_matches('/')),
            tokens: Arc::new(tokens),
        };
        drive::run_unary(target, w.clone(), cfg, rec.clone()).await;
        let _ = sampler.finish().await;
        let cpu_end = cpu1.await.ok().flatten();
        if tty {
            eprintln!();
        }
        let r = rec.lock();
        let (mut phase, _, _) = phase_of("bare-http", Some(conc), &r, from, to, note.clone());
        let answered: u64 = r
            .window(Duration::ZERO, Duration::from_secs_f64(args.duration))
            .0
            .iter()
            .sum();
        set_cpu(&mut phase, cpu0, cpu_end, answered, args.duration);
        bare = Some(phase);
    }

    // Quiet period: does idle chat state go away?
    let mut rss_quiet = None;
    let mut tracked_quiet = None;
    if args.quiet_secs > 0.0 {
        eprintln!("quiet for {:.0} s ...", args.quiet_secs);
        tokio::time::sleep(Duration::from_secs_f64(args.quiet_secs)).await;
        rss_quiet = rss_kb();
        if let Some(mut s) = status_client.clone()
            && let Ok(r) = s.status(StatusRequest {}).await
        {
            tracked_quiet = Some(r.into_inner().bots.iter().map(|b| b.active_chats).sum());
        }
    }
    let stats_final = stats.get().await;
    // How close the emulator saw a bot's (and a group's) sends: the shortest
    // span of `max` consecutive deliveries, by arrival (ms). The scheduler
    // spaces each one `window + margin` after the *completion* of the one
    // `max` before, so even arrival at the emulator keeps that spacing.
    let tightest = match (&embedded, limited) {
        (Some(e), true) => Some(tightest_spans(
            &e.mock.control().deliveries(0),
            sched_limits.bot_max as usize,
            sched_limits.group_max as usize,
        )),
        _ => None,
    };
    if let Some(e) = embedded {
        e.stop().await;
    }

    // Figures.
    let len = (to - from).max(1e-9);
    let r429 = match (&stats0, &stats_final) {
        (Some(a), Some(b)) => Some(b.totals.rate_limited - a.totals.rate_limited),
        _ => None,
    };
    let scope = match (&stats0, &stats_final) {
        (Some(a), Some(b)) => Some(BTreeMap::from([
            (
                "chat".to_owned(),
                b.totals.rate_limited_chat - a.totals.rate_limited_chat,
            ),
            (
                "group".to_owned(),
                b.totals.rate_limited_group - a.totals.rate_limited_group,
            ),
            (
                "bot".to_owned(),
                b.totals.rate_limited_bot - a.totals.rate_limited_bot,
            ),
            (
                "forced".to_owned(),
                b.totals.rate_limited_forced - a.totals.rate_limited_forced,
            ),
        ])),
        _ => None,
    };
    let _ = stats_end;
    let chats_per_bot = w.chats_per_bot();
    let mut bots = Vec::new();
    for (i, name) in bot_names.iter().enumerate() {
        let delivered = per_bot_window.get(i).copied().unwrap_or(0);
        let per_s = delivered as f64 / len;
        let c = ceiling.as_ref().map(|c| c.per_bot[i]);
        let q: Vec<u64> = samples
            .iter()
            .filter_map(|s| s.queue_depth.get(i).copied())
            .collect();
        bots.push(BotRow {
            name: name.clone(),
            private_chats: chats_per_bot[i].0,
            groups: chats_per_bot[i].1,
            delivered,
            per_s,
            ceiling_per_s: c,
            ratio: c.map(|c| per_s / c),
            rate_limited: match (&stats0, &stats_final, bot_ids[i]) {
                (Some(a), Some(b), Some(id)) => {
                    Some(b.bot(id).rate_limited - a.bot(id).rate_limited)
                }
                _ => None,
            },
            queue_depth_max: q.iter().copied().max().unwrap_or(0),
            queue_depth_mean: if q.is_empty() {
                0.0
            } else {
                q.iter().sum::<u64>() as f64 / q.len() as f64
            },
        });
    }
    let classes: Vec<ClassRow> = per_class_window
        .iter()
        .map(|(c, n)| {
            let per_s = *n as f64 / len;
            let ceil = ceiling.as_ref().and_then(|x| x.per_class.get(c).copied());
            ClassRow {
                class: *c,
                delivered: *n,
                per_s,
                ceiling_per_s: ceil,
                ratio: ceil.map(|x| per_s / x),
                latency: class_latency.remove(c).unwrap_or_default(),
            }
        })
        .collect();
    let gw_rate = report_gateway.as_ref().map(|p| p.delivered_per_s);
    let ratio_of = |c: &Option<workload::Ceiling>| match (gw_rate, c) {
        (Some(r), Some(c)) if c.total > 0.0 => Some(r / c.total),
        _ => None,
    };
    let ratio = ratio_of(&ceiling);
    let gateway_vs_bare = match (&report_gateway, &bare) {
        (Some(g), Some(b)) if b.delivered_per_s > 0.0 => {
            Some(g.delivered_per_s / b.delivered_per_s)
        }
        _ => None,
    };
    let p99_added_us = match (&report_gateway, &bare) {
        (Some(g), Some(b)) => Some(g.latency.p99_us as i64 - b.latency.p99_us as i64),
        _ => None,
    };
    if let Some(min) = args.assert_ratio {
        match ratio {
            Some(r) if r >= min => {}
            Some(r) => failures.push(format!("delivered/ceiling {r:.4} < {min}")),
            None => failures.push("no delivered/ceiling figure (limits lifted?)".into()),
        }
    }
    if args.assert_no_429 {
        match r429 {
            Some(0) => {}
            Some(n) => failures.push(format!("{n} 429s from the emulator")),
            None => failures.push("no 429 count: give --emulator URL".into()),
        }
    }
    if args.smoke
        && let Some(g) = &report_gateway
    {
        let bad: u64 = g.errors.values().sum();
        if bad > 0 {
            failures.push(format!("{bad} messages failed: {:?}", g.errors));
        }
    }
    let peak_rss = samples.iter().filter_map(|s| s.rss_kb).max();
    let report = Report {
        label: args.label.clone(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        mode: if args.embedded {
            "embedded".into()
        } else {
            format!("target {grpc_url}")
        },
        limits: if limited {
            format!(
                "gateway: chat {}/s burst {}, group {} per {:?}, bot {} per {:?}, margin {:?}, {} in flight per bot; emulator: Telegram's",
                sched_limits.chat_rate,
                sched_limits.chat_burst,
                sched_limits.group_max,
                sched_limits.group_window,
                sched_limits.bot_max,
                sched_limits.bot_window,
                sched_limits.jitter_margin,
                sched_limits.max_in_flight
            )
        } else {
            format!(
                "lifted (gateway and emulator); {} in flight per bot",
                sched_limits.max_in_flight
            )
        },
        bots,
        classes,
        ceiling_per_s: ceiling.as_ref().map(|c| c.total),
        ratio,
        ceiling_with_margin_per_s: ceiling_margin.as_ref().map(|c| c.total),
        ratio_vs_margin: ratio_of(&ceiling_margin),
        ceiling_telegram_per_s: ceiling_tg.as_ref().map(|c| c.total),
        ratio_vs_telegram: ratio_of(&ceiling_tg),
        rate_limited_429: r429,
        rate_limited_by_scope: scope,
        emulator_duplicates: match (&stats0, &stats_final) {
            (Some(a), Some(b)) => Some(b.totals.duplicates - a.totals.duplicates),
            _ => None,
        },
        emulator_max_delivered_per_s: stats_final.as_ref().map(|s| s.totals.max_delivered_per_s),
        tightest_bot_span_ms: tightest.and_then(|t| t.0),
        tightest_group_span_ms: tightest.and_then(|t| t.1),
        gateway: report_gateway,
        queue_depth: samples,
        rss_baseline_kb: rss_baseline,
        rss_peak_kb: peak_rss,
        rss_end_kb: rss_end,
        rss_after_quiet_kb: rss_quiet,
        tracked_chats_peak: None,
        tracked_chats_after_quiet: tracked_quiet,
        bare,
        gateway_vs_bare,
        p99_added_us,
        pass: failures.is_empty(),
        failures,
        args,
    };
    let mut report = report;
    report.tracked_chats_peak = report
        .queue_depth
        .iter()
        .map(|s| s.tracked_chats.iter().sum::<u64>())
        .max();
    if report.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `(bot, group)` shortest spans of `bot_max + 1` / `group_max + 1`
/// consecutive deliveries, in ms of arrival time at the emulator: Telegram
/// wants them at least a window (1000 / 60000 ms) apart; the scheduler
/// dispatches each a window plus its margin after the completion of the one
/// `max` before.
fn tightest_spans(
    log: &[shardgate_mock::Delivery],
    bot_max: usize,
    group_max: usize,
) -> (Option<u64>, Option<u64>) {
    let mut by_bot: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut by_group: BTreeMap<(u64, i64), Vec<u64>> = BTreeMap::new();
    for d in log {
        by_bot.entry(d.bot_id).or_default().push(d.at_ms);
        if d.chat_id < 0 {
            by_group
                .entry((d.bot_id, d.chat_id))
                .or_default()
                .push(d.at_ms);
        }
    }
    let span = |v: &Vec<u64>, n: usize| {
        (n >= 1 && v.len() >= n).then(|| v.windows(n).map(|w| w[n - 1] - w[0]).min().unwrap_or(0))
    };
    (
        by_bot.values().filter_map(|v| span(v, bot_max + 1)).min(),
        by_group
            .values()
            .filter_map(|v| span(v, group_max + 1))
            .min(),
    )
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

fn lat(l: &Latency) -> String {
    let f = |us: u64| {
        if us >= 10_000 {
            format!("{:.0} ms", us as f64 / 1000.0)
        } else if us >= 1000 {
            format!("{:.2} ms", us as f64 / 1000.0)
        } else {
            format!("{us} us")
        }
    };
    format!(
        "p50 {}  p95 {}  p99 {}  max {}  (n={})",
        f(l.p50_us),
        f(l.p95_us),
        f(l.p99_us),
        f(l.max_us),
        l.count
    )
}

fn print_table(r: &Report) {
    println!();
    println!(
        "loadgen{} — {} — {}",
        r.label
            .as_ref()
            .map_or(String::new(), |l| format!(" [{l}]")),
        r.mode,
        r.limits
    );
    let a = &r.args;
    println!(
        "load: {} chats ({}% groups, {} users each) + {} hot group(s) at {} msg/s; {}; {} s",
        a.chats,
        (a.group_share * 100.0).round(),
        a.users_per_chat,
        a.hot_chats,
        a.hot_rate,
        match a.rate {
            Some(x) => format!("demand {x} msg/s"),
            None => format!("saturating ({} outstanding per key)", a.per_key),
        },
        a.duration
    );
    if let Some(g) = &r.gateway {
        println!(
            "{}: {} connection(s){}",
            g.name,
            a.connections,
            g.concurrency
                .map_or(String::new(), |c| format!(", concurrency {c}"))
        );
        println!("steady-state window: {}", g.window_note);
        println!();
        println!(
            "  {:<8} {:>7} {:>6} {:>9} {:>9} {:>9} {:>7} {:>6} {:>10}",
            "bot",
            "private",
            "groups",
            "delivered",
            "per s",
            "ceiling",
            "ratio",
            "429s",
            "queue max"
        );
        for b in &r.bots {
            println!(
                "  {:<8} {:>7} {:>6} {:>9} {:>9.2} {:>9} {:>7} {:>6} {:>10}",
                b.name,
                b.private_chats,
                b.groups,
                b.delivered,
                b.per_s,
                opt(b.ceiling_per_s, 2),
                opt(b.ratio, 4),
                b.rate_limited.map_or("-".into(), |v| v.to_string()),
                b.queue_depth_max
            );
        }
        let delivered_w: u64 = r.bots.iter().map(|b| b.delivered).sum();
        println!(
            "  {:<8} {:>7} {:>6} {:>9} {:>9.2} {:>9} {:>7} {:>6}",
            "total",
            r.bots.iter().map(|b| b.private_chats).sum::<u64>(),
            r.bots.iter().map(|b| b.groups).sum::<u64>(),
            delivered_w,
            g.delivered_per_s,
            opt(r.ceiling_per_s, 2),
            opt(r.ratio, 4),
            r.rate_limited_429.map_or("-".into(), |v| v.to_string()),
        );
        if r.classes.len() > 1 {
            println!();
            for c in &r.classes {
                println!(
                    "  {:<8} delivered {:>8} = {:>9.2}/s  ceiling {:>8}  ratio {:>7}  latency {}",
                    c.class.name(),
                    c.delivered,
                    c.per_s,
                    opt(c.ceiling_per_s, 2),
                    opt(c.ratio, 4),
                    lat(&c.latency)
                );
            }
        }
        println!();
        println!(
            "  sent {} / answered delivered {} (whole run)",
            g.sent, g.delivered
        );
        if !g.errors.is_empty() {
            println!("  errors: {:?}", g.errors);
        }
        if r.ceiling_per_s.is_some() {
            println!(
                "  ceiling with the scheduler's jitter margin: {} msg/s (ratio {}); under Telegram's own limits: {} msg/s (ratio {})",
                opt(r.ceiling_with_margin_per_s, 2),
                opt(r.ratio_vs_margin, 4),
                opt(r.ceiling_telegram_per_s, 2),
                opt(r.ratio_vs_telegram, 4)
            );
        }
        println!(
            "  latency (send to answer, steady window): {}",
            lat(&g.latency)
        );
        if let (Some(u), Some(sy), Some(c)) = (
            g.cpu_user_us_per_msg,
            g.cpu_sys_us_per_msg,
            g.cpu_cores_busy,
        ) {
            println!(
                "  CPU of this process per message: {u:.1} us user + {sy:.1} us system ({c:.2} cores busy)"
            );
        }
    }
    println!(
        "  429s from the emulator: {}{}",
        r.rate_limited_429
            .map_or("unknown (no --emulator)".into(), |v| v.to_string()),
        r.rate_limited_by_scope
            .as_ref()
            .map_or(String::new(), |s| format!("  {s:?}"))
    );
    if let Some(b) = r.tightest_bot_span_ms {
        println!(
            "  tightest spacing at the emulator: 31 consecutive deliveries of one bot spanned {b} ms (Telegram: >= 1000){}",
            r.tightest_group_span_ms.map_or(String::new(), |g| format!(
                "; 21 of one group spanned {g} ms (>= 60000)"
            ))
        );
    }
    if let Some(d) = r.emulator_duplicates {
        println!("  duplicates seen by the emulator: {d}");
    }
    let q: Vec<String> = r
        .queue_depth
        .iter()
        .map(|s| s.queue_depth.iter().sum::<u64>().to_string())
        .collect();
    if !q.is_empty() {
        println!("  queue depth (all bots, each second): {}", q.join(" "));
    }
    let kb = |v: Option<u64>| v.map_or("-".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0));
    if r.rss_baseline_kb.is_some() && (r.args.embedded || r.args.rss_pid.is_some()) {
        println!(
            "  RSS: baseline {}, peak {}, end of load {}{}",
            kb(r.rss_baseline_kb),
            kb(r.rss_peak_kb),
            kb(r.rss_end_kb),
            if r.args.quiet_secs > 0.0 {
                format!(
                    ", after {:.0} s quiet {} (tracked chats {} -> {})",
                    r.args.quiet_secs,
                    kb(r.rss_after_quiet_kb),
                    r.tracked_chats_peak.map_or("-".into(), |v| v.to_string()),
                    r.tracked_chats_after_quiet
                        .map_or("-".into(), |v| v.to_string())
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(b) = &r.bare {
        println!();
        println!(
            "bare-http (reqwest straight to the emulator, concurrency {}): {:.0} msg/s in the window; latency {}",
            b.concurrency.unwrap_or(0),
            b.delivered_per_s,
            lat(&b.latency)
        );
        if !b.errors.is_empty() {
            println!("  errors: {:?}", b.errors);
        }
        if let (Some(u), Some(sy), Some(c)) = (
            b.cpu_user_us_per_msg,
            b.cpu_sys_us_per_msg,
            b.cpu_cores_busy,
        ) {
            println!(
                "  CPU of this process per message: {u:.1} us user + {sy:.1} us system ({c:.2} cores busy)"
            );
        }
        if let Some(x) = r.gateway_vs_bare {
            println!("  gateway / bare throughput: {x:.3}");
        }
        if let Some(x) = r.p99_added_us {
            println!("  p99 added by the gateway: {x} us");
        }
    }
    println!();
    if r.pass {
        println!("PASS");
    } else {
        println!("FAIL: {}", r.failures.join("; "));
    }
}
