//! Priority classes and the share bulk traffic keeps under contention.
//!
//! A bot sends the highest class its limits allow now: [`Priority::Interactive`]
//! before [`Priority::Normal`] before [`Priority::Bulk`]. Strict priority
//! alone would starve bulk while the others keep the bot busy, so bulk is
//! owed [`crate::Limits::bulk_min_share`] of every send made while it has
//! messages queued, and takes a turn as soon as it is owed a whole one
//! ([`BulkCredit`], a deficit counter in integer millionths, deterministic).
//! Normal traffic gets no such floor against interactive traffic: a bot
//! flooded with interactive messages is one the callers meant to be.

/// A message's class. Ordered by precedence: the class that goes first
/// compares lowest (`Interactive < Normal < Bulk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Replies a person waits for.
    Interactive,
    /// Everything else sent one at a time (the default).
    #[default]
    Normal,
    /// Broadcasts and mailings: after the others, but never starved.
    Bulk,
}

impl Priority {
    /// Every class, in the order they go.
    pub const ALL: [Priority; 3] = [Priority::Interactive, Priority::Normal, Priority::Bulk];

    /// Position in [`Priority::ALL`], for per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One whole send in the credit's unit.
const ONE: u32 = 1_000_000;

/// Bulk's credit of sends: grows by its share on every send made while
/// bulk has messages queued, is capped at one send plus one share (a bulk
/// chat held up by its own limits banks no more than one turn), pays one
/// for every
/// bulk send, never going below zero (bulk that got the bot for itself
/// earns no debt against later contention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BulkCredit {
    /// Millionths of a send bulk is owed per send.
    share: u32,
    /// Millionths of a send bulk is owed now, at most `ONE + share`.
    credit: u32,
}

impl BulkCredit {
    /// `share` in 0..=1 (clamped): the fraction of sends bulk keeps.
    pub(crate) fn new(share: f64) -> Self {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        BulkCredit {
            share: (share * f64::from(ONE)).round() as u32,
            credit: 0,
        }
    }

    /// True when bulk's turn is due: the next send goes to bulk if bulk
    /// has a message its limits allow now.
    pub(crate) fn due(&self) -> bool {
        self.share > 0 && self.credit >= ONE
    }

    /// Accounts one send of `class`; `bulk_waiting`: bulk had messages
    /// queued when it was chosen.
    pub(crate) fn sent(&mut self, class: Priority, bulk_waiting: bool) {
        if class == Priority::Bulk {
            self.credit = self.credit.saturating_sub(ONE);
        }
        if bulk_waiting {
            // One turn banked at most, and the fraction past it kept, so
            // that a share of 0.11 gives 11%, not one send in ten.
            self.credit = (self.credit + self.share).min(ONE + self.share);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_share_gives_bulk_one_send_in_ten_under_contention() {
        let mut c = BulkCredit::new(0.1);
        let mut bulk = 0;
        for _ in 0..1_000 {
            let class = if c.due() {
                Priority::Bulk
            } else {
                Priority::Normal
            };
            if class == Priority::Bulk {
                bulk += 1;
            }
            c.sent(class, true);
        }
        assert!((99..=100).contains(&bulk), "{bulk}");
    }

    #[test]
    fn bulk_alone_banks_no_turn_and_idle_bulk_earns_nothing() {
        let mut c = BulkCredit::new(0.5);
        for _ in 0..10 {
            c.sent(Priority::Bulk, true);
        }
        assert!(!c.due(), "bulk sending on its own is not owed a turn");
        let mut c = BulkCredit::new(0.5);
        for _ in 0..10 {
            c.sent(Priority::Normal, false);
        }
        assert!(!c.due(), "no bulk queued: no credit");
    }

    #[test]
    fn share_is_clamped_and_zero_is_strict_priority() {
        assert_eq!(BulkCredit::new(7.0).share, ONE);
        assert_eq!(BulkCredit::new(f64::NAN).share, 0);
        let mut c = BulkCredit::new(0.0);
        for _ in 0..100 {
            c.sent(Priority::Normal, true);
        }
        assert!(!c.due());
    }

    #[test]
    fn classes_go_in_precedence_order() {
        assert!(Priority::Interactive < Priority::Normal);
        assert!(Priority::Normal < Priority::Bulk);
        assert_eq!(Priority::default(), Priority::Normal);
        for (i, p) in Priority::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }
}
