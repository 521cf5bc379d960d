//! [`EtcdRegistry`]: the `Registry` of cluster mode. It owns three tasks
//! over one shared [`Inner`]:
//!
//! - the watch (`watch.rs`) keeps the mirror of the cluster's keys;
//! - the session (`session.rs`) keeps the lease and the member key alive;
//! - the ownership loop (`ownership.rs`) claims, hands off and releases bots.
//!
//! Every change is published as an `Arc<Fleet>` on a watch channel, built
//! under the ownership lock so that snapshots never go back in time.
//! Dropping the registry aborts the tasks without a word to etcd (like a
//! crash: the lease expires after its TTL); [`Registry::shutdown`] leaves
//! gracefully.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions};
use shardgate_registry::{
    Fleet, Health, PeerProbe, Registry, RegistryError, SessionStatus, StoreContact,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::AbortHandle;

use crate::access::EtcdAccess;
use crate::error::EtcdError;
use crate::extension::{self, ExtensionRules, PeerEvidence};
use crate::keys::{Keys, valid_instance_id};
use crate::mirror::Mirror;
use crate::ownership::{self, OwnState, OwnerClaim, OwnershipChange, OwnershipEvent};
use crate::session::{self, SessionInfo};
use crate::{view, watch as watcher};

/// Settings of the etcd registry. [`EtcdConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// etcd client URLs (`http://host:port` or `host:port`).
    pub endpoints: Vec<String>,
    /// The namespace: keys live under `/shardgate/<cluster>/`.
    pub cluster: String,
    /// This instance's id (member and owner name).
    pub instance_id: String,
    /// How peers reach this instance's gRPC port (`members/` value).
    pub advertise: String,
    /// The session lease's TTL (whole seconds, at least 2). Default 10 s.
    pub lease_ttl: Duration,
    /// Deadline of one keep-alive round trip (at most TTL/3 is used).
    /// Default 2 s.
    pub keepalive_timeout: Duration,
    /// Subtracted from the lease's expiry to get `valid_until`. Default 1 s.
    pub safety_margin: Duration,
    /// How long a bot being handed off waits for `release` before it is
    /// released anyway. Default 10 s.
    pub handoff_timeout: Duration,
    /// Deadline of every other etcd request. Default 3 s.
    pub op_timeout: Duration,
    /// How often the watch asks for a progress notification (a watch silent
    /// for longer than this + `op_timeout` is re-established). Default 3 s.
    pub progress_interval: Duration,
    /// How long `start` tries to reach etcd. Default 10 s.
    pub start_timeout: Duration,
    /// C: while etcd is unreachable, how long one round of "every other
    /// member cannot reach etcd either" keeps the bots past the lease's
    /// bound, counted from when the round was sent; also the bound on a
    /// round's answers. Default 1 s. See `extension.rs`.
    pub peer_confirmation_bound: Duration,
    /// P: how often the other members are asked while etcd is unreachable.
    /// Under C. Default 500 ms.
    pub peer_check_interval: Duration,
    /// G: how long etcd must have been reachable, without a break, before
    /// this instance starts driving a bot it claimed (at start too). Over
    /// C + P. Default 3 s.
    pub claim_grace: Duration,
    /// The longest the bots are kept past the lease's bound on the other
    /// members' word (zero: never; the lease's bound only). Default 5 min.
    pub max_extension: Duration,
    /// TLS and credentials towards etcd. Default: plain, no auth.
    pub access: EtcdAccess,
}

