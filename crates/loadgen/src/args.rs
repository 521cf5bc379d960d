//! The command line: what to drive, the fleet (embedded mode), the load's
//! shape, the phases to run and what to assert. `--smoke` is a preset of the
//! others (CI's load smoke).

use clap::{Parser, ValueEnum};
use serde::Serialize;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `SendStream`, one stream per connection.
    Stream,
    /// Unary `Send`, `--concurrency` at a time.
    Unary,
}

/// Load generator for Shardgate.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// A running gateway's gRPC URL (e.g. http://127.0.0.1:7443).
    #[arg(long, conflicts_with = "embedded")]
    pub target: Option<String>,
    /// The Bot API emulator's base URL, to read its counters (429s) and for
    /// `--bare-http` in `--target` mode.
    #[arg(long)]
    pub emulator: Option<String>,
    /// Start the emulator and the gateway in this process.
    #[arg(long)]
    pub embedded: bool,
    /// Embedded: bots in the fleet.
    #[arg(long, default_value_t = 3)]
    pub bots: usize,
    /// Lift every limit (cost-per-message runs). Embedded: in the emulator
    /// and the gateway. With `--target`: says the target runs lifted, so no
    /// ceiling is computed.
    #[arg(long)]
    pub no_limits: bool,
    /// Embedded: the emulator answers after this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub emulator_latency_ms: u64,
    /// Embedded: the gateway's requests in flight per bot (default: its Limits).
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Embedded: idle HTTP connections the gateway's client keeps per host.
    #[arg(long)]
    pub pool_idle_per_host: Option<usize>,
    /// Embedded: the scheduler's jitter margin in ms (default: its Limits, 0),
    /// added to the bot and group windows.
    #[arg(long)]
    pub jitter_margin_ms: Option<f64>,
    /// Report the RSS of this process id (e.g. a `shardgate serve` under
    /// test) instead of the load generator's own.
    #[arg(long)]
    pub rss_pid: Option<u32>,
    /// Embedded: install a tracing subscriber at this level (writing to a
    /// sink), as `shardgate serve` does at `info`; default none.
    #[arg(long)]
    pub tracing: Option<String>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub worker_threads: Option<usize>,

    /// gRPC API to drive.
    #[arg(long, value_enum, default_value_t = Api::Stream)]
    pub api: Api,
    /// gRPC connections (one SendStream each; unary calls spread over them).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Unary and bare HTTP: requests in flight at most.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Regular chats (private and groups).
    #[arg(long, default_value_t = 1000)]
    pub chats: u64,
    /// Share of the regular chats that are groups (chat_id < 0).
    #[arg(long, default_value_t = 0.0)]
    pub group_share: f64,
    /// Senders per chat; each (chat, user) is a shard key of its own.
    #[arg(long, default_value_t = 1)]
    pub users_per_chat: u64,
    /// Hot groups, each driven at `--hot-rate` msg/s (open loop).
    #[arg(long, default_value_t = 0)]
    pub hot_chats: u64,
    /// Demand of each hot group, msg/s.
    #[arg(long, default_value_t = 50.0)]
    pub hot_rate: f64,
    /// Demand over the regular chats, msg/s in all (open loop). Without it,
    /// the load saturates: every key keeps `--per-key` requests outstanding.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Saturation: requests outstanding per regular (chat, user) key.
    #[arg(long, default_value_t = 2)]
    pub per_key: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds excluded at the start (default: 5, or a quarter of short runs).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Seconds to wait for outstanding answers after the load stops.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// After the load, stay this many seconds and sample RSS and tracked chats
    /// (idle chat state should be dropped).
    #[arg(long, default_value_t = 0.0)]
    pub quiet_secs: f64,
    /// Characters per message text.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,

    /// Also run a bare reqwest loop posting sendMessage straight to the
    /// emulator (same concurrency, rate and duration) and compare.
    #[arg(long)]
    pub bare_http: bool,
    /// Only the bare HTTP loop (no gateway phase).
    #[arg(long)]
    pub bare_only: bool,
    /// Bare loop: requests in flight (default: --concurrency).
    #[arg(long)]
    pub bare_concurrency: Option<usize>,

    /// CI smoke: embedded, 2 bots, 300 private chats, 10 s; asserts 0 429s
    /// and delivered/ceiling >= 0.95.
    #[arg(long)]
    pub smoke: bool,
    /// Soak: embedded, 3 bots, 2000 chats (10% groups) at the limit for
    /// `--duration` (default here 1800 s); samples RSS, file descriptors and
    /// tokio tasks every 10 s and fails unless they stay flat and no 429 came.
    #[arg(long)]
    pub soak: bool,
    /// Exit non-zero when delivered/ceiling is below this.
    #[arg(long)]
    pub assert_ratio: Option<f64>,
    /// Exit non-zero when the emulator answered any 429.
    #[arg(long)]
    pub assert_no_429: bool,
    /// Print the report as JSON (and nothing else on stdout).
    #[arg(long)]
    pub json: bool,
    /// A name for this run, echoed in the report.
    #[arg(long)]
    pub label: Option<String>,
}

impl Args {
    pub fn apply_smoke(&mut self) {
        if !self.smoke {
            return;
        }
        self.embedded = true;
        self.target = None;
        self.bots = 2;
        self.chats = 300;
        self.duration = 10.0;
        self.warmup.get_or_insert(3.0);
        self.rate = None;
        self.assert_ratio.get_or_insert(0.95);
        self.assert_no_429 = true;
    }

    /// `--soak`'s preset (its duration only when `--duration` kept its
    /// default of 30 s).
    pub fn apply_soak(&mut self) {
        if !self.soak {
            return;
        }
        self.embedded = true;
        self.target = None;
        self.bots = 3;
        self.chats = 2000;
        self.group_share = 0.1;
        if self.duration == 30.0 {
            self.duration = 1800.0;
        }
        self.rate = None;
        self.assert_no_429 = true;
    }

    pub fn warmup(&self) -> f64 {
        self.warmup.unwrap_or(if self.duration >= 20.0 {
            5.0
        } else {
            self.duration / 4.0
        })
    }
}
