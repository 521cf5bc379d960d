//! The registry without etcd: bots from a file, health in memory, one
//! instance that owns every bot (owner = desired owner = itself, `owned` =
//! every bot, session always ok; `release` and `shutdown` do nothing).
//!
//! `reload` re-reads the file (the daemon calls it on SIGHUP): a changed token
//! rotates the bot and resets its health, a re-enabled bot starts healthy,
//! removed bots leave. A file that fails to parse changes nothing.

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{BotView, BotsFile, Fleet, Health, Member, Registry, RegistryError};

pub struct EmbeddedRegistry {
    instance_id: String,
    path: Option<PathBuf>,
    /// Serialises reloads and health reports (both read-modify-write).
    write: Mutex<()>,
    tx: watch::Sender<Arc<Fleet>>,
}

impl EmbeddedRegistry {
    /// A registry over an already parsed bots file; `path` (if any) is
    /// re-read by [`reload`](Self::reload).
    pub fn new(instance_id: &str, bots: BotsFile, path: Option<PathBuf>, grpc: &str) -> Self {
        let mut fleet = Fleet {
            members: vec![Member {
                instance_id: instance_id.to_owned(),
                grpc: grpc.to_owned(),
            }],
            ..Fleet::default()
        };
        apply(&mut fleet, bots, instance_id);
        EmbeddedRegistry {
            instance_id: instance_id.to_owned(),
            path,
            write: Mutex::new(()),
            tx: watch::Sender::new(Arc::new(fleet)),
        }
    }

    /// Reads the bots file and builds the registry (blocking read).
    pub fn from_file(instance_id: &str, path: PathBuf, grpc: &str) -> Result<Self, RegistryError> {
        let bots = BotsFile::load(&path)?;
        Ok(Self::new(instance_id, bots, Some(path), grpc))
    }

    /// Re-reads the bots file; returns how many bots it now has. Blocking
    /// file read: call it from `spawn_blocking`.
    pub fn reload(&self) -> Result<usize, RegistryError> {
        let Some(path) = &self.path else {
            return Ok(self.tx.borrow().bots.len());
        };
        let bots = BotsFile::load(path)?;
        let _guard = self.write.lock();
        let mut fleet = (**self.tx.borrow()).clone();
        apply(&mut fleet, bots, &self.instance_id);
        let n = fleet.bots.len();
        self.tx.send_replace(Arc::new(fleet));
        Ok(n)
    }
}

/// Brings `fleet` in line with `bots`, keeping the health of unchanged bots.
fn apply(fleet: &mut Fleet, bots: BotsFile, instance_id: &str) {
    let mut next = std::collections::BTreeMap::new();
    for spec in bots.bots {
        let health = match fleet.bots.remove(&spec.name) {
            // Same token and still enabled (or still disabled): keep what we know.
            Some(old) if old.spec.token == spec.token && (old.spec.enabled || !spec.enabled) => {
                old.health
            }
            // New bot, rotated token or re-enabled: start healthy.
            _ => Health::healthy(),
        };
        next.insert(
            spec.name.clone(),
            BotView {
                spec,
                health,
                owner: Some(instance_id.to_owned()),
                desired_owner: Some(instance_id.to_owned()),
            },
        );
    }
    fleet.owned = next.keys().cloned().collect();
    fleet.bots = next;
}

#[async_trait]
impl Registry for EmbeddedRegistry {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }

    fn fleet(&self) -> watch::Receiver<Arc<Fleet>> {
        self.tx.subscribe()
    }

    async fn report_health(&self, bot: &str, health: Health) -> Result<(), RegistryError> {
        let _guard = self.write.lock();
        let mut fleet = (**self.tx.borrow()).clone();
        let view = fleet
            .bots
            .get_mut(bot)
            .ok_or_else(|| RegistryError::UnknownBot(bot.to_owned()))?;
        view.health = health;
        self.tx.send_replace(Arc::new(fleet));
        Ok(())
    }

    /// Nothing to hand over: this instance owns every bot.
    async fn release(&self, _bot: &str) -> Result<(), RegistryError> {
        Ok(())
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BotState, HealthState};
    use std::io::Write;

    const T1: &str = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const T1B: &str = "123456:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    const T2: &str = "654321:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn write(file: &mut tempfile::NamedTempFile, text: &str) {
        let f = file.as_file_mut();
        f.set_len(0).expect("truncate");
        use std::io::Seek;
        f.rewind().expect("rewind");
        f.write_all(text.as_bytes()).expect("write");
    }

    fn revoked() -> Health {
        Health {
            state: HealthState::Revoked,
            reason: "Unauthorized".into(),
            ..Health::healthy()
        }
    }

    #[tokio::test]
    async fn reload_rotates_and_keeps_unchanged_health() {
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        write(
            &mut file,
            &format!("[[bot]]\nname=\"a\"\ntoken=\"{T1}\"\n[[bot]]\nname=\"b\"\ntoken=\"{T2}\"\n"),
        );
        let reg =
            EmbeddedRegistry::from_file("i1", file.path().to_owned(), "127.0.0.1:1").expect("load");
        let mut rx = reg.fleet();
        reg.report_health("a", revoked()).await.expect("known");
        reg.report_health("b", revoked()).await.expect("known");
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().bots["a"].state(0), BotState::Revoked);

        // Rotate a's token; b unchanged stays revoked.
        write(
            &mut file,
            &format!("[[bot]]\nname=\"a\"\ntoken=\"{T1B}\"\n[[bot]]\nname=\"b\"\ntoken=\"{T2}\"\n"),
        );
        assert_eq!(reg.reload().expect("reload"), 2);
        let fleet = rx.borrow_and_update().clone();
        assert_eq!(fleet.bots["a"].state(0), BotState::Healthy);
        assert_eq!(fleet.bots["a"].spec.token.expose(), T1B);
        assert_eq!(fleet.bots["b"].state(0), BotState::Revoked);
        assert_eq!(fleet.owned.len(), 2);
        assert_eq!(fleet.bots["a"].desired_owner.as_deref(), Some("i1"));
        assert_eq!(fleet.session, crate::SessionStatus::Ok);

        // A broken file changes nothing.
        write(&mut file, "[[bot]]\nname=");
        assert!(reg.reload().is_err());
        assert_eq!(*rx.borrow(), fleet);
    }

    #[tokio::test]
    async fn unknown_bot_is_an_error() {
        let reg = EmbeddedRegistry::new(
            "i1",
            BotsFile::parse(
                std::path::Path::new("x"),
                &format!("[[bot]]\nname=\"a\"\ntoken=\"{T1}\"\n"),
            )
            .expect("valid"),
            None,
            "127.0.0.1:1",
        );
        assert!(matches!(
            reg.report_health("zz", revoked()).await,
            Err(RegistryError::UnknownBot(_))
        ));
    }
}
