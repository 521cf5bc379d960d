//! Remembers deliveries by `idempotency_key`, so that a caller's retry gets
//! the first delivery's answer instead of a second message.
//!
//! A key is *claimed* by the first send; concurrent sends with the same key
//! wait for that one. A delivery is kept for the TTL (at least 10 minutes by
//! the service level); a failure is forgotten at once so that a retry sends again.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::reply::Outcome;
use crate::{Delivered, SendError};

type Waiter = watch::Receiver<Option<Outcome>>;

enum Entry {
    InFlight(watch::Sender<Option<Outcome>>),
    Done(Delivered),
}

struct State {
    map: HashMap<String, Entry>,
    /// Delivered keys in the order they expire (the TTL is constant).
    expiry: VecDeque<(Instant, String)>,
}

/// What the cache says about a new send with a key.
pub enum Begin {
    /// First time: send, and settle the claim with the result.
    Claimed(Claim),
    /// Already delivered.
    Delivered(Delivered),
    /// Being sent right now by another call: wait for its answer.
    Wait(Waiter),
    /// Being sent right now, and [`MAX_WAITERS`] calls already wait for it.
    Busy,
}

/// Calls that may wait at once for one key's send in flight (retries of one
/// message); more are refused with `RESOURCE_EXHAUSTED` rather than held.
pub const MAX_WAITERS: usize = 64;

#[derive(Clone)]
pub struct IdempotencyCache {
    inner: Arc<Mutex<State>>,
    ttl: Duration,
    max: usize,
}

impl IdempotencyCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        IdempotencyCache {
            inner: Arc::new(Mutex::new(State {
                map: HashMap::new(),
                expiry: VecDeque::new(),
            })),
            ttl,
            max: max.max(1),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.inner.lock()
    }

    pub fn begin(&self, key: &str) -> Begin {
        let now = Instant::now();
        let mut st = self.lock();
        expire(&mut st, now);
        match st.map.get(key) {
            Some(Entry::Done(d)) => return Begin::Delivered(d.clone()),
            Some(Entry::InFlight(tx)) if tx.receiver_count() >= MAX_WAITERS => return Begin::Busy,
            Some(Entry::InFlight(tx)) => return Begin::Wait(tx.subscribe()),
            None => {}
        }
        let (tx, _) = watch::channel(None);
        st.map.insert(key.to_owned(), Entry::InFlight(tx));
        Begin::Claimed(Claim {
            cache: self.clone(),
            key: key.to_owned(),
        })
    }

    /// Keys remembered (delivered or in flight).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn settle(&self, key: &str, outcome: &Outcome) {
        let now = Instant::now();
        let mut st = self.lock();
        let entry = match outcome {
            Ok(d) => {
                st.expiry.push_back((now + self.ttl, key.to_owned()));
                let mut kept = d.clone();
                // A million remembered answers must not hold a million call
                // results: a large one is answered again without it.
                if kept
                    .result_json
                    .as_ref()
                    .is_some_and(|r| r.len() > MAX_KEPT_RESULT_BYTES)
                {
                    kept.result_json = None;
                }
                Some(Entry::Done(kept))
            }
            Err(_) => None,
        };
        let previous = match entry {
            Some(e) => st.map.insert(key.to_owned(), e),
            None => st.map.remove(key),
        };
        if let Some(Entry::InFlight(tx)) = previous {
            tx.send_replace(Some(outcome.clone()));
        }
        while st.expiry.len() > self.max {
            if let Some((_, old)) = st.expiry.pop_front()
                && matches!(st.map.get(&old), Some(Entry::Done(_)))
            {
                st.map.remove(&old);
            }
        }
    }
}

fn expire(st: &mut State, now: Instant) {
    while st.expiry.front().is_some_and(|(at, _)| *at <= now) {
        if let Some((_, key)) = st.expiry.pop_front()
            && matches!(st.map.get(&key), Some(Entry::Done(_)))
        {
            st.map.remove(&key);
        }
    }
}

/// The right to send for a key; settled exactly once (by the message's
/// [`Reply`](crate::reply::Reply)).
pub struct Claim {
    cache: IdempotencyCache,
    key: String,
}

impl Claim {
    pub fn settle(self, outcome: &Outcome) {
        self.cache.settle(&self.key, outcome);
    }
}

/// Longest call result kept with a delivered key (a Message's JSON is a
/// few hundred bytes; an album's ten of them a few KiB).
pub const MAX_KEPT_RESULT_BYTES: usize = 8 * 1024;

/// Waits for the send that holds the claim; its outcome, marked as a repeat.
pub async fn wait(mut waiter: Waiter) -> Outcome {
    loop {
        if let Some(outcome) = waiter.borrow_and_update().clone() {
            return outcome.map(|d| Delivered {
                deduplicated: true,
                attempts: 0,
                ..d
            });
        }
        if waiter.changed().await.is_err() {
            // The claim was settled and the entry replaced before we looked.
            return Err(SendError::Unavailable(
                "the first send with this idempotency_key ended; retry".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn waiters_on_one_key_are_bounded() {
        let cache = IdempotencyCache::new(Duration::from_secs(600), 100);
        let Begin::Claimed(claim) = cache.begin("k") else {
            panic!("first begin claims");
        };
        let waiters: Vec<Waiter> = (0..MAX_WAITERS)
            .map(|_| match cache.begin("k") {
                Begin::Wait(w) => w,
                _ => panic!("room to wait"),
            })
            .collect();
        assert!(matches!(cache.begin("k"), Begin::Busy));
        drop(waiters);
        assert!(matches!(cache.begin("k"), Begin::Wait(_)));
        claim.settle(&Err(SendError::DeadlineExceeded));
    }

    #[tokio::test(start_paused = true)]
    async fn second_send_gets_the_first_delivery_until_the_ttl() {
        let cache = IdempotencyCache::new(Duration::from_secs(600), 100);
        let Begin::Claimed(claim) = cache.begin("k") else {
            panic!("first begin claims");
        };
        let Begin::Wait(w) = cache.begin("k") else {
            panic!("concurrent begin waits");
        };
        claim.settle(&Ok(delivered(7)));
        let got = wait(w).await.expect("delivered");
        assert_eq!((got.message_id, got.deduplicated), (7, true));
        assert!(matches!(cache.begin("k"), Begin::Delivered(d) if d.message_id == 7));
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(matches!(cache.begin("k"), Begin::Claimed(_)));
    }

    #[tokio::test]
    async fn failure_is_forgotten() {
        let cache = IdempotencyCache::new(Duration::from_secs(600), 100);
        let Begin::Claimed(claim) = cache.begin("k") else {
            panic!("claims");
        };
        claim.settle(&Err(SendError::Unavailable("x".into())));
        assert!(matches!(cache.begin("k"), Begin::Claimed(_)));
    }

    #[tokio::test]
    async fn bounded_size_forgets_the_oldest() {
        let cache = IdempotencyCache::new(Duration::from_secs(600), 2);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            let Begin::Claimed(c) = cache.begin(k) else {
                panic!("claims");
            };
            c.settle(&Ok(delivered(i as i64)));
        }
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.begin("a"), Begin::Claimed(_)));
    }
}
