//! One run, start to end: set up, the gateway phase, the bare-HTTP phase,
//! the quiet period, then the figures (per bot, per class, ratios, 429s,
//! assertions) put together into the report, printed as a table or JSON.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use shardgate_mock::Stats;

use crate::args::Args;
use crate::phases::{self, Measured};
use crate::procfs::{RSS_PID, rss_kb};
use crate::report::{BotRow, ClassRow, Phase, Report, tightest_spans};
use crate::setup::Setup;
use crate::table::print_table;
use crate::workload::Ceiling;

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
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
    let mut setup = Setup::start(&args).await?;
    let stats0 = setup.stats.get().await;
    let (soak_stop, soak_rx) = tokio::sync::watch::channel(false);
    let soak_sampler = args
        .soak
        .then(|| crate::soak::sample(tokio::time::Instant::now(), soak_rx));
    let gateway = if args.bare_only {
        None
    } else {
        Some(phases::gateway(&args, &setup, tty).await?)
    };
    let _ = soak_stop.send(true);
    let soak = match soak_sampler {
        Some(h) => Some(crate::soak::judge(
            h.await.unwrap_or_default(),
            args.warmup().max(args.duration / 10.0),
        )),
        None => None,
    };
    let rss_end = rss_kb();
    let bare = if args.bare_http || args.bare_only {
        Some(phases::bare_http(&args, &setup, tty).await?)
    } else {
        None
    };
    let (rss_quiet, tracked_quiet) = phases::quiet(&args, &setup).await;
    let stats_final = setup.stats.get().await;
    // How close the emulator saw a bot's (and a group's) sends: the shortest
    // span of `max` consecutive deliveries, by arrival (ms). The scheduler
    // spaces each one `window + margin` after the *completion* of the one
    // `max` before, so even arrival at the emulator keeps that spacing.
    let tightest = match (&setup.embedded, setup.limited) {
        (Some(e), true) => Some(tightest_spans(
            &e.mock.control().deliveries(0),
            setup.sched_limits.bot_max as usize,
            setup.sched_limits.group_max as usize,
        )),
        _ => None,
    };
    if let Some(e) = setup.embedded.take() {
        e.stop().await;
    }
    let report = assemble(
        args,
        &setup,
        Observed {
            gateway,
            bare,
            stats0,
            stats_final,
            tightest,
            rss_baseline,
            rss_end,
            rss_quiet,
            tracked_quiet,
            soak,
        },
    );
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

/// What the phases measured, for `assemble`.
struct Observed {
    gateway: Option<Measured>,
    bare: Option<Phase>,
    stats0: Option<Stats>,
    stats_final: Option<Stats>,
    tightest: Option<(Option<u64>, Option<u64>)>,
    rss_baseline: Option<u64>,
    rss_end: Option<u64>,
    rss_quiet: Option<u64>,
    tracked_quiet: Option<u64>,
    soak: Option<crate::soak::SoakReport>,
}

/// The 429s by scope between two snapshots of the emulator's counters.
fn rate_limited_by_scope(a: &Stats, b: &Stats) -> BTreeMap<String, u64> {
    let (a, b) = (&a.totals, &b.totals);
    BTreeMap::from([
        ("chat".to_owned(), b.rate_limited_chat - a.rate_limited_chat),
        (
            "group".to_owned(),
            b.rate_limited_group - a.rate_limited_group,
        ),
        ("bot".to_owned(), b.rate_limited_bot - a.rate_limited_bot),
        (
            "forced".to_owned(),
            b.rate_limited_forced - a.rate_limited_forced,
        ),
    ])
}

fn bot_rows(
    s: &Setup,
    o: &Observed,
    per_bot: &[u64],
    samples: &[crate::sampler::Sample],
    len: f64,
) -> Vec<BotRow> {
    let chats_per_bot = s.workload.chats_per_bot();
    s.bot_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let delivered = per_bot.get(i).copied().unwrap_or(0);
            let per_s = delivered as f64 / len;
            let c = s.ceiling.as_ref().map(|c| c.per_bot[i]);
            let q: Vec<u64> = samples
                .iter()
                .filter_map(|s| s.queue_depth.get(i).copied())
                .collect();
            BotRow {
                name: name.clone(),
                private_chats: chats_per_bot[i].0,
                groups: chats_per_bot[i].1,
                delivered,
                per_s,
                ceiling_per_s: c,
                ratio: c.map(|c| per_s / c),
                rate_limited: match (&o.stats0, &o.stats_final, s.bot_ids[i]) {
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
            }
        })
        .collect()
}

