//! Where the fleet lives: the bots, their tokens and health, and (in cluster
//! mode) members and owners.
//!
//! The gateway only sees the [`Registry`] trait: a watched [`Fleet`]
//! snapshot plus a way to report a bot's health. [`EmbeddedRegistry`] keeps
//! everything in memory, seeded from a bots file and re-read on SIGHUP; the
//! etcd registry implements the same trait for clusters.

mod bots_file;
mod embedded;
mod fleet;

pub use bots_file::{BotsFile, BotsFileError};
pub use embedded::EmbeddedRegistry;
pub use fleet::{BotSpec, BotState, BotView, Fleet, Health, HealthState, Member, unix_now};

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
    /// that every instance stops routing to it.
    async fn report_health(&self, bot: &str, health: Health) -> Result<(), RegistryError>;
}
