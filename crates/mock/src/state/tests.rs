//! The decision procedure, driven with explicit arrival times: Telegram's order of checks,
//! chat states, limits, throttles, the delivery log (`sendMessage`; the other methods are in
//! `act_tests.rs`).

use super::*;
use crate::methods;
use crate::params::Params;
use crate::token::test_token;

/// A call of `method` with the parameters of a query string.
pub(crate) fn call(method: &str, query: &str) -> Call {
    methods::parse(method, Ok(Params::from_query(query)))
}

fn send(chat: i64, text: &str) -> Call {
    call("sendMessage", &format!("chat_id={chat}&text={text}"))
}

fn engine(limits: Option<Limits>) -> Engine {
    Engine::new(MockConfig {
        limits,
        seed: Some(7),
        ..MockConfig::default()
    })
}

fn answer(d: Decision) -> Reply {
    match d {
        Decision::Answer { reply, .. } => reply,
        Decision::Drop => panic!("dropped"),
    }
}

fn code(d: Decision) -> u16 {
    answer(d).status()
}

#[test]
fn delivers_with_per_chat_message_ids() {
    let mut e = engine(None);
    let t = Instant::now();
    let tok = test_token(11);
    for i in 1..=3 {
        match answer(e.handle(&tok, send(5, &format!("m{i}")), t, 1_700_000_000_123)) {
            Reply::Sent(m) => {
                assert_eq!(m.message_id, i);
                assert_eq!(m.from.map(|u| u.id), Some(11));
                assert_eq!(m.chat.map(|c| c.id), Some(5));
                assert_eq!(m.date, 1_700_000_000);
            }
            other => panic!("{other:?}"),
        }
    }
    // Another chat starts at 1, whichever bot sends.
    match answer(e.handle(&test_token(12), send(6, "x"), t, 0)) {
        Reply::Sent(m) => assert_eq!(m.message_id, 1),
        other => panic!("{other:?}"),
    }
    let log = e.deliveries(0, usize::MAX);
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].at_ms, 1_700_000_000_123);
    assert_eq!(e.deliveries(2, usize::MAX)[0].seq, 3);
    assert_eq!(e.deliveries(4, usize::MAX), vec![]);
    assert_eq!(e.stats().totals.delivered, 4);
    assert_eq!(e.stats().bot(11).delivered, 3);
}

#[test]
fn checks_in_telegram_order() {
    let mut e = engine(Some(Limits::official()));
    let t = Instant::now();
    let tok = test_token(21);
    assert_eq!(code(e.handle("nope", send(1, "x"), t, 0)), 404);
    assert_eq!(code(e.handle(&tok, Call::Unknown, t, 0)), 404);
    assert_eq!(code(e.handle(&tok, Call::GetMe, t, 0)), 200);
    e.set_chat(1, ChatState::Blocked);
    // Validation comes before chat state.
    assert_eq!(code(e.handle(&tok, send(1, ""), t, 0)), 400);
    assert_eq!(code(e.handle(&tok, send(1, "x"), t, 0)), 403);
    // Throttle comes before validation.
    e.throttle(21, 4310, None);
    match answer(e.handle(&tok, send(1, ""), t, 0)) {
        Reply::Error(err) => {
            assert_eq!(err.error_code, 429);
            assert_eq!(err.parameters.and_then(|p| p.retry_after), Some(4310));
        }
        other => panic!("{other:?}"),
    }
    // Revocation comes before throttle.
    e.revoke(21, true);
    assert_eq!(code(e.handle(&tok, send(1, "x"), t, 0)), 401);
    assert_eq!(code(e.handle(&tok, Call::GetMe, t, 0)), 401);
    // Faults come before everything.
    e.set_faults(
        None,
        Faults {
            error_5xx: 1.0,
            ..Faults::default()
        },
    );
    let c = code(e.handle("nope", send(1, "x"), t, 0));
    assert!(c == 500 || c == 502);
    e.set_faults(
        Some(21),
        Faults {
            drop: 1.0,
            ..Faults::default()
        },
    );
    assert_eq!(e.handle(&tok, send(1, "x"), t, 0), Decision::Drop);
    let s = e.stats();
    assert_eq!(s.totals.not_found, 2);
    assert_eq!(s.bot(21).unauthorized, 2);
    assert_eq!(s.bot(21).rate_limited_forced, 1);
    assert_eq!(s.bot(21).forbidden, 1);
    assert_eq!(s.bot(21).bad_request, 1);
    assert_eq!(s.totals.injected_5xx, 1);
    assert_eq!(s.bot(21).injected_drops, 1);
    assert_eq!(s.totals.delivered, 0);
    assert_eq!(s.totals.requests, 10);
}

