//! Taking in a job's recipients as they stream in, in memory bounded by the
//! number of distinct ids (about 3 bytes each), not by what the caller sends.
//!
//! How: ids collect in a buffer of [`RUN_IDS`] (512 KiB); a full buffer is
//! sorted, de-duplicated and kept as a *run*, a delta + varint stream
//! (sorted ids with small gaps take 2-3 bytes instead of 8). When
//! [`MAX_RUNS`] runs pile up they are merged into one, which also drops the
//! duplicates between runs, so a caller repeating one id ten million times
//! costs no more than sending it once. [`Intake::finish`] merges the last
//! runs and packs the result into chunks ([`crate::pack`]).
//!
//! A merge of sorted distinct runs is exact: an id is written once however
//! many runs hold it, so `total` counts distinct recipients.
//!
//! Peak memory for 1,000,000 distinct random ids: the buffer (512 KiB), the
//! runs (~3 MB), one chunk being packed (800 KB) and the packed chunks
//! (~2.5 MB), against 8 MB for the ids alone and more for any hash set.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::JobError;
use crate::pack::{CHUNK_IDS, Manifest, get_sorted, pack_chunk, put_sorted};

/// Ids buffered before they are sorted into a run.
pub const RUN_IDS: usize = 64 * 1024;

/// Runs kept before they are merged into one.
pub const MAX_RUNS: usize = 16;

/// The most recipients a job may have.
pub const MAX_RECIPIENTS: u64 = 1_000_000;

/// A job's recipients, packed: the chunks in order and where each id is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub manifest: Manifest,
    pub chunks: Vec<Vec<u8>>,
}

/// Sorted distinct ids as a varint stream.
#[derive(Default)]
struct Run {
    bytes: Vec<u8>,
    count: u64,
}

/// Collects recipients; see the module comment.
pub struct Intake {
    max_distinct: u64,
    /// [`RUN_IDS`] and [`MAX_RUNS`], smaller in tests to exercise merges.
    run_ids: usize,
    max_runs: usize,
    buffer: Vec<i64>,
    runs: Vec<Run>,
    received: u64,
}

impl Intake {
    /// An intake that refuses more than `max_distinct` distinct ids (at most
    /// [`MAX_RECIPIENTS`]).
    pub fn new(max_distinct: u64) -> Intake {
        Intake {
            max_distinct: max_distinct.min(MAX_RECIPIENTS),
            run_ids: RUN_IDS,
            max_runs: MAX_RUNS,
            buffer: Vec::new(),
            runs: Vec::new(),
            received: 0,
        }
    }

    /// Ids received so far, duplicates included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes held now (buffer and runs), for the caller's own bounds.
    pub fn held_bytes(&self) -> usize {
        self.buffer.capacity() * 8 + self.runs.iter().map(|r| r.bytes.capacity()).sum::<usize>()
    }

    /// Takes in one chunk of ids, in any order, duplicates allowed. Fails
    /// once more than the allowed number of distinct ids came in (checked
    /// whenever runs are merged, so at most one merge's worth late).
    pub fn push(&mut self, ids: &[i64]) -> Result<(), JobError> {
        self.received += ids.len() as u64;
        let mut rest = ids;
        while !rest.is_empty() {
            let room = self.run_ids - self.buffer.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(self.run_ids);
            }
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == self.run_ids {
                self.seal_buffer();
                if self.runs.len() >= self.max_runs {
                    self.compact()?;
                }
            }
        }
        Ok(())
    }

    /// Merges everything and packs it. An intake with no ids is refused: a
    /// job needs a recipient.
    pub fn finish(mut self) -> Result<Packed, JobError> {
        self.seal_buffer();
        self.buffer = Vec::new();
        let mut counts = Vec::new();
        let mut chunks = Vec::new();
        let mut ids = Vec::with_capacity(CHUNK_IDS);
        let mut distinct = 0u64;
        let mut flush = |ids: &mut Vec<i64>| -> Result<(), JobError> {
            counts.push(ids.len() as u32);
            chunks.push(pack_chunk(ids)?);
            ids.clear();
            Ok(())
        };
        for id in Merge::new(&self.runs) {
            ids.push(id?);
            distinct += 1;
            if distinct > self.max_distinct {
                return Err(JobError::TooManyRecipients(self.max_distinct));
            }
            if ids.len() == CHUNK_IDS {
                flush(&mut ids)?;
            }
        }
        if !ids.is_empty() {
            flush(&mut ids)?;
        }
        if distinct == 0 {
            return Err(JobError::NoRecipients);
        }
        Ok(Packed {
            manifest: Manifest::new(counts)?,
            chunks,
        })
    }

    /// Sorts and de-duplicates the buffer into a new run.
    fn seal_buffer(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.buffer.sort_unstable();
        self.buffer.dedup();
        let mut run = Run {
            bytes: Vec::with_capacity(self.buffer.len() * 3),
            count: self.buffer.len() as u64,
        };
        let mut prev = None;
        for &id in &self.buffer {
            put_sorted(&mut run.bytes, &mut prev, id);
        }
        run.bytes.shrink_to_fit();
        self.runs.push(run);
        self.buffer.clear();
    }

    /// Merges every run into one, dropping duplicates between runs.
    fn compact(&mut self) -> Result<(), JobError> {
        let mut merged = Run::default();
        let mut prev = None;
        for id in Merge::new(&self.runs) {
            put_sorted(&mut merged.bytes, &mut prev, id?);
            merged.count += 1;
        }
        if merged.count > self.max_distinct {
            return Err(JobError::TooManyRecipients(self.max_distinct));
        }
        merged.bytes.shrink_to_fit();
        self.runs = vec![merged];
        Ok(())
    }
}

