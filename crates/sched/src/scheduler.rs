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
//!
//! # Layout (memory and lookups)
//!
//! A chat costs one 16-byte [`Chat`] in a map keyed by chat id (its GCRA
//! state, the tail of its queue, an in-flight bit and its queue length).
//! Queued messages of every chat live in one [`Slab`] shared by the
//! scheduler, each chat's as a circular list (the tail's link is the head),
//! so no per-chat buffer survives an empty queue. Group windows live in a
//! map of their own, keyed by group: only a group that sent something pays
//! for a window. The ready-heap holds `(eligible at, head seq, chat)` and
//! no record of which entry is current: an entry is live when it is what the
//! chat would be scheduled at now (head's seq and eligible time), see
//! [`Scheduler::next`]. `gc` shrinks the maps, drops stale heap entries and
//! compacts the slab, so memory returns when chats go idle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry;

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

/// Maps keyed by chat id, with a fast hasher seeded at random per map (chat
/// ids come from clients).
type ChatMap<V> = std::collections::HashMap<i64, V, foldhash::fast::RandomState>;

/// No slot: an empty queue's tail, the end of the free list.
const NIL: u32 = u32::MAX;
/// Most messages one scheduler holds (slab slots), so that a chat's queue
/// length fits next to its in-flight bit. `push` refuses beyond it.
const MAX_SLOTS: usize = (IN_FLIGHT - 1) as usize;
/// The in-flight bit of [`Chat::flags`]; the other bits count its queue.
const IN_FLIGHT: u32 = 1 << 31;
/// Slab and heap allocations larger than this many entries are released
/// when they empty; smaller ones are kept for reuse.
const KEEP_EMPTY: usize = 4_096;

/// One chat's state: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Chat {
    /// GCRA state of the chat's bucket (includes chat cooldowns).
    tat: Tick,
    /// Slab slot of the last queued message (its `next` is the first), or
    /// [`NIL`] when the queue is empty.
    tail: u32,
    /// [`IN_FLIGHT`] | number of queued messages.
    flags: u32,
}

impl Chat {
    fn new(tat: Tick) -> Self {
        Chat {
            tat,
            tail: NIL,
            flags: 0,
        }
    }

    fn in_flight(&self) -> bool {
        self.flags & IN_FLIGHT != 0
    }

    fn len(&self) -> usize {
        (self.flags & !IN_FLIGHT) as usize
    }
}

/// A slab slot: a queued message and the next one of its chat, or a free
/// slot and the next free one.
#[derive(Debug)]
struct Node<T> {
    queued: Option<Queued<T>>,
    next: u32,
}

