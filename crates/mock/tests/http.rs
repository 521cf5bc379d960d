//! End-to-end tests: the emulator on port 0, driven over HTTP with reqwest.
//!
//! Timing-sensitive checks use limits and latencies far from anything a slow machine could
//! reach (e.g. a chat refill of one token per 1000 s), so they never depend on luck.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shardgate_mock::{ChatState, Faults, Limits, MockConfig, MockServer, Stats, test_token};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
}

/// Official limits except that a chat's bucket never refills during a test.
fn slow_limits() -> Limits {
    Limits {
        chat_rate_per_s: 0.001,
        ..Limits::official()
    }
}

async fn start(limits: Option<Limits>) -> std::io::Result<MockServer> {
    let config = MockConfig {
        limits,
        seed: Some(1),
        ..MockConfig::default()
    };
    MockServer::start(
        config,
        "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
    )
    .await
}

async fn json_of(resp: reqwest::Response) -> Result<(u16, Value), reqwest::Error> {
    let status = resp.status().as_u16();
    Ok((status, resp.json::<Value>().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_three_ways_and_get_me() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let http = client()?;
    let base = format!("{}/bot{}", server.base_url(), test_token(1001));

    // Query string (GET).
    let (status, body) = json_of(
        http.get(format!("{base}/sendMessage?chat_id=10&text=via%20query"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["result"]["message_id"], 1);
    assert_eq!(body["result"]["from"]["id"], 1001);
    assert_eq!(body["result"]["from"]["is_bot"], true);
    assert_eq!(body["result"]["chat"]["id"], 10);
    assert_eq!(body["result"]["chat"]["type"], "private");
    assert_eq!(body["result"]["text"], "via query");
    assert!(
        body["result"]["date"]
            .as_u64()
            .is_some_and(|d| d > 1_600_000_000)
    );

    // JSON body, chat_id as a string.
    let (status, body) = json_of(
        http.post(format!("{base}/sendMessage"))
            .json(&json!({"chat_id": "10", "text": "via json", "parse_mode": "HTML", "extra": 1}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["message_id"], 2);

    // Form body, to a group.
    let (status, body) = json_of(
        http.post(format!("{base}/sendMessage"))
            .form(&[("chat_id", "-42"), ("text", "via form")])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["message_id"], 1);
    assert_eq!(body["result"]["chat"]["type"], "group");

    let (status, body) = json_of(http.post(format!("{base}/getMe")).send().await?).await?;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["username"], "mock_1001_bot", "{body}");
    assert_eq!(body["result"]["first_name"], "Mock 1001");

    let deliveries = server.control().deliveries(0);
    let texts: Vec<&str> = deliveries.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, ["via query", "via json", "via form"]);
    assert!(deliveries.iter().all(|d| d.bot_id == 1001));
    assert_eq!(deliveries[2].chat_id, -42);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_shapes() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let http = client()?;
    let url = server.base_url();
    let token = test_token(2002);
    let control = server.control();

    // Malformed token.
    let (status, body) = json_of(
        http.get(format!("{url}/bot123:short/sendMessage?chat_id=1&text=x"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"ok":false,"error_code":404,"description":"Not Found"})
    );

    // Validation.
    let (status, body) = json_of(
        http.get(format!("{url}/bot{token}/sendMessage?text=x"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"ok":false,"error_code":400,"description":"Bad Request: chat_id is empty"})
    );
    let long = "ж".repeat(4097);
    let (status, body) = json_of(
        http.post(format!("{url}/bot{token}/sendMessage"))
            .json(&json!({"chat_id": 5, "text": long}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message is too long"))
    );

    // Chat burst: 3 pass, the 4th is refused with a long retry_after (1000 s refill).
    for i in 0..3 {
        let (status, _) = json_of(
            http.get(format!("{url}/bot{token}/sendMessage?chat_id=7&text=b{i}"))
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, 200);
    }
    let (status, body) = json_of(
        http.get(format!("{url}/bot{token}/sendMessage?chat_id=7&text=b3"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 429);
    let retry_after = body["parameters"]["retry_after"].as_u64().unwrap_or(0);
    assert!((900..=1000).contains(&retry_after), "{body}");
    assert_eq!(
        body["description"],
        format!("Too Many Requests: retry after {retry_after}")
    );

    // Chat states.
    control.set_chat(-100, ChatState::Migrated { to: -1001234567890 });
    let (status, body) = json_of(
        http.get(format!("{url}/bot{token}/sendMessage?chat_id=-100&text=m"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(body["parameters"]["migrate_to_chat_id"], -1001234567890i64);
    control.set_chat(8, ChatState::Blocked);
    let (status, body) = json_of(
        http.get(format!("{url}/bot{token}/sendMessage?chat_id=8&text=m"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body["description"].as_str()),
        (403, Some("Forbidden: bot was blocked by the user"))
    );

    // Revoked.
    control.revoke(2002);
    let (status, body) = json_of(http.get(format!("{url}/bot{token}/getMe")).send().await?).await?;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok":false,"error_code":401,"description":"Unauthorized"})
    );

    // Injected 5xx.
    control.set_faults(
        None,
        Faults {
            error_5xx: 1.0,
            ..Faults::default()
        },
    );
    let (status, body) = json_of(http.get(format!("{url}/bot{token}/getMe")).send().await?).await?;
    assert!(status == 500 || status == 502, "{status}");
    assert_eq!(body["error_code"], status);
    assert_eq!(body["ok"], false);

    let stats = control.stats();
    assert_eq!(stats.totals.not_found, 1);
    assert_eq!(stats.bot(2002).bad_request, 3);
    assert_eq!(stats.bot(2002).rate_limited_chat, 1);
    assert_eq!(stats.bot(2002).forbidden, 1);
    assert_eq!(stats.bot(2002).unauthorized, 1);
    assert_eq!(stats.bot(2002).injected_5xx, 1);
    assert_eq!(stats.bot(2002).delivered, 3);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_deliver_nothing() -> TestResult {
    let server = start(None).await?;
    let http = client()?;
    let control = server.control();
    let token = test_token(3003);
    let send = format!(
        "{}/bot{token}/sendMessage?chat_id=1&text=once",
        server.base_url()
    );

    control.set_faults(
        Some(3003),
        Faults {
            drop: 1.0,
            ..Faults::default()
        },
    );
    for _ in 0..3 {
        let result = http.get(&send).send().await;
        assert!(
            result.is_err(),
            "expected a connection error, got {result:?}"
        );
    }
    assert_eq!(control.deliveries(0), vec![]);
    let stats = control.stats();
    assert_eq!(stats.bot(3003).injected_drops, 3);
    assert_eq!(stats.totals.delivered, 0);

    // Other bots are unaffected; clearing the bot's faults lets the retry through, once.
    let other = format!("{}/bot{}/getMe", server.base_url(), test_token(4));
    assert_eq!(http.get(&other).send().await?.status().as_u16(), 200);
    control.clear_faults(3003);
    assert_eq!(http.get(&send).send().await?.status().as_u16(), 200);
    let deliveries = control.deliveries(0);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(control.stats().totals.duplicates, 0);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_added() -> TestResult {
    let server = start(None).await?;
    let http = client()?;
    server.control().set_faults(
        None,
        Faults {
            latency_ms: (300, 300),
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let resp = http
        .get(format!(
            "{}/bot{}/sendMessage?chat_id=1&text=slow",
            server.base_url(),
            test_token(5)
        ))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_over_http() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let http = client()?;
    let url = server.base_url();
    let token = test_token(6006);
    let send = |text: &str| format!("{url}/bot{token}/sendMessage?chat_id=1&text={text}");
    let post =
        |path: &str, body: Value| http.post(format!("{url}/_mock/{path}")).json(&body).send();

    let (status, body) = json_of(http.get(format!("{url}/_mock/health")).send().await?).await?;
    assert_eq!((status, body), (200, json!({"ok": true})));

    // Revoke by token, unrevoke by id.
    let (status, body) = json_of(post("revoke", json!({"token": token})).await?).await?;
    assert_eq!((status, body), (200, json!({"ok": true})));
    assert_eq!(http.get(send("a")).send().await?.status().as_u16(), 401);
    post("unrevoke", json!({"bot_id": 6006})).await?;
    assert_eq!(http.get(send("a")).send().await?.status().as_u16(), 200);

    // A malformed token is refused without being echoed.
    let (status, body) = json_of(post("revoke", json!({"token": "77:nope-secret"})).await?).await?;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("nope-secret"), "{body}");

    // Forced throttle.
    post("throttle", json!({"bot_id": 6006, "retry_after": 4310})).await?;
    let (status, body) = json_of(http.get(send("b")).send().await?).await?;
    assert_eq!(status, 429);
    assert_eq!(body["parameters"]["retry_after"], 4310);
    assert_eq!(body["description"], "Too Many Requests: retry after 4310");
    post("unthrottle", json!({"bot_id": 6006})).await?;
    assert_eq!(http.get(send("b")).send().await?.status().as_u16(), 200);

    // Chat state.
    post(
        "chat",
        json!({"chat_id": -5, "state": "migrated", "to": -1005}),
    )
    .await?;
    let (status, body) = json_of(
        http.get(format!("{url}/bot{token}/sendMessage?chat_id=-5&text=g"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(body["parameters"]["migrate_to_chat_id"], -1005);
    post("chat", json!({"chat_id": -5, "state": "kicked"})).await?;
    let (status, _) = json_of(
        http.get(format!("{url}/bot{token}/sendMessage?chat_id=-5&text=g"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 403);

    // Faults.
    post("faults", json!({"bot_id": 6006, "drop": 1.0})).await?;
    assert!(http.get(send("c")).send().await.is_err());
    let (_, faults) = json_of(
        http.get(format!("{url}/_mock/faults?bot_id=6006"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(faults["drop"], 1.0);
    post("faults", json!({"bot_id": 6006, "clear": true})).await?;
    let (status, _) = json_of(post("faults", json!({"drop": 2.0})).await?).await?;
    assert_eq!(status, 400);

    // Limits: the chat (burst 3: "a", "b" delivered) has one token left.
    let (_, limits) = json_of(http.get(format!("{url}/_mock/limits")).send().await?).await?;
    assert_eq!(limits["enabled"], true);
    assert_eq!(limits["chat_burst"], 3);
    assert_eq!(http.get(send("d")).send().await?.status().as_u16(), 200);
    assert_eq!(http.get(send("e")).send().await?.status().as_u16(), 429);
    post("limits", json!({"enabled": false})).await?;
    assert_eq!(http.get(send("e")).send().await?.status().as_u16(), 200);
    post("limits", json!({"chat_burst": 1, "chat_rate_per_s": 0.001})).await?;
    assert_eq!(http.get(send("f")).send().await?.status().as_u16(), 200);
    assert_eq!(http.get(send("g")).send().await?.status().as_u16(), 429);

    // Stats and deliveries.
    let stats: Stats = http
        .get(format!("{url}/_mock/stats"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(stats.bot(6006).delivered, 5);
    assert_eq!(stats.bot(6006).unauthorized, 1);
    assert_eq!(stats.bot(6006).rate_limited_forced, 1);
    assert_eq!(stats.bot(6006).rate_limited_chat, 2);
    assert_eq!(stats.bot(6006).injected_drops, 1);
    assert_eq!(stats.last_seq, 5);
    let all: Vec<Value> = http
        .get(format!("{url}/_mock/deliveries"))
        .send()
        .await?
        .json()
        .await?;
    let texts: Vec<&str> = all.iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(texts, ["a", "b", "d", "e", "f"]);
    let tail: Vec<Value> = http
        .get(format!("{url}/_mock/deliveries?since=3&limit=1"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0]["seq"], 4);
    assert_eq!(tail[0]["text"], "e");
    assert_eq!(tail[0]["bot_id"], 6006);
    assert!(tail[0]["at_ms"].as_u64().is_some());

    // Reset.
    post("reset", json!({})).await?;
    let stats: Stats = http
        .get(format!("{url}/_mock/stats"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(stats.totals.requests, 0);
    assert_eq!(stats.last_seq, 0);
    assert!(stats.limits_enabled);
    let (status, body) = json_of(http.get(send("h")).send().await?).await?;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["message_id"], 1);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_serving() -> TestResult {
    let server = start(None).await?;
    let http = client()?;
    let url = format!("{}/bot{}/getMe", server.base_url(), test_token(7));
    assert_eq!(http.get(&url).send().await?.status().as_u16(), 200);
    let control = server.control();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await?;
    assert!(http.get(&url).send().await.is_err());
    // The control handle outlives the server.
    assert_eq!(control.stats().totals.requests, 1);
    Ok(())
}
