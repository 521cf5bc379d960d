//! `shardgate demo`: the whole product on one machine, nothing to install.
//!
//! Starts the Bot API emulator with Telegram's limits, the gateway on the
//! embedded registry with three bots, and drives a realistic load through the
//! gRPC API (many private chats plus one hot group). Halfway, one bot's token
//! is revoked at the emulator. A progress bar runs meanwhile; the summary
//! says what was delivered, the 429s Telegram would have sent, latency and
//! how fast the revoked bot left rotation. Exit code 0 only if nothing was
//! lost, nothing failed, and no 429 was seen.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use shardgate_gateway::GatewayConfig;
use shardgate_gateway::local::LocalGateway;
use shardgate_mock::{MockConfig, MockServer, test_token};
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_proto::v1::{SendRequest, StatusRequest};
use shardgate_registry::BotSpec;
use shardgate_telegram::{BotToken, Client, ClientConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::DemoArgs;
use crate::serve::runtime;

const BOTS: [(&str, u64); 3] = [
    ("alpha", 7_100_001),
    ("bravo", 7_100_002),
    ("charlie", 7_100_003),
];
const REVOKED: usize = 1;
const HOT_GROUP: i64 = -1_001_234_567_890;
const HOT_GROUP_MESSAGES: u32 = 20;

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(demo(args))
}

/// What the load saw, response by response.
#[derive(Default)]
struct Tally {
    delivered: u64,
    failed: BTreeMap<String, u64>,
    per_bot: BTreeMap<String, u64>,
    rerouted: u64,
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mock = MockServer::start(MockConfig::default(), "127.0.0.1:0".parse()?)
        .await
        .context("starting the Bot API emulator")?;
    let control = mock.control();
    let bots = BOTS
        .iter()
        .map(|(name, id)| {
            Ok(BotSpec {
                name: (*name).to_owned(),
                token: BotToken::parse(&test_token(*id))?,
                enabled: true,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = Client::new(ClientConfig {
        api_base: mock.base_url(),
        ..ClientConfig::default()
    })?;
    let config = GatewayConfig {
        instance_id: "demo-1".into(),
        ..GatewayConfig::default()
    };
    let local = LocalGateway::start(bots, config, client, shardgate_metrics::Metrics::new())
        .await
        .context("starting the gateway")?;
    let gateway = local.gateway.clone();
    let grpc_addr = local.addr;
    let mut grpc = connect(&format!("http://{grpc_addr}")).await?;

    let total = u64::from(args.rate) * args.seconds + u64::from(HOT_GROUP_MESSAGES);
    println!(
        "Shardgate demo: Bot API emulator with Telegram's limits at {}, gateway at {grpc_addr} with bots {}.",
        mock.base_url(),
        BOTS.map(|b| b.0).join(", ")
    );
    println!(
        "Load: {} msg/s over {} private chats for {} s, plus a burst of {HOT_GROUP_MESSAGES} into one hot group (20/min allowed){}.\n",
        args.rate,
        args.chats,
        args.seconds,
        if args.no_revoke {
            ""
        } else {
            "; bot bravo's token is revoked halfway"
        }
    );
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} delivered {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    // Producer: paced requests into one SendStream. The stream (and so the
    // loop reading responses) ends once the producer is done and every
    // message has its answer.
    let (req_tx, req_rx) = mpsc::channel::<SendRequest>(4096);
    let mut responses = grpc
        .send_stream(ReceiverStream::new(req_rx))
        .await
        .context("opening SendStream")?
        .into_inner();
    let sent_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let producer = {
        let sent_at = sent_at.clone();
        let args = args.clone();
        tokio::spawn(async move {
            let mut n: u64 = 0;
            let push = |req: SendRequest, now: Instant| {
                sent_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(req.client_ref.clone(), now);
                req
            };
            // The hot group's burst, one second in.
            let load_start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1));
            let mut group_sent = false;
            let per_chat_user = |i: u64| 10_000 + (i * 7_919) % u64::from(args.chats.max(1));
            while load_start.elapsed() < Duration::from_secs(args.seconds) {
                tick.tick().await;
                let now = Instant::now();
                if !group_sent && load_start.elapsed() >= Duration::from_secs(1) {
                    group_sent = true;
                    for g in 0..HOT_GROUP_MESSAGES {
                        let req = SendRequest {
                            chat_id: HOT_GROUP,
                            user_id: 42 + i64::from(g % 5),
                            text: format!("hot group update #{g}"),
                            client_ref: format!("g{g}"),
                            ..SendRequest::default()
                        };
                        if req_tx.send(push(req, now)).await.is_err() {
                            return n;
                        }
                    }
                }
                let chat = per_chat_user(n) as i64;
                let req = SendRequest {
                    chat_id: chat,
                    user_id: chat,
                    text: format!("Your order #{n} has shipped"),
                    client_ref: format!("m{n}"),
                    idempotency_key: format!("demo-{n}"),
                    ..SendRequest::default()
                };
                if req_tx.send(push(req, now)).await.is_err() {
                    return n;
                }
                n += 1;
            }
            n
        })
    };

    // Revoke one bot halfway and time how long until it is out of rotation.
    let revoker = {
        let control = control.clone();
        let gateway = gateway.clone();
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
    };

    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut tally = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 40);
    loop {
        let next = tokio::time::timeout_at(deadline, responses.next()).await;
        let resp = match next {
            Ok(Some(Ok(r))) => r,
            Ok(Some(Err(status))) => {
                bar.println(format!("stream error: {status}"));
                break;
            }
            Ok(None) => break,
            Err(_) => {
                bar.println("gave up waiting for the last responses");
                break;
            }
        };
        if let Some(t0) = sent_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&resp.client_ref)
        {
            let _ = latency.record(t0.elapsed().as_micros().max(1) as u64);
        }
        match &resp.error {
            None => {
                tally.delivered += 1;
                *tally.per_bot.entry(resp.bot.clone()).or_default() += 1;
                if resp.attempts > 1 {
                    tally.rerouted += 1;
                }
                bar.inc(1);
            }
            Some(e) => *tally.failed.entry(e.code.clone()).or_default() += 1,
        }
        let stats = control.stats();
        bar.set_message(format!(
            "| 429s {} | failed {}",
            stats.totals.rate_limited,
            tally.failed.values().sum::<u64>()
        ));
    }
    let accepted = producer.await.unwrap_or(0) + u64::from(HOT_GROUP_MESSAGES);
    bar.finish_and_clear();
    let failover = revoker.await.ok().flatten();
    let stats = control.stats();
    let status = grpc
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .ok();
    local
        .stop(Duration::from_secs(2), Duration::from_secs(30))
        .await;
    mock.shutdown().await;

