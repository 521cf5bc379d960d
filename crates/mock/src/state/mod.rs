//! The emulator's state and the Bot API's decision procedure.
//!
//! [`Engine`] holds everything mutable (revocations, throttles, faults, chat states, limiter,
//! delivered messages, uploaded files, delivery log, stats) and decides each request in
//! Telegram's order: (1) injected faults, (2) token shape → 404, (3) revoked → 401, (4) forced
//! throttle → 429, (5) parameter validation → 400, (6) chat state → 400/403, then what needs
//! the state (the message to edit, a `file_id`) → 400, (7) rate limits → 429, then the
//! action itself (`act.rs`). It is plain synchronous code that takes the arrival time as a
//! parameter; the HTTP layer keeps it behind a mutex and applies the sampled latency.

mod act;
mod seen;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::config::MockConfig;
use crate::faults::{Fault, Faults};
use crate::files::{FileInfo, FileStore, StoredFile};
use crate::limits::{Limiter, Limits};
use crate::messages::MessageStore;
use crate::methods::{Call, Target};
use crate::reply::{ApiError, Reply, User, is_supergroup};
use crate::stats::{Outcome, Stats, StatsBook};
use crate::token;

/// The state of a chat, as set through the control plane (chats are `Ok` by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChatState {
    /// Messages are delivered.
    #[default]
    Ok,
    /// 400 "Bad Request: chat not found".
    Missing,
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 403 "Forbidden: bot was kicked from the group chat" (or "supergroup chat" for
    /// `-100…` ids).
    Kicked,
    /// 400 "Bad Request: group chat was upgraded to a supergroup chat" with
    /// `parameters.migrate_to_chat_id = to`.
    Migrated {
        /// The supergroup's id.
        to: i64,
    },
}

