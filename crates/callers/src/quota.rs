//! Messages per window, for one caller, on one instance or across a cluster.
//!
//! Windows are fixed and aligned to the Unix epoch: window `w` of length `L`
//! covers `[w·L, (w+1)·L)`, so every instance agrees on where a window starts
//! without talking. A refused message waits until the window ends
//! ([`RetryIn`]).
//!
//! ## The cluster-wide quota: token grants
//!
//! One counter per caller lives in the store ([`QuotaCount`]: the window it
//! counts and how many messages were *granted* in it). An instance never
//! admits a message it holds no token for; it takes tokens in chunks with a
//! compare-and-set on that counter ([`grant`] computes the new value), keeps
//! them in a [`TokenPool`], and drops what it still holds when its window
//! ends.
//!
//! **Never over the quota.** Every admitted message used a token; every
//! token was granted by a compare-and-set on one linearizable counter that
//! never grants past `limit` in a window; a pool only spends a token in the
//! window it was granted for. So however the caller spreads its calls, the
//! cluster admits at most `limit` in a window (up to the instances' clock
//! skew at a window's edge, where one instance may still spend tokens of
//! the window another has left).
//!
//! **At most 5% under it with a steady membership.** Tokens lost are those
//! still held when the window ends, at most one chunk per instance that took
//! one. A chunk is `limit / (20 · members)` ([`chunk_size`], at least 1), so
//! with `N` members throughout, at most `N · limit / (20 N) = 5%` of the
//! quota is lost, and a caller that asks for more than its quota gets at
//! least 95% of it. Member changes do not touch the counter at all: a new
//! instance just starts taking chunks, a departed one takes its unspent
//! chunk with it. With membership changing within a window the loss is the
//! sum of the departed and present instances' chunks: below 10% while the
//! membership does not more than double within one window (e.g. 3 → 4 → 2:
//! 3·limit/60 + limit/80 ≈ 6.3%).
//!
//! **Store unreachable.** An instance that cannot get a grant falls back to
//! a local share, `limit / members` per window of its own counting
//! ([`TokenPool::degrade`]); the cluster then admits at most `limit` per
//! window from the next window on, and a caller that calls one instance
//! only gets that instance's share. Said in the docs.
//!
//! In embedded mode the store is the process's memory and chunks are 1:
//! exact.

use serde::{Deserialize, Serialize};

/// How long a refused caller should wait, in milliseconds (rounded up to
/// whole seconds in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryIn {
    pub ms: u64,
}

impl RetryIn {
    /// Whole seconds, rounded up, at least 1 (what `retry in N s` says).
    pub fn secs(&self) -> u64 {
        self.ms.div_ceil(1000).max(1)
    }
}

/// The start (Unix ms) of the window of length `window_secs` holding `now_ms`.
pub fn window_start(now_ms: u64, window_secs: u64) -> u64 {
    let len = window_secs.max(1).saturating_mul(1000);
    now_ms - now_ms % len
}

fn window_end(start_ms: u64, window_secs: u64) -> u64 {
    start_ms.saturating_add(window_secs.max(1).saturating_mul(1000))
}

/// The store's counter of one caller (etcd `quota/<caller>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCount {
    /// The window counted: its start, Unix ms.
    pub window_start_ms: u64,
    pub window_secs: u64,
    /// Tokens granted in that window.
    pub granted: u64,
}

/// The outcome of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The counter to store (compare-and-set on the one read).
    pub count: QuotaCount,
    /// Tokens granted now (0: the window is used up).
    pub granted: u64,
}

/// Grants up to `want` tokens of the window holding `now_ms` against the
/// stored counter `current` (absent, or of an older window: it starts from
/// 0). A counter of a *later* window (another instance's clock is ahead)
/// grants nothing: this instance's window is treated as over.
pub fn grant(
    current: Option<&QuotaCount>,
    now_ms: u64,
    window_secs: u64,
    limit: u64,
    want: u64,
) -> Grant {
    let start = window_start(now_ms, window_secs);
    let base = match current {
        Some(c) if c.window_secs == window_secs && c.window_start_ms == start => *c,
        Some(c) if c.window_secs == window_secs && c.window_start_ms > start => {
            return Grant {
                count: *c,
                granted: 0,
            };
        }
        // Older window, or the quota's window length changed: start afresh.
        _ => QuotaCount {
            window_start_ms: start,
            window_secs,
            granted: 0,
        },
    };
    let granted = want.min(limit.saturating_sub(base.granted));
    Grant {
        count: QuotaCount {
            granted: base.granted + granted,
            ..base
        },
        granted,
    }
}

