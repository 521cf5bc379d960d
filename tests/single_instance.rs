//! One `shardgate serve` process against the built-in Bot API emulator,
//! driven through the gRPC API as a user would.
//!
//! Limits are Telegram's official ones unless a test says otherwise (the
//! group test scales the group window down from 60 s to 6 s on both sides so
//! it runs in seconds; the scheduler is time-scale agnostic and its
//! official-limit behaviour is covered by the property tests in
//! `crates/sched`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{
    BOTS, Bot, Gateway, assert_no_429_nor_duplicate, assert_none_failed, scrape, spread_over_chats,
    text_request, wait_for,
};
use shardgate_mock::{ChatState, Faults, Limits, MockConfig};
use shardgate_proto::v1::{SendRequest, SendResponse};
use tokio_stream::StreamExt;
use tonic::Code;

/// Sends `reqs` over one SendStream to `gw` and collects every response.
async fn stream_all(gw: &Gateway, reqs: Vec<SendRequest>) -> Vec<SendResponse> {
    common::stream_all(&mut gw.client().await, reqs).await
}

fn assert_all_delivered(responses: &[SendResponse], expected: usize) {
    assert_eq!(responses.len(), expected, "one response per request");
    assert_none_failed(responses);
    let refs: HashSet<&str> = responses.iter().map(|r| r.client_ref.as_str()).collect();
    assert_eq!(refs.len(), expected, "every client_ref answered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_500_messages_over_100_chats_and_3_bots_without_a_429() {
    let gw = Gateway::with_config("").await;
    let reqs = spread_over_chats(500, 100, 1_000, "m", "r");
    let started = std::time::Instant::now();
    let responses = stream_all(&gw, reqs).await;
    let took = started.elapsed();
    assert_all_delivered(&responses, 500);
    assert_no_429_nor_duplicate(&gw.control, Some(500));
    // Every bot took a share.
    let mut per_bot: BTreeMap<String, usize> = BTreeMap::new();
    for r in &responses {
        *per_bot.entry(r.bot.clone()).or_default() += 1;
    }
    assert_eq!(per_bot.len(), 3, "{per_bot:?}");
    // Per chat, message order is kept (FIFO per chat and user).
    let deliveries = gw.control.deliveries(0);
    let mut last: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &deliveries {
        let i: usize = d.text[1..].parse().expect("text is m<i>");
        if let Some(prev) = last.insert(d.chat_id, i) {
            assert!(prev < i, "chat {} got m{i} after m{prev}", d.chat_id);
        }
    }
    eprintln!("500 messages over 100 chats and 3 bots delivered in {took:?}: {per_bot:?}");
    gw.assert_no_token_in_logs(&BOTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_30_into_one_group_arrives_in_order_without_a_429() {
    // Group window scaled from 60 s to 6 s, per-chat rate from 1/s to 10/s,
    // on the emulator and (with our margins) on the gateway.
    let mock = MockConfig {
        limits: Some(Limits {
            chat_rate_per_s: 10.0,
            group_window: Duration::from_secs(6),
            ..Limits::official()
        }),
        ..MockConfig::default()
    };
    let config = "[limits]\nchat_rate = 9.0\ngroup_window_secs = 6\n";
    let gw = Gateway::start(mock, &BOTS, config).await;
    let group = -1_001_000_000_001;
    let reqs: Vec<SendRequest> = (0..30)
        .map(|i| text_request(group, 77, format!("g{i:02}"), format!("g{i}")))
        .collect();
    let started = std::time::Instant::now();
    let responses = stream_all(&gw, reqs).await;
    let took = started.elapsed();
    assert_all_delivered(&responses, 30);
    let stats = gw.control.stats();
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    let texts: Vec<String> = gw
        .control
        .deliveries(0)
        .into_iter()
        .map(|d| d.text)
        .collect();
    let expected: Vec<String> = (0..30).map(|i| format!("g{i:02}")).collect();
    assert_eq!(texts, expected, "delivered in order");
    // 20 fit the first window; the other 10 had to wait for the next one.
    assert!(
        took >= Duration::from_secs(6),
        "the group limit was not applied: {took:?}"
    );
    eprintln!("30-message group burst delivered in order in {took:?}");
    gw.assert_no_token_in_logs(&BOTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_revoked_mid_stream_loses_nothing_and_sees_one_401() {
    // One request in flight per bot, so exactly one request meets the revoked token.
    let gw = Gateway::with_config("[limits]\nmax_in_flight = 1\n").await;
    let victim = BOTS[1];
    let total = 600usize;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let mut client = gw.client().await;
    let responses = client
        .send_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let control = gw.control.clone();
    let producer = tokio::spawn(async move {
        for i in 0..total {
            let chat = 2_000 + (i % 300) as i64;
            if i == total / 2 {
                control.revoke(victim.id);
            }
            tx.send(text_request(chat, chat, format!("m{i}"), format!("r{i}")))
                .await
                .expect("send");
            if i % 60 == 59 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let got = common::collect(responses).await;
    producer.await.expect("producer");
    assert_all_delivered(&got, total);
    let stats = gw.control.stats();
    assert_eq!(
        stats.bot(victim.id).unauthorized,
        1,
        "the revoked token saw exactly one 401"
    );
    assert_no_429_nor_duplicate(&gw.control, Some(total as u64));
    let status = gw.status().await;
    let state = status
        .bots
        .iter()
        .find(|b| b.name == victim.name)
        .map(|b| b.state.clone());
    assert_eq!(state.as_deref(), Some("revoked"));
    gw.assert_no_token_in_logs(&BOTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_xx_and_dropped_connections_still_deliver_exactly_once() {
    let mock = MockConfig {
        faults: Faults {
            error_5xx: 0.2,
            drop: 0.05,
            latency_ms: (0, 2),
            ..Faults::default()
        },
        ..MockConfig::default()
    };
    // Retries go on until the message's deadline; short pauses keep it quick.
    let config = "[telegram]\nbackoff_base_ms = 10\nbackoff_max_ms = 200\n";
    let gw = Gateway::start(mock, &BOTS, config).await;
    let reqs = spread_over_chats(300, 100, 3_000, "f", "f");
    let responses = stream_all(&gw, reqs).await;
    assert_all_delivered(&responses, 300);
    let stats = gw.control.stats();
    assert!(
        stats.totals.injected_5xx > 20,
        "faults were injected: {:?}",
        stats.totals
    );
    assert!(
        stats.totals.injected_drops > 3,
        "drops were injected: {:?}",
        stats.totals
    );
    // Each message delivered once.
    assert_no_429_nor_duplicate(&gw.control, Some(300));
    let retried = responses.iter().filter(|r| r.attempts > 1).count();
    assert!(retried > 0);
    eprintln!(
        "faults: {} 5xx, {} drops; {retried} messages needed retries",
        stats.totals.injected_5xx, stats.totals.injected_drops
    );
    gw.assert_no_token_in_logs(&BOTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_spec_status_codes() {
    let gw = Gateway::with_config("").await;
    gw.control.set_chat(66, ChatState::Blocked);
    gw.control.set_chat(67, ChatState::Missing);
    let mut client = gw.client().await;
    let cases: Vec<(&str, SendRequest, Code)> = vec![
        (
            "chat_id 0",
            text_request(0, 0, "hi", ""),
            Code::InvalidArgument,
        ),
        (
            "empty text",
            text_request(1, 1, "", ""),
            Code::InvalidArgument,
        ),
        (
            "text over 4096",
            text_request(1, 1, "x".repeat(4097), ""),
            Code::InvalidArgument,
        ),
        (
            "bad parse_mode",
            SendRequest {
                parse_mode: "XML".into(),
                ..text_request(1, 1, "hi", "")
            },
            Code::InvalidArgument,
        ),
        (
            "unknown pinned bot",
            SendRequest {
                bot: "nope".into(),
                ..text_request(1, 1, "hi", "")
            },
            Code::InvalidArgument,
        ),
        (
            "bot blocked by the user (403)",
            text_request(66, 66, "hi", ""),
            Code::FailedPrecondition,
        ),
        (
            "chat not found (400)",
            text_request(67, 67, "hi", ""),
            Code::FailedPrecondition,
        ),
    ];
    for (what, req, code) in cases {
        let err = client.send(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(!err.message().is_empty(), "{what}: a clear message");
    }
    // And a good one still goes through on the same connection.
    let ok = client
        .send(text_request(1, 1, "hi", "ok"))
        .await
        .expect("valid send")
        .into_inner();
    assert!(ok.message_id > 0);
    gw.assert_no_token_in_logs(&BOTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_answers_deadline_exceeded_and_the_message_is_not_sent_later() {
    let gw = Gateway::with_config("").await;
    let mut client = gw.client().await;
    let chat = 4_242;
    // Three go at once (the burst); the fourth must wait about 1.1 s.
    for i in 0..3 {
        client
            .send(text_request(chat, chat, format!("b{i}"), ""))
            .await
            .expect("burst");
    }
    let mut req = tonic::Request::new(text_request(chat, chat, "late", ""));
    req.set_timeout(Duration::from_millis(200));
    let err = client.send(req).await.expect_err("deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // FIFO per chat: once a later message is delivered, the expired one
    // would have gone first if it had been sent.
    client
        .send(text_request(chat, chat, "after", ""))
        .await
        .expect("after");
    let texts: Vec<String> = gw
        .control
        .deliveries(0)
        .into_iter()
        .map(|d| d.text)
        .collect();
    assert_eq!(texts, vec!["b0", "b1", "b2", "after"]);
}

/// An error answer must mean "not sent": a message already at Telegram
/// when its deadline passes is answered with that attempt's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_flight_at_its_deadline_is_answered_with_its_outcome() {
    let mock = MockConfig {
        faults: Faults {
            latency_ms: (400, 400),
            ..Faults::default()
        },
        ..MockConfig::default()
    };
    let gw = Gateway::start(mock, &BOTS, "").await;
    let mut client = gw.client().await;
    // Warm up (connections, first requests), without a deadline, then let
    // the take-over warm-up pass (a fresh dispatcher starts every chat with
    // an empty bucket for one refill time, 3.3 s), so the next send goes at once.
    client
        .send(text_request(4_343, 4_343, "warm-up", ""))
        .await
        .expect("warm-up delivered");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let mut req = text_request(4_344, 4_344, "slow answer", "");
    req.timeout_ms = 100;
    let started = std::time::Instant::now();
    let answer = client.send(req).await;
    let took = started.elapsed();
    eprintln!("in flight at the deadline: answered after {took:?}");
    // Whatever was answered, the emulator has answered by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let copies = gw
        .control
        .deliveries(0)
        .iter()
        .filter(|d| d.text == "slow answer")
        .count();
    match answer {
        Ok(r) => {
            assert!(r.into_inner().message_id > 0);
            assert_eq!(copies, 1);
            assert!(
                took >= Duration::from_millis(350),
                "answered after {took:?}"
            );
        }
        Err(e) => panic!(
            "answered {:?} after {took:?}; the emulator delivered {copies} cop(ies)\n{}",
            e.code(),
            gw.logs()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_is_not_delivered_twice() {
    let gw = Gateway::with_config("").await;
    let mut client = gw.client().await;
    let req = SendRequest {
        idempotency_key: "order-17-shipped".into(),
        ..text_request(5_000, 5_000, "Order 17 shipped", "a")
    };
    let first = client.send(req.clone()).await.expect("first").into_inner();
    let second = client.send(req).await.expect("retry").into_inner();
    assert_eq!(first.message_id, second.message_id);
    assert!(second.deduplicated && !first.deduplicated);
    assert_eq!(gw.control.stats().totals.delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_group_is_resent_to_the_supergroup() {
    let gw = Gateway::with_config("").await;
    gw.control.set_chat(
        -55,
        ChatState::Migrated {
            to: -1_000_000_000_055,
        },
    );
    let mut client = gw.client().await;
    let r = client
        .send(text_request(-55, 1, "hello group", ""))
        .await
        .expect("resent")
        .into_inner();
    assert_eq!(r.chat_id, -1_000_000_000_055);
    assert_eq!(r.attempts, 2);
    // The next one goes straight to the new id.
    let r = client
        .send(text_request(-55, 1, "again", ""))
        .await
        .expect("sent")
        .into_inner();
    assert_eq!((r.chat_id, r.attempts), (-1_000_000_000_055, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_429_throttles_the_bot_which_returns_by_itself() {
    // Threshold lowered to 1 s so a 2 s throttle counts as bot-wide.
    let gw = Gateway::with_config("[limits]\nbot_throttle_threshold_secs = 1\n").await;
    let victim = BOTS[2];
    gw.control
        .throttle(victim.id, 2, Some(Duration::from_secs(2)));
    let reqs = spread_over_chats(90, 90, 6_000, "t", "t");
    let responses = stream_all(&gw, reqs).await;
    assert_all_delivered(&responses, 90);
    let forced = gw.control.stats().bot(victim.id).rate_limited_forced;
    assert!(forced >= 1, "the throttle was hit");
    assert!(
        forced <= 64,
        "no more requests than were in flight: {forced}"
    );
    let status = gw.status().await;
    let bot = status
        .bots
        .iter()
        .find(|b| b.name == victim.name)
        .expect("listed");
    assert_eq!(bot.state, "throttled");
    assert!(bot.cooldown_until > 0);
    // It comes back once the cooldown (2 s x 1.1) ends.
    let back = wait_for(Duration::from_secs(10), || async {
        gw.status()
            .await
            .bots
            .iter()
            .any(|b| b.name == victim.name && b.state == "healthy")
    })
    .await;
    assert!(back.is_some(), "the bot did not come back");
    let r = gw
        .client()
        .await
        .send(SendRequest {
            bot: victim.name.into(),
            ..text_request(7_000, 7_000, "pinned", "")
        })
        .await
        .expect("pinned send after the throttle")
        .into_inner();
    assert_eq!(r.bot, victim.name);
    gw.assert_no_token_in_logs(&BOTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_a_token_and_the_old_one_is_not_used_again() {
    let gw = Gateway::with_config("").await;
    let mut client = gw.client().await;
    let pin = |i: usize| SendRequest {
        bot: "alpha".into(),
        ..text_request(8_000 + i as i64, 1, format!("p{i}"), "")
    };
    for i in 0..5 {
        client.send(pin(i)).await.expect("before rotation");
    }
    // alpha gets the token of a new bot account (id 5_000_009).
    let rotated = [
        Bot {
            name: "alpha",
            id: 5_000_009,
        },
        BOTS[1],
        BOTS[2],
    ];
    std::fs::write(gw.bots_file(), common::bots_toml(&rotated)).expect("rewrite");
    gw.hup();
    let took = wait_for(Duration::from_secs(10), || async {
        gw.status()
            .await
            .bots
            .iter()
            .any(|b| b.name == "alpha" && b.token_redacted == "5000009:***")
    })
    .await
    .expect("rotation applied");
    let mark = gw.control.stats().last_seq;
    for i in 5..10 {
        let r = client
            .send(pin(i))
            .await
            .expect("after rotation")
            .into_inner();
        assert_eq!(r.bot, "alpha");
    }
    let after = gw.control.deliveries(mark);
    assert_eq!(after.len(), 5);
    assert!(
        after.iter().all(|d| d.bot_id == 5_000_009),
        "old token used after rotation"
    );
    eprintln!("rotation applied {took:?} after SIGHUP");
    gw.assert_no_token_in_logs(&rotated);
    gw.assert_no_token_in_logs(&BOTS);
}

/// The services that reflection version `$v` (`v1`, `v1alpha`) lists on
/// `$channel`.
macro_rules! listed_services {
    ($v:ident, $channel:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .expect("reflection")
            .into_inner();
        let first = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("unexpected reflection answer");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_serving_and_reflection_lists_the_service() {
    let gw = Gateway::with_config("").await;
    let channel = gw.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shardgate.v1.Gateway".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Both reflection versions: v1, and v1alpha that many tools still speak.
    for names in [
        listed_services!(v1, channel.clone()),
        listed_services!(v1alpha, channel.clone()),
    ] {
        assert!(
            names.iter().any(|n| n == "shardgate.v1.Gateway"),
            "{names:?}"
        );
    }

    // SIGTERM stops it cleanly.
    let status = gw.terminate();
    assert!(status.success(), "exit status {status:?}");
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_after_sends_a_429_and_a_revoke() {
    let gw = Gateway::start(
        MockConfig::default(),
        &BOTS,
        "metrics_listen = \"127.0.0.1:0\"\n",
    )
    .await;
    let addr = gw.metrics.expect("metrics address printed");
    let mut client = gw.client().await;
    for i in 0..10 {
        client
            .send(text_request(9_000 + i, 9_000 + i, format!("m{i}"), ""))
            .await
            .expect("send");
    }
    // A short forced 429 on every bot: counted as a chat-scope 429, retried.
    for b in BOTS {
        gw.control
            .throttle(b.id, 1, Some(Duration::from_millis(300)));
    }
    client
        .send(text_request(9_100, 9_100, "after a 429", ""))
        .await
        .expect("retried");
    // Revoke one bot and send until it has met the revoked token.
    gw.control.revoke(BOTS[0].id);
    let revoked = wait_for(Duration::from_secs(20), || async {
        let mut c = gw.client().await;
        let _ = c
            .send(SendRequest {
                bot: BOTS[0].name.into(),
                allow_failover: true,
                ..text_request(9_200, 9_200, "x", "")
            })
            .await;
        gw.status()
            .await
            .bots
            .iter()
            .any(|b| b.name == BOTS[0].name && b.state == "revoked")
    })
    .await;
    assert!(revoked.is_some());
    let text = scrape(addr).await;
    assert!(text.contains("200 OK"), "{text}");
    assert!(
        metric(&text, "shardgate_messages_delivered_total") >= 11.0,
        "{text}"
    );
    assert!(
        metric(&text, "shardgate_telegram_429_total") >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "shardgate_telegram_errors_total{bot=\"alpha\",kind=\"unauthorized\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "shardgate_bot_state{bot=\"alpha\",state=\"revoked\"}"
        ),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("shardgate_queue_wait_seconds_bucket"),
        "latency histograms"
    );
    for b in BOTS {
        assert!(!text.contains(&common::secret(b.id)), "token in metrics");
    }
    gw.assert_no_token_in_logs(&BOTS);
}
