//! From what was recorded (the callers' answers, the emulator's delivery
//! log and counters, the `Status` samples, the events' times) to figures
//! and a pass or fail per criterion. Pure: no I/O, so it is unit tested.

use std::collections::HashMap;
use std::time::Duration;

use shardgate_mock::{Delivery, Limits, Stats};

use crate::cluster::{bot_id, rotated_bot_id};
use crate::load::{Answer, HOT_CHAT, Kind, LoadRecord, msg_index};
use crate::observe::Sample;
use crate::scenario::{Action, Criteria, bot_index};

/// Everything the verdict needs from a run.
pub struct Run<'a> {
    pub tag: &'a str,
    pub bots: usize,
    pub duration: Duration,
    /// Events with the moment they took effect (since the load started).
    pub events: &'a [(Duration, Action)],
    pub record: &'a LoadRecord,
    pub deliveries: &'a [Delivery],
    /// Unix milliseconds of the load's start (the log's clock).
    pub start_unix_ms: u64,
    pub samples: &'a [Sample],
    pub stats: &'a Stats,
    pub limits: Option<Limits>,
}

/// A moment read off the samples, for the timeline and the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Moment {
    pub at: Duration,
    pub what: String,
}

/// The measured figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub sent: u64,
    pub sent_hot: u64,
    pub delivered: u64,
    pub delivered_hot: u64,
    pub first_try_ok: u64,
    pub retried: u64,
    /// Final failures by gRPC code, background and hot together.
    pub failed: Vec<(String, u64)>,
    pub unanswered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub ghosts: u64,
    pub undelivered: u64,
    pub rate_limited: u64,
    pub forced_429: u64,
    /// Faults the emulator injected: 5xx answers and dropped connections.
    pub injected_5xx: u64,
    pub injected_drops: u64,
    /// Bot API requests the emulator received (every attempt of every bot).
    pub bot_api_requests: u64,
    pub max_queue_depth: u64,
    pub out_of_rotation: Vec<Option<Duration>>,
    pub back: Vec<Option<Duration>>,
    pub takeover: Vec<Option<Duration>>,
    pub resync: Vec<Option<Duration>>,
    pub old_token_requests: Option<u64>,
    /// Requests of a partitioned instance after the others took its bots,
    /// until its partition ended; and its requests before that moment (so a
    /// 0 is seen to be read off a working count).
    pub partitioned_requests: Option<u64>,
    pub partitioned_requests_before: u64,
    pub hot_window: Option<(Duration, Duration)>,
    pub hot_in_window: u64,
    pub hot_allowed: u64,
    pub queue_bound_answers: u64,
    pub background_p99_hot: Option<Duration>,
    pub moments: Vec<Moment>,
}

/// One criterion: what was asked, what was measured, whether it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub wanted: String,
    pub measured: String,
    pub pass: bool,
}

impl Figures {
    pub fn compute(run: &Run) -> Figures {
        let mut f = Figures::default();
        let msgs = &run.record.msgs;
        let mut copies: Vec<u32> = vec![0; msgs.len()];
        for d in run.deliveries {
            if let Some(i) = msg_index(run.tag, &d.text).filter(|i| *i < msgs.len()) {
                copies[i] += 1;
            }
        }
        let mut failed: HashMap<String, u64> = HashMap::new();
        for (m, n) in msgs.iter().zip(&copies) {
            let hot = m.kind == Kind::Hot;
            if hot {
                f.sent_hot += 1;
            } else {
                f.sent += 1;
            }
            f.duplicates += u64::from(n.saturating_sub(1));
            if m.attempts > 1 {
                f.retried += 1;
            }
            match &m.last {
                None => {
                    f.unanswered += 1;
                    f.lost += 1;
                }
                Some(Answer::Delivered { .. }) => {
                    if *n == 0 {
                        f.lost += 1;
                    }
                    if hot {
                        f.delivered_hot += 1;
                    } else {
                        f.delivered += 1;
                    }
                }
                Some(Answer::Failed { code }) => {
                    *failed.entry(code.clone()).or_default() += 1;
                    if *n > 0 {
                        f.ghosts += 1;
                    }
                    // The gateway answered instead of queueing without
                    // end: the queue bound, or the admission estimate
                    // (it would be sent after its deadline).
                    if hot && (code == "RESOURCE_EXHAUSTED" || code == "DEADLINE_EXCEEDED") {
                        f.queue_bound_answers += 1;
                    }
                }
            }
            if !hot {
                if matches!(m.first, Some(Answer::Delivered { .. })) {
                    f.first_try_ok += 1;
                }
                if !m.delivered() {
                    f.undelivered += 1;
                }
            }
        }
        let mut failed: Vec<_> = failed.into_iter().collect();
        failed.sort();
        f.failed = failed;
        f.forced_429 = run.stats.totals.rate_limited_forced;
        f.rate_limited = run.stats.totals.rate_limited - f.forced_429;
        f.injected_5xx = run.stats.totals.injected_5xx;
        f.injected_drops = run.stats.totals.injected_drops;
        f.bot_api_requests = run.stats.totals.requests;
        f.max_queue_depth = run
            .samples
            .iter()
            .flat_map(|s| &s.views)
            .flat_map(|v| v.bots.iter().flatten())
            .map(|b| b.queue_depth)
            .max()
            .unwrap_or(0);
        f.read_moments(run);
        f.read_hot_window(run, msgs);
        f
    }

