//! The metrics HTTP endpoint: `GET /metrics`, `GET /healthz` (the process
//! answers) and `GET /readyz` (the gateway can route: 200, else 503), the
//! last two for probes that cannot speak gRPC over TLS.
//!
//! Its own accept loop (hyper's HTTP/1 connection builder under the axum
//! router) so that a client cannot hold the port's resources: at most
//! [`ServeLimits::max_connections`] connections are served at once (more
//! wait in the listen backlog), a request's headers must arrive within
//! [`ServeLimits::header_read_timeout`], and a connection with no request
//! for [`ServeLimits::idle_timeout`] is closed. Idle sockets opened and
//! left would otherwise pile up for ever.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::Metrics;

/// The content type of `/metrics`: prometheus-client writes OpenMetrics text
/// (which every Prometheus since 2.5 scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bounds of the metrics port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A request's headers must be in within this. 5 s.
    pub header_read_timeout: Duration,
    /// A connection without a request for this long is closed. 60 s (a
    /// scrape every 15 or 30 s keeps its connection).
    pub idle_timeout: Duration,
    /// Connections served at once. 64.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// How long connections get to finish after `shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The endpoint as an axum router (to mount elsewhere, or to test).
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` resolves,
/// with the default [`ServeLimits`]. Encoding runs on a blocking thread,
/// off the async workers.
pub async fn serve(
    metrics: Metrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(metrics, listener, shutdown, ServeLimits::default()).await
}

/// [`serve`] with these limits.
pub async fn serve_with(
    metrics: Metrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> std::io::Result<()> {
    let app = router(metrics);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: pause, not spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let app = app.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            connection(stream, app, limits, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Serves one connection until the client closes it, it idles past the
/// limit, or the server stops.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
) {
    let epoch = Instant::now();
    let millis = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    // When the last request started or ended (ms since `epoch`).
    let active = Arc::new(AtomicU64::new(0));
    let seen = active.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let seen = seen.clone();
        seen.store(millis(), Ordering::Relaxed);
        async move {
            let response = app.oneshot(req).await;
            seen.store(millis(), Ordering::Relaxed);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let last = Duration::from_millis(active.load(Ordering::Relaxed));
        let idle_at = epoch + last + limits.idle_timeout;
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(idle_at), if !closing => {
                let last = Duration::from_millis(active.load(Ordering::Relaxed));
                if Instant::now() >= epoch + last + limits.idle_timeout {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn metrics_handler(State(metrics): State<Metrics>) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn readyz(State(metrics): State<Metrics>) -> impl IntoResponse {
    let (status, body) = if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}
