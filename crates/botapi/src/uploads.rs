//! Uploads: which parameters take a file, the `attach://<name>` references a call makes, the
//! check of those references against the files supplied, and Telegram's size limits.
//!
//! A file reaches a method in one of two ways, as in the Bot API's multipart form: as the
//! value of a file parameter itself (an upload named `photo` for `sendPhoto` when the
//! parameters hold no `photo`), or by reference, `attach://<name>`, anywhere in the
//! parameters (album items, `editMessageMedia`'s `media`, stickers, profile photos,
//! stories). Every reference must have its upload and every upload must be used, so a typo
//! is an error at the door, not a silently missing photo.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ParamError;
use crate::params::{Params, decoded, get};

/// Telegram's limit for photos sent by upload: 10 MB.
pub const MAX_PHOTO_BYTES: u64 = 10 << 20;
/// Telegram's limit for any other file sent by upload: 50 MB.
pub const MAX_FILE_BYTES: u64 = 50 << 20;

/// Parameters that take an `InputFile` directly (upload, `file_id` or URL). Album and
/// media items take theirs in their own `media`, `thumbnail`, `cover` and `photo` fields, by
/// `attach://` reference.
pub const UPLOAD_PARAMS: &[&str] = &[
    "photo",
    "document",
    "audio",
    "video",
    "animation",
    "voice",
    "video_note",
    "sticker",
    "thumbnail",
    "cover",
    "live_photo",
    "certificate",
];

/// Whether `name` is a parameter that takes an `InputFile` directly.
pub fn is_upload_param(name: &str) -> bool {
    UPLOAD_PARAMS.contains(&name)
}

/// Which size limit an upload meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UploadKind {
    /// A photo: [`MAX_PHOTO_BYTES`].
    Photo,
    /// Anything else: [`MAX_FILE_BYTES`].
    File,
}

impl UploadKind {
    /// The size limit, in bytes.
    pub fn limit(self) -> u64 {
        match self {
            UploadKind::Photo => MAX_PHOTO_BYTES,
            UploadKind::File => MAX_FILE_BYTES,
        }
    }

    fn plural(self) -> &'static str {
        match self {
            UploadKind::Photo => "photos",
            UploadKind::File => "files",
        }
    }
}

/// One `attach://<name>` found in the parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The name after `attach://`.
    pub name: String,
    /// The limit it meets: a photo where it stands for one (a `photo` field, or the `media`
    /// of an item of type `photo`), a file elsewhere.
    pub kind: UploadKind,
}

const ATTACH: &str = "attach://";

/// Every `attach://` reference in the parameters, in order of appearance (once per name;
/// a name used both as a photo and as a file counts as a photo, the stricter limit).
pub fn attach_references(params: &Params) -> Vec<Reference> {
    let mut found: Vec<Reference> = Vec::new();
    for (key, value) in params {
        walk(value, key, None, &mut found, 0);
    }
    found
}

/// Deepest nesting followed (Bot API parameters nest three or four levels).
const MAX_DEPTH: usize = 16;

