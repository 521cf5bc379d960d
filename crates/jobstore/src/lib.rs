//! The embedded [`JobStore`]: broadcast jobs in one redb file,
//! `<data-dir>/jobs.redb`, for a daemon that runs without etcd.
//!
//! redb is an embedded, crash-safe (copy-on-write B-trees, each commit
//! fsynced), pure-Rust key-value store. Four tables:
//!
//! | table         | key             | value                                     |
//! |---------------|-----------------|-------------------------------------------|
//! | `job_meta`    | job id          | spec, creation time, manifest (immutable) |
//! | `job_status`  | job id          | state, revision, progress record          |
//! | `job_chunks`  | (job id, n)     | packed recipient chunk `n`                |
//! | `job_results` | (job id, chat)  | one recipient's result                    |
//!
//! The records' bytes are [`shardgate_jobs::codec`]'s, the same the cluster
//! store writes, and the rules ([`shardgate_jobs::store`]) are checked by the
//! same functions. A create is one write transaction (meta, status and
//! every chunk), so a job is whole or absent after any crash; a status
//! update and its batch of results are one transaction too.
//!
//! redb's calls block on the disk: the [`JobStore`] methods run them on
//! tokio's blocking pool; the `*_blocking` methods are the same calls for
//! code that is already off the runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use shardgate_jobs::codec::{
    decode_meta, decode_result, decode_status, encode_meta, encode_result, encode_status,
};
use shardgate_jobs::store::{MAX_RESULTS_PAGE, expired, first_status, next_status};
use shardgate_jobs::{
    Created, JobId, JobMeta, JobRecord, JobStatus, JobStore, NewJob, RecipientResult, StatusUpdate,
    StoreError,
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("job_meta");
const STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_status");
const CHUNKS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("job_chunks");
const RESULTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("job_results");

/// The file's name under the data directory.
pub const FILE_NAME: &str = "jobs.redb";

/// Jobs kept in `<data-dir>/jobs.redb`.
#[derive(Clone)]
pub struct RedbJobStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

impl RedbJobStore {
    /// Opens (or creates) the store under `data_dir`, creating the
    /// directory if needed. Blocking: call it before the runtime serves, or
    /// from `spawn_blocking`. Only one process may have the file open.
    pub fn open(data_dir: &Path) -> Result<RedbJobStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(backend)?;
        // Create the tables up front, so readers never meet a missing one.
        let tx = db.begin_write().map_err(backend)?;
        {
            tx.open_table(META).map_err(backend)?;
            tx.open_table(STATUS).map_err(backend)?;
            tx.open_table(CHUNKS).map_err(backend)?;
            tx.open_table(RESULTS).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(RedbJobStore {
            db: Arc::new(db),
            path,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn create_blocking(&self, job: NewJob) -> Result<Created, StoreError> {
        job.spec.validate()?;
        if job.spec.dry_run {
            return Err(shardgate_jobs::JobError::DryRunStored.into());
        }
        let job_id = job.spec.id.clone();
        let id = job_id.as_str();
        let tx = self.db.begin_write().map_err(backend)?;
        {
            let meta_t = tx.open_table(META).map_err(backend)?;
            if meta_t.get(id).map_err(backend)?.is_some() {
                drop(meta_t);
                drop(tx); // aborts: nothing written
                let record = self
                    .load_blocking(&job_id)?
                    .ok_or_else(|| StoreError::NotFound(job_id.clone()))?;
                return Ok(Created::Existing(record));
            }
        }
        let meta = JobMeta {
            spec: job.spec,
            created_at: job.created_at,
            manifest: job.recipients.manifest,
        };
        let status = first_status(&meta.manifest);
        {
            let mut meta_t = tx.open_table(META).map_err(backend)?;
            meta_t
                .insert(id, encode_meta(&meta).as_slice())
                .map_err(backend)?;
            let mut status_t = tx.open_table(STATUS).map_err(backend)?;
            status_t
                .insert(id, encode_status(&status).as_slice())
                .map_err(backend)?;
            let mut chunks_t = tx.open_table(CHUNKS).map_err(backend)?;
            for (n, chunk) in job.recipients.chunks.iter().enumerate() {
                let n =
                    u32::try_from(n).map_err(|_| StoreError::Backend("too many chunks".into()))?;
                chunks_t
                    .insert((id, n), chunk.as_slice())
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(Created::New(JobRecord { meta, status }))
    }

    pub fn load_blocking(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let meta_t = tx.open_table(META).map_err(backend)?;
        let status_t = tx.open_table(STATUS).map_err(backend)?;
        let Some(meta) = meta_t.get(id.as_str()).map_err(backend)? else {
            return Ok(None);
        };
        let meta = decode_meta(meta.value())?;
        let status = status_t
            .get(id.as_str())
            .map_err(backend)?
            .ok_or(StoreError::Invalid(shardgate_jobs::JobError::Corrupt(
                "job without a status",
            )))?;
        let status = decode_status(status.value())?;
        Ok(Some(JobRecord { meta, status }))
    }

    pub fn chunk_blocking(&self, id: &JobId, n: usize) -> Result<Vec<u8>, StoreError> {
        let n = u32::try_from(n).map_err(|_| StoreError::NotFound(id.clone()))?;
        let tx = self.db.begin_read().map_err(backend)?;
        let t = tx.open_table(CHUNKS).map_err(backend)?;
        let chunk = t.get((id.as_str(), n)).map_err(backend)?;
        chunk
            .map(|c| c.value().to_vec())
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    pub fn update_blocking(
        &self,
        id: &JobId,
        rev: u64,
        update: StatusUpdate,
    ) -> Result<JobStatus, StoreError> {
        let key = id.as_str();
        let tx = self.db.begin_write().map_err(backend)?;
        let next = {
            let meta_t = tx.open_table(META).map_err(backend)?;
            let mut status_t = tx.open_table(STATUS).map_err(backend)?;
            let meta = match meta_t.get(key).map_err(backend)? {
                Some(m) => decode_meta(m.value())?,
                None => return Err(StoreError::NotFound(id.clone())),
            };
            let current = match status_t.get(key).map_err(backend)? {
                Some(s) => decode_status(s.value())?,
                None => return Err(StoreError::NotFound(id.clone())),
            };
            if current.rev != rev {
                return Err(StoreError::Conflict {
                    id: id.clone(),
                    expected: rev,
                    found: current.rev,
                });
            }
            let next = next_status(&meta, &current, &update)?;
            status_t
                .insert(key, encode_status(&next).as_slice())
                .map_err(backend)?;
            let mut results_t = tx.open_table(RESULTS).map_err(backend)?;
            for r in &update.results {
                results_t
                    .insert((key, r.chat_id), encode_result(r).as_slice())
                    .map_err(backend)?;
            }
            next
        };
        tx.commit().map_err(backend)?;
        Ok(next)
    }

    pub fn list_blocking(&self) -> Result<Vec<JobRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let meta_t = tx.open_table(META).map_err(backend)?;
        let status_t = tx.open_table(STATUS).map_err(backend)?;
        let mut out = Vec::new();
        for row in meta_t.range(..).map_err(backend)? {
            let (key, meta) = row.map_err(backend)?;
            let meta = decode_meta(meta.value())?;
            let Some(status) = status_t.get(key.value()).map_err(backend)? else {
                continue;
            };
            out.push(JobRecord {
                meta,
                status: decode_status(status.value())?,
            });
        }
        Ok(out)
    }

    pub fn results_blocking(
        &self,
        id: &JobId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RecipientResult>, StoreError> {
        let start = match after {
            None => i64::MIN,
            Some(i64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
        };
        let key = id.as_str();
        let tx = self.db.begin_read().map_err(backend)?;
        let t = tx.open_table(RESULTS).map_err(backend)?;
        let mut out = Vec::new();
        for row in t
            .range((key, start)..=(key, i64::MAX))
            .map_err(backend)?
            .take(limit.min(MAX_RESULTS_PAGE))
        {
            let (_, v) = row.map_err(backend)?;
            out.push(decode_result(v.value())?);
        }
        Ok(out)
    }

    pub fn delete_expired_blocking(
        &self,
        now: i64,
        retention_s: i64,
    ) -> Result<Vec<JobId>, StoreError> {
        let doomed: Vec<JobId> = self
            .list_blocking()?
            .into_iter()
            .filter(|r| expired(&r.status, now, retention_s))
            .map(|r| r.meta.spec.id)
            .collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let tx = self.db.begin_write().map_err(backend)?;
        {
            let mut meta_t = tx.open_table(META).map_err(backend)?;
            let mut status_t = tx.open_table(STATUS).map_err(backend)?;
            let mut chunks_t = tx.open_table(CHUNKS).map_err(backend)?;
            let mut results_t = tx.open_table(RESULTS).map_err(backend)?;
            for id in &doomed {
                let key = id.as_str();
                meta_t.remove(key).map_err(backend)?;
                status_t.remove(key).map_err(backend)?;
                chunks_t
                    .retain_in((key, 0u32)..=(key, u32::MAX), |_, _| false)
                    .map_err(backend)?;
                results_t
                    .retain_in((key, i64::MIN)..=(key, i64::MAX), |_, _| false)
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(doomed)
    }
}

/// Runs a blocking store call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("job store task: {e}")))?
}

#[async_trait]
impl JobStore for RedbJobStore {
    async fn create(&self, job: NewJob) -> Result<Created, StoreError> {
        let s = self.clone();
        blocking(move || s.create_blocking(job)).await
    }

    async fn load(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let (s, id) = (self.clone(), id.clone());
        blocking(move || s.load_blocking(&id)).await
    }

    async fn chunk(&self, id: &JobId, n: usize) -> Result<Vec<u8>, StoreError> {
        let (s, id) = (self.clone(), id.clone());
        blocking(move || s.chunk_blocking(&id, n)).await
    }

    async fn update(
        &self,
        id: &JobId,
        rev: u64,
        update: StatusUpdate,
    ) -> Result<JobStatus, StoreError> {
        let (s, id) = (self.clone(), id.clone());
        blocking(move || s.update_blocking(&id, rev, update)).await
    }

    async fn list(&self) -> Result<Vec<JobRecord>, StoreError> {
        let s = self.clone();
        blocking(move || s.list_blocking()).await
    }

    async fn results(
        &self,
        id: &JobId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RecipientResult>, StoreError> {
        let (s, id) = (self.clone(), id.clone());
        blocking(move || s.results_blocking(&id, after, limit)).await
    }

    async fn delete_expired(&self, now: i64, retention_s: i64) -> Result<Vec<JobId>, StoreError> {
        let s = self.clone();
        blocking(move || s.delete_expired_blocking(now, retention_s)).await
    }
}
