//! The gateway: accepts sends over gRPC, routes each message to a bot by
//! rendezvous hashing, and drives one dispatcher per bot that paces requests
//! under Telegram's limits and reacts to what Telegram answers.
//!
//! Map of the crate:
//! - [`message`]: validation of a `SendRequest` into a [`Message`], and
//!   [`call`]: of a `CallRequest` (any Bot API method) into one;
//! - [`error`]: [`SendError`], one value per way a send can end badly, and its
//!   gRPC status;
//! - [`reply`]: the completion sink every accepted message carries, so that
//!   each one ends delivered or with an error, exactly once;
//! - [`budget`]: bounds in bytes and counts that a message holds until it
//!   is answered (`queue_bytes_max`, a caller's bytes and in-flight slots);
//! - [`callers`]: who calls (the auth layer's resolution) and whether a
//!   caller's message may go (lists, quota, in-flight and byte bounds,
//!   violation scores and bans);
//! - [`idempotency`]: the cache that answers a retried `idempotency_key`;
//! - [`dispatcher`]: the per-bot actor around `shardgate_sched::Scheduler`,
//!   and [`bot_handle`]: the envelope and the handle others use to reach it;
//! - [`migrations`]: groups that became supergroups, with impossible
//!   migrations refused;
//! - [`sent`]: which bot sent which message, so edits find their bot;
//! - [`routing`]: the table of bots a message may go to, and who drives each;
//! - [`peers`]: forwarding to the instance that owns a bot (cluster mode);
//! - [`gateway`]: [`Gateway`], which ties these together; `supervisor`: the
//!   tasks that follow the registry and re-route messages a bot gives back;
//! - [`broadcast`]: broadcast jobs, one runner task per live job feeding
//!   the send path above from the job store;
//! - [`service`] and [`server`]: the tonic service, health and reflection;
//! - [`local`]: one gateway in this process on a loopback port (demo, load tool).

pub mod bot_handle;
pub mod broadcast;
pub mod budget;
pub mod call;
pub mod callers;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod gateway;
pub mod idempotency;
mod listen;
pub mod local;
pub mod message;
pub mod migrations;
mod paid;
pub mod peers;
pub mod reply;
pub mod routing;
pub mod sent;
pub mod server;
pub mod service;
mod supervisor;
mod tls;

pub use broadcast::Broadcasts;
pub use config::GatewayConfig;
pub use error::SendError;
pub use gateway::{Delivered, Gateway};
pub use listen::{Conn, ConnInfo, ConnLimits, incoming};
pub use message::{Body, Message, Text};
pub use server::ServeOptions;
pub use tls::{Tls, TlsError, TlsFiles};
