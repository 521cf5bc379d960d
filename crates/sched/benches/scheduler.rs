//! Cost per message of the scheduler and its limiter, against the number of
//! active chats.
//!
//! `push_next_complete/N`: a scheduler with Telegram's default limits holds N
//! chats, each with one message queued. One iteration is one message through
//! the bot's whole path: `push` into a chat (round robin, so N stay active),
//! `next` (which releases the oldest eligible head), `complete` of that chat.
//! The simulated clock advances 40 ms per message so that no limit binds
//! (the bot's pace is 33.3 ms): the figure is the bookkeeping, not waiting.
//! It should stay flat from 1,000 to 1,000,000 chats, apart from cache misses.
//!
//! `gcra/N`: the per-chat token bucket alone (next_free + consume) over N
//! chat states. `window`: the group/bot sliding window (next_free, start,
//! finish).
//!
//! `cargo bench -p shardgate-sched --bench scheduler`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardgate_sched::{Gcra, Tick, Window};

mod common;
use common::Bench;

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];

fn push_next_complete(c: &mut Criterion) {
    let mut g = c.benchmark_group("push_next_complete");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));
    for n in SIZES {
        let mut b = Bench::new(n);
        // Let the heap and the chats reach their steady shape.
        for _ in 0..n.min(200_000) {
            b.step();
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| b.step())
        });
    }
    g.finish();
}

fn gcra(c: &mut Criterion) {
    let mut g = c.benchmark_group("gcra");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));
    let bucket = Gcra::new(3, 0.9);
    for n in SIZES {
        let mut tats = vec![0 as Tick; n as usize];
        let mut i: u64 = 0;
        let mut now: Tick = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| {
                // Pseudo-random chat: defeats the prefetcher like a real mix.
                let k = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n) as usize;
                i += 1;
                now += 1;
                let tat = tats[k];
                if bucket.next_free(tat) <= now {
                    tats[k] = bucket.consume(tat, now);
                }
                black_box(tats[k])
            })
        });
    }
    g.finish();
}

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("window");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));
    for (name, max, len) in [
        ("group_20_per_60s", 20u32, 60_000_000u64),
        ("bot_30_per_1s", 30, 1_000_000),
    ] {
        let mut w = Window::new(max, len);
        let mut now: Tick = 0;
        g.bench_function(name, |bch| {
            bch.iter(|| {
                now = now.max(w.next_free().unwrap_or(now));
                w.start();
                w.finish(now);
                black_box(w.is_idle(now))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, push_next_complete, gcra, window);
criterion_main!(benches);
