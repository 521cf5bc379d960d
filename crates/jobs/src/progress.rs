//! Crash-safe progress: which recipients a job has sent, which are in
//! flight, and the record that lets another runner carry on after a crash.
//!
//! Recipients are walked in ascending chat id order. The [`ProgressRecord`]
//! says: every recipient before `next` has been handed out; of those, the
//! ones in `in_flight` were about to be sent or being sent, the ones in
//! `redo` are due again (in flight at an earlier crash, or set aside while
//! their bot's share of the window was full, see [`Tracker::reserve_by`]),
//! and every other one has its outcome counted.
//!
//! The protocol the [`Tracker`] enforces (its types leave no other way):
//! 1. [`reserve`](Tracker::reserve) takes recipients (from `redo`, then from
//!    the cursor's [`Window`]); they are not sendable yet;
//! 2. [`checkpoint`](Tracker::checkpoint) makes a record in which they are
//!    in flight, plus the results finished since the last one;
//! 3. once the store has that record, [`committed`](Tracker::committed)
//!    hands them out to send;
//! 4. [`complete`](Tracker::complete) counts an outcome; the next checkpoint
//!    records it.
//!
//! So a recipient is sent only after a stored record names it in flight, and
//! its outcome lands in the same write as the cursor that moved past it.
//! After a crash, [`Tracker::resume`] reads the last stored record: a
//! recipient counted there is never sent again; one in flight may or may not
//! have reached Telegram, so it is sent again and counted in
//! `possible_duplicates`. Nothing is lost (every recipient is sent at least
//! once) and the duplicates are at most the in-flight bound, which the
//! runner sets from the bots' `max_in_flight`.
//!
//! Every record is bounded by `max_in_flight`: its `in_flight` list holds
//! at most that many ids, and so does a checkpoint's batch of results, since
//! a recipient completes only after a checkpoint released it.
//!
//! A failed store write is handled as a crash: drop the tracker and resume
//! from what the store holds. The tracker never retries on its own.

use std::collections::{BTreeSet, VecDeque};

use crate::JobError;
use crate::counters::{CANCELLED, Counters, Outcome};

/// A job's progress as stored. Both lists are sorted and disjoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressRecord {
    /// Recipients `[0, next)` (in ascending chat id order) were handed out.
    pub next: u64,
    /// Recorded before sending; outcome not yet recorded.
    pub in_flight: Vec<i64>,
    /// In flight at a crash, not handed out again yet.
    pub redo: Vec<i64>,
    pub counters: Counters,
}

impl ProgressRecord {
    /// The record of a job nothing has been sent for.
    pub fn fresh(total: u64) -> ProgressRecord {
        ProgressRecord {
            next: 0,
            in_flight: Vec::new(),
            redo: Vec::new(),
            counters: Counters::new(total),
        }
    }

    /// Checks the record against itself: sorted disjoint lists, a cursor
    /// within the job, and pending recipients that add up.
    pub fn check(&self) -> Result<(), JobError> {
        let total = self.counters.total();
        let sorted = |v: &[i64]| v.windows(2).all(|w| w[0] < w[1]);
        if self.next > total || !sorted(&self.in_flight) || !sorted(&self.redo) {
            return Err(JobError::Corrupt("progress cursor or lists out of order"));
        }
        if self
            .in_flight
            .iter()
            .any(|id| self.redo.binary_search(id).is_ok())
        {
            return Err(JobError::Corrupt("recipient both in flight and due again"));
        }
        let open = (total - self.next) + self.in_flight.len() as u64 + self.redo.len() as u64;
        if open != self.counters.pending() {
            return Err(JobError::Corrupt("pending does not match the cursor"));
        }
        Ok(())
    }
}

/// Why a recipient failed, as its result keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultError {
    /// A gRPC code name (`PERMISSION_DENIED`, `NOT_FOUND`, ...).
    pub code: String,
    pub message: String,
}

/// One recipient's end, for `BroadcastResults`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    pub chat_id: i64,
    /// The bot that sent it (its name, never its token).
    pub bot: String,
    /// The message's id in the chat; 0 when it failed.
    pub message_id: i64,
    pub error: Option<ResultError>,
}

impl RecipientResult {
    fn outcome(&self) -> Outcome<'_> {
        match &self.error {
            None => Outcome::Delivered,
            Some(e) => Outcome::Failed(&e.code),
        }
    }
}

