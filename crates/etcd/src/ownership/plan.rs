//! The pure half of ownership: what this instance holds ([`OwnState`]) and
//! [`plan`], which decides the next claims, adoptions and releases from the
//! mirror of etcd, the session and the local state, with no I/O, so that
//! every rule of `ownership.rs`'s list is unit tested here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use shardgate_registry::SessionStatus;

use crate::extension::{grace_ends, may_start_driving};
use crate::mirror::Mirror;
use crate::session::SessionInfo;

/// How many ownership events are remembered.
const HISTORY_CAP: usize = 10_000;

/// A bot held by this instance: the revision of its `owners/` key (the
/// fence) and the lease it lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerClaim {
    pub revision: i64,
    pub lease: i64,
}

/// What happened to this instance's hold on a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnershipChange {
    /// Claimed (or adopted: a key under the current lease whose claim answer
    /// was lost). `revision` is the owner key's revision.
    Claimed,
    /// Released on request (`Registry::release`, shutdown, bot removed).
    /// `revision` is the delete's revision, if it went through.
    Released,
    /// Released because the handoff timeout passed.
    ForcedRelease,
    /// Dropped locally, without writing (session lost or expired, owner key
    /// changed or deleted, fenced write refused). `revision` is `None`.
    Lost(&'static str),
}

/// One change of ownership seen by this instance, for tests and
/// diagnostics (also logged as a tracing event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipEvent {
    pub bot: String,
    pub instance: String,
    pub change: OwnershipChange,
    pub revision: Option<i64>,
    /// When this instance started (claims) or stopped (everything else)
    /// driving the bot, as a monotonic instant.
    pub at: Instant,
    pub wall: SystemTime,
}

/// This instance's holdings; behind a mutex in `Inner`, never held across
/// an await.
#[derive(Debug, Default)]
pub(crate) struct OwnState {
    pub owned: BTreeMap<String, OwnerClaim>,
    /// Since when an owned bot's desired owner has been another instance.
    pub handoff_since: BTreeMap<String, Instant>,
    /// Bots whose release is being written.
    pub releasing: BTreeSet<String>,
    /// Owner keys (bot, revision) let go of: never adopted again.
    pub retired: BTreeSet<(String, i64)>,
    pub history: VecDeque<OwnershipEvent>,
    pub shutting_down: bool,
}

impl OwnState {
    pub(crate) fn record(
        &mut self,
        me: &str,
        bot: &str,
        change: OwnershipChange,
        revision: Option<i64>,
    ) {
        let instance = me;
        match change {
            OwnershipChange::Claimed => {
                tracing::info!(bot, instance, revision, "claimed bot");
            }
            OwnershipChange::Released => {
                tracing::info!(bot, instance, revision, "released bot");
            }
            OwnershipChange::ForcedRelease => {
                tracing::warn!(
                    bot,
                    instance,
                    revision,
                    "released bot: the gateway did not release it within the handoff timeout"
                );
            }
            OwnershipChange::Lost(why) => tracing::warn!(bot, instance, "dropped bot: {why}"),
        }
        if self.history.len() >= HISTORY_CAP {
            self.history.pop_front();
        }
        self.history.push_back(OwnershipEvent {
            bot: bot.to_owned(),
            instance: me.to_owned(),
            change,
            revision,
            at: Instant::now(),
            wall: SystemTime::now(),
        });
    }

    /// Drops a claim locally; returns the claim if there was one.
    pub(crate) fn drop_claim(
        &mut self,
        me: &str,
        bot: &str,
        why: &'static str,
    ) -> Option<OwnerClaim> {
        let claim = self.owned.remove(bot)?;
        self.handoff_since.remove(bot);
        self.retired.insert((bot.to_owned(), claim.revision));
        self.record(me, bot, OwnershipChange::Lost(why), None);
        Some(claim)
    }

    /// Drops every claim the session does not back (any, if it is not live).
    pub(crate) fn drop_unbacked(&mut self, me: &str, session: &SessionInfo, now: Instant) {
        let live = session.live_lease(now);
        let doomed: Vec<(String, &'static str)> = self
            .owned
            .iter()
            .filter(|(_, c)| Some(c.lease) != live)
            .map(|(bot, _)| {
                let why = match (live, session.status) {
                    (None, SessionStatus::Lost) => "session lost",
                    (None, _) => "session may have expired",
                    (Some(_), _) => "claimed under a previous session",
                };
                (bot.clone(), why)
            })
            .collect();
        for (bot, why) in doomed {
            self.drop_claim(me, &bot, why);
        }
    }
}

/// An etcd write decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Claim { bot: String, lease: i64 },
    Release { bot: String, forced: bool },
    DeleteStale { bot: String, mod_revision: i64 },
    ResetHealth { bot: String },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub actions: Vec<Action>,
    /// When to look again even if nothing changes (handoff timeouts).
    pub next_deadline: Option<Instant>,
}

