//! Broadcast jobs without I/O: the model every part of a broadcast shares.
//!
//! - [`spec`]: what a caller asks for ([`JobSpec`], [`JobId`], [`Template`]);
//! - [`state`]: the states and the moves allowed between them;
//! - [`counters`]: total, delivered, failed (by code), pending, possible
//!   duplicates, with `pending = total - delivered - failed` kept;
//! - [`intake`] and [`pack`]: recipients streamed in, de-duplicated in
//!   bounded memory, packed into compressed chunks of at most 1 MiB;
//! - [`progress`]: the crash-safe protocol (record in flight before sending,
//!   count outcomes in batches, resume with possible duplicates counted);
//! - [`eta`]: rate and ETA as pure functions;
//! - [`store`] and [`codec`]: the [`JobStore`] trait and the records' bytes,
//!   shared by the embedded and the cluster store.
//!
//! Nothing here reads a clock, a file or the network: times come in as
//! arguments, and the store is a trait.

pub mod codec;
pub mod counters;
pub mod eta;
pub mod intake;
pub mod pack;
pub mod progress;
pub mod spec;
pub mod state;
pub mod store;

pub use counters::{CANCELLED, Counters, Outcome};
pub use eta::{Estimate, RateMeter, allowed_rate, estimate, fleet_rate};
pub use intake::{Intake, MAX_RECIPIENTS, Packed};
pub use pack::{CHUNK_IDS, MAX_CHUNK_BYTES, Manifest, pack_chunk, unpack_chunk};
pub use progress::{Checkpoint, ProgressRecord, RecipientResult, ResultError, Tracker, Window};
pub use spec::{DEFAULT_PRIORITY, JobId, JobSpec, Priority, Template, priority_name};
pub use state::JobState;
pub use store::{
    Created, DEFAULT_RETENTION_S, JobMeta, JobRecord, JobStatus, JobStore, NewJob, StatusUpdate,
    StoreError, load_window,
};

/// What the model refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("job id must be 1 to {max} letters, digits, '-', '_' or '.' (got {len} bytes)")]
    InvalidId { len: usize, max: usize },
    #[error("template must be 1 to {max} bytes (got {len})")]
    InvalidTemplate { len: usize, max: usize },
    #[error("start_at must be unix seconds >= 0 (got {0})")]
    InvalidStartAt(i64),
    #[error("a job cannot move from {from} to {to}")]
    IllegalTransition { from: JobState, to: JobState },
    #[error("unknown job state {0:?}")]
    UnknownState(String),
    #[error("a recipient would be counted twice")]
    CountedTwice,
    #[error("recipient {0} is not in flight")]
    NotInFlight(i64),
    #[error("a final state with {0} recipients pending")]
    PendingAtEnd(u64),
    #[error("a job takes at most {0} distinct recipients")]
    TooManyRecipients(u64),
    #[error("a job needs at least one recipient")]
    NoRecipients,
    #[error("a chunk takes 1 to 100000 ids (got {0})")]
    ChunkSize(usize),
    #[error("chunk ids must be sorted and distinct")]
    Unsorted,
    #[error("a dry run is answered as planned, never stored")]
    DryRunStored,
    #[error("damaged job record: {0}")]
    Corrupt(&'static str),
}
