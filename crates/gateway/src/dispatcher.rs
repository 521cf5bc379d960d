//! One bot's dispatcher: an actor that owns the bot's [`Scheduler`], sends
//! what the scheduler releases, and acts on Telegram's answers.
//!
//! The actor is the only place that touches a bot's limiter state, so no lock
//! is taken per message. Requests run as separate tasks (several in flight,
//! one per chat) and report back over a channel. Messages the bot cannot
//! deliver any more (token revoked, bot throttled for long, bot removed) are
//! handed to the gateway's re-router with the bot on their `avoid` list.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shardgate_metrics::{BotMetrics, Metrics, Scope429};
use shardgate_registry::{Health, HealthState, Registry, unix_now};
use shardgate_sched::{Next, PushError, Queued, Scheduler, Tick, ticks, ticks_ceil};
use shardgate_telegram::{BotToken, CallResult, Client, Outcome, SendMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use crate::bot_handle::Command;
pub use crate::bot_handle::{BotHandle, BotShared, Envelope, LocalState};
use crate::config::GatewayConfig;
use crate::migrations::Migrations;
use crate::paid::PaidMinute;
use crate::sent::SentMemory;
use crate::{Body, Delivered, SendError};

/// A request's result, reported by its task.
struct Done {
    chat_id: i64,
    seq: u64,
    env: Box<Envelope>,
    /// Which token the request used (a rotation may have happened since).
    token_gen: u64,
    outcome: Outcome,
    /// A call's answer, when it succeeded.
    result: Option<CallResult>,
    /// When the answer (or the failure) was in hand: Telegram had counted
    /// the request by then, if ever. The scheduler fixes the request's place
    /// in the chat bucket and the group and bot windows at this time.
    finished: Instant,
}

/// What the dispatcher needs from the gateway.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<GatewayConfig>,
    pub metrics: Metrics,
    pub client: Client,
    pub registry: Arc<dyn Registry>,
    pub reroute: mpsc::UnboundedSender<Box<Envelope>>,
    pub migrations: Migrations,
    /// Which bot sent which message (every delivery is recorded).
    pub sent: SentMemory,
}

pub struct Dispatcher {
    name: Arc<str>,
    metrics: BotMetrics,
    token: Arc<BotToken>,
    token_gen: u64,
    ctx: Context,
    shared: Arc<BotShared>,
    sched: Scheduler<Box<Envelope>>,
    epoch: Instant,
    commands: mpsc::UnboundedReceiver<Command>,
    results_tx: mpsc::UnboundedSender<Done>,
    results: mpsc::UnboundedReceiver<Done>,
    leaving: bool,
    paused: bool,
    /// The instance's lease was not valid at the last send attempt.
    lease_invalid: bool,
    drain_deadline: Option<Instant>,
    /// Paid messages since the last Stars estimate was logged.
    paid: PaidMinute,
}

/// How often idle chats' limiter state is forgotten.
const GC_EVERY: Duration = Duration::from_secs(5);
/// Commands handled per wake-up before sending again (amortises wake-ups
/// without starving the send loop).
const BATCH: usize = 512;
/// How often a dispatcher whose instance's lease is not valid looks again
/// (until the lease-loss path takes the bot away, or a keep-alive lands).
const LEASE_RECHECK: Duration = Duration::from_millis(100);

impl Dispatcher {
    /// Starts a dispatcher for `name` and returns its handle.
    pub fn spawn(name: &str, token: BotToken, ctx: Context) -> BotHandle {
        let (tx, commands) = mpsc::unbounded_channel();
        let (results_tx, results) = mpsc::unbounded_channel();
        let shared = Arc::new(BotShared::default());
        let name: Arc<str> = Arc::from(name);
        let handle = BotHandle {
            name: name.clone(),
            shared: shared.clone(),
            handing_over: Arc::default(),
            tx,
            token_redacted: Arc::new(Mutex::new(token.redacted())),
        };
        let d = Dispatcher {
            name: name.clone(),
            metrics: ctx.metrics.bot(&name),
            token: Arc::new(token),
            token_gen: 0,
            sched: Scheduler::taking_over(ctx.config.limits.clone(), 0),
            ctx,
            shared,
            epoch: Instant::now(),
            commands,
            results_tx,
            results,
            leaving: false,
            paused: false,
            lease_invalid: false,
            drain_deadline: None,
            paid: PaidMinute::default(),
        };
        tokio::spawn(
            d.run()
                .instrument(tracing::info_span!("dispatcher", bot = %name)),
        );
        handle
    }

