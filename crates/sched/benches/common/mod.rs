//! The message loop of `push_next_complete`, shared by the criterion bench
//! (`benches/scheduler.rs`) and the instruction-count example
//! (`examples/per_message.rs`).

use std::hint::black_box;

use shardgate_sched::{Limits, Next, Scheduler, Tick};

/// Spreads chat ids over the i64 range (real ids are not dense).
fn chat_id(i: u64) -> i64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 2) as i64 + 1
}

pub struct Bench {
    pub s: Scheduler<u64>,
    n: u64,
    i: u64,
    seq: u64,
    now: Tick,
}

impl Bench {
    pub fn new(n: u64) -> Bench {
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
    pub fn step(&mut self) {
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
