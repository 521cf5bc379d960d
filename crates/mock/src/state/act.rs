//! What a validated request does, once its chat accepts messages: the checks that need the
//! emulator's state (the message to edit or copy exists and is this bot's, a `file_id` is
//! known), then (7) the rate limits, counted once per message and all or none, then the
//! sends, copies, edits and deletes themselves.

use std::time::Instant;

use serde_json::json;
use tracing::debug;

use super::{Delivery, Engine, fingerprint};
use crate::files::FileSource;
use crate::limits::Admitted;
use crate::messages::Stored;
use crate::methods::{Action, Change, Copy, Draft, Request, Target};
use crate::reply::{ApiError, Message, MessageId, Reply, User};
use crate::stats::Outcome;

type Answer = (Reply, Outcome);

fn error(e: ApiError) -> Answer {
    let code = e.error_code;
    (Reply::Error(e), Outcome::Error(code))
}

fn bad(description: &'static str) -> Answer {
    error(ApiError::bad_request(description))
}

const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

impl Engine {
    /// Runs a request whose chat (if it has one) accepts messages.
    pub(super) fn act(
        &mut self,
        bot_id: u64,
        chat: Option<i64>,
        request: Request,
        arrival: Instant,
        wall_ms: u64,
    ) -> Answer {
        let Some(chat_id) = chat else {
            return (Reply::True, Outcome::Answered);
        };
        let turn = Turn {
            bot_id,
            chat_id,
            paid: request.paid,
            arrival,
            wall_ms,
        };
        match request.action {
            Action::Send { drafts, album } => self.send(turn, drafts, album),
            Action::Copy(copy) => {
                let Target::Id(from) = copy.from else {
                    return bad("Bad Request: chat not found");
                };
                self.copy(turn, from, copy)
            }
            Action::Edit { message_id, change } => self.edit(turn, message_id, change),
            Action::Delete { ids, many } => self.delete(turn, &ids, many),
            Action::AnswerCallback => (Reply::True, Outcome::Answered),
        }
    }

