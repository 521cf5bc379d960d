//! Who may send, how much, and what happens to a caller that keeps pushing.
//!
//! Pure logic, no I/O and no clock: the daemon passes the time (Unix
//! milliseconds) and the random bytes, and wires the results into its auth
//! layer, its submit path and its stores (the callers file, etcd).
//!
//! - [`key`]: API keys (made from random bytes the caller supplies), their
//!   SHA-256 digests, and constant-time matching of a presented key against
//!   every stored digest;
//! - [`model`]: a caller's rules ([`CallerSpec`]), the violation settings, the
//!   callers file (TOML) and the etcd JSON of one caller;
//! - [`directory`]: the callers in force, looked up by key or by the CN of a
//!   client certificate;
//! - [`quota`]: messages per fixed window aligned to the Unix epoch, and the
//!   cluster's token grants ([`TokenPool`], [`grant`]) that keep a quota
//!   within 10% however a caller spreads its calls over instances;
//! - [`violations`]: the violation score and the timed ban rule;
//! - [`auth`]: `--auth on|off|auto`.

pub mod auth;
pub mod directory;
pub mod key;
pub mod model;
pub mod quota;
pub mod violations;

pub use auth::AuthMode;
pub use directory::{AuthError, Credentials, Directory, Identity};
pub use key::{ApiKey, KeyDigest, KeyDigestError};
pub use model::{
    Ban, CallerJson, CallerSpec, CallersFile, CallersFileError, Snapshot, ViolationSettings,
    valid_caller_name,
};
pub use quota::{
    Grant, QuotaCount, RetryIn, TakeResult, TokenPool, chunk_size, grant, window_start,
};
pub use violations::{RefusalKind, Score, Verdict};
