//! The vocabulary the whole gateway uses for "what happened to this send":
//! [`Outcome`] and [`TransientKind`]. Kept apart from the classification rules so the
//! types (and their small helpers for retries, metrics and error mapping) read on
//! their own.

use std::fmt;
use std::time::Duration;

/// Why a request may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransientKind {
    /// The server answered with this 5xx status.
    Server(u16),
    /// The request was sent (or being sent) but no complete answer came in time:
    /// the message **may have been delivered**.
    Timeout,
    /// No connection could be made (refused, DNS, TLS, or connect timeout): the
    /// request never reached the server, so nothing was delivered.
    Connect,
    /// The connection broke while sending the request or waiting for the answer:
    /// the message may have been delivered.
    Connection,
    /// An answer came but could not be understood (not JSON, truncated, missing
    /// fields, too large, or broken while reading it).
    Body,
}

impl TransientKind {
    /// Whether the request may have reached Telegram and been acted on: it
    /// was written and no (readable) answer came. False for a failure to
    /// connect (nothing left) and for a 5xx (Telegram answered: not done).
    pub fn may_have_arrived(self) -> bool {
        match self {
            TransientKind::Timeout | TransientKind::Connection | TransientKind::Body => true,
            TransientKind::Server(_) | TransientKind::Connect => false,
        }
    }
}

impl fmt::Display for TransientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransientKind::Server(code) => write!(f, "server error {code}"),
            TransientKind::Timeout => f.write_str("timeout"),
            TransientKind::Connect => f.write_str("connect error"),
            TransientKind::Connection => f.write_str("connection error"),
            TransientKind::Body => f.write_str("unreadable answer"),
        }
    }
}

/// What one Bot API answer means for the sender. Descriptions are Telegram's own
/// (or ours for transport failures), bounded in length, and never contain a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Telegram accepted the message.
    Delivered {
        /// Telegram's id of the new message.
        message_id: i64,
        /// The chat it landed in (`result.chat.id`). [`crate::classify`] leaves 0 when the
        /// answer omits it; [`crate::Client::send_message`] fills in the request's.
        chat_id: i64,
    },
    /// 429, or any answer carrying `parameters.retry_after`: wait, then retry.
    RetryAfter {
        /// How long Telegram asked to wait.
        retry_after: Duration,
        /// Telegram's description.
        description: String,
    },
    /// 401 Unauthorized, or 404 Not Found (malformed token): the token is unusable.
    Revoked {
        /// 401 or 404.
        code: u16,
        /// Telegram's description.
        description: String,
    },
    /// 403: blocked by the user, kicked from the chat, user deactivated; permanent
    /// for this bot and chat.
    Forbidden {
        /// Telegram's description.
        description: String,
    },
    /// 400 with `parameters.migrate_to_chat_id`: the group became a supergroup;
    /// resend to `to_chat_id`.
    Migrated {
        /// The supergroup's chat id.
        to_chat_id: i64,
        /// Telegram's description.
        description: String,
    },
    /// Any other 4xx: permanent (chat not found, message too long, empty, ...).
    Rejected {
        /// Telegram's error code.
        code: u16,
        /// Telegram's description.
        description: String,
    },
    /// 5xx, timeouts, connect errors, broken connections, unreadable answers: retry
    /// (with [`crate::Backoff`]).
    Transient {
        /// What went wrong.
        kind: TransientKind,
        /// Human-readable detail (no URL, no token).
        description: String,
    },
}

impl Outcome {
    /// True for [`Outcome::RetryAfter`] and [`Outcome::Transient`]: the same request
    /// may succeed later. `Migrated` is false: the request must change first.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::RetryAfter { .. } | Outcome::Transient { .. })
    }

    /// Telegram's error code for this answer (`None` for success and for transport
    /// failures that carry no status).
    pub fn telegram_code(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::RetryAfter { .. } => Some(429),
            Outcome::Revoked { code, .. } | Outcome::Rejected { code, .. } => Some(*code),
            Outcome::Forbidden { .. } => Some(403),
            Outcome::Migrated { .. } => Some(400),
            Outcome::Transient {
                kind: TransientKind::Server(code),
                ..
            } => Some(*code),
            Outcome::Transient { .. } => None,
        }
    }

    /// A short stable name for metrics labels and logs: `delivered`, `retry_after`,
    /// `revoked`, `forbidden`, `migrated`, `rejected` or `transient`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::RetryAfter { .. } => "retry_after",
            Outcome::Revoked { .. } => "revoked",
            Outcome::Forbidden { .. } => "forbidden",
            Outcome::Migrated { .. } => "migrated",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Transient { .. } => "transient",
        }
    }

    /// The description, if this is a failure.
    pub fn description(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::RetryAfter { description, .. }
            | Outcome::Revoked { description, .. }
            | Outcome::Forbidden { description }
            | Outcome::Migrated { description, .. }
            | Outcome::Rejected { description, .. }
            | Outcome::Transient { description, .. } => Some(description),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered {
                message_id,
                chat_id,
            } => {
                write!(f, "delivered message {message_id} to chat {chat_id}")
            }
            Outcome::RetryAfter {
                retry_after,
                description,
            } => {
                write!(f, "throttled for {}s: {description}", retry_after.as_secs())
            }
            Outcome::Revoked { code, description } => {
                write!(f, "token unusable ({code}): {description}")
            }
            Outcome::Forbidden { description } => write!(f, "forbidden (403): {description}"),
            Outcome::Migrated {
                to_chat_id,
                description,
            } => {
                write!(f, "chat migrated to {to_chat_id}: {description}")
            }
            Outcome::Rejected { code, description } => {
                write!(f, "rejected ({code}): {description}")
            }
            Outcome::Transient { kind, description } => write!(f, "{kind}: {description}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_was_written_and_not_answered_may_have_arrived() {
        assert!(TransientKind::Timeout.may_have_arrived());
        assert!(TransientKind::Connection.may_have_arrived());
        assert!(TransientKind::Body.may_have_arrived());
        assert!(!TransientKind::Connect.may_have_arrived());
        assert!(!TransientKind::Server(502).may_have_arrived());
    }
}