    /// (7) The rate limits for `n` messages of a turn, all or none (`paid`: on the paid
    /// lane; edits and deletes never are).
    fn admit(&mut self, t: Turn, n: usize, paid: bool) -> Result<Admitted, Answer> {
        let Turn {
            bot_id,
            chat_id,
            arrival,
            ..
        } = t;
        let Some(limiter) = self.limiter.as_mut() else {
            return Ok(Admitted::default());
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        limiter
            .check_many(bot_id, chat_id, n, paid, arrival)
            .map_err(|limited| {
                let retry_after = limited.retry_after();
                debug!(bot_id, chat_id, n, scope = ?limited.scope, retry_after, "mock: 429");
                (
                    Reply::Error(ApiError::too_many_requests(retry_after)),
                    Outcome::RateLimited(Some(limited.scope)),
                )
            })
    }

    /// Delivers one message: its `message_id`, the delivery log, the store. Returns the
    /// message as answered and whether its text repeats an earlier delivery's.
    fn deliver(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        stored: Stored,
        wall_ms: u64,
        detect_duplicate: bool,
    ) -> (Message, bool) {
        let duplicate = detect_duplicate
            && stored
                .text
                .as_ref()
                .is_some_and(|t| !self.seen.insert(fingerprint(chat_id, t)));
        let message_id = self.messages.next_id(chat_id);
        self.seq += 1;
        let text = stored
            .text
            .clone()
            .or_else(|| stored.caption.clone())
            .unwrap_or_default();
        self.log.push_back(Delivery {
            seq: self.seq,
            bot_id,
            chat_id,
            message_id,
            text,
            at_ms: wall_ms,
        });
        while self.log.len() > self.config.max_deliveries {
            self.log.pop_front();
        }
        debug!(bot_id, chat_id, message_id, duplicate, "mock: delivered");
        let message = stored.to_message(chat_id, message_id);
        self.messages.insert(chat_id, message_id, stored);
        (message, duplicate)
    }

    fn send(&mut self, t: Turn, drafts: Vec<Draft>, album: bool) -> Answer {
        let Turn {
            bot_id,
            chat_id,
            wall_ms,
            ..
        } = t;
        let unknown_file = drafts.iter().any(
            |d| matches!(&d.media, Some((_, FileSource::Id(id))) if self.files.get(id).is_none()),
        );
        if unknown_file {
            return bad("Bad Request: wrong file identifier/HTTP URL specified");
        }
        let admitted = match self.admit(t, drafts.len(), t.paid) {
            Ok(a) => a,
            Err(answer) => return answer,
        };
        let group = album.then(|| self.messages.next_album());
        let mut sent = Vec::with_capacity(drafts.len());
        let mut duplicates = 0;
        for d in drafts {
            let media = d.media.and_then(|(kind, source)| {
                self.files.resolve(bot_id, &source).map(|info| (kind, info))
            });
            let stored = Stored {
                bot_id,
                date: wall_ms / 1000,
                text: d.text,
                entities: d.entities,
                caption: d.caption,
                caption_entities: d.caption_entities,
                media,
                reply_markup: d.reply_markup,
                thread: d.thread,
                media_group_id: group.clone(),
                forward_origin: None,
                edit_date: None,
            };
            let (message, duplicate) = self.deliver(bot_id, chat_id, stored, wall_ms, true);
            duplicates += u64::from(duplicate);
            sent.push(message);
        }
        let outcome = Outcome::Delivered {
            messages: sent.len() as u64,
            duplicates,
            paid: u64::from(admitted.paid),
        };
        let reply = if album {
            Reply::Album(sent)
        } else {
            match sent.pop() {
                Some(m) => Reply::Sent(Box::new(m)),
                None => Reply::True,
            }
        };
        (reply, outcome)
    }

    fn copy(&mut self, t: Turn, from: i64, copy: Copy) -> Answer {
        let Turn {
            bot_id,
            chat_id,
            wall_ms,
            ..
        } = t;
        let originals: Vec<Stored> = copy
            .ids
            .iter()
            .filter_map(|id| self.messages.get(from, *id).cloned())
            .collect();
        if originals.is_empty() || (!copy.many && originals.len() < copy.ids.len()) {
            return bad(if copy.forward {
                "Bad Request: message to forward not found"
            } else {
                "Bad Request: message to copy not found"
            });
        }
        let admitted = match self.admit(t, originals.len(), t.paid) {
            Ok(a) => a,
            Err(answer) => return answer,
        };
        let mut sent = Vec::with_capacity(originals.len());
        for original in originals {
            let forward_origin = copy.forward.then(|| {
                json!({"type": "user", "sender_user": User::bot(original.bot_id), "date": original.date})
            });
            let stored = Stored {
                bot_id,
                date: wall_ms / 1000,
                caption: copy.caption.clone().or(original.caption),
                reply_markup: if copy.forward {
                    None
                } else {
                    copy.reply_markup.clone()
                },
                thread: None,
                media_group_id: None,
                forward_origin,
                edit_date: None,
                ..original
            };
            sent.push(self.deliver(bot_id, chat_id, stored, wall_ms, false).0);
        }
        let outcome = Outcome::Delivered {
            messages: sent.len() as u64,
            duplicates: 0,
            paid: u64::from(admitted.paid),
        };
        let ids = || {
            sent.iter()
                .map(|m| MessageId {
                    message_id: m.message_id,
                })
                .collect()
        };
        let reply = match (copy.many, copy.forward, sent.first()) {
            (false, true, Some(m)) => Reply::Sent(Box::new(m.clone())),
            (false, false, Some(m)) => Reply::Copied(MessageId {
                message_id: m.message_id,
            }),
            _ => Reply::CopiedMany(ids()),
        };
        (reply, outcome)
    }

    fn edit(&mut self, t: Turn, message_id: i64, change: Change) -> Answer {
        let Turn {
            bot_id,
            chat_id,
            wall_ms,
            ..
        } = t;
        // Only a message this bot sent into this chat.
        let Some(current) = self
            .messages
            .get(chat_id, message_id)
            .filter(|m| m.bot_id == bot_id)
        else {
            return bad("Bad Request: message to edit not found");
        };
        let unchanged = match &change {
            Change::Text {
                text,
                entities,
                reply_markup,
            } => {
                if current.text.is_none() {
                    return bad("Bad Request: there is no text in the message to edit");
                }
                current.text.as_ref() == Some(text)
                    && &current.entities == entities
                    && &current.reply_markup == reply_markup
            }
            Change::Caption {
                caption,
                entities,
                reply_markup,
            } => {
                if current.media.is_none() {
                    return bad("Bad Request: there is no caption in the message to edit");
                }
                &current.caption == caption
                    && &current.caption_entities == entities
                    && &current.reply_markup == reply_markup
            }
            Change::Markup(markup) => &current.reply_markup == markup,
        };
        if unchanged {
            return bad(NOT_MODIFIED);
        }
        if let Err(answer) = self.admit(t, 1, false) {
            return answer;
        }
        let Some(m) = self.messages.get_mut(chat_id, message_id) else {
            return bad("Bad Request: message to edit not found");
        };
        match change {
            Change::Text {
                text,
                entities,
                reply_markup,
            } => {
                m.text = Some(text);
                m.entities = entities;
                m.reply_markup = reply_markup;
            }
            Change::Caption {
                caption,
                entities,
                reply_markup,
            } => {
                m.caption = caption;
                m.caption_entities = entities;
                m.reply_markup = reply_markup;
            }
            Change::Markup(markup) => m.reply_markup = markup,
        }
        m.edit_date = Some(wall_ms / 1000);
        debug!(bot_id, chat_id, message_id, "mock: edited");
        let message = m.to_message(chat_id, message_id);
        (Reply::Sent(Box::new(message)), Outcome::Edited)
    }

    fn delete(&mut self, t: Turn, ids: &[i64], many: bool) -> Answer {
        let Turn {
            bot_id, chat_id, ..
        } = t;
        let own: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.messages
                    .get(chat_id, *id)
                    .is_some_and(|m| m.bot_id == bot_id)
            })
            .collect();
        if !many && own.is_empty() {
            return bad("Bad Request: message to delete not found");
        }
        if let Err(answer) = self.admit(t, 1, false) {
            return answer;
        }
        for id in &own {
            self.messages.remove(chat_id, *id);
        }
        debug!(bot_id, chat_id, deleted = own.len(), "mock: deleted");
        (Reply::True, Outcome::Deleted(own.len() as u64))
    }
}

/// Who sends into which chat, when, and on which lane: what every step of a request needs.
#[derive(Clone, Copy, Debug)]
struct Turn {
    bot_id: u64,
    chat_id: i64,
    /// `allow_paid_broadcast` on a method that takes it.
    paid: bool,
    arrival: Instant,
    wall_ms: u64,
}
