//! The request and answer payloads Shardgate exchanges with the Bot API: the
//! `sendMessage` parameters it uses (the rich ones in [`Extras`]), the text
//! parse modes, and `getMe`'s answer.
//! Serialized field names follow the Bot API, so these structs are the JSON bodies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::extras::Extras;

/// Telegram's text formatting modes (`parse_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParseMode {
    /// `HTML`
    #[serde(rename = "HTML")]
    Html,
    /// `Markdown` (legacy)
    Markdown,
    /// `MarkdownV2`
    MarkdownV2,
}

impl ParseMode {
    /// The Bot API spelling: `HTML`, `Markdown` or `MarkdownV2`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseMode::Html => "HTML",
            ParseMode::Markdown => "Markdown",
            ParseMode::MarkdownV2 => "MarkdownV2",
        }
    }
}

impl fmt::Display for ParseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `parse_mode` string that is not one of Telegram's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown parse_mode {0:?}; expected HTML, Markdown or MarkdownV2")]
pub struct ParseModeError(pub String);

/// Case-insensitive; an empty string is an error (the caller maps "" to `None`).
impl FromStr for ParseMode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("html") {
            Ok(ParseMode::Html)
        } else if t.eq_ignore_ascii_case("markdown") {
            Ok(ParseMode::Markdown)
        } else if t.eq_ignore_ascii_case("markdownv2") {
            Ok(ParseMode::MarkdownV2)
        } else {
            // Bounded so a hostile caller cannot blow up error messages.
            Err(ParseModeError(t.chars().take(32).collect()))
        }
    }
}

/// The `sendMessage` parameters Shardgate uses; serializes to the request body
/// (`parse_mode` omitted when `None`, `disable_notification` when `false`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendMessage {
    /// Target chat (negative for groups and channels).
    pub chat_id: i64,
    /// Message text, at most 4096 characters (Telegram enforces it).
    pub text: String,
    /// Formatting mode, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_mode: Option<ParseMode>,
    /// Deliver silently.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_notification: bool,
    /// Keyboard, topic, paid flag and any other parameter, in the same body.
    #[serde(flatten)]
    pub extras: Extras,
}

/// `getMe`'s answer, the fields Shardgate needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotInfo {
    /// The bot's user id (equals the token's bot id).
    pub id: u64,
    /// The bot's `@username` without the `@` (empty if Telegram sent none).
    #[serde(default)]
    pub username: String,
    /// The bot's display name.
    #[serde(default)]
    pub first_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_mode_from_str() {
        for (s, want) in [
            ("HTML", ParseMode::Html),
            ("html", ParseMode::Html),
            ("Markdown", ParseMode::Markdown),
            ("MARKDOWN", ParseMode::Markdown),
            ("MarkdownV2", ParseMode::MarkdownV2),
            ("markdownv2", ParseMode::MarkdownV2),
        ] {
            assert_eq!(s.parse::<ParseMode>(), Ok(want), "{s}");
            assert_eq!(want.as_str().parse::<ParseMode>(), Ok(want));
            assert_eq!(want.to_string(), want.as_str());
        }
        assert!("".parse::<ParseMode>().is_err());
        assert!("markdown3".parse::<ParseMode>().is_err());
        let err = "x".repeat(1000).parse::<ParseMode>().expect_err("bad");
        assert!(err.to_string().len() < 120);
    }

    #[test]
    fn send_message_json_body() {
        let plain = SendMessage {
            chat_id: -100123,
            text: "hi \"there\"".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&plain).expect("json"),
            serde_json::json!({"chat_id": -100123, "text": "hi \"there\""})
        );
        let full = SendMessage {
            chat_id: 42,
            text: "<b>x</b>".into(),
            parse_mode: Some(ParseMode::Html),
            disable_notification: true,
            ..Default::default()
        };
        let v = serde_json::to_value(&full).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"chat_id": 42, "text": "<b>x</b>", "parse_mode": "HTML", "disable_notification": true})
        );
        assert_eq!(
            serde_json::from_value::<SendMessage>(v).expect("back"),
            full
        );
        let v2 = serde_json::to_value(SendMessage {
            parse_mode: Some(ParseMode::MarkdownV2),
            ..plain
        })
        .expect("json");
        assert_eq!(v2["parse_mode"], "MarkdownV2");
    }

    #[test]
    fn extras_share_the_body_with_the_typed_parameters() {
        let extras = Extras::parse(
            r#"{"inline_keyboard":[[{"text":"Open","url":"https://example.org"}]]}"#,
            r#"{"link_preview_options":{"is_disabled":true}}"#,
            3,
            false,
        )
        .expect("valid");
        let msg = SendMessage {
            chat_id: -1001,
            text: "hi".into(),
            extras,
            ..Default::default()
        };
        let v = serde_json::to_value(&msg).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "chat_id": -1001,
                "text": "hi",
                "message_thread_id": 3,
                "reply_markup": {"inline_keyboard": [[{"text": "Open", "url": "https://example.org"}]]},
                "link_preview_options": {"is_disabled": true},
            })
        );
        assert_eq!(serde_json::from_value::<SendMessage>(v).expect("back"), msg);
    }

    #[test]
    fn bot_info_is_lenient() {
        let info: BotInfo = serde_json::from_str(
            r#"{"id":7,"is_bot":true,"first_name":"B","username":"b_bot","x":1}"#,
        )
        .expect("parse");
        assert_eq!(
            info,
            BotInfo {
                id: 7,
                username: "b_bot".into(),
                first_name: "B".into()
            }
        );
        let info: BotInfo = serde_json::from_str(r#"{"id":7}"#).expect("parse");
        assert_eq!(info.username, "");
    }
}
