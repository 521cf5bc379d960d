//! The door's port: the gateway's accept loop (connection cap, TLS with the
//! handshake timeout, the client certificate's CN), HTTP/1.1 and HTTP/2 on
//! each connection, a time limit on request headers and on idle
//! connections, and a graceful stop.
//!
//! Invariant: a connection lives while it is used. Its request headers must
//! arrive within [`DoorLimits::header_read_timeout`], and a connection with
//! no request running for [`DoorLimits::idle_timeout`] is closed, so opened
//! and abandoned sockets do not pile up; the accept loop holds at most
//! `conn.max_connections` of them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use shardgate_gateway::{ConnLimits, Gateway, Tls, incoming};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::door::Door;

/// Bounds of the door's port.
#[derive(Debug, Clone)]
pub struct DoorLimits {
    /// Connection cap and TLS handshake time (the gRPC port's defaults).
    pub conn: ConnLimits,
    /// A request's headers must be in within this. 10 s.
    pub header_read_timeout: Duration,
    /// A connection without a running request for this long is closed. 90 s.
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection. 256.
    pub max_streams: u32,
}

impl Default for DoorLimits {
    fn default() -> Self {
        DoorLimits {
            conn: ConnLimits::default(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_streams: 256,
        }
    }
}

/// How the door is served: TLS or plain, and its bounds.
#[derive(Debug, Clone, Default)]
pub struct DoorOptions {
    /// The gRPC port's TLS (the same certificate, client CAs and reloads).
    pub tls: Option<Tls>,
    pub limits: DoorLimits,
}

/// How long open requests get to be answered after `shutdown` (the gateway
/// answers every queued message within its drain).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Serves the Bot API on `listener` until `shutdown` resolves; then accepts
/// no more, lets running requests finish (up to [`SHUTDOWN_GRACE`]) and
/// returns.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    options: DoorOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let tls = if options.tls.is_some() { "on" } else { "off" };
        info!(%addr, tls, "Bot API front door listening");
    }
    let door = Door::new(gateway);
    let limits = options.limits;
    let mut conns = incoming(listener, options.tls, limits.conn.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut running = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            _ = &mut shutdown => break,
            next = conns.next() => match next {
                Some(Ok(conn)) => conn,
                Some(Err(e)) => {
                    debug!(error = %e, "a connection failed before it was served");
                    continue;
                }
                None => break,
            },
        };
        while running.try_join_next().is_some() {}
        running.spawn(connection(
            conn,
            door.clone(),
            limits.clone(),
            stop_rx.clone(),
        ));
    }
    // Dropping the stream stops the accept loop; open connections finish
    // what they run.
    drop(conns);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Serves one connection until the client closes it, it idles past the
/// limit, or the door stops.
async fn connection(
    conn: shardgate_gateway::Conn,
    door: Door,
    limits: DoorLimits,
    mut stop: watch::Receiver<bool>,
) {
    let info = Arc::new(conn.info().clone());
    let epoch = Instant::now();
    let millis = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Requests running, and when the last one started or ended (ms since
    // `epoch`): idle means none running for `idle_timeout`.
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let door = door.clone();
        let info = info.clone();
        let seen = seen.clone();
        seen.running.fetch_add(1, Ordering::Relaxed);
        seen.last.store(millis(), Ordering::Relaxed);
        async move {
            let answer = door.handle(&info, req.map(axum::body::Body::new)).await;
            seen.last.store(millis(), Ordering::Relaxed);
            seen.running.fetch_sub(1, Ordering::Relaxed);
            answer
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let served = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(served);
    let mut closing = false;
    loop {
        let idle_at = epoch
            + Duration::from_millis(activity.last.load(Ordering::Relaxed))
            + limits.idle_timeout;
        tokio::select! {
            _ = served.as_mut() => return,
            _ = tokio::time::sleep_until(idle_at), if !closing => {
                let last = Duration::from_millis(activity.last.load(Ordering::Relaxed));
                let idle = activity.running.load(Ordering::Relaxed) == 0;
                if idle && Instant::now() >= epoch + last + limits.idle_timeout {
                    served.as_mut().graceful_shutdown();
                    closing = true;
                } else if !idle {
                    // A long request (a queued message) is not idleness:
                    // look again a period after now.
                    activity.last.store(millis(), Ordering::Relaxed);
                }
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    served.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

#[derive(Default)]
struct Activity {
    running: AtomicUsize,
    last: AtomicU64,
}
