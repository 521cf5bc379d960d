//! The parameters of a Bot API request, read the ways the Bot API takes
//! them: the query string, a JSON object, an URL-encoded form, or
//! `multipart/form-data` with uploads.
//!
//! Values are kept as the client sent them: a form's numbers and nested
//! objects arrive as strings (`"chat_id": "42"`, `"reply_markup": "{...}"`),
//! which the Bot API reads like their JSON forms, and so do the gateway's
//! checks (`shardgate-botapi` decodes a string that holds JSON). A multipart
//! part with a file name is an upload under the part's name; the method's
//! parameters refer to it by that name (`photo` for `sendPhoto`) or by
//! `attach://<name>`, as with Telegram.
//!
//! Bounds: the whole body at most [`MAX_BODY_BYTES`], at most
//! [`MAX_PARTS`] multipart parts, [`MAX_FILES`] of them uploads; past them
//! the request is refused before anything is queued.

use bytes::Bytes;
use futures::Stream;
use serde_json::{Map, Value};
use shardgate_gateway::call::{MAX_PARAMS_BYTES, MAX_UPLOAD_BYTES};
use shardgate_proto::v1 as pb;

/// The largest request body read: a call's uploads and parameters with room
/// for the multipart framing.
pub const MAX_BODY_BYTES: usize = MAX_UPLOAD_BYTES as usize + MAX_PARAMS_BYTES + (64 << 10);

/// Multipart parts read at most (an album of ten with thumbnails and covers
/// is thirty, plus its text fields).
pub const MAX_PARTS: usize = 256;

/// Uploads in one request at most.
pub const MAX_FILES: usize = 64;

/// A request's parameters and uploads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// Every parameter; a later source wins over an earlier one (query
    /// string, then body).
    pub params: Map<String, Value>,
    /// Uploads, in the order the body held them.
    pub files: Vec<pb::InputFile>,
}

/// Why a body could not be read; answered 400 (413 when too large).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is not a JSON object: {0}")]
    Json(String),
    #[error("the form could not be read: {0}")]
    Form(String),
    #[error("the multipart body could not be read: {0}")]
    Multipart(String),
    #[error("the request body is over {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error(
        "content type {0:?} is not one the Bot API takes; send application/json, \
         application/x-www-form-urlencoded or multipart/form-data"
    )]
    ContentType(String),
}

/// How a body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// No body, or an empty one: the query string only.
    None,
    Json,
    Form,
    /// `multipart/form-data` with its boundary.
    Multipart(String),
}

impl Encoding {
    /// The encoding named by a `Content-Type` value (`None`: absent).
    pub fn of(content_type: Option<&str>) -> Result<Encoding, BodyError> {
        let Some(ct) = content_type.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(Encoding::None);
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Encoding::Json),
            "application/x-www-form-urlencoded" => Ok(Encoding::Form),
            "multipart/form-data" => multer::parse_boundary(ct)
                .map(Encoding::Multipart)
                .map_err(|e| BodyError::Multipart(e.to_string())),
            _ => Err(BodyError::ContentType(truncate(ct, 64))),
        }
    }
}

/// The query string's parameters (`None`: no query).
pub fn query(raw: Option<&str>) -> Result<Map<String, Value>, BodyError> {
    match raw {
        None | Some("") => Ok(Map::new()),
        Some(q) => form(q.as_bytes()),
    }
}

/// An URL-encoded form's fields, as strings.
pub fn form(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| BodyError::Form(e.to_string()))?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

/// A JSON body: it must be one object.
pub fn json(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BodyError::Json("it is not an object".into())),
        Err(e) => Err(BodyError::Json(e.to_string())),
    }
}

/// Reads a `multipart/form-data` body: text parts become parameters, parts
/// with a file name become uploads.
pub async fn multipart<S, E>(stream: S, boundary: String) -> Result<Parsed, BodyError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let limits = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(MAX_BODY_BYTES as u64));
    let mut form = multer::Multipart::with_constraints(stream, boundary, limits);
    let mut parsed = Parsed::default();
    let mut parts = 0usize;
    let bad = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } => BodyError::TooLarge,
        other => BodyError::Multipart(other.to_string()),
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(BodyError::Multipart(format!("more than {MAX_PARTS} parts")));
        }
        let Some(name) = field.name().map(str::to_owned).filter(|n| !n.is_empty()) else {
            return Err(BodyError::Multipart("a part has no name".into()));
        };
        match field.file_name().map(str::to_owned) {
            Some(filename) => {
                if parsed.files.len() == MAX_FILES {
                    return Err(BodyError::Multipart(format!("more than {MAX_FILES} files")));
                }
                let content_type = field
                    .content_type()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let data = field.bytes().await.map_err(bad)?;
                parsed.files.retain(|f| f.name != name);
                parsed.files.push(pb::InputFile {
                    name,
                    filename,
                    content_type,
                    data,
                });
            }
            None => {
                let text = field.text().await.map_err(bad)?;
                parsed.params.insert(name, Value::String(text));
            }
        }
    }
    Ok(parsed)
}

