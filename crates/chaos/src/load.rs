//! The drill's callers: a steady background load (private chats and groups)
//! and an optional hot group, sent through one `SendStream` per instance,
//! round robin, the way a service with a client per instance would.
//!
//! Every message carries an idempotency key and a unique text (so the
//! emulator's log can be matched against the answers). A send that fails in
//! a retryable way (UNAVAILABLE, ABORTED, a broken stream) is retried on
//! another instance with the same key, like a careful caller would; every
//! attempt and the final outcome are recorded for the verdict.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_proto::v1::{SendRequest, SendResponse};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::scenario::LoadSpec;

/// The hot group's chat id.
pub const HOT_CHAT: i64 = -1_000_000_777;
/// Distinct senders into the hot group (they spread it over the bots).
const HOT_USERS: i64 = 64;
/// Error code recorded when a stream broke before answering.
pub const STREAM_BROKEN: &str = "STREAM_BROKEN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Background,
    Hot,
}

/// How one attempt or a whole send ended, as the caller was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Delivered { bot: String },
    Failed { code: String },
}

/// One message the callers sent, with what became of it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub kind: Kind,
    pub chat_id: i64,
    /// When the caller first sent it (since the load started).
    pub created: Duration,
    pub attempts: u32,
    /// The first attempt's outcome.
    pub first: Option<Answer>,
    /// The final outcome, after retries; None = never answered.
    pub last: Option<Answer>,
    /// When the final answer came (since the load started).
    pub answered: Option<Duration>,
}

impl Msg {
    pub fn delivered(&self) -> bool {
        matches!(self.last, Some(Answer::Delivered { .. }))
    }
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
}

/// Everything the callers saw.
#[derive(Debug, Default)]
pub struct LoadRecord {
    pub msgs: Vec<Msg>,
}

/// The unique text of message `idx` of run `tag` (parsed back by [`msg_index`]).
pub fn msg_text(tag: &str, idx: usize) -> String {
    format!("{tag} #{idx}")
}

/// The message index in a text made by [`msg_text`] for `tag`.
pub fn msg_index(tag: &str, text: &str) -> Option<usize> {
    text.strip_prefix(tag)?.strip_prefix(" #")?.parse().ok()
}

/// One instance's stream: requests go in through `tx`; `generation` tells
/// a stale close from the current one.
struct Conn {
    tx: Option<mpsc::Sender<SendRequest>>,
    generation: u64,
    retry_at: Instant,
}

enum Ev {
    Answer(SendResponse),
    Closed(usize, u64),
}

pub struct Driver {
    pub spec: LoadSpec,
    pub tag: String,
    pub channels: Vec<Channel>,
    /// Messages per second into the hot group (changed by events).
    pub hot_rate: watch::Receiver<f64>,
    pub duration: Duration,
    pub progress: Arc<Progress>,
    pub seed: u64,
}

