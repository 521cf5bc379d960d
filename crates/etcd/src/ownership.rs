//! Ownership: which bots this instance drives, and the etcd writes that
//! keep "one owner per bot" true.
//!
//! - The desired owner of a bot is the rendezvous winner of its name over
//!   the live members. When that is this instance and `owners/<bot>` is
//!   absent, it is claimed with a transaction (`create_revision == 0` → put
//!   under the session's lease). The key's revision is the fence: health
//!   writes compare it (value == me AND mod_revision == claim revision).
//! - An owned bot whose desired owner is now another instance is handed
//!   off: the fleet shows it (`Fleet::handing_off`), the gateway drains it
//!   and calls `release`; after `handoff_timeout` it is released anyway.
//! - A claim is dropped locally at once when the session is not live, when
//!   the owner key changes or disappears, or when a fenced write fails.
//! - A bot is only taken into `owned` (a claim recorded, a key adopted)
//!   when etcd has been reachable, without a break, for the claim grace
//!   (`extension.rs`: peers may keep driving their bots on this instance's
//!   word "etcd unreachable" for less than that). Claims wait for it too.
//! - Keys with this instance's id that it does not hold (from a claim whose
//!   answer was lost, or a previous process with the same id) are adopted
//!   when they are under the current lease and wanted, else deleted
//!   (fenced by their revision).
//!
//! `plan.rs` is the pure part (decisions from the mirror, the session and
//! the local state, and their tests); this file is the loop that applies
//! them ([`run`]) and the fenced etcd writes.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use shardgate_registry::{Health, unix_now};
use shardgate_telegram::redact_tokens;

use crate::error::{EtcdError, call};
use crate::extension::may_start_driving;
use crate::keys;
use crate::registry::Inner;

mod plan;

pub(crate) use plan::{Action, OwnState, plan};
pub use plan::{OwnerClaim, OwnershipChange, OwnershipEvent};

/// The ownership loop: re-plans on every mirror or session change, on a
/// wake-up (release), at handoff deadlines, and 1 s after a failed write.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut mirror_rx = inner.subscribe_mirror();
    let mut session_rx = inner.subscribe_session();
    loop {
        let next = reconcile(&inner).await;
        let timer = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = mirror_rx.changed() => if r.is_err() { return },
            r = session_rx.changed() => if r.is_err() { return },
            _ = inner.ownership_woken() => {}
            _ = timer => {}
        }
    }
}

/// One pass: plan, publish, write. Returns when to look again at the latest.
async fn reconcile(inner: &Inner) -> Option<Instant> {
    let now = Instant::now();
    let mirror = inner.mirror();
    let session = inner.session();
    let plan = {
        let mut own = inner.own();
        plan(
            &mut own,
            &mirror,
            &session,
            &inner.config().instance_id,
            now,
            inner.config().handoff_timeout,
            inner.config().claim_grace,
        )
    };
    inner.publish();
    let mut failed = false;
    for action in plan.actions {
        if let Err(e) = execute(inner, &action).await {
            tracing::warn!(?action, "etcd ownership write failed: {e}");
            failed = true;
        }
        inner.publish();
    }
    let retry = failed.then(|| Instant::now() + Duration::from_secs(1));
    [plan.next_deadline, retry].into_iter().flatten().min()
}

async fn execute(inner: &Inner, action: &Action) -> Result<(), EtcdError> {
    match action {
        Action::Claim { bot, lease } => claim(inner, bot, *lease).await,
        Action::Release { bot, forced } => {
            let change = if *forced {
                OwnershipChange::ForcedRelease
            } else {
                OwnershipChange::Released
            };
            release(inner, bot, change).await
        }
        Action::DeleteStale { bot, mod_revision } => {
            delete_if_revision(inner, bot, *mod_revision).await
        }
        Action::ResetHealth { bot } => {
            let health = Health {
                reason: "token rotated or bot re-enabled".into(),
                ..Health::healthy()
            };
            put_health_fenced(inner, bot, health).await.map(|_| ())
        }
    }
}

/// Tells the session task when etcd says our lease is gone.
fn note_lease_gone(inner: &Inner, lease: i64, e: &EtcdError) {
    if e.is_lease_gone() {
        inner.report_lease_lost(lease);
    }
}

