//! Counters the emulator keeps: totals and per bot id, by outcome, plus the delivery log's
//! duplicate count and the highest delivery rate observed in any one-second window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::limits::Scope;

/// Outcome counters, for all bots together or for one bot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Bot API requests received (every outcome, injected faults included).
    pub requests: u64,
    /// Messages delivered (sends, album items, copies and forwards: one per message).
    pub delivered: u64,
    /// Messages delivered over the bot's free rate on the paid lane (`allow_paid_broadcast`).
    pub paid: u64,
    /// Messages edited.
    pub edited: u64,
    /// Messages deleted.
    pub deleted: u64,
    /// Deliveries whose `(chat_id, text)` equals an earlier delivery's (by any bot).
    pub duplicates: u64,
    /// All 429 answers (the sum of the four scopes below).
    pub rate_limited: u64,
    /// 429: per (bot, chat) bucket.
    pub rate_limited_chat: u64,
    /// 429: per (bot, group) window.
    pub rate_limited_group: u64,
    /// 429: per bot window.
    pub rate_limited_bot: u64,
    /// 429: forced throttle set through the control plane.
    pub rate_limited_forced: u64,
    /// 401 answers (revoked bots).
    pub unauthorized: u64,
    /// 403 answers (blocked or kicked).
    pub forbidden: u64,
    /// 400 answers (validation, missing or migrated chats).
    pub bad_request: u64,
    /// 404 answers (malformed token or unknown method).
    pub not_found: u64,
    /// Injected 500/502 answers.
    pub injected_5xx: u64,
    /// Injected connection drops.
    pub injected_drops: u64,
    /// Most deliveries seen within any one-second window.
    pub max_delivered_per_s: u64,
    /// Bot API requests by `User-Agent` header (`""`: none sent). At most
    /// 64 distinct values; later ones count under `"(other)"`.
    pub user_agents: BTreeMap<String, u64>,
}

/// Distinct `User-Agent` values counted per [`Counters`].
pub const MAX_USER_AGENTS: usize = 64;
/// Longest `User-Agent` kept, in characters.
const MAX_USER_AGENT_CHARS: usize = 200;

/// A snapshot of the emulator's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// All bots together (requests with a malformed token count only here).
    pub totals: Counters,
    /// Per numeric bot id.
    pub bots: BTreeMap<u64, Counters>,
    /// Sequence number of the latest delivery (0 = none yet).
    pub last_seq: u64,
    /// Whether rate limits are being enforced.
    pub limits_enabled: bool,
}

impl Stats {
    /// Counters of one bot (all zero if it was never seen).
    pub fn bot(&self, bot_id: u64) -> Counters {
        self.bots.get(&bot_id).cloned().unwrap_or_default()
    }
}

/// One outcome to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered {
        messages: u64,
        duplicates: u64,
        paid: u64,
    },
    Edited,
    /// How many messages a delete removed.
    Deleted(u64),
    RateLimited(Option<Scope>),
    Error(u16),
    Injected5xx,
    InjectedDrop,
    /// Answered 200 without delivering (getMe, answerCallbackQuery).
    Answered,
}

/// Deliveries within the last second, to find the highest rate.
#[derive(Debug, Default)]
struct RateWatch {
    times: VecDeque<u64>,
}

impl RateWatch {
    fn observe(&mut self, now_ns: u64) -> u64 {
        while self
            .times
            .front()
            .is_some_and(|&t| t + 1_000_000_000 <= now_ns)
        {
            self.times.pop_front();
        }
        self.times.push_back(now_ns);
        self.times.len() as u64
    }
}

/// The mutable counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct StatsBook {
    totals: Counters,
    bots: HashMap<u64, Counters>,
    total_rate: RateWatch,
    bot_rates: HashMap<u64, RateWatch>,
}

impl StatsBook {
    /// Counts one request and its outcome; `now_ns` is the arrival time (monotonic).
    pub fn count(&mut self, bot_id: Option<u64>, outcome: Outcome, now_ns: u64) {
        apply(&mut self.totals, outcome);
        let delivered = match outcome {
            Outcome::Delivered { messages, .. } => messages,
            _ => 0,
        };
        for _ in 0..delivered {
            let n = self.total_rate.observe(now_ns);
            self.totals.max_delivered_per_s = self.totals.max_delivered_per_s.max(n);
        }
        if let Some(id) = bot_id {
            let c = self.bots.entry(id).or_default();
            apply(c, outcome);
            for _ in 0..delivered {
                let n = self.bot_rates.entry(id).or_default().observe(now_ns);
                c.max_delivered_per_s = c.max_delivered_per_s.max(n);
            }
        }
    }

