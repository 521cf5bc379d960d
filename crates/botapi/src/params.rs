//! Reading a call's parameters: the JSON object itself, the chat a call goes to, how many
//! messages it carries, and the message an edit targets.
//!
//! Parameters arrive as JSON, or as form fields whose values are strings (the Bot API takes
//! `chat_id=123` and `media=[...]` as text). Every reader here accepts both: an integer may
//! be a string of digits, and an array or object may be a string holding its JSON. Nothing
//! here panics on any JSON (property-tested).

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::ParamError;
use crate::table::{Class, Items, MESSAGE_IDS, classify};

/// A call's parameters, by name.
pub type Params = Map<String, Value>;

/// Parses `json` (the `field` of a request) as the parameters of a call. An empty (or
/// all-blank) string is an empty object.
pub fn parse_params(field: &'static str, json: &str) -> Result<Params, ParamError> {
    if json.trim().is_empty() {
        return Ok(Params::new());
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParamError::NotAnObject { field }),
        Err(e) => Err(ParamError::InvalidJson {
            field,
            reason: e.to_string(),
        }),
    }
}

/// Where a call goes, as the limits key it: a numeric chat id or a public `@username`
/// (channels and supergroups), kept in lower case since Telegram compares usernames
/// case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChatTarget {
    /// A numeric chat id (never 0; negative for groups, supergroups and channels).
    Id(i64),
    /// `@username`, lower-cased, with its `@`.
    Username(String),
}

impl ChatTarget {
    /// Whether the group limit applies: negative ids, and usernames (which name channels
    /// and supergroups only).
    pub fn is_group(&self) -> bool {
        match self {
            ChatTarget::Id(id) => *id < 0,
            ChatTarget::Username(_) => true,
        }
    }

    /// The numeric id, if the target has one.
    pub fn id(&self) -> Option<i64> {
        match self {
            ChatTarget::Id(id) => Some(*id),
            ChatTarget::Username(_) => None,
        }
    }
}

impl fmt::Display for ChatTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatTarget::Id(id) => write!(f, "{id}"),
            ChatTarget::Username(name) => f.write_str(name),
        }
    }
}

/// Longest username Telegram gives out (32) with room for future growth.
const MAX_USERNAME: usize = 64;

/// Reads a chat: an integer, a string of one, or `@username`.
pub fn parse_chat(field: &'static str, value: &Value) -> Result<ChatTarget, ParamError> {
    let bad = ParamError::InvalidChat { field };
    if let Some(id) = int_of(value) {
        return if id == 0 {
            Err(bad)
        } else {
            Ok(ChatTarget::Id(id))
        };
    }
    let Value::String(s) = value else {
        return Err(bad);
    };
    let name = s.trim().strip_prefix('@').ok_or(bad.clone())?;
    let valid = !name.is_empty()
        && name.len() <= MAX_USERNAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(bad);
    }
    Ok(ChatTarget::Username(format!(
        "@{}",
        name.to_ascii_lowercase()
    )))
}

/// The chat a call goes to: `chat_id`, or else `user_id` (methods addressed to a user, such
/// as `sendGift`, go to that user's private chat). `None` when the call names neither.
pub fn chat_target(params: &Params) -> Result<Option<ChatTarget>, ParamError> {
    if let Some(v) = get(params, "chat_id") {
        return parse_chat("chat_id", v).map(Some);
    }
    match get(params, "user_id") {
        None => Ok(None),
        Some(v) => match int_of(v) {
            Some(id) if id > 0 => Ok(Some(ChatTarget::Id(id))),
            _ => Err(ParamError::InvalidChat { field: "user_id" }),
        },
    }
}

/// How many messages the call puts into its chat: the item count for many-message methods
/// (validated against the method's range), 1 for everything else.
pub fn item_count(method: &str, params: &Params) -> Result<u32, ParamError> {
    match classify(method) {
        Class::SendMany(items) => count_items(items, params),
        _ => Ok(1),
    }
}

