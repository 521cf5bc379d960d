//! Serves the gateway on one port: the `Gateway` service, the standard gRPC
//! health service (SERVING once a bot can take traffic) and server
//! reflection (v1 and v1alpha).

use std::future::Future;

use shardgate_proto::v1::gateway_server::GatewayServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Server;
use tonic::{Request, Status};
use tonic_health::ServingStatus;
use tracing::info;

use crate::Gateway;
use crate::callers::{Callers, Who, bearer};
use crate::peers::FORWARDED_BY;
use crate::service::GatewayService;

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
        let who = self
            .callers
            .identify(bearer(request.metadata()), None, forwarded)
            .map_err(|e| e.to_status())?;
        request.extensions_mut().insert::<Who>(who);
        Ok(request)
    }
}

/// Serves until `shutdown` resolves, then stops accepting and waits for
/// running calls.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
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
        info!(%addr, "gRPC listening");
    }
    let auth = AuthLayer {
        callers: gateway.callers().clone(),
    };
    let api = InterceptedService::new(GatewayServer::new(GatewayService::new(gateway)), auth);
    Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
