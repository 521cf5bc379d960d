//! The task that drives one broadcast job: it takes recipients from the
//! store through the [`Tracker`] (recorded in flight before they are sent),
//! hands them to the normal send path in a bounded window, counts what
//! comes back, and writes progress in batches. It is the only writer of its
//! job's status while it lives, so pause, resume and cancel come to it as
//! [`Control`] messages and are answered after their write.
//!
//! A failed store write is handled as a crash: the task ends and its
//! supervisor (in `mod.rs`) starts a new one from what the store holds;
//! recipients in flight then count as possible duplicates, as the model
//! says.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use shardgate_jobs::{
    JobMeta, JobRecord, JobState, JobStatus, JobStore, RateMeter, StatusUpdate, StoreError,
    Template, Tracker, Window, load_window,
};
use shardgate_proto::v1 as pb;
use shardgate_registry::unix_now;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::send::{Request, Send};
use super::{BroadcastError, plan, snapshot};
use crate::Gateway;

/// Recipients in flight per bot at most (so the possible duplicates of a
/// crash are at most this per bot).
pub const IN_FLIGHT_PER_BOT: usize = 16;
/// The in-flight window of a job whatever the fleet's size.
const MAX_WINDOW: usize = 1024;
/// Recipients set aside at most while their bot's share of the window is
/// full (stored with the progress, so bounded like it).
const PARK_MAX: usize = 1024;
/// Results stored per write at most; fewer are flushed after [`FLUSH`].
const BATCH: usize = 256;
/// How long a finished recipient waits at most before it is stored.
const FLUSH: Duration = Duration::from_millis(500);
/// How long a cancel waits for the requests already handed out.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// What callers ask of a running job; answered once stored.
pub(super) enum Control {
    Pause(oneshot::Sender<Result<pb::Broadcast, BroadcastError>>),
    Resume(oneshot::Sender<Result<pb::Broadcast, BroadcastError>>),
    Cancel(oneshot::Sender<Result<pb::Broadcast, BroadcastError>>),
    /// The gateway stops: hand out nothing more, let the requests out
    /// answer (at most [`STOP_GRACE`]), store the progress, end.
    Stop(oneshot::Sender<()>),
}

/// How long a stopping runner waits for the requests it handed out.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the delivery rate is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// A window with fewer free slots than a quarter is refilled only this
/// often (each refill is a store write).
const REFILL_EVERY: Duration = Duration::from_millis(100);

/// Why a runner ended.
pub(super) enum Ended {
    /// The job reached a final state.
    Final,
    /// A store write or read failed: start again from the store.
    Store(StoreError),
    /// The job's record cannot be driven (damaged): leave it as it is.
    Broken(String),
    /// Nobody can send it controls any more (the gateway is going away).
    Orphaned,
    /// Stopped with the gateway; progress stored, resumed at the next start.
    Stopped,
}

pub(super) struct Runner {
    pub gateway: Gateway,
    pub store: Arc<dyn JobStore>,
    pub record: JobRecord,
    pub control: mpsc::Receiver<Control>,
    pub snapshot: watch::Sender<pb::Broadcast>,
}

/// The runner's changing part.
struct Run {
    meta: JobMeta,
    state: JobState,
    rev: u64,
    tracker: Tracker,
    window: Window,
    sending: FuturesUnordered<futures::future::BoxFuture<'static, shardgate_jobs::RecipientResult>>,
    cancelled: Arc<AtomicBool>,
    cancel_since: Option<Instant>,
    /// Answered after the next successful write.
    waiting: Vec<oneshot::Sender<Result<pb::Broadcast, BroadcastError>>>,
    /// Cancels: answered after the final write.
    waiting_final: Vec<oneshot::Sender<Result<pb::Broadcast, BroadcastError>>>,
    finished_at: i64,
    /// A state change not yet stored.
    dirty: bool,
    last_write: Instant,
    meter: RateMeter,
    started: Instant,
    credit: f64,
    last_credit: Instant,
    last_sample: Instant,
    last_fill: Instant,
    stopping: Option<(Instant, oneshot::Sender<()>)>,
}

impl Runner {
    /// Drives the job until it ends; gives the control channel back, so a
    /// runner started again after a store failure keeps receiving.
    pub async fn run_and_return(mut self) -> (Ended, mpsc::Receiver<Control>) {
        let ended = self.run().await;
        (ended, self.control)
    }

