//! Remembers answers by `idempotency_key`, so that a caller's retry gets
//! the first send's answer instead of a second message.
//!
//! A key belongs to its caller: the cache is keyed by (caller name, or
//! anonymous; key), so two callers that pick the same key string never see
//! each other's answers. Each entry also holds a digest of what the request
//! asked ([`Message::content_digest`](crate::Message::content_digest)): a
//! retry must ask the same thing, and a key reused for another request is
//! refused ([`Begin::Conflict`]) rather than answered with the wrong message.
//!
//! A key is *claimed* by the first send; concurrent sends with the same key
//! wait for that one. What is remembered once it ends:
//! - a delivery, for the TTL (at least 10 minutes by the service level);
//! - a "may have been sent" failure ([`SendError::MaybeSent`]), for the TTL
//!   too: a retry must not send what may already be in the chat;
//! - any other failure is forgotten at once, so that a retry sends again
//!   (it means "not sent").
//!
//! Bounds: entries older than the TTL go first; then, as hard bounds, the
//! count and the bytes the entries hold (their keys and kept answers), the
//! oldest first. Entries are settled in time order and the TTL is constant,
//! so one queue in settle order is also the queue by age.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::reply::Outcome;
use crate::{Delivered, SendError};

type Waiter = watch::Receiver<Option<Outcome>>;

/// What a request asks, as far as its key is concerned (xxh3-128).
pub type Digest = u128;

/// A key in its caller's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scoped {
    /// `None`: no named caller (auth off, or a test's plain `submit`).
    caller: Option<Arc<str>>,
    key: String,
}

impl Scoped {
    fn bytes(&self) -> usize {
        self.key.len() + self.caller.as_deref().map_or(0, str::len)
    }
}

enum State {
    InFlight(watch::Sender<Option<Outcome>>),
    /// A delivery or a "may have been sent" answer.
    Settled(Outcome),
}

struct Entry {
    digest: Digest,
    state: State,
}

struct Inner {
    map: HashMap<Scoped, Entry>,
    /// Settled keys, oldest first: (when settled, key, bytes it holds).
    /// Invariant: every `State::Settled` entry of `map` is here exactly once.
    order: VecDeque<(Instant, Scoped, usize)>,
    /// Sum of the bytes in `order`.
    bytes: usize,
}

/// What the cache says about a new send with a key.
pub enum Begin {
    /// First time: send, and settle the claim with the result.
    Claimed(Claim),
    /// Already answered: a delivery, or "may have been sent".
    Answered(Outcome),
    /// Being sent right now by another call: wait for its answer.
    Wait(Waiter),
    /// Being sent right now, and [`MAX_WAITERS`] calls already wait for it.
    Busy,
    /// The key was used (by this caller, within the TTL) for a request that
    /// asked something else.
    Conflict,
}

/// Calls that may wait at once for one key's send in flight (retries of one
/// message); more are refused with `RESOURCE_EXHAUSTED` rather than held.
pub const MAX_WAITERS: usize = 64;

/// What a remembered entry costs besides its strings (map and queue slots,
/// the answer's fixed fields), for the bytes bound.
const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Default bound on the bytes the remembered entries hold (keys, callers,
/// kept call results, error texts).
pub const DEFAULT_IDEMPOTENCY_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The cache's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// How long a settled entry is remembered.
    pub ttl: Duration,
    /// At most this many settled entries.
    pub max: usize,
    /// At most this many bytes held by settled entries.
    pub bytes_max: usize,
}

#[derive(Clone)]
pub struct IdempotencyCache {
    inner: Arc<Mutex<Inner>>,
    bounds: Bounds,
}

impl IdempotencyCache {
    pub fn new(bounds: Bounds) -> Self {
        IdempotencyCache {
            inner: Arc::new(Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            })),
            bounds: Bounds {
                max: bounds.max.max(1),
                ..bounds
            },
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Looks `key` of `caller` up for a request whose content is `digest`.
    pub fn begin(&self, caller: Option<&Arc<str>>, key: &str, digest: Digest) -> Begin {
        let scoped = Scoped {
            caller: caller.cloned(),
            key: key.to_owned(),
        };
        let mut st = self.lock();
        st.expire(Instant::now(), self.bounds.ttl);
        match st.map.get(&scoped) {
            Some(e) if e.digest != digest => return Begin::Conflict,
            Some(Entry {
                state: State::Settled(o),
                ..
            }) => return Begin::Answered(o.clone()),
            Some(Entry {
                state: State::InFlight(tx),
                ..
            }) if tx.receiver_count() >= MAX_WAITERS => return Begin::Busy,
            Some(Entry {
                state: State::InFlight(tx),
                ..
            }) => return Begin::Wait(tx.subscribe()),
            None => {}
        }
        let (tx, _) = watch::channel(None);
        st.map.insert(
            scoped.clone(),
            Entry {
                digest,
                state: State::InFlight(tx),
            },
        );
        Begin::Claimed(Claim {
            cache: self.clone(),
            key: scoped,
        })
    }

