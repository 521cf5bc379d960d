//! One gateway in this process, on the embedded registry and a free loopback
//! port: what `shardgate demo` and the load tool run, so that both go through
//! the real gRPC server the way a caller would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shardgate_metrics::Metrics;
use shardgate_registry::{
    BotSpec, BotsFile, CallerStore, EmbeddedCallers, EmbeddedRegistry, Registry,
};
use shardgate_telegram::Client;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::{ServeError, serve};
use crate::{Gateway, GatewayConfig};

pub struct LocalGateway {
    pub gateway: Gateway,
    /// Where the gRPC server listens.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServeError>>,
}

impl LocalGateway {
    /// Starts the gateway over `bots` and serves it on 127.0.0.1:0, with no
    /// callers (auth off).
    pub async fn start(
        bots: Vec<BotSpec>,
        config: GatewayConfig,
        client: Client,
        metrics: Metrics,
    ) -> std::io::Result<LocalGateway> {
        let callers: Arc<dyn CallerStore> = Arc::new(EmbeddedCallers::empty());
        LocalGateway::start_with_callers(bots, config, callers, client, metrics).await
    }

    /// [`start`](Self::start) with the callers of `callers` (auth on as soon
    /// as one exists).
    pub async fn start_with_callers(
        bots: Vec<BotSpec>,
        config: GatewayConfig,
        callers: Arc<dyn CallerStore>,
        client: Client,
        metrics: Metrics,
    ) -> std::io::Result<LocalGateway> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(EmbeddedRegistry::new(
            &config.instance_id,
            BotsFile { bots },
            None,
            &addr.to_string(),
        ));
        let gateway = Gateway::start_with_callers(
            config,
            registry as Arc<dyn Registry>,
            callers,
            client,
            metrics,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            gateway.clone(),
            listener,
            Default::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(LocalGateway {
            gateway,
            addr,
            stop,
            server,
        })
    }

    /// Stops the server, lets queued messages go out for up to `drain`, and
    /// waits at most `wait` for it all.
    pub async fn stop(self, drain: Duration, wait: Duration) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(wait, async {
            self.gateway.shutdown(drain).await;
            let _ = self.server.await;
        })
        .await;
    }
}
