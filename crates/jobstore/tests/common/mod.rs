//! What the store tests share: jobs made through the intake, and a small
//! runner that drives a job the way the gateway's will (reserve, store the
//! checkpoint, send what it released, count the answers).

#![allow(dead_code)]

use std::collections::BTreeMap;

use shardgate_jobs::{
    Intake, JobId, JobSpec, JobState, MAX_RECIPIENTS, NewJob, Priority, RecipientResult,
    StatusUpdate, Template, Tracker, Window, unpack_chunk,
};
use shardgate_jobstore::RedbJobStore;

pub fn spec(id: &str) -> JobSpec {
    JobSpec {
        id: JobId::new(id).unwrap(),
        template: Template::Send(b"\x0a\x05hello".to_vec()),
        priority: Priority::Bulk,
        rate_per_s: 0,
        start_at: 0,
        dry_run: false,
        caller: String::new(),
    }
}

pub fn new_job(id: &str, ids: &[i64], created_at: i64) -> NewJob {
    let mut intake = Intake::new(MAX_RECIPIENTS);
    for part in ids.chunks(10_000) {
        intake.push(part).unwrap();
    }
    NewJob {
        spec: spec(id),
        recipients: intake.finish().unwrap(),
        created_at,
    }
}

/// What the fake Telegram received: chat id -> copies.
pub type Telegram = BTreeMap<i64, u64>;

/// How a drive ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The job is done and stored as such.
    Done,
    /// Stopped after `sends` sends with answers not yet stored: a crash.
    Crashed,
}

/// Drives job `id` until it is done or `max_sends` requests went out. Each
/// round reserves up to `window` recipients, stores the checkpoint, then
/// sends what it released; recipients whose chat id is divisible by 97
/// "blocked the bot".
pub fn drive(
    store: &RedbJobStore,
    id: &JobId,
    window: usize,
    max_sends: u64,
    telegram: &mut Telegram,
) -> Ended {
    drive_with(store, id, window, max_sends, telegram, &mut |_| {})
}

/// [`drive`], calling `before_send` with each chat just before it is sent.
pub fn drive_with(
    store: &RedbJobStore,
    id: &JobId,
    window: usize,
    max_sends: u64,
    telegram: &mut Telegram,
    before_send: &mut dyn FnMut(i64),
) -> Ended {
    let record = store.load_blocking(id).unwrap().unwrap();
    let mut rev = record.status.rev;
    let manifest = record.meta.manifest;
    let mut t = Tracker::resume(record.status.progress, window).unwrap();
    let mut win = Window::default();
    let mut sends = 0u64;
    loop {
        if let Some(i) = t.wants_index()
            && !win.covers(i)
        {
            let (n, base) = manifest.locate(i).unwrap();
            win = Window::new(
                base,
                unpack_chunk(&store.chunk_blocking(id, n).unwrap()).unwrap(),
            );
        }
        t.reserve(&win, window);
        let settled = t.is_settled();
        let cp = t.checkpoint();
        let update = StatusUpdate {
            state: if settled {
                JobState::Done
            } else {
                JobState::Running
            },
            progress: cp.record,
            results: cp.results,
            now: 1_000,
        };
        rev = store.update_blocking(id, rev, update).unwrap().rev;
        if settled {
            return Ended::Done;
        }
        for chat in t.committed(cp.seq) {
            if sends == max_sends {
                return Ended::Crashed;
            }
            sends += 1;
            before_send(chat);
            *telegram.entry(chat).or_default() += 1;
            t.complete(answer(chat)).unwrap();
        }
    }
}

pub fn answer(chat_id: i64) -> RecipientResult {
    RecipientResult {
        chat_id,
        bot: "bot-1".into(),
        message_id: if chat_id % 97 == 0 { 0 } else { 1 },
        error: (chat_id % 97 == 0).then(|| shardgate_jobs::ResultError {
            code: "PERMISSION_DENIED".into(),
            message: "Forbidden: bot was blocked by the user".into(),
        }),
    }
}
