//! Request parameters, collected the way the Bot API accepts them (query string, JSON body,
//! `application/x-www-form-urlencoded` body, or `multipart/form-data` parsed with `multer`),
//! and the uploads a multipart body carries.
//!
//! A multipart part with a file name is an upload (kept byte-exact, named by its field);
//! any other part is a parameter whose value is its text. Unknown parameters are kept (the
//! method decides what it reads). Body values override query values of the same name.

use axum::body::Bytes;
use serde_json::Value;
use shardgate_botapi::Params as Values;

/// One uploaded file of a multipart body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilePart {
    /// The form field's name (a file parameter like `photo`, or an `attach://` name).
    pub field: String,
    /// The file name the client gave.
    pub filename: String,
    /// The part's content type, if any.
    pub content_type: Option<String>,
    /// The bytes, exactly as received.
    pub data: Bytes,
}

/// All parameters of one request, by name, and its uploads.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Params {
    pub values: Values,
    pub files: Vec<FilePart>,
}

/// A body the emulator could not read as the content type it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadBody;

impl Params {
    /// Collects the parameters of a request. A body that does not parse is reported as
    /// `Err` (the caller turns it into a 400 at the validation step).
    pub async fn collect(
        query: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
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
            params.add_json(&body)?;
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            params.add_urlencoded(&body)?;
        } else if ct.starts_with("multipart/form-data") {
            let boundary =
                multer::parse_boundary(content_type.unwrap_or("")).map_err(|_| BadBody)?;
            params.add_multipart(body, boundary).await?;
        } else if body.first() == Some(&b'{') {
            params.add_json(&body)?;
        } else {
            params.add_urlencoded(&body)?;
        }
        Ok(params)
    }

    /// Parameters only, from a query string (tests).
    #[cfg(test)]
    pub fn from_query(query: &str) -> Params {
        let mut params = Params::default();
        let _ = params.add_urlencoded(query.as_bytes());
        params
    }

    fn add_json(&mut self, body: &[u8]) -> Result<(), BadBody> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                self.values.extend(map);
                Ok(())
            }
            _ => Err(BadBody),
        }
    }

    fn add_urlencoded(&mut self, raw: &[u8]) -> Result<(), BadBody> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(raw).map_err(|_| BadBody)?;
        self.values
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
        Ok(())
    }

    async fn add_multipart(&mut self, body: Bytes, boundary: String) -> Result<(), BadBody> {
        let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Some(field) = multipart.next_field().await.map_err(|_| BadBody)? {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(|m| m.to_string());
            let data = field.bytes().await.map_err(|_| BadBody)?;
            match filename {
                Some(filename) => {
                    self.files.retain(|f| f.field != name);
                    self.files.push(FilePart {
                        field: name,
                        filename,
                        content_type,
                        data,
                    });
                }
                None => {
                    let value = String::from_utf8(data.to_vec()).map_err(|_| BadBody)?;
                    self.values.insert(name, Value::String(value));
                }
            }
        }
        Ok(())
    }

    /// A parameter, treating JSON `null` as absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    /// The upload sent in the form field `name`.
    pub fn file(&self, name: &str) -> Option<&FilePart> {
        self.files.iter().find(|f| f.field == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(query: Option<&str>, ct: Option<&str>, body: &str) -> Result<Params, BadBody> {
        Params::collect(query, ct, Bytes::copy_from_slice(body.as_bytes())).await
    }

    fn values(p: &Params) -> Vec<(String, String)> {
        p.values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn reads_query_json_and_form() {
        let p = collect(Some("chat_id=5&text=hi%20there"), None, "")
            .await
            .unwrap_or_default();
        assert_eq!(p.get("text").and_then(Value::as_str), Some("hi there"));
        let p = collect(
            None,
            Some("application/json; charset=utf-8"),
            r#"{"chat_id":-100,"text":"x","foo":[1]}"#,
        )
        .await
        .unwrap_or_default();
        assert_eq!(p.get("chat_id"), Some(&Value::from(-100)));
        assert_eq!(p.get("foo"), Some(&serde_json::json!([1])));
        let p = collect(
            None,
            Some("application/x-www-form-urlencoded"),
            "chat_id=-7&text=a%2Bb",
        )
        .await
        .unwrap_or_default();
        assert_eq!(
            values(&p),
            vec![
                ("chat_id".into(), "-7".into()),
                ("text".into(), "a+b".into())
            ]
        );
        // Body overrides query.
        let p = collect(
            Some("chat_id=1&text=q"),
            Some("application/json"),
            r#"{"text":"b"}"#,
        )
        .await
        .unwrap_or_default();
        assert_eq!(p.get("text").and_then(Value::as_str), Some("b"));
        assert_eq!(p.get("chat_id").and_then(Value::as_str), Some("1"));
    }

    #[tokio::test]
    async fn multipart_keeps_values_and_files_apart() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n77\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nline1\r\nline2\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n\
                    Content-Type: image/jpeg\r\n\r\n\x01\x02\r\n\x03\r\n\
                    --XyZ--\r\n";
        let p = collect(None, Some("multipart/form-data; boundary=XyZ"), body)
            .await
            .unwrap_or_default();
        assert_eq!(p.get("chat_id").and_then(Value::as_str), Some("77"));
        assert_eq!(
            p.get("text").and_then(Value::as_str),
            Some("line1\r\nline2")
        );
        let photo = p.file("photo").cloned();
        assert_eq!(photo.as_ref().map(|f| f.filename.as_str()), Some("a.jpg"));
        assert_eq!(
            photo.as_ref().and_then(|f| f.content_type.as_deref()),
            Some("image/jpeg")
        );
        assert_eq!(
            photo.map(|f| f.data.to_vec()),
            Some(b"\x01\x02\r\n\x03".to_vec())
        );
        assert!(p.get("photo").is_none());
    }

    #[tokio::test]
    async fn unreadable_bodies_are_errors() {
        assert_eq!(
            collect(None, Some("application/json"), "{nope").await,
            Err(BadBody)
        );
        assert_eq!(
            collect(None, Some("application/json"), "[1]").await,
            Err(BadBody)
        );
        assert_eq!(
            collect(None, Some("multipart/form-data"), "x").await,
            Err(BadBody)
        );
        assert_eq!(
            collect(
                None,
                Some("multipart/form-data; boundary=b"),
                "--b\r\nbroken"
            )
            .await,
            Err(BadBody)
        );
        assert!(collect(None, Some("application/json"), "  ").await.is_ok());
    }
}
