//! A drill as data: the TOML file an operator writes (`chaos/<drill>.toml`),
//! and the [`Plan`] the runner follows once `--quick` or not is decided.
//!
//! A scenario names the cluster to start, the load to drive, the timed
//! events (faults and load changes) and the pass criteria. Every criterion
//! is optional: a drill checks only what its file asks for, so a new drill
//! is a new file, not new code.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// One drill file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the drill proves, in a sentence or two (shown in the report).
    pub description: String,
    #[serde(default)]
    pub cluster: ClusterSpec,
    pub load: LoadSpec,
    #[serde(default, rename = "event")]
    pub events: Vec<EventSpec>,
    #[serde(default)]
    pub criteria: Criteria,
}

/// The local cluster the drill runs against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Gateway instances (`shardgate serve`), each its own process.
    pub instances: usize,
    /// Bots in the fleet, named `bot-1`, `bot-2`, ...
    pub bots: usize,
    /// Extra TOML for every instance's config file (for example `[limits]`).
    pub gateway_config: String,
    /// etcd with TLS, client certificates and user/password auth: the
    /// instances connect as a `gateway` user that may not write `bots/`,
    /// operator commands as an `operator` user that may.
    pub secure_etcd: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            instances: 3,
            bots: 4,
            gateway_config: String::new(),
            secure_etcd: false,
        }
    }
}

/// The background load: private chats and groups at a steady rate, spread
/// over every instance through `SendStream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Messages per second, all instances together.
    pub rate: f64,
    #[serde(default = "default_private_chats")]
    pub private_chats: u32,
    #[serde(default)]
    pub groups: u32,
    /// Share of the background messages that go to groups (0..=1).
    #[serde(default)]
    pub group_share: f64,
    /// The caller's deadline on every send (`timeout_ms` in the request).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// How often the caller retries a send that failed in a retryable way
    /// (UNAVAILABLE, ABORTED, a broken stream), with the same idempotency key.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long the load runs.
    pub duration_s: f64,
    /// How long the load runs with `--quick`.
    pub quick_duration_s: Option<f64>,
}

fn default_private_chats() -> u32 {
    1_000
}
fn default_timeout_ms() -> u32 {
    30_000
}
fn default_retries() -> u32 {
    3
}

/// One timed event of the drill: `at_s`, optional `quick_at_s`, and the
/// action's fields in the same table.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct EventSpec {
    /// Seconds after the load started.
    pub at_s: f64,
    /// Seconds after the load started, with `--quick` (default: `at_s`).
    pub quick_at_s: Option<f64>,
    pub action: Action,
}

impl TryFrom<toml::Table> for EventSpec {
    type Error = String;

    /// Splits the timing off, so that the action itself can refuse unknown
    /// fields (serde's `flatten` would accept any).
    fn try_from(mut t: toml::Table) -> Result<Self, String> {
        let seconds = |v: toml::Value, key: &str| match v {
            toml::Value::Integer(i) => Ok(i as f64),
            toml::Value::Float(f) => Ok(f),
            other => Err(format!("{key} must be a number, not {other}")),
        };
        let at_s = seconds(t.remove("at_s").ok_or("an event needs at_s")?, "at_s")?;
        let quick_at_s = t
            .remove("quick_at_s")
            .map(|v| seconds(v, "quick_at_s"))
            .transpose()?;
        let action = Action::deserialize(toml::Value::Table(t)).map_err(|e| e.to_string())?;
        Ok(EventSpec {
            at_s,
            quick_at_s,
            action,
        })
    }
}

