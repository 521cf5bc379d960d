//! What the demo sends: `--rate` messages a second over `--chats` private
//! chats for `--seconds`, plus, one second in, a burst into one hot group;
//! and, halfway, the revocation of one bot's token at the emulator.

use std::time::Duration;

use shardgate_proto::v1::SendRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::progress::SendTimes;
use super::setup::{BOTS, Stage};
use crate::cli::DemoArgs;

/// The bot of [`BOTS`] whose token is revoked halfway.
pub const REVOKED: usize = 1;
const HOT_GROUP: i64 = -1_001_234_567_890;
/// Messages of the hot group's burst (Telegram allows 20 a minute).
pub const HOT_GROUP_MESSAGES: u32 = 20;

/// How many messages the load offers in all.
pub fn planned(args: &DemoArgs) -> u64 {
    u64::from(args.rate) * args.seconds + u64::from(HOT_GROUP_MESSAGES)
}

/// Sends the paced load into `req_tx`, marking each send in `sent_at`;
/// answers how many private-chat messages it sent.
pub fn spawn_producer(
    args: DemoArgs,
    req_tx: mpsc::Sender<SendRequest>,
    sent_at: SendTimes,
) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut n: u64 = 0;
        let load_start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1));
        let mut group_sent = false;
        let per_chat_user = |i: u64| 10_000 + (i * 7_919) % u64::from(args.chats.max(1));
        while load_start.elapsed() < Duration::from_secs(args.seconds) {
            tick.tick().await;
            let now = Instant::now();
            // The hot group's burst, one second in.
            if !group_sent && load_start.elapsed() >= Duration::from_secs(1) {
                group_sent = true;
                for g in 0..HOT_GROUP_MESSAGES {
                    if req_tx.send(sent_at.mark(hot_group(g), now)).await.is_err() {
                        return n;
                    }
                }
            }
            let req = private_chat(n, per_chat_user(n) as i64);
            if req_tx.send(sent_at.mark(req, now)).await.is_err() {
                return n;
            }
            n += 1;
        }
        n
    })
}

/// The `g`-th message of the hot group's burst, from one of five users.
fn hot_group(g: u32) -> SendRequest {
    SendRequest {
        chat_id: HOT_GROUP,
        user_id: 42 + i64::from(g % 5),
        text: format!("hot group update #{g}"),
        client_ref: format!("g{g}"),
        ..SendRequest::default()
    }
}

/// The `n`-th private-chat message, to `chat` (its user is the chat).
fn private_chat(n: u64, chat: i64) -> SendRequest {
    SendRequest {
        chat_id: chat,
        user_id: chat,
        text: format!("Your order #{n} has shipped"),
        client_ref: format!("m{n}"),
        idempotency_key: format!("demo-{n}"),
        ..SendRequest::default()
    }
}

/// When the bot was revoked (since the demo `started`) and how long it then
/// took to leave rotation.
pub type Failover = (Duration, Duration);

/// Unless `--no-revoke`: revokes bot [`REVOKED`] halfway through the load
/// and times how long until the gateway shows it revoked (`None` past 30 s).
pub fn spawn_revoker(
    stage: &Stage,
    args: &DemoArgs,
    started: Instant,
) -> JoinHandle<Option<Failover>> {
    let control = stage.control.clone();
    let gateway = stage.local.gateway.clone();
    let half = Duration::from_secs(args.seconds) / 2;
    let enabled = !args.no_revoke;
    tokio::spawn(async move {
        if !enabled {
            return None;
        }
        tokio::time::sleep(half).await;
        let at = Instant::now();
        control.revoke(BOTS[REVOKED].1);
        loop {
            let status = gateway.status();
            if status
                .bots
                .iter()
                .any(|b| b.name == BOTS[REVOKED].0 && b.state == "revoked")
            {
                return Some((at.duration_since(started), at.elapsed()));
            }
            if at.elapsed() > Duration::from_secs(30) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}
