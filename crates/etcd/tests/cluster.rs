//! Sessions and ownership against a real etcd: rendezvous split, claim
//! exclusivity, takeover after a crash / a revoked lease / a partition,
//! `valid_until` expiry while etcd is down, fenced health writes, handoff
//! by release or timeout, graceful shutdown, health reset on rotation.
//! Timers are short (lease TTL 4 s); measured times are printed.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use common::*;
use shardgate_etcd::testing::{Proxy, check_local_exclusive, check_owner_history, owner_changes};
use shardgate_etcd::{EtcdConfig, EtcdRegistry, Keys, OwnershipChange};
use shardgate_registry::{
    BotState, Health, HealthState, Registry, RegistryError, SessionStatus, unix_now,
};

/// The claims `reg` made.
fn claims(reg: &EtcdRegistry) -> Vec<shardgate_etcd::OwnershipEvent> {
    reg.ownership_history()
        .into_iter()
        .filter(|e| e.change == OwnershipChange::Claimed)
        .collect()
}

const LIMIT: Duration = Duration::from_secs(20);

/// Two registries, i1 and i2, that ask each other whether they reach etcd
/// (in process, as the daemon does over gRPC), with their releasers, and
/// settled.
async fn probed_pair(
    cfg_a: EtcdConfig,
    cfg_b: EtcdConfig,
) -> (Arc<EtcdRegistry>, Arc<EtcdRegistry>, Arc<InProcessProbe>) {
    let probe = InProcessProbe::new();
    let a = start_probed(cfg_a, &probe).await;
    let b = start_probed(cfg_b, &probe).await;
    spawn_releaser(a.clone());
    spawn_releaser(b.clone());
    assert!(a.wait_settled(LIMIT).await && b.wait_settled(LIMIT).await);
    (a, b, probe)
}

