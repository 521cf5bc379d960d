//! The messages the emulator has delivered, as edits, deletes, copies and forwards need
//! them: who sent each, into which chat, with what content, and the `message_id` counter of
//! every chat. Bounded in count: the oldest messages are forgotten first (an edit of one then
//! answers "message to edit not found", as for a message that never was).

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::files::FileInfo;
use crate::methods::MediaKind;
use crate::reply::{Chat, FileObject, Message, User, is_supergroup};

/// Nominal dimensions reported for every photo (the emulator does not decode images).
const PHOTO_WIDTH: u32 = 800;
const PHOTO_HEIGHT: u32 = 600;

/// A delivered message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub bot_id: u64,
    pub date: u64,
    pub text: Option<String>,
    pub entities: Option<Value>,
    pub caption: Option<String>,
    pub caption_entities: Option<Value>,
    pub media: Option<(MediaKind, FileInfo)>,
    pub reply_markup: Option<Value>,
    pub thread: Option<i64>,
    pub media_group_id: Option<String>,
    pub forward_origin: Option<Value>,
    pub edit_date: Option<u64>,
}

impl Stored {
    /// The message as Telegram answers it.
    pub fn to_message(&self, chat_id: i64, message_id: i64) -> Message {
        let file = |info: &FileInfo| FileObject {
            file_id: info.file_id.clone(),
            file_unique_id: info.file_unique_id.clone(),
            file_size: info.file_size,
            ..FileObject::default()
        };
        let mut message = Message {
            message_id,
            from: Some(User::bot(self.bot_id)),
            chat: Some(Chat::new(chat_id)),
            date: self.date,
            message_thread_id: self.thread,
            is_topic_message: self.thread.filter(|_| is_supergroup(chat_id)).map(|_| true),
            media_group_id: self.media_group_id.clone(),
            forward_origin: self.forward_origin.clone(),
            edit_date: self.edit_date,
            text: self.text.clone(),
            entities: self.entities.clone(),
            caption: self.caption.clone(),
            caption_entities: self.caption_entities.clone(),
            reply_markup: self.reply_markup.clone(),
            ..Message::default()
        };
        match &self.media {
            None => {}
            Some((MediaKind::Photo, info)) => {
                message.photo = Some(vec![FileObject {
                    width: Some(PHOTO_WIDTH),
                    height: Some(PHOTO_HEIGHT),
                    ..file(info)
                }]);
            }
            Some((MediaKind::Document, info)) => {
                message.document = Some(FileObject {
                    file_name: Some(info.file_name.clone()).filter(|n| !n.is_empty()),
                    mime_type: info.mime_type.clone(),
                    ..file(info)
                });
            }
            Some((MediaKind::Video, info)) => {
                message.video = Some(FileObject {
                    width: Some(PHOTO_WIDTH),
                    height: Some(PHOTO_HEIGHT),
                    duration: Some(0),
                    mime_type: info.mime_type.clone(),
                    ..file(info)
                });
            }
            Some((MediaKind::Audio, info)) => {
                message.audio = Some(FileObject {
                    duration: Some(0),
                    file_name: Some(info.file_name.clone()).filter(|n| !n.is_empty()),
                    mime_type: info.mime_type.clone(),
                    ..file(info)
                });
            }
        }
        message
    }
}

/// Delivered messages by (chat, message_id), and each chat's last `message_id`.
#[derive(Debug)]
pub(crate) struct MessageStore {
    messages: HashMap<(i64, i64), Stored>,
    order: VecDeque<(i64, i64)>,
    last_ids: HashMap<i64, i64>,
    max: usize,
    albums: u64,
}

impl MessageStore {
    /// A store that holds at most `max` messages.
    pub fn new(max: usize) -> Self {
        MessageStore {
            messages: HashMap::new(),
            order: VecDeque::new(),
            last_ids: HashMap::new(),
            max: max.max(1),
            albums: 0,
        }
    }

