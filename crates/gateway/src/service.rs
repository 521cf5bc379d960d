//! The `shardgate.v1.Gateway` gRPC service over a [`Gateway`].

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use futures::stream::{FuturesUnordered, StreamExt};
use shardgate_metrics::{Direction, Entry};
use shardgate_proto::v1 as pb;
use shardgate_proto::v1::gateway_server;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug};

use crate::broadcast::ControlKind;
use crate::callers::Who;
use crate::peers::FORWARDED_BY;
use crate::reply::Outcome;
use crate::{Broadcasts, Gateway, Message};

pub struct GatewayService {
    gateway: Gateway,
    broadcasts: Broadcasts,
}

impl GatewayService {
    /// The service over `gateway`; broadcast calls go to `broadcasts`.
    pub fn new(gateway: Gateway, broadcasts: Broadcasts) -> Self {
        GatewayService {
            gateway,
            broadcasts,
        }
    }
}

/// When to give up on the caller's behalf, from the `grpc-timeout` header.
///
/// We answer a little before the caller's deadline (a tenth of it, at most
/// 100 ms), so that the caller gets our `DEADLINE_EXCEEDED` rather than its
/// own local timeout (which some clients, tonic's among them, report as
/// `CANCELLED`), and tonic's server-side timeout never races ours.
pub fn deadline_of<T>(req: &Request<T>) -> Option<Instant> {
    let raw = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let timeout = parse_grpc_timeout(raw)?;
    let reserve = (timeout / 10).min(Duration::from_millis(100));
    Some(Instant::now() + (timeout - reserve))
}

/// Parses gRPC's timeout format: up to 8 digits and a unit (H M S m u n).
pub fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn response(client_ref: String, outcome: Outcome) -> pb::SendResponse {
    match outcome {
        Ok(d) => pb::SendResponse {
            client_ref,
            bot: d.bot,
            message_id: d.message_id,
            chat_id: d.chat_id,
            attempts: d.attempts,
            error: None,
            deduplicated: d.deduplicated,
        },
        Err(e) => pb::SendResponse {
            client_ref,
            error: Some(e.to_proto()),
            ..pb::SendResponse::default()
        },
    }
}

/// Responses buffered per stream before the reader waits for the caller.
const STREAM_BUFFER: usize = 1024;

/// What the unary and stream RPCs share between `Send` and `Call`: a
/// request that becomes a [`Message`], and the answer built from its outcome.
trait Wire: Send + 'static {
    type Response: Send + 'static;
    /// Instances forward `SendStream` messages to a bot's owner; calls are
    /// never forwarded.
    const FORWARDABLE: bool;
    fn client_ref(&self) -> String;
    /// The forwarding instance's note of the caller (empty when none).
    fn take_forwarded_caller(&mut self) -> String;
    /// Validation at the door (and, for edits, finding their bot).
    fn into_message(self, gateway: &Gateway) -> Result<Message, crate::SendError>;
    fn respond(client_ref: String, outcome: Outcome) -> Self::Response;
}

impl Wire for pb::SendRequest {
    type Response = pb::SendResponse;
    const FORWARDABLE: bool = true;
    fn client_ref(&self) -> String {
        self.client_ref.clone()
    }
    fn take_forwarded_caller(&mut self) -> String {
        std::mem::take(&mut self.forwarded_caller)
    }
    fn into_message(self, _gateway: &Gateway) -> Result<Message, crate::SendError> {
        Message::from_request(self)
    }
    fn respond(client_ref: String, outcome: Outcome) -> pb::SendResponse {
        response(client_ref, outcome)
    }
}