/// Plays the gateway's part in a handoff: releases every bot the registry
/// says it is handing off.
fn spawn_releaser(reg: Arc<EtcdRegistry>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = reg.fleet();
        loop {
            let bots: Vec<String> = rx
                .borrow_and_update()
                .handing_off()
                .map(str::to_owned)
                .collect();
            for bot in bots {
                let _ = reg.release(&bot).await;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Samples that two registries never own the same bot at the same time.
fn spawn_overlap_sampler(
    a: Arc<EtcdRegistry>,
    b: Arc<EtcdRegistry>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut samples = 0;
        loop {
            let (fa, fb) = (owned(&a), owned(&b));
            let both: Vec<_> = fa.intersection(&fb).collect();
            assert!(both.is_empty(), "owned by both at once: {both:?}");
            samples += 1;
            if Arc::strong_count(&a) == 1 {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_split_bots_by_rendezvous_and_never_share_one() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c1", 16).await;
    let a = Arc::new(start(config(&server.endpoint(), "c1", "i1")).await);
    assert!(a.wait_settled(LIMIT).await);
    assert_eq!(owned(&a).len(), 16, "alone, i1 owns everything");

    let releaser = spawn_releaser(a.clone());
    let b = Arc::new(start(config(&server.endpoint(), "c1", "i2")).await);
    let sampler = spawn_overlap_sampler(a.clone(), b.clone());
    let t = Instant::now();
    assert!(b.wait_settled(LIMIT).await, "i2 settles");
    assert!(a.wait_settled(LIMIT).await, "i1 settles");
    println!(
        "join of i2: settled in {:?} (handoff by release)",
        t.elapsed()
    );

    let (oa, ob) = (owned(&a), owned(&b));
    for bot in &bots {
        let want = desired(bot, &bots, &["i1", "i2"]);
        assert_eq!(oa.contains(bot), want == "i1", "{bot}");
        assert_eq!(ob.contains(bot), want == "i2", "{bot}");
        assert_eq!(fleet(&b).bots[bot].owner.as_deref(), Some(want.as_str()));
    }
    assert!(
        !oa.is_empty() && !ob.is_empty(),
        "16 bots split: {oa:?} / {ob:?}"
    );
    let moved = ob.len();
    let released = a
        .ownership_history()
        .iter()
        .filter(|e| e.change == OwnershipChange::Released)
        .count();
    assert_eq!(
        released, moved,
        "every moved bot was released by the gateway, none forced"
    );

    releaser.abort();
    let hist = [a.ownership_history(), b.ownership_history()];
    check_local_exclusive(&hist).expect("local holdings never overlap");
    let changes = owner_changes(&client, "c1").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
    println!("owner changes in etcd: {}", changes.len());
    assert!(
        changes.len() >= bots.len() + 2 * moved,
        "claims, releases, re-claims: {changes:?}"
    );
    drop(b);
    drop(a);
    let samples = sampler.await.expect("sampler");
    println!("overlap samples: {samples}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_transactions_are_exclusive() {
    // Both registries race for every bot from the start: only the
    // rendezvous winner may claim, and a claim only succeeds on an absent
    // key. Run several rounds of simultaneous starts.
    let server = etcd().await;
    let client = server.client().await;
    seed_bots(&client, "c2", 12).await;
    for round in 0..3 {
        let (a, b) = tokio::join!(
            start(config(&server.endpoint(), "c2", "i1")),
            start(config(&server.endpoint(), "c2", "i2"))
        );
        let (a, b) = (Arc::new(a), Arc::new(b));
        let r1 = spawn_releaser(a.clone());
        let r2 = spawn_releaser(b.clone());
        let sampler = spawn_overlap_sampler(a.clone(), b.clone());
        assert!(
            a.wait_settled(LIMIT).await && b.wait_settled(LIMIT).await,
            "round {round}"
        );
        check_local_exclusive(&[a.ownership_history(), b.ownership_history()]).expect("no overlap");
        r1.abort();
        r2.abort();
        a.shutdown().await;
        b.shutdown().await;
        drop((a, b));
        sampler.await.expect("sampler");
    }
    let changes = owner_changes(&client, "c2").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_is_taken_over_within_the_ttl() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c3", 8).await;
    let a = start(config(&server.endpoint(), "c3", "i1")).await;
    assert!(a.wait_settled(LIMIT).await);
    let b = Arc::new(start(config(&server.endpoint(), "c3", "i2")).await);
    let _r = spawn_releaser(Arc::new(a));
    assert!(b.wait_settled(LIMIT).await);
    // `a` now lives only in the releaser task: abort it = crash (no
    // shutdown, no more keep-alives).
    _r.abort();
    let crashed = Instant::now();
    let took = wait_for("i2 owns every bot", LIMIT, || owned(&b).len() == bots.len()).await;
    println!(
        "crash takeover (lease TTL 4 s): {:?} ({:.1} s)",
        crashed.elapsed(),
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(4 + 3),
        "takeover within TTL + 3 s: {took:?}"
    );
    assert!(
        took > Duration::from_secs(2),
        "not before the lease could expire: {took:?}"
    );
    assert_eq!(fleet(&b).members.len(), 1);
    let changes = owner_changes(&client, "c3").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ttl_crash_takeover_is_measured() {
    // Same with the default 10 s lease, as the daemon runs.
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c3d", 4).await;
    let mut cfg = config(&server.endpoint(), "c3d", "i1");
    cfg.lease_ttl = Duration::from_secs(10);
    let a = start(cfg.clone()).await;
    assert!(a.wait_settled(LIMIT).await);
    cfg.instance_id = "i2".into();
    let b = start(cfg).await;
    // Let i2 join, then crash i1 while it still holds everything it had.
    wait_for("i2 is a member", LIMIT, || fleet(&a).members.len() == 2).await;
    drop(a);
    let took = wait_for("i2 owns every bot", Duration::from_secs(30), || {
        owned(&b).len() == bots.len()
    })
    .await;
    println!(
        "crash takeover (lease TTL 10 s): {:.1} s",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(15),
        "service level: survivors within 15 s: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_clears_owned_at_once_and_the_other_takes_over() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c4", 8).await;
    let a = Arc::new(start(config(&server.endpoint(), "c4", "i1")).await);
    let b = Arc::new(start(config(&server.endpoint(), "c4", "i2")).await);
    let _r1 = spawn_releaser(a.clone());
    let _r2 = spawn_releaser(b.clone());
    assert!(a.wait_settled(LIMIT).await && b.wait_settled(LIMIT).await);
    let had = owned(&a);
    assert!(!had.is_empty());
    let lease = a.session().borrow().lease.expect("lease");

    let revoked = Instant::now();
    client.lease_client().revoke(lease).await.expect("revoke");
    let cleared = wait_for("i1 drops its bots", LIMIT, || owned(&a).is_empty()).await;
    let taken = wait_for("i2 owns every bot", LIMIT, || owned(&b).len() == bots.len()).await;
    println!(
        "lease revoked by another client: i1 dropped its bots in {cleared:?}, i2 owned them {taken:?} after the revoke"
    );
    assert!(
        cleared < Duration::from_secs(1),
        "lease gone = ownership gone at once: {cleared:?}"
    );
    assert!(taken < Duration::from_secs(2), "{taken:?}");
    assert!(
        a.ownership_history()
            .iter()
            .any(|e| matches!(e.change, OwnershipChange::Lost(_)))
    );

    // i1 comes back with a new session and gets its bots back.
    let back = wait_for("i1 settled again", LIMIT, || {
        shardgate_etcd::settled(&fleet(&a), "i1") && owned(&a) == had
    })
    .await;
    println!(
        "i1 rejoined and re-claimed in {back:?} (since revoke {:?})",
        revoked.elapsed()
    );
    let s = a.session().borrow().clone();
    assert_eq!(s.generation, 2);
    assert_ne!(s.lease, Some(lease));
    let changes = owner_changes(&client, "c4").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_until_expiry_clears_owned_while_etcd_is_down() {
    let mut server = etcd().await;
    let client = server.client().await;
    seed_bots(&client, "c5", 4).await;
    let a = start(config(&server.endpoint(), "c5", "i1")).await;
    assert!(a.wait_settled(LIMIT).await);
    let mut session = a.session();
    let valid_until = session.borrow().valid_until.expect("valid_until");

    server.stop();
    let stopped = Instant::now();
    let degraded = wait_for("session degraded", LIMIT, || {
        matches!(fleet(&a).session, SessionStatus::Degraded { .. })
    })
    .await;
    assert_eq!(owned(&a).len(), 4, "still owned while degraded");
    let last_valid = session
        .borrow_and_update()
        .valid_until
        .unwrap_or(valid_until);
    let cleared = wait_for("owned cleared", LIMIT, || owned(&a).is_empty()).await;
    let at = Instant::now();
    println!(
        "etcd down: degraded after {degraded:?}, bots dropped {cleared:?} after the stop, {:?} after valid_until",
        at.saturating_duration_since(last_valid)
    );
    assert!(at >= last_valid, "dropped before valid_until");
    assert!(
        at.saturating_duration_since(last_valid) < Duration::from_millis(500),
        "dropped at valid_until"
    );
    // Lease TTL 4 s, margin 1 s: never later than 3 s after the stop (plus slack).
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert_eq!(fleet(&a).session, SessionStatus::Lost);

    server.restart().await;
    let back = wait_for("re-established and re-claimed", LIMIT, || {
        owned(&a).len() == 4 && fleet(&a).session == SessionStatus::Ok
    })
    .await;
    println!("etcd back: bots re-claimed in {back:?}");
    assert!(a.session().borrow().generation >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_lets_go_before_the_other_claims() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c6", 8).await;
    let proxy = Proxy::start(server.client_addr()).await;
    // As the daemon runs: i1 asks i2 whether it reaches etcd, and i2 does.
    let (a, b, _probe) = probed_pair(
        config(&proxy.endpoint(), "c6", "i1"),
        config(&server.endpoint(), "c6", "i2"),
    )
    .await;
    let sampler = spawn_overlap_sampler(a.clone(), b.clone());
    assert!(!owned(&a).is_empty());

    proxy.cut();
    let cut = Instant::now();
    let mut extended = false;
    wait_for("i1 drops its bots", LIMIT, || {
        extended |= a.session().borrow().extended;
        owned(&a).is_empty()
    })
    .await;
    let dropped = cut.elapsed();
    assert!(
        !extended,
        "i2 reaches etcd: i1 must not keep its bots past the lease"
    );
    wait_for("i2 owns every bot", LIMIT, || owned(&b).len() == bots.len()).await;
    let taken = cut.elapsed();
    println!(
        "partition of the owner (TTL 4 s): it stopped driving after {dropped:?}, the other took over after {taken:?} (gap {:?})",
        taken.saturating_sub(dropped)
    );
    assert!(dropped < taken, "the partitioned owner lets go first");
    check_local_exclusive(&[a.ownership_history(), b.ownership_history()]).expect("no overlap");

    proxy.heal();
    let back = wait_for("i1 back with its bots", LIMIT, || {
        shardgate_etcd::settled(&fleet(&a), "i1") && !owned(&a).is_empty()
    })
    .await;
    println!(
        "partition healed: i1 back in {back:?} (since cut {:?})",
        cut.elapsed()
    );
    check_local_exclusive(&[a.ownership_history(), b.ownership_history()]).expect("no overlap");
    drop(sampler);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_writes_are_fenced_by_the_claim() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c7", 6).await;
    let keys = Keys::new("c7").expect("cluster");
    let a = Arc::new(start(config(&server.endpoint(), "c7", "i1")).await);
    let b = Arc::new(start(config(&server.endpoint(), "c7", "i2")).await);
    let _r1 = spawn_releaser(a.clone());
    let _r2 = spawn_releaser(b.clone());
    assert!(a.wait_settled(LIMIT).await && b.wait_settled(LIMIT).await);
    let mine = bots
        .iter()
        .find(|bot| owned(&a).contains(*bot))
        .expect("i1 owns a bot")
        .clone();
    let revoked = Health {
        state: HealthState::Revoked,
        reason: format!("Unauthorized for {}", token(0)),
        ..Health::healthy()
    };
    // The non-owner is refused.
    let err = b
        .report_health(&mine, revoked.clone())
        .await
        .expect_err("fenced");
    assert!(matches!(err, RegistryError::NotOwner(_)), "{err}");
    // The owner writes; every instance sees it.
    a.report_health(&mine, revoked.clone())
        .await
        .expect("owner writes");
    wait_for("both see revoked", LIMIT, || {
        fleet(&b).bots[&mine].state(0) == BotState::Revoked
            && fleet(&a).bots[&mine].state(0) == BotState::Revoked
    })
    .await;
    let stored = client
        .kv_client()
        .get(keys.health(&mine), None)
        .await
        .expect("get");
    let text = String::from_utf8_lossy(stored.kvs()[0].value()).into_owned();
    assert!(
        text.contains(r#""state":"revoked""#) && text.contains(r#""instance":"i1""#),
        "{text}"
    );
    assert!(!text.contains(&secret(0)), "token in health reason: {text}");

    // Someone else's claim replaces ours behind our back: the fence holds.
    client
        .kv_client()
        .put(keys.owner(&mine), "intruder", None)
        .await
        .expect("overwrite");
    let err = a.report_health(&mine, Health::healthy()).await;
    // Either the watch already dropped the claim or the fence refused it.
    assert!(matches!(err, Err(RegistryError::NotOwner(_))), "{err:?}");
    wait_for("claim dropped", LIMIT, || !owned(&a).contains(&mine)).await;
    assert_eq!(
        fleet(&b).bots[&mine].state(0),
        BotState::Revoked,
        "refused write not applied"
    );
    // The intruder goes away: the desired owner claims again.
    client
        .kv_client()
        .delete(keys.owner(&mine), None)
        .await
        .expect("delete");
    let took = wait_for("re-claimed", LIMIT, || owned(&a).contains(&mine)).await;
    println!("owner key deleted -> re-claimed by the desired owner in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_by_release_and_by_timeout() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c8", 12).await;
    let a = Arc::new(start(config(&server.endpoint(), "c8", "i1")).await);
    assert!(a.wait_settled(LIMIT).await);
    // i2 joins; nobody releases for i1: the handoff times out (2 s).
    let b = Arc::new(start(config(&server.endpoint(), "c8", "i2")).await);
    let moving: BTreeSet<String> = bots
        .iter()
        .filter(|bot| desired(bot, &bots, &["i1", "i2"]) == "i2")
        .cloned()
        .collect();
    assert!(!moving.is_empty());
    let shown = wait_for("handing off shown", LIMIT, || {
        fleet(&a).handing_off().count() == moving.len()
    })
    .await;
    assert!(owned(&a).is_superset(&moving), "kept until released");
    let t = Instant::now();
    wait_for("i2 owns its bots", LIMIT, || owned(&b) == moving).await;
    println!(
        "handoff without release: shown after {shown:?}, forced after {:?} more (timeout 2 s)",
        t.elapsed()
    );
    assert!(t.elapsed() >= Duration::from_millis(1500));
    let forced = a
        .ownership_history()
        .iter()
        .filter(|e| e.change == OwnershipChange::ForcedRelease)
        .count();
    assert_eq!(forced, moving.len());
    assert!(logs().contains("did not release it within the handoff timeout"));

    // i2 leaves by shutdown: everything back to i1 at once.
    let t = Instant::now();
    b.shutdown().await;
    let took = wait_for("i1 owns all", LIMIT, || owned(&a).len() == bots.len()).await;
    println!(
        "shutdown of i2: i1 owned everything {took:?} after shutdown returned ({:?} in all)",
        t.elapsed()
    );
    assert!(
        took < Duration::from_secs(2),
        "shutdown = immediate takeover: {took:?}"
    );
    assert_eq!(fleet(&a).members.len(), 1, "member key gone");

    // A third instance joins; this time the "gateway" releases. A new
    // instance takes nothing before its claim grace (it reached etcd just
    // now), then everything released to it at once.
    let _r = spawn_releaser(a.clone());
    let cfg3 = config(&server.endpoint(), "c8", "i3");
    let grace = cfg3.claim_grace;
    let c = start(cfg3).await;
    let moving3: BTreeSet<String> = bots
        .iter()
        .filter(|bot| desired(bot, &bots, &["i1", "i3"]) == "i3")
        .cloned()
        .collect();
    let took = wait_for("i3 owns its bots", LIMIT, || owned(&c) == moving3).await;
    println!(
        "handoff with release: i3 owned its {} bots {took:?} after it started (claim grace {grace:?})",
        moving3.len()
    );
    assert!(took >= grace - Duration::from_millis(500), "{took:?}");
    assert!(took < grace + Duration::from_secs(2), "{took:?}");
    let changes = owner_changes(&client, "c8").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_token_put_resets_health_through_the_owner() {
    let server = etcd().await;
    let client = server.client().await;
    let keys = Keys::new("c9").expect("cluster");
    seed_bots(&client, "c9", 1).await;
    let a = start(config(&server.endpoint(), "c9", "i1")).await;
    assert!(a.wait_settled(LIMIT).await);
    a.report_health(
        "bot-0",
        Health {
            state: HealthState::Throttled,
            until: unix_now() + 3600,
            reason: "retry after 3600".into(),
            ..Health::healthy()
        },
    )
    .await
    .expect("owner");
    wait_for("throttled", LIMIT, || {
        fleet(&a).bots["bot-0"].state(unix_now()) == BotState::Throttled
    })
    .await;

    // etcdctl put of a new token.
    client
        .kv_client()
        .put(
            keys.bot("bot-0"),
            format!(r#"{{"token":"{}","enabled":true}}"#, token(42)),
            None,
        )
        .await
        .expect("put");
    let took = wait_for("healthy again", LIMIT, || {
        let f = fleet(&a);
        f.bots["bot-0"].state(unix_now()) == BotState::Healthy
            && f.bots["bot-0"].spec.token.expose() == token(42)
    })
    .await;
    println!("raw token put: routable again after {took:?}");
    // The owner rewrites health/ itself.
    let mut kv = client.kv_client();
    let start = Instant::now();
    loop {
        let resp = kv.get(keys.health("bot-0"), None).await.expect("get");
        let text = String::from_utf8_lossy(resp.kvs()[0].value()).into_owned();
        if text.contains(r#""state":"healthy""#) {
            assert!(text.contains("token rotated"), "{text}");
            break;
        }
        assert!(start.elapsed() < LIMIT, "health never reset: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_both_keep_their_bots_on_each_others_word_and_resume_on_the_same_leases() {
    let mut server = etcd().await;
    let client = server.client().await;
    seed_bots(&client, "c10", 8).await;
    let (a, b, _probe) = probed_pair(
        config(&server.endpoint(), "c10", "i1"),
        config(&server.endpoint(), "c10", "i2"),
    )
    .await;
    let (had_a, had_b) = (owned(&a), owned(&b));
    assert!(
        !had_a.is_empty() && !had_b.is_empty(),
        "{had_a:?} {had_b:?}"
    );
    let lease_a = a.session().borrow().lease;

    server.stop();
    let stopped = Instant::now();
    // Twice the lease TTL (4 s): nobody lets go of anything.
    let mut extended = Duration::ZERO;
    let mut last = Instant::now();
    while stopped.elapsed() < Duration::from_secs(8) {
        assert_eq!(owned(&a), had_a, "i1 let go after {:?}", stopped.elapsed());
        assert_eq!(owned(&b), had_b, "i2 let go after {:?}", stopped.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        if a.session().borrow().extended && b.session().borrow().extended {
            extended += last.elapsed();
        }
        last = Instant::now();
    }
    println!("etcd stopped 8 s (TTL 4 s): both kept every bot, {extended:?} of it past the lease");
    assert!(extended > Duration::from_secs(3), "{extended:?}");
    assert!(matches!(fleet(&a).session, SessionStatus::Degraded { .. }));
    assert_eq!(a.store_contact().map(|c| c.reachable), Some(false));

    server.restart().await;
    let back = wait_for("both sessions ok again", LIMIT, || {
        fleet(&a).session == SessionStatus::Ok && fleet(&b).session == SessionStatus::Ok
    })
    .await;
    println!("etcd back: both sessions ok {back:?} after the restart");
    assert_eq!(owned(&a), had_a);
    assert_eq!(owned(&b), had_b);
    assert_eq!(
        a.session().borrow().lease,
        lease_a,
        "same lease: etcd renewed it"
    );
    assert_eq!(a.session().borrow().generation, 1);
    assert_eq!(a.store_contact().map(|c| c.reachable), Some(true));
    for reg in [&a, &b] {
        let since: Vec<_> = reg
            .ownership_history()
            .into_iter()
            .filter(|e| e.at >= stopped)
            .collect();
        assert!(since.is_empty(), "ownership changed: {since:?}");
    }
    let client = server.client().await;
    let changes = owner_changes(&client, "c10").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_answer_confirms_nothing() {
    let mut server = etcd().await;
    let client = server.client().await;
    seed_bots(&client, "c11", 8).await;
    let (a, b, probe) = probed_pair(
        config(&server.endpoint(), "c11", "i1"),
        config(&server.endpoint(), "c11", "i2"),
    )
    .await;
    let had_b = owned(&b);
    assert!(!owned(&a).is_empty() && !had_b.is_empty());
    // i2 does not answer i1 (i1 still answers i2).
    probe.set_silent("i2", true);
    let bound = a.session().borrow().valid_until.expect("valid_until");

    server.stop();
    wait_for("i1 drops its bots", LIMIT, || owned(&a).is_empty()).await;
    let late = Instant::now().saturating_duration_since(bound);
    println!("etcd stopped, i2 silent: i1 dropped its bots {late:?} after its lease's bound");
    assert!(!a.session().borrow().extended);
    assert!(Instant::now() >= bound, "dropped before the lease's bound");
    assert!(late < Duration::from_secs(4), "{late:?}");
    // i2 heard i1 say "unreachable": it keeps its bots past its own bound.
    wait_for("i2 extended", LIMIT, || b.session().borrow().extended).await;
    assert_eq!(owned(&b), had_b);

    server.restart().await;
    wait_for("both settled again", LIMIT, || {
        shardgate_etcd::settled(&fleet(&a), "i1") && shardgate_etcd::settled(&fleet(&b), "i2")
    })
    .await;
    check_local_exclusive(&[a.ownership_history(), b.ownership_history()]).expect("no overlap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_cut_off_from_a_live_etcd_keep_on_each_others_word_and_the_grace_keeps_them_apart() {
    let server = etcd().await;
    let client = server.client().await;
    let bots = seed_bots(&client, "c12", 8).await;
    let (pa, pb) = (
        Proxy::start(server.client_addr()).await,
        Proxy::start(server.client_addr()).await,
    );
    let cfg = config(&pb.endpoint(), "c12", "i2");
    let grace = cfg.claim_grace;
    let (a, b, _probe) = probed_pair(config(&pa.endpoint(), "c12", "i1"), cfg).await;
    let had_a = owned(&a);
    assert!(!had_a.is_empty());
    let sampler = spawn_overlap_sampler(a.clone(), b.clone());

    // Both cut off; etcd lives on and lets both leases expire (TTL 4 s).
    pa.cut();
    pb.cut();
    let cut = Instant::now();
    let keys = Keys::new("c12").expect("keys");
    let mut kv = client.kv_client();
    loop {
        let left = kv
            .get(
                keys.prefix(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("read")
            .kvs()
            .iter()
            .filter(|kv| kv.lease() != 0)
            .count();
        if left == 0 {
            break;
        }
        assert!(cut.elapsed() < LIMIT, "leases never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "both cut off: every key under their leases gone from etcd {:?} after the cut",
        cut.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(owned(&a), had_a, "i1 keeps its bots on i2's word");
    assert!(a.session().borrow().extended && b.session().borrow().extended);

    // i2 comes back: its lease is gone, it answers "reachable" at once;
    // i1 stops within C; i2 claims only after its grace.
    pb.heal();
    let healed = Instant::now();
    wait_for("i1 drops its bots", LIMIT, || owned(&a).is_empty()).await;
    let dropped = healed.elapsed();
    wait_for("i2 owns every bot", LIMIT, || owned(&b).len() == bots.len()).await;
    let taken = healed.elapsed();
    let regained = b.store_contact().expect("contact");
    assert!(regained.reachable);
    let first_claim = claims(&b)
        .into_iter()
        .filter(|e| e.at > healed)
        .map(|e| e.at)
        .min()
        .expect("i2 claimed after the heal");
    println!(
        "owners cut off {:?}: after i2 healed, i1 stopped in {dropped:?}, i2 claimed from {:?} \
         (grace {grace:?} from its regain {:?} after the heal)",
        healed.duration_since(cut),
        first_claim.duration_since(healed),
        regained.since.saturating_duration_since(healed)
    );
    assert!(
        first_claim >= regained.since + grace,
        "claimed within the grace"
    );
    assert!(dropped < taken);
    check_local_exclusive(&[a.ownership_history(), b.ownership_history()]).expect("no overlap");
    let changes = owner_changes(&client, "c12").await.expect("history");
    check_owner_history(&changes).expect("etcd owner history");
    drop(sampler);
}
