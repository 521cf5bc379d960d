//! The client against the project's Bot API emulator (`shardgate-mock`): every
//! answer the emulator can give, rate limits, revocation, forced throttles, chat
//! states and injected faults come out as the right [`Outcome`].

use std::time::Duration;

use shardgate_mock::{ChatState, Faults, MockConfig, MockServer, test_token};
use shardgate_telegram::{
    BotToken, Client, ClientConfig, Outcome, ParseMode, SendMessage, TransientKind,
};

async fn start(config: MockConfig) -> (MockServer, Client) {
    let server = MockServer::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("mock starts");
    let client = Client::new(ClientConfig {
        api_base: format!("{}/", server.base_url()),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .expect("client");
    (server, client)
}

fn token(bot_id: u64) -> BotToken {
    BotToken::parse(&test_token(bot_id)).expect("mock tokens are valid")
}

fn msg(chat_id: i64, text: &str) -> SendMessage {
    SendMessage {
        chat_id,
        text: text.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn delivers_and_identifies() {
    let (server, c) = start(MockConfig::unlimited()).await;
    let t = token(1001);
    let info = c.get_me(&t).await.expect("getMe");
    assert_eq!(info.id, 1001);

    let m = SendMessage {
        chat_id: 42,
        text: "<b>hi</b>".into(),
        parse_mode: Some(ParseMode::Html),
        disable_notification: true,
        ..Default::default()
    };
    assert_eq!(
        c.send_message(&t, &m).await,
        Outcome::Delivered {
            message_id: 1,
            chat_id: 42
        }
    );
    assert_eq!(
        c.send_message(&t, &msg(42, "again")).await,
        Outcome::Delivered {
            message_id: 2,
            chat_id: 42
        }
    );
    assert_eq!(
        c.send_message(&t, &msg(-100500, "group")).await,
        Outcome::Delivered {
            message_id: 1,
            chat_id: -100500
        }
    );
    let log = server.control().deliveries(0);
    assert_eq!(log.len(), 3);
    assert_eq!(
        (log[0].bot_id, log[0].chat_id, log[0].text.as_str()),
        (1001, 42, "<b>hi</b>")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn revoked_and_throttled_bots() {
    let (server, c) = start(MockConfig::unlimited()).await;
    let control = server.control();
    control.revoke(1);
    let out = c.send_message(&token(1), &msg(5, "x")).await;
    assert!(matches!(out, Outcome::Revoked { code: 401, .. }), "{out:?}");
    assert!(matches!(
        c.get_me(&token(1)).await,
        Err(Outcome::Revoked { code: 401, .. })
    ));

    control.throttle(2, 4310, None);
    let out = c.send_message(&token(2), &msg(5, "x")).await;
    assert!(
        matches!(&out, Outcome::RetryAfter { retry_after, .. } if *retry_after == Duration::from_secs(4310)),
        "{out:?}"
    );
    // Other bots are unaffected.
    assert!(matches!(
        c.send_message(&token(3), &msg(5, "x")).await,
        Outcome::Delivered { .. }
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn chat_states_and_validation() {
    let (server, c) = start(MockConfig::unlimited()).await;
    let control = server.control();
    let t = token(7);
    control.set_chat(10, ChatState::Migrated { to: -1001234 });
    control.set_chat(11, ChatState::Blocked);
    control.set_chat(-100777, ChatState::Kicked);
    control.set_chat(12, ChatState::Missing);

    assert!(matches!(
        c.send_message(&t, &msg(10, "x")).await,
        Outcome::Migrated {
            to_chat_id: -1001234,
            ..
        }
    ));
    assert_eq!(
        c.send_message(&t, &msg(11, "x")).await,
        Outcome::Forbidden {
            description: "Forbidden: bot was blocked by the user".into()
        }
    );
    assert!(matches!(
        c.send_message(&t, &msg(-100777, "x")).await,
        Outcome::Forbidden { .. }
    ));
    assert_eq!(
        c.send_message(&t, &msg(12, "x")).await,
        Outcome::Rejected {
            code: 400,
            description: "Bad Request: chat not found".into()
        }
    );
    assert_eq!(
        c.send_message(&t, &msg(13, &"a".repeat(4097))).await,
        Outcome::Rejected {
            code: 400,
            description: "Bad Request: message is too long".into()
        }
    );
    assert_eq!(
        c.send_message(&t, &msg(13, "")).await,
        Outcome::Rejected {
            code: 400,
            description: "Bad Request: message text is empty".into()
        }
    );
    assert!(matches!(
        c.send_message(&t, &msg(13, &"a".repeat(4096))).await,
        Outcome::Delivered { .. }
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_retry_after() {
    let (server, c) = start(MockConfig::default()).await;
    let t = token(9);
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(c.send_message(&t, &msg(99, "burst")).await);
    }
    assert!(matches!(outcomes[0], Outcome::Delivered { .. }));
    let throttled: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::RetryAfter { retry_after, .. } => Some(*retry_after),
            _ => None,
        })
        .collect();
    assert!(
        !throttled.is_empty(),
        "a burst of 6 into one chat trips the per-chat limit: {outcomes:?}"
    );
    assert!(throttled.iter().all(|d| *d >= Duration::from_secs(1)));
    server.shutdown().await;
}

#[tokio::test]
async fn injected_faults_are_transient() {
    let (server, c) = start(MockConfig::unlimited()).await;
    let control = server.control();
    let t = token(4);

    control.set_faults(
        None,
        Faults {
            error_5xx: 1.0,
            ..Faults::default()
        },
    );
    let out = c.send_message(&t, &msg(1, "x")).await;
    assert!(
        matches!(
            out,
            Outcome::Transient {
                kind: TransientKind::Server(500 | 502),
                ..
            }
        ),
        "{out:?}"
    );
    assert!(out.is_retryable());

    control.set_faults(
        None,
        Faults {
            drop: 1.0,
            ..Faults::default()
        },
    );
    let out = c.send_message(&t, &msg(1, "x")).await;
    assert!(
        matches!(
            out,
            Outcome::Transient {
                kind: TransientKind::Connection | TransientKind::Body,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(!format!("{out:?}").contains(t.expose()));

    control.set_faults(
        None,
        Faults {
            latency_ms: (3000, 3000),
            ..Faults::default()
        },
    );
    let out = c.send_message(&t, &msg(1, "x")).await;
    assert!(
        matches!(
            out,
            Outcome::Transient {
                kind: TransientKind::Timeout,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(!format!("{out:?}").contains(t.expose()));

    control.set_faults(None, Faults::default());
    assert!(matches!(
        c.send_message(&t, &msg(1, "x")).await,
        Outcome::Delivered { .. }
    ));
    // Injected 5xx and drops deliver nothing; the slow answer was delivered although
    // the client timed out (why `Timeout` means "may have been delivered").
    assert_eq!(server.control().deliveries(0).len(), 2);
    server.shutdown().await;
}