/// Brings the local holdings in line with the mirror and the session
/// (drops, adoptions, handoff timers) and lists the etcd writes to make.
pub(crate) fn plan(
    own: &mut OwnState,
    mirror: &Mirror,
    session: &SessionInfo,
    me: &str,
    now: Instant,
    handoff_timeout: Duration,
    claim_grace: Duration,
) -> Plan {
    own.drop_unbacked(me, session, now);
    let Some(lease) = session.live_lease(now) else {
        own.handoff_since.clear();
        return Plan::default();
    };

    // Claims whose key changed or went away behind our back.
    let held: Vec<(String, OwnerClaim)> = own.owned.iter().map(|(b, c)| (b.clone(), *c)).collect();
    for (bot, claim) in held {
        if mirror.revision < claim.revision {
            continue; // the mirror has not seen the claim yet
        }
        match mirror.owners.get(&bot) {
            Some(o) if o.instance == me && o.mod_revision == claim.revision => {}
            Some(_) => {
                own.drop_claim(me, &bot, "owner key was overwritten");
            }
            None => {
                own.drop_claim(me, &bot, "owner key was deleted");
            }
        }
    }
    own.retired.retain(|(bot, rev)| {
        mirror
            .owners
            .get(bot)
            .is_some_and(|o| o.mod_revision == *rev)
    });

    let nodes = mirror.member_nodes();
    let mut plan = Plan::default();
    let may_start = may_start_driving(session.contact, now, claim_grace);
    let mut held_back = false;

    // Keys with my id that I do not hold.
    for (bot, o) in &mirror.owners {
        if o.instance != me || own.owned.contains_key(bot) || own.releasing.contains(bot) {
            continue;
        }
        let wanted = mirror.desired_owner(bot, &nodes) == Some(me)
            && mirror.bots.contains_key(bot)
            && !own.shutting_down;
        let retired = own.retired.contains(&(bot.clone(), o.mod_revision));
        if o.lease == lease && wanted && !retired && !may_start {
            held_back = true; // adopted once the grace is over
        } else if o.lease == lease && wanted && !retired {
            own.owned.insert(
                bot.clone(),
                OwnerClaim {
                    revision: o.mod_revision,
                    lease,
                },
            );
            own.record(me, bot, OwnershipChange::Claimed, Some(o.mod_revision));
        } else {
            plan.actions.push(Action::DeleteStale {
                bot: bot.clone(),
                mod_revision: o.mod_revision,
            });
        }
    }

    // Held bots: removed, handed off, health to reset.
    let held: Vec<String> = own.owned.keys().cloned().collect();
    for bot in &held {
        if !mirror.bots.contains_key(bot) {
            plan.actions.push(Action::Release {
                bot: bot.clone(),
                forced: false,
            });
            continue;
        }
        if mirror.desired_owner(bot, &nodes) == Some(me) {
            own.handoff_since.remove(bot);
        } else {
            let since = *own.handoff_since.entry(bot.clone()).or_insert(now);
            let deadline = since + handoff_timeout;
            if now >= deadline {
                plan.actions.push(Action::Release {
                    bot: bot.clone(),
                    forced: true,
                });
                continue;
            }
            plan.next_deadline = Some(plan.next_deadline.map_or(deadline, |d| d.min(deadline)));
        }
        if mirror.health_needs_reset(bot) {
            plan.actions.push(Action::ResetHealth { bot: bot.clone() });
        }
    }
    own.handoff_since
        .retain(|bot, _| own.owned.contains_key(bot));

    // New claims: only with a confirmed session, after the grace.
    if session.status == SessionStatus::Ok && !own.shutting_down {
        for bot in mirror.bots.keys() {
            if !mirror.owners.contains_key(bot)
                && !own.owned.contains_key(bot)
                && mirror.desired_owner(bot, &nodes) == Some(me)
            {
                if may_start {
                    plan.actions.push(Action::Claim {
                        bot: bot.clone(),
                        lease,
                    });
                } else {
                    held_back = true;
                }
            }
        }
    }
    if held_back && let Some(end) = grace_ends(session.contact, now, claim_grace) {
        plan.next_deadline = Some(plan.next_deadline.map_or(end, |d| d.min(end)));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::mirror::KvMeta;
    use shardgate_registry::StoreContact;
    use shardgate_router::{Node, key_of_name, pick};

    const T1: &str = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const LEASE: i64 = 0x77;
    const NO_GRACE: Duration = Duration::ZERO;

    /// A live session whose etcd contact began at `now`.
    fn live(now: Instant) -> SessionInfo {
        SessionInfo {
            status: SessionStatus::Ok,
            lease: Some(LEASE),
            valid_until: Some(now + Duration::from_secs(5)),
            extended: false,
            generation: 1,
            contact: StoreContact::reachable_since(now),
        }
    }

    struct World {
        keys: Keys,
        mirror: Mirror,
        rev: i64,
    }

    impl World {
        fn new(members: &[&str], bots: &[&str]) -> World {
            let mut w = World {
                keys: Keys::new("c").expect("keys"),
                mirror: Mirror::default(),
                rev: 1,
            };
            for m in members {
                w.put(w.keys.member(m), r#"{"grpc":"h:1"}"#, 0);
            }
            for b in bots {
                w.put(w.keys.bot(b), &format!(r#"{{"token":"{T1}"}}"#), 0);
            }
            w
        }

        fn put(&mut self, key: String, value: &str, lease: i64) -> i64 {
            self.rev += 1;
            let meta = KvMeta {
                mod_revision: self.rev,
                create_revision: self.rev,
                lease,
            };
            self.mirror
                .apply_put(&self.keys, key.as_bytes(), value.as_bytes(), meta);
            self.rev
        }

        fn delete(&mut self, key: String) {
            self.rev += 1;
            self.mirror
                .apply_delete(&self.keys, key.as_bytes(), self.rev);
        }
    }

    /// `plan` for "i1" with a 10 s handoff timeout.
    fn plan_i1(
        own: &mut OwnState,
        w: &World,
        session: &SessionInfo,
        now: Instant,
        grace: Duration,
    ) -> Plan {
        plan(
            own,
            &w.mirror,
            session,
            "i1",
            now,
            Duration::from_secs(10),
            grace,
        )
    }

    /// A bot name whose rendezvous winner over `members` is `want`.
    fn bot_for(want: &str, members: &[&str]) -> String {
        let nodes: Vec<Node> = members.iter().map(|m| Node::new(*m)).collect();
        (0..)
            .map(|i| format!("bot-{i}"))
            .find(|b| pick(key_of_name(b), &nodes).map(Node::name) == Some(want))
            .expect("some bot lands on every member")
    }

    #[test]
    fn claims_only_wanted_unowned_bots_with_a_confirmed_session() {
        let now = Instant::now();
        let mine = bot_for("i1", &["i1", "i2"]);
        let theirs = bot_for("i2", &["i1", "i2"]);
        let w = World::new(&["i1", "i2"], &[&mine, &theirs]);
        let mut own = OwnState::default();
        let p = plan_i1(&mut own, &w, &live(now), now, NO_GRACE);
        assert_eq!(
            p.actions,
            vec![Action::Claim {
                bot: mine.clone(),
                lease: LEASE
            }]
        );
        // Degraded: no new claims.
        let mut s = live(now);
        s.status = SessionStatus::Degraded {
            until: now + Duration::from_secs(5),
        };
        let p = plan_i1(&mut own, &w, &s, now, NO_GRACE);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn claims_and_adoptions_wait_for_the_grace_after_etcd_comes_back() {
        let now = Instant::now();
        let grace = Duration::from_secs(3);
        let mine = bot_for("i1", &["i1"]);
        let other = format!("{mine}-x");
        let mut w = World::new(&["i1"], &[&mine, &other]);
        // A key of ours under the current lease whose claim answer was lost.
        let rev = w.put(w.keys.owner(&other), "i1", LEASE);
        let mut own = OwnState::default();
        // etcd reachable since `now`: nothing is taken, look again at the
        // grace's end.
        let p = plan_i1(&mut own, &w, &live(now), now, grace);
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(own.owned.is_empty());
        assert_eq!(p.next_deadline, Some(now + grace));
        // Just before the end: still nothing.
        let almost = now + grace - Duration::from_millis(1);
        let p = plan_i1(&mut own, &w, &live(now), almost, grace);
        assert!(p.actions.is_empty() && own.owned.is_empty());
        // At the end: claimed and adopted.
        let t = now + grace;
        let p = plan_i1(&mut own, &w, &live(now), t, grace);
        assert_eq!(
            p.actions,
            vec![Action::Claim {
                bot: mine.clone(),
                lease: LEASE
            }]
        );
        assert_eq!(
            own.owned.get(&other).map(|c| c.revision),
            Some(rev),
            "adopted"
        );
        // etcd unreachable (however long ago it was reached): no new claim.
        let mut s = live(now);
        s.contact = StoreContact::unreachable_since(now);
        let mut own = OwnState::default();
        let later = now + Duration::from_secs(60);
        s.valid_until = Some(later + Duration::from_secs(5));
        let p = plan_i1(&mut own, &w, &s, later, grace);
        assert!(p.actions.is_empty() && own.owned.is_empty(), "{p:?}");
        assert_eq!(
            p.next_deadline, None,
            "nothing to wait for until etcd is back"
        );
    }

    #[test]
    fn session_loss_and_key_changes_drop_claims_at_once() {
        let now = Instant::now();
        let mine = bot_for("i1", &["i1"]);
        let mut w = World::new(&["i1"], &[&mine]);
        let rev = w.put(w.keys.owner(&mine), "i1", LEASE);
        let mut own = OwnState::default();
        own.owned.insert(
            mine.clone(),
            OwnerClaim {
                revision: rev,
                lease: LEASE,
            },
        );
        let p = plan_i1(&mut own, &w, &live(now), now, NO_GRACE);
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(own.owned.contains_key(&mine));

        // valid_until passed: dropped without any write.
        let later = now + Duration::from_secs(6);
        plan_i1(&mut own, &w, &live(now), later, NO_GRACE);
        assert!(own.owned.is_empty());
        assert_eq!(
            own.history.back().map(|e| e.change),
            Some(OwnershipChange::Lost("session may have expired"))
        );

        // The key deleted behind our back.
        own.owned.insert(
            mine.clone(),
            OwnerClaim {
                revision: rev,
                lease: LEASE,
            },
        );
        w.delete(w.keys.owner(&mine));
        let p = plan_i1(&mut own, &w, &live(now), now, NO_GRACE);
        assert!(own.owned.is_empty());
        // ... and it is claimed again, being still wanted.
        assert_eq!(
            p.actions,
            vec![Action::Claim {
                bot: mine,
                lease: LEASE
            }]
        );
    }

    #[test]
    fn handoff_waits_for_release_then_forces_it() {
        let now = Instant::now();
        let moving = bot_for("i2", &["i1", "i2"]);
        let mut w = World::new(&["i1"], &[&moving]);
        let rev = w.put(w.keys.owner(&moving), "i1", LEASE);
        let mut own = OwnState::default();
        own.owned.insert(
            moving.clone(),
            OwnerClaim {
                revision: rev,
                lease: LEASE,
            },
        );
        // i2 joins: the bot should move.
        w.put(w.keys.member("i2"), r#"{"grpc":"h:2"}"#, 0);
        let timeout = Duration::from_secs(10);
        let p = plan(
            &mut own,
            &w.mirror,
            &live(now),
            "i1",
            now,
            timeout,
            NO_GRACE,
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.next_deadline, Some(now + timeout));
        assert!(own.owned.contains_key(&moving), "kept until released");
        let t = now + timeout;
        let p = plan(&mut own, &w.mirror, &live(t), "i1", t, timeout, NO_GRACE);
        assert_eq!(
            p.actions,
            vec![Action::Release {
                bot: moving,
                forced: true
            }]
        );
    }

    #[test]
    fn own_keys_not_held_are_adopted_or_deleted() {
        let now = Instant::now();
        let mine = bot_for("i1", &["i1", "i2"]);
        let theirs = bot_for("i2", &["i1", "i2"]);
        let mut w = World::new(&["i1", "i2"], &[&mine, &theirs]);
        let r1 = w.put(w.keys.owner(&mine), "i1", LEASE);
        let r2 = w.put(w.keys.owner(&theirs), "i1", LEASE);
        let mut own = OwnState::default();
        let p = plan_i1(&mut own, &w, &live(now), now, NO_GRACE);
        assert_eq!(
            own.owned.get(&mine),
            Some(&OwnerClaim {
                revision: r1,
                lease: LEASE
            })
        );
        assert_eq!(
            p.actions,
            vec![Action::DeleteStale {
                bot: theirs,
                mod_revision: r2
            }]
        );
        // A released key is never adopted back.
        let mut own = OwnState::default();
        own.retired.insert((mine.clone(), r1));
        let p = plan_i1(&mut own, &w, &live(now), now, NO_GRACE);
        assert!(own.owned.is_empty());
        assert!(p.actions.contains(&Action::DeleteStale {
            bot: mine,
            mod_revision: r1
        }));
    }

    #[test]
    fn stale_health_of_an_owned_bot_is_reset() {
        let now = Instant::now();
        let mine = bot_for("i1", &["i1"]);
        let mut w = World::new(&["i1"], &[&mine]);
        w.put(w.keys.health(&mine), r#"{"state":"revoked"}"#, 0);
        let rev = w.put(w.keys.owner(&mine), "i1", LEASE);
        let mut own = OwnState::default();
        own.owned.insert(
            mine.clone(),
            OwnerClaim {
                revision: rev,
                lease: LEASE,
            },
        );
        assert!(
            plan_i1(&mut own, &w, &live(now), now, NO_GRACE)
                .actions
                .is_empty()
        );
        w.put(w.keys.bot(&mine), &format!(r#"{{"token":"{T1}"}}"#), 0);
        let p = plan_i1(&mut own, &w, &live(now), now, NO_GRACE);
        assert_eq!(p.actions, vec![Action::ResetHealth { bot: mine }]);
    }
}
