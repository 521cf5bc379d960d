//! Following the demo while it runs: every answer of the SendStream is
//! tallied (delivered per bot, failed per code, retried elsewhere), its
//! latency recorded, and the progress bar moved.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use shardgate_mock::Control;
use shardgate_proto::v1::{SendRequest, SendResponse};
use tokio::time::Instant;
use tokio_stream::StreamExt;

/// The progress bar for `total` messages.
pub fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} delivered {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// When each message in flight was sent, by `client_ref`: the producer marks
/// a send, the reader takes the mark when the answer comes.
#[derive(Clone, Default)]
pub struct SendTimes(Arc<Mutex<HashMap<String, Instant>>>);

impl SendTimes {
    /// Notes that `req` was sent at `now`; gives `req` back.
    pub fn mark(&self, req: SendRequest, now: Instant) -> SendRequest {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.client_ref.clone(), now);
        req
    }

    fn take(&self, client_ref: &str) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_ref)
    }
}

/// What the load saw, answer by answer.
pub struct Answers {
    pub delivered: u64,
    /// Failed answers by error code.
    pub failed: BTreeMap<String, u64>,
    /// Delivered messages by the bot that sent them.
    pub per_bot: BTreeMap<String, u64>,
    /// Delivered messages that needed more than one attempt.
    pub rerouted: u64,
    /// Send-to-answer latency, in microseconds.
    pub latency: Histogram<u64>,
}

impl Answers {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    fn record(&mut self, resp: &SendResponse) {
        match &resp.error {
            None => {
                self.delivered += 1;
                *self.per_bot.entry(resp.bot.clone()).or_default() += 1;
                if resp.attempts > 1 {
                    self.rerouted += 1;
                }
            }
            Some(e) => *self.failed.entry(e.code.clone()).or_default() += 1,
        }
    }
}

/// Reads every answer of `responses` until the stream ends, breaks, or
/// `deadline` passes; moves `bar` and shows the emulator's 429 count.
pub async fn follow(
    mut responses: tonic::Streaming<SendResponse>,
    sent_at: &SendTimes,
    bar: &ProgressBar,
    control: &Control,
    deadline: Instant,
) -> anyhow::Result<Answers> {
    let mut answers = Answers {
        delivered: 0,
        failed: BTreeMap::new(),
        per_bot: BTreeMap::new(),
        rerouted: 0,
        latency: Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?,
    };
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
        if let Some(t0) = sent_at.take(&resp.client_ref) {
            let _ = answers
                .latency
                .record(t0.elapsed().as_micros().max(1) as u64);
        }
        answers.record(&resp);
        if resp.error.is_none() {
            bar.inc(1);
        }
        let stats = control.stats();
        bar.set_message(format!(
            "| 429s {} | failed {}",
            stats.totals.rate_limited,
            answers.failed_total()
        ));
    }
    Ok(answers)
}
