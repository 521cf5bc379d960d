//! The instance's session: an etcd lease with the member key under it, kept
//! alive on its own task, and the rule for how long ownership may last.
//!
//! - A lease (TTL default 10 s) is granted and `members/<instance-id>` put
//!   under it. Keep-alives go every TTL/3, each round trip with its own
//!   timeout (default 2 s).
//! - The lease's own bound = the time the last successful keep-alive (or
//!   the grant) was *sent* + the TTL etcd answered − a safety margin
//!   (default 1 s): the lease cannot have expired before then.
//! - An answer that the lease is gone (TTL 0, "lease not found", from a
//!   keep-alive or from any request made under the lease) ends the session
//!   at once. An unreachable etcd makes it `Degraded`; ownership then lasts
//!   until `valid_until`: the lease's bound, or later while every other
//!   member confirms that it cannot reach etcd either (`extension.rs`: the
//!   rule, its safety argument and its hole). When `valid_until` passes the
//!   session ends (`Lost`). Either way the ownership loop drops every bot
//!   at that moment.
//! - While degraded, a member that answered "reachable" makes the next
//!   keep-alive go at once: etcd is probably back.
//! - The session also tracks this instance's contact with etcd
//!   (`SessionInfo::contact`, answered to peers): reachable from the first
//!   exchange that succeeds, unreachable from the first that fails.
//! - Then a new session is set up: the old lease is revoked (best effort: it
//!   may still exist, since restarting etcd resets every lease to its full
//!   TTL), a new one granted, the member key put again; bots are claimed
//!   again by the ownership loop (after the claim grace, see
//!   `extension.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use etcd_client::{
    Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use shardgate_registry::{SessionStatus, StoreContact, unix_now};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use crate::error::{EtcdError, call, describe, message_says_lease_gone};
use crate::extension;
use crate::keys::{self, MemberValue};
use crate::registry::Inner;
use crate::retry::Backoff;

/// The session as the ownership loop and the gateway see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// `Ok`, `Degraded { until }` (etcd not answering keep-alives) or `Lost`.
    pub status: SessionStatus,
    /// The lease of the session; `None` while `Lost`.
    pub lease: Option<i64>,
    /// Until when ownership may be exercised (see the module doc); `None`
    /// while `Lost`. Advances with every successful keep-alive, and with
    /// every confirmation from the other members while degraded.
    pub valid_until: Option<Instant>,
    /// `valid_until` is past the lease's own bound, on the other members'
    /// word that they cannot reach etcd either.
    pub extended: bool,
    /// How many sessions this registry has set up (1 for the first).
    pub generation: u64,
    /// This instance's contact with etcd, as it answers peers.
    pub contact: StoreContact,
}

impl SessionInfo {
    pub(crate) fn lost(generation: u64, contact: StoreContact) -> Self {
        SessionInfo {
            status: SessionStatus::Lost,
            lease: None,
            valid_until: None,
            extended: false,
            generation,
            contact,
        }
    }

    /// The lease, if ownership may be exercised at `now`.
    pub fn live_lease(&self, now: Instant) -> Option<i64> {
        match (self.status, self.lease, self.valid_until) {
            (SessionStatus::Lost, _, _) => None,
            (_, Some(lease), Some(until)) if now < until => Some(lease),
            _ => None,
        }
    }
}

/// A granted lease.
pub(crate) struct Lease {
    pub id: i64,
    pub ttl: Duration,
    pub valid_until: Instant,
}