    async fn run(&mut self) -> Ended {
        let JobRecord { meta, status } = self.record.clone();
        let template = match &meta.spec.template {
            Template::Send(bytes) => pb::SendRequest::decode(bytes.as_slice())
                .ok()
                .map(Request::Text),
            Template::Call(bytes) => pb::CallRequest::decode(bytes.as_slice())
                .ok()
                .map(Request::Call),
        };
        let bots = self.gateway.bot_count().max(1);
        let bound = (IN_FLIGHT_PER_BOT * bots).min(MAX_WINDOW);
        let tracker = match Tracker::resume(status.progress.clone(), bound) {
            Ok(t) => t,
            Err(e) => return Ended::Broken(e.to_string()),
        };
        let dups = tracker.counters().possible_duplicates()
            - status.progress.counters.possible_duplicates();
        if dups > 0 {
            warn!(job = %meta.spec.id, possible_duplicates = dups,
                "resumed a broadcast: recipients in flight at the crash are sent again");
        }
        let now = Instant::now();
        let mut run = Run {
            meta,
            state: status.state,
            rev: status.rev,
            tracker,
            window: Window::default(),
            sending: FuturesUnordered::new(),
            cancelled: Arc::new(AtomicBool::new(false)),
            cancel_since: None,
            waiting: Vec::new(),
            waiting_final: Vec::new(),
            finished_at: status.finished_at,
            dirty: dups > 0,
            last_write: now,
            meter: RateMeter::new(10.0),
            started: now,
            credit: 0.0,
            last_credit: now,
            last_sample: now,
            last_fill: now,
            stopping: None,
        };
        let Some(template) = template else {
            // Not sendable by this version: fail the job, nothing was sent.
            run.tracker.close_unsent("INVALID_ARGUMENT");
            run.state = JobState::Failed;
            return match self.write(&mut run, JobState::Failed).await {
                Ok(_) => Ended::Final,
                Err(e) => Ended::Store(e),
            };
        };
        let send = Arc::new(template);
        self.publish(&run);
        loop {
            if let Err(e) = self.fill(&mut run).await {
                return Ended::Store(e);
            }
            let settled = run.tracker.is_settled() && run.sending.is_empty();
            // Done only from running (a paused job whose last answers came
            // in finishes when resumed); cancelled from any live state.
            let target = match (settled, run.cancel_since.is_some(), run.state) {
                (true, true, _) => JobState::Cancelled,
                (true, false, JobState::Running) => JobState::Done,
                (_, _, state) => state,
            };
            if run.tracker.needs_checkpoint(BATCH)
                || run.dirty
                || target.is_final()
                || (run.last_write.elapsed() >= FLUSH && run.tracker.needs_checkpoint(1))
            {
                match self.write(&mut run, target).await {
                    Ok(released) => {
                        for chat in released {
                            let s = Send {
                                gateway: self.gateway.clone(),
                                template: send.clone(),
                                priority: run.meta.spec.priority,
                                caller: Arc::from(run.meta.spec.caller.as_str()),
                                cancelled: run.cancelled.clone(),
                            };
                            run.sending.push(Box::pin(s.run(chat)));
                        }
                    }
                    Err(e) => return Ended::Store(e),
                }
                if target.is_final() {
                    info!(job = %run.meta.spec.id, state = %target,
                        delivered = run.tracker.counters().delivered(),
                        failed = run.tracker.counters().failed(), "broadcast ended");
                    return Ended::Final;
                }
            }
            let tick = Duration::from_millis(if run.sending.is_empty() { 1000 } else { 250 });
            tokio::select! {
                cmd = self.control.recv() => match cmd {
                    Some(cmd) => self.control(&mut run, cmd),
                    None => return Ended::Orphaned,
                },
                Some(result) = run.sending.next(), if !run.sending.is_empty() => {
                    // A refusal means it was counted already (an abandon).
                    let _ = run.tracker.complete(result);
                    // Take every answer that is ready before writing.
                    while let Some(Some(result)) = futures::FutureExt::now_or_never(run.sending.next()) {
                        let _ = run.tracker.complete(result);
                    }
                }
                _ = tokio::time::sleep(tick) => {}
            }
            if let Some(since) = run.cancel_since
                && since.elapsed() >= CANCEL_GRACE
                && !run.sending.is_empty()
            {
                run.tracker.abandon_in_flight("CANCELLED");
                run.sending = FuturesUnordered::new();
            }
            if let Some((since, _)) = &run.stopping
                && (run.sending.is_empty() || since.elapsed() >= STOP_GRACE)
            {
                let state = run.state;
                let stored = self.write(&mut run, state).await;
                if let Some((_, ack)) = run.stopping.take() {
                    let _ = ack.send(());
                }
                return match stored {
                    Ok(_) => Ended::Stopped,
                    Err(e) => Ended::Store(e),
                };
            }
            if run.last_sample.elapsed() >= SAMPLE_EVERY {
                run.last_sample = Instant::now();
                let c = run.tracker.counters();
                run.meter.sample(
                    run.started.elapsed().as_secs_f64(),
                    c.delivered() + c.failed(),
                );
            }
            self.publish(&run);
        }
    }

