//! A bounded tracker of the hottest chats, so that per-chat figures never
//! become metric labels (a label per chat would explode cardinality).
//!
//! Each tracker is a *space-saving* summary (Metwally et al.): a fixed set of
//! [`TRACKED`] counters; an event for an untracked chat takes over the counter
//! with the smallest score and inherits that score as its possible
//! over-estimate (`error`). Any chat whose true score exceeds `total /
//! TRACKED` is guaranteed to be tracked, so the top [`HOT_CHATS_K`] are right
//! for the chats that matter. Memory and time per event are bounded by
//! `TRACKED` (a linear scan of 64 small slots).
//!
//! Scores are kept per time window ([`WINDOW`]): the report merges the current
//! window with the previous one, so a chat that cooled down leaves the list
//! after two windows instead of staying forever.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many chats [`crate::Metrics::hot_chats`] reports at most.
pub const HOT_CHATS_K: usize = 20;
/// Counters kept per window (more than K, for accuracy).
pub const TRACKED: usize = 64;
/// Length of one scoring window.
pub const WINDOW: Duration = Duration::from_secs(300);

/// What a chat is hot by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotBy {
    /// 429 answers Telegram gave for the chat (score: how many; `max`: the
    /// longest `retry_after`, in seconds).
    TooManyRequests,
    /// Time its messages waited in queue (score: seconds summed; `max`: the
    /// longest single wait, in seconds).
    QueueWait,
}

/// One hot chat, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct HotChat {
    pub chat_id: i64,
    /// The bot of the latest event for the chat.
    pub bot: String,
    /// 429s counted, or seconds waited in queue (summed), over the last one
    /// to two windows. May over-count by at most `error`.
    pub score: f64,
    /// Events counted (429s, or messages released from the queue).
    pub events: u64,
    /// Largest single value seen (`retry_after` or wait), in seconds.
    pub max: f64,
    /// Space-saving over-estimate bound of `score` (0 = exact).
    pub error: f64,
}

impl fmt::Display for HotChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chat={} bot={} score={:.3} events={} max={:.3}s",
            self.chat_id, self.bot, self.score, self.events, self.max
        )
    }
}

#[derive(Debug, Clone)]
struct Slot {
    chat_id: i64,
    score: f64,
    error: f64,
    events: u64,
    max: f64,
    bot: Arc<str>,
}

/// One window's space-saving summary.
#[derive(Debug, Default)]
struct SpaceSaving {
    slots: Vec<Slot>,
}

impl SpaceSaving {
    fn offer(&mut self, chat_id: i64, weight: f64, value: f64, bot: &Arc<str>) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.chat_id == chat_id) {
            s.score += weight;
            s.events += 1;
            s.max = s.max.max(value);
            if !Arc::ptr_eq(&s.bot, bot) {
                s.bot = bot.clone();
            }
            return;
        }
        let slot = |score: f64, error: f64| Slot {
            chat_id,
            score,
            error,
            events: 1,
            max: value,
            bot: bot.clone(),
        };
        if self.slots.len() < TRACKED {
            self.slots.push(slot(weight, 0.0));
            return;
        }
        // Take over the smallest counter.
        let (i, min) = self
            .slots
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .map(|(i, s)| (i, s.score))
            .expect("TRACKED > 0");
        self.slots[i] = slot(min + weight, min);
    }
}

/// A windowed space-saving tracker.
#[derive(Debug)]
pub(crate) struct HotChats {
    cur: SpaceSaving,
    prev: SpaceSaving,
    started: Instant,
    window: Duration,
}