/// What the store must keep before the reserved recipients may be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Hand back to [`Tracker::committed`] once stored.
    pub seq: u64,
    pub record: ProgressRecord,
    /// Results finished since the previous checkpoint (append them).
    pub results: Vec<RecipientResult>,
}

/// A run of consecutive recipients read from storage: `ids[k]` is recipient
/// `base + k`. The runner holds one (a decoded chunk), never the whole list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    base: u64,
    ids: Vec<i64>,
}

impl Window {
    pub fn new(base: u64, ids: Vec<i64>) -> Window {
        Window { base, ids }
    }
    /// Whether recipient `index` is in this window.
    pub fn covers(&self, index: u64) -> bool {
        self.get(index).is_some()
    }
    fn get(&self, index: u64) -> Option<i64> {
        let k = usize::try_from(index.checked_sub(self.base)?).ok()?;
        self.ids.get(k).copied()
    }
}

/// A runner's view of one job's progress; see the module comment.
#[derive(Debug)]
pub struct Tracker {
    next: u64,
    /// Released for sending, outcome not counted yet.
    in_flight: BTreeSet<i64>,
    /// Due again: in flight at a crash, or set aside for a full bot; not sent since.
    redo: BTreeSet<i64>,
    /// Taken, in no checkpoint yet.
    reserved: Vec<i64>,
    /// In a checkpoint the store has not confirmed yet.
    awaiting: VecDeque<(u64, Vec<i64>)>,
    counters: Counters,
    results: Vec<RecipientResult>,
    seq: u64,
    max_in_flight: usize,
}

