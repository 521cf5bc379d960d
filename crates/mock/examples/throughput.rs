//! Rough throughput check: the emulator (limits on or off) hammered by concurrent keep-alive
//! clients in the same process. `cargo run --release -p shardgate-mock --example throughput
//! -- [SECONDS] [CONCURRENCY] [limits]`. Client and server share the machine, so the figure
//! is a lower bound for the emulator alone. Also times the limiter's bookkeeping by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shardgate_mock::{Limiter, Limits, MockConfig, MockServer, test_token};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let limited = args.get(3).is_some_and(|s| s == "limits");

    // The limiter alone: one million checks over 10,000 bots and 100,000 chats.
    let t0 = Instant::now();
    let mut limiter = Limiter::new(Limits::official(), t0);
    let n = 1_000_000u64;
    let started = Instant::now();
    let mut ok = 0u64;
    for i in 0..n {
        let now = t0 + Duration::from_micros(i * 20);
        ok += u64::from(
            limiter
                .check(i % 10_000, (i % 100_000) as i64 - 50_000, now)
                .is_ok(),
        );
    }
    let took = started.elapsed();
    println!(
        "limiter: {n} checks in {took:?} ({:.0} ns each, {ok} allowed)",
        took.as_nanos() as f64 / n as f64
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = if limited {
        MockConfig::default()
    } else {
        MockConfig::unlimited()
    };
    let server = MockServer::start(config, "127.0.0.1:0".parse()?).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let done = done.clone();
        let base = format!(
            "{}/bot{}/sendMessage",
            server.base_url(),
            test_token(worker as u64 + 1)
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let url = format!("{base}?chat_id={}&text=w{worker}m{i}", i % 1000 + 1);
                if let Ok(resp) = client.get(&url).send().await {
                    let _ = resp.bytes().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let total = done.load(Ordering::Relaxed);
    let stats = server.control().stats();
    println!(
        "http: {total} requests in {secs} s = {:.0} req/s ({} delivered, {} rate limited, {} duplicates)",
        total as f64 / secs as f64,
        stats.totals.delivered,
        stats.totals.rate_limited,
        stats.totals.duplicates
    );
    server.shutdown().await;
    Ok(())
}
