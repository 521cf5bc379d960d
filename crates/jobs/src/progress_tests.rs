//! The tracker against a model of a store, a Telegram that counts what it
//! receives, and crashes at any point.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn ok(chat_id: i64) -> RecipientResult {
    RecipientResult {
        chat_id,
        bot: "b1".into(),
        message_id: 1,
        error: None,
    }
}

fn blocked(chat_id: i64) -> RecipientResult {
    RecipientResult {
        chat_id,
        bot: "b1".into(),
        message_id: 0,
        error: Some(ResultError {
            code: "PERMISSION_DENIED".into(),
            message: "bot was blocked by the user".into(),
        }),
    }
}

#[test]
fn nothing_is_sendable_before_the_store_has_it_in_flight() {
    let window = Window::new(0, vec![10, 20, 30]);
    let mut t = Tracker::resume(ProgressRecord::fresh(3), 16).unwrap();
    assert_eq!(t.reserve(&window, 2), 2);
    assert!(
        t.committed(u64::MAX).is_empty(),
        "released without a checkpoint"
    );
    let cp = t.checkpoint();
    assert_eq!(cp.record.in_flight, vec![10, 20]);
    assert_eq!(cp.record.next, 2);
    assert_eq!(t.committed(cp.seq), vec![10, 20]);
    assert!(t.complete(ok(30)).is_err(), "30 was never released");
    t.complete(ok(10)).unwrap();
    t.complete(blocked(20)).unwrap();
    assert!(t.complete(ok(20)).is_err(), "counted twice");
    let cp = t.checkpoint();
    assert_eq!(cp.results.len(), 2);
    assert!(cp.record.in_flight.is_empty());
    assert_eq!(cp.record.counters.pending(), 1);
}

#[test]
fn after_a_crash_in_flight_recipients_are_sent_again_and_counted_as_possible_duplicates() {
    let window = Window::new(0, vec![1, 2, 3, 4]);
    let mut t = Tracker::resume(ProgressRecord::fresh(4), 16).unwrap();
    t.reserve(&window, 3);
    let cp = t.checkpoint();
    let sent = t.committed(cp.seq);
    t.complete(ok(sent[0])).unwrap();
    let stored = t.checkpoint().record; // 1 delivered, 2 and 3 in flight
    drop(t); // the crash

    let mut t = Tracker::resume(stored, 16).unwrap();
    assert_eq!(t.counters().possible_duplicates(), 2);
    assert_eq!(t.reserve(&window, 10), 3, "2 and 3 again, then 4");
    let cp = t.checkpoint();
    assert_eq!(t.committed(cp.seq), vec![2, 3, 4], "1 is never sent again");
}

#[test]
fn a_second_crash_before_anything_is_resent_does_not_count_duplicates_twice() {
    let mut record = ProgressRecord::fresh(3);
    record.next = 3;
    record.in_flight = vec![1, 2, 3];
    let t = Tracker::resume(record.clone(), 16).unwrap();
    assert_eq!(t.counters().possible_duplicates(), 3);
    drop(t); // crashed again before its first checkpoint was stored
    let t = Tracker::resume(record, 16).unwrap();
    assert_eq!(t.counters().possible_duplicates(), 3);
}

#[test]
fn the_in_flight_bound_caps_reservations() {
    let window = Window::new(0, (0..100).collect());
    let mut t = Tracker::resume(ProgressRecord::fresh(100), 8).unwrap();
    assert_eq!(t.reserve(&window, 100), 8);
    assert_eq!(t.reserve(&window, 100), 0);
    let cp = t.checkpoint();
    let sent = t.committed(cp.seq);
    t.complete(ok(sent[0])).unwrap();
    assert_eq!(t.reserve(&window, 100), 1);
}