/// The queued messages of every chat of the scheduler.
#[derive(Debug)]
struct Slab<T> {
    nodes: Vec<Node<T>>,
    /// First free slot, or [`NIL`].
    free: u32,
    /// Occupied slots: the messages queued.
    live: usize,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            nodes: Vec::new(),
            free: NIL,
            live: 0,
        }
    }

    /// Stores a message; its link is set by the caller.
    fn alloc(&mut self, queued: Queued<T>) -> u32 {
        self.live += 1;
        if let Some(node) = self.nodes.get_mut(self.free as usize) {
            let i = self.free;
            self.free = node.next;
            node.queued = Some(queued);
            return i;
        }
        assert!(
            self.nodes.len() < MAX_SLOTS,
            "more than {MAX_SLOTS} messages queued in one scheduler"
        );
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            queued: Some(queued),
            next: NIL,
        });
        i
    }

    /// Takes a message out and frees its slot; the slab's memory goes when
    /// the last message leaves (beyond [`KEEP_EMPTY`] slots).
    fn release(&mut self, i: u32) -> Option<Queued<T>> {
        let node = self.nodes.get_mut(i as usize)?;
        let queued = node.queued.take()?;
        node.next = self.free;
        self.free = i;
        self.live -= 1;
        if self.live == 0 {
            self.clear();
        }
        Some(queued)
    }

    fn clear(&mut self) {
        if self.nodes.capacity() > KEEP_EMPTY {
            self.nodes = Vec::new();
        } else {
            self.nodes.clear();
        }
        self.free = NIL;
        self.live = 0;
    }

    fn next(&self, i: u32) -> u32 {
        self.nodes[i as usize].next
    }

    fn set_next(&mut self, i: u32, next: u32) {
        self.nodes[i as usize].next = next;
    }

    fn get(&self, i: u32) -> Option<&Queued<T>> {
        self.nodes.get(i as usize)?.queued.as_ref()
    }

    fn seq(&self, i: u32) -> u64 {
        self.get(i).map_or(0, |q| q.seq)
    }

    /// The first message of a chat's queue.
    fn head(&self, chat: &Chat) -> Option<&Queued<T>> {
        if chat.tail == NIL {
            return None;
        }
        self.get(self.next(chat.tail))
    }

    /// Inserts a message in `seq` order (after the messages with a lower
    /// seq); returns true when it became the chat's head.
    fn link(&mut self, chat: &mut Chat, queued: Queued<T>) -> bool {
        let seq = queued.seq;
        chat.flags += 1;
        let tail = chat.tail;
        if tail == NIL {
            let i = self.alloc(queued);
            self.set_next(i, i);
            chat.tail = i;
            return true;
        }
        let head = self.next(tail);
        if self.seq(tail) < seq {
            let i = self.alloc(queued);
            self.set_next(i, head);
            self.set_next(tail, i);
            chat.tail = i;
            return false;
        }
        // The tail's seq is at least `seq`: the walk stops there at the latest.
        let mut prev = tail;
        let mut at = head;
        while self.seq(at) < seq {
            prev = at;
            at = self.next(at);
        }
        let i = self.alloc(queued);
        self.set_next(i, at);
        self.set_next(prev, i);
        at == head
    }

    /// Takes a chat's first message out.
    fn pop_front(&mut self, chat: &mut Chat) -> Option<Queued<T>> {
        let tail = chat.tail;
        if tail == NIL {
            return None;
        }
        let head = self.next(tail);
        if head == tail {
            chat.tail = NIL;
        } else {
            let second = self.next(head);
            self.set_next(tail, second);
        }
        chat.flags -= 1;
        self.release(head)
    }

    /// Moves every queued message into a new, dense slab (keeping each
    /// chat's order), so its memory follows the number queued.
    fn compact<'a>(&mut self, chats: impl Iterator<Item = &'a mut Chat>) {
        let mut dense = Slab {
            nodes: Vec::with_capacity(self.live),
            free: NIL,
            live: 0,
        };
        for chat in chats {
            let mut moved = Chat::new(0);
            while let Some(q) = self.pop_front(chat) {
                dense.link(&mut moved, q);
            }
            chat.tail = moved.tail;
            chat.flags = (chat.flags & IN_FLIGHT) | moved.flags;
        }
        *self = dense;
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
    /// (eligible at, head seq, chat). Entries go stale when a chat changes;
    /// an entry is live when it equals what the chat would get now.
    ready: BinaryHeap<Reverse<(Tick, u64, i64)>>,
    in_flight: u32,
    bot_cooldown_until: Tick,
    /// Chats first seen before this time start with an empty bucket (see
    /// [`Scheduler::taking_over`]).
    cold_until: Tick,
}

/// The heap entry a chat should have now: (eligible at, head seq), or
/// `None` when it has nothing to send or something in flight.
fn entry_of<T>(
    bucket: &Gcra,
    slab: &Slab<T>,
    groups: &ChatMap<Window>,
    chat_id: i64,
    chat: &Chat,
) -> Option<(Tick, u64)> {
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
        Some(window) => window.next_free()?,
    };
    let at = bucket
        .next_free(chat.tat)
        .max(group_free)
        .max(head.not_before);
    Some((at, head.seq))
}

/// True when nothing of the chat limits anything any more.
fn is_idle(bucket: &Gcra, chat: &Chat, now: Tick) -> bool {
    chat.tail == NIL && !chat.in_flight() && bucket.is_idle(chat.tat, now)
}

