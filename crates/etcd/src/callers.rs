//! [`EtcdCallers`]: the callers of a cluster, from etcd. The gateway
//! enforces from it exactly as from the callers file
//! (`shardgate_registry::CallerStore`).
//!
//! - `callers/<name>`, `bans/<caller>` and `settings/violations` come from
//!   the registry's one prefix watch (the mirror), turned into a
//!   `Snapshot` whenever one of them changes; a malformed value is logged
//!   and skipped there.
//! - A ban is written under its own lease whose TTL is the ban's remaining
//!   time: etcd deletes the key when the ban ends, and every instance sees
//!   the put through its watch (well within 2 s: a watch event is
//!   milliseconds).
//! - `quota/<caller>` is one counter per caller, moved only by
//!   compare-and-set transactions ([`grant`]); it is outside the mirror, so
//!   its writes publish nothing. See `shardgate_callers::quota` for why the
//!   quota then holds cluster-wide.
//! - `settings/cluster_key` is made by the first instance (create if
//!   absent) and presented by every instance to its peers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use etcd_client::{DeleteOptions, GetOptions};
use shardgate_callers::{
    ApiKey, Ban, CallerJson, CallerSpec, QuotaCount, Snapshot, chunk_size, grant, valid_caller_name,
};
use shardgate_registry::{CallerStore, RegistryError};
use tokio::sync::watch;

use crate::Admin;
use crate::error::{EtcdError, call};
use crate::keys::Keys;
use crate::mirror::Mirror;

/// How many times a compare-and-set on a quota counter is retried before
/// the grant fails (the gateway then falls back to its local share).
const CAS_TRIES: usize = 16;

/// The callers of one cluster, as the gateway needs them.
pub struct EtcdCallers {
    client: etcd_client::Client,
    keys: Keys,
    timeout: Duration,
    cluster_key: String,
    mirror: watch::Receiver<Arc<Mirror>>,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

/// The callers part of the mirror.
fn snapshot_of(mirror: &Mirror) -> Snapshot {
    Snapshot {
        settings: mirror.violations.unwrap_or_default(),
        callers: mirror.callers.clone(),
        bans: mirror.bans.clone(),
    }
}

impl EtcdCallers {
    /// Follows the callers of the mirror `mirror`; makes the cluster key if
    /// no instance did yet.
    pub(crate) async fn start(
        client: etcd_client::Client,
        keys: Keys,
        timeout: Duration,
        mirror: watch::Receiver<Arc<Mirror>>,
    ) -> Result<EtcdCallers, EtcdError> {
        let cluster_key = ensure_cluster_key(&client, &keys, timeout).await?;
        let first = snapshot_of(&mirror.borrow());
        let snapshot = watch::Sender::new(Arc::new(first));
        let mut rx = mirror.clone();
        let tx = snapshot.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let next = snapshot_of(&rx.borrow_and_update());
                tx.send_if_modified(|current| {
                    if **current == next {
                        false
                    } else {
                        *current = Arc::new(next);
                        true
                    }
                });
            }
        });
        Ok(EtcdCallers {
            client,
            keys,
            timeout,
            cluster_key,
            mirror,
            snapshot,
        })
    }
}

/// Reads `settings/cluster_key`, creating it (a fresh random key) if absent.
async fn ensure_cluster_key(
    client: &etcd_client::Client,
    keys: &Keys,
    timeout: Duration,
) -> Result<String, EtcdError> {
    let key = keys.cluster_key();
    let fresh = ApiKey::from_random(rand::random());
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), fresh.expose(), None)]);
    call(
        "create the cluster key",
        timeout,
        client.kv_client().txn(txn),
    )
    .await?;
    let resp = call(
        "read the cluster key",
        timeout,
        client.kv_client().get(key, None),
    )
    .await?;
    let value = resp
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .filter(|k| k.len() >= 32 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| EtcdError::Request {
            what: "read the cluster key",
            message: "settings/cluster_key is missing or malformed (delete it and restart an \
                      instance to make a new one)"
                .into(),
        })?;
    Ok(value)
}

