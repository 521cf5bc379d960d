//! The limiter at explicit times: buckets, sliding windows, requests of many messages, the
//! paid lane, pruning.

use super::*;

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

#[test]
fn chat_bucket_allows_burst_then_refills() {
    let t0 = Instant::now();
    let mut l = Limiter::new(Limits::official(), t0);
    for _ in 0..3 {
        assert_eq!(l.check(1, 10, t0), Ok(()));
    }
    let err = l.check(1, 10, t0).unwrap_err();
    assert_eq!(err.scope, Scope::Chat);
    assert_eq!(err.wait, Duration::from_secs(1));
    assert_eq!(err.retry_after(), 1);
    // Rejections consume nothing: still one token after 1 s.
    assert!(l.check(1, 10, ms(t0, 999)).is_err());
    assert_eq!(l.check(1, 10, ms(t0, 1000)), Ok(()));
    assert!(l.check(1, 10, ms(t0, 1500)).is_err());
    assert_eq!(l.check(1, 10, ms(t0, 2000)), Ok(()));
    // Another chat and another bot have their own buckets.
    assert_eq!(l.check(1, 11, ms(t0, 2000)), Ok(()));
    assert_eq!(l.check(2, 10, ms(t0, 2000)), Ok(()));
    // After a long pause the bucket is full again, but no fuller than the burst.
    for _ in 0..3 {
        assert_eq!(l.check(1, 10, ms(t0, 60_000)), Ok(()));
    }
    assert!(l.check(1, 10, ms(t0, 60_000)).is_err());
}

#[test]
fn retry_after_rounds_up_with_minimum_one() {
    let r = |ms| {
        RateLimited {
            scope: Scope::Chat,
            wait: Duration::from_millis(ms),
        }
        .retry_after()
    };
    assert_eq!(r(1), 1);
    assert_eq!(r(0), 1);
    assert_eq!(r(1000), 1);
    assert_eq!(r(1001), 2);
    assert_eq!(r(59_500), 60);
}

#[test]
fn slow_chat_rate_gives_long_retry_after() {
    let t0 = Instant::now();
    let limits = Limits {
        chat_burst: 1,
        chat_rate_per_s: 0.25,
        ..Limits::official()
    };
    let mut l = Limiter::new(limits, t0);
    assert_eq!(l.check(1, 5, t0), Ok(()));
    let err = l.check(1, 5, ms(t0, 500)).unwrap_err();
    assert_eq!(err.wait, Duration::from_millis(3500));
    assert_eq!(err.retry_after(), 4);
}

#[test]
fn group_window_is_sliding() {
    let t0 = Instant::now();
    let limits = Limits {
        chat_burst: 0, // per-chat bucket off, to isolate the group window
        ..Limits::official()
    };
    let mut l = Limiter::new(limits, t0);
    for i in 0..20 {
        assert_eq!(l.check(1, -100, ms(t0, i * 1000)), Ok(()), "msg {i}");
    }
    let err = l.check(1, -100, ms(t0, 30_000)).unwrap_err();
    assert_eq!(err.scope, Scope::Group);
    assert_eq!(err.wait, Duration::from_secs(30));
    assert_eq!(err.retry_after(), 30);
    // The first message leaves the window at exactly 60 s.
    assert!(l.check(1, -100, ms(t0, 59_999)).is_err());
    assert_eq!(l.check(1, -100, ms(t0, 60_000)), Ok(()));
    assert!(l.check(1, -100, ms(t0, 60_500)).is_err());
    assert_eq!(l.check(1, -100, ms(t0, 61_000)), Ok(()));
    // Positive chats are not groups; another bot has its own window.
    assert_eq!(l.check(2, -100, ms(t0, 61_000)), Ok(()));
}

#[test]
fn bot_window_counts_every_chat() {
    let t0 = Instant::now();
    let mut l = Limiter::new(Limits::official(), t0);
    for chat in 0..30 {
        assert_eq!(l.check(7, chat + 1, ms(t0, 100)), Ok(()));
    }
    let err = l.check(7, 1000, ms(t0, 600)).unwrap_err();
    assert_eq!(err.scope, Scope::Bot);
    assert_eq!(err.wait, Duration::from_millis(500));
    assert_eq!(err.retry_after(), 1);
    assert_eq!(l.check(8, 1000, ms(t0, 600)), Ok(()));
    assert_eq!(l.check(7, 1000, ms(t0, 1100)), Ok(()));
}

#[test]
fn longest_wait_decides_scope() {
    let t0 = Instant::now();
    let mut l = Limiter::new(Limits::official(), t0);
    // Fill the group window slowly, then the chat bucket is fine but the group is not.
    for i in 0..20 {
        assert_eq!(l.check(1, -5, ms(t0, i * 2000)), Ok(()));
    }
    for _ in 0..3 {
        assert_eq!(l.check(1, -6, ms(t0, 40_000)), Ok(()));
    }
    let err = l.check(1, -5, ms(t0, 40_000)).unwrap_err();
    assert_eq!((err.scope, err.retry_after()), (Scope::Group, 20));
    let err = l.check(1, -6, ms(t0, 40_000)).unwrap_err();
    assert_eq!((err.scope, err.retry_after()), (Scope::Chat, 1));
}

