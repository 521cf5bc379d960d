//! A load-independent cost per message: the same step as the criterion
//! bench `push_next_complete` (push into one of N chats round robin, `next`,
//! `complete`), run M times inside `run_steps`, for counting instructions:
//!
//! ```text
//! cargo build --release -p shardgate-sched --example per_message
//! valgrind --tool=callgrind --toggle-collect='per_message::run_steps' \
//!     target/release/examples/per_message 1000000 200000
//! ```
//!
//! Instructions counted (`Collected`) divided by M = instructions per message.
//! Arguments: N chats (default 1,000,000), M messages (default 200,000).

#[path = "../benches/common/mod.rs"]
mod common;
use common::Bench;

#[inline(never)]
fn run_steps(b: &mut Bench, m: u64) {
    for _ in 0..m {
        b.step();
    }
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = arg(1, 1_000_000).max(1);
    let m = arg(2, 200_000);
    let mut b = Bench::new(n);
    // Warm-up as in the criterion bench, outside the counted function.
    for _ in 0..n.min(200_000) {
        b.step();
    }
    run_steps(&mut b, m);
    println!("{n} chats, {m} messages, {} tracked", b.s.tracked_chats());
}
