//! A sliding-window counter, "at most `max` requests in any window of length
//! `window`", that holds at the *server's arrival count* however late each
//! request arrives between its dispatch and its completion.
//!
//! Used for the group limit (20 per minute) and the bot-wide limit (30 per
//! second), where a token bucket would allow twice the limit across a window
//! boundary.
//!
//! # The rule
//!
//! Telegram (and the emulator, `crates/mock/src/limits.rs`) counts a request
//! when it *arrives*, which we cannot see: we only know that it arrived no
//! earlier than we dispatched it and no later than we had its answer (or gave
//! up on it). So a request occupies its slot from dispatch ([`Window::start`])
//! and, while it is in flight, counts as happening *now*, whatever now is;
//! when it completes ([`Window::finish`]) its entry is fixed at the completion
//! time, the latest moment it can have arrived. A new request may start at
//! `t` only if
//!
//! ```text
//! in_flight + #{ completed j : c_j + window > t }  <  max
//! ```
//!
//! # Why no window of the server ever holds more than `max`
//!
//! Take requests with dispatch `d_i`, completion `c_i` and any arrival
//! `a_i` with `d_i <= a_i <= c_i`. Suppose some interval `[s, s + window)`
//! held `max + 1` arrivals. Let `r` be the one of them dispatched last (in
//! the order the scheduler released them). Each of the other `max` was
//! dispatched before `r`, so when `r` was checked at `d_r` it was either
//!
//! - in flight: counted as `d_r`, which is inside `(d_r - window, d_r]`; or
//! - completed at `c_j >= a_j >= s > a_r - window >= d_r - window`, so
//!   `c_j + window > d_r`: counted too (if the window kept only the `max`
//!   latest completions and dropped `c_j`, those `max` are all later than
//!   `c_j` and count instead).
//!
//! So `max` were counted when `r` was allowed: a contradiction. No assumption
//! on the delay between dispatch and arrival is needed, so no jitter margin;
//! the caller must only pass a dispatch time no later than the real send and
//! a completion time no earlier than the real answer (round *up* to ticks).
//! A request that failed without reaching the server is treated as arrived at
//! its completion, which over-counts and is safe. One case is outside the
//! proof: a request the client gave up on (its timeout, 15 s by default)
//! that a stalled server reads only after that; its arrival then lies past
//! the completion we recorded. The property test
//! `arrivals_fit_the_servers_limits` (in `scheduler/tests.rs`) checks this
//! against every possible arrival time on random workloads.
//!
//! The cost: a full window frees a slot only `window` after a completion, so
//! a bot sending at its limit gets `max` per `window + round trip` (0.03%
//! on loopback, 3–6% against the real Bot API at 30–60 ms).

use std::collections::VecDeque;

use crate::Tick;

#[derive(Debug, Clone)]
pub struct Window {
    max: u32,
    /// Requests started and not finished: each counts as "now".
    in_flight: u32,
    window: Tick,
    /// Completion times of the latest finished requests, ascending; at most
    /// `max` (older ones cannot matter: `max` later ones count before them).
    done: VecDeque<Tick>,
}

impl Window {
    pub fn new(max: u32, window: Tick) -> Self {
        Window {
            max: max.max(1),
            in_flight: 0,
            window,
            done: VecDeque::new(),
        }
    }

    /// Earliest time one more request may start, as things stand; `None`
    /// while `max` requests are in flight (only a completion frees a slot).
    pub fn next_free(&self) -> Option<Tick> {
        self.next_free_n(1)
    }

    /// Earliest time a request of `n` messages may start: when the window
    /// has room for `min(n, max)` of them; `None` while the requests in
    /// flight leave less than that (only a completion frees a slot).
    pub fn next_free_n(&self, n: u32) -> Option<Tick> {
        let k = n.clamp(1, self.max);
        // Completed entries that may still be inside the window at the
        // start: at most `room - k` of them.
        let room = self
            .max
            .checked_sub(self.in_flight)
            .and_then(|r| r.checked_sub(k - 1))
            .filter(|r| *r > 0)? as usize;
        let len = self.done.len();
        // The room-th latest completion must have left the window.
        Some(if len < room {
            0
        } else {
            self.done[len - room].saturating_add(self.window)
        })
    }

    /// Counts a request dispatched now (callers check `next_free() <= now`
    /// first). It counts as "now" until [`Window::finish`].
    pub fn start(&mut self) {
        self.start_n(1);
    }

    /// Counts a request of `n` messages dispatched now: it holds `n` slots
    /// (callers check `next_free_n(n) <= now` first).
    pub fn start_n(&mut self, n: u32) {
        self.in_flight = self.in_flight.saturating_add(n.max(1));
    }

    /// Fixes a request of `n` messages at its completion time `at`: `n`
    /// entries (the window keeps the latest `max`).
    pub fn finish_n(&mut self, at: Tick, n: u32) {
        for _ in 0..n.max(1) {
            self.finish(at);
        }
    }

