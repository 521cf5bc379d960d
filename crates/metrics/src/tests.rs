use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

fn lacks(text: &str, needle: &str) {
    assert!(!text.contains(needle), "unexpected {needle:?} in:\n{text}");
}

#[test]
fn events_show_up_in_the_exposition() {
    let m = Metrics::new();
    m.accepted(Entry::Unary);
    m.accepted(Entry::Stream);
    m.accepted(Entry::Stream);
    let alpha = m.bot("alpha");
    let beta = m.bot("beta");
    alpha.delivered();
    alpha.delivered();
    beta.delivered();
    alpha.failed(tonic::Code::FailedPrecondition);
    alpha.failed(tonic::Code::FailedPrecondition);
    beta.failed(tonic::Code::ResourceExhausted);
    alpha.too_many_requests(Scope429::Chat, 42, Duration::from_secs(2));
    alpha.too_many_requests(Scope429::Bot, 42, Duration::from_secs(4310));
    alpha.retry();
    alpha.rerouted();
    alpha.paid(7);
    alpha.set_queue(250, 3);
    alpha.queue_wait(42, Duration::from_millis(30));
    alpha.queue_wait(43, Duration::from_secs(7200));
    alpha.telegram_answer(
        &Outcome::Delivered {
            message_id: 1,
            chat_id: 42,
        },
        Duration::from_millis(80),
    );
    alpha.telegram_answer(
        &Outcome::Revoked {
            code: 401,
            description: "Unauthorized".into(),
        },
        Duration::from_millis(20),
    );
    alpha.telegram_answer(
        &Outcome::Transient {
            kind: TransientKind::Server(502),
            description: "bad gateway".into(),
        },
        Duration::from_millis(20),
    );
    alpha.telegram_answer(
        &Outcome::Transient {
            kind: TransientKind::Connection,
            description: "reset".into(),
        },
        Duration::from_millis(20),
    );
    alpha.telegram_answer(
        &Outcome::Forbidden {
            description: "Forbidden: bot was blocked by the user".into(),
        },
        Duration::from_millis(20),
    );
    alpha.set_state(BotState::Revoked);
    m.finished(Entry::Unary, tonic::Code::Ok, Duration::from_millis(300));
    m.finished(
        Entry::Stream,
        tonic::Code::Unavailable,
        Duration::from_secs(12),
    );
    m.set_owned_bots(2);
    m.set_etcd_session(true);
    m.forwarded(Direction::Out);
    m.forwarded(Direction::In);
    m.forwarded(Direction::In);
    m.idempotent_hit(IdempotentHit::Answered);

    let text = m.encode();
    for line in [
        r#"shardgate_messages_accepted_total{entry="unary"} 1"#,
        r#"shardgate_messages_accepted_total{entry="stream"} 2"#,
        r#"shardgate_messages_delivered_total{bot="alpha"} 2"#,
        r#"shardgate_messages_delivered_total{bot="beta"} 1"#,
        r#"shardgate_messages_failed_total{bot="alpha",code="FAILED_PRECONDITION"} 2"#,
        r#"shardgate_messages_failed_total{bot="beta",code="RESOURCE_EXHAUSTED"} 1"#,
        r#"shardgate_telegram_429_total{bot="alpha",scope="chat"} 1"#,
        r#"shardgate_telegram_429_total{bot="alpha",scope="bot"} 1"#,
        r#"shardgate_telegram_429_total{bot="beta",scope="chat"} 0"#,
        r#"shardgate_telegram_errors_total{bot="alpha",kind="unauthorized"} 1"#,
        r#"shardgate_telegram_errors_total{bot="alpha",kind="server_error"} 1"#,
        r#"shardgate_telegram_errors_total{bot="alpha",kind="transport"} 1"#,
        r#"shardgate_telegram_errors_total{bot="alpha",kind="forbidden"} 1"#,
        r#"shardgate_telegram_errors_total{bot="alpha",kind="timeout"} 0"#,
        r#"shardgate_retries_total{bot="alpha"} 1"#,
        r#"shardgate_messages_rerouted_total{bot="alpha"} 1"#,
        r#"shardgate_paid_messages_total{bot="alpha"} 7"#,
        r#"shardgate_paid_messages_total{bot="beta"} 0"#,
        r#"shardgate_queue_depth{bot="alpha"} 250"#,
        r#"shardgate_in_flight{bot="alpha"} 3"#,
        r#"shardgate_queue_depth{bot="beta"} 0"#,
        "# TYPE shardgate_queue_wait_seconds histogram",
        "# UNIT shardgate_queue_wait_seconds seconds",
        r#"shardgate_queue_wait_seconds_count{bot="alpha"} 2"#,
        r#"shardgate_queue_wait_seconds_bucket{le="0.05",bot="alpha"} 1"#,
        r#"shardgate_queue_wait_seconds_bucket{le="7200.0",bot="alpha"} 2"#,
        r#"shardgate_telegram_request_duration_seconds_count{bot="alpha"} 5"#,
        r#"shardgate_telegram_request_duration_seconds_bucket{le="0.1",bot="alpha"} 5"#,
        r#"shardgate_send_duration_seconds_count{entry="unary",code="OK"} 1"#,
        r#"shardgate_send_duration_seconds_count{entry="stream",code="UNAVAILABLE"} 1"#,
        r#"shardgate_send_duration_seconds_bucket{le="10.0",entry="stream",code="UNAVAILABLE"} 0"#,
        r#"shardgate_send_duration_seconds_bucket{le="30.0",entry="stream",code="UNAVAILABLE"} 1"#,
        r#"shardgate_bot_state{bot="alpha",state="revoked"} 1"#,
        r#"shardgate_bot_state{bot="alpha",state="healthy"} 0"#,
        r#"shardgate_bots_owned 2"#,
        r#"shardgate_etcd_session_up 1"#,
        r#"shardgate_forwarded_messages_total{direction="out"} 1"#,
        r#"shardgate_forwarded_messages_total{direction="in"} 2"#,
        r#"shardgate_idempotent_hits_total{kind="answered"} 1"#,
        "# TYPE shardgate_telegram_429 counter",
        "# TYPE shardgate_queue_depth gauge",
        "# EOF",
    ] {
        has(&text, line);
    }
    has(
        &text,
        &format!(
            r#"shardgate_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
    );
    // Unused codes export nothing; no chat id is ever a label.
    lacks(&text, "code=\"INTERNAL\"");
    lacks(&text, "chat_id");
    lacks(&text, "chat=");
    lacks(&text, "\"42\"");
    // Every metric is ours.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.starts_with("shardgate_"), "foreign series {l}");
    }
}

