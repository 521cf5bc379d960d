//! Memory per tracked chat, measured with a counting allocator (heap bytes
//! live, exact) and cross-checked with the process RSS.
//!
//! For N chats (1,000 / 100,000 / 1,000,000) it reports, per chat:
//! - `queued`: every chat has one message queued (item: a `NonZeroU64`, the
//!   size of the gateway's `Box<Envelope>` and like it with a niche; the
//!   envelope itself is not counted);
//! - `limited`: every message was sent and completed, the queues are empty and
//!   only limiter state is left (the chats are still inside their bucket's
//!   refill time, so `gc` may not drop them yet);
//! - `after gc`: the same once the buckets are full again and `gc` ran: the
//!   memory should return to the empty scheduler's.
//!
//! Then the same measure for plain `HashMap<i64, [u8; S]>` maps, the floor a
//! per-chat layout of S bytes would cost in a std HashMap.
//!
//! Target: <= 64 bytes of limiter state per active chat.
//!
//! `cargo bench -p shardgate-sched --bench memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicIsize, Ordering};

use shardgate_sched::{Limits, Next, Scheduler, Tick, Window};

/// Field-for-field mirrors of the scheduler's private per-chat state and
/// slab slot (`scheduler/queues.rs`, `struct Chat` and `struct Node<T>`), for
/// `size_of` only. Keep in step.
#[allow(dead_code)]
struct ChatMirror {
    tat: Tick,
    tail: u32,
    flags: u32,
}

#[allow(dead_code)]
struct NodeMirror<T> {
    stored: Option<(u64, Tick, T)>,
    next: u32,
    priority: u8,
}

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn chat_id(i: u64, group: bool) -> i64 {
    let id = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 2) as i64 + 1;
    if group { -id } else { id }
}

fn per_chat(bytes: isize, n: u64) -> f64 {
    bytes as f64 / n as f64
}

fn scheduler(n: u64, groups: bool) {
    let limits = Limits {
        queue_max: 4_000_000,
        // Every chat may go at once: this measures state, not pacing.
        bot_max: 4_000_000,
        bot_burst: 4_000_000,
        max_in_flight: 4_000_000,
        ..Limits::default()
    };
    let base = live();
    let rss0 = rss_kb();
    let mut s: Scheduler<NonZeroU64> = Scheduler::new(limits);
    let empty = live() - base;
    for i in 0..n {
        s.push(chat_id(i, groups), i, NonZeroU64::MIN.saturating_add(i), 0)
            .expect("room");
    }
    let queued = live() - base;
    let rss_queued = rss_kb() - rss0;
    let now = 1_000_000;
    let mut sent = Vec::with_capacity(n as usize);
    while let Next::Send(d) = s.next(now, |_| true) {
        sent.push(d.chat_id);
    }
    assert_eq!(sent.len() as u64, n);
    for c in &sent {
        s.complete(*c, now);
    }
    drop(sent);
    let limited_exact = live() - base;
    // Far in the future every bucket (and group window) is idle.
    s.gc(now + 3_600_000_000);
    let after_gc = live() - base;
    println!(
        "  {:>9} {:<8} queued {:>7.1} B/chat (RSS {:>6.1})   limited {:>7.1} B/chat   after gc {:>9} B total   tracked {} -> {}",
        n,
        if groups { "groups" } else { "private" },
        per_chat(queued - empty, n),
        rss_queued as f64 * 1024.0 / n as f64,
        per_chat(limited_exact - empty, n),
        after_gc,
        n,
        s.tracked_chats()
    );
    black_box(&s);
}

fn plain_map<const S: usize>(n: u64) {
    let base = live();
    let mut m: HashMap<i64, [u8; S]> = HashMap::new();
    for i in 0..n {
        m.insert(chat_id(i, false), [0u8; S]);
    }
    let bytes = live() - base;
    println!(
        "  {:>9} HashMap<i64, [u8; {:>2}]>: {:>6.1} B/chat (capacity {}, load {:.2})",
        n,
        S,
        per_chat(bytes, n),
        m.capacity(),
        n as f64 / m.capacity() as f64
    );
    black_box(&m);
}

fn main() {
    // `cargo bench` passes `--bench`; filters are ignored here.
    println!(
        "layout: Chat {} B (+ 8 B key = {} B per map entry, + 1 control byte, / load 0.44..0.87); \
         slab slot Node<Box<Envelope>> {} B while queued; ready-heap entry (Tick, u64, i64) {} B while waiting; \
         group Window {} B + 8 B key per group that sent, + its completions",
        std::mem::size_of::<ChatMirror>(),
        std::mem::size_of::<(i64, ChatMirror)>(),
        std::mem::size_of::<NodeMirror<Box<u64>>>(),
        std::mem::size_of::<(Tick, u64, i64)>(),
        std::mem::size_of::<Window>(),
    );
    println!(
        "scheduler memory per chat (heap bytes counted by the allocator; RSS delta in parentheses):"
    );
    for n in [1_000u64, 100_000, 1_000_000] {
        scheduler(n, false);
    }
    scheduler(100_000, true);
    println!("floor of a std HashMap keyed by chat id, per value size:");
    for n in [100_000u64, 1_000_000] {
        plain_map::<8>(n);
        plain_map::<16>(n);
        plain_map::<24>(n);
        plain_map::<40>(n);
        plain_map::<80>(n);
    }
}
