//! The per-bot scheduler: per-chat queues in priority and FIFO order, and
//! per class a heap of chats waiting for their limits and a heap of chats
//! that may send, oldest head first.
//!
//! Invariants (checked by the property tests in `scheduler/tests.rs` and
//! `scheduler/tests_priority.rs`):
//! - limits hold at the server's *arrival* count, for any arrival time
//!   between a request's dispatch and its completion: a chat never gets more
//!   than its bucket allows, a group never more than `group_max` in any
//!   `group_window`, the bot never more than `bot_max` in any `bot_window`
//!   (`jitter_margin` is only extra slack on top), except that messages
//!   marked `paid` may take it up to `paid_bot_max` once the free rate is
//!   used (see [`PaidLane`]; `scheduler/tests_paid.rs`);
//! - one request per chat is in flight at a time, and a chat's messages of
//!   one class leave in `seq` order (FIFO per chat and class, hence per
//!   (chat, user)); a message of a higher class goes before the chat's
//!   lower ones;
//! - nothing leaves during a chat's or the bot's cooldown;
//! - a chat that must wait never holds up another chat: each class's chats
//!   wait in a heap ordered by their own earliest time;
//! - the bot sends the highest class that has a chat its limits allow now,
//!   and within it the oldest head; bulk takes a turn when its share is
//!   due ([`crate::Priority`]), so it keeps `bulk_min_share` of the sends
//!   while it has work.
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
//!
//! # Layout (memory and lookups)
//!
//! A chat costs one 16-byte [`Chat`] in a map keyed by chat id (its GCRA
//! state, the tail of its queue, an in-flight bit and its queue length).
//! Queued messages of every chat live in one [`Slab`] shared by the
//! scheduler, each chat's as a circular list (the tail's link is the head),
//! so no per-chat buffer survives an empty queue. Group windows live in a
//! map of their own, keyed by group: only a group that sent something pays
//! for a window. A chat has one heap entry, in the lane of its head's
//! class: `(eligible at, head seq, chat)` in `waiting` until that time has
//! come, then `(head seq, eligible at, chat)` in `ready`; no record says
//! which entry is current: an entry is live when it is what the chat would
//! be scheduled at now (head's seq and class, eligible time), see
//! [`Scheduler::next`]. `gc` shrinks the maps, drops stale heap entries and
//! compacts the slab, so memory returns when chats go idle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry;

use crate::priority::BulkCredit;
use crate::{Gcra, Limits, Position, Priority, Tick, Window, ticks};

mod queues;
pub use queues::Queued;
use queues::{Chat, IN_FLIGHT, KEEP_EMPTY, MAX_SLOTS, NIL, OVER_FREE, Slab};

/// A message the caller must send now.
#[derive(Debug)]
pub struct Dispatch<T> {
    pub chat_id: i64,
    pub seq: u64,
    pub priority: Priority,
    /// Messages the request carries: pass it back to
    /// [`Scheduler::complete_items`].
    pub items: u16,
    /// It went over the bot's free rate on the paid lane: Telegram bills
    /// each of its `items`.
    pub over_free_rate: bool,
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

/// The room over the bot's free rate that `allow_paid_broadcast` messages
/// may take, `paid_bot_max - bot_max` per window, and its pacing.
///
/// The free rate is used first: a paid message goes over it only when the
/// bot window (which counts every message, as Telegram does) has no room
/// now. Free-rate sends stay within `bot_max` per window and the paid
/// lane's within `paid_bot_max - bot_max` (each by the proof in
/// [`Window`]), so the bot stays within `paid_bot_max`: what Telegram
/// allows a paid message. A message without the flag must find fewer than
/// `bot_max` messages of any kind in its window at its arrival; for that a
/// paid message goes over the free rate only while no free-rate request is
/// in flight: a later dispatch cannot then arrive before an earlier
/// free-rate one, and every earlier dispatch was counted when that one was
/// checked.
#[derive(Debug)]
struct PaidLane {
    window: Window,
    pace: Gcra,
    tat: Tick,
    /// Requests in flight that went over the free rate.
    in_flight: u32,
}

/// Maps keyed by chat id, with a fast hasher seeded at random per map (chat
/// ids come from clients).
type ChatMap<V> = std::collections::HashMap<i64, V, foldhash::fast::RandomState>;

/// What a chat's heap entry says: its head may go at `at`; the head's `seq`
/// and class tell a current entry from a stale one.
type Entry3 = (Tick, u64, Priority);

/// The chats whose head message is of one class.
#[derive(Debug, Default)]
struct Lane {
    /// (eligible at, head seq, chat): chats that must wait, earliest first.
    waiting: BinaryHeap<Reverse<(Tick, u64, i64)>>,
    /// (head seq, eligible at, chat): chats whose limits allow a send,
    /// oldest head first.
    ready: BinaryHeap<Reverse<(u64, Tick, i64)>>,
}

impl Lane {
    fn len(&self) -> usize {
        self.waiting.len() + self.ready.len()
    }

