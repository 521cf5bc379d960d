//! The `sendMessage` parameters beyond text: a keyboard (`reply_markup`), a
//! forum topic, the paid-broadcast flag and any other parameter as JSON.
//!
//! They exist so that a service can send what a Bot API library sends (buttons,
//! topics, entities, link previews, replies) through the gateway's limits. The
//! door checks their shape here, once, so that a malformed keyboard is an
//! `INVALID_ARGUMENT` naming the field at the caller instead of a 400 from
//! Telegram after the message waited its turn.
//!
//! Invariant: an [`Extras`] never carries a key that a typed parameter of
//! [`SendMessage`](crate::SendMessage) owns, so the body serialized with
//! `#[serde(flatten)]` has each key once (a duplicate key is the kind of
//! ambiguity Bot API servers resolve differently).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bound on each JSON field, in bytes. A 100-button keyboard with long
/// callback data is about 10 KiB; entities of a 4096-character text about 30.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// `sendMessage` parameters that typed fields own; `params_json` may not set
/// them (the typed field is the one place each is given).
pub const TYPED_KEYS: &[&str] = &[
    "chat_id",
    "text",
    "parse_mode",
    "disable_notification",
    "reply_markup",
    "message_thread_id",
    "allow_paid_broadcast",
];

/// The keys that tell Telegram's four `reply_markup` objects apart.
const MARKUP_KINDS: &[(&str, &str)] = &[
    ("inline_keyboard", "an array of button rows"),
    ("keyboard", "an array of button rows"),
    ("remove_keyboard", "true"),
    ("force_reply", "true"),
];

/// What is wrong with a rich parameter; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtrasError {
    /// The field is longer than [`MAX_JSON_BYTES`].
    #[error("{field} is {len} bytes; at most {MAX_JSON_BYTES} are accepted")]
    TooLong { field: &'static str, len: usize },
    /// The field is not JSON, or not a JSON object.
    #[error("{field} must be a JSON object: {reason}")]
    NotObject { field: &'static str, reason: String },
    /// `reply_markup_json` is an object but none of Telegram's markups.
    #[error("reply_markup_json {0}")]
    Markup(String),
    /// `params_json` sets a key a typed field owns.
    #[error("params_json sets {0:?}, which has its own field; set that field instead")]
    TypedKey(String),
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
        let reply_markup = match object("reply_markup_json", reply_markup_json)? {
            Some(markup) => Some(Value::Object(check_markup(markup)?)),
            None => None,
        };
        let params = object("params_json", params_json)?.unwrap_or_default();
        if let Some(key) = params.keys().find(|k| TYPED_KEYS.contains(&k.as_str())) {
            return Err(ExtrasError::TypedKey(key.clone()));
        }
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

/// Parses a field that must be a JSON object; `Ok(None)` when empty.
fn object(field: &'static str, text: &str) -> Result<Option<Map<String, Value>>, ExtrasError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_JSON_BYTES {
        return Err(ExtrasError::TooLong {
            field,
            len: text.len(),
        });
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(ExtrasError::NotObject {
            field,
            reason: format!("got {}", kind(&other)),
        }),
        // serde_json's message names a line and column, never the input.
        Err(e) => Err(ExtrasError::NotObject {
            field,
            reason: e.to_string(),
        }),
    }
}

/// Exactly one of Telegram's markup kinds, with the right JSON type.
fn check_markup(markup: Map<String, Value>) -> Result<Map<String, Value>, ExtrasError> {
    let present: Vec<&(&str, &str)> = MARKUP_KINDS
        .iter()
        .filter(|(key, _)| markup.contains_key(*key))
        .collect();
    let [(key, expected)] = present.as_slice() else {
        return Err(ExtrasError::Markup(format!(
            "must have exactly one of inline_keyboard, keyboard, remove_keyboard, force_reply (has {})",
            present.len()
        )));
    };
    let ok = match &markup[*key] {
        Value::Array(rows) => {
            matches!(*key, "inline_keyboard" | "keyboard") && rows.iter().all(Value::is_array)
        }
        Value::Bool(true) => matches!(*key, "remove_keyboard" | "force_reply"),
        _ => false,
    };
    if ok {
        Ok(markup)
    } else {
        Err(ExtrasError::Markup(format!("{key} must be {expected}")))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
        for key in TYPED_KEYS {
            let params = json!({ *key: 1, "protect_content": true }).to_string();
            assert_eq!(
                Extras::parse("", &params, 0, false),
                Err(ExtrasError::TypedKey((*key).to_owned()))
            );
        }
        let err = Extras::parse("", "[]", 0, false).expect_err("array");
        assert!(
            err.to_string()
                .starts_with("params_json must be a JSON object")
        );
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