#[test]
fn a_cancel_settles_the_unsent_at_once_and_the_sent_when_they_answer() {
    let window = Window::new(0, (0..10).collect());
    let mut t = Tracker::resume(ProgressRecord::fresh(10), 16).unwrap();
    t.reserve(&window, 3);
    let cp = t.checkpoint();
    t.committed(cp.seq);
    t.reserve(&window, 2); // reserved, not sent
    assert_eq!(t.cancel(), 7, "10 - 3 being sent");
    assert!(!t.is_settled());
    t.complete(ok(0)).unwrap();
    assert_eq!(t.abandon_in_flight("DEADLINE_EXCEEDED"), 2);
    assert!(t.is_settled());
    let c = t.counters();
    assert_eq!((c.delivered(), c.failed()), (1, 9));
    assert_eq!(c.failed_by_code()[CANCELLED], 7);
    assert!(t.complete(ok(1)).is_err(), "a late answer is refused");
}

#[test]
fn a_pause_gives_back_what_was_not_sent_without_counting_duplicates() {
    let window = Window::new(0, (0..5).collect());
    let mut t = Tracker::resume(ProgressRecord::fresh(5), 16).unwrap();
    t.reserve(&window, 2);
    let _unconfirmed = t.checkpoint();
    t.unreserve();
    let cp = t.checkpoint();
    assert_eq!(cp.record.redo, vec![0, 1]);
    assert!(cp.record.in_flight.is_empty());
    let t = Tracker::resume(cp.record, 16).unwrap();
    assert_eq!(t.counters().possible_duplicates(), 0);
}

#[test]
fn a_record_that_does_not_add_up_is_refused() {
    let mut r = ProgressRecord::fresh(3);
    r.next = 1; // one handed out, but neither counted nor in flight
    assert!(Tracker::resume(r, 4).is_err());
    let mut r = ProgressRecord::fresh(3);
    r.next = 2;
    r.in_flight = vec![5];
    r.redo = vec![5];
    assert!(Tracker::resume(r, 4).is_err());
}

/// One step of the model.
#[derive(Clone, Debug)]
enum Step {
    Reserve(usize),
    /// Store a checkpoint; `false`: the write is lost in a crash.
    Checkpoint(bool),
    /// Telegram gets request k of the in-flight ones and answers.
    Answer(usize, bool),
    /// Telegram gets request k, the runner dies before the answer.
    SentThenCrash(usize),
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..12).prop_map(Step::Reserve),
        4 => any::<bool>().prop_map(Step::Checkpoint),
        6 => (0usize..32, any::<bool>()).prop_map(|(k, d)| Step::Answer(k, d)),
        1 => (0usize..32).prop_map(Step::SentThenCrash),
        1 => Just(Step::Crash),
    ]
}

/// The runner's side of the model: loads the window the tracker wants.
fn window_for(ids: &[i64], t: &Tracker, size: usize) -> Window {
    let base = t.wants_index().unwrap_or(0) as usize;
    let end = (base + size).min(ids.len());
    Window::new(base as u64, ids[base.min(end)..end].to_vec())
}