    /// Fixes one in-flight request at its completion time `at` (no earlier
    /// than the server could have counted it). Completions may be reported
    /// out of order.
    pub fn finish(&mut self, at: Tick) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let pos = self
            .done
            .iter()
            .rposition(|t| *t <= at)
            .map_or(0, |p| p + 1);
        self.done.insert(pos, at);
        if self.done.len() > self.max as usize {
            self.done.pop_front();
        }
    }

    /// Estimated start of the `k`-th request from now on (0-based), if each
    /// one before it starts as soon as the window allows and every request
    /// completes at its start (the ones in flight now, at `now`): a lower
    /// bound, for admission estimates. O(1).
    ///
    /// Started requests take slots in turn, so the `k`-th waits for the
    /// `max`-th latest before it to leave the window: the first `max` wait
    /// for the recorded completions (or none), and every later one for the
    /// request `max` places ahead, one window after it.
    pub fn nth_free(&self, k: u64, now: Tick) -> Tick {
        let max = u64::from(self.max);
        let len = self.done.len() as u64;
        let recorded = len + u64::from(self.in_flight);
        let j = k % max;
        // The j-th of the last `max` recorded entries (done ascending,
        // then the in-flight ones at `now`); fewer than `max`: free.
        let first = match (j + recorded).checked_sub(max) {
            None => now,
            Some(i) => {
                let at = if i < len { self.done[i as usize] } else { now };
                at.saturating_add(self.window).max(now)
            }
        };
        first.saturating_add((k / max).saturating_mul(self.window))
    }

    /// Requests started and not finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// True when nothing recorded can constrain a future request.
    pub fn is_idle(&self, now: Tick) -> bool {
        self.in_flight == 0
            && self
                .done
                .back()
                .is_none_or(|last| last.saturating_add(self.window) <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_of_many_needs_room_for_min_n_max_and_holds_n_slots() {
        let mut w = Window::new(5, 1_000);
        assert_eq!(w.next_free_n(3), Some(0));
        w.start_n(3);
        assert_eq!(w.next_free_n(2), Some(0), "two slots left");
        assert_eq!(
            w.next_free_n(3),
            None,
            "not three while three are in flight"
        );
        w.finish_n(100, 3);
        assert_eq!(w.next_free_n(2), Some(0));
        assert_eq!(
            w.next_free_n(3),
            Some(1_100),
            "three need the oldest to leave"
        );
        assert_eq!(
            w.next_free_n(50),
            Some(1_100),
            "more than max need an empty window"
        );
        w.start_n(50);
        assert_eq!(w.next_free(), None, "fifty held: nothing until they finish");
        w.finish_n(200, 50);
        assert_eq!(
            w.next_free(),
            Some(1_200),
            "the window keeps the latest five"
        );
    }

    #[test]
    fn full_window_waits_for_its_oldest_completion() {
        let mut w = Window::new(3, 1000);
        for t in [0, 10, 20] {
            assert!(w.next_free().is_some_and(|f| f <= t));
            w.start();
            w.finish(t);
        }
        assert_eq!(w.next_free(), Some(1000));
        w.start();
        w.finish(1000);
        assert_eq!(w.next_free(), Some(1010));
        assert!(!w.is_idle(1999));
        assert!(w.is_idle(2000));
    }

    #[test]
    fn in_flight_requests_count_as_now_until_they_finish() {
        let mut w = Window::new(3, 1000);
        w.start();
        w.start();
        // One slot left, whatever the time.
        assert_eq!(w.next_free(), Some(0));
        w.start();
        assert_eq!(
            w.next_free(),
            None,
            "three in flight: only a completion frees a slot"
        );
        assert!(!w.is_idle(1_000_000));
        // The first answer came at 500: its slot frees at 1500, not 1000.
        w.finish(500);
        assert_eq!(w.next_free(), Some(1500));
        // Completions reported out of order are kept in time order.
        w.finish(700);
        w.finish(600);
        assert_eq!(w.next_free(), Some(1500));
        assert_eq!(w.in_flight(), 0);
        assert!(!w.is_idle(1699));
        assert!(w.is_idle(1700));
    }

    #[test]
    fn nth_free_waits_a_window_for_every_max_ahead() {
        let mut w = Window::new(3, 1000);
        assert_eq!(w.nth_free(0, 5), 5);
        assert_eq!(w.nth_free(2, 5), 5);
        assert_eq!(w.nth_free(3, 5), 1005);
        assert_eq!(w.nth_free(7, 5), 2005);
        w.start();
        w.finish(100);
        w.start();
        // One done at 100, one in flight (taken as now, 200): the third
        // slot is free, the fourth waits for 100 to leave.
        assert_eq!(w.nth_free(0, 200), 200);
        assert_eq!(w.nth_free(1, 200), 1100);
        assert_eq!(w.nth_free(2, 200), 1200);
        assert_eq!(w.nth_free(3, 200), 1200);
        assert_eq!(w.next_free(), Some(0));
    }

    #[test]
    fn only_the_latest_completions_are_kept() {
        let mut w = Window::new(2, 100);
        for t in [50, 10, 30] {
            w.start();
            w.finish(t);
        }
        // 10 was dropped: 30 and 50 are the two that matter.
        assert_eq!(w.next_free(), Some(130));
        w.start();
        assert_eq!(w.next_free(), Some(150));
    }
}