/// What an event does. Bots are named `bot-N`, instances numbered from 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// The emulator answers 401 for this bot's token from now on.
    Revoke { bot: String },
    /// The emulator answers 429 with `retry_after_s` for every send of this bot.
    Throttle { bot: String, retry_after_s: u64 },
    /// The emulator stops throttling the bot.
    Unthrottle { bot: String },
    /// Every Bot API request fails with this probability: a 5xx answer
    /// (`error_5xx`) or a connection closed without an answer (`drop`).
    /// `latency_ms = [MIN, MAX]` delays every answer by a uniform time in
    /// that range (a slow Bot API).
    Faults {
        #[serde(default)]
        error_5xx: f64,
        #[serde(default)]
        drop: f64,
        #[serde(default)]
        latency_ms: Option<[u64; 2]>,
    },
    /// No more injected faults.
    ClearFaults,
    /// etcd is killed (its data stays).
    EtcdStop,
    /// etcd starts again on the same data and port.
    EtcdStart,
    /// SIGKILL one gateway instance: `instance = N`, or `owner_of = "bot-N"`
    /// for the instance driving that bot at that moment.
    Kill {
        instance: Option<usize>,
        owner_of: Option<String>,
    },
    /// `shardgate bot rotate` puts a new token for the bot into etcd.
    Rotate { bot: String },
    /// Instance `instance` loses etcd (its own TCP proxy to etcd black-holes
    /// the traffic) but keeps its peers and its callers.
    Partition { instance: usize },
    /// The partition of `instance` ends.
    Heal { instance: usize },
    /// Extra load into one group (`chat_id` -1_000_000_777) at `rate`
    /// messages per second, from several callers, until another
    /// `hot-group` event changes it (0 stops it).
    HotGroup { rate: f64 },
}

impl Action {
    /// The drill's kebab-case name of the action (for reports).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Revoke { .. } => "revoke",
            Action::Throttle { .. } => "throttle",
            Action::Unthrottle { .. } => "unthrottle",
            Action::Faults { .. } => "faults",
            Action::ClearFaults => "clear-faults",
            Action::EtcdStop => "etcd-stop",
            Action::EtcdStart => "etcd-start",
            Action::Kill { .. } => "kill",
            Action::Rotate { .. } => "rotate",
            Action::HotGroup { .. } => "hot-group",
            Action::Partition { .. } => "partition",
            Action::Heal { .. } => "heal",
        }
    }

    /// One line for the timeline.
    pub fn describe(&self) -> String {
        match self {
            Action::Revoke { bot } => format!("{bot}'s token revoked (emulator answers 401)"),
            Action::Throttle { bot, retry_after_s } => {
                format!("{bot} throttled (emulator answers 429 retry_after {retry_after_s})")
            }
            Action::Unthrottle { bot } => format!("emulator stops throttling {bot}"),
            Action::Faults {
                error_5xx,
                drop,
                latency_ms,
            } => {
                let mut text = format!(
                    "faults on: {:.0}% 5xx, {:.0}% dropped connections",
                    error_5xx * 100.0,
                    drop * 100.0
                );
                if let Some([min, max]) = latency_ms {
                    text.push_str(&format!(", answers after {min}-{max} ms"));
                }
                text
            }
            Action::ClearFaults => "faults off".into(),
            Action::EtcdStop => "etcd stopped".into(),
            Action::EtcdStart => "etcd started again".into(),
            Action::Kill {
                instance: Some(n),
                owner_of,
            } => match owner_of {
                Some(bot) => format!("gw-{n} (the owner of {bot}) killed with SIGKILL"),
                None => format!("gw-{n} killed with SIGKILL"),
            },
            Action::Kill { owner_of, .. } => format!(
                "the owner of {} killed with SIGKILL",
                owner_of.as_deref().unwrap_or("?")
            ),
            Action::Rotate { bot } => format!("{bot}'s token rotated through etcd"),
            Action::HotGroup { rate } if *rate > 0.0 => {
                format!("hot group: {rate} msg/s into one group")
            }
            Action::HotGroup { .. } => "hot group stops".into(),
            Action::Partition { instance } => {
                format!("gw-{instance} cut off from etcd (peers still reach it)")
            }
            Action::Heal { instance } => format!("gw-{instance} reaches etcd again"),
        }
    }

    /// The bot this action is about, if any.
    pub fn bot(&self) -> Option<&str> {
        match self {
            Action::Revoke { bot }
            | Action::Throttle { bot, .. }
            | Action::Unthrottle { bot }
            | Action::Rotate { bot } => Some(bot),
            Action::Kill { owner_of, .. } => owner_of.as_deref(),
            _ => None,
        }
    }
}

