//! The completion sink of one accepted message.
//!
//! Every accepted message carries a [`Reply`]. Finishing it answers the
//! caller (if still waiting) and settles the message's idempotency entry.
//! Dropping an unfinished one (a bug, or shutdown) answers `UNAVAILABLE`, so
//! no accepted message can end without an answer.
//!
//! The [`Gate`] settles the race between a caller's deadline and a send:
//! an error answer must mean "not sent", so a caller may retry safely.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::sync::oneshot;

use crate::budget::Permit;
use crate::idempotency::Claim;
use crate::{Delivered, SendError};

pub type Outcome = Result<Delivered, SendError>;

/// Shared by a message's [`Reply`] and its waiting caller: whether the
/// message is (possibly) at Telegram right now, or the caller gave up.
/// Exactly one side wins when the deadline meets a send: either the caller
/// answers `DEADLINE_EXCEEDED` and nothing is sent, or the send goes ahead
/// and its outcome is the answer.
///
/// The gate also remembers whether any request for the message may have
/// reached Telegram without an answer (a timeout, a connection broken after
/// the request was written): from then on a failure that would say "not
/// sent" says "may have been sent" instead ([`SendError::maybe_sent`]).
///
/// And it holds the message's idempotency claim, so that the side that ends
/// the message settles it: the caller that gives up at its deadline frees
/// the key at once (a retry then sends), rather than when the dispatcher
/// next looks at the queued message.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    state: AtomicU8,
    maybe_sent: AtomicBool,
    claim: parking_lot::Mutex<Option<Claim>>,
}

impl std::fmt::Debug for GateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("state", &self.state)
            .field("maybe_sent", &self.maybe_sent)
            .finish_non_exhaustive()
    }
}

const OPEN: u8 = 0;
const SENDING: u8 = 1;
const GAVE_UP: u8 = 2;

impl Gate {
    /// About to hand the message to Telegram (or to its owner instance).
    /// False: the caller was already told `DEADLINE_EXCEEDED`; do not send.
    pub fn begin_send(&self) -> bool {
        match self
            .0
            .state
            .compare_exchange(OPEN, SENDING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == SENDING,
        }
    }

    /// The attempt came back without a delivery; the message waits again.
    pub fn end_attempt(&self) {
        let _ = self
            .0
            .state
            .compare_exchange(SENDING, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The caller's deadline passed: true when nothing is being sent, so
    /// that `DEADLINE_EXCEEDED` is the truth and nothing will be sent later.
    pub fn give_up(&self) -> bool {
        match self
            .0
            .state
            .compare_exchange(OPEN, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == GAVE_UP,
        }
    }

    /// A request for the message ended without an answer after it may
    /// have reached Telegram. Sticky: later attempts do not undo it.
    pub fn mark_maybe_sent(&self) {
        self.0.maybe_sent.store(true, Ordering::Release);
    }

    /// Whether [`mark_maybe_sent`](Self::mark_maybe_sent) was called.
    pub fn maybe_sent(&self) -> bool {
        self.0.maybe_sent.load(Ordering::Acquire)
    }

    /// Whether the message still holds an idempotency claim.
    fn claimed(&self) -> bool {
        self.0.claim.lock().is_some()
    }

    /// Settles the message's idempotency claim, if not yet settled.
    pub fn settle_claim(&self, outcome: &Outcome) {
        let claim = self.0.claim.lock().take();
        if let Some(claim) = claim {
            claim.settle(outcome);
        }
    }

    /// `err` as the caller must read it: "may have been sent" once a
    /// request may have reached Telegram, `err` otherwise.
    pub fn failure(&self, err: SendError) -> SendError {
        if self.maybe_sent() {
            err.maybe_sent()
        } else {
            err
        }
    }
}

pub struct Reply {
    tx: Option<oneshot::Sender<Outcome>>,
    gate: Gate,
    /// The message's span: gets the `outcome` attribute when settled.
    span: tracing::Span,
    /// What the message holds of the bounds (bytes queued, a caller's
    /// in-flight slot): given back when it is answered.
    holds: Vec<Permit>,
}

impl Reply {
    pub fn new(claim: Option<Claim>, span: tracing::Span) -> (Reply, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let gate = Gate::default();
        *gate.0.claim.lock() = claim;
        (
            Reply {
                tx: Some(tx),
                gate,
                span,
                holds: Vec::new(),
            },
            rx,
        )
    }

    /// The gate the waiting caller shares (see [`Gate`]).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Keeps `permit` until the message is answered (see `budget.rs`).
    pub fn hold(&mut self, permit: Permit) {
        self.holds.push(permit);
    }

    /// Answers once; later calls are impossible (it is consumed).
    pub fn finish(mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    /// Answers in place (for code that only has `&mut`); a later drop or
    /// finish does nothing.
    pub fn answer(&mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    /// Nobody will read the answer: the caller went away and no idempotent
    /// retry waits for it. Such a message need not be sent.
    pub fn is_abandoned(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed()) && !self.gate.claimed()
    }

    fn settle(&mut self, outcome: Outcome) {
        self.holds.clear();
        let outcome = outcome.map_err(|e| self.gate.failure(e));
        let label = match &outcome {
            Ok(_) => "delivered",
            Err(e) => crate::error::code_name(e.code()),
        };
        self.span.record("outcome", label);
        self.gate.settle_claim(&outcome);
        if let Some(tx) = self.tx.take() {
            // The caller may have gone (deadline, cancelled): nothing to do.
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.tx.is_some() || self.gate.claimed() {
            self.settle(Err(SendError::Unavailable(
                "the gateway stopped before the message was sent".into(),
            )));
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("pending", &self.tx.is_some())
            .field("idempotent", &self.gate.claimed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropped_reply_answers_unavailable() {
        let (reply, rx) = Reply::new(None, tracing::Span::none());
        drop(reply);
        let got = rx.await.expect("answered");
        assert!(matches!(got, Err(SendError::Unavailable(_))));
    }

    #[test]
    fn the_deadline_and_a_send_never_both_win() {
        let g = Gate::default();
        assert!(g.begin_send(), "an open message may be sent");
        assert!(!g.give_up(), "in flight: the outcome will be the answer");
        g.end_attempt();
        assert!(g.give_up(), "back in a queue: the deadline wins");
        assert!(!g.begin_send(), "and nothing is sent after it");
        assert!(g.give_up(), "giving up twice is still giving up");
        g.end_attempt();
        assert!(
            !g.begin_send(),
            "end_attempt does not reopen a gate given up"
        );
    }

    #[tokio::test]
    async fn a_failure_after_a_request_that_may_have_arrived_says_maybe_sent() {
        let (reply, rx) = Reply::new(None, tracing::Span::none());
        assert!(!reply.gate().maybe_sent());
        reply.gate().mark_maybe_sent();
        reply.finish(Err(SendError::Unavailable(
            "Telegram did not answer before the message's deadline (2 attempts): timeout".into(),
        )));
        let got = rx.await.expect("answered");
        assert!(matches!(got, Err(SendError::MaybeSent(_))), "{got:?}");

        let (reply, rx) = Reply::new(None, tracing::Span::none());
        reply.gate().mark_maybe_sent();
        drop(reply);
        let got = rx.await.expect("answered");
        assert!(
            matches!(got, Err(SendError::MaybeSent(_))),
            "a dropped reply too: {got:?}"
        );
    }

    #[tokio::test]
    async fn abandoned_once_the_caller_is_gone() {
        let (reply, rx) = Reply::new(None, tracing::Span::none());
        assert!(!reply.is_abandoned());
        drop(rx);
        assert!(reply.is_abandoned());
    }
}