    fn tick(&self, at: Instant) -> Tick {
        ticks(at.saturating_duration_since(self.epoch))
    }

    /// `at` on the scheduler's clock, rounded up: for completion times,
    /// which must not come out earlier than the real moment.
    fn tick_ceil(&self, at: Instant) -> Tick {
        ticks_ceil(at.saturating_duration_since(self.epoch))
    }

    /// `t` as an instant; a tick too far out for the clock (it cannot come
    /// from a clamped cooldown, but never panic on it) is a year from now.
    fn instant(&self, t: Tick) -> Instant {
        self.epoch
            .checked_add(shardgate_sched::duration(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }

    async fn run(mut self) {
        debug!("dispatcher started");
        let mut gc = tokio::time::interval(GC_EVERY);
        gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.pump();
            self.publish();
            if self.finished() {
                break;
            }
            let drain_wake = self.drain_deadline;
            tokio::select! {
                biased;
                Some(done) = self.results.recv() => {
                    self.on_done(done);
                    while let Ok(done) = self.results.try_recv() {
                        self.on_done(done);
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => {
                        self.on_command(cmd);
                        for _ in 0..BATCH {
                            match self.commands.try_recv() {
                                Ok(cmd) => self.on_command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every handle is gone: the gateway is gone.
                    None => self.start_leaving("gateway stopped"),
                },
                _ = sleep_until_opt(wake) => {}
                _ = sleep_until_opt(drain_wake.filter(|_| self.sched.queued() > 0)) => {
                    self.fail_queued("the gateway shut down before the message was sent");
                }
                _ = gc.tick() => {
                    let now = self.tick(Instant::now());
                    self.sched.gc(now);
                }
            }
        }
        self.publish();
        debug!("dispatcher stopped");
    }

    fn finished(&self) -> bool {
        let idle = self.sched.in_flight() == 0;
        (self.leaving && idle)
            || (self.drain_deadline.is_some() && idle && self.sched.queued() == 0)
    }

    fn publish(&self) {
        self.shared
            .queued
            .store(self.sched.queued() as u64, Ordering::Relaxed);
        self.shared
            .in_flight
            .store(self.sched.in_flight(), Ordering::Relaxed);
        self.shared
            .active_chats
            .store(self.sched.tracked_chats() as u64, Ordering::Relaxed);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Enqueue(env) => self.accept(env),
            Command::SetToken(token) => {
                if *self.token != token {
                    info!(token = %token.redacted(), "token rotated; later requests use it");
                    self.token = Arc::new(token);
                    self.token_gen += 1;
                    if self.shared.state() == LocalState::Revoked {
                        self.shared.set_state(LocalState::Active, "");
                    }
                }
            }
            Command::Leave(reason) => self.start_leaving(&reason),
            Command::Drain(deadline) => self.drain_deadline = Some(deadline),
            Command::Pause => {
                info!("handing the bot over: sending paused");
                self.paused = true;
            }
            Command::Resume => {
                info!("handoff called off: sending again");
                self.paused = false;
            }
        }
    }

    /// Ends a bot-wide throttle once its cooldown is over.
    fn refresh_state(&mut self, now: Tick) {
        if self.shared.state() == LocalState::Throttled && self.sched.bot_cooldown_until() <= now {
            info!("bot-wide cooldown over");
            self.shared.set_state(LocalState::Active, "");
        }
    }

    fn accept(&mut self, env: Box<Envelope>) {
        self.refresh_state(self.tick(Instant::now()));
        if self.leaving || matches!(self.shared.state(), LocalState::Revoked | LocalState::Gone) {
            self.give_back(env);
            return;
        }
        // A forwarded message goes back to its forwarder, which routes it on.
        let pinned_here = !env.forwarded && env.msg.bot.is_some() && !env.msg.allow_failover;
        if self.shared.state() == LocalState::Throttled && !pinned_here {
            self.give_back(env);
            return;
        }
        let chat_id = env.chat_id;
        let seq = env.seq;
        let mut env = env;
        env.queued_at = Instant::now();
        let rerouted = !env.avoid.is_empty() || env.attempts > 0;
        let result = if rerouted {
            // Accepted before: bounds do not apply, order by seq.
            self.sched.requeue(
                chat_id,
                Queued {
                    seq,
                    not_before: 0,
                    priority: env.msg.priority,
                    items: env.msg.items(),
                    paid: env.msg.paid(),
                    item: env,
                },
                self.tick(Instant::now()),
            );
            Ok(())
        } else {
            let now = self.tick(Instant::now());
            let priority = env.msg.priority;
            if let Some(in_secs) = self.would_miss_deadline(&env, now) {
                self.metrics.failed(tonic::Code::DeadlineExceeded);
                debug!(
                    chat_id,
                    in_secs, "refused: would be sent after its deadline"
                );
                env.reply
                    .finish(Err(SendError::WouldMissDeadline { in_secs }));
                return;
            }
            let queued = Queued {
                seq,
                not_before: 0,
                priority,
                items: env.msg.items(),
                paid: env.msg.paid(),
                item: env,
            };
            self.sched.push_queued(chat_id, queued, now)
        };
        match result {
            Ok(()) => {}
            Err(PushError::BotQueueFull(env)) => {
                self.metrics.failed(tonic::Code::ResourceExhausted);
                env.reply.finish(Err(SendError::QueueFull(format!(
                    "bot {} has {} messages queued (the bound); retry later",
                    self.name,
                    self.sched.limits().queue_max
                ))))
            }
            Err(PushError::ChatQueueFull(env)) => {
                self.metrics.failed(tonic::Code::ResourceExhausted);
                env.reply.finish(Err(SendError::QueueFull(format!(
                    "chat {} has {} messages queued on bot {} (the bound); retry later",
                    chat_id,
                    self.sched.limits().chat_queue_max,
                    self.name
                ))))
            }
        }
    }

    /// Deadline-aware admission: `Some(seconds)` when the scheduler's
    /// estimate puts a new message's send after its deadline (seconds from
    /// `now`, rounded up), `None` when it may make it or has no deadline.
    fn would_miss_deadline(&self, env: &Envelope, now: Tick) -> Option<u64> {
        let deadline = self.tick(env.deadline?);
        let at = self.sched.estimate(env.chat_id, env.msg.priority, now);
        (at > deadline).then(|| at.saturating_sub(now).div_ceil(1_000_000))
    }

    /// Sends everything the scheduler releases now; returns when to wake.
    fn pump(&mut self) -> Option<Instant> {
        if self.paused || (self.drain_deadline.is_none() && self.leaving) {
            return None;
        }
        let now_instant = Instant::now();
        let now = self.tick(now_instant);
        self.refresh_state(now);
        // The lease, checked at send time: a process that was paused past
        // it (SIGSTOP, a VM pause) must not send before the ownership loop
        // has seen the loss. Nothing leaves the queue meanwhile.
        if !self.ctx.registry.may_send(now_instant) {
            if self.sched.queued() == 0 {
                return None;
            }
            if !self.lease_invalid {
                warn!(bot = %self.name, "this instance's lease is not valid now; holding the bot's messages");
                self.lease_invalid = true;
            }
            return Some(now_instant + LEASE_RECHECK);
        }
        if self.lease_invalid {
            info!(bot = %self.name, "lease valid again; sending");
            self.lease_invalid = false;
        }
        loop {
            let next = self.sched.next(now, |env| {
                if env.reply.is_abandoned() {
                    false
                } else if env.expired(now_instant) || !env.reply.gate().begin_send() {
                    // Past its deadline, or its caller was just told so.
                    env.reply.answer(Err(SendError::DeadlineExceeded));
                    false
                } else {
                    true
                }
            });
            match next {
                Next::Send(d) => {
                    if d.over_free_rate {
                        self.paid_sent(d.items, now_instant);
                    }
                    self.send(d.chat_id, d.seq, d.item)
                }
                Next::WaitUntil(t) => return Some(self.instant(t)),
                Next::Idle => return None,
            }
        }
    }

    /// Counts a request that went over the bot's free rate on the paid lane
    /// (each of its `items` is billed), logging the estimated Stars at most
    /// once a minute.
    fn paid_sent(&mut self, items: u16, now: Instant) {
        let n = u64::from(items.max(1));
        self.metrics.paid(n);
        if let Some(r) = self.paid.sent(n, now) {
            info!(
                bot = %self.name,
                paid_messages = r.messages,
                stars = r.stars,
                over_secs = r.over.as_secs(),
                "paid broadcasts: estimated Telegram Stars spent over the free rate (0.1 per message) in the last over_secs"
            );
        }
    }

    fn send(&mut self, chat_id: i64, seq: u64, mut env: Box<Envelope>) {
        env.attempts += 1;
        let request = match &env.msg.body {
            Body::Text(t) => Request::Text(SendMessage {
                chat_id,
                text: t.text.clone(),
                parse_mode: t.parse_mode,
                disable_notification: t.disable_notification,
                extras: t.extras.clone(),
            }),
            Body::Call(c) => Request::Call(c.clone()),
        };
        self.metrics.queue_wait(chat_id, env.queued_at.elapsed());
        env.span.record("bot", &*self.name);
        env.span.record("attempt", env.attempts);
        // Only under an enabled message span: a root span per request would
        // cost what the message span's level saves (see `Gateway::submit`).
        let span = if env.span.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!(parent: &env.span, "telegram.send", bot = %self.name, attempt = env.attempts)
        };
        let client = self.ctx.client.clone();
        let token = self.token.clone();
        let token_gen = self.token_gen;
        let results = self.results_tx.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(
            async move {
                let started = Instant::now();
                let (outcome, result) = match request {
                    Request::Text(msg) => (client.send_message(&token, &msg).await, None),
                    Request::Call(call) => {
                        match client
                            .call(&token, &call.method, &call.params, &call.files)
                            .await
                        {
                            Ok(r) => (
                                Outcome::Delivered {
                                    message_id: r.message_ids.first().copied().unwrap_or(0),
                                    chat_id: r.chat_id.unwrap_or(0),
                                },
                                Some(r),
                            ),
                            Err(outcome) => (outcome, None),
                        }
                    }
                };
                let finished = Instant::now();
                metrics.telegram_answer(&outcome, finished - started);
                let _ = results.send(Done {
                    chat_id,
                    seq,
                    env,
                    token_gen,
                    outcome,
                    result,
                    finished,
                });
            }
            .instrument(span),
        );
    }

    fn on_done(&mut self, done: Done) {
        let Done {
            chat_id,
            seq,
            mut env,
            token_gen,
            outcome,
            result,
            finished,
        } = done;
        let now = self.tick(Instant::now());
        // Every outcome completes the request at `finished`, a failure too:
        // a request that timed out or broke may still have reached Telegram.
        self.sched
            .complete_items(chat_id, env.msg.items(), self.tick_ceil(finished));
        let _enter = env.span.clone().entered();
        match outcome {
            Outcome::Delivered {
                message_id,
                chat_id: delivered_to,
            } => {
                self.metrics.delivered();
                debug!(message_id, "delivered");
                let delivered = self.delivered(&env, chat_id, message_id, delivered_to, result);
                env.reply.finish(Ok(delivered));
            }
            Outcome::RetryAfter {
                retry_after,
                description,
            } => {
                let scope = if retry_after >= self.ctx.config.bot_throttle_threshold {
                    Scope429::Bot
                } else {
                    Scope429::Chat
                };
                self.metrics.too_many_requests(scope, chat_id, retry_after);
                let cooldown = self.ctx.config.cooldown(retry_after);
                let until = now.saturating_add(ticks(cooldown));
                self.requeue(chat_id, seq, env, 0);
                if retry_after >= self.ctx.config.bot_throttle_threshold {
                    // One line per throttle (the bot then sends nothing
                    // for the cooldown): the description says when Telegram
                    // asked for more than `MAX_RETRY_AFTER`.
                    warn!(bot = %self.name, retry_after_s = retry_after.as_secs(), %description, "429 for the whole bot; throttling it and moving its shard");
                    self.throttle_bot(until, cooldown, &description);
                } else {
                    warn!(chat_id, retry_after_s = retry_after.as_secs(), %description, "429 for a chat; cooling it down");
                    self.sched.cool_chat(chat_id, until);
                }
            }
            Outcome::Revoked { code, description } => {
                if token_gen != self.token_gen {
                    // Sent with a token rotated away since: retry with the new one.
                    debug!("answer {code} for a rotated-out token; resending");
                    self.requeue(chat_id, seq, env, 0);
                } else {
                    warn!(code, %description, "token refused; taking the bot out of rotation");
                    self.revoke(&description);
                    self.give_back(env);
                }
            }
            Outcome::Forbidden { description } => {
                self.fail(
                    env,
                    SendError::Unreachable {
                        code: 403,
                        description,
                    },
                );
            }
            Outcome::Migrated {
                to_chat_id,
                description,
            } => {
                // The request that was answered so counts as an attempt
                // (`send` counted it); an impossible target ends the message
                // instead of sending it round for ever.
                if let Err(bad) = self.ctx.migrations.check(chat_id, to_chat_id) {
                    warn!(bot = %self.name, from = chat_id, to = to_chat_id, %description, "refusing an impossible migration: {bad}");
                    self.fail(
                        env,
                        SendError::Unreachable {
                            code: 400,
                            description: format!(
                                "Telegram answered an impossible migration of chat {chat_id} to {to_chat_id} ({bad}): {description}"
                            ),
                        },
                    );
                    return;
                }
                info!(from = chat_id, to = to_chat_id, %description, "group migrated; resending to the supergroup");
                let limited = env.msg.limited_by_chat();
                if let Body::Call(c) = &env.msg.body {
                    let moved = c.moved_to(to_chat_id);
                    env.msg.body = Body::Call(std::sync::Arc::new(moved));
                }
                if limited {
                    self.ctx.migrations.record(chat_id, to_chat_id);
                    env.chat_id = to_chat_id;
                    self.sched.rename_chat(chat_id, to_chat_id, now);
                    self.requeue(to_chat_id, seq, env, 0);
                } else {
                    // Counted on a chat of its own: only the parameters move.
                    self.ctx.migrations.record(env.msg.chat_id, to_chat_id);
                    self.requeue(chat_id, seq, env, 0);
                }
            }
            Outcome::Rejected { code, description } => {
                let err = if description.contains("chat not found") {
                    SendError::Unreachable { code, description }
                } else {
                    SendError::Rejected { code, description }
                };
                self.fail(env, err);
            }
            Outcome::Transient { kind, description } => {
                // A request that was written and not answered may have
                // been delivered: if the message ends in a failure, the
                // caller reads "may have been sent", never "not sent".
                if kind.may_have_arrived() {
                    env.reply.gate().mark_maybe_sent();
                }
                // Retried until the message's deadline (the caller's, else
                // `max_message_age`), however many attempts that takes.
                let left = env
                    .deadline
                    .map(|d| d.saturating_duration_since(Instant::now()));
                let delay = self
                    .ctx
                    .config
                    .backoff
                    .within(env.attempts, left, &mut rand::rng());
                match delay {
                    Some(delay) => {
                        self.metrics.retry();
                        debug!(?kind, %description, delay_ms = delay.as_millis() as u64, "transient failure; retrying");
                        self.requeue(chat_id, seq, env, now.saturating_add(ticks(delay)));
                    }
                    None => {
                        warn!(?kind, %description, attempts = env.attempts, "giving up: the next retry would start past the message's deadline");
                        let err = SendError::Unavailable(format!(
                            "Telegram did not answer before the message's deadline ({} attempts): {description}",
                            env.attempts
                        ));
                        self.fail(env, err);
                    }
                }
            }
        }
    }

    /// The answer of a delivery, and the memory of who sent it: every
    /// message id Telegram returned, under the chat it names (and the
    /// username or chat the caller named), so an edit finds this bot.
    fn delivered(
        &self,
        env: &Envelope,
        chat_id: i64,
        message_id: i64,
        delivered_to: i64,
        result: Option<CallResult>,
    ) -> Delivered {
        let text = matches!(env.msg.body, Body::Text(_));
        // A bot-only call's scheduler chat is its own; the caller's names it.
        let asked = if text || env.msg.limited_by_chat() {
            chat_id
        } else {
            self.ctx.migrations.resolve(env.msg.chat_id)
        };
        let to = if delivered_to != 0 {
            delivered_to
        } else {
            asked
        };
        let ids: &[i64] = match &result {
            Some(r) => &r.message_ids,
            None => std::slice::from_ref(&message_id),
        };
        // Edits answer the message they changed: the same sender again.
        if !ids.is_empty() && message_id != 0 {
            self.ctx.sent.record(to, ids, &self.name);
            if asked != to && asked != 0 {
                self.ctx.sent.record(asked, ids, &self.name);
            }
        }
        Delivered {
            bot: self.name.to_string(),
            message_id,
            chat_id: to,
            attempts: env.attempts,
            deduplicated: false,
            result_json: result.map(|r| std::sync::Arc::from(r.json)),
        }
    }

    fn requeue(&mut self, chat_id: i64, seq: u64, mut env: Box<Envelope>, not_before: Tick) {
        env.reply.gate().end_attempt();
        if self.leaving {
            self.give_back(env);
            return;
        }
        env.queued_at = Instant::now();
        self.sched.requeue(
            chat_id,
            Queued {
                seq,
                not_before,
                priority: env.msg.priority,
                items: env.msg.items(),
                paid: env.msg.paid(),
                item: env,
            },
            self.tick(Instant::now()),
        );
    }

    fn fail(&self, env: Box<Envelope>, err: SendError) {
        self.metrics.failed(err.code());
        debug!(error = %err, "send failed for good");
        env.reply.finish(Err(err));
    }

    /// Hands a message to the re-router, marking this bot as one to avoid;
    /// a message pinned here without failover fails instead.
    fn give_back(&self, mut env: Box<Envelope>) {
        env.reply.gate().end_attempt();
        if env.forwarded {
            // The forwarding instance routes it again; nothing was sent here.
            env.reply.finish(Err(SendError::NotOwner(format!(
                "bot {} cannot take messages here now",
                self.name
            ))));
            return;
        }
        if env.msg.bot.is_some() && !env.msg.allow_failover {
            let reason = self.shared.reason.lock().clone();
            let err = SendError::Unavailable(format!(
                "pinned bot {} cannot send now ({}) and the request does not allow failover",
                self.name,
                if reason.is_empty() {
                    "leaving"
                } else {
                    &reason
                }
            ));
            self.fail(env, err);
            return;
        }
        if !env.avoid.iter().any(|b| **b == *self.name) {
            env.avoid.push(self.name.clone());
        }
        self.metrics.rerouted();
        if let Err(e) = self.ctx.reroute.send(env) {
            e.0.reply.finish(Err(SendError::Unavailable(
                "the gateway is stopping".into(),
            )));
        }
    }

    fn give_back_queued(&mut self, keep_pinned: bool) {
        for d in self.sched.drain() {
            let env = d.item;
            if keep_pinned && !env.forwarded && env.msg.bot.is_some() && !env.msg.allow_failover {
                self.sched.requeue(
                    d.chat_id,
                    Queued {
                        seq: d.seq,
                        not_before: 0,
                        priority: d.priority,
                        items: d.items,
                        paid: env.msg.paid(),
                        item: env,
                    },
                    self.tick(Instant::now()),
                );
            } else {
                self.give_back(env);
            }
        }
    }

    fn revoke(&mut self, description: &str) {
        if self.shared.state() == LocalState::Revoked {
            return;
        }
        self.shared.set_state(LocalState::Revoked, description);
        self.report(Health {
            state: HealthState::Revoked,
            until: 0,
            reason: description.to_owned(),
            instance: self.ctx.registry.instance_id().to_owned(),
            at: unix_now(),
        });
        self.give_back_queued(false);
    }

    fn throttle_bot(&mut self, until: Tick, cooldown: Duration, description: &str) {
        self.sched.cool_bot(until);
        // Rounded up: other instances count the bot healthy once this whole
        // second has passed, which must not be before our own cooldown ends.
        let until_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| {
                now.saturating_add(cooldown).as_secs_f64().ceil() as u64
            });
        self.shared
            .throttled_until
            .store(until_unix, Ordering::Relaxed);
        self.shared.set_state(LocalState::Throttled, description);
        self.report(Health {
            state: HealthState::Throttled,
            until: until_unix,
            reason: description.to_owned(),
            instance: self.ctx.registry.instance_id().to_owned(),
            at: unix_now(),
        });
        self.give_back_queued(true);
    }

    fn report(&self, health: Health) {
        let registry = self.ctx.registry.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = registry.report_health(&name, health).await {
                warn!(bot = %name, error = %e, "could not record the bot's health");
            }
        });
    }

    fn start_leaving(&mut self, reason: &str) {
        if !self.leaving {
            info!(%reason, "bot leaving; handing its queue to other bots");
            self.leaving = true;
            if self.shared.state() == LocalState::Active
                || self.shared.state() == LocalState::Throttled
            {
                self.shared.set_state(LocalState::Gone, reason);
            }
            self.give_back_queued(false);
        }
    }

    fn fail_queued(&mut self, reason: &str) {
        for d in self.sched.drain() {
            self.metrics.failed(tonic::Code::Unavailable);
            d.item
                .reply
                .finish(Err(SendError::Unavailable(reason.to_owned())));
        }
    }
}

/// What one attempt sends.
enum Request {
    Text(SendMessage),
    Call(std::sync::Arc<crate::call::Call>),
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
