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
use crate::methods::{Action, Change, Draft, Request, Target};
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
        let paid = request.paid;
        match request.action {
            Action::Send { drafts, album } => {
                self.send(bot_id, chat_id, drafts, album, paid, arrival, wall_ms)
            }
            Action::Copy {
                from,
                ids,
                forward,
                many,
                caption,
                reply_markup,
            } => {
                let Target::Id(from) = from else {
                    return bad("Bad Request: chat not found");
                };
                let copy = Copy {
                    from,
                    ids,
                    forward,
                    many,
                    caption,
                    reply_markup,
                };
                self.copy(bot_id, chat_id, copy, paid, arrival, wall_ms)
            }
            Action::Edit { message_id, change } => {
                self.edit(bot_id, chat_id, message_id, change, arrival, wall_ms)
            }
            Action::Delete { ids, many } => self.delete(bot_id, chat_id, &ids, many, arrival),
            Action::AnswerCallback => (Reply::True, Outcome::Answered),
        }
    }

    /// (7) The rate limits for `n` messages into `chat_id`, all or none.
    fn admit(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        n: usize,
        paid: bool,
        arrival: Instant,
    ) -> Result<Admitted, Answer> {
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

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        drafts: Vec<Draft>,
        album: bool,
        paid: bool,
        arrival: Instant,
        wall_ms: u64,
    ) -> Answer {
        let unknown_file = drafts.iter().any(
            |d| matches!(&d.media, Some((_, FileSource::Id(id))) if self.files.get(id).is_none()),
        );
        if unknown_file {
            return bad("Bad Request: wrong file identifier/HTTP URL specified");
        }
        let admitted = match self.admit(bot_id, chat_id, drafts.len(), paid, arrival) {
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

    fn copy(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        copy: Copy,
        paid: bool,
        arrival: Instant,
        wall_ms: u64,
    ) -> Answer {
        let originals: Vec<Stored> = copy
            .ids
            .iter()
            .filter_map(|id| self.messages.get(copy.from, *id).cloned())
            .collect();
        if originals.is_empty() || (!copy.many && originals.len() < copy.ids.len()) {
            return bad(if copy.forward {
                "Bad Request: message to forward not found"
            } else {
                "Bad Request: message to copy not found"
            });
        }
        let admitted = match self.admit(bot_id, chat_id, originals.len(), paid, arrival) {
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

    fn edit(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        message_id: i64,
        change: Change,
        arrival: Instant,
        wall_ms: u64,
    ) -> Answer {
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
        if let Err(answer) = self.admit(bot_id, chat_id, 1, false, arrival) {
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

    fn delete(
        &mut self,
        bot_id: u64,
        chat_id: i64,
        ids: &[i64],
        many: bool,
        arrival: Instant,
    ) -> Answer {
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
        if let Err(answer) = self.admit(bot_id, chat_id, 1, false, arrival) {
            return answer;
        }
        for id in &own {
            self.messages.remove(chat_id, *id);
        }
        debug!(bot_id, chat_id, deleted = own.len(), "mock: deleted");
        (Reply::True, Outcome::Deleted(own.len() as u64))
    }
}

/// A copy or forward, its source chat resolved.
struct Copy {
    from: i64,
    ids: Vec<i64>,
    forward: bool,
    many: bool,
    caption: Option<String>,
    reply_markup: Option<serde_json::Value>,
}
