//! The gateway's background work: the *supervisor* follows the registry's
//! fleet (starting, rotating, handing over and retiring dispatchers, keeping
//! peer links, rebuilding the routing table), and the *re-router* gives
//! messages that a bot handed back to the next bot in rendezvous order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shardgate_registry::{BotState, Fleet, SessionStatus, unix_now};
use shardgate_router::Node;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::SendError;
use crate::dispatcher::{BotHandle, Dispatcher, Envelope, LocalState};
use crate::gateway::Inner;
use crate::routing::{Route, Table, Target};

impl Inner {
    /// Brings dispatchers, peer links and the routing table in line with the
    /// fleet.
    pub(crate) fn reconcile(&self, fleet: &Fleet) {
        let now = unix_now();
        let me = self.registry.instance_id().to_owned();
        let mut dispatchers = self.lock_dispatchers();
        for (name, view) in &fleet.bots {
            let state = view.state(now);
            let wanted =
                fleet.may_drive(name) && matches!(state, BotState::Healthy | BotState::Throttled);
            let existing = dispatchers
                .get(name)
                .filter(|h| h.is_alive() && h.shared.state() != LocalState::Gone);
            match (existing, wanted) {
                (Some(h), true) => {
                    // The dispatcher ignores a token equal to the one it has.
                    h.set_token(view.spec.token.clone());
                    if h.handing_over.load(Ordering::Relaxed)
                        && !fleet.handing_off().any(|b| b == name)
                    {
                        h.resume();
                    }
                }
                (Some(h), false) => {
                    let why = if fleet.may_drive(name) {
                        state.as_str()
                    } else {
                        "driven by another instance now"
                    };
                    info!(bot = %name, reason = why, "dispatcher leaving");
                    h.leave(why);
                    dispatchers.remove(name);
                }
                (None, true) => {
                    info!(bot = %name, token = %view.spec.token.redacted(), "starting dispatcher");
                    let h = Dispatcher::spawn(name, view.spec.token.clone(), self.ctx.clone());
                    dispatchers.insert(name.clone(), h);
                }
                (None, false) => {
                    dispatchers.remove(name);
                }
            }
        }
        let gone: Vec<String> = dispatchers
            .keys()
            .filter(|n| !fleet.bots.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.ctx.metrics.remove_bot(&name);
            if let Some(h) = dispatchers.remove(&name) {
                info!(bot = %name, "bot removed from the fleet");
                h.leave("removed");
            }
        }
        let addr_of = |instance: &str| {
            fleet
                .members
                .iter()
                .find(|m| m.instance_id == instance)
                .map(|m| m.grpc.clone())
        };
        self.peers
            .retain(|i| fleet.members.iter().any(|m| m.instance_id == i));
        let routes = fleet
            .bots
            .iter()
            .map(|(name, view)| {
                let target = match dispatchers.get(name) {
                    Some(h) => Target::Local(h.clone()),
                    None => match view.owner.as_deref() {
                        Some(owner) if owner != me => match addr_of(owner) {
                            Some(addr) => Target::Remote(self.peers.link(owner, &addr)),
                            None => Target::Nobody,
                        },
                        _ => Target::Nobody,
                    },
                };
                Route {
                    node: Node::new(name.clone()),
                    view: view.clone(),
                    target,
                }
            })
            .collect();
        for bot in fleet.handing_off() {
            if let Some(h) = dispatchers.get(bot) {
                self.hand_over(h.clone());
            }
        }
        drop(dispatchers);
        let table = Table::new(routes);
        let any = table
            .routes
            .iter()
            .any(|r| r.view.routable(now) && !matches!(r.target, Target::Nobody));
        self.table.store(table);
        self.ctx
            .metrics
            .set_etcd_session(fleet.session == SessionStatus::Ok);
        self.ready
            .send_if_modified(|r| std::mem::replace(r, any) != any);
    }
}

impl Inner {
    /// Graceful handoff of a bot whose desired owner is another instance:
    /// stop sending, wait for in-flight requests, release ownership. The
    /// queue stays until the fleet shows the bot gone from `owned`; then the
    /// dispatcher leaves and its queue is routed (forwarded to the new owner
    /// once it has claimed the bot).
    fn hand_over(&self, h: BotHandle) {
        if h.handing_over.swap(true, Ordering::Relaxed) {
            return;
        }
        h.pause();
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + HANDOFF_IN_FLIGHT_WAIT;
            while h.shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            info!(bot = %h.name, "releasing the bot to its new owner");
            if let Err(e) = registry.release(&h.name).await {
                warn!(bot = %h.name, error = %e, "release failed; the registry releases it after its handoff timeout");
            }
        });
    }
}

/// How long a handoff waits for in-flight requests before releasing anyway.
const HANDOFF_IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn supervise(
    inner: std::sync::Weak<Inner>,
    mut fleet: watch::Receiver<Arc<Fleet>>,
) {
    loop {
        if fleet.changed().await.is_err() {
            debug!("registry closed; supervisor stops");
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let snapshot = fleet.borrow_and_update().clone();
        inner.reconcile(&snapshot);
    }
}

pub(crate) async fn reroute(
    inner: std::sync::Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<Box<Envelope>>,
) {
    while let Some(env) = rx.recv().await {
        let Some(inner) = inner.upgrade() else {
            env.reply
                .finish(Err(SendError::Unavailable("the gateway stopped".into())));
            continue;
        };
        let span = env.span.clone();
        let _e = span.enter();
        debug!(avoid = ?env.avoid, "re-routing a message");
        if let Err((env, err)) = inner.route(env) {
            warn!(error = %err, "could not re-route a message");
            env.reply.finish(Err(err));
        }
    }
}
