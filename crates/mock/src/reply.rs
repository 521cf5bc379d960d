//! The Bot API's answer shapes: `{"ok":true,"result":...}` and
//! `{"ok":false,"error_code":N,"description":"...","parameters":{...}}`, with the exact
//! descriptions Telegram uses.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A Bot API error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ApiError {
    pub ok: bool,
    pub error_code: u16,
    pub description: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ResponseParameters>,
}

/// Telegram's `ResponseParameters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ResponseParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A `retry_after` no real server sends (an injected fault), written as this number;
    /// never set together with `retry_after`.
    #[serde(rename = "retry_after", skip_serializing_if = "Option::is_none")]
    pub hostile_retry_after: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrate_to_chat_id: Option<i64>,
}

impl ApiError {
    fn new(code: u16, description: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            ok: false,
            error_code: code,
            description: description.into(),
            parameters: None,
        }
    }

    pub fn bad_request(what: &'static str) -> Self {
        ApiError::new(400, what)
    }
    pub fn not_found() -> Self {
        ApiError::new(404, "Not Found")
    }
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized")
    }
    /// 413, Telegram's answer to a file over 50 MB.
    pub fn too_large() -> Self {
        ApiError::new(413, "Request Entity Too Large")
    }
    pub fn forbidden(what: &'static str) -> Self {
        ApiError::new(403, what)
    }
    pub fn server_error(code: u16) -> Self {
        match code {
            502 => ApiError::new(502, "Bad Gateway"),
            503 => ApiError::new(503, "Service Unavailable"),
            _ => ApiError::new(500, "Internal Server Error"),
        }
    }
    pub fn too_many_requests(retry_after: u64) -> Self {
        ApiError {
            parameters: Some(ResponseParameters {
                retry_after: Some(retry_after),
                hostile_retry_after: None,
                migrate_to_chat_id: None,
            }),
            ..ApiError::new(429, format!("Too Many Requests: retry after {retry_after}"))
        }
    }
    /// A 429 with a `retry_after` of any size (see `Faults::retry_after`).
    pub fn hostile_too_many_requests(retry_after: serde_json::Number) -> Self {
        ApiError {
            description: format!("Too Many Requests: retry after {retry_after}").into(),
            parameters: Some(ResponseParameters {
                retry_after: None,
                hostile_retry_after: Some(retry_after),
                migrate_to_chat_id: None,
            }),
            ..ApiError::new(429, "")
        }
    }
    pub fn migrated(to: i64) -> Self {
        ApiError {
            parameters: Some(ResponseParameters {
                retry_after: None,
                hostile_retry_after: None,
                migrate_to_chat_id: Some(to),
            }),
            ..ApiError::bad_request("Bad Request: group chat was upgraded to a supergroup chat")
        }
    }
}

/// A Telegram `User` (the bot itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct User {
    pub id: u64,
    pub is_bot: bool,
    pub first_name: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_join_groups: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_read_all_group_messages: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supports_inline_queries: Option<bool>,
}

impl User {
    /// The bot as it appears in a message's `from`.
    pub fn bot(id: u64) -> Self {
        User {
            id,
            is_bot: true,
            first_name: format!("Mock {id}"),
            username: format!("mock_{id}_bot"),
            can_join_groups: None,
            can_read_all_group_messages: None,
            supports_inline_queries: None,
        }
    }

    /// The bot as `getMe` describes it.
    pub fn me(id: u64) -> Self {
        User {
            can_join_groups: Some(true),
            can_read_all_group_messages: Some(false),
            supports_inline_queries: Some(false),
            ..User::bot(id)
        }
    }
}

/// A Telegram `Chat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
}

/// Supergroup and channel ids are `-100` followed by the id, so below this value.
const SUPERGROUP_BELOW: i64 = -1_000_000_000_000;

/// True for supergroup (and channel) ids: `-100xxxxxxxxxx`.
pub(crate) fn is_supergroup(chat_id: i64) -> bool {
    chat_id <= SUPERGROUP_BELOW
}

impl Chat {
    pub fn new(id: i64) -> Self {
        if id > 0 {
            Chat {
                id,
                kind: "private",
                title: None,
                first_name: Some(format!("User {id}")),
            }
        } else {
            Chat {
                id,
                kind: if is_supergroup(id) {
                    "supergroup"
                } else {
                    "group"
                },
                title: Some(format!("Group {id}")),
                first_name: None,
            }
        }
    }
}

