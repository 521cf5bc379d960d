//! Shardgate's Prometheus metrics.
//!
//! One [`Metrics`] per process (cheap to clone: an `Arc` inside) holds the
//! registry. Events are recorded through typed methods; per-bot series are
//! resolved once into a [`BotMetrics`] handle (`metrics.bot("alpha")`) that the
//! bot's dispatcher keeps, so the hot path only bumps atomics: no label
//! formatting, no hashing, no allocation.
//!
//! Labels are bot *names*, entry points, gRPC code names, scopes and states:
//! never a chat id (cardinality) and never a token. Per-chat figures live in a
//! bounded top-K of hot chats instead ([`Metrics::hot_chats`]).
//!
//! [`serve`] answers `GET /metrics` (OpenMetrics text) and `GET /healthz`.
//!
//! ```
//! use std::time::Duration;
//! use shardgate_metrics::{BotState, Entry, Metrics, Scope429};
//!
//! let metrics = Metrics::new();
//! metrics.accepted(Entry::Unary);
//! let alpha = metrics.bot("alpha");
//! alpha.set_state(BotState::Healthy);
//! alpha.queue_wait(-100123, Duration::from_millis(40));
//! alpha.too_many_requests(Scope429::Chat, -100123, Duration::from_secs(3));
//! alpha.delivered();
//! metrics.finished(Entry::Unary, tonic::Code::Ok, Duration::from_millis(250));
//! let text = metrics.encode();
//! assert!(text.contains(r#"shardgate_messages_delivered_total{bot="alpha"} 1"#));
//! assert_eq!(metrics.hot_chats(shardgate_metrics::HotBy::TooManyRequests)[0].chat_id, -100123);
//! ```

mod hot;
mod labels;
mod server;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use shardgate_telegram::{Outcome, TransientKind};

pub use hot::{HOT_CHATS_K, HotBy, HotChat, TRACKED, WINDOW};
use labels::{
    AuthFailureLabels, BotLabels, BotStateLabels, CallerKindLabels, CallerLabels,
    CallerRefusedLabels, DirectionLabels, EntryLabels, FailedLabels, GrpcCode, IdempotentLabels,
    ScopeLabels, SendLabels, TelegramErrorLabels, VersionLabels,
};
pub use labels::{BotState, Direction, Entry, IdempotentHit, Scope429, TelegramError};
pub use server::{CONTENT_TYPE, ServeLimits, router, serve, serve_with};

/// Buckets for waits that range from milliseconds (an idle chat) to hours (a
/// bot cooling down after `retry_after` 4310 s): queue time and end-to-end
/// send latency. Seconds.
pub const WAIT_BUCKETS: [f64; 22] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Buckets for one Bot API request (network round trip; the client's own
/// timeout bounds it). Seconds.
pub const REQUEST_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// Resolves one series. The family's read guard is dropped on return: two
/// live guards on the same family deadlock when the second one inserts.
fn get<S, M, C>(family: &Family<S, M, C>, labels: &S) -> M
where
    S: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    family.get_or_create(labels).clone()
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type ScrapeHook = Box<dyn Fn(&Metrics) + Send + Sync>;

struct Families {
    accepted: Family<EntryLabels, Counter>,
    delivered: Family<BotLabels, Counter>,
    failed: Family<FailedLabels, Counter>,
    too_many_requests: Family<ScopeLabels, Counter>,
    telegram_errors: Family<TelegramErrorLabels, Counter>,
    retries: Family<BotLabels, Counter>,
    rerouted: Family<BotLabels, Counter>,
    paid_messages: Family<BotLabels, Counter>,
    queue_depth: Family<BotLabels, Gauge>,
    in_flight: Family<BotLabels, Gauge>,
    queue_wait: HistogramFamily<BotLabels>,
    telegram_latency: HistogramFamily<BotLabels>,
    send_latency: HistogramFamily<SendLabels>,
    bot_state: Family<BotStateLabels, Gauge>,
    owned_bots: Gauge,
    etcd_session: Arc<OptionalGauge>,
    forwarded: Family<DirectionLabels, Counter>,
    idempotent_hits: Family<IdempotentLabels, Counter>,
    caller_accepted: Family<CallerLabels, Counter>,
    caller_refused: Family<CallerRefusedLabels, Counter>,
    caller_violations: Family<CallerKindLabels, Counter>,
    caller_banned: Family<CallerLabels, Gauge>,
    auth_failures: Family<AuthFailureLabels, Counter>,
    queued_bytes: Gauge,
}

/// A label-less gauge that is exported only once set: `etcd_session_up` is
/// absent in embedded mode, so its "session lost" alert cannot fire there.
#[derive(Debug)]
struct OptionalGauge {
    name: &'static str,
    help: &'static str,
    /// `i64::MIN` = never set.
    value: AtomicI64,
}

impl OptionalGauge {
    fn new(name: &'static str, help: &'static str) -> Self {
        OptionalGauge {
            name,
            help,
            value: AtomicI64::new(i64::MIN),
        }
    }

    fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
    }
}

