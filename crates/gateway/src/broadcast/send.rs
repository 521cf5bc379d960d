//! One recipient of a broadcast through the normal send path: the
//! template with the recipient's chat id, admitted under the creating
//! caller's rules, routed, limited and sent like any `Send`, and retried
//! while the failure is one that time fixes.
//!
//! Which failures end a recipient: what Telegram refuses for good (403
//! blocked or kicked, chat not found, a bad request) and what the caller's
//! lists forbid. Everything else (no healthy bot now, a full queue, the
//! caller's quota, Telegram failing until the message's deadline) is
//! waited out with a capped backoff, so a job never loses a recipient to a
//! passing outage; a cancel stops the waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shardgate_jobs::{Priority, RecipientResult, ResultError};
use shardgate_proto::v1 as pb;
use tonic::Code;

use crate::{Gateway, Message, SendError};

/// The longest wait between two tries of one recipient.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the runner asks for one recipient to be sent.
pub(super) struct Send {
    pub gateway: Gateway,
    pub template: Arc<pb::SendRequest>,
    pub priority: Priority,
    pub caller: Arc<str>,
    /// Set by a cancel: stop retrying, end as `CANCELLED`.
    pub cancelled: Arc<AtomicBool>,
}

/// Whether a failure ends the recipient (true) or is waited out.
fn is_final(e: &SendError) -> bool {
    !matches!(
        e.code(),
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted
    )
}

fn failed(chat_id: i64, bot: String, code: &str, message: String) -> RecipientResult {
    RecipientResult {
        chat_id,
        bot,
        message_id: 0,
        error: Some(ResultError {
            code: code.to_owned(),
            message,
        }),
    }
}

impl Send {
    /// Sends the template to `chat_id` until it is delivered or fails for
    /// good; never panics, always answers.
    pub async fn run(self, chat_id: i64) -> RecipientResult {
        let mut backoff = Duration::from_millis(500);
        loop {
            if self.cancelled.load(Ordering::Relaxed) {
                return failed(
                    chat_id,
                    String::new(),
                    "CANCELLED",
                    "the broadcast was cancelled".into(),
                );
            }
            let mut req = (*self.template).clone();
            req.chat_id = chat_id;
            let outcome = match Message::from_request(req) {
                Err(e) => Err(e),
                Ok(mut msg) => {
                    msg.priority = self.priority;
                    match self.gateway.callers().admit_job(&self.caller, &msg).await {
                        Err(SendError::OverQuota {
                            retry_after_secs, ..
                        }) => {
                            let wait = Duration::from_secs(retry_after_secs.clamp(1, 60));
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Err(e) => Err(e),
                        Ok(admission) => {
                            self.gateway
                                .submit_admitted(msg, None, admission, false)
                                .wait(None)
                                .await
                        }
                    }
                }
            };
            match outcome {
                Ok(d) => {
                    return RecipientResult {
                        chat_id,
                        bot: d.bot,
                        message_id: d.message_id,
                        error: None,
                    };
                }
                Err(e) if is_final(&e) => {
                    let pb = e.to_proto();
                    return failed(chat_id, String::new(), &pb.code, pb.description);
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_good_end_a_recipient_and_passing_ones_are_waited_out() {
        for e in [
            SendError::Invalid("x".into()),
            SendError::Unreachable {
                code: 403,
                description: "Forbidden: bot was blocked by the user".into(),
            },
            SendError::PermissionDenied("chat".into()),
        ] {
            assert!(is_final(&e), "{e}");
        }
        for e in [
            SendError::Unavailable("no bot".into()),
            SendError::QueueFull("full".into()),
            SendError::DeadlineExceeded,
            SendError::WouldMissDeadline { in_secs: 700 },
        ] {
            assert!(!is_final(&e), "{e}");
        }
    }
}