/// Counts the items of `items.field`, checking the range and the items' shape (message ids
/// are positive integers, anything else is an object).
fn count_items(items: Items, params: &Params) -> Result<u32, ParamError> {
    let value = get(params, items.field).map(decoded);
    let list = match value.as_deref() {
        Some(Value::Array(list)) => list,
        Some(_) | None => {
            return Err(ParamError::ItemCount {
                field: items.field,
                got: 0,
                min: items.min,
                max: items.max,
            });
        }
    };
    let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
    if n < items.min || n > items.max {
        return Err(ParamError::ItemCount {
            field: items.field,
            got: list.len(),
            min: items.min,
            max: items.max,
        });
    }
    if items.field == MESSAGE_IDS.field {
        message_ids_of(items.field, list)?;
    } else if !list.iter().all(|item| decoded(item).is_object()) {
        return Err(ParamError::NotAnObject { field: items.field });
    }
    Ok(n)
}

/// The message an edit (or delete, pin, stop) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditTarget {
    /// Messages in a chat. `message_ids` holds `message_id`, or the ids of `message_ids`;
    /// it is empty when the call names none (`unpinChatMessage` without `message_id`
    /// unpins the latest pinned message).
    Message {
        /// The chat.
        chat: ChatTarget,
        /// The messages named.
        message_ids: Vec<i64>,
    },
    /// A message sent via inline mode, named by `inline_message_id` (no chat).
    Inline {
        /// Telegram's id of the inline message.
        inline_message_id: String,
    },
}

/// The message(s) an edit-class call targets: `chat_id` with `message_id` or
/// `message_ids` (1 to 100), or `inline_message_id` alone.
pub fn edit_target(params: &Params) -> Result<EditTarget, ParamError> {
    let Some(chat) = get(params, "chat_id") else {
        return match get(params, "inline_message_id") {
            Some(Value::String(id)) if !id.trim().is_empty() => Ok(EditTarget::Inline {
                inline_message_id: id.trim().to_owned(),
            }),
            Some(_) => Err(ParamError::Missing {
                field: "inline_message_id",
            }),
            None => Err(ParamError::Missing { field: "chat_id" }),
        };
    };
    let chat = parse_chat("chat_id", chat)?;
    let message_ids = if let Some(id) = get(params, "message_id") {
        match int_of(id) {
            Some(id) if id > 0 => vec![id],
            _ => {
                return Err(ParamError::InvalidMessageId {
                    field: "message_id",
                });
            }
        }
    } else if get(params, MESSAGE_IDS.field).is_some() {
        count_items(MESSAGE_IDS, params)?;
        let value = get(params, MESSAGE_IDS.field).map(decoded);
        match value.as_deref() {
            Some(Value::Array(list)) => message_ids_of(MESSAGE_IDS.field, list)?,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok(EditTarget::Message { chat, message_ids })
}

fn message_ids_of(field: &'static str, list: &[Value]) -> Result<Vec<i64>, ParamError> {
    list.iter()
        .map(|v| match int_of(v) {
            Some(id) if id > 0 => Ok(id),
            _ => Err(ParamError::InvalidMessageId { field }),
        })
        .collect()
}

/// A parameter, treating JSON `null` as absent.
pub(crate) fn get<'a>(params: &'a Params, name: &str) -> Option<&'a Value> {
    params.get(name).filter(|v| !v.is_null())
}

/// An integer, or a string holding one.
pub(crate) fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The value itself, or the JSON array or object a string holds (form fields carry
/// structured parameters as JSON text).
pub(crate) fn decoded(value: &Value) -> Cow<'_, Value> {
    if let Value::String(s) = value {
        let t = s.trim_start();
        if (t.starts_with('[') || t.starts_with('{'))
            && let Ok(v) = serde_json::from_str::<Value>(s)
        {
            return Cow::Owned(v);
        }
    }
    Cow::Borrowed(value)
}

