//! A validated message: what a `SendRequest` (or a `CallRequest`, see
//! [`crate::call`]) becomes once it passed the checks that Telegram would
//! otherwise answer with a 400. Both travel as one [`Message`] through the
//! same idempotency, routing, queues and limits; only its [`Body`] differs.

use std::sync::Arc;

use shardgate_proto::v1::{self as pb, SendRequest};
use shardgate_sched::Priority;
use shardgate_telegram::{Extras, ParseMode};

use crate::SendError;
use crate::call::Call;

/// Telegram's limit on message text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Bound on caller-chosen strings we keep in memory.
const MAX_KEY_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chat that picks the bot: its id, the key of an `@username`
    /// ([`crate::call::username_key`]), or 0 for a call that names none.
    pub chat_id: i64,
    pub user_id: i64,
    /// What is sent: a `sendMessage`, or any Bot API call.
    pub body: Body,
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
    /// Its class in the bot's scheduler (Normal unless the caller asked).
    pub priority: Priority,
}

/// What a message sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `sendMessage` from a `SendRequest`.
    Text(Text),
    /// Any Bot API method from a `CallRequest` (shared: a retry or a
    /// re-route resends the same parameters and upload bytes).
    Call(Arc<Call>),
}

/// The `sendMessage` form of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text {
    pub text: String,
    pub parse_mode: Option<ParseMode>,
    pub disable_notification: bool,
    /// Keyboard, topic, paid flag and the other `sendMessage` parameters.
    pub extras: Extras,
}

impl Body {
    /// A `sendMessage` of plain `text` (no parse mode, no extras).
    pub fn text(text: impl Into<String>) -> Body {
        Body::Text(Text {
            text: text.into(),
            ..Text::default()
        })
    }

    /// The call, if this is one.
    pub fn call(&self) -> Option<&Call> {
        match self {
            Body::Call(c) => Some(c),
            Body::Text(_) => None,
        }
    }

    fn cost_bytes(&self) -> usize {
        match self {
            Body::Text(t) => t.text.len() + t.extras.cost_bytes(),
            Body::Call(c) => c.cost_bytes(),
        }
    }
}

impl Message {
    /// What this message is charged against the byte bounds while queued
    /// (a call's uploads included).
    pub fn cost_bytes(&self) -> u64 {
        let strings = self.body.cost_bytes()
            + self.idempotency_key.as_ref().map_or(0, String::len)
            + self.client_ref.len()
            + self.bot.as_ref().map_or(0, String::len)
            + self.traceparent.as_ref().map_or(0, String::len);
        u64::try_from(strings).unwrap_or(u64::MAX) + crate::budget::MESSAGE_OVERHEAD_BYTES
    }

    /// Messages it puts into its chat in one request: an album's items, the
    /// ids of a copy or forward of many; 1 for everything else.
    pub fn items(&self) -> u16 {
        match &self.body {
            Body::Call(c) if c.limited_by_chat() => u16::try_from(c.items).unwrap_or(u16::MAX),
            _ => 1,
        }
    }

    /// Sent with `allow_paid_broadcast` (on a method that takes it): the
    /// bot may go past its free rate for it, up to `paid_bot_max`.
    pub fn paid(&self) -> bool {
        match &self.body {
            Body::Text(t) => t.extras.allow_paid_broadcast,
            Body::Call(c) => c.paid,
        }
    }