    /// Failover, return, takeover and re-sync moments after each event.
    fn read_moments(&mut self, run: &Run) {
        let after = |t: Duration, pred: &dyn Fn(&Sample) -> bool| {
            run.samples
                .iter()
                .find(|s| s.at >= t && pred(s))
                .map(|s| s.at - t)
        };
        for (t, action) in run.events {
            let bot = action.bot().unwrap_or_default();
            let (found, what) = match action {
                Action::Revoke { .. } | Action::Throttle { .. } => {
                    let d = after(*t, &|s| s.everywhere(bot, |b| b.state != "healthy"));
                    self.out_of_rotation.push(d);
                    (d, format!("{bot} out of rotation everywhere"))
                }
                Action::Unthrottle { .. } => {
                    let d = after(*t, &|s| s.everywhere(bot, |b| b.state == "healthy"));
                    self.back.push(d);
                    (d, format!("{bot} back in rotation everywhere"))
                }
                Action::Kill { .. } => {
                    let d = after(*t, &|s| s.settled(run.bots));
                    self.takeover.push(d);
                    (d, "survivors drive every bot".to_owned())
                }
                Action::EtcdStart => {
                    let d = after(*t, &|s| s.etcd_everywhere(true) && s.settled(run.bots));
                    self.resync.push(d);
                    (d, "cluster re-synced".to_owned())
                }
                Action::EtcdStop => {
                    let d = after(*t, &|s| s.etcd_everywhere(false));
                    (d, "every instance sees etcd down".to_owned())
                }
                Action::Rotate { .. } => {
                    let d = self.read_rotation(run, *t, bot);
                    (d, format!("{bot}'s new token delivers"))
                }
                Action::Partition { instance } => {
                    let node = format!("gw-{instance}");
                    let d = after(*t, &|s| s.driven_without(&node, run.bots));
                    self.takeover.push(d);
                    if let Some(d) = d {
                        self.read_partitioned(run, *t + d, *instance, &node);
                    }
                    (d, format!("the others drive every bot without {node}"))
                }
                _ => continue,
            };
            if let Some(d) = found {
                self.moments.push(Moment { at: *t + d, what });
            }
        }
    }

    /// Requests from `node` between `from` (the others took its bots) and
    /// the end of its partition (or of the run).
    fn read_partitioned(&mut self, run: &Run, from: Duration, instance: usize, node: &str) {
        let until = run
            .events
            .iter()
            .find(|(t, a)| *t > from && matches!(a, Action::Heal { instance: i } if *i == instance))
            .map_or(run.duration, |(t, _)| *t);
        let at = |t: Duration| run.samples.iter().find(|s| s.at >= t);
        let last_before = run.samples.iter().rev().find(|s| s.at <= until);
        if let (Some(a), Some(b)) = (at(from), last_before) {
            let n = b.requests_from(node).saturating_sub(a.requests_from(node));
            self.partitioned_requests = Some(self.partitioned_requests.map_or(n, |m| m.max(n)));
            self.partitioned_requests_before = a.requests_from(node);
        }
    }

