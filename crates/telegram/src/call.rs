//! Any Bot API method: the request of a generic call (its parameters as JSON,
//! or a multipart form when it uploads files) and the reading of its answer.
//! Failures are classified exactly like `sendMessage`'s ([`crate::classify`]),
//! so the dispatcher treats a 429, a revoked token or a timeout the same
//! whatever the method; a success keeps Telegram's whole `result`.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::classify::classify;
use crate::outcome::{Outcome, TransientKind};

/// One upload of a call, sent as a part of the multipart form named `name`
/// (what `attach://<name>` refers to, or the file parameter it stands for).
/// The bytes are shared: a retry resends the same ones without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFile {
    /// The part's name.
    pub name: String,
    /// The file name Telegram sees.
    pub filename: String,
    /// Its MIME type (`application/octet-stream` when empty).
    pub content_type: String,
    /// The file.
    pub data: Bytes,
}

/// What a successful call answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// Telegram's `result`, as JSON text.
    pub json: String,
    /// The chat of the message(s) it returned (`result.chat.id`, or the first
    /// item's for an array of messages), if any.
    pub chat_id: Option<i64>,
    /// The ids of the messages it returned: `result.message_id`, each item's
    /// `message_id` for an array (albums, copies and forwards of many), else
    /// none.
    pub message_ids: Vec<i64>,
}

/// Why a method name cannot go into a request URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("method {0:?}: must be 1 to 64 ASCII letters and digits")]
pub struct MethodNameError(pub String);

/// Longest method name accepted (the Bot API's longest is under 40).
const MAX_METHOD_CHARS: usize = 64;

/// Checks that `method` is a Bot API method name (letters and digits), so that it
/// is safe as the last segment of the request URL.
pub fn check_method_name(method: &str) -> Result<(), MethodNameError> {
    let ok = !method.is_empty()
        && method.len() <= MAX_METHOD_CHARS
        && method.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(MethodNameError(method.chars().take(32).collect()))
    }
}

/// The value of a form field for a parameter: a string as is, anything else as
/// its JSON text (how the Bot API reads structured parameters from forms).
pub(crate) fn form_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The multipart form of a call with uploads: every parameter as a text field,
/// every upload as a file part.
pub(crate) fn form(
    params: &Map<String, Value>,
    files: &[CallFile],
) -> Result<reqwest::multipart::Form, Outcome> {
    let mut form = reqwest::multipart::Form::new();
    for (key, value) in params {
        if !value.is_null() {
            form = form.text(key.clone(), form_value(value));
        }
    }
    for f in files {
        let len = u64::try_from(f.data.len()).unwrap_or(u64::MAX);
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::from(f.data.clone()), len)
                .file_name(if f.filename.is_empty() {
                    f.name.clone()
                } else {
                    f.filename.clone()
                });
        let content_type = if f.content_type.is_empty() {
            "application/octet-stream"
        } else {
            &f.content_type
        };
        let part = part.mime_str(content_type).map_err(|_| Outcome::Rejected {
            code: 400,
            description: format!("upload {}: content type is not a MIME type", f.name),
        })?;
        form = form.part(f.name.clone(), part);
    }
    Ok(form)
}

/// Reads a call's answer: a 2xx with `ok: true` is a success holding `result`;
/// everything else is classified like any Bot API answer, but for a 404: the
/// Bot API answers it for a method it does not have (a typo, a method newer
/// than the server), which says nothing about the token, so it is the
/// call's failure ([`Outcome::Rejected`]), never a revoked bot. (A dead token
/// answers 401; the bot's own sends still catch a malformed one.)
pub fn read_answer(status: u16, body: &[u8]) -> Result<CallResult, Outcome> {
    if (200..300).contains(&status)
        && let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(body)
        && answer.get("ok").and_then(Value::as_bool) == Some(true)
    {
        let result = answer.remove("result").unwrap_or(Value::Null);
        return Ok(result_of(result));
    }
    match classify(status, body) {
        // Unreachable (ok:true was handled above); never call a failure a success.
        Outcome::Delivered { .. } => Err(Outcome::Transient {
            kind: TransientKind::Body,
            description: "answer is neither a success nor an error".to_string(),
        }),
        Outcome::Revoked {
            code: 404,
            description,
        } => Err(Outcome::Rejected {
            code: 404,
            description: format!("{description} (the Bot API has no such method)"),
        }),
        other => Err(other),
    }
}

