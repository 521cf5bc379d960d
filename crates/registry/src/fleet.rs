//! The fleet snapshot: what every bot is, how healthy it is and who drives it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use shardgate_telegram::BotToken;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An operator's definition of a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotSpec {
    pub name: String,
    pub token: BotToken,
    pub enabled: bool,
}

/// What an instance observed about a bot, as stored under `health/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub state: HealthState,
    /// Unix seconds when a throttle ends; 0 = none.
    #[serde(default)]
    pub until: u64,
    #[serde(default)]
    pub reason: String,
    /// The instance that saw it.
    #[serde(default)]
    pub instance: String,
    /// Unix seconds when it was seen.
    #[serde(default)]
    pub at: u64,
}

impl Health {
    pub fn healthy() -> Self {
        Health {
            state: HealthState::Healthy,
            until: 0,
            reason: String::new(),
            instance: String::new(),
            at: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Healthy,
    Throttled,
    Revoked,
}

/// The state a bot is in for routing and for `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotState {
    Healthy,
    Throttled,
    Revoked,
    Disabled,
}

impl BotState {
    pub fn as_str(self) -> &'static str {
        match self {
            BotState::Healthy => "healthy",
            BotState::Throttled => "throttled",
            BotState::Revoked => "revoked",
            BotState::Disabled => "disabled",
        }
    }
}

/// One bot as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotView {
    pub spec: BotSpec,
    pub health: Health,
    /// The instance that drives it now, from `owners/<name>` (embedded mode:
    /// this one). `None` while nobody holds it (between a release or a lease
    /// expiry and the next claim).
    pub owner: Option<String>,
    /// The instance that should drive it: the rendezvous winner over the live
    /// members (embedded mode: this one). Differs from `owner` during a
    /// handoff.
    pub desired_owner: Option<String>,
}

impl BotView {
    /// The state at `now` (unix s): a throttle whose `until` has passed is
    /// over without anyone writing so.
    pub fn state(&self, now: u64) -> BotState {
        if !self.spec.enabled {
            return BotState::Disabled;
        }
        match self.health.state {
            HealthState::Healthy => BotState::Healthy,
            HealthState::Revoked => BotState::Revoked,
            HealthState::Throttled if self.health.until > now => BotState::Throttled,
            HealthState::Throttled => BotState::Healthy,
        }
    }

    /// May new messages be routed to this bot at `now`?
    pub fn routable(&self, now: u64) -> bool {
        self.state(now) == BotState::Healthy
    }
}

/// A gateway instance, as listed under `members/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    pub grpc: String,
}

/// This instance's registry session, as far as driving bots is concerned.
///
/// In cluster mode the session is an etcd lease: ownership of bots lives
/// under it, and nothing may be sent for a bot once the lease may have
/// expired. The embedded registry is always `Ok`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionStatus {
    /// The session is live: `Fleet::owned` may be driven.
    #[default]
    Ok,
    /// etcd is not answering keep-alives. `Fleet::owned` may still be driven
    /// until `until` (the last confirmed lease expiry minus a safety
    /// margin, or later while every other member confirms that it cannot
    /// reach etcd either); at `until` the registry drops every bot (`Lost`).
    Degraded { until: Instant },
    /// No session (lease gone, expired, or not yet granted): this instance
    /// owns nothing; it re-establishes a session and claims again.
    Lost,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Ok => "ok",
            SessionStatus::Degraded { .. } => "degraded",
            SessionStatus::Lost => "lost",
        }
    }
}

/// Everything the gateway needs to route: bots by name, members, and which
/// bots this instance may drive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    pub bots: BTreeMap<String, BotView>,
    pub members: Vec<Member>,
    /// The bots this instance may drive right now: claimed under a live
    /// session (embedded mode: every bot). A bot leaves this set when its
    /// ownership is released, lost, or the session may have expired; its
    /// traffic must then stop at once.
    pub owned: BTreeSet<String>,
    /// The session behind `owned`.
    pub session: SessionStatus,
}

impl Fleet {
    /// May this instance send for `bot` now?
    pub fn may_drive(&self, bot: &str) -> bool {
        self.owned.contains(bot)
    }

    /// Bots this instance drives but should hand over (their desired owner is
    /// another instance): drain them, then call `Registry::release`. The
    /// registry releases them by itself after a handoff timeout.
    pub fn handing_off(&self) -> impl Iterator<Item = &str> + '_ {
        self.owned.iter().map(String::as_str).filter(|name| {
            self.bots.get(*name).is_some_and(|view| {
                view.desired_owner.is_some() && view.desired_owner != view.owner
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(enabled: bool, state: HealthState, until: u64) -> BotView {
        BotView {
            spec: BotSpec {
                name: "a".into(),
                token: BotToken::parse("123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                    .expect("token"),
                enabled,
            },
            health: Health {
                state,
                until,
                ..Health::healthy()
            },
            owner: None,
            desired_owner: None,
        }
    }

    #[test]
    fn handing_off_lists_owned_bots_wanted_elsewhere() {
        let mut fleet = Fleet::default();
        for (name, owner, desired) in [("a", "i1", "i1"), ("b", "i1", "i2"), ("c", "i2", "i1")] {
            let mut v = view(true, HealthState::Healthy, 0);
            v.spec.name = name.into();
            v.owner = Some(owner.into());
            v.desired_owner = Some(desired.into());
            fleet.bots.insert(name.into(), v);
        }
        fleet.owned = ["a".to_string(), "b".to_string()].into();
        assert_eq!(fleet.handing_off().collect::<Vec<_>>(), vec!["b"]);
        assert!(fleet.may_drive("a") && !fleet.may_drive("c"));
    }

    #[test]
    fn throttle_ends_by_itself() {
        let v = view(true, HealthState::Throttled, 100);
        assert_eq!(v.state(99), BotState::Throttled);
        assert!(!v.routable(99));
        assert_eq!(v.state(100), BotState::Healthy);
        assert!(v.routable(100));
    }

    #[test]
    fn disabled_wins_over_health() {
        assert_eq!(
            view(false, HealthState::Healthy, 0).state(0),
            BotState::Disabled
        );
        assert_eq!(
            view(true, HealthState::Revoked, 0).state(0),
            BotState::Revoked
        );
    }

    #[test]
    fn health_json_matches_the_etcd_layout() {
        let h = Health {
            state: HealthState::Throttled,
            until: 1_700_000_000,
            reason: "retry after 4310".into(),
            instance: "gw-1".into(),
            at: 1_699_999_000,
        };
        let json = serde_json::to_string(&h).expect("serialize");
        assert_eq!(
            json,
            r#"{"state":"throttled","until":1700000000,"reason":"retry after 4310","instance":"gw-1","at":1699999000}"#
        );
        let back: Health = serde_json::from_str(r#"{"state":"revoked"}"#).expect("lenient");
        assert_eq!(back.state, HealthState::Revoked);
    }
}
