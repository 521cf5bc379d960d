//! What the rest of the gateway sees of a dispatcher: the [`Envelope`] a
//! message travels in, the [`BotHandle`] to hand messages and commands to a
//! running dispatcher, and the [`BotShared`] state it publishes (readable
//! without asking the actor).

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use shardgate_telegram::BotToken;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Span;

use crate::Message;
use crate::reply::Reply;

/// An accepted message on its way to Telegram.
#[derive(Debug)]
pub struct Envelope {
    /// Acceptance order; per-chat FIFO follows it, also across re-routes.
    pub seq: u64,
    pub msg: Message,
    /// The chat to send to (after any known migration).
    pub chat_id: i64,
    pub reply: Reply,
    pub deadline: Option<Instant>,
    /// Bot API requests made so far, on any bot.
    pub attempts: u32,
    /// When it entered its current queue (for the queue-wait histogram).
    pub queued_at: Instant,
    /// Bots that gave this message back; the re-router skips them.
    pub avoid: Vec<Arc<str>>,
    /// Came from another instance: send through the pinned bot here, or
    /// answer `NotOwner`; never forward again.
    pub forwarded: bool,
    /// The caller it counts for (travels with it when forwarded).
    pub caller: Option<Arc<str>>,
    /// Bots its caller may use (`None`: any); routing picks among these.
    pub allowed_bots: Option<Arc<[String]>>,
    pub span: Span,
}

impl Envelope {
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }
}

/// The dispatcher's own view of its bot, readable without asking the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LocalState {
    Active = 0,
    Throttled = 1,
    Revoked = 2,
    /// Leaving: removed, disabled, or shut down.
    Gone = 3,
}

/// Counters and state shared between the actor and the rest of the gateway.
#[derive(Debug, Default)]
pub struct BotShared {
    state: AtomicU8,
    /// Unix seconds when a bot-wide throttle ends.
    pub throttled_until: AtomicU64,
    pub queued: AtomicU64,
    pub in_flight: AtomicU32,
    pub active_chats: AtomicU64,
    pub reason: Mutex<String>,
}

impl BotShared {
    pub fn state(&self) -> LocalState {
        match self.state.load(Ordering::Relaxed) {
            0 => LocalState::Active,
            1 => LocalState::Throttled,
            2 => LocalState::Revoked,
            _ => LocalState::Gone,
        }
    }

    pub(crate) fn set_state(&self, s: LocalState, reason: &str) {
        self.state.store(s as u8, Ordering::Relaxed);
        *self.reason.lock() = reason.to_owned();
    }

    /// May new messages go to this bot (as far as the dispatcher knows)?
    pub fn accepting(&self, now_unix: u64) -> bool {
        match self.state() {
            LocalState::Active => true,
            LocalState::Throttled => self.throttled_until.load(Ordering::Relaxed) <= now_unix,
            LocalState::Revoked | LocalState::Gone => false,
        }
    }
}

pub(crate) enum Command {
    Enqueue(Box<Envelope>),
    /// A rotated token: later requests use it.
    SetToken(BotToken),
    /// Stop taking messages; give queued ones to other bots; finish in-flight
    /// requests; exit.
    Leave(String),
    /// Shutdown: stop when the queue is empty or `deadline` passes, failing
    /// what is left.
    Drain(Instant),
    /// Handoff to another instance: stop sending (queue what arrives), so
    /// the bot can be released once nothing is in flight.
    Pause,
    /// The handoff was called off (the bot stays here): send again.
    Resume,
}

/// The gateway's handle on a running dispatcher.
#[derive(Clone)]
pub struct BotHandle {
    pub name: Arc<str>,
    pub shared: Arc<BotShared>,
    /// Set once a handoff started (so it starts once).
    pub handing_over: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) token_redacted: Arc<Mutex<String>>,
}

impl std::fmt::Debug for BotHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl BotHandle {
    /// Hands a message to the dispatcher; gives it back if the actor is gone.
    pub fn enqueue(&self, env: Box<Envelope>) -> Result<(), Box<Envelope>> {
        self.tx.send(Command::Enqueue(env)).map_err(|e| match e.0 {
            Command::Enqueue(env) => env,
            _ => unreachable!("sent an Enqueue"),
        })
    }

    pub fn set_token(&self, token: BotToken) {
        *self.token_redacted.lock() = token.redacted();
        let _ = self.tx.send(Command::SetToken(token));
    }

    pub fn leave(&self, reason: &str) {
        self.shared.set_state(LocalState::Gone, reason);
        let _ = self.tx.send(Command::Leave(reason.to_owned()));
    }

    pub fn drain(&self, deadline: Instant) {
        let _ = self.tx.send(Command::Drain(deadline));
    }

    pub fn pause(&self) {
        let _ = self.tx.send(Command::Pause);
    }

    pub fn resume(&self) {
        self.handing_over.store(false, Ordering::Relaxed);
        let _ = self.tx.send(Command::Resume);
    }

    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    pub fn token_redacted(&self) -> String {
        self.token_redacted.lock().clone()
    }
}
