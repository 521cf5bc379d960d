//! Errors of the etcd crate, and the one helper every etcd request goes
//! through ([`call`]): a deadline per request, and etcd-client errors turned
//! into messages that can never carry a token.

use std::future::Future;
use std::time::Duration;

use shardgate_registry::RegistryError;
use shardgate_telegram::redact_tokens;

/// Failures of the etcd registry and of the operator commands. Messages
/// never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A request did not get an answer in time (etcd down or partitioned).
    #[error("etcd did not answer {what} within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// etcd answered with an error, or the connection failed.
    #[error("etcd {what} failed: {message}")]
    Request { what: &'static str, message: String },
    /// `EtcdRegistry::start` could not reach etcd in time.
    #[error("cannot reach etcd at {endpoints} within {after:?}: {last}")]
    Unreachable {
        endpoints: String,
        after: Duration,
        last: String,
    },
    /// The session's lease no longer exists in etcd.
    #[error("the session's etcd lease {lease:x} is gone")]
    LeaseGone { lease: i64 },
    /// A fenced write refused: this instance does not (or no longer) own the bot.
    #[error("this instance does not own bot {0:?}")]
    NotOwner(String),
    #[error("bot {0:?} already exists")]
    AlreadyExists(String),
    #[error("unknown bot {0:?}")]
    UnknownBot(String),
    #[error("caller {0:?} already exists")]
    CallerExists(String),
    #[error("unknown caller {0:?}")]
    UnknownCaller(String),
    /// A caller's rules that do not validate (never holds a key).
    #[error("invalid caller: {0}")]
    InvalidCaller(String),
    #[error("invalid bot name {0:?}: use 1-64 characters of letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    #[error("invalid token for bot {name:?}: {message}")]
    InvalidToken { name: String, message: String },
    /// A value in etcd that cannot be read (it is skipped by the registry).
    #[error("malformed value at {key}: {message}")]
    Malformed { key: String, message: String },
    /// A bot would be the same Telegram bot (same bot id) as another entry.
    #[error(
        "bot {name:?} would be the same Telegram bot (bot id {bot_id}) as bot {other:?}: two \
         entries would drive one bot past its limits; remove or rotate {other:?} first"
    )]
    SameBot {
        name: String,
        other: String,
        bot_id: u64,
    },
    /// A compare-and-set lost against a concurrent writer too many times.
    #[error("bot {0:?} changed concurrently; try again")]
    Conflict(String),
    #[error("invalid etcd registry configuration: {0}")]
    Config(String),
    /// `members/<instance>` exists under another lease: another instance
    /// runs with this instance id, or this one's previous run's lease has
    /// not expired yet.
    #[error(
        "instance id {instance:?} is taken: its member key exists under lease {lease:x} \
         (grpc {grpc}), another instance with this id or this instance's previous run whose \
         lease has not expired yet; give every instance its own --instance-id"
    )]
    MemberClash {
        instance: String,
        lease: i64,
        grpc: String,
    },
}

impl EtcdError {
    /// Does this error say that the lease is gone (rather than etcd being
    /// unreachable)?
    pub fn is_lease_gone(&self) -> bool {
        match self {
            EtcdError::LeaseGone { .. } => true,
            EtcdError::Request { message, .. } => message_says_lease_gone(message),
            _ => false,
        }
    }
}

/// etcd's words for a lease that does not exist ("etcdserver: requested
/// lease not found"), and etcd-client's ("lease not found").
pub(crate) fn message_says_lease_gone(message: &str) -> bool {
    message.contains("lease not found")
}

impl From<EtcdError> for RegistryError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::UnknownBot(bot) => RegistryError::UnknownBot(bot),
            EtcdError::NotOwner(bot) => RegistryError::NotOwner(bot),
            other => RegistryError::Unavailable(other.to_string()),
        }
    }
}

/// An etcd-client error as a message that cannot leak a token (a value or
/// a key could in theory be quoted back).
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    let text = match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    redact_tokens(&text).into_owned()
}

/// Runs one etcd request with a deadline.
pub(crate) async fn call<T, F>(what: &'static str, after: Duration, fut: F) -> Result<T, EtcdError>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EtcdError::Request {
            what,
            message: describe(&e),
        }),
        Err(_) => Err(EtcdError::Timeout { what, after }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_gone_is_recognised() {
        let e = EtcdError::Request {
            what: "claim",
            message: "NotFound: etcdserver: requested lease not found".into(),
        };
        assert!(e.is_lease_gone());
        assert!(
            !EtcdError::Timeout {
                what: "claim",
                after: Duration::from_secs(1)
            }
            .is_lease_gone()
        );
    }

    #[test]
    fn descriptions_are_redacted() {
        let e = etcd_client::Error::InvalidArgs(
            "bad value 123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        );
        let text = describe(&e);
        assert!(!text.contains("AAAAAAAAAAAAAAAAAAAA"), "{text}");
        assert!(text.contains("123456:***"), "{text}");
    }
}
