//! One drill from start to verdict: start the cluster, drive the load,
//! apply the events on time, poll `Status`, then judge and write the report
//! and the chart. The cluster is dropped (every process stopped) on every
//! way out of [`run`], including an error and the caller dropping the future.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use shardgate_mock::{Faults, test_token};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::cluster::{LocalCluster, bot_id, rotated_bot_id};
use crate::load::{Driver, Progress};
use crate::observe::{self, Sample};
use crate::report::Report;
use crate::scenario::{Action, Plan, bot_index};
use crate::series::Series;
use crate::verdict::{self, Figures, Run};

/// Where the runner finds things and puts its output.
pub struct Setup {
    pub shardgate: PathBuf,
    pub out: PathBuf,
}

/// What a drill ended with.
pub struct DrillResult {
    pub passed: bool,
    pub summary: String,
    pub report: PathBuf,
}

pub async fn run(plan: &Plan, scenario_text: &str, setup: &Setup) -> Result<DrillResult> {
    let wall = Instant::now();
    let started = humantime(SystemTime::now());
    let logs = setup.out.join(format!("{}-logs", plan.name));
    let spec = &plan.scenario;
    eprintln!(
        "[{}] starting etcd, the emulator and {} gateways ({} bots)",
        plan.name, spec.cluster.instances, spec.cluster.bots
    );
    let cluster = LocalCluster::start(
        &setup.shardgate,
        spec.cluster.instances,
        spec.cluster.bots,
        &spec.cluster.gateway_config,
        spec.cluster.secure_etcd,
        &spec.partitioned(),
        &logs,
    )
    .await?;
    let channels = cluster.nodes.iter().map(|n| n.channel.clone()).collect();
    let control = cluster.control.clone();
    let cluster = Arc::new(Mutex::new(cluster));
    let tag = format!("{}-{:x}", plan.name, unix_ms() % 0xff_ffff);
    let (hot_tx, hot_rx) = watch::channel(0.0f64);
    let progress = Arc::new(Progress::default());
    let driver = Driver {
        spec: spec.load.clone(),
        tag: tag.clone(),
        channels,
        hot_rate: hot_rx,
        duration: plan.duration,
        progress: progress.clone(),
        seed: unix_ms(),
    };
    let start_unix_ms = unix_ms();
    let start = Instant::now();
    let samples: Arc<std::sync::Mutex<Vec<Sample>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Aborted on every way out, so that they release the cluster with us.
    let mut poller = Aborting(tokio::spawn(observe::poll(
        cluster.clone(),
        start,
        samples.clone(),
        stop_rx,
    )));
    let load = Aborting(tokio::spawn(driver.run(start)));
    let applied: Arc<std::sync::Mutex<Vec<(Duration, Action)>>> = Arc::default();
    let events = apply_events(plan, cluster.clone(), start, hot_tx, applied.clone());
    let ticker = show_progress(plan, start, progress.clone(), applied.clone());
    let (events, record) = tokio::select! {
        r = async { tokio::join!(events, load.wait()) } => r,
        () = ticker => unreachable!("the progress line never ends"),
    };
    let record = record.context("the load task failed")?;
    events?;
    let _ = stop_tx.send(true);
    let _ = (&mut poller.0).await;
    eprintln!();
    let load_end = start.elapsed();

    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let applied = std::mem::take(&mut *applied.lock().unwrap_or_else(|p| p.into_inner()));
    let deliveries = control.deliveries(0);
    let stats = control.stats();
    let run = Run {
        tag: &tag,
        bots: spec.cluster.bots,
        duration: plan.duration,
        events: &applied,
        record: &record,
        deliveries: &deliveries,
        start_unix_ms,
        samples: &samples,
        stats: &stats,
        limits: control.limits(),
    };
    let figures = Figures::compute(&run);
    let checks = verdict::checks(&spec.criteria, &figures);
    let series = Series::compute(&run);
    drop(cluster);

    let mut timeline: Vec<(Duration, String)> = vec![(Duration::ZERO, "load starts".into())];
    timeline.extend(applied.iter().map(|(t, a)| (*t, a.describe())));
    timeline.extend(figures.moments.iter().map(|m| (m.at, m.what.clone())));
    timeline.push((plan.duration, "load stops".into()));
    timeline.push((
        load_end,
        "last answer in (or the wait for answers ended)".into(),
    ));
    timeline.sort_by_key(|(t, _)| *t);

    std::fs::create_dir_all(&setup.out)
        .with_context(|| format!("creating {}", setup.out.display()))?;
    let svg = setup.out.join(format!("{}.svg", plan.name));
    let events: Vec<(Duration, String)> = applied
        .iter()
        .map(|(t, a)| (*t, a.name().to_owned()))
        .collect();
    let title = format!(
        "drill {}{}: deliveries per bot, 429s and errors",
        plan.name,
        if plan.quick { " (quick)" } else { "" }
    );
    crate::chart::draw(&svg, &title, &series, &events, &figures.moments)?;
    let report = Report {
        plan,
        scenario_text,
        started: &started,
        host: &host(),
        timeline: &timeline,
        checks: &checks,
        figures: &figures,
        logs_dir: &logs.display().to_string(),
        elapsed: wall.elapsed(),
    };
    let md = setup.out.join(format!("{}.md", plan.name));
    std::fs::write(&md, report.markdown()).with_context(|| format!("writing {}", md.display()))?;
    Ok(DrillResult {
        passed: report.passed(),
        summary: report.summary(),
        report: md,
    })
}

