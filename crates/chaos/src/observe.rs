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
