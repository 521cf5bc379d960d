//! The Bot API client against a scripted local HTTP server: request shape, every
//! kind of answer, transport failures, connection reuse, and that no token ever
//! shows up in what the client reports.

mod support;

use std::time::{Duration, Instant};

use serde_json::json as j;
use shardgate_telegram::{
    BotInfo, BotToken, Client, ClientConfig, Extras, Outcome, ParseMode, SendMessage, TransientKind,
};
use support::*;

fn token() -> BotToken {
    BotToken::parse(TOKEN).expect("token")
}

fn client(base: &str) -> Client {
    Client::new(ClientConfig {
        api_base: base.to_string(),
        ..Default::default()
    })
    .expect("client")
}

fn msg(chat_id: i64) -> SendMessage {
    SendMessage {
        chat_id,
        text: "hello".into(),
        ..Default::default()
    }
}

fn check_outcome_is_clean(outcome: &Outcome) {
    eprintln!("outcome: {outcome}");
    assert_no_secret("Debug", &format!("{outcome:?}"));
    assert_no_secret("Display", &outcome.to_string());
}

#[tokio::test]
async fn send_message_shape_and_delivery() {
    let server = serve(|seen| {
        let chat = seen.json()["chat_id"].as_i64().unwrap_or(0);
        delivered(chat, 4242)
    })
    .await;
    // Path prefix and trailing slash, as a local Bot API server behind a proxy.
    let c = client(&format!("{}/tg/", server.base()));
    let m = SendMessage {
        chat_id: -1001234567890,
        text: "<b>hi</b> ünïcode \"q\"".into(),
        parse_mode: Some(ParseMode::Html),
        disable_notification: true,
        extras: Extras::parse(
            r#"{"inline_keyboard":[[{"text":"Pay","callback_data":"pay:7"}]]}"#,
            r#"{"protect_content":true}"#,
            4,
            false,
        )
        .expect("valid extras"),
    };
    let out = c.send_message(&token(), &m).await;
    assert_eq!(
        out,
        Outcome::Delivered {
            message_id: 4242,
            chat_id: -1001234567890
        }
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, format!("/tg/bot{TOKEN}/sendMessage"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert!(
        seen[0]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("shardgate/"))
    );
    assert_eq!(
        seen[0].json(),
        j!({
            "chat_id": -1001234567890i64, "text": "<b>hi</b> ünïcode \"q\"", "parse_mode": "HTML",
            "disable_notification": true, "message_thread_id": 4, "protect_content": true,
            "reply_markup": {"inline_keyboard": [[{"text": "Pay", "callback_data": "pay:7"}]]},
        })
    );

    // Optional fields are omitted.
    c.send_message(&token(), &msg(5)).await;
    assert_eq!(server.seen()[1].json(), j!({"chat_id": 5, "text": "hello"}));
}

#[tokio::test]
async fn delivered_without_chat_reports_request_chat() {
    let server = serve(|_| json(200, j!({"ok": true, "result": {"message_id": 9}}))).await;
    let out = client(&server.base())
        .send_message(&token(), &msg(77))
        .await;
    assert_eq!(
        out,
        Outcome::Delivered {
            message_id: 9,
            chat_id: 77
        }
    );
}

#[tokio::test]
async fn reuses_one_connection() {
    let server = serve(|_| delivered(1, 1)).await;
    let c = client(&server.base());
    let c2 = c.clone();
    for _ in 0..5 {
        assert!(matches!(
            c.send_message(&token(), &msg(1)).await,
            Outcome::Delivered { .. }
        ));
        assert!(matches!(
            c2.send_message(&token(), &msg(1)).await,
            Outcome::Delivered { .. }
        ));
    }
    assert_eq!(server.seen().len(), 10);
    assert_eq!(
        server.accepts(),
        1,
        "clones share the pool and keep the connection alive"
    );
}

#[tokio::test]
async fn error_answers_are_classified() {
    let server = serve(|seen| match seen.json()["chat_id"].as_i64().unwrap_or(0) {
        1 => json(429, j!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})),
        2 => json(401, j!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        3 => json(403, j!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})),
        4 => json(400, j!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id": -100777}})),
        5 => Reply::Answer(502, b"<html><head><title>502 Bad Gateway</title></head></html>".to_vec(), vec![("content-type", "text/html".into())]),
        6 => json(400, j!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})),
        7 => Reply::Answer(302, Vec::new(), vec![("location", format!("/bot{TOKEN}/elsewhere"))]),
        _ => json(404, j!({"ok": false, "error_code": 404, "description": "Not Found"})),
    })
    .await;
    let c = client(&server.base());
    let t = token();

    let out = c.send_message(&t, &msg(1)).await;
    assert_eq!(
        out,
        Outcome::RetryAfter {
            retry_after: Duration::from_secs(7),
            description: "Too Many Requests: retry after 7".into()
        }
    );
    assert_eq!(
        c.send_message(&t, &msg(2)).await,
        Outcome::Revoked {
            code: 401,
            description: "Unauthorized".into()
        }
    );
    assert_eq!(
        c.send_message(&t, &msg(3)).await,
        Outcome::Forbidden {
            description: "Forbidden: bot was blocked by the user".into()
        }
    );
    assert!(matches!(
        c.send_message(&t, &msg(4)).await,
        Outcome::Migrated {
            to_chat_id: -100777,
            ..
        }
    ));
    let out = c.send_message(&t, &msg(5)).await;
    assert!(
        matches!(
            &out,
            Outcome::Transient {
                kind: TransientKind::Server(502),
                ..
            }
        ),
        "{out:?}"
    );
    assert!(out.is_retryable());
    assert!(matches!(
        c.send_message(&t, &msg(6)).await,
        Outcome::Rejected { code: 400, .. }
    ));
    // Redirects are not followed: one request, reported as an unusable answer.
    let before = server.seen().len();
    let out = c.send_message(&t, &msg(7)).await;
    assert!(
        matches!(
            &out,
            Outcome::Transient {
                kind: TransientKind::Body,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(server.seen().len(), before + 1);
    check_outcome_is_clean(&out);
    assert!(matches!(
        c.send_message(&t, &msg(8)).await,
        Outcome::Revoked { code: 404, .. }
    ));
}

#[tokio::test]
async fn get_me_success_and_failure() {
    let server = serve(|seen| {
        if seen.path.contains("AAAA") {
            json(401, j!({"ok": false, "error_code": 401, "description": "Unauthorized"}))
        } else {
            json(200, j!({"ok": true, "result": {"id": 123456789, "is_bot": true, "first_name": "Shard", "username": "shard_bot"}}))
        }
    })
    .await;
    let c = client(&server.base());
    let info = c.get_me(&token()).await.expect("getMe");
    assert_eq!(
        info,
        BotInfo {
            id: 123456789,
            username: "shard_bot".into(),
            first_name: "Shard".into()
        }
    );
    let seen = server.seen();
    assert_eq!(seen[0].path, format!("/bot{TOKEN}/getMe"));
    let dead = BotToken::parse("55:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("token");
    assert_eq!(
        c.get_me(&dead).await,
        Err(Outcome::Revoked {
            code: 401,
            description: "Unauthorized".into()
        })
    );
}

#[tokio::test]
async fn connect_refused_is_connect_and_clean() {
    let addr = closed_port().await;
    let c = client(&format!("http://{addr}/"));
    let out = c.send_message(&token(), &msg(1)).await;
    assert!(
        matches!(
            &out,
            Outcome::Transient {
                kind: TransientKind::Connect,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(out.is_retryable());
    check_outcome_is_clean(&out);
    let err = c.get_me(&token()).await.expect_err("refused");
    assert!(
        matches!(
            &err,
            Outcome::Transient {
                kind: TransientKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    check_outcome_is_clean(&err);
}

#[tokio::test]
async fn unanswered_request_times_out_cleanly() {
    let server = serve(|_| Reply::Hang).await;
    let c = Client::new(ClientConfig {
        api_base: server.base(),
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .expect("client");
    let started = Instant::now();
    let out = c.send_message(&token(), &msg(1)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            &out,
            Outcome::Transient {
                kind: TransientKind::Timeout,
                ..
            }
        ),
        "{out:?}"
    );
    check_outcome_is_clean(&out);
    let err = c.get_me(&token()).await.expect_err("timeout");
    assert!(
        matches!(
            &err,
            Outcome::Transient {
                kind: TransientKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    check_outcome_is_clean(&err);
}

#[tokio::test]
async fn dropped_connection_is_connection_error() {
    let server = serve(|_| Reply::Close).await;
    let out = client(&server.base()).send_message(&token(), &msg(1)).await;
    assert!(
        matches!(
            &out,
            Outcome::Transient {
                kind: TransientKind::Connection,
                ..
            }
        ),
        "{out:?}"
    );
    check_outcome_is_clean(&out);
}

#[tokio::test]
async fn truncated_and_oversized_bodies_are_body_errors() {
    let server = serve(|seen| match seen.json()["chat_id"].as_i64().unwrap_or(0) {
        1 => Reply::Truncated(200, br#"{"ok":true,"res"#.to_vec(), 200),
        2 => Reply::Answer(200, vec![b' '; (1 << 20) + 10], Vec::new()),
        _ => Reply::Answer(
            200,
            br#"{"ok":true,"result":{"message_id":1"#.to_vec(),
            Vec::new(),
        ),
    })
    .await;
    let c = client(&server.base());
    for chat in [1, 2, 3] {
        let out = c.send_message(&token(), &msg(chat)).await;
        assert!(
            matches!(
                &out,
                Outcome::Transient {
                    kind: TransientKind::Body,
                    ..
                }
            ),
            "chat {chat}: {out:?}"
        );
        check_outcome_is_clean(&out);
    }
}