    /// The next `message_id` of `chat_id` (per chat, from 1, whichever bot sends).
    pub fn next_id(&mut self, chat_id: i64) -> i64 {
        let last = self.last_ids.entry(chat_id).or_insert(0);
        *last += 1;
        *last
    }

    /// A fresh `media_group_id`.
    pub fn next_album(&mut self) -> String {
        self.albums += 1;
        format!("{}", 13_000_000_000_000_000u64 + self.albums)
    }

    pub fn insert(&mut self, chat_id: i64, message_id: i64, message: Stored) {
        self.messages.insert((chat_id, message_id), message);
        self.order.push_back((chat_id, message_id));
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.messages.remove(&old);
            }
        }
        // Deleted entries leave stale keys in `order`; drop them once they dominate.
        if self.order.len() > 2 * self.messages.len() + 1024 {
            let messages = &self.messages;
            self.order.retain(|k| messages.contains_key(k));
        }
    }

    pub fn get(&self, chat_id: i64, message_id: i64) -> Option<&Stored> {
        self.messages.get(&(chat_id, message_id))
    }

    pub fn get_mut(&mut self, chat_id: i64, message_id: i64) -> Option<&mut Stored> {
        self.messages.get_mut(&(chat_id, message_id))
    }

    pub fn remove(&mut self, chat_id: i64, message_id: i64) -> bool {
        self.messages.remove(&(chat_id, message_id)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(bot_id: u64, text: &str) -> Stored {
        Stored {
            bot_id,
            date: 1,
            text: Some(text.into()),
            entities: None,
            caption: None,
            caption_entities: None,
            media: None,
            reply_markup: None,
            thread: None,
            media_group_id: None,
            forward_origin: None,
            edit_date: None,
        }
    }

    #[test]
    fn ids_count_per_chat_and_the_store_is_bounded() {
        let mut store = MessageStore::new(2);
        assert_eq!(store.next_id(5), 1);
        assert_eq!(store.next_id(5), 2);
        assert_eq!(store.next_id(6), 1);
        store.insert(5, 1, text(1, "a"));
        store.insert(5, 2, text(1, "b"));
        store.insert(6, 1, text(2, "c"));
        assert!(store.get(5, 1).is_none(), "the oldest is forgotten");
        assert_eq!(store.get(6, 1).map(|m| m.bot_id), Some(2));
        assert!(store.remove(5, 2));
        assert!(!store.remove(5, 2));
    }

    #[test]
    fn messages_have_telegrams_shape() {
        let mut m = text(9, "hi");
        m.thread = Some(4);
        m.reply_markup = Some(json!({"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}));
        let v = serde_json::to_value(m.to_message(-1001234567890, 3)).unwrap_or_default();
        assert_eq!(v["message_id"], 3);
        assert_eq!(v["from"]["id"], 9);
        assert_eq!(v["message_thread_id"], 4);
        assert_eq!(v["is_topic_message"], true);
        assert_eq!(v["reply_markup"]["inline_keyboard"][0][0]["text"], "a");
        assert!(v.get("photo").is_none());
        let photo = Stored {
            text: None,
            caption: Some("c".into()),
            media: Some((
                MediaKind::Photo,
                FileInfo {
                    file_id: "f".into(),
                    file_unique_id: "u".into(),
                    bot_id: 9,
                    file_name: "a.jpg".into(),
                    mime_type: None,
                    file_size: 12,
                    sha256: String::new(),
                    url: None,
                },
            )),
            ..text(9, "")
        };
        let v = serde_json::to_value(photo.to_message(5, 1)).unwrap_or_default();
        assert_eq!(v["photo"][0]["file_id"], "f");
        assert_eq!(v["photo"][0]["file_size"], 12);
        assert_eq!(v["photo"][0]["width"], PHOTO_WIDTH);
        assert_eq!(v["caption"], "c");
        assert!(v.get("text").is_none());
        assert!(v.get("is_topic_message").is_none());
    }
}
