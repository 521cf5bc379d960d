//! How a send can end badly, and what the caller sees for each.

use shardgate_proto::v1 as pb;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A send that did not deliver. Messages are for humans and never hold a
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The request is malformed (chat_id 0, empty text, ...).
    #[error("{0}")]
    Invalid(String),
    /// Telegram refused the message itself (400): permanent.
    #[error("Telegram rejected the message: {description}")]
    Rejected { code: u16, description: String },
    /// The chat cannot be reached by this bot (403, chat not found).
    #[error("Telegram refused the chat: {description}")]
    Unreachable { code: u16, description: String },
    /// A Bot API method the gateway never calls (it belongs to the bot's
    /// own process: updates, webhooks, logging out). Nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// A queue bound was reached; try later.
    #[error("{0}")]
    QueueFull(String),
    /// No bot can take the message now, or Telegram kept failing.
    /// Nothing was sent.
    #[error("{0}")]
    Unavailable(String),
    /// The gateway gave up on a message after a request to Telegram timed
    /// out or its connection broke once the request was written: it may
    /// have reached the chat. The text starts with [`MAYBE_SENT_PREFIX`].
    /// Remembered with its `idempotency_key`: a retry gets this answer
    /// again instead of a second message.
    #[error("{0}")]
    MaybeSent(String),
    /// The caller's deadline passed before the message was sent.
    #[error("deadline exceeded before the message was sent")]
    DeadlineExceeded,
    /// Refused when queued: the limits ahead of the message would send it
    /// only after its deadline (estimated at `in_secs` from then).
    #[error("would be sent in about {in_secs} s, after the message's deadline; nothing was sent")]
    WouldMissDeadline { in_secs: u64 },
    /// No key, or one nobody has (auth on).
    #[error("{0}")]
    Unauthenticated(String),
    /// A caller's lists forbid it, it is banned, or a forwarding header
    /// came from outside the cluster. Nothing was sent.
    #[error("{0}")]
    PermissionDenied(String),
    /// A caller's quota or `max_in_flight` (or its bytes) is reached: retry
    /// after `retry_after_secs` (also in the message, `retry in N s`, and in
    /// the status's `google.rpc.RetryInfo`).
    #[error("{message}")]
    OverQuota {
        message: String,
        retry_after_secs: u64,
    },
    /// A forwarded message reached an instance that does not drive the bot
    /// (ownership moved); nothing was sent. Only instances see this: the
    /// forwarding one routes the message again.
    #[error("{0}")]
    NotOwner(String),
}

/// The estimate in an owner's admission refusal (the text of
/// [`SendError::WouldMissDeadline`]), so a forwarded refusal keeps it.
fn would_be_sent_in(description: &str) -> Option<u64> {
    description
        .strip_prefix("would be sent in about ")?
        .split_once(" s,")?
        .0
        .parse()
        .ok()
}

/// How a [`SendError::MaybeSent`] text begins.
pub const MAYBE_SENT_PREFIX: &str = "may have been sent: ";

impl SendError {
    /// The "may have been sent" form of a failure that would otherwise
    /// say "not sent" (`Unavailable`, `DeadlineExceeded`, a full queue),
    /// for a message one of whose requests may have reached Telegram.
    /// Other failures are returned as they are: Telegram's own refusals
    /// are the truth of the last request, and `NotOwner` is routed again.
    pub fn maybe_sent(self) -> SendError {
        let why = match self {
            SendError::Unavailable(why) | SendError::QueueFull(why) => why,
            SendError::DeadlineExceeded | SendError::WouldMissDeadline { .. } => {
                "the message's deadline passed before another attempt".to_owned()
            }
            other => return other,
        };
        SendError::MaybeSent(format!(
            "{MAYBE_SENT_PREFIX}a request to Telegram timed out or its connection broke after it was written, and the gateway gave up ({why}); a retry with the same idempotency_key gets this answer"
        ))
    }

    pub fn code(&self) -> Code {
        match self {
            SendError::Invalid(_) | SendError::Rejected { .. } => Code::InvalidArgument,
            SendError::Unreachable { .. } | SendError::Refused(_) => Code::FailedPrecondition,
            SendError::QueueFull(_) | SendError::OverQuota { .. } => Code::ResourceExhausted,
            SendError::Unauthenticated(_) => Code::Unauthenticated,
            SendError::PermissionDenied(_) => Code::PermissionDenied,
            SendError::Unavailable(_) => Code::Unavailable,
            SendError::MaybeSent(_) => Code::Unknown,
            SendError::DeadlineExceeded | SendError::WouldMissDeadline { .. } => {
                Code::DeadlineExceeded
            }
            SendError::NotOwner(_) => Code::Aborted,
        }
    }

