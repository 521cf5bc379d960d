//! Files the emulator holds: every upload, byte-exact, under the `file_id` its answer gave,
//! so a test can fetch the bytes (or their SHA-256) and see that what arrived is what was
//! sent. A `file_id` answered before can be sent again instead of the bytes, as with
//! Telegram. Files sent by URL are recorded without bytes (the emulator fetches nothing).
//!
//! Bounded in count and bytes: past either bound the oldest files are forgotten (their ids
//! then answer like unknown ones).

use std::collections::{HashMap, VecDeque};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

/// Most files held.
const MAX_FILES: usize = 10_000;
/// Most bytes held, over all files.
const MAX_BYTES: usize = 1 << 30;

/// What the emulator knows of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The id answered in the message (`photo[].file_id`, `document.file_id`).
    pub file_id: String,
    /// Telegram's `file_unique_id`.
    pub file_unique_id: String,
    /// The bot that uploaded it.
    pub bot_id: u64,
    /// The file name the client gave (empty for URLs).
    pub file_name: String,
    /// The content type the client gave, if any.
    pub mime_type: Option<String>,
    /// Size in bytes (0 for URLs).
    pub file_size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// The URL it was sent by, when it was not uploaded.
    pub url: Option<String>,
}

/// One held file: its description and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub info: FileInfo,
    pub data: Bytes,
}

/// Where a file of a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileSource {
    /// Uploaded in this request.
    Upload {
        filename: String,
        content_type: Option<String>,
        data: Bytes,
    },
    /// A `file_id` answered earlier.
    Id(String),
    /// An `http(s)://` URL.
    Url(String),
}

/// The held files.
#[derive(Debug, Default)]
pub(crate) struct FileStore {
    files: HashMap<String, StoredFile>,
    order: VecDeque<String>,
    bytes: usize,
    next: u64,
}

impl FileStore {
    /// The file a source names: a new one for uploads and URLs, the held one for a
    /// `file_id` (`None`: unknown or forgotten).
    pub fn resolve(&mut self, bot_id: u64, source: &FileSource) -> Option<FileInfo> {
        match source {
            FileSource::Id(id) => self.files.get(id).map(|f| f.info.clone()),
            FileSource::Upload {
                filename,
                content_type,
                data,
            } => Some(self.add(bot_id, filename, content_type.clone(), data.clone(), None)),
            FileSource::Url(url) => {
                Some(self.add(bot_id, "", None, Bytes::new(), Some(url.clone())))
            }
        }
    }

    fn add(
        &mut self,
        bot_id: u64,
        filename: &str,
        mime_type: Option<String>,
        data: Bytes,
        url: Option<String>,
    ) -> FileInfo {
        self.next += 1;
        let sha256 = sha256_hex(&data);
        let info = FileInfo {
            file_id: format!("mockfile{}_{}", self.next, &sha256[..16]),
            file_unique_id: format!("u{}{}", self.next, &sha256[..8]),
            bot_id,
            file_name: filename.to_owned(),
            mime_type,
            file_size: data.len() as u64,
            sha256,
            url,
        };
        self.bytes += data.len();
        self.order.push_back(info.file_id.clone());
        self.files.insert(
            info.file_id.clone(),
            StoredFile {
                info: info.clone(),
                data,
            },
        );
        while self.order.len() > MAX_FILES || (self.bytes > MAX_BYTES && self.order.len() > 1) {
            if let Some(old) = self.order.pop_front()
                && let Some(f) = self.files.remove(&old)
            {
                self.bytes -= f.data.len();
            }
        }
        info
    }

    pub fn get(&self, file_id: &str) -> Option<&StoredFile> {
        self.files.get(file_id)
    }

    /// Descriptions of every held file, oldest first.
    pub fn list(&self) -> Vec<FileInfo> {
        self.order
            .iter()
            .filter_map(|id| self.files.get(id))
            .map(|f| f.info.clone())
            .collect()
    }
}

/// SHA-256 of `data`, lower-case hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_kept_byte_exact_and_found_by_id() {
        let mut store = FileStore::default();
        let data = Bytes::from_static(b"\x00\xffpng\r\n");
        let source = FileSource::Upload {
            filename: "a.png".into(),
            content_type: Some("image/png".into()),
            data: data.clone(),
        };
        let info = store.resolve(7, &source).unwrap_or_else(|| unreachable!());
        assert_eq!(info.file_size, 7);
        assert_eq!(info.sha256, sha256_hex(&data));
        assert_eq!(store.get(&info.file_id).map(|f| f.data.clone()), Some(data));
        // The id may be sent again; an unknown one is not found.
        assert_eq!(
            store.resolve(7, &FileSource::Id(info.file_id.clone())),
            Some(info.clone())
        );
        assert_eq!(store.resolve(7, &FileSource::Id("nope".into())), None);
        let url = store.resolve(7, &FileSource::Url("https://example.invalid/x.pdf".into()));
        assert_eq!(url.map(|u| u.file_size), Some(0));
        assert_eq!(store.list().len(), 2);
        assert_ne!(store.list()[0].file_id, store.list()[1].file_id);
    }

    #[test]
    fn sha256_is_standard() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_store_is_bounded_in_count() {
        let mut store = FileStore::default();
        for _ in 0..MAX_FILES + 5 {
            let _ = store.resolve(1, &FileSource::Url("https://example.invalid/".into()));
        }
        assert_eq!(store.list().len(), MAX_FILES);
        assert!(store.get("mockfile1_").is_none());
    }
}
