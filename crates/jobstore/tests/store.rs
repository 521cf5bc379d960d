//! The embedded store's rules, on a temporary data directory: whole-or-absent
//! creates, compare-and-set updates, the state table, results paging,
//! retention, and resuming after the store was dropped mid-job.

mod common;

use common::{Ended, Telegram, drive, new_job};
use shardgate_jobs::store::DEFAULT_RETENTION_S;
use shardgate_jobs::{
    CANCELLED, Created, JobId, JobState, JobStore, ProgressRecord, StatusUpdate, StoreError,
    Tracker, load_window,
};
use shardgate_jobstore::RedbJobStore;

fn id(s: &str) -> JobId {
    JobId::new(s).unwrap()
}

/// A status write with no results.
fn status(state: JobState, progress: &ProgressRecord, now: i64) -> StatusUpdate {
    StatusUpdate {
        state,
        progress: progress.clone(),
        results: vec![],
        now,
    }
}

#[test]
fn a_created_job_loads_whole_and_a_repeated_create_answers_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbJobStore::open(&dir.path().join("state")).unwrap();
    let ids: Vec<i64> = (0..250_000).map(|i| i * 3 - 100).chain([5, 5, 5]).collect();
    let created = store.create_blocking(new_job("a", &ids, 100)).unwrap();
    assert!(matches!(created, Created::New(_)));
    let rec = store.load_blocking(&id("a")).unwrap().unwrap();
    assert_eq!(
        rec.meta.manifest.total(),
        250_000,
        "5 is one of the ids already"
    );
    assert_eq!(rec.meta.manifest.chunks(), 3);
    assert_eq!(rec.status.state, JobState::Queued);
    assert_eq!(rec.status.progress.counters.pending(), 250_000);

    let again = store.create_blocking(new_job("a", &[1, 2], 200)).unwrap();
    assert_eq!(again, Created::Existing(rec.clone()));
    assert!(store.load_blocking(&id("missing")).unwrap().is_none());
    assert_eq!(store.list_blocking().unwrap(), vec![rec]);
}

#[test]
fn an_update_from_a_stale_revision_is_refused_so_a_cancel_is_never_undone() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbJobStore::open(dir.path()).unwrap();
    store.create_blocking(new_job("c", &[1, 2, 3], 0)).unwrap();
    let rec = store.load_blocking(&id("c")).unwrap().unwrap();
    let mut t = Tracker::resume(rec.status.progress.clone(), 8).unwrap();
    t.cancel();
    let cp = t.checkpoint();
    let cancel = StatusUpdate {
        state: JobState::Cancelled,
        progress: cp.record,
        results: cp.results,
        now: 500,
    };
    let st = store
        .update_blocking(&id("c"), rec.status.rev, cancel.clone())
        .unwrap();
    assert_eq!(st.finished_at, 500);
    assert_eq!(
        st.progress.counters.failed_by_code().get(CANCELLED),
        Some(&3)
    );

    // The runner's write from before the cancel.
    let stale = status(JobState::Running, &rec.status.progress, 501);
    let err = store
        .update_blocking(&id("c"), rec.status.rev, stale.clone())
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    // With the right revision, the state table still refuses it.
    let err = store.update_blocking(&id("c"), st.rev, stale).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

#[test]
fn a_final_state_with_recipients_pending_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbJobStore::open(dir.path()).unwrap();
    store.create_blocking(new_job("p", &[1, 2], 0)).unwrap();
    let rec = store.load_blocking(&id("p")).unwrap().unwrap();
    let running = status(JobState::Running, &rec.status.progress, 1);
    let st = store
        .update_blocking(&id("p"), rec.status.rev, running)
        .unwrap();
    let done = status(JobState::Done, &rec.status.progress, 2);
    let err = store.update_blocking(&id("p"), st.rev, done).unwrap_err();
    assert!(err.to_string().contains("2 recipients pending"), "{err}");
}