#[test]
fn disabled_limits_never_reject() {
    let t0 = Instant::now();
    let limits = Limits {
        chat_burst: 0,
        chat_rate_per_s: 1.0,
        group_max: 0,
        group_window: Duration::from_secs(60),
        bot_max: 0,
        bot_window: Duration::from_secs(1),
    };
    let mut l = Limiter::new(limits, t0);
    for _ in 0..1000 {
        assert_eq!(l.check(1, -1, t0), Ok(()));
    }
    assert_eq!(l.tracked(), (0, 0));
}

#[test]
fn times_never_run_backwards() {
    let t0 = Instant::now();
    let mut l = Limiter::new(Limits::official(), t0);
    for _ in 0..3 {
        assert_eq!(l.check(1, 1, ms(t0, 5000)), Ok(()));
    }
    // An earlier arrival processed later counts as "now", not as the past.
    assert!(l.check(1, 1, ms(t0, 1000)).is_err());
}

#[test]
fn a_request_of_n_needs_room_for_min_n_capacity_and_is_charged_n() {
    let t0 = Instant::now();
    let mut l = Limiter::new(Limits::official(), t0);
    // An album of 10 into a fresh chat: room for 3 (the burst) is enough...
    assert_eq!(l.check_many(1, 5, 10, false, t0), Ok(Admitted::default()));
    // ...but the chat is 7 messages in debt: the next waits 8 s (7 + its own 1).
    let err = l.check(1, 5, ms(t0, 100)).unwrap_err();
    assert_eq!(err.scope, Scope::Chat);
    assert_eq!(err.wait, Duration::from_millis(7900));
    assert_eq!(l.check(1, 5, ms(t0, 8000)), Ok(()));
    // A second album needs room for 3 at once: rejected until the bucket is full.
    assert!(l.check_many(1, 5, 10, false, ms(t0, 9000)).is_err());
    assert!(l.check_many(1, 5, 10, false, ms(t0, 11_000)).is_ok());
    // The bot window holds one slot per item.
    let mut l = Limiter::new(Limits::official(), t0);
    assert!(l.check_many(2, 1, 10, false, t0).is_ok());
    assert!(l.check_many(2, 2, 10, false, t0).is_ok());
    assert!(l.check_many(2, 3, 10, false, t0).is_ok());
    assert_eq!(l.check(2, 4, t0).map_err(|e| e.scope), Err(Scope::Bot));
    // Group windows too: two albums of 10 fill a group's 20 per minute.
    let mut l = Limiter::new(
        Limits {
            chat_burst: 0,
            ..Limits::official()
        },
        t0,
    );
    assert!(l.check_many(3, -9, 10, false, t0).is_ok());
    assert!(l.check_many(3, -9, 10, false, ms(t0, 1000)).is_ok());
    assert_eq!(
        l.check(3, -9, ms(t0, 2000)).map_err(|e| e.scope),
        Err(Scope::Group)
    );
    assert!(l.check_many(3, -9, 10, false, ms(t0, 60_000)).is_ok());
}

#[test]
fn the_paid_lane_lifts_the_bot_rate_and_counts_what_went_over() {
    let t0 = Instant::now();
    let mut l = Limiter::new(Limits::official(), t0);
    for chat in 0..30 {
        assert_eq!(
            l.check_many(1, chat + 1, 1, true, t0),
            Ok(Admitted { paid: 0 })
        );
    }
    // The free 30 are used; paid messages go on, each over the free rate.
    for chat in 30..1000 {
        assert_eq!(
            l.check_many(1, chat + 1, 1, true, t0),
            Ok(Admitted { paid: 1 })
        );
    }
    assert_eq!(
        l.check_many(1, 5000, 1, true, t0).map_err(|e| e.scope),
        Err(Scope::Bot)
    );
    // A message without the flag still meets the free rate.
    assert_eq!(
        l.check(1, 5001, ms(t0, 500)).map_err(|e| e.scope),
        Err(Scope::Bot)
    );
    assert!(l.check_many(1, 5002, 1, true, ms(t0, 1000)).is_ok());
    // The chat limit holds on the paid lane.
    let mut l = Limiter::new(Limits::official(), t0);
    for _ in 0..3 {
        assert!(l.check_many(2, 1, 1, true, t0).is_ok());
    }
    assert_eq!(
        l.check_many(2, 1, 1, true, t0).map_err(|e| e.scope),
        Err(Scope::Chat)
    );
    // Lane off: paid messages meet the free rate.
    let mut l = Limiter::new(Limits::official(), t0).with_paid_bot_max(0);
    for chat in 0..30 {
        assert!(l.check_many(3, chat + 1, 1, true, t0).is_ok());
    }
    assert!(l.check_many(3, 99, 1, true, t0).is_err());
}

#[test]
fn idle_entries_are_pruned() {
    let t0 = Instant::now();
    let limits = Limits {
        bot_max: 0,
        ..Limits::official()
    };
    let mut l = Limiter::new(limits, t0);
    for chat in 1..=10 {
        assert_eq!(l.check(1, -chat, t0), Ok(()));
    }
    assert_eq!(l.tracked(), (10, 10));
    for chat in 1..PRUNE_EVERY as i64 - 10 {
        assert_eq!(l.check(1, chat, t0), Ok(()));
    }
    assert!(l.tracked().0 > 60_000);
    // An hour later, enough further requests trigger a prune of every idle entry.
    let later = t0 + Duration::from_secs(3600);
    for chat in 0..20 {
        assert_eq!(l.check(2, chat + 1, later), Ok(()));
    }
    assert!(l.tracked().0 <= 20, "{:?}", l.tracked());
    assert_eq!(l.tracked().1, 0);
}