    /// Moves every entry eligible at `now` to `ready`. Each entry moves
    /// once: amortised O(log n) per message. Stale entries move too and
    /// are dropped when they reach the top of `ready`.
    fn promote(&mut self, now: Tick) {
        while let Some(&Reverse((at, seq, chat))) = self.waiting.peek() {
            if at > now {
                break;
            }
            pop_heap(&mut self.waiting);
            self.ready.push(Reverse((seq, at, chat)));
        }
    }
}

/// Scheduling state of one bot. See the module documentation.
#[derive(Debug)]
pub struct Scheduler<T> {
    limits: Limits,
    bucket: Gcra,
    chats: ChatMap<Chat>,
    /// Windows of the groups (chat_id < 0) that sent something while tracked.
    groups: ChatMap<Window>,
    slab: Slab<T>,
    bot: Window,
    /// Even spacing of the bot's sends (GCRA over the bot rate).
    bot_pace: Gcra,
    bot_tat: Tick,
    /// The paid lane, when the limits have one: see [`PaidLane`].
    paid: Option<PaidLane>,
    /// One lane per class ([`Priority::index`]). Entries go stale when a
    /// chat changes; an entry is live when it equals what the chat would
    /// get now ([`entry_of`]).
    lanes: [Lane; 3],
    /// The latest `now` seen by [`Scheduler::next`]: an entry eligible by
    /// then goes straight to its lane's `ready` heap.
    seen: Tick,
    bulk: BulkCredit,
    in_flight: u32,
    bot_cooldown_until: Tick,
    /// Chats first seen before this time start with an empty bucket (see
    /// [`Scheduler::taking_over`]).
    cold_until: Tick,
}

/// The heap entry a chat should have now: (eligible at, head seq, head
/// class), or `None` when it has nothing to send or something in flight.
fn entry_of<T>(
    bucket: &Gcra,
    slab: &Slab<T>,
    groups: &ChatMap<Window>,
    chat_id: i64,
    chat: &Chat,
) -> Option<Entry3> {
    if chat.in_flight() {
        return None;
    }
    let head = slab.head(chat)?;
    // Only groups have a window (and only once they sent something).
    let window = if chat_id < 0 {
        groups.get(&chat_id)
    } else {
        None
    };
    let group_free = match window {
        None => 0,
        // `None` only when group_max requests are in flight, which one
        // request per chat rules out; a completion reschedules anyway.
        Some(window) => window.next_free_n(u32::from(head.items))?,
    };
    let at = bucket
        .next_free_n(chat.tat, u32::from(head.items))
        .max(group_free)
        .max(head.not_before);
    Some((at, head.seq, head.priority))
}

/// True when nothing of the chat limits anything any more.
fn is_idle(bucket: &Gcra, chat: &Chat, now: Tick) -> bool {
    chat.tail == NIL && !chat.in_flight() && bucket.is_idle(chat.tat, now)
}

/// Pops a heap's top; a large heap's memory goes when it empties.
fn pop_heap<E: Ord>(heap: &mut BinaryHeap<E>) {
    heap.pop();
    if heap.is_empty() && heap.capacity() > KEEP_EMPTY {
        *heap = BinaryHeap::new();
    }
}

/// Releases a map's spare room when it holds under a quarter of it.
fn shrink<V>(map: &mut ChatMap<V>) {
    if map.capacity() > 4 * map.len() {
        map.shrink_to_fit();
    }
}

impl<T> Scheduler<T> {
    pub fn new(limits: Limits) -> Self {
        Scheduler {
            bucket: Gcra::new(limits.chat_burst, limits.chat_rate),
            bot: Window::new(
                limits.bot_max,
                ticks(limits.bot_window + limits.jitter_margin),
            ),
            bot_pace: Gcra::new(limits.bot_burst, limits.bot_rate_per_s()),
            bot_tat: 0,
            paid: limits.paid_lane().map(|room| {
                let window = limits.bot_window + limits.jitter_margin;
                PaidLane {
                    window: Window::new(room, ticks(window)),
                    pace: Gcra::new(
                        limits.bot_burst,
                        f64::from(room) / window.as_secs_f64().max(1e-6),
                    ),
                    tat: 0,
                    in_flight: 0,
                }
            }),
            bulk: BulkCredit::new(limits.bulk_min_share),
            limits,
            chats: ChatMap::default(),
            groups: ChatMap::default(),
            slab: Slab::new(),
            lanes: Default::default(),
            seen: 0,
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
        self.slab.live
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
        self.chats.values().filter(|c| c.tail != NIL).count()
    }

    /// End of the bot-wide cooldown (0 when none was set).
    pub fn bot_cooldown_until(&self) -> Tick {
        self.bot_cooldown_until
    }

    /// Queues a new message of class Normal behind its chat's messages of
    /// that class and higher, within the bounds.
    pub fn push(&mut self, chat_id: i64, seq: u64, item: T, now: Tick) -> Result<(), PushError<T>> {
        self.push_as(chat_id, seq, Priority::Normal, item, now)
    }

    /// Queues a new message of class `priority` behind its chat's messages
    /// of that class and higher (it overtakes the chat's lower ones),
    /// within the bounds.
    pub fn push_as(
        &mut self,
        chat_id: i64,
        seq: u64,
        priority: Priority,
        item: T,
        now: Tick,
    ) -> Result<(), PushError<T>> {
        self.push_items(chat_id, seq, priority, 1, item, now)
    }

    /// [`push_as`](Self::push_as) for a request that puts `items` messages
    /// into its chat at once (an album, a copy of many): when it goes, every
    /// limit (chat bucket, group and bot windows, bot pacing) has room for
    /// `min(items, its capacity)` and is charged all `items`; the chat's
    /// bucket may go into debt, so its next message waits until it is paid.
    /// It counts as one queued message against the queue bounds.
    pub fn push_items(
        &mut self,
        chat_id: i64,
        seq: u64,
        priority: Priority,
        items: u16,
        item: T,
        now: Tick,
    ) -> Result<(), PushError<T>> {
        let queued = Queued {
            seq,
            not_before: 0,
            priority,
            items,
            paid: false,
            item,
        };
        self.push_queued(chat_id, queued, now)
    }

    /// Queues a new message described in full (class, items, paid flag;
    /// `not_before` is kept) in sending order, within the bounds.
    pub fn push_queued(
        &mut self,
        chat_id: i64,
        mut queued: Queued<T>,
        now: Tick,
    ) -> Result<(), PushError<T>> {
        if self.slab.live >= self.limits.queue_max.min(MAX_SLOTS) {
            return Err(PushError::BotQueueFull(queued.item));
        }
        queued.items = queued.items.max(1);
        self.insert(chat_id, queued, now, self.limits.chat_queue_max)
            .map_err(|q| PushError::ChatQueueFull(q.item))
    }

    /// Puts a message back (a retry, a re-route from another bot, a resend
    /// after a migration) in sending order, ignoring the bounds: it was
    /// accepted already and must not be lost.
    pub fn requeue(&mut self, chat_id: i64, queued: Queued<T>, now: Tick) {
        // A chat holds fewer than `MAX_SLOTS` messages: no bound refuses.
        let _ = self.insert(chat_id, queued, now, usize::MAX);
    }

    /// Queues a message in sending order unless its chat already holds
    /// `chat_max` (then it is handed back), with one map lookup.
    fn insert(
        &mut self,
        chat_id: i64,
        queued: Queued<T>,
        now: Tick,
        chat_max: usize,
    ) -> Result<(), Queued<T>> {
        let chat = match self.chats.entry(chat_id) {
            Entry::Occupied(o) if o.get().len() >= chat_max => return Err(queued),
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(_) if chat_max == 0 => return Err(queued),
            Entry::Vacant(v) => v.insert(Self::first_seen(self.bucket, self.cold_until, now)),
        };
        if self.slab.link(chat, queued) {
            let chat = *chat;
            self.schedule(chat_id, &chat);
        }
        Ok(())
    }

    /// A chat's state when a message first makes it tracked.
    fn first_seen(bucket: Gcra, cold_until: Tick, now: Tick) -> Chat {
        if now < cold_until {
            // As if the previous driver just emptied the bucket.
            Chat::new(bucket.consume(bucket.cool_until(0, now), now))
        } else {
            Chat::new(0)
        }
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
        self.complete_items(chat_id, 1, at);
    }

    /// [`complete`](Self::complete) for a request of `items` messages (the
    /// [`Dispatch::items`] it was sent with): all of them are charged at `at`.
    pub fn complete_items(&mut self, chat_id: i64, items: u16, at: Tick) {
        let Some(chat) = self.chats.get_mut(&chat_id) else {
            return;
        };
        if !chat.in_flight() {
            return;
        }
        let n = u32::from(items.max(1));
        if chat.flags & OVER_FREE != 0
            && let Some(lane) = &mut self.paid
        {
            lane.window.finish_n(at, n);
            lane.in_flight = lane.in_flight.saturating_sub(1);
        }
        chat.flags &= !(IN_FLIGHT | OVER_FREE);
        chat.tat = self.bucket.consume_n(chat.tat, at, n);
        if chat_id < 0
            && let Some(group) = self.groups.get_mut(&chat_id)
        {
            group.finish_n(at, n);
        }
        self.bot.finish_n(at, n);
        self.in_flight = self.in_flight.saturating_sub(1);
        let chat = *chat;
        self.schedule(chat_id, &chat);
    }

    /// No message to `chat_id` before `until` (a 429 for that chat).
    pub fn cool_chat(&mut self, chat_id: i64, until: Tick) {
        let chat = self.chats.entry(chat_id).or_insert(Chat::new(0));
        let before = entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat);
        chat.tat = self.bucket.cool_until(chat.tat, until);
        let chat = *chat;
        let after = entry_of(&self.bucket, &self.slab, &self.groups, chat_id, &chat);
        if after.is_some() && after != before {
            self.schedule(chat_id, &chat);
        }
    }

