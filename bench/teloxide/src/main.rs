//! The peer in BENCHMARKS.md: teloxide-core's `Throttle` adaptor, pointed at
//! Shardgate's Bot API emulator (in this process, Telegram's limits), driving
//! the single-bot workloads of BENCHMARKS.md §4: every private chat keeps `--per-key`
//! sends outstanding (saturating), for `--duration` seconds.
//!
//! Reports delivered/s over the steady-state window (the first `--warmup`
//! seconds excluded) against the ceiling under Telegram's limits
//! (min(30, chats x 1/s)) and under Shardgate's configured limits
//! (min(30, chats x 0.9/s)), the emulator's 429 count, and latency
//! (call to answer) p50/p99/max.
//!
//! `cargo run --release -- --chats 20 --duration 60`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use shardgate_mock::{MockConfig, MockServer, test_token};
use teloxide_core::adaptors::throttle::Limits;
use teloxide_core::requests::{Requester, RequesterExt};
use teloxide_core::types::ChatId;
use teloxide_core::{Bot, RequestError};
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Private chats (one bot).
    #[arg(long, default_value_t = 20)]
    chats: u64,
    /// Sends outstanding per chat.
    #[arg(long, default_value_t = 2)]
    per_key: u32,
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Throttle's per-chat per-minute limit (teloxide's default: 20, which it
    /// applies to private chats too).
    #[arg(long, default_value_t = 20)]
    per_min_chat: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Tally {
    delivered_window: u64,
    delivered: u64,
    retry_after: u64,
    other_errors: u64,
    per_second: Vec<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mock = MockServer::start(MockConfig::default(), "127.0.0.1:0".parse()?).await?;
    let control = mock.control();
    let url = url::Url::parse(&mock.base_url())?;
    let limits = Limits {
        messages_per_min_chat: args.per_min_chat,
        ..Limits::default()
    };
    let bot = Bot::new(test_token(7_300_001))
        .set_api_url(url)
        .throttle(limits);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let warmup = Duration::from_secs_f64(args.warmup);
    let end = Duration::from_secs_f64(args.duration);
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
    ));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.chats {
        for _ in 0..args.per_key {
            let (bot, hist, tally, counter) =
                (bot.clone(), hist.clone(), tally.clone(), counter.clone());
            let chat = 100_000 + c as i64;
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let r = bot
                        .send_message(ChatId(chat), format!("teloxide #{n} to {chat}"))
                        .await;
                    let now = Instant::now();
                    let t = now - start;
                    let mut ty = tally.lock().await;
                    match r {
                        Ok(_) => {
                            ty.delivered += 1;
                            let s = t.as_secs() as usize;
                            if ty.per_second.len() <= s {
                                ty.per_second.resize(s + 1, 0);
                            }
                            ty.per_second[s] += 1;
                            if t >= warmup && t <= end {
                                ty.delivered_window += 1;
                                let _ = hist
                                    .lock()
                                    .await
                                    .record((now - sent).as_micros().max(1) as u64);
                            }
                        }
                        Err(RequestError::RetryAfter(_)) => ty.retry_after += 1,
                        Err(_) => ty.other_errors += 1,
                    }
                }
            });
        }
    }
    // Progress, once a second.
    let progress = {
        let tally = tally.clone();
        let control = control.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let t = tally.lock().await;
                eprintln!(
                    "[teloxide {:5.1} s] delivered {} | 429s {} | errors {}",
                    start.elapsed().as_secs_f64(),
                    t.delivered,
                    control.stats().totals.rate_limited,
                    t.other_errors
                );
            }
        })
    };
    tokio::time::sleep_until(deadline).await;
    let stats = control.stats();
    progress.abort();
    tasks.abort_all();
    let t = tally.lock().await;
    let h = hist.lock().await;
    let len = args.duration - args.warmup;
    let per_s = t.delivered_window as f64 / len;
    let ceiling_tg = (args.chats as f64).min(30.0);
    let ceiling_ours = (args.chats as f64 * 0.9).min(30.0);
    let report = serde_json::json!({
        "peer": "teloxide-core 0.13 Throttle (default Limits except messages_per_min_chat)",
        "per_min_chat": args.per_min_chat,
        "chats": args.chats,
        "per_key": args.per_key,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "delivered_total": t.delivered,
        "delivered_window": t.delivered_window,
        "delivered_per_s": per_s,
        "ceiling_telegram_per_s": ceiling_tg,
        "ratio_vs_telegram": per_s / ceiling_tg,
        "ceiling_shardgate_limits_per_s": ceiling_ours,
        "ratio_vs_shardgate_limits": per_s / ceiling_ours,
        "rate_limited_429": stats.totals.rate_limited,
        "rate_limited_chat": stats.totals.rate_limited_chat,
        "rate_limited_bot": stats.totals.rate_limited_bot,
        "client_retry_after_errors": t.retry_after,
        "other_errors": t.other_errors,
        "latency_us": {
            "count": h.len(),
            "p50": h.value_at_quantile(0.5),
            "p95": h.value_at_quantile(0.95),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        },
        "per_second": t.per_second,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "teloxide Throttle: {} chats, {:.0} s ({:.0} s warm-up excluded): {:.2} msg/s delivered; \
             ceiling {:.2} (Telegram) -> ratio {:.4}; {:.2} (Shardgate's 0.9/s) -> ratio {:.4}; \
             429s {} (chat {}, bot {}); latency p50 {} us p99 {} us max {} us; other errors {}",
            args.chats,
            args.duration,
            args.warmup,
            per_s,
            ceiling_tg,
            per_s / ceiling_tg,
            ceiling_ours,
            per_s / ceiling_ours,
            stats.totals.rate_limited,
            stats.totals.rate_limited_chat,
            stats.totals.rate_limited_bot,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max(),
            t.other_errors
        );
    }
    mock.shutdown().await;
    Ok(())
}