/// Grants a lease and puts the member key under it.
pub(crate) async fn establish(inner: &Inner) -> Result<Lease, EtcdError> {
    let cfg = inner.config();
    let sent = Instant::now();
    let grant = call(
        "lease grant",
        cfg.op_timeout,
        inner.leases().grant(cfg.lease_ttl.as_secs() as i64, None),
    )
    .await?;
    if grant.ttl() <= 0 {
        return Err(EtcdError::Request {
            what: "lease grant",
            message: format!("granted a TTL of {} s", grant.ttl()),
        });
    }
    let ttl = Duration::from_secs(grant.ttl() as u64);
    let lease = Lease {
        id: grant.id(),
        ttl,
        valid_until: lease_bound(sent, ttl, cfg.safety_margin),
    };
    let member = MemberValue {
        grpc: cfg.advertise.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: unix_now(),
    };
    // Created only if absent: a key that exists belongs to another lease,
    // that is another instance started with this instance id (or this
    // instance's previous run, whose lease has not expired yet). Putting
    // over it would make two instances one member.
    let key = inner.keys().member(&cfg.instance_id);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            keys::encode_member(&member),
            Some(PutOptions::new().with_lease(lease.id)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let put = call("member create", cfg.op_timeout, inner.kv().txn(txn)).await;
    let clash = match put {
        Ok(resp) if resp.succeeded() => None,
        Ok(resp) => Some(member_clash(&cfg.instance_id, &resp)),
        Err(e) => Some(e),
    };
    if let Some(e) = clash {
        revoke(inner, lease.id).await;
        return Err(e);
    }
    tracing::info!(
        lease = format_args!("{:x}", lease.id),
        ttl_s = ttl.as_secs(),
        instance = %cfg.instance_id,
        "etcd session started"
    );
    Ok(lease)
}

/// The error for a member key that exists already, naming its holder by
/// lease and address (its value is read like any member's: bad data is
/// reported, not trusted).
fn member_clash(instance_id: &str, resp: &etcd_client::TxnResponse) -> EtcdError {
    let held = resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| (kv.lease(), kv.value().to_vec())),
        _ => None,
    });
    let (lease, grpc) = match held {
        Some((lease, value)) => (
            lease,
            keys::decode_member(instance_id, &value)
                .map_or_else(|e| format!("unreadable value: {e}"), |m| m.grpc),
        ),
        None => (0, "gone since".to_owned()),
    };
    EtcdError::MemberClash {
        instance: instance_id.to_owned(),
        lease,
        grpc,
    }
}