#[test]
fn etcd_session_is_absent_until_set() {
    let m = Metrics::new();
    lacks(&m.encode(), "shardgate_etcd_session_up ");
    m.set_etcd_session(false);
    has(&m.encode(), "shardgate_etcd_session_up 0");
    m.set_etcd_session(true);
    has(&m.encode(), "shardgate_etcd_session_up 1");
}

#[test]
fn handles_for_the_same_bot_share_series() {
    let m = Metrics::new();
    m.bot("alpha").delivered();
    m.bot("alpha").delivered();
    let a = m.bot("alpha");
    a.failed(tonic::Code::InvalidArgument);
    m.bot("alpha").failed(tonic::Code::InvalidArgument);
    let text = m.encode();
    has(
        &text,
        r#"shardgate_messages_delivered_total{bot="alpha"} 2"#,
    );
    has(
        &text,
        r#"shardgate_messages_failed_total{bot="alpha",code="INVALID_ARGUMENT"} 2"#,
    );
}

#[test]
fn bot_states_follow_the_fleet() {
    let m = Metrics::new();
    m.set_bot_states([
        ("alpha", BotState::Healthy),
        ("beta", BotState::Throttled),
        ("gamma", BotState::Disabled),
    ]);
    let text = m.encode();
    has(
        &text,
        r#"shardgate_bot_state{bot="alpha",state="healthy"} 1"#,
    );
    has(
        &text,
        r#"shardgate_bot_state{bot="beta",state="throttled"} 1"#,
    );
    has(
        &text,
        r#"shardgate_bot_state{bot="beta",state="healthy"} 0"#,
    );
    has(
        &text,
        r#"shardgate_bot_state{bot="gamma",state="disabled"} 1"#,
    );
    // gamma leaves the fleet; beta is revoked.
    m.set_bot_states([("alpha", BotState::Healthy), ("beta", BotState::Revoked)]);
    let text = m.encode();
    has(
        &text,
        r#"shardgate_bot_state{bot="beta",state="revoked"} 1"#,
    );
    has(
        &text,
        r#"shardgate_bot_state{bot="beta",state="throttled"} 0"#,
    );
    lacks(&text, "gamma");
}