/// Parameters of an already read body in `encoding` (not multipart).
pub fn buffered(encoding: &Encoding, body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match encoding {
        Encoding::Json => json(body),
        Encoding::Form => form(body),
        // A body without a content type: JSON if it looks like it, else a
        // form (what curl -d sends without -H).
        Encoding::None if body.trim_ascii_start().starts_with(b"{") => json(body),
        Encoding::None => form(body),
        Encoding::Multipart(_) => Err(BodyError::Multipart(
            "a multipart body is read as a stream".into(),
        )),
    }
}

/// The first `max` characters of a client's string, for an error message.
fn truncate(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_the_encodings_the_bot_api_takes() {
        assert_eq!(Encoding::of(None), Ok(Encoding::None));
        assert_eq!(
            Encoding::of(Some("application/json; charset=utf-8")),
            Ok(Encoding::Json)
        );
        assert_eq!(
            Encoding::of(Some("Application/X-WWW-Form-Urlencoded")),
            Ok(Encoding::Form)
        );
        assert_eq!(
            Encoding::of(Some("multipart/form-data; boundary=abc123")),
            Ok(Encoding::Multipart("abc123".into()))
        );
        assert!(matches!(
            Encoding::of(Some("multipart/form-data")),
            Err(BodyError::Multipart(_))
        ));
        assert!(matches!(
            Encoding::of(Some("text/xml")),
            Err(BodyError::ContentType(_))
        ));
    }

    #[test]
    fn form_values_stay_strings_as_the_bot_api_reads_them() {
        let p = form(b"chat_id=42&text=hi+there&reply_markup=%7B%22a%22%3A1%7D").expect("form");
        assert_eq!(p["chat_id"], "42");
        assert_eq!(p["text"], "hi there");
        assert_eq!(p["reply_markup"], r#"{"a":1}"#);
    }

    #[test]
    fn a_json_body_must_be_an_object() {
        let p = json(br#"{"chat_id":42,"reply_markup":{"inline_keyboard":[]}}"#).expect("json");
        assert_eq!(p["chat_id"], 42);
        assert!(p["reply_markup"].is_object());
        assert!(matches!(json(b"[1,2]"), Err(BodyError::Json(_))));
        assert!(matches!(json(b"{\"a\":"), Err(BodyError::Json(_))));
    }

    #[test]
    fn a_body_without_content_type_is_json_or_a_form() {
        let j = buffered(&Encoding::None, br#" {"chat_id":1}"#).expect("json");
        assert_eq!(j["chat_id"], 1);
        let f = buffered(&Encoding::None, b"chat_id=1").expect("form");
        assert_eq!(f["chat_id"], "1");
        assert!(buffered(&Encoding::Json, b"  ").expect("empty").is_empty());
    }

    #[test]
    fn the_query_string_holds_parameters_too() {
        let q = query(Some("chat_id=-100&text=a%26b")).expect("query");
        assert_eq!(q["chat_id"], "-100");
        assert_eq!(q["text"], "a&b");
        assert!(query(None).expect("none").is_empty());
    }

    fn multipart_body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            match filename {
                Some(f) => body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/jpeg\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    async fn read(body: Vec<u8>) -> Result<Parsed, BodyError> {
        let stream = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
        multipart(stream, "XyZ".into()).await
    }

    #[tokio::test]
    async fn multipart_text_parts_are_parameters_and_files_are_uploads() {
        let photo: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let body = multipart_body(&[
            ("chat_id", None, b"42"),
            ("caption", None, "caf\u{e9}".as_bytes()),
            ("photo", Some("cat.jpg"), &photo),
        ]);
        let p = read(body).await.expect("multipart");
        assert_eq!(p.params["chat_id"], "42");
        assert_eq!(p.params["caption"], "caf\u{e9}");
        assert_eq!(p.files.len(), 1);
        assert_eq!(p.files[0].name, "photo");
        assert_eq!(p.files[0].filename, "cat.jpg");
        assert_eq!(p.files[0].content_type, "image/jpeg");
        assert_eq!(p.files[0].data, photo.as_slice(), "bytes arrive exactly");
    }

    #[tokio::test]
    async fn too_many_parts_or_files_are_refused() {
        let names: Vec<String> = (0..=MAX_PARTS).map(|i| format!("p{i}")).collect();
        let parts: Vec<(&str, Option<&str>, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), None, &b"x"[..]))
            .collect();
        assert!(matches!(
            read(multipart_body(&parts)).await,
            Err(BodyError::Multipart(m)) if m.contains("parts")
        ));
        let files: Vec<(&str, Option<&str>, &[u8])> = names[..=MAX_FILES]
            .iter()
            .map(|n| (n.as_str(), Some("f"), &b"x"[..]))
            .collect();
        assert!(matches!(
            read(multipart_body(&files)).await,
            Err(BodyError::Multipart(m)) if m.contains("files")
        ));
        assert!(matches!(
            read(b"garbage".to_vec()).await,
            Err(BodyError::Multipart(_))
        ));
    }
}
