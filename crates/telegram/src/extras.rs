//! The `sendMessage` parameters beyond text: a keyboard (`reply_markup`), a
//! forum topic, the paid-broadcast flag and any other parameter as JSON.
//!
//! They exist so that a service can send what a Bot API library sends (buttons,
//! topics, entities, link previews, replies) through the gateway's limits. The
//! door checks their shape here, once, so that a malformed keyboard is an
//! `INVALID_ARGUMENT` naming the field at the caller instead of a 400 from
//! Telegram after the message waited its turn.
//!
//! The rules themselves (the four markup shapes, the keys typed fields own)
//! are the Bot API's and live in `shardgate-botapi`; this module adds the
//! byte bound and keeps the checked values for the request body.
//!
//! Invariant: an [`Extras`] never carries a key that a typed parameter of
//! [`SendMessage`](crate::SendMessage) owns (`check_send_params` refuses
//! them), so the body serialized with `#[serde(flatten)]` has each key once
//! (a duplicate key is the kind of ambiguity Bot API servers resolve
//! differently).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shardgate_botapi::{
    PARAMS_FIELD, ParamError, REPLY_MARKUP_FIELD, check_send_params, parse_params,
    reply_markup_kind,
};

/// Bound on each JSON field, in bytes. A 100-button keyboard with long
/// callback data is about 10 KiB; entities of a 4096-character text about 30.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// What is wrong with a rich parameter; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtrasError {
    /// The field is longer than [`MAX_JSON_BYTES`].
    #[error("{field} is {len} bytes; at most {MAX_JSON_BYTES} are accepted")]
    TooLong { field: &'static str, len: usize },
    /// Not JSON, not an object, not one of Telegram's markups, or
    /// `params_json` setting a key a typed field owns (the Bot API rules of
    /// `shardgate-botapi`).
    #[error(transparent)]
    Invalid(#[from] ParamError),
    /// `message_thread_id` is negative.
    #[error("message_thread_id must be positive (0 = none)")]
    ThreadId,
}

/// Validated extra parameters of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Extras {
    /// Forum topic to send into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_thread_id: Option<i64>,
    /// A keyboard or its removal, as Telegram's JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_markup: Option<Value>,
    /// Paid broadcast: may exceed the bot's free rate (costs Stars).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_paid_broadcast: bool,
    /// Every other parameter, passed through as given.
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

impl Extras {
    /// Checks the request's rich fields: empty strings and 0 mean absent.
    pub fn parse(
        reply_markup_json: &str,
        params_json: &str,
        message_thread_id: i64,
        allow_paid_broadcast: bool,
    ) -> Result<Extras, ExtrasError> {
        if message_thread_id < 0 {
            return Err(ExtrasError::ThreadId);
        }
        let reply_markup = if reply_markup_json.trim().is_empty() {
            None
        } else {
            let markup = parse_params(
                REPLY_MARKUP_FIELD,
                bounded(REPLY_MARKUP_FIELD, reply_markup_json)?,
            )?;
            reply_markup_kind(&markup)?;
            Some(Value::Object(markup))
        };
        let params = check_send_params(bounded(PARAMS_FIELD, params_json)?)?;
        Ok(Extras {
            message_thread_id: (message_thread_id > 0).then_some(message_thread_id),
            reply_markup,
            allow_paid_broadcast,
            params,
        })
    }

    /// The JSON fields back as strings, for a forwarded request:
    /// `(reply_markup_json, params_json)`, empty when absent.
    pub fn to_json_fields(&self) -> (String, String) {
        let markup = self
            .reply_markup
            .as_ref()
            .map_or_else(String::new, Value::to_string);
        let params = if self.params.is_empty() {
            String::new()
        } else {
            Value::Object(self.params.clone()).to_string()
        };
        (markup, params)
    }

    /// About what these parameters take in memory while a message is queued
    /// (their JSON length; the byte bounds charge it).
    pub fn cost_bytes(&self) -> usize {
        let (markup, params) = self.to_json_fields();
        markup.len() + params.len()
    }
}

/// `text`, if within [`MAX_JSON_BYTES`].
fn bounded<'a>(field: &'static str, text: &'a str) -> Result<&'a str, ExtrasError> {
    if text.len() > MAX_JSON_BYTES {
        return Err(ExtrasError::TooLong {
            field,
            len: text.len(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn empty_fields_mean_no_extras() {
        assert_eq!(Extras::parse("", " ", 0, false), Ok(Extras::default()));
    }

    #[test]
    fn keyboards_of_each_kind_are_accepted() {
        for markup in [
            r#"{"inline_keyboard":[[{"text":"Pay","callback_data":"pay:1"}]]}"#,
            r#"{"keyboard":[[{"text":"Yes"},{"text":"No"}]],"one_time_keyboard":true}"#,
            r#"{"remove_keyboard":true}"#,
            r#"{"force_reply":true,"input_field_placeholder":"why?"}"#,
        ] {
            let e = Extras::parse(markup, "", 0, false).expect(markup);
            assert_eq!(
                e.reply_markup,
                Some(serde_json::from_str(markup).expect("json"))
            );
        }
    }

    #[test]
    fn malformed_markup_is_refused_naming_the_field() {
        for markup in [
            "[1]",
            "{",
            r#"{"text":"x"}"#,
            r#"{"inline_keyboard":{"a":1}}"#,
            r#"{"inline_keyboard":[1,2]}"#,
            r#"{"remove_keyboard":false}"#,
            r#"{"keyboard":[[]],"remove_keyboard":true}"#,
        ] {
            let err = Extras::parse(markup, "", 0, false).expect_err(markup);
            assert!(err.to_string().contains("reply_markup_json"), "{err}");
        }
    }

    #[test]
    fn params_json_may_not_set_a_typed_key() {
        for key in shardgate_botapi::TYPED_SEND_PARAMS {
            let params = json!({ *key: 1, "protect_content": true }).to_string();
            let err = Extras::parse("", &params, 0, false).expect_err(key);
            assert!(
                matches!(err, ExtrasError::Invalid(ParamError::ReservedKey { .. })),
                "{err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = Extras::parse("", "[]", 0, false).expect_err("array");
        assert!(err.to_string().starts_with("params_json"), "{err}");
    }

    #[test]
    fn other_params_pass_through_in_the_body() {
        let e = Extras::parse(
            r#"{"remove_keyboard":true}"#,
            r#"{"entities":[{"type":"bold","offset":0,"length":2}],"protect_content":true}"#,
            7,
            true,
        )
        .expect("valid");
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            json!({
                "message_thread_id": 7,
                "reply_markup": {"remove_keyboard": true},
                "allow_paid_broadcast": true,
                "entities": [{"type": "bold", "offset": 0, "length": 2}],
                "protect_content": true,
            })
        );
        let (markup, params) = e.to_json_fields();
        assert_eq!(Extras::parse(&markup, &params, 7, true), Ok(e.clone()));
        assert_eq!(e.cost_bytes(), markup.len() + params.len());
    }

    #[test]
    fn bounds_and_thread_ids_are_checked() {
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_JSON_BYTES));
        assert!(matches!(
            Extras::parse("", &big, 0, false),
            Err(ExtrasError::TooLong {
                field: "params_json",
                ..
            })
        ));
        assert_eq!(Extras::parse("", "", -1, false), Err(ExtrasError::ThreadId));
    }

    proptest! {
        /// Whatever a caller sends, parsing answers (never panics) and an
        /// error message stays short (serde_json's names a position, not text).
        #[test]
        fn arbitrary_input_is_answered_with_a_short_error(markup in ".{0,200}", params in ".{0,200}") {
            if let Err(e) = Extras::parse(&markup, &params, 0, false) {
                let text = e.to_string();
                prop_assert!(text.len() < 200, "{}", text);
            }
        }
    }
}