impl HotChats {
    pub(crate) fn new(now: Instant, window: Duration) -> Self {
        HotChats {
            cur: SpaceSaving::default(),
            prev: SpaceSaving::default(),
            started: now,
            window,
        }
    }

    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age < self.window {
            return;
        }
        self.prev = std::mem::take(&mut self.cur);
        if age >= self.window * 2 {
            // Nothing happened for a whole window: the previous one is stale too.
            self.prev = SpaceSaving::default();
        }
        self.started = now;
    }

    pub(crate) fn offer(
        &mut self,
        now: Instant,
        chat_id: i64,
        weight: f64,
        value: f64,
        bot: &Arc<str>,
    ) {
        self.roll(now);
        self.cur.offer(chat_id, weight, value, bot);
    }

    /// The `k` hottest chats, hottest first (ties: lower chat id first).
    pub(crate) fn top(&mut self, now: Instant, k: usize) -> Vec<HotChat> {
        self.roll(now);
        let mut merged: Vec<HotChat> =
            Vec::with_capacity(self.cur.slots.len() + self.prev.slots.len());
        for s in self.prev.slots.iter().chain(self.cur.slots.iter()) {
            match merged.iter_mut().find(|h| h.chat_id == s.chat_id) {
                Some(h) => {
                    h.score += s.score;
                    h.events += s.events;
                    h.max = h.max.max(s.max);
                    h.error += s.error;
                    // `cur` comes second: its bot is the latest.
                    h.bot = s.bot.to_string();
                }
                None => merged.push(HotChat {
                    chat_id: s.chat_id,
                    bot: s.bot.to_string(),
                    score: s.score,
                    events: s.events,
                    max: s.max,
                    error: s.error,
                }),
            }
        }
        merged.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chat_id.cmp(&b.chat_id)));
        merged.truncate(k);
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn counts_exactly_while_under_capacity() {
        let t0 = Instant::now();
        let mut h = HotChats::new(t0, WINDOW);
        let a = bot("alpha");
        for i in 0..10 {
            for _ in 0..=i {
                h.offer(t0, 100 + i, 1.0, 2.0, &a);
            }
        }
        let top = h.top(t0, 3);
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].chat_id, 109);
        assert_eq!(top[0].score, 10.0);
        assert_eq!(top[0].events, 10);
        assert_eq!(top[0].error, 0.0);
        assert_eq!(top[1].chat_id, 108);
        assert_eq!(top[2].chat_id, 107);
        assert_eq!(top[0].bot, "alpha");
    }

    #[test]
    fn heavy_hitters_survive_a_flood_of_cold_chats() {
        let t0 = Instant::now();
        let mut h = HotChats::new(t0, WINDOW);
        let a = bot("alpha");
        let b = bot("beta");
        // 5 hot chats with 100 events each, interleaved with 4 000 distinct
        // cold chats seen once each: 4 500 events, so any chat above
        // 4 500 / TRACKED (about 70) is guaranteed a counter.
        let mut cold = 1_000_000i64;
        for round in 0..100 {
            for hot in 0..5i64 {
                h.offer(
                    t0,
                    -100 - hot,
                    1.0,
                    1.0,
                    if round % 2 == 0 { &a } else { &b },
                );
                for _ in 0..8 {
                    cold += 1;
                    h.offer(t0, cold, 1.0, 1.0, &a);
                }
            }
        }
        let top = h.top(t0, HOT_CHATS_K);
        assert_eq!(top.len(), HOT_CHATS_K);
        let hot: Vec<i64> = top.iter().take(5).map(|c| c.chat_id).collect();
        for id in -104..=-100 {
            assert!(hot.contains(&id), "hot chat {id} missing from {hot:?}");
        }
        // Bounded memory whatever the number of chats.
        assert!(h.cur.slots.len() <= TRACKED);
        // The latest bot is reported.
        assert_eq!(top[0].bot, "beta");
    }

    #[test]
    fn weights_and_max() {
        let t0 = Instant::now();
        let mut h = HotChats::new(t0, WINDOW);
        let a = bot("alpha");
        h.offer(t0, 1, 0.5, 0.5, &a);
        h.offer(t0, 1, 3.0, 3.0, &a);
        h.offer(t0, 2, 2.0, 2.0, &a);
        let top = h.top(t0, 5);
        assert_eq!(top[0].chat_id, 1);
        assert_eq!(top[0].score, 3.5);
        assert_eq!(top[0].max, 3.0);
        assert_eq!(top[1].chat_id, 2);
    }

    #[test]
    fn cold_chats_age_out_after_two_windows() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut h = HotChats::new(t0, w);
        let a = bot("alpha");
        h.offer(t0, 7, 1.0, 1.0, &a);
        // Next window: still reported (previous window merged in).
        h.offer(t0 + Duration::from_secs(11), 8, 1.0, 1.0, &a);
        let top = h.top(t0 + Duration::from_secs(12), 5);
        assert_eq!(
            top.iter().map(|c| c.chat_id).collect::<Vec<_>>(),
            vec![7, 8]
        );
        // Two windows later: only the newer one is left.
        let top = h.top(t0 + Duration::from_secs(22), 5);
        assert_eq!(top.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![8]);
        // Long silence: nothing.
        assert!(h.top(t0 + Duration::from_secs(100), 5).is_empty());
    }

    #[test]
    fn merged_windows_add_up() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut h = HotChats::new(t0, w);
        let a = bot("alpha");
        h.offer(t0, 5, 2.0, 2.0, &a);
        h.offer(t0 + Duration::from_secs(10), 5, 3.0, 3.0, &a);
        let top = h.top(t0 + Duration::from_secs(10), 5);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].score, 5.0);
        assert_eq!(top[0].events, 2);
        assert_eq!(top[0].max, 3.0);
        assert_eq!(
            top[0].to_string(),
            "chat=5 bot=alpha score=5.000 events=2 max=3.000s"
        );
    }
}
