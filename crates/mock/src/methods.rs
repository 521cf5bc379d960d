//! The Bot API methods the emulator answers, parsed and validated from a request's
//! parameters outside the state lock, with Telegram's error descriptions.
//!
//! Validation runs in Telegram's order for each method (the chat first, then the content);
//! what needs the emulator's state (does the message to edit exist, is a `file_id` known)
//! is checked later, under the lock, still before any limit is counted.

use serde_json::Value;
use shardgate_botapi::{
    ChatTarget, MAX_FILE_BYTES, MAX_PHOTO_BYTES, MEDIA_GROUP, MESSAGE_IDS, ParamError,
    ReplyMarkupKind, item_count, parse_chat, reply_markup_kind, takes_paid_broadcast,
};

use crate::files::FileSource;
use crate::params::Params;
use crate::reply::ApiError;

/// Longest text accepted, in characters.
pub(crate) const MAX_TEXT_CHARS: usize = 4096;
/// Longest caption accepted, in characters.
pub(crate) const MAX_CAPTION_CHARS: usize = 1024;
/// Longest callback answer text, in characters.
const MAX_CALLBACK_TEXT_CHARS: usize = 200;

/// Where a message goes: a numeric chat id, or something else (an `@username` or garbage)
/// that the emulator treats as an unknown chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Id(i64),
    Unknown,
}

/// A Bot API call, parsed outside the lock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    GetMe,
    /// A method the emulator answers, with the outcome of parameter validation.
    Api(Result<Request, ApiError>),
    /// Any other method: 404 once the token is checked.
    Unknown,
}

/// A validated call of a method that may be rate limited.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// The chat it goes to (none for callback answers).
    pub chat: Option<Target>,
    /// `allow_paid_broadcast`: the paid lane's bot rate applies.
    pub paid: bool,
    pub action: Action,
}

/// What a request does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// `sendMessage`, `sendPhoto`, `sendDocument` (one draft) or `sendMediaGroup` (2-10).
    Send { drafts: Vec<Draft>, album: bool },
    /// `copyMessage(s)` and `forwardMessage(s)`.
    Copy(Copy),
    /// `editMessageText`, `editMessageCaption`, `editMessageReplyMarkup`.
    Edit { message_id: i64, change: Change },
    /// `deleteMessage` (one id, must exist) or `deleteMessages` (missing ids are skipped).
    Delete { ids: Vec<i64>, many: bool },
    /// `answerCallbackQuery`.
    AnswerCallback,
}

/// A copy or forward of `ids` from chat `from`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Copy {
    pub from: Target,
    pub ids: Vec<i64>,
    pub forward: bool,
    pub many: bool,
    /// `copyMessage`'s own caption and reply markup, replacing the original's.
    pub caption: Option<String>,
    pub reply_markup: Option<Value>,
}

/// The kinds of media the emulator keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Photo,
    Document,
    Video,
    Audio,
}

/// One message to send, before its file (if any) is resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Draft {
    pub text: Option<String>,
    pub entities: Option<Value>,
    pub caption: Option<String>,
    pub caption_entities: Option<Value>,
    pub media: Option<(MediaKind, FileSource)>,
    /// Kept only when it is an inline keyboard (the only markup a `Message` shows).
    pub reply_markup: Option<Value>,
    pub thread: Option<i64>,
}

/// What an edit changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Text {
        text: String,
        entities: Option<Value>,
        reply_markup: Option<Value>,
    },
    Caption {
        caption: Option<String>,
        entities: Option<Value>,
        reply_markup: Option<Value>,
    },
    Markup(Option<Value>),
}

/// Parses a call of `method` (case-insensitive).
pub(crate) fn parse(method: &str, params: Result<Params, ApiError>) -> Call {
    let known = [
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "deleteMessage",
        "deleteMessages",
        "answerCallbackQuery",
    ];
    if method.eq_ignore_ascii_case("getMe") {
        return Call::GetMe;
    }
    let Some(name) = known.iter().find(|k| k.eq_ignore_ascii_case(method)) else {
        return Call::Unknown;
    };
    Call::Api(params.and_then(|p| request(name, &p)))
}

