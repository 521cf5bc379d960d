//! Everything the limits need to know about one call, read at once: its class, the chat it
//! counts against, how many messages it carries, the message an edit names, and whether it
//! asks for the paid lane. The rules that tie the readers together live here: a send needs a
//! chat, an edit needs its message, other methods may name a chat (which then only picks the
//! bot).

use serde_json::Value;

use crate::error::ParamError;
use crate::params::{ChatTarget, EditTarget, Params, chat_target, edit_target, get, item_count};
use crate::table::{Class, classify, takes_paid_broadcast};

/// What the limits need to know about a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Which limits it meets.
    pub class: Class,
    /// The chat it counts against (send-type and edits always have one, unless an edit
    /// names an inline message), or the chat that picks the bot (other methods).
    pub chat: Option<ChatTarget>,
    /// Messages it puts into the chat: the item count of many-message methods, else 1.
    pub items: u32,
    /// The message(s) an edit-class call names.
    pub edit: Option<EditTarget>,
    /// `allow_paid_broadcast` set on a method that takes it.
    pub paid: bool,
}

/// Reads the shape of a call of `method` with `params`. A refused method is not an error
/// here (its class says so); parameters that the limits cannot be applied to are.
pub fn inspect(method: &str, params: &Params) -> Result<Shape, ParamError> {
    let class = classify(method);
    let (chat, edit) = match class {
        Class::SendOne | Class::SendMany(_) => match chat_target(params)? {
            Some(chat) => (Some(chat), None),
            None => return Err(ParamError::Missing { field: "chat_id" }),
        },
        Class::Edit => {
            let target = edit_target(params)?;
            let chat = match &target {
                EditTarget::Message { chat, .. } => Some(chat.clone()),
                EditTarget::Inline { .. } => None,
            };
            (chat, Some(target))
        }
        Class::Other | Class::Refused => (chat_target(params).ok().flatten(), None),
    };
    let items = item_count(method, params)?;
    let paid =
        takes_paid_broadcast(method) && get(params, "allow_paid_broadcast").is_some_and(truthy);
    Ok(Shape {
        class,
        chat,
        items,
        edit,
        paid,
    })
}

/// `true`, `"true"` (any case) or `1`, as the Bot API reads booleans from forms.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::MEDIA_GROUP;
    use serde_json::json;

    fn shape(method: &str, v: Value) -> Result<Shape, ParamError> {
        inspect(method, &crate::params::params_of(v))
    }

    #[test]
    fn sends_need_a_chat_and_count_their_items() {
        let s = shape(
            "sendMessage",
            json!({"chat_id": "@News", "text": "x", "allow_paid_broadcast": "True"}),
        );
        assert_eq!(
            s,
            Ok(Shape {
                class: Class::SendOne,
                chat: Some(ChatTarget::Username("@news".into())),
                items: 1,
                edit: None,
                paid: true,
            })
        );
        assert_eq!(
            shape("sendPhoto", json!({"photo": "x"})),
            Err(ParamError::Missing { field: "chat_id" })
        );
        let media = json!([{"type": "photo", "media": "a"}, {"type": "photo", "media": "b"}, {"type": "photo", "media": "c"}]);
        let s = shape("sendMediaGroup", json!({"chat_id": -5, "media": media}));
        assert_eq!(
            s.as_ref().map(|s| (s.class, s.items)),
            Ok((Class::SendMany(MEDIA_GROUP), 3))
        );
        // Gifts go to the user's private chat.
        let s = shape("sendGift", json!({"user_id": 77, "gift_id": "g"}));
        assert_eq!(s.map(|s| s.chat), Ok(Some(ChatTarget::Id(77))));
    }

    #[test]
    fn edits_name_their_message_and_never_ask_for_the_paid_lane() {
        let s = shape(
            "editMessageText",
            json!({"chat_id": 5, "message_id": 9, "text": "x", "allow_paid_broadcast": true}),
        );
        assert_eq!(
            s,
            Ok(Shape {
                class: Class::Edit,
                chat: Some(ChatTarget::Id(5)),
                items: 1,
                edit: Some(EditTarget::Message {
                    chat: ChatTarget::Id(5),
                    message_ids: vec![9]
                }),
                paid: false,
            })
        );
        let s = shape(
            "editMessageReplyMarkup",
            json!({"inline_message_id": "abc"}),
        );
        assert_eq!(s.map(|s| s.chat), Ok(None));
        assert!(shape("deleteMessage", json!({"message_id": 1})).is_err());
    }

    #[test]
    fn other_methods_may_name_a_chat_and_forward_many_is_not_paid() {
        assert_eq!(
            shape("getMe", json!({})).map(|s| (s.class, s.chat)),
            Ok((Class::Other, None))
        );
        assert_eq!(
            shape("getChat", json!({"chat_id": "oops"})).map(|s| s.chat),
            Ok(None)
        );
        assert_eq!(
            shape("banChatMember", json!({"chat_id": -5, "user_id": 1})).map(|s| s.chat),
            Ok(Some(ChatTarget::Id(-5)))
        );
        assert_eq!(
            shape("getUpdates", json!({})).map(|s| s.class),
            Ok(Class::Refused)
        );
        let s = shape(
            "forwardMessages",
            json!({"chat_id": 1, "from_chat_id": 2, "message_ids": [1, 2], "allow_paid_broadcast": true}),
        );
        assert_eq!(s.map(|s| (s.items, s.paid)), Ok((2, false)));
        assert_eq!(
            shape("someFutureMethod", json!({"chat_id": 3})).map(|s| (s.class, s.chat)),
            Ok((Class::Other, Some(ChatTarget::Id(3))))
        );
    }
}
