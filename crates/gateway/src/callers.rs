//! Callers at the service edge: who a request comes from, and whether its
//! messages may go.
//!
//! - [`Callers::identify`] runs in the auth layer (a tonic interceptor on
//!   the `Gateway` service, see `server.rs`) for every call: it resolves the
//!   bearer key or the client certificate's CN to a [`Who`] and refuses
//!   unknown keys (`UNAUTHENTICATED`), bans, and the forwarding header from
//!   anyone but a peer (`PERMISSION_DENIED`). Health and reflection are
//!   served without it.
//! - [`Callers::admit`] runs in the submit path for every message: the
//!   caller's bot and chat lists, `max_in_flight`, its bytes queued here,
//!   and its quota (tokens granted by the [`CallerStore`]: see
//!   `shardgate_callers::quota` for why that holds cluster-wide). What it
//!   takes is held in [`Admission::permits`] until the message is answered.
//! - Each refusal adds to the caller's violation score; at the threshold the
//!   caller is banned on this instance at once and in the store (etcd
//!   `bans/<caller>`, which every instance watches). Every violation and ban
//!   is one log line (caller, kind, score: never a key) and a metric.
//!
//! Time: windows and bans are in Unix time, read as a base taken at start
//! plus tokio's `Instant` since then, so tests on a paused clock drive them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardgate_callers::{
    AuthError, AuthMode, Ban, CallerSpec, Credentials, Directory, Identity, KeyDigest, RefusalKind,
    Score, Snapshot, TakeResult, TokenPool, Verdict, ViolationSettings,
};
use shardgate_metrics::Metrics;
use shardgate_registry::CallerStore;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::budget::{Budget, Permit};
use crate::gateway::human_bytes;
use crate::{Message, SendError};

/// How long a quota grant from the store may take before this instance
/// falls back to its local share.
const GRANT_TIMEOUT: Duration = Duration::from_secs(2);

/// Who a call comes from (a request extension set by the auth layer).
#[derive(Clone, Debug)]
pub enum Who {
    Caller(Caller),
    /// Another instance of the cluster.
    Peer,
    /// Auth is off and no known caller was named.
    Anonymous,
}

impl Who {
    /// The caller's name, if a caller.
    pub fn caller_name(&self) -> Option<&str> {
        match self {
            Who::Caller(c) => Some(&c.name),
            _ => None,
        }
    }
}

/// A known caller and its state on this instance. Cheap to clone.
#[derive(Clone)]
pub struct Caller {
    pub name: Arc<str>,
    state: Arc<CallerState>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Caller").field(&self.name).finish()
    }
}

impl Caller {
    /// The caller's rules now.
    pub fn spec(&self) -> Arc<CallerSpec> {
        self.state.spec()
    }

    /// May this caller set `allow_paid_broadcast`?
    pub fn may_paid_broadcast(&self) -> bool {
        self.spec().paid_broadcast
    }
}

/// What admitting a message took; held until it is answered.
#[derive(Debug, Default)]
pub struct Admission {
    /// The caller the message counts for (forwarded along with it).
    pub caller: Option<Arc<str>>,
    /// Bots the message may go through (`None`: any).
    pub allowed_bots: Option<Arc<[String]>>,
    /// In-flight slot and bytes: given back when the message is answered.
    pub permits: Vec<Permit>,
}

struct CallerState {
    spec: RwLock<Arc<CallerSpec>>,
    settings: RwLock<ViolationSettings>,
    in_flight: Budget,
    bytes: Budget,
    pool: tokio::sync::Mutex<TokenPool>,
    score: Mutex<Score>,
    /// A ban this instance decided (Unix s; 0 = none), enforced at once,
    /// before the store echoes it.
    banned_until_s: AtomicU64,
}

impl CallerState {
    fn spec(&self) -> Arc<CallerSpec> {
        self.spec.read().clone()
    }

    fn settings(&self) -> ViolationSettings {
        *self.settings.read()
    }

    fn apply(&self, spec: &CallerSpec, shared: &ViolationSettings, default_bytes: u64) {
        self.in_flight.set_max(in_flight_max(spec));
        self.bytes
            .set_max(spec.queue_bytes_max.unwrap_or(default_bytes));
        *self.settings.write() = spec.violations(shared);
        *self.spec.write() = Arc::new(spec.clone());
    }
}

fn in_flight_max(spec: &CallerSpec) -> u64 {
    match spec.max_in_flight {
        0 => u64::MAX,
        n => u64::from(n),
    }
}

