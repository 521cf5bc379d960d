//! The human-readable report (without `--json`): the per-bot table, the
//! per-class rows, latency, CPU, 429s, spacing, queue depth, RSS and the
//! bare-HTTP comparison, then PASS or FAIL.

use crate::report::{Latency, Report};

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

pub fn print_table(r: &Report) {
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
    if let Some(soak) = &r.soak {
        let flat = |f: bool| if f { "flat" } else { "GROWING" };
        println!(
            "  soak ({} readings, every {} s; first quarter -> last quarter): RSS {:.1} -> {:.1} MiB ({}), fds {:.0} -> {:.0} ({}), tokio tasks {:.0} -> {:.0} ({})",
            soak.readings.len(),
            crate::soak::PERIOD.as_secs(),
            soak.rss_kb.0 / 1024.0,
            soak.rss_kb.1 / 1024.0,
            flat(soak.rss_kb.2),
            soak.fds.0,
            soak.fds.1,
            flat(soak.fds.2),
            soak.tasks.0,
            soak.tasks.1,
            flat(soak.tasks.2)
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