/// Reads one run in order.
struct RunReader<'a> {
    run: &'a Run,
    pos: usize,
    read: u64,
    prev: Option<i64>,
}

impl RunReader<'_> {
    fn next_id(&mut self) -> Option<Result<i64, JobError>> {
        if self.read == self.run.count {
            return None;
        }
        self.read += 1;
        Some(get_sorted(&self.run.bytes, &mut self.pos, &mut self.prev))
    }
}

/// A k-way merge of sorted distinct runs into one sorted distinct stream.
struct Merge<'a> {
    readers: Vec<RunReader<'a>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    last: Option<i64>,
    /// A run that failed to decode while the merge started, reported by
    /// the first call to `next`.
    error: Option<JobError>,
}

impl<'a> Merge<'a> {
    fn new(runs: &'a [Run]) -> Merge<'a> {
        let mut m = Merge {
            readers: runs
                .iter()
                .map(|run| RunReader {
                    run,
                    pos: 0,
                    read: 0,
                    prev: None,
                })
                .collect(),
            heap: BinaryHeap::with_capacity(runs.len()),
            last: None,
            error: None,
        };
        for i in 0..m.readers.len() {
            if let Err(e) = m.refill(i) {
                m.error.get_or_insert(e);
            }
        }
        m
    }

    fn refill(&mut self, i: usize) -> Result<(), JobError> {
        if let Some(id) = self.readers[i].next_id() {
            self.heap.push(Reverse((id?, i)));
        }
        Ok(())
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<i64, JobError>;

    fn next(&mut self) -> Option<Result<i64, JobError>> {
        if let Some(e) = self.error.take() {
            self.heap.clear();
            return Some(Err(e));
        }
        while let Some(Reverse((id, i))) = self.heap.pop() {
            if let Err(e) = self.refill(i) {
                self.heap.clear();
                return Some(Err(e));
            }
            if self.last != Some(id) {
                self.last = Some(id);
                return Some(Ok(id));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::unpack_chunk;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn unpacked(p: &Packed) -> Vec<i64> {
        p.chunks
            .iter()
            .flat_map(|c| unpack_chunk(c).unwrap())
            .collect()
    }

    #[test]
    fn one_million_distinct_ids_make_ten_full_chunks_in_little_memory() {
        let mut intake = Intake::new(MAX_RECIPIENTS);
        // A deterministic scramble of 1..=1,000,000 spread over 10-digit ids.
        let ids: Vec<i64> = (0..1_000_000i64)
            .map(|i| 5_000_000_000 + (i * 7_919 % 1_000_000) * 4_801)
            .collect();
        let mut peak = 0;
        for part in ids.chunks(10_000) {
            intake.push(part).unwrap();
            peak = peak.max(intake.held_bytes());
        }
        assert!(peak < 5 * 1024 * 1024, "held {peak} bytes");
        let packed = intake.finish().unwrap();
        assert_eq!(packed.manifest.total(), 1_000_000);
        assert_eq!(packed.manifest.chunks(), 10);
        let bytes: usize = packed.chunks.iter().map(Vec::len).sum();
        assert!(bytes < 4_000_000, "{bytes} bytes packed");
        let back = unpacked(&packed);
        assert!(back.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(back.len(), 1_000_000);
    }

    #[test]
    fn one_id_repeated_ten_million_times_is_one_recipient_in_bounded_memory() {
        let mut intake = Intake::new(MAX_RECIPIENTS);
        let same = vec![42i64; 100_000];
        for _ in 0..100 {
            intake.push(&same).unwrap();
            assert!(intake.held_bytes() < 1024 * 1024);
        }
        assert_eq!(intake.received(), 10_000_000);
        let packed = intake.finish().unwrap();
        assert_eq!(unpacked(&packed), vec![42]);
    }

    #[test]
    fn more_distinct_ids_than_allowed_are_refused_and_none_is_refused() {
        let mut intake = Intake::new(10);
        intake.push(&(0..11).collect::<Vec<_>>()).unwrap();
        assert!(matches!(
            intake.finish(),
            Err(JobError::TooManyRecipients(10))
        ));
        let mut intake = Intake::new(10);
        intake.push(&[5; 50]).unwrap();
        assert!(
            intake.finish().is_ok(),
            "50 copies of one id is one recipient"
        );
        assert!(matches!(
            Intake::new(10).finish(),
            Err(JobError::NoRecipients)
        ));
    }

    proptest! {
        // Each case merges runs many times over; 64 cases cover the shapes.
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn intake_keeps_exactly_the_distinct_ids_in_order(
            run_ids in 32usize..500,
            max_runs in 2usize..6,
            parts in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![any::<i64>(), -50i64..50], 0..300),
                1..60),
        ) {
            let want: BTreeSet<i64> = parts.iter().flatten().copied().collect();
            let mut intake = Intake { run_ids, max_runs, ..Intake::new(MAX_RECIPIENTS) };
            for p in &parts { intake.push(p).unwrap(); }
            match intake.finish() {
                Ok(packed) => {
                    prop_assert_eq!(packed.manifest.total(), want.len() as u64);
                    prop_assert_eq!(unpacked(&packed), want.into_iter().collect::<Vec<_>>());
                }
                Err(JobError::NoRecipients) => prop_assert!(want.is_empty()),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