fn result_of(result: Value) -> CallResult {
    let message = |v: &Value| -> (Option<i64>, Option<i64>) {
        (
            v.get("message_id").and_then(Value::as_i64),
            v.get("chat")
                .and_then(|c| c.get("id"))
                .and_then(Value::as_i64),
        )
    };
    let (chat_id, message_ids) = match &result {
        Value::Array(items) => {
            let chat = items.first().and_then(|v| message(v).1);
            (chat, items.iter().filter_map(|v| message(v).0).collect())
        }
        v => {
            let (id, chat) = message(v);
            (chat, id.into_iter().collect())
        }
    };
    CallResult {
        json: result.to_string(),
        chat_id,
        message_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_keeps_the_whole_result_and_reads_message_ids() {
        let one = read_answer(
            200,
            br#"{"ok":true,"result":{"message_id":7,"chat":{"id":-100},"photo":[]}}"#,
        )
        .expect("success");
        assert_eq!(one.message_ids, vec![7]);
        assert_eq!(one.chat_id, Some(-100));
        assert!(one.json.contains("\"photo\":[]"), "{}", one.json);
        let album = read_answer(
            200,
            br#"{"ok":true,"result":[{"message_id":3,"chat":{"id":5}},{"message_id":4,"chat":{"id":5}}]}"#,
        )
        .expect("success");
        assert_eq!((album.message_ids, album.chat_id), (vec![3, 4], Some(5)));
        let yes = read_answer(200, br#"{"ok":true,"result":true}"#).expect("success");
        assert_eq!((yes.json.as_str(), yes.message_ids.len()), ("true", 0));
        let ids = read_answer(200, br#"{"ok":true,"result":[{"message_id":9}]}"#).expect("ok");
        assert_eq!((ids.message_ids, ids.chat_id), (vec![9], None));
    }

    #[test]
    fn failures_are_classified_like_send_message() {
        assert!(matches!(
            read_answer(
                429,
                br#"{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":3}}"#
            ),
            Err(Outcome::RetryAfter { .. })
        ));
        assert!(matches!(
            read_answer(400, br#"{"ok":false,"error_code":400,"description":"Bad Request: message to edit not found"}"#),
            Err(Outcome::Rejected { code: 400, .. })
        ));
        assert!(matches!(
            read_answer(502, b"<html>bad gateway</html>"),
            Err(Outcome::Transient { .. })
        ));
        assert!(matches!(
            read_answer(200, br#"{"ok":"yes"}"#),
            Err(Outcome::Transient { .. })
        ));
    }

    #[test]
    fn an_unknown_method_is_the_calls_failure_not_a_revoked_token() {
        let answer = read_answer(
            404,
            br#"{"ok":false,"error_code":404,"description":"Not Found"}"#,
        );
        assert!(
            matches!(&answer, Err(Outcome::Rejected { code: 404, description }) if description.contains("no such method")),
            "{answer:?}"
        );
        assert!(matches!(
            read_answer(
                401,
                br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            Err(Outcome::Revoked { code: 401, .. })
        ));
    }

    #[test]
    fn method_names_are_letters_and_digits() {
        for ok in ["sendPhoto", "getMe", "someFutureMethod2"] {
            assert_eq!(check_method_name(ok), Ok(()));
        }
        for bad in [
            "",
            "send/../getMe",
            "send Photo",
            "sendPhoto?x=1",
            &"a".repeat(65),
        ] {
            assert!(check_method_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_fields_are_strings_or_json_text() {
        assert_eq!(form_value(&Value::String("@news".into())), "@news");
        assert_eq!(form_value(&serde_json::json!(-100)), "-100");
        assert_eq!(
            form_value(&serde_json::json!([{"type": "photo"}])),
            r#"[{"type":"photo"}]"#
        );
    }
}
