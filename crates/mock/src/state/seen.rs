//! What the emulator remembers to call a delivery a duplicate: the
//! fingerprints of the last `max` deliveries, oldest forgotten first.
//!
//! Invariant: memory is bounded by `max` (one `u64` in the set and one in the
//! queue per remembered delivery), so a long run (the load tool's soak runs
//! the emulator in its own process) does not grow without end; a duplicate of
//! a message older than the last `max` deliveries goes unnoticed, which the
//! emulator's config documents.

use std::collections::{HashSet, VecDeque};

#[derive(Debug)]
pub(crate) struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    max: usize,
}

impl Seen {
    pub fn new(max: usize) -> Self {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Remembers `fingerprint`; false when it was already remembered (a duplicate).
    pub fn insert(&mut self, fingerprint: u64) -> bool {
        if !self.set.insert(fingerprint) {
            return false;
        }
        self.order.push_back(fingerprint);
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_is_a_duplicate_and_one_past_it_is_forgotten() {
        let mut seen = Seen::new(3);
        assert!(seen.insert(1));
        assert!(!seen.insert(1), "a repeat is a duplicate");
        assert!(seen.insert(2));
        assert!(seen.insert(3));
        assert!(seen.insert(4), "the fourth pushes the first out");
        assert_eq!(seen.len(), 3);
        assert!(seen.insert(1), "forgotten after three newer ones");
        assert!(!seen.insert(4));
    }
}
