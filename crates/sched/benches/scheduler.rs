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
use shardgate_sched::{Gcra, Limits, Next, Scheduler, Tick, Window};

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];

/// Spreads chat ids over the i64 range (real ids are not dense).
fn chat_id(i: u64) -> i64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 2) as i64 + 1
}

struct Bench {
    s: Scheduler<u64>,
    n: u64,
    i: u64,
    seq: u64,
    now: Tick,
}

impl Bench {
    fn new(n: u64) -> Bench {
        let limits = Limits {
            queue_max: 4_000_000,
            ..Limits::default()
        };
        let mut s = Scheduler::new(limits);
        for i in 0..n {
            s.push(chat_id(i), i, i, 0).expect("room");
        }
        Bench {
            s,
            n,
            i: 0,
            seq: n,
            now: 10_000_000,
        }
    }

    /// One message: push, next, complete.
    fn step(&mut self) {
        let chat = chat_id(self.i % self.n);
        self.i += 1;
        self.s
            .push(chat, self.seq, self.seq, self.now)
            .expect("room");
        self.seq += 1;
        loop {
            match self.s.next(self.now, |_| true) {
                Next::Send(d) => {
                    self.s.complete(black_box(d.chat_id), self.now);
                    break;
                }
                Next::WaitUntil(t) => self.now = t,
                Next::Idle => unreachable!("a message is queued"),
            }
        }
        self.now += 40_000;
    }
}

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
