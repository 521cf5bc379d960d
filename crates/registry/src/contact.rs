//! Whether an instance can reach its coordination store (etcd), and how
//! instances ask each other about it.
//!
//! In cluster mode an instance that cannot reach etcd may keep driving its
//! bots past the end of its lease only while every other member it knows
//! says that it cannot reach etcd either (see `shardgate-etcd`'s session
//! docs for the rule and its safety argument). Each instance therefore
//! answers peers with its [`StoreContact`], and the etcd registry asks peers
//! through a [`PeerProbe`] that the daemon provides (over gRPC `Status`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// This instance's contact with the store, as it answers peers.
///
/// `reachable == false` is a promise as much as a report: an instance that
/// answered "unreachable" at some moment starts driving no new bot until it
/// has been reachable again, without a break, for a claim grace longer than
/// any peer keeps its bots on such an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreContact {
    /// The last exchange with the store succeeded.
    pub reachable: bool,
    /// Since when it has been so, without a break.
    pub since: Instant,
}

impl StoreContact {
    pub fn reachable_since(since: Instant) -> Self {
        StoreContact {
            reachable: true,
            since,
        }
    }

    pub fn unreachable_since(since: Instant) -> Self {
        StoreContact {
            reachable: false,
            since,
        }
    }

    /// Has the store been reachable, without a break, for at least `span`
    /// at `now`?
    pub fn reachable_for(&self, span: Duration, now: Instant) -> bool {
        self.reachable && now.saturating_duration_since(self.since) >= span
    }
}

/// What a peer said when asked whether it can reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAnswer {
    /// It can reach the store: it may claim bots once its grace has passed.
    Reachable,
    /// It cannot reach the store.
    Unreachable,
    /// No usable answer in time (down, partitioned from us, another process
    /// at that address, an embedded registry). Never taken as
    /// "unreachable": a peer we cannot hear may well reach the store.
    NoAnswer,
}

/// A boxed future, so that the trait stays object safe without a macro.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = PeerAnswer> + Send + 'a>>;

/// Asks another instance whether it can reach the store.
pub trait PeerProbe: Send + Sync + 'static {
    /// Asks `instance`, reachable at `addr` (its advertised gRPC address),
    /// and gives up after `timeout`. An answer from another instance than
    /// `instance` is [`PeerAnswer::NoAnswer`].
    fn ask<'a>(&'a self, instance: &'a str, addr: &'a str, timeout: Duration) -> ProbeFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_for_needs_an_unbroken_span() {
        let t = Instant::now();
        let c = StoreContact::reachable_since(t);
        assert!(!c.reachable_for(Duration::from_secs(3), t + Duration::from_millis(2_999)));
        assert!(c.reachable_for(Duration::from_secs(3), t + Duration::from_secs(3)));
        let u = StoreContact::unreachable_since(t);
        assert!(!u.reachable_for(Duration::ZERO, t + Duration::from_secs(60)));
    }
}
