//! The in-memory copy of the cluster's keys, kept by the watch
//! (`watch.rs`) and read by the ownership loop and the fleet view.
//!
//! Values are decoded as they arrive; a malformed value is logged with its
//! key (never its content) and the key is treated as absent. Every entry
//! keeps its etcd revisions: the owner key's revision is the fence, and
//! comparing a bot's and its health's revisions tells whether the health
//! predates the bot's current token (see [`Mirror::effective_health`]).

use std::collections::{BTreeMap, HashMap};

use shardgate_callers::{Ban, CallerJson, CallerSpec, ViolationSettings};
use shardgate_registry::{BotSpec, Health, HealthState};
use shardgate_router::{Node, assign_bounded, key_of_name, pick};

use crate::keys::{self, Key, Keys, MemberValue};

/// A decoded value with the revisions of its creation and its last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// `owners/<bot>` as seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerEntry {
    pub instance: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub lease: i64,
}

/// Revisions and lease of a key-value pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvMeta {
    pub mod_revision: i64,
    pub create_revision: i64,
    pub lease: i64,
}

/// The cluster as last read from etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirror {
    /// Every change up to this revision has been applied.
    pub revision: i64,
    pub bots: BTreeMap<String, Versioned<BotSpec>>,
    pub health: BTreeMap<String, Versioned<Health>>,
    pub members: BTreeMap<String, Versioned<MemberValue>>,
    pub owners: BTreeMap<String, OwnerEntry>,
    /// `callers/<name>`, decoded and validated.
    pub callers: BTreeMap<String, CallerSpec>,
    /// `bans/<caller>` (each under a lease that ends with the ban).
    pub bans: BTreeMap<String, Ban>,
    /// `settings/violations`; absent: the defaults.
    pub violations: Option<ViolationSettings>,
    /// `settings/cluster_key`.
    pub cluster_key: Option<String>,
}

impl Mirror {
    /// Applies a put of `key` (outside the layout: ignored). Returns
    /// whether the key is part of the layout (a put of anything else, like
    /// the quota counters, changes nothing worth publishing).
    pub fn apply_put(&mut self, keys: &Keys, key: &[u8], value: &[u8], meta: KvMeta) -> bool {
        let Some(parsed) = keys.parse(key) else {
            return false;
        };
        let relevant = parsed != Key::Other;
        let shown = String::from_utf8_lossy(key);
        let rev = meta.mod_revision;
        let problem = match parsed {
            Key::Bot(name) => match keys::decode_bot(name, value) {
                Ok(spec) => {
                    let bot_id = spec.token.bot_id();
                    self.bots.insert(name.to_owned(), versioned(spec, meta));
                    if let Some(kept) = self.same_bot_kept(name) {
                        tracing::warn!(
                            key = %shown,
                            revision = rev,
                            "skipping bot {name:?}: {}",
                            same_bot_reason(bot_id, kept)
                        );
                    }
                    None
                }
                Err(p) => {
                    // A bot whose value is bad is treated as absent.
                    self.bots.remove(name);
                    Some(p)
                }
            },
            Key::Health(name) => match keys::decode_health(name, value) {
                Ok(h) => {
                    self.health.insert(name.to_owned(), versioned(h, meta));
                    None
                }
                Err(p) => {
                    self.health.remove(name);
                    Some(p)
                }
            },
            Key::Member(id) => match keys::decode_member(id, value) {
                Ok(m) => {
                    self.members.insert(id.to_owned(), versioned(m, meta));
                    None
                }
                Err(p) => {
                    self.members.remove(id);
                    Some(p)
                }
            },
            Key::Owner(name) => match keys::decode_owner(name, value) {
                Ok(instance) => {
                    self.owners.insert(
                        name.to_owned(),
                        OwnerEntry {
                            instance,
                            mod_revision: rev,
                            create_revision: meta.create_revision,
                            lease: meta.lease,
                        },
                    );
                    None
                }
                Err(p) => {
                    // Still someone's key: nobody can claim while it exists.
                    // Keep it as held by an unknown instance.
                    self.owners.insert(
                        name.to_owned(),
                        OwnerEntry {
                            instance: String::new(),
                            mod_revision: rev,
                            create_revision: meta.create_revision,
                            lease: meta.lease,
                        },
                    );
                    Some(p)
                }
            },
            Key::Caller(name) => match CallerJson::decode(name, value) {
                Ok(spec) => {
                    self.callers.insert(name.to_owned(), spec);
                    None
                }
                Err(p) => {
                    // A caller whose value is bad is treated as absent: its
                    // keys do not work until an operator fixes it.
                    self.callers.remove(name);
                    Some(p)
                }
            },
            Key::Ban(name) => match serde_json::from_slice::<Ban>(value) {
                Ok(ban) => {
                    self.bans.insert(name.to_owned(), ban);
                    None
                }
                Err(e) => {
                    self.bans.remove(name);
                    Some(format!("bad ban JSON: {e}"))
                }
            },
            Key::Violations => match serde_json::from_slice::<ViolationSettings>(value)
                .map_err(|e| format!("bad JSON: {e}"))
                .and_then(|v| v.validate().map(|()| v))
            {
                Ok(v) => {
                    self.violations = Some(v);
                    None
                }
                Err(p) => {
                    self.violations = None;
                    Some(format!("{p}; using the default violation settings"))
                }
            },
            Key::ClusterKey => match std::str::from_utf8(value) {
                Ok(k) if k.len() >= 32 && k.bytes().all(|b| b.is_ascii_graphic()) => {
                    self.cluster_key = Some(k.to_owned());
                    None
                }
                _ => {
                    self.cluster_key = None;
                    Some("the cluster key must be at least 32 printable ASCII characters".into())
                }
            },
            Key::Other => None,
        };
        if let Some(problem) = problem {
            tracing::warn!(key = %shown, revision = rev, "skipping malformed etcd value: {problem}");
        }
        self.revision = self.revision.max(rev);
        relevant
    }