    /// No message from this bot before `until` (a bot-wide 429).
    pub fn cool_bot(&mut self, until: Tick) {
        self.bot_cooldown_until = self.bot_cooldown_until.max(until);
    }

    /// Moves a chat's queue to another id (a group that became a
    /// supergroup); order is kept by class and `seq`.
    pub fn rename_chat(&mut self, from: i64, to: i64, now: Tick) {
        let Some(chat) = self.chats.get_mut(&from) else {
            return;
        };
        let mut moved = Vec::with_capacity(chat.len());
        while let Some(q) = self.slab.pop_front(chat) {
            moved.push(q);
        }
        for q in moved {
            self.requeue(to, q, now);
        }
        self.gc_chat(from, now);
    }

    /// Takes every queued message out (in flight ones stay), oldest first:
    /// the bot is leaving and its messages go to other bots.
    pub fn drain(&mut self) -> Vec<Dispatch<T>> {
        let mut out = Vec::with_capacity(self.slab.live);
        for (chat_id, chat) in self.chats.iter_mut() {
            while let Some(q) = self.slab.pop_front(chat) {
                out.push(Dispatch {
                    chat_id: *chat_id,
                    seq: q.seq,
                    priority: q.priority,
                    items: q.items,
                    over_free_rate: false,
                    item: q.item,
                });
            }
        }
        self.slab.clear();
        self.lanes = Default::default();
        out.sort_by_key(|d| d.seq);
        out
    }