    let failed: u64 = tally.failed.values().sum();
    let lost = accepted.saturating_sub(tally.delivered + failed);
    let q = |p: f64| Duration::from_micros(latency.value_at_quantile(p));
    println!(
        "Shardgate demo summary ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!("  {:<26} {}", "messages accepted", accepted);
    println!(
        "  {:<26} {}   ({})",
        "delivered",
        tally.delivered,
        tally
            .per_bot
            .iter()
            .map(|(b, n)| format!("{b} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {:<26} {}{}",
        "failed",
        failed,
        if failed > 0 {
            format!("   {:?}", tally.failed)
        } else {
            String::new()
        }
    );
    println!("  {:<26} {}", "lost", lost);
    println!(
        "  {:<26} {}",
        "429s seen (emulator)", stats.totals.rate_limited
    );
    println!(
        "  {:<26} {}",
        "duplicates (emulator)", stats.totals.duplicates
    );
    println!(
        "  {:<26} p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
        "latency (gRPC, in queue)",
        q(0.50),
        q(0.95),
        q(0.99),
        Duration::from_micros(latency.max())
    );
    match (args.no_revoke, failover) {
        (true, _) => {}
        (false, Some((at, took))) => println!(
            "  {:<26} bravo revoked at {:.1} s; out of rotation {:?} later ({} 401 seen; {} messages retried elsewhere)",
            "failover",
            at.as_secs_f64(),
            took,
            stats.bot(BOTS[REVOKED].1).unauthorized,
            tally.rerouted
        ),
        (false, None) => println!("  {:<26} bravo was NOT taken out of rotation", "failover"),
    }
    if let Some(status) = status {
        let states: Vec<String> = status
            .bots
            .iter()
            .map(|b| format!("{} {}", b.name, b.state))
            .collect();
        println!("  {:<26} {}", "bots now", states.join(", "));
    }
    if args.json {
        println!(
            "{{\"accepted\":{accepted},\"delivered\":{},\"failed\":{failed},\"lost\":{lost},\"rate_limited\":{},\"p50_us\":{},\"p99_us\":{},\"failover_ms\":{}}}",
            tally.delivered,
            stats.totals.rate_limited,
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            failover.map_or(-1, |(_, d)| d.as_millis() as i64)
        );
    }
    let ok = lost == 0
        && failed == 0
        && stats.totals.rate_limited == 0
        && (args.no_revoke || failover.is_some());
    println!(
        "\n{}",
        if ok {
            "PASS: nothing lost, no 429."
        } else {
            "FAIL: see above."
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn connect(url: &str) -> anyhow::Result<GatewayClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await
        .context("connecting to the gateway")?;
    Ok(GatewayClient::new(channel))
}
