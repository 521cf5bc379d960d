//! Groups that became supergroups: old chat id to new, so that messages to
//! the old id go to the new one without a wasted request.
//!
//! Telegram's `migrate_to_chat_id` is data from the network: a hostile or
//! broken server can answer 0, the chat itself, or a chain that leads back
//! to where it started (A -> B -> A). Such an answer would send a message
//! round for ever, so [`Migrations::check`] refuses it before anything is
//! recorded. The map is a cache (forgetting an entry costs one request that
//! Telegram answers with the migration again), so it is bounded by age and
//! by count.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Longest chain of migrations followed (a real group migrates once).
const MAX_CHAIN: usize = 8;
/// How long a migration is remembered.
pub const MIGRATION_TTL: Duration = Duration::from_secs(24 * 3600);
/// At most this many migrations are remembered (oldest forgotten first).
pub const MIGRATIONS_MAX: usize = 65_536;

/// Why a `migrate_to_chat_id` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadMigration {
    /// `migrate_to_chat_id` 0 is no chat.
    #[error("migrate_to_chat_id is 0")]
    Zero,
    /// The chat "migrated" to itself.
    #[error("migrate_to_chat_id is the chat itself")]
    ToItself,
    /// Following the known migrations from the new id leads back to the
    /// chat (or goes on longer than any real chain).
    #[error("the migration forms a cycle")]
    Cycle,
}

#[derive(Default)]
struct Map {
    /// Old chat id to (new chat id, when it was recorded).
    to: HashMap<i64, (i64, Instant)>,
}

/// Migrations seen, shared by the dispatchers and the router.
#[derive(Clone, Default)]
pub struct Migrations(Arc<Mutex<Map>>);

impl Migrations {
    /// Whether `from -> to` may be followed: not 0, not to itself, and not
    /// back to `from` through migrations already known.
    pub fn check(&self, from: i64, to: i64) -> Result<(), BadMigration> {
        if to == 0 {
            return Err(BadMigration::Zero);
        }
        if to == from {
            return Err(BadMigration::ToItself);
        }
        let map = self.0.lock();
        let mut id = to;
        for _ in 0..MAX_CHAIN {
            match map.to.get(&id) {
                Some((next, _)) if *next == from => return Err(BadMigration::Cycle),
                Some((next, _)) => id = *next,
                None => return Ok(()),
            }
        }
        Err(BadMigration::Cycle)
    }

    /// Remembers `from -> to` (after [`Migrations::check`]); forgets
    /// entries past [`MIGRATION_TTL`], then the oldest past
    /// [`MIGRATIONS_MAX`].
    pub fn record(&self, from: i64, to: i64) {
        let now = Instant::now();
        let mut map = self.0.lock();
        map.to.insert(from, (to, now));
        if map.to.len() > MIGRATIONS_MAX {
            map.to
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < MIGRATION_TTL);
        }
        while map.to.len() > MIGRATIONS_MAX {
            let Some(oldest) = map
                .to
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
            else {
                break;
            };
            map.to.remove(&oldest);
        }
    }

    /// The chat to send to for `chat_id` (follows chains of migrations that
    /// are younger than [`MIGRATION_TTL`]).
    pub fn resolve(&self, chat_id: i64) -> i64 {
        let map = self.0.lock();
        if map.to.is_empty() {
            return chat_id;
        }
        let now = Instant::now();
        let mut id = chat_id;
        for _ in 0..MAX_CHAIN {
            match map.to.get(&id) {
                Some((next, at)) if now.saturating_duration_since(*at) < MIGRATION_TTL => {
                    id = *next
                }
                _ => break,
            }
        }
        id
    }

    /// Migrations remembered now.
    pub fn len(&self) -> usize {
        self.0.lock().to.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_itself_and_cycles_are_refused_and_a_real_migration_is_not() {
        let m = Migrations::default();
        assert_eq!(m.check(-5, 0), Err(BadMigration::Zero));
        assert_eq!(m.check(-5, -5), Err(BadMigration::ToItself));
        assert_eq!(m.check(-5, -1_000_000_000_005), Ok(()));
        m.record(-7, -8);
        assert_eq!(m.check(-8, -7), Err(BadMigration::Cycle), "A -> B -> A");
        m.record(-8, -9);
        assert_eq!(
            m.check(-9, -7),
            Err(BadMigration::Cycle),
            "A -> B -> C -> A"
        );
        assert_eq!(m.resolve(-7), -9);
        assert_eq!(m.check(-9, -10), Ok(()));
    }

    #[test]
    fn a_chain_longer_than_any_real_one_counts_as_a_cycle() {
        let m = Migrations::default();
        for i in 1..=20 {
            m.record(-i, -(i + 1));
        }
        assert_eq!(m.check(-100, -1), Err(BadMigration::Cycle));
        assert_eq!(m.resolve(-1), -(1 + MAX_CHAIN as i64));
    }

    #[tokio::test(start_paused = true)]
    async fn migrations_are_forgotten_after_their_ttl() {
        let m = Migrations::default();
        m.record(-1, -2);
        tokio::time::advance(MIGRATION_TTL - Duration::from_secs(1)).await;
        assert_eq!(m.resolve(-1), -2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(m.resolve(-1), -1, "expired: asked again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_never_holds_more_than_its_bound_and_drops_the_oldest() {
        let m = Migrations::default();
        for i in 0..(MIGRATIONS_MAX as i64 + 10) {
            // The first, then the bulk, then the last ten, each later.
            if i == 1 || i == MIGRATIONS_MAX as i64 {
                tokio::time::advance(Duration::from_millis(1)).await;
            }
            m.record(-(i + 1), -(i + 1) - 1_000_000_000_000);
        }
        assert_eq!(m.len(), MIGRATIONS_MAX);
        assert_eq!(m.resolve(-1), -1, "the oldest went first");
        let last = -(MIGRATIONS_MAX as i64 + 10);
        assert_eq!(m.resolve(last), last - 1_000_000_000_000);
    }
}
