//! One `shardgate serve` process against the emulator: what the Bot API side
//! and operators see of it (its `User-Agent`, its instance id).

mod common;

use common::{BOTS, Gateway, text_request};
use shardgate_mock::MockConfig;

/// Every Bot API request says which instance sent it, so that the Bot API
/// side (and the drills) can tell instances apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bot_api_request_carries_the_version_and_instance_id_in_its_user_agent() {
    let gw = Gateway::start(MockConfig::default(), &BOTS, "instance_id = \"gw-ua-1\"\n").await;
    let mut client = gw.client().await;
    for chat in 1..=6 {
        client
            .send(text_request(chat, chat, format!("ua {chat}"), ""))
            .await
            .expect("delivered");
    }
    let stats = gw.control.stats();
    let want = format!("shardgate/{} (gw-ua-1)", env!("CARGO_PKG_VERSION"));
    println!(
        "User-Agents at the emulator: {:?}",
        stats.totals.user_agents
    );
    assert_eq!(
        stats.totals.user_agents.get(&want).copied(),
        Some(stats.totals.requests),
        "every request carries {want:?}: {:?}",
        stats.totals.user_agents
    );
    assert!(stats.totals.requests >= 6);
}

/// Without `--instance-id`, the id names the host and the gRPC port, so two
/// hosts never share one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_instance_id_is_the_host_name_and_the_port() {
    let gw = Gateway::start(MockConfig::default(), &BOTS, "").await;
    let id = gw.status().await.instance_id;
    let suffix = format!("-{}", gw.addr.port());
    println!("default instance id: {id}");
    assert!(id.ends_with(&suffix), "{id}");
    assert!(id.len() > suffix.len(), "{id}");
    assert!(
        !id.starts_with("shardgate-"),
        "a host name, not a fixed prefix: {id}"
    );
}