impl EtcdConfig {
    pub fn new<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        cluster: &str,
        instance_id: &str,
        advertise: &str,
    ) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            cluster: cluster.to_owned(),
            instance_id: instance_id.to_owned(),
            advertise: advertise.to_owned(),
            lease_ttl: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(2),
            safety_margin: Duration::from_secs(1),
            handoff_timeout: Duration::from_secs(10),
            op_timeout: Duration::from_secs(3),
            progress_interval: Duration::from_secs(3),
            start_timeout: Duration::from_secs(10),
            peer_confirmation_bound: Duration::from_secs(1),
            peer_check_interval: Duration::from_millis(500),
            claim_grace: Duration::from_secs(3),
            max_extension: Duration::from_secs(300),
            access: EtcdAccess::default(),
        }
    }

    /// The timings of the extension rule (see `extension.rs`).
    pub fn extension_rules(&self) -> ExtensionRules {
        ExtensionRules {
            confirmation_bound: self.peer_confirmation_bound,
            check_interval: self.peer_check_interval,
            claim_grace: self.claim_grace,
            max_extension: self.max_extension,
        }
    }

    /// The keep-alive round-trip deadline in force: `keepalive_timeout`,
    /// at most a third of the TTL (the keep-alive interval).
    pub fn keepalive_limit(&self) -> Duration {
        self.keepalive_timeout.min(self.lease_ttl / 3)
    }

    fn validate(&self) -> Result<(), EtcdError> {
        let bad = |m: String| Err(EtcdError::Config(m));
        if self.endpoints.is_empty() {
            return bad("no etcd endpoints".into());
        }
        if !valid_instance_id(&self.instance_id) {
            return bad(format!(
                "instance id {:?} must be 1-128 printable characters without spaces or '/'",
                self.instance_id
            ));
        }
        if self.advertise.is_empty() {
            return bad("empty advertise address".into());
        }
        let ttl = self.lease_ttl;
        if ttl < Duration::from_secs(2) || ttl.subsec_nanos() != 0 {
            return bad(format!(
                "lease TTL {ttl:?} must be whole seconds, at least 2 s"
            ));
        }
        if self.safety_margin * 2 >= ttl {
            return bad("safety margin must be under half the lease TTL".into());
        }
        if self.keepalive_timeout.is_zero()
            || self.op_timeout.is_zero()
            || self.progress_interval.is_zero()
            || self.peer_check_interval.is_zero()
        {
            return bad("timeouts must be positive".into());
        }
        if self.peer_check_interval >= self.peer_confirmation_bound {
            return bad(format!(
                "the peer check interval ({:?}) must be under the confirmation bound ({:?})",
                self.peer_check_interval, self.peer_confirmation_bound
            ));
        }
        if self.claim_grace <= self.peer_confirmation_bound + self.peer_check_interval {
            return bad(format!(
                "the claim grace ({:?}) must exceed the confirmation bound plus the check \
                 interval ({:?}): an instance that answered \"etcd unreachable\" must not claim \
                 a bot while a peer may still drive it on that answer",
                self.claim_grace,
                self.peer_confirmation_bound + self.peer_check_interval
            ));
        }
        Ok(())
    }
}

/// Connects an etcd client (lazily, unless `access` has a user: then the
/// connect authenticates).
pub async fn connect(
    endpoints: &[String],
    timeout: Duration,
    access: &EtcdAccess,
) -> Result<Client, EtcdError> {
    let options = access.apply(
        ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout)
            .with_keep_alive_while_idle(true),
    );
    crate::error::call(
        "connect",
        timeout,
        Client::connect(endpoints, Some(options)),
    )
    .await
}

/// State shared by the registry's tasks and its methods.
///
/// The fields are private: each task reaches the state through the few verbs
/// below that its job needs (the watch replaces the mirror, the session
/// updates the session and hears kicks, the ownership loop reads both and is
/// woken, the extension records the peers' answers), so who writes what can
/// be read off the method list.
pub(crate) struct Inner {
    cfg: EtcdConfig,
    keys: Keys,
    client: Client,
    /// The copy of the cluster's keys; written by the watch only.
    mirror_tx: watch::Sender<Arc<Mirror>>,
    /// The session (lease, validity, contact); written by the session task
    /// (and once by `start`).
    session_tx: watch::Sender<SessionInfo>,
    /// The published fleet; written by [`Inner::publish`] only.
    fleet_tx: watch::Sender<Arc<Fleet>>,
    own: Mutex<OwnState>,
    /// Wakes the ownership loop (after a release).
    wake: Notify,
    /// "etcd says lease X is gone", to the session task.
    lease_lost_tx: mpsc::UnboundedSender<i64>,
    /// The other members' answers while degraded, to the session task.
    evidence_tx: watch::Sender<PeerEvidence>,
    /// "A peer reaches etcd": the session task tries a keep-alive at once.
    kick: Notify,
}

