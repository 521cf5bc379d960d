//! The lease, checked at send time: a dispatcher asks the registry before
//! every Bot API request, and sends nothing while this instance's lease is
//! not valid (a process woken from SIGSTOP or a VM pause past its lease),
//! whatever the ownership loop has or has not noticed yet.
//!
//! Paused tokio clock; "Telegram" is a loopback listener that counts the
//! connections the client opens and never answers, so a request shows as a
//! connection whatever its fate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use shardgate_gateway::{Gateway, GatewayConfig, Message};
use shardgate_metrics::Metrics;
use shardgate_mock::test_token;
use shardgate_registry::{
    BotSpec, BotsFile, EmbeddedRegistry, Fleet, Health, Registry, RegistryError,
};
use shardgate_telegram::{BotToken, Client, ClientConfig};
use tokio::sync::watch;
use tokio::time::Instant;

/// The embedded registry with a lease: valid until `valid_until`, which
/// the test moves as a keep-alive would.
struct Leased {
    inner: EmbeddedRegistry,
    valid_until: Mutex<Instant>,
}

#[async_trait]
impl Registry for Leased {
    fn instance_id(&self) -> &str {
        self.inner.instance_id()
    }
    fn fleet(&self) -> watch::Receiver<Arc<Fleet>> {
        self.inner.fleet()
    }
    async fn report_health(&self, bot: &str, health: Health) -> Result<(), RegistryError> {
        self.inner.report_health(bot, health).await
    }
    async fn release(&self, bot: &str) -> Result<(), RegistryError> {
        self.inner.release(bot).await
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
    fn may_send(&self, now: Instant) -> bool {
        now < *self.valid_until.lock()
    }
}

fn message(chat_id: i64) -> Message {
    common::message(
        chat_id,
        format!("m{chat_id}"),
        Some(Duration::from_secs(600)),
    )
}

#[tokio::test(start_paused = true)]
async fn a_dispatcher_sends_nothing_while_the_lease_is_not_valid_and_resumes_when_it_is() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let ttl = Duration::from_secs(10);
    let registry = Arc::new(Leased {
        inner: EmbeddedRegistry::new(
            "gw-1",
            BotsFile {
                bots: vec![BotSpec {
                    name: "bot-0".into(),
                    token: BotToken::parse(&test_token(7_200)).expect("token"),
                    enabled: true,
                }],
            },
            None,
            "127.0.0.1:1",
        ),
        valid_until: Mutex::new(Instant::now() + ttl),
    });
    let client = Client::new(ClientConfig {
        api_base: base,
        ..ClientConfig::default()
    })
    .expect("client");
    let gateway = Gateway::start(
        GatewayConfig::default(),
        registry.clone() as Arc<dyn Registry>,
        client,
        Metrics::new(),
    );
    let mut ready = gateway.ready();
    ready.wait_for(|r| *r).await.expect("ready");

    // Paused past the lease: no keep-alive ran, the lease's local bound has
    // passed, and nobody has taken the bot away yet.
    tokio::time::advance(ttl + Duration::from_secs(1)).await;
    let sends: Vec<_> = (1..=5)
        .map(|chat| {
            let gw = gateway.clone();
            tokio::spawn(async move { gw.send(message(chat), None).await })
        })
        .collect();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a request went out on an expired lease"
    );
    assert!(sends.iter().all(|s| !s.is_finished()), "held, not failed");

    // A keep-alive lands: the lease is valid again and the messages go.
    *registry.valid_until.lock() = Instant::now() + ttl;
    for _ in 0..50 {
        if connections.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "no request after the lease was renewed"
    );
}
