//! Request parameters, collected the way the Bot API accepts them (query string, JSON body,
//! `application/x-www-form-urlencoded` body, or `multipart/form-data`), and the validation of
//! `sendMessage`'s parameters.
//!
//! Unknown parameters are ignored. Body values override query values of the same name.

use std::collections::HashMap;

use serde_json::Value;

use crate::reply::ApiError;

/// Longest text accepted, in characters.
pub(crate) const MAX_TEXT_CHARS: usize = 4096;

/// All parameters of one request, by name.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Params(HashMap<String, Value>);

/// Where a message goes: a numeric chat id, or something else (an `@username` or garbage)
/// that the emulator treats as an unknown chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Id(i64),
    Unknown,
}

/// A validated `sendMessage`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SendMessage {
    pub chat: Target,
    pub text: String,
}

/// A body the emulator could not read as the content type it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadBody;

impl Params {
    /// Collects the parameters of a request. A body that does not parse is reported as
    /// `Err` (the caller turns it into a 400 at the validation step).
    pub fn collect(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Params, BadBody> {
        let mut params = Params::default();
        if let Some(q) = query {
            params.add_urlencoded(q.as_bytes())?;
        }
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(params);
        }
        let ct = content_type.unwrap_or("").trim().to_ascii_lowercase();
        if ct.starts_with("application/json") {
            params.add_json(body)?;
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            params.add_urlencoded(body)?;
        } else if ct.starts_with("multipart/form-data") {
            let boundary = boundary(&ct, content_type.unwrap_or("")).ok_or(BadBody)?;
            params.add_multipart(body, &boundary)?;
        } else if body.first() == Some(&b'{') {
            params.add_json(body)?;
        } else {
            params.add_urlencoded(body)?;
        }
        Ok(params)
    }

