//! Where the callers live: the [`CallerStore`] trait the gateway enforces
//! from, and [`EmbeddedCallers`], the store of one instance without etcd
//! (the callers file, re-read on SIGHUP and when it changes; bans and quota
//! counters in memory). The etcd store implements the same trait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use async_trait::async_trait;
use shardgate_callers::{Ban, CallersFile, CallersFileError, QuotaCount, Snapshot, grant};
use tokio::sync::watch;

use crate::RegistryError;

/// The callers, their bans and quota counters, as the gateway needs them.
#[async_trait]
pub trait CallerStore: Send + Sync + 'static {
    /// What is in force (callers, violation settings, bans); every change
    /// is published whole.
    fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>>;

    /// The key instances present to each other when they forward (cluster
    /// mode; `None` embedded: there are no peers).
    fn cluster_key(&self) -> Option<String> {
        None
    }

    /// Records a ban so that every instance enforces it until `ban.until`.
    async fn ban(&self, caller: &str, ban: Ban) -> Result<(), RegistryError>;

    /// Grants up to `want` tokens of `caller`'s window of `window_secs`
    /// holding `now_ms` (Unix ms), never past `limit` in that window.
    /// Returns how many were granted (0: the window is used up).
    async fn grant(
        &self,
        caller: &str,
        now_ms: u64,
        window_secs: u64,
        limit: u64,
        want: u64,
    ) -> Result<u64, RegistryError>;

    /// How many tokens to ask for at a time (see `shardgate_callers::quota`).
    fn chunk(&self, limit: u64) -> u64;

    /// Live instances sharing the quotas (1 embedded): an instance that
    /// cannot reach the store admits `limit / members` a window by itself.
    fn members(&self) -> usize {
        1
    }
}

/// Callers from a file, for one instance.
pub struct EmbeddedCallers {
    path: Option<PathBuf>,
    /// The file's content last applied (unchanged content is not reapplied).
    last: Mutex<Option<String>>,
    tx: watch::Sender<Arc<Snapshot>>,
    counts: Mutex<HashMap<String, QuotaCount>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallersLoadError {
    #[error("cannot read callers file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: CallersFileError,
    },
}

fn read(path: &Path) -> Result<(String, CallersFile), CallersLoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| CallersLoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file = CallersFile::parse(&text).map_err(|source| CallersLoadError::Parse {
        path: path.display().to_string(),
        source,
    })?;
    Ok((text, file))
}

impl EmbeddedCallers {
    /// No callers (auth `auto` stays off).
    pub fn empty() -> EmbeddedCallers {
        EmbeddedCallers::with(None, None, Snapshot::default())
    }

    /// Callers given in memory (tests, the demo).
    pub fn from_snapshot(snapshot: Snapshot) -> EmbeddedCallers {
        EmbeddedCallers::with(None, None, snapshot)
    }

    /// Reads `path` (blocking); [`reload`](Self::reload) re-reads it.
    pub fn from_file(path: PathBuf) -> Result<EmbeddedCallers, CallersLoadError> {
        let (text, file) = read(&path)?;
        Ok(EmbeddedCallers::with(
            Some(path),
            Some(text),
            file.snapshot(),
        ))
    }

    fn with(path: Option<PathBuf>, text: Option<String>, snapshot: Snapshot) -> EmbeddedCallers {
        EmbeddedCallers {
            path,
            last: Mutex::new(text),
            tx: watch::Sender::new(Arc::new(snapshot)),
            counts: Mutex::new(HashMap::new()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file (blocking: call from `spawn_blocking`). Returns
    /// `Ok(Some(callers))` when it changed and was applied, `Ok(None)` when
    /// its content is the same; a file that does not parse changes nothing.
    /// Bans this instance decided are kept.
    pub fn reload(&self) -> Result<Option<usize>, CallersLoadError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let (text, file) = read(path)?;
        let mut last = self.last.lock();
        if last.as_deref() == Some(text.as_str()) {
            return Ok(None);
        }
        *last = Some(text);
        let n = file.callers.len();
        self.tx.send_modify(|current| {
            let bans = current.bans.clone();
            let mut next = file.snapshot();
            next.bans = bans;
            *current = Arc::new(next);
        });
        Ok(Some(n))
    }
}

#[async_trait]
impl CallerStore for EmbeddedCallers {
    fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// In memory: until the ban ends or the process restarts (an operator's
    /// `shardgate caller ban` writes the file instead, which lasts).
    async fn ban(&self, caller: &str, ban: Ban) -> Result<(), RegistryError> {
        self.tx.send_modify(|current| {
            let mut next = (**current).clone();
            next.bans.insert(caller.to_owned(), ban);
            *current = Arc::new(next);
        });
        Ok(())
    }

    async fn grant(
        &self,
        caller: &str,
        now_ms: u64,
        window_secs: u64,
        limit: u64,
        want: u64,
    ) -> Result<u64, RegistryError> {
        let mut counts = self.counts.lock();
        let g = grant(counts.get(caller), now_ms, window_secs, limit, want);
        counts.insert(caller.to_owned(), g.count);
        Ok(g.granted)
    }

    /// One at a time: the counter is in this process, nothing is lost.
    fn chunk(&self, _limit: u64) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_reloads_only_when_it_changed_and_keeps_bans() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("callers.toml");
        std::fs::write(&path, "[[caller]]\nname = \"a\"\n").expect("write");
        let store = EmbeddedCallers::from_file(path.clone()).expect("valid");
        let rx = store.snapshot();
        assert_eq!(rx.borrow().callers.len(), 1);
        assert_eq!(store.reload().expect("same"), None);
        store
            .ban(
                "a",
                Ban {
                    until: 10,
                    score: 100,
                    reason: "test".into(),
                },
            )
            .await
            .expect("ban");
        std::fs::write(
            &path,
            "[[caller]]\nname = \"a\"\n[[caller]]\nname = \"b\"\n",
        )
        .expect("write");
        assert_eq!(store.reload().expect("changed"), Some(2));
        assert_eq!(rx.borrow().callers.len(), 2);
        assert_eq!(rx.borrow().bans["a"].until, 10);
        std::fs::write(&path, "[[caller]]\nnme = \"a\"\n").expect("write");
        assert!(store.reload().is_err());
        assert_eq!(rx.borrow().callers.len(), 2, "a bad file changes nothing");
    }

    #[tokio::test]
    async fn grants_count_one_window_in_memory() {
        let store = EmbeddedCallers::empty();
        assert_eq!(store.grant("a", 0, 60, 2, 1).await.expect("ok"), 1);
        assert_eq!(store.grant("a", 1, 60, 2, 5).await.expect("ok"), 1);
        assert_eq!(store.grant("a", 2, 60, 2, 1).await.expect("ok"), 0);
        assert_eq!(store.grant("b", 2, 60, 2, 1).await.expect("ok"), 1);
        assert_eq!(store.grant("a", 60_000, 60, 2, 1).await.expect("ok"), 1);
    }
}