/// Pops the heap's top; a large heap's memory goes when it empties.
fn pop_ready(ready: &mut BinaryHeap<Reverse<(Tick, u64, i64)>>) {
    ready.pop();
    if ready.is_empty() && ready.capacity() > KEEP_EMPTY {
        *ready = BinaryHeap::new();
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
            bot_pace: Gcra::new(
                limits.bot_burst,
                limits.bot_max as f64 / (limits.bot_window + limits.jitter_margin).as_secs_f64(),
            ),
            bot_tat: 0,
            limits,
            chats: ChatMap::default(),
            groups: ChatMap::default(),
            slab: Slab::new(),
            ready: BinaryHeap::new(),
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

    /// Queues a new message at the back of its chat, within the bounds.
    pub fn push(&mut self, chat_id: i64, seq: u64, item: T, now: Tick) -> Result<(), PushError<T>> {
        if self.slab.live >= self.limits.queue_max.min(MAX_SLOTS) {
            return Err(PushError::BotQueueFull(item));
        }
        let queued = Queued {
            seq,
            not_before: 0,
            item,
        };
        self.insert(chat_id, queued, now, self.limits.chat_queue_max)
            .map_err(|q| PushError::ChatQueueFull(q.item))
    }

    /// Puts a message back (a retry, a re-route from another bot, a resend
    /// after a migration) in `seq` order, ignoring the bounds: it was
    /// accepted already and must not be lost.
    pub fn requeue(&mut self, chat_id: i64, queued: Queued<T>, now: Tick) {
        // A chat holds fewer than `MAX_SLOTS` messages: no bound refuses.
        let _ = self.insert(chat_id, queued, now, usize::MAX);
    }

    /// Queues a message in `seq` order unless its chat already holds
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
        let Some(chat) = self.chats.get_mut(&chat_id) else {
            return;
        };
        if !chat.in_flight() {
            return;
        }
        chat.flags &= !IN_FLIGHT;
        chat.tat = self.bucket.consume(chat.tat, at);
        if chat_id < 0
            && let Some(group) = self.groups.get_mut(&chat_id)
        {
            group.finish(at);
        }
        self.bot.finish(at);
        self.in_flight = self.in_flight.saturating_sub(1);
        let chat = *chat;
        self.schedule(chat_id, &chat);
    }

    /// No message to `chat_id` before `until` (a 429 for that chat).
    pub fn cool_chat(&mut self, chat_id: i64, until: Tick) {
        let chat = self.chats.entry(chat_id).or_insert(Chat::new(0));
        let before = entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat);
        chat.tat = self.bucket.cool_until(chat.tat, until);
        let after = entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat);
        if let Some((at, seq)) = after
            && after != before
        {
            self.ready.push(Reverse((at, seq, chat_id)));
        }
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
                    item: q.item,
                });
            }
        }
        self.slab.clear();
        self.ready = BinaryHeap::new();
        out.sort_by_key(|d| d.seq);
        out
    }

    /// Decides what goes next at `now`. `keep` sees each candidate before it
    /// is sent; returning false drops it (a caller that gave up, a deadline
    /// that passed) without spending any limit on it.
    ///
    /// The heap's top entry is live when it is exactly what its chat would
    /// be scheduled at now (nothing in flight, same head seq, same eligible
    /// time); anything else is a leftover of an earlier state and is popped.
    pub fn next(&mut self, now: Tick, mut keep: impl FnMut(&mut T) -> bool) -> Next<T> {
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
            let Some(&Reverse((at, seq, chat_id))) = self.ready.peek() else {
                return Next::Idle;
            };
            let chat = match self.chats.get_mut(&chat_id) {
                Some(chat)
                    if entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat)
                        == Some((at, seq)) =>
                {
                    chat
                }
                _ => {
                    pop_ready(&mut self.ready);
                    continue;
                }
            };
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
            pop_ready(&mut self.ready);
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
            if chat_id < 0 {
                let max = self.limits.group_max;
                let window = ticks(self.limits.group_window + self.limits.jitter_margin);
                self.groups
                    .entry(chat_id)
                    .or_insert_with(|| Window::new(max, window))
                    .start();
            }
            self.bot.start();
            self.bot_tat = self.bot_pace.consume(self.bot_tat, now);
            self.in_flight += 1;
            return Next::Send(Dispatch {
                chat_id,
                seq: head.seq,
                item: head.item,
            });
        }
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
        // A waiting chat has one live entry (rarely a duplicate of it).
        if self.ready.len() > 2 * waiting {
            let (bucket, slab, groups, chats) =
                (&self.bucket, &self.slab, &self.groups, &self.chats);
            self.ready.retain(|Reverse((at, seq, chat_id))| {
                chats.get(chat_id).is_some_and(|chat| {
                    entry_of(bucket, slab, groups, *chat_id, chat) == Some((*at, *seq))
                })
            });
            self.ready.shrink_to_fit();
        }
        if self.slab.nodes.len() > 4 * self.slab.live + 64 {
            self.slab.compact(self.chats.values_mut());
        }
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

    /// Gives a chat a heap entry at the time its head message may go, if it
    /// has one and nothing of it is in flight. Called whenever that entry
    /// may have changed (a new head, a completion, a new `tat`).
    fn schedule(&mut self, chat_id: i64, chat: &Chat) {
        if let Some((at, seq)) = entry_of(&self.bucket, &self.slab, &self.groups, chat_id, chat) {
            self.ready.push(Reverse((at, seq, chat_id)));
        }
    }
}

#[cfg(test)]
mod tests;