#[test]
fn remove_bot_drops_its_series() {
    let m = Metrics::new();
    let a = m.bot("alpha");
    a.delivered();
    a.failed(tonic::Code::Unavailable);
    m.bot("beta").delivered();
    m.remove_bot("alpha");
    let text = m.encode();
    lacks(&text, "alpha");
    has(&text, r#"shardgate_messages_delivered_total{bot="beta"} 1"#);
}

#[test]
fn scrape_hooks_run_before_encoding() {
    let m = Metrics::new();
    let depth = Arc::new(AtomicU64::new(0));
    let d = depth.clone();
    let alpha = m.bot("alpha");
    m.on_scrape(move |_| {
        alpha.set_queue(d.load(std::sync::atomic::Ordering::Relaxed), 1);
    });
    depth.store(17, std::sync::atomic::Ordering::Relaxed);
    has(&m.encode(), r#"shardgate_queue_depth{bot="alpha"} 17"#);
    depth.store(5, std::sync::atomic::Ordering::Relaxed);
    has(&m.encode(), r#"shardgate_queue_depth{bot="alpha"} 5"#);
}

#[test]
fn hot_chats_by_429_and_by_wait() {
    let m = Metrics::new();
    let alpha = m.bot("alpha");
    let beta = m.bot("beta");
    for _ in 0..5 {
        alpha.too_many_requests(Scope429::Chat, -1001, Duration::from_secs(3));
    }
    beta.too_many_requests(Scope429::Bot, -1001, Duration::from_secs(40));
    alpha.too_many_requests(Scope429::Chat, 7, Duration::from_secs(1));
    // 100 distinct quiet chats, then one that waited long.
    for chat in 0..100 {
        alpha.queue_wait(10_000 + chat, Duration::from_millis(5));
    }
    alpha.queue_wait(555, Duration::from_secs(90));
    let by_429 = m.hot_chats(HotBy::TooManyRequests);
    assert_eq!(by_429.len(), 2);
    assert_eq!(by_429[0].chat_id, -1001);
    assert_eq!(by_429[0].score, 6.0);
    assert_eq!(by_429[0].events, 6);
    assert_eq!(by_429[0].max, 40.0);
    assert_eq!(by_429[0].bot, "beta");
    assert_eq!(by_429[1].chat_id, 7);
    let by_wait = m.hot_chats(HotBy::QueueWait);
    assert_eq!(by_wait.len(), HOT_CHATS_K);
    assert_eq!(by_wait[0].chat_id, 555);
    assert!(by_wait[0].score >= 90.0);
}

#[test]
fn telegram_error_kinds() {
    let kind = |o: Outcome| TelegramError::of(&o);
    assert_eq!(
        kind(Outcome::RetryAfter {
            retry_after: Duration::from_secs(1),
            description: String::new()
        }),
        None
    );
    assert_eq!(
        kind(Outcome::Rejected {
            code: 400,
            description: String::new()
        }),
        Some(TelegramError::BadRequest)
    );
    assert_eq!(
        kind(Outcome::Transient {
            kind: TransientKind::Timeout,
            description: String::new()
        }),
        Some(TelegramError::Timeout)
    );
    assert_eq!(
        kind(Outcome::Revoked {
            code: 404,
            description: String::new()
        }),
        Some(TelegramError::Unauthorized)
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_metrics_and_healthz_over_http() {
    let m = Metrics::new();
    m.bot("alpha").delivered();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(m.clone(), listener, async move {
        let _ = stop_rx.await;
    }));

    let resp = http_get(addr, "/metrics").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{resp}"
    );
    assert!(resp.contains("shardgate_messages_delivered_total{bot=\"alpha\"} 1"));
    assert!(resp.trim_end().ends_with("# EOF"), "{resp}");

    let resp = http_get(addr, "/healthz").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok\n"), "{resp}");

    // Not ready until the gateway says so, and not after it stops.
    let resp = http_get(addr, "/readyz").await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    m.set_ready(true);
    let resp = http_get(addr, "/readyz").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    m.set_ready(false);
    let resp = http_get(addr, "/readyz").await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");

    let resp = http_get(addr, "/nope").await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}

/// The metrics port with short limits, on a loopback port.
async fn limited(limits: ServeLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        Metrics::new(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
        limits,
    ));
    (addr, stop_tx)
}

/// Reads until the server closes the connection; how long that took.
async fn closed_after(s: &mut tokio::net::TcpStream) -> Duration {
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .ok();
    started.elapsed()
}

#[tokio::test]
async fn a_silent_connection_and_an_idle_keep_alive_connection_are_closed() {
    let (addr, _stop) = limited(ServeLimits {
        header_read_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(300),
        max_connections: 8,
    })
    .await;
    // Opens and never sends a byte.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let took = closed_after(&mut silent).await;
    println!("silent connection closed after {took:?}");
    // Sends half a request head.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let took = closed_after(&mut slow).await;
    println!("half a head closed after {took:?}");
    // One request with keep-alive, then nothing: answered, then closed.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = closed_after(&mut idle).await;
    println!("idle keep-alive connection closed after {took:?}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let (addr, _stop) = limited(ServeLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The second is served (a request answered proves it was accepted).
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = second.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The third waits in the backlog while two are held...
    let third = tokio::spawn(http_get(addr, "/healthz"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third connection was served");
    // ...and is served once one of them closes.
    drop(first);
    let resp = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served after a close")
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
