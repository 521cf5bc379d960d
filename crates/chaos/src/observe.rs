//! What the operator would watch during the drill: every live instance's
//! `Status` (bot states, owners, queue depths) and the emulator's counters,
//! sampled every [`POLL`]. The verdict reads failover, takeover and re-sync
//! moments off these samples.

use std::sync::Arc;
use std::time::Duration;

use shardgate_mock::Stats;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::cluster::{LocalCluster, status_of};

/// How often every instance's `Status` is read.
pub const POLL: Duration = Duration::from_millis(50);

/// One bot as one instance reported it.
#[derive(Debug, Clone)]
pub struct BotView {
    pub name: String,
    pub state: String,
    pub owner: String,
    pub queue_depth: u64,
}

/// One poll of one instance.
#[derive(Debug, Clone)]
pub struct View {
    pub node: String,
    /// None: the instance did not answer.
    pub bots: Option<Vec<BotView>>,
    pub members: usize,
    /// The instance's own word on reaching etcd (None: not reported).
    pub etcd_reachable: Option<bool>,
}

/// One round of polls.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    /// The instances alive at that moment (the runner's knowledge).
    pub live: Vec<String>,
    pub views: Vec<View>,
    pub stats: Stats,
}

impl Sample {
    /// Every live instance answered and `pred` holds for `bot` on each.
    pub fn everywhere(&self, bot: &str, pred: impl Fn(&BotView) -> bool) -> bool {
        self.live_views().all(|v| {
            v.bots
                .as_ref()
                .and_then(|bots| bots.iter().find(|b| b.name == bot))
                .is_some_and(&pred)
        })
    }

    /// Every live instance sees `bots` bots, each owned by a live instance,
    /// and every live member.
    pub fn settled(&self, bots: usize) -> bool {
        self.live_views().all(|v| {
            v.members == self.live.len()
                && v.bots.as_ref().is_some_and(|b| {
                    b.len() == bots && b.iter().all(|b| self.live.contains(&b.owner))
                })
        })
    }

    /// Every live instance but `node` sees `bots` bots, each owned by a live
    /// instance other than `node`.
    pub fn driven_without(&self, node: &str, bots: usize) -> bool {
        let mut others = self.live_views().filter(|v| v.node != node).peekable();
        others.peek().is_some()
            && others.all(|v| {
                v.bots.as_ref().is_some_and(|b| {
                    b.len() == bots
                        && b.iter()
                            .all(|b| b.owner != node && self.live.contains(&b.owner))
                })
            })
    }

    /// Bot API requests the emulator saw from instance `node` so far (its
    /// User-Agent ends with `(<node>)`), over every bot.
    pub fn requests_from(&self, node: &str) -> u64 {
        let tag = format!("({node})");
        self.stats
            .bots
            .values()
            .flat_map(|b| &b.user_agents)
            .filter(|(ua, _)| ua.ends_with(&tag))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every live instance says it reaches etcd (`Some(true)`), or says it
    /// does not (`Some(false)`).
    pub fn etcd_everywhere(&self, reachable: bool) -> bool {
        self.live_views()
            .all(|v| v.etcd_reachable == Some(reachable))
    }

    fn live_views(&self) -> impl Iterator<Item = &View> {
        self.views.iter().filter(|v| self.live.contains(&v.node))
    }
}

/// Polls until `stop` turns true; the samples land in `out`.
pub async fn poll(
    cluster: Arc<Mutex<LocalCluster>>,
    start: Instant,
    out: Arc<std::sync::Mutex<Vec<Sample>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let at = start.elapsed();
        let (handles, stats) = {
            let c = cluster.lock().await;
            (c.handles(), c.control.stats())
        };
        let live: Vec<String> = handles
            .iter()
            .filter(|(_, alive, _)| *alive)
            .map(|(id, _, _)| id.clone())
            .collect();
        let polls = handles
            .into_iter()
            .map(|(node, alive, channel)| async move {
                let status = if alive {
                    status_of(channel).await
                } else {
                    None
                };
                View {
                    node,
                    members: status.as_ref().map_or(0, |s| s.members.len()),
                    etcd_reachable: status.as_ref().and_then(|s| s.etcd).map(|e| e.reachable),
                    bots: status.map(|s| {
                        s.bots
                            .into_iter()
                            .map(|b| BotView {
                                name: b.name,
                                state: b.state,
                                owner: b.owner,
                                queue_depth: b.queue_depth,
                            })
                            .collect()
                    }),
                }
            });
        let views = futures::future::join_all(polls).await;
        out.lock().unwrap_or_else(|p| p.into_inner()).push(Sample {
            at,
            live,
            views,
            stats,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(node: &str, owners: &[&str]) -> View {
        View {
            node: node.into(),
            bots: Some(
                owners
                    .iter()
                    .enumerate()
                    .map(|(i, o)| BotView {
                        name: format!("bot-{}", i + 1),
                        state: "healthy".into(),
                        owner: (*o).into(),
                        queue_depth: 0,
                    })
                    .collect(),
            ),
            members: 3,
            etcd_reachable: Some(true),
        }
    }

    #[test]
    fn the_others_drive_without_a_node_only_when_none_of_their_views_names_it() {
        let live = vec!["gw-1".to_owned(), "gw-2".to_owned(), "gw-3".to_owned()];
        let sample = |views| Sample {
            at: Duration::ZERO,
            live: live.clone(),
            views,
            stats: Stats::default(),
        };
        // gw-1's own stale view does not count; the others' do.
        let moved = sample(vec![
            view("gw-1", &["gw-1", "gw-1"]),
            view("gw-2", &["gw-2", "gw-3"]),
            view("gw-3", &["gw-2", "gw-3"]),
        ]);
        assert!(moved.driven_without("gw-1", 2));
        let not_yet = sample(vec![
            view("gw-2", &["gw-1", "gw-3"]),
            view("gw-3", &["gw-2", "gw-3"]),
        ]);
        assert!(!not_yet.driven_without("gw-1", 2));
        assert!(!sample(vec![view("gw-1", &["gw-2", "gw-3"])]).driven_without("gw-1", 2));
    }

    #[test]
    fn requests_are_counted_by_the_instance_in_the_user_agent() {
        let mut stats = Stats::default();
        for (bot, ua, n) in [
            (1, "shardgate/0.1.0 (gw-1)", 3),
            (2, "shardgate/0.1.0 (gw-1)", 4),
            (2, "shardgate/0.1.0 (gw-10)", 5),
            (2, "curl/8", 6),
        ] {
            stats
                .bots
                .entry(bot)
                .or_default()
                .user_agents
                .insert(ua.into(), n);
        }
        let s = Sample {
            at: Duration::ZERO,
            live: vec![],
            views: vec![],
            stats,
        };
        assert_eq!(s.requests_from("gw-1"), 7);
        assert_eq!(s.requests_from("gw-10"), 5);
    }
}
