//! The emulator's state and the Bot API's decision procedure.
//!
//! [`Engine`] holds everything mutable (revocations, throttles, faults, chat states, limiter,
//! message ids, delivery log, stats) and decides each request in Telegram's order:
//! (1) injected faults, (2) token shape → 404, (3) revoked → 401, (4) forced throttle → 429,
//! (5) parameter validation → 400, (6) chat state → 400/403, (7) rate limits → 429, then
//! delivery. It is plain synchronous code that takes the arrival time as a parameter; the
//! HTTP layer keeps it behind a mutex and applies the sampled latency.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::config::MockConfig;
use crate::faults::{Fault, Faults};
use crate::limits::{Limiter, Limits};
use crate::params::{SendMessage, Target};
use crate::reply::{ApiError, Chat, Message, Reply, User, is_supergroup};
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

/// A Bot API call, already parsed and validated outside the lock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    /// `sendMessage`, with the outcome of parameter validation.
    SendMessage(Result<SendMessage, ApiError>),
    GetMe,
    /// Any other method: 404 once the token is checked.
    Unknown,
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
    message_ids: HashMap<i64, i64>,
    log: VecDeque<Delivery>,
    seq: u64,
    seen: HashSet<u64>,
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
        Engine {
            limiter: config.limits.map(|l| Limiter::new(l, epoch)),
            global_faults: config.faults,
            config,
            epoch,
            revoked: HashSet::new(),
            throttles: HashMap::new(),
            bot_faults: HashMap::new(),
            chats: HashMap::new(),
            message_ids: HashMap::new(),
            log: VecDeque::new(),
            seq: 0,
            seen: HashSet::new(),
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
        let (reply, outcome) = match fault {
            Fault::Error(code) => {
                debug!(bot_id = ?bot, code, "mock: injected server error");
                (
                    Reply::Error(ApiError::server_error(code)),
                    Outcome::Injected5xx,
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
        let send = match call {
            Call::GetMe => return (Reply::Me(User::me(bot_id)), Outcome::Answered),
            Call::Unknown => return error(ApiError::not_found()),
            Call::SendMessage(send) => send,
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
        let send = match send {
            Ok(send) => send,
            Err(e) => return error(e),
        };
        // (6) Chat state.
        let Target::Id(chat_id) = send.chat else {
            return error(ApiError::bad_request("Bad Request: chat not found"));
        };
        match self.chats.get(&chat_id).copied().unwrap_or_default() {
            ChatState::Ok => {}
            ChatState::Missing => {
                return error(ApiError::bad_request("Bad Request: chat not found"));
            }
            ChatState::Blocked => {
                return error(ApiError::forbidden(
                    "Forbidden: bot was blocked by the user",
                ));
            }
            ChatState::Kicked if is_supergroup(chat_id) => {
                return error(ApiError::forbidden(
                    "Forbidden: bot was kicked from the supergroup chat",
                ));
            }
            ChatState::Kicked => {
                return error(ApiError::forbidden(
                    "Forbidden: bot was kicked from the group chat",
                ));
            }
            ChatState::Migrated { to } => return error(ApiError::migrated(to)),
        }
        // (7) Rate limits, at the arrival time.
        if let Some(limiter) = self.limiter.as_mut()
            && let Err(limited) = limiter.check(bot_id, chat_id, arrival)
        {
            let retry_after = limited.retry_after();
            debug!(bot_id, chat_id, scope = ?limited.scope, retry_after, "mock: 429");
            return (
                Reply::Error(ApiError::too_many_requests(retry_after)),
                Outcome::RateLimited(Some(limited.scope)),
            );
        }
        // Delivery.
        let duplicate = !self.seen.insert(fingerprint(chat_id, &send.text));
        let next = self.message_ids.entry(chat_id).or_insert(0);
        *next += 1;
        let message_id = *next;
        self.seq += 1;
        self.log.push_back(Delivery {
            seq: self.seq,
            bot_id,
            chat_id,
            message_id,
            text: send.text.clone(),
            at_ms: wall_ms,
        });
        while self.log.len() > self.config.max_deliveries {
            self.log.pop_front();
        }
        debug!(bot_id, chat_id, message_id, duplicate, "mock: delivered");
        let message = Message {
            message_id,
            from: User::bot(bot_id),
            chat: Chat::new(chat_id),
            date: wall_ms / 1000,
            text: send.text,
        };
        (Reply::Sent(message), Outcome::Delivered { duplicate })
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
        self.limiter = limits.map(|l| Limiter::new(l, self.epoch));
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
mod tests {
    use super::*;
    use crate::params::Params;
    use crate::token::test_token;

    fn send(chat: i64, text: &str) -> Call {
        let query = format!("chat_id={chat}&text={text}");
        Call::SendMessage(
            Params::collect(Some(&query), None, b"")
                .map_err(|_| ApiError::bad_request("body"))
                .and_then(|p| p.send_message()),
        )
    }

    fn engine(limits: Option<Limits>) -> Engine {
        Engine::new(MockConfig {
            limits,
            seed: Some(7),
            ..MockConfig::default()
        })
    }

    fn answer(d: Decision) -> Reply {
        match d {
            Decision::Answer { reply, .. } => reply,
            Decision::Drop => panic!("dropped"),
        }
    }

    fn code(d: Decision) -> u16 {
        answer(d).status()
    }

    #[test]
    fn delivers_with_per_chat_message_ids() {
        let mut e = engine(None);
        let t = Instant::now();
        let tok = test_token(11);
        for i in 1..=3 {
            match answer(e.handle(&tok, send(5, &format!("m{i}")), t, 1_700_000_000_123)) {
                Reply::Sent(m) => {
                    assert_eq!(m.message_id, i);
                    assert_eq!(m.from.id, 11);
                    assert_eq!(m.chat.id, 5);
                    assert_eq!(m.date, 1_700_000_000);
                }
                other => panic!("{other:?}"),
            }
        }
        // Another chat starts at 1, whichever bot sends.
        match answer(e.handle(&test_token(12), send(6, "x"), t, 0)) {
            Reply::Sent(m) => assert_eq!(m.message_id, 1),
            other => panic!("{other:?}"),
        }
        let log = e.deliveries(0, usize::MAX);
        assert_eq!(log.len(), 4);
        assert_eq!(log[0].at_ms, 1_700_000_000_123);
        assert_eq!(e.deliveries(2, usize::MAX)[0].seq, 3);
        assert_eq!(e.deliveries(4, usize::MAX), vec![]);
        assert_eq!(e.stats().totals.delivered, 4);
        assert_eq!(e.stats().bot(11).delivered, 3);
    }

    #[test]
    fn checks_in_telegram_order() {
        let mut e = engine(Some(Limits::official()));
        let t = Instant::now();
        let tok = test_token(21);
        assert_eq!(code(e.handle("nope", send(1, "x"), t, 0)), 404);
        assert_eq!(code(e.handle(&tok, Call::Unknown, t, 0)), 404);
        assert_eq!(code(e.handle(&tok, Call::GetMe, t, 0)), 200);
        e.set_chat(1, ChatState::Blocked);
        // Validation comes before chat state.
        assert_eq!(code(e.handle(&tok, send(1, ""), t, 0)), 400);
        assert_eq!(code(e.handle(&tok, send(1, "x"), t, 0)), 403);
        // Throttle comes before validation.
        e.throttle(21, 4310, None);
        match answer(e.handle(&tok, send(1, ""), t, 0)) {
            Reply::Error(err) => {
                assert_eq!(err.error_code, 429);
                assert_eq!(err.parameters.and_then(|p| p.retry_after), Some(4310));
            }
            other => panic!("{other:?}"),
        }
        // Revocation comes before throttle.
        e.revoke(21, true);
        assert_eq!(code(e.handle(&tok, send(1, "x"), t, 0)), 401);
        assert_eq!(code(e.handle(&tok, Call::GetMe, t, 0)), 401);
        // Faults come before everything.
        e.set_faults(
            None,
            Faults {
                error_5xx: 1.0,
                ..Faults::default()
            },
        );
        let c = code(e.handle("nope", send(1, "x"), t, 0));
        assert!(c == 500 || c == 502);
        e.set_faults(
            Some(21),
            Faults {
                drop: 1.0,
                ..Faults::default()
            },
        );
        assert_eq!(e.handle(&tok, send(1, "x"), t, 0), Decision::Drop);
        let s = e.stats();
        assert_eq!(s.totals.not_found, 2);
        assert_eq!(s.bot(21).unauthorized, 2);
        assert_eq!(s.bot(21).rate_limited_forced, 1);
        assert_eq!(s.bot(21).forbidden, 1);
        assert_eq!(s.bot(21).bad_request, 1);
        assert_eq!(s.totals.injected_5xx, 1);
        assert_eq!(s.bot(21).injected_drops, 1);
        assert_eq!(s.totals.delivered, 0);
        assert_eq!(s.totals.requests, 10);
    }

    #[test]
    fn chat_states_answer_like_telegram() {
        let mut e = engine(None);
        let t = Instant::now();
        let tok = test_token(3);
        let description =
            |e: &mut Engine, chat: i64| match answer(e.handle(&tok, send(chat, "x"), t, 0)) {
                Reply::Error(err) => (err.error_code, err.description.into_owned(), err.parameters),
                other => panic!("{other:?}"),
            };
        e.set_chat(-5, ChatState::Kicked);
        e.set_chat(-1001234567890, ChatState::Kicked);
        e.set_chat(9, ChatState::Missing);
        e.set_chat(-6, ChatState::Migrated { to: -1006 });
        assert_eq!(
            description(&mut e, -5).1,
            "Forbidden: bot was kicked from the group chat"
        );
        assert_eq!(
            description(&mut e, -1001234567890).1,
            "Forbidden: bot was kicked from the supergroup chat"
        );
        assert_eq!(description(&mut e, 9).1, "Bad Request: chat not found");
        let (code, _, params) = description(&mut e, -6);
        assert_eq!(code, 400);
        assert_eq!(params.and_then(|p| p.migrate_to_chat_id), Some(-1006));
        // Unknown @usernames are missing chats.
        let call = Call::SendMessage(
            Params::collect(Some("chat_id=@x&text=y"), None, b"")
                .map_err(|_| ApiError::bad_request("body"))
                .and_then(|p| p.send_message()),
        );
        assert_eq!(code_of(e.handle(&tok, call, t, 0)), 400);
        e.set_chat(9, ChatState::Ok);
        assert_eq!(code_of(e.handle(&tok, send(9, "x"), t, 0)), 200);
    }

    fn code_of(d: Decision) -> u16 {
        code(d)
    }

    #[test]
    fn limits_use_arrival_time_and_rejections_cost_nothing() {
        let mut e = engine(Some(Limits::official()));
        let t = Instant::now();
        let tok = test_token(4);
        for i in 0..3 {
            assert_eq!(code(e.handle(&tok, send(1, &format!("a{i}")), t, 0)), 200);
        }
        for _ in 0..5 {
            match answer(e.handle(&tok, send(1, "b"), t + Duration::from_millis(100), 0)) {
                Reply::Error(err) => {
                    assert_eq!(err.description, "Too Many Requests: retry after 1");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            code(e.handle(&tok, send(1, "c"), t + Duration::from_secs(1), 0)),
            200
        );
        let s = e.stats();
        assert_eq!(s.bot(4).rate_limited_chat, 5);
        assert_eq!(s.bot(4).delivered, 4);
        // Disabling limits lets everything through.
        e.set_limits(None);
        for i in 0..100 {
            assert_eq!(code(e.handle(&tok, send(1, &format!("d{i}")), t, 0)), 200);
        }
        assert!(!e.stats().limits_enabled);
    }

    #[test]
    fn timed_throttle_expires() {
        let mut e = engine(None);
        let t = Instant::now();
        let tok = test_token(5);
        e.throttle(5, 30, Some(t + Duration::from_secs(10)));
        assert_eq!(code(e.handle(&tok, send(1, "x"), t, 0)), 429);
        assert_eq!(
            code(e.handle(&tok, send(1, "x"), t + Duration::from_secs(10), 0)),
            200
        );
        e.throttle(5, 30, None);
        assert_eq!(code(e.handle(&tok, send(1, "y"), t, 0)), 429);
        e.unthrottle(5);
        assert_eq!(code(e.handle(&tok, send(1, "y"), t, 0)), 200);
    }

    #[test]
    fn duplicates_are_counted_across_bots() {
        let mut e = engine(None);
        let t = Instant::now();
        assert_eq!(code(e.handle(&test_token(1), send(1, "same"), t, 0)), 200);
        assert_eq!(code(e.handle(&test_token(2), send(1, "same"), t, 0)), 200);
        assert_eq!(code(e.handle(&test_token(2), send(2, "same"), t, 0)), 200);
        let s = e.stats();
        assert_eq!(s.totals.duplicates, 1);
        assert_eq!(s.bot(2).duplicates, 1);
    }

    #[test]
    fn log_is_bounded_and_reset_clears_everything() {
        let mut e = Engine::new(MockConfig {
            limits: None,
            max_deliveries: 3,
            seed: Some(1),
            ..MockConfig::default()
        });
        let t = Instant::now();
        let tok = test_token(8);
        for i in 0..5 {
            assert_eq!(code(e.handle(&tok, send(1, &format!("{i}")), t, 0)), 200);
        }
        let seqs: Vec<u64> = e.deliveries(0, usize::MAX).iter().map(|d| d.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(e.deliveries(3, usize::MAX).len(), 2);
        assert_eq!(e.deliveries(0, 1).len(), 1);
        e.revoke(8, true);
        e.set_chat(1, ChatState::Blocked);
        e.reset();
        assert_eq!(e.stats(), Stats::default());
        assert_eq!(e.deliveries(0, usize::MAX), vec![]);
        match answer(e.handle(&tok, send(1, "0"), t, 0)) {
            Reply::Sent(m) => assert_eq!(m.message_id, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.stats().totals.duplicates, 0);
    }
}
