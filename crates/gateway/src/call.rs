//! A validated Bot API call: what a `CallRequest` becomes at the door, before
//! it waits in the same queues and limits as a `sendMessage`.
//!
//! The rules of the Bot API (the method table, chats, item counts, edit
//! targets, uploads) are `shardgate-botapi`'s; this module applies them to the
//! request, refuses what may not go (the methods that belong to a bot's own
//! process: `FAILED_PRECONDITION`; anything malformed: `INVALID_ARGUMENT`
//! naming the field) and keeps what the dispatcher needs to send it: the
//! method, its parameters, its uploads (as shared bytes, kept until the call
//! ends so a retry resends them) and which limits it meets.

use std::sync::Arc;

use shardgate_botapi::{
    ChatTarget, Class, EditTarget, Params, Upload, check_uploads, inspect, parse_params,
};
use shardgate_proto::v1 as pb;
use shardgate_telegram::{CallFile, check_method_name};
use tracing::debug;

use crate::message::{Body, check_bot, check_keys, priority_of, timeout_of, traceparent_of};
use crate::{Message, SendError};

/// Bound on `params_json`, in bytes (an album's ten captions with their
/// entities are well under it).
pub const MAX_PARAMS_BYTES: usize = 1 << 20;

/// A call's uploads together, in bytes: an album of ten 50 MB videos is not
/// a thing a gateway queues (the gRPC limit of `Call` is 64 MiB anyway).
pub const MAX_UPLOAD_BYTES: u64 = 64 << 20;

/// A Bot API call as it waits in a bot's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The method, as the caller spelled it.
    pub method: String,
    /// Its parameters, sent as given (with `chat_id` rewritten after a group
    /// migration).
    pub params: Params,
    /// Uploads, sent as multipart parts.
    pub files: Vec<CallFile>,
    /// Which limits it meets.
    pub class: Class,
    /// Messages it puts into its chat (albums, copies of many).
    pub items: u32,
    /// The chat it goes to or names, if any.
    pub chat: Option<ChatTarget>,
    /// The messages an edit names (empty otherwise, and for inline messages).
    pub edits: Vec<i64>,
    /// An edit of an inline message (no chat: its bot must be pinned).
    pub inline: bool,
    /// `allow_paid_broadcast` set on a method that takes it: the paid lane.
    pub paid: bool,
    /// Length of `params_json` as received (what the parameters cost).
    params_bytes: usize,
}

impl Call {
    /// Bytes it holds while queued: parameters, method and uploads.
    pub fn cost_bytes(&self) -> usize {
        let files: usize = self
            .files
            .iter()
            .map(|f| f.data.len() + f.name.len() + f.filename.len() + f.content_type.len())
            .sum();
        self.params_bytes + self.method.len() + files
    }

    /// Whether the chat's (and a group's) limits apply: sends and edits in a
    /// chat; other methods meet the bot's limit only.
    pub fn limited_by_chat(&self) -> bool {
        matches!(
            self.class,
            Class::SendOne | Class::SendMany(_) | Class::Edit
        ) && self.chat.is_some()
    }

    /// Whether it names a message of one bot (edits, deletes, pins): such a
    /// call never fails over.
    pub fn is_edit(&self) -> bool {
        self.class == Class::Edit
    }

    /// The same call into `chat_id` (a group that became a supergroup).
    pub fn moved_to(&self, chat_id: i64) -> Call {
        let mut moved = self.clone();
        moved
            .params
            .insert("chat_id".to_owned(), serde_json::Value::from(chat_id));
        moved.chat = Some(ChatTarget::Id(chat_id));
        moved
    }
}

/// The chat key of a chat target: its id, or for an `@username` a key of its
/// own that no real chat has (below -2^62, negative so that the group limit
/// applies: usernames name channels and supergroups). The same on every
/// instance (xxh3), so a username routes alike everywhere.
pub fn chat_key(chat: &ChatTarget) -> i64 {
    match chat {
        ChatTarget::Id(id) => *id,
        ChatTarget::Username(name) => username_key(name),
    }
}

/// See [`chat_key`].
pub fn username_key(name: &str) -> i64 {
    let h = shardgate_router::key_of_name(name) >> 2;
    // h < 2^62, so the sum stays within [i64::MIN, i64::MIN + 2^62).
    i64::MIN + i64::try_from(h).unwrap_or(0)
}