    /// Whether the chat's (and a group's) limits apply: a sendMessage, a
    /// send-type call or an edit in a chat. Other calls meet the bot's
    /// limit only.
    pub fn limited_by_chat(&self) -> bool {
        match &self.body {
            Body::Text(_) => true,
            Body::Call(c) => c.limited_by_chat(),
        }
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
    /// A digest (xxh3-128) of what the message asks: its chat, user and
    /// pinned bot, and its body (text, parse mode, notification flag and
    /// extra parameters; or a call's method, parameters and uploads, each
    /// upload by name, file name, type and a digest of its bytes). A retry
    /// under one `idempotency_key` must have the same digest. Deadlines,
    /// priority, `client_ref` and trace context are not part of it: a retry
    /// may change them.
    pub fn content_digest(&self) -> u128 {
        let mut h = Digester(xxhash_rust::xxh3::Xxh3::new());
        h.int(self.chat_id);
        h.int(self.user_id);
        h.str(self.bot.as_deref().unwrap_or(""));
        match &self.body {
            Body::Text(t) => {
                h.0.update(b"T");
                h.str(&t.text);
                h.str(t.parse_mode.map_or("", ParseMode::as_str));
                h.0.update(&[u8::from(t.disable_notification)]);
                h.json(&t.extras);
            }
            Body::Call(c) => {
                h.0.update(b"C");
                h.str(&c.method);
                h.json(&c.params);
                h.int(i64::try_from(c.files.len()).unwrap_or(i64::MAX));
                for f in &c.files {
                    h.str(&f.name);
                    h.str(&f.filename);
                    h.str(&f.content_type);
                    h.0.update(&xxhash_rust::xxh3::xxh3_128(&f.data).to_le_bytes());
                }
            }
        }
        h.0.digest128()
    }
}

/// Feeds [`Message::content_digest`]: each string length-prefixed, so that
/// field boundaries cannot be shifted (`"ab" + "c"` is not `"a" + "bc"`).
struct Digester(xxhash_rust::xxh3::Xxh3);

impl Digester {
    fn int(&mut self, n: i64) {
        self.0.update(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }

    /// JSON with sorted object keys (serde_json's map is ordered), so equal
    /// parameters digest equally however the caller ordered them.
    fn json(&mut self, v: &impl serde::Serialize) {
        // Serialising JSON values (or the extras) into memory cannot fail;
        // if it ever did, the value adds nothing rather than a panic.
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        self.int(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
        self.0.update(&bytes);
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
        check_keys(&req.idempotency_key, &req.client_ref)?;
        check_bot(&req.bot)?;
        let priority = priority_of(req.priority)?;
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
            body: Body::Text(Text {
                text: req.text,
                parse_mode,
                disable_notification: req.disable_notification,
                extras,
            }),
            idempotency_key: (!req.idempotency_key.is_empty()).then_some(req.idempotency_key),
            client_ref: req.client_ref,
            bot: (!req.bot.is_empty()).then_some(req.bot),
            allow_failover: req.allow_failover,
            traceparent: traceparent_of(req.traceparent),
            timeout: timeout_of(req.timeout_ms),
            priority,
        })
    }
}

/// The caller's keys fit in memory (`idempotency_key`, `client_ref`).
/// A pinned `bot` is checked like a bot name in the bots file before it is
/// echoed in any error ("unknown bot ..."): bounded, and no control
/// characters, quotes or token-shaped text a caller could smuggle into logs.
pub(crate) fn check_bot(bot: &str) -> Result<(), SendError> {
    if !bot.is_empty() && !shardgate_registry::valid_bot_name(bot) {
        return Err(SendError::Invalid(
            "bot must be a bot name: 1 to 64 of A-Z a-z 0-9 - _ . (or empty)".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_keys(idempotency_key: &str, client_ref: &str) -> Result<(), SendError> {
    if idempotency_key.len() > MAX_KEY_BYTES {
        return Err(SendError::Invalid(format!(
            "idempotency_key is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    if client_ref.len() > MAX_KEY_BYTES {
        return Err(SendError::Invalid(format!(
            "client_ref is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A trace context short enough to keep; anything else is dropped.
pub(crate) fn traceparent_of(traceparent: String) -> Option<String> {
    (!traceparent.is_empty() && traceparent.len() <= MAX_KEY_BYTES).then_some(traceparent)
}

/// `timeout_ms` as a duration (0 = none).
pub(crate) fn timeout_of(timeout_ms: u32) -> Option<std::time::Duration> {
    (timeout_ms > 0).then(|| std::time::Duration::from_millis(u64::from(timeout_ms)))
}

/// The scheduler class of a wire priority (unspecified = Normal).
pub(crate) fn priority_of(wire: i32) -> Result<Priority, SendError> {
    match pb::Priority::try_from(wire) {
        Ok(pb::Priority::Interactive) => Ok(Priority::Interactive),
        Ok(pb::Priority::Unspecified | pb::Priority::Normal) => Ok(Priority::Normal),
        Ok(pb::Priority::Bulk) => Ok(Priority::Bulk),
        Err(_) => Err(SendError::Invalid(format!(
            "priority {wire} is not one of PRIORITY_UNSPECIFIED, PRIORITY_INTERACTIVE, PRIORITY_NORMAL, PRIORITY_BULK"
        ))),
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
        let Body::Text(t) = &m.body else {
            panic!("a text")
        };
        assert_eq!(t.parse_mode, Some(ParseMode::MarkdownV2));
        assert_eq!(m.bot, None);
        assert_eq!(m.idempotency_key, None);
        assert_eq!(t.extras, Extras::default());
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
        let Body::Text(extras) = &rich.body else {
            panic!("a text")
        };
        let extras = &extras.extras;
        assert_eq!(extras.message_thread_id, Some(12));
        assert!(extras.allow_paid_broadcast);
        assert_eq!(extras.params["protect_content"], true);
        assert_eq!(
            rich.cost_bytes() - plain.cost_bytes(),
            extras.cost_bytes() as u64
        );
    }

    #[test]
    fn the_content_digest_changes_with_what_is_asked_and_not_with_how() {
        let base = SendRequest {
            idempotency_key: "k".into(),
            params_json: r#"{"protect_content":true,"link_preview_options":{"is_disabled":true}}"#
                .into(),
            ..req(5, "hello")
        };
        let digest = |r: SendRequest| Message::from_request(r).expect("valid").content_digest();
        let d = digest(base.clone());
        // A retry may change its deadline, priority, client_ref, trace and
        // the order of its parameters' keys.
        assert_eq!(
            d,
            digest(SendRequest {
                client_ref: "retry-2".into(),
                timeout_ms: 5_000,
                priority: pb::Priority::Bulk.into(),
                params_json:
                    r#"{"link_preview_options":{"is_disabled":true},"protect_content":true}"#.into(),
                ..base.clone()
            })
        );
        let others = [
            SendRequest {
                text: "hello!".into(),
                ..base.clone()
            },
            SendRequest {
                chat_id: 6,
                ..base.clone()
            },
            SendRequest {
                user_id: 9,
                ..base.clone()
            },
            SendRequest {
                bot: "alpha".into(),
                ..base.clone()
            },
            SendRequest {
                parse_mode: "HTML".into(),
                ..base.clone()
            },
            SendRequest {
                disable_notification: true,
                ..base.clone()
            },
            SendRequest {
                params_json: r#"{"protect_content":false}"#.into(),
                ..base.clone()
            },
            SendRequest {
                message_thread_id: 3,
                ..base.clone()
            },
        ];
        for (i, other) in others.into_iter().enumerate() {
            assert_ne!(d, digest(other), "change {i} asks something else");
        }
    }

    #[test]
    fn a_calls_digest_covers_its_method_parameters_and_upload_bytes() {
        let call = |method: &str, params: &str, data: &[u8]| {
            Message::from_call(pb::CallRequest {
                method: method.into(),
                params_json: params.into(),
                files: vec![pb::InputFile {
                    name: "photo".into(),
                    filename: "a.jpg".into(),
                    content_type: "image/jpeg".into(),
                    data: data.to_vec().into(),
                }],
                ..pb::CallRequest::default()
            })
            .expect("valid")
            .content_digest()
        };
        let p = r#"{"chat_id":5,"photo":"attach://photo"}"#;
        let d = call("sendPhoto", p, b"jpeg-1");
        assert_eq!(d, call("sendPhoto", p, b"jpeg-1"));
        assert_ne!(d, call("sendPhoto", p, b"jpeg-2"), "other bytes");
        assert_ne!(
            d,
            call(
                "sendDocument",
                r#"{"chat_id":5,"document":"attach://photo"}"#,
                b"jpeg-1"
            )
        );
        assert_ne!(
            d,
            call(
                "sendPhoto",
                r#"{"chat_id":5,"photo":"attach://photo","caption":"x"}"#,
                b"jpeg-1"
            )
        );
    }
}
