//! Broadcast jobs in the gateway: the `*Broadcast*` RPCs' logic and one
//! runner task per live job.
//!
//! - [`Broadcasts`] is what the gRPC service calls: create (recipients
//!   streamed in, de-duplicated and packed by `shardgate_jobs`, stored
//!   before the answer), get, list, watch, pause, resume, cancel, results.
//! - `runner`: the task that drives one job through the normal send path
//!   (see its module comment for the crash-safe protocol);
//! - `send`: one recipient through routing, limits and the creator's rules.
//!
//! Every job that is not final has one runner on this instance (embedded
//! mode: the store's file is open in one process only, so one runner per
//! job). A runner is the only writer of its job's status; controls go
//! through it. A runner that ends on a store failure is started again from
//! the store after a second.
//!
//! Cluster mode has no job store yet: every broadcast RPC answers
//! `FAILED_PRECONDITION` there ([`Broadcasts::disabled`]).

mod runner;
mod send;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message as _;
use shardgate_jobs::{
    Counters, Created, DEFAULT_PRIORITY, Estimate, Intake, JobError, JobId, JobMeta, JobRecord,
    JobSpec, JobState, JobStore, MAX_RECIPIENTS, NewJob, Priority, StoreError, Template,
};
use shardgate_proto::v1 as pb;
use shardgate_registry::unix_now;
use tokio::sync::{OnceCell, mpsc, oneshot, watch};
use tonic::Status;
use tracing::{Instrument, error, info, info_span, warn};

use crate::callers::Who;
use crate::{Gateway, Message};

pub use runner::IN_FLIGHT_PER_BOT;
use runner::{Control, Ended, Runner};

/// How long after a store failure a job's runner is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// Results per page read from the store for `BroadcastResults`.
const RESULTS_PAGE: usize = 1000;
/// How often `WatchBroadcast` sends a snapshot (at least every second).
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How often finished jobs past their retention are removed.
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Why a broadcast call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BroadcastError {
    #[error("{0}")]
    Invalid(String),
    #[error("no broadcast {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("job store: {0}")]
    Store(String),
}

impl BroadcastError {
    pub fn to_status(&self) -> Status {
        match self {
            BroadcastError::Invalid(m) => Status::invalid_argument(m.clone()),
            BroadcastError::NotFound(_) => Status::not_found(self.to_string()),
            BroadcastError::Precondition(m) => Status::failed_precondition(m.clone()),
            BroadcastError::Store(_) => Status::unavailable(self.to_string()),
        }
    }
}

impl From<StoreError> for BroadcastError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => BroadcastError::NotFound(id.to_string()),
            StoreError::Invalid(e) => BroadcastError::Invalid(e.to_string()),
            other => BroadcastError::Store(other.to_string()),
        }
    }
}

/// Opens the job store (blocking: it runs on the blocking pool).
pub type StoreOpener = Arc<dyn Fn() -> Result<Arc<dyn JobStore>, StoreError> + Send + Sync>;

/// The broadcast side of a gateway. Cheap to clone.
#[derive(Clone)]
pub struct Broadcasts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broadcasts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcasts").finish_non_exhaustive()
    }
}

enum Backend {
    /// Broadcasts are refused with this reason.
    Off(String),
    /// The store, opened at start or on the first create.
    On {
        gateway: Gateway,
        opener: StoreOpener,
        store: OnceCell<Arc<dyn JobStore>>,
    },
}

struct Inner {
    backend: Backend,
    jobs: Mutex<HashMap<JobId, Live>>,
}

/// A job with a runner on this instance.
struct Live {
    control: mpsc::Sender<Control>,
    snapshot: watch::Receiver<pb::Broadcast>,
}

impl Default for Broadcasts {
    fn default() -> Self {
        Broadcasts::disabled("this gateway runs without a job store")
    }
}

