//! The workload: which (chat, user) keys exist, how much each one wants, which
//! bot each lands on (the same rendezvous hashing the gateway uses), and the
//! ceiling the limits allow for all that. Pure: unit-tested below.

use std::collections::{BTreeMap, HashMap};

use shardgate_router::{Node, ShardKey, pick};

/// Private chats are `PRIVATE_BASE + i`, groups `-(GROUP_BASE + i)`, hot groups
/// `-(HOT_BASE + i)`: disjoint, stable across runs.
pub const PRIVATE_BASE: i64 = 100_000;
pub const GROUP_BASE: i64 = 1_000_000_000_000;
pub const HOT_BASE: i64 = 1_000_900_000_000;

/// What a key is, for per-class figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Private,
    Group,
    Hot,
}

impl Class {
    pub fn letter(self) -> char {
        match self {
            Class::Private => 'p',
            Class::Group => 'g',
            Class::Hot => 'h',
        }
    }

    pub fn from_letter(c: char) -> Option<Class> {
        match c {
            'p' => Some(Class::Private),
            'g' => Some(Class::Group),
            'h' => Some(Class::Hot),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Private => "private",
            Class::Group => "group",
            Class::Hot => "hot",
        }
    }
}

/// One shard key the load sends to.
#[derive(Debug, Clone)]
pub struct Key {
    pub chat_id: i64,
    pub user_id: i64,
    pub class: Class,
    /// Index into the bot list this key routes to (rendezvous winner).
    pub bot: usize,
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Regular chats (private and groups together).
    pub chats: u64,
    /// Share of the regular chats that are groups (0..=1).
    pub group_share: f64,
    /// Distinct senders per chat; each (chat, user) is its own shard key.
    pub users_per_chat: u64,
    /// Hot groups, each with `hot_rate` msg/s of demand.
    pub hot_chats: u64,
    pub hot_rate: f64,
}

/// Limits as rates, enough for ceiling math.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Rates {
    /// Sustained per-chat rate (msg/s).
    pub chat: f64,
    /// Sustained per-group rate (msg/s), already capped by `chat`.
    pub group: f64,
    /// Per-bot rate (msg/s).
    pub bot: f64,
}

impl Rates {
    /// The gateway's configured limits, as `Limits::ceiling_per_s` reads them
    /// (windows without the jitter margin).
    pub fn of_sched(l: &shardgate_sched::Limits) -> Rates {
        let chat = l.chat_rate;
        Rates {
            chat,
            group: (f64::from(l.group_max) / l.group_window.as_secs_f64()).min(chat),
            bot: f64::from(l.bot_max) / l.bot_window.as_secs_f64(),
        }
    }

    /// The same with the jitter margin added to both windows, as the
    /// scheduler enforces them: the most it can actually deliver.
    pub fn of_sched_with_margin(l: &shardgate_sched::Limits) -> Rates {
        let chat = l.chat_rate;
        let m = l.jitter_margin;
        Rates {
            chat,
            group: (f64::from(l.group_max) / (l.group_window + m).as_secs_f64()).min(chat),
            bot: f64::from(l.bot_max) / (l.bot_window + m).as_secs_f64(),
        }
    }

    /// Telegram's published limits (what the emulator enforces by default).
    pub fn telegram() -> Rates {
        Rates {
            chat: 1.0,
            group: 20.0 / 60.0,
            bot: 30.0,
        }
    }
}

/// All keys, in a stable order: regular keys first (chat-major), then hot ones.
#[derive(Debug, Clone)]
pub struct Workload {
    pub keys: Vec<Key>,
    /// Number of regular keys (the first ones in `keys`).
    pub regular: usize,
    pub bots: Vec<String>,
}

