//! SIGTERM with a backlog: the drain starts at the signal, so the daemon
//! exits within 30 s (Kubernetes' default grace period) whatever waits in
//! its queues, and every unary Send still queued gets an answer that says
//! it was not sent, instead of holding the process until a group window
//! frees it.

mod common;

use std::time::Duration;

use common::{BOTS, Gateway, text_request};
use shardgate_mock::MockConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_group_backlog_exits_within_30_s_and_answers_every_queued_send() {
    let gw = Gateway::start(MockConfig::default(), &BOTS[..1], "").await;
    let group = -100_555_000_i64;
    // 20 go out in the group's first minute; the other 10 wait a minute
    // behind its window, each a unary Send without a deadline.
    let mut calls = Vec::new();
    for i in 0..30 {
        let mut client = gw.client().await;
        calls.push(tokio::spawn(async move {
            client
                .send(text_request(group, 1, format!("g{i}"), format!("r{i}")))
                .await
        }));
    }
    // Wait until 20 went out and the rest sit in the bot's queue.
    let mut backlog = 0;
    for _ in 0..400 {
        let queued: u64 = gw.status().await.bots.iter().map(|b| b.queue_depth).sum();
        let delivered = gw.control.stats().totals.delivered;
        if delivered >= 20 && queued + delivered >= 30 {
            backlog = queued;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(backlog > 0, "a backlog behind the group window");

    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .expect("terminate");
    let took = started.elapsed();
    println!(
        "exited {took:?} after SIGTERM with {backlog} messages behind a group window: {status}"
    );
    assert!(status.success(), "clean exit: {status}");
    assert!(took < Duration::from_secs(30), "took {took:?}");

    let mut sent = 0;
    let mut not_sent = Vec::new();
    for call in calls {
        match call.await.expect("call task") {
            Ok(_) => sent += 1,
            Err(status) => not_sent.push(status),
        }
    }
    println!(
        "{sent} sent, {} answered not sent: {:?}",
        not_sent.len(),
        not_sent.first().map(|s| (s.code(), s.message().to_owned()))
    );
    assert_eq!(sent + not_sent.len(), 30, "every call answered");
    assert!(sent >= 20, "the first window went out");
    assert!(!not_sent.is_empty(), "the backlog cannot have gone out");
    for s in &not_sent {
        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
    }
}
