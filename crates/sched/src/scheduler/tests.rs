//! Unit and property tests of the scheduler on a simulated clock.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const MS: Tick = 1_000;
const S: Tick = 1_000_000;

/// Default limits without the jitter margin and without even spacing of the
/// bot's sends (tests of that use `Limits::default()`).
fn limits() -> Limits {
    Limits {
        jitter_margin: Duration::ZERO,
        bot_burst: 1_000,
        ..Limits::default()
    }
}

/// Sends everything that may go at `now`, returning (chat, seq) in order.
fn drain_now(s: &mut Scheduler<u64>, now: Tick) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    while let Next::Send(d) = s.next(now, |_| true) {
        out.push((d.chat_id, d.seq));
    }
    out
}

#[test]
fn private_chat_gets_a_burst_of_three_then_the_refill_rate() {
    let mut s = Scheduler::new(limits());
    for seq in 0..5 {
        s.push(7, seq, seq, 0).expect("room");
    }
    let mut sent = Vec::new();
    let mut now = 0;
    while sent.len() < 5 {
        match s.next(now, |_| true) {
            Next::Send(d) => {
                sent.push((now, d.seq));
                s.complete(d.chat_id);
            }
            Next::WaitUntil(t) => now = t,
            Next::Idle => panic!("idle with work queued"),
        }
    }
    let times: Vec<Tick> = sent.iter().map(|(t, _)| *t).collect();
    // 1/0.9 s = 1.111112 s per token after the burst.
    assert_eq!(times, vec![0, 0, 0, 1_111_112, 2_222_224]);
    assert_eq!(
        sent.iter().map(|(_, q)| *q).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
}

#[test]
fn taking_over_waits_a_bot_window_and_starts_chats_empty() {
    let mut s = Scheduler::taking_over(limits(), 0);
    for seq in 0..3 {
        s.push(7, seq, seq, 0).expect("room");
    }
    let mut now = 0;
    let mut times = Vec::new();
    while times.len() < 3 {
        match s.next(now, |_| true) {
            Next::Send(d) => {
                times.push(now);
                s.complete(d.chat_id);
            }
            Next::WaitUntil(t) => now = t,
            Next::Idle => panic!("idle"),
        }
    }
    // No burst: the previous driver may have used it.
    assert_eq!(times, vec![1_111_112, 2_222_224, 3_333_336]);
    // A chat first seen after the refill time gets its burst again.
    for seq in 10..13 {
        s.push(8, seq, seq, 4 * S).expect("room");
    }
    let mut burst = 0;
    while let Next::Send(d) = s.next(4 * S, |_| true) {
        s.complete(d.chat_id);
        burst += 1;
    }
    assert_eq!(burst, 3);
}

#[test]
fn one_request_per_chat_in_flight() {
    let mut s = Scheduler::new(limits());
    s.push(7, 0, 0, 0).expect("room");
    s.push(7, 1, 1, 0).expect("room");
    assert_eq!(drain_now(&mut s, 0), vec![(7, 0)]);
    assert!(matches!(s.next(0, |_| true), Next::Idle));
    s.complete(7);
    assert_eq!(drain_now(&mut s, 0), vec![(7, 1)]);
}

#[test]
fn a_waiting_chat_does_not_hold_up_others() {
    let mut s = Scheduler::new(limits());
    for seq in 0..50 {
        s.push(1, seq, seq, 0).expect("room");
    }
    let first = drain_now(&mut s, 0);
    assert_eq!(first, vec![(1, 0)]);
    s.complete(1);
    drain_now(&mut s, 0);
    s.complete(1);
    drain_now(&mut s, 0);
    s.complete(1);
    // Chat 1 is out of tokens; a newcomer goes at once.
    s.push(2, 100, 100, 0).expect("room");
    assert_eq!(drain_now(&mut s, 0), vec![(2, 100)]);
}

#[test]
fn group_never_exceeds_its_window() {
    let mut s = Scheduler::new(Limits {
        chat_burst: 100,
        chat_rate: 100.0,
        ..limits()
    });
    for seq in 0..25 {
        s.push(-100, seq, seq, 0).expect("room");
    }
    let mut now = 0;
    let mut times = Vec::new();
    while times.len() < 25 {
        match s.next(now, |_| true) {
            Next::Send(d) => {
                times.push(now);
                s.complete(d.chat_id);
            }
            Next::WaitUntil(t) => now = t,
            Next::Idle => panic!("idle with work queued"),
        }
    }
    assert!(times[..20].iter().all(|t| *t == 0));
    assert_eq!(times[20], 60 * S);
}

#[test]
fn bot_sends_are_spaced_evenly_at_thirty_per_second() {
    let mut s = Scheduler::new(Limits {
        jitter_margin: Duration::ZERO,
        ..Limits::default()
    });
    for chat in 0..100 {
        s.push(chat + 1, chat as u64, 0, 0).expect("room");
    }
    let mut now = 0;
    let mut times = Vec::new();
    while times.len() < 90 {
        match s.next(now, |_| true) {
            Next::Send(d) => {
                times.push(now);
                s.complete(d.chat_id);
            }
            Next::WaitUntil(t) => now = t,
            Next::Idle => panic!("idle with work queued"),
        }
    }
    // Never more than two back to back, about one every 1/30 s: 90 sends
    // take about 3 s.
    assert_eq!(&times[..3], &[0, 0, S / 30 + 1]);
    assert!(times.windows(3).all(|w| w[2] - w[0] >= S / 30));
    assert!((2_900_000..3_000_000).contains(&times[89]), "{}", times[89]);
    for w in times.windows(31) {
        assert!(w[30] - w[0] >= S);
    }
}

#[test]
fn chat_cooldown_blocks_that_chat_only() {
    let mut s = Scheduler::new(limits());
    s.push(1, 0, 0, 0).expect("room");
    s.push(2, 1, 0, 0).expect("room");
    s.cool_chat(1, 5 * S);
    assert_eq!(drain_now(&mut s, 0), vec![(2, 1)]);
    assert!(matches!(s.next(0, |_| true), Next::WaitUntil(t) if t == 5 * S));
    assert_eq!(drain_now(&mut s, 5 * S), vec![(1, 0)]);
}

#[test]
fn bot_cooldown_blocks_everything_until_it_ends() {
    let mut s = Scheduler::new(limits());
    s.push(1, 0, 0, 0).expect("room");
    s.cool_bot(10 * S);
    assert!(matches!(s.next(S, |_| true), Next::WaitUntil(t) if t == 10 * S));
    assert_eq!(drain_now(&mut s, 10 * S), vec![(1, 0)]);
}

#[test]
fn requeue_keeps_seq_order_and_ignores_bounds() {
    let mut s = Scheduler::new(Limits {
        chat_queue_max: 2,
        ..limits()
    });
    s.push(1, 5, 5, 0).expect("room");
    s.push(1, 6, 6, 0).expect("room");
    assert!(matches!(
        s.push(1, 7, 7, 0),
        Err(PushError::ChatQueueFull(7))
    ));
    s.requeue(
        1,
        Queued {
            seq: 3,
            not_before: 0,
            item: 3,
        },
        0,
    );
    let order: Vec<u64> = (0..3)
        .map(|_| match s.next(0, |_| true) {
            Next::Send(d) => {
                s.complete(1);
                d.seq
            }
            other => panic!("expected a send, got {other:?}"),
        })
        .collect();
    assert_eq!(order, vec![3, 5, 6]);
}

#[test]
fn bot_queue_bound_refuses_pushes() {
    let mut s = Scheduler::new(Limits {
        queue_max: 3,
        ..limits()
    });
    for seq in 0..3 {
        s.push(seq as i64 + 1, seq, seq, 0).expect("room");
    }
    assert!(matches!(
        s.push(9, 9, 9, 0),
        Err(PushError::BotQueueFull(9))
    ));
}

#[test]
fn dropped_candidates_spend_no_limit() {
    let mut s = Scheduler::new(limits());
    for seq in 0..10 {
        s.push(1, seq, seq, 0).expect("room");
    }
    // Drop the first seven: the three kept still get the whole burst.
    let mut sent = Vec::new();
    while let Next::Send(d) = s.next(0, |item| *item >= 7) {
        sent.push(d.seq);
        s.complete(1);
    }
    assert_eq!(sent, vec![7, 8, 9]);
    assert_eq!(s.queued(), 0);
}

#[test]
fn rename_moves_the_queue_in_order() {
    let mut s = Scheduler::new(limits());
    for seq in 0..3 {
        s.push(-5, seq, seq, 0).expect("room");
    }
    s.push(-1_005, 1_000, 0, 0).expect("room");
    s.rename_chat(-5, -1_005, 0);
    let mut order = Vec::new();
    let mut now = 0;
    while order.len() < 4 {
        match s.next(now, |_| true) {
            Next::Send(d) => {
                assert_eq!(d.chat_id, -1_005);
                order.push(d.seq);
                s.complete(d.chat_id);
            }
            Next::WaitUntil(t) => now = t,
            Next::Idle => panic!("idle"),
        }
    }
    assert_eq!(order, vec![0, 1, 2, 1_000]);
}

#[test]
fn drain_returns_everything_oldest_first() {
    let mut s = Scheduler::new(limits());
    s.push(2, 3, 3, 0).expect("room");
    s.push(1, 1, 1, 0).expect("room");
    s.push(1, 2, 2, 0).expect("room");
    let sent = drain_now(&mut s, 0);
    assert_eq!(sent.len(), 2);
    let rest = s.drain();
    assert_eq!(rest.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![2]);
    assert_eq!(s.queued(), 0);
}

#[test]
fn idle_chats_are_forgotten() {
    let mut s = Scheduler::new(limits());
    for chat in 1..=1_000 {
        s.push(chat, chat as u64, 0, 0).expect("room");
    }
    let mut now = 0;
    while s.queued() > 0 {
        match s.next(now, |_| true) {
            Next::Send(d) => s.complete(d.chat_id),
            Next::WaitUntil(t) => now = t,
            Next::Idle => break,
        }
    }
    assert_eq!(s.tracked_chats(), 1_000);
    s.gc(now + 10 * S);
    assert_eq!(s.tracked_chats(), 0);
}

/// One step of a random workload.
#[derive(Debug, Clone)]
enum Op {
    Push { chat: i64 },
    Advance { ms: u64 },
    CompleteOldest,
    Retry429 { secs: u64 },
    BotThrottle { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (-3i64..6).prop_map(|c| Op::Push { chat: if c == 0 { 9 } else { c } }),
        4 => (0u64..700).prop_map(|ms| Op::Advance { ms }),
        4 => Just(Op::CompleteOldest),
        1 => (1u64..4).prop_map(|secs| Op::Retry429 { secs }),
        1 => (1u64..3).prop_map(|secs| Op::BotThrottle { secs }),
    ]
}

fn random_limits() -> impl Strategy<Value = Limits> {
    (
        1u32..4,
        1u32..40,
        1u32..5,
        1u64..3,
        2u32..8,
        0u64..20,
        1u32..6,
        1u32..4,
    )
        .prop_map(
            |(burst, rate_tenths, group_max, group_s, bot_max, margin_ms, in_flight, bot_burst)| {
                Limits {
                    chat_burst: burst,
                    chat_rate: rate_tenths as f64 / 10.0,
                    group_max,
                    group_window: Duration::from_secs(group_s),
                    bot_max,
                    bot_window: Duration::from_secs(1),
                    bot_burst,
                    jitter_margin: Duration::from_millis(margin_ms),
                    max_in_flight: in_flight,
                    queue_max: 10_000,
                    chat_queue_max: 10_000,
                }
            },
        )
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    /// How many ops had run when it was sent (orders it against cooldowns).
    step: usize,
    at: Tick,
    chat: i64,
    seq: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random pushes, completions, 429s and clock jumps: every limit holds at
    /// every send, order per chat is kept, and everything is sent in the end.
    #[test]
    fn limits_order_and_liveness_hold(l in random_limits(), ops in prop::collection::vec(op(), 1..200)) {
        let mut s: Scheduler<u64> = Scheduler::new(l.clone());
        let mut now: Tick = 0;
        let mut seq = 0u64;
        let mut sent: Vec<Sent> = Vec::new();
        let mut in_flight: Vec<(i64, u64)> = Vec::new();
        // (chat or None for the bot, step it was set at, until): nothing may go in between.
        let mut cools: Vec<(Option<i64>, usize, Tick)> = Vec::new();
        let mut delivered = 0u64;

        let pump = |s: &mut Scheduler<u64>, step: usize, now: Tick, sent: &mut Vec<Sent>, in_flight: &mut Vec<(i64, u64)>| {
            while let Next::Send(d) = s.next(now, |_| true) {
                sent.push(Sent { step, at: now, chat: d.chat_id, seq: d.seq });
                in_flight.push((d.chat_id, d.seq));
            }
        };

        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push { chat } => {
                    s.push(chat, seq, seq, now).expect("bounds are large");
                    seq += 1;
                }
                Op::Advance { ms } => now += ms * MS,
                Op::CompleteOldest => {
                    if !in_flight.is_empty() {
                        let (chat, _) = in_flight.remove(0);
                        s.complete(chat);
                        delivered += 1;
                    }
                }
                Op::Retry429 { secs } => {
                    if !in_flight.is_empty() {
                        let (chat, q) = in_flight.remove(0);
                        let until = now + secs * S;
                        s.cool_chat(chat, until);
                        s.requeue(chat, Queued { seq: q, not_before: 0, item: q }, now);
                        s.complete(chat);
                        cools.push((Some(chat), step, until));
                    }
                }
                Op::BotThrottle { secs } => {
                    cools.push((None, step, now + secs * S));
                    s.cool_bot(now + secs * S);
                }
            }
            pump(&mut s, step, now, &mut sent, &mut in_flight);
            prop_assert!(s.in_flight() <= l.max_in_flight);
        }
        // Let everything finish.
        let mut guard = 0;
        while s.queued() > 0 || !in_flight.is_empty() {
            guard += 1;
            prop_assert!(guard < 100_000, "no progress");
            if let Some((chat, _)) = in_flight.first().copied() {
                in_flight.remove(0);
                s.complete(chat);
                delivered += 1;
            }
            match s.next(now, |_| true) {
                Next::Send(d) => {
                    sent.push(Sent { step: usize::MAX, at: now, chat: d.chat_id, seq: d.seq });
                    in_flight.push((d.chat_id, d.seq));
                }
                Next::WaitUntil(t) => { prop_assert!(t > now); now = t; }
                Next::Idle => prop_assert!(!in_flight.is_empty() || s.queued() == 0, "idle with work queued"),
            }
        }
        prop_assert_eq!(delivered, seq, "every pushed message completes once");

        let real = sent;
        for (who, from_step, until) in &cools {
            for x in &real {
                let hit = who.is_none_or(|c| c == x.chat) && x.step >= *from_step && x.at < *until;
                prop_assert!(!hit, "sent during a cooldown: {:?} in {:?}", x, (who, from_step, until));
            }
        }

        let margin = ticks(l.jitter_margin);
        // Bot window.
        let bot_window = ticks(l.bot_window) + margin;
        let mut times: Vec<Tick> = real.iter().map(|x| x.at).collect();
        times.sort_unstable();
        for w in times.windows(l.bot_max as usize + 1) {
            prop_assert!(w[l.bot_max as usize] - w[0] >= bot_window, "bot window broken: {:?}", w);
        }
        let mut by_chat: HashMap<i64, Vec<Sent>> = HashMap::new();
        for x in &real {
            by_chat.entry(x.chat).or_default().push(*x);
        }
        for (chat, xs) in by_chat {
            // FIFO: a chat's seqs never go backwards (a retry repeats one).
            for w in xs.windows(2) {
                prop_assert!(w[0].seq <= w[1].seq, "chat {} out of order: {:?}", chat, xs);
            }
            // Bucket: any run of sends fits burst + rate * elapsed.
            for i in 0..xs.len() {
                for j in i..xs.len() {
                    let n = (j - i + 1) as f64;
                    let elapsed = (xs[j].at - xs[i].at) as f64 / S as f64;
                    prop_assert!(n <= l.chat_burst as f64 + l.chat_rate * elapsed + 1e-6,
                        "chat {} bucket broken: {} sends in {}s", chat, n, elapsed);
                }
            }
            if chat < 0 {
                let gw = ticks(l.group_window) + margin;
                let g = l.group_max as usize;
                for w in xs.windows(g + 1) {
                    prop_assert!(w[g].at - w[0].at >= gw, "group window broken");
                }
            }
        }
    }
}
