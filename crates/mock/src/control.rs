//! The in-process control plane: a cheap, cloneable handle on the emulator's state, used by
//! tests and by the `/_mock/` HTTP endpoints alike.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::MockConfig;
use crate::faults::Faults;
use crate::files::FileInfo;
use crate::limits::Limits;
use crate::state::{ChatState, Delivery, Engine};
use crate::stats::Stats;

/// Handle on a running emulator. Clones share the same state.
#[derive(Clone)]
pub struct Control {
    engine: Arc<Mutex<Engine>>,
    clock: WallClock,
}

/// Wall-clock milliseconds read off the monotonic clock: the wall time at
/// start plus the monotonic time since. A delivery's `at_ms` and the
/// limiter's arrival are then one instant, so spans measured on the
/// delivery log agree with what the limiter counted, whatever NTP does to
/// the system clock meanwhile.
#[derive(Clone, Copy)]
struct WallClock {
    start: Instant,
    start_ms: u64,
}

impl WallClock {
    fn new() -> Self {
        WallClock {
            start: Instant::now(),
            start_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    fn ms_at(&self, at: Instant) -> u64 {
        let since =
            u64::try_from(at.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX);
        self.start_ms.saturating_add(since)
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// A fresh emulator state (not yet serving).
    pub(crate) fn new(config: MockConfig) -> Self {
        Control {
            engine: Arc::new(Mutex::new(Engine::new(config))),
            clock: WallClock::new(),
        }
    }

    /// Unix milliseconds of `at` (a monotonic instant), for delivery records.
    pub(crate) fn wall_ms(&self, at: Instant) -> u64 {
        self.clock.ms_at(at)
    }

    /// The state, behind its lock (a panic elsewhere never wedges the emulator).
    pub(crate) fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request of `bot_id` answers 401 "Unauthorized" from now on.
    pub fn revoke(&self, bot_id: u64) {
        self.engine().revoke(bot_id, true);
    }

    /// Undoes [`Control::revoke`].
    pub fn unrevoke(&self, bot_id: u64) {
        self.engine().revoke(bot_id, false);
    }

    /// Every rate-limited method of `bot_id` answers 429 with `retry_after_s`, for `for_duration`
    /// (or until [`Control::unthrottle`] when `None`).
    pub fn throttle(&self, bot_id: u64, retry_after_s: u64, for_duration: Option<Duration>) {
        let until = for_duration.map(|d| Instant::now() + d);
        self.engine().throttle(bot_id, retry_after_s, until);
    }

    /// Ends a forced throttle.
    pub fn unthrottle(&self, bot_id: u64) {
        self.engine().unthrottle(bot_id);
    }

    /// Sets the global faults (`None`) or one bot's faults, which then replace the global
    /// ones for that bot (`Faults::default()` shields it from global faults).
    pub fn set_faults(&self, bot_id: Option<u64>, faults: Faults) {
        self.engine().set_faults(bot_id, faults);
    }

    /// Removes one bot's own faults, so the global ones apply to it again.
    pub fn clear_faults(&self, bot_id: u64) {
        self.engine().clear_faults(bot_id);
    }

    /// The faults in effect for a bot (`None`: the global ones).
    pub fn faults(&self, bot_id: Option<u64>) -> Faults {
        self.engine().faults(bot_id)
    }

    /// Sets the state of a chat, for every bot.
    pub fn set_chat(&self, chat_id: i64, state: ChatState) {
        self.engine().set_chat(chat_id, state);
    }

    /// Replaces the rate limits (`None`: no limits); forgets all limit bookkeeping.
    pub fn set_limits(&self, limits: Option<Limits>) {
        self.engine().set_limits(limits);
    }

    /// The rate limits in force (`None`: no limits).
    pub fn limits(&self) -> Option<Limits> {
        self.engine().limits()
    }

    /// Sets how many messages per bot window a bot may send with `allow_paid_broadcast`
    /// (0: no paid lane); kept until [`Control::reset`].
    pub fn set_paid_bot_max(&self, paid_bot_max: u32) {
        self.engine().set_paid_bot_max(paid_bot_max);
    }

    /// The paid lane's rate, messages per bot window.
    pub fn paid_bot_max(&self) -> u32 {
        self.engine().paid_bot_max()
    }

    /// A delivered message as Telegram's `Message` JSON, edits applied (`None`: never sent,
    /// deleted, or forgotten).
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<serde_json::Value> {
        self.engine().message(chat_id, message_id)
    }

    /// An uploaded file's description and its bytes, exactly as received.
    pub fn file(&self, file_id: &str) -> Option<(FileInfo, Vec<u8>)> {
        self.engine()
            .file(file_id)
            .map(|f| (f.info, f.data.to_vec()))
    }

    /// Every file held (uploads and URLs), oldest first.
    pub fn files(&self) -> Vec<FileInfo> {
        self.engine().files()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.engine().stats()
    }

    /// Deliveries with `seq > since_seq`, oldest first (`0` = the whole log).
    pub fn deliveries(&self, since_seq: u64) -> Vec<Delivery> {
        self.engine().deliveries(since_seq, usize::MAX)
    }

    /// At most `limit` deliveries with `seq > since_seq`.
    pub fn deliveries_page(&self, since_seq: u64, limit: usize) -> Vec<Delivery> {
        self.engine().deliveries(since_seq, limit)
    }

    /// Back to the starting configuration: no revocations, throttles or chat states, the
    /// configured limits and faults, empty log (sequence restarts at 1), zero counters.
    pub fn reset(&self) {
        self.engine().reset();
    }
}
