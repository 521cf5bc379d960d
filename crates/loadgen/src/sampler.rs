//! Once a second during a phase: every bot's queue depth, requests in flight
//! and tracked chats (the gateway's `Status`), the emulator's 429 count, the
//! RSS, and a progress line on stderr.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use shardgate_mock::{Control, Stats};
use shardgate_proto::v1::StatusRequest;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::procfs::{RSS_PID, rss_kb};
use crate::record::Shared;

/// Where the emulator's counters come from.
pub enum StatsSource {
    InProcess(Control),
    Http(reqwest::Client, String),
    None,
}

impl StatsSource {
    pub async fn get(&self) -> Option<Stats> {
        match self {
            StatsSource::InProcess(c) => Some(c.stats()),
            StatsSource::Http(http, base) => {
                let r = http.get(format!("{base}/_mock/stats")).send().await.ok()?;
                r.json().await.ok()
            }
            StatsSource::None => None,
        }
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Sample {
    pub t_s: f64,
    pub queue_depth: Vec<u64>,
    pub in_flight: Vec<u32>,
    pub tracked_chats: Vec<u64>,
    pub rss_kb: Option<u64>,
    pub rate_limited: Option<u64>,
    pub delivered: u64,
}

pub fn progress(line: &str, tty: bool) {
    let mut e = std::io::stderr().lock();
    if tty {
        let _ = write!(e, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(e, "{line}");
    }
    let _ = e.flush();
}

pub struct Sampler {
    pub samples: Arc<Mutex<Vec<Sample>>>,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

#[allow(clippy::too_many_arguments)] // one call site; each is a distinct knob
pub fn start_sampler(
    status: Option<GatewayClient<Channel>>,
    stats: Arc<StatsSource>,
    rec: Shared,
    start: Instant,
    total: f64,
    embedded: bool,
    tty: bool,
    label: &'static str,
) -> Sampler {
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let base_429 = Arc::new(Mutex::new(None::<u64>));
    let task = tokio::spawn({
        let samples = samples.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_delivered = 0u64;
            let mut last_t = 0.0f64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => return,
                }
                let t = start.elapsed().as_secs_f64();
                let (mut q, mut f, mut c) = (vec![], vec![], vec![]);
                if let Some(mut s) = status.clone() {
                    let call = tokio::time::timeout(
                        Duration::from_millis(800),
                        s.status(StatusRequest {}),
                    );
                    if let Ok(Ok(r)) = call.await {
                        for b in r.into_inner().bots {
                            q.push(b.queue_depth);
                            f.push(b.in_flight);
                            c.push(b.active_chats);
                        }
                    }
                }
                let r429 = stats.get().await.map(|s| s.totals.rate_limited);
                let r429 = r429.map(|v| {
                    let mut b = base_429.lock().unwrap_or_else(|p| p.into_inner());
                    v - *b.get_or_insert(v)
                });
                let rss = if embedded || RSS_PID.get().copied().flatten().is_some() {
                    rss_kb()
                } else {
                    None
                };
                let (delivered, sent, errors) = {
                    let r = rec.lock();
                    (r.delivered_total, r.sent, r.errors.values().sum::<u64>())
                };
                let now_rate = (delivered - last_delivered) as f64 / (t - last_t).max(1e-3);
                last_delivered = delivered;
                last_t = t;
                progress(
                    &format!(
                        "[{label} {t:5.1}/{total:.0} s] sent {sent} delivered {delivered} ({now_rate:.0}/s) errors {errors} | 429s {} | queued {} | in flight {} | chats {}{}",
                        r429.map_or("?".into(), |v| v.to_string()),
                        q.iter().sum::<u64>(),
                        f.iter().sum::<u32>(),
                        c.iter().sum::<u64>(),
                        rss.map_or(String::new(), |r| format!(" | rss {} MiB", r / 1024)),
                    ),
                    tty,
                );
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Sample {
                        t_s: (t * 10.0).round() / 10.0,
                        queue_depth: q,
                        in_flight: f,
                        tracked_chats: c,
                        rss_kb: rss,
                        rate_limited: r429,
                        delivered,
                    });
            }
        }
    });
    Sampler {
        samples,
        stop,
        task,
    }
}

impl Sampler {
    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
