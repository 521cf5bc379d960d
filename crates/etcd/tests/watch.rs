//! The etcd registry's view of the cluster against a real etcd: puts and
//! deletes show in the fleet, malformed values are skipped and logged, and
//! the watch survives an etcd restart and a compaction.

mod common;

use std::time::Duration;

use common::*;
use shardgate_etcd::Keys;
use shardgate_etcd::testing::Proxy;
use shardgate_registry::{BotState, Registry};

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_reflects_puts_and_deletes() {
    let server = etcd().await;
    let client = server.client().await;
    let keys = Keys::new("w1").expect("cluster");
    seed_bots(&client, "w1", 2).await;
    let reg = start(config(&server.endpoint(), "w1", "i1")).await;
    let f = fleet(&reg);
    assert_eq!(f.bots.len(), 2, "bots read at start");
    assert_eq!(f.members.len(), 1);
    assert_eq!(f.members[0].grpc, "i1.test:50051");

    let mut kv = client.kv_client();
    kv.put(
        keys.bot("late"),
        format!(r#"{{"token":"{}"}}"#, token(9)),
        None,
    )
    .await
    .expect("put");
    let took = wait_for("new bot in the fleet", LIMIT, || {
        fleet(&reg).bots.contains_key("late")
    })
    .await;
    println!("put -> fleet: {took:?}");
    kv.put(
        keys.health("late"),
        r#"{"state":"revoked","reason":"Unauthorized","instance":"x","at":1}"#,
        None,
    )
    .await
    .expect("put");
    wait_for("health in the fleet", LIMIT, || {
        fleet(&reg)
            .bots
            .get("late")
            .is_some_and(|b| b.state(0) == BotState::Revoked)
    })
    .await;
    kv.put(
        keys.bot("bot-0"),
        format!(r#"{{"token":"{}","enabled":false}}"#, token(0)),
        None,
    )
    .await
    .expect("put");
    wait_for("disabled bot", LIMIT, || {
        fleet(&reg).bots["bot-0"].state(0) == BotState::Disabled
    })
    .await;
    kv.delete(keys.bot("late"), None).await.expect("delete");
    let took = wait_for("deleted bot gone", LIMIT, || {
        !fleet(&reg).bots.contains_key("late")
    })
    .await;
    println!("delete -> fleet: {took:?}");
    assert!(
        wait_settled_ok(&reg).await,
        "ownership settles with one member"
    );
    assert_eq!(owned(&reg).len(), 2);
    reg.shutdown().await;
}

async fn wait_settled_ok(reg: &shardgate_etcd::EtcdRegistry) -> bool {
    reg.wait_settled(LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_values_are_skipped_and_logged() {
    let server = etcd().await;
    let client = server.client().await;
    let keys = Keys::new("w2").expect("cluster");
    let mut kv = client.kv_client();
    seed_bots(&client, "w2", 1).await;
    // Bad JSON, a bad token (which must never be logged), a bad name.
    kv.put(keys.bot("broken"), "{not json", None)
        .await
        .expect("put");
    let leaked = "123456:LEAKYLEAKYLEAKYLEAKYLEAKYLEAKY";
    kv.put(
        keys.bot("badtoken"),
        format!(r#"{{"token":"{leaked}x!"}}"#),
        None,
    )
    .await
    .expect("put");
    kv.put(
        keys.bot("bad name"),
        format!(r#"{{"token":"{}"}}"#, token(3)),
        None,
    )
    .await
    .expect("put");
    kv.put(keys.health("bot-0"), "[]", None).await.expect("put");
    kv.put(keys.member("ghost"), "nope", None)
        .await
        .expect("put");
    let reg = start(config(&server.endpoint(), "w2", "i1")).await;
    let f = fleet(&reg);
    assert_eq!(f.bots.keys().collect::<Vec<_>>(), vec!["bot-0"]);
    assert_eq!(f.bots["bot-0"].state(0), BotState::Healthy);
    assert_eq!(f.members.len(), 1);

    // A good bot turned bad is treated as absent, then comes back.
    kv.put(keys.bot("bot-0"), "{}", None).await.expect("put");
    wait_for("bad value removes the bot", LIMIT, || {
        fleet(&reg).bots.is_empty()
    })
    .await;
    kv.put(
        keys.bot("bot-0"),
        format!(r#"{{"token":"{}"}}"#, token(0)),
        None,
    )
    .await
    .expect("put");
    wait_for("bot back", LIMIT, || fleet(&reg).bots.len() == 1).await;

    let logs = logs();
    for key in [
        "/shardgate/w2/bots/broken",
        "/shardgate/w2/bots/badtoken",
        "/shardgate/w2/bots/bad name",
        "/shardgate/w2/health/bot-0",
        "/shardgate/w2/members/ghost",
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains("malformed") && l.contains(key)),
            "no warning naming {key}:\n{logs}"
        );
    }
    assert!(!logs.contains("LEAKYLEAKY"), "a token reached the log");
    assert!(!logs.contains(&secret(0)), "a token reached the log");
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_an_etcd_restart() {
    let mut server = etcd().await;
    let client = server.client().await;
    let keys = Keys::new("w3").expect("cluster");
    seed_bots(&client, "w3", 2).await;
    let reg = start(config(&server.endpoint(), "w3", "i1")).await;
    assert!(reg.wait_settled(LIMIT).await);

    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await;
    let client = server.client().await;
    let mut kv = client.kv_client();
    kv.put(
        keys.bot("after"),
        format!(r#"{{"token":"{}"}}"#, token(5)),
        None,
    )
    .await
    .expect("put after restart");
    let took = wait_for("change after the restart seen", LIMIT, || {
        fleet(&reg).bots.contains_key("after")
    })
    .await;
    println!("etcd restart: change seen {took:?} after the put");
    let took = wait_for("settled again", LIMIT, || {
        shardgate_etcd::settled(&fleet(&reg), "i1")
    })
    .await;
    println!("etcd restart: ownership settled {took:?} later");
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rereads_after_a_compaction() {
    let server = etcd().await;
    let client = server.client().await;
    let keys = Keys::new("w4").expect("cluster");
    seed_bots(&client, "w4", 2).await;
    // This registry reaches etcd through a proxy we can cut.
    let proxy = Proxy::start(server.client_addr()).await;
    let mut cfg = config(&proxy.endpoint(), "w4", "i1");
    cfg.lease_ttl = Duration::from_secs(30); // the session must outlive the cut
    cfg.handoff_timeout = Duration::from_secs(30);
    let reg = start(cfg).await;
    assert!(reg.wait_settled(LIMIT).await);

    proxy.cut();
    // While cut off: changes, then a compaction past them.
    let mut kv = client.kv_client();
    kv.delete(keys.bot("bot-1"), None).await.expect("delete");
    kv.put(
        keys.bot("fresh"),
        format!(r#"{{"token":"{}"}}"#, token(7)),
        None,
    )
    .await
    .expect("put");
    let rev = kv
        .put(
            keys.bot("fresh2"),
            format!(r#"{{"token":"{}"}}"#, token(8)),
            None,
        )
        .await
        .expect("put")
        .header()
        .map(|h| h.revision())
        .expect("revision");
    kv.compact(rev, None).await.expect("compact");
    // Let the registry notice the dead watch before healing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fleet(&reg).bots.contains_key("bot-1"),
        "still the old state"
    );
    proxy.heal();
    let took = wait_for(
        "state after the compaction",
        Duration::from_secs(20),
        || {
            let f = fleet(&reg);
            !f.bots.contains_key("bot-1")
                && f.bots.contains_key("fresh")
                && f.bots.contains_key("fresh2")
        },
    )
    .await;
    println!("compaction: re-read {took:?} after the partition healed");
    assert!(
        logs().contains("re-read the cluster"),
        "the re-read is logged"
    );
    // And the watch goes on from the re-read.
    kv.put(
        keys.bot("later"),
        format!(r#"{{"token":"{}"}}"#, token(6)),
        None,
    )
    .await
    .expect("put");
    wait_for("watch after the re-read", LIMIT, || {
        fleet(&reg).bots.contains_key("later")
    })
    .await;
    reg.shutdown().await;
}