impl Tracker {
    /// Picks up a job from its stored record. Recipients the record has in
    /// flight may have reached Telegram: they are due again and counted as
    /// possible duplicates. `max_in_flight` bounds reserved + in flight, and
    /// so the duplicates a later crash can cause.
    pub fn resume(record: ProgressRecord, max_in_flight: usize) -> Result<Tracker, JobError> {
        record.check()?;
        let mut counters = record.counters;
        counters.add_possible_duplicates(record.in_flight.len() as u64);
        let mut redo: BTreeSet<i64> = record.redo.into_iter().collect();
        redo.extend(record.in_flight);
        Ok(Tracker {
            next: record.next,
            in_flight: BTreeSet::new(),
            redo,
            reserved: Vec::new(),
            awaiting: VecDeque::new(),
            counters,
            results: Vec::new(),
            seq: 0,
            max_in_flight: max_in_flight.max(1),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Recipients reserved, awaiting the store, or being sent.
    pub fn open(&self) -> usize {
        self.reserved.len()
            + self.awaiting.iter().map(|(_, v)| v.len()).sum::<usize>()
            + self.in_flight.len()
    }

    /// The recipients [`open`](Self::open) counts: reserved, awaiting the
    /// store, or being sent.
    pub fn open_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.reserved
            .iter()
            .chain(self.awaiting.iter().flat_map(|(_, v)| v.iter()))
            .chain(self.in_flight.iter())
            .copied()
    }

    /// Nothing is pending: every recipient is counted.
    pub fn is_settled(&self) -> bool {
        self.counters.pending() == 0
    }

    /// The recipient index whose window the next [`reserve`](Self::reserve)
    /// needs, when recipients remain past the cursor (the caller loads it
    /// when its window does not cover it).
    pub fn wants_index(&self) -> Option<u64> {
        (self.next < self.counters.total()).then_some(self.next)
    }

    /// Takes up to `n` recipients (within the in-flight bound): first those
    /// due again, then the cursor's, as far as `window` covers it. Returns
    /// how many were taken.
    pub fn reserve(&mut self, window: &Window, n: usize) -> usize {
        self.reserve_by(window, n, 0, |_| true)
    }

    /// [`reserve`](Self::reserve) for a runner that keeps each bot's share
    /// of the window: `admit(id)` says whether the recipient may be taken
    /// now (its bot has room). One it refuses, passed by the cursor, is set
    /// aside with the recipients due again (never sent, so not a possible
    /// duplicate after a crash) while fewer than `park_max` are set aside;
    /// past that the cursor waits. Recipients set aside are offered first
    /// next time, in order.
    ///
    /// Why: recipients hash to bots at random, so a window shared by all
    /// bots drifts towards the bot with the longest queue and the others run
    /// dry; setting aside lets the cursor reach recipients of idle bots.
    pub fn reserve_by(
        &mut self,
        window: &Window,
        n: usize,
        park_max: usize,
        mut admit: impl FnMut(i64) -> bool,
    ) -> usize {
        let n = n.min(self.max_in_flight.saturating_sub(self.open()));
        let mut taken = 0;
        let due: Vec<i64> = self.redo.iter().copied().collect();
        for id in due {
            if taken == n {
                return taken;
            }
            if admit(id) {
                self.redo.remove(&id);
                self.reserved.push(id);
                taken += 1;
            }
        }
        while taken < n {
            let Some(id) = (self.next < self.counters.total())
                .then(|| window.get(self.next))
                .flatten()
            else {
                break;
            };
            if admit(id) {
                self.next += 1;
                self.reserved.push(id);
            } else if self.redo.len() < park_max {
                self.next += 1;
                self.redo.insert(id);
                continue;
            } else {
                break;
            }
            taken += 1;
        }
        taken
    }

    /// Whether a checkpoint is due: recipients wait to be sent, or `batch`
    /// results wait to be stored.
    pub fn needs_checkpoint(&self, batch: usize) -> bool {
        !self.reserved.is_empty() || self.results.len() >= batch.max(1)
    }

    /// The record to store now; reserved recipients become sendable once
    /// the store confirms it.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.seq += 1;
        if !self.reserved.is_empty() {
            self.awaiting
                .push_back((self.seq, std::mem::take(&mut self.reserved)));
        }
        let mut in_flight: Vec<i64> = self
            .in_flight
            .iter()
            .copied()
            .chain(self.awaiting.iter().flat_map(|(_, v)| v.iter().copied()))
            .collect();
        in_flight.sort_unstable();
        Checkpoint {
            seq: self.seq,
            record: ProgressRecord {
                next: self.next,
                in_flight,
                redo: self.redo.iter().copied().collect(),
                counters: self.counters.clone(),
            },
            results: std::mem::take(&mut self.results),
        }
    }

    /// The store holds checkpoint `seq`: the recipients it reserved may now
    /// be sent (returned in order).
    pub fn committed(&mut self, seq: u64) -> Vec<i64> {
        let mut out = Vec::new();
        while self.awaiting.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, ids)) = self.awaiting.pop_front() {
                self.in_flight.extend(ids.iter().copied());
                out.extend(ids);
            }
        }
        out
    }

    /// Counts a sent recipient's end. A recipient that is not in flight
    /// (never released, or already counted) is refused and changes nothing.
    pub fn complete(&mut self, result: RecipientResult) -> Result<(), JobError> {
        if !self.in_flight.contains(&result.chat_id) {
            return Err(JobError::NotInFlight(result.chat_id));
        }
        self.counters.record(result.outcome())?;
        self.in_flight.remove(&result.chat_id);
        self.results.push(result);
        Ok(())
    }

    /// Gives back what is reserved or awaiting the store (a pause): due
    /// again, not counted, since none of it was sent.
    pub fn unreserve(&mut self) {
        self.redo.extend(self.reserved.drain(..));
        for (_, ids) in self.awaiting.drain(..) {
            self.redo.extend(ids);
        }
    }

    /// Counts every recipient not sent yet as failed with `code`
    /// ([`CANCELLED`] for a cancel); those being sent stay pending until
    /// they complete or [`abandon_in_flight`](Self::abandon_in_flight).
    /// Returns how many were counted.
    pub fn close_unsent(&mut self, code: &str) -> u64 {
        self.unreserve();
        let n = self.counters.pending() - self.in_flight.len() as u64;
        self.redo.clear();
        self.next = self.counters.total();
        // Cannot fail: n is at most what is pending.
        let _ = self.counters.add(Outcome::Failed(code), n);
        n
    }

    /// A cancel: [`close_unsent`](Self::close_unsent) with `CANCELLED`.
    pub fn cancel(&mut self) -> u64 {
        self.close_unsent(CANCELLED)
    }

    /// Counts the recipients still being sent as failed with `code` (their
    /// answers will not be waited for); afterwards, if nothing else is
    /// open, the job is settled. A late answer for one is refused.
    pub fn abandon_in_flight(&mut self, code: &str) -> u64 {
        let n = self.in_flight.len() as u64;
        self.in_flight.clear();
        let _ = self.counters.add(Outcome::Failed(code), n);
        n
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