    fn add_json(&mut self, body: &[u8]) -> Result<(), BadBody> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                self.0.extend(map);
                Ok(())
            }
            _ => Err(BadBody),
        }
    }

    fn add_urlencoded(&mut self, raw: &[u8]) -> Result<(), BadBody> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(raw).map_err(|_| BadBody)?;
        self.0
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
        Ok(())
    }

    fn add_multipart(&mut self, body: &[u8], boundary: &str) -> Result<(), BadBody> {
        let delimiter = format!("--{boundary}");
        let mut rest = body;
        // Skip the preamble up to the first delimiter.
        let start = find(rest, delimiter.as_bytes()).ok_or(BadBody)?;
        rest = &rest[start + delimiter.len()..];
        loop {
            if rest.starts_with(b"--") {
                return Ok(());
            }
            rest = rest.strip_prefix(b"\r\n").ok_or(BadBody)?;
            let end = find(rest, delimiter.as_bytes()).ok_or(BadBody)?;
            let part = &rest[..end];
            rest = &rest[end + delimiter.len()..];
            let part = part.strip_suffix(b"\r\n").unwrap_or(part);
            let split = find(part, b"\r\n\r\n").ok_or(BadBody)?;
            let headers = String::from_utf8_lossy(&part[..split]);
            let value = &part[split + 4..];
            if let Some(name) = part_name(&headers) {
                let value = String::from_utf8(value.to_vec()).map_err(|_| BadBody)?;
                self.0.insert(name, Value::String(value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// Validates `sendMessage` in Telegram's order: chat_id, text, length, parse_mode.
    pub fn send_message(&self) -> Result<SendMessage, ApiError> {
        let chat = match self.get("chat_id") {
            None => return Err(ApiError::bad_request("Bad Request: chat_id is empty")),
            Some(Value::Number(n)) => n.as_i64().map_or(Target::Unknown, Target::Id),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    return Err(ApiError::bad_request("Bad Request: chat_id is empty"));
                }
                s.parse().map_or(Target::Unknown, Target::Id)
            }
            Some(_) => Target::Unknown,
        };
        let text = match self.get("text") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if text.trim().is_empty() {
            return Err(ApiError::bad_request("Bad Request: message text is empty"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request("Bad Request: message is too long"));
        }
        let parse_mode = match self.get("parse_mode") {
            None => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => "?",
        };
        let known = ["", "html", "markdown", "markdownv2"];
        if !known.contains(&parse_mode.to_ascii_lowercase().as_str()) {
            return Err(ApiError::bad_request("Bad Request: unsupported parse_mode"));
        }
        Ok(SendMessage { chat, text })
    }
}

/// The multipart boundary, taken from the original (case-preserving) content type.
fn boundary(lower: &str, original: &str) -> Option<String> {
    let at = lower.find("boundary=")?;
    let raw = original.get(at + "boundary=".len()..)?;
    let raw = raw.split(';').next()?.trim().trim_matches('"');
    (!raw.is_empty()).then(|| raw.to_owned())
}

/// The `name="..."` of a part's Content-Disposition header.
fn part_name(headers: &str) -> Option<String> {
    headers
        .split("\r\n")
        .find(|h| h.to_ascii_lowercase().starts_with("content-disposition:"))
        .and_then(|h| {
            let at = h.find("name=\"")?;
            let rest = &h[at + 6..];
            let end = rest.find('"')?;
            Some(rest[..end].to_owned())
        })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(query: Option<&str>, ct: Option<&str>, body: &str) -> Result<SendMessage, ApiError> {
        Params::collect(query, ct, body.as_bytes())
            .map_err(|_| ApiError::bad_request("bad body"))?
            .send_message()
    }

    fn ok(chat: i64, text: &str) -> Result<SendMessage, ApiError> {
        Ok(SendMessage {
            chat: Target::Id(chat),
            text: text.into(),
        })
    }

    fn bad(description: &'static str) -> Result<SendMessage, ApiError> {
        Err(ApiError::bad_request(description))
    }

    #[test]
    fn reads_query_json_and_form() {
        assert_eq!(
            send(Some("chat_id=5&text=hi%20there"), None, ""),
            ok(5, "hi there")
        );
        assert_eq!(
            send(
                None,
                Some("application/json"),
                r#"{"chat_id":-100,"text":"x","foo":[1]}"#
            ),
            ok(-100, "x")
        );
        assert_eq!(
            send(
                None,
                Some("application/json; charset=utf-8"),
                r#"{"chat_id":"42","text":"y"}"#
            ),
            ok(42, "y")
        );
        assert_eq!(
            send(
                None,
                Some("application/x-www-form-urlencoded"),
                "chat_id=-7&text=a%2Bb&z=1"
            ),
            ok(-7, "a+b")
        );
        // Body overrides query.
        assert_eq!(
            send(
                Some("chat_id=1&text=q"),
                Some("application/json"),
                r#"{"text":"b"}"#
            ),
            ok(1, "b")
        );
    }

    #[test]
    fn reads_multipart() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n77\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nline1\r\nline2\r\n\
                    --XyZ--\r\n";
        assert_eq!(
            send(None, Some("multipart/form-data; boundary=XyZ"), body),
            ok(77, "line1\r\nline2")
        );
    }

    #[test]
    fn validation_errors() {
        assert_eq!(
            send(Some("text=hi"), None, ""),
            bad("Bad Request: chat_id is empty")
        );
        assert_eq!(
            send(Some("chat_id=&text=hi"), None, ""),
            bad("Bad Request: chat_id is empty")
        );
        assert_eq!(
            send(
                None,
                Some("application/json"),
                r#"{"chat_id":null,"text":"hi"}"#
            ),
            bad("Bad Request: chat_id is empty")
        );
        assert_eq!(
            send(Some("chat_id=1"), None, ""),
            bad("Bad Request: message text is empty")
        );
        assert_eq!(
            send(Some("chat_id=1&text=%20"), None, ""),
            bad("Bad Request: message text is empty")
        );
        let long = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(
            send(
                None,
                Some("application/json"),
                &serde_json::json!({"chat_id":1,"text":long}).to_string()
            ),
            ok(1, &long)
        );
        let too_long = "a".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            send(
                None,
                Some("application/json"),
                &serde_json::json!({"chat_id":1,"text":too_long}).to_string()
            ),
            bad("Bad Request: message is too long")
        );
        for mode in ["HTML", "Markdown", "MarkdownV2", "html", ""] {
            assert!(
                send(
                    Some(&format!("chat_id=1&text=x&parse_mode={mode}")),
                    None,
                    ""
                )
                .is_ok()
            );
        }
        assert_eq!(
            send(Some("chat_id=1&text=x&parse_mode=BBCode"), None, ""),
            bad("Bad Request: unsupported parse_mode")
        );
    }

    #[test]
    fn odd_chat_ids_are_unknown_chats() {
        let r = send(Some("chat_id=@channel&text=x"), None, "");
        assert_eq!(r.map(|m| m.chat), Ok(Target::Unknown));
        let r = send(
            None,
            Some("application/json"),
            r#"{"chat_id":1.5,"text":"x"}"#,
        );
        assert_eq!(r.map(|m| m.chat), Ok(Target::Unknown));
    }

    #[test]
    fn unreadable_bodies_are_errors() {
        assert_eq!(
            Params::collect(None, Some("application/json"), b"{nope"),
            Err(BadBody)
        );
        assert_eq!(
            Params::collect(None, Some("application/json"), b"[1]"),
            Err(BadBody)
        );
        assert_eq!(
            Params::collect(None, Some("multipart/form-data"), b"x"),
            Err(BadBody)
        );
        assert!(Params::collect(None, Some("application/json"), b"  ").is_ok());
    }
}