/// Puts `bans/<caller>` under a lease that ends with the ban.
pub(crate) async fn put_ban(
    client: &etcd_client::Client,
    keys: &Keys,
    timeout: Duration,
    caller: &str,
    ban: &Ban,
    now_s: u64,
) -> Result<(), EtcdError> {
    let ttl = i64::try_from(ban.until.saturating_sub(now_s).max(1)).unwrap_or(i64::MAX);
    let lease = call(
        "grant the ban's lease",
        timeout,
        client.lease_client().grant(ttl, None),
    )
    .await?;
    let value = serde_json::to_string(ban).map_err(|e| EtcdError::Request {
        what: "encode the ban",
        message: e.to_string(),
    })?;
    call(
        "write the ban",
        timeout,
        client.kv_client().put(
            keys.ban(caller),
            value,
            Some(PutOptions::new().with_lease(lease.id())),
        ),
    )
    .await?;
    Ok(())
}

impl EtcdCallers {
    /// Grants up to `want` tokens of `caller`'s window with compare-and-set on
    /// `quota/<caller>`.
    async fn cas_grant(
        &self,
        caller: &str,
        now_ms: u64,
        window_secs: u64,
        limit: u64,
        want: u64,
    ) -> Result<u64, EtcdError> {
        let (client, timeout) = (&self.client, self.timeout);
        let key = self.keys.quota(caller);
        for _ in 0..CAS_TRIES {
            let resp = call(
                "read a quota",
                timeout,
                client.kv_client().get(key.clone(), None),
            )
            .await?;
            let (current, compare) = match resp.kvs().first() {
                Some(kv) => (
                    // A malformed counter is overwritten from 0.
                    serde_json::from_slice::<QuotaCount>(kv.value()).ok(),
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()),
                ),
                None => (
                    None,
                    Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                ),
            };
            let g = grant(current.as_ref(), now_ms, window_secs, limit, want);
            if g.granted == 0 {
                return Ok(0);
            }
            let value = serde_json::to_string(&g.count).map_err(|e| EtcdError::Request {
                what: "encode a quota",
                message: e.to_string(),
            })?;
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key.clone(), value, None)]);
            let done = call("grant quota", timeout, client.kv_client().txn(txn)).await?;
            if done.succeeded() {
                return Ok(g.granted);
            }
        }
        Err(EtcdError::Request {
            what: "grant quota",
            message: format!("the counter kept changing ({CAS_TRIES} tries)"),
        })
    }
}

#[async_trait]
impl CallerStore for EtcdCallers {
    fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    fn cluster_key(&self) -> Option<String> {
        Some(self.cluster_key.clone())
    }

    async fn ban(&self, caller: &str, ban: Ban) -> Result<(), RegistryError> {
        let now_s = shardgate_registry::unix_now();
        put_ban(&self.client, &self.keys, self.timeout, caller, &ban, now_s).await?;
        Ok(())
    }

    async fn grant(
        &self,
        caller: &str,
        now_ms: u64,
        window_secs: u64,
        limit: u64,
        want: u64,
    ) -> Result<u64, RegistryError> {
        let granted = self
            .cas_grant(caller, now_ms, window_secs, limit, want)
            .await?;
        Ok(granted)
    }

    fn chunk(&self, limit: u64) -> u64 {
        chunk_size(limit, self.members())
    }

    fn members(&self) -> usize {
        self.mirror.borrow().members.len().max(1)
    }
}

/// The operators' commands on the callers of a cluster (`shardgate caller
/// --etcd ...`). The running instances apply every change through their
/// watch.
impl Admin {
    fn check_caller(name: &str) -> Result<(), EtcdError> {
        if valid_caller_name(name) {
            Ok(())
        } else {
            Err(EtcdError::InvalidCaller(format!(
                "name {name:?}: use 1-64 characters of letters, digits, '-', '_' or '.'"
            )))
        }
    }

