//! Telegram's flood limits, as the emulator enforces them.
//!
//! Three limits are checked for every `sendMessage`, all keyed by the numeric bot id and all
//! evaluated at the request's arrival time, which the caller passes in (so tests can use
//! explicit times):
//! - per (bot, chat): a token bucket of `chat_burst` tokens refilled at `chat_rate_per_s`,
//!   kept as a single "theoretical arrival time" (GCRA), 8 bytes per chat;
//! - per (bot, group) for `chat_id < 0`: at most `group_max` in any `group_window`;
//! - per bot: at most `bot_max` in any `bot_window`.
//!
//! The windows keep the arrival times of the last `max` accepted requests in a ring, so the
//! check is O(1). A rejected request consumes nothing. Idle entries are pruned now and then,
//! so memory follows the number of recently active chats.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The limits the emulator enforces. A zero `chat_burst`, `group_max` or `bot_max`, a zero
/// window, or a `chat_rate_per_s` that is not a positive finite number disables that limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Per (bot, chat) bucket capacity.
    pub chat_burst: u32,
    /// Per (bot, chat) refill, tokens per second.
    pub chat_rate_per_s: f64,
    /// Per (bot, group) messages allowed in any `group_window` (groups: `chat_id < 0`).
    pub group_max: u32,
    /// Length of the per-group sliding window.
    pub group_window: Duration,
    /// Per bot messages allowed in any `bot_window`.
    pub bot_max: u32,
    /// Length of the per-bot sliding window.
    pub bot_window: Duration,
}

impl Limits {
    /// Telegram's published limits: 3 burst at 1/s per chat, 20 per 60 s per group,
    /// 30 per second per bot.
    pub fn official() -> Self {
        Limits {
            chat_burst: 3,
            chat_rate_per_s: 1.0,
            group_max: 20,
            group_window: Duration::from_secs(60),
            bot_max: 30,
            bot_window: Duration::from_secs(1),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::official()
    }
}

/// Which limit rejected a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The per (bot, chat) token bucket.
    Chat,
    /// The per (bot, group) window.
    Group,
    /// The per bot window.
    Bot,
}

/// A rejection: the limit that would be exceeded and how long until the request would
/// have been allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// The limit that binds longest.
    pub scope: Scope,
    /// Time until the same request would pass every limit.
    pub wait: Duration,
}

impl RateLimited {
    /// `retry_after` as Telegram reports it: whole seconds, rounded up, at least 1.
    pub fn retry_after(&self) -> u64 {
        let nanos = self.wait.as_nanos();
        let secs = nanos.div_ceil(1_000_000_000);
        u64::try_from(secs).unwrap_or(u64::MAX).max(1)
    }
}

/// Arrival times of the last accepted requests, at most `max` of them.
#[derive(Debug, Default)]
struct Window {
    times: VecDeque<u64>,
}

impl Window {
    /// Nanoseconds until one more request fits, 0 if it fits now.
    fn wait(&self, now: u64, max: usize, window: u64) -> u64 {
        if self.times.len() < max {
            return 0;
        }
        match self.times.front() {
            Some(&oldest) => (oldest + window).saturating_sub(now),
            None => 0,
        }
    }

    fn record(&mut self, now: u64, max: usize) {
        self.times.push_back(now);
        while self.times.len() > max {
            self.times.pop_front();
        }
    }

    fn idle(&self, now: u64, window: u64) -> bool {
        self.times.back().is_none_or(|&last| last + window <= now)
    }
}

/// Limit bookkeeping for every bot, chat and group. Not thread-safe by itself: the emulator
/// keeps it behind its state lock.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    epoch: Instant,
    /// Latest time seen, so that times never run backwards inside the limiter.
    last: u64,
    /// GCRA emission interval (ns) and tolerance (ns); `None` = per-chat limit off.
    chat: Option<(u64, u64)>,
    chats: FastMap<(u64, i64), u64>,
    groups: FastMap<(u64, i64), Window>,
    bots: FastMap<u64, Window>,
    since_prune: usize,
    /// Accepted requests between prunes: grows with the number of live entries, so pruning
    /// stays amortised O(1) per request.
    prune_every: usize,
}

/// Prune idle entries at most this often (in accepted requests), or less often when many
/// entries are live.
const PRUNE_EVERY: usize = 65_536;

