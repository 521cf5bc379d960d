//! [`StatusProbe`]: asks a peer, over `Status`, whether it can reach etcd
//! (for the etcd registry's ownership extension while etcd is down), over
//! a bounded set of kept channels.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use shardgate_proto::v1 as pb;
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_registry::{PeerAnswer, PeerProbe, ProbeFuture};
use tokio::time::Instant;
use tonic::transport::Channel;
use tracing::debug;

use super::{PeerKey, authorize};

/// Asks peers whether they can reach etcd, with the `etcd` field of their
/// `Status` answer. One lazily connected channel per peer, kept while the
/// peer is asked about.
///
/// The registry asks about its current members on every check, so a peer
/// not asked for [`PROBE_IDLE`] has left the member list: its channel is
/// dropped (at the next ask). A peer asked at a new address gets a new
/// channel in place of the old one, and at most [`MAX_PROBE_PEERS`]
/// channels are kept (the least recently asked goes first).
#[derive(Default)]
pub struct StatusProbe {
    channels: Mutex<HashMap<String, ProbeChannel>>,
    key: PeerKey,
}

struct ProbeChannel {
    addr: String,
    channel: Channel,
    asked: Instant,
}

/// A probe channel not used for this long belongs to a peer that left.
pub const PROBE_IDLE: Duration = Duration::from_secs(10 * 60);
/// Probe channels kept at most (a cluster has a handful of members).
pub const MAX_PROBE_PEERS: usize = 256;

impl StatusProbe {
    /// A probe that presents `key` (`Status` needs a key with auth on).
    pub fn new(key: PeerKey) -> Self {
        StatusProbe {
            channels: Mutex::default(),
            key,
        }
    }

    fn channel(&self, instance: &str, addr: &str, timeout: Duration) -> Result<Channel, String> {
        let now = Instant::now();
        let mut channels = self.channels.lock();
        channels.retain(|_, c| now.saturating_duration_since(c.asked) < PROBE_IDLE);
        if let Some(c) = channels.get_mut(instance)
            && c.addr == addr
        {
            c.asked = now;
            return Ok(c.channel.clone());
        }
        let channel = self
            .key
            .endpoint(addr)?
            .connect_timeout(timeout)
            .connect_lazy();
        if !channels.contains_key(instance) && channels.len() >= MAX_PROBE_PEERS {
            let oldest = channels
                .iter()
                .min_by_key(|(_, c)| c.asked)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                channels.remove(&k);
            }
        }
        channels.insert(
            instance.to_owned(),
            ProbeChannel {
                addr: addr.to_owned(),
                channel: channel.clone(),
                asked: now,
            },
        );
        Ok(channel)
    }

    /// Channels kept now.
    pub fn len(&self) -> usize {
        self.channels.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn status(
        &self,
        instance: &str,
        addr: &str,
        timeout: Duration,
    ) -> Result<pb::StatusResponse, String> {
        let channel = self.channel(instance, addr, timeout)?;
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(timeout);
        authorize(&mut request, &self.key.get());
        let answer = tokio::time::timeout(timeout, GatewayClient::new(channel).status(request))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?;
        answer.map(|r| r.into_inner()).map_err(|s| s.to_string())
    }
}

