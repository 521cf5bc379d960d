//! The gateway's memory of what it sent: which bot sent the message
//! `(chat, message_id)`, so that an edit or delete without a pinned bot goes
//! through the only bot Telegram lets make it (a library then needs no
//! header and no state of its own).
//!
//! Bounded in count (oldest forgotten first); at the default of a million
//! entries and 30 msg/s per bot that is days of a busy fleet's messages,
//! well past the 48 h Telegram lets a bot delete a message in. Private chats
//! number their messages per bot, so two bots can send "message 5 of chat
//! 42": such a key is remembered as ambiguous and an edit of it needs `bot`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

/// The default bound on remembered messages.
pub const DEFAULT_SENT_MAX: usize = 1_000_000;

/// What the memory says about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// This bot sent it.
    Bot(Arc<str>),
    /// Two bots sent a message with this key (private chats number messages
    /// per bot): the caller must say which.
    Ambiguous,
}

/// No bot: the ambiguity marker in the table.
const AMBIGUOUS: u32 = u32::MAX;

#[derive(Debug, Default)]
struct Inner {
    /// Bot names, each once (a message refers to its bot by index).
    bots: Vec<Arc<str>>,
    by_key: HashMap<(i64, i64), u32>,
    /// Keys in the order they were first remembered (eviction order).
    order: VecDeque<(i64, i64)>,
}

/// Which bot sent which message. Cheap to clone; shared by the dispatchers
/// (which record) and the door (which looks up).
#[derive(Debug, Clone)]
pub struct SentMemory {
    inner: Arc<Mutex<Inner>>,
    max: usize,
}

impl SentMemory {
    /// A memory of at most `max` messages (0 remembers nothing).
    pub fn new(max: usize) -> Self {
        SentMemory {
            inner: Arc::default(),
            max,
        }
    }

    /// Remembers that `bot` sent `message_ids` into `chat`.
    pub fn record(&self, chat: i64, message_ids: &[i64], bot: &str) {
        if self.max == 0 || message_ids.is_empty() {
            return;
        }
        let mut g = self.inner.lock();
        let idx = match g.bots.iter().position(|b| &**b == bot) {
            Some(i) => i,
            None => {
                g.bots.push(Arc::from(bot));
                g.bots.len() - 1
            }
        };
        let idx = u32::try_from(idx).unwrap_or(AMBIGUOUS);
        for &id in message_ids {
            let key = (chat, id);
            let inserted = match g.by_key.get_mut(&key) {
                Some(known) => {
                    if *known != idx {
                        *known = AMBIGUOUS;
                    }
                    false
                }
                None => {
                    g.by_key.insert(key, idx);
                    true
                }
            };
            if inserted {
                g.order.push_back(key);
                while g.order.len() > self.max {
                    if let Some(old) = g.order.pop_front() {
                        g.by_key.remove(&old);
                    }
                }
            }
        }
    }

    /// The sender of `(chat, message_id)`, if remembered.
    pub fn lookup(&self, chat: i64, message_id: i64) -> Option<Sender> {
        let g = self.inner.lock();
        let idx = *g.by_key.get(&(chat, message_id))?;
        Some(match g.bots.get(idx as usize) {
            Some(b) => Sender::Bot(b.clone()),
            None => Sender::Ambiguous,
        })
    }

    /// Messages remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().by_key.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_sender_of_each_message() {
        let m = SentMemory::new(10);
        m.record(-5, &[1, 2], "a");
        m.record(7, &[1], "b");
        assert_eq!(m.lookup(-5, 2), Some(Sender::Bot(Arc::from("a"))));
        assert_eq!(m.lookup(7, 1), Some(Sender::Bot(Arc::from("b"))));
        assert_eq!(m.lookup(7, 2), None);
        m.record(-5, &[2], "a");
        assert_eq!(
            m.lookup(-5, 2),
            Some(Sender::Bot(Arc::from("a"))),
            "the same sender again"
        );
    }

    #[test]
    fn a_key_two_bots_sent_is_ambiguous() {
        let m = SentMemory::new(10);
        m.record(42, &[5], "a");
        m.record(42, &[5], "b");
        assert_eq!(m.lookup(42, 5), Some(Sender::Ambiguous));
        m.record(42, &[5], "a");
        assert_eq!(m.lookup(42, 5), Some(Sender::Ambiguous), "stays ambiguous");
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_bound() {
        let m = SentMemory::new(3);
        m.record(1, &[1, 2, 3], "a");
        m.record(1, &[4], "a");
        assert_eq!(m.len(), 3);
        assert_eq!(m.lookup(1, 1), None, "the oldest went");
        assert!(m.lookup(1, 4).is_some() && m.lookup(1, 2).is_some());
        let none = SentMemory::new(0);
        none.record(1, &[1], "a");
        assert!(none.is_empty());
    }
}