/// Revokes a lease (best effort): every key under it goes at once.
/// Returns whether the lease is now certainly gone.
pub(crate) async fn revoke(inner: &Inner, lease: i64) -> bool {
    match call(
        "lease revoke",
        inner.config().op_timeout,
        inner.leases().revoke(lease),
    )
    .await
    {
        Ok(_) => true,
        Err(e) if e.is_lease_gone() => true,
        Err(e) => {
            tracing::debug!(
                lease = format_args!("{lease:x}"),
                "lease revoke failed: {e}"
            );
            false
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// etcd said the lease does not exist.
    Gone,
    /// No keep-alive confirmed before `valid_until` (`extended`: which the
    /// other members' confirmations had pushed past the lease's bound).
    Expired { extended: bool },
}

/// The session task: keeps the current lease alive, and sets up a new one
/// whenever it ends. `first` is the lease set up by `start`.
pub(crate) async fn run(
    inner: Arc<Inner>,
    first: Lease,
    mut lease_lost: mpsc::UnboundedReceiver<i64>,
) {
    let mut next = Some(first);
    let mut generation = inner.session().generation;
    let mut to_revoke: Option<i64> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        let lease = match next.take() {
            Some(lease) => lease,
            None => {
                if let Some(old) = to_revoke {
                    let gone = revoke(&inner, old).await;
                    inner.note_contact(gone);
                    if gone {
                        to_revoke = None;
                    } else {
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                }
                match establish(&inner).await {
                    Ok(lease) => {
                        inner.note_contact(true);
                        generation += 1;
                        lease
                    }
                    Err(e) => {
                        inner.note_contact(false);
                        tracing::warn!("cannot start an etcd session: {e}");
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                }
            }
        };
        backoff.reset();
        let id = lease.id;
        let end = keep_alive(&inner, lease, generation, &mut lease_lost).await;
        let contact = inner.session().contact;
        inner.replace_session(SessionInfo::lost(generation, contact));
        inner.session_changed();
        match end {
            End::Gone => {
                tracing::warn!(
                    lease = format_args!("{id:x}"),
                    "etcd session lost: the lease is gone"
                );
            }
            End::Expired { extended: false } => {
                tracing::warn!(
                    lease = format_args!("{id:x}"),
                    "etcd session lost: no keep-alive confirmed before the lease could expire"
                );
                to_revoke = Some(id);
            }
            End::Expired { extended: true } => {
                tracing::warn!(
                    lease = format_args!("{id:x}"),
                    "etcd session lost: past the lease's bound, and the other members no longer \
                     confirm that etcd is unreachable for them too"
                );
                to_revoke = Some(id);
            }
        }
        // Reports about the old lease are moot now.
        while lease_lost.try_recv().is_ok() {}
    }
}

/// One keep-alive round's outcome.
enum Round {
    Alive { sent: Instant, ttl: Duration },
    Gone,
    Failed(String),
}

/// The keep-alive stream (boxed: it is large and travels in events).
type KeepAlive = Box<(LeaseKeeper, LeaseKeepAliveStream)>;

/// A keep-alive round in flight; it owns the keep-alive stream and hands
/// it back.
type RoundFuture<'a> = Pin<Box<dyn Future<Output = (Round, Option<KeepAlive>)> + Send + 'a>>;

/// What woke the keep-alive loop.
enum Event {
    /// `valid_until` passed.
    Expired,
    /// A request under this lease id was answered "lease not found".
    Reported(i64),
    /// Time for the next keep-alive.
    Due,
    Round(Round, Option<KeepAlive>),
    /// A round of peer checks finished.
    Evidence,
    /// A peer says it reaches etcd: try a keep-alive now.
    Kick,
}

/// Keeps `lease` alive until it ends, publishing the session state.
async fn keep_alive(
    inner: &Inner,
    mut lease: Lease,
    generation: u64,
    lease_lost: &mut mpsc::UnboundedReceiver<i64>,
) -> End {
    let cfg = inner.config();
    let rules = cfg.extension_rules();
    let interval = (lease.ttl / 3).max(Duration::from_millis(300));
    let retry = (interval / 4).max(Duration::from_millis(250));
    let mut stream: Option<KeepAlive> = None;
    let mut in_flight: Option<RoundFuture<'_>> = None;
    let mut degraded = false;
    let mut was_extended = false;
    let mut next_round = Instant::now() + interval;
    let mut evidence_rx = inner.subscribe_evidence();
    loop {
        let deadline = extension::ownership_deadline(
            lease.valid_until,
            &evidence_rx.borrow_and_update(),
            &rules,
        );
        if deadline.extended != was_extended {
            if deadline.extended {
                tracing::warn!(
                    lease = format_args!("{:x}", lease.id),
                    "past the lease's bound without etcd: keeping the bots while every other \
                     member confirms that it cannot reach etcd either"
                );
            } else if !degraded {
                tracing::info!(
                    lease = format_args!("{:x}", lease.id),
                    "the lease is confirmed again; ownership rests on it alone"
                );
            }
            was_extended = deadline.extended;
        }
        let status = if degraded {
            SessionStatus::Degraded {
                until: deadline.until,
            }
        } else {
            SessionStatus::Ok
        };
        let changed = inner.update_session(|cur| {
            let new = SessionInfo {
                status,
                lease: Some(lease.id),
                valid_until: Some(deadline.until),
                extended: deadline.extended,
                generation,
                contact: cur.contact,
            };
            let changed = *cur != new;
            *cur = new;
            changed
        });
        if changed {
            inner.session_changed();
        }
        let event = tokio::select! {
            biased;
            _ = sleep_until(deadline.until) => Event::Expired,
            Some(id) = lease_lost.recv() => Event::Reported(id),
            (r, s) = async {
                match in_flight.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => Event::Round(r, s),
            _ = sleep_until(next_round), if in_flight.is_none() => Event::Due,
            r = evidence_rx.changed() => match r {
                Ok(()) => Event::Evidence,
                Err(_) => Event::Expired, // the registry is going away
            },
            _ = inner.session_kicked() => Event::Kick,
        };
        match event {
            Event::Expired => {
                return End::Expired {
                    extended: deadline.extended,
                };
            }
            Event::Reported(id) if id == lease.id => {
                inner.note_contact(true); // etcd answered
                return End::Gone;
            }
            Event::Reported(_) | Event::Evidence => {}
            Event::Kick => {
                if degraded && in_flight.is_none() {
                    next_round = Instant::now();
                }
            }
            Event::Due => {
                in_flight = Some(Box::pin(round(inner, lease.id, lease.ttl, stream.take())));
            }
            Event::Round(r, s) => {
                in_flight = None;
                stream = s;
                match r {
                    Round::Alive { sent, ttl } => {
                        inner.note_contact(true);
                        lease.valid_until = lease_bound(sent, ttl, cfg.safety_margin);
                        if degraded {
                            tracing::info!(
                                lease = format_args!("{:x}", lease.id),
                                "etcd session recovered"
                            );
                        }
                        degraded = false;
                        next_round = sent + interval;
                    }
                    Round::Gone => {
                        inner.note_contact(true); // etcd answered
                        return End::Gone;
                    }
                    Round::Failed(why) => {
                        inner.note_contact(false);
                        stream = None;
                        if !degraded {
                            tracing::warn!(
                                lease = format_args!("{:x}", lease.id),
                                "etcd keep-alive failed ({why}); keeping ownership for at most {:?} \
                                 unless the other members confirm that etcd is unreachable for them too",
                                lease.valid_until.saturating_duration_since(Instant::now())
                            );
                        }
                        degraded = true;
                        next_round = Instant::now() + retry;
                    }
                }
            }
        }
    }
}

/// Sends one keep-alive and waits (bounded) for its answer, opening the
/// keep-alive stream first if there is none. Hands the stream back.
async fn round(
    inner: &Inner,
    id: i64,
    granted: Duration,
    mut stream: Option<KeepAlive>,
) -> (Round, Option<KeepAlive>) {
    let sent = Instant::now();
    let limit = inner.config().keepalive_limit();
    let answer = tokio::time::timeout(limit, async {
        match &mut stream {
            None => match inner.leases().keep_alive(id).await {
                // Opening sends a first keep-alive and checks its TTL > 0.
                Ok(opened) => {
                    stream = Some(Box::new(opened));
                    Round::Alive { sent, ttl: granted }
                }
                Err(e) => classify(&e),
            },
            Some(opened) => {
                let (keeper, responses) = &mut **opened;
                if let Err(e) = keeper.keep_alive().await {
                    return Round::Failed(describe(&e));
                }
                match responses.message().await {
                    Ok(Some(resp)) if resp.ttl() > 0 => Round::Alive {
                        sent,
                        ttl: Duration::from_secs(resp.ttl() as u64),
                    },
                    Ok(Some(_)) => Round::Gone,
                    Ok(None) => Round::Failed("keep-alive stream closed".into()),
                    Err(e) => classify(&e),
                }
            }
        }
    })
    .await;
    match answer {
        Ok(r) => (r, stream),
        Err(_) => (
            Round::Failed(format!("no keep-alive answer within {limit:?}")),
            stream,
        ),
    }
}

fn classify(e: &etcd_client::Error) -> Round {
    let message = describe(e);
    if message_says_lease_gone(&message) {
        Round::Gone
    } else {
        Round::Failed(message)
    }
}

/// The lease's own bound: when the keep-alive (or grant) that etcd answered
/// with `ttl` was *sent*, plus `ttl`, minus `margin`. etcd started the TTL
/// no earlier than the send, so the lease cannot have expired before this
/// on the monotonic clock, whatever happened to this process meanwhile (a
/// SIGSTOP that outlasts it leaves the bound in the past on waking).
fn lease_bound(sent: Instant, ttl: Duration, margin: Duration) -> Instant {
    sent + ttl.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_valid_until_the_last_keep_alive_plus_ttl_minus_the_margin() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        let until = lease_bound(sent, ttl, Duration::from_secs(1));
        assert_eq!(until, sent + Duration::from_secs(9));
        let s = SessionInfo {
            status: SessionStatus::Ok,
            lease: Some(3),
            valid_until: Some(until),
            extended: false,
            generation: 1,
            contact: StoreContact::reachable_since(sent),
        };
        tokio::time::advance(Duration::from_millis(8_999)).await;
        assert_eq!(s.live_lease(Instant::now()), Some(3));
        // Paused (SIGSTOP) past the bound: on waking the lease is not valid,
        // before any keep-alive or loss could be seen.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(s.live_lease(Instant::now()), None);
        // A margin over the TTL leaves no validity at all.
        assert_eq!(lease_bound(sent, ttl, Duration::from_secs(60)), sent);
    }

    #[test]
    fn live_lease_needs_a_future_valid_until() {
        let now = Instant::now();
        let mut s = SessionInfo {
            status: SessionStatus::Ok,
            lease: Some(7),
            valid_until: Some(now + Duration::from_secs(1)),
            extended: false,
            generation: 1,
            contact: StoreContact::reachable_since(now),
        };
        assert_eq!(s.live_lease(now), Some(7));
        assert_eq!(s.live_lease(now + Duration::from_secs(1)), None);
        s.status = SessionStatus::Degraded {
            until: now + Duration::from_secs(1),
        };
        assert_eq!(s.live_lease(now), Some(7));
        assert_eq!(
            SessionInfo::lost(1, StoreContact::reachable_since(now)).live_lease(now),
            None
        );
    }
}