    /// The error an owner answered for a forwarded message; `None` when it
    /// was not the owner (nothing sent: route again).
    pub fn from_proto(e: &pb::Error) -> Option<SendError> {
        let description = e.description.clone();
        let code = u16::try_from(e.telegram_code).unwrap_or(0);
        Some(match e.code.as_str() {
            "ABORTED" => return None,
            "INVALID_ARGUMENT" if code > 0 => SendError::Rejected { code, description },
            "INVALID_ARGUMENT" => SendError::Invalid(description),
            "FAILED_PRECONDITION" if code == 0 => SendError::Refused(description),
            "FAILED_PRECONDITION" => SendError::Unreachable { code, description },
            "RESOURCE_EXHAUSTED" => SendError::QueueFull(description),
            "UNAUTHENTICATED" => SendError::Unauthenticated(description),
            "PERMISSION_DENIED" => SendError::PermissionDenied(description),
            "UNKNOWN" => SendError::MaybeSent(description),
            "DEADLINE_EXCEEDED" => match would_be_sent_in(&description) {
                Some(in_secs) => SendError::WouldMissDeadline { in_secs },
                None => SendError::DeadlineExceeded,
            },
            _ => SendError::Unavailable(description),
        })
    }

    /// Telegram's error code when Telegram answered.
    pub fn telegram_code(&self) -> u16 {
        match self {
            SendError::Rejected { code, .. } | SendError::Unreachable { code, .. } => *code,
            _ => 0,
        }
    }

    /// The gRPC status; a quota refusal carries a `google.rpc.RetryInfo`.
    pub fn to_status(&self) -> Status {
        match self {
            SendError::OverQuota {
                retry_after_secs, ..
            } => Status::with_error_details(
                self.code(),
                self.to_string(),
                ErrorDetails::with_retry_info(Some(Duration::from_secs(*retry_after_secs))),
            ),
            _ => Status::new(self.code(), self.to_string()),
        }
    }

    /// The `error` field of a stream response.
    pub fn to_proto(&self) -> pb::Error {
        pb::Error {
            code: code_name(self.code()).to_owned(),
            telegram_code: i32::from(self.telegram_code()),
            description: match self {
                // Telegram's own words, as the proto documents.
                SendError::Rejected { description, .. }
                | SendError::Unreachable { description, .. } => description.clone(),
                other => other.to_string(),
            },
        }
    }
}

/// The canonical gRPC name of a code, as other languages' clients print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_keeps_the_meaning() {
        let cases = [
            SendError::Invalid("x".into()),
            SendError::Rejected {
                code: 400,
                description: "Bad Request: message is too long".into(),
            },
            SendError::Unreachable {
                code: 403,
                description: "Forbidden: bot was blocked by the user".into(),
            },
            SendError::QueueFull("full".into()),
            SendError::Refused("method logOut belongs to the bot's own process".into()),
            SendError::Unavailable("none".into()),
            SendError::DeadlineExceeded.maybe_sent(),
            SendError::DeadlineExceeded,
            SendError::WouldMissDeadline { in_secs: 40 },
            SendError::Unauthenticated("who".into()),
            SendError::PermissionDenied("no".into()),
        ];
        for e in cases {
            let back = SendError::from_proto(&e.to_proto()).expect("not NotOwner");
            assert_eq!(back.code(), e.code());
            assert_eq!(back.telegram_code(), e.telegram_code());
            assert_eq!(
                back.to_string(),
                e.to_string(),
                "a forwarded answer reads the same"
            );
        }
        assert!(SendError::from_proto(&SendError::NotOwner("moved".into()).to_proto()).is_none());
    }

    #[test]
    fn a_maybe_sent_answer_is_unknown_and_says_so() {
        let e = SendError::Unavailable(
            "Telegram did not answer before the message's deadline (3 attempts): timeout".into(),
        )
        .maybe_sent();
        assert_eq!(e.code(), Code::Unknown);
        assert!(e.to_string().starts_with(MAYBE_SENT_PREFIX), "{e}");
        assert!(e.to_string().contains("(3 attempts)"), "{e}");
        let forwarded = SendError::from_proto(&e.to_proto()).expect("an answer");
        assert_eq!(forwarded, e, "a forwarded answer stays maybe-sent");
        let telegram = SendError::Rejected {
            code: 400,
            description: "Bad Request: message is too long".into(),
        };
        assert_eq!(
            telegram.clone().maybe_sent(),
            telegram,
            "Telegram's word stands"
        );
    }

    #[test]
    fn a_refusal_at_admission_says_when_it_would_have_gone() {
        let e = SendError::WouldMissDeadline { in_secs: 40 };
        let status = e.to_status();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(
            status.message().contains("would be sent in about 40 s"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_quota_refusal_carries_retry_info() {
        let e = SendError::OverQuota {
            message: "caller a is over its quota; retry in 12 s".into(),
            retry_after_secs: 12,
        };
        let status = e.to_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("retry in 12 s"));
        let info = status.get_details_retry_info().expect("RetryInfo detail");
        assert_eq!(info.retry_delay, Some(Duration::from_secs(12)));
    }
}
