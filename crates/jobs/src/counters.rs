//! A job's tallies: how many distinct recipients it has, how many got the
//! message, how many failed and with which code, and how many may have got
//! it twice.
//!
//! Invariants, kept by construction (the fields are private and every change
//! goes through a method that checks):
//! - `delivered + failed <= total`, so `pending = total - delivered - failed`
//!   is never negative and is computed, never stored;
//! - `failed` is the sum of `failed_by_code`;
//! - after [`close_unsent`](Counters::close_unsent) `pending` is 0: a cancel
//!   counts every unsent recipient under `CANCELLED`.

use std::collections::BTreeMap;

use crate::JobError;

/// The code a cancel counts the unsent under.
pub const CANCELLED: &str = "CANCELLED";

/// The longest failure code kept (gRPC code names are far shorter); longer
/// ones are cut so a misbehaving caller of the crate cannot bloat records.
pub const MAX_CODE_LEN: usize = 32;

/// The most distinct failure codes kept; further codes count under `OTHER`.
pub const MAX_CODES: usize = 32;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    total: u64,
    delivered: u64,
    failed: u64,
    failed_by_code: BTreeMap<String, u64>,
    possible_duplicates: u64,
}

/// How one recipient ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Delivered,
    /// Failed for good with this gRPC code name (`PERMISSION_DENIED` for a
    /// bot the user blocked, `NOT_FOUND` for a chat that is gone, ...).
    Failed(&'a str),
}

impl Counters {
    /// Fresh counters for a job of `total` distinct recipients.
    pub fn new(total: u64) -> Counters {
        Counters {
            total,
            ..Counters::default()
        }
    }

    /// Counters read back from a record, checked: a record that breaks an
    /// invariant is refused, not trusted.
    pub fn from_parts(
        total: u64,
        delivered: u64,
        failed_by_code: BTreeMap<String, u64>,
        possible_duplicates: u64,
    ) -> Result<Counters, JobError> {
        let failed = failed_by_code
            .values()
            .try_fold(0u64, |a, b| a.checked_add(*b))
            .ok_or(JobError::Corrupt("failure counts overflow"))?;
        match delivered.checked_add(failed) {
            Some(done) if done <= total => Ok(Counters {
                total,
                delivered,
                failed,
                failed_by_code,
                possible_duplicates,
            }),
            _ => Err(JobError::Corrupt("delivered + failed exceeds total")),
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
    pub fn failed(&self) -> u64 {
        self.failed
    }
    pub fn pending(&self) -> u64 {
        self.total - self.delivered - self.failed
    }
    pub fn failed_by_code(&self) -> &BTreeMap<String, u64> {
        &self.failed_by_code
    }
    pub fn possible_duplicates(&self) -> u64 {
        self.possible_duplicates
    }

    /// Counts one recipient's end. Refused when nothing is pending, which
    /// would mean a recipient was counted twice.
    pub fn record(&mut self, outcome: Outcome<'_>) -> Result<(), JobError> {
        self.add(outcome, 1)
    }

    /// Counts every pending recipient as failed with `code` (a cancel uses
    /// [`CANCELLED`]); afterwards `pending` is 0. Returns how many.
    pub fn close_unsent(&mut self, code: &str) -> u64 {
        let n = self.pending();
        if n > 0 {
            // Cannot fail: n is exactly what is pending.
            let _ = self.add(Outcome::Failed(code), n);
        }
        n
    }

    /// Counts recipients whose request was in flight at a crash: they are
    /// sent again, so they may get the message twice.
    pub fn add_possible_duplicates(&mut self, n: u64) {
        self.possible_duplicates = self.possible_duplicates.saturating_add(n);
    }

    /// Counts `n` recipients with the same end (refused past `pending`).
    pub(crate) fn add(&mut self, outcome: Outcome<'_>, n: u64) -> Result<(), JobError> {
        if n > self.pending() {
            return Err(JobError::CountedTwice);
        }
        match outcome {
            Outcome::Delivered => self.delivered += n,
            Outcome::Failed(code) => {
                self.failed += n;
                *self
                    .failed_by_code
                    .entry(code_key(&self.failed_by_code, code))
                    .or_default() += n;
            }
        }
        Ok(())
    }
}

/// The key a failure code counts under: the code itself (cut to
/// [`MAX_CODE_LEN`]), or `OTHER` once [`MAX_CODES`] codes are kept.
fn code_key(kept: &BTreeMap<String, u64>, code: &str) -> String {
    let mut end = code.len().min(MAX_CODE_LEN);
    while !code.is_char_boundary(end) {
        end -= 1;
    }
    let code = if code.is_empty() {
        "UNKNOWN"
    } else {
        &code[..end]
    };
    if kept.contains_key(code) || kept.len() < MAX_CODES - 1 {
        code.to_owned()
    } else {
        "OTHER".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cancel_counts_the_unsent_under_cancelled_and_leaves_nothing_pending() {
        let mut c = Counters::new(5);
        c.record(Outcome::Delivered).unwrap();
        c.record(Outcome::Failed("PERMISSION_DENIED")).unwrap();
        assert_eq!(c.close_unsent(CANCELLED), 3);
        assert_eq!(c.pending(), 0);
        assert_eq!(c.failed_by_code()[CANCELLED], 3);
        assert_eq!(c.failed(), 4);
        assert!(c.record(Outcome::Delivered).is_err(), "counted past total");
    }

    #[test]
    fn a_record_that_breaks_the_invariant_is_refused() {
        let codes = BTreeMap::from([("NOT_FOUND".to_owned(), 3)]);
        assert!(Counters::from_parts(4, 2, codes.clone(), 0).is_err());
        assert_eq!(Counters::from_parts(5, 2, codes, 1).unwrap().pending(), 0);
    }

    #[test]
    fn failure_codes_are_bounded_in_number_and_length() {
        let mut c = Counters::new(1000);
        for i in 0..100 {
            c.record(Outcome::Failed(&format!("CODE_{i}_{}", "X".repeat(100))))
                .unwrap();
        }
        assert!(c.failed_by_code().len() <= MAX_CODES);
        assert!(c.failed_by_code().keys().all(|k| k.len() <= MAX_CODE_LEN));
        assert_eq!(c.failed_by_code().values().sum::<u64>(), 100);
    }

    proptest! {
        #[test]
        fn counters_hold_their_invariant_under_any_sequence_of_outcomes(
            total in 0u64..200,
            ops in proptest::collection::vec((0u8..4, 0u8..5), 0..300),
            cancel_at_end in any::<bool>(),
        ) {
            let codes = ["PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT", "", "UNAVAILABLE"];
            let mut c = Counters::new(total);
            let mut seen = 0u64;
            for (kind, code) in ops {
                let before = c.clone();
                let r = match kind {
                    0 | 1 => c.record(Outcome::Delivered),
                    2 => c.record(Outcome::Failed(codes[code as usize])),
                    _ => { c.add_possible_duplicates(1); Ok(()) }
                };
                if kind < 3 {
                    if seen < total { prop_assert!(r.is_ok()); seen += 1; }
                    else { prop_assert!(r.is_err()); prop_assert_eq!(&c, &before); }
                }
                prop_assert_eq!(c.pending(), total - c.delivered() - c.failed());
                prop_assert_eq!(c.failed(), c.failed_by_code().values().sum::<u64>());
                prop_assert_eq!(c.delivered() + c.failed(), seen);
            }
            if cancel_at_end {
                c.close_unsent(CANCELLED);
                prop_assert_eq!(c.pending(), 0);
                prop_assert_eq!(c.delivered() + c.failed(), total);
            }
        }
    }
}
