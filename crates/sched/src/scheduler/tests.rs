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

/// An album of ten into one chat goes at once from a full bucket, is
/// charged all ten (the chat's bucket goes into debt), holds ten of the
/// group's and the bot's slots, and the chat's next message waits until
/// the debt is paid.
#[test]
fn an_album_needs_room_for_a_full_bucket_and_is_charged_every_item() {
    let mut s = Scheduler::new(limits());
    s.push_items(-5, 0, Priority::Normal, 10, 0, 0)
        .expect("room");
    s.push(-5, 1, 1, 0).expect("room");
    let Next::Send(album) = s.next(0, |_| true) else {
        panic!("a full bucket has room for the album")
    };
    assert_eq!((album.seq, album.items), (0, 10));
    s.complete_items(-5, album.items, 0);
    // Ten charged at 1/0.9 s each, three of them covered by the burst.
    match s.next(0, |_| true) {
        Next::WaitUntil(t) => assert_eq!(t, 8 * 1_111_112, "waits out the debt"),
        other => panic!("the next message must wait: {other:?}"),
    }
    // The group window counts ten: 20 per minute leave ten more.
    for (i, chat) in (100..110).enumerate() {
        s.push(-chat, 10 + i as u64, 0, 0).expect("room");
    }
    let sent = drain_now(&mut s, 0);
    assert_eq!(sent.len(), 10, "ten other groups; the bot window holds 30");
    s.push_items(-200, 50, Priority::Normal, 11, 0, 0)
        .expect("room");
    assert!(
        drain_now(&mut s, 0).is_empty(),
        "10 + 10 in the bot's window leave 10: no room for 11"
    );
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
                s.complete(d.chat_id, now);
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
                s.complete(d.chat_id, now);
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
        s.complete(d.chat_id, 4 * S);
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
    s.complete(7, 0);
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
    s.complete(1, 0);
    drain_now(&mut s, 0);
    s.complete(1, 0);
    drain_now(&mut s, 0);
    s.complete(1, 0);
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
                s.complete(d.chat_id, now);
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
                s.complete(d.chat_id, now);
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
fn a_request_holds_its_bot_slot_as_now_until_it_completes() {
    let mut s = Scheduler::new(Limits {
        bot_max: 3,
        ..limits()
    });
    for chat in 1..=6 {
        s.push(chat, chat as u64, 0, 0).expect("room");
    }
    assert_eq!(drain_now(&mut s, 0), vec![(1, 1), (2, 2), (3, 3)]);
    // Three in flight: whatever the time, only a completion frees a slot.
    assert!(matches!(s.next(5 * S, |_| true), Next::Idle));
    s.complete(1, 10 * MS);
    s.complete(2, 10 * MS);
    // Chat 3 is still in flight (it may not have arrived yet): it counts as
    // now, so two slots free a window after the two completions, not after
    // the dispatch.
    assert!(matches!(s.next(S, |_| true), Next::WaitUntil(t) if t == S + 10 * MS));
    assert_eq!(drain_now(&mut s, S + 10 * MS), vec![(4, 4), (5, 5)]);
    assert!(matches!(s.next(9 * S, |_| true), Next::Idle));
    // Chat 3's answer came at 1.5 s: its slot frees at 2.5 s.
    s.complete(3, 1_500 * MS);
    assert!(matches!(s.next(2 * S, |_| true), Next::WaitUntil(t) if t == 2_500 * MS));
    assert_eq!(drain_now(&mut s, 2_500 * MS), vec![(6, 6)]);
}

#[test]
fn a_group_slot_is_fixed_at_completion() {
    let mut s = Scheduler::new(Limits {
        chat_burst: 100,
        chat_rate: 100.0,
        group_max: 2,
        ..limits()
    });
    for seq in 0..3 {
        s.push(-7, seq, seq, 0).expect("room");
    }
    assert_eq!(drain_now(&mut s, 0), vec![(-7, 0)]);
    // The first answer took 2 s: it may have arrived at the server then.
    s.complete(-7, 2 * S);
    assert_eq!(drain_now(&mut s, 2 * S), vec![(-7, 1)]);
    s.complete(-7, 2 * S);
    // So the third waits until the first's completion leaves the window,
    // not its dispatch.
    assert!(matches!(s.next(3 * S, |_| true), Next::WaitUntil(t) if t == 62 * S));
    assert!(drain_now(&mut s, 62 * S - 1).is_empty());
    assert_eq!(drain_now(&mut s, 62 * S), vec![(-7, 2)]);
}

#[test]
fn chat_bucket_is_consumed_at_completion() {
    let mut s = Scheduler::new(Limits {
        chat_burst: 1,
        chat_rate: 1.0,
        ..limits()
    });
    s.push(7, 0, 0, 0).expect("room");
    s.push(7, 1, 1, 0).expect("room");
    assert_eq!(drain_now(&mut s, 0), vec![(7, 0)]);
    // Answered after 300 ms: it may have arrived then, so the next one goes
    // a whole interval later.
    s.complete(7, 300 * MS);
    assert!(matches!(s.next(300 * MS, |_| true), Next::WaitUntil(t) if t == 1_300 * MS));
    assert_eq!(drain_now(&mut s, 1_300 * MS), vec![(7, 1)]);
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
            priority: Priority::Normal,
            items: 1,
            paid: false,
            item: 3,
        },
        0,
    );
    let order: Vec<u64> = (0..3)
        .map(|_| match s.next(0, |_| true) {
            Next::Send(d) => {
                s.complete(1, 0);
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
        s.complete(1, 0);
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
                s.complete(d.chat_id, now);
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
            Next::Send(d) => s.complete(d.chat_id, now),
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
    Push {
        chat: i64,
        class: Priority,
        /// Messages in the request (an album): mostly 1.
        items: u16,
    },
    Advance {
        ms: u64,
    },
    /// Completes one in-flight request (picked by index), answered `back_ms`
    /// before now (never before its dispatch): answers reach the scheduler
    /// late and out of order.
    Complete {
        pick: usize,
        back_ms: u64,
    },
    Retry429 {
        secs: u64,
    },
    /// A failed attempt (it may still have reached the server), retried
    /// after a backoff.
    Transient {
        pick: usize,
        backoff_ms: u64,
    },
    BotThrottle {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (-3i64..6, 0usize..3, prop_oneof![4 => Just(1u16), 1 => 2u16..12]).prop_map(|(c, k, items)| Op::Push { chat: if c == 0 { 9 } else { c }, class: Priority::ALL[k], items }),
        4 => (0u64..700).prop_map(|ms| Op::Advance { ms }),
        4 => (0usize..8, prop_oneof![Just(0u64), 0u64..400]).prop_map(|(pick, back_ms)| Op::Complete { pick, back_ms }),
        1 => (1u64..4).prop_map(|secs| Op::Retry429 { secs }),
        1 => (0usize..8, 0u64..2_000).prop_map(|(pick, backoff_ms)| Op::Transient { pick, backoff_ms }),
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
        prop_oneof![Just(0u64), 0u64..20],
        1u32..10,
        1u32..4,
        0u32..=100,
    )
        .prop_map(
            |(
                burst,
                rate_tenths,
                group_max,
                group_s,
                bot_max,
                margin_ms,
                in_flight,
                bot_burst,
                share_pct,
            )| {
                Limits {
                    chat_burst: burst,
                    chat_rate: rate_tenths as f64 / 10.0,
                    group_max,
                    group_window: Duration::from_secs(group_s),
                    bot_max,
                    bot_window: Duration::from_secs(1),
                    paid_bot_max: 1_000,
                    bot_burst,
                    jitter_margin: Duration::from_millis(margin_ms),
                    max_in_flight: in_flight,
                    queue_max: 10_000,
                    chat_queue_max: 10_000,
                    bulk_min_share: f64::from(share_pct) / 100.0,
                }
            },
        )
}

/// One attempt of one message: dispatched at `d`, completed at `c`; the
/// server counted it at some time in `[d, c]`.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// How many ops had run when it was sent (orders it against cooldowns).
    step: usize,
    chat: i64,
    seq: u64,
    /// Messages it carried (the server counts each).
    items: u16,
    d: Tick,
    c: Tick,
}

/// Checks that, for *every* choice of arrival times `d <= a <= c`, no
/// half-open window of length `window` holds more than `max` arrivals.
///
/// Arrivals can be chosen independently, so some choice puts `max + 1` in
/// one window `[s, s + window)` exactly when `max + 1` intervals `[d, c]`
/// meet it (`d < s + window` and `c >= s`). Sliding `s` up to the smallest
/// `c` of those keeps them all, so trying `s = c_i` for every `i` is exact.
fn every_arrival_fits_window(xs: &[Attempt], max: u32, window: Tick) -> Result<(), String> {
    for x in xs {
        let s = x.c;
        let inside: Vec<&Attempt> = xs.iter().filter(|y| y.c >= s && y.d < s + window).collect();
        if inside.len() > max as usize {
            return Err(format!(
                "{} requests can arrive in [{s}, {}): {inside:?}",
                inside.len(),
                s + window
            ));
        }
        // Requests of many: the server takes one when the window has room
        // for min(items, max) of it, counting every earlier arrival's items.
        // Each `r` arriving last in [s, s + window), as late as it can,
        // after every request that can arrive in [s, that time]:
        for r in &inside {
            let t = r.c.min(s + window - 1);
            let before: u64 = inside
                .iter()
                .filter(|j| !std::ptr::eq(**j, *r) && j.d.max(s) <= t)
                .map(|j| u64::from(j.items))
                .sum();
            let need = u64::from(r.items).min(u64::from(max));
            if before + need > u64::from(max) {
                return Err(format!(
                    "{before} messages can arrive in [{s}, {t}] before a request of {} ({r:?})",
                    r.items
                ));
            }
        }
    }
    Ok(())
}

/// Checks that, for every choice of arrival times, one chat's attempts (in
/// order) fit a token bucket of `burst` refilled at `rate`/s: a sequence
/// fits exactly when every run `i..=j` has `j - i + 1 <= burst + rate *
/// (a_j - a_i)`, and the worst arrivals for a run are `a_i = c_i`,
/// `a_j = d_j`.
fn every_arrival_fits_bucket(xs: &[Attempt], burst: u32, rate: f64) -> Result<(), String> {
    for i in 0..xs.len() {
        for j in i + 1..xs.len() {
            let n = (j - i + 1) as f64;
            let span = xs[j].d as f64 - xs[i].c as f64;
            if n > f64::from(burst) + rate * span / S as f64 + 1e-9 {
                return Err(format!(
                    "{n} requests of chat {} can arrive within {span} µs",
                    xs[i].chat
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random pushes of every class, completions (late, out of order), 429s,
    /// failures and clock jumps: order per chat and class is kept, nothing
    /// goes during a cooldown,
    /// everything completes once in the end, and every limit holds at the
    /// server for every possible arrival time (see [`Window`]).
    #[test]
    fn arrivals_fit_the_servers_limits(
        l in random_limits(),
        ops in prop::collection::vec(op(), 1..200),
        placement in prop::collection::vec(0u8..=255, 400),
    ) {
        let mut s: Scheduler<u64> = Scheduler::new(l.clone());
        let mut now: Tick = 0;
        let mut seq = 0u64;
        // The class of each seq.
        let mut classes: Vec<Priority> = Vec::new();
        // The item count of each seq.
        let mut items: Vec<u16> = Vec::new();
        let mut done: Vec<Attempt> = Vec::new();
        let mut in_flight: Vec<Attempt> = Vec::new();
        // (chat or None for the bot, step it was set at, until): nothing may go in between.
        let mut cools: Vec<(Option<i64>, usize, Tick)> = Vec::new();
        let mut delivered = 0u64;

        let pump = |s: &mut Scheduler<u64>, step: usize, now: Tick, in_flight: &mut Vec<Attempt>| {
            while let Next::Send(d) = s.next(now, |_| true) {
                in_flight.push(Attempt { step, chat: d.chat_id, seq: d.seq, items: d.items, d: now, c: Tick::MAX });
            }
        };
        let finish = |s: &mut Scheduler<u64>, done: &mut Vec<Attempt>, mut x: Attempt, at: Tick| {
            x.c = at.max(x.d);
            s.complete_items(x.chat, x.items, x.c);
            done.push(x);
        };

        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push { chat, class, items: n } => {
                    s.push_items(chat, seq, class, n, seq, now).expect("bounds are large");
                    classes.push(class);
                    items.push(n);
                    seq += 1;
                }
                Op::Advance { ms } => now += ms * MS,
                Op::Complete { pick, back_ms } => {
                    if !in_flight.is_empty() {
                        let x = in_flight.remove(pick % in_flight.len());
                        finish(&mut s, &mut done, x, now.saturating_sub(back_ms * MS));
                        delivered += 1;
                    }
                }
                Op::Retry429 { secs } => {
                    if !in_flight.is_empty() {
                        let x = in_flight.remove(0);
                        let until = now + secs * S;
                        s.cool_chat(x.chat, until);
                        s.requeue(x.chat, Queued { seq: x.seq, not_before: 0, priority: classes[x.seq as usize], items: items[x.seq as usize], paid: false, item: x.seq }, now);
                        finish(&mut s, &mut done, x, now);
                        cools.push((Some(x.chat), step, until));
                    }
                }
                Op::Transient { pick, backoff_ms } => {
                    if !in_flight.is_empty() {
                        let x = in_flight.remove(pick % in_flight.len());
                        finish(&mut s, &mut done, x, now);
                        s.requeue(x.chat, Queued { seq: x.seq, not_before: now + backoff_ms * MS, priority: classes[x.seq as usize], items: items[x.seq as usize], paid: false, item: x.seq }, now);
                    }
                }
                Op::BotThrottle { secs } => {
                    cools.push((None, step, now + secs * S));
                    s.cool_bot(now + secs * S);
                }
            }
            pump(&mut s, step, now, &mut in_flight);
            prop_assert!(s.in_flight() <= l.max_in_flight);
            prop_assert_eq!(s.in_flight() as usize, in_flight.len());
        }
        // Let everything finish.
        let mut guard = 0;
        while s.queued() > 0 || !in_flight.is_empty() {
            guard += 1;
            prop_assert!(guard < 100_000, "no progress");
            if !in_flight.is_empty() {
                let x = in_flight.remove(0);
                finish(&mut s, &mut done, x, now);
                delivered += 1;
            }
            match s.next(now, |_| true) {
                Next::Send(d) => {
                    in_flight.push(Attempt { step: usize::MAX, chat: d.chat_id, seq: d.seq, items: d.items, d: now, c: Tick::MAX });
                }
                Next::WaitUntil(t) => { prop_assert!(t > now); now = t; }
                Next::Idle => prop_assert!(!in_flight.is_empty() || s.queued() == 0, "idle with work queued"),
            }
        }
        prop_assert_eq!(delivered, seq, "every pushed message completes once");

        for (who, from_step, until) in &cools {
            for x in &done {
                let hit = who.is_none_or(|c| c == x.chat) && x.step >= *from_step && x.d < *until;
                prop_assert!(!hit, "sent during a cooldown: {:?} in {:?}", x, (who, from_step, until));
            }
        }

        // The server's windows, with the margin as extra slack (so the
        // claim is checked at its tightest, `margin = 0`, too).
        let margin = ticks(l.jitter_margin);
        if let Err(e) = every_arrival_fits_window(&done, l.bot_max, ticks(l.bot_window) + margin) {
            prop_assert!(false, "bot window: {}", e);
        }
        let mut by_chat: HashMap<i64, Vec<Attempt>> = HashMap::new();
        for x in &done {
            by_chat.entry(x.chat).or_default().push(*x);
        }
        for (chat, mut xs) in by_chat {
            xs.sort_by_key(|x| x.d);
            // FIFO per chat and class: its seqs never go backwards (a
            // retry repeats one).
            for class in Priority::ALL {
                let mut last = None;
                for x in xs.iter().filter(|x| classes[x.seq as usize] == class) {
                    prop_assert!(last <= Some(x.seq), "chat {} {:?} out of order: {:?}", chat, class, xs);
                    last = Some(x.seq);
                }
            }
            for w in xs.windows(2) {
                prop_assert!(w[0].c <= w[1].d, "chat {} had two in flight: {:?}", chat, w);
            }
            // The exhaustive bucket check is for single messages; requests
            // of many meet the emulator's bucket below.
            if xs.iter().all(|x| x.items == 1)
                && let Err(e) = every_arrival_fits_bucket(&xs, l.chat_burst, l.chat_rate)
            {
                prop_assert!(false, "chat bucket: {}", e);
            }
            if chat < 0
                && let Err(e) = every_arrival_fits_window(&xs, l.group_max, ticks(l.group_window) + margin)
            {
                prop_assert!(false, "group window: {}", e);
            }
        }

        // And the emulator itself, fed one concrete choice of arrivals
        // (biased to the ends of each interval, where the worst cases are):
        // it must accept every attempt.
        let epoch = std::time::Instant::now();
        let mut limiter = shardgate_mock::Limiter::new(
            shardgate_mock::Limits {
                chat_burst: l.chat_burst,
                chat_rate_per_s: l.chat_rate,
                group_max: l.group_max,
                group_window: l.group_window,
                bot_max: l.bot_max,
                bot_window: l.bot_window,
            },
            epoch,
        );
        let mut arrivals: Vec<(Tick, i64, u16)> = done
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let p = placement[i % placement.len()];
                let a = match p {
                    0..=99 => x.d,
                    100..=199 => x.c,
                    _ => x.d + (x.c - x.d) * u64::from(p - 200) / 55,
                };
                (a, x.chat, x.items)
            })
            .collect();
        arrivals.sort_unstable();
        for (a, chat, n) in arrivals {
            let verdict = limiter.check_many(1, chat, u32::from(n), false, epoch + Duration::from_micros(a)).map(|_| ());
            prop_assert!(verdict.is_ok(), "the emulator refused chat {} at {} µs: {:?}", chat, a, verdict);
        }
    }
}

/// The slab and the per-chat lists agree: every chat's list holds its
/// `len` messages in `seq` order, the occupied slots are exactly the queued
/// messages, and every other slot is on the free list. Returns each chat's
/// queued (seq, item).
fn check_structure(s: &Scheduler<u64>) -> Result<HashMap<i64, Vec<(u64, u64)>>, String> {
    let mut queues = HashMap::new();
    let mut linked = 0;
    for (id, chat) in &s.chats {
        let mut seqs = Vec::new();
        if chat.tail != NIL {
            let mut at = s.slab.next(chat.tail);
            loop {
                let q = s
                    .slab
                    .get(at)
                    .ok_or(format!("chat {id}: free slot {at} linked"))?;
                seqs.push((q.seq, q.item));
                if at == chat.tail {
                    break;
                }
                at = s.slab.next(at);
                if seqs.len() > s.slab.nodes.len() {
                    return Err(format!("chat {id}: list does not come back to its tail"));
                }
            }
        }
        if seqs.len() != chat.len() {
            return Err(format!(
                "chat {id}: {} linked, len {}",
                seqs.len(),
                chat.len()
            ));
        }
        if !seqs.is_sorted_by_key(|(seq, _)| *seq) {
            return Err(format!("chat {id}: out of seq order {seqs:?}"));
        }
        linked += seqs.len();
        queues.insert(*id, seqs);
    }
    let occupied = s.slab.nodes.iter().filter(|n| n.stored.is_some()).count();
    let mut free = 0;
    let mut at = s.slab.free;
    while at != NIL {
        free += 1;
        if free > s.slab.nodes.len() || s.slab.get(at).is_some() {
            return Err(format!("free list broken at {at}"));
        }
        at = s.slab.next(at);
    }
    if linked != s.queued() || occupied != s.queued() || free + occupied != s.slab.nodes.len() {
        return Err(format!(
            "{linked} linked, {occupied} occupied, {free} free, {} slots, {} queued",
            s.slab.nodes.len(),
            s.queued()
        ));
    }
    Ok(queues)
}

/// One step of a workload on the queue structure.
#[derive(Debug, Clone)]
enum QOp {
    Push {
        chat: i64,
    },
    /// Puts back a message sent earlier (picked by index), or an old seq
    /// from another bot, in `seq` order.
    Requeue {
        chat: i64,
        pick: usize,
    },
    /// Asks for the next message; drops it when `drop` is set.
    Next {
        drop: bool,
    },
    Complete {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    Cool {
        chat: i64,
        secs: u64,
    },
    Rename {
        from: i64,
        to: i64,
    },
    Gc,
    Drain,
}

fn qop() -> impl Strategy<Value = QOp> {
    let chat = prop_oneof![-3i64..0, 1i64..5];
    prop_oneof![
        6 => chat.clone().prop_map(|chat| QOp::Push { chat }),
        2 => (chat.clone(), 0usize..16).prop_map(|(chat, pick)| QOp::Requeue { chat, pick }),
        5 => any::<bool>().prop_map(|d| QOp::Next { drop: d }),
        4 => (0usize..8).prop_map(|pick| QOp::Complete { pick }),
        3 => (0u64..3_000).prop_map(|ms| QOp::Advance { ms }),
        1 => (chat.clone(), 1u64..3).prop_map(|(chat, secs)| QOp::Cool { chat, secs }),
        1 => (chat.clone(), chat).prop_map(|(from, to)| QOp::Rename { from, to }),
        1 => Just(QOp::Gc),
        1 => Just(QOp::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The queues behave like one `seq`-ordered list per chat (checked
    /// against such a model after every step, through requeues, drops,
    /// renames and drains), the slab never leaks a slot, `gc` keeps no
    /// stale heap entries beyond its bound and no sparse slab, and once
    /// everything is sent and idle the memory is given back.
    #[test]
    fn queues_match_a_model_and_the_slab_never_leaks(
        ops in prop::collection::vec(qop(), 1..300),
    ) {
        let mut s: Scheduler<u64> = Scheduler::new(limits());
        // Each chat's (seq, item); items are unique, seqs may repeat.
        let mut model: HashMap<i64, Vec<(u64, u64)>> = HashMap::new();
        let mut item = 0u64;
        let mut now: Tick = 0;
        let mut seq = 1_000u64;
        let mut in_flight: Vec<(i64, u64)> = Vec::new();
        let mut sent: Vec<u64> = Vec::new();
        let model_insert = |model: &mut HashMap<i64, Vec<(u64, u64)>>, chat: i64, q: (u64, u64)| {
            let list = model.entry(chat).or_default();
            let pos = list.iter().position(|(s, _)| *s >= q.0).unwrap_or(list.len());
            list.insert(pos, q);
        };
        for op in ops {
            match op {
                QOp::Push { chat } => {
                    s.push(chat, seq, item, now).expect("bounds are large");
                    model_insert(&mut model, chat, (seq, item));
                    seq += 1;
                    item += 1;
                }
                QOp::Requeue { chat, pick } => {
                    let old = sent.get(pick).copied().unwrap_or(pick as u64);
                    s.requeue(chat, Queued { seq: old, not_before: now + 100 * MS, priority: Priority::Normal, items: 1, paid: false, item }, now);
                    model_insert(&mut model, chat, (old, item));
                    item += 1;
                }
                QOp::Next { drop } => {
                    let mut dropped = Vec::new();
                    let next = s.next(now, |item| {
                        if drop {
                            dropped.push(*item);
                        }
                        !drop
                    });
                    for d in dropped {
                        // A dropped candidate was the head of its chat.
                        let head = model.values_mut().find(|q| q.first().is_some_and(|h| h.1 == d));
                        prop_assert!(head.is_some(), "dropped {} was no chat's head", d);
                        if let Some(q) = head {
                            q.remove(0);
                        }
                    }
                    match next {
                    Next::Send(d) => {
                        let q = model.get_mut(&d.chat_id).expect("a chat the model knows");
                        prop_assert_eq!(q.first().copied(), Some((d.seq, d.item)), "not the chat's head");
                        q.remove(0);
                        prop_assert!(!in_flight.iter().any(|(c, _)| *c == d.chat_id), "two in flight");
                        in_flight.push((d.chat_id, d.seq));
                        sent.push(d.seq);
                    }
                    Next::WaitUntil(t) => prop_assert!(t > now),
                    Next::Idle => {}
                    }
                }
                QOp::Complete { pick } => {
                    if !in_flight.is_empty() {
                        let (chat, _) = in_flight.remove(pick % in_flight.len());
                        s.complete(chat, now);
                    }
                }
                QOp::Advance { ms } => now += ms * MS,
                QOp::Cool { chat, secs } => s.cool_chat(chat, now + secs * S),
                QOp::Rename { from, to } => {
                    s.rename_chat(from, to, now);
                    for q in model.remove(&from).unwrap_or_default() {
                        model_insert(&mut model, to, q);
                    }
                }
                QOp::Gc => {
                    s.gc(now);
                    prop_assert!(s.slab.nodes.len() <= 4 * s.queued() + 64, "sparse slab after gc");
                    let waiting = s.chats.values().filter(|c| c.tail != NIL && !c.in_flight()).count();
                    prop_assert!(s.heap_entries() <= 2 * waiting, "stale heap entries after gc");
                }
                QOp::Drain => {
                    let out = s.drain();
                    let mut expect: Vec<(u64, u64)> = model.values().flatten().copied().collect();
                    expect.sort_unstable();
                    let mut got: Vec<(u64, u64)> = out.iter().map(|d| (d.seq, d.item)).collect();
                    prop_assert!(got.is_sorted_by_key(|(seq, _)| *seq), "not oldest first");
                    got.sort_unstable();
                    prop_assert_eq!(got, expect);
                    model.clear();
                    prop_assert_eq!(s.slab.nodes.len(), 0);
                }
            }
            model.retain(|_, q| !q.is_empty());
            let queues = check_structure(&s).map_err(TestCaseError::fail)?;
            let queues: HashMap<i64, Vec<(u64, u64)>> = queues.into_iter().filter(|(_, q)| !q.is_empty()).collect();
            prop_assert_eq!(&queues, &model);
            prop_assert_eq!(s.active_chats(), model.len());
        }
        // Send and complete everything, then let every limit go idle.
        for (chat, _) in in_flight.drain(..) {
            s.complete(chat, now);
        }
        let mut guard = 0;
        while s.queued() > 0 {
            guard += 1;
            prop_assert!(guard < 10_000, "no progress");
            match s.next(now, |_| true) {
                Next::Send(d) => s.complete(d.chat_id, now),
                Next::WaitUntil(t) => now = t,
                Next::Idle => prop_assert!(false, "idle with work queued"),
            }
        }
        s.gc(now + 3_600 * S);
        prop_assert_eq!(s.tracked_chats(), 0);
        prop_assert_eq!(s.chats.capacity(), 0, "the chat map keeps its table");
        prop_assert_eq!(s.groups.capacity(), 0, "the group map keeps its table");
        prop_assert_eq!(s.slab.nodes.len(), 0);
        prop_assert_eq!(s.heap_entries(), 0);
    }
}

#[test]
fn memory_is_given_back_after_many_chats_go_idle() {
    let mut s = Scheduler::new(limits());
    for chat in 1..=10_000 {
        s.push(chat, chat as u64, 0, 0).expect("room");
    }
    assert!(s.slab.nodes.capacity() >= 10_000);
    let mut now = 0;
    while s.queued() > 0 {
        match s.next(now, |_| true) {
            Next::Send(d) => s.complete(d.chat_id, now),
            Next::WaitUntil(t) => now = t,
            Next::Idle => panic!("idle with work queued"),
        }
    }
    // Nothing queued: no message storage is left, only the chats' state.
    assert_eq!(s.slab.nodes.capacity(), 0);
    for lane in &s.lanes {
        assert_eq!(lane.waiting.capacity() + lane.ready.capacity(), 0);
    }
    assert_eq!(s.tracked_chats(), 10_000);
    s.gc(now + 10 * S);
    assert_eq!(s.tracked_chats(), 0);
    assert_eq!(s.chats.capacity(), 0);
}