    /// The new token's first delivery after a rotation, and how many
    /// requests the old token made later than 1 s after it.
    fn read_rotation(&mut self, run: &Run, t: Duration, bot: &str) -> Option<Duration> {
        let i = bot_index(bot, run.bots)?;
        let at_ms = |d: &Delivery| Duration::from_millis(d.at_ms.saturating_sub(run.start_unix_ms));
        let first_new = run
            .deliveries
            .iter()
            .filter(|d| d.bot_id == rotated_bot_id(i))
            .map(at_ms)
            .min()?;
        let settle_at = first_new + Duration::from_secs(1);
        let old = bot_id(i);
        let at_settle = run
            .samples
            .iter()
            .find(|s| s.at >= settle_at)
            .map(|s| s.stats.bot(old).requests);
        self.old_token_requests = at_settle.map(|n| run.stats.bot(old).requests.saturating_sub(n));
        Some(first_new.saturating_sub(t))
    }

    /// The hot group's window, its deliveries against what the emulator's
    /// limits allow, and the background's p99 latency meanwhile.
    fn read_hot_window(&mut self, run: &Run, msgs: &[crate::load::Msg]) {
        let mut from = None;
        let mut until = run.duration;
        for (t, a) in run.events {
            if let Action::HotGroup { rate } = a {
                if *rate > 0.0 && from.is_none() {
                    from = Some(*t);
                } else if *rate == 0.0 && from.is_some() {
                    until = *t;
                }
            }
        }
        let Some(from) = from else { return };
        self.hot_window = Some((from, until));
        let window = until.saturating_sub(from);
        let lo = run.start_unix_ms + from.as_millis() as u64;
        let hi = run.start_unix_ms + until.as_millis() as u64;
        self.hot_in_window = run
            .deliveries
            .iter()
            .filter(|d| d.chat_id == HOT_CHAT && (lo..hi).contains(&d.at_ms))
            .count() as u64;
        if let Some(l) = run.limits {
            self.hot_allowed = run.bots as u64 * group_allowance(&l, window);
        }
        let mut lat: Vec<Duration> = msgs
            .iter()
            .filter(|m| m.kind == Kind::Background && m.created >= from && m.created < until)
            .filter(|m| m.delivered())
            .filter_map(|m| m.answered.map(|a| a.saturating_sub(m.created)))
            .collect();
        lat.sort();
        if !lat.is_empty() {
            let k = ((lat.len() as f64 * 0.99).ceil() as usize).clamp(1, lat.len()) - 1;
            self.background_p99_hot = Some(lat[k]);
        }
    }

    pub fn first_try_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.first_try_ok as f64 / self.sent as f64
    }
}

