//! A validated message: what a `SendRequest` becomes once it passed the
//! checks that Telegram would otherwise answer with a 400.

use shardgate_proto::v1::{self as pb, SendRequest};
use shardgate_sched::Priority;
use shardgate_telegram::{Extras, ParseMode};

use crate::SendError;

/// Telegram's limit on message text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Bound on caller-chosen strings we keep in memory.
const MAX_KEY_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub chat_id: i64,
    pub user_id: i64,
    pub text: String,
    pub parse_mode: Option<ParseMode>,
    pub disable_notification: bool,
    pub idempotency_key: Option<String>,
    pub client_ref: String,
    /// Pinned bot name.
    pub bot: Option<String>,
    pub allow_failover: bool,
    /// Per-message time limit (`timeout_ms`), on top of the call's deadline.
    pub timeout: Option<std::time::Duration>,
    /// W3C trace context of this message, if the caller (or a forwarding
    /// instance) gave one.
    pub traceparent: Option<String>,
    /// Keyboard, topic, paid flag and the other `sendMessage` parameters.
    pub extras: Extras,
    /// Its class in the bot's scheduler (Normal unless the caller asked).
    pub priority: Priority,
}

impl Message {
    /// What this message is charged against the byte bounds while queued.
    pub fn cost_bytes(&self) -> u64 {
        let strings = self.text.len()
            + self.idempotency_key.as_ref().map_or(0, String::len)
            + self.client_ref.len()
            + self.bot.as_ref().map_or(0, String::len)
            + self.traceparent.as_ref().map_or(0, String::len)
            + self.extras.cost_bytes();
        u64::try_from(strings).unwrap_or(u64::MAX) + crate::budget::MESSAGE_OVERHEAD_BYTES
    }

