//! `shardgate serve` and `shardgate mock`: build the runtime, start the
//! pieces, and stop cleanly on SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use shardgate_etcd::{EtcdConfig, EtcdRegistry};
use shardgate_gateway::broadcast::StoreOpener;
use shardgate_gateway::{Broadcasts, Gateway, ServeOptions, Tls};
use shardgate_jobstore::RedbJobStore;
use shardgate_metrics::Metrics;
use shardgate_registry::{CallerStore, EmbeddedCallers, EmbeddedRegistry, Registry};
use shardgate_telegram::Client;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::cli::ServeArgs;
use crate::settings::Settings;

/// How long queued messages may still go out after a stop signal. With a
/// Bot API request in flight at its end (the dispatcher waits for it, at
/// most 10 s more) and [`CALLS_GRACE`], the process exits within 30 s of
/// SIGTERM whatever the backlog, inside Kubernetes' default grace period.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open gRPC calls may take to write their answers after the drain.
const CALLS_GRACE: Duration = Duration::from_secs(3);
/// How long broadcast runners may take to store their progress at a stop
/// (while the dispatchers drain, so inside [`DRAIN_TIMEOUT`]).
const BROADCAST_STOP: Duration = Duration::from_secs(6);

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::resolve(args)?;
    if settings.etcd.is_none() && settings.bots_file.is_none() {
        bail!(
            "give --etcd URLS (cluster mode) or --bots-file FILE (one instance; TOML with [[bot]] \
             tables: name, token)"
        );
    }
    // Read before serving: a bad certificate stops the start, named.
    let tls = settings
        .tls
        .clone()
        .map(Tls::load)
        .transpose()
        .context("loading the TLS files")?;
    let etcd_access = settings.etcd_access.load()?;
    if let (Some(files), Some(_)) = (&settings.tls, &settings.etcd) {
        settings.gateway.peer_tls = Some(
            files
                .peer_client_config()
                .context("TLS towards the cluster's peers")?,
        );
    }
    // Where broadcast jobs live (embedded mode), and whether to open the
    // store at start: when named, or when jobs may wait there to resume.
    let jobs_dir = match (&settings.etcd, &settings.data_dir) {
        (Some(_), _) => None,
        (None, Some(dir)) => Some((dir.clone(), true)),
        (None, None) => shardgate_gateway::broadcast::default_data_dir().map(|d| {
            let exists = d.join(shardgate_jobstore::FILE_NAME).exists();
            (d, exists)
        }),
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding gRPC address {}", settings.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let advertise = settings.advertise.clone().unwrap_or_else(|| local.to_string());
        let instance = settings.for_instance(local.port());
        // The key this instance presents to its peers (forwarding, Status
        // probes); set once the cluster's callers are read.
        let peer_key = match &settings.gateway.peer_tls {
            Some(tls) => shardgate_gateway::peers::PeerKey::with_tls(tls.clone()),
            None => shardgate_gateway::peers::PeerKey::default(),
        };
        let (registry, embedded, cluster_callers): Stores = match (&settings.etcd, &settings.bots_file) {
                (Some(etcd), _) => {
                    if settings.bots_file.is_some() {
                        warn!("--bots-file is ignored in cluster mode; seed etcd with `shardgate bot import FILE`");
                    }
                    let endpoints = crate::etcd_access::endpoints(etcd)?;
                    let mut config = EtcdConfig::new(endpoints, &settings.cluster, &instance, &advertise);
                    config.access = etcd_access.clone();
                    if let Some(max) = settings.max_outage_extension {
                        config.max_extension = max;
                    }
                    if let Some(grace) = settings.claim_grace {
                        config.claim_grace = grace;
                    }
                    if let Some(ttl) = settings.lease_ttl {
                        config.lease_ttl = ttl;
                    }
                    // Peers are asked over gRPC `Status` whether they reach etcd while
                    // this instance cannot (the ownership extension).
                    let probe: Arc<dyn shardgate_registry::PeerProbe> =
                        Arc::new(shardgate_gateway::peers::StatusProbe::new(peer_key.clone()));
                    let reg = EtcdRegistry::start_with_probe(config, Some(probe))
                        .await
                        .with_context(|| format!("joining cluster {:?} on etcd {etcd}", settings.cluster))?;
                    let callers = reg.callers().await.context("reading the cluster's callers")?;
                    peer_key.set(callers.cluster_key());
                    (Arc::new(reg), None, Some(Arc::new(callers)))
                }
                (None, Some(path)) => {
                    let path = path.clone();
                    let instance = instance.clone();
                    let advertise = advertise.clone();
                    let reg = tokio::task::spawn_blocking(move || EmbeddedRegistry::from_file(&instance, path, &advertise))
                        .await
                        .context("reading the bots file")??;
                    let reg = Arc::new(reg);
                    (reg.clone(), Some(reg), None)
                }
                (None, None) => unreachable!("checked before starting the runtime"),
            };
        let metrics = Metrics::new();
        if let Some(addr) = settings.metrics_listen {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics address {addr}"))?;
            let bound = l.local_addr().unwrap_or(addr);
            info!(addr = %bound, "Prometheus metrics at /metrics");
            println!("shardgate listening metrics={bound}");
            let m = metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = shardgate_metrics::serve(m, l, std::future::pending::<()>()).await {
                    error!(error = %e, "metrics server failed");
                }
            });
        }
        let client = Client::new(settings.client.clone()).context("building the Bot API client")?;
        let file_callers = match (&settings.etcd, &settings.callers_file) {
            (None, Some(path)) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || EmbeddedCallers::from_file(path))
                    .await
                    .context("reading the callers file")??;
                Some(Arc::new(store))
            }
            (Some(_), Some(_)) => {
                warn!("--callers-file is ignored in cluster mode; callers live in etcd (`shardgate caller --etcd ...`)");
                None
            }
            (_, None) => None,
        };
        let store: Arc<dyn CallerStore> = match (&cluster_callers, &file_callers) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => f.clone(),
            (None, None) => Arc::new(EmbeddedCallers::empty()),
        };
        let gateway = Gateway::start_with_callers(
            settings.gateway.clone(),
            registry.clone(),
            store,
            client,
            metrics.clone(),
        );
        let broadcasts = broadcasts(&gateway, settings.etcd.is_some(), settings.data_dir.is_some(), jobs_dir).await?;
        spawn_reload(embedded, file_callers, tls.clone());
        // `GET /readyz` on the metrics port follows the gateway's readiness.
        {
            let mut ready = gateway.ready();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                loop {
                    metrics.set_ready(*ready.borrow_and_update());
                    if ready.changed().await.is_err() {
                        metrics.set_ready(false);
                        return;
                    }
                }
            });
        }
        warn_if_open(&gateway, local);
        // The Bot API-compatible front door stops accepting at the signal,
        // like gRPC; its open requests end as the drain answers them.
        let (signalled_tx, signalled) = tokio::sync::watch::channel(false);
        let door = match settings.http_listen {
            None => None,
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the HTTP front door's address {addr}"))?;
                let bound = l.local_addr().unwrap_or(addr);
                println!("shardgate listening http={bound}");
                let options = shardgate_frontdoor::DoorOptions {
                    tls: tls.clone(),
                    limits: shardgate_frontdoor::DoorLimits {
                        conn: settings.conn_limits.clone(),
                        ..Default::default()
                    },
                };
                let mut signalled = signalled.clone();
                let stopped = async move {
                    let _ = signalled.wait_for(|s| *s).await;
                };
                Some(tokio::spawn(shardgate_frontdoor::serve(gateway.clone(), l, options, stopped)))
            }
        };
        info!(
            instance = %instance,
            grpc = %local,
            api = %settings.client.api_base,
            mode = if settings.etcd.is_some() { "cluster" } else { "embedded" },
            etcd_tls = etcd_access.tls(),
            etcd_user = etcd_access.user.as_ref().map_or("-", |(name, _)| name.as_str()),
            bots = registry.fleet().borrow().bots.len(),
            "shardgate serving"
        );
        // One machine-readable line for scripts and tests.
        println!("shardgate listening grpc={local}");
        // The drain starts at the signal, not after gRPC's graceful stop:
        // that waits for every call in flight, and a unary Send queued
        // behind a group window would hold it (and the lease) for as long as
        // the message may wait. Draining fails what cannot go out in time,
        // which ends those calls, so the server's stop follows.
        let (drained_tx, mut drained) = tokio::sync::watch::channel(false);
        let stop = {
            let gateway = gateway.clone();
            let broadcasts = broadcasts.clone();
            async move {
                stop_signal().await;
                let _ = signalled_tx.send(true);
                info!("stop requested: no new requests; draining queued messages (up to {DRAIN_TIMEOUT:?})");
                gateway.begin_shutdown();
                tokio::spawn(async move {
                    // Jobs stop handing out and store their progress while
                    // the dispatchers still send what they were given.
                    tokio::join!(
                        broadcasts.stop(BROADCAST_STOP),
                        gateway.shutdown(DRAIN_TIMEOUT)
                    );
                    let _ = drained_tx.send(true);
                });
            }
        };
        let options = ServeOptions {
            tls: tls.clone(),
            limits: settings.conn_limits.clone(),
            broadcasts: broadcasts.clone(),
        };
        let server = shardgate_gateway::server::serve(gateway.clone(), listener, options, stop);
        tokio::pin!(server);
        let result = tokio::select! {
            r = &mut server => Some(r),
            _ = drained.wait_for(|d| *d) => {
                // Every message is answered; calls still open get a short
                // grace to write their answers, then the process goes on.
                tokio::time::timeout(CALLS_GRACE, &mut server).await.ok()
            }
        };
        if result.is_none() {
            warn!("gRPC calls still open {CALLS_GRACE:?} after the drain; closing them");
        }
        if *gateway.stopping().borrow() {
            let _ = drained.wait_for(|d| *d).await;
        } else {
            // The server ended on its own (an error): drain all the same.
            gateway.begin_shutdown();
            broadcasts.stop(BROADCAST_STOP).await;
            gateway.shutdown(DRAIN_TIMEOUT).await;
        }
        if let Some(door) = door {
            // Its requests were answered by the drain; the rest are cut.
            if tokio::time::timeout(CALLS_GRACE, door).await.is_err() {
                warn!("HTTP requests still open {CALLS_GRACE:?} after the drain; closing them");
            }
        }
        // Release bots and the lease so that peers take over at once.
        registry.shutdown().await;
        info!("stopped");
        if let Some(result) = result {
            result.context("serving gRPC")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The broadcast side: the embedded job store under the data directory,
/// or refused with the reason (cluster mode has no job store yet). A data
/// directory named on the command line must open; the default one may be
/// missing or in use (then broadcasts are refused, sends are not).
async fn broadcasts(
    gateway: &Gateway,
    cluster: bool,
    named: bool,
    dir: Option<(std::path::PathBuf, bool)>,
) -> anyhow::Result<Broadcasts> {
    if cluster {
        return Ok(Broadcasts::disabled(
            "cluster mode keeps no job store yet; broadcasts run on an instance in embedded mode \
             (--bots-file, --data-dir)",
        ));
    }
    let Some((dir, open_now)) = dir else {
        return Ok(Broadcasts::disabled(
            "no data directory: give --data-dir (HOME and XDG_STATE_HOME are unset)",
        ));
    };
    let d = dir.clone();
    let opener: StoreOpener = Arc::new(move || {
        RedbJobStore::open(&d).map(|s| Arc::new(s) as Arc<dyn shardgate_jobs::JobStore>)
    });
    match Broadcasts::start(gateway.clone(), opener, open_now).await {
        Ok(b) => {
            info!(data_dir = %dir.display(), "broadcast jobs kept in the data directory");
            Ok(b)
        }
        Err(e) if named => {
            Err(e).with_context(|| format!("opening the job store under {}", dir.display()))
        }
        Err(e) => {
            warn!(data_dir = %dir.display(), error = %e, "job store not opened; broadcasts are refused");
            Ok(Broadcasts::disabled(format!(
                "the job store under {} cannot be opened: {e}",
                dir.display()
            )))
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The registry, the embedded registry to reload (embedded mode), and the
/// cluster's callers (cluster mode).
type Stores = (
    Arc<dyn Registry>,
    Option<Arc<EmbeddedRegistry>>,
    Option<Arc<dyn CallerStore>>,
);

/// Says so on stderr when anyone who reaches the port may send.
fn warn_if_open(gateway: &Gateway, addr: std::net::SocketAddr) {
    let callers = gateway.callers();
    if !callers.enforced() {
        warn!(
            %addr,
            auth = callers.mode().as_str(),
            "auth is off: anyone who reaches {addr} may send through every bot; add a caller \
             (`shardgate caller add NAME`) or pass --auth on"
        );
    } else if callers.count() == 0 {
        warn!(%addr, "auth is on and no caller exists: every call is refused UNAUTHENTICATED");
    }
}

/// How often the callers file is checked for changes.
const CALLERS_POLL: Duration = Duration::from_secs(1);

/// Re-reads the bots file on SIGHUP (rotation, new bots, enable/disable) and
/// the callers file on SIGHUP and whenever its content changes.
fn spawn_reload(
    bots: Option<Arc<EmbeddedRegistry>>,
    callers: Option<Arc<EmbeddedCallers>>,
    tls: Option<Tls>,
) {
    if let Some(c) = callers.clone() {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CALLERS_POLL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                reload_callers(&c).await;
            }
        });
    }
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; files will not be re-read on it");
                return;
            }
        };
        while hup.recv().await.is_some() {
            if let Some(registry) = &bots {
                let reg = registry.clone();
                match tokio::task::spawn_blocking(move || reg.reload()).await {
                    Ok(Ok(n)) => info!(bots = n, "bots file re-read"),
                    Ok(Err(e)) => {
                        error!(error = %e, "bots file not applied; keeping the previous bots")
                    }
                    Err(e) => error!(error = %e, "bots file reload failed"),
                }
            }
            if let Some(c) = &callers {
                reload_callers(c).await;
            }
            if let Some(tls) = &tls {
                let t = tls.clone();
                match tokio::task::spawn_blocking(move || t.reload()).await {
                    Ok(Ok(())) => info!("TLS certificate and key re-read"),
                    Ok(Err(e)) => {
                        error!(error = %e, "TLS files not applied; keeping the previous certificate")
                    }
                    Err(e) => error!(error = %e, "TLS reload failed"),
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (bots, callers, tls);
}

async fn reload_callers(callers: &Arc<EmbeddedCallers>) {
    let c = callers.clone();
    match tokio::task::spawn_blocking(move || c.reload()).await {
        Ok(Ok(Some(n))) => info!(callers = n, "callers file re-read"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => error!(error = %e, "callers file not applied; keeping the previous callers"),
        Err(e) => error!(error = %e, "callers file reload failed"),
    }
}

pub fn run_mock(args: shardgate_mock::MockArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(shardgate_mock::serve_until(args, stop_signal()))
        .context("running the Bot API emulator")?;
    Ok(ExitCode::SUCCESS)
}
