//! One Bot API request through the gateway: who calls (the key of the
//! path, or a client certificate), the body read within its bounds, the
//! same validation, admission, routing and limits as a gRPC `Call`, and the
//! outcome in the Bot API's words.
//!
//! Invariant: request bodies held by the door at once are at most
//! [`BODIES_MAX_BYTES`]. A request takes its share (its `Content-Length`,
//! or [`MAX_BODY_BYTES`] when the length is not announced) before a byte of
//! its body is read, and gives it back when it is answered; a request that
//! finds no room is answered 429 at once.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use shardgate_gateway::{ConnInfo, Gateway, Message, SendError};
use shardgate_metrics::Entry;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{Instrument, debug};

use crate::answer::{Refusal, success};
use crate::body::{self, BodyError, Encoding, MAX_BODY_BYTES, Parsed};
use crate::path;
use crate::request::{self, call_request};

/// Request bodies the door holds at once, in bytes.
pub const BODIES_MAX_BYTES: usize = 256 << 20;

/// The budget is counted in KiB, so that a semaphore's `u32` permits cover it.
const UNIT: usize = 1024;

/// The door's shared state: the gateway and the body budget. Cheap to clone.
#[derive(Clone)]
pub struct Door {
    gateway: Gateway,
    bodies: Arc<Semaphore>,
}

impl Door {
    pub fn new(gateway: Gateway) -> Door {
        Door {
            gateway,
            bodies: Arc::new(Semaphore::new(BODIES_MAX_BYTES / UNIT)),
        }
    }

    /// Answers one request (never fails: every error is a Bot API answer).
    pub async fn handle(
        &self,
        conn: &ConnInfo,
        req: Request<Body>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let metrics = self.gateway.metrics();
        let span = tracing::info_span!("http.call");
        let outcome = self.answer(conn, req).instrument(span).await;
        let (status, body, bot) = match outcome {
            Ok((bot, result)) => {
                metrics.finished(Entry::Http, tonic::Code::Ok, started.elapsed());
                (200, success(&result), Some(bot))
            }
            Err(Failure::Send(e)) => {
                metrics.finished(Entry::Http, e.code(), started.elapsed());
                let r = Refusal::of(&e);
                debug!(code = r.code, "Bot API request refused");
                (r.code, r.body(), None)
            }
            Err(Failure::Other(r)) => (r.code, r.body(), None),
        };
        Ok(respond(status, body, bot.as_deref()))
    }

    async fn answer(
        &self,
        conn: &ConnInfo,
        req: Request<Body>,
    ) -> Result<(String, String), Failure> {
        let (parts, body) = req.into_parts();
        let Some(target) = path::parse(parts.uri.path()) else {
            return Err(Failure::Other(Refusal::not_found()));
        };
        let callers = self.gateway.callers();
        // A library always puts something where the token goes: over mutual
        // TLS the verified certificate names the caller, and the path's key
        // is not read.
        let who = match conn.client_cn.as_deref() {
            Some(cn) => callers.identify(None, Some(cn), false)?,
            None => callers.identify(target.key, None, false)?,
        };
        let _held = self.reserve(&parts.headers)?;
        let encoding = Encoding::of(content_type(&parts.headers)).map_err(Failure::body)?;
        let mut parsed = Parsed {
            params: body::query(parts.uri.query()).map_err(Failure::body)?,
            files: Vec::new(),
        };
        let from_body = match encoding {
            Encoding::Multipart(boundary) => body::multipart(body.into_data_stream(), boundary)
                .await
                .map_err(Failure::body)?,
            encoding => {
                let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
                    .await
                    .map_err(|_| Failure::body(BodyError::TooLarge))?;
                Parsed {
                    params: body::buffered(&encoding, &bytes).map_err(Failure::body)?,
                    files: Vec::new(),
                }
            }
        };
        parsed.params.extend(from_body.params);
        parsed.files = from_body.files;
        let call = call_request(target.method, parsed, &parts.headers)?;
        let mut msg = Message::from_call(call)?;
        self.gateway.pin_edit(&mut msg)?;
        let admission = callers.admit(&who, &msg).await?;
        self.gateway.metrics().accepted(Entry::Http);
        let deadline = msg.deadline(None);
        let delivered = self
            .gateway
            .submit_admitted(msg, deadline, admission, false)
            .wait(deadline)
            .await?;
        let result = delivered
            .result_json
            .as_deref()
            .unwrap_or_default()
            .to_owned();
        Ok((delivered.bot, result))
    }

    /// Takes the body's share of the budget, or refuses when it is spent.
    fn reserve(&self, headers: &HeaderMap) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let bytes = match announced {
            Some(n) if n > MAX_BODY_BYTES => return Err(Failure::body(BodyError::TooLarge)),
            Some(n) => n,
            None => MAX_BODY_BYTES,
        };
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        self.bodies
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| {
                Failure::Send(SendError::QueueFull(format!(
                    "the front door holds {} MiB of request bodies; retry later",
                    BODIES_MAX_BYTES >> 20
                )))
            })
    }
}

/// Why a request was not delivered.
enum Failure {
    /// The gateway's or Telegram's refusal (counted like a gRPC call's).
    Send(SendError),
    /// Not a Bot API request, or a body that could not be read.
    Other(Refusal),
}

impl Failure {
    fn body(e: BodyError) -> Failure {
        Failure::Other(Refusal::of_body(&e))
    }
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        Failure::Send(e)
    }
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn respond(status: u16, body: String, bot: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = bot.and_then(|b| HeaderValue::from_str(b).ok()) {
        headers.insert(request::BOT, v);
    }
    resp
}