/// One delivered message, as the delivery log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Position in the log, from 1, increasing by one per delivery.
    pub seq: u64,
    /// The numeric id of the bot that sent it.
    pub bot_id: u64,
    /// The chat it went to.
    pub chat_id: i64,
    /// The `message_id` answered (per chat, from 1).
    pub message_id: i64,
    /// The text.
    pub text: String,
    /// Arrival time of the request, unix milliseconds.
    pub at_ms: u64,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Close the connection without answering.
    Drop,
    /// Answer, after sleeping `latency`.
    Answer { reply: Reply, latency: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Throttle {
    retry_after: u64,
    until: Option<Instant>,
}

/// Most delivered messages kept for edits, deletes and copies.
const MAX_STORED_MESSAGES: usize = 200_000;

/// All mutable state of the emulator.
pub(crate) struct Engine {
    config: MockConfig,
    epoch: Instant,
    limiter: Option<Limiter>,
    revoked: HashSet<u64>,
    throttles: HashMap<u64, Throttle>,
    global_faults: Faults,
    bot_faults: HashMap<u64, Faults>,
    chats: HashMap<i64, ChatState>,
    messages: MessageStore,
    files: FileStore,
    /// Paid-lane rate set through the control plane (`None`: the configured one).
    paid_bot_max: Option<u32>,
    log: VecDeque<Delivery>,
    seq: u64,
    seen: seen::Seen,
    stats: StatsBook,
    rng: SmallRng,
}

impl Engine {
    pub fn new(config: MockConfig) -> Self {
        let epoch = Instant::now();
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let paid_bot_max = config.paid_bot_max;
        let messages = MessageStore::new(config.max_deliveries.min(MAX_STORED_MESSAGES));
        let seen = seen::Seen::new(config.max_deliveries);
        Engine {
            limiter: config
                .limits
                .map(|l| Limiter::new(l, epoch).with_paid_bot_max(paid_bot_max)),
            global_faults: config.faults,
            config,
            epoch,
            revoked: HashSet::new(),
            throttles: HashMap::new(),
            bot_faults: HashMap::new(),
            chats: HashMap::new(),
            messages,
            files: FileStore::default(),
            paid_bot_max: None,
            log: VecDeque::new(),
            seq: 0,
            seen,
            stats: StatsBook::default(),
            rng,
        }
    }

    /// Decides one Bot API request that arrived at `arrival` (`wall_ms`: the same instant as
    /// unix milliseconds).
    pub fn handle(&mut self, token: &str, call: Call, arrival: Instant, wall_ms: u64) -> Decision {
        let bot = token::bot_id(token);
        let now_ns = u64::try_from(arrival.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX);

        // (1) Faults, before anything else is looked at or counted.
        let faults = bot
            .and_then(|id| self.bot_faults.get(&id))
            .unwrap_or(&self.global_faults);
        let faults = *faults;
        let fault = faults.roll(&mut self.rng);
        if fault == Fault::Drop {
            debug!(bot_id = ?bot, "mock: injected connection drop");
            self.stats.count(bot, Outcome::InjectedDrop, now_ns);
            return Decision::Drop;
        }
        let latency = faults.latency(&mut self.rng);
        let hostile = faults
            .hostile_retry_after()
            .filter(|_| matches!(call, Call::Api(Ok(_))));
        let (reply, outcome) = match (fault, hostile) {
            (Fault::Error(code), _) => {
                debug!(bot_id = ?bot, code, "mock: injected server error");
                (
                    Reply::Error(ApiError::server_error(code)),
                    Outcome::Injected5xx,
                )
            }
            (_, Some(retry_after)) => {
                debug!(bot_id = ?bot, %retry_after, "mock: injected hostile 429");
                (
                    Reply::Error(ApiError::hostile_too_many_requests(retry_after)),
                    Outcome::RateLimited(None),
                )
            }
            _ => self.decide(bot, call, arrival, wall_ms),
        };
        self.stats.count(bot, outcome, now_ns);
        Decision::Answer { reply, latency }
    }

    /// Counts the `User-Agent` of a request to `token` (after [`handle`](Self::handle)).
    pub fn note_user_agent(&mut self, token: &str, user_agent: &str) {
        self.stats
            .count_user_agent(token::bot_id(token), user_agent);
    }

    /// Steps (2) to (7) and the delivery itself.
    fn decide(
        &mut self,
        bot: Option<u64>,
        call: Call,
        arrival: Instant,
        wall_ms: u64,
    ) -> (Reply, Outcome) {
        let error = |e: ApiError| {
            let code = e.error_code;
            (Reply::Error(e), Outcome::Error(code))
        };
        // (2) Token shape.
        let Some(bot_id) = bot else {
            return error(ApiError::not_found());
        };
        // (3) Revoked.
        if self.revoked.contains(&bot_id) {
            debug!(bot_id, "mock: 401 revoked");
            return error(ApiError::unauthorized());
        }
        let request = match call {
            Call::GetMe => return (Reply::Me(User::me(bot_id)), Outcome::Answered),
            Call::Unknown => return error(ApiError::not_found()),
            Call::Api(request) => request,
        };
        // (4) Forced throttle.
        if let Some(t) = self.throttles.get(&bot_id).copied() {
            if t.until.is_some_and(|until| arrival >= until) {
                self.throttles.remove(&bot_id);
            } else {
                debug!(bot_id, retry_after = t.retry_after, "mock: 429 forced");
                return (
                    Reply::Error(ApiError::too_many_requests(t.retry_after)),
                    Outcome::RateLimited(None),
                );
            }
        }
        // (5) Validation.
        let request = match request {
            Ok(request) => request,
            Err(e) => return error(e),
        };
        // (6) Chat state.
        let chat = match request.chat {
            None => None,
            Some(Target::Unknown) => {
                return error(ApiError::bad_request("Bad Request: chat not found"));
            }
            Some(Target::Id(chat_id)) => {
                if let Err(e) = self.chat_state(chat_id) {
                    return error(e);
                }
                Some(chat_id)
            }
        };
        // The state-dependent checks, (7) rate limits and the action.
        self.act(bot_id, chat, request, arrival, wall_ms)
    }

    /// A chat's state as an error, if it refuses messages.
    fn chat_state(&self, chat_id: i64) -> Result<(), ApiError> {
        match self.chats.get(&chat_id).copied().unwrap_or_default() {
            ChatState::Ok => Ok(()),
            ChatState::Missing => Err(ApiError::bad_request("Bad Request: chat not found")),
            ChatState::Blocked => Err(ApiError::forbidden(
                "Forbidden: bot was blocked by the user",
            )),
            ChatState::Kicked if is_supergroup(chat_id) => Err(ApiError::forbidden(
                "Forbidden: bot was kicked from the supergroup chat",
            )),
            ChatState::Kicked => Err(ApiError::forbidden(
                "Forbidden: bot was kicked from the group chat",
            )),
            ChatState::Migrated { to } => Err(ApiError::migrated(to)),
        }
    }

    pub fn revoke(&mut self, bot_id: u64, revoked: bool) {
        if revoked {
            self.revoked.insert(bot_id);
        } else {
            self.revoked.remove(&bot_id);
        }
    }

    pub fn throttle(&mut self, bot_id: u64, retry_after: u64, until: Option<Instant>) {
        self.throttles
            .insert(bot_id, Throttle { retry_after, until });
    }

    pub fn unthrottle(&mut self, bot_id: u64) {
        self.throttles.remove(&bot_id);
    }

    pub fn set_faults(&mut self, bot_id: Option<u64>, faults: Faults) {
        match bot_id {
            Some(id) => {
                self.bot_faults.insert(id, faults);
            }
            None => self.global_faults = faults,
        }
    }

    pub fn clear_faults(&mut self, bot_id: u64) {
        self.bot_faults.remove(&bot_id);
    }

    pub fn faults(&self, bot_id: Option<u64>) -> Faults {
        bot_id
            .and_then(|id| self.bot_faults.get(&id))
            .copied()
            .unwrap_or(self.global_faults)
    }

    pub fn set_chat(&mut self, chat_id: i64, state: ChatState) {
        if state == ChatState::Ok {
            self.chats.remove(&chat_id);
        } else {
            self.chats.insert(chat_id, state);
        }
    }

    /// Replaces the limits (and forgets all limit bookkeeping).
    pub fn set_limits(&mut self, limits: Option<Limits>) {
        let paid = self.paid_bot_max();
        self.limiter = limits.map(|l| Limiter::new(l, self.epoch).with_paid_bot_max(paid));
    }

    /// Sets the paid lane's rate (messages per bot window), keeping the other bookkeeping.
    pub fn set_paid_bot_max(&mut self, paid_bot_max: u32) {
        self.paid_bot_max = Some(paid_bot_max);
        if let Some(l) = self.limiter.take() {
            self.limiter = Some(l.with_paid_bot_max(paid_bot_max));
        }
    }

    pub fn paid_bot_max(&self) -> u32 {
        self.paid_bot_max.unwrap_or(self.config.paid_bot_max)
    }

    /// A delivered message as Telegram shows it (`None`: unknown, deleted or forgotten).
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<serde_json::Value> {
        let m = self.messages.get(chat_id, message_id)?;
        serde_json::to_value(m.to_message(chat_id, message_id)).ok()
    }

    /// An uploaded file and its bytes.
    pub fn file(&self, file_id: &str) -> Option<StoredFile> {
        self.files.get(file_id).cloned()
    }

    /// Every file held, oldest first.
    pub fn files(&self) -> Vec<FileInfo> {
        self.files.list()
    }

    pub fn limits(&self) -> Option<Limits> {
        self.limiter.as_ref().map(|l| *l.limits())
    }

    pub fn stats(&self) -> Stats {
        self.stats.snapshot(self.seq, self.limiter.is_some())
    }

    /// Deliveries with `seq > since`, at most `limit` of them.
    pub fn deliveries(&self, since: u64, limit: usize) -> Vec<Delivery> {
        let first = self.log.front().map_or(1, |d| d.seq);
        let skip = usize::try_from(since.saturating_sub(first - 1)).unwrap_or(usize::MAX);
        self.log.iter().skip(skip).take(limit).cloned().collect()
    }

    /// Back to the starting configuration, with empty logs and counters.
    pub fn reset(&mut self) {
        let rng = self.rng.clone();
        *self = Engine::new(self.config.clone());
        self.rng = rng;
    }
}

/// Bot-agnostic identity of a delivery, for duplicate detection.
fn fingerprint(chat_id: i64, text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    chat_id.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod act_tests;
#[cfg(test)]
mod tests;
