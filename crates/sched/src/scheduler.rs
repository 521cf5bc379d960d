//! The per-bot scheduler: per-chat FIFO queues and a ready-heap ordered by
//! the time each chat's head message may go.
//!
//! Invariants (checked by the property tests in `scheduler/tests.rs`):
//! - limits hold at the server's *arrival* count, for any arrival time
//!   between a request's dispatch and its completion: a chat never gets more
//!   than its bucket allows, a group never more than `group_max` in any
//!   `group_window`, the bot never more than `bot_max` in any `bot_window`
//!   (`jitter_margin` is only extra slack on top);
//! - one request per chat is in flight at a time, and a chat's messages leave
//!   in `seq` order (FIFO per chat, hence per (chat, user));
//! - nothing leaves during a chat's or the bot's cooldown;
//! - a chat that must wait never holds up another chat: the heap is ordered by
//!   each chat's own earliest time, then by the age of its head message.
//!
//! # Counting at completion
//!
//! The windows count a request in flight as "now" and fix it at its
//! completion (see [`Window`] for the rule and its proof). The chat bucket
//! does the same, which is simpler there because a chat has one request in
//! flight at a time: the request is checked at dispatch (`tat - tolerance <=
//! d`) and consumed at completion (`tat = max(tat, c) + interval`). The
//! emulator's bucket is the same GCRA applied at arrival. For requests
//! `i < j` of one chat, every consume adds at least `interval`, so
//! `tat` before `j` is at least `c_i + (j - i) * interval`, and `j` was
//! allowed, so `c_i + (j - i) * interval - (burst - 1) * interval <= d_j`.
//! With `a_i <= c_i` and `d_j <= a_j`:
//! `j - i + 1 <= burst + (a_j - a_i) / interval`, which for every pair is
//! exactly what a token bucket of `burst` at `1 / interval` accepts. Our
//! interval (1/0.9 s) is longer than the emulator's (1 s), so its bucket
//! accepts every arrival pattern ours allows, whatever the delays.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::{Gcra, Limits, Tick, Window, ticks};

/// A queued message and what the scheduler needs to know about it.
#[derive(Debug)]
pub struct Queued<T> {
    /// Acceptance order across the gateway; FIFO per chat follows it.
    pub seq: u64,
    /// Not before this time (retry backoff); 0 = no constraint.
    pub not_before: Tick,
    pub item: T,
}

/// A message the caller must send now.
#[derive(Debug)]
pub struct Dispatch<T> {
    pub chat_id: i64,
    pub seq: u64,
    pub item: T,
}

/// What the dispatcher should do next.
#[derive(Debug)]
pub enum Next<T> {
    /// Send this one now, then ask again.
    Send(Dispatch<T>),
    /// Nothing may go before this time (or before something changes).
    WaitUntil(Tick),
    /// Nothing may go until an in-flight request completes or a message
    /// arrives.
    Idle,
}

/// Why a push was refused; the message is handed back.
#[derive(Debug)]
pub enum PushError<T> {
    /// The bot's queue bound is reached.
    BotQueueFull(T),
    /// The chat's queue bound is reached.
    ChatQueueFull(T),
}

#[derive(Debug)]
struct Chat<T> {
    /// GCRA state of the chat's bucket (includes chat cooldowns).
    tat: Tick,
    /// Present for groups (chat_id < 0).
    group: Option<Box<Window>>,
    queue: VecDeque<Queued<T>>,
    in_flight: bool,
    /// The (time, head seq) of this chat's live heap entry, if it has one.
    scheduled: Option<(Tick, u64)>,
}

impl<T> Chat<T> {
    fn new(chat_id: i64, limits: &Limits) -> Self {
        Chat {
            tat: 0,
            group: (chat_id < 0).then(|| {
                Box::new(Window::new(
                    limits.group_max,
                    ticks(limits.group_window + limits.jitter_margin),
                ))
            }),
            queue: VecDeque::new(),
            in_flight: false,
            scheduled: None,
        }
    }
}

/// Scheduling state of one bot. See the module documentation.
#[derive(Debug)]
pub struct Scheduler<T> {
    limits: Limits,
    bucket: Gcra,
    chats: HashMap<i64, Chat<T>>,
    bot: Window,
    /// Even spacing of the bot's sends (GCRA over the bot rate).
    bot_pace: Gcra,
    bot_tat: Tick,
    /// (eligible at, head seq, chat). Entries go stale when a chat changes;
    /// `Chat::scheduled` tells the live one.
    ready: BinaryHeap<Reverse<(Tick, u64, i64)>>,
    queued: usize,
    in_flight: u32,
    bot_cooldown_until: Tick,
    /// Chats first seen before this time start with an empty bucket (see
    /// [`Scheduler::taking_over`]).
    cold_until: Tick,
}

