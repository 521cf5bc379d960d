//! [`Gateway`]: accepts messages, routes them, and keeps the set of
//! dispatchers in line with the registry.
//!
//! Two background tasks live here: the *supervisor*, which follows the
//! registry's fleet (starting, rotating and retiring dispatchers and
//! rebuilding the routing table), and the *re-router*, which gives messages
//! that a bot handed back to the next bot in rendezvous order.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use shardgate_metrics::{Direction, HotBy, IdempotentHit, Metrics};
use shardgate_proto::v1 as pb;
use shardgate_registry::{BotState, CallerStore, EmbeddedCallers, Fleet, Registry, unix_now};
use shardgate_router::ShardKey;
use shardgate_telegram::Client;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, info_span};

use crate::budget::Budget;
use crate::callers::{Admission, Callers};
use crate::config::GatewayConfig;
use crate::dispatcher::{BotHandle, Context, Envelope, LocalState};
use crate::idempotency::{self, Begin, IdempotencyCache};
use crate::migrations::Migrations;
use crate::peers::{Forward, Peers};
use crate::reply::{Gate, Outcome, Reply};
use crate::routing::{Route, SharedTable, Table, Target};
use crate::sent::{Sender, SentMemory};
use crate::{Message, SendError};

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The bot that delivered it.
    pub bot: String,
    pub message_id: i64,
    /// Effective chat id (after a migration).
    pub chat_id: i64,
    pub attempts: u32,
    /// Answered from the idempotency cache.
    pub deduplicated: bool,
    /// A call's answer: Telegram's `result` as JSON (`None` for a
    /// `sendMessage`, whose answer is its `message_id`).
    pub result_json: Option<Arc<str>>,
}

/// A message accepted (or refused) at once, whose outcome may still come.
pub enum Pending {
    Done(Outcome),
    Waiting(oneshot::Receiver<Outcome>, Gate),
    Joined(watch::Receiver<Option<Outcome>>),
}

impl Pending {
    /// The outcome, or `DEADLINE_EXCEEDED` once `deadline` passes while the
    /// message is not at Telegram. A message in flight at its deadline is
    /// answered with that attempt's outcome (at most [`IN_FLIGHT_GRACE`]
    /// later), so that an error always means "not sent".
    pub async fn wait(self, deadline: Option<Instant>) -> Outcome {
        match self {
            Pending::Done(o) => o,
            Pending::Joined(w) => match deadline {
                Some(d) => tokio::time::timeout_at(d, idempotency::wait(w))
                    .await
                    .unwrap_or(Err(SendError::DeadlineExceeded)),
                None => idempotency::wait(w).await,
            },
            Pending::Waiting(mut rx, gate) => {
                let Some(d) = deadline else {
                    return received(rx.await);
                };
                match tokio::time::timeout_at(d, &mut rx).await {
                    Ok(r) => received(r),
                    Err(_) if gate.give_up() => {
                        // Never sent after this: the key is free for a retry
                        // now (unless an earlier request may have arrived).
                        let err = gate.failure(SendError::DeadlineExceeded);
                        gate.settle_claim(&Err(err.clone()));
                        Err(err)
                    }
                    // Still at Telegram (or the owner instance) after the
                    // grace: it may yet be delivered.
                    Err(_) => tokio::time::timeout_at(d + IN_FLIGHT_GRACE, rx)
                        .await
                        .map_or(Err(SendError::DeadlineExceeded.maybe_sent()), received),
                }
            }
        }
    }
}

/// How long past its deadline a caller waits for an attempt that was in
/// flight at the deadline (longer than a Bot API request may take).
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(20);

fn received(r: Result<Outcome, oneshot::error::RecvError>) -> Outcome {
    r.unwrap_or_else(|_| {
        Err(SendError::Unavailable(
            "the message was dropped by the gateway".into(),
        ))
    })
}

