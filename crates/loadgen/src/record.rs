//! What the drivers saw, response by response: delivered counts in 100 ms
//! buckets per bot and per class (the steady-state window is cut from them at
//! the end), errors by gRPC code, and latency histograms.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::workload::Class;

/// Bucket width of the delivery timeline.
pub const BUCKET: Duration = Duration::from_millis(100);

pub struct Recorder {
    pub start: Instant,
    /// Latencies are recorded for responses received in `[warmup, end]`.
    warmup: Duration,
    end: Duration,
    pub bots: Vec<String>,
    /// `delivered[bucket][bot]`
    delivered: Vec<Vec<u32>>,
    /// `delivered[bucket][class]`
    delivered_class: Vec<[u32; 3]>,
    pub delivered_total: u64,
    pub sent: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency: Histogram<u64>,
    pub latency_class: BTreeMap<Class, Histogram<u64>>,
}

fn class_idx(c: Class) -> usize {
    match c {
        Class::Private => 0,
        Class::Group => 1,
        Class::Hot => 2,
    }
}

pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

impl Recorder {
    pub fn new(start: Instant, warmup: Duration, end: Duration, bots: Vec<String>) -> Recorder {
        Recorder {
            start,
            warmup,
            end,
            bots,
            delivered: Vec::new(),
            delivered_class: Vec::new(),
            delivered_total: 0,
            sent: 0,
            errors: BTreeMap::new(),
            latency: hist(),
            latency_class: BTreeMap::new(),
        }
    }

    fn bucket(&mut self, at: Instant) -> usize {
        let b =
            (at.saturating_duration_since(self.start).as_micros() / BUCKET.as_micros()) as usize;
        if self.delivered.len() <= b {
            let n = self.bots.len();
            self.delivered.resize_with(b + 1, || vec![0; n]);
            self.delivered_class.resize(b + 1, [0; 3]);
        }
        b
    }

    fn bot_idx(&mut self, bot: &str) -> usize {
        match self.bots.iter().position(|b| b == bot) {
            Some(i) => i,
            None => {
                self.bots.push(bot.to_owned());
                for row in &mut self.delivered {
                    row.push(0);
                }
                self.bots.len() - 1
            }
        }
    }

    /// A delivered message: answered at `at`, `latency` after it was sent.
    pub fn delivered(&mut self, at: Instant, bot: &str, class: Class, latency: Duration) {
        let b = self.bucket(at);
        let i = self.bot_idx(bot);
        self.delivered[b][i] += 1;
        self.delivered_class[b][class_idx(class)] += 1;
        self.delivered_total += 1;
        let t = at.saturating_duration_since(self.start);
        if t >= self.warmup && t <= self.end {
            let us = latency.as_micros().max(1) as u64;
            let _ = self.latency.record(us);
            let _ = self
                .latency_class
                .entry(class)
                .or_insert_with(hist)
                .record(us);
        }
    }

    pub fn failed(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
    }

    /// Delivered per bot and per class in buckets `[from, to)`.
    pub fn window(&self, from: Duration, to: Duration) -> (Vec<u64>, BTreeMap<Class, u64>) {
        let a = (from.as_micros() / BUCKET.as_micros()) as usize;
        let b = (to.as_micros() / BUCKET.as_micros()) as usize;
        let mut per_bot = vec![0u64; self.bots.len()];
        let mut per_class = BTreeMap::new();
        for i in a..b.min(self.delivered.len()) {
            for (j, n) in self.delivered[i].iter().enumerate() {
                per_bot[j] += u64::from(*n);
            }
            for (c, n) in [Class::Private, Class::Group, Class::Hot]
                .into_iter()
                .zip(self.delivered_class[i])
            {
                if n > 0 {
                    *per_class.entry(c).or_default() += u64::from(n);
                }
            }
        }
        (per_bot, per_class)
    }

    /// Delivered per second over whole seconds, for the timeline.
    pub fn per_second(&self) -> Vec<u64> {
        let per = (1_000_000 / BUCKET.as_micros()) as usize;
        self.delivered
            .chunks(per)
            .map(|c| c.iter().flatten().map(|n| u64::from(*n)).sum())
            .collect()
    }
}

#[derive(Clone)]
pub struct Shared(pub Arc<Mutex<Recorder>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