#[test]
fn results_page_in_chat_id_order_and_finished_jobs_expire_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbJobStore::open(dir.path()).unwrap();
    let ids: Vec<i64> = (-500..500).collect();
    store.create_blocking(new_job("r", &ids, 0)).unwrap();
    store.create_blocking(new_job("live", &[7], 0)).unwrap();
    let mut tg = Telegram::new();
    assert_eq!(drive(&store, &id("r"), 64, u64::MAX, &mut tg), Ended::Done);

    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store.results_blocking(&id("r"), after, 300).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.chat_id);
        seen.extend(page.iter().map(|r| r.chat_id));
    }
    assert_eq!(seen, ids, "every result once, in order");
    let blocked = store
        .load_blocking(&id("r"))
        .unwrap()
        .unwrap()
        .status
        .progress
        .counters
        .failed_by_code()["PERMISSION_DENIED"];
    assert_eq!(blocked, ids.iter().filter(|c| *c % 97 == 0).count() as u64);

    // Done at t=1000: kept for the retention, then removed with its results.
    let before = 1_000 + DEFAULT_RETENTION_S - 1;
    assert!(
        store
            .delete_expired_blocking(before, DEFAULT_RETENTION_S)
            .unwrap()
            .is_empty()
    );
    let gone = store
        .delete_expired_blocking(before + 1, DEFAULT_RETENTION_S)
        .unwrap();
    assert_eq!(gone, vec![id("r")]);
    assert!(store.load_blocking(&id("r")).unwrap().is_none());
    assert!(
        store
            .results_blocking(&id("r"), None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(store.chunk_blocking(&id("r"), 0).is_err());
    assert!(
        store.load_blocking(&id("live")).unwrap().is_some(),
        "a queued job is kept"
    );
}

#[test]
fn a_job_resumes_after_the_store_is_dropped_mid_job_without_resending_a_stored_result() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<i64> = (0..5_000).map(|i| 1_000_000 + i * 7).collect();
    let mut tg = Telegram::new();
    {
        let store = RedbJobStore::open(dir.path()).unwrap();
        store.create_blocking(new_job("k", &ids, 0)).unwrap();
        assert_eq!(drive(&store, &id("k"), 32, 1_234, &mut tg), Ended::Crashed);
    } // dropped: the crash

    let store = RedbJobStore::open(dir.path()).unwrap();
    let before = store
        .load_blocking(&id("k"))
        .unwrap()
        .unwrap()
        .status
        .progress;
    let in_flight = before.in_flight.len() as u64;
    assert!(in_flight > 0 && in_flight <= 32);
    let stored: Vec<i64> = store
        .results_blocking(&id("k"), None, 10_000)
        .unwrap()
        .iter()
        .map(|r| r.chat_id)
        .collect();
    let sent_before = tg.clone();
    assert_eq!(drive(&store, &id("k"), 32, u64::MAX, &mut tg), Ended::Done);

    for chat in stored {
        assert_eq!(
            tg[&chat], sent_before[&chat],
            "{chat} had its result stored, sent again"
        );
    }
    let rec = store.load_blocking(&id("k")).unwrap().unwrap();
    let c = &rec.status.progress.counters;
    assert_eq!(rec.status.state, JobState::Done);
    assert_eq!((c.delivered() + c.failed(), c.pending()), (5_000, 0));
    assert_eq!(tg.len(), 5_000, "none lost");
    let extra: u64 = tg.values().map(|n| n - 1).sum();
    assert_eq!(c.possible_duplicates(), in_flight);
    assert!(
        extra <= in_flight,
        "{extra} duplicates, {in_flight} were in flight"
    );
}

#[tokio::test]
async fn the_async_trait_reads_windows_through_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbJobStore::open(dir.path()).unwrap();
    let ids: Vec<i64> = (0..150_000).collect();
    let job = new_job("w", &ids, 0);
    let dyn_store: &dyn JobStore = &store;
    dyn_store.create(job).await.unwrap();
    let rec = dyn_store.load(&id("w")).await.unwrap().unwrap();
    let w = load_window(dyn_store, &rec.meta, 120_000)
        .await
        .unwrap()
        .unwrap();
    assert!(w.covers(100_000) && w.covers(149_999) && !w.covers(99_999));
    assert!(
        load_window(dyn_store, &rec.meta, 150_000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(dyn_store.list().await.unwrap().len(), 1);
}