impl Driver {
    /// Runs the load for `duration`, then waits for outstanding answers
    /// (at most the caller's deadline plus 10 s) and returns the record.
    pub async fn run(self, start: Instant) -> LoadRecord {
        let (ev_tx, mut ev_rx) = mpsc::channel::<Ev>(4096);
        let mut conns: Vec<Conn> = (0..self.channels.len())
            .map(|_| Conn {
                tx: None,
                generation: 0,
                retry_at: start,
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut msgs: Vec<Msg> = Vec::new();
        let mut pending: HashMap<String, (usize, usize)> = HashMap::new();
        let mut retries: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let mut next_node = 0usize;
        let (mut bg_due, mut hot_due) = (0.0f64, 0.0f64);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = start;
        let drain_limit =
            Duration::from_millis(u64::from(self.spec.timeout_ms)) + Duration::from_secs(10);
        let max_attempts = 1 + self.spec.retries;
        loop {
            let now = Instant::now();
            let elapsed = now - start;
            let generating = elapsed < self.duration;
            if !generating && pending.is_empty() && retries.is_empty() {
                break;
            }
            if elapsed > self.duration + drain_limit {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let dt = (now - last_tick).as_secs_f64();
                    last_tick = now;
                    for (i, c) in conns.iter_mut().enumerate() {
                        if c.tx.is_none() && now >= c.retry_at {
                            c.generation += 1;
                            c.tx = Some(open(i, c.generation, self.channels[i].clone(), ev_tx.clone()));
                        }
                    }
                    let mut due: Vec<usize> = Vec::new();
                    while let Some(Reverse((at, idx))) = retries.peek().copied() {
                        if at > now {
                            break;
                        }
                        retries.pop();
                        due.push(idx);
                    }
                    if generating {
                        bg_due += self.spec.rate * dt;
                        hot_due += *self.hot_rate.borrow() * dt;
                        while bg_due >= 1.0 {
                            bg_due -= 1.0;
                            let chat_id = self.pick_chat(&mut rng);
                            due.push(new_msg(&mut msgs, Kind::Background, chat_id, elapsed));
                        }
                        while hot_due >= 1.0 {
                            hot_due -= 1.0;
                            due.push(new_msg(&mut msgs, Kind::Hot, HOT_CHAT, elapsed));
                        }
                    }
                    for idx in due {
                        let m = &mut msgs[idx];
                        m.attempts += 1;
                        if m.attempts > 1 {
                            self.progress.retries.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.progress.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        let req = self.request(idx, m, &mut rng);
                        let client_ref = req.client_ref.clone();
                        let sent = send_round_robin(&mut conns, &mut next_node, req, now);
                        match sent {
                            Some(node) => {
                                pending.insert(client_ref, (idx, node));
                            }
                            None => {
                                let code = "NO_INSTANCE".to_owned();
                                settle(&mut msgs, idx, &mut retries, max_attempts, Answer::Failed { code }, elapsed, &self.progress);
                            }
                        }
                    }
                }
                Some(ev) = ev_rx.recv() => match ev {
                    Ev::Answer(resp) => {
                        let Some((idx, _)) = pending.remove(&resp.client_ref) else { continue };
                        let outcome = match resp.error {
                            None => Answer::Delivered { bot: resp.bot },
                            Some(e) => Answer::Failed { code: e.code },
                        };
                        settle(&mut msgs, idx, &mut retries, max_attempts, outcome, elapsed, &self.progress);
                    }
                    Ev::Closed(node, generation) => {
                        if conns[node].generation != generation {
                            continue;
                        }
                        conns[node].tx = None;
                        conns[node].retry_at = now + Duration::from_secs(1);
                        let broken: Vec<String> = pending
                            .iter()
                            .filter(|(_, (_, n))| *n == node)
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in broken {
                            if let Some((idx, _)) = pending.remove(&k) {
                                let code = STREAM_BROKEN.to_owned();
                                settle(&mut msgs, idx, &mut retries, max_attempts, Answer::Failed { code }, elapsed, &self.progress);
                            }
                        }
                    }
                },
            }
        }
        LoadRecord { msgs }
    }

    fn pick_chat(&self, rng: &mut StdRng) -> i64 {
        let s = &self.spec;
        if s.groups > 0 && rng.random::<f64>() < s.group_share {
            -1_000_000_000 - i64::from(rng.random_range(0..s.groups))
        } else {
            1_000_000 + i64::from(rng.random_range(0..s.private_chats.max(1)))
        }
    }

    fn request(&self, idx: usize, m: &Msg, rng: &mut StdRng) -> SendRequest {
        let user_id = match m.kind {
            // A private chat's user is the chat.
            Kind::Background if m.chat_id > 0 => m.chat_id,
            _ => 500 + rng.random_range(0..HOT_USERS),
        };
        SendRequest {
            chat_id: m.chat_id,
            user_id,
            text: msg_text(&self.tag, idx),
            idempotency_key: format!("{}-{idx}", self.tag),
            client_ref: format!("{idx}.{}", m.attempts),
            timeout_ms: self.spec.timeout_ms,
            ..SendRequest::default()
        }
    }
}

fn new_msg(msgs: &mut Vec<Msg>, kind: Kind, chat_id: i64, created: Duration) -> usize {
    msgs.push(Msg {
        kind,
        chat_id,
        created,
        attempts: 0,
        first: None,
        last: None,
        answered: None,
    });
    msgs.len() - 1
}

/// Records an attempt's outcome; schedules a retry when it is retryable.
fn settle(
    msgs: &mut [Msg],
    idx: usize,
    retries: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    max_attempts: u32,
    outcome: Answer,
    at: Duration,
    progress: &Progress,
) {
    let m = &mut msgs[idx];
    if m.first.is_none() {
        m.first = Some(outcome.clone());
    }
    let retry = match &outcome {
        Answer::Failed { code } => retryable(code) && m.attempts < max_attempts,
        Answer::Delivered { .. } => false,
    };
    if retry {
        let backoff = Duration::from_millis(250 * u64::from(m.attempts));
        retries.push(Reverse((Instant::now() + backoff, idx)));
        return;
    }
    match outcome {
        Answer::Delivered { .. } => progress.delivered.fetch_add(1, Ordering::Relaxed),
        Answer::Failed { .. } => progress.failed.fetch_add(1, Ordering::Relaxed),
    };
    m.last = Some(outcome);
    m.answered = Some(at);
}

/// Failures a caller retries with the same idempotency key.
fn retryable(code: &str) -> bool {
    matches!(
        code,
        "UNAVAILABLE" | "ABORTED" | "INTERNAL" | "UNKNOWN" | "NO_INSTANCE" | STREAM_BROKEN
    )
}

/// Sends on the next open stream after `next`; returns the node used.
fn send_round_robin(
    conns: &mut [Conn],
    next: &mut usize,
    req: SendRequest,
    now: Instant,
) -> Option<usize> {
    let n = conns.len();
    for k in 0..n {
        let i = (*next + k) % n;
        let Some(tx) = &conns[i].tx else { continue };
        match tx.try_send(req.clone()) {
            Ok(()) => {
                *next = (i + 1) % n;
                return Some(i);
            }
            Err(mpsc::error::TrySendError::Full(_)) => continue,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                conns[i].tx = None;
                conns[i].retry_at = now + Duration::from_secs(1);
            }
        }
    }
    None
}

/// Opens a `SendStream` to node `i`; answers and the close go to `events`.
fn open(
    i: usize,
    generation: u64,
    channel: Channel,
    events: mpsc::Sender<Ev>,
) -> mpsc::Sender<SendRequest> {
    let (tx, rx) = mpsc::channel::<SendRequest>(8192);
    tokio::spawn(async move {
        let mut client = GatewayClient::new(channel);
        if let Ok(resp) = client.send_stream(ReceiverStream::new(rx)).await {
            let mut answers = resp.into_inner();
            while let Some(Ok(a)) = answers.next().await {
                if events.send(Ev::Answer(a)).await.is_err() {
                    return;
                }
            }
        }
        let _ = events.send(Ev::Closed(i, generation)).await;
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_index() {
        let t = msg_text("revoke-1a2b", 4711);
        assert_eq!(msg_index("revoke-1a2b", &t), Some(4711));
        assert_eq!(msg_index("revoke-other", &t), None);
        assert_eq!(msg_index("revoke-1a2b", "revoke-1a2b #x"), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for code in ["UNAVAILABLE", "ABORTED", STREAM_BROKEN] {
            assert!(retryable(code), "{code}");
        }
        for code in [
            "RESOURCE_EXHAUSTED",
            "DEADLINE_EXCEEDED",
            "INVALID_ARGUMENT",
            "FAILED_PRECONDITION",
        ] {
            assert!(!retryable(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_retryable_failure_is_retried_until_the_attempts_run_out() {
        let mut msgs = Vec::new();
        let idx = new_msg(&mut msgs, Kind::Background, 1, Duration::ZERO);
        let mut retries = BinaryHeap::new();
        let progress = Progress::default();
        let fail = || Answer::Failed {
            code: "UNAVAILABLE".into(),
        };
        msgs[idx].attempts = 1;
        settle(
            &mut msgs,
            idx,
            &mut retries,
            2,
            fail(),
            Duration::ZERO,
            &progress,
        );
        assert_eq!(retries.len(), 1);
        assert!(msgs[idx].last.is_none());
        msgs[idx].attempts = 2;
        settle(
            &mut msgs,
            idx,
            &mut retries,
            2,
            fail(),
            Duration::from_secs(1),
            &progress,
        );
        assert_eq!(retries.len(), 1, "no second retry");
        assert_eq!(msgs[idx].last, Some(fail()));
        assert_eq!(msgs[idx].first, Some(fail()));
        assert_eq!(progress.failed.load(Ordering::Relaxed), 1);
    }
}
