//! Which bot serves a message: rendezvous (highest-random-weight) hashing of
//! `(chat_id, user_id)` over the bots that may take traffic.
//!
//! Rendezvous hashing scores every (key, bot) pair and picks the highest
//! score. When a bot leaves, only the keys it won move (each to its runner-up);
//! when it returns they come back. That keeps per-chat limiter state and
//! message order on one bot as long as the fleet allows. The same function
//! also spreads bots over gateway instances in cluster mode.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The shard key of a message: who it goes to and whom it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardKey {
    pub chat_id: i64,
    pub user_id: i64,
}

impl ShardKey {
    pub fn new(chat_id: i64, user_id: i64) -> Self {
        ShardKey { chat_id, user_id }
    }

    /// xxh3 of the key's 16 little-endian bytes; the per-key half of a score.
    pub fn hash(&self) -> u64 {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.chat_id.to_le_bytes());
        bytes[8..].copy_from_slice(&self.user_id.to_le_bytes());
        xxh3_64_with_seed(&bytes, 0)
    }
}

/// The key hash of a name (xxh3, seed 0): how a bot is placed on gateway
/// instances in cluster mode (`pick(key_of_name(bot), instances)`).
pub fn key_of_name(name: &str) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), 0)
}

/// A candidate with its name hashed once, so scoring is one mix per candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: String,
    name_hash: u64,
}

impl Node {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let name_hash = xxh3_64_with_seed(name.as_bytes(), 0x5348_4152_4447_4154);
        Node { name, name_hash }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The weight of this node for a key hash: higher wins.
    pub fn score(&self, key_hash: u64) -> u64 {
        mix(key_hash ^ self.name_hash)
    }
}

/// A finaliser (splitmix64) so that scores of nearby key/name hashes are
/// independent; xor alone would rank nodes the same way for many keys.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The winner for `key_hash` among `nodes`; ties (practically impossible)
/// go to the smaller name so every instance picks the same node.
pub fn pick<'a, I>(key_hash: u64, nodes: I) -> Option<&'a Node>
where
    I: IntoIterator<Item = &'a Node>,
{
    nodes.into_iter().max_by(|a, b| {
        a.score(key_hash)
            .cmp(&b.score(key_hash))
            .then_with(|| b.name.cmp(&a.name))
    })
}

/// All nodes ordered from most to least preferred for `key_hash`: the
/// failover order of a key.
pub fn rank(key_hash: u64, nodes: &[Node]) -> Vec<&Node> {
    let mut ranked: Vec<&Node> = nodes.iter().collect();
    ranked.sort_by(|a, b| {
        b.score(key_hash)
            .cmp(&a.score(key_hash))
            .then_with(|| a.name.cmp(&b.name))
    });
    ranked
}

