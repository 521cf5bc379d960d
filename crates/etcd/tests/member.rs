//! The member key against a real etcd: created only if absent, so a second
//! instance started with an instance id already in use is refused with an
//! error that says so, and starts once the first one has gone.

mod common;

use std::time::Duration;

use common::*;
use shardgate_etcd::{EtcdError, EtcdRegistry};
use shardgate_registry::Registry;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_id_is_refused_until_the_first_has_gone() {
    let server = etcd().await;
    let first = start(config(&server.endpoint(), "m1", "same")).await;
    let mut cfg = config(&server.endpoint(), "m1", "same");
    cfg.start_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = match EtcdRegistry::start(cfg.clone()).await {
        Ok(_) => panic!("two members under one instance id"),
        Err(e) => e,
    };
    println!("clash refused after {:?}: {err}", started.elapsed());
    assert!(matches!(err, EtcdError::MemberClash { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("instance id \"same\" is taken"), "{text}");
    assert!(text.contains("--instance-id"), "{text}");
    // The first one still holds its key (nothing was put over it).
    assert_eq!(first.fleet().borrow().members.len(), 1);
    first.shutdown().await;
    let second = EtcdRegistry::start(cfg)
        .await
        .expect("starts once the first has gone");
    assert!(second.wait_settled(Duration::from_secs(20)).await);
    second.shutdown().await;
}
