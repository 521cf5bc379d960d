//! How a send can end badly, and what the caller sees for each.

use shardgate_proto::v1 as pb;
use tonic::{Code, Status};

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
    /// A queue bound was reached; try later.
    #[error("{0}")]
    QueueFull(String),
    /// No bot can take the message now, or Telegram kept failing.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's deadline passed before the message was sent.
    #[error("deadline exceeded before the message was sent")]
    DeadlineExceeded,
}

impl SendError {
    pub fn code(&self) -> Code {
        match self {
            SendError::Invalid(_) | SendError::Rejected { .. } => Code::InvalidArgument,
            SendError::Unreachable { .. } => Code::FailedPrecondition,
            SendError::QueueFull(_) => Code::ResourceExhausted,
            SendError::Unavailable(_) => Code::Unavailable,
            SendError::DeadlineExceeded => Code::DeadlineExceeded,
        }
    }

    /// Telegram's error code when Telegram answered.
    pub fn telegram_code(&self) -> u16 {
        match self {
            SendError::Rejected { code, .. } | SendError::Unreachable { code, .. } => *code,
            _ => 0,
        }
    }

    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }

    /// The `error` field of a stream response.
    pub fn to_proto(&self) -> pb::Error {
        pb::Error {
            code: code_name(self.code()).to_owned(),
            telegram_code: i32::from(self.telegram_code()),
            description: self.to_string(),
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
