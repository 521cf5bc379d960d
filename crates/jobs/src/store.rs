//! What every job store does, whatever it keeps its bytes in: the
//! [`JobStore`] trait and the records it trades in. No I/O here; the
//! embedded store (a redb file under the data directory) and the cluster
//! store (etcd keys under `jobs/<id>/`) implement it.
//!
//! The rules every implementation keeps:
//! - [`create`](JobStore::create) returns only once the spec, the manifest,
//!   every recipient chunk and a fresh status are stored, in one atomic
//!   write: a job is either whole or absent. Creating an id that exists
//!   answers the stored job and changes nothing (a caller retrying its
//!   create gets the same job).
//! - [`update`](JobStore::update) is a compare-and-set on the status's
//!   revision: a runner's progress write after a cancel (or after another
//!   runner took over) fails with [`StoreError::Conflict`] instead of
//!   undoing it. It refuses a move the state table forbids, a final state
//!   with recipients pending, and a record that does not add up. The new
//!   status and the batch's results are written together.
//! - Finished jobs are removed [`delete_expired`](JobStore::delete_expired)
//!   `retention` after they finished, results and all.

use async_trait::async_trait;

use crate::JobError;
use crate::intake::Packed;
use crate::pack::{Manifest, unpack_chunk};
use crate::progress::{ProgressRecord, RecipientResult, Window};
use crate::spec::{JobId, JobSpec};
use crate::state::JobState;

/// How long finished jobs and their results are kept by default: 7 days.
pub const DEFAULT_RETENTION_S: i64 = 7 * 24 * 3600;

/// The most results one [`JobStore::results`] page returns.
pub const MAX_RESULTS_PAGE: usize = 10_000;

/// A job's immutable part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobMeta {
    pub spec: JobSpec,
    /// Unix seconds.
    pub created_at: i64,
    pub manifest: Manifest,
}

/// A job's changing part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// Bumped by every write; [`JobStore::update`] compares it.
    pub rev: u64,
    /// Unix seconds when it reached a final state; 0 before.
    pub finished_at: i64,
    pub progress: ProgressRecord,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub meta: JobMeta,
    pub status: JobStatus,
}

/// What [`JobStore::create`] takes: the spec and its packed recipients.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub spec: JobSpec,
    pub recipients: Packed,
    /// Unix seconds.
    pub created_at: i64,
}

/// Whether a create stored a new job or found one under that id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    New(JobRecord),
    Existing(JobRecord),
}

impl Created {
    pub fn record(&self) -> &JobRecord {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}

/// A status write: the state and progress after it, the results finished
/// since the last one, and the time (for `finished_at`).
#[derive(Clone, Debug)]
pub struct StatusUpdate {
    pub state: JobState,
    pub progress: ProgressRecord,
    pub results: Vec<RecipientResult>,
    /// Unix seconds.
    pub now: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no job {0}")]
    NotFound(JobId),
    #[error("job {id} changed under this write (revision {found}, expected {expected})")]
    Conflict {
        id: JobId,
        expected: u64,
        found: u64,
    },
    #[error("refused: {0}")]
    Invalid(#[from] JobError),
    #[error("job store: {0}")]
    Backend(String),
}

/// Where jobs live; see the module comment for the rules.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a job (not a dry run) with all its recipients, state "queued".
    async fn create(&self, job: NewJob) -> Result<Created, StoreError>;

    async fn load(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError>;

    /// Packed chunk `n` of the job's recipients.
    async fn chunk(&self, id: &JobId, n: usize) -> Result<Vec<u8>, StoreError>;

    /// Writes a new status if the stored one still has revision `rev`;
    /// returns the status as stored (revision bumped).
    async fn update(
        &self,
        id: &JobId,
        rev: u64,
        update: StatusUpdate,
    ) -> Result<JobStatus, StoreError>;

    /// Every stored job, by id.
    async fn list(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// Up to `limit` (at most [`MAX_RESULTS_PAGE`]) results in ascending
    /// chat id order, after chat `after` (`None`: from the start).
    async fn results(
        &self,
        id: &JobId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RecipientResult>, StoreError>;

    /// Removes jobs that finished at least `retention_s` before `now`;
    /// returns their ids.
    async fn delete_expired(&self, now: i64, retention_s: i64) -> Result<Vec<JobId>, StoreError>;
}

/// The window of recipients holding recipient `index` of a job: one
/// chunk, fetched and unpacked. `None` past the last recipient.
pub async fn load_window(
    store: &dyn JobStore,
    meta: &JobMeta,
    index: u64,
) -> Result<Option<Window>, StoreError> {
    let Some((n, base)) = meta.manifest.locate(index) else {
        return Ok(None);
    };
    let ids = unpack_chunk(&store.chunk(&meta.spec.id, n).await?)?;
    if ids.len() != meta.manifest.chunk_counts()[n] as usize {
        return Err(JobError::Corrupt("chunk holds another count than its manifest").into());
    }
    Ok(Some(Window::new(base, ids)))
}

/// The checks [`JobStore::update`] makes before writing, for every
/// implementation: the move is allowed (or keeps the state), the record
/// adds up and belongs to this job, and a final state has nothing pending.
/// Returns the status to store.
pub fn next_status(
    meta: &JobMeta,
    current: &JobStatus,
    update: &StatusUpdate,
) -> Result<JobStatus, JobError> {
    if update.state != current.state {
        current.state.transition(update.state)?;
    } else if current.state.is_final() {
        return Err(JobError::IllegalTransition {
            from: current.state,
            to: update.state,
        });
    }
    update.progress.check()?;
    if update.progress.counters.total() != meta.manifest.total() {
        return Err(JobError::Corrupt(
            "progress for another number of recipients",
        ));
    }
    if update.state.is_final() && update.progress.counters.pending() != 0 {
        return Err(JobError::PendingAtEnd(update.progress.counters.pending()));
    }
    Ok(JobStatus {
        state: update.state,
        rev: current.rev + 1,
        finished_at: if update.state.is_final() {
            update.now
        } else {
            0
        },
        progress: update.progress.clone(),
    })
}

/// A new job's first status: queued, nothing sent.
pub fn first_status(manifest: &Manifest) -> JobStatus {
    JobStatus {
        state: JobState::Queued,
        rev: 1,
        finished_at: 0,
        progress: ProgressRecord::fresh(manifest.total()),
    }
}

/// Whether a stored job is past its retention at `now`.
pub fn expired(status: &JobStatus, now: i64, retention_s: i64) -> bool {
    status.state.is_final() && status.finished_at.saturating_add(retention_s) <= now
}