proptest! {
    #[test]
    fn crash_resume_never_resends_a_counted_recipient_and_loses_none(
        ids in proptest::collection::btree_set(any::<i64>(), 1..60),
        window_size in 1usize..20,
        max_in_flight in 1usize..10,
        steps in proptest::collection::vec(step(), 0..200),
    ) {
        let ids: Vec<i64> = ids.into_iter().collect();
        let total = ids.len() as u64;
        let mut stored = ProgressRecord::fresh(total);
        let mut stored_results: BTreeMap<i64, RecipientResult> = BTreeMap::new();
        let mut telegram: BTreeMap<i64, u64> = BTreeMap::new();
        let mut t = Tracker::resume(stored.clone(), max_in_flight).unwrap();
        let mut flying: Vec<i64> = Vec::new();

        let send = |telegram: &mut BTreeMap<i64, u64>, results: &BTreeMap<i64, RecipientResult>, id: i64| {
            // The property: a recipient whose outcome is stored is never sent.
            assert!(!results.contains_key(&id), "{id} sent after its result was stored");
            *telegram.entry(id).or_default() += 1;
        };

        for s in steps {
            match s {
                Step::Reserve(n) => {
                    let w = window_for(&ids, &t, window_size);
                    t.reserve(&w, n);
                }
                Step::Checkpoint(stored_ok) => {
                    let cp = t.checkpoint();
                    if stored_ok {
                        stored = cp.record;
                        for r in cp.results { stored_results.insert(r.chat_id, r); }
                        flying.extend(t.committed(cp.seq));
                    } else {
                        t = Tracker::resume(stored.clone(), max_in_flight).unwrap();
                        flying.clear();
                    }
                }
                Step::Answer(k, delivered) if !flying.is_empty() => {
                    let id = flying.remove(k % flying.len());
                    send(&mut telegram, &stored_results, id);
                    t.complete(if delivered { ok(id) } else { blocked(id) }).unwrap();
                }
                Step::SentThenCrash(k) if !flying.is_empty() => {
                    let id = flying[k % flying.len()];
                    send(&mut telegram, &stored_results, id);
                    t = Tracker::resume(stored.clone(), max_in_flight).unwrap();
                    flying.clear();
                }
                Step::Crash => {
                    t = Tracker::resume(stored.clone(), max_in_flight).unwrap();
                    flying.clear();
                }
                _ => {}
            }
            let c = t.counters();
            prop_assert_eq!(c.pending(), c.total() - c.delivered() - c.failed());
            prop_assert!(t.open() <= max_in_flight);
        }

        // Run to the end without further crashes.
        let mut rounds = 0;
        while !t.is_settled() {
            rounds += 1;
            prop_assert!(rounds < 10_000, "no progress");
            let w = window_for(&ids, &t, window_size);
            t.reserve(&w, max_in_flight);
            let cp = t.checkpoint();
            for r in cp.results { stored_results.insert(r.chat_id, r); }
            flying.extend(t.committed(cp.seq));
            if let Some(id) = flying.pop() {
                send(&mut telegram, &stored_results, id);
                t.complete(ok(id)).unwrap();
            }
        }
        let cp = t.checkpoint();
        for r in cp.results { stored_results.insert(r.chat_id, r); }
        stored = cp.record;
        prop_assert!(stored.check().is_ok());

        let c = &stored.counters;
        prop_assert_eq!(c.delivered() + c.failed(), total);
        prop_assert_eq!(c.pending(), 0);
        // Nothing lost: every recipient reached Telegram and has a result.
        let want: BTreeSet<i64> = ids.iter().copied().collect();
        prop_assert_eq!(telegram.keys().copied().collect::<BTreeSet<_>>(), want.clone());
        prop_assert_eq!(stored_results.keys().copied().collect::<BTreeSet<_>>(), want);
        // Every extra copy is counted as a possible duplicate.
        let extra: u64 = telegram.values().map(|n| n - 1).sum();
        prop_assert!(extra <= c.possible_duplicates(),
            "{extra} duplicates, {} counted", c.possible_duplicates());
    }
}

#[test]
fn recipients_set_aside_for_a_full_bot_come_first_later_and_are_no_duplicates_after_a_crash() {
    // Odd ids belong to a bot that is full: they are set aside (at most 2)
    // and the cursor goes on to the even ones.
    let window = Window::new(0, (1..=8).collect());
    let mut t = Tracker::resume(ProgressRecord::fresh(8), 16).unwrap();
    assert_eq!(t.reserve_by(&window, 3, 2, |id| id % 2 == 0), 2);
    let cp = t.checkpoint();
    assert_eq!(cp.record.in_flight, vec![2, 4]);
    assert_eq!(cp.record.redo, vec![1, 3], "set aside, recorded as due");
    assert_eq!(cp.record.next, 4, "the cursor waits once two are set aside");
    cp.record.check().unwrap();
    // A crash here: only the two in flight may have been sent.
    let resumed = Tracker::resume(cp.record.clone(), 16).unwrap();
    assert_eq!(resumed.counters().possible_duplicates(), 2);
    // Without a crash, the bot has room again: the set-aside go first.
    t.committed(cp.seq);
    assert_eq!(t.reserve_by(&window, 3, 2, |_| true), 3);
    let cp = t.checkpoint();
    assert!(cp.record.redo.is_empty());
    assert_eq!(cp.record.in_flight, vec![1, 2, 3, 4, 5]);
    assert_eq!(cp.record.next, 5);
}
