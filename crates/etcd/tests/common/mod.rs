//! Helpers shared by the etcd integration tests: configs with short timers,
//! polling with a deadline (no sleep-based luck), a log capture, bots.

#![allow(dead_code)]

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

use etcd_client::Client;
use shardgate_etcd::testing::EtcdServer;
use shardgate_etcd::{EtcdConfig, EtcdRegistry, Keys};
use shardgate_registry::{Fleet, Registry};
use shardgate_router::Node;

/// Tokens of the form the Bot API uses; the secrets are grepped for in logs.
pub fn token(i: usize) -> String {
    format!("{}:{}", 100_000 + i, secret(i))
}

pub fn secret(i: usize) -> String {
    format!("SECRET{i:04}xxxxxxxxxxxxxxxxxxxxxxxxx")
}

/// A registry config with short timers: lease TTL 4 s, margin 1 s,
/// keep-alive timeout 1 s, handoff 2 s.
pub fn config(server_endpoint: &str, cluster: &str, id: &str) -> EtcdConfig {
    let mut cfg = EtcdConfig::new([server_endpoint], cluster, id, &format!("{id}.test:50051"));
    cfg.lease_ttl = Duration::from_secs(4);
    cfg.keepalive_timeout = Duration::from_secs(1);
    cfg.safety_margin = Duration::from_secs(1);
    cfg.handoff_timeout = Duration::from_secs(2);
    cfg.op_timeout = Duration::from_secs(1);
    cfg.progress_interval = Duration::from_secs(1);
    cfg
}

pub async fn start(cfg: EtcdConfig) -> EtcdRegistry {
    EtcdRegistry::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("registry start: {e}"))
}

/// Puts `n` bots `bot-0..` with valid tokens.
pub async fn seed_bots(client: &Client, cluster: &str, n: usize) -> Vec<String> {
    let keys = Keys::new(cluster).expect("cluster");
    let mut kv = client.kv_client();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("bot-{i}");
        kv.put(
            keys.bot(&name),
            format!(r#"{{"token": "{}", "enabled": true}}"#, token(i)),
            None,
        )
        .await
        .expect("put bot");
        names.push(name);
    }
    names
}

/// Polls `cond` every 10 ms until it holds; returns how long it took.
/// Panics with `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn fleet(reg: &EtcdRegistry) -> Arc<Fleet> {
    reg.fleet().borrow().clone()
}

pub fn owned(reg: &EtcdRegistry) -> BTreeSet<String> {
    fleet(reg).owned.clone()
}

/// Which of `members` the bounded rendezvous assignment of `bots` puts
/// `bot` on.
pub fn desired(bot: &str, bots: &[String], members: &[&str]) -> String {
    let nodes: Vec<Node> = members.iter().map(|m| Node::new(*m)).collect();
    shardgate_router::assign_bounded(bots.iter().map(String::as_str), &nodes)
        .into_iter()
        .find(|(b, _)| *b == bot)
        .map(|(_, i)| nodes[i].name().to_owned())
        .expect("members")
}

pub async fn etcd() -> EtcdServer {
    init_logs();
    EtcdServer::start().await
}

/// Everything logged by the test binary (tracing, all levels >= debug for
/// shardgate_etcd), for checks on what is logged and what never is.
pub fn logs() -> String {
    let buf = LOGS.get_or_init(Default::default);
    String::from_utf8_lossy(&buf.lock()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(data);
        std::io::stderr().write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let buf = LOGS.get_or_init(Default::default).clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("shardgate_etcd=debug,info")
            .with_ansi(false)
            .with_writer(move || Capture(buf.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Peers in one process: asks the registry registered under an instance id
/// for its `store_contact`, as the daemon does over gRPC `Status`. Members
/// marked silent, or not registered, do not answer.
#[derive(Default)]
pub struct InProcessProbe {
    peers: Mutex<std::collections::BTreeMap<String, std::sync::Weak<EtcdRegistry>>>,
    silent: Mutex<BTreeSet<String>>,
}

impl InProcessProbe {
    pub fn new() -> Arc<InProcessProbe> {
        Arc::new(InProcessProbe::default())
    }

    pub fn register(&self, reg: &Arc<EtcdRegistry>) {
        self.peers
            .lock()
            .insert(reg.instance_id().to_owned(), Arc::downgrade(reg));
    }

    pub fn set_silent(&self, id: &str, silent: bool) {
        let mut s = self.silent.lock();
        if silent {
            s.insert(id.to_owned());
        } else {
            s.remove(id);
        }
    }
}

impl shardgate_registry::PeerProbe for InProcessProbe {
    fn ask<'a>(
        &'a self,
        instance: &'a str,
        _addr: &'a str,
        _timeout: Duration,
    ) -> shardgate_registry::ProbeFuture<'a> {
        use shardgate_registry::PeerAnswer;
        let answer = if self.silent.lock().contains(instance) {
            PeerAnswer::NoAnswer
        } else {
            let peer = self
                .peers
                .lock()
                .get(instance)
                .and_then(std::sync::Weak::upgrade);
            match peer.and_then(|p| p.store_contact()) {
                Some(c) if c.reachable => PeerAnswer::Reachable,
                Some(_) => PeerAnswer::Unreachable,
                None => PeerAnswer::NoAnswer,
            }
        };
        Box::pin(async move { answer })
    }
}

/// Starts a registry that asks its peers through `probe`, and registers it
/// there.
pub async fn start_probed(cfg: EtcdConfig, probe: &Arc<InProcessProbe>) -> Arc<EtcdRegistry> {
    let reg = EtcdRegistry::start_with_probe(cfg, Some(probe.clone()))
        .await
        .unwrap_or_else(|e| panic!("registry start: {e}"));
    let reg = Arc::new(reg);
    probe.register(&reg);
    reg
}