impl Workload {
    pub fn new(shape: &Shape, bots: &[String]) -> Workload {
        let nodes: Vec<Node> = bots.iter().map(|b| Node::new(b.clone())).collect();
        let users = shape.users_per_chat.max(1);
        let groups = ((shape.chats as f64) * shape.group_share.clamp(0.0, 1.0)).round() as u64;
        let mut keys = Vec::with_capacity(((shape.chats + shape.hot_chats) * users) as usize);
        let add = |keys: &mut Vec<Key>, chat_id: i64, class: Class, idx: u64| {
            for u in 0..users {
                // Private chats with one user: the user is the chat.
                let user_id = if class == Class::Private && users == 1 {
                    chat_id
                } else {
                    (idx * users + u + 1) as i64
                };
                let bot = if nodes.is_empty() {
                    0
                } else {
                    let h = ShardKey::new(chat_id, user_id).hash();
                    let w = pick(h, &nodes).expect("non-empty");
                    nodes.iter().position(|n| n == w).expect("member")
                };
                keys.push(Key {
                    chat_id,
                    user_id,
                    class,
                    bot,
                });
            }
        };
        for i in 0..shape.chats {
            if i < groups {
                add(&mut keys, -(GROUP_BASE + i as i64), Class::Group, i);
            } else {
                add(&mut keys, PRIVATE_BASE + i as i64, Class::Private, i);
            }
        }
        let regular = keys.len();
        for i in 0..shape.hot_chats {
            add(
                &mut keys,
                -(HOT_BASE + i as i64),
                Class::Hot,
                shape.chats + i,
            );
        }
        Workload {
            keys,
            regular,
            bots: bots.to_vec(),
        }
    }

    /// Demand of each key in msg/s: `regular_demand` for every regular key
    /// (infinity when saturating), `hot_rate / users` for each hot key.
    fn demand(&self, regular_demand: f64, shape: &Shape) -> Vec<f64> {
        let users = shape.users_per_chat.max(1) as f64;
        self.keys
            .iter()
            .map(|k| match k.class {
                Class::Hot => shape.hot_rate / users,
                _ => regular_demand,
            })
            .collect()
    }

    /// The ceiling per bot: `min(bot rate, sum over the chats routed to the
    /// bot of min(chat or group rate, the demand of that chat on that bot))`,
    /// the same math as `Limits::ceiling_per_s` plus finite demand. Also per
    /// class: when the bot limit binds, its rate is shared max-min fairly
    /// among its chats (water-filling).
    pub fn ceiling(&self, rates: Rates, regular_demand: f64, shape: &Shape) -> Ceiling {
        let demand = self.demand(regular_demand, shape);
        // (bot, chat) -> (class, demand)
        let mut pairs: HashMap<(usize, i64), (Class, f64)> = HashMap::new();
        for (k, d) in self.keys.iter().zip(demand) {
            let e = pairs.entry((k.bot, k.chat_id)).or_insert((k.class, 0.0));
            e.1 += d;
        }
        // Per bot: each chat's cap, then the bot's rate shared max-min fairly
        // (water-filling), which is how the scheduler's oldest-head-first
        // heap shares a saturated bot: a hot chat gets no more than any other.
        let mut caps: Vec<Vec<(Class, f64)>> = vec![Vec::new(); self.bots.len()];
        for ((bot, chat_id), (class, d)) in pairs {
            let limit = if chat_id < 0 { rates.group } else { rates.chat };
            caps[bot].push((class, limit.min(d)));
        }
        let mut per_bot = Vec::with_capacity(self.bots.len());
        let mut per_class: BTreeMap<Class, f64> = BTreeMap::new();
        for chats in &mut caps {
            let level = water_level(chats.iter().map(|c| c.1).collect(), rates.bot);
            let mut got = 0.0;
            for (class, cap) in chats.iter() {
                let share = cap.min(level);
                got += share;
                *per_class.entry(*class).or_default() += share;
            }
            per_bot.push(got);
        }
        Ceiling {
            total: per_bot.iter().sum(),
            per_bot,
            per_class,
        }
    }

    /// Distinct (bot, chat) pairs per bot: (private, groups), for the table.
    pub fn chats_per_bot(&self) -> Vec<(u64, u64)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = vec![(0u64, 0u64); self.bots.len()];
        for k in &self.keys {
            if seen.insert((k.bot, k.chat_id)) {
                if k.chat_id < 0 {
                    out[k.bot].1 += 1;
                } else {
                    out[k.bot].0 += 1;
                }
            }
        }
        out
    }
}

