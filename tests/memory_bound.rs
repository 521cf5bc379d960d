//! The byte bound holds in the process's memory, not only in its books:
//! 4,000-character messages pushed into one slow group (20 a minute) until
//! the gateway answers `RESOURCE_EXHAUSTED`, with the daemon's resident
//! memory (VmRSS from /proc) read before and after. Messages may wait a day,
//! so the admission check (which refuses what would miss its deadline)
//! leaves the byte bound to answer.

mod common;

use std::time::Duration;

use common::{Gateway, text_request};
use shardgate_proto::v1::SendRequest;
use tokio_stream::StreamExt;

/// The instance's byte bound in this test.
const BOUND: u64 = 32 * 1024 * 1024;
const TEXT_CHARS: usize = 4_000;

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_character_messages_into_a_slow_group_stop_at_the_bound_in_rss() {
    let config = format!(
        "[limits]\nqueue_bytes_max = {BOUND}\nqueue_max = 1000000\nchat_queue_max = 1000000\nstream_pending_max = 1000000\n\
         [telegram]\nmax_message_age_secs = 86400\n"
    );
    let gw = Gateway::with_config(&config).await;
    let mut client = gw.client().await;
    let text = "x".repeat(TEXT_CHARS);
    // Warm up: connections, the bot's dispatcher, the allocator's arenas.
    for i in 0..20 {
        common::send(
            &mut client,
            None,
            text_request(9_000 + i, 1, text.clone(), "warm"),
        )
        .await
        .expect("warm-up send");
    }
    let before = rss(gw.pid());

    let group = -100_777_000_i64;
    let (tx, rx) = tokio::sync::mpsc::channel::<SendRequest>(1024);
    let mut answers = client
        .send_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let push = tokio::spawn(async move {
        let mut sent = 0u64;
        // Far more than the bound holds: the gateway must refuse first.
        for i in 0..(4 * BOUND / TEXT_CHARS as u64) {
            let req = text_request(group, 1, text.clone(), format!("m{i}"));
            if tx.send(req).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut accepted_before_refusal = 0u64;
    let refused = loop {
        let answer = tokio::time::timeout(Duration::from_secs(120), answers.next())
            .await
            .expect("answers keep coming");
        match answer {
            Some(Ok(r)) => match r.error {
                Some(e) if e.code == "RESOURCE_EXHAUSTED" => break e,
                Some(e) => panic!("unexpected failure: {e:?}"),
                None => accepted_before_refusal += 1,
            },
            Some(Err(status)) => panic!("stream failed: {status}"),
            None => panic!("the stream ended without a refusal"),
        }
    };
    let after = rss(gw.pid());
    push.abort();
    let growth = after.saturating_sub(before);
    println!(
        "{accepted_before_refusal} messages queued; RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB) \
         with queue_bytes_max {} MiB; refusal: {}",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        BOUND / 1048576,
        refused.description
    );
    assert!(
        refused.description.contains("queue") || refused.description.contains("bytes"),
        "{refused:?}"
    );
    // Queued messages hold at most BOUND bytes of text and bookkeeping; the
    // process may add HTTP/2 buffers and allocator slack on top, not a
    // multiple of the bound.
    let limit = BOUND + BOUND / 2 + 16 * 1024 * 1024;
    assert!(
        growth <= limit,
        "RSS grew by {growth} bytes, over {limit} for a {BOUND}-byte bound"
    );
}