struct View {
    snapshot: Arc<Snapshot>,
    directory: Directory,
    enforced: bool,
}

/// Unix time on tokio's clock.
#[derive(Clone, Copy)]
struct UnixClock {
    base_ms: u64,
    base: Instant,
}

impl UnixClock {
    fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        UnixClock {
            base_ms,
            base: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        let since = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(since)
    }
}

struct Inner {
    store: Arc<dyn CallerStore>,
    mode: AuthMode,
    view: RwLock<Arc<View>>,
    states: Mutex<HashMap<String, Arc<CallerState>>>,
    clock: UnixClock,
    metrics: Metrics,
    default_bytes: u64,
}

/// The callers of this instance. Cheap to clone.
#[derive(Clone)]
pub struct Callers {
    inner: Arc<Inner>,
}

impl Callers {
    /// Follows `store` (on the current runtime) with auth `mode`; a caller
    /// without its own `queue_bytes_max` may queue `default_bytes` here.
    pub fn start(
        store: Arc<dyn CallerStore>,
        mode: AuthMode,
        default_bytes: u64,
        metrics: Metrics,
    ) -> Callers {
        let mut rx = store.snapshot();
        let first = rx.borrow_and_update().clone();
        let callers = Callers {
            inner: Arc::new(Inner {
                view: RwLock::new(Arc::new(view(&first, store.as_ref(), mode, false))),
                store,
                mode,
                states: Mutex::new(HashMap::new()),
                clock: UnixClock::new(),
                metrics: metrics.clone(),
                default_bytes,
            }),
        };
        callers.inner.rebuild(&first);
        let weak: Weak<Inner> = Arc::downgrade(&callers.inner);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let snapshot = rx.borrow_and_update().clone();
                let Some(inner) = weak.upgrade() else { return };
                inner.rebuild(&snapshot);
            }
        });
        let weak = Arc::downgrade(&callers.inner);
        metrics.on_scrape(move |m| {
            let Some(inner) = weak.upgrade() else { return };
            let view = inner.view();
            let now_s = inner.clock.now_ms() / 1000;
            let states = inner.lock_states();
            m.set_callers_banned(view.directory.callers().map(|c| {
                let local = states
                    .get(&c.name)
                    .is_some_and(|s| s.banned_until_s.load(Ordering::Relaxed) > now_s);
                (
                    c.name.as_str(),
                    local || view.snapshot.banned_until(&c.name, now_s).is_some(),
                )
            }));
        });
        callers
    }

    /// Auth off, nobody configured: every call is anonymous.
    pub fn open(metrics: Metrics) -> Callers {
        Callers::start(
            Arc::new(shardgate_registry::EmbeddedCallers::empty()),
            AuthMode::Off,
            u64::MAX,
            metrics,
        )
    }

    /// Is a call without a known caller refused now?
    pub fn enforced(&self) -> bool {
        self.inner.view().enforced
    }

    pub fn mode(&self) -> AuthMode {
        self.inner.mode
    }

    /// How many callers are configured.
    pub fn count(&self) -> usize {
        self.inner.view().directory.len()
    }

    /// The key to present to peers (cluster mode).
    pub fn cluster_key(&self) -> Option<String> {
        self.inner.store.cluster_key()
    }

    /// Who presents `key` (a bearer key) or `cert_name` (a verified client
    /// certificate's CN); `forwarded` says the call carries the forwarding
    /// header. Refuses unknown keys (with auth on), bans, and forwarding
    /// from anyone but a peer.
    pub fn identify(
        &self,
        key: Option<&str>,
        cert_name: Option<&str>,
        forwarded: bool,
    ) -> Result<Who, SendError> {
        let inner = &self.inner;
        let view = inner.view();
        let creds = Credentials { key, cert_name };
        let identity = view.directory.identify(creds, view.enforced).map_err(|e| {
            let reason = match e {
                AuthError::MissingKey => "missing_key",
                AuthError::UnknownKey => "unknown_key",
                AuthError::UnknownCertificate => "unknown_certificate",
            };
            inner.metrics.auth_failure(reason);
            debug!(reason, "request refused: UNAUTHENTICATED");
            SendError::Unauthenticated(e.to_string())
        })?;
        let who = match identity {
            Identity::Peer => Who::Peer,
            Identity::Anonymous => Who::Anonymous,
            Identity::Caller(spec) => Who::Caller(inner.caller(&spec.name)),
        };
        if forwarded && !matches!(who, Who::Peer) {
            inner.metrics.auth_failure("forged_forward");
            warn!(
                caller = who.caller_name().unwrap_or("-"),
                "refused a call with the forwarding header from outside the cluster"
            );
            return Err(SendError::PermissionDenied(format!(
                "the {} header is for instances of this cluster; nothing was sent",
                crate::peers::FORWARDED_BY
            )));
        }
        if let Who::Caller(c) = &who {
            inner.check_ban(c, &view)?;
        }
        Ok(who)
    }

    /// Checks a message of `who` against its caller's rules and takes what
    /// it will hold. Peers' and anonymous messages pass (a forwarded
    /// message was admitted where it entered; see [`admit_forwarded`]).
    ///
    /// [`admit_forwarded`]: Self::admit_forwarded
    pub async fn admit(&self, who: &Who, msg: &Message) -> Result<Admission, SendError> {
        let Who::Caller(caller) = who else {
            return Ok(Admission::default());
        };
        let inner = &self.inner;
        inner.check_ban(caller, &inner.view())?;
        self.check(caller, msg)
            .await
            .map_err(|(kind, e)| inner.refuse(caller, kind, e))
    }

    /// [`admit`](Self::admit) for a broadcast job's message, sent on behalf
    /// of the caller that created the job (`""`: auth was off). Nothing is
    /// scored: a job that meets its caller's quota or in-flight bound waits
    /// (the error is `OverQuota` with the wait), it does not earn a ban.
    pub async fn admit_job(&self, caller: &str, msg: &Message) -> Result<Admission, SendError> {
        if caller.is_empty() {
            return Ok(Admission::default());
        }
        let inner = &self.inner;
        let caller = inner.caller(caller);
        if let Err(e) = inner.check_ban(&caller, &inner.view()) {
            return Err(SendError::OverQuota {
                message: e.to_string(),
                retry_after_secs: 60,
            });
        }
        self.check(&caller, msg).await.map_err(|(_, e)| e)
    }

    /// The caller's rules for one message, without scoring a refusal.
    async fn check(
        &self,
        caller: &Caller,
        msg: &Message,
    ) -> Result<Admission, (RefusalKind, SendError)> {
        let inner = &self.inner;
        let spec = caller.spec();
        let name = &caller.name;
        if let Some(bot) = &msg.bot
            && !spec.allows_bot(bot)
        {
            return Err((
                RefusalKind::Bot,
                SendError::PermissionDenied(format!(
                    "caller {name} may not send through bot {bot:?} (allowed: {})",
                    spec.bots.join(", ")
                )),
            ));
        }
        if !spec.allows_chat(msg.chat_id) {
            return Err((
                RefusalKind::Chat,
                SendError::PermissionDenied(format!(
                    "caller {name} may not send into chat {}",
                    msg.chat_id
                )),
            ));
        }
        if msg.paid() && !spec.paid_broadcast {
            return Err((
                RefusalKind::Paid,
                SendError::PermissionDenied(format!(
                    "caller {name} may not send paid broadcasts (allow_paid_broadcast needs paid_broadcast = true)"
                )),
            ));
        }
        let mut permits = Vec::with_capacity(2);
        match caller.state.in_flight.try_take(1) {
            Some(p) => permits.push(p),
            None => {
                return Err((
                    RefusalKind::InFlight,
                    SendError::OverQuota {
                        message: format!(
                            "caller {name} has {} messages in flight (max_in_flight {}); retry in 1 s",
                            caller.state.in_flight.used(),
                            spec.max_in_flight
                        ),
                        retry_after_secs: 1,
                    },
                ));
            }
        }
        let cost = msg.cost_bytes();
        match caller.state.bytes.try_take(cost) {
            Some(p) => permits.push(p),
            None => {
                return Err((
                    RefusalKind::Bytes,
                    SendError::OverQuota {
                        message: format!(
                            "caller {name} has {} queued on this instance (queue_bytes_max {}); retry in 1 s",
                            human_bytes(caller.state.bytes.used()),
                            human_bytes(caller.state.bytes.max())
                        ),
                        retry_after_secs: 1,
                    },
                ));
            }
        }
        if spec.messages_per_window > 0
            && let Err(retry_after_secs) = inner.take_token(caller, &spec).await
        {
            return Err((
                RefusalKind::Quota,
                SendError::OverQuota {
                    message: format!(
                        "caller {name} is over its quota of {} messages per {} s; retry in {retry_after_secs} s",
                        spec.messages_per_window, spec.window_secs
                    ),
                    retry_after_secs,
                },
            ));
        }
        inner.metrics.caller_accepted(name);
        Ok(Admission {
            caller: Some(name.clone()),
            allowed_bots: (!spec.bots.is_empty()).then(|| Arc::from(spec.bots.clone())),
            permits,
        })
    }

    /// A message a peer forwarded for `caller`: its quota was counted where
    /// it entered; here it only holds the caller's bytes on this instance.
    pub fn admit_forwarded(
        &self,
        caller: Option<&str>,
        msg: &Message,
    ) -> Result<Admission, SendError> {
        let Some(name) = caller.filter(|n| !n.is_empty()) else {
            return Ok(Admission::default());
        };
        let known = self.inner.view().directory.get(name).is_some();
        if !known {
            // Removed meanwhile, or a newer peer's caller: no bound to charge.
            return Ok(Admission {
                caller: Some(Arc::from(name)),
                ..Admission::default()
            });
        }
        let caller = self.inner.caller(name);
        let permit = caller
            .state
            .bytes
            .try_take(msg.cost_bytes())
            .ok_or_else(|| SendError::QueueFull(format!(
                "caller {name} has {} queued on this instance (queue_bytes_max {}); retry later",
                human_bytes(caller.state.bytes.used()),
                human_bytes(caller.state.bytes.max())
            )))?;
        Ok(Admission {
            caller: Some(caller.name.clone()),
            allowed_bots: None,
            permits: vec![permit],
        })
    }

    /// Records a refusal of `who`'s message that another part of the
    /// gateway decided (e.g. `allow_paid_broadcast` without
    /// `paid_broadcast`): scores it like the refusals above.
    pub fn refused(&self, who: &Who, kind: RefusalKind, err: SendError) -> SendError {
        match who {
            Who::Caller(c) => self.inner.refuse(c, kind, err),
            _ => err,
        }
    }
}

