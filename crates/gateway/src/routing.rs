//! The routing table: which bots a message may go to, in rendezvous order.
//!
//! Rebuilt by the supervisor whenever the fleet or the set of dispatchers
//! changes; read (one `Arc` clone under a read lock) for every message. Time-
//! dependent facts (a throttle that ends) are evaluated at routing time, so a
//! bot comes back without anyone rebuilding the table.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

use shardgate_registry::BotView;
use shardgate_router::{Node, ShardKey};

use crate::SendError;
use crate::dispatcher::BotHandle;
use crate::peers::PeerLink;

/// Who drives a bot, from this instance's point of view.
#[derive(Clone)]
pub enum Target {
    /// This instance: its dispatcher.
    Local(BotHandle),
    /// Another instance, reached by forwarding.
    Remote(PeerLink),
    /// Nobody right now (ownership moving, or the bot is out of rotation).
    Nobody,
}

/// One bot as the router sees it.
pub struct Route {
    pub node: Node,
    pub view: BotView,
    pub target: Target,
}

impl Route {
    fn routable(&self, now_unix: u64) -> bool {
        self.view.routable(now_unix)
            && match &self.target {
                Target::Local(h) => h.is_alive() && h.shared.accepting(now_unix),
                Target::Remote(link) => link.is_up(),
                Target::Nobody => false,
            }
    }

    pub fn local(&self) -> Option<&BotHandle> {
        match &self.target {
            Target::Local(h) => Some(h),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Table {
    pub routes: Vec<Route>,
    by_name: HashMap<String, usize>,
}

impl Table {
    /// Bots a message could be routed to now.
    pub fn routable_count(&self, now_unix: u64) -> usize {
        self.routes.iter().filter(|r| r.routable(now_unix)).count()
    }

    pub fn new(routes: Vec<Route>) -> Self {
        let by_name = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.node.name().to_owned(), i))
            .collect();
        Table { routes, by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name).map(|i| &self.routes[*i])
    }

    /// Picks the bot for a message: the pinned one if it may take it (or the
    /// caller allows failover), else the rendezvous winner among routable
    /// bots that are not in `avoid`.
    pub fn pick(
        &self,
        key: ShardKey,
        pin: Option<&str>,
        allow_failover: bool,
        avoid: &[Arc<str>],
        allowed: Option<&[String]>,
        now_unix: u64,
    ) -> Result<&Route, SendError> {
        let usable = |r: &Route| {
            r.routable(now_unix)
                && !avoid.iter().any(|a| **a == *r.node.name())
                && allowed.is_none_or(|list| list.iter().any(|b| b == r.node.name()))
        };
        if let Some(pin) = pin {
            let Some(route) = self.get(pin) else {
                return Err(SendError::Invalid(format!(
                    "unknown bot {pin:?} in the `bot` field"
                )));
            };
            if usable(route) {
                return Ok(route);
            }
            if !allow_failover {
                return Err(SendError::Unavailable(format!(
                    "pinned bot {pin} is {} and the request does not allow failover",
                    route.view.state(now_unix).as_str()
                )));
            }
        }
        let hash = key.hash();
        let mut best: Option<(&Route, u64)> = None;
        for r in self.routes.iter().filter(|r| usable(r)) {
            let score = r.node.score(hash);
            let better = match best {
                None => true,
                Some((b, s)) => score > s || (score == s && r.node.name() < b.node.name()),
            };
            if better {
                best = Some((r, score));
            }
        }
        best.map(|(r, _)| r).ok_or_else(|| {
            SendError::Unavailable(format!(
                "no healthy bot can take chat {} ({} bots configured)",
                key.chat_id,
                self.routes.len()
            ))
        })
    }
}

/// The table as currently published.
#[derive(Clone, Default)]
pub struct SharedTable(Arc<RwLock<Arc<Table>>>);

impl SharedTable {
    pub fn load(&self) -> Arc<Table> {
        self.0.read().clone()
    }

    pub fn store(&self, table: Table) {
        *self.0.write() = Arc::new(table);
    }
}
