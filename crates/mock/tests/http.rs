//! End-to-end tests: the emulator on port 0, driven over HTTP with reqwest.
//!
//! Timing-sensitive checks use limits and latencies far from anything a slow machine could
//! reach (e.g. a chat refill of one token per 1000 s), so they never depend on luck.

mod common;

use std::time::{Duration, Instant};

use common::{Api, TestResult, slow_limits, start};
use serde_json::{Value, json};
use shardgate_mock::{ChatState, Faults, Stats, test_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_three_ways_and_get_me() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let api = Api::new(&server)?;
    let bot = format!("/bot{}", test_token(1001));

    // Query string (GET).
    let (status, body) = api
        .get(&format!("{bot}/sendMessage?chat_id=10&text=via%20query"))
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
    let (status, body) = api
        .post_json(
            &format!("{bot}/sendMessage"),
            &json!({"chat_id": "10", "text": "via json", "parse_mode": "HTML", "extra": 1}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["message_id"], 2);

    // Form body, to a group.
    let (status, body) = api
        .post_form(
            &format!("{bot}/sendMessage"),
            &[("chat_id", "-42"), ("text", "via form")],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["message_id"], 1);
    assert_eq!(body["result"]["chat"]["type"], "group");

    let (status, body) = api.post(&format!("{bot}/getMe")).await?;
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
    let api = Api::new(&server)?;
    let bot = format!("/bot{}", test_token(2002));
    let control = server.control();

    // Malformed token.
    let (status, body) = api
        .get("/bot123:short/sendMessage?chat_id=1&text=x")
        .await?;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"ok":false,"error_code":404,"description":"Not Found"})
    );

    // Validation.
    let (status, body) = api.get(&format!("{bot}/sendMessage?text=x")).await?;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"ok":false,"error_code":400,"description":"Bad Request: chat_id is empty"})
    );
    let long = "ж".repeat(4097);
    let (status, body) = api
        .post_json(
            &format!("{bot}/sendMessage"),
            &json!({"chat_id": 5, "text": long}),
        )
        .await?;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message is too long"))
    );

    // Chat burst: 3 pass, the 4th is refused with a long retry_after (1000 s refill).
    for i in 0..3 {
        let (status, _) = api
            .get(&format!("{bot}/sendMessage?chat_id=7&text=b{i}"))
            .await?;
        assert_eq!(status, 200);
    }
    let (status, body) = api
        .get(&format!("{bot}/sendMessage?chat_id=7&text=b3"))
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
    let (status, body) = api
        .get(&format!("{bot}/sendMessage?chat_id=-100&text=m"))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(body["parameters"]["migrate_to_chat_id"], -1001234567890i64);
    control.set_chat(8, ChatState::Blocked);
    let (status, body) = api
        .get(&format!("{bot}/sendMessage?chat_id=8&text=m"))
        .await?;
    assert_eq!(
        (status, body["description"].as_str()),
        (403, Some("Forbidden: bot was blocked by the user"))
    );

    // Revoked.
    control.revoke(2002);
    let (status, body) = api.get(&format!("{bot}/getMe")).await?;
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
    let (status, body) = api.get(&format!("{bot}/getMe")).await?;
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
    let api = Api::new(&server)?;
    let control = server.control();
    let send = format!("/bot{}/sendMessage?chat_id=1&text=once", test_token(3003));

    control.set_faults(
        Some(3003),
        Faults {
            drop: 1.0,
            ..Faults::default()
        },
    );
    for _ in 0..3 {
        let result = api.send_get(&send).await;
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
    let other = format!("/bot{}/getMe", test_token(4));
    assert_eq!(api.status(&other).await?, 200);
    control.clear_faults(3003);
    assert_eq!(api.status(&send).await?, 200);
    let deliveries = control.deliveries(0);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(control.stats().totals.duplicates, 0);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_added() -> TestResult {
    let server = start(None).await?;
    let api = Api::new(&server)?;
    server.control().set_faults(
        None,
        Faults {
            latency_ms: (300, 300),
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let status = api
        .status(&format!(
            "/bot{}/sendMessage?chat_id=1&text=slow",
            test_token(5)
        ))
        .await?;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_over_http() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let api = Api::new(&server)?;
    let token = test_token(6006);
    let bot = format!("/bot{token}");
    let send = |text: &str| format!("{bot}/sendMessage?chat_id=1&text={text}");
    let post = |path: &str, body: Value| {
        let path = format!("/_mock/{path}");
        let api = &api;
        async move { api.post_json(&path, &body).await }
    };

    let (status, body) = api.get("/_mock/health").await?;
    assert_eq!((status, body), (200, json!({"ok": true})));

    // Revoke by token, unrevoke by id.
    let (status, body) = post("revoke", json!({"token": token})).await?;
    assert_eq!((status, body), (200, json!({"ok": true})));
    assert_eq!(api.status(&send("a")).await?, 401);
    post("unrevoke", json!({"bot_id": 6006})).await?;
    assert_eq!(api.status(&send("a")).await?, 200);

    // A malformed token is refused without being echoed.
    let (status, body) = post("revoke", json!({"token": "77:nope-secret"})).await?;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("nope-secret"), "{body}");

    // Forced throttle.
    post("throttle", json!({"bot_id": 6006, "retry_after": 4310})).await?;
    let (status, body) = api.get(&send("b")).await?;
    assert_eq!(status, 429);
    assert_eq!(body["parameters"]["retry_after"], 4310);
    assert_eq!(body["description"], "Too Many Requests: retry after 4310");
    post("unthrottle", json!({"bot_id": 6006})).await?;
    assert_eq!(api.status(&send("b")).await?, 200);

    // Chat state.
    post(
        "chat",
        json!({"chat_id": -5, "state": "migrated", "to": -1005}),
    )
    .await?;
    let (status, body) = api
        .get(&format!("{bot}/sendMessage?chat_id=-5&text=g"))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(body["parameters"]["migrate_to_chat_id"], -1005);
    post("chat", json!({"chat_id": -5, "state": "kicked"})).await?;
    let (status, _) = api
        .get(&format!("{bot}/sendMessage?chat_id=-5&text=g"))
        .await?;
    assert_eq!(status, 403);

    // Faults.
    post("faults", json!({"bot_id": 6006, "drop": 1.0})).await?;
    assert!(api.send_get(&send("c")).await.is_err());
    let (_, faults) = api.get("/_mock/faults?bot_id=6006").await?;
    assert_eq!(faults["drop"], 1.0);
    post("faults", json!({"bot_id": 6006, "clear": true})).await?;
    let (status, _) = post("faults", json!({"drop": 2.0})).await?;
    assert_eq!(status, 400);

    // Limits: the chat (burst 3: "a", "b" delivered) has one token left.
    let (_, limits) = api.get("/_mock/limits").await?;
    assert_eq!(limits["enabled"], true);
    assert_eq!(limits["chat_burst"], 3);
    assert_eq!(api.status(&send("d")).await?, 200);
    assert_eq!(api.status(&send("e")).await?, 429);
    post("limits", json!({"enabled": false})).await?;
    assert_eq!(api.status(&send("e")).await?, 200);
    post("limits", json!({"chat_burst": 1, "chat_rate_per_s": 0.001})).await?;
    assert_eq!(api.status(&send("f")).await?, 200);
    assert_eq!(api.status(&send("g")).await?, 429);

    // Stats and deliveries.
    let stats: Stats = api.get_as("/_mock/stats").await?;
    assert_eq!(stats.bot(6006).delivered, 5);
    assert_eq!(stats.bot(6006).unauthorized, 1);
    assert_eq!(stats.bot(6006).rate_limited_forced, 1);
    assert_eq!(stats.bot(6006).rate_limited_chat, 2);
    assert_eq!(stats.bot(6006).injected_drops, 1);
    assert_eq!(stats.last_seq, 5);
    let all: Vec<Value> = api.get_as("/_mock/deliveries").await?;
    let texts: Vec<&str> = all.iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(texts, ["a", "b", "d", "e", "f"]);
    let tail: Vec<Value> = api.get_as("/_mock/deliveries?since=3&limit=1").await?;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0]["seq"], 4);
    assert_eq!(tail[0]["text"], "e");
    assert_eq!(tail[0]["bot_id"], 6006);
    assert!(tail[0]["at_ms"].as_u64().is_some());

    // Reset.
    post("reset", json!({})).await?;
    let stats: Stats = api.get_as("/_mock/stats").await?;
    assert_eq!(stats.totals.requests, 0);
    assert_eq!(stats.last_seq, 0);
    assert!(stats.limits_enabled);
    let (status, body) = api.get(&send("h")).await?;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["message_id"], 1);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_serving() -> TestResult {
    let server = start(None).await?;
    let api = Api::new(&server)?;
    let url = format!("/bot{}/getMe", test_token(7));
    assert_eq!(api.status(&url).await?, 200);
    let control = server.control();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await?;
    assert!(api.send_get(&url).await.is_err());
    // The control handle outlives the server.
    assert_eq!(control.stats().totals.requests, 1);
    Ok(())
}
