//! Cluster mode on etcd: the [`EtcdRegistry`] (an implementation of
//! `shardgate_registry::Registry`) and the operator commands ([`Admin`]).
//!
//! Layout under `/shardgate/<cluster>/` (see `keys.rs` and `docs/etcd.md`):
//! `bots/<name>`, `health/<name>`, `members/<instance-id>` (under the
//! instance's lease), `owners/<name>` (under the owner's lease), and the
//! callers: `callers/<name>`, `bans/<caller>`, `quota/<caller>`,
//! `settings/violations`, `settings/cluster_key` (see `callers.rs`).
//!
//! How one instance takes part:
//! - **Session** (`session.rs`): a lease with the member key, kept alive
//!   every TTL/3. Ownership is valid until `valid_until` (last confirmed
//!   keep-alive + TTL − margin); a "lease gone" answer ends it at once.
//! - **Extension** (`extension.rs`): while etcd cannot be reached, ownership
//!   outlives that bound only as long as every other known member says,
//!   within the last second, that it cannot reach etcd either; an instance
//!   that (re)gains etcd takes no bot for a grace longer than that. The
//!   rule, its safety argument and its one hole are written there.
//! - **Watch** (`watch.rs`): one prefix watch after a full read, resumed
//!   from the last revision, re-read after a compaction, checked with
//!   progress requests; into the mirror of all keys (`mirror.rs`).
//! - **Ownership** (`ownership.rs`): bots go to the rendezvous winner of
//!   their name over the live members; claims are create-if-absent
//!   transactions under the lease, their revision fences every health
//!   write; moves are graceful handoffs (`release`, or a timeout).
//! - **Fleet** (`view.rs`): what the gateway routes on, with `owned` (what
//!   this instance may drive now) and the session status.
//!
//! Tokens never appear in errors or logs: values are decoded into
//! `BotToken` (which prints `123456:***`) and foreign text goes through
//! `redact_tokens`.

mod access;
mod admin;
mod callers;
mod error;
mod extension;
pub mod keys;
mod mirror;
mod ownership;
mod registry;
mod retry;
mod session;
mod view;
mod watch;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use access::EtcdAccess;
pub use admin::{Admin, BotRow, ImportReport, OPERATOR};
pub use callers::EtcdCallers;
pub use error::EtcdError;
pub use extension::ExtensionRules;
pub use keys::{Keys, MemberValue, valid_instance_id};
pub use ownership::{OwnerClaim, OwnershipChange, OwnershipEvent};
pub use registry::{EtcdConfig, EtcdRegistry, connect, settled};
pub use session::SessionInfo;
