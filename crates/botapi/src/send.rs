//! The rich fields of a send request, checked at the door: `reply_markup_json` is one of
//! Telegram's reply markup shapes, and `params_json` is a JSON object of further
//! `sendMessage` parameters that leaves alone the parameters the request has typed fields
//! for (a key there would silently fight the field, so it is refused).

use serde_json::Value;

use crate::error::ParamError;
use crate::params::{Params, decoded, parse_params};

/// The request field holding the reply markup.
pub const REPLY_MARKUP_FIELD: &str = "reply_markup_json";
/// The request field holding further parameters.
pub const PARAMS_FIELD: &str = "params_json";

/// Bot API parameters a send request sets through typed fields: `params_json` may not hold
/// them.
pub const TYPED_SEND_PARAMS: &[&str] = &[
    "chat_id",
    "text",
    "parse_mode",
    "disable_notification",
    "reply_markup",
    "message_thread_id",
    "allow_paid_broadcast",
];

/// Which of Telegram's reply markups a `reply_markup_json` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMarkupKind {
    /// `InlineKeyboardMarkup`: `{"inline_keyboard": [[{"text": ..., ...}]]}`.
    InlineKeyboard,
    /// `ReplyKeyboardMarkup`: `{"keyboard": [[{"text": ...} or "text"]]}`.
    ReplyKeyboard,
    /// `ReplyKeyboardRemove`: `{"remove_keyboard": true}`.
    RemoveKeyboard,
    /// `ForceReply`: `{"force_reply": true}`.
    ForceReply,
}

/// The discriminating key of each shape.
const SHAPES: &[(&str, ReplyMarkupKind)] = &[
    ("inline_keyboard", ReplyMarkupKind::InlineKeyboard),
    ("keyboard", ReplyMarkupKind::ReplyKeyboard),
    ("remove_keyboard", ReplyMarkupKind::RemoveKeyboard),
    ("force_reply", ReplyMarkupKind::ForceReply),
];

/// Checks `reply_markup_json` (empty: none) and tells which markup it is.
pub fn check_reply_markup(json: &str) -> Result<Option<ReplyMarkupKind>, ParamError> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    let markup = parse_params(REPLY_MARKUP_FIELD, json)?;
    reply_markup_kind(&markup).map(Some)
}

/// The shape of a reply markup object.
pub fn reply_markup_kind(markup: &Params) -> Result<ReplyMarkupKind, ParamError> {
    let bad = |reason| ParamError::InvalidReplyMarkup {
        field: REPLY_MARKUP_FIELD,
        reason,
    };
    let mut present = SHAPES.iter().filter(|(key, _)| markup.contains_key(*key));
    let (key, kind) = match (present.next(), present.next()) {
        (Some(shape), None) => *shape,
        _ => {
            return Err(bad(
                "must hold exactly one of inline_keyboard, keyboard, remove_keyboard or force_reply",
            ));
        }
    };
    let value = markup.get(key).map(decoded);
    let value = value.as_deref().unwrap_or(&Value::Null);
    match kind {
        ReplyMarkupKind::InlineKeyboard => {
            if !rows_of(value, |b| b.get("text").is_some_and(Value::is_string)) {
                return Err(bad(
                    "inline_keyboard must be an array of rows of buttons, each with a text",
                ));
            }
        }
        ReplyMarkupKind::ReplyKeyboard => {
            let button = |b: &Value| b.is_string() || b.get("text").is_some_and(Value::is_string);
            if !rows_of(value, button) {
                return Err(bad(
                    "keyboard must be an array of rows of buttons, each a text or has one",
                ));
            }
        }
        ReplyMarkupKind::RemoveKeyboard => {
            if value != &Value::Bool(true) {
                return Err(bad("remove_keyboard must be true"));
            }
        }
        ReplyMarkupKind::ForceReply => {
            if value != &Value::Bool(true) {
                return Err(bad("force_reply must be true"));
            }
        }
    }
    Ok(kind)
}

/// True when `value` is an array of arrays whose every element passes `button`.
fn rows_of(value: &Value, button: impl Fn(&Value) -> bool) -> bool {
    value.as_array().is_some_and(|rows| {
        rows.iter()
            .all(|row| row.as_array().is_some_and(|row| row.iter().all(&button)))
    })
}

/// Checks `params_json` (empty: none) and returns its parameters.
pub fn check_send_params(json: &str) -> Result<Params, ParamError> {
    let params = parse_params(PARAMS_FIELD, json)?;
    if let Some(key) = params
        .keys()
        .find(|k| TYPED_SEND_PARAMS.contains(&k.as_str()))
    {
        return Err(ParamError::ReservedKey {
            field: PARAMS_FIELD,
            key: key.clone(),
        });
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_markup_shapes_are_recognised() {
        assert_eq!(check_reply_markup(""), Ok(None));
        assert_eq!(
            check_reply_markup(r#"{"inline_keyboard":[[{"text":"Paid","callback_data":"p"}],[]]}"#),
            Ok(Some(ReplyMarkupKind::InlineKeyboard))
        );
        assert_eq!(
            check_reply_markup(r#"{"keyboard":[["yes",{"text":"no"}]],"resize_keyboard":true}"#),
            Ok(Some(ReplyMarkupKind::ReplyKeyboard))
        );
        assert_eq!(
            check_reply_markup(r#"{"remove_keyboard":true,"selective":false}"#),
            Ok(Some(ReplyMarkupKind::RemoveKeyboard))
        );
        assert_eq!(
            check_reply_markup(r#"{"force_reply":true,"input_field_placeholder":"?"}"#),
            Ok(Some(ReplyMarkupKind::ForceReply))
        );
    }

    #[test]
    fn bad_reply_markup_names_the_field() {
        for bad in [
            "[]",
            "{",
            "{}",
            r#"{"inline_keyboard":[[{"text":"a"}]],"force_reply":true}"#,
            r#"{"inline_keyboard":[{"text":"a"}]}"#,
            r#"{"inline_keyboard":[[{"callback_data":"a"}]]}"#,
            r#"{"keyboard":[[1]]}"#,
            r#"{"remove_keyboard":false}"#,
            r#"{"force_reply":"yes"}"#,
        ] {
            let err = check_reply_markup(bad).unwrap_err();
            assert_eq!(err.field(), REPLY_MARKUP_FIELD, "{bad}");
            assert!(err.to_string().starts_with("reply_markup_json: "), "{err}");
        }
    }

    #[test]
    fn params_json_may_not_hold_typed_fields() {
        let ok = check_send_params(
            r#"{"entities":[],"protect_content":true,"link_preview_options":{"is_disabled":true}}"#,
        );
        assert_eq!(ok.map(|p| p.len()), Ok(3));
        assert_eq!(check_send_params(""), Ok(Params::new()));
        for key in TYPED_SEND_PARAMS {
            let err = check_send_params(&format!("{{\"{key}\":1}}")).unwrap_err();
            assert_eq!(
                err,
                ParamError::ReservedKey {
                    field: PARAMS_FIELD,
                    key: (*key).to_owned()
                }
            );
            assert_eq!(err.field(), PARAMS_FIELD);
        }
        assert_eq!(
            check_send_params("[1]"),
            Err(ParamError::NotAnObject {
                field: PARAMS_FIELD
            })
        );
    }
}
