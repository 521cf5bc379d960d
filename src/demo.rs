//! `shardgate demo`: the whole product on one machine, nothing to install.
//!
//! Starts the Bot API emulator with Telegram's limits, the gateway on the
//! embedded registry with three bots, and drives a realistic load through the
//! gRPC API (many private chats plus one hot group). Halfway, one bot's token
//! is revoked at the emulator. A progress bar runs meanwhile; the summary
//! says what was delivered, the 429s Telegram would have sent, latency and
//! how fast the revoked bot left rotation. Exit code 0 only if nothing was
//! lost, nothing failed, and no 429 was seen.
//!
//! One job per module, in the order the demo runs them:
//! - [`setup`]: the emulator, the gateway over the demo fleet, a gRPC client;
//! - [`load`]: what is sent (the paced private chats, the hot group's burst)
//!   and the revocation halfway;
//! - [`progress`]: reading the answers, the tally and the progress bar;
//! - [`rich`]: a keyboard, a photo upload and an edit over `Call`;
//! - [`summary`]: the closing table, the JSON line and the verdict.

mod load;
mod progress;
mod rich;
mod setup;
mod summary;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use shardgate_proto::v1::{SendRequest, StatusRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::DemoArgs;
use crate::serve::runtime;

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut stage = setup::Stage::start().await?;
    let total = load::planned(&args);
    summary::print_intro(&stage, &args);
    let bar = progress::bar(total);

    // The producer sends paced requests into one SendStream. The stream (and
    // so the loop reading responses) ends once the producer is done and every
    // message has its answer.
    let (req_tx, req_rx) = mpsc::channel::<SendRequest>(4096);
    let responses = stage
        .grpc
        .send_stream(ReceiverStream::new(req_rx))
        .await
        .context("opening SendStream")?
        .into_inner();
    let sent_at = progress::SendTimes::default();
    let producer = load::spawn_producer(args.clone(), req_tx, sent_at.clone());
    let revoker = load::spawn_revoker(&stage, &args, started);

    let deadline = Instant::now() + Duration::from_secs(args.seconds + 40);
    let answers = progress::follow(responses, &sent_at, &bar, &stage.control, deadline).await?;
    let accepted = producer.await.unwrap_or(0) + u64::from(load::HOT_GROUP_MESSAGES);
    bar.finish_and_clear();
    let failover = revoker.await.ok().flatten();
    let stats = stage.control.stats();
    let status = stage
        .grpc
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .ok();
    let keyless_refused = stage.keyless_refused;
    let showcase = rich::run(&mut stage.grpc, &stage.control).await;
    stage.stop().await;

    let report = summary::Report {
        keyless_refused,
        took: started.elapsed(),
        accepted,
        answers,
        stats,
        revoke: !args.no_revoke,
        failover,
        status,
    };
    println!("\nBeyond text, through the same limits (gRPC Call):");
    let showcase_ok = match &showcase {
        Ok(s) => {
            for line in &s.lines {
                println!("  {line}");
            }
            true
        }
        Err(e) => {
            println!("  FAILED: {e:#}");
            false
        }
    };
    report.print(args.json);
    Ok(if showcase_ok {
        report.exit_code()
    } else {
        ExitCode::FAILURE
    })
}