fn request(method: &str, p: &Params) -> Result<Request, ApiError> {
    if method == "answerCallbackQuery" {
        return answer_callback(p);
    }
    let chat = chat_param(p, "chat_id")?;
    let paid = takes_paid_broadcast(method) && flag(p, "allow_paid_broadcast");
    let action = match method {
        "sendMessage" => one(Draft {
            text: Some(text(p)?),
            entities: json_param(p, "entities")?,
            reply_markup: reply_markup(p)?,
            thread: thread(p)?,
            ..Draft::default()
        }),
        "sendPhoto" | "sendDocument" => {
            let kind = if method == "sendPhoto" {
                MediaKind::Photo
            } else {
                MediaKind::Document
            };
            let field = if kind == MediaKind::Photo {
                "photo"
            } else {
                "document"
            };
            let (caption, caption_entities) = caption(p, p.get("caption"), "caption_entities")?;
            one(Draft {
                caption,
                caption_entities,
                media: Some((kind, file(p, field, p.get(field), kind)?)),
                reply_markup: reply_markup(p)?,
                thread: thread(p)?,
                ..Draft::default()
            })
        }
        "sendMediaGroup" => Action::Send {
            drafts: album(p)?,
            album: true,
        },
        "copyMessage" | "forwardMessage" | "copyMessages" | "forwardMessages" => {
            let many = method.ends_with('s');
            let ids = if many { ids(p)? } else { vec![message_id(p)?] };
            let copy_own = method == "copyMessage";
            Action::Copy(Copy {
                from: chat_param(p, "from_chat_id")?,
                ids,
                forward: method.starts_with("forward"),
                many,
                caption: if copy_own {
                    caption(p, p.get("caption"), "caption_entities")?.0
                } else {
                    None
                },
                reply_markup: if copy_own { reply_markup(p)? } else { None },
            })
        }
        "editMessageText" | "editMessageCaption" | "editMessageReplyMarkup" => {
            let message_id = edit_message_id(p)?;
            let change = match method {
                "editMessageText" => Change::Text {
                    text: text(p)?,
                    entities: json_param(p, "entities")?,
                    reply_markup: reply_markup(p)?,
                },
                "editMessageCaption" => {
                    let (caption, entities) = caption(p, p.get("caption"), "caption_entities")?;
                    Change::Caption {
                        caption,
                        entities,
                        reply_markup: reply_markup(p)?,
                    }
                }
                _ => Change::Markup(inline_markup(p)?),
            };
            Action::Edit { message_id, change }
        }
        "deleteMessage" => Action::Delete {
            ids: vec![message_id(p)?],
            many: false,
        },
        _ => Action::Delete {
            ids: ids(p)?,
            many: true,
        },
    };
    Ok(Request {
        chat: Some(chat),
        paid,
        action,
    })
}

/// A send of one message.
fn one(draft: Draft) -> Action {
    Action::Send {
        drafts: vec![draft],
        album: false,
    }
}

fn bad(description: &'static str) -> ApiError {
    ApiError::bad_request(description)
}

/// A chat parameter: missing or blank is "chat_id is empty"; `@username`s and anything
/// unparsable are unknown chats.
fn chat_param(p: &Params, field: &'static str) -> Result<Target, ApiError> {
    match p.get(field) {
        None => Err(bad("Bad Request: chat_id is empty")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad("Bad Request: chat_id is empty")),
        Some(v) => Ok(match parse_chat(field, v) {
            Ok(ChatTarget::Id(id)) => Target::Id(id),
            _ => Target::Unknown,
        }),
    }
}

/// `true`, `"true"`, `"True"` or `1` (form fields are text).
fn flag(p: &Params, name: &str) -> bool {
    match p.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1"),
        _ => false,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn string_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An object or array parameter, or a string holding its JSON.
fn structured(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(|v| v.is_array() || v.is_object()),
        v if v.is_array() || v.is_object() => Some(v.clone()),
        _ => None,
    }
}

