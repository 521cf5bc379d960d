//! Where the fleet lives: the bots, their tokens and health, and (in cluster
//! mode) members and owners.
//!
//! The gateway only sees the [`Registry`] trait: a watched [`Fleet`]
//! snapshot plus a way to report a bot's health. [`EmbeddedRegistry`] keeps
//! everything in memory, seeded from a bots file and re-read on SIGHUP; the
//! etcd registry implements the same trait for clusters.

mod bots_file;
mod callers;
mod contact;
mod embedded;
mod fleet;

pub use bots_file::{BotsFile, BotsFileError, valid_bot_name};
pub use callers::{CallerStore, CallersLoadError, EmbeddedCallers};
pub use contact::{PeerAnswer, PeerProbe, ProbeFuture, StoreContact};
pub use embedded::EmbeddedRegistry;
pub use fleet::{
    BotSpec, BotState, BotView, Fleet, Health, HealthState, Member, SessionStatus, unix_now,
};

use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::watch;

/// Failures of a registry operation. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown bot {0:?}")]
    UnknownBot(String),
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The write was fenced off: this instance does not (or no longer) own
    /// the bot.
    #[error("this instance does not own bot {0:?}")]
    NotOwner(String),
    #[error(transparent)]
    BotsFile(#[from] BotsFileError),
}

/// The fleet as this instance sees it, and how it reports what it learns.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// This instance's id (owner and member name).
    fn instance_id(&self) -> &str;

    /// The current fleet; changes are published on the channel.
    fn fleet(&self) -> watch::Receiver<Arc<Fleet>>;

    /// Records what this instance saw of a bot (a 401, a long 429, ...), so
    /// that every instance stops routing to it. In cluster mode only the
    /// bot's owner may write it (`NotOwner` otherwise).
    async fn report_health(&self, bot: &str, health: Health) -> Result<(), RegistryError>;

    /// Hands a bot over: the gateway has drained it (see
    /// [`Fleet::handing_off`]) and will not send for it again. The bot
    /// leaves `Fleet::owned` at once. Embedded: no-op.
    async fn release(&self, bot: &str) -> Result<(), RegistryError>;

    /// Leaves the cluster gracefully: releases every owned bot and ends the
    /// session so that other instances take over at once. Embedded: no-op.
    async fn shutdown(&self);

    /// Whether this instance may send Bot API requests for the bots it
    /// owns at `now` (tokio's monotonic clock). Cluster mode: while its
    /// lease is valid locally, that is before the last successful
    /// keep-alive's send time + the TTL − the safety margin (or the
    /// extension the other members grant while none reaches the store).
    /// Checked before every request, so that a process paused past its
    /// lease (SIGSTOP, a VM pause) sends nothing for a bot that another
    /// instance may drive by then; the lease-loss path then hands its bots
    /// on. Embedded: always.
    fn may_send(&self, now: tokio::time::Instant) -> bool {
        let _ = now;
        true
    }

    /// Cluster mode: whether this instance can reach the store now, as it
    /// answers peers that ask (see [`StoreContact`]). `None` when there is
    /// no store to reach (embedded).
    fn store_contact(&self) -> Option<StoreContact> {
        None
    }
}
