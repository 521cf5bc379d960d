//! The completion sink of one accepted message.
//!
//! Every accepted message carries a [`Reply`]. Finishing it answers the
//! caller (if still waiting) and settles the message's idempotency entry.
//! Dropping an unfinished one (a bug, or shutdown) answers `UNAVAILABLE`, so
//! no accepted message can end without an answer.

use tokio::sync::oneshot;

use crate::idempotency::Claim;
use crate::{Delivered, SendError};

pub type Outcome = Result<Delivered, SendError>;

pub struct Reply {
    tx: Option<oneshot::Sender<Outcome>>,
    claim: Option<Claim>,
    /// The message's span: gets the `outcome` attribute when settled.
    span: tracing::Span,
}

impl Reply {
    pub fn new(claim: Option<Claim>, span: tracing::Span) -> (Reply, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (
            Reply {
                tx: Some(tx),
                claim,
                span,
            },
            rx,
        )
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
        self.claim.is_none() && self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }

    fn settle(&mut self, outcome: Outcome) {
        let label = match &outcome {
            Ok(_) => "delivered",
            Err(e) => crate::error::code_name(e.code()),
        };
        self.span.record("outcome", label);
        if let Some(claim) = self.claim.take() {
            claim.settle(&outcome);
        }
        if let Some(tx) = self.tx.take() {
            // The caller may have gone (deadline, cancelled): nothing to do.
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.tx.is_some() || self.claim.is_some() {
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
            .field("idempotent", &self.claim.is_some())
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

    #[tokio::test]
    async fn abandoned_once_the_caller_is_gone() {
        let (reply, rx) = Reply::new(None, tracing::Span::none());
        assert!(!reply.is_abandoned());
        drop(rx);
        assert!(reply.is_abandoned());
    }
}