/// Pass criteria. Each one set is checked and reported; unset ones are not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Criteria {
    /// 429s the emulator answered by its own limits (forced throttles excluded).
    pub rate_limited_max: Option<u64>,
    /// Sends that ended without an answer, or answered delivered but absent
    /// from the emulator's log.
    pub lost_max: Option<u64>,
    /// Background sends whose final outcome (after the caller's retries) is
    /// not a delivery.
    pub undelivered_max: Option<u64>,
    /// Messages delivered more than once (by (chat, text) in the emulator's log).
    pub duplicates_max: Option<u64>,
    /// Sends answered with an error and delivered anyway.
    pub ghosts_max: Option<u64>,
    /// Background sends delivered at their first attempt / background sends.
    pub first_try_success_min: Option<f64>,
    /// From a `revoke` or `throttle` event to the bot out of rotation on every
    /// live instance (as their `Status` shows).
    pub out_of_rotation_within_s: Option<f64>,
    /// From an `unthrottle` event to the bot healthy on every live instance.
    pub back_within_s: Option<f64>,
    /// From a `kill` event to every bot owned by a live instance, as every
    /// live instance sees it.
    pub takeover_within_s: Option<f64>,
    /// From `etcd-start` to every live instance reaching etcd again (its own
    /// word in `Status`), seeing every bot owned by a live instance and every
    /// live member.
    pub resync_within_s: Option<f64>,
    /// Requests with a rotated-out token later than 1 s after the new token's
    /// first delivery.
    pub old_token_requests_max: Option<u64>,
    /// Hot-group deliveries while the hot load ran / what the emulator's
    /// limits allow in that time.
    pub hot_group_ratio_min: Option<f64>,
    /// Hot-group sends refused at once: `RESOURCE_EXHAUSTED` (the queue
    /// bound) or `DEADLINE_EXCEEDED` (the admission estimate: it would be
    /// sent after its deadline).
    pub queue_bound_answers_min: Option<u64>,
    /// Bot API requests an instance cut off from etcd made after the others
    /// drove every bot without it, until its partition ended (one instance
    /// per bot, judged from the emulator's log of User-Agents).
    pub partitioned_requests_max: Option<u64>,
    /// Largest queue depth of one bot seen in `Status`.
    pub queue_depth_max: Option<u64>,
    /// p99 latency of delivered background sends while the hot load ran, ms.
    pub background_p99_ms_max: Option<f64>,
}

impl Scenario {
    /// The instances a `partition` event cuts off: they reach etcd through a
    /// proxy of their own.
    pub fn partitioned(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .events
            .iter()
            .filter_map(|e| match e.action {
                Action::Partition { instance } => Some(instance),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A scenario resolved for one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub quick: bool,
    pub scenario: Scenario,
    pub duration: Duration,
    /// Events in time order.
    pub events: Vec<(Duration, Action)>,
}

/// A scenario that cannot be run as written.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// Checks the values and fixes the timing for a full or `--quick` run.
    pub fn plan(self, name: &str, quick: bool) -> Result<Plan, ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(format!("{name}: {m}")));
        let c = &self.cluster;
        if !(1..=9).contains(&c.instances) {
            return bad(format!("cluster.instances {} is not 1..=9", c.instances));
        }
        if !(1..=64).contains(&c.bots) {
            return bad(format!("cluster.bots {} is not 1..=64", c.bots));
        }
        let l = &self.load;
        if !(l.rate.is_finite() && l.rate > 0.0 && l.rate <= 5_000.0) {
            return bad(format!("load.rate {} is not in (0, 5000]", l.rate));
        }
        if !(0.0..=1.0).contains(&l.group_share) || (l.group_share > 0.0 && l.groups == 0) {
            return bad("load.group_share needs 0..=1 and groups > 0".into());
        }
        if l.private_chats == 0 && l.group_share < 1.0 {
            return bad("load.private_chats must be > 0".into());
        }
        let duration_s = if quick {
            l.quick_duration_s.unwrap_or(l.duration_s)
        } else {
            l.duration_s
        };
        if !(duration_s.is_finite() && duration_s > 0.0 && duration_s <= 3_600.0) {
            return bad(format!("load duration {duration_s} s is not in (0, 3600]"));
        }
        let mut events = Vec::with_capacity(self.events.len());
        for e in &self.events {
            let at = if quick {
                e.quick_at_s.unwrap_or(e.at_s)
            } else {
                e.at_s
            };
            if !(at.is_finite() && (0.0..=duration_s).contains(&at)) {
                return bad(format!(
                    "event {} at {at} s is outside the load (0..={duration_s} s)",
                    e.action.name()
                ));
            }
            if let Some(bot) = e.action.bot()
                && bot_index(bot, c.bots).is_none()
            {
                return bad(format!("event {}: no bot {bot:?}", e.action.name()));
            }
            match &e.action {
                Action::Kill { instance, owner_of } => match (instance, owner_of) {
                    (Some(n), None) if (1..=c.instances).contains(n) => {}
                    (None, Some(_)) => {}
                    _ => {
                        return bad(format!(
                            "kill: needs instance (1..={}) or owner_of, not both",
                            c.instances
                        ));
                    }
                },
                Action::Faults {
                    error_5xx, drop, ..
                } if !((0.0..=1.0).contains(error_5xx) && (0.0..=1.0).contains(drop)) => {
                    return bad("faults: probabilities must be in 0..=1".into());
                }
                Action::Faults {
                    latency_ms: Some([min, max]),
                    ..
                } if min > max || *max > 60_000 => {
                    return bad("faults: latency_ms = [MIN, MAX] with MIN <= MAX <= 60000".into());
                }
                Action::Partition { instance } | Action::Heal { instance }
                    if !(1..=c.instances).contains(instance) =>
                {
                    return bad(format!(
                        "{}: instance {instance} is not 1..={}",
                        e.action.name(),
                        c.instances
                    ));
                }
                Action::HotGroup { rate }
                    if !(rate.is_finite() && (0.0..=1_000.0).contains(rate)) =>
                {
                    return bad(format!("hot-group: rate {rate} is not in 0..=1000"));
                }
                _ => {}
            }
            events.push((Duration::from_secs_f64(at), e.action.clone()));
        }
        events.sort_by_key(|(at, _)| *at);
        Ok(Plan {
            name: name.to_owned(),
            quick,
            duration: Duration::from_secs_f64(duration_s),
            events,
            scenario: self,
        })
    }
}