fn text(p: &Params) -> Result<String, ApiError> {
    let text = p.get("text").map(string_of).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(bad("Bad Request: message text is empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(bad("Bad Request: message is too long"));
    }
    parse_mode(p.get("parse_mode"))?;
    Ok(text)
}

fn parse_mode(mode: Option<&Value>) -> Result<(), ApiError> {
    let mode = match mode {
        None => String::new(),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(_) => "?".into(),
    };
    if ["", "html", "markdown", "markdownv2"].contains(&mode.as_str()) {
        Ok(())
    } else {
        Err(bad("Bad Request: unsupported parse_mode"))
    }
}

/// A caption (optional) and its entities, from `value` and the `entities_field` of `p`.
fn caption(
    p: &Params,
    value: Option<&Value>,
    entities_field: &str,
) -> Result<(Option<String>, Option<Value>), ApiError> {
    let caption = value.map(string_of).filter(|c| !c.is_empty());
    if caption
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CAPTION_CHARS)
    {
        return Err(bad("Bad Request: message caption is too long"));
    }
    parse_mode(p.get("parse_mode"))?;
    Ok((caption, json_param(p, entities_field)?))
}

/// An array parameter such as `entities`.
fn json_param(p: &Params, name: &str) -> Result<Option<Value>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => match structured(v) {
            Some(list @ Value::Array(_)) => Ok(Some(list)),
            _ => Err(bad("Bad Request: can't parse entities JSON object")),
        },
    }
}

fn markup_of(p: &Params) -> Result<Option<(ReplyMarkupKind, Value)>, ApiError> {
    let Some(v) = p.get("reply_markup") else {
        return Ok(None);
    };
    let unparsable = || bad("Bad Request: can't parse reply keyboard markup JSON object");
    let Some(Value::Object(markup)) = structured(v) else {
        return Err(unparsable());
    };
    let kind = reply_markup_kind(&markup).map_err(|_: ParamError| unparsable())?;
    Ok(Some((kind, Value::Object(markup))))
}

/// Any reply markup is accepted; a `Message` shows inline keyboards only.
fn reply_markup(p: &Params) -> Result<Option<Value>, ApiError> {
    Ok(markup_of(p)?.and_then(|(kind, v)| (kind == ReplyMarkupKind::InlineKeyboard).then_some(v)))
}

/// Edits take inline keyboards only.
fn inline_markup(p: &Params) -> Result<Option<Value>, ApiError> {
    match markup_of(p)? {
        None => Ok(None),
        Some((ReplyMarkupKind::InlineKeyboard, v)) => Ok(Some(v)),
        Some(_) => Err(bad("Bad Request: inline keyboard expected")),
    }
}

fn thread(p: &Params) -> Result<Option<i64>, ApiError> {
    match p.get("message_thread_id") {
        None => Ok(None),
        Some(v) => match int(v) {
            Some(id) if id > 0 => Ok(Some(id)),
            _ => Err(bad("Bad Request: message thread not found")),
        },
    }
}

fn message_id(p: &Params) -> Result<i64, ApiError> {
    match p.get("message_id").and_then(int) {
        Some(id) if id > 0 => Ok(id),
        _ => Err(bad("Bad Request: message identifier is not specified")),
    }
}

/// An edit names its message by `chat_id` + `message_id`; inline messages (by
/// `inline_message_id`) do not exist in the emulator.
fn edit_message_id(p: &Params) -> Result<i64, ApiError> {
    if p.get("message_id").is_none() && p.get("inline_message_id").is_some() {
        return Err(bad("Bad Request: MESSAGE_ID_INVALID"));
    }
    message_id(p)
}

/// `message_ids` of 1 to 100 positive ids.
fn ids(p: &Params) -> Result<Vec<i64>, ApiError> {
    let ids: Option<Vec<i64>> = match p.get(MESSAGE_IDS.field).and_then(structured) {
        Some(Value::Array(list)) => list.iter().map(|v| int(v).filter(|id| *id > 0)).collect(),
        _ => None,
    };
    let range = MESSAGE_IDS.min as usize..=MESSAGE_IDS.max as usize;
    match ids {
        Some(ids) if range.contains(&ids.len()) => Ok(ids),
        _ => Err(bad("Bad Request: message identifiers are not specified")),
    }
}