impl Broadcasts {
    /// Every broadcast call answers `FAILED_PRECONDITION` with `reason`.
    pub fn disabled(reason: impl Into<String>) -> Broadcasts {
        Broadcasts {
            inner: Arc::new(Inner {
                backend: Backend::Off(reason.into()),
                jobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Broadcasts on the store `opener` opens. With `open_now` it is opened
    /// here and every job that is not final gets its runner (a restart
    /// resumes them); otherwise on the first call that needs it.
    pub async fn start(
        gateway: Gateway,
        opener: StoreOpener,
        open_now: bool,
    ) -> Result<Broadcasts, BroadcastError> {
        let b = Broadcasts {
            inner: Arc::new(Inner {
                backend: Backend::On {
                    gateway,
                    opener,
                    store: OnceCell::new(),
                },
                jobs: Mutex::new(HashMap::new()),
            }),
        };
        if open_now {
            b.store().await?;
        }
        Ok(b)
    }

    /// The store, opened (and its jobs resumed) on first use.
    async fn store(&self) -> Result<(Gateway, Arc<dyn JobStore>), BroadcastError> {
        let Backend::On {
            gateway,
            opener,
            store,
        } = &self.inner.backend
        else {
            let Backend::Off(reason) = &self.inner.backend else {
                unreachable!()
            };
            return Err(BroadcastError::Precondition(format!(
                "broadcasts are not available: {reason}"
            )));
        };
        let s = store
            .get_or_try_init(|| async {
                let opener = opener.clone();
                let s = tokio::task::spawn_blocking(move || opener())
                    .await
                    .map_err(|e| BroadcastError::Store(e.to_string()))??;
                let this = self.clone();
                let store = s.clone();
                let gw = gateway.clone();
                tokio::spawn(async move {
                    this.resume_all(&gw, &store).await;
                    this.sweep(store).await;
                });
                Ok::<_, BroadcastError>(s)
            })
            .await?;
        Ok((gateway.clone(), s.clone()))
    }

    /// Starts a runner for every stored job that is not final.
    async fn resume_all(&self, gateway: &Gateway, store: &Arc<dyn JobStore>) {
        match store.list().await {
            Ok(jobs) => {
                let live: Vec<JobRecord> = jobs
                    .into_iter()
                    .filter(|r| !r.status.state.is_final())
                    .collect();
                if !live.is_empty() {
                    info!(jobs = live.len(), "resuming broadcasts from the job store");
                }
                for r in live {
                    self.spawn(gateway.clone(), store.clone(), r);
                }
            }
            Err(e) => error!(error = %e, "cannot list the stored broadcasts; none resumed"),
        }
    }

    /// Removes finished jobs past their retention, now and every hour.
    async fn sweep(&self, store: Arc<dyn JobStore>) {
        let mut every = tokio::time::interval(RETENTION_SWEEP);
        loop {
            every.tick().await;
            let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
            match store
                .delete_expired(now, shardgate_jobs::DEFAULT_RETENTION_S)
                .await
            {
                Ok(gone) if !gone.is_empty() => {
                    info!(
                        jobs = gone.len(),
                        "finished broadcasts past their retention removed"
                    )
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "removing expired broadcasts failed"),
            }
        }
    }

    /// Runs job `record` until it is final, starting again from the store
    /// after a store failure.
    fn spawn(&self, gateway: Gateway, store: Arc<dyn JobStore>, record: JobRecord) {
        let id = record.meta.spec.id.clone();
        let (control_tx, control_rx) = mpsc::channel(64);
        let (snap_tx, snap_rx) = watch::channel(stored_snapshot(&record, &gateway));
        {
            let mut jobs = self.inner.jobs.lock();
            if jobs.contains_key(&id) {
                return;
            }
            jobs.insert(
                id.clone(),
                Live {
                    control: control_tx,
                    snapshot: snap_rx,
                },
            );
        }
        let inner = Arc::downgrade(&self.inner);
        let span = info_span!("broadcast", job = %id);
        tokio::spawn(
            async move {
                let mut record = record;
                let mut control = control_rx;
                loop {
                    let runner = Runner {
                        gateway: gateway.clone(),
                        store: store.clone(),
                        record,
                        control,
                        snapshot: snap_tx.clone(),
                    };
                    let (ended, rx) = runner.run_and_return().await;
                    control = rx;
                    match ended {
                        Ended::Final | Ended::Orphaned | Ended::Stopped => break,
                        Ended::Broken(why) => {
                            error!(error = %why, "broadcast record cannot be driven; left as stored");
                            break;
                        }
                        Ended::Store(e) => {
                            warn!(error = %e, "broadcast runner stopped on a store failure; starting again");
                            tokio::time::sleep(RESTART_DELAY).await;
                            match store.load(&id).await {
                                Ok(Some(r)) if !r.status.state.is_final() => record = r,
                                Ok(_) => break,
                                Err(e) => {
                                    error!(error = %e, "broadcast not reloaded; it resumes at the next start");
                                    break;
                                }
                            }
                        }
                    }
                }
                if let Some(inner) = inner.upgrade() {
                    inner.jobs.lock().remove(&id);
                }
            }
            .instrument(span),
        );
    }

    /// The gateway stops: every runner hands out nothing more, waits a
    /// little for the requests it handed out, and stores its progress, so a
    /// restart counts as possible duplicates only what was still out.
    /// Returns once all have, or after `timeout`.
    pub async fn stop(&self, timeout: Duration) {
        let controls: Vec<mpsc::Sender<Control>> = self
            .inner
            .jobs
            .lock()
            .values()
            .map(|l| l.control.clone())
            .collect();
        let acks = controls.into_iter().map(|c| async move {
            let (tx, rx) = oneshot::channel();
            if c.send(Control::Stop(tx)).await.is_ok() {
                let _ = rx.await;
            }
        });
        let _ = tokio::time::timeout(timeout, futures::future::join_all(acks)).await;
    }

    fn live(&self, id: &JobId) -> Option<(mpsc::Sender<Control>, watch::Receiver<pb::Broadcast>)> {
        self.inner
            .jobs
            .lock()
            .get(id)
            .map(|l| (l.control.clone(), l.snapshot.clone()))
    }

    /// Creates a job from a `CreateBroadcast` stream.
    pub async fn create(
        &self,
        who: &Who,
        mut chunks: impl futures::Stream<Item = Result<pb::BroadcastChunk, Status>> + Unpin,
    ) -> Result<pb::Broadcast, Status> {
        use futures::StreamExt;
        let first = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("the stream ended before its first chunk"))??;
        let spec = first
            .spec
            .ok_or_else(|| Status::invalid_argument("the first chunk must hold the spec"))?;
        let spec = job_spec(spec, who).map_err(|e| e.to_status())?;
        let mut intake = Intake::new(MAX_RECIPIENTS);
        push(&mut intake, &first.chat_ids)?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if chunk.spec.is_some() {
                return Err(Status::invalid_argument(
                    "only the first chunk may hold a spec",
                ));
            }
            push(&mut intake, &chunk.chat_ids)?;
        }
        let packed = tokio::task::spawn_blocking(move || intake.finish())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if spec.dry_run {
            let Backend::On { gateway, .. } = &self.inner.backend else {
                return Err(self.store().await.err().map_or_else(
                    || Status::failed_precondition("broadcasts are not available"),
                    |e| e.to_status(),
                ));
            };
            let total = packed.manifest.total();
            let meta = JobMeta {
                spec: spec.clone(),
                created_at: now_unix(),
                manifest: packed.manifest,
            };
            let est = plan(gateway, &spec, total, None);
            return Ok(snapshot(
                &meta,
                JobState::Planned,
                0,
                &Counters::new(total),
                est,
            ));
        }
        let (gateway, store) = self.store().await.map_err(|e| e.to_status())?;
        let created = store
            .create(NewJob {
                spec,
                recipients: packed,
                created_at: now_unix(),
            })
            .await
            .map_err(|e| BroadcastError::from(e).to_status())?;
        match created {
            Created::New(record) => {
                info!(job = %record.meta.spec.id, total = record.meta.manifest.total(),
                    caller = %record.meta.spec.caller, "broadcast created");
                let snap = stored_snapshot(&record, &gateway);
                self.spawn(gateway, store, record);
                Ok(snap)
            }
            Created::Existing(record) => {
                visible(who, &record.meta).map_err(|e| e.to_status())?;
                Ok(self.current(&gateway, &record))
            }
        }
    }

    /// The live snapshot if a runner drives the job, else the stored one.
    fn current(&self, gateway: &Gateway, record: &JobRecord) -> pb::Broadcast {
        match self.live(&record.meta.spec.id) {
            Some((_, snap)) => snap.borrow().clone(),
            None => stored_snapshot(record, gateway),
        }
    }

    async fn record(&self, who: &Who, id: &str) -> Result<(Gateway, JobRecord), BroadcastError> {
        let (gateway, store) = self.store().await?;
        let id = JobId::new(id).map_err(|_| BroadcastError::NotFound(id.to_owned()))?;
        let record = store
            .load(&id)
            .await?
            .ok_or_else(|| BroadcastError::NotFound(id.to_string()))?;
        visible(who, &record.meta)?;
        Ok((gateway, record))
    }

    pub async fn get(&self, who: &Who, id: &str) -> Result<pb::Broadcast, BroadcastError> {
        let (gateway, record) = self.record(who, id).await?;
        Ok(self.current(&gateway, &record))
    }

    pub async fn list(&self, who: &Who) -> Result<Vec<pb::Broadcast>, BroadcastError> {
        let (gateway, store) = self.store().await?;
        Ok(store
            .list()
            .await?
            .iter()
            .filter(|r| visible(who, &r.meta).is_ok())
            .map(|r| self.current(&gateway, r))
            .collect())
    }

    /// Pause, resume or cancel, answered once stored.
    pub async fn control(
        &self,
        who: &Who,
        id: &str,
        what: fn(oneshot::Sender<Result<pb::Broadcast, BroadcastError>>) -> ControlKind,
    ) -> Result<pb::Broadcast, BroadcastError> {
        let (gateway, record) = self.record(who, id).await?;
        let Some((tx, _)) = self.live(&record.meta.spec.id) else {
            return if record.status.state.is_final() {
                Err(BroadcastError::Precondition(format!(
                    "broadcast {id} is {} already",
                    record.status.state
                )))
            } else {
                Err(BroadcastError::Store(format!(
                    "broadcast {id} has no runner now; retry"
                )))
            };
        };
        let _ = gateway;
        let (reply, answer) = oneshot::channel();
        tx.send(what(reply).0)
            .await
            .map_err(|_| BroadcastError::Precondition(format!("broadcast {id} just ended")))?;
        answer
            .await
            .map_err(|_| BroadcastError::Store(format!("broadcast {id}'s runner stopped; retry")))?
    }

    /// A job's snapshots: now, then at least every second, ending after a
    /// final state's.
    pub async fn watch(
        &self,
        who: &Who,
        id: &str,
    ) -> Result<mpsc::Receiver<Result<pb::Broadcast, Status>>, BroadcastError> {
        let (gateway, record) = self.record(who, id).await?;
        let (_, store) = self.store().await?;
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut record = record;
            loop {
                let snap = this.current(&gateway, &record);
                let done = is_final_name(&snap.state);
                if tx.send(Ok(snap)).await.is_err() || done {
                    return;
                }
                tokio::time::sleep(WATCH_EVERY).await;
                if this.live(&record.meta.spec.id).is_none() {
                    match store.load(&record.meta.spec.id).await {
                        Ok(Some(r)) => record = r,
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(BroadcastError::from(e).to_status())).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Every finished recipient's result in chat id order, page by page.
    pub async fn results(
        &self,
        who: &Who,
        id: &str,
    ) -> Result<mpsc::Receiver<Result<pb::RecipientResult, Status>>, BroadcastError> {
        let (_, record) = self.record(who, id).await?;
        let (_, store) = self.store().await?;
        let (tx, rx) = mpsc::channel(RESULTS_PAGE);
        tokio::spawn(async move {
            let id = record.meta.spec.id;
            let mut after = None;
            loop {
                let page = match store.results(&id, after, RESULTS_PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(BroadcastError::from(e).to_status())).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                after = Some(last.chat_id);
                for r in page {
                    let pb = pb::RecipientResult {
                        chat_id: r.chat_id,
                        bot: r.bot,
                        message_id: r.message_id,
                        error: r.error.map(|e| pb::Error {
                            code: e.code,
                            telegram_code: 0,
                            description: e.message,
                        }),
                    };
                    if tx.send(Ok(pb)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Which control a call sends (built from the reply channel).
pub struct ControlKind(Control);

impl ControlKind {
    pub fn pause(tx: oneshot::Sender<Result<pb::Broadcast, BroadcastError>>) -> ControlKind {
        ControlKind(Control::Pause(tx))
    }
    pub fn resume(tx: oneshot::Sender<Result<pb::Broadcast, BroadcastError>>) -> ControlKind {
        ControlKind(Control::Resume(tx))
    }
    pub fn cancel(tx: oneshot::Sender<Result<pb::Broadcast, BroadcastError>>) -> ControlKind {
        ControlKind(Control::Cancel(tx))
    }
}

/// Whether a wire state name is a final state.
fn is_final_name(name: &str) -> bool {
    name.parse::<JobState>().is_ok_and(JobState::is_final)
}

fn now_unix() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

/// With auth on, a caller sees and changes only the jobs it created.
fn visible(who: &Who, meta: &JobMeta) -> Result<(), BroadcastError> {
    match who.caller_name() {
        Some(name) if name != meta.spec.caller => {
            Err(BroadcastError::NotFound(meta.spec.id.to_string()))
        }
        _ => Ok(()),
    }
}

fn push(intake: &mut Intake, ids: &[i64]) -> Result<(), Status> {
    if ids.contains(&0) {
        return Err(Status::invalid_argument("chat id 0 is not a recipient"));
    }
    intake
        .push(ids)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A `BroadcastSpec` checked into a [`JobSpec`]: an id (made when empty), a
/// template a `Send` (or a send-type `Call`) would accept, the class
/// (unspecified = bulk).
fn job_spec(spec: pb::BroadcastSpec, who: &Who) -> Result<JobSpec, BroadcastError> {
    let invalid = |m: String| BroadcastError::Invalid(m);
    let priority = match pb::Priority::try_from(spec.priority) {
        Ok(pb::Priority::Unspecified) => DEFAULT_PRIORITY,
        Ok(pb::Priority::Interactive) => Priority::Interactive,
        Ok(pb::Priority::Normal) => Priority::Normal,
        Ok(pb::Priority::Bulk) => Priority::Bulk,
        Err(_) => return Err(invalid(format!("priority {} is unknown", spec.priority))),
    };
    let no_key = || {
        invalid(
            "a template takes no idempotency_key (the job's id makes a create safe to retry)"
                .into(),
        )
    };
    let template = match (spec.message, spec.call) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give the template in `message` or in `call`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "the spec needs a template in `message` or `call`".into(),
            ));
        }
        (Some(mut template), None) => {
            template.priority = crate::message::wire_priority(priority);
            if !template.idempotency_key.is_empty() {
                return Err(no_key());
            }
            // Checked as a Send would be, with a stand-in recipient.
            let mut probe = template.clone();
            probe.chat_id = 1;
            Message::from_request(probe).map_err(|e| invalid(format!("template: {e}")))?;
            template.chat_id = 0;
            Template::Send(template.encode_to_vec())
        }
        (None, Some(mut call)) => {
            call.priority = crate::message::wire_priority(priority);
            if !call.idempotency_key.is_empty() {
                return Err(no_key());
            }
            if !call.files.is_empty() {
                return Err(invalid(
                    "a call template takes no uploads: upload the file once, then broadcast its file_id"
                        .into(),
                ));
            }
            if !matches!(
                shardgate_botapi::classify(&call.method),
                shardgate_botapi::Class::SendOne | shardgate_botapi::Class::SendMany(_)
            ) {
                return Err(invalid(format!(
                    "a call template must be a send-type method (sendPhoto, sendDocument, copyMessage, ...); {:?} is not",
                    call.method.chars().take(64).collect::<String>()
                )));
            }
            // Checked as a Call would be, with a stand-in recipient.
            let mut probe = call.clone();
            probe.params_json = send::with_chat(&call.params_json, 1)
                .map_err(|e| invalid(format!("template: {e}")))?;
            Message::from_call(probe).map_err(|e| invalid(format!("template: {e}")))?;
            Template::Call(call.encode_to_vec())
        }
    };
    let id = if spec.id.is_empty() {
        format!("b{:016x}", rand::random::<u64>())
    } else {
        spec.id
    };
    let job = JobSpec {
        id: JobId::new(&id).map_err(|e| invalid(e.to_string()))?,
        template,
        priority,
        rate_per_s: spec.rate_per_s,
        start_at: spec.start_at,
        dry_run: spec.dry_run,
        caller: who.caller_name().unwrap_or_default().to_owned(),
    };
    job.validate()
        .map_err(|e: JobError| invalid(e.to_string()))?;
    Ok(job)
}

/// The rate and ETA of `pending` recipients of `spec` on this fleet now.
fn plan(gateway: &Gateway, spec: &JobSpec, pending: u64, observed: Option<f64>) -> Estimate {
    let limits = &gateway.config().limits;
    let per_bot = f64::from(limits.bot_max) / limits.bot_window.as_secs_f64().max(1e-3);
    let bots = vec![per_bot; gateway.healthy_bot_count()];
    let allowed =
        shardgate_jobs::allowed_rate(shardgate_jobs::fleet_rate(&bots, 1.0), spec.rate_per_s);
    let wait = (spec.start_at - now_unix()).max(0) as f64;
    shardgate_jobs::estimate(pending, allowed, observed, wait)
}

/// The wire form of a job's state.
fn snapshot(
    meta: &JobMeta,
    state: JobState,
    finished_at: i64,
    c: &Counters,
    est: Estimate,
) -> pb::Broadcast {
    pb::Broadcast {
        id: meta.spec.id.to_string(),
        state: state.as_str().to_owned(),
        total: c.total(),
        delivered: c.delivered(),
        failed: c.failed(),
        pending: c.pending(),
        failed_by_code: c
            .failed_by_code()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        rate_per_s: est.rate_per_s,
        eta_s: est.eta_s.unwrap_or(-1.0),
        created_at: meta.created_at,
        finished_at,
        runner: String::new(),
        possible_duplicates: c.possible_duplicates(),
    }
}

fn stored_snapshot(record: &JobRecord, gateway: &Gateway) -> pb::Broadcast {
    let c = &record.status.progress.counters;
    let est = plan(gateway, &record.meta.spec, c.pending(), None);
    snapshot(
        &record.meta,
        record.status.state,
        record.status.finished_at,
        c,
        est,
    )
}

/// Where the embedded store lives when `--data-dir` is not given:
/// `$XDG_STATE_HOME/shardgate`, else `~/.local/state/shardgate`.
pub fn default_data_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => Some(PathBuf::from(x).join("shardgate")),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".local/state/shardgate")),
    }
}