    /// The earlier of the call's deadline and this message's own limit,
    /// counted from now.
    pub fn deadline(&self, call: Option<tokio::time::Instant>) -> Option<tokio::time::Instant> {
        let own = self.timeout.map(|t| tokio::time::Instant::now() + t);
        match (call, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Message {
    /// Validates a request; errors name the field and the rule.
    pub fn from_request(req: SendRequest) -> Result<Message, SendError> {
        if req.chat_id == 0 {
            return Err(SendError::Invalid("chat_id must be set (non-zero)".into()));
        }
        if req.text.trim().is_empty() {
            return Err(SendError::Invalid("text must not be empty".into()));
        }
        let chars = req.text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(SendError::Invalid(format!(
                "text is {chars} characters; Telegram allows at most {MAX_TEXT_CHARS}"
            )));
        }
        let parse_mode = if req.parse_mode.is_empty() {
            None
        } else {
            Some(req.parse_mode.parse::<ParseMode>().map_err(|_| {
                SendError::Invalid(format!(
                    "parse_mode {:?} is not one of HTML, Markdown, MarkdownV2 (or empty)",
                    truncate(&req.parse_mode)
                ))
            })?)
        };
        if req.idempotency_key.len() > MAX_KEY_BYTES {
            return Err(SendError::Invalid(format!(
                "idempotency_key is longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        // Checked like a bot name in the bots file before it is echoed in
        // any error ("unknown bot ..."): bounded, and no control characters,
        // quotes or token-shaped text a caller could smuggle into logs.
        if !req.bot.is_empty() && !shardgate_registry::valid_bot_name(&req.bot) {
            return Err(SendError::Invalid(
                "bot must be a bot name: 1 to 64 of A-Z a-z 0-9 - _ . (or empty)".into(),
            ));
        }
        if req.client_ref.len() > MAX_KEY_BYTES {
            return Err(SendError::Invalid(format!(
                "client_ref is longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        let priority = match pb::Priority::try_from(req.priority) {
            Ok(pb::Priority::Interactive) => Priority::Interactive,
            Ok(pb::Priority::Unspecified | pb::Priority::Normal) => Priority::Normal,
            Ok(pb::Priority::Bulk) => Priority::Bulk,
            Err(_) => {
                return Err(SendError::Invalid(format!(
                    "priority {} is not one of PRIORITY_UNSPECIFIED, PRIORITY_INTERACTIVE, PRIORITY_NORMAL, PRIORITY_BULK",
                    req.priority
                )));
            }
        };
        let extras = Extras::parse(
            &req.reply_markup_json,
            &req.params_json,
            req.message_thread_id,
            req.allow_paid_broadcast,
        )
        .map_err(|e| SendError::Invalid(e.to_string()))?;
        Ok(Message {
            chat_id: req.chat_id,
            user_id: req.user_id,
            text: req.text,
            parse_mode,
            disable_notification: req.disable_notification,
            idempotency_key: (!req.idempotency_key.is_empty()).then_some(req.idempotency_key),
            client_ref: req.client_ref,
            bot: (!req.bot.is_empty()).then_some(req.bot),
            allow_failover: req.allow_failover,
            traceparent: (!req.traceparent.is_empty() && req.traceparent.len() <= MAX_KEY_BYTES)
                .then_some(req.traceparent),
            timeout: (req.timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(u64::from(req.timeout_ms))),
            extras,
            priority,
        })
    }
}

/// The wire value of a scheduler class, for a message forwarded to a peer
/// (the inverse of the mapping in [`Message::from_request`]).
pub(crate) fn wire_priority(p: Priority) -> i32 {
    match p {
        Priority::Interactive => pb::Priority::Interactive,
        Priority::Normal => pb::Priority::Normal,
        Priority::Bulk => pb::Priority::Bulk,
    }
    .into()
}

/// Caller strings echoed in errors are cut short.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn req(chat_id: i64, text: &str) -> SendRequest {
        SendRequest {
            chat_id,
            text: text.into(),
            ..SendRequest::default()
        }
    }

    #[test]
    fn a_pinned_bot_that_is_no_bot_name_is_refused_without_echoing_it() {
        let secret = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
        for bot in [
            "x".repeat(65),
            secret.to_string(),
            "a\nb".into(),
            "bot\u{202e}".into(),
            "\"quoted\"".into(),
            "with space".into(),
        ] {
            let e = Message::from_request(SendRequest {
                bot: bot.clone(),
                ..req(1, "hi")
            })
            .expect_err(&bot);
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(!e.to_string().contains(&bot), "{e}");
            assert!(!e.to_string().contains("AAHdq"), "{e}");
        }
        for bot in ["alpha", "bot-1", "a.b_c", &"x".repeat(64)] {
            let m = Message::from_request(SendRequest {
                bot: bot.to_string(),
                ..req(1, "hi")
            })
            .expect(bot);
            assert_eq!(m.bot.as_deref(), Some(bot));
        }
    }

    #[test]
    fn rejects_bad_input_with_invalid_argument() {
        let too_long = "x".repeat(MAX_TEXT_CHARS + 1);
        let cases = [
            req(0, "hi"),
            req(1, ""),
            req(1, "   \n"),
            req(1, &too_long),
            SendRequest {
                parse_mode: "XML".into(),
                ..req(1, "hi")
            },
            SendRequest {
                idempotency_key: "k".repeat(300),
                ..req(1, "hi")
            },
            SendRequest {
                reply_markup_json: r#"{"inline_keyboard":7}"#.into(),
                ..req(1, "hi")
            },
            SendRequest {
                params_json: r#"{"text":"twice"}"#.into(),
                ..req(1, "hi")
            },
            SendRequest {
                message_thread_id: -3,
                ..req(1, "hi")
            },
            SendRequest {
                priority: 9,
                ..req(1, "hi")
            },
        ];
        for r in cases {
            let err = Message::from_request(r).expect_err("invalid");
            assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let ok = "é".repeat(MAX_TEXT_CHARS);
        assert!(Message::from_request(req(1, &ok)).is_ok());
    }

    #[test]
    fn empty_strings_mean_absent() {
        let m = Message::from_request(SendRequest {
            parse_mode: "markdownv2".into(),
            ..req(-100, "hi")
        })
        .expect("valid");
        assert_eq!(m.parse_mode, Some(ParseMode::MarkdownV2));
        assert_eq!(m.bot, None);
        assert_eq!(m.idempotency_key, None);
        assert_eq!(m.extras, Extras::default());
    }

    #[test]
    fn rich_fields_are_kept_and_charged() {
        let plain = Message::from_request(req(5, "pay?")).expect("valid");
        let rich = Message::from_request(SendRequest {
            reply_markup_json: r#"{"inline_keyboard":[[{"text":"Pay","callback_data":"p"}]]}"#
                .into(),
            params_json: r#"{"protect_content":true}"#.into(),
            message_thread_id: 12,
            allow_paid_broadcast: true,
            priority: pb::Priority::Interactive.into(),
            ..req(5, "pay?")
        })
        .expect("valid");
        assert_eq!(rich.priority, Priority::Interactive);
        for p in [Priority::Interactive, Priority::Normal, Priority::Bulk] {
            let back = Message::from_request(SendRequest {
                priority: wire_priority(p),
                ..req(5, "x")
            })
            .expect("valid");
            assert_eq!(back.priority, p, "a forwarded class comes back as itself");
        }
        assert_eq!(plain.priority, Priority::Normal);
        assert_eq!(rich.extras.message_thread_id, Some(12));
        assert!(rich.extras.allow_paid_broadcast);
        assert_eq!(rich.extras.params["protect_content"], true);
        assert_eq!(
            rich.cost_bytes() - plain.cost_bytes(),
            rich.extras.cost_bytes() as u64
        );
    }
}
