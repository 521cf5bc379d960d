//! The drivers: `SendStream` over N connections, unary `Send` with a
//! concurrency, and a bare reqwest loop posting `sendMessage` straight to the
//! emulator. Each runs saturating (every regular key keeps `per_key` requests
//! outstanding: a response for a key sends the next one for that key, so slow
//! chats never hoard the load) or at a demand rate (open loop, paced every
//! millisecond). Hot keys always run at their own rate, open loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_proto::v1::{SendRequest, SendResponse};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::record::Shared;
use crate::workload::{Class, Workload};

pub struct DriveConfig {
    pub start: Instant,
    /// No new request after this.
    pub deadline: Instant,
    /// Saturation: outstanding requests per regular key (0 = rate mode).
    pub per_key: u32,
    /// Rate mode: total msg/s over the regular keys.
    pub rate: f64,
    /// Total msg/s over the hot keys.
    pub hot_rate_total: f64,
    /// Unary and bare: requests in flight at most.
    pub concurrency: usize,
    pub text_len: usize,
    /// After the deadline, wait this long at most for outstanding answers.
    pub drain: Duration,
    /// Sent so far (texts are unique so that the emulator counts no duplicate).
    pub counter: AtomicU64,
    pub outstanding: AtomicI64,
}

impl DriveConfig {
    fn saturating(&self) -> bool {
        self.per_key > 0
    }

    fn text(&self, n: u64, chat_id: i64) -> String {
        let mut t = format!("loadgen #{n} to {chat_id}: ");
        while t.len() < self.text_len {
            t.push('x');
        }
        t
    }

    fn request(&self, w: &Workload, key: usize) -> SendRequest {
        let k = &w.keys[key];
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let t_ns = self.start.elapsed().as_nanos() as u64;
        SendRequest {
            chat_id: k.chat_id,
            user_id: k.user_id,
            text: self.text(n, k.chat_id),
            client_ref: format!("{}{key}:{t_ns}", k.class.letter()),
            ..SendRequest::default()
        }
    }
}

/// `(class, key, sent at)` back from a `client_ref`.
fn parse_ref(start: Instant, r: &str) -> Option<(Class, usize, Instant)> {
    let mut chars = r.chars();
    let class = Class::from_letter(chars.next()?)?;
    let (key, t) = chars.as_str().split_once(':')?;
    Some((
        class,
        key.parse().ok()?,
        start + Duration::from_nanos(t.parse().ok()?),
    ))
}

fn record_response(rec: &Shared, start: Instant, resp: &SendResponse) -> Option<(Class, usize)> {
    let now = Instant::now();
    let (class, key, sent) = parse_ref(start, &resp.client_ref)?;
    let mut r = rec.lock();
    match &resp.error {
        None => r.delivered(now, &resp.bot, class, now.saturating_duration_since(sent)),
        Some(e) => r.failed(&e.code),
    }
    Some((class, key))
}

/// Paces `rate` msg/s over `keys` (open loop) until the deadline, calling
/// `emit` for each; the millisecond tick sends whatever is due.
async fn pace(cfg: &DriveConfig, rate: f64, keys: &[usize], mut emit: impl FnMut(usize)) {
    if rate <= 0.0 || keys.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < cfg.deadline {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            emit(keys[(sent % keys.len() as u64) as usize]);
            sent += 1;
        }
    }
}