#[test]
fn chat_states_answer_like_telegram() {
    let mut e = engine(None);
    let t = Instant::now();
    let tok = test_token(3);
    let description =
        |e: &mut Engine, chat: i64| match answer(e.handle(&tok, send(chat, "x"), t, 0)) {
            Reply::Error(err) => (err.error_code, err.description.into_owned(), err.parameters),
            other => panic!("{other:?}"),
        };
    e.set_chat(-5, ChatState::Kicked);
    e.set_chat(-1001234567890, ChatState::Kicked);
    e.set_chat(9, ChatState::Missing);
    e.set_chat(-6, ChatState::Migrated { to: -1006 });
    assert_eq!(
        description(&mut e, -5).1,
        "Forbidden: bot was kicked from the group chat"
    );
    assert_eq!(
        description(&mut e, -1001234567890).1,
        "Forbidden: bot was kicked from the supergroup chat"
    );
    assert_eq!(description(&mut e, 9).1, "Bad Request: chat not found");
    let (code, _, params) = description(&mut e, -6);
    assert_eq!(code, 400);
    assert_eq!(params.and_then(|p| p.migrate_to_chat_id), Some(-1006));
    // Unknown @usernames are missing chats.
    let at_name = call("sendMessage", "chat_id=@x&text=y");
    assert_eq!(code_of(e.handle(&tok, at_name, t, 0)), 400);
    e.set_chat(9, ChatState::Ok);
    assert_eq!(code_of(e.handle(&tok, send(9, "x"), t, 0)), 200);
}

fn code_of(d: Decision) -> u16 {
    code(d)
}

#[test]
fn limits_use_arrival_time_and_rejections_cost_nothing() {
    let mut e = engine(Some(Limits::official()));
    let t = Instant::now();
    let tok = test_token(4);
    for i in 0..3 {
        assert_eq!(code(e.handle(&tok, send(1, &format!("a{i}")), t, 0)), 200);
    }
    for _ in 0..5 {
        match answer(e.handle(&tok, send(1, "b"), t + Duration::from_millis(100), 0)) {
            Reply::Error(err) => {
                assert_eq!(err.description, "Too Many Requests: retry after 1");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        code(e.handle(&tok, send(1, "c"), t + Duration::from_secs(1), 0)),
        200
    );
    let s = e.stats();
    assert_eq!(s.bot(4).rate_limited_chat, 5);
    assert_eq!(s.bot(4).delivered, 4);
    // Disabling limits lets everything through.
    e.set_limits(None);
    for i in 0..100 {
        assert_eq!(code(e.handle(&tok, send(1, &format!("d{i}")), t, 0)), 200);
    }
    assert!(!e.stats().limits_enabled);
}

#[test]
fn timed_throttle_expires() {
    let mut e = engine(None);
    let t = Instant::now();
    let tok = test_token(5);
    e.throttle(5, 30, Some(t + Duration::from_secs(10)));
    assert_eq!(code(e.handle(&tok, send(1, "x"), t, 0)), 429);
    assert_eq!(
        code(e.handle(&tok, send(1, "x"), t + Duration::from_secs(10), 0)),
        200
    );
    e.throttle(5, 30, None);
    assert_eq!(code(e.handle(&tok, send(1, "y"), t, 0)), 429);
    e.unthrottle(5);
    assert_eq!(code(e.handle(&tok, send(1, "y"), t, 0)), 200);
}

#[test]
fn duplicates_are_counted_across_bots() {
    let mut e = engine(None);
    let t = Instant::now();
    assert_eq!(code(e.handle(&test_token(1), send(1, "same"), t, 0)), 200);
    assert_eq!(code(e.handle(&test_token(2), send(1, "same"), t, 0)), 200);
    assert_eq!(code(e.handle(&test_token(2), send(2, "same"), t, 0)), 200);
    let s = e.stats();
    assert_eq!(s.totals.duplicates, 1);
    assert_eq!(s.bot(2).duplicates, 1);
}

#[test]
fn log_is_bounded_and_reset_clears_everything() {
    let mut e = Engine::new(MockConfig {
        limits: None,
        max_deliveries: 3,
        seed: Some(1),
        ..MockConfig::default()
    });
    let t = Instant::now();
    let tok = test_token(8);
    for i in 0..5 {
        assert_eq!(code(e.handle(&tok, send(1, &format!("{i}")), t, 0)), 200);
    }
    let seqs: Vec<u64> = e.deliveries(0, usize::MAX).iter().map(|d| d.seq).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    assert_eq!(e.deliveries(3, usize::MAX).len(), 2);
    assert_eq!(e.deliveries(0, 1).len(), 1);
    e.revoke(8, true);
    e.set_chat(1, ChatState::Blocked);
    e.reset();
    assert_eq!(e.stats(), Stats::default());
    assert_eq!(e.deliveries(0, usize::MAX), vec![]);
    match answer(e.handle(&tok, send(1, "0"), t, 0)) {
        Reply::Sent(m) => assert_eq!(m.message_id, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.stats().totals.duplicates, 0);
}