impl PeerProbe for StatusProbe {
    fn ask<'a>(&'a self, instance: &'a str, addr: &'a str, timeout: Duration) -> ProbeFuture<'a> {
        Box::pin(async move {
            match self.status(instance, addr, timeout).await {
                // Only the member we meant speaks for itself.
                Ok(s) if s.instance_id != instance => {
                    debug!(peer = instance, addr, answered_by = %s.instance_id, "another instance answers at the peer's address");
                    PeerAnswer::NoAnswer
                }
                Ok(s) => match s.etcd {
                    Some(c) if c.reachable => PeerAnswer::Reachable,
                    Some(_) => PeerAnswer::Unreachable,
                    None => PeerAnswer::NoAnswer,
                },
                Err(e) => {
                    debug!(peer = instance, addr, error = %e, "peer did not answer");
                    PeerAnswer::NoAnswer
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_registry::{
        BotsFile, EmbeddedRegistry, Fleet, Health, Registry, RegistryError, StoreContact,
    };
    use std::sync::Arc;
    use tokio::sync::watch;

    /// The embedded registry, claiming to have a store with a given contact.
    struct ContactRegistry {
        inner: EmbeddedRegistry,
        contact: Mutex<Option<StoreContact>>,
    }

    #[async_trait::async_trait]
    impl Registry for ContactRegistry {
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
        async fn shutdown(&self) {}
        fn store_contact(&self) -> Option<StoreContact> {
            *self.contact.lock()
        }
    }

    #[tokio::test]
    async fn status_probe_reads_the_peers_etcd_contact_and_checks_who_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let registry = Arc::new(ContactRegistry {
            inner: EmbeddedRegistry::new("gw-9", BotsFile { bots: Vec::new() }, None, &addr),
            contact: Mutex::new(None),
        });
        let config = crate::GatewayConfig {
            instance_id: "gw-9".into(),
            ..crate::GatewayConfig::default()
        };
        let client = shardgate_telegram::Client::new(shardgate_telegram::ClientConfig::default())
            .expect("client");
        let gateway = crate::Gateway::start(
            config,
            registry.clone() as Arc<dyn Registry>,
            client,
            shardgate_metrics::Metrics::new(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(
            gateway,
            listener,
            Default::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let probe = StatusProbe::new(PeerKey::default());
        let t = Duration::from_secs(2);
        let set = |c| *registry.contact.lock() = c;
        // No store (embedded): no answer to go on.
        assert_eq!(probe.ask("gw-9", &addr, t).await, PeerAnswer::NoAnswer);
        set(Some(StoreContact::unreachable_since(Instant::now())));
        assert_eq!(probe.ask("gw-9", &addr, t).await, PeerAnswer::Unreachable);
        set(Some(StoreContact::reachable_since(Instant::now())));
        assert_eq!(probe.ask("gw-9", &addr, t).await, PeerAnswer::Reachable);
        // Another instance at that address does not speak for gw-1.
        set(Some(StoreContact::unreachable_since(Instant::now())));
        assert_eq!(probe.ask("gw-1", &addr, t).await, PeerAnswer::NoAnswer);
        let _ = stop.send(());
        let _ = server.await;
        // Nobody listening: no answer, within the bound.
        let started = Instant::now();
        assert_eq!(
            probe.ask("gw-9", &addr, Duration::from_millis(500)).await,
            PeerAnswer::NoAnswer
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_keeps_channels_only_for_peers_still_asked_about() {
        let probe = StatusProbe::new(PeerKey::default());
        let t = Duration::from_secs(1);
        probe.channel("gw-1", "127.0.0.1:1", t).expect("channel");
        probe.channel("gw-2", "127.0.0.1:2", t).expect("channel");
        assert_eq!(probe.len(), 2);
        // A new address replaces the old channel.
        probe.channel("gw-2", "127.0.0.1:3", t).expect("channel");
        assert_eq!(probe.len(), 2);
        // gw-2 is still asked about; gw-1 left the member list.
        tokio::time::advance(PROBE_IDLE / 2).await;
        probe.channel("gw-2", "127.0.0.1:3", t).expect("channel");
        tokio::time::advance(PROBE_IDLE / 2).await;
        probe.channel("gw-3", "127.0.0.1:4", t).expect("channel");
        let mut kept: Vec<String> = probe.channels.lock().keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["gw-2", "gw-3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_keeps_a_bounded_number_of_channels() {
        let probe = StatusProbe::new(PeerKey::default());
        let t = Duration::from_secs(1);
        for i in 0..MAX_PROBE_PEERS + 10 {
            tokio::time::advance(Duration::from_millis(1)).await;
            probe
                .channel(&format!("gw-{i}"), &format!("127.0.0.1:{}", 1000 + i), t)
                .expect("channel");
        }
        assert_eq!(probe.len(), MAX_PROBE_PEERS);
        assert!(
            !probe.channels.lock().contains_key("gw-0"),
            "the least recently asked went first"
        );
    }
}
