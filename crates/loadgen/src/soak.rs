//! `--soak`: a long run at the limit that watches what leaks slowly. Every
//! [`PERIOD`] it reads this process's resident memory, open file
//! descriptors and live tokio tasks (in embedded mode the gateway runs in
//! this process, so these are the gateway's, plus the load tool's own), and
//! at the end compares the last quarter of the run with the first: a figure
//! is flat when its last-quarter mean is within [`GROWTH`] of the first
//! quarter's, plus a small absolute slack (allocator arenas, pooled
//! connections).

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often a sample is taken.
pub const PERIOD: Duration = Duration::from_secs(10);
/// Deliveries the in-process emulator remembers during a soak, and the
/// gateway's sent-message memory: reached in about a minute at the limit,
/// well inside the first quarter.
pub const EMULATOR_DELIVERIES: usize = 5_000;
/// Allowed relative growth from the first quarter to the last.
pub const GROWTH: f64 = 0.10;

/// One reading.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Reading {
    /// Seconds since the load started.
    pub at_s: f64,
    pub rss_kb: u64,
    pub fds: u64,
    pub tasks: u64,
}

/// The soak's verdict on each figure.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub readings: Vec<Reading>,
    /// (first-quarter mean, last-quarter mean, flat?) per figure.
    pub rss_kb: (f64, f64, bool),
    pub fds: (f64, f64, bool),
    pub tasks: (f64, f64, bool),
}

impl SoakReport {
    pub fn flat(&self) -> bool {
        self.rss_kb.2 && self.fds.2 && self.tasks.2
    }
}

/// Open file descriptors of this process.
fn fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Samples until `stop` turns true; the readings come back from the handle.
pub fn sample(start: Instant, mut stop: watch::Receiver<bool>) -> JoinHandle<Vec<Reading>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut every = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return out,
            }
            out.push(Reading {
                at_s: start.elapsed().as_secs_f64(),
                rss_kb: crate::procfs::rss_kb().unwrap_or(0),
                fds: fds(),
                tasks: tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks() as u64,
            });
        }
    })
}

/// Compares the last quarter of `readings` with the first, leaving out the
/// ramp-up: readings before `settle_s` (connections opening, queues
/// filling, arenas growing to their working size).
pub fn judge(readings: Vec<Reading>, settle_s: f64) -> SoakReport {
    let readings: Vec<Reading> = readings
        .into_iter()
        .filter(|r| r.at_s >= settle_s)
        .collect();
    let q = (readings.len() / 4).max(1);
    let mean = |rs: &[Reading], f: fn(&Reading) -> u64| -> f64 {
        if rs.is_empty() {
            0.0
        } else {
            rs.iter().map(f).sum::<u64>() as f64 / rs.len() as f64
        }
    };
    let head = &readings[..q.min(readings.len())];
    let tail = &readings[readings.len().saturating_sub(q)..];
    let figure = |f: fn(&Reading) -> u64, slack: f64| {
        let (a, b) = (mean(head, f), mean(tail, f));
        (a, b, b <= a * (1.0 + GROWTH) + slack)
    };
    SoakReport {
        rss_kb: figure(|r| r.rss_kb, 8.0 * 1024.0),
        fds: figure(|r| r.fds, 8.0),
        tasks: figure(|r| r.tasks, 32.0),
        readings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(rss: impl Fn(usize) -> u64) -> Vec<Reading> {
        (0..40)
            .map(|i| Reading {
                at_s: i as f64 * 10.0,
                rss_kb: rss(i),
                fds: 40,
                tasks: 100,
            })
            .collect()
    }

    #[test]
    fn a_steady_process_is_flat_and_a_leak_is_not() {
        assert!(judge(readings(|i| 50_000 + (i as u64 % 3) * 100), 0.0).flat());
        // 1 MiB more every reading: 40 MiB over the run.
        let leak = judge(readings(|i| 50_000 + i as u64 * 1024), 0.0);
        // The ramp-up is left out.
        assert!(judge(readings(|i| if i < 5 { 1_000 } else { 50_000 }), 50.0).flat());
        assert!(!leak.rss_kb.2, "{:?}", leak.rss_kb);
        assert!(!leak.flat());
    }
}