/// The parameters of a JSON object (anything else: none), for tests.
#[cfg(test)]
pub(crate) fn params_of(v: Value) -> Params {
    match v {
        Value::Object(m) => m,
        _ => Params::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Params {
        params_of(v)
    }

    #[test]
    fn params_must_be_an_object() {
        assert_eq!(parse_params("params_json", ""), Ok(Params::new()));
        assert_eq!(parse_params("params_json", "  "), Ok(Params::new()));
        assert_eq!(
            parse_params("params_json", "[1]"),
            Err(ParamError::NotAnObject {
                field: "params_json"
            })
        );
        let err = parse_params("params_json", "{oops").unwrap_err();
        assert_eq!(err.field(), "params_json");
        assert!(err.to_string().starts_with("params_json: not valid JSON"));
        assert_eq!(
            parse_params("params_json", r#"{"chat_id":1}"#).map(|p| p.len()),
            Ok(1)
        );
    }

    #[test]
    fn chats_are_ids_digit_strings_or_usernames() {
        let chat = |v: Value| chat_target(&params(json!({ "chat_id": v })));
        assert_eq!(chat(json!(42)), Ok(Some(ChatTarget::Id(42))));
        assert_eq!(
            chat(json!(-1001234567890i64)),
            Ok(Some(ChatTarget::Id(-1001234567890)))
        );
        assert_eq!(chat(json!("-100123")), Ok(Some(ChatTarget::Id(-100123))));
        assert_eq!(chat(json!(" 7 ")), Ok(Some(ChatTarget::Id(7))));
        assert_eq!(
            chat(json!("@My_Channel")),
            Ok(Some(ChatTarget::Username("@my_channel".into())))
        );
        for bad in [
            json!(0),
            json!("0"),
            json!("@"),
            json!("chan"),
            json!("@a b"),
            json!(1.5),
            json!([1]),
            json!(true),
        ] {
            assert_eq!(
                chat(bad.clone()),
                Err(ParamError::InvalidChat { field: "chat_id" }),
                "{bad}"
            );
        }
        assert_eq!(chat_target(&params(json!({}))), Ok(None));
        assert_eq!(chat_target(&params(json!({"chat_id": null}))), Ok(None));
        // Methods addressed to a user go to the user's private chat.
        assert_eq!(
            chat_target(&params(json!({"user_id": "55"}))),
            Ok(Some(ChatTarget::Id(55)))
        );
        assert_eq!(
            chat_target(&params(json!({"user_id": -5}))),
            Err(ParamError::InvalidChat { field: "user_id" })
        );
        assert!(ChatTarget::Username("@x".into()).is_group());
        assert!(ChatTarget::Id(-5).is_group());
        assert!(!ChatTarget::Id(5).is_group());
        assert_eq!(ChatTarget::Username("@x".into()).to_string(), "@x");
        assert_eq!(ChatTarget::Id(-5).id(), Some(-5));
    }

    #[test]
    fn albums_count_their_items_within_two_to_ten() {
        let album = |n: usize| {
            let media: Vec<Value> = (0..n)
                .map(|i| json!({"type":"photo","media":format!("id{i}")}))
                .collect();
            item_count(
                "sendMediaGroup",
                &params(json!({"chat_id": 1, "media": media})),
            )
        };
        assert_eq!(album(2), Ok(2));
        assert_eq!(album(10), Ok(10));
        assert_eq!(
            album(1),
            Err(ParamError::ItemCount {
                field: "media",
                got: 1,
                min: 2,
                max: 10
            })
        );
        assert!(album(11).is_err());
        // As a form field, the array is JSON text.
        let form = params(
            json!({"chat_id":"1","media":"[{\"type\":\"photo\",\"media\":\"a\"},{\"type\":\"photo\",\"media\":\"b\"}]"}),
        );
        assert_eq!(item_count("SENDMEDIAGROUP", &form), Ok(2));
        assert_eq!(
            item_count("sendMediaGroup", &params(json!({"media": [1, 2]}))),
            Err(ParamError::NotAnObject { field: "media" })
        );
        assert!(item_count("sendMediaGroup", &params(json!({"media": "x"}))).is_err());
    }

    #[test]
    fn copies_and_forwards_count_one_to_a_hundred_ids() {
        let ids = |n: i64| {
            params(
                json!({"chat_id": 1, "from_chat_id": 2, "message_ids": (1..=n).collect::<Vec<_>>()}),
            )
        };
        assert_eq!(item_count("copyMessages", &ids(1)), Ok(1));
        assert_eq!(item_count("forwardMessages", &ids(100)), Ok(100));
        assert!(item_count("forwardMessages", &ids(101)).is_err());
        assert!(item_count("copyMessages", &ids(0)).is_err());
        assert_eq!(
            item_count("copyMessages", &params(json!({"message_ids": [1, -2]}))),
            Err(ParamError::InvalidMessageId {
                field: "message_ids"
            })
        );
        assert_eq!(
            item_count("copyMessages", &params(json!({"message_ids": "[3,4]"}))),
            Ok(2)
        );
        // Everything else is one message.
        assert_eq!(item_count("sendMessage", &Params::new()), Ok(1));
        assert_eq!(item_count("deleteMessages", &ids(50)), Ok(1));
        assert_eq!(item_count("someFutureMethod", &Params::new()), Ok(1));
    }

    #[test]
    fn edits_name_their_chat_and_messages() {
        let t = |v: Value| edit_target(&params(v));
        assert_eq!(
            t(json!({"chat_id": 5, "message_id": 9, "text": "x"})),
            Ok(EditTarget::Message {
                chat: ChatTarget::Id(5),
                message_ids: vec![9]
            })
        );
        assert_eq!(
            t(json!({"chat_id": "@Chan", "message_ids": "[1,2,3]"})),
            Ok(EditTarget::Message {
                chat: ChatTarget::Username("@chan".into()),
                message_ids: vec![1, 2, 3]
            })
        );
        assert_eq!(
            t(json!({"chat_id": 5})),
            Ok(EditTarget::Message {
                chat: ChatTarget::Id(5),
                message_ids: vec![]
            })
        );
        assert_eq!(
            t(json!({"inline_message_id": "AbC"})),
            Ok(EditTarget::Inline {
                inline_message_id: "AbC".into()
            })
        );
        assert_eq!(
            t(json!({"message_id": 1})),
            Err(ParamError::Missing { field: "chat_id" })
        );
        assert_eq!(
            t(json!({"inline_message_id": ""})),
            Err(ParamError::Missing {
                field: "inline_message_id"
            })
        );
        assert_eq!(
            t(json!({"chat_id": 5, "message_id": 0})),
            Err(ParamError::InvalidMessageId {
                field: "message_id"
            })
        );
        assert!(t(json!({"chat_id": 5, "message_ids": []})).is_err());
        assert!(t(json!({"chat_id": "x", "message_id": 1})).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "[ -~]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("@chan"),
                    Just("-100"),
                    Just("[1,2]"),
                    Just("{\"a\":1}"),
                    Just("attach://f")
                ]
                .prop_map(|s| Value::String(s.into())),
            ];
            leaf.prop_recursive(4, 48, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("chat_id".to_owned()),
                                Just("media".to_owned()),
                                Just("message_ids".to_owned()),
                                Just("message_id".to_owned()),
                                Just("user_id".to_owned()),
                                "[a-z_]{1,8}"
                            ],
                            inner
                        ),
                        0..6
                    )
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn any_params() -> impl Strategy<Value = Params> {
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("chat_id"),
                        Just("user_id"),
                        Just("media"),
                        Just("message_ids"),
                        Just("message_id"),
                        Just("inline_message_id")
                    ],
                    any_json(),
                ),
                0..5,
            )
            .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }

        proptest! {
            #[test]
            fn readers_never_panic_on_any_json(p in any_params()) {
                let _ = chat_target(&p);
                let _ = edit_target(&p);
                for method in ["sendMediaGroup", "copyMessages", "forwardMessages", "sendMessage"] {
                    let _ = item_count(method, &p);
                }
            }

            #[test]
            fn counted_items_are_within_the_method_range(p in any_params()) {
                if let Ok(n) = item_count("sendMediaGroup", &p) {
                    prop_assert!((2..=10).contains(&n));
                }
                if let Ok(n) = item_count("forwardMessages", &p) {
                    prop_assert!((1..=100).contains(&n));
                }
            }

            #[test]
            fn album_counts_equal_the_array_length(n in 0usize..15) {
                let media: Vec<Value> = (0..n).map(|_| json!({"type":"document","media":"x"})).collect();
                let got = item_count("sendMediaGroup", &params(json!({"media": media})));
                prop_assert_eq!(got.is_ok(), (2..=10).contains(&n));
                if let Ok(count) = got {
                    prop_assert_eq!(count as usize, n);
                }
            }

            #[test]
            fn integer_chats_round_trip(id in any::<i64>().prop_filter("non-zero", |i| *i != 0)) {
                let as_number = chat_target(&params(json!({"chat_id": id})));
                let as_text = chat_target(&params(json!({"chat_id": id.to_string()})));
                prop_assert_eq!(&as_number, &Ok(Some(ChatTarget::Id(id))));
                prop_assert_eq!(as_number, as_text);
            }
        }
    }
}