pub(crate) struct Inner {
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) table: SharedTable,
    pub(crate) ctx: Context,
    pub(crate) seq: AtomicU64,
    pub(crate) idempotency: IdempotencyCache,
    pub(crate) migrations: Migrations,
    pub(crate) dispatchers: Mutex<HashMap<String, BotHandle>>,
    pub(crate) peers: Peers,
    /// Bytes queued on this instance (`queue_bytes_max`).
    pub(crate) bytes: Budget,
    pub(crate) callers: Callers,
    pub(crate) ready: watch::Sender<bool>,
    /// Set when a stop was requested: streams stop reading new requests.
    pub(crate) stopping: watch::Sender<bool>,
}

/// The gateway of one instance. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// Starts the gateway's supervisor and re-router on the current runtime,
    /// with no callers configured (auth `auto` stays off).
    pub fn start(
        config: GatewayConfig,
        registry: Arc<dyn Registry>,
        client: Client,
        metrics: Metrics,
    ) -> Gateway {
        let store: Arc<dyn CallerStore> = Arc::new(EmbeddedCallers::empty());
        Gateway::start_with_callers(config, registry, store, client, metrics)
    }

    /// [`start`](Self::start) with the callers of `callers` enforced.
    pub fn start_with_callers(
        config: GatewayConfig,
        registry: Arc<dyn Registry>,
        callers: Arc<dyn CallerStore>,
        client: Client,
        metrics: Metrics,
    ) -> Gateway {
        let callers = Callers::start(
            callers,
            config.auth,
            config.queue_bytes_max,
            metrics.clone(),
        );
        let config = Arc::new(config);
        let (reroute_tx, reroute_rx) = mpsc::unbounded_channel();
        let migrations = Migrations::default();
        let peer_key = match &config.peer_tls {
            Some(tls) => crate::peers::PeerKey::with_tls(tls.clone()),
            None => crate::peers::PeerKey::default(),
        };
        peer_key.set(callers.cluster_key());
        let peers = Peers::new(registry.instance_id(), peer_key, reroute_tx.clone());
        let ctx = Context {
            config: config.clone(),
            metrics: metrics.clone(),
            client,
            registry: registry.clone(),
            reroute: reroute_tx,
            migrations: migrations.clone(),
            sent: SentMemory::new(config.sent_max),
        };
        let bytes = Budget::new(config.queue_bytes_max);
        let gw = Gateway {
            inner: Arc::new(Inner {
                idempotency: IdempotencyCache::new(idempotency::Bounds {
                    ttl: config.idempotency_ttl,
                    max: config.idempotency_max,
                    bytes_max: config.idempotency_bytes_max,
                }),
                config,
                registry: registry.clone(),
                table: SharedTable::default(),
                ctx,
                seq: AtomicU64::new(1),
                migrations,
                dispatchers: Mutex::new(HashMap::new()),
                peers,
                bytes,
                callers,
                ready: watch::Sender::new(false),
                stopping: watch::Sender::new(false),
            }),
        };
        let weak = Arc::downgrade(&gw.inner);
        metrics.on_scrape(move |m| {
            let Some(inner) = weak.upgrade() else { return };
            let table = inner.table.load();
            let now = unix_now();
            m.set_bot_states(
                table
                    .routes
                    .iter()
                    .map(|r| (r.node.name(), metric_state(effective_state(r, now).0))),
            );
            m.set_owned_bots(table.routes.iter().filter(|r| r.local().is_some()).count());
            m.set_queued_bytes(inner.bytes.used());
        });
        // The hottest chats in the logs, once a minute when there are any.
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                for (by, label) in [
                    (HotBy::TooManyRequests, "429s"),
                    (HotBy::QueueWait, "queue wait"),
                ] {
                    let hot = m.hot_chats(by);
                    if !hot.is_empty() {
                        let list: Vec<String> =
                            hot.iter().take(5).map(ToString::to_string).collect();
                        tracing::info!(by = label, hottest = %list.join("; "), "hot chats");
                    }
                }
            }
        });
        let fleet = registry.fleet();
        gw.reconcile(&fleet.borrow().clone());
        tokio::spawn(
            crate::supervisor::supervise(Arc::downgrade(&gw.inner), fleet)
                .instrument(info_span!("supervisor")),
        );
        tokio::spawn(
            crate::supervisor::reroute(Arc::downgrade(&gw.inner), reroute_rx)
                .instrument(info_span!("reroute")),
        );
        gw
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.config.instance_id
    }

    pub fn metrics(&self) -> Metrics {
        self.inner.ctx.metrics.clone()
    }

    /// True while at least one bot can take traffic.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.inner.ready.subscribe()
    }

    /// Accepts a message: checks idempotency, routes it and queues it on its
    /// bot, all without waiting, so that messages submitted one after another
    /// keep their order. Await the returned [`Pending`] for the outcome.
    pub fn submit(&self, msg: Message, deadline: Option<Instant>) -> Pending {
        self.submit_admitted(msg, deadline, Admission::default(), false)
    }

    /// [`submit`](Self::submit) for a message another instance forwarded:
    /// it goes through its pinned bot here or ends `NotOwner`.
    pub fn submit_forwarded(&self, msg: Message, deadline: Option<Instant>) -> Pending {
        self.submit_admitted(msg, deadline, Admission::default(), true)
    }

    /// [`submit`](Self::submit) for a message its caller's rules admitted
    /// ([`Callers::admit`]): it holds what the admission took until it is
    /// answered, and goes only through the caller's bots. `forwarded`: from
    /// another instance (see [`submit_forwarded`](Self::submit_forwarded)).
    pub fn submit_admitted(
        &self,
        msg: Message,
        deadline: Option<Instant>,
        admission: Admission,
        forwarded: bool,
    ) -> Pending {
        let claim = match &msg.idempotency_key {
            None => None,
            Some(key) => {
                let digest = msg.content_digest();
                match self
                    .inner
                    .idempotency
                    .begin(admission.caller.as_ref(), key, digest)
                {
                    Begin::Claimed(c) => Some(c),
                    Begin::Answered(o) => {
                        self.inner
                            .ctx
                            .metrics
                            .idempotent_hit(IdempotentHit::Answered);
                        return Pending::Done(idempotency::repeat(o));
                    }
                    Begin::Conflict => {
                        return Pending::Done(Err(SendError::Invalid(format!(
                            "idempotency_key was used for another request (other text, parameters, chat, user or bot) in the last {} s; nothing was sent",
                            self.inner.config.idempotency_ttl.as_secs()
                        ))));
                    }
                    Begin::Busy => {
                        return Pending::Done(Err(SendError::QueueFull(format!(
                            "{} calls already wait for this idempotency_key's send; retry when it is answered",
                            idempotency::MAX_WAITERS
                        ))));
                    }
                    Begin::Wait(w) => {
                        self.inner.ctx.metrics.idempotent_hit(IdempotentHit::Joined);
                        return Pending::Joined(w);
                    }
                }
            }
        };
        // At `info` only when spans are exported (the trace needs it); at
        // `debug` otherwise, where logs still carry chat_id, bot and attempt.
        // Under `serve`'s default `info` filter an enabled per-message span cost
        // ~13% of throughput (BENCHMARKS.md §2).
        macro_rules! message_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "message",
                    seq = tracing::field::Empty,
                    chat_id = msg.chat_id,
                    bot = tracing::field::Empty,
                    attempt = tracing::field::Empty,
                    outcome = tracing::field::Empty,
                    forwarded,
                )
            };
        }
        let span = if shardgate_telemetry::otel_enabled() {
            message_span!(tracing::Level::INFO)
        } else {
            message_span!(tracing::Level::DEBUG)
        };
        if let Some(tp) = &msg.traceparent {
            shardgate_telemetry::set_parent_from_traceparent(&span, tp);
        }
        // A message without a caller's deadline still gets one: retries of
        // transient failures go on until it, and nothing waits for ever.
        let deadline =
            deadline.or_else(|| Some(Instant::now() + self.inner.config.max_message_age));
        let cost = msg.cost_bytes();
        let (mut reply, rx) = Reply::new(claim, span.clone());
        let gate = reply.gate().clone();
        for permit in admission.permits {
            reply.hold(permit);
        }
        match self.inner.bytes.try_take(cost) {
            Some(permit) => reply.hold(permit),
            None => {
                reply.finish(Err(SendError::QueueFull(format!(
                    "this instance holds {} of queued messages (queue_bytes_max {}); retry later",
                    human_bytes(self.inner.bytes.used()),
                    human_bytes(self.inner.bytes.max())
                ))));
                return Pending::Waiting(rx, gate);
            }
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        span.record("seq", seq);
        // Where the scheduler counts it: its chat, or (calls that meet the
        // bot's limit only) a chat of its own that nothing else holds back.
        let chat_id = if msg.limited_by_chat() {
            self.inner.migrations.resolve(msg.chat_id)
        } else {
            crate::call::bot_only_key(seq)
        };
        let env = Box::new(Envelope {
            seq,
            chat_id,
            msg,
            reply,
            deadline,
            attempts: 0,
            queued_at: Instant::now(),
            avoid: Vec::new(),
            forwarded,
            caller: admission.caller,
            allowed_bots: admission.allowed_bots,
            span,
        });
        if let Err((env, err)) = self.inner.route(env) {
            env.reply.finish(Err(err));
        }
        Pending::Waiting(rx, gate)
    }

    /// Pins an edit (or delete, pin, stop) without `bot` to the bot that
    /// sent its message, as this instance remembers it; refuses one it
    /// cannot place (`INVALID_ARGUMENT`: nothing is sent). Other messages
    /// pass unchanged.
    pub fn pin_edit(&self, msg: &mut Message) -> Result<(), SendError> {
        let Some(call) = msg.body.call().filter(|c| c.is_edit()) else {
            return Ok(());
        };
        if msg.bot.is_some() {
            return Ok(());
        }
        if call.inline {
            return Err(SendError::Invalid(
                "an inline message has no chat to find its bot by: set `bot` to the bot that sent it".into(),
            ));
        }
        let chat = self.inner.migrations.resolve(msg.chat_id);
        let mut found: Option<Arc<str>> = None;
        for &id in &call.edits {
            match self.inner.ctx.sent.lookup(chat, id) {
                Some(Sender::Bot(bot)) if found.as_ref().is_none_or(|f| *f == bot) => {
                    found = Some(bot);
                }
                Some(Sender::Bot(_)) => {
                    return Err(SendError::Invalid(format!(
                        "the messages of chat {chat} named by {} were sent by different bots: one call per bot, with `bot` set",
                        call.method
                    )));
                }
                Some(Sender::Ambiguous) => {
                    return Err(SendError::Invalid(format!(
                        "message {id} of chat {chat} was sent by more than one bot (private chats number messages per bot): set `bot`"
                    )));
                }
                None => {}
            }
        }
        match found {
            Some(bot) => {
                msg.bot = Some(bot.to_string());
                msg.allow_failover = false;
                Ok(())
            }
            None => Err(SendError::Invalid(format!(
                "{}: this gateway did not send {} in chat {chat} (or no longer remembers it): set `bot` to the bot that sent it; nothing was sent",
                call.method,
                match call.edits.as_slice() {
                    [] => "the chat's message".to_owned(),
                    [id] => format!("message {id}"),
                    ids => format!("messages {ids:?}"),
                }
            ))),
        }
    }

    /// Which bot this instance remembers sending `(chat_id, message_id)`.
    pub fn sender_of(&self, chat_id: i64, message_id: i64) -> Option<Sender> {
        self.inner.ctx.sent.lookup(chat_id, message_id)
    }

    /// Who may call and what their messages may do.
    pub fn callers(&self) -> &Callers {
        &self.inner.callers
    }

    /// The instance's byte budget (`queue_bytes_max`): charge what a message
    /// queues beyond its text (uploads) and attach the permit to its reply.
    pub fn bytes(&self) -> &Budget {
        &self.inner.bytes
    }

    /// Submits and waits.
    pub async fn send(&self, msg: Message, deadline: Option<Instant>) -> Outcome {
        self.submit(msg, deadline).wait(deadline).await
    }

    /// Bots in the routing table (any state): sizes a broadcast's window.
    pub fn bot_count(&self) -> usize {
        self.inner.table.load().routes.len()
    }

    /// The bot a message into `chat_id` (no user, no pin) would go to now:
    /// a broadcast runner keeps each bot's share of its window with it.
    pub fn preview_bot(&self, chat_id: i64) -> Option<String> {
        let table = self.inner.table.load();
        table
            .pick(
                ShardKey::new(chat_id, 0),
                None,
                false,
                &[],
                None,
                unix_now(),
            )
            .ok()
            .map(|r| r.node.name().to_owned())
    }

    /// Bots that can take a message now.
    pub fn healthy_bot_count(&self) -> usize {
        self.inner.table.load().routable_count(unix_now())
    }

    /// Every bot with its state, and the members.
    pub fn status(&self) -> pb::StatusResponse {
        let table = self.inner.table.load();
        let now = unix_now();
        let bots = table
            .routes
            .iter()
            .map(|r| {
                let (state, reason, until) = effective_state(r, now);
                let (queue_depth, in_flight, active_chats) = r.local().map_or((0, 0, 0), |h| {
                    (
                        h.shared.queued.load(Ordering::Relaxed),
                        h.shared.in_flight.load(Ordering::Relaxed),
                        h.shared.active_chats.load(Ordering::Relaxed),
                    )
                });
                pb::BotStatus {
                    name: r.node.name().to_owned(),
                    state: state.as_str().to_owned(),
                    owner: r.view.owner.clone().unwrap_or_default(),
                    queue_depth,
                    cooldown_until: i64::try_from(until).unwrap_or(i64::MAX),
                    reason,
                    token_redacted: r
                        .local()
                        .map_or_else(|| r.view.spec.token.redacted(), |h| h.token_redacted()),
                    in_flight,
                    active_chats,
                }
            })
            .collect();
        let fleet = self.inner.registry.fleet();
        let members = fleet
            .borrow()
            .members
            .iter()
            .map(|m| pb::Member {
                instance_id: m.instance_id.clone(),
                grpc: m.grpc.clone(),
            })
            .collect();
        let metrics = &self.inner.ctx.metrics;
        let hot_chats = [
            (HotBy::TooManyRequests, "429s"),
            (HotBy::QueueWait, "queue_wait"),
        ]
        .into_iter()
        .flat_map(|(by, label)| {
            metrics.hot_chats(by).into_iter().map(move |h| pb::HotChat {
                chat_id: h.chat_id,
                bot: h.bot,
                by: label.to_owned(),
                score: h.score,
                events: h.events,
            })
        })
        .collect();
        let etcd = self
            .inner
            .registry
            .store_contact()
            .map(|c| pb::EtcdContact {
                reachable: c.reachable,
                for_ms: u64::try_from(c.since.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        pb::StatusResponse {
            hot_chats,
            bots,
            members,
            instance_id: self.inner.config.instance_id.clone(),
            etcd,
        }
    }

    /// First step of a stop: report NOT_SERVING and make open streams
    /// (callers' and peers') stop taking new requests, so that the server can
    /// close its connections.
    pub fn begin_shutdown(&self) {
        self.inner.ready.send_replace(false);
        self.inner.stopping.send_replace(true);
    }

    /// Resolves once a stop was requested.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// Graceful stop: every dispatcher sends what it has until `timeout`,
    /// then fails what is left; returns when all have stopped or the timeout
    /// (plus the request timeout) passed.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let handles: Vec<BotHandle> = self.inner.lock_dispatchers().values().cloned().collect();
        self.inner.ready.send_replace(false);
        for h in &handles {
            h.drain(deadline);
        }
        // A dispatcher finishes the Bot API request in flight at the
        // deadline; past this, the stop goes on without it (the process is
        // about to exit: that request's fate is unknown, as after a crash).
        let hard_stop = deadline + Duration::from_secs(12);
        for h in handles {
            while h.is_alive() && Instant::now() < hard_stop {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn reconcile(&self, fleet: &Fleet) {
        self.inner.reconcile(fleet);
    }
}

/// `12.5 MiB`, for messages.
pub fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn metric_state(s: BotState) -> shardgate_metrics::BotState {
    match s {
        BotState::Healthy => shardgate_metrics::BotState::Healthy,
        BotState::Throttled => shardgate_metrics::BotState::Throttled,
        BotState::Revoked => shardgate_metrics::BotState::Revoked,
        BotState::Disabled => shardgate_metrics::BotState::Disabled,
    }
}

fn effective_state(r: &Route, now: u64) -> (BotState, String, u64) {
    let view_state = r.view.state(now);
    let local = r.local().map(|h| h.shared.state());
    let reason = r
        .local()
        .map(|h| h.shared.reason.lock().clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| r.view.health.reason.clone());
    match (view_state, local) {
        (BotState::Healthy, Some(LocalState::Revoked)) => (BotState::Revoked, reason, 0),
        (BotState::Healthy, Some(LocalState::Throttled)) => {
            let until = r
                .local()
                .map_or(0, |h| h.shared.throttled_until.load(Ordering::Relaxed));
            if until > now {
                (BotState::Throttled, reason, until)
            } else {
                (BotState::Healthy, String::new(), 0)
            }
        }
        (BotState::Throttled, _) => (BotState::Throttled, reason, r.view.health.until),
        (state, _) => (
            state,
            if state == BotState::Healthy {
                String::new()
            } else {
                reason
            },
            0,
        ),
    }
}

impl Inner {
    pub(crate) fn lock_dispatchers(
        &self,
    ) -> parking_lot::MutexGuard<'_, HashMap<String, BotHandle>> {
        self.dispatchers.lock()
    }

    /// Routes and queues (or forwards); gives the envelope back with the
    /// reason on failure.
    pub(crate) fn route(&self, env: Box<Envelope>) -> Result<(), (Box<Envelope>, SendError)> {
        let table = self.table.load();
        let key = ShardKey::new(env.msg.chat_id, env.msg.user_id);
        let mut env = env;
        if env.forwarded {
            return self.route_forwarded(&table, env);
        }
        // A dispatcher or peer link that died between the table read and the
        // hand-over gives the message back; try the next bot (bounded).
        for _ in 0..=table.routes.len() {
            let route = match table.pick(
                key,
                env.msg.bot.as_deref(),
                env.msg.allow_failover,
                &env.avoid,
                env.allowed_bots.as_deref(),
                unix_now(),
            ) {
                Ok(r) => r,
                Err(e) => return Err((env, e)),
            };
            let name: Arc<str> = Arc::from(route.node.name());
            // Calls are not forwarded between instances: an unpinned one
            // takes a bot driven here, a pinned one is refused.
            if env.msg.body.call().is_some() && matches!(route.target, Target::Remote(_)) {
                if env.msg.bot.is_some() && !env.msg.allow_failover {
                    let owner = route.view.owner.clone().unwrap_or_default();
                    let err = SendError::Unavailable(format!(
                        "bot {name} is driven by instance {owner}; Call is not forwarded between instances: send it to that instance, or pin a bot driven here"
                    ));
                    return Err((env, err));
                }
                env.avoid.push(name);
                continue;
            }
            let handed = match &route.target {
                Target::Local(h) => h.enqueue(env),
                Target::Remote(link) => link.forward(Forward {
                    bot: name.clone(),
                    env,
                }),
                Target::Nobody => Err(env),
            };
            match handed {
                Ok(()) => {
                    if matches!(route.target, Target::Remote(_)) {
                        self.ctx.metrics.forwarded(Direction::Out);
                    }
                    return Ok(());
                }
                Err(back) => {
                    env = back;
                    env.avoid.push(name);
                }
            }
        }
        Err((
            env,
            SendError::Unavailable("no bot accepted the message".into()),
        ))
    }

    /// A forwarded message goes through its pinned bot if this instance
    /// drives it, and is never forwarded again.
    fn route_forwarded(
        &self,
        table: &Table,
        env: Box<Envelope>,
    ) -> Result<(), (Box<Envelope>, SendError)> {
        let local = env
            .msg
            .bot
            .as_deref()
            .and_then(|b| table.get(b))
            .filter(|r| r.view.routable(unix_now()))
            .and_then(|r| r.local().cloned());
        let not_owner = |bot: &Option<String>| {
            SendError::NotOwner(format!(
                "instance {} does not drive bot {:?} now",
                self.config.instance_id,
                bot.as_deref().unwrap_or("")
            ))
        };
        match local {
            Some(h) => h.enqueue(env).map_err(|env| {
                let e = not_owner(&env.msg.bot);
                (env, e)
            }),
            None => {
                let e = not_owner(&env.msg.bot);
                Err((env, e))
            }
        }
    }
}