/// `SendStream` over every channel; keys are spread over the streams by index.
pub async fn run_streams(
    channels: Vec<Channel>,
    w: Arc<Workload>,
    cfg: Arc<DriveConfig>,
    rec: Shared,
) -> anyhow::Result<()> {
    let n = channels.len().max(1);
    let mut txs = Vec::with_capacity(n);
    let mut readers = JoinSet::new();
    for ch in channels {
        let (tx, rx) = mpsc::unbounded_channel::<SendRequest>();
        let mut client = GatewayClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut inbound = client
            .send_stream(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        txs.push(tx.clone());
        let (w, cfg, rec) = (w.clone(), cfg.clone(), rec.clone());
        readers.spawn(async move {
            loop {
                let next = tokio::time::timeout_at(cfg.deadline + cfg.drain, inbound.message());
                let resp = match next.await {
                    Ok(Ok(Some(resp))) => resp,
                    Ok(Err(status)) => {
                        rec.lock().failed(&format!("stream: {}", status.code()));
                        return;
                    }
                    Ok(Ok(None)) | Err(_) => return,
                };
                cfg.outstanding.fetch_sub(1, Ordering::Relaxed);
                let Some((class, key)) = record_response(&rec, cfg.start, &resp) else {
                    continue;
                };
                if cfg.saturating() && class != Class::Hot && Instant::now() < cfg.deadline {
                    cfg.outstanding.fetch_add(1, Ordering::Relaxed);
                    rec.lock().sent += 1;
                    let _ = tx.send(cfg.request(&w, key));
                }
            }
        });
    }
    let send = |key: usize| {
        cfg.outstanding.fetch_add(1, Ordering::Relaxed);
        rec.lock().sent += 1;
        let _ = txs[key % n].send(cfg.request(&w, key));
    };
    let regular: Vec<usize> = (0..w.regular).collect();
    let hot: Vec<usize> = (w.regular..w.keys.len()).collect();
    if cfg.saturating() {
        for _ in 0..cfg.per_key {
            for &k in &regular {
                send(k);
            }
        }
        pace(&cfg, cfg.hot_rate_total, &hot, send).await;
    } else {
        let both = async {
            tokio::join!(
                pace(&cfg, cfg.rate, &regular, send),
                pace(&cfg, cfg.hot_rate_total, &hot, send)
            )
        };
        both.await;
    }
    tokio::time::sleep_until(cfg.deadline).await;
    wait_drained(&cfg).await;
    drop(txs);
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    Ok(())
}

async fn wait_drained(cfg: &DriveConfig) {
    let until = cfg.deadline + cfg.drain;
    while cfg.outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where unary requests go.
#[derive(Clone)]
pub enum Unary {
    /// The gateway's `Send`, over these connections.
    Grpc(Vec<GatewayClient<Channel>>),
    /// Straight to the emulator: `POST {base}/bot{token}/sendMessage`, with the
    /// token of the bot the key routes to.
    Bare {
        http: reqwest::Client,
        base: Arc<str>,
        tokens: Arc<Vec<String>>,
    },
}

impl Unary {
    /// One request for `key`; the delivering bot's name, or an error code.
    async fn call(
        &self,
        lane: usize,
        w: &Workload,
        cfg: &DriveConfig,
        key: usize,
    ) -> (SendResponse, Instant) {
        let req = cfg.request(w, key);
        let sent = Instant::now();
        let client_ref = req.client_ref.clone();
        let resp = match self {
            Unary::Grpc(clients) => {
                let mut c = clients[lane % clients.len()].clone();
                match c.send(req).await {
                    Ok(r) => r.into_inner(),
                    Err(status) => SendResponse {
                        client_ref,
                        error: Some(shardgate_proto::v1::Error {
                            code: format!("{:?}", status.code()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                }
            }
            Unary::Bare { http, base, tokens } => {
                let k = &w.keys[key];
                let url = format!("{base}/bot{}/sendMessage", tokens[k.bot]);
                let body = serde_json::json!({"chat_id": req.chat_id, "text": req.text});
                let answer = async {
                    let r = http.post(url).json(&body).send().await?;
                    let status = r.status().as_u16();
                    let bytes = r.bytes().await?;
                    Ok::<_, reqwest::Error>((status, bytes))
                }
                .await;
                let error = match answer {
                    Ok((status, bytes)) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        if status == 200 && v["ok"].as_bool() == Some(true) {
                            None
                        } else {
                            Some(format!("HTTP {status}"))
                        }
                    }
                    Err(e) => Some(
                        if e.is_timeout() {
                            "timeout"
                        } else {
                            "transport"
                        }
                        .to_owned(),
                    ),
                };
                SendResponse {
                    client_ref,
                    bot: w.bots.get(k.bot).cloned().unwrap_or_default(),
                    error: error.map(|code| shardgate_proto::v1::Error {
                        code,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            }
        };
        (resp, sent)
    }
}

/// Unary sends: saturating (`concurrency` workers in closed loop over the
/// regular keys) or at a rate (open loop, at most `concurrency` in flight).
pub async fn run_unary(target: Unary, w: Arc<Workload>, cfg: Arc<DriveConfig>, rec: Shared) {
    let mut tasks = JoinSet::new();
    let c = cfg.concurrency.max(1);
    if cfg.saturating() && w.regular > 0 {
        for worker in 0..c {
            let (target, w, cfg, rec) = (target.clone(), w.clone(), cfg.clone(), rec.clone());
            tasks.spawn(async move {
                let mut i = worker;
                while Instant::now() < cfg.deadline {
                    let key = i % w.regular;
                    rec.lock().sent += 1;
                    let (resp, _) = target.call(worker, &w, &cfg, key).await;
                    record_response(&rec, cfg.start, &resp);
                    i += c;
                }
            });
        }
    }
    let sem = Arc::new(Semaphore::new(c));
    let lane = AtomicU64::new(0);
    let spawn_one = |key: usize| {
        let (target, w, cfg, rec, sem) = (
            target.clone(),
            w.clone(),
            cfg.clone(),
            rec.clone(),
            sem.clone(),
        );
        let lane = lane.fetch_add(1, Ordering::Relaxed) as usize;
        rec.lock().sent += 1;
        tokio::spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            let (resp, _) = target.call(lane, &w, &cfg, key).await;
            record_response(&rec, cfg.start, &resp);
        });
    };
    let regular: Vec<usize> = (0..w.regular).collect();
    let hot: Vec<usize> = (w.regular..w.keys.len()).collect();
    let rate = if cfg.saturating() { 0.0 } else { cfg.rate };
    tokio::join!(
        pace(&cfg, rate, &regular, spawn_one),
        pace(&cfg, cfg.hot_rate_total, &hot, spawn_one)
    );
    tokio::time::sleep_until(cfg.deadline).await;
    // Open-loop requests still in flight: wait for them (bounded).
    let until = cfg.deadline + cfg.drain;
    while sem.available_permits() < c && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ =
        tokio::time::timeout_at(until, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_refs_round_trip() {
        let start = Instant::now();
        let (c, k, t) = parse_ref(start, "g17:1500000000").unwrap();
        assert_eq!(c, Class::Group);
        assert_eq!(k, 17);
        assert_eq!(t - start, Duration::from_millis(1500));
        assert!(parse_ref(start, "x1:2").is_none());
    }
}