impl Collector for OptionalGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.value.load(Ordering::Relaxed);
        if v == i64::MIN {
            return Ok(());
        }
        let gauge = ConstGauge::new(v);
        let metric = encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }
}

struct Inner {
    registry: Registry,
    f: Families,
    hot_429: Mutex<hot::HotChats>,
    hot_wait: Mutex<hot::HotChats>,
    hooks: Mutex<Vec<Arc<ScrapeHook>>>,
    /// Bots with `bot_state` series.
    state_bots: Mutex<BTreeSet<String>>,
    /// Whether the gateway can route now, for `GET /readyz` (a probe that
    /// cannot speak gRPC over TLS asks here).
    ready: std::sync::atomic::AtomicBool,
}

/// The process's metrics. Cheap to clone; create one at start.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Says whether the gateway can route now (what its gRPC health service
    /// says for `shardgate.v1.Gateway`); `GET /readyz` answers from it.
    pub fn set_ready(&self, ready: bool) {
        self.inner
            .ready
            .store(ready, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last [`set_ready`](Self::set_ready).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A fresh registry with every `shardgate_*` metric registered.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("shardgate");
        let f = Families {
            accepted: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            too_many_requests: Family::default(),
            telegram_errors: Family::default(),
            retries: Family::default(),
            rerouted: Family::default(),
            paid_messages: Family::default(),
            queue_depth: Family::default(),
            in_flight: Family::default(),
            queue_wait: Family::new_with_constructor(wait_histogram),
            telegram_latency: Family::new_with_constructor(request_histogram),
            send_latency: Family::new_with_constructor(wait_histogram),
            bot_state: Family::default(),
            owned_bots: Gauge::default(),
            etcd_session: Arc::new(OptionalGauge::new(
                "etcd_session_up",
                "1 while this instance holds a live etcd session (lease), 0 otherwise; absent in embedded mode",
            )),
            forwarded: Family::default(),
            idempotent_hits: Family::default(),
            caller_accepted: Family::default(),
            caller_refused: Family::default(),
            caller_violations: Family::default(),
            caller_banned: Family::default(),
            auth_failures: Family::default(),
            queued_bytes: Gauge::default(),
        };
        r.register(
            "messages_accepted",
            "Messages accepted for sending, by entry point (unary, stream, forwarded from a peer)",
            f.accepted.clone(),
        );
        r.register(
            "messages_delivered",
            "Messages Telegram accepted, by the bot that delivered them",
            f.delivered.clone(),
        );
        r.register(
            "messages_failed",
            "Messages that ended in an error on a bot, by bot and gRPC code",
            f.failed.clone(),
        );
        r.register(
            "telegram_429",
            "429 Too Many Requests answers from Telegram, by bot and scope (chat: one chat cooled down; bot: the whole bot throttled)",
            f.too_many_requests.clone(),
        );
        r.register(
            "telegram_errors",
            "Error answers and transport failures of Bot API requests other than 429, by bot and kind",
            f.telegram_errors.clone(),
        );
        r.register(
            "retries",
            "Bot API requests retried after a transient failure (5xx, timeout, broken connection), by bot",
            f.retries.clone(),
        );
        r.register(
            "messages_rerouted",
            "Messages a bot gave back to the re-router (revoked, throttled, leaving), by that bot",
            f.rerouted.clone(),
        );
        r.register(
            "paid_messages",
            "Messages sent with allow_paid_broadcast over the bot's free rate (each costs Telegram Stars), by bot",
            f.paid_messages.clone(),
        );
        r.register(
            "queue_depth",
            "Messages queued on a bot's dispatcher, waiting for the limiter",
            f.queue_depth.clone(),
        );
        r.register(
            "in_flight",
            "Bot API requests in flight, by bot",
            f.in_flight.clone(),
        );
        r.register_with_unit(
            "queue_wait",
            "Time a message waited in its bot's queue before a Bot API request was made for it",
            Unit::Seconds,
            f.queue_wait.clone(),
        );
        r.register_with_unit(
            "telegram_request_duration",
            "Duration of one Bot API request, by bot",
            Unit::Seconds,
            f.telegram_latency.clone(),
        );
        r.register_with_unit(
            "send_duration",
            "End-to-end time of a send, from the gRPC request to its answer, by entry point and gRPC code",
            Unit::Seconds,
            f.send_latency.clone(),
        );
        r.register(
            "bot_state",
            "Bot state as this instance sees it: 1 for the current state (healthy, throttled, revoked, disabled), 0 for the others",
            f.bot_state.clone(),
        );
        r.register(
            "bots_owned",
            "Bots this instance drives (owns)",
            f.owned_bots.clone(),
        );
        r.register_collector(Box::new(f.etcd_session.clone()));
        r.register(
            "forwarded_messages",
            "Messages forwarded between instances, by direction (out: to the owner of the bot; in: from a peer)",
            f.forwarded.clone(),
        );
        r.register(
            "idempotent_hits",
            "Sends answered by the idempotency cache, by kind (answered: a delivered result; joined: a send in flight)",
            f.idempotent_hits.clone(),
        );
        r.register(
            "caller_messages_accepted",
            "Messages accepted from a caller (past its auth, lists, quota and bounds), by caller",
            f.caller_accepted.clone(),
        );
        r.register(
            "caller_messages_refused",
            "Messages refused to a caller, by caller and reason (quota, in_flight, bytes, bot, chat, paid, banned)",
            f.caller_refused.clone(),
        );
        r.register(
            "caller_violations",
            "Refusals that added to a caller's violation score, by caller and kind",
            f.caller_violations.clone(),
        );
        r.register(
            "caller_banned",
            "1 while a caller is banned (on this instance's view), 0 otherwise",
            f.caller_banned.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused before a caller was known, by reason (missing_key, unknown_key, unknown_certificate, forged_forward)",
            f.auth_failures.clone(),
        );
        r.register(
            "queued_bytes",
            "Bytes of queued messages held on this instance (bounded by [limits] queue_bytes_max)",
            f.queued_bytes.clone(),
        );
        let build_info: Family<VersionLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "Build information (always 1)", build_info);
        let now = Instant::now();
        Metrics {
            inner: Arc::new(Inner {
                registry: r,
                f,
                hot_429: Mutex::new(hot::HotChats::new(now, WINDOW)),
                hot_wait: Mutex::new(hot::HotChats::new(now, WINDOW)),
                hooks: Mutex::new(Vec::new()),
                state_bots: Mutex::new(BTreeSet::new()),
                ready: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Resolves every per-bot series of `bot` once. Keep the handle (one per
    /// dispatcher); calling this again for the same name is fine and returns
    /// a handle on the same series.
    pub fn bot(&self, bot: &str) -> BotMetrics {
        let f = &self.inner.f;
        let l = BotLabels {
            bot: bot.to_owned(),
        };
        let scope = |scope| ScopeLabels {
            bot: bot.to_owned(),
            scope,
        };
        let err = |kind| TelegramErrorLabels {
            bot: bot.to_owned(),
            kind,
        };
        let state = |state| BotStateLabels {
            bot: bot.to_owned(),
            state,
        };
        self.inner
            .state_bots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bot.to_owned());
        BotMetrics {
            inner: Arc::new(BotInner {
                name: Arc::from(bot),
                metrics: self.clone(),
                delivered: get(&f.delivered, &l),
                retries: get(&f.retries, &l),
                rerouted: get(&f.rerouted, &l),
                paid_messages: get(&f.paid_messages, &l),
                too_many_chat: get(&f.too_many_requests, &scope(Scope429::Chat)),
                too_many_bot: get(&f.too_many_requests, &scope(Scope429::Bot)),
                errors: TelegramError::ALL.map(|k| get(&f.telegram_errors, &err(k))),
                queue_depth: get(&f.queue_depth, &l),
                in_flight: get(&f.in_flight, &l),
                queue_wait: get(&f.queue_wait, &l),
                telegram_latency: get(&f.telegram_latency, &l),
                state: BotState::ALL.map(|s| get(&f.bot_state, &state(s))),
                failed: std::array::from_fn(|_| OnceLock::new()),
            }),
        }
    }

    /// Forgets every series of `bot` (it left the fleet for good). Handles
    /// still held keep counting, unexported.
    pub fn remove_bot(&self, bot: &str) {
        let f = &self.inner.f;
        let l = BotLabels {
            bot: bot.to_owned(),
        };
        f.delivered.remove(&l);
        f.retries.remove(&l);
        f.rerouted.remove(&l);
        f.paid_messages.remove(&l);
        f.queue_depth.remove(&l);
        f.in_flight.remove(&l);
        f.queue_wait.remove(&l);
        f.telegram_latency.remove(&l);
        for scope in [Scope429::Chat, Scope429::Bot] {
            f.too_many_requests.remove(&ScopeLabels {
                bot: bot.to_owned(),
                scope,
            });
        }
        for kind in TelegramError::ALL {
            f.telegram_errors.remove(&TelegramErrorLabels {
                bot: bot.to_owned(),
                kind,
            });
        }
        for state in BotState::ALL {
            f.bot_state.remove(&BotStateLabels {
                bot: bot.to_owned(),
                state,
            });
        }
        for code in GrpcCode::ALL {
            f.failed.remove(&FailedLabels {
                bot: bot.to_owned(),
                code,
            });
        }
        self.inner
            .state_bots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(bot);
    }

    /// Sets the state of every bot in `bots` and removes the state series of
    /// bots not listed (gone from the fleet). Call it whenever the fleet or a
    /// bot's state changes, or from an [`on_scrape`](Self::on_scrape) hook.
    pub fn set_bot_states<'a>(&self, bots: impl IntoIterator<Item = (&'a str, BotState)>) {
        let f = &self.inner.f;
        let mut seen = Vec::new();
        for (bot, current) in bots {
            for state in BotState::ALL {
                f.bot_state
                    .get_or_create(&BotStateLabels {
                        bot: bot.to_owned(),
                        state,
                    })
                    .set(i64::from(state == current));
            }
            seen.push(bot);
        }
        let mut known = self
            .inner
            .state_bots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known.retain(|bot| {
            let keep = seen.contains(&bot.as_str());
            if !keep {
                for state in BotState::ALL {
                    f.bot_state.remove(&BotStateLabels {
                        bot: bot.clone(),
                        state,
                    });
                }
            }
            keep
        });
        known.extend(seen.iter().map(|b| (*b).to_owned()));
    }

    /// A message was accepted (validated, about to be routed).
    pub fn accepted(&self, entry: Entry) {
        self.inner
            .f
            .accepted
            .get_or_create(&EntryLabels { entry })
            .inc();
    }

    /// A send ended (answered to its caller), with its gRPC code (`Code::Ok`
    /// when delivered) and the time since the request arrived.
    pub fn finished(&self, entry: Entry, code: tonic::Code, elapsed: Duration) {
        self.inner
            .f
            .send_latency
            .get_or_create(&SendLabels {
                entry,
                code: GrpcCode(code),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// How many bots this instance drives.
    pub fn set_owned_bots(&self, n: usize) {
        self.inner
            .f
            .owned_bots
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether the etcd session (lease) is alive.
    /// The series appears on the first call (cluster mode only).
    pub fn set_etcd_session(&self, up: bool) {
        self.inner.f.etcd_session.set(i64::from(up));
    }

    /// A message forwarded to (out) or from (in) a peer instance.
    pub fn forwarded(&self, direction: Direction) {
        self.inner
            .f
            .forwarded
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    /// The idempotency cache answered a send.
    pub fn idempotent_hit(&self, kind: IdempotentHit) {
        self.inner
            .f
            .idempotent_hits
            .get_or_create(&IdempotentLabels { kind })
            .inc();
    }

    /// A caller's message passed its checks.
    pub fn caller_accepted(&self, caller: &str) {
        self.inner
            .f
            .caller_accepted
            .get_or_create(&CallerLabels {
                caller: caller.to_owned(),
            })
            .inc();
    }

    /// A caller's message was refused (`reason`: a violation kind or
    /// `banned`).
    pub fn caller_refused(&self, caller: &str, reason: &'static str) {
        self.inner
            .f
            .caller_refused
            .get_or_create(&CallerRefusedLabels {
                caller: caller.to_owned(),
                reason,
            })
            .inc();
    }

    /// A refusal added to a caller's violation score.
    pub fn caller_violation(&self, caller: &str, kind: &'static str) {
        self.inner
            .f
            .caller_violations
            .get_or_create(&CallerKindLabels {
                caller: caller.to_owned(),
                kind,
            })
            .inc();
    }

    /// Sets `shardgate_caller_banned` for every caller listed and removes
    /// the series of callers not listed (gone).
    pub fn set_callers_banned<'a>(&self, callers: impl IntoIterator<Item = (&'a str, bool)>) {
        let f = &self.inner.f;
        f.caller_banned.clear();
        for (caller, banned) in callers {
            f.caller_banned
                .get_or_create(&CallerLabels {
                    caller: caller.to_owned(),
                })
                .set(i64::from(banned));
        }
    }

    /// A request was refused before a caller was known.
    pub fn auth_failure(&self, reason: &'static str) {
        self.inner
            .f
            .auth_failures
            .get_or_create(&AuthFailureLabels { reason })
            .inc();
    }

    /// Bytes of queued messages held now.
    pub fn set_queued_bytes(&self, bytes: u64) {
        self.inner
            .f
            .queued_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The hottest chats (at most [`HOT_CHATS_K`]), hottest first, over the
    /// last one to two [`WINDOW`]s.
    pub fn hot_chats(&self, by: HotBy) -> Vec<HotChat> {
        self.hot_chats_at(by, Instant::now())
    }

    fn hot_chats_at(&self, by: HotBy, now: Instant) -> Vec<HotChat> {
        let m = match by {
            HotBy::TooManyRequests => &self.inner.hot_429,
            HotBy::QueueWait => &self.inner.hot_wait,
        };
        m.lock()
            .unwrap_or_else(|p| p.into_inner())
            .top(now, HOT_CHATS_K)
    }

    /// Runs `hook` before every encoding (each scrape): the place to copy
    /// values that live elsewhere (queue depths, bot states) into gauges.
    /// Hooks run in registration order on the scraping task; keep them short
    /// and non-blocking. A hook holding a strong reference to something that
    /// holds this `Metrics` makes a cycle: use a `Weak` if that matters.
    pub fn on_scrape(&self, hook: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(Box::new(hook)));
    }

    /// The OpenMetrics text exposition (what `/metrics` answers), after
    /// running the scrape hooks.
    pub fn encode(&self) -> String {
        let hooks: Vec<Arc<ScrapeHook>> = self
            .inner
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for hook in hooks {
            hook(self);
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; the encoder only fails on a
        // formatter error.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    fn offer_hot(&self, by: HotBy, chat_id: i64, weight: f64, value: f64, bot: &Arc<str>) {
        let m = match by {
            HotBy::TooManyRequests => &self.inner.hot_429,
            HotBy::QueueWait => &self.inner.hot_wait,
        };
        m.lock().unwrap_or_else(|p| p.into_inner()).offer(
            Instant::now(),
            chat_id,
            weight,
            value,
            bot,
        );
    }
}

struct BotInner {
    name: Arc<str>,
    metrics: Metrics,
    delivered: Counter,
    retries: Counter,
    rerouted: Counter,
    paid_messages: Counter,
    too_many_chat: Counter,
    too_many_bot: Counter,
    errors: [Counter; TelegramError::ALL.len()],
    queue_depth: Gauge,
    in_flight: Gauge,
    queue_wait: Histogram,
    telegram_latency: Histogram,
    state: [Gauge; BotState::ALL.len()],
    /// Resolved on a code's first failure (indexed by the gRPC code number),
    /// so that unused codes export no series.
    failed: [OnceLock<Counter<u64, AtomicU64>>; GrpcCode::ALL.len()],
}

/// One bot's series, resolved once. Cheap to clone.
#[derive(Clone)]
pub struct BotMetrics {
    inner: Arc<BotInner>,
}

impl std::fmt::Debug for BotMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotMetrics")
            .field("bot", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl BotMetrics {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Telegram accepted a message from this bot.
    pub fn delivered(&self) {
        self.inner.delivered.inc();
    }

    /// A message ended in an error on this bot, with the gRPC code its
    /// caller gets (e.g. `FailedPrecondition` for 403, `ResourceExhausted`
    /// for a full queue).
    pub fn failed(&self, code: tonic::Code) {
        let i = code as usize;
        let Some(slot) = self.inner.failed.get(i) else {
            return;
        };
        slot.get_or_init(|| {
            get(
                &self.inner.metrics.inner.f.failed,
                &FailedLabels {
                    bot: self.inner.name.to_string(),
                    code: GrpcCode(code),
                },
            )
        })
        .inc();
    }

    /// A 429: `Chat` when one chat was cooled down, `Bot` when the whole bot
    /// was throttled. Also feeds the hot-chats tracker.
    pub fn too_many_requests(&self, scope: Scope429, chat_id: i64, retry_after: Duration) {
        match scope {
            Scope429::Chat => self.inner.too_many_chat.inc(),
            Scope429::Bot => self.inner.too_many_bot.inc(),
        };
        self.inner.metrics.offer_hot(
            HotBy::TooManyRequests,
            chat_id,
            1.0,
            retry_after.as_secs_f64(),
            &self.inner.name,
        );
    }

    /// A Bot API error answer or transport failure (other than 429).
    pub fn telegram_error(&self, kind: TelegramError) {
        self.inner.errors[kind as usize].inc();
    }

    /// One Bot API request finished: records its duration and, for error
    /// answers other than 429, [`telegram_error`](Self::telegram_error) with
    /// the matching kind. 429s are counted by
    /// [`too_many_requests`](Self::too_many_requests), which knows the scope.
    pub fn telegram_answer(&self, outcome: &Outcome, elapsed: Duration) {
        self.inner.telegram_latency.observe(elapsed.as_secs_f64());
        if let Some(kind) = TelegramError::of(outcome) {
            self.telegram_error(kind);
        }
    }

    /// A message is queued again for a retry after a transient failure.
    pub fn retry(&self) {
        self.inner.retries.inc();
    }

    /// The bot handed a message to the re-router.
    pub fn rerouted(&self) {
        self.inner.rerouted.inc();
    }

    /// `n` messages of this bot went over its free rate on the paid lane
    /// (`allow_paid_broadcast`): each is billed in Telegram Stars.
    pub fn paid(&self, n: u64) {
        self.inner.paid_messages.inc_by(n);
    }

    /// Messages of this bot counted by [`BotMetrics::paid`] so far.
    pub fn paid_total(&self) -> u64 {
        self.inner.paid_messages.get()
    }

    /// The dispatcher's current queue depth and requests in flight.
    pub fn set_queue(&self, queued: u64, in_flight: u32) {
        self.inner
            .queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.inner.in_flight.set(i64::from(in_flight));
    }

    /// A message leaves the queue for a Bot API request after `waited`.
    /// Also feeds the hot-chats tracker.
    pub fn queue_wait(&self, chat_id: i64, waited: Duration) {
        let secs = waited.as_secs_f64();
        self.inner.queue_wait.observe(secs);
        self.inner
            .metrics
            .offer_hot(HotBy::QueueWait, chat_id, secs, secs, &self.inner.name);
    }

    /// The bot's state: its gauge for `state` is 1, the others 0. Use either
    /// this or [`Metrics::set_bot_states`] (which also covers bots without a
    /// local dispatcher and drops bots that left), not both: the latter
    /// removes series the handle then keeps writing to.
    pub fn set_state(&self, state: BotState) {
        for (s, g) in BotState::ALL.iter().zip(&self.inner.state) {
            g.set(i64::from(*s == state));
        }
    }
}

impl TelegramError {
    /// The kind of an answer, or `None` for delivered, 429 and migrations.
    pub fn of(outcome: &Outcome) -> Option<TelegramError> {
        Some(match outcome {
            Outcome::Delivered { .. } | Outcome::RetryAfter { .. } | Outcome::Migrated { .. } => {
                return None;
            }
            Outcome::Revoked { .. } => TelegramError::Unauthorized,
            Outcome::Forbidden { .. } => TelegramError::Forbidden,
            Outcome::Rejected { .. } => TelegramError::BadRequest,
            Outcome::Transient { kind, .. } => match kind {
                TransientKind::Server(_) => TelegramError::ServerError,
                TransientKind::Timeout => TelegramError::Timeout,
                TransientKind::Connect | TransientKind::Connection | TransientKind::Body => {
                    TelegramError::Transport
                }
            },
        })
    }
}

#[cfg(test)]
mod tests;