fn assemble(args: Args, s: &Setup, mut o: Observed) -> Report {
    let (from, to, _) = &s.window;
    let len = (to - from).max(1e-9);
    let r429 = match (&o.stats0, &o.stats_final) {
        (Some(a), Some(b)) => Some(b.totals.rate_limited - a.totals.rate_limited),
        _ => None,
    };
    let scope = match (&o.stats0, &o.stats_final) {
        (Some(a), Some(b)) => Some(rate_limited_by_scope(a, b)),
        _ => None,
    };
    let gw = o.gateway.take();
    let (report_gateway, per_bot, per_class, mut class_latency, samples) = match gw {
        Some(g) => (
            Some(g.phase),
            g.per_bot,
            g.per_class,
            g.class_latency,
            g.samples,
        ),
        None => (
            None,
            vec![0; s.bot_names.len()],
            BTreeMap::new(),
            BTreeMap::new(),
            Vec::new(),
        ),
    };
    let bots = bot_rows(s, &o, &per_bot, &samples, len);
    let classes: Vec<ClassRow> = per_class
        .iter()
        .map(|(c, n)| {
            let per_s = *n as f64 / len;
            let ceil = s.ceiling.as_ref().and_then(|x| x.per_class.get(c).copied());
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
    let ratio_of = |c: &Option<Ceiling>| match (gw_rate, c) {
        (Some(r), Some(c)) if c.total > 0.0 => Some(r / c.total),
        _ => None,
    };
    let ratio = ratio_of(&s.ceiling);
    let gateway_vs_bare = match (&report_gateway, &o.bare) {
        (Some(g), Some(b)) if b.delivered_per_s > 0.0 => {
            Some(g.delivered_per_s / b.delivered_per_s)
        }
        _ => None,
    };
    let p99_added_us = match (&report_gateway, &o.bare) {
        (Some(g), Some(b)) => Some(g.latency.p99_us as i64 - b.latency.p99_us as i64),
        _ => None,
    };
    let mut failures = Vec::new();
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
    if let Some(soak) = &o.soak
        && !soak.flat()
    {
        failures.push(format!(
            "not flat over the soak (first quarter -> last quarter): RSS {:.0} -> {:.0} kB, \
             fds {:.0} -> {:.0}, tasks {:.0} -> {:.0}",
            soak.rss_kb.0, soak.rss_kb.1, soak.fds.0, soak.fds.1, soak.tasks.0, soak.tasks.1
        ));
    }
    let peak_rss = samples.iter().filter_map(|s| s.rss_kb).max();
    let tracked_chats_peak = samples
        .iter()
        .map(|s| s.tracked_chats.iter().sum::<u64>())
        .max();
    let l = &s.sched_limits;
    Report {
        label: args.label.clone(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        mode: if args.embedded {
            "embedded".into()
        } else {
            format!("target {}", s.grpc_url)
        },
        limits: if s.limited {
            format!(
                "gateway: chat {}/s burst {}, group {} per {:?}, bot {} per {:?}, margin {:?}, {} in flight per bot; emulator: Telegram's",
                l.chat_rate,
                l.chat_burst,
                l.group_max,
                l.group_window,
                l.bot_max,
                l.bot_window,
                l.jitter_margin,
                l.max_in_flight
            )
        } else {
            format!(
                "lifted (gateway and emulator); {} in flight per bot",
                l.max_in_flight
            )
        },
        bots,
        classes,
        ceiling_per_s: s.ceiling.as_ref().map(|c| c.total),
        ratio,
        ceiling_with_margin_per_s: s.ceiling_margin.as_ref().map(|c| c.total),
        ratio_vs_margin: ratio_of(&s.ceiling_margin),
        ceiling_telegram_per_s: s.ceiling_tg.as_ref().map(|c| c.total),
        ratio_vs_telegram: ratio_of(&s.ceiling_tg),
        rate_limited_429: r429,
        rate_limited_by_scope: scope,
        emulator_duplicates: match (&o.stats0, &o.stats_final) {
            (Some(a), Some(b)) => Some(b.totals.duplicates - a.totals.duplicates),
            _ => None,
        },
        emulator_max_delivered_per_s: o.stats_final.as_ref().map(|s| s.totals.max_delivered_per_s),
        tightest_bot_span_ms: o.tightest.and_then(|t| t.0),
        tightest_group_span_ms: o.tightest.and_then(|t| t.1),
        gateway: report_gateway,
        queue_depth: samples,
        rss_baseline_kb: o.rss_baseline,
        rss_peak_kb: peak_rss,
        rss_end_kb: o.rss_end,
        rss_after_quiet_kb: o.rss_quiet,
        tracked_chats_peak,
        tracked_chats_after_quiet: o.tracked_quiet,
        bare: o.bare,
        gateway_vs_bare,
        p99_added_us,
        soak: o.soak.take(),
        pass: failures.is_empty(),
        failures,
        args,
    }
}
