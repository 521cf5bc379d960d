//! The queued messages of one scheduler: per-chat state ([`Chat`], 16
//! bytes) and one [`Slab`] holding every chat's queue as a circular list
//! (the tail's link is the head), so no per-chat buffer survives an empty
//! queue.
//!
//! A chat's list is kept in sending order: by [`Priority`] first, then by
//! `seq`. So within a class a chat's messages leave in acceptance order
//! (FIFO per chat, hence per (chat, user)), and a message of a higher class
//! goes before the chat's lower ones. The slab also counts, per class, the
//! messages queued and the chats whose head is of that class: admission
//! estimates read them in O(1).

use crate::{Priority, Tick};

/// A queued message and what the scheduler needs to know about it.
#[derive(Debug)]
pub struct Queued<T> {
    /// Acceptance order across the gateway; FIFO per chat and class
    /// follows it.
    pub seq: u64,
    /// Not before this time (retry backoff); 0 = no constraint.
    pub not_before: Tick,
    /// Its class: a chat's messages of a higher class go before its lower
    /// ones, and the bot sends the highest class its limits allow.
    pub priority: Priority,
    /// Messages it puts into its chat in one request (an album's items, the
    /// ids of a copy of many), at least 1: every limit needs room for
    /// `min(items, capacity)` and is charged all of them.
    pub items: u16,
    /// Sent with `allow_paid_broadcast`: once the bot's free rate is used,
    /// it may still go on the paid lane (see [`crate::Limits::paid_bot_max`]).
    pub paid: bool,
    pub item: T,
}

/// No slot: an empty queue's tail, the end of the free list.
pub(super) const NIL: u32 = u32::MAX;
/// Most messages one scheduler holds (slab slots), so that a chat's queue
/// length fits next to its in-flight bits. `push` refuses beyond it.
pub(super) const MAX_SLOTS: usize = (OVER_FREE - 1) as usize;
/// The in-flight bit of [`Chat::flags`]; the bits under [`OVER_FREE`] count
/// its queue.
pub(super) const IN_FLIGHT: u32 = 1 << 31;
/// Set with [`IN_FLIGHT`] when the request in flight went over the bot's
/// free rate (the paid lane): its completion also frees a paid slot.
pub(super) const OVER_FREE: u32 = 1 << 30;
/// The bits of [`Chat::flags`] that describe the request in flight.
const FLIGHT_BITS: u32 = IN_FLIGHT | OVER_FREE;
/// Slab and heap allocations larger than this many entries are released
/// when they empty; smaller ones are kept for reuse.
pub(super) const KEEP_EMPTY: usize = 4_096;

/// One chat's state: 16 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chat {
    /// GCRA state of the chat's bucket (includes chat cooldowns).
    pub(super) tat: Tick,
    /// Slab slot of the last queued message (its `next` is the first), or
    /// [`NIL`] when the queue is empty.
    pub(super) tail: u32,
    /// [`IN_FLIGHT`] | [`OVER_FREE`] | number of queued messages.
    pub(super) flags: u32,
}

impl Chat {
    pub(super) fn new(tat: Tick) -> Self {
        Chat {
            tat,
            tail: NIL,
            flags: 0,
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        self.flags & IN_FLIGHT != 0
    }

    pub(super) fn len(&self) -> usize {
        (self.flags & !FLIGHT_BITS) as usize
    }
}

/// A queued message as the slab keeps it: its class, item count and paid
/// flag sit in the slot's padding instead ([`Node::priority`],
/// [`Node::items`], [`Node::paid`]), so a
/// slot stays 32 bytes for a boxed item.
#[derive(Debug)]
pub(super) struct Stored<T> {
    pub(super) seq: u64,
    pub(super) not_before: Tick,
    pub(super) item: T,
}

/// What the scheduler reads of a chat's first message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) not_before: Tick,
    pub(super) priority: Priority,
    pub(super) items: u16,
    pub(super) paid: bool,
}

/// A slab slot: a queued message and the next one of its chat, or a free
/// slot and the next free one.
#[derive(Debug)]
pub(super) struct Node<T> {
    pub(super) stored: Option<Stored<T>>,
    pub(super) next: u32,
    /// The stored message's class (meaningless in a free slot).
    pub(super) priority: Priority,
    /// Its item count, in the padding too.
    pub(super) items: u16,
    /// Its paid flag, in the padding too.
    pub(super) paid: bool,
}

/// The queued messages of every chat of the scheduler.
#[derive(Debug)]
pub(super) struct Slab<T> {
    pub(super) nodes: Vec<Node<T>>,
    /// First free slot, or [`NIL`].
    pub(super) free: u32,
    /// Occupied slots: the messages queued.
    pub(super) live: usize,
    /// Messages queued per class ([`Priority::index`]).
    pub(super) class_len: [usize; 3],
    /// Chats whose first queued message is of each class.
    pub(super) heads: [usize; 3],
}

impl<T> Slab<T> {
    pub(super) fn new() -> Self {
        Slab {
            nodes: Vec::new(),
            free: NIL,
            live: 0,
            class_len: [0; 3],
            heads: [0; 3],
        }
    }