impl Wire for pb::CallRequest {
    type Response = pb::CallResponse;
    const FORWARDABLE: bool = false;
    fn client_ref(&self) -> String {
        self.client_ref.clone()
    }
    fn take_forwarded_caller(&mut self) -> String {
        String::new()
    }
    fn into_message(self, gateway: &Gateway) -> Result<Message, crate::SendError> {
        let mut msg = Message::from_call(self)?;
        gateway.pin_edit(&mut msg)?;
        Ok(msg)
    }
    fn respond(client_ref: String, outcome: Outcome) -> pb::CallResponse {
        match outcome {
            Ok(d) => pb::CallResponse {
                client_ref,
                bot: d.bot,
                result_json: d.result_json.as_deref().unwrap_or_default().to_owned(),
                chat_id: public_chat_id(d.chat_id),
                attempts: d.attempts,
                error: None,
                deduplicated: d.deduplicated,
            },
            Err(e) => pb::CallResponse {
                client_ref,
                error: Some(e.to_proto()),
                ..pb::CallResponse::default()
            },
        }
    }
}

/// A chat id a caller may see: the gateway's own keys (of `@username`s,
/// of calls counted on the bot's limit only) are 0.
fn public_chat_id(chat_id: i64) -> i64 {
    if chat_id.unsigned_abs() >= 1 << 61 {
        0
    } else {
        chat_id
    }
}

type Answers<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

impl GatewayService {
    async fn unary<T: Wire>(&self, request: Request<T>) -> Result<Response<T::Response>, Status> {
        let started = Instant::now();
        let metrics = self.gateway.metrics();
        let deadline = deadline_of(&request);
        // The caller's trace (W3C traceparent) continues in our spans.
        let span = if T::FORWARDABLE {
            tracing::info_span!("grpc.send")
        } else {
            tracing::info_span!("grpc.call")
        };
        shardgate_telemetry::set_parent_from_metadata(&span, request.metadata());
        let who = who_of(&request);
        let req = request.into_inner();
        let client_ref = req.client_ref();
        let result = async {
            let msg = req.into_message(&self.gateway)?;
            let admission = self.gateway.callers().admit(&who, &msg).await?;
            metrics.accepted(Entry::Unary);
            let deadline = msg.deadline(deadline);
            self.gateway
                .submit_admitted(msg, deadline, admission, false)
                .wait(deadline)
                .await
        }
        .instrument(span)
        .await;
        let code = result
            .as_ref()
            .map_or_else(|e| e.code(), |_| tonic::Code::Ok);
        metrics.finished(Entry::Unary, code, started.elapsed());
        match result {
            Ok(d) => Ok(Response::new(T::respond(client_ref, Ok(d)))),
            Err(e) => Err(e.to_status()),
        }
    }

