//! What an `idempotency_key` promises, end to end against the emulator on
//! a loopback port: a key belongs to its caller and its request's content,
//! and a message that may have reached Telegram is answered so (and stays
//! so on a retry) instead of "not sent".
//!
//! Real time on loopback (a paused clock would fire the HTTP client's
//! timeouts while a request waits on the socket); bounds are generous.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{message, start};
use shardgate_gateway::callers::Admission;
use shardgate_gateway::error::MAYBE_SENT_PREFIX;
use shardgate_gateway::{Body, GatewayConfig, Message, SendError};
use shardgate_mock::{Faults, MockConfig};
use tokio::time::Instant;
use tonic::Code;

fn keyed(chat_id: i64, text: &str, key: &str) -> Message {
    Message {
        idempotency_key: Some(key.into()),
        ..message(chat_id, text.into(), None)
    }
}

/// A deadline `secs` from now.
fn within(secs: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(secs))
}

/// Every request is read and its connection closed without an answer: the
/// gateway retries until the deadline and then cannot say "not sent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_up_after_unanswered_requests_is_maybe_sent_and_a_retry_sends_nothing() {
    let (mock, local) = start(
        MockConfig {
            faults: Faults {
                drop: 1.0,
                ..Faults::default()
            },
            ..MockConfig::default()
        },
        1,
        GatewayConfig::default(),
    )
    .await;
    let first = local
        .gateway
        .send(keyed(5, "hello", "order-1"), within(2))
        .await;
    let Err(err) = first else {
        panic!("every connection dropped, yet delivered: {first:?}");
    };
    println!("answer: {err}");
    assert_eq!(err.code(), Code::Unknown, "{err}");
    assert!(err.to_string().starts_with(MAYBE_SENT_PREFIX), "{err}");
    assert!(matches!(err, SendError::MaybeSent(_)));

    // Telegram is fine again; the retry must not send what may be there.
    mock.control().set_faults(None, Faults::default());
    let before = mock.control().stats().totals.requests;
    let retry = local
        .gateway
        .send(keyed(5, "hello", "order-1"), within(2))
        .await;
    assert_eq!(retry, Err(err), "the retry gets the same answer");
    assert_eq!(
        mock.control().stats().totals.requests,
        before,
        "and no request"
    );
    // Another key is sent as usual.
    let other = local.gateway.send(keyed(5, "hello", "order-2"), None).await;
    assert!(other.is_ok(), "{other:?}");
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

/// A 5xx is Telegram's answer ("not done"): giving up on it stays "not
/// sent" (`UNAVAILABLE`, or `DEADLINE_EXCEEDED` when the deadline meets
/// the message between retries), and a retry sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_up_after_5xx_only_is_not_sent_and_a_retry_sends() {
    let (mock, local) = start(
        MockConfig {
            faults: Faults {
                error_5xx: 1.0,
                ..Faults::default()
            },
            ..MockConfig::default()
        },
        1,
        GatewayConfig::default(),
    )
    .await;
    let first = local.gateway.send(keyed(5, "hi", "k"), within(2)).await;
    assert!(
        matches!(
            first,
            Err(SendError::Unavailable(_) | SendError::DeadlineExceeded)
        ),
        "not sent: {first:?}"
    );
    mock.control().set_faults(None, Faults::default());
    let retry = local.gateway.send(keyed(5, "hi", "k"), within(10)).await;
    assert!(
        retry.as_ref().is_ok_and(|d| !d.deduplicated),
        "sent on the retry: {retry:?}"
    );
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_request_is_refused_and_nothing_is_sent() {
    let (mock, local) = start(MockConfig::default(), 2, GatewayConfig::default()).await;
    let first = local
        .gateway
        .send(keyed(5, "invoice 1 paid", "k"), None)
        .await
        .expect("delivered");
    let again = local
        .gateway
        .send(keyed(5, "invoice 1 paid", "k"), None)
        .await
        .expect("answered");
    assert!(again.deduplicated);
    assert_eq!(again.message_id, first.message_id);
    for other in [
        keyed(5, "invoice 2 paid", "k"),
        keyed(6, "invoice 1 paid", "k"),
        Message {
            body: Body::text("invoice 1 paid!"),
            ..keyed(5, "", "k")
        },
    ] {
        let got = local.gateway.send(other, None).await;
        let Err(e) = got else {
            panic!("another request under a used key was answered: {got:?}");
        };
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.to_string()
                .contains("idempotency_key was used for another request"),
            "{e}"
        );
    }
    assert_eq!(
        mock.control().stats().totals.delivered,
        1,
        "nothing else sent"
    );
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_using_one_key_string_each_get_their_own_message() {
    let (mock, local) = start(MockConfig::default(), 2, GatewayConfig::default()).await;
    let send_as = |caller: &str, text: &str| {
        let admission = Admission {
            caller: Some(Arc::from(caller)),
            ..Admission::default()
        };
        local
            .gateway
            .submit_admitted(keyed(5, text, "order-17"), None, admission, false)
            .wait(None)
    };
    let a = send_as("billing", "billing: paid")
        .await
        .expect("delivered");
    let b = send_as("shipping", "shipping: sent")
        .await
        .expect("delivered");
    assert!(!a.deduplicated && !b.deduplicated);
    assert_ne!(a.message_id, b.message_id);
    let a2 = send_as("billing", "billing: paid").await.expect("answered");
    assert!(a2.deduplicated);
    assert_eq!(a2.message_id, a.message_id);
    assert_eq!(mock.control().stats().totals.delivered, 2);
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}