    /// Adds a caller; fails if it exists.
    pub async fn caller_add(&self, spec: &CallerSpec) -> Result<(), EtcdError> {
        Self::check_caller(&spec.name)?;
        spec.validate().map_err(EtcdError::InvalidCaller)?;
        let key = self.keys().caller(&spec.name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, CallerJson::encode(spec), None)]);
        let resp = call(
            "add a caller",
            self.timeout(),
            self.client().kv_client().txn(txn),
        )
        .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(EtcdError::CallerExists(spec.name.clone()))
        }
    }

    /// Every caller (malformed values are reported on stderr by the caller
    /// of this: here they are skipped with a log line), with the bans in
    /// force.
    pub async fn caller_list(&self) -> Result<Snapshot, EtcdError> {
        let mut snapshot = Snapshot::default();
        let resp = call(
            "list callers",
            self.timeout(),
            self.client().kv_client().get(
                self.keys().callers_prefix(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some(name) = key.strip_prefix(&self.keys().callers_prefix()) else {
                continue;
            };
            match CallerJson::decode(name, kv.value()) {
                Ok(spec) => {
                    snapshot.callers.insert(name.to_owned(), spec);
                }
                Err(p) => tracing::warn!(key = %key, "skipping malformed caller: {p}"),
            }
        }
        let bans = format!("{}bans/", self.keys().prefix());
        let resp = call(
            "list bans",
            self.timeout(),
            self.client()
                .kv_client()
                .get(bans.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if let (Some(name), Ok(ban)) = (
                key.strip_prefix(bans.as_str()),
                serde_json::from_slice::<Ban>(kv.value()),
            ) {
                snapshot.bans.insert(name.to_owned(), ban);
            }
        }
        Ok(snapshot)
    }

    /// Changes a caller with compare-and-set (`change` may refuse).
    pub async fn caller_update(
        &self,
        name: &str,
        mut change: impl FnMut(&mut CallerSpec) -> Result<(), String>,
    ) -> Result<CallerSpec, EtcdError> {
        Self::check_caller(name)?;
        let key = self.keys().caller(name);
        for _ in 0..CAS_TRIES {
            let resp = call(
                "read a caller",
                self.timeout(),
                self.client().kv_client().get(key.clone(), None),
            )
            .await?;
            let kv = resp
                .kvs()
                .first()
                .ok_or_else(|| EtcdError::UnknownCaller(name.to_owned()))?;
            let mut spec =
                CallerJson::decode(name, kv.value()).map_err(EtcdError::InvalidCaller)?;
            change(&mut spec).map_err(EtcdError::InvalidCaller)?;
            spec.validate().map_err(EtcdError::InvalidCaller)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), CallerJson::encode(&spec), None)]);
            let done = call(
                "write a caller",
                self.timeout(),
                self.client().kv_client().txn(txn),
            )
            .await?;
            if done.succeeded() {
                return Ok(spec);
            }
        }
        Err(EtcdError::Request {
            what: "write a caller",
            message: format!("it kept changing ({CAS_TRIES} tries)"),
        })
    }

    /// Removes a caller, its ban and its quota counter.
    pub async fn caller_remove(&self, name: &str) -> Result<(), EtcdError> {
        Self::check_caller(name)?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys().caller(name),
                CompareOp::Greater,
                0,
            )])
            .and_then([
                TxnOp::delete(self.keys().caller(name), None::<DeleteOptions>),
                TxnOp::delete(self.keys().ban(name), None::<DeleteOptions>),
                TxnOp::delete(self.keys().quota(name), None::<DeleteOptions>),
            ]);
        let resp = call(
            "remove a caller",
            self.timeout(),
            self.client().kv_client().txn(txn),
        )
        .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(EtcdError::UnknownCaller(name.to_owned()))
        }
    }

    /// Bans a caller until `ban.until` (the key ends with its lease).
    pub async fn caller_ban(&self, name: &str, ban: &Ban) -> Result<(), EtcdError> {
        Self::check_caller(name)?;
        let exists = call(
            "read a caller",
            self.timeout(),
            self.client()
                .kv_client()
                .get(self.keys().caller(name), None),
        )
        .await?;
        if exists.kvs().is_empty() {
            return Err(EtcdError::UnknownCaller(name.to_owned()));
        }
        let now_s = shardgate_registry::unix_now();
        put_ban(self.client(), self.keys(), self.timeout(), name, ban, now_s).await
    }

    /// Lifts a caller's ban.
    pub async fn caller_unban(&self, name: &str) -> Result<(), EtcdError> {
        Self::check_caller(name)?;
        call(
            "delete a ban",
            self.timeout(),
            self.client()
                .kv_client()
                .delete(self.keys().ban(name), None),
        )
        .await?;
        Ok(())
    }
}