    /// Takes recipients into the window when it has room, the job runs and
    /// its start time has come (and the rate cap allows).
    async fn fill(&mut self, run: &mut Run) -> Result<(), StoreError> {
        let now_unix = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        if run.state == JobState::Queued && run.meta.spec.start_at <= now_unix {
            run.state = JobState::Running;
            run.dirty = true;
        }
        if run.state != JobState::Running || run.cancel_since.is_some() || run.stopping.is_some() {
            return Ok(());
        }
        let bound = (IN_FLIGHT_PER_BOT * self.gateway.bot_count().max(1)).min(MAX_WINDOW);
        let free = bound.saturating_sub(run.tracker.open());
        if free == 0
            || (free < bound.div_ceil(4)
                && !run.sending.is_empty()
                && run.last_fill.elapsed() < REFILL_EVERY)
        {
            return Ok(());
        }
        run.last_fill = Instant::now();
        let mut n = free;
        if run.meta.spec.rate_per_s > 0 {
            let rate = f64::from(run.meta.spec.rate_per_s);
            let dt = run.last_credit.elapsed().as_secs_f64();
            run.last_credit = Instant::now();
            run.credit = (run.credit + dt * rate).min(rate.max(1.0));
            n = n.min(run.credit.floor() as usize);
            if n == 0 {
                return Ok(());
            }
        }
        if let Some(index) = run.tracker.wants_index()
            && !run.window.covers(index)
        {
            match load_window(self.store.as_ref(), &run.meta, index).await? {
                Some(w) => run.window = w,
                None => return Ok(()),
            }
        }
        // Each bot's share of the window: recipients of a bot that has its
        // IN_FLIGHT_PER_BOT are set aside, so the cursor reaches those of
        // bots that would otherwise run dry.
        let mut per_bot: HashMap<String, usize> = HashMap::new();
        for id in run.tracker.open_ids() {
            if let Some(bot) = self.gateway.preview_bot(id) {
                *per_bot.entry(bot).or_default() += 1;
            }
        }
        let gateway = &self.gateway;
        let taken = run.tracker.reserve_by(&run.window, n, PARK_MAX, |id| {
            let Some(bot) = gateway.preview_bot(id) else {
                return true;
            };
            let open = per_bot.entry(bot).or_default();
            if *open < IN_FLIGHT_PER_BOT {
                *open += 1;
                true
            } else {
                false
            }
        });
        if run.meta.spec.rate_per_s > 0 {
            run.credit -= taken as f64;
        }
        Ok(())
    }

    /// Stores a checkpoint in state `state`; returns the recipients it
    /// released for sending. Answers the controls waiting for a write.
    async fn write(&mut self, run: &mut Run, state: JobState) -> Result<Vec<i64>, StoreError> {
        let cp = run.tracker.checkpoint();
        let update = StatusUpdate {
            state,
            progress: cp.record,
            results: cp.results,
            now: i64::try_from(unix_now()).unwrap_or(i64::MAX),
        };
        let stored: JobStatus = match self.store.update(&run.meta.spec.id, run.rev, update).await {
            Ok(s) => s,
            Err(e) => {
                warn!(job = %run.meta.spec.id, error = %e, "broadcast progress not stored; resuming from the store");
                for w in run.waiting.drain(..).chain(run.waiting_final.drain(..)) {
                    let _ = w.send(Err(BroadcastError::Store(e.to_string())));
                }
                return Err(e);
            }
        };
        run.rev = stored.rev;
        run.state = stored.state;
        run.finished_at = stored.finished_at;
        run.dirty = false;
        run.last_write = Instant::now();
        let released = run.tracker.committed(cp.seq);
        let snap = self.publish(run);
        for w in run.waiting.drain(..) {
            let _ = w.send(Ok(snap.clone()));
        }
        if run.state.is_final() {
            for w in run.waiting_final.drain(..) {
                let _ = w.send(Ok(snap.clone()));
            }
        }
        Ok(released)
    }

    fn control(&mut self, run: &mut Run, cmd: Control) {
        let answer_now = |run: &Run, tx: oneshot::Sender<_>, this: &Runner| {
            let _ = tx.send(Ok(this.build(run)));
        };
        match cmd {
            Control::Pause(tx) => match run.state {
                JobState::Queued | JobState::Running if run.cancel_since.is_none() => {
                    run.tracker.unreserve();
                    run.state = JobState::Paused;
                    run.dirty = true;
                    run.waiting.push(tx);
                }
                _ => answer_now(run, tx, self),
            },
            Control::Resume(tx) => match run.state {
                JobState::Paused => {
                    run.state = JobState::Running;
                    run.dirty = true;
                    run.waiting.push(tx);
                }
                _ => answer_now(run, tx, self),
            },
            Control::Cancel(tx) => {
                if run.cancel_since.is_none() {
                    run.tracker.cancel();
                    run.cancelled.store(true, Ordering::Relaxed);
                    run.cancel_since = Some(Instant::now());
                    run.dirty = true;
                }
                // Answered with the final state, once the requests already
                // handed out have answered (at most CANCEL_GRACE).
                run.waiting_final.push(tx);
            }
            Control::Stop(ack) => run.stopping = Some((Instant::now(), ack)),
        }
    }

    fn build(&self, run: &Run) -> pb::Broadcast {
        let c = run.tracker.counters();
        let observed = (run.state == JobState::Running)
            .then(|| run.meter.rate())
            .flatten();
        let est = plan(&self.gateway, &run.meta.spec, c.pending(), observed);
        let mut b = snapshot(&run.meta, run.state, run.finished_at, c, est);
        b.runner = self.gateway.instance_id().to_owned();
        b
    }

    fn publish(&self, run: &Run) -> pb::Broadcast {
        let b = self.build(run);
        self.snapshot.send_replace(b.clone());
        b
    }
}
