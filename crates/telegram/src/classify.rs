//! What one Bot API answer means for the sender. This is pure (status code and body
//! bytes in, [`Outcome`] out) so that every Telegram answer the gateway may meet can
//! be unit-tested without a server, and so the client, the emulator's tests and the
//! dispatcher agree on one reading of Telegram's errors.
//!
//! Order of checks, as the official SDKs do it: a 2xx with `ok: true` is success;
//! then `parameters.retry_after`, then `parameters.migrate_to_chat_id`, then the
//! HTTP status. Only a Telegram-shaped JSON body can make a failure permanent: an
//! HTML page from a proxy, an empty or truncated body is [`TransientKind::Body`]
//! (or [`TransientKind::Server`] for a 5xx), never `Revoked` or `Rejected`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::outcome::{Outcome, TransientKind};
use crate::redact::redact_tokens;

/// Cooldown assumed for a 429 that carries no `retry_after` (the Bot API server
/// answers so while it restarts).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Longest description kept from an answer, in characters.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Longest excerpt of a non-JSON body kept in a description, in characters.
const MAX_SNIPPET_CHARS: usize = 120;

/// Classifies one Bot API answer. Pure and lenient about fields it does not need.
///
/// * 2xx with `ok: true` and `result.message_id` → [`Outcome::Delivered`]
///   (chat id from `result.chat.id`, 0 if absent); `ok: true` without a
///   `message_id` → `Transient(Body)`.
/// * `parameters.retry_after` (any status) → `RetryAfter`;
///   `parameters.migrate_to_chat_id` → `Migrated`.
/// * Then the HTTP status (or, for a 2xx with `ok: false`, the body's
///   `error_code`): 401/404 → `Revoked`, 403 → `Forbidden`, 429 → `RetryAfter`
///   ([`DEFAULT_RETRY_AFTER`]), other 4xx → `Rejected`, 5xx → `Transient(Server)`.
/// * A body that is not a Telegram-shaped JSON object → `Transient(Server)` for a
///   5xx, `RetryAfter` for a 429, otherwise `Transient(Body)`.
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let answer = match serde_json::from_slice::<Answer<'_>>(body) {
        Ok(answer) if answer.is_telegram_shaped() => answer,
        _ => return classify_opaque(status, body),
    };
    let is_2xx = (200..300).contains(&status);
    if is_2xx && answer.ok == Scalar::Bool(true) {
        return match answer.result.message_id.as_i64() {
            Some(message_id) => Outcome::Delivered {
                message_id,
                chat_id: answer.result.chat_id.as_i64().unwrap_or(0),
            },
            None => Outcome::Transient {
                kind: TransientKind::Body,
                description: "answer has ok:true but no result.message_id".to_string(),
            },
        };
    }
    let description = match &answer.description {
        Scalar::Str(d) => sanitize(d),
        _ => status_text(status),
    };

    if let Some(retry_after) = answer.parameters.retry_after.as_secs() {
        return Outcome::RetryAfter {
            retry_after,
            description,
        };
    }
    if let Some(to_chat_id) = answer.parameters.migrate_to_chat_id.as_i64() {
        return Outcome::Migrated {
            to_chat_id,
            description,
        };
    }

    let code = if is_2xx {
        match answer
            .error_code
            .as_i64()
            .and_then(|c| u16::try_from(c).ok())
        {
            Some(code) => code,
            None => {
                return Outcome::Transient {
                    kind: TransientKind::Body,
                    description: format!(
                        "HTTP {status} with ok:false and no error_code: {description}"
                    ),
                };
            }
        }
    } else {
        status
    };
    by_code(code, description)
}

fn by_code(code: u16, description: String) -> Outcome {
    match code {
        401 | 404 => Outcome::Revoked { code, description },
        403 => Outcome::Forbidden { description },
        429 => Outcome::RetryAfter {
            retry_after: DEFAULT_RETRY_AFTER,
            description,
        },
        400..=499 => Outcome::Rejected { code, description },
        500..=599 => Outcome::Transient {
            kind: TransientKind::Server(code),
            description,
        },
        _ => Outcome::Transient {
            kind: TransientKind::Body,
            description: format!("unexpected HTTP {code}: {description}"),
        },
    }
}

