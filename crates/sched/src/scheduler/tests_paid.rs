//! Tests of the paid lane (`allow_paid_broadcast`): the free rate is used
//! first, paid messages go over it up to `paid_bot_max`, messages without
//! the flag never do, and the emulator's limiter accepts every arrival.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const MS: Tick = 1_000;
const S: Tick = 1_000_000;

/// A paid message into chat `chat` (the scheduler's item is its seq).
fn paid(seq: u64) -> Queued<u64> {
    Queued {
        seq,
        not_before: 0,
        priority: Priority::Normal,
        items: 1,
        paid: true,
        item: seq,
    }
}

/// Runs `n` messages to distinct private chats (paid or not) for `secs`,
/// each completing 1 ms after it went: (sent per second of each second,
/// messages sent over the free rate).
fn run(n: u64, with_flag: bool, secs: u64) -> (Vec<u64>, u64) {
    let mut s: Scheduler<u64> = Scheduler::new(Limits::default());
    for seq in 0..n {
        let chat = seq as i64 + 1;
        let q = Queued {
            paid: with_flag,
            ..paid(seq)
        };
        s.push_queued(chat, q, 0).expect("room");
    }
    let mut per_second = vec![0u64; secs as usize];
    let mut over = 0;
    let mut in_flight: Vec<(i64, Tick)> = Vec::new();
    let mut now: Tick = 0;
    while now < secs * S {
        in_flight.retain(|&(chat, done)| {
            if done <= now {
                s.complete(chat, done);
                false
            } else {
                true
            }
        });
        while let Next::Send(d) = s.next(now, |_| true) {
            per_second[(now / S) as usize] += 1;
            over += u64::from(d.over_free_rate);
            in_flight.push((d.chat_id, now + MS));
        }
        now += 100;
    }
    (per_second, over)
}

#[test]
fn paid_messages_go_past_the_free_rate_up_to_paid_bot_max() {
    let (per_second, over) = run(5_000, true, 3);
    for (i, sent) in per_second.iter().enumerate() {
        assert!(*sent <= 1_000, "second {i}: {sent} > paid_bot_max");
        assert!(*sent >= 900, "second {i}: only {sent} on the paid lane");
    }
    let total: u64 = per_second.iter().sum();
    assert!(
        over > 0 && over < total,
        "{over} of {total} over the free rate"
    );
}

#[test]
fn the_same_load_without_the_flag_stays_at_the_free_rate() {
    let (per_second, over) = run(5_000, false, 3);
    assert_eq!(over, 0);
    for (i, sent) in per_second.iter().enumerate() {
        assert!(*sent <= 30, "second {i}: {sent} without the flag");
        assert!(*sent >= 29, "second {i}: {sent}");
    }
}

#[test]
fn a_paid_message_that_fits_the_free_rate_is_not_counted_as_paid() {
    let mut s: Scheduler<u64> = Scheduler::new(Limits::default());
    s.push_queued(1, paid(0), 0).expect("room");
    let Next::Send(d) = s.next(0, |_| true) else {
        panic!("the free window is empty");
    };
    assert!(!d.over_free_rate);
}

#[test]
fn no_paid_lane_when_paid_bot_max_is_not_above_bot_max() {
    let limits = Limits {
        paid_bot_max: 30,
        ..Limits::default()
    };
    assert_eq!(limits.paid_lane(), None);
    let mut s: Scheduler<u64> = Scheduler::new(limits);
    for seq in 0..100 {
        s.push_queued(seq as i64 + 1, paid(seq), 0).expect("room");
    }
    let mut sent = 0;
    while let Next::Send(d) = s.next(0, |_| true) {
        assert!(!d.over_free_rate);
        sent += 1;
    }
    assert_eq!(sent, 2, "the free rate's even spacing (bot_burst) only");
}

/// A message without the flag must find fewer than `bot_max` messages in
/// its window when it arrives; a paid one dispatched after it could arrive
/// first, so the paid lane waits for free-rate requests to complete.
#[test]
fn the_paid_lane_waits_while_a_free_rate_request_is_in_flight() {
    let limits = Limits {
        bot_burst: 1_000,
        ..Limits::default()
    };
    let mut s: Scheduler<u64> = Scheduler::new(limits);
    s.push(1, 0, 0, 0).expect("room");
    let Next::Send(first) = s.next(0, |_| true) else {
        panic!("free");
    };
    assert!(!first.over_free_rate);
    for seq in 1..40 {
        s.push_queued(seq as i64 + 1, paid(seq), 0).expect("room");
    }
    let mut sent = 0;
    while let Next::Send(d) = s.next(0, |_| true) {
        assert!(!d.over_free_rate, "the free rate is used first");
        sent += 1;
    }
    assert!(sent >= 14, "{sent}");
    assert!(s.in_flight() <= s.limits().max_in_flight);
    // Complete every free-rate request; the paid lane opens.
    for chat in 1..=40 {
        s.complete(chat, MS);
    }
    let mut over = 0;
    while let Next::Send(d) = s.next(MS, |_| true) {
        if d.over_free_rate {
            over += 1;
        }
        s.complete(d.chat_id, MS);
    }
    assert!(over > 0);
}

