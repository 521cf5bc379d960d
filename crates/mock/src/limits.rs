//! Telegram's flood limits, as the emulator enforces them.
//!
//! Three limits are checked for every message (a send, an album item, a copy, an edit or a
//! delete), all keyed by the numeric bot id and all evaluated at the request's arrival time,
//! which the caller passes in (so tests can use explicit times):
//! - per (bot, chat): a token bucket of `chat_burst` tokens refilled at `chat_rate_per_s`,
//!   kept as a single "theoretical arrival time" (GCRA), 8 bytes per chat;
//! - per (bot, group) for `chat_id < 0`: at most `group_max` in any `group_window`;
//! - per bot: at most `bot_max` in any `bot_window`, or, for messages sent with
//!   `allow_paid_broadcast`, at most `paid_bot_max` (1000 by default) in any `bot_window`.
//!
//! A request of n messages (an album, a copy of many) is all or none: a limit of capacity C
//! needs room for min(n, C) and is charged all n, so a bucket may go into debt and the chat's
//! next message waits until it is paid (a window holds n slots). The windows keep the arrival
//! times of the last `max` accepted messages in a ring, so the check is O(1) per message. A
//! rejected request consumes nothing. Idle entries are pruned now and then, so memory follows
//! the number of recently active chats.

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
    /// Nanoseconds until `k` more messages fit (`1 <= k <= max`), 0 if they fit now: all but
    /// the newest `max - k` recorded times must have left the window.
    fn wait(&self, now: u64, max: usize, window: u64, k: usize) -> u64 {
        let keep = max.saturating_sub(k);
        if self.times.len() <= keep {
            return 0;
        }
        match self.times.get(self.times.len() - keep - 1) {
            Some(&t) => (t + window).saturating_sub(now),
            None => 0,
        }
    }

    /// Free slots now (`max` minus the times still inside the window).
    fn room(&self, now: u64, max: usize, window: u64) -> usize {
        let expired = self.times.partition_point(|&t| t + window <= now);
        max.saturating_sub(self.times.len() - expired)
    }

    fn record(&mut self, now: u64, max: usize, n: usize) {
        for _ in 0..n.min(max) {
            self.times.push_back(now);
        }
        while self.times.len() > max {
            self.times.pop_front();
        }
    }

    fn idle(&self, now: u64, window: u64) -> bool {
        self.times.back().is_none_or(|&last| last + window <= now)
    }
}

/// Messages per `bot_window` a bot may send with `allow_paid_broadcast` (Telegram: 1000/s).
pub const PAID_BOT_MAX: u32 = 1000;

/// What an accepted request cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Messages that went over the bot's free rate on the paid lane (each costs Stars).
    pub paid: u32,
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
    /// Every message of a bot, against the paid lane's `paid_max`.
    paid: FastMap<u64, Window>,
    paid_max: u32,
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
            paid: FastMap::default(),
            paid_max: PAID_BOT_MAX,
            since_prune: 0,
            prune_every: PRUNE_EVERY,
        }
    }

    /// The limits this limiter enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The same limiter with another paid-lane rate (messages per `bot_window`; 0 turns the
    /// paid lane off, so paid messages meet the free rate).
    pub fn with_paid_bot_max(mut self, paid_max: u32) -> Self {
        self.paid_max = paid_max;
        self
    }

    /// The paid lane's rate, messages per `bot_window`.
    pub fn paid_bot_max(&self) -> u32 {
        self.paid_max
    }

    /// Checks one message from `bot_id` to `chat_id` arriving at `now`. On success the
    /// message is counted against every limit; on rejection nothing is counted.
    pub fn check(&mut self, bot_id: u64, chat_id: i64, now: Instant) -> Result<(), RateLimited> {
        self.check_many(bot_id, chat_id, 1, false, now).map(|_| ())
    }

    /// Checks a request of `n` messages (at least 1) from `bot_id` to `chat_id` arriving at
    /// `now`, all or none; `paid`: sent with `allow_paid_broadcast`, so the bot's rate is
    /// the paid lane's once the free rate is used up.
    pub fn check_many(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        n: u32,
        paid: bool,
        now: Instant,
    ) -> Result<Admitted, RateLimited> {
        let now = self.nanos(now);
        let n = n.max(1);
        let group_max = self.limits.group_max as usize;
        let group_window = nanos_of(self.limits.group_window);
        let bot_max = self.limits.bot_max as usize;
        let bot_window = nanos_of(self.limits.bot_window);
        let paid_max = self.paid_max as usize;
        let group_on = chat_id < 0 && group_max > 0 && group_window > 0;
        let bot_on = bot_max > 0 && bot_window > 0;
        let paid_on = paid && bot_on && paid_max > bot_max;
        let count = n as usize;

        let mut worst: Option<(Scope, u64)> = None;
        let mut consider = |scope: Scope, wait: u64| {
            if wait > 0 && worst.is_none_or(|(_, w)| wait > w) {
                worst = Some((scope, wait));
            }
        };
        if let Some((interval, tolerance)) = self.chat {
            // Room for min(n, burst): the k-th message must conform.
            let k = u64::from(n.min(self.limits.chat_burst)).max(1);
            let tat = self.chats.get(&(bot_id, chat_id)).copied().unwrap_or(0);
            let last = tat.max(now) + (k - 1) * interval;
            consider(
                Scope::Chat,
                last.saturating_sub(tolerance).saturating_sub(now),
            );
        }
        if group_on && let Some(w) = self.groups.get(&(bot_id, chat_id)) {
            consider(
                Scope::Group,
                w.wait(now, group_max, group_window, count.min(group_max)),
            );
        }
        let free_room = match self.bots.get(&bot_id) {
            Some(w) if bot_on => w.room(now, bot_max, bot_window),
            _ => bot_max,
        };
        if paid_on {
            if let Some(w) = self.paid.get(&bot_id) {
                consider(
                    Scope::Bot,
                    w.wait(now, paid_max, bot_window, count.min(paid_max)),
                );
            }
        } else if bot_on && let Some(w) = self.bots.get(&bot_id) {
            consider(
                Scope::Bot,
                w.wait(now, bot_max, bot_window, count.min(bot_max)),
            );
        }
        if let Some((scope, wait)) = worst {
            return Err(RateLimited {
                scope,
                wait: Duration::from_nanos(wait),
            });
        }

        if let Some((interval, _)) = self.chat {
            let tat = self.chats.entry((bot_id, chat_id)).or_insert(0);
            *tat = (*tat).max(now) + u64::from(n) * interval;
        }
        if group_on {
            self.groups
                .entry((bot_id, chat_id))
                .or_default()
                .record(now, group_max, count);
        }
        let mut admitted = Admitted::default();
        if bot_on {
            self.bots
                .entry(bot_id)
                .or_default()
                .record(now, bot_max, count);
            if paid_max > bot_max {
                self.paid
                    .entry(bot_id)
                    .or_default()
                    .record(now, paid_max, count);
            }
            if paid_on {
                admitted.paid = u32::try_from(count.saturating_sub(free_room)).unwrap_or(u32::MAX);
            }
        }
        self.since_prune += count;
        if self.since_prune >= self.prune_every {
            self.prune(now, group_window, bot_window);
        }
        Ok(admitted)
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
        self.paid.retain(|_, w| !w.idle(now, bot_window));
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
#[path = "limits_tests.rs"]
mod tests;