/// A body we cannot read as a Bot API answer (HTML error page, empty, truncated).
fn classify_opaque(status: u16, body: &[u8]) -> Outcome {
    let mut description = status_text(status);
    let snippet = snippet(body);
    if snippet.is_empty() {
        description.push_str(if body.is_empty() {
            " (empty body)"
        } else {
            " (unreadable body)"
        });
    } else {
        description.push_str(": ");
        description.push_str(&snippet);
    }
    match status {
        429 => Outcome::RetryAfter {
            retry_after: DEFAULT_RETRY_AFTER,
            description,
        },
        500..=599 => Outcome::Transient {
            kind: TransientKind::Server(status),
            description,
        },
        _ => Outcome::Transient {
            kind: TransientKind::Body,
            description: format!("not a Bot API answer: {description}"),
        },
    }
}

/// `HTTP 502 Bad Gateway`.
fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// A short excerpt of a non-JSON body: an HTML page's `<title>` if it has one,
/// else the text with whitespace collapsed; bounded and redacted.
fn snippet(body: &[u8]) -> String {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let lower = text.to_ascii_lowercase();
    let picked = match (lower.find("<title>"), lower.find("</title>")) {
        (Some(start), Some(end)) if start + 7 <= end => &text[start + 7..end],
        _ => &text[..],
    };
    let collapsed: String = picked
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SNIPPET_CHARS)
        .collect();
    redact_tokens(&collapsed).into_owned()
}

/// Bounds a Telegram description and strips anything token-shaped.
fn sanitize(description: &str) -> String {
    let bounded: String = description.chars().take(MAX_DESCRIPTION_CHARS).collect();
    redact_tokens(&bounded).into_owned()
}

/// The parts of a Bot API answer that classification reads, deserialized
/// straight from the body (no `serde_json::Value` tree): `ok`, `result.message_id`,
/// `result.chat.id`, `error_code`, `description` and `parameters.retry_after` /
/// `parameters.migrate_to_chat_id`. Every other field is skipped unread. Each field
/// accepts any JSON value (a wrong type reads as "not there", as with a `Value`),
/// and a repeated key keeps its last value, as `serde_json::Value` does.
#[derive(Debug, Default)]
struct Answer<'a> {
    ok: Scalar<'a>,
    error_code: Scalar<'a>,
    description: Scalar<'a>,
    result: SentMessage<'a>,
    parameters: Parameters<'a>,
}

impl Answer<'_> {
    /// A Bot API answer has a boolean `ok` or a numeric `error_code`.
    fn is_telegram_shaped(&self) -> bool {
        matches!(self.ok, Scalar::Bool(_)) || self.error_code.is_number()
    }
}

/// `result` of `sendMessage`: a Message (only its id and chat id are read).
#[derive(Debug, Default)]
struct SentMessage<'a> {
    message_id: Scalar<'a>,
    /// `result.chat.id`.
    chat_id: Scalar<'a>,
}

/// `result.chat`: a Chat (only its id is read).
#[derive(Debug, Default)]
struct Chat<'a> {
    id: Scalar<'a>,
}

/// `parameters`: a ResponseParameters.
#[derive(Debug, Default)]
struct Parameters<'a> {
    retry_after: Scalar<'a>,
    migrate_to_chat_id: Scalar<'a>,
}

/// One JSON value as classification needs it: a boolean, a number, a string
/// (borrowed from the body unless it had escapes), or anything else (null, an
/// array, an object: skipped, kept as `Other`).
#[derive(Debug, Default, PartialEq)]
enum Scalar<'a> {
    /// The key was not in the answer.
    #[default]
    Absent,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Other,
}