    /// Applies a delete of `key` at `revision`; returns whether the key is
    /// part of the layout.
    pub fn apply_delete(&mut self, keys: &Keys, key: &[u8], revision: i64) -> bool {
        let parsed = keys.parse(key);
        match parsed {
            Some(Key::Bot(name)) => {
                self.bots.remove(name);
            }
            Some(Key::Health(name)) => {
                self.health.remove(name);
            }
            Some(Key::Member(id)) => {
                self.members.remove(id);
            }
            Some(Key::Owner(name)) => {
                self.owners.remove(name);
            }
            Some(Key::Caller(name)) => {
                self.callers.remove(name);
            }
            Some(Key::Ban(name)) => {
                self.bans.remove(name);
            }
            Some(Key::Violations) => self.violations = None,
            Some(Key::ClusterKey) => self.cluster_key = None,
            Some(Key::Other) | None => {}
        }
        self.revision = self.revision.max(revision);
        !matches!(parsed, Some(Key::Other) | None)
    }

    /// The health that counts for `bot`: the stored one, unless it was
    /// written before the bot's current `bots/` value (a rotation, a
    /// re-enable, any put of the bot by an operator), in which case the bot
    /// is healthy again. Every instance computes the same answer from the
    /// same revisions, so a raw `etcdctl put` of a new token brings the bot
    /// back everywhere at once; its owner also rewrites `health/` then.
    pub fn effective_health(&self, bot: &str) -> Health {
        match (self.bots.get(bot), self.health.get(bot)) {
            (Some(b), Some(h)) if h.mod_revision >= b.mod_revision => h.value.clone(),
            (None, Some(h)) => h.value.clone(),
            _ => Health::healthy(),
        }
    }

    /// Is `health/<bot>` stale and not healthy (so its owner should reset it)?
    pub fn health_needs_reset(&self, bot: &str) -> bool {
        match (self.bots.get(bot), self.health.get(bot)) {
            (Some(b), Some(h)) => {
                h.mod_revision < b.mod_revision && h.value.state != HealthState::Healthy
            }
            _ => false,
        }
    }

    /// Bots skipped because an older entry is the same Telegram bot (same
    /// bot id before the token's colon): skipped name to the name kept. The
    /// entry created first wins (then the smaller name), so every instance
    /// skips the same one and a later write of the kept one changes nothing.
    pub fn same_bot_skipped(&self) -> BTreeMap<&str, &str> {
        let mut first: HashMap<u64, (i64, &str)> = HashMap::new();
        for (name, bot) in &self.bots {
            let key = (bot.create_revision, name.as_str());
            first
                .entry(bot.value.token.bot_id())
                .and_modify(|k| *k = (*k).min(key))
                .or_insert(key);
        }
        self.bots
            .iter()
            .filter_map(|(name, bot)| {
                let (_, kept) = first.get(&bot.value.token.bot_id())?;
                (*kept != name.as_str()).then_some((name.as_str(), *kept))
            })
            .collect()
    }