impl<T> Scheduler<T> {
    pub fn new(limits: Limits) -> Self {
        Scheduler {
            bucket: Gcra::new(limits.chat_burst, limits.chat_rate),
            bot: Window::new(
                limits.bot_max,
                ticks(limits.bot_window + limits.jitter_margin),
            ),
            bot_pace: Gcra::new(
                limits.bot_burst,
                limits.bot_max as f64 / (limits.bot_window + limits.jitter_margin).as_secs_f64(),
            ),
            bot_tat: 0,
            limits,
            chats: HashMap::new(),
            ready: BinaryHeap::new(),
            queued: 0,
            in_flight: 0,
            bot_cooldown_until: 0,
            cold_until: 0,
        }
    }

    /// A scheduler for a bot that another process may have driven right
    /// before `now` (an instance that died or handed the bot over, or this
    /// process before a restart): nothing goes for one bot window, and chats
    /// first seen within one bucket refill time start with an empty bucket,
    /// so the previous driver's last sends cannot add up with ours. (A
    /// group's 60 s window cannot be known; a 429 there is handled as usual.)
    pub fn taking_over(limits: Limits, now: Tick) -> Self {
        let mut s = Scheduler::new(limits);
        let window = ticks(s.limits.bot_window + s.limits.jitter_margin);
        s.bot_cooldown_until = now.saturating_add(window);
        let refill = ticks(std::time::Duration::from_secs_f64(
            f64::from(s.limits.chat_burst) / s.limits.chat_rate,
        ));
        s.cold_until = now.saturating_add(refill);
        s
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Messages waiting (not in flight).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Requests sent and not completed.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Chats with limiter state (queued, in flight, or still limited).
    pub fn tracked_chats(&self) -> usize {
        self.chats.len()
    }

    /// Chats with at least one queued message.
    pub fn active_chats(&self) -> usize {
        self.chats.values().filter(|c| !c.queue.is_empty()).count()
    }

    /// End of the bot-wide cooldown (0 when none was set).
    pub fn bot_cooldown_until(&self) -> Tick {
        self.bot_cooldown_until
    }

    /// Queues a new message at the back of its chat, within the bounds.
    pub fn push(&mut self, chat_id: i64, seq: u64, item: T, now: Tick) -> Result<(), PushError<T>> {
        if self.queued >= self.limits.queue_max {
            return Err(PushError::BotQueueFull(item));
        }
        if self
            .chats
            .get(&chat_id)
            .is_some_and(|c| c.queue.len() >= self.limits.chat_queue_max)
        {
            return Err(PushError::ChatQueueFull(item));
        }
        self.insert(
            chat_id,
            Queued {
                seq,
                not_before: 0,
                item,
            },
            now,
        );
        Ok(())
    }

    /// Puts a message back (a retry, a re-route from another bot, a resend
    /// after a migration) in `seq` order, ignoring the bounds: it was
    /// accepted already and must not be lost.
    pub fn requeue(&mut self, chat_id: i64, queued: Queued<T>, now: Tick) {
        self.insert(chat_id, queued, now);
    }

    fn insert(&mut self, chat_id: i64, queued: Queued<T>, now: Tick) {
        let limits = &self.limits;
        let (bucket, cold_until) = (self.bucket, self.cold_until);
        let chat = self.chats.entry(chat_id).or_insert_with(|| {
            let mut c = Chat::new(chat_id, limits);
            if now < cold_until {
                // As if the previous driver just emptied the bucket.
                c.tat = bucket.consume(bucket.cool_until(0, now), now);
            }
            c
        });
        let pos = chat
            .queue
            .iter()
            .rposition(|q| q.seq < queued.seq)
            .map_or(0, |p| p + 1);
        chat.queue.insert(pos, queued);
        self.queued += 1;
        self.reschedule(chat_id);
    }

    /// Marks the request of `chat_id` done at `at`: its next message may go.
    ///
    /// `at` must be no earlier than the server could have counted the
    /// request (when its answer was in hand, or when the attempt was given
    /// up: a request that failed may still have arrived). The chat's bucket
    /// and the group and bot windows count the request at `at`; until now
    /// the windows counted it as "now". Completions may be reported out of
    /// order.
    pub fn complete(&mut self, chat_id: i64, at: Tick) {
        if let Some(chat) = self.chats.get_mut(&chat_id)
            && chat.in_flight
        {
            chat.in_flight = false;
            chat.tat = self.bucket.consume(chat.tat, at);
            if let Some(group) = chat.group.as_mut() {
                group.finish(at);
            }
            self.bot.finish(at);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.reschedule(chat_id);
    }

    /// No message to `chat_id` before `until` (a 429 for that chat).
    pub fn cool_chat(&mut self, chat_id: i64, until: Tick) {
        let limits = &self.limits;
        let chat = self
            .chats
            .entry(chat_id)
            .or_insert_with(|| Chat::new(chat_id, limits));
        chat.tat = self.bucket.cool_until(chat.tat, until);
        self.reschedule(chat_id);
    }

    /// No message from this bot before `until` (a bot-wide 429).
    pub fn cool_bot(&mut self, until: Tick) {
        self.bot_cooldown_until = self.bot_cooldown_until.max(until);
    }

    /// Moves a chat's queue to another id (a group that became a
    /// supergroup); order is kept by `seq`.
    pub fn rename_chat(&mut self, from: i64, to: i64, now: Tick) {
        let Some(chat) = self.chats.get_mut(&from) else {
            return;
        };
        let moved: Vec<Queued<T>> = chat.queue.drain(..).collect();
        chat.scheduled = None;
        self.queued -= moved.len();
        for q in moved {
            self.insert(to, q, now);
        }
        self.gc_chat(from, now);
    }

    /// Takes every queued message out (in flight ones stay), oldest first:
    /// the bot is leaving and its messages go to other bots.
    pub fn drain(&mut self) -> Vec<Dispatch<T>> {
        let mut out = Vec::with_capacity(self.queued);
        for (chat_id, chat) in self.chats.iter_mut() {
            chat.scheduled = None;
            out.extend(chat.queue.drain(..).map(|q| Dispatch {
                chat_id: *chat_id,
                seq: q.seq,
                item: q.item,
            }));
        }
        self.ready.clear();
        self.queued = 0;
        out.sort_by_key(|d| d.seq);
        out
    }

    /// Decides what goes next at `now`. `keep` sees each candidate before it
    /// is sent; returning false drops it (a caller that gave up, a deadline
    /// that passed) without spending any limit on it.
    pub fn next(&mut self, now: Tick, mut keep: impl FnMut(&mut T) -> bool) -> Next<T> {
        loop {
            if self.bot_cooldown_until > now {
                return if self.queued == 0 {
                    Next::Idle
                } else {
                    Next::WaitUntil(self.bot_cooldown_until)
                };
            }
            if self.in_flight >= self.limits.max_in_flight {
                return Next::Idle;
            }
            let Some(&Reverse((at, seq, chat_id))) = self.ready.peek() else {
                return Next::Idle;
            };
            let live = self
                .chats
                .get(&chat_id)
                .is_some_and(|c| c.scheduled == Some((at, seq)) && !c.in_flight);
            if !live {
                self.ready.pop();
                continue;
            }
            if at > now {
                return Next::WaitUntil(at);
            }
            // Every slot of the bot window is held by a request in flight.
            let Some(window_free) = self.bot.next_free() else {
                return Next::Idle;
            };
            let bot_free = window_free.max(self.bot_pace.next_free(self.bot_tat));
            if bot_free > now {
                return Next::WaitUntil(bot_free);
            }
            self.ready.pop();
            let Some(chat) = self.chats.get_mut(&chat_id) else {
                continue;
            };
            chat.scheduled = None;
            let Some(mut head) = chat.queue.pop_front() else {
                continue;
            };
            if !keep(&mut head.item) {
                self.queued -= 1;
                self.reschedule(chat_id);
                continue;
            }
            // The bucket is consumed and the windows fixed at completion.
            if let Some(group) = chat.group.as_mut() {
                group.start();
            }
            chat.in_flight = true;
            self.bot.start();
            self.bot_tat = self.bot_pace.consume(self.bot_tat, now);
            self.queued -= 1;
            self.in_flight += 1;
            return Next::Send(Dispatch {
                chat_id,
                seq: head.seq,
                item: head.item,
            });
        }
    }

    /// Forgets chats whose state no longer limits anything. Call it now and
    /// then (for example every few seconds): it walks every tracked chat.
    pub fn gc(&mut self, now: Tick) {
        let bucket = self.bucket;
        self.chats.retain(|_, c| !Self::is_idle(&bucket, c, now));
    }

    fn gc_chat(&mut self, chat_id: i64, now: Tick) {
        let bucket = self.bucket;
        if self
            .chats
            .get(&chat_id)
            .is_some_and(|c| Self::is_idle(&bucket, c, now))
        {
            self.chats.remove(&chat_id);
        }
    }

    fn is_idle(bucket: &Gcra, c: &Chat<T>, now: Tick) -> bool {
        c.queue.is_empty()
            && !c.in_flight
            && bucket.is_idle(c.tat, now)
            && c.group.as_ref().is_none_or(|g| g.is_idle(now))
    }

    /// Gives a chat a heap entry at the time its head message may go, if it
    /// has one and nothing of it is in flight.
    fn reschedule(&mut self, chat_id: i64) {
        let Some(chat) = self.chats.get_mut(&chat_id) else {
            return;
        };
        if chat.in_flight {
            chat.scheduled = None;
            return;
        }
        let Some(head) = chat.queue.front() else {
            chat.scheduled = None;
            return;
        };
        let group_free = match chat.group.as_ref().map(|g| g.next_free()) {
            None => 0,
            Some(Some(t)) => t,
            // Only when group_max requests are in flight, which one request
            // per chat rules out; a completion reschedules anyway.
            Some(None) => {
                chat.scheduled = None;
                return;
            }
        };
        let at = self
            .bucket
            .next_free(chat.tat)
            .max(group_free)
            .max(head.not_before);
        let entry = (at, head.seq);
        if chat.scheduled != Some(entry) {
            chat.scheduled = Some(entry);
            self.ready.push(Reverse((at, head.seq, chat_id)));
        }
    }
}

#[cfg(test)]
mod tests;