fn view(snapshot: &Arc<Snapshot>, store: &dyn CallerStore, mode: AuthMode, was: bool) -> View {
    let cluster = store.cluster_key().map(|k| KeyDigest::of(&k));
    let directory = Directory::new(snapshot, cluster);
    View {
        enforced: mode.enforced_after(directory.len(), was),
        directory,
        snapshot: snapshot.clone(),
    }
}

impl Inner {
    fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    fn lock_states(&self) -> MutexGuard<'_, HashMap<String, Arc<CallerState>>> {
        self.states.lock()
    }

    /// Applies a new snapshot: the directory, and each caller's rules.
    fn rebuild(&self, snapshot: &Arc<Snapshot>) {
        let was = self.view().enforced;
        let next = view(snapshot, self.store.as_ref(), self.mode, was);
        let mut states = self.lock_states();
        states.retain(|name, _| snapshot.callers.contains_key(name));
        for (name, state) in states.iter() {
            if let Some(spec) = snapshot.callers.get(name) {
                state.apply(spec, &snapshot.settings, self.default_bytes);
            }
        }
        drop(states);
        if next.enforced != was {
            if next.enforced {
                info!(
                    callers = next.directory.len(),
                    "auth on: every call needs a caller's key"
                );
            } else {
                warn!("auth off: calls without a key are accepted");
            }
        } else if next.enforced && next.directory.is_empty() {
            warn!("no caller left: every call is refused UNAUTHENTICATED until one is added");
        }
        *self.view.write() = Arc::new(next);
    }

    /// The state of caller `name` (made on first use).
    fn caller(&self, name: &str) -> Caller {
        let view = self.view();
        let mut states = self.lock_states();
        let state = states
            .entry(name.to_owned())
            .or_insert_with(|| {
                let spec = view
                    .directory
                    .get(name)
                    .map_or_else(|| CallerSpec::new(name), |s| (**s).clone());
                let state = CallerState {
                    spec: RwLock::new(Arc::new(spec.clone())),
                    settings: RwLock::new(ViolationSettings::default()),
                    in_flight: Budget::new(0),
                    bytes: Budget::new(0),
                    pool: tokio::sync::Mutex::new(TokenPool::default()),
                    score: Mutex::new(Score::default()),
                    banned_until_s: AtomicU64::new(0),
                };
                state.apply(&spec, &view.snapshot.settings, self.default_bytes);
                Arc::new(state)
            })
            .clone();
        Caller {
            name: Arc::from(name),
            state,
        }
    }

    fn check_ban(&self, caller: &Caller, view: &View) -> Result<(), SendError> {
        let now_s = self.clock.now_ms() / 1000;
        let local = caller.state.banned_until_s.load(Ordering::Relaxed);
        let until = view
            .snapshot
            .banned_until(&caller.name, now_s)
            .into_iter()
            .chain((local > now_s).then_some(local))
            .max();
        match until {
            None => Ok(()),
            Some(until) => {
                self.metrics.caller_refused(&caller.name, "banned");
                Err(SendError::PermissionDenied(format!(
                    "caller {} is banned until {} ({} s from now)",
                    caller.name,
                    format_unix(until),
                    until - now_s
                )))
            }
        }
    }

    /// Spends one quota token; `Err(seconds to wait)` when the window is
    /// used up.
    async fn take_token(&self, caller: &Caller, spec: &CallerSpec) -> Result<(), u64> {
        let limit = spec.messages_per_window;
        let chunk = self.store.chunk(limit);
        let mut pool = caller.state.pool.lock().await;
        loop {
            let now = self.clock.now_ms();
            match pool.take(now, spec.window_secs, chunk) {
                TakeResult::Taken => return Ok(()),
                TakeResult::Exhausted(wait) => return Err(wait.secs()),
                TakeResult::NeedGrant {
                    window_start_ms,
                    want,
                } => {
                    let asked = self
                        .store
                        .grant(&caller.name, now, spec.window_secs, limit, want);
                    match tokio::time::timeout(GRANT_TIMEOUT, asked).await {
                        Ok(Ok(granted)) => pool.add(window_start_ms, granted),
                        failed => {
                            let why = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => format!("no answer within {GRANT_TIMEOUT:?}"),
                            };
                            let members = u64::try_from(self.store.members().max(1)).unwrap_or(1);
                            let share = limit.div_ceil(members);
                            warn!(caller = %caller.name, share, error = %why,
                                "quota grant failed; this instance uses its local share for the window");
                            pool.degrade(window_start_ms, share);
                        }
                    }
                }
            }
        }
    }

    /// Scores a refusal, bans at the threshold, logs and counts it; returns
    /// the refusal for the caller.
    fn refuse(&self, caller: &Caller, kind: RefusalKind, err: SendError) -> SendError {
        let now = self.clock.now_ms();
        let settings = caller.state.settings();
        let verdict = caller.state.score.lock().violate(now, &settings);
        self.metrics.caller_refused(&caller.name, kind.as_str());
        self.metrics.caller_violation(&caller.name, kind.as_str());
        match verdict {
            Verdict::Scored { score } => {
                warn!(caller = %caller.name, kind = %kind, score, threshold = settings.ban_threshold,
                    "caller violation");
            }
            Verdict::Banned { until_s, score } => {
                caller
                    .state
                    .banned_until_s
                    .fetch_max(until_s, Ordering::Relaxed);
                warn!(caller = %caller.name, kind = %kind, score, until = until_s,
                    ban_secs = settings.ban_secs, "caller violation; caller banned");
                let ban = Ban {
                    until: until_s,
                    score,
                    reason: format!(
                        "violation score {score} reached {} (last: {kind})",
                        settings.ban_threshold
                    ),
                };
                let store = self.store.clone();
                let name = caller.name.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.ban(&name, ban).await {
                        warn!(caller = %name, error = %e,
                            "could not record the ban in the store; it holds on this instance only");
                    }
                });
            }
        }
        err
    }
}

/// `Sat, 28 Nov 2026 12:00:00 GMT` for a Unix second (the HTTP date form).
pub fn format_unix(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The key of an `authorization: Bearer <key>` header, if any.
pub fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_format_as_utc() {
        assert_eq!(format_unix(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format_unix(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn bearer_keys_are_read_from_the_authorization_header() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer(&m), None);
        m.insert("authorization", "Bearer sg_abc".parse().expect("ascii"));
        assert_eq!(bearer(&m), Some("sg_abc"));
        m.insert("authorization", "bearer  sg_abc ".parse().expect("ascii"));
        assert_eq!(bearer(&m), Some("sg_abc"));
        m.insert("authorization", "Basic abc".parse().expect("ascii"));
        assert_eq!(bearer(&m), None);
    }
}