/// Configuration and etcd access, for every task.
impl Inner {
    pub(crate) fn config(&self) -> &EtcdConfig {
        &self.cfg
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The client, for calls that take one whole (the full read).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Key-value requests (claims, releases, fenced health writes, the
    /// member key).
    pub(crate) fn kv(&self) -> etcd_client::KvClient {
        self.client.kv_client()
    }

    /// Lease requests (keep-alive, revoke).
    pub(crate) fn leases(&self) -> etcd_client::LeaseClient {
        self.client.lease_client()
    }

    /// Watch requests.
    pub(crate) fn watches(&self) -> etcd_client::WatchClient {
        self.client.watch_client()
    }
}

/// The mirror: replaced by the watch, read by everyone else.
impl Inner {
    pub(crate) fn mirror(&self) -> Arc<Mirror> {
        self.mirror_tx.borrow().clone()
    }

    pub(crate) fn subscribe_mirror(&self) -> watch::Receiver<Arc<Mirror>> {
        self.mirror_tx.subscribe()
    }

    pub(crate) fn set_mirror(&self, mirror: Mirror) {
        self.mirror_tx.send_replace(Arc::new(mirror));
    }
}

/// The session: updated by the session task, read by everyone else.
impl Inner {
    pub(crate) fn session(&self) -> SessionInfo {
        self.session_tx.borrow().clone()
    }

    /// The lease that backs ownership at `now`, if any.
    pub(crate) fn live_lease(&self, now: Instant) -> Option<i64> {
        self.session_tx.borrow().live_lease(now)
    }

    pub(crate) fn subscribe_session(&self) -> watch::Receiver<SessionInfo> {
        self.session_tx.subscribe()
    }

    /// Changes the session in place; `change` says whether it changed
    /// (subscribers are told only then).
    pub(crate) fn update_session(&self, change: impl FnOnce(&mut SessionInfo) -> bool) -> bool {
        self.session_tx.send_if_modified(change)
    }

    pub(crate) fn replace_session(&self, session: SessionInfo) {
        self.session_tx.send_replace(session);
    }

    /// Tells the session task that etcd answered that `lease` is gone.
    pub(crate) fn report_lease_lost(&self, lease: i64) {
        // The session task is gone only when the registry is shutting down.
        let _ = self.lease_lost_tx.send(lease);
    }

    /// Asks the session task to try a keep-alive at once.
    pub(crate) fn kick_session(&self) {
        self.kick.notify_one();
    }

    pub(crate) fn session_kicked(&self) -> tokio::sync::futures::Notified<'_> {
        self.kick.notified()
    }

    pub(crate) fn subscribe_evidence(&self) -> watch::Receiver<PeerEvidence> {
        self.evidence_tx.subscribe()
    }

    /// Records the other members' answers (the extension task).
    pub(crate) fn update_evidence(&self, change: impl FnOnce(&mut PeerEvidence)) {
        self.evidence_tx.send_modify(change);
    }
}

/// Ownership and the published fleet.
impl Inner {
    pub(crate) fn wake_ownership(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn ownership_woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    pub(crate) fn subscribe_fleet(&self) -> watch::Receiver<Arc<Fleet>> {
        self.fleet_tx.subscribe()
    }

    pub(crate) fn own(&self) -> MutexGuard<'_, OwnState> {
        self.own.lock()
    }

    /// Publishes the fleet as it is now (if it changed).
    pub(crate) fn publish(&self) {
        let own = self.own();
        let session = self.session_tx.borrow().clone();
        let live = session.live_lease(Instant::now());
        let owned = own
            .owned
            .iter()
            .filter(|(_, c)| Some(c.lease) == live)
            .map(|(bot, _)| bot.clone())
            .collect();
        let mirror = self.mirror_tx.borrow().clone();
        let fleet = view::build(&mirror, owned, session.status);
        self.fleet_tx.send_if_modified(|current| {
            if **current == fleet {
                false
            } else {
                *current = Arc::new(fleet);
                true
            }
        });
        drop(own);
    }

    /// Records the outcome of an exchange with etcd in the session's
    /// `contact` (what peers are told): a change of state restarts `since`.
    pub(crate) fn note_contact(&self, reachable: bool) {
        let now = Instant::now();
        let changed = self.session_tx.send_if_modified(|s| {
            if s.contact.reachable == reachable {
                return false;
            }
            s.contact = StoreContact {
                reachable,
                since: now,
            };
            true
        });
        if changed {
            if reachable {
                tracing::info!(
                    grace = ?self.cfg.claim_grace,
                    "etcd reachable again; new claims wait for the grace"
                );
            } else {
                tracing::warn!("etcd unreachable");
            }
        }
    }

    /// The session changed: drop what it no longer backs, publish at once
    /// (without waiting for the ownership loop, which may be mid-request).
    pub(crate) fn session_changed(&self) {
        let session = self.session_tx.borrow().clone();
        self.own()
            .drop_unbacked(&self.cfg.instance_id, &session, Instant::now());
        self.publish();
    }
}

/// The etcd-backed registry. See the crate documentation.
pub struct EtcdRegistry {
    inner: Arc<Inner>,
    session_task: AbortHandle,
    watch_task: AbortHandle,
    ownership_task: AbortHandle,
    peer_task: Option<AbortHandle>,
}

impl EtcdRegistry {
    /// Joins the cluster without asking peers anything: ownership never
    /// outlives the lease's bound. See [`start_with_probe`](Self::start_with_probe).
    pub async fn start(config: EtcdConfig) -> Result<EtcdRegistry, EtcdError> {
        Self::start_with_probe(config, None).await
    }