    /// Counts one request's `User-Agent` (once per request, next to [`count`](Self::count)).
    pub fn count_user_agent(&mut self, bot_id: Option<u64>, user_agent: &str) {
        let ua: String = user_agent.chars().take(MAX_USER_AGENT_CHARS).collect();
        tally(&mut self.totals.user_agents, &ua);
        if let Some(id) = bot_id {
            tally(&mut self.bots.entry(id).or_default().user_agents, &ua);
        }
    }

    pub fn snapshot(&self, last_seq: u64, limits_enabled: bool) -> Stats {
        Stats {
            totals: self.totals.clone(),
            bots: self.bots.iter().map(|(k, v)| (*k, v.clone())).collect(),
            last_seq,
            limits_enabled,
        }
    }
}

fn tally(map: &mut BTreeMap<String, u64>, ua: &str) {
    let key = if map.contains_key(ua) || map.len() < MAX_USER_AGENTS {
        ua
    } else {
        "(other)"
    };
    *map.entry(key.to_owned()).or_default() += 1;
}

fn apply(c: &mut Counters, outcome: Outcome) {
    c.requests += 1;
    match outcome {
        Outcome::Delivered {
            messages,
            duplicates,
            paid,
        } => {
            c.delivered += messages;
            c.duplicates += duplicates;
            c.paid += paid;
        }
        Outcome::Edited => c.edited += 1,
        Outcome::Deleted(n) => c.deleted += n,
        Outcome::RateLimited(scope) => {
            c.rate_limited += 1;
            match scope {
                Some(Scope::Chat) => c.rate_limited_chat += 1,
                Some(Scope::Group) => c.rate_limited_group += 1,
                Some(Scope::Bot) => c.rate_limited_bot += 1,
                None => c.rate_limited_forced += 1,
            }
        }
        Outcome::Error(401) => c.unauthorized += 1,
        Outcome::Error(403) => c.forbidden += 1,
        Outcome::Error(404) => c.not_found += 1,
        Outcome::Error(_) => c.bad_request += 1,
        Outcome::Injected5xx => c.injected_5xx += 1,
        Outcome::InjectedDrop => c.injected_drops += 1,
        Outcome::Answered => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_totals_and_per_bot() {
        let mut b = StatsBook::default();
        b.count(
            Some(1),
            Outcome::Delivered {
                messages: 1,
                duplicates: 0,
                paid: 0,
            },
            0,
        );
        b.count(
            Some(1),
            Outcome::Delivered {
                messages: 1,
                duplicates: 1,
                paid: 0,
            },
            10,
        );
        b.count(Some(2), Outcome::RateLimited(Some(Scope::Group)), 20);
        b.count(Some(2), Outcome::RateLimited(None), 20);
        b.count(None, Outcome::Error(404), 30);
        b.count(Some(2), Outcome::Error(403), 30);
        b.count(Some(2), Outcome::InjectedDrop, 30);
        b.count(
            Some(1),
            Outcome::Delivered {
                messages: 1,
                duplicates: 0,
                paid: 0,
            },
            2_000_000_000,
        );
        let s = b.snapshot(3, true);
        assert_eq!(s.totals.requests, 8);
        assert_eq!(s.totals.delivered, 3);
        assert_eq!(s.totals.duplicates, 1);
        assert_eq!(s.totals.rate_limited, 2);
        assert_eq!(s.totals.not_found, 1);
        assert_eq!(s.totals.max_delivered_per_s, 2);
        assert_eq!(s.bot(1).delivered, 3);
        assert_eq!(s.bot(2).rate_limited_group, 1);
        assert_eq!(s.bot(2).rate_limited_forced, 1);
        assert_eq!(s.bot(2).forbidden, 1);
        assert_eq!(s.bot(2).injected_drops, 1);
        assert_eq!(s.bot(9), Counters::default());
        b.count_user_agent(Some(1), "shardgate/0.1.0 (gw-1)");
        b.count_user_agent(Some(2), "");
        for i in 0..100 {
            b.count_user_agent(None, &format!("ua-{i}"));
        }
        let s = b.snapshot(3, true);
        assert_eq!(s.bot(1).user_agents["shardgate/0.1.0 (gw-1)"], 1);
        assert_eq!(s.bot(2).user_agents[""], 1);
        assert_eq!(s.totals.user_agents.len(), MAX_USER_AGENTS + 1);
        assert_eq!(
            s.totals.user_agents["(other)"],
            102 - MAX_USER_AGENTS as u64
        );
        let json = serde_json::to_string(&s).unwrap();
        let back: Stats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