/// Tokens an instance asks for at a time: `limit / (20 · members)`, at least
/// 1 (see the module doc for why that keeps the quota within 5%).
pub fn chunk_size(limit: u64, members: usize) -> u64 {
    let members = u64::try_from(members.max(1)).unwrap_or(u64::MAX);
    (limit / members.saturating_mul(20)).max(1)
}

/// What [`TokenPool::take`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeResult {
    /// A token was spent: admit the message.
    Taken,
    /// Nothing held: ask the store for `want` tokens of the window starting
    /// at `window_start_ms`, give the answer to [`TokenPool::add`], then take
    /// again.
    NeedGrant { window_start_ms: u64, want: u64 },
    /// The window is used up (as far as this instance knows).
    Exhausted(RetryIn),
}

/// One instance's tokens for one caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPool {
    window_start_ms: u64,
    window_secs: u64,
    held: u64,
    /// Spent in this window on this instance.
    spent: u64,
    /// The store granted nothing (or the local share ran out): no more
    /// grants are asked for in this window.
    exhausted: bool,
}

impl TokenPool {
    /// Moves to the window holding `now_ms`, dropping what the old one held.
    fn roll(&mut self, now_ms: u64, window_secs: u64) {
        let start = window_start(now_ms, window_secs);
        if start != self.window_start_ms || window_secs != self.window_secs {
            *self = TokenPool {
                window_start_ms: start,
                window_secs,
                ..TokenPool::default()
            };
        }
    }

    /// Spends a token for a message at `now_ms`, if one is held. `chunk`
    /// is how many to ask for when none is.
    pub fn take(&mut self, now_ms: u64, window_secs: u64, chunk: u64) -> TakeResult {
        self.roll(now_ms, window_secs);
        if self.held > 0 {
            self.held -= 1;
            self.spent += 1;
            return TakeResult::Taken;
        }
        if self.exhausted {
            let end = window_end(self.window_start_ms, window_secs);
            return TakeResult::Exhausted(RetryIn {
                ms: end.saturating_sub(now_ms),
            });
        }
        TakeResult::NeedGrant {
            window_start_ms: self.window_start_ms,
            want: chunk.max(1),
        }
    }

    /// The store granted `granted` tokens of the window starting at
    /// `window_start_ms` (0: used up). A grant for a window that is no
    /// longer this pool's is dropped.
    pub fn add(&mut self, window_start_ms: u64, granted: u64) {
        if window_start_ms != self.window_start_ms {
            return;
        }
        self.held += granted;
        if granted == 0 {
            self.exhausted = true;
        }
    }

    /// The store cannot be reached: this instance may spend up to `share`
    /// tokens in the window on its own (its share of the quota).
    pub fn degrade(&mut self, window_start_ms: u64, share: u64) {
        if window_start_ms != self.window_start_ms {
            return;
        }
        self.held = share.saturating_sub(self.spent);
        if self.held == 0 {
            self.exhausted = true;
        }
    }

    /// Tokens held and not spent.
    pub fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_start_at_multiples_of_their_length_since_the_epoch() {
        assert_eq!(window_start(0, 60), 0);
        assert_eq!(window_start(59_999, 60), 0);
        assert_eq!(window_start(60_000, 60), 60_000);
        assert_eq!(window_start(1_700_000_123_456, 3600), 1_699_999_200_000);
    }

    #[test]
    fn a_grant_never_passes_the_limit_and_resets_with_the_window() {
        let g = grant(None, 1_000, 60, 10, 4);
        assert_eq!((g.granted, g.count.granted), (4, 4));
        let g = grant(Some(&g.count), 2_000, 60, 10, 8);
        assert_eq!((g.granted, g.count.granted), (6, 10));
        let g = grant(Some(&g.count), 3_000, 60, 10, 1);
        assert_eq!(g.granted, 0);
        // The next window starts from 0.
        let g = grant(Some(&g.count), 61_000, 60, 10, 3);
        assert_eq!((g.granted, g.count.window_start_ms), (3, 60_000));
        // A counter of a later window (a clock ahead) grants nothing here.
        assert_eq!(grant(Some(&g.count), 59_000, 60, 10, 3).granted, 0);
    }