/// A file parameter: the upload in form field `field`, or the parameter's value as
/// `attach://<name>` (an upload), an `http(s)://` URL, or a `file_id`.
fn file(
    p: &Params,
    field: &str,
    value: Option<&Value>,
    kind: MediaKind,
) -> Result<FileSource, ApiError> {
    let part = match value {
        None => p.file(field),
        Some(Value::String(s)) if s.starts_with("attach://") => {
            let part = p.file(&s["attach://".len()..]);
            if part.is_none() {
                return Err(bad("Bad Request: wrong file identifier/HTTP URL specified"));
            }
            part
        }
        Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => {
            return Ok(FileSource::Url(s.clone()));
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            return Ok(FileSource::Id(s.trim().to_owned()));
        }
        Some(_) => None,
    };
    let Some(part) = part else {
        return Err(bad(match kind {
            MediaKind::Photo => "Bad Request: there is no photo in the request",
            MediaKind::Document => "Bad Request: there is no document in the request",
            MediaKind::Video => "Bad Request: there is no video in the request",
            MediaKind::Audio => "Bad Request: there is no audio in the request",
        }));
    };
    let size = part.data.len() as u64;
    if size > MAX_FILE_BYTES {
        return Err(ApiError::too_large());
    }
    if kind == MediaKind::Photo && size > MAX_PHOTO_BYTES {
        return Err(bad("Bad Request: PHOTO_INVALID_DIMENSIONS"));
    }
    Ok(FileSource::Upload {
        filename: part.filename.clone(),
        content_type: part.content_type.clone(),
        data: part.data.clone(),
    })
}

/// `sendMediaGroup`'s `media`: 2 to 10 `InputMedia` objects.
fn album(p: &Params) -> Result<Vec<Draft>, ApiError> {
    let items = match (
        item_count("sendMediaGroup", &p.values),
        p.get(MEDIA_GROUP.field).and_then(structured),
    ) {
        (Ok(_), Some(Value::Array(items))) => items,
        _ => {
            return Err(bad(
                "Bad Request: wrong number of media in the group: 2 to 10 are allowed",
            ));
        }
    };
    let thread = thread(p)?;
    items
        .iter()
        .map(|item| {
            let kind = match item.get("type").and_then(Value::as_str) {
                Some("photo") => MediaKind::Photo,
                Some("document") => MediaKind::Document,
                Some("video") => MediaKind::Video,
                Some("audio") => MediaKind::Audio,
                _ => return Err(bad("Bad Request: unsupported media type in the group")),
            };
            let source = file(p, "", item.get("media"), kind)?;
            let caption = item.get("caption").map(string_of).filter(|c| !c.is_empty());
            if caption
                .as_ref()
                .is_some_and(|c| c.chars().count() > MAX_CAPTION_CHARS)
            {
                return Err(bad("Bad Request: message caption is too long"));
            }
            parse_mode(item.get("parse_mode"))?;
            Ok(Draft {
                caption,
                caption_entities: item.get("caption_entities").cloned(),
                media: Some((kind, source)),
                thread,
                ..Draft::default()
            })
        })
        .collect()
}

fn answer_callback(p: &Params) -> Result<Request, ApiError> {
    let id = p
        .get("callback_query_id")
        .map(string_of)
        .unwrap_or_default();
    if id.trim().is_empty() {
        return Err(bad(
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        ));
    }
    let text = p.get("text").map(string_of).unwrap_or_default();
    if text.chars().count() > MAX_CALLBACK_TEXT_CHARS {
        return Err(bad("Bad Request: MESSAGE_TOO_LONG"));
    }
    Ok(Request {
        chat: None,
        paid: false,
        action: Action::AnswerCallback,
    })
}

#[cfg(test)]
#[path = "methods_tests.rs"]
mod tests;