/// The most one bot may deliver into one group within `window` from a
/// standing start: the group window's quota per started window, and never
/// more than the per-chat bucket allows.
pub fn group_allowance(l: &Limits, window: Duration) -> u64 {
    let w = l.group_window.as_secs_f64().max(1e-3);
    let by_group = u64::from(l.group_max) * (window.as_secs_f64() / w).ceil() as u64;
    let by_chat =
        u64::from(l.chat_burst) + (window.as_secs_f64() * l.chat_rate_per_s).floor() as u64;
    by_group.min(by_chat)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// Checks every criterion the scenario sets.
pub fn checks(c: &Criteria, f: &Figures) -> Vec<Check> {
    let mut out = Vec::new();
    let mut max = |name: &'static str, limit: Option<u64>, got: u64| {
        if let Some(limit) = limit {
            out.push(Check {
                name,
                wanted: format!("≤ {limit}"),
                measured: got.to_string(),
                pass: got <= limit,
            });
        }
    };
    max("rate_limited_max", c.rate_limited_max, f.rate_limited);
    max("lost_max", c.lost_max, f.lost);
    max("undelivered_max", c.undelivered_max, f.undelivered);
    max("duplicates_max", c.duplicates_max, f.duplicates);
    max("ghosts_max", c.ghosts_max, f.ghosts);
    max("queue_depth_max", c.queue_depth_max, f.max_queue_depth);
    if let Some(limit) = c.old_token_requests_max {
        out.push(Check {
            name: "old_token_requests_max",
            wanted: format!("≤ {limit}"),
            measured: f
                .old_token_requests
                .map_or("no rotation seen".to_owned(), |n| n.to_string()),
            pass: f.old_token_requests.is_some_and(|n| n <= limit),
        });
    }
    if let Some(limit) = c.partitioned_requests_max {
        out.push(Check {
            name: "partitioned_requests_max",
            wanted: format!("≤ {limit}"),
            measured: f
                .partitioned_requests
                .map_or("no takeover seen".to_owned(), |n| {
                    format!(
                        "{n} ({} before the takeover)",
                        f.partitioned_requests_before
                    )
                }),
            pass: f.partitioned_requests.is_some_and(|n| n <= limit),
        });
    }
    if let Some(min) = c.queue_bound_answers_min {
        out.push(Check {
            name: "queue_bound_answers_min",
            wanted: format!("≥ {min}"),
            measured: f.queue_bound_answers.to_string(),
            pass: f.queue_bound_answers >= min,
        });
    }
    if let Some(min) = c.first_try_success_min {
        let r = f.first_try_ratio();
        out.push(Check {
            name: "first_try_success_min",
            wanted: format!("≥ {:.2}%", min * 100.0),
            measured: format!("{:.2}% ({}/{})", r * 100.0, f.first_try_ok, f.sent),
            pass: f.sent > 0 && r >= min,
        });
    }
    if let Some(min) = c.hot_group_ratio_min {
        let r = if f.hot_allowed == 0 {
            0.0
        } else {
            f.hot_in_window as f64 / f.hot_allowed as f64
        };
        out.push(Check {
            name: "hot_group_ratio_min",
            wanted: format!("≥ {:.2}", min),
            measured: format!("{r:.3} ({}/{} allowed)", f.hot_in_window, f.hot_allowed),
            pass: f.hot_allowed > 0 && r >= min,
        });
    }
    if let Some(limit) = c.background_p99_ms_max {
        let p = f.background_p99_hot;
        out.push(Check {
            name: "background_p99_ms_max",
            wanted: format!("≤ {limit} ms"),
            measured: p.map_or("no background delivered".into(), |p| {
                format!("{:.1} ms", p.as_secs_f64() * 1e3)
            }),
            pass: p.is_some_and(|p| p.as_secs_f64() * 1e3 <= limit),
        });
    }
    let mut within = |name: &'static str, limit: Option<f64>, got: &[Option<Duration>]| {
        if let Some(limit) = limit {
            let shown: Vec<String> = got.iter().map(|d| secs(*d)).collect();
            out.push(Check {
                name,
                wanted: format!("≤ {limit} s"),
                measured: if shown.is_empty() {
                    "no such event".into()
                } else {
                    shown.join(", ")
                },
                pass: !got.is_empty()
                    && got
                        .iter()
                        .all(|d| d.is_some_and(|d| d.as_secs_f64() <= limit)),
            });
        }
    };
    within(
        "out_of_rotation_within_s",
        c.out_of_rotation_within_s,
        &f.out_of_rotation,
    );
    within("back_within_s", c.back_within_s, &f.back);
    within("takeover_within_s", c.takeover_within_s, &f.takeover);
    within("resync_within_s", c.resync_within_s, &f.resync);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Msg;
    use crate::observe::{BotView, View};

    fn msg(kind: Kind, first: Option<Answer>, last: Option<Answer>) -> Msg {
        Msg {
            kind,
            chat_id: 1,
            created: Duration::from_secs(1),
            attempts: 1,
            first,
            last,
            answered: Some(Duration::from_millis(1_100)),
        }
    }

    fn ok() -> Option<Answer> {
        Some(Answer::Delivered {
            bot: "bot-1".into(),
        })
    }

    fn failed(code: &str) -> Option<Answer> {
        Some(Answer::Failed { code: code.into() })
    }

    fn delivery(seq: u64, idx: usize, at_ms: u64) -> Delivery {
        Delivery {
            seq,
            bot_id: bot_id(0),
            chat_id: 1,
            message_id: seq as i64,
            text: crate::load::msg_text("t", idx),
            at_ms,
        }
    }

    fn sample(at_ms: u64, state: &str, live: &[&str]) -> Sample {
        Sample {
            at: Duration::from_millis(at_ms),
            live: live.iter().map(|s| s.to_string()).collect(),
            views: ["gw-1", "gw-2"]
                .iter()
                .map(|n| View {
                    node: n.to_string(),
                    members: live.len(),
                    etcd_reachable: Some(true),
                    bots: Some(vec![BotView {
                        name: "bot-1".into(),
                        state: state.into(),
                        owner: live[0].to_string(),
                        queue_depth: 3,
                    }]),
                })
                .collect(),
            stats: Stats::default(),
        }
    }

    fn run<'a>(
        record: &'a LoadRecord,
        deliveries: &'a [Delivery],
        samples: &'a [Sample],
        events: &'a [(Duration, Action)],
        stats: &'a Stats,
    ) -> Run<'a> {
        Run {
            tag: "t",
            bots: 1,
            duration: Duration::from_secs(10),
            events,
            record,
            deliveries,
            start_unix_ms: 1_000_000,
            samples,
            stats,
            limits: Some(Limits::official()),
        }
    }

    #[test]
    fn lost_duplicates_and_ghosts_are_told_apart() {
        let record = LoadRecord {
            msgs: vec![
                msg(Kind::Background, ok(), ok()),                  // 0: fine
                msg(Kind::Background, ok(), ok()),                  // 1: answered, never delivered
                msg(Kind::Background, failed("UNAVAILABLE"), ok()), // 2: delivered twice
                msg(
                    Kind::Background,
                    failed("DEADLINE_EXCEEDED"),
                    failed("DEADLINE_EXCEEDED"),
                ), // 3: ghost
                msg(Kind::Background, None, None),                  // 4: never answered
            ],
        };
        let deliveries = [
            delivery(1, 0, 1_000_100),
            delivery(2, 2, 1_000_200),
            delivery(3, 2, 1_000_300),
            delivery(4, 3, 1_000_400),
        ];
        let stats = Stats::default();
        let f = Figures::compute(&run(&record, &deliveries, &[], &[], &stats));
        assert_eq!((f.sent, f.delivered, f.first_try_ok), (5, 3, 2));
        assert_eq!(f.lost, 2, "1 and 4");
        assert_eq!(f.unanswered, 1);
        assert_eq!(f.duplicates, 1);
        assert_eq!(f.ghosts, 1);
        assert_eq!(f.undelivered, 2);
        let checks = checks(
            &Criteria {
                lost_max: Some(0),
                duplicates_max: Some(1),
                first_try_success_min: Some(0.4),
                ..Criteria::default()
            },
            &f,
        );
        let verdicts: Vec<(&str, bool)> = checks.iter().map(|c| (c.name, c.pass)).collect();
        assert_eq!(
            verdicts,
            vec![
                ("lost_max", false),
                ("duplicates_max", true),
                ("first_try_success_min", true)
            ]
        );
    }

    #[test]
    fn failover_is_read_from_the_first_sample_where_every_live_instance_agrees() {
        let record = LoadRecord::default();
        let events = [(
            Duration::from_secs(1),
            Action::Revoke {
                bot: "bot-1".into(),
            },
        )];
        let mut mixed = sample(1_300, "revoked", &["gw-1", "gw-2"]);
        if let Some(b) = mixed.views[1].bots.as_mut() {
            b[0].state = "healthy".into();
        }
        let samples = [
            sample(900, "revoked", &["gw-1", "gw-2"]), // before the event: ignored
            sample(1_100, "healthy", &["gw-1", "gw-2"]),
            mixed,
            sample(1_500, "revoked", &["gw-1", "gw-2"]),
        ];
        let stats = Stats::default();
        let f = Figures::compute(&run(&record, &[], &samples, &events, &stats));
        assert_eq!(f.out_of_rotation, vec![Some(Duration::from_millis(500))]);
        assert_eq!(f.max_queue_depth, 3);
        let c = checks(
            &Criteria {
                out_of_rotation_within_s: Some(0.4),
                ..Criteria::default()
            },
            &f,
        );
        assert!(!c[0].pass, "0.5 s is over 0.4 s");
        let none = checks(
            &Criteria {
                takeover_within_s: Some(15.0),
                ..Criteria::default()
            },
            &f,
        );
        assert!(!none[0].pass, "a criterion without its event fails");
    }

    #[test]
    fn a_group_gets_twenty_per_started_minute_and_never_more_than_its_bucket() {
        let l = Limits::official();
        assert_eq!(group_allowance(&l, Duration::from_secs(60)), 20);
        assert_eq!(group_allowance(&l, Duration::from_secs(30)), 20);
        assert_eq!(group_allowance(&l, Duration::from_secs(61)), 40);
        assert_eq!(
            group_allowance(&l, Duration::from_secs(10)),
            13,
            "3 + 10 s at 1/s"
        );
    }
}
