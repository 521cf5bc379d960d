//! Serves the gateway on one port: the `Gateway` service, the standard gRPC
//! health service (SERVING once a bot can take traffic) and server
//! reflection (v1 and v1alpha).

use std::future::Future;
use std::sync::Arc;

use tonic::codegen::http;
use tonic::server::NamedService;

use shardgate_proto::v1::gateway_server::GatewayServer;
use tokio::net::TcpListener;
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Server;
use tonic::{Request, Status};
use tonic_health::ServingStatus;
use tracing::info;

use crate::Gateway;
use crate::callers::{Callers, Who, bearer};
use crate::listen::{ConnInfo, ConnLimits, incoming};
use crate::peers::FORWARDED_BY;
use crate::service::GatewayService;
use crate::tls::Tls;

/// The name the health service reports the gateway under: SERVING once a
/// bot can take traffic.
pub const SERVICE_NAME: &str = "shardgate.v1.Gateway";
/// Always SERVING while the process answers: for liveness probes, since
/// "no bot can take traffic" is not fixed by a restart.
pub const LIVENESS_NAME: &str = "shardgate.liveness";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The auth layer of the `Gateway` service: resolves who calls (bearer key,
/// or a verified client certificate's CN) and attaches it to the request as
/// a [`Who`]; refuses unknown keys, bans and forged forwarding headers
/// before any handler runs. Health and reflection do not pass through it.
#[derive(Clone)]
struct AuthLayer {
    callers: Callers,
}

impl Interceptor for AuthLayer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let forwarded = request.metadata().contains_key(FORWARDED_BY);
        let cert_name = request
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.client_cn.clone());
        let who = self
            .callers
            .identify(bearer(request.metadata()), cert_name.as_deref(), forwarded)
            .map_err(|e| e.to_status())?;
        request.extensions_mut().insert::<Who>(who);
        Ok(request)
    }
}

/// How a port is served: TLS or plain, and its connection bounds.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// TLS (rustls) when set, with client certificates when it has a CA.
    pub tls: Option<Tls>,
    /// Connection cap and handshake time.
    pub limits: ConnLimits,
    /// Broadcast jobs (default: refused, no job store).
    pub broadcasts: crate::Broadcasts,
}

/// HTTP/2 bounds of every connection: concurrent streams (a client opens
/// more connections rather than more streams past it), header size, and
/// pings that find a silently dead client within half a minute.
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest `Call` / `CallStream` request accepted: uploads up to
/// Telegram's sizes with their parameters. Other RPCs keep gRPC's 4 MiB.
pub const CALL_MESSAGE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The RPCs whose requests may be large (uploads).
fn is_call_path(path: &str) -> bool {
    matches!(
        path,
        "/shardgate.v1.Gateway/Call" | "/shardgate.v1.Gateway/CallStream"
    )
}

/// One service, two message limits: requests for `Call` and `CallStream` go
/// to `large`, every other to `small` (both wrap the same handler).
#[derive(Clone)]
struct ByMethod<S> {
    small: S,
    large: S,
}

impl<S: NamedService> NamedService for ByMethod<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for ByMethod<S>
where
    S: tonic::codegen::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self.small.poll_ready(cx) {
            std::task::Poll::Ready(Ok(())) => self.large.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if is_call_path(req.uri().path()) {
            self.large.call(req)
        } else {
            self.small.call(req)
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and waits for
/// running calls.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(LIVENESS_NAME, ServingStatus::Serving)
        .await;
    let mut ready = gateway.ready();
    tokio::spawn(async move {
        loop {
            let status = if *ready.borrow_and_update() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(SERVICE_NAME, status).await;
            reporter.set_service_status("", status).await;
            if ready.changed().await.is_err() {
                return;
            }
        }
    });
    // Reflection in both versions: v1, and v1alpha for the many tools that
    // only speak it (grpcurl before 1.9, grpcui, older IDE clients).
    let descriptors = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shardgate_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = descriptors().build_v1()?;
    let reflection_v1alpha = descriptors().build_v1alpha()?;
    if let Ok(addr) = listener.local_addr() {
        let tls = match &options.tls {
            None => "off",
            Some(t) if t.verifies_clients() => "on, client certificates verified",
            Some(_) => "on",
        };
        info!(%addr, tls, "gRPC listening");
    }
    let auth = AuthLayer {
        callers: gateway.callers().clone(),
    };
    // gRPC's 4 MiB message limit stays for every RPC but the calls, whose
    // uploads may be up to Telegram's 50 MB: tonic sets the limit per
    // service, so two copies of the service share the port, picked by path.
    let service = Arc::new(GatewayService::new(gateway, options.broadcasts));
    let api = ByMethod {
        small: InterceptedService::new(GatewayServer::from_arc(service.clone()), auth.clone()),
        large: InterceptedService::new(
            GatewayServer::from_arc(service).max_decoding_message_size(CALL_MESSAGE_MAX_BYTES),
            auth,
        ),
    };
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(incoming(listener, options.tls, options.limits), shutdown)
        .await?;
    Ok(())
}