    /// Stores a message; its link is set by the caller.
    fn alloc(&mut self, queued: Queued<T>) -> u32 {
        self.live += 1;
        self.class_len[queued.priority.index()] += 1;
        let priority = queued.priority;
        let items = queued.items.max(1);
        let paid = queued.paid;
        let stored = Stored {
            seq: queued.seq,
            not_before: queued.not_before,
            item: queued.item,
        };
        if let Some(node) = self.nodes.get_mut(self.free as usize) {
            let i = self.free;
            self.free = node.next;
            node.stored = Some(stored);
            node.priority = priority;
            node.items = items;
            node.paid = paid;
            return i;
        }
        assert!(
            self.nodes.len() < MAX_SLOTS,
            "more than {MAX_SLOTS} messages queued in one scheduler"
        );
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            stored: Some(stored),
            next: NIL,
            priority,
            items,
            paid,
        });
        i
    }

    /// Takes a message out and frees its slot; the slab's memory goes when
    /// the last message leaves (beyond [`KEEP_EMPTY`] slots).
    fn release(&mut self, i: u32) -> Option<Queued<T>> {
        let node = self.nodes.get_mut(i as usize)?;
        let stored = node.stored.take()?;
        let priority = node.priority;
        let items = node.items;
        let paid = node.paid;
        node.next = self.free;
        self.free = i;
        self.live -= 1;
        self.class_len[priority.index()] -= 1;
        if self.live == 0 {
            self.clear();
        }
        Some(Queued {
            seq: stored.seq,
            not_before: stored.not_before,
            priority,
            items,
            paid,
            item: stored.item,
        })
    }

    pub(super) fn clear(&mut self) {
        if self.nodes.capacity() > KEEP_EMPTY {
            self.nodes = Vec::new();
        } else {
            self.nodes.clear();
        }
        self.free = NIL;
        self.live = 0;
        self.class_len = [0; 3];
        self.heads = [0; 3];
    }

    pub(super) fn next(&self, i: u32) -> u32 {
        self.nodes[i as usize].next
    }

    fn set_next(&mut self, i: u32, next: u32) {
        self.nodes[i as usize].next = next;
    }

    #[cfg(test)]
    pub(super) fn get(&self, i: u32) -> Option<&Stored<T>> {
        self.nodes.get(i as usize)?.stored.as_ref()
    }

    /// The sending order within a chat: class, then seq.
    fn key(&self, i: u32) -> (Priority, u64) {
        self.nodes
            .get(i as usize)
            .map_or((Priority::Interactive, 0), |n| {
                (n.priority, n.stored.as_ref().map_or(0, |q| q.seq))
            })
    }

    /// The first message of a chat's queue.
    pub(super) fn head(&self, chat: &Chat) -> Option<Head> {
        if chat.tail == NIL {
            return None;
        }
        let node = self.nodes.get(self.next(chat.tail) as usize)?;
        let q = node.stored.as_ref()?;
        Some(Head {
            seq: q.seq,
            not_before: q.not_before,
            priority: node.priority,
            items: node.items,
            paid: node.paid,
        })
    }

    /// Messages of the chat that go before one of `priority` queued now:
    /// those of its class and higher. O(1) when all of them go first (a
    /// chat's tail is of the same or a higher class), else a walk over
    /// them only.
    pub(super) fn ahead(&self, chat: &Chat, priority: Priority) -> usize {
        if chat.tail == NIL {
            return 0;
        }
        if self.key(chat.tail).0 <= priority {
            return chat.len();
        }
        let mut n = 0;
        let mut at = self.next(chat.tail);
        while self.key(at).0 <= priority {
            n += 1;
            at = self.next(at);
        }
        n
    }

    /// Inserts a message in sending order (after the messages of its class
    /// and higher with a lower seq); returns true when it became the
    /// chat's head.
    pub(super) fn link(&mut self, chat: &mut Chat, queued: Queued<T>) -> bool {
        let key = (queued.priority, queued.seq);
        let class = queued.priority.index();
        chat.flags += 1;
        let tail = chat.tail;
        if tail == NIL {
            let i = self.alloc(queued);
            self.set_next(i, i);
            chat.tail = i;
            self.heads[class] += 1;
            return true;
        }
        let head = self.next(tail);
        if self.key(tail) < key {
            let i = self.alloc(queued);
            self.set_next(i, head);
            self.set_next(tail, i);
            chat.tail = i;
            return false;
        }
        // The tail's key is at least `key`: the walk stops there at the
        // latest. A message of a higher class than the chat's head stops
        // at once.
        let mut prev = tail;
        let mut at = head;
        while self.key(at) < key {
            prev = at;
            at = self.next(at);
        }
        if at == head {
            self.heads[self.key(head).0.index()] -= 1;
            self.heads[class] += 1;
        }
        let i = self.alloc(queued);
        self.set_next(i, at);
        self.set_next(prev, i);
        at == head
    }

    /// Takes a chat's first message out.
    pub(super) fn pop_front(&mut self, chat: &mut Chat) -> Option<Queued<T>> {
        let tail = chat.tail;
        if tail == NIL {
            return None;
        }
        let head = self.next(tail);
        self.heads[self.key(head).0.index()] -= 1;
        if head == tail {
            chat.tail = NIL;
        } else {
            let second = self.next(head);
            self.set_next(tail, second);
            self.heads[self.key(second).0.index()] += 1;
        }
        chat.flags -= 1;
        self.release(head)
    }

    /// Moves every queued message into a new, dense slab (keeping each
    /// chat's order), so its memory follows the number queued.
    pub(super) fn compact<'a>(&mut self, chats: impl Iterator<Item = &'a mut Chat>) {
        let mut dense = Slab::new();
        dense.nodes.reserve_exact(self.live);
        for chat in chats {
            let mut moved = Chat::new(0);
            while let Some(q) = self.pop_front(chat) {
                dense.link(&mut moved, q);
            }
            chat.tail = moved.tail;
            chat.flags = (chat.flags & FLIGHT_BITS) | moved.flags;
        }
        *self = dense;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_is_16_bytes_and_a_slot_of_a_boxed_item_32() {
        assert_eq!(std::mem::size_of::<Chat>(), 16);
        assert_eq!(std::mem::size_of::<Node<Box<u64>>>(), 32);
    }
}