    /// Decides what goes next at `now`. `keep` sees each candidate before it
    /// is sent; returning false drops it (a caller that gave up, a deadline
    /// that passed) without spending any limit on it.
    ///
    /// The candidate is the oldest head among the chats whose limits allow
    /// a send now, in the highest class that has one; bulk's instead when
    /// its share is due ([`crate::Priority`]). Heap entries are checked when
    /// they reach a top: live when exactly what the chat would be scheduled
    /// at now (nothing in flight, same head seq and class, same eligible
    /// time); anything else is a leftover of an earlier state and is
    /// popped. Each entry is pushed and popped at most twice (waiting,
    /// then ready): O(log n) per message.
    pub fn next(&mut self, now: Tick, mut keep: impl FnMut(&mut T) -> bool) -> Next<T> {
        self.seen = self.seen.max(now);
        loop {
            if self.bot_cooldown_until > now {
                return if self.slab.live == 0 {
                    Next::Idle
                } else {
                    Next::WaitUntil(self.bot_cooldown_until)
                };
            }
            if self.in_flight >= self.limits.max_in_flight {
                return Next::Idle;
            }
            // Bulk first when its turn is due, else the highest class; the
            // first lane with a chat that may send now wins, so the lanes
            // after it are not looked at. A stale top is popped and the
            // choice made again.
            let order = if self.bulk.due() {
                [Priority::Bulk, Priority::Interactive, Priority::Normal]
            } else {
                Priority::ALL
            };
            let pick = order.into_iter().find_map(|class| {
                let lane = &mut self.lanes[class.index()];
                lane.promote(now);
                lane.ready
                    .peek()
                    .map(|&Reverse((seq, at, chat_id))| (class, seq, at, chat_id))
            });
            let Some((class, seq, at, chat_id)) = pick else {
                return self.earliest_wait();
            };
            // One lookup checks the entry and serves the send.
            let chat = match self.chats.get_mut(&chat_id) {
                Some(chat)
                    if entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat)
                        == Some((at, seq, class)) =>
                {
                    chat
                }
                _ => {
                    pop_heap(&mut self.lanes[class.index()].ready);
                    continue;
                }
            };
            if at > now {
                // The caller's clock went back: not eligible after all.
                let lane = &mut self.lanes[class.index()];
                pop_heap(&mut lane.ready);
                lane.waiting.push(Reverse((at, seq, chat_id)));
                continue;
            }
            // The head's size: the bot's window and pacing need room for it.
            let (items, paid) = self
                .slab
                .head(chat)
                .map_or((1, false), |h| (u32::from(h.items), h.paid));
            // The bot window's slots are held by requests in flight (`None`).
            let bot_free = self
                .bot
                .next_free_n(items)
                .map(|w| w.max(self.bot_pace.next_free_n(self.bot_tat, items)));
            let over_free_rate = match bot_free {
                Some(at) if at <= now => false,
                _ => {
                    // The free rate is used: a paid head may take the paid lane.
                    let lane_free = match &self.paid {
                        Some(lane) if paid && self.in_flight == lane.in_flight => lane
                            .window
                            .next_free_n(items)
                            .map(|w| w.max(lane.pace.next_free_n(lane.tat, items))),
                        _ => None,
                    };
                    match (bot_free, lane_free) {
                        (_, Some(at)) if at <= now => true,
                        (Some(a), Some(b)) => return Next::WaitUntil(a.min(b)),
                        (Some(at), None) | (None, Some(at)) => return Next::WaitUntil(at),
                        (None, None) => return Next::Idle,
                    }
                }
            };
            pop_heap(&mut self.lanes[class.index()].ready);
            let Some(mut head) = self.slab.pop_front(chat) else {
                continue;
            };
            if !keep(&mut head.item) {
                let chat = *chat;
                self.schedule(chat_id, &chat);
                continue;
            }
            // The bucket is consumed and the windows fixed at completion.
            chat.flags |= IN_FLIGHT;
            let n = u32::from(head.items.max(1));
            if chat_id < 0 {
                let max = self.limits.group_max;
                let window = ticks(self.limits.group_window + self.limits.jitter_margin);
                self.groups
                    .entry(chat_id)
                    .or_insert_with(|| Window::new(max, window))
                    .start_n(n);
            }
            // The bot window counts every message, as Telegram does.
            self.bot.start_n(n);
            match &mut self.paid {
                Some(lane) if over_free_rate => {
                    chat.flags |= OVER_FREE;
                    lane.window.start_n(n);
                    lane.tat = lane.pace.consume_n(lane.tat, now, n);
                    lane.in_flight += 1;
                }
                _ => self.bot_tat = self.bot_pace.consume_n(self.bot_tat, now, n),
            }
            self.in_flight += 1;
            let bulk_waiting =
                self.slab.class_len[Priority::Bulk.index()] > 0 || class == Priority::Bulk;
            self.bulk.sent(class, bulk_waiting);
            return Next::Send(Dispatch {
                chat_id,
                seq: head.seq,
                priority: head.priority,
                items: head.items,
                over_free_rate,
                item: head.item,
            });
        }
    }