fn walk(value: &Value, key: &str, item_type: Option<&str>, out: &mut Vec<Reference>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(s) => {
            if let Some(name) = s.trim().strip_prefix(ATTACH) {
                let photo = key == "photo" || (key == "media" && item_type == Some("photo"));
                let kind = if photo {
                    UploadKind::Photo
                } else {
                    UploadKind::File
                };
                match out.iter_mut().find(|r| r.name == name) {
                    Some(r) => r.kind = r.kind.min(kind),
                    None => out.push(Reference {
                        name: name.to_owned(),
                        kind,
                    }),
                }
            } else if let std::borrow::Cow::Owned(inner) = decoded(value) {
                walk(&inner, key, item_type, out, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, key, item_type, out, depth + 1);
            }
        }
        Value::Object(map) => {
            let ty = map.get("type").and_then(Value::as_str);
            for (k, v) in map {
                walk(v, k, ty, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// An upload supplied with a call: its name and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload<'a> {
    /// The name a parameter refers to (`attach://<name>`), or a file parameter's name.
    pub name: &'a str,
    /// Its size in bytes.
    pub size: u64,
}

/// How a supplied upload is used, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedUpload {
    /// The upload's name.
    pub name: String,
    /// The limit it met.
    pub kind: UploadKind,
    /// True when it is the value of the file parameter of its name (not a reference).
    pub as_param: bool,
}

/// Longest upload name accepted.
const MAX_UPLOAD_NAME: usize = 64;

fn valid_upload_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_UPLOAD_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks the uploads of a call against its parameters: names are well-formed and unique,
/// every `attach://` reference has its upload, every upload is used (referenced, or the
/// value of an absent file parameter of its name), and each is within Telegram's size
/// limit for what it is used as.
pub fn check_uploads(
    params: &Params,
    uploads: &[Upload<'_>],
) -> Result<Vec<UsedUpload>, ParamError> {
    let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
    for u in uploads {
        if !valid_upload_name(u.name) {
            return Err(ParamError::InvalidUploadName {
                name: u.name.to_owned(),
            });
        }
        if by_name.insert(u.name, u.size).is_some() {
            return Err(ParamError::DuplicateUpload {
                name: u.name.to_owned(),
            });
        }
    }
    let references = attach_references(params);
    if let Some(missing) = references
        .iter()
        .find(|r| !by_name.contains_key(r.name.as_str()))
    {
        return Err(ParamError::MissingUpload {
            name: missing.name.clone(),
        });
    }
    let mut used = Vec::with_capacity(uploads.len());
    for u in uploads {
        let referenced = references.iter().find(|r| r.name == u.name).map(|r| r.kind);
        let as_param = is_upload_param(u.name) && get(params, u.name).is_none();
        let kind = match (referenced, as_param) {
            (Some(kind), _) => kind,
            (None, true) if u.name == "photo" => UploadKind::Photo,
            (None, true) => UploadKind::File,
            (None, false) => {
                return Err(ParamError::UnusedUpload {
                    name: u.name.to_owned(),
                });
            }
        };
        // Used both ways (`photo` referenced and also the absent `photo` parameter): the
        // stricter limit holds.
        let kind = if as_param && u.name == "photo" {
            UploadKind::Photo
        } else {
            kind
        };
        if u.size > kind.limit() {
            return Err(ParamError::UploadTooLarge {
                name: u.name.to_owned(),
                size: u.size,
                limit: kind.limit(),
                kind: kind.plural(),
            });
        }
        used.push(UsedUpload {
            name: u.name.to_owned(),
            kind,
            as_param,
        });
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::params_of as params;
    use serde_json::json;

    fn up(name: &str, size: u64) -> Upload<'_> {
        Upload { name, size }
    }

    #[test]
    fn finds_references_in_albums_and_nested_media() {
        let p = params(json!({
            "chat_id": 1,
            "media": [
                {"type": "photo", "media": "attach://a"},
                {"type": "video", "media": "attach://b", "thumbnail": "attach://t", "cover": "file-id"},
                {"type": "document", "media": "https://example.invalid/x.pdf"}
            ]
        }));
        let refs = attach_references(&p);
        let names: Vec<(&str, UploadKind)> =
            refs.iter().map(|r| (r.name.as_str(), r.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("a", UploadKind::Photo),
                ("b", UploadKind::File),
                ("t", UploadKind::File)
            ]
        );
        // Form fields carry the array as JSON text.
        let form = params(json!({"media": "{\"type\":\"photo\",\"media\":\"attach://p\"}"}));
        assert_eq!(attach_references(&form)[0].kind, UploadKind::Photo);
        // Profile photos and stories name theirs `photo`.
        let profile = params(json!({"photo": {"type": "static", "photo": "attach://me"}}));
        assert_eq!(attach_references(&profile)[0].kind, UploadKind::Photo);
    }

    #[test]
    fn every_reference_needs_its_upload_and_every_upload_a_use() {
        let p = params(
            json!({"media": [{"type":"photo","media":"attach://a"},{"type":"photo","media":"attach://b"}]}),
        );
        assert_eq!(
            check_uploads(&p, &[up("a", 1), up("b", 2)]).map(|u| u.len()),
            Ok(2)
        );
        assert_eq!(
            check_uploads(&p, &[up("a", 1)]),
            Err(ParamError::MissingUpload { name: "b".into() })
        );
        assert_eq!(
            check_uploads(&p, &[up("a", 1), up("b", 1), up("c", 1)]),
            Err(ParamError::UnusedUpload { name: "c".into() })
        );
        assert_eq!(
            check_uploads(&p, &[up("a", 1), up("a", 1)]),
            Err(ParamError::DuplicateUpload { name: "a".into() })
        );
        assert_eq!(
            check_uploads(&p, &[up("a b", 1)]),
            Err(ParamError::InvalidUploadName { name: "a b".into() })
        );
    }

    #[test]
    fn a_file_parameter_may_be_the_upload_itself() {
        let p = params(json!({"chat_id": 1, "caption": "hi"}));
        let used = check_uploads(&p, &[up("photo", 5)]).unwrap_or_default();
        assert_eq!(
            used,
            vec![UsedUpload {
                name: "photo".into(),
                kind: UploadKind::Photo,
                as_param: true
            }]
        );
        let used = check_uploads(&p, &[up("document", 5), up("thumbnail", 5)]).unwrap_or_default();
        assert!(
            used.iter()
                .all(|u| u.as_param && u.kind == UploadKind::File)
        );
        // A file parameter given as a file_id leaves an upload of that name unused.
        let p = params(json!({"chat_id": 1, "document": "BQACAgIAAxk"}));
        assert_eq!(
            check_uploads(&p, &[up("document", 5)]),
            Err(ParamError::UnusedUpload {
                name: "document".into()
            })
        );
        // ...unless it refers to the upload.
        let p = params(json!({"chat_id": 1, "document": "attach://document"}));
        assert!(check_uploads(&p, &[up("document", 5)]).is_ok());
    }

    #[test]
    fn sizes_meet_telegrams_limits() {
        let photo = params(json!({"photo": "attach://p"}));
        assert!(check_uploads(&photo, &[up("p", MAX_PHOTO_BYTES)]).is_ok());
        let err = check_uploads(&photo, &[up("p", MAX_PHOTO_BYTES + 1)]).unwrap_err();
        assert_eq!(err.field(), "p");
        assert_eq!(
            err.to_string(),
            "upload p: 10485761 bytes is over Telegram's limit of 10485760 bytes for photos"
        );
        let doc = params(json!({"document": "attach://d"}));
        assert!(check_uploads(&doc, &[up("d", MAX_FILE_BYTES)]).is_ok());
        assert!(check_uploads(&doc, &[up("d", MAX_FILE_BYTES + 1)]).is_err());
        // A document may be bigger than a photo may.
        assert!(check_uploads(&doc, &[up("d", MAX_PHOTO_BYTES + 1)]).is_ok());
        assert!(check_uploads(&Params::new(), &[up("photo", MAX_PHOTO_BYTES + 1)]).is_err());
        assert!(is_upload_param("video_note"));
        assert!(!is_upload_param("text"));
    }
}