/// A Telegram `Message`, as the send, copy, forward and edit methods return it. Absent
/// fields are left out, as Telegram does.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Message {
    pub message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<Chat>,
    pub date: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_thread_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_topic_message: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_origin: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_date: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo: Option<Vec<FileObject>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<FileObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<FileObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<FileObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_entities: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_markup: Option<serde_json::Value>,
}

/// A `PhotoSize`, `Document`, `Video` or `Audio`: the fields each has, the others left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct FileObject {
    pub file_id: String,
    pub file_unique_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub file_size: u64,
}

/// A `MessageId`, as the copy methods return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct MessageId {
    pub message_id: i64,
}

/// One answer of the Bot API (besides a dropped connection).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reply {
    Sent(Box<Message>),
    Album(Vec<Message>),
    Copied(MessageId),
    CopiedMany(Vec<MessageId>),
    True,
    Me(User),
    Error(ApiError),
}

#[derive(Serialize)]
struct Success<T> {
    ok: bool,
    result: T,
}

impl Reply {
    /// The HTTP status Telegram would use.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Error(e) => e.error_code,
            _ => 200,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        fn ok<T: Serialize>(result: T) -> Result<serde_json::Value, serde_json::Error> {
            serde_json::to_value(Success { ok: true, result })
        }
        let value = match self {
            Reply::Sent(m) => ok(m),
            Reply::Album(ms) => ok(ms),
            Reply::Copied(id) => ok(id),
            Reply::CopiedMany(ids) => ok(ids),
            Reply::True => ok(true),
            Reply::Me(u) => ok(u),
            Reply::Error(e) => serde_json::to_value(e),
        };
        value.unwrap_or(serde_json::Value::Null)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.to_json())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_shapes_match_telegram() {
        assert_eq!(
            Reply::Error(ApiError::not_found()).to_json(),
            json!({"ok":false,"error_code":404,"description":"Not Found"})
        );
        assert_eq!(
            Reply::Error(ApiError::unauthorized()).to_json(),
            json!({"ok":false,"error_code":401,"description":"Unauthorized"})
        );
        assert_eq!(
            Reply::Error(ApiError::too_many_requests(17)).to_json(),
            json!({"ok":false,"error_code":429,
                   "description":"Too Many Requests: retry after 17",
                   "parameters":{"retry_after":17}})
        );
        assert_eq!(
            Reply::Error(ApiError::migrated(-1001234)).to_json(),
            json!({"ok":false,"error_code":400,
                   "description":"Bad Request: group chat was upgraded to a supergroup chat",
                   "parameters":{"migrate_to_chat_id":-1001234}})
        );
        assert_eq!(
            Reply::Error(ApiError::server_error(502)).to_json(),
            json!({"ok":false,"error_code":502,"description":"Bad Gateway"})
        );
        assert_eq!(Reply::Error(ApiError::server_error(500)).status(), 500);
    }

    #[test]
    fn success_shapes_match_telegram() {
        let m = Message {
            message_id: 1,
            from: Some(User::bot(42)),
            chat: Some(Chat::new(-1001234567890)),
            date: 1_700_000_000,
            text: Some("hi".into()),
            ..Message::default()
        };
        assert_eq!(
            Reply::Sent(Box::new(m)).to_json(),
            json!({"ok":true,"result":{
                "message_id":1,
                "from":{"id":42,"is_bot":true,"first_name":"Mock 42","username":"mock_42_bot"},
                "chat":{"id":-1001234567890i64,"type":"supergroup","title":"Group -1001234567890"},
                "date":1_700_000_000,"text":"hi"}})
        );
        let me = Reply::Me(User::me(42)).to_json();
        assert_eq!(me["result"]["id"], 42);
        assert_eq!(me["result"]["first_name"], "Mock 42");
        assert_eq!(me["result"]["username"], "mock_42_bot");
        assert_eq!(Chat::new(5).kind, "private");
        assert_eq!(Chat::new(-5).kind, "group");
        assert_eq!(Reply::True.to_json(), json!({"ok":true,"result":true}));
        assert_eq!(
            Reply::CopiedMany(vec![MessageId { message_id: 3 }]).to_json(),
            json!({"ok":true,"result":[{"message_id":3}]})
        );
        assert_eq!(
            Reply::Error(ApiError::too_large()).to_json(),
            json!({"ok":false,"error_code":413,"description":"Request Entity Too Large"})
        );
    }
}