    /// What a message of `priority` queued into `chat_id` now would find
    /// ahead of it (see [`Position`]).
    pub fn position(&self, chat_id: i64, priority: Priority, now: Tick) -> Position {
        let chat = self
            .chats
            .get(&chat_id)
            .copied()
            .unwrap_or_else(|| Self::first_seen(self.bucket, self.cold_until, now));
        let chat_ahead = self.slab.ahead(&chat, priority) as u64 + u64::from(chat.in_flight());
        let group_at = if chat_id < 0 {
            match self.groups.get(&chat_id) {
                Some(w) => w.nth_free(chat_ahead, now),
                None => Window::new(
                    self.limits.group_max,
                    ticks(self.limits.group_window + self.limits.jitter_margin),
                )
                .nth_free(chat_ahead, now),
            }
        } else {
            0
        };
        let bot_free = self
            .bot
            .nth_free(0, now)
            .max(self.bot_pace.next_free(self.bot_tat))
            .max(self.bot_cooldown_until);
        let upto = priority.index() + 1;
        let (class_len, heads) = (&self.slab.class_len, &self.slab.heads);
        let bulk = Priority::Bulk.index();
        Position {
            now,
            priority,
            chat_ahead,
            chat_tat: chat.tat,
            group_at,
            bot_free,
            ahead: class_len[..upto].iter().sum::<usize>() as u64,
            ahead_chats: heads[..upto].iter().sum::<usize>() as u64,
            bulk: class_len[bulk] as u64,
            bulk_chats: heads[bulk] as u64,
            all: self.slab.live as u64,
            all_chats: heads.iter().sum::<usize>() as u64,
        }
    }