    fn stream<T: Wire>(&self, request: Request<Streaming<T>>) -> Answers<T::Response>
    where
        Streaming<T>: Send,
    {
        let deadline = deadline_of(&request);
        // The auth layer let the forwarding header through from peers only.
        let forwarded = T::FORWARDABLE && request.metadata().contains_key(FORWARDED_BY);
        let who = who_of(&request);
        let entry = if forwarded {
            Entry::Forwarded
        } else {
            Entry::Stream
        };
        let metrics = self.gateway.metrics();
        let span = if T::FORWARDABLE {
            tracing::info_span!("grpc.send_stream", forwarded)
        } else {
            tracing::info_span!("grpc.call_stream")
        };
        shardgate_telemetry::set_parent_from_metadata(&span, request.metadata());
        let mut inbound = request.into_inner();
        let gateway = self.gateway.clone();
        let callers = gateway.callers().clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut stopping = self.gateway.stopping();
        let pending_max = self.gateway.config().stream_pending_max.max(1);
        tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut reading = Reading::Open;
            // Requests taken off the stream; each one is answered.
            let mut read: u64 = 0;
            while reading == Reading::Open || !pending.is_empty() {
                let open = reading == Reading::Open;
                tokio::select! {
                    // Biased: once a stop is requested, not one more request
                    // is read, so the count in the final status is exact.
                    biased;
                    // Stopping: answer what was accepted, take nothing new.
                    _ = stopped(&mut stopping), if open => reading = Reading::Cut(Cut::Stopping),
                    Some(resp) = pending.next(), if !pending.is_empty() => {
                        if tx.send(Ok(resp)).await.is_err() {
                            // The caller is gone; queued messages still go out.
                            return;
                        }
                    }
                    // At most `pending_max` answers owed: the caller waits
                    // on flow control until some are answered.
                    next = inbound.message(), if open && pending.len() < pending_max => match next {
                        Ok(Some(mut req)) => {
                            read += 1;
                            let client_ref = req.client_ref();
                            let for_caller = req.take_forwarded_caller();
                            let admitted = match req.into_message(&gateway) {
                                Ok(msg) if forwarded => callers
                                    .admit_forwarded(Some(&for_caller), &msg)
                                    .map(|a| (msg, a)),
                                Ok(msg) => callers.admit(&who, &msg).await.map(|a| (msg, a)),
                                Err(e) => Err(e),
                            };
                            match admitted {
                                Ok((msg, admission)) => {
                                    let started = Instant::now();
                                    metrics.accepted(entry);
                                    if forwarded {
                                        metrics.forwarded(Direction::In);
                                    }
                                    let deadline = msg.deadline(deadline);
                                    let p = span.in_scope(|| {
                                        gateway.submit_admitted(msg, deadline, admission, forwarded)
                                    });
                                    let metrics = metrics.clone();
                                    pending.push(async move {
                                        let outcome = p.wait(deadline).await;
                                        let code = outcome.as_ref().map_or_else(|e| e.code(), |_| tonic::Code::Ok);
                                        metrics.finished(entry, code, started.elapsed());
                                        T::respond(client_ref, outcome)
                                    });
                                }
                                Err(e) => {
                                    metrics.finished(entry, e.code(), Duration::ZERO);
                                    if tx.send(Ok(T::respond(client_ref, Err(e)))).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        Ok(None) => reading = Reading::Ended,
                        Err(status) => {
                            debug!(%status, "request stream broke on the caller's side");
                            reading = Reading::Cut(Cut::Broken);
                        }
                    },
                }
            }
            // Everything read was answered above. A stream the caller did not
            // end itself does not end OK: requests after the cut were not read.
            if let Reading::Cut(cut) = reading {
                let _ = tx.send(Err(cut_status(cut, read))).await;
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl gateway_server::Gateway for GatewayService {
    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        self.unary(request).await
    }

    type SendStreamStream = Answers<pb::SendResponse>;

    async fn send_stream(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        Ok(Response::new(self.stream(request)))
    }

    async fn call(
        &self,
        request: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallResponse>, Status> {
        self.unary(request).await
    }

    type CallStreamStream = Answers<pb::CallResponse>;

    async fn call_stream(
        &self,
        request: Request<Streaming<pb::CallRequest>>,
    ) -> Result<Response<Self::CallStreamStream>, Status> {
        Ok(Response::new(self.stream(request)))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.gateway.status()))
    }

    async fn create_broadcast(
        &self,
        request: Request<Streaming<pb::BroadcastChunk>>,
    ) -> Result<Response<pb::Broadcast>, Status> {
        let who = who_of(&request);
        let b = self.broadcasts.create(&who, request.into_inner()).await?;
        Ok(Response::new(b))
    }

    async fn get_broadcast(
        &self,
        request: Request<pb::BroadcastRef>,
    ) -> Result<Response<pb::Broadcast>, Status> {
        let who = who_of(&request);
        let id = request.into_inner().id;
        answer(self.broadcasts.get(&who, &id).await)
    }

    type WatchBroadcastStream = BoxStream<pb::Broadcast>;

    async fn watch_broadcast(
        &self,
        request: Request<pb::BroadcastRef>,
    ) -> Result<Response<Self::WatchBroadcastStream>, Status> {
        let who = who_of(&request);
        let id = request.into_inner().id;
        let rx = self
            .broadcasts
            .watch(&who, &id)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_broadcasts(
        &self,
        request: Request<pb::ListBroadcastsRequest>,
    ) -> Result<Response<pb::ListBroadcastsResponse>, Status> {
        let who = who_of(&request);
        let broadcasts = self
            .broadcasts
            .list(&who)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(pb::ListBroadcastsResponse { broadcasts }))
    }

    async fn pause_broadcast(
        &self,
        request: Request<pb::BroadcastRef>,
    ) -> Result<Response<pb::Broadcast>, Status> {
        self.control(request, ControlKind::pause).await
    }

    async fn resume_broadcast(
        &self,
        request: Request<pb::BroadcastRef>,
    ) -> Result<Response<pb::Broadcast>, Status> {
        self.control(request, ControlKind::resume).await
    }

    async fn cancel_broadcast(
        &self,
        request: Request<pb::BroadcastRef>,
    ) -> Result<Response<pb::Broadcast>, Status> {
        self.control(request, ControlKind::cancel).await
    }

    type BroadcastResultsStream = BoxStream<pb::RecipientResult>;

    async fn broadcast_results(
        &self,
        request: Request<pb::BroadcastRef>,
    ) -> Result<Response<Self::BroadcastResultsStream>, Status> {
        let who = who_of(&request);
        let id = request.into_inner().id;
        let rx = self
            .broadcasts
            .results(&who, &id)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn answer(
    r: Result<pb::Broadcast, crate::broadcast::BroadcastError>,
) -> Result<Response<pb::Broadcast>, Status> {
    r.map(Response::new).map_err(|e| e.to_status())
}

impl GatewayService {
    async fn control(
        &self,
        request: Request<pb::BroadcastRef>,
        what: fn(
            tokio::sync::oneshot::Sender<Result<pb::Broadcast, crate::broadcast::BroadcastError>>,
        ) -> ControlKind,
    ) -> Result<Response<pb::Broadcast>, Status> {
        let who = who_of(&request);
        let id = request.into_inner().id;
        answer(self.broadcasts.control(&who, &id, what).await)
    }
}

/// Who the auth layer said the call comes from (anonymous when the service
/// runs without it, as in unit tests).
fn who_of<T>(request: &Request<T>) -> Who {
    request
        .extensions()
        .get::<Who>()
        .cloned()
        .unwrap_or(Who::Anonymous)
}

/// Trailer of a `SendStream` the gateway stopped reading early: how many
/// requests it read (each of them was answered before the status).
pub const REQUESTS_READ: &str = "shardgate-requests-read";

/// Where a `SendStream`'s reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Open,
    /// The caller ended its requests: the stream ends OK once all are answered.
    Ended,
    /// Reading stopped before the caller ended: the stream ends UNAVAILABLE.
    Cut(Cut),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The gateway is stopping.
    Stopping,
    /// The inbound half broke (reset, malformed frame, connection lost).
    Broken,
}

/// The final status of a stream cut after `read` requests: UNAVAILABLE, the
/// count in its message and in the [`REQUESTS_READ`] trailer. A client
/// resends exactly the requests it got no answer for.
fn cut_status(cut: Cut, read: u64) -> Status {
    let why = match cut {
        Cut::Stopping => "gateway stopping",
        Cut::Broken => "the request stream broke",
    };
    let mut status = Status::unavailable(format!(
        "{why}: the stream was closed after {read} requests; requests after it were not read \
         (every request read was answered: resend those that got no answer)"
    ));
    if let Ok(v) = read.to_string().parse() {
        status.metadata_mut().insert(REQUESTS_READ, v);
    }
    status
}

/// The number of requests read, if `status` ends a stream the gateway cut
/// (a stream closed early for shutdown, overload or a broken request
/// stream): every request after them went unread.
pub fn requests_read(status: &Status) -> Option<u64> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    status
        .metadata()
        .get(REQUESTS_READ)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Resolves once the gateway is stopping (never if the flag's sender goes).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_stream_says_how_many_requests_were_read() {
        for (cut, read) in [(Cut::Stopping, 0), (Cut::Broken, 41)] {
            let s = cut_status(cut, read);
            assert_eq!(s.code(), tonic::Code::Unavailable);
            assert!(
                s.message()
                    .contains(&format!("the stream was closed after {read} requests")),
                "{s:?}"
            );
            assert_eq!(requests_read(&s), Some(read));
        }
        assert_eq!(
            requests_read(&Status::unavailable("connection reset")),
            None
        );
        let mut other = Status::internal("x");
        other.metadata_mut().insert(REQUESTS_READ, 3u64.into());
        assert_eq!(requests_read(&other), None);
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
    }
}
