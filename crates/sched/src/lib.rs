//! Pure per-bot scheduling under Telegram's limits.
//!
//! One [`Scheduler`] holds everything a bot's dispatcher needs to decide
//! *what to send next and when*: per-chat FIFO queues, the per-chat token
//! bucket (GCRA), the per-group sliding window, the bot-wide sliding window,
//! cooldowns after 429s, and queue bounds. It does no I/O and reads no clock:
//! the caller passes the current time ([`Tick`], micros since an epoch it
//! picks), which keeps it deterministic and property-testable. The daemon's
//! dispatcher is the thin async shell around it.

mod admission;
mod gcra;
mod limits;
mod priority;
mod scheduler;
mod window;

pub use admission::{Position, estimate};
pub use gcra::Gcra;
pub use limits::Limits;
pub use priority::Priority;
pub use scheduler::{Dispatch, Next, PushError, Queued, Scheduler};
pub use window::Window;

/// Time on the scheduler's clock: microseconds since an epoch the caller
/// chose. Plain `u64` keeps per-chat state small (a million chats).
pub type Tick = u64;

/// Converts a duration to ticks, saturating.
pub fn ticks(d: std::time::Duration) -> Tick {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Converts a duration to ticks, rounding up (saturating): for completion
/// times, which must not come out earlier than the real moment.
pub fn ticks_ceil(d: std::time::Duration) -> Tick {
    u64::try_from(d.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX)
}

/// Converts ticks back to a duration.
pub fn duration(t: Tick) -> std::time::Duration {
    std::time::Duration::from_micros(t)
}
