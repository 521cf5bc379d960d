//! Forwarding to the instance that owns a bot (cluster mode).
//!
//! One task per peer keeps a single `SendStream` open to it and writes the
//! messages it is given in order, so per-chat order survives the hop. The
//! stream carries the `shardgate-forwarded-by` header: the owner sends such
//! messages through the pinned bot or answers `ABORTED` (not the owner any
//! more, nothing sent), and never forwards them again (one hop at most).
//!
//! Failure handling: messages not yet written when the peer becomes
//! unreachable go back to the re-router (they were not sent); messages
//! written and not answered when the stream breaks end `UNAVAILABLE` (the
//! owner may or may not have sent them: the caller retries with its
//! idempotency key).
//!
//! [`StatusProbe`] (`peers/probe.rs`) asks a peer, over `Status`, whether
//! it can reach etcd (for the etcd registry's ownership extension while etcd
//! is down).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use shardgate_proto::v1 as pb;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{Instrument, debug, info_span, warn};

use crate::dispatcher::Envelope;
use crate::{Delivered, SendError};

mod probe;
pub use probe::{MAX_PROBE_PEERS, PROBE_IDLE, StatusProbe};

/// Header that marks a stream of forwarded messages (value: the sender).
pub const FORWARDED_BY: &str = "shardgate-forwarded-by";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Requests buffered towards one peer before the link task waits.
const STREAM_BUFFER: usize = 4096;

/// A message to forward: the envelope and the bot it is pinned to there.
pub struct Forward {
    pub bot: Arc<str>,
    pub env: Box<Envelope>,
}

/// The link to one peer. Cheap to clone.
#[derive(Clone)]
pub struct PeerLink {
    pub instance: Arc<str>,
    pub addr: Arc<str>,
    tx: mpsc::UnboundedSender<Forward>,
    up: Arc<AtomicBool>,
}

impl PeerLink {
    /// False while the peer cannot be reached; routing avoids its bots then.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn forward(&self, fwd: Forward) -> Result<(), Box<Envelope>> {
        self.tx.send(fwd).map_err(|e| e.0.env)
    }
}

/// All links of this instance.
pub struct Peers {
    me: Arc<str>,
    key: PeerKey,
    links: Mutex<HashMap<String, PeerLink>>,
    reroute: mpsc::UnboundedSender<Box<Envelope>>,
}

impl Peers {
    pub fn new(me: &str, key: PeerKey, reroute: mpsc::UnboundedSender<Box<Envelope>>) -> Self {
        Peers {
            me: Arc::from(me),
            key,
            links: Mutex::new(HashMap::new()),
            reroute,
        }
    }

    /// The link to `instance` at `addr`, started on first use.
    pub fn link(&self, instance: &str, addr: &str) -> PeerLink {
        let mut links = self.links.lock();
        if let Some(l) = links.get(instance)
            && &*l.addr == addr
            && !l.tx.is_closed()
        {
            return l.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let link = PeerLink {
            instance: Arc::from(instance),
            addr: Arc::from(addr),
            tx,
            // Optimistic until the first connect fails.
            up: Arc::new(AtomicBool::new(true)),
        };
        tokio::spawn(
            run_link(
                link.clone(),
                self.me.clone(),
                self.key.clone(),
                rx,
                self.reroute.clone(),
            )
            .instrument(info_span!("peer", instance = %instance)),
        );
        links.insert(instance.to_owned(), link.clone());
        link
    }

    /// Forgets links to instances that are no longer members.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.links.lock().retain(|k, _| live(k));
    }
}

/// The cluster key this instance presents to its peers (`authorization:
/// Bearer <key>`), once the store has it. Cheap to clone; shared by the
/// peer links and the [`StatusProbe`].
#[derive(Clone, Default)]
pub struct PeerKey {
    key: Arc<parking_lot::RwLock<Option<String>>>,
    /// TLS towards peers (their certificates checked against the cluster's
    /// CA, ours presented) when the gRPC port serves TLS.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl PeerKey {
    /// Credentials that reach peers over TLS.
    pub fn with_tls(tls: tonic::transport::ClientTlsConfig) -> Self {
        PeerKey {
            key: Arc::default(),
            tls: Some(tls),
        }
    }

    pub fn set(&self, key: Option<String>) {
        *self.key.write() = key;
    }

    pub fn get(&self) -> Option<String> {
        self.key.read().clone()
    }

    /// The endpoint of a peer's gRPC address, over TLS when configured.
    fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true);
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(|e| e.to_string()),
            None => Ok(endpoint),
        }
    }
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(***)")
    }
}

/// Adds the cluster key to a request to a peer.
fn authorize<T>(request: &mut tonic::Request<T>, key: &Option<String>) {
    if let Some(k) = key
        && let Ok(v) = format!("Bearer {k}").parse()
    {
        request.metadata_mut().insert("authorization", v);
    }
}