#[derive(Debug, Clone)]
struct Msg {
    chat: i64,
    paid: bool,
    items: u16,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        prop_oneof![8 => 1i64..400, 1 => -6i64..0],
        prop::bool::weighted(0.7),
        prop_oneof![9 => Just(1u16), 1 => 2u16..5],
    )
        .prop_map(|(chat, paid, items)| Msg { chat, paid, items })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random mixes of paid and unpaid messages, with random round trips
    /// and any arrival inside each one: the emulator, which holds the
    /// paid lane to `paid_bot_max` per window once the free rate is used
    /// and every other message to `bot_max`, accepts every arrival.
    #[test]
    fn paid_and_free_arrivals_fit_the_emulators_limits(
        msgs in prop::collection::vec(msg(), 1..1_500),
        paid_bot_max in prop_oneof![Just(1_000u32), 31u32..120],
        trips in prop::collection::vec(0u64..40, 64),
        placement in prop::collection::vec(0u8..=255, 64),
        in_flight_max in 1u32..32,
    ) {
        let limits = Limits { paid_bot_max, max_in_flight: in_flight_max, ..Limits::default() };
        let mut s: Scheduler<u64> = Scheduler::new(limits.clone());
        for (seq, m) in msgs.iter().enumerate() {
            let q = Queued { paid: m.paid, items: m.items, ..paid(seq as u64) };
            s.push_queued(m.chat, q, 0).expect("room");
        }
        // (dispatch, completion, seq).
        let mut done: Vec<(Tick, Tick, u64, bool)> = Vec::new();
        let mut in_flight: Vec<(Tick, Tick, u64, bool)> = Vec::new();
        let mut now: Tick = 0;
        let mut guard = 0;
        while s.queued() > 0 || !in_flight.is_empty() {
            guard += 1;
            prop_assert!(guard < 1_000_000, "no progress");
            in_flight.sort_by_key(|x| x.1);
            while let Some(x) = in_flight.first().copied().filter(|x| x.1 <= now) {
                in_flight.remove(0);
                let m = &msgs[x.2 as usize];
                s.complete_items(m.chat, m.items, x.1);
                done.push(x);
            }
            let mut wait = None;
            loop {
                match s.next(now, |_| true) {
                    Next::Send(d) => {
                        prop_assert!(!d.over_free_rate || msgs[d.seq as usize].paid, "only a paid message goes over the free rate");
                        let trip = trips[(d.seq as usize) % trips.len()] * MS / 4;
                        in_flight.push((now, now + trip, d.seq, d.over_free_rate));
                    }
                    Next::WaitUntil(t) => { wait = Some(t); break; }
                    Next::Idle => break,
                }
            }
            let next_done = in_flight.iter().map(|x| x.1).min();
            now = match (wait, next_done) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(now),
            }.max(now + 1);
        }
        let epoch = std::time::Instant::now();
        let mut limiter = shardgate_mock::Limiter::new(
            shardgate_mock::Limits {
                chat_burst: limits.chat_burst,
                chat_rate_per_s: limits.chat_rate,
                group_max: limits.group_max,
                group_window: limits.group_window,
                bot_max: limits.bot_max,
                bot_window: limits.bot_window,
            },
            epoch,
        )
        .with_paid_bot_max(paid_bot_max);
        let mut arrivals: Vec<(Tick, Tick, u64)> = done
            .iter()
            .map(|&(d, c, seq, _)| {
                let p = placement[(seq as usize) % placement.len()];
                let a = match p {
                    0..=99 => d,
                    100..=199 => c,
                    _ => d + (c - d) * u64::from(p - 200) / 55,
                };
                (a, d, seq)
            })
            .collect();
        // At equal arrival times, in dispatch order (a later dispatch
        // cannot overtake an earlier one that is already answered).
        arrivals.sort_unstable();
        for (a, _, seq) in arrivals {
            let m = &msgs[seq as usize];
            let verdict = limiter.check_many(1, m.chat, u32::from(m.items), m.paid, epoch + Duration::from_micros(a));
            prop_assert!(verdict.is_ok(), "the emulator refused {:?} (seq {}) at {} µs: {:?}", m, seq, a, verdict);
        }
    }
}