    /// Joins the cluster: grants the session lease, puts the member key,
    /// reads the cluster, then runs the watch, session and ownership tasks
    /// (and, with a `probe`, the task that asks the other members whether
    /// they reach etcd while this instance cannot: see `extension.rs`).
    /// Returns once the fleet snapshot is loaded (claims follow after the
    /// claim grace; see [`wait_settled`](Self::wait_settled)). Fails if
    /// etcd cannot be reached within `start_timeout`.
    pub async fn start_with_probe(
        config: EtcdConfig,
        probe: Option<Arc<dyn PeerProbe>>,
    ) -> Result<EtcdRegistry, EtcdError> {
        config.validate()?;
        let keys = Keys::new(&config.cluster)?;
        let client = connect(&config.endpoints, config.op_timeout, &config.access).await?;
        let (lease_lost_tx, lease_lost_rx) = mpsc::unbounded_channel();
        let start_fleet = Fleet {
            session: SessionStatus::Lost,
            ..Fleet::default()
        };
        let inner = Arc::new(Inner {
            keys,
            client,
            mirror_tx: watch::Sender::new(Arc::new(Mirror::default())),
            session_tx: watch::Sender::new(SessionInfo::lost(
                0,
                StoreContact::unreachable_since(Instant::now()),
            )),
            fleet_tx: watch::Sender::new(Arc::new(start_fleet)),
            own: Mutex::new(OwnState::default()),
            wake: Notify::new(),
            lease_lost_tx,
            evidence_tx: watch::Sender::new(PeerEvidence::default()),
            kick: Notify::new(),
            cfg: config,
        });
        let deadline = Instant::now() + inner.config().start_timeout;
        let unreachable = |e: EtcdError| EtcdError::Unreachable {
            endpoints: inner.config().endpoints.join(","),
            after: inner.config().start_timeout,
            last: e.to_string(),
        };

        // A clash on the member key may be this instance's previous run,
        // whose lease expires within its TTL: waited out that much longer.
        let clash_deadline = deadline + inner.config().lease_ttl;
        let mut clash_seen = false;
        let lease = loop {
            match session::establish(&inner).await {
                Ok(lease) => break lease,
                Err(e @ EtcdError::MemberClash { .. }) => {
                    if Instant::now() + Duration::from_millis(300) >= clash_deadline {
                        return Err(e);
                    }
                    if !clash_seen {
                        tracing::warn!("{e}; waiting for it to go");
                        clash_seen = true;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) if Instant::now() + Duration::from_millis(300) < deadline => {
                    tracing::debug!("etcd not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(unreachable(e)),
            }
        };
        inner.replace_session(SessionInfo {
            status: SessionStatus::Ok,
            lease: Some(lease.id),
            valid_until: Some(lease.valid_until),
            extended: false,
            generation: 1,
            contact: StoreContact::reachable_since(Instant::now()),
        });
        let mirror = loop {
            match watcher::full_read(inner.client(), inner.keys(), inner.config().op_timeout).await
            {
                Ok(mirror) => break mirror,
                Err(e) if Instant::now() + Duration::from_millis(300) < deadline => {
                    tracing::debug!("etcd read failed: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => {
                    session::revoke(&inner, lease.id).await;
                    return Err(unreachable(e));
                }
            }
        };
        inner.set_mirror(mirror);
        inner.publish();

        let session_task =
            tokio::spawn(session::run(inner.clone(), lease, lease_lost_rx)).abort_handle();
        let watch_task = tokio::spawn(watcher::run(inner.clone())).abort_handle();
        let ownership_task = tokio::spawn(ownership::run(inner.clone())).abort_handle();
        let peer_task =
            probe.map(|probe| tokio::spawn(extension::run(inner.clone(), probe)).abort_handle());
        Ok(EtcdRegistry {
            inner,
            session_task,
            watch_task,
            ownership_task,
            peer_task,
        })
    }

    pub fn config(&self) -> &EtcdConfig {
        self.inner.config()
    }

    /// The cluster's callers, followed through this registry's watch (makes
    /// the cluster key if no instance did yet).
    pub async fn callers(&self) -> Result<crate::EtcdCallers, EtcdError> {
        crate::callers::EtcdCallers::start(
            self.inner.client().clone(),
            self.inner.keys().clone(),
            self.inner.config().op_timeout,
            self.inner.subscribe_mirror(),
        )
        .await
    }

    /// The session (status, lease, `valid_until`), updated on every
    /// keep-alive.
    pub fn session(&self) -> watch::Receiver<SessionInfo> {
        self.inner.subscribe_session()
    }

    /// The bots held now with their claims (the fence revisions), whether
    /// or not the session still backs them.
    pub fn claims(&self) -> BTreeMap<String, OwnerClaim> {
        self.inner.own().owned.clone()
    }

    /// Every claim, release and drop of this instance, oldest first (the
    /// last 10 000).
    pub fn ownership_history(&self) -> Vec<OwnershipEvent> {
        self.inner.own().history.iter().cloned().collect()
    }

    /// Waits until ownership has settled: the session is ok, this instance
    /// is a member, every bot has an owner equal to its desired owner, and
    /// `owned` is exactly the bots desired here. False on timeout.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.subscribe_fleet();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if settled(&rx.borrow_and_update(), &self.inner.config().instance_id) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }
}

/// See [`EtcdRegistry::wait_settled`].
pub fn settled(fleet: &Fleet, me: &str) -> bool {
    fleet.session == SessionStatus::Ok
        && fleet.members.iter().any(|m| m.instance_id == me)
        && fleet.bots.iter().all(|(name, view)| {
            view.owner.is_some()
                && view.owner == view.desired_owner
                && (view.desired_owner.as_deref() == Some(me)) == fleet.owned.contains(name)
        })
}

impl Drop for EtcdRegistry {
    fn drop(&mut self) {
        self.session_task.abort();
        self.watch_task.abort();
        self.ownership_task.abort();
        if let Some(t) = &self.peer_task {
            t.abort();
        }
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    fn instance_id(&self) -> &str {
        &self.inner.config().instance_id
    }

    fn fleet(&self) -> watch::Receiver<Arc<Fleet>> {
        self.inner.subscribe_fleet()
    }

    /// Fenced by the claim: `NotOwner` unless this instance holds the bot
    /// under a live session and `owners/<bot>` is still its claim.
    async fn report_health(&self, bot: &str, health: Health) -> Result<(), RegistryError> {
        ownership::put_health_fenced(&self.inner, bot, health)
            .await
            .map(|_| ())
            .map_err(Into::into)
    }

    async fn release(&self, bot: &str) -> Result<(), RegistryError> {
        ownership::release(&self.inner, bot, OwnershipChange::Released)
            .await
            .map_err(Into::into)
    }

    /// Read from the session, the same value that gates new claims, so an
    /// answer "unreachable" always holds back this instance's claims for
    /// the grace.
    fn store_contact(&self) -> Option<StoreContact> {
        Some(self.inner.session().contact)
    }

    /// While the session's lease backs ownership at `now` (its
    /// `valid_until`: see `session.rs`).
    fn may_send(&self, now: Instant) -> bool {
        self.inner.live_lease(now).is_some()
    }

    /// Leaves gracefully: deletes the member key (so the others become the
    /// bots' desired owners), releases every bot (fenced deletes), then
    /// revokes the lease (which deletes anything left), so that the others
    /// take over at once. Bounded by a few `op_timeout`s if etcd is down.
    async fn shutdown(&self) {
        let inner = &self.inner;
        inner.own().shutting_down = true;
        self.session_task.abort();
        self.ownership_task.abort();
        if let Some(t) = &self.peer_task {
            t.abort();
        }
        // Out of the member list first: the others stop waiting for us and
        // claim each bot as soon as it is released.
        let member = inner.keys().member(&inner.config().instance_id);
        let gone = crate::error::call(
            "member delete",
            inner.config().op_timeout,
            inner.kv().delete(member, None),
        )
        .await;
        let bots: Vec<String> = inner.own().owned.keys().cloned().collect();
        for bot in bots {
            if gone.is_err() {
                break; // etcd unreachable: the revoke below is the last try
            }
            if let Err(e) = ownership::release(inner, &bot, OwnershipChange::Released).await {
                tracing::warn!(bot, "release at shutdown failed: {e}");
                if matches!(e, EtcdError::Timeout { .. }) {
                    break;
                }
            }
        }
        let info = inner.session();
        inner.replace_session(SessionInfo::lost(info.generation, info.contact));
        inner.session_changed();
        if let Some(lease) = info.lease {
            if session::revoke(inner, lease).await {
                tracing::info!(lease = format_args!("{lease:x}"), "left the cluster");
            } else {
                tracing::warn!("could not revoke the session lease; it expires by itself");
            }
        }
        self.watch_task.abort();
    }
}
