//! What a caller asks for when it creates a broadcast: the job's id, the
//! message template, its priority, an optional fleet-wide rate cap, a start
//! time and the dry-run flag.
//!
//! The template is opaque here: the gateway stores the encoded request it
//! received (a `SendRequest` or a send-type `CallRequest`) and fills in the
//! chat id per recipient when it sends. Keeping it as bytes means this crate
//! does not depend on the wire protocol and a stored job survives changes to
//! it that protobuf's compatibility rules allow.

use std::fmt;

use crate::JobError;

/// The longest job id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The largest template accepted, in bytes (the Bot API's largest text
/// message with entities and markup is far below this).
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// A job's id: 1 to [`MAX_ID_LEN`] bytes of ASCII letters, digits, `-`,
/// `_` and `.`. The id is a key in the store (and a path segment under
/// `jobs/<id>/` in etcd), so anything that could break a key is refused.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(String);

impl JobId {
    /// Checks `id` and wraps it.
    pub fn new(id: &str) -> Result<JobId, JobError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && id != "."
            && id != "..";
        if ok {
            Ok(JobId(id.to_owned()))
        } else {
            Err(JobError::InvalidId {
                len: id.len(),
                max: MAX_ID_LEN,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The message every recipient gets, as the encoded request the caller
/// sent. `chat_id` inside it is replaced per recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Template {
    /// An encoded `SendRequest` (text message).
    Send(Vec<u8>),
    /// An encoded send-type `CallRequest` (for example `sendPhoto` by
    /// file_id).
    Call(Vec<u8>),
}

impl Template {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Template::Send(b) | Template::Call(b) => b,
        }
    }
}

/// The lane a job's messages go in: the scheduler's own classes, so that a
/// job's messages meet interactive and normal traffic in one bot queue.
pub use shardgate_sched::Priority;

/// A broadcast's class when its creator names none: [`Priority::Bulk`],
/// after interactive and normal traffic (a `Send`'s default is `Normal`).
pub const DEFAULT_PRIORITY: Priority = Priority::Bulk;

/// A class's name, as job listings and logs show it.
pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Interactive => "INTERACTIVE",
        Priority::Normal => "NORMAL",
        Priority::Bulk => "BULK",
    }
}

/// A broadcast as its creator asked for it. Immutable once stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    pub id: JobId,
    pub template: Template,
    pub priority: Priority,
    /// A cap over the whole fleet in messages per second; 0 = what the
    /// bots' limits allow.
    pub rate_per_s: u32,
    /// Unix seconds before which nothing is sent; 0 = at once.
    pub start_at: i64,
    /// Plan only: the job is answered as "planned" and never sent or stored.
    pub dry_run: bool,
    /// The caller that created the job (empty: auth off). Its messages go
    /// out under that caller's bots, chats and quota, also after a restart.
    pub caller: String,
}

impl JobSpec {
    /// Checks what the types cannot: the template's size and the start time.
    pub fn validate(&self) -> Result<(), JobError> {
        let len = self.template.bytes().len();
        if len == 0 || len > MAX_TEMPLATE_BYTES {
            return Err(JobError::InvalidTemplate {
                len,
                max: MAX_TEMPLATE_BYTES,
            });
        }
        if self.start_at < 0 {
            return Err(JobError::InvalidStartAt(self.start_at));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_that_could_break_a_key_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(JobId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "news-2026.12_03", &"x".repeat(MAX_ID_LEN)] {
            assert_eq!(
                JobId::new(good).map(|i| i.to_string()).ok(),
                Some(good.to_owned())
            );
        }
    }

    #[test]
    fn a_spec_needs_a_template_of_bounded_size_and_a_start_time_not_before_1970() {
        let spec = |template: Vec<u8>, start_at| JobSpec {
            id: JobId::new("j").unwrap(),
            template: Template::Send(template),
            priority: DEFAULT_PRIORITY,
            rate_per_s: 0,
            start_at,
            dry_run: false,
            caller: String::new(),
        };
        assert!(spec(vec![1], 0).validate().is_ok());
        assert!(spec(vec![], 0).validate().is_err());
        assert!(spec(vec![0; MAX_TEMPLATE_BYTES + 1], 0).validate().is_err());
        assert!(spec(vec![1], -1).validate().is_err());
        assert_eq!(DEFAULT_PRIORITY, Priority::Bulk);
        assert_eq!(priority_name(DEFAULT_PRIORITY), "BULK");
    }
}
