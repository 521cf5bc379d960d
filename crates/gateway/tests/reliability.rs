//! What a hostile network does to the gateway, in process: the emulator on a
//! loopback port answering with faults, and a gateway on the embedded
//! registry driven through its Rust API or over gRPC.
//!
//! Real time on loopback (a paused clock would fire the HTTP client's
//! timeouts while a request waits on the socket); every bound is generous
//! and each test prints what it measured.

mod common;

use std::time::Duration;

use common::{message, start};
use shardgate_gateway::GatewayConfig;
use shardgate_mock::{Faults, MockConfig};
use shardgate_proto::v1 as pb;
use tokio::time::Instant;

/// Transient failures are retried until the message's deadline, not a fixed
/// number of times: with 60% of the answers 502, six attempts lose about one
/// message in twenty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_percent_502s_still_deliver_100_messages_exactly_once_within_their_deadline() {
    let (mock, local) = start(
        MockConfig {
            faults: Faults {
                error_5xx: 0.6,
                ..Faults::default()
            },
            ..MockConfig::default()
        },
        3,
        GatewayConfig::default(),
    )
    .await;
    let started = Instant::now();
    let sends = (1..=100).map(|chat| {
        local.gateway.send(
            message(chat, format!("m{chat}"), Some(Duration::from_secs(60))),
            None,
        )
    });
    let outcomes = futures::future::join_all(sends).await;
    let took = started.elapsed();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(ToString::to_string))
        .collect();
    let attempts: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|d| d.attempts))
        .collect();
    let stats = mock.control().stats();
    println!(
        "60% 502s: {} of 100 delivered in {took:?}, at most {} attempts for one message; \
         emulator: {} requests, {} injected 5xx, {} delivered, {} duplicates",
        attempts.len(),
        attempts.iter().max().copied().unwrap_or(0),
        stats.totals.requests,
        stats.totals.injected_5xx,
        stats.totals.delivered,
        stats.totals.duplicates,
    );
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(stats.totals.delivered, 100);
    assert_eq!(stats.totals.duplicates, 0);
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

fn request(chat_id: i64, n: usize) -> pb::SendRequest {
    pb::SendRequest {
        chat_id,
        user_id: chat_id,
        text: format!("s{n}"),
        client_ref: format!("r{n}"),
        ..pb::SendRequest::default()
    }
}

/// A stream the gateway stops reading ends with a non-OK status that says
/// how many requests it read, and every one of those was answered: the
/// client knows exactly which requests to send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_a_stop_ends_unavailable_saying_how_many_requests_were_read() {
    let (mock, local) = start(MockConfig::default(), 2, GatewayConfig::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", local.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = pb::gateway_client::GatewayClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut responses = client
        .send_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    // 20 requests to 4 chats (5 each: the last ones wait for their chat's
    // bucket), read before the stop.
    for n in 0..20 {
        tx.send(request(1 + (n % 4) as i64, n)).await.expect("send");
    }
    let mut answered = Vec::new();
    while answered.len() < 3 {
        let r = responses.message().await.expect("answer").expect("open");
        answered.push(r.client_ref);
    }
    local.gateway.begin_shutdown();
    // Sent after the stop: never read.
    for n in 20..30 {
        if tx.send(request(9, n)).await.is_err() {
            break;
        }
    }
    let end = loop {
        match responses.message().await {
            Ok(Some(r)) => {
                assert!(r.error.is_none(), "{r:?}");
                answered.push(r.client_ref);
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    println!(
        "stream after a stop: {} answered, end: {end:?}",
        answered.len()
    );
    let status = end.expect("the stream ends with an error status, not OK");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("the stream was closed after 20 requests"),
        "{status:?}"
    );
    let read: u64 = status
        .metadata()
        .get("shardgate-requests-read")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("the count of requests read, machine-readable");
    assert_eq!(read, 20);
    answered.sort();
    let mut want: Vec<String> = (0..20).map(|n| format!("r{n}")).collect();
    want.sort();
    assert_eq!(answered, want, "every request read was answered");
    assert_eq!(mock.control().stats().totals.delivered, 20);
    drop(tx);
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}