/// A task that is aborted when this handle is dropped.
struct Aborting<T>(tokio::task::JoinHandle<T>);

impl<T> Aborting<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies each event at its time; records when it took effect.
async fn apply_events(
    plan: &Plan,
    cluster: Arc<Mutex<LocalCluster>>,
    start: Instant,
    hot: watch::Sender<f64>,
    applied: Arc<std::sync::Mutex<Vec<(Duration, Action)>>>,
) -> Result<()> {
    for (at, action) in &plan.events {
        tokio::time::sleep_until(start + *at).await;
        let done = apply(action, &cluster, &hot, plan.scenario.cluster.bots)
            .await
            .with_context(|| format!("event {} at {:.1} s", action.name(), at.as_secs_f64()))?;
        applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((start.elapsed(), done));
    }
    Ok(())
}

async fn apply(
    action: &Action,
    cluster: &Mutex<LocalCluster>,
    hot: &watch::Sender<f64>,
    bots: usize,
) -> Result<Action> {
    let index = |bot: &str| bot_index(bot, bots).ok_or_else(|| anyhow!("no bot {bot}"));
    let mut c = cluster.lock().await;
    match action {
        Action::Revoke { bot } => c.control.revoke(bot_id(index(bot)?)),
        Action::Throttle { bot, retry_after_s } => {
            c.control
                .throttle(bot_id(index(bot)?), *retry_after_s, None)
        }
        Action::Unthrottle { bot } => c.control.unthrottle(bot_id(index(bot)?)),
        Action::Faults {
            error_5xx,
            drop,
            latency_ms,
        } => c.control.set_faults(
            None,
            Faults {
                error_5xx: *error_5xx,
                drop: *drop,
                latency_ms: latency_ms.map_or((0, 0), |[min, max]| (min, max.max(min))),
                ..Faults::default()
            },
        ),
        Action::ClearFaults => c.control.set_faults(None, Faults::default()),
        Action::Partition { instance } => c.partition(*instance, true)?,
        Action::Heal { instance } => c.partition(*instance, false)?,
        Action::EtcdStop => c.etcd.stop(),
        Action::EtcdStart => c.etcd.try_restart().await.map_err(|e| anyhow!(e))?,
        Action::Kill { instance, owner_of } => {
            let victim = match (instance, owner_of) {
                (Some(n), _) => n - 1,
                (None, Some(bot)) => c
                    .owner_of(bot)
                    .await
                    .ok_or_else(|| anyhow!("no live instance owns {bot}"))?,
                (None, None) => return Err(anyhow!("kill names no instance")),
            };
            c.kill(victim);
            return Ok(Action::Kill {
                instance: Some(victim + 1),
                owner_of: owner_of.clone(),
            });
        }
        Action::Rotate { bot } => {
            let token = test_token(rotated_bot_id(index(bot)?));
            c.admin(&["rotate", bot, "--token", "-"], Some(token))
                .await?;
        }
        Action::HotGroup { rate } => {
            let _ = hot.send(*rate);
        }
    }
    Ok(action.clone())
}

/// A progress line every second (rewritten in place on a terminal).
async fn show_progress(
    plan: &Plan,
    start: Instant,
    p: Arc<Progress>,
    applied: Arc<std::sync::Mutex<Vec<(Duration, Action)>>>,
) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let t = start.elapsed().as_secs_f64();
        let last = applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .map(|(at, a)| format!(" | {:.0} s: {}", at.as_secs_f64(), a.name()))
            .unwrap_or_default();
        let line = format!(
            "[{}] {t:5.0}/{:.0} s  sent {}  delivered {}  failed {}  retries {}{last}",
            plan.name,
            plan.duration.as_secs_f64(),
            p.sent.load(Ordering::Relaxed),
            p.delivered.load(Ordering::Relaxed),
            p.failed.load(Ordering::Relaxed),
            p.retries.load(Ordering::Relaxed),
        );
        if tty {
            eprint!("\r{line:<100}");
        } else if (t as u64).is_multiple_of(5) {
            eprintln!("{line}");
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-27 02:31 UTC` without a date crate: days since the epoch to a
/// civil date (Howard Hinnant's algorithm).
fn humantime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

fn host() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let name = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "this machine".into());
    format!("{name} ({cores} cores)")
}

/// The scenario file of `drill` in `dir`.
pub fn scenario_path(dir: &Path, drill: &str) -> PathBuf {
    dir.join(format!("{drill}.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_come_out_right() {
        let at = |s: u64| humantime(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(at(1_795_746_660), "2026-11-27 02:31 UTC");
    }
}