    #[test]
    fn chunks_are_a_twentieth_of_each_members_share() {
        assert_eq!(chunk_size(600, 3), 10);
        assert_eq!(chunk_size(10, 3), 1);
        assert_eq!(chunk_size(0, 0), 1);
        assert_eq!(chunk_size(100_000, 1), 5_000);
    }

    #[test]
    fn a_pool_spends_what_it_was_granted_then_waits_for_the_window() {
        let mut p = TokenPool::default();
        let TakeResult::NeedGrant {
            window_start_ms,
            want,
        } = p.take(5_000, 60, 2)
        else {
            panic!("a fresh pool holds nothing")
        };
        assert_eq!((window_start_ms, want), (0, 2));
        p.add(window_start_ms, 2);
        assert_eq!(p.take(5_000, 60, 2), TakeResult::Taken);
        assert_eq!(p.take(5_001, 60, 2), TakeResult::Taken);
        assert!(matches!(p.take(5_002, 60, 2), TakeResult::NeedGrant { .. }));
        p.add(0, 0);
        assert_eq!(
            p.take(30_000, 60, 2),
            TakeResult::Exhausted(RetryIn { ms: 30_000 })
        );
        assert_eq!(RetryIn { ms: 30_000 }.secs(), 30);
        assert_eq!(RetryIn { ms: 1 }.secs(), 1);
        // Tokens do not outlive their window.
        p.add(0, 0);
        assert!(matches!(
            p.take(60_000, 60, 2),
            TakeResult::NeedGrant {
                window_start_ms: 60_000,
                ..
            }
        ));
        p.add(0, 5);
        assert_eq!(p.held(), 0, "a late grant for an old window is dropped");
    }

    #[test]
    fn a_degraded_pool_spends_its_share_minus_what_it_spent() {
        let mut p = TokenPool::default();
        p.take(0, 60, 1);
        p.add(0, 3);
        for _ in 0..3 {
            assert_eq!(p.take(1, 60, 1), TakeResult::Taken);
        }
        p.degrade(0, 5);
        assert_eq!(p.held(), 2);
        p.degrade(0, 2);
        assert!(matches!(p.take(2, 60, 1), TakeResult::Exhausted(_)));
    }

    /// One simulated cluster: `members` pools over one counter, a caller
    /// sending `offered` messages in one window, spread by `spread`.
    fn admitted(limit: u64, members: usize, offered: &[usize]) -> u64 {
        let mut count: Option<QuotaCount> = None;
        let mut pools = vec![TokenPool::default(); members];
        let chunk = chunk_size(limit, members);
        let mut admitted = 0;
        for (t, &i) in offered.iter().enumerate() {
            let now = 1_000 + t as u64; // all inside window [0, 60 s)
            let pool = &mut pools[i % members];
            loop {
                match pool.take(now, 60, chunk) {
                    TakeResult::Taken => {
                        admitted += 1;
                        break;
                    }
                    TakeResult::Exhausted(_) => break,
                    TakeResult::NeedGrant {
                        window_start_ms,
                        want,
                    } => {
                        let g = grant(count.as_ref(), now, 60, limit, want);
                        count = Some(g.count);
                        pool.add(window_start_ms, g.granted);
                    }
                }
            }
        }
        admitted
    }

    proptest! {
        /// However a caller spreads its messages over the instances, the
        /// cluster admits at most the quota, and at most one chunk per
        /// instance short of what was offered (or of the quota): 5% of the
        /// quota once it is at least 20 per member.
        #[test]
        fn the_cluster_admits_the_quota_within_five_percent_however_calls_are_spread(
            limit in 1u64..2_000,
            members in 1usize..6,
            spread in proptest::collection::vec(0usize..6, 1..4_000),
        ) {
            let got = admitted(limit, members, &spread);
            prop_assert!(got <= limit, "admitted {got} > limit {limit}");
            let lost = chunk_size(limit, members) * members as u64;
            prop_assert!(lost <= (limit / 20).max(members as u64));
            let offered = spread.len() as u64;
            prop_assert!(
                got + lost >= offered.min(limit),
                "admitted {got} of min({offered}, {limit}), more than {lost} short"
            );
        }
    }
}