    /// When a message of `priority` queued into `chat_id` now would be
    /// sent, as [`crate::estimate`] sees it: for answering a message that
    /// would miss its deadline at once.
    pub fn estimate(&self, chat_id: i64, priority: Priority, now: Tick) -> Tick {
        crate::estimate(&self.position(chat_id, priority, now), &self.limits)
    }

    /// What to wait for when no chat may send now: the earliest live
    /// waiting entry of any lane, or nothing.
    fn earliest_wait(&mut self) -> Next<T> {
        let (bucket, slab, groups, chats) = (&self.bucket, &self.slab, &self.groups, &self.chats);
        let mut earliest: Option<Tick> = None;
        for (lane, class) in self.lanes.iter_mut().zip(Priority::ALL) {
            while let Some(&Reverse((at, seq, chat_id))) = lane.waiting.peek() {
                if is_live(bucket, slab, groups, chats, (at, seq, class), chat_id) {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                    break;
                }
                pop_heap(&mut lane.waiting);
            }
        }
        earliest.map_or(Next::Idle, Next::WaitUntil)
    }

    /// Forgets chats whose state no longer limits anything and gives the
    /// memory back: shrinks the maps, drops stale heap entries and compacts
    /// the slab when they hold much more than what is live. Call it now and
    /// then (for example every few seconds): it walks every tracked chat.
    pub fn gc(&mut self, now: Tick) {
        let (bucket, groups) = (&self.bucket, &mut self.groups);
        let mut waiting = 0usize;
        self.chats.retain(|chat_id, chat| {
            let idle = is_idle(bucket, chat, now)
                && (*chat_id >= 0 || groups.get(chat_id).is_none_or(|g| g.is_idle(now)));
            if idle {
                groups.remove(chat_id);
            } else if chat.tail != NIL && !chat.in_flight() {
                waiting += 1;
            }
            !idle
        });
        shrink(&mut self.chats);
        shrink(&mut self.groups);
        // A waiting chat has one live entry (rarely a duplicate of it):
        // past twice that, the lanes are rebuilt with one entry per chat.
        if self.heap_entries() > 2 * waiting {
            self.lanes = Default::default();
            let (bucket, slab, groups, seen) = (&self.bucket, &self.slab, &self.groups, self.seen);
            for (chat_id, chat) in &self.chats {
                if let Some(entry) = entry_of(bucket, slab, groups, *chat_id, chat) {
                    place(&mut self.lanes, entry, *chat_id, seen);
                }
            }
        }
        if self.slab.nodes.len() > 4 * self.slab.live + 64 {
            self.slab.compact(self.chats.values_mut());
        }
    }