    /// The bot kept in place of `name`, if `name` is skipped as a second
    /// entry of one Telegram bot.
    fn same_bot_kept(&self, name: &str) -> Option<&str> {
        self.same_bot_skipped().get(name).copied()
    }

    /// Who should drive which bot, over the live members: see
    /// [`Assignment`].
    pub fn member_nodes(&self) -> Assignment {
        let nodes: Vec<Node> = self.members.keys().map(Node::new).collect();
        let owners = assign_bounded(self.bots.keys().map(String::as_str), &nodes)
            .into_iter()
            .map(|(bot, i)| (bot.to_owned(), i))
            .collect();
        Assignment { nodes, owners }
    }

    /// The instance that should drive `bot` (see [`Assignment`]).
    pub fn desired_owner<'a>(&self, bot: &str, a: &'a Assignment) -> Option<&'a str> {
        match a.owners.get(bot) {
            Some(i) => a.nodes.get(*i).map(Node::name),
            None => pick(key_of_name(bot), &a.nodes).map(Node::name),
        }
    }
}

/// Bots spread over the live members by rendezvous hashing with bounded
/// load (`shardgate_router::assign_bounded`): plain rendezvous can leave an
/// instance with nothing (6 bots over 3 instances came out 4/2/0 in a test).
pub struct Assignment {
    nodes: Vec<Node>,
    /// Bot name to index in `nodes`.
    owners: HashMap<String, usize>,
}

fn versioned<T>(value: T, meta: KvMeta) -> Versioned<T> {
    Versioned {
        value,
        mod_revision: meta.mod_revision,
        create_revision: meta.create_revision,
    }
}