/// `bot-N` → N-1, when N is in 1..=bots.
pub fn bot_index(name: &str, bots: usize) -> Option<usize> {
    let n: usize = name.strip_prefix("bot-")?.parse().ok()?;
    (1..=bots).contains(&n).then(|| n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVOKE: &str = r#"
description = "d"
[load]
rate = 50
duration_s = 40
quick_duration_s = 20
[[event]]
at_s = 30
quick_at_s = 10
action = "revoke"
bot = "bot-2"
[[event]]
at_s = 5
action = "faults"
error_5xx = 0.2
[criteria]
lost_max = 0
"#;

    #[test]
    fn quick_takes_the_quick_times_and_events_come_sorted() {
        let s: Scenario = toml::from_str(REVOKE).expect("parses");
        let full = s.clone().plan("revoke", false).expect("valid");
        assert_eq!(full.duration, Duration::from_secs(40));
        assert_eq!(full.events[0].0, Duration::from_secs(5));
        assert_eq!(full.events[1].0, Duration::from_secs(30));
        let quick = s.plan("revoke", true).expect("valid");
        assert_eq!(quick.duration, Duration::from_secs(20));
        assert_eq!(quick.events[0].0, Duration::from_secs(5));
        assert_eq!(
            quick.events[1],
            (
                Duration::from_secs(10),
                Action::Revoke {
                    bot: "bot-2".into()
                }
            )
        );
        assert_eq!(quick.scenario.criteria.lost_max, Some(0));
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        let s: Scenario = toml::from_str(&REVOKE.replace("bot-2", "bot-9")).expect("parses");
        let e = s.plan("revoke", false).expect_err("no bot-9");
        assert!(e.to_string().contains("bot-9"), "{e}");
        let s: Scenario =
            toml::from_str(&REVOKE.replace("at_s = 30", "at_s = 99")).expect("parses");
        assert!(s.plan("revoke", false).is_err());
        assert!(toml::from_str::<Scenario>(&REVOKE.replace("lost_max", "lots_max")).is_err());
        assert!(toml::from_str::<Scenario>(&REVOKE.replace("\"revoke\"", "\"explode\"")).is_err());
    }

    #[test]
    fn bot_names_map_to_indices() {
        assert_eq!(bot_index("bot-1", 4), Some(0));
        assert_eq!(bot_index("bot-4", 4), Some(3));
        assert_eq!(bot_index("bot-0", 4), None);
        assert_eq!(bot_index("bot-5", 4), None);
        assert_eq!(bot_index("alpha", 4), None);
    }
}