impl Scalar<'_> {
    fn is_number(&self) -> bool {
        matches!(self, Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_))
    }

    /// An integer, also when sent as a float with no fraction or as a string.
    fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            // Above i64::MAX: as a float it would be over the bound below.
            Scalar::UInt(u) => i64::try_from(*u).ok(),
            Scalar::Float(f) => (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(*f as i64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A non-negative number of seconds (fractions rounded up), also as a string.
    fn as_secs(&self) -> Option<Duration> {
        let secs = match self {
            Scalar::UInt(u) => Some(*u),
            Scalar::Int(i) => u64::try_from(*i).ok(),
            Scalar::Float(f) if f.is_finite() && *f >= 0.0 => {
                Some(f.ceil().min(u64::MAX as f64) as u64)
            }
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }?;
        Some(Duration::from_secs(secs))
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, matched without allocating (escaped keys are compared after
/// unescaping, as `serde_json::Value` would store them).
struct Key(u8);

impl Key {
    const OTHER: u8 = 0;
}

/// Deserializes one object key as the index of `names` it equals (1-based), or
/// [`Key::OTHER`].
struct KeySeed(&'static [&'static str]);

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        struct V(&'static [&'static str]);
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                let i = self
                    .0
                    .iter()
                    .position(|n| *n == v)
                    .map_or(Key::OTHER, |i| u8::try_from(i + 1).unwrap_or(Key::OTHER));
                Ok(Key(i))
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// Reads an object's entries: `on` gets the key's index (see [`KeySeed`]) and
/// the map positioned at its value, and must consume that value.
fn read_object<'de, A, F>(
    mut map: A,
    names: &'static [&'static str],
    mut on: F,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(u8, &mut A) -> Result<(), A::Error>,
{
    while let Some(Key(k)) = map.next_key_seed(KeySeed(names))? {
        if k == Key::OTHER {
            map.next_value::<IgnoredAny>()?;
        } else {
            on(k, &mut map)?;
        }
    }
    Ok(())
}

/// Implements `Deserialize` for a struct read from a JSON object; any other
/// JSON value reads as the default (all fields absent), as `Value::get` on a
/// non-object would, except at the top level where [`Answer`] must be an object.
macro_rules! object {
    ($ty:ident, $top:expr, |$m:ident, $out:ident| [$($n:literal => $body:expr),+ $(,)?]) => {
        impl<'de> Deserialize<'de> for $ty<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($ty), ")"))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                        const NAMES: &[&str] = &[$($n),+];
                        let mut out = $ty::default();
                        read_object(map, NAMES, |k, $m| {
                            let $out = &mut out;
                            match NAMES[usize::from(k) - 1] {
                                $($n => $body,)+
                                _ => {}
                            }
                            Ok(())
                        })?;
                        Ok(out)
                    }
                }
                if $top {
                    d.deserialize_map(V)
                } else {
                    // Not an object (`"result": true`, null, a number): nothing in it.
                    match Scalar::deserialize_or_object(d, V)? {
                        Some(v) => Ok(v),
                        None => Ok($ty::default()),
                    }
                }
            }
        }
    };
}

object!(Answer, true, |m, o| [
    "ok" => o.ok = m.next_value()?,
    "error_code" => o.error_code = m.next_value()?,
    "description" => o.description = m.next_value()?,
    "result" => o.result = m.next_value()?,
    "parameters" => o.parameters = m.next_value()?,
]);
object!(SentMessage, false, |m, o| [
    "message_id" => o.message_id = m.next_value()?,
    "chat" => o.chat_id = m.next_value::<Chat<'de>>()?.id,
]);
object!(Chat, false, |m, o| [
    "id" => o.id = m.next_value()?,
]);
object!(Parameters, false, |m, o| [
    "retry_after" => o.retry_after = m.next_value()?,
    "migrate_to_chat_id" => o.migrate_to_chat_id = m.next_value()?,
]);