/// Spreads named items (bots) over nodes (instances) by rendezvous hashing
/// with bounded load: in name order, each item goes to its highest-scoring
/// node that has fewer than ceil(items / nodes) items. Plain rendezvous can
/// leave a node with nothing when items are few; the bound keeps the split
/// even while most items keep their first choice. Deterministic: every
/// instance computes the same assignment from the same names. Returns, for
/// each item (sorted by name), the index of its node.
pub fn assign_bounded<'a>(
    items: impl IntoIterator<Item = &'a str>,
    nodes: &[Node],
) -> Vec<(&'a str, usize)> {
    let mut items: Vec<&str> = items.into_iter().collect();
    items.sort_unstable();
    items.dedup();
    if nodes.is_empty() {
        return Vec::new();
    }
    let cap = items.len().div_ceil(nodes.len());
    let mut load = vec![0usize; nodes.len()];
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let h = key_of_name(item);
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|a, b| {
            nodes[*b]
                .score(h)
                .cmp(&nodes[*a].score(h))
                .then_with(|| nodes[*a].name.cmp(&nodes[*b].name))
        });
        if let Some(i) = order.into_iter().find(|i| load[*i] < cap) {
            load[i] += 1;
            out.push((item, i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fleet(n: usize) -> Vec<Node> {
        (0..n).map(|i| Node::new(format!("bot-{i}"))).collect()
    }

    #[test]
    fn empty_fleet_picks_nothing() {
        assert!(pick(42, &[]).is_none());
    }

    #[test]
    fn eight_bots_share_100k_keys_within_ten_percent() {
        let nodes = fleet(8);
        let mut counts = [0usize; 8];
        for i in 0..100_000i64 {
            // Realistic keys: private chats (user = chat) and group members.
            let key = if i % 4 == 0 {
                ShardKey::new(-1_000_000_000_000 - (i % 500), i)
            } else {
                ShardKey::new(100_000 + i * 7, 100_000 + i * 7)
            };
            let winner = pick(key.hash(), &nodes).expect("non-empty");
            let idx = nodes.iter().position(|n| n == winner).expect("member");
            counts[idx] += 1;
        }
        let ideal = 100_000.0 / 8.0;
        for (i, c) in counts.iter().enumerate() {
            let dev = (*c as f64 - ideal).abs() / ideal;
            assert!(
                dev <= 0.10,
                "bot {i} got {c} keys ({:.1}% off)",
                dev * 100.0
            );
        }
    }

    #[test]
    fn removing_a_bot_moves_only_its_keys_and_they_come_back() {
        let all = fleet(5);
        let without: Vec<Node> = all
            .iter()
            .filter(|n| n.name() != "bot-2")
            .cloned()
            .collect();
        let mut moved = 0;
        for i in 0..20_000i64 {
            let h = ShardKey::new(i, i / 3).hash();
            let before = pick(h, &all).expect("non-empty");
            let after = pick(h, &without).expect("non-empty");
            if before.name() == "bot-2" {
                moved += 1;
                assert_ne!(after.name(), "bot-2");
            } else {
                assert_eq!(before, after, "key {i} moved though its bot stayed");
            }
            // Back with the full fleet: the original owner again.
            assert_eq!(pick(h, &all), Some(before));
        }
        assert!(moved > 3_000 && moved < 5_000, "moved {moved} of 20000");
    }

    #[test]
    fn bounded_assignment_leaves_no_node_idle() {
        let nodes: Vec<Node> = ["gw-1", "gw-2", "gw-3"]
            .into_iter()
            .map(Node::new)
            .collect();
        let names: Vec<String> = (1..=6).map(|i| format!("b{i}")).collect();
        let a = assign_bounded(names.iter().map(String::as_str), &nodes);
        assert_eq!(a.len(), 6);
        let mut load = [0; 3];
        for (_, i) in &a {
            load[*i] += 1;
        }
        assert_eq!(load, [2, 2, 2]);
    }

    proptest! {
        #[test]
        fn bounded_assignment_is_balanced_and_order_free(n_items in 0usize..40, n_nodes in 1usize..6, rot in 0usize..40) {
            let nodes: Vec<Node> = (0..n_nodes).map(|i| Node::new(format!("gw-{i}"))).collect();
            let mut names: Vec<String> = (0..n_items).map(|i| format!("bot-{i}")).collect();
            let a: Vec<(String, usize)> = assign_bounded(names.iter().map(String::as_str), &nodes)
                .into_iter()
                .map(|(n, i)| (n.to_owned(), i))
                .collect();
            prop_assert_eq!(a.len(), n_items);
            let cap = n_items.div_ceil(n_nodes);
            let mut load = vec![0; n_nodes];
            for (_, i) in &a { load[*i] += 1; }
            prop_assert!(load.iter().all(|l| *l <= cap));
            if n_items > 0 { names.rotate_left(rot % n_items); }
            let b: Vec<(String, usize)> = assign_bounded(names.iter().map(String::as_str), &nodes)
                .into_iter()
                .map(|(n, i)| (n.to_owned(), i))
                .collect();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn pick_is_the_head_of_rank(chat in any::<i64>(), user in any::<i64>(), n in 1usize..12) {
            let nodes = fleet(n);
            let h = ShardKey::new(chat, user).hash();
            let ranked = rank(h, &nodes);
            prop_assert_eq!(ranked.len(), n);
            prop_assert_eq!(Some(ranked[0]), pick(h, &nodes));
        }

        #[test]
        fn order_of_candidates_does_not_matter(chat in any::<i64>(), user in any::<i64>(), n in 1usize..12, rot in 0usize..12) {
            let nodes = fleet(n);
            let mut rotated = nodes.clone();
            rotated.rotate_left(rot % n);
            let h = ShardKey::new(chat, user).hash();
            prop_assert_eq!(pick(h, &nodes).map(Node::name), pick(h, &rotated).map(Node::name));
        }

        #[test]
        fn removal_moves_key_to_its_runner_up(chat in any::<i64>(), user in any::<i64>(), n in 2usize..10, gone in 0usize..10) {
            let nodes = fleet(n);
            let gone = gone % n;
            let h = ShardKey::new(chat, user).hash();
            let ranked = rank(h, &nodes);
            let rest: Vec<Node> = nodes.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, n)| n.clone()).collect();
            let expected = ranked.iter().find(|n| n.name() != nodes[gone].name()).map(|n| n.name());
            prop_assert_eq!(pick(h, &rest).map(Node::name), expected);
        }
    }
}
