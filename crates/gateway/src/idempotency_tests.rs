//! Unit tests of the idempotency cache: scoping by caller and content,
//! what is remembered, and the bounds (paused clock for the ages).

use super::*;

const TTL: Duration = Duration::from_secs(600);

fn cache(max: usize) -> IdempotencyCache {
    IdempotencyCache::new(Bounds {
        ttl: TTL,
        max,
        bytes_max: DEFAULT_IDEMPOTENCY_BYTES_MAX,
    })
}

fn delivered(id: i64) -> Delivered {
    Delivered {
        bot: "a".into(),
        message_id: id,
        chat_id: 1,
        attempts: 1,
        deduplicated: false,
        result_json: None,
    }
}

fn claim(cache: &IdempotencyCache, key: &str) -> Claim {
    match cache.begin(None, key, 1) {
        Begin::Claimed(c) => c,
        _ => panic!("{key}: the first begin claims"),
    }
}

fn deliver(cache: &IdempotencyCache, key: &str, id: i64) {
    claim(cache, key).settle(&Ok(delivered(id)));
}

fn answered_id(b: Begin) -> Option<i64> {
    match b {
        Begin::Answered(Ok(d)) => Some(d.message_id),
        _ => None,
    }
}

#[test]
fn waiters_on_one_key_are_bounded() {
    let cache = cache(100);
    let claim = claim(&cache, "k");
    let waiters: Vec<Waiter> = (0..MAX_WAITERS)
        .map(|_| match cache.begin(None, "k", 1) {
            Begin::Wait(w) => w,
            _ => panic!("room to wait"),
        })
        .collect();
    assert!(matches!(cache.begin(None, "k", 1), Begin::Busy));
    drop(waiters);
    assert!(matches!(cache.begin(None, "k", 1), Begin::Wait(_)));
    claim.settle(&Err(SendError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn second_send_gets_the_first_delivery_until_the_ttl() {
    let cache = cache(100);
    let claim = claim(&cache, "k");
    let Begin::Wait(w) = cache.begin(None, "k", 1) else {
        panic!("concurrent begin waits");
    };
    claim.settle(&Ok(delivered(7)));
    let got = wait(w).await.expect("delivered");
    assert_eq!((got.message_id, got.deduplicated), (7, true));
    assert_eq!(answered_id(cache.begin(None, "k", 1)), Some(7));
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    assert!(matches!(cache.begin(None, "k", 1), Begin::Claimed(_)));
}

#[tokio::test]
async fn a_failure_that_means_not_sent_is_forgotten() {
    let cache = cache(100);
    claim(&cache, "k").settle(&Err(SendError::Unavailable("x".into())));
    assert!(matches!(cache.begin(None, "k", 1), Begin::Claimed(_)));
}

#[tokio::test(start_paused = true)]
async fn a_maybe_sent_answer_is_kept_and_repeated_until_the_ttl() {
    let cache = cache(100);
    let maybe = SendError::MaybeSent("may have been sent: Telegram did not answer".into());
    claim(&cache, "k").settle(&Err(maybe.clone()));
    match cache.begin(None, "k", 1) {
        Begin::Answered(Err(e)) => assert_eq!(e, maybe),
        _ => panic!("a retry gets the maybe-sent answer, not a new send"),
    }
    tokio::time::advance(TTL).await;
    assert!(matches!(cache.begin(None, "k", 1), Begin::Claimed(_)));
}

#[test]
fn the_same_key_with_other_content_is_a_conflict_in_flight_and_after() {
    let cache = cache(100);
    let c = claim(&cache, "k");
    assert!(matches!(cache.begin(None, "k", 2), Begin::Conflict));
    c.settle(&Ok(delivered(7)));
    assert!(matches!(cache.begin(None, "k", 2), Begin::Conflict));
    assert_eq!(answered_id(cache.begin(None, "k", 1)), Some(7));
}

#[test]
fn two_callers_with_one_key_string_do_not_collide() {
    let cache = cache(100);
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("billing"), Arc::from("alerts"));
    let Begin::Claimed(ca) = cache.begin(Some(&a), "order-17", 1) else {
        panic!("a claims");
    };
    let Begin::Claimed(cb) = cache.begin(Some(&b), "order-17", 2) else {
        panic!("b claims its own key, whatever a does with the same string");
    };
    ca.settle(&Ok(delivered(1)));
    cb.settle(&Ok(delivered(2)));
    assert_eq!(answered_id(cache.begin(Some(&a), "order-17", 1)), Some(1));
    assert_eq!(answered_id(cache.begin(Some(&b), "order-17", 2)), Some(2));
    assert!(
        matches!(cache.begin(None, "order-17", 1), Begin::Claimed(_)),
        "anonymous is a namespace of its own"
    );
}

#[tokio::test(start_paused = true)]
async fn bounded_count_forgets_the_oldest() {
    let cache = cache(2);
    for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
        deliver(&cache, k, i as i64);
    }
    assert_eq!(cache.len(), 2);
    assert!(matches!(cache.begin(None, "a", 1), Begin::Claimed(_)));
}

#[tokio::test(start_paused = true)]
async fn aged_entries_go_before_the_count_bound_takes_a_young_one() {
    let cache = cache(3);
    deliver(&cache, "old-1", 1);
    deliver(&cache, "old-2", 2);
    tokio::time::advance(TTL - Duration::from_secs(60)).await;
    deliver(&cache, "young", 3);
    tokio::time::advance(Duration::from_secs(61)).await;
    // The two old ones are past the TTL: a settle forgets them first, even
    // though the count bound (3) is not reached, and keeps the young one.
    deliver(&cache, "new", 4);
    assert_eq!(cache.len(), 2, "only young and new are left");
    assert_eq!(answered_id(cache.begin(None, "young", 1)), Some(3));
    assert_eq!(answered_id(cache.begin(None, "new", 1)), Some(4));
}

#[tokio::test(start_paused = true)]
async fn the_bytes_bound_forgets_the_oldest_large_answers() {
    let cache = IdempotencyCache::new(Bounds {
        ttl: TTL,
        max: 1_000,
        bytes_max: 3 * (MAX_KEPT_RESULT_BYTES + ENTRY_OVERHEAD_BYTES + 16),
    });
    let big: Arc<str> = Arc::from("x".repeat(MAX_KEPT_RESULT_BYTES).as_str());
    for i in 0..5 {
        claim(&cache, &format!("k{i}")).settle(&Ok(Delivered {
            result_json: Some(big.clone()),
            ..delivered(i)
        }));
    }
    assert_eq!(
        cache.len(),
        3,
        "the count bound is far; the bytes bound holds"
    );
    assert!(cache.bytes() <= 3 * (MAX_KEPT_RESULT_BYTES + ENTRY_OVERHEAD_BYTES + 16));
    assert!(matches!(cache.begin(None, "k0", 1), Begin::Claimed(_)));
    assert_eq!(answered_id(cache.begin(None, "k4", 1)), Some(4));
}

#[test]
fn a_large_call_result_is_not_kept() {
    let cache = cache(10);
    let huge: Arc<str> = Arc::from("x".repeat(MAX_KEPT_RESULT_BYTES + 1).as_str());
    claim(&cache, "k").settle(&Ok(Delivered {
        result_json: Some(huge),
        ..delivered(1)
    }));
    match cache.begin(None, "k", 1) {
        Begin::Answered(Ok(d)) => assert_eq!(d.result_json, None),
        _ => panic!("remembered"),
    }
    assert!(cache.bytes() < MAX_KEPT_RESULT_BYTES);
}