/// The level L at which `sum(min(cap, L)) == capacity` (infinity when the
/// caps fit).
fn water_level(mut caps: Vec<f64>, capacity: f64) -> f64 {
    caps.sort_by(|a, b| a.total_cmp(b));
    let mut left = capacity;
    let n = caps.len();
    for (i, c) in caps.iter().enumerate() {
        let rest = (n - i) as f64;
        if c * rest >= left {
            return left / rest;
        }
        left -= c;
    }
    f64::INFINITY
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    pub total: f64,
    pub per_bot: Vec<f64>,
    pub per_class: BTreeMap<Class, f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_sched::Limits;

    fn bots(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("bot-{i:02}")).collect()
    }

    fn shape(chats: u64, group_share: f64) -> Shape {
        Shape {
            chats,
            group_share,
            users_per_chat: 1,
            hot_chats: 0,
            hot_rate: 0.0,
        }
    }

    #[test]
    fn saturating_ceiling_matches_limits_ceiling_per_s() {
        let l = Limits::default();
        let r = Rates::of_sched(&l);
        for (n_bots, s) in [
            (8, shape(2000, 0.0)),
            (1, shape(20, 0.0)),
            (4, shape(40, 1.0)),
        ] {
            let w = Workload::new(&s, &bots(n_bots));
            let c = w.ceiling(r, f64::INFINITY, &s);
            let expect: f64 = w
                .chats_per_bot()
                .iter()
                .map(|(p, g)| l.ceiling_per_s(*p, *g))
                .sum();
            assert!((c.total - expect).abs() < 1e-9, "{} vs {expect}", c.total);
        }
        let s = shape(20, 0.0);
        let w = Workload::new(&s, &bots(1));
        assert!((w.ceiling(r, f64::INFINITY, &s).total - 18.0).abs() < 1e-9);
        let s = shape(40, 1.0);
        let w = Workload::new(&s, &bots(4));
        assert!((w.ceiling(r, f64::INFINITY, &s).total - 40.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn hot_group_demand_and_finite_demand() {
        let s = Shape {
            chats: 0,
            group_share: 0.0,
            users_per_chat: 1,
            hot_chats: 1,
            hot_rate: 50.0,
        };
        let w = Workload::new(&s, &bots(3));
        let c = w.ceiling(Rates::telegram(), f64::INFINITY, &s);
        assert!((c.total - 20.0 / 60.0).abs() < 1e-9);
        // Finite regular demand below the limits: the demand is the ceiling.
        let s = shape(100, 0.0);
        let w = Workload::new(&s, &bots(2));
        let c = w.ceiling(Rates::telegram(), 0.1, &s);
        assert!((c.total - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_saturated_bot_is_shared_max_min_fairly() {
        assert_eq!(water_level(vec![1.0, 1.0], 5.0), f64::INFINITY);
        assert!((water_level(vec![0.1, 1.0, 1.0], 1.1) - 0.5).abs() < 1e-12);
        assert!((water_level(vec![0.3, 0.3, 0.3, 0.3], 0.6) - 0.15).abs() < 1e-12);
        // One hot group among 99 private chats on one bot bound by 30/s:
        // everybody gets 0.3/s, the group (cap 1/3) too.
        let s = Shape {
            chats: 99,
            group_share: 0.0,
            users_per_chat: 1,
            hot_chats: 1,
            hot_rate: 50.0,
        };
        let w = Workload::new(&s, &bots(1));
        let c = w.ceiling(Rates::telegram(), f64::INFINITY, &s);
        assert!((c.total - 30.0).abs() < 1e-9);
        assert!((c.per_class[&Class::Hot] - 0.3).abs() < 1e-9);
        assert!((c.per_class[&Class::Private] - 29.7).abs() < 1e-9);
    }

    #[test]
    fn keys_route_like_the_gateway_and_users_split_groups() {
        let s = Shape {
            chats: 10,
            group_share: 0.5,
            users_per_chat: 4,
            hot_chats: 1,
            hot_rate: 5.0,
        };
        let w = Workload::new(&s, &bots(3));
        assert_eq!(w.keys.len(), 44);
        assert_eq!(w.regular, 40);
        assert_eq!(
            w.keys.iter().filter(|k| k.class == Class::Group).count(),
            20
        );
        for k in &w.keys {
            let nodes: Vec<Node> = w.bots.iter().map(|b| Node::new(b.clone())).collect();
            let win = pick(ShardKey::new(k.chat_id, k.user_id).hash(), &nodes).unwrap();
            assert_eq!(win.name(), w.bots[k.bot]);
        }
    }
}
