//! Bounds on what a message holds while it waits: bytes queued on this
//! instance (`[limits] queue_bytes_max`), bytes queued by one caller, and a
//! caller's messages in flight (`max_in_flight`).
//!
//! A [`Budget`] is a counter with a ceiling; [`Budget::try_take`] reserves
//! an amount and returns a [`Permit`] that gives it back when dropped. A
//! message's permits travel in its [`Reply`](crate::reply::Reply) and are
//! dropped when it is answered, however it ends (delivered, failed, given up,
//! dropped at shutdown), so a bound cannot leak. Anything else that queues
//! data for a message (uploads) charges the same instance budget,
//! [`Gateway::bytes`](crate::Gateway::bytes), and attaches the permit with
//! [`Reply::hold`](crate::reply::Reply::hold).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one queued text message is charged besides its strings: the
/// envelope, the reply and its channel, the scheduler's slot, the stream's
/// pending answer (measured: see BENCHMARKS.md, "Memory under the byte
/// bound").
pub const MESSAGE_OVERHEAD_BYTES: u64 = 1024;

/// The default `[limits] queue_bytes_max`: 256 MiB.
pub const DEFAULT_QUEUE_BYTES_MAX: u64 = 256 * 1024 * 1024;

#[derive(Debug)]
struct Counter {
    max: AtomicU64,
    used: AtomicU64,
}

/// A counter with a ceiling, shared by everything that charges it. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<Counter>,
}

impl Budget {
    /// A budget of `max` (0 = nothing may be taken).
    pub fn new(max: u64) -> Budget {
        Budget {
            inner: Arc::new(Counter {
                max: AtomicU64::new(max),
                used: AtomicU64::new(0),
            }),
        }
    }

    /// Reserves `n`, or `None` if that would pass the ceiling. Taking 0
    /// always succeeds.
    pub fn try_take(&self, n: u64) -> Option<Permit> {
        let max = self.inner.max.load(Ordering::Relaxed);
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|after| *after <= max || n == 0)
            })
            .ok()?;
        Some(Permit {
            budget: self.clone(),
            n,
        })
    }

    /// Changes the ceiling (a reloaded setting); what is held stays held.
    pub fn set_max(&self, max: u64) {
        self.inner.max.store(max, Ordering::Relaxed);
    }

    pub fn max(&self) -> u64 {
        self.inner.max.load(Ordering::Relaxed)
    }

    /// What is held now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }
}

/// An amount taken from a [`Budget`]; given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Budget,
    n: u64,
}

impl Permit {
    pub fn amount(&self) -> u64 {
        self.n
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.inner.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_hold_their_amount_until_dropped() {
        let b = Budget::new(10);
        let p = b.try_take(6).expect("room");
        assert!(b.try_take(5).is_none(), "6 + 5 > 10");
        let q = b.try_take(4).expect("exactly full");
        assert_eq!(b.used(), 10);
        assert!(b.try_take(0).is_some(), "nothing always fits");
        drop(p);
        assert_eq!(b.used(), 4);
        b.set_max(3);
        assert!(b.try_take(1).is_none(), "over a lowered ceiling");
        drop(q);
        assert_eq!(b.used(), 0);
        assert!(b.try_take(3).is_some());
    }

    #[test]
    fn concurrent_takers_never_pass_the_ceiling() {
        let b = Budget::new(1_000);
        let held: Vec<Permit> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..1_000).filter_map(|_| b.try_take(3)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        assert_eq!(held.len(), 333);
        assert_eq!(b.used(), 999);
    }
}