/// Why a bot is skipped: another entry is the same Telegram bot.
pub(crate) fn same_bot_reason(bot_id: u64, kept: &str) -> String {
    format!(
        "same Telegram bot (bot id {bot_id}) as bot {kept:?}, which was there first; skipped \
         (two entries would drive one bot past its limits): remove one of them"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const T2: &str = "123456:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn meta(rev: i64) -> KvMeta {
        KvMeta {
            mod_revision: rev,
            create_revision: rev,
            lease: 0,
        }
    }

    fn put(m: &mut Mirror, k: &Keys, key: String, value: &str, rev: i64) {
        m.apply_put(k, key.as_bytes(), value.as_bytes(), meta(rev));
    }

    #[test]
    fn callers_bans_and_settings_are_mirrored_and_bad_values_skipped() {
        let k = Keys::new("c").expect("keys");
        let mut m = Mirror::default();
        put(
            &mut m,
            &k,
            k.caller("svc"),
            r#"{"messages_per_window": 5}"#,
            2,
        );
        put(&mut m, &k, k.caller("bad"), r#"{"colour": 1}"#, 3);
        put(
            &mut m,
            &k,
            k.ban("svc"),
            r#"{"until": 99, "score": 100, "reason": "r"}"#,
            4,
        );
        put(&mut m, &k, k.violations(), r#"{"ban_threshold": 40}"#, 5);
        assert_eq!(m.callers.keys().collect::<Vec<_>>(), ["svc"]);
        assert_eq!(m.callers["svc"].messages_per_window, 5);
        assert_eq!(m.bans["svc"].until, 99);
        assert_eq!(m.violations.map(|v| v.ban_threshold), Some(40));
        put(&mut m, &k, k.violations(), r#"{"ban_threshold": "x"}"#, 6);
        assert_eq!(m.violations, None, "a bad value falls back to the defaults");
        assert!(
            !m.apply_put(&k, k.quota("svc").as_bytes(), b"{}", meta(7)),
            "quota counters are not part of the mirror"
        );
        assert_eq!(m.revision, 7);
        assert!(m.apply_delete(&k, k.ban("svc").as_bytes(), 8));
        assert!(m.bans.is_empty());
    }

    #[test]
    fn malformed_bot_is_absent_and_owner_keys_still_block() {
        let k = Keys::new("c").expect("keys");
        let mut m = Mirror::default();
        put(&mut m, &k, k.bot("a"), &format!(r#"{{"token":"{T1}"}}"#), 2);
        assert!(m.bots.contains_key("a"));
        put(&mut m, &k, k.bot("a"), "{broken", 3);
        assert!(!m.bots.contains_key("a"));
        put(&mut m, &k, k.owner("a"), "not an id!/", 4);
        assert_eq!(m.owners["a"].instance, "");
        put(&mut m, &k, k.member("gw-1"), "[]", 5);
        assert!(m.members.is_empty());
        assert_eq!(m.revision, 5);
        m.apply_delete(&k, k.owner("a").as_bytes(), 6);
        assert!(m.owners.is_empty());
        assert_eq!(m.revision, 6);
    }

    #[test]
    fn the_second_entry_of_one_telegram_bot_is_skipped_whatever_the_order_of_names() {
        let k = Keys::new("c").expect("keys");
        let mut m = Mirror::default();
        // "b" first, then "a" with another token of the same bot id.
        put(&mut m, &k, k.bot("b"), &format!(r#"{{"token":"{T1}"}}"#), 2);
        put(&mut m, &k, k.bot("a"), &format!(r#"{{"token":"{T2}"}}"#), 3);
        put(
            &mut m,
            &k,
            k.bot("c"),
            r#"{"token":"654321:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"}"#,
            4,
        );
        assert_eq!(m.same_bot_skipped(), BTreeMap::from([("a", "b")]));
        // A later write of the kept one (a rotation) keeps its place.
        m.apply_put(
            &k,
            k.bot("b").as_bytes(),
            format!(r#"{{"token":"{T1}"}}"#).as_bytes(),
            KvMeta {
                mod_revision: 5,
                create_revision: 2,
                lease: 0,
            },
        );
        assert_eq!(m.same_bot_skipped(), BTreeMap::from([("a", "b")]));
        // Once the kept one goes, the other is used.
        m.apply_delete(&k, k.bot("b").as_bytes(), 6);
        assert!(m.same_bot_skipped().is_empty());
    }

    #[test]
    fn health_older_than_the_token_does_not_count() {
        let k = Keys::new("c").expect("keys");
        let mut m = Mirror::default();
        put(&mut m, &k, k.bot("a"), &format!(r#"{{"token":"{T1}"}}"#), 2);
        put(&mut m, &k, k.health("a"), r#"{"state":"revoked"}"#, 3);
        assert_eq!(m.effective_health("a").state, HealthState::Revoked);
        assert!(!m.health_needs_reset("a"));
        // Rotation by a raw put: the revoked health predates the new token.
        put(&mut m, &k, k.bot("a"), &format!(r#"{{"token":"{T2}"}}"#), 4);
        assert_eq!(m.effective_health("a").state, HealthState::Healthy);
        assert!(m.health_needs_reset("a"));
        // Written with the rotation (same txn) or after it: counts.
        put(
            &mut m,
            &k,
            k.health("a"),
            r#"{"state":"throttled","until":9}"#,
            4,
        );
        assert_eq!(m.effective_health("a").state, HealthState::Throttled);
    }

    #[test]
    fn desired_owners_are_spread_evenly_by_rendezvous() {
        let k = Keys::new("c").expect("keys");
        let mut m = Mirror::default();
        for (i, id) in ["gw-1", "gw-2", "gw-3"].iter().enumerate() {
            put(&mut m, &k, k.member(id), r#"{"grpc":"h:1"}"#, 2 + i as i64);
        }
        for i in 0..7 {
            let token = format!("12345{i}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
            put(
                &mut m,
                &k,
                k.bot(&format!("bot-{i}")),
                &format!(r#"{{"token":"{token}","enabled":true}}"#),
                10 + i,
            );
        }
        let a = m.member_nodes();
        let mut load: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..7 {
            let owner = m.desired_owner(&format!("bot-{i}"), &a).expect("an owner");
            *load.entry(owner).or_default() += 1;
        }
        // 7 bots over 3 members: 3/2/2 at worst, never an idle member.
        assert_eq!(load.len(), 3, "{load:?}");
        assert!(load.values().all(|n| *n <= 3), "{load:?}");
        // A bot unknown to the mirror still gets its rendezvous winner.
        let nodes: Vec<Node> = ["gw-1", "gw-2", "gw-3"]
            .into_iter()
            .map(Node::new)
            .collect();
        let want = pick(key_of_name("other"), &nodes).map(Node::name);
        assert_eq!(m.desired_owner("other", &a), want);
    }
}
