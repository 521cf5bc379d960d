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

/// What every recipient of a job gets: a text `Send` or a send-type `Call`,
/// decoded once from the stored template.
#[derive(Debug, Clone)]
pub(super) enum Request {
    Text(pb::SendRequest),
    Call(pb::CallRequest),
}

impl Request {
    /// The template's message for `chat_id`, validated as at the door.
    pub fn message(&self, chat_id: i64) -> Result<Message, SendError> {
        match self {
            Request::Text(t) => {
                let mut req = t.clone();
                req.chat_id = chat_id;
                Message::from_request(req)
            }
            Request::Call(t) => {
                let mut req = t.clone();
                req.params_json = with_chat(&t.params_json, chat_id)?;
                Message::from_call(req)
            }
        }
    }
}

/// `params_json` with `chat_id` set to `chat_id`.
pub(super) fn with_chat(params_json: &str, chat_id: i64) -> Result<String, SendError> {
    let mut params: serde_json::Map<String, serde_json::Value> = if params_json.trim().is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(params_json).map_err(|e| {
            SendError::Invalid(format!(
                "the call template's params_json is not a JSON object: {e}"
            ))
        })?
    };
    params.insert("chat_id".into(), chat_id.into());
    Ok(serde_json::Value::Object(params).to_string())
}

/// The longest wait between two tries of one recipient.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the runner asks for one recipient to be sent.
pub(super) struct Send {
    pub gateway: Gateway,
    pub template: Arc<Request>,
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
            let outcome = match self.template.message(chat_id) {
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