/// Claims `bot` if nobody holds it: put `owners/<bot>` = me under `lease`,
/// only if the key does not exist.
async fn claim(inner: &Inner, bot: &str, lease: i64) -> Result<(), EtcdError> {
    let key = inner.keys().owner(bot);
    let me = inner.config().instance_id.as_str();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            me,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let resp = call("claim", inner.config().op_timeout, inner.kv().txn(txn))
        .await
        .inspect_err(|e| note_lease_gone(inner, lease, e))?;
    if !resp.succeeded() {
        return Ok(()); // someone else holds it; the watch will tell
    }
    let Some(revision) = resp.header().map(|h| h.revision()) else {
        return Err(EtcdError::Request {
            what: "claim",
            message: "answer without a revision".into(),
        });
    };
    let session = inner.session();
    let now = Instant::now();
    let mut own = inner.own();
    // Checked again now that we would start driving: etcd must still have
    // been reachable, without a break, for the grace (see `extension.rs`).
    if session.live_lease(now) == Some(lease)
        && may_start_driving(session.contact, now, inner.config().claim_grace)
        && !own.shutting_down
    {
        own.owned
            .insert(bot.to_owned(), OwnerClaim { revision, lease });
        own.record(me, bot, OwnershipChange::Claimed, Some(revision));
    } else {
        // The session ended or etcd was lost meanwhile: the key goes with
        // its lease, or is deleted as stale.
        own.retired.insert((bot.to_owned(), revision));
    }
    Ok(())
}

/// Lets go of `bot`: out of `owned` at once, then `owners/<bot>` deleted if
/// it is still our claim. Not held: nothing to do.
pub(crate) async fn release(
    inner: &Inner,
    bot: &str,
    change: OwnershipChange,
) -> Result<(), EtcdError> {
    let me = inner.config().instance_id.as_str();
    let claim = {
        let mut own = inner.own();
        let Some(claim) = own.owned.remove(bot) else {
            return Ok(());
        };
        own.handoff_since.remove(bot);
        own.releasing.insert(bot.to_owned());
        own.retired.insert((bot.to_owned(), claim.revision));
        // Recorded when we stop driving it, before the key goes: another
        // instance may claim the instant the delete lands.
        own.record(me, bot, change, None);
        claim
    };
    inner.publish();
    let key = inner.keys().owner(bot);
    let txn = Txn::new()
        .when([
            Compare::value(key.clone(), CompareOp::Equal, me),
            Compare::mod_revision(key.clone(), CompareOp::Equal, claim.revision),
        ])
        .and_then([TxnOp::delete(key, None)]);
    let result = call("release", inner.config().op_timeout, inner.kv().txn(txn)).await;
    inner.own().releasing.remove(bot);
    inner.wake_ownership();
    result.map(|_| ())
}

/// Deletes `owners/<bot>` if it still has revision `mod_revision`.
async fn delete_if_revision(inner: &Inner, bot: &str, mod_revision: i64) -> Result<(), EtcdError> {
    let key = inner.keys().owner(bot);
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then([TxnOp::delete(key, None)]);
    let resp = call(
        "stale owner delete",
        inner.config().op_timeout,
        inner.kv().txn(txn),
    )
    .await?;
    if resp.succeeded() {
        tracing::info!(
            bot,
            mod_revision,
            "deleted a stale owner key of this instance"
        );
    }
    Ok(())
}

/// Writes `health/<bot>`, fenced by our claim: only if `owners/<bot>` is
/// still ours at the claim's revision. Returns the write's revision.
pub(crate) async fn put_health_fenced(
    inner: &Inner,
    bot: &str,
    mut health: Health,
) -> Result<i64, EtcdError> {
    let me = inner.config().instance_id.as_str();
    let now = Instant::now();
    let claim = {
        let own = inner.own();
        let live = inner.live_lease(now);
        match own.owned.get(bot) {
            Some(c) if Some(c.lease) == live => *c,
            _ => return Err(EtcdError::NotOwner(bot.to_owned())),
        }
    };
    if health.instance.is_empty() {
        health.instance = me.to_owned();
    }
    if health.at == 0 {
        health.at = unix_now();
    }
    health.reason = redact_tokens(&health.reason).into_owned();
    let owner_key = inner.keys().owner(bot);
    let txn = Txn::new()
        .when([
            Compare::value(owner_key.clone(), CompareOp::Equal, me),
            Compare::mod_revision(owner_key, CompareOp::Equal, claim.revision),
        ])
        .and_then([TxnOp::put(
            inner.keys().health(bot),
            keys::encode_health(&health),
            None,
        )]);
    let resp = call(
        "health write",
        inner.config().op_timeout,
        inner.kv().txn(txn),
    )
    .await
    .inspect_err(|e| note_lease_gone(inner, claim.lease, e))?;
    if !resp.succeeded() {
        {
            let mut own = inner.own();
            if own.owned.get(bot) == Some(&claim) {
                own.drop_claim(me, bot, "fenced write refused: the owner key changed");
            }
        }
        inner.publish();
        return Err(EtcdError::NotOwner(bot.to_owned()));
    }
    Ok(resp.header().map_or(0, |h| h.revision()))
}
