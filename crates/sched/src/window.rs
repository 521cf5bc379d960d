//! A sliding-window counter: "at most `max` events in any window of length
//! `window`", kept as the times of the last `max` events.
//!
//! Used for the group limit (20 per minute) and the bot-wide limit (30 per
//! second), where a token bucket would allow twice the limit across a window
//! boundary.

use std::collections::VecDeque;

use crate::Tick;

#[derive(Debug, Clone)]
pub struct Window {
    max: usize,
    window: Tick,
    /// Times of the most recent sends, oldest first; at most `max`.
    recent: VecDeque<Tick>,
}

impl Window {
    pub fn new(max: u32, window: Tick) -> Self {
        Window {
            max: max.max(1) as usize,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Earliest time an event may happen so that no window holds more than
    /// `max`: the oldest of the last `max` events plus the window.
    pub fn next_free(&self) -> Tick {
        if self.recent.len() < self.max {
            0
        } else {
            self.recent
                .front()
                .map_or(0, |t| t.saturating_add(self.window))
        }
    }

    /// Records an event at `now` (callers check `next_free() <= now` first).
    pub fn record(&mut self, now: Tick) {
        if self.recent.len() == self.max {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }

    /// True when no recorded event can constrain a future one.
    pub fn is_idle(&self, now: Tick) -> bool {
        self.recent
            .back()
            .is_none_or(|last| last.saturating_add(self.window) <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_window_waits_for_its_oldest_event() {
        let mut w = Window::new(3, 1000);
        for t in [0, 10, 20] {
            assert!(w.next_free() <= t);
            w.record(t);
        }
        assert_eq!(w.next_free(), 1000);
        w.record(1000);
        assert_eq!(w.next_free(), 1010);
        assert!(!w.is_idle(1999));
        assert!(w.is_idle(2000));
    }
}