async fn run_link(
    link: PeerLink,
    me: Arc<str>,
    key: PeerKey,
    mut rx: mpsc::UnboundedReceiver<Forward>,
    reroute: mpsc::UnboundedSender<Box<Envelope>>,
) {
    let mut backoff = Duration::from_millis(100);
    let next_ref = AtomicU64::new(1);
    loop {
        match open(&link, &me, &key).await {
            Ok((req_tx, mut responses)) => {
                link.up.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                let mut pending: HashMap<String, (Arc<str>, Box<Envelope>)> = HashMap::new();
                let broken = loop {
                    tokio::select! {
                        fwd = rx.recv() => {
                            let Some(Forward { bot, env }) = fwd else {
                                // Link dropped: let pending answers arrive, then stop.
                                drop(req_tx);
                                while let Ok(Some(r)) = responses.message().await {
                                    settle(&mut pending, r, &reroute);
                                }
                                fail_all(&mut pending, &link);
                                return;
                            };
                            // The owner decides from here: its answer (a
                            // delivery, or DEADLINE_EXCEEDED if it never sent)
                            // is the truth, so the caller waits for it.
                            if env.msg.body.call().is_some() {
                                // Routing keeps calls on this instance's bots.
                                env.reply.finish(Err(SendError::Unavailable(
                                    "a Bot API call is not forwarded between instances".into(),
                                )));
                                continue;
                            }
                            let sendable = env.reply.gate().begin_send();
                            let req = to_request(&bot, &env, &next_ref).filter(|_| sendable);
                            let Some(req) = req else {
                                env.reply.finish(Err(SendError::DeadlineExceeded));
                                continue;
                            };
                            pending.insert(req.client_ref.clone(), (bot, env));
                            if req_tx.send(req).await.is_err() {
                                break "stream failed";
                            }
                        }
                        msg = responses.message() => match msg {
                            Ok(Some(r)) => settle(&mut pending, r, &reroute),
                            // A stopping owner answers everything it read, then
                            // ends the stream with a status that counts them:
                            // what is still pending was never read, so it may
                            // go elsewhere.
                            Ok(None) => break "stream ended",
                            Err(s) if crate::service::requests_read(&s).is_some() => break "stream ended",
                            Err(_) => break "stream failed",
                        }
                    }
                };
                if broken == "stream ended" {
                    debug!(peer = %link.instance, unread = pending.len(), "owner closed the stream; routing unread messages again");
                    for (_, (bot, mut env)) in pending.drain() {
                        env.reply.gate().end_attempt();
                        env.avoid.push(bot);
                        if let Err(e) = reroute.send(env) {
                            e.0.reply.finish(Err(SendError::Unavailable(
                                "the gateway is stopping".into(),
                            )));
                        }
                    }
                } else {
                    warn!(peer = %link.instance, reason = broken, unanswered = pending.len(), "forwarding stream to the owner broke");
                    fail_all(&mut pending, &link);
                }
            }
            Err(e) => {
                debug!(peer = %link.instance, error = %e, "cannot reach peer");
            }
        }
        link.up.store(false, Ordering::Relaxed);
        // Not yet sent: safe to route elsewhere.
        while let Ok(Forward { bot, mut env }) = rx.try_recv() {
            env.avoid.push(bot);
            if let Err(e) = reroute.send(env) {
                e.0.reply.finish(Err(SendError::Unavailable(
                    "the gateway is stopping".into(),
                )));
            }
        }
        if rx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

type Responses = tonic::Streaming<pb::SendResponse>;

async fn open(
    link: &PeerLink,
    me: &str,
    key: &PeerKey,
) -> Result<(mpsc::Sender<pb::SendRequest>, Responses), String> {
    let channel = key
        .endpoint(&link.addr)?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Ok(v) = me.parse() {
        request.metadata_mut().insert(FORWARDED_BY, v);
    }
    authorize(&mut request, &key.get());
    let responses = GatewayClient::new(channel)
        .send_stream(request)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok((tx, responses))
}

fn to_request(bot: &str, env: &Envelope, next_ref: &AtomicU64) -> Option<pb::SendRequest> {
    let timeout_ms = match env.deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1)
        }
        None => 0,
    };
    let m = &env.msg;
    let crate::Body::Text(t) = &m.body else {
        return None;
    };
    let (reply_markup_json, params_json) = t.extras.to_json_fields();
    Some(pb::SendRequest {
        chat_id: env.chat_id,
        user_id: m.user_id,
        text: t.text.clone(),
        parse_mode: t
            .parse_mode
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        disable_notification: t.disable_notification,
        idempotency_key: m.idempotency_key.clone().unwrap_or_default(),
        client_ref: next_ref.fetch_add(1, Ordering::Relaxed).to_string(),
        bot: bot.to_owned(),
        allow_failover: false,
        timeout_ms,
        traceparent: shardgate_telemetry::traceparent(&env.span).unwrap_or_default(),
        forwarded_caller: env.caller.as_deref().unwrap_or_default().to_owned(),
        reply_markup_json,
        message_thread_id: t.extras.message_thread_id.unwrap_or_default(),
        allow_paid_broadcast: t.extras.allow_paid_broadcast,
        params_json,
        priority: crate::message::wire_priority(m.priority),
    })
}

fn settle(
    pending: &mut HashMap<String, (Arc<str>, Box<Envelope>)>,
    r: pb::SendResponse,
    reroute: &mpsc::UnboundedSender<Box<Envelope>>,
) {
    let Some((bot, mut env)) = pending.remove(&r.client_ref) else {
        return;
    };
    let outcome = match r.error {
        None => Ok(Delivered {
            bot: r.bot,
            message_id: r.message_id,
            chat_id: r.chat_id,
            attempts: env.attempts + r.attempts,
            deduplicated: r.deduplicated,
            result_json: None,
        }),
        Some(e) => match SendError::from_proto(&e) {
            // Not the owner any more and nothing was sent: route again.
            None => {
                env.reply.gate().end_attempt();
                env.avoid.push(bot);
                if let Err(e) = reroute.send(env) {
                    e.0.reply.finish(Err(SendError::Unavailable(
                        "the gateway is stopping".into(),
                    )));
                }
                return;
            }
            Some(err) => Err(err),
        },
    };
    env.reply.finish(outcome);
}

fn fail_all(pending: &mut HashMap<String, (Arc<str>, Box<Envelope>)>, link: &PeerLink) {
    for (_, (_, env)) in pending.drain() {
        env.reply.finish(Err(SendError::Unavailable(format!(
            "the instance that owns the bot ({}) went away before answering; retry with the same idempotency_key",
            link.instance
        ))));
    }
}
