//! The report's figures: a phase's counts, window and latency, the per-bot
//! and per-class rows, the steady-state window, and the tightest spacing the
//! emulator saw. Serialized as the `--json` output; `table` prints it.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::Args;
use crate::record::Recorder;
use crate::sampler::Sample;
use crate::workload::Class;

#[derive(Serialize, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
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
pub struct BotRow {
    pub name: String,
    pub private_chats: u64,
    pub groups: u64,
    pub delivered: u64,
    pub per_s: f64,
    pub ceiling_per_s: Option<f64>,
    pub ratio: Option<f64>,
    pub rate_limited: Option<u64>,
    pub queue_depth_max: u64,
    pub queue_depth_mean: f64,
}

#[derive(Serialize, Debug)]
pub struct ClassRow {
    pub class: Class,
    pub delivered: u64,
    pub per_s: f64,
    pub ceiling_per_s: Option<f64>,
    pub ratio: Option<f64>,
    pub latency: Latency,
}

#[derive(Serialize, Debug)]
pub struct Phase {
    /// "gateway-stream", "gateway-unary" or "bare-http".
    pub name: String,
    pub concurrency: Option<usize>,
    pub sent: u64,
    pub delivered: u64,
    pub errors: BTreeMap<String, u64>,
    pub window_from_s: f64,
    pub window_to_s: f64,
    pub window_note: String,
    pub delivered_per_s: f64,
    pub latency: Latency,
    pub per_second: Vec<u64>,
    /// CPU time of this whole process (load generator, and in embedded mode
    /// the gateway and the emulator too) from the start of the load to its
    /// end, per message answered in that time.
    pub cpu_user_us_per_msg: Option<f64>,
    pub cpu_sys_us_per_msg: Option<f64>,
    /// Average cores busy over the load.
    pub cpu_cores_busy: Option<f64>,
}

pub fn set_cpu(
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
pub struct Report {
    pub label: Option<String>,
    pub args: Args,
    pub unix_time: u64,
    pub mode: String,
    pub limits: String,
    pub bots: Vec<BotRow>,
    pub classes: Vec<ClassRow>,
    pub gateway: Option<Phase>,
    pub ceiling_per_s: Option<f64>,
    pub ratio: Option<f64>,
    /// The most the scheduler can deliver with its jitter margin added to the
    /// windows (30 per 1.02 s per bot, 20 per 60.02 s per group).
    pub ceiling_with_margin_per_s: Option<f64>,
    pub ratio_vs_margin: Option<f64>,
    /// The ceiling under Telegram's own limits (what the emulator enforces).
    pub ceiling_telegram_per_s: Option<f64>,
    pub ratio_vs_telegram: Option<f64>,
    pub rate_limited_429: Option<u64>,
    pub rate_limited_by_scope: Option<BTreeMap<String, u64>>,
    pub emulator_duplicates: Option<u64>,
    pub emulator_max_delivered_per_s: Option<u64>,
    /// Shortest span (ms, at the emulator) of `bot_max + 1` consecutive
    /// deliveries of one bot (Telegram: >= 1000), and of `group_max + 1` of
    /// one (bot, group) (>= 60000).
    pub tightest_bot_span_ms: Option<u64>,
    pub tightest_group_span_ms: Option<u64>,
    pub queue_depth: Vec<Sample>,
    pub rss_baseline_kb: Option<u64>,
    pub rss_peak_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    pub rss_after_quiet_kb: Option<u64>,
    pub tracked_chats_peak: Option<u64>,
    pub tracked_chats_after_quiet: Option<u64>,
    pub bare: Option<Phase>,
    pub gateway_vs_bare: Option<f64>,
    pub p99_added_us: Option<i64>,
    /// `--soak`: RSS, descriptors and tasks over the run, and whether flat.
    pub soak: Option<crate::soak::SoakReport>,
    pub pass: bool,
    pub failures: Vec<String>,
}

/// The steady-state window: `[warmup, warmup + L]` where L is the rest of the
/// run, cut to a whole number of group windows when groups are in the load
/// (a group sends its 20 in a burst, then waits; any whole number of windows
/// holds the same count).
pub fn window(duration: f64, warmup: f64, period: Option<f64>) -> (f64, f64, String) {
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

pub fn phase_of(
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

/// `(bot, group)` shortest spans of `bot_max + 1` / `group_max + 1`
/// consecutive deliveries, in ms of arrival time at the emulator: Telegram
/// wants them at least a window (1000 / 60000 ms) apart; the scheduler
/// dispatches each a window plus its margin after the completion of the one
/// `max` before.
pub fn tightest_spans(
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