/// Where the scheduler counts a call that meets the bot's limit only: a chat
/// of its own, fresh for each call (positive, above every real user id, so
/// no group window), which only the bot's limit ever holds back.
pub fn bot_only_key(seq: u64) -> i64 {
    (1i64 << 62) + i64::try_from(seq & ((1 << 61) - 1)).unwrap_or(0)
}

/// A content type a multipart part can carry: `type/subtype` in token
/// characters, or empty.
fn valid_content_type(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    ct.is_empty()
        || ct
            .split_once('/')
            .is_some_and(|(a, b)| token(a) && token(b))
}

impl Message {
    /// Validates a call: the method may go and is well-formed, the
    /// parameters are a JSON object the limits can be applied to, uploads
    /// are referenced, named and within Telegram's sizes. Errors name the
    /// field.
    pub fn from_call(req: pb::CallRequest) -> Result<Message, SendError> {
        check_method_name(&req.method).map_err(|e| SendError::Invalid(e.to_string()))?;
        check_keys(&req.idempotency_key, &req.client_ref)?;
        check_bot(&req.bot)?;
        let priority = priority_of(req.priority)?;
        let class = shardgate_botapi::classify(&req.method);
        if class == Class::Refused {
            return Err(SendError::Refused(format!(
                "method {} belongs to the bot's own process; the gateway never calls it",
                req.method
            )));
        }
        if shardgate_botapi::method(&req.method).is_none() {
            debug!(method = %req.method, "a method the table does not know: the bot's limit only");
        }
        if req.params_json.len() > MAX_PARAMS_BYTES {
            return Err(SendError::Invalid(format!(
                "params_json is {} bytes; at most {MAX_PARAMS_BYTES} are accepted",
                req.params_json.len()
            )));
        }
        let invalid = |e: shardgate_botapi::ParamError| SendError::Invalid(e.to_string());
        let params = parse_params("params_json", &req.params_json).map_err(invalid)?;
        let shape = inspect(&req.method, &params).map_err(invalid)?;
        let uploads: Vec<Upload<'_>> = req
            .files
            .iter()
            .map(|f| Upload {
                name: &f.name,
                size: u64::try_from(f.data.len()).unwrap_or(u64::MAX),
            })
            .collect();
        check_uploads(&params, &uploads).map_err(invalid)?;
        let total: u64 = uploads.iter().map(|u| u.size).sum();
        if total > MAX_UPLOAD_BYTES {
            return Err(SendError::Invalid(format!(
                "files: {total} bytes together; at most {MAX_UPLOAD_BYTES} per call"
            )));
        }
        if let Some(f) = req
            .files
            .iter()
            .find(|f| !valid_content_type(&f.content_type))
        {
            return Err(SendError::Invalid(format!(
                "upload {}: content_type must be type/subtype",
                f.name
            )));
        }
        if req.files.iter().any(|f| f.filename.len() > 255) {
            return Err(SendError::Invalid(
                "files: a filename is longer than 255 bytes".into(),
            ));
        }
        let (edits, inline) = match &shape.edit {
            Some(EditTarget::Message { message_ids, .. }) => (message_ids.clone(), false),
            Some(EditTarget::Inline { .. }) => (Vec::new(), true),
            None => (Vec::new(), false),
        };
        let files = req
            .files
            .into_iter()
            .map(|f| CallFile {
                name: f.name,
                filename: f.filename,
                content_type: f.content_type,
                data: f.data,
            })
            .collect();
        let chat_id = shape.chat.as_ref().map_or(0, chat_key);
        let call = Call {
            method: req.method,
            params_bytes: req.params_json.len(),
            params,
            files,
            class,
            items: shape.items,
            chat: shape.chat,
            edits,
            inline,
            paid: shape.paid,
        };
        let edit = call.is_edit();
        Ok(Message {
            chat_id,
            user_id: req.user_id,
            body: Body::Call(Arc::new(call)),
            idempotency_key: (!req.idempotency_key.is_empty()).then_some(req.idempotency_key),
            client_ref: req.client_ref,
            bot: (!req.bot.is_empty()).then_some(req.bot),
            // An edit names a message of one bot: never another.
            allow_failover: req.allow_failover && !edit,
            timeout: timeout_of(req.timeout_ms),
            traceparent: traceparent_of(req.traceparent),
            priority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn req(method: &str, params: &str) -> pb::CallRequest {
        pb::CallRequest {
            method: method.into(),
            params_json: params.into(),
            ..pb::CallRequest::default()
        }
    }

    fn file(name: &str, size: usize) -> pb::InputFile {
        pb::InputFile {
            name: name.into(),
            data: vec![7u8; size].into(),
            ..pb::InputFile::default()
        }
    }

    #[test]
    fn refused_methods_are_failed_precondition_whatever_the_case() {
        for m in [
            "getUpdates",
            "setWebhook",
            "deleteWebhook",
            "logOut",
            "close",
            "GETUPDATES",
        ] {
            let err = Message::from_call(req(m, "{}")).expect_err(m);
            assert_eq!(err.code(), Code::FailedPrecondition, "{m}: {err}");
        }
    }

    #[test]
    fn malformed_calls_are_invalid_argument_naming_the_field() {
        let big = pb::CallRequest {
            files: vec![file("photo", 10 * 1024 * 1024 + 1)],
            ..req("sendPhoto", r#"{"chat_id":1}"#)
        };
        let cases = [
            (req("send/Photo", "{}"), "method"),
            (req("sendPhoto", "[1]"), "params_json"),
            (req("sendPhoto", "{"), "params_json"),
            (req("sendPhoto", r#"{"photo":"x"}"#), "chat_id"),
            (
                req("sendPhoto", r#"{"chat_id":"news","photo":"x"}"#),
                "chat_id",
            ),
            (req("sendPhoto", r#"{"chat_id":0,"photo":"x"}"#), "chat_id"),
            (
                req("sendPhoto", r#"{"chat_id":1,"photo":"attach://p"}"#),
                "attach://p",
            ),
            (
                req(
                    "editMessageText",
                    r#"{"chat_id":1,"message_id":"x","text":"x"}"#,
                ),
                "message_id",
            ),
            (
                req(
                    "sendMediaGroup",
                    r#"{"chat_id":1,"media":[{"type":"photo","media":"a"}]}"#,
                ),
                "media",
            ),
            (big, "photo"),
        ];
        for (r, field) in cases {
            let err = Message::from_call(r).expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err}");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn a_call_keeps_its_shape_and_charges_its_uploads() {
        let m = Message::from_call(pb::CallRequest {
            files: vec![file("photo", 1000)],
            allow_failover: true,
            ..req("sendPhoto", r#"{"chat_id":"@News","caption":"c"}"#)
        })
        .expect("valid");
        assert_eq!(m.chat_id, username_key("@news"));
        assert!(m.chat_id < -(1 << 61), "no real chat has a username's key");
        assert!(m.limited_by_chat());
        assert!(m.cost_bytes() >= 1000 + crate::budget::MESSAGE_OVERHEAD_BYTES);
        assert!(m.allow_failover);
        let edit = Message::from_call(pb::CallRequest {
            allow_failover: true,
            ..req(
                "editMessageText",
                r#"{"chat_id":5,"message_id":9,"text":"x"}"#,
            )
        })
        .expect("valid");
        assert!(!edit.allow_failover, "an edit never fails over");
        assert_eq!(edit.body.call().map(|c| c.edits.clone()), Some(vec![9]));
        let other = Message::from_call(req("getChat", r#"{"chat_id":-5}"#)).expect("valid");
        assert_eq!(other.chat_id, -5, "the chat still picks the bot");
        assert!(
            !other.limited_by_chat(),
            "other methods: the bot's limit only"
        );
        let album = Message::from_call(req(
            "sendMediaGroup",
            r#"{"chat_id":1,"media":[{"type":"photo","media":"a"},{"type":"photo","media":"b"}]}"#,
        ))
        .expect("valid");
        assert_eq!(album.body.call().map(|c| c.items), Some(2));
        let moved = album.body.call().map(|c| c.moved_to(-100)).expect("a call");
        assert_eq!(moved.params["chat_id"], -100);
    }

    #[test]
    fn chat_keys_of_bot_only_calls_and_usernames_never_meet_real_chats() {
        assert!(bot_only_key(0) > 1 << 61 && bot_only_key(u64::MAX) > 1 << 61);
        assert_ne!(bot_only_key(1), bot_only_key(2));
        assert_eq!(username_key("@a"), username_key("@a"));
        assert!(username_key("@b") < -(1 << 61));
        assert_eq!(chat_key(&ChatTarget::Id(-7)), -7);
    }

    #[test]
    fn content_types_are_type_slash_subtype() {
        for ok in ["", "image/jpeg", "application/vnd.ms-excel"] {
            assert!(valid_content_type(ok), "{ok}");
        }
        for bad in [
            "image",
            "image/",
            "/x",
            "text/plain; charset=utf-8",
            "a/b\r\n",
        ] {
            assert!(!valid_content_type(bad), "{bad}");
        }
    }
}
