//! Runs real calls (success, error answers, refused connection, timeout) with every
//! log target captured at TRACE, `log` records from reqwest and rustls included,
//! and checks that the token's secret appears in no line while the client's own
//! debug line (method, bot id, status, elapsed) does appear.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardgate_telegram::{BotToken, Client, ClientConfig, SendMessage};
use support::*;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_in_any_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish()
        .try_init()
        .expect("first subscriber in this test binary");

    let server = serve(|seen| match seen.json()["chat_id"].as_i64().unwrap_or(0) {
        1 => delivered(1, 10),
        2 => json(
            401,
            serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        ),
        _ => Reply::Hang,
    })
    .await;
    let token = BotToken::parse(TOKEN).expect("token");
    let c = Client::new(ClientConfig {
        api_base: server.base(),
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .expect("client");
    for chat in [1, 2, 3] {
        let m = SendMessage {
            chat_id: chat,
            text: "t".into(),
            ..Default::default()
        };
        c.send_message(&token, &m).await;
    }
    let _ = c.get_me(&token).await;
    let closed = Client::new(ClientConfig {
        api_base: format!("http://{}", closed_port().await),
        ..Default::default()
    })
    .expect("client");
    let _ = closed.get_me(&token).await;

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert_no_secret("logs", &logs);
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("bot api call"))
        .collect();
    assert_eq!(ours.len(), 5, "{logs}");
    assert!(
        ours[0].contains("method=\"sendMessage\"") || ours[0].contains("method=sendMessage"),
        "{}",
        ours[0]
    );
    assert!(ours[0].contains("bot_id=123456789"), "{}", ours[0]);
    assert!(ours[0].contains("status=200"), "{}", ours[0]);
    assert!(ours[0].contains("elapsed_ms="), "{}", ours[0]);
    assert!(
        ours[1].contains("status=401") && ours[1].contains("revoked"),
        "{}",
        ours[1]
    );
    assert!(ours[2].contains("transient"), "{}", ours[2]);
    assert!(
        logs.lines().count() > ours.len(),
        "other crates' trace lines were captured too"
    );
}