impl Scalar<'_> {
    /// Runs `object` on a JSON object; any other value is skipped (`None`).
    fn deserialize_or_object<'de, D, V>(d: D, object: V) -> Result<Option<V::Value>, D::Error>
    where
        D: Deserializer<'de>,
        V: Visitor<'de>,
    {
        struct Either<V>(V);
        impl<'de, V: Visitor<'de>> Visitor<'de> for Either<V> {
            type Value = Option<V::Value>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                self.0.visit_map(map).map(Some)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(Either(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classification as it was before 2026-11-27, through a
    /// `serde_json::Value`: the reference the borrowed [`Answer`] must agree with.
    mod reference {
        use std::time::Duration;

        use serde_json::{Map, Value};

        use crate::outcome::{Outcome, TransientKind};

        pub(super) fn classify(status: u16, body: &[u8]) -> Outcome {
            let obj = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(obj)) if is_telegram_shaped(&obj) => obj,
                _ => return super::classify_opaque(status, body),
            };
            let is_2xx = (200..300).contains(&status);
            let ok = obj.get("ok").and_then(Value::as_bool);
            let description = obj
                .get("description")
                .and_then(Value::as_str)
                .map(super::sanitize)
                .unwrap_or_else(|| super::status_text(status));

            if is_2xx && ok == Some(true) {
                let result = obj.get("result");
                let message_id = result.and_then(|r| r.get("message_id")).and_then(as_i64);
                let chat_id = result
                    .and_then(|r| r.get("chat"))
                    .and_then(|c| c.get("id"))
                    .and_then(as_i64)
                    .unwrap_or(0);
                return match message_id {
                    Some(message_id) => Outcome::Delivered {
                        message_id,
                        chat_id,
                    },
                    None => Outcome::Transient {
                        kind: TransientKind::Body,
                        description: "answer has ok:true but no result.message_id".to_string(),
                    },
                };
            }

            let params = obj.get("parameters");
            if let Some(retry_after) = params.and_then(|p| p.get("retry_after")).and_then(as_secs) {
                return Outcome::RetryAfter {
                    retry_after,
                    description,
                };
            }
            if let Some(to_chat_id) = params
                .and_then(|p| p.get("migrate_to_chat_id"))
                .and_then(as_i64)
            {
                return Outcome::Migrated {
                    to_chat_id,
                    description,
                };
            }

            let code = if is_2xx {
                match obj
                    .get("error_code")
                    .and_then(as_i64)
                    .and_then(|c| u16::try_from(c).ok())
                {
                    Some(code) => code,
                    None => {
                        return Outcome::Transient {
                            kind: TransientKind::Body,
                            description: format!(
                                "HTTP {status} with ok:false and no error_code: {description}"
                            ),
                        };
                    }
                }
            } else {
                status
            };
            super::by_code(code, description)
        }

        /// A JSON object is a Bot API answer if it has a boolean `ok` or an `error_code`.
        fn is_telegram_shaped(obj: &Map<String, Value>) -> bool {
            obj.get("ok").is_some_and(Value::is_boolean)
                || obj.get("error_code").is_some_and(Value::is_number)
        }

        /// An integer, also when sent as a float with no fraction or as a string.
        fn as_i64(v: &Value) -> Option<i64> {
            match v {
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                }),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        }

        /// A non-negative number of seconds (fractions rounded up), also as a string.
        fn as_secs(v: &Value) -> Option<Duration> {
            let secs = match v {
                Value::Number(n) => n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f.ceil().min(u64::MAX as f64) as u64)
                }),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }?;
            Some(Duration::from_secs(secs))
        }
    }

    use proptest::prelude::*;
    use serde_json::{Value, json};

    #[test]
    fn odd_but_valid_answers() {
        // A full Message as Telegram sends it, extra fields everywhere, `ok` last.
        let body = br#" {
            "result": {"message_id": 4242, "from": {"id": 1, "is_bot": true, "first_name": "b", "username": "x_bot"},
                "chat": {"first_name": "A", "id": 987654321, "type": "private", "photo": null},
                "date": 1700000000, "text": "caf\u00e9 \"q\" \ud83d\ude00",
                "entities": [{"type": "bold", "offset": 0, "length": 4}, [1, [2, {"a": []}]]],
                "reply_markup": {"inline_keyboard": [[{"text": "t", "callback_data": "d"}]]},
                "link_preview_options": {"is_disabled": true}},
            "ok": true
        } "#;
        assert_eq!(
            classify(200, body),
            Outcome::Delivered {
                message_id: 4242,
                chat_id: 987654321
            }
        );
        // Numbers as the docs allow: ids up to 52 significant bits, and the
        // lenient forms (integral float, string).
        for (body, message_id, chat_id) in [
            (
                &br#"{"ok":true,"result":{"message_id":2147483647,"chat":{"id":-1009007199254740}}}"#[..],
                2147483647,
                -1009007199254740,
            ),
            (
                br#"{"ok":true,"result":{"message_id":12.0,"chat":{"id":"-100123"}}}"#,
                12,
                -100123,
            ),
            (
                br#"{"ok":true,"result":{"message_id":"77","chat":{"id":1e3}}}"#,
                77,
                1000,
            ),
            // `chat` not an object, `id` null: chat id unknown (0).
            (
                br#"{"ok":true,"result":{"message_id":5,"chat":[1]}}"#,
                5,
                0,
            ),
            (
                br#"{"ok":true,"result":{"message_id":5,"chat":{"id":null}}}"#,
                5,
                0,
            ),
            // A repeated key keeps its last value, as serde_json's Value does.
            (
                br#"{"ok":false,"ok":true,"result":{"message_id":1},"result":{"message_id":2,"chat":{"id":3}}}"#,
                2,
                3,
            ),
        ] {
            assert_eq!(
                classify(200, body),
                Outcome::Delivered {
                    message_id,
                    chat_id
                },
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // A fractional message id is no message id.
        assert!(matches!(
            classify(200, br#"{"ok":true,"result":{"message_id":1.5}}"#),
            Outcome::Transient {
                kind: TransientKind::Body,
                ..
            }
        ));
        // Missing optional fields: no description (status text), empty or null
        // parameters, a null result on an error.
        assert_eq!(
            classify(400, br#"{"ok":false,"error_code":400}"#),
            Outcome::Rejected {
                code: 400,
                description: "HTTP 400 Bad Request".into()
            }
        );
        assert_eq!(
            classify(
                403,
                br#"{"ok":false,"error_code":403,"description":null,"parameters":{},"result":null}"#
            ),
            Outcome::Forbidden {
                description: "HTTP 403 Forbidden".into()
            }
        );
        assert_eq!(
            classify(
                400,
                br#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found","parameters":null}"#
            ),
            Outcome::Rejected {
                code: 400,
                description: "Bad Request: chat not found".into()
            }
        );
        // Escapes in a description are read, not copied raw.
        assert_eq!(
            classify(
                400,
                br#"{"description":"Bad Request: can\u0027t parse entities: \"x\"\n","error_code":400,"ok":false}"#
            ),
            Outcome::Rejected {
                code: 400,
                description: "Bad Request: can't parse entities: \"x\"\n".into()
            }
        );
        // retry_after before migrate_to_chat_id, with extra parameters.
        assert_eq!(
            classify(
                400,
                br#"{"ok":false,"error_code":400,"description":"x","parameters":{"migrate_to_chat_id":-100123,"retry_after":4,"extra":{"a":[1]}}}"#
            ),
            Outcome::RetryAfter {
                retry_after: Duration::from_secs(4),
                description: "x".into()
            }
        );
        assert_eq!(
            classify(
                400,
                br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890.0}}"#
            ),
            Outcome::Migrated {
                to_chat_id: -1001234567890,
                description: "Bad Request: group chat was upgraded to a supergroup chat".into()
            }
        );
        // Negative or non-numeric retry_after is no retry_after.
        assert_eq!(
            classify(
                429,
                br#"{"ok":false,"error_code":429,"description":"T","parameters":{"retry_after":-3}}"#
            ),
            Outcome::RetryAfter {
                retry_after: DEFAULT_RETRY_AFTER,
                description: "T".into()
            }
        );
        // An error_code alone (no ok) is Telegram-shaped, also as a float; a
        // string `ok` alone is not.
        assert!(matches!(
            classify(
                200,
                br#"{"error_code":403.0,"description":"Forbidden: user is deactivated"}"#
            ),
            Outcome::Forbidden { .. }
        ));
        assert!(matches!(
            classify(200, br#"{"ok":"true","result":{"message_id":1}}"#),
            Outcome::Transient {
                kind: TransientKind::Body,
                ..
            }
        ));
        // Not an object at the top level, or trailing garbage: not an answer.
        for body in [
            &br#""ok""#[..],
            b"true",
            b"null",
            br#"[{"ok":true,"result":{"message_id":1}}]"#,
            br#"{"ok":true,"result":{"message_id":1}} x"#,
        ] {
            assert!(
                matches!(
                    classify(200, body),
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn escaped_token_in_description_is_redacted() {
        // The token only appears once the escapes are read.
        let body = br#"{"ok":false,"error_code":400,"description":"Bad Request: bot123:\u0041AHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"}"#;
        let out = classify(400, body);
        let text = out.to_string();
        assert!(
            !text.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
            "{text}"
        );
        assert!(text.contains("bot123:***"), "{text}");
    }

    /// JSON values shaped like Bot API answers, with the fields classification
    /// reads given every JSON type.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            (-2_000_000_000_000i64..2_000_000_000_000).prop_map(|i| json!(i)),
            (-1.0e16f64..1.0e16).prop_map(|f| json!(f)),
            (0u32..100).prop_map(|i| json!(f64::from(i) / 2.0)),
            "[ -~]{0,12}".prop_map(Value::String),
            (-5000i64..5000).prop_map(|i| json!(i.to_string())),
            prop_oneof![
                Just("Forbidden: bot was blocked by the user"),
                Just("Bad Request: chat not found"),
                Just("caf\u{e9} \"quoted\" \\ back\nline"),
                Just("bot42:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
            ]
            .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            let key = prop_oneof![
                Just("ok"),
                Just("result"),
                Just("message_id"),
                Just("chat"),
                Just("id"),
                Just("error_code"),
                Just("description"),
                Just("parameters"),
                Just("retry_after"),
                Just("migrate_to_chat_id"),
                Just("text"),
                Just("date"),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec((key, inner), 0..6).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The borrowed reading classifies every answer as the `Value` one did.
        #[test]
        fn agrees_with_the_value_reading(
            status in prop_oneof![Just(200u16), Just(400), Just(401), Just(403), Just(404), Just(429), Just(502), 100u16..600],
            ok in prop_oneof![Just(None), any::<bool>().prop_map(|b| Some(json!(b))), any_value().prop_map(Some)],
            code in prop_oneof![Just(None), (0i64..700).prop_map(|c| Some(json!(c))), any_value().prop_map(Some)],
            rest in any_value(),
        ) {
            let mut obj = match rest {
                Value::Object(o) => o,
                other => {
                    let mut o = serde_json::Map::new();
                    o.insert("result".into(), other);
                    o
                }
            };
            if let Some(ok) = ok {
                obj.insert("ok".into(), ok);
            }
            if let Some(code) = code {
                obj.insert("error_code".into(), code);
            }
            let body = Value::Object(obj).to_string();
            prop_assert_eq!(
                classify(status, body.as_bytes()),
                reference::classify(status, body.as_bytes()),
                "{}", body
            );
        }

        /// Also for bytes that are mostly not JSON.
        #[test]
        fn agrees_on_any_bytes(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(classify(status, &body), reference::classify(status, &body));
        }
    }

    fn err_body(code: u16, description: &str) -> Vec<u8> {
        serde_json::json!({"ok": false, "error_code": code, "description": description})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn delivered() {
        let body = br#"{"ok":true,"result":{"message_id":4242,"from":{"id":1,"is_bot":true,"first_name":"b"},"chat":{"id":-1001234567890,"type":"supergroup","title":"t"},"date":1700000000,"text":"hi"}}"#;
        let out = classify(200, body);
        assert_eq!(
            out,
            Outcome::Delivered {
                message_id: 4242,
                chat_id: -1001234567890
            }
        );
        assert!(!out.is_retryable());
        assert_eq!(out.telegram_code(), None);
        assert_eq!(out.label(), "delivered");
        assert_eq!(out.description(), None);
    }

    #[test]
    fn delivered_lenient_without_chat() {
        assert_eq!(
            classify(200, br#"{"ok":true,"result":{"message_id":7}}"#),
            Outcome::Delivered {
                message_id: 7,
                chat_id: 0
            }
        );
    }

    #[test]
    fn ok_true_without_message_id_is_transient_body() {
        for body in [
            &br#"{"ok":true,"result":{"chat":{"id":5}}}"#[..],
            br#"{"ok":true,"result":true}"#,
            br#"{"ok":true}"#,
        ] {
            let out = classify(200, body);
            assert!(
                matches!(
                    out,
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "{out:?}"
            );
            assert!(out.is_retryable());
        }
    }

    #[test]
    fn too_many_requests_with_retry_after() {
        for n in [1u64, 35, 4310] {
            let body = serde_json::json!({
                "ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {n}"),
                "parameters": {"retry_after": n}
            });
            let out = classify(429, body.to_string().as_bytes());
            assert_eq!(
                out,
                Outcome::RetryAfter {
                    retry_after: Duration::from_secs(n),
                    description: format!("Too Many Requests: retry after {n}")
                }
            );
            assert!(out.is_retryable());
            assert_eq!(out.telegram_code(), Some(429));
        }
    }

    #[test]
    fn retry_after_is_checked_before_status() {
        let body =
            br#"{"ok":false,"error_code":400,"description":"x","parameters":{"retry_after":3}}"#;
        assert!(
            matches!(classify(400, body), Outcome::RetryAfter { retry_after, .. } if retry_after == Duration::from_secs(3))
        );
        // Lenient number forms.
        let body =
            br#"{"ok":false,"error_code":429,"description":"x","parameters":{"retry_after":2.5}}"#;
        assert!(
            matches!(classify(429, body), Outcome::RetryAfter { retry_after, .. } if retry_after == Duration::from_secs(3))
        );
        let body =
            br#"{"ok":false,"error_code":429,"description":"x","parameters":{"retry_after":"9"}}"#;
        assert!(
            matches!(classify(429, body), Outcome::RetryAfter { retry_after, .. } if retry_after == Duration::from_secs(9))
        );
    }

    #[test]
    fn too_many_requests_without_retry_after() {
        let out = classify(429, &err_body(429, "Too Many Requests"));
        assert_eq!(
            out,
            Outcome::RetryAfter {
                retry_after: DEFAULT_RETRY_AFTER,
                description: "Too Many Requests".into()
            }
        );
        let out = classify(429, b"<html>slow down</html>");
        assert!(
            matches!(out, Outcome::RetryAfter { retry_after, .. } if retry_after == DEFAULT_RETRY_AFTER)
        );
    }

    #[test]
    fn unauthorized_and_not_found_revoke() {
        let out = classify(401, &err_body(401, "Unauthorized"));
        assert_eq!(
            out,
            Outcome::Revoked {
                code: 401,
                description: "Unauthorized".into()
            }
        );
        assert!(!out.is_retryable());
        assert_eq!(out.telegram_code(), Some(401));
        let out = classify(404, &err_body(404, "Not Found"));
        assert_eq!(
            out,
            Outcome::Revoked {
                code: 404,
                description: "Not Found".into()
            }
        );
        assert_eq!(out.telegram_code(), Some(404));
    }

    #[test]
    fn forbidden_strings() {
        for d in [
            "Forbidden: bot was blocked by the user",
            "Forbidden: bot was kicked from the supergroup chat",
            "Forbidden: user is deactivated",
        ] {
            let out = classify(403, &err_body(403, d));
            assert_eq!(
                out,
                Outcome::Forbidden {
                    description: d.into()
                }
            );
            assert!(!out.is_retryable());
            assert_eq!(out.telegram_code(), Some(403));
        }
    }

    #[test]
    fn bad_requests_are_rejected() {
        for d in [
            "Bad Request: chat not found",
            "Bad Request: message is too long",
            "Bad Request: message text is empty",
        ] {
            let out = classify(400, &err_body(400, d));
            assert_eq!(
                out,
                Outcome::Rejected {
                    code: 400,
                    description: d.into()
                }
            );
            assert!(!out.is_retryable());
            assert_eq!(out.telegram_code(), Some(400));
        }
        let out = classify(409, &err_body(409, "Conflict: whatever"));
        assert_eq!(
            out,
            Outcome::Rejected {
                code: 409,
                description: "Conflict: whatever".into()
            }
        );
    }

    #[test]
    fn migrated() {
        let body = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#;
        let out = classify(400, body);
        assert_eq!(
            out,
            Outcome::Migrated {
                to_chat_id: -1001234567890,
                description: "Bad Request: group chat was upgraded to a supergroup chat".into()
            }
        );
        assert!(!out.is_retryable());
        assert_eq!(out.telegram_code(), Some(400));
    }

    #[test]
    fn server_errors_with_html_bodies() {
        let html502 = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n";
        let out = classify(502, html502);
        assert_eq!(
            out,
            Outcome::Transient {
                kind: TransientKind::Server(502),
                description: "HTTP 502 Bad Gateway: 502 Bad Gateway".into()
            }
        );
        assert!(out.is_retryable());
        assert_eq!(out.telegram_code(), Some(502));
        let out = classify(500, b"<html><body>Internal Server Error</body></html>");
        assert!(
            matches!(&out, Outcome::Transient { kind: TransientKind::Server(500), description } if description.starts_with("HTTP 500 Internal Server Error: ")),
            "{out:?}"
        );
        let out = classify(500, &err_body(500, "Internal Server Error"));
        assert_eq!(
            out,
            Outcome::Transient {
                kind: TransientKind::Server(500),
                description: "Internal Server Error".into()
            }
        );
        let out = classify(503, b"");
        assert!(
            matches!(&out, Outcome::Transient { kind: TransientKind::Server(503), description } if description.contains("empty body")),
            "{out:?}"
        );
    }

    #[test]
    fn garbage_is_transient_body() {
        let full = br#"{"ok":true,"result":{"message_id":1,"chat":{"id":2}}}"#;
        for cut in [0, 1, 10, full.len() - 1] {
            let out = classify(200, &full[..cut]);
            assert!(
                matches!(
                    out,
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "cut {cut}: {out:?}"
            );
        }
        for (status, body) in [
            (200, &b"hello"[..]),
            (200, b"[1,2,3]"),
            (200, b"{\"foo\":1}"),
            (200, b"\xff\xfe\x00garbage"),
            (400, b"<html>Bad Request</html>"),
            (401, b"Unauthorized"),
            (404, b"<html><title>404 Not Found</title></html>"),
            (302, b""),
            (200, br#"{"ok":false}"#),
        ] {
            let out = classify(status, body);
            assert!(
                matches!(
                    out,
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "{status}: {out:?}"
            );
            assert!(out.is_retryable());
        }
    }

    #[test]
    fn ok_false_with_2xx_uses_error_code() {
        let out = classify(
            200,
            &err_body(403, "Forbidden: bot was blocked by the user"),
        );
        assert!(matches!(out, Outcome::Forbidden { .. }), "{out:?}");
    }

    #[test]
    fn descriptions_are_bounded_and_redacted() {
        let secret = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
        let d = format!("Bad Request: bot123:{secret} {}", "x".repeat(1000));
        let out = classify(400, &err_body(400, &d));
        let desc = out.description().expect("description");
        assert!(!desc.contains(secret));
        assert!(desc.contains("bot123:***"));
        assert!(desc.chars().count() <= MAX_DESCRIPTION_CHARS);
        let html = format!("<html><title>oops /bot9:{secret}/sendMessage</title></html>");
        let out = classify(502, html.as_bytes());
        assert!(!out.to_string().contains(secret), "{out}");
    }

    #[test]
    fn display_and_labels() {
        let out = classify(429, br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#);
        assert_eq!(
            out.to_string(),
            "throttled for 5s: Too Many Requests: retry after 5"
        );
        assert_eq!(out.label(), "retry_after");
        let t = Outcome::Transient {
            kind: TransientKind::Timeout,
            description: "d".into(),
        };
        assert_eq!(t.telegram_code(), None);
        assert_eq!(t.to_string(), "timeout: d");
    }
}