    /// Keys remembered (settled or in flight).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the settled entries hold (what `bytes_max` bounds).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn settle(&self, key: Scoped, outcome: &Outcome) {
        let now = Instant::now();
        let mut st = self.lock();
        let kept = kept(outcome);
        let previous = match &kept {
            Some(o) => {
                let bytes = key.bytes() + answer_bytes(o) + ENTRY_OVERHEAD_BYTES;
                let digest = st.map.get(&key).map_or(0, |e| e.digest);
                st.order.push_back((now, key.clone(), bytes));
                st.bytes += bytes;
                st.map.insert(
                    key,
                    Entry {
                        digest,
                        state: State::Settled(o.clone()),
                    },
                )
            }
            None => st.map.remove(&key),
        };
        if let Some(Entry {
            state: State::InFlight(tx),
            ..
        }) = previous
        {
            tx.send_replace(Some(outcome.clone()));
        }
        // Age first; then the hard bounds, oldest first.
        st.expire(now, self.bounds.ttl);
        while st.order.len() > self.bounds.max || st.bytes > self.bounds.bytes_max {
            if !st.forget_oldest() {
                break;
            }
        }
    }
}

impl Inner {
    /// Forgets the settled entries older than `ttl`.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .order
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= ttl)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) -> bool {
        let Some((_, key, bytes)) = self.order.pop_front() else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(bytes);
        if matches!(
            self.map.get(&key),
            Some(Entry {
                state: State::Settled(_),
                ..
            })
        ) {
            self.map.remove(&key);
        }
        true
    }
}

/// What is remembered of an outcome: a delivery (without a large call
/// result) or a "may have been sent"; `None` for a failure that means "not
/// sent" (forgotten, so a retry sends).
fn kept(outcome: &Outcome) -> Option<Outcome> {
    match outcome {
        Ok(d) => {
            let mut d = d.clone();
            // A million remembered answers must not hold a million call
            // results: a large one is answered again without it.
            if d.result_json
                .as_ref()
                .is_some_and(|r| r.len() > MAX_KEPT_RESULT_BYTES)
            {
                d.result_json = None;
            }
            Some(Ok(d))
        }
        Err(e @ SendError::MaybeSent(_)) => Some(Err(e.clone())),
        Err(_) => None,
    }
}

/// The variable bytes of a kept answer.
fn answer_bytes(o: &Outcome) -> usize {
    match o {
        Ok(d) => d.bot.len() + d.result_json.as_ref().map_or(0, |r| r.len()),
        Err(e) => e.to_string().len(),
    }
}

/// The right to send for a key; settled exactly once (by the message's
/// [`Reply`](crate::reply::Reply)).
pub struct Claim {
    cache: IdempotencyCache,
    key: Scoped,
}

impl Claim {
    pub fn settle(self, outcome: &Outcome) {
        self.cache.settle(self.key, outcome);
    }
}

/// Longest call result kept with a delivered key (a Message's JSON is a
/// few hundred bytes; an album's ten of them a few KiB).
pub const MAX_KEPT_RESULT_BYTES: usize = 8 * 1024;

/// Waits for the send that holds the claim; its outcome, marked as a repeat.
pub async fn wait(mut waiter: Waiter) -> Outcome {
    loop {
        if let Some(outcome) = waiter.borrow_and_update().clone() {
            return repeat(outcome);
        }
        if waiter.changed().await.is_err() {
            // The claim was settled and the entry replaced before we looked.
            return Err(SendError::Unavailable(
                "the first send with this idempotency_key ended; retry".into(),
            ));
        }
    }
}

/// An earlier answer given again: a delivery says it is a repeat and that
/// this call made no request.
pub fn repeat(outcome: Outcome) -> Outcome {
    outcome.map(|d| Delivered {
        deduplicated: true,
        attempts: 0,
        ..d
    })
}

#[cfg(test)]
#[path = "idempotency_tests.rs"]
mod tests;