    /// Heap entries of every lane, live or stale.
    fn heap_entries(&self) -> usize {
        self.lanes.iter().map(Lane::len).sum()
    }

    fn gc_chat(&mut self, chat_id: i64, now: Tick) {
        if self.chats.get(&chat_id).is_some_and(|c| {
            is_idle(&self.bucket, c, now)
                && self.groups.get(&chat_id).is_none_or(|g| g.is_idle(now))
        }) {
            self.chats.remove(&chat_id);
            self.groups.remove(&chat_id);
        }
    }

    /// Gives a chat a heap entry in its head's lane at the time its head
    /// message may go, if it has one and nothing of it is in flight: in
    /// `ready` when that time has been seen already. Called whenever that
    /// entry may have changed (a new head, a completion, a new `tat`).
    fn schedule(&mut self, chat_id: i64, chat: &Chat) {
        if let Some(entry) = entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat) {
            place(&mut self.lanes, entry, chat_id, self.seen);
        }
    }
}

/// Puts a chat's entry in its head's lane: in `ready` when its time has
/// been seen already, else in `waiting`.
fn place(lanes: &mut [Lane; 3], (at, seq, class): Entry3, chat_id: i64, seen: Tick) {
    let lane = &mut lanes[class.index()];
    if at <= seen {
        lane.ready.push(Reverse((seq, at, chat_id)));
    } else {
        lane.waiting.push(Reverse((at, seq, chat_id)));
    }
}

/// True when `entry` is what the chat would be scheduled at now.
fn is_live<T>(
    bucket: &Gcra,
    slab: &Slab<T>,
    groups: &ChatMap<Window>,
    chats: &ChatMap<Chat>,
    entry: Entry3,
    chat_id: i64,
) -> bool {
    chats
        .get(&chat_id)
        .is_some_and(|chat| entry_of(bucket, slab, groups, chat_id, chat) == Some(entry))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_paid;
#[cfg(test)]
mod tests_priority;
