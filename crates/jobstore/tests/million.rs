//! A 1,000,000-recipient job on the embedded store: how long creating it
//! takes and how large the file is, then a runner process killed with
//! SIGKILL mid-job and another that resumes it from the file.
//!
//! The figures are printed; for release-build numbers (and the 1,000,000
//! kill test, which debug builds skip) run
//! `cargo test --release -p shardgate-jobstore --test million -- --nocapture`.

mod common;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{Ended, Telegram, drive, new_job};
use shardgate_jobs::{JobId, JobState, unpack_chunk};
use shardgate_jobstore::{FILE_NAME, RedbJobStore};

/// The runner's in-flight bound in these tests: what a crash may duplicate.
const WINDOW: usize = 1024;

/// `n` distinct ten-digit user ids in scrambled order (a bijective hash of
/// the index over 34 bits, so they look random and never collide), and
/// 1 in 20 of them listed a second time.
fn recipients(n: u64) -> Vec<i64> {
    const MASK: u64 = (1 << 34) - 1;
    let scramble = |i: u64| {
        let mut x = i & MASK;
        for _ in 0..3 {
            x ^= x >> 17;
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) & MASK;
            x ^= x >> 13;
        }
        5_000_000_000 + x as i64
    };
    (0..n)
        .map(scramble)
        .chain((0..n).step_by(20).map(scramble))
        .collect()
}

fn job_id() -> JobId {
    JobId::new("big").unwrap()
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Run in a child process: drives the job for `JOBSTORE_KILL_SENDS` sends,
/// logging each chat just before it is sent (unbuffered, so the log
/// survives), then SIGKILLs itself: no destructor runs and redb's file is
/// left as the kill left it.
#[test]
#[ignore = "the child half of the kill tests; they run it"]
fn killed_runner() {
    let Ok(dir) = std::env::var("JOBSTORE_KILL_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let store = RedbJobStore::open(dir).unwrap();
    let mut log = std::fs::File::create(dir.join("sent.log")).unwrap();
    let mut tg = Telegram::new();
    let mut before_send = |chat: i64| writeln!(log, "{chat}").unwrap();
    let sends = env_u64("JOBSTORE_KILL_SENDS");
    let ended = common::drive_with(&store, &job_id(), WINDOW, sends, &mut tg, &mut before_send);
    assert_eq!(ended, Ended::Crashed);
    let _ = Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

/// Creates an `n`-recipient job, has a child runner killed after
/// `sends_before_kill` sends, resumes it here and checks the outcome.
fn kill_and_resume(n: u64, sends_before_kill: u64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbJobStore::open(dir.path()).unwrap();
        store
            .create_blocking(new_job("big", &recipients(n), 0))
            .unwrap();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_runner", "--ignored", "--nocapture"])
        .env("JOBSTORE_KILL_DIR", dir.path())
        .env("JOBSTORE_KILL_SENDS", sends_before_kill.to_string())
        .status()
        .unwrap();
    assert!(!status.success(), "the runner was meant to die");
    let mut tg = Telegram::new();
    let log = std::fs::File::open(dir.path().join("sent.log")).unwrap();
    for line in std::io::BufReader::new(log).lines() {
        *tg.entry(line.unwrap().parse().unwrap()).or_default() += 1;
    }
    assert_eq!(tg.len() as u64, sends_before_kill);

    // Another runner resumes from the file the kill left.
    let t_resume = Instant::now();
    let store = RedbJobStore::open(dir.path()).unwrap();
    let rec = store.load_blocking(&job_id()).unwrap().unwrap();
    let t_resumed = t_resume.elapsed();
    assert_eq!(rec.status.state, JobState::Running);
    let in_flight = rec.status.progress.in_flight.len() as u64;
    assert!(in_flight > 0 && in_flight <= WINDOW as u64);
    let counted = rec.status.progress.counters.delivered() + rec.status.progress.counters.failed();
    let sent_before = tg.clone();
    let mut stored_results = Vec::new();
    let mut after = None;
    loop {
        let page = store.results_blocking(&job_id(), after, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.chat_id);
        stored_results.extend(page.into_iter().map(|r| r.chat_id));
    }
    assert_eq!(stored_results.len() as u64, counted);

    let t_run = Instant::now();
    assert_eq!(
        drive(&store, &job_id(), WINDOW, u64::MAX, &mut tg),
        Ended::Done
    );
    let t_run = t_run.elapsed();

    let rec = store.load_blocking(&job_id()).unwrap().unwrap();
    let c = &rec.status.progress.counters;
    let extra: u64 = tg.values().map(|n| n - 1).sum();
    eprintln!(
        "{n} recipients, killed after {sends_before_kill} sends: {counted} outcomes stored, \
         {in_flight} in flight; reopened and loaded in {:.3} s; the other {} in {:.2} s; \
         {extra} sent twice, {} counted as possible duplicates; file {} bytes",
        t_resumed.as_secs_f64(),
        n - counted,
        t_run.as_secs_f64(),
        c.possible_duplicates(),
        std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
    );
    for chat in stored_results {
        assert_eq!(
            tg[&chat], sent_before[&chat],
            "{chat} had its result stored, sent again"
        );
    }
    assert_eq!(rec.status.state, JobState::Done);
    assert_eq!(tg.len() as u64, n, "none lost");
    assert_eq!((c.delivered() + c.failed(), c.pending()), (n, 0));
    assert_eq!(c.possible_duplicates(), in_flight);
    assert!(extra <= in_flight);
}

#[test]
fn a_runner_killed_mid_job_is_resumed_from_the_file_without_loss_and_with_duplicates_counted() {
    kill_and_resume(100_000, 30_000);
}

/// Debug builds of redb take about a minute for this; release about 4 s.
#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds: run with --release")]
fn a_million_recipient_job_resumes_after_its_runner_is_killed() {
    kill_and_resume(1_000_000, 150_000);
}

#[test]
fn a_million_recipient_job_is_created_in_seconds_and_reopens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ids = recipients(1_000_000);

    let t0 = Instant::now();
    let job = new_job("big", &ids, 0);
    let packed_bytes: usize = job.recipients.chunks.iter().map(Vec::len).sum();
    let chunks = job.recipients.chunks.len();
    let t_pack = t0.elapsed();
    {
        let store = RedbJobStore::open(dir.path()).unwrap();
        let created = store.create_blocking(job).unwrap();
        assert_eq!(created.record().meta.manifest.total(), 1_000_000);
    }
    let t_create = t0.elapsed();
    let file_bytes = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();

    let t1 = Instant::now();
    let store = RedbJobStore::open(dir.path()).unwrap();
    let rec = store.load_blocking(&job_id()).unwrap().unwrap();
    let first = unpack_chunk(&store.chunk_blocking(&job_id(), 0).unwrap()).unwrap();
    let t_reopen = t1.elapsed();
    assert_eq!(first.len() as u32, rec.meta.manifest.chunk_counts()[0]);
    eprintln!(
        "1M job: {} ids in, 1000000 distinct, de-duplicated and packed in {:.2} s into {chunks} \
         chunks, {packed_bytes} bytes; stored in one fsynced transaction by {:.2} s; file \
         {file_bytes} bytes; reopened with its first window in {:.3} s",
        ids.len(),
        t_pack.as_secs_f64(),
        t_create.as_secs_f64(),
        t_reopen.as_secs_f64(),
    );
    assert!(t_create.as_secs() < 30, "creating took {t_create:?}");
    assert!(packed_bytes < 4_000_000, "{packed_bytes} bytes");
}