impl Limiter {
    /// A limiter for `limits`; times passed to [`Limiter::check`] are measured from `epoch`
    /// (earlier times count as `epoch`).
    pub fn new(limits: Limits, epoch: Instant) -> Self {
        let chat = if limits.chat_burst > 0
            && limits.chat_rate_per_s.is_finite()
            && limits.chat_rate_per_s > 0.0
        {
            let interval = (1e9 / limits.chat_rate_per_s).round().max(1.0) as u64;
            Some((interval, interval * u64::from(limits.chat_burst - 1)))
        } else {
            None
        };
        Limiter {
            limits,
            epoch,
            last: 0,
            chat,
            chats: FastMap::default(),
            groups: FastMap::default(),
            bots: FastMap::default(),
            since_prune: 0,
            prune_every: PRUNE_EVERY,
        }
    }

    /// The limits this limiter enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks one `sendMessage` from `bot_id` to `chat_id` arriving at `now`. On success the
    /// request is counted against every limit; on rejection nothing is counted.
    pub fn check(&mut self, bot_id: u64, chat_id: i64, now: Instant) -> Result<(), RateLimited> {
        let now = self.nanos(now);
        let group_max = self.limits.group_max as usize;
        let group_window = nanos_of(self.limits.group_window);
        let bot_max = self.limits.bot_max as usize;
        let bot_window = nanos_of(self.limits.bot_window);
        let group_on = chat_id < 0 && group_max > 0 && group_window > 0;
        let bot_on = bot_max > 0 && bot_window > 0;

        let mut worst: Option<(Scope, u64)> = None;
        let mut consider = |scope: Scope, wait: u64| {
            if wait > 0 && worst.is_none_or(|(_, w)| wait > w) {
                worst = Some((scope, wait));
            }
        };
        if let Some((_, tolerance)) = self.chat {
            let tat = self.chats.get(&(bot_id, chat_id)).copied().unwrap_or(0);
            consider(
                Scope::Chat,
                tat.saturating_sub(tolerance).saturating_sub(now),
            );
        }
        if group_on && let Some(w) = self.groups.get(&(bot_id, chat_id)) {
            consider(Scope::Group, w.wait(now, group_max, group_window));
        }
        if bot_on && let Some(w) = self.bots.get(&bot_id) {
            consider(Scope::Bot, w.wait(now, bot_max, bot_window));
        }
        if let Some((scope, wait)) = worst {
            return Err(RateLimited {
                scope,
                wait: Duration::from_nanos(wait),
            });
        }

        if let Some((interval, _)) = self.chat {
            let tat = self.chats.entry((bot_id, chat_id)).or_insert(0);
            *tat = (*tat).max(now) + interval;
        }
        if group_on {
            self.groups
                .entry((bot_id, chat_id))
                .or_default()
                .record(now, group_max);
        }
        if bot_on {
            self.bots.entry(bot_id).or_default().record(now, bot_max);
        }
        self.since_prune += 1;
        if self.since_prune >= self.prune_every {
            self.prune(now, group_window, bot_window);
        }
        Ok(())
    }

    /// Number of (bot, chat) and (bot, group) entries currently held (for tests and stats).
    pub fn tracked(&self) -> (usize, usize) {
        (self.chats.len(), self.groups.len())
    }

    /// Drops entries that no longer constrain anything: full buckets and stale windows.
    fn prune(&mut self, now: u64, group_window: u64, bot_window: u64) {
        self.since_prune = 0;
        self.chats.retain(|_, tat| *tat > now);
        self.groups.retain(|_, w| !w.idle(now, group_window));
        self.bots.retain(|_, w| !w.idle(now, bot_window));
        self.prune_every = PRUNE_EVERY.max(self.chats.len() + self.groups.len());
    }

    fn nanos(&mut self, now: Instant) -> u64 {
        let t = nanos_of(now.saturating_duration_since(self.epoch));
        self.last = self.last.max(t);
        self.last
    }
}

/// A map keyed by integers, with a cheap multiplicative hash (ids are not attacker-chosen
/// in an emulator, so SipHash's flooding resistance buys nothing here).
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Folds integer writes with a rotate-xor-multiply step (FxHash's scheme).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
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
}
