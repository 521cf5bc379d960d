//! The command line (`docs/cli.md` is generated from these definitions, see
//! `cli_reference.rs`). Every flag of `serve` can also come from
//! `SHARDGATE_<FLAG>` in the environment.
//!
//! The `///` comments below are `--help` text first: clap prints them as
//! written, so they carry no Markdown (no backticks, no link syntax) and
//! rustdoc's link and HTML lints are off for this module.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags
)]

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::etcd_access::EtcdAccessArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "shardgate",
    version,
    about = "Send Telegram Bot API messages through a fleet of bot tokens, under Telegram's limits"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "SHARDGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Run the Bot API emulator (limits and fault injection) standalone.
    Mock(shardgate_mock::MockArgs),
    /// The whole product on one machine: emulator, gateway with 3 bots, load, a revoke.
    Demo(DemoArgs),
    /// Operators' commands on the bots in etcd (cluster mode).
    Bot(BotArgs),
    /// Operators' commands on the callers: API keys, quotas, bans (the
    /// callers file, or etcd in cluster mode).
    Caller(CallerArgs),
    /// Broadcast jobs on a running gateway: create, watch, status, pause,
    /// resume, cancel, results, list (over gRPC).
    Broadcast(BroadcastArgs),
    /// Generated documentation, for maintainers.
    #[command(hide = true)]
    Docs(DocsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DocsArgs {
    #[command(subcommand)]
    pub command: DocsCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DocsCommand {
    /// The command-line reference of docs/cli.md, from these definitions.
    Cli {
        /// Rewrite the generated part of this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        update: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct BotArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, env = "SHARDGATE_ETCD", default_value = "http://127.0.0.1:2379")]
    pub etcd: String,
    /// etcd namespace.
    #[arg(long, env = "SHARDGATE_CLUSTER", default_value = "default")]
    pub cluster: String,
    #[command(flatten)]
    pub access: EtcdAccessArgs,
    #[command(subcommand)]
    pub command: BotCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BotCommand {
    /// Add a bot (fails if the name exists).
    Add {
        /// The bot's name: 1-64 letters, digits, '-', '_' or '.'.
        name: String,
        /// The token; `-` reads it from standard input (keeps it out of `ps`).
        #[arg(long, env = "SHARDGATE_BOT_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Put a new token for a bot: the owner uses it from its next request; health resets.
    Rotate {
        /// The bot's name.
        name: String,
        /// The new token; `-` reads it from standard input.
        #[arg(long, env = "SHARDGATE_BOT_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Take a bot out of rotation (its health becomes revoked) until rotated or enabled.
    Revoke {
        /// The bot's name.
        name: String,
        /// Why, as `Status` and `bot list` will show it.
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
    /// Enable a bot (health resets to healthy), or disable it with --disable.
    Enable {
        /// The bot's name.
        name: String,
        /// Disable the bot instead (out of rotation until enabled).
        #[arg(long)]
        disable: bool,
    },
    /// Every bot with its state, owner and cooldown (tokens redacted).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Seed or update bots from a bots file (TOML `[[bot]]` tables).
    Import {
        /// The bots file: one `[[bot]]` table per bot with `name`, `token` and optional `enabled`.
        file: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct CallerArgs {
    /// The callers file to edit (embedded mode; the running gateway applies
    /// changes live).
    #[arg(long, env = "SHARDGATE_CALLERS_FILE")]
    pub callers_file: Option<PathBuf>,
    /// etcd endpoints, comma-separated (cluster mode: callers/<name> and
    /// bans/<name>, which every instance watches).
    #[arg(long, env = "SHARDGATE_ETCD")]
    pub etcd: Option<String>,
    /// etcd namespace.
    #[arg(long, env = "SHARDGATE_CLUSTER", default_value = "default")]
    pub cluster: String,
    #[command(flatten)]
    pub access: EtcdAccessArgs,
    #[command(subcommand)]
    pub command: CallerCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CallerCommand {
    /// Add a caller; prints its new API key once, alone on stdout.
    Add {
        /// The caller's name: 1-64 letters, digits, `-`, `_`, `.`.
        name: String,
        /// Messages per window (0 = no quota).
        #[arg(long, default_value_t = 0)]
        messages_per_window: u64,
        /// The quota's window, seconds.
        #[arg(long, default_value_t = 60)]
        window_secs: u64,
        /// Messages accepted and not yet answered (0 = no bound).
        #[arg(long, default_value_t = 0)]
        max_in_flight: u32,
        /// A bot the caller may use (repeat; none = all).
        #[arg(long = "bot")]
        bots: Vec<String>,
        /// A chat id the caller may send into (repeat; none = all).
        #[arg(long = "chat", allow_negative_numbers = true)]
        chats: Vec<i64>,
        /// May send paid broadcasts (`allow_paid_broadcast`).
        #[arg(long)]
        paid_broadcast: bool,
    },
    /// Every caller with its keys' digests, quota, lists and ban.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a caller (its keys stop working at once).
    Remove {
        /// The caller.
        name: String,
    },
    /// Ban a caller for a while (every request PERMISSION_DENIED).
    Ban {
        /// The caller.
        name: String,
        /// How long the ban lasts, seconds.
        #[arg(long)]
        secs: u64,
    },
    /// Lift a caller's ban.
    Unban {
        /// The caller.
        name: String,
    },
    /// Give a caller another key (rotation); prints it once, alone on stdout.
    AddKey {
        /// The caller.
        name: String,
    },
    /// Remove one of a caller's keys by its SHA-256 digest (as `list` shows).
    RemoveKey {
        /// The caller.
        name: String,
        /// The key's SHA-256 digest, 64 hex digits.
        digest: String,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// gRPC address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "SHARDGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prometheus /metrics address (absent = no metrics endpoint).
    #[arg(long, env = "SHARDGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Bot API-compatible HTTP address (`/bot<key>/<method>`, so Bot API
    /// libraries work by changing their base URL); absent = none. Served
    /// over TLS with --tls-cert like gRPC.
    #[arg(long, env = "SHARDGATE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Bot API base URL [default: https://api.telegram.org].
    #[arg(long, env = "SHARDGATE_TELEGRAM_API_BASE")]
    pub telegram_api_base: Option<String>,
    /// etcd endpoints, comma-separated (absent = embedded registry).
    #[arg(long, env = "SHARDGATE_ETCD")]
    pub etcd: Option<String>,
    /// etcd namespace [default: default].
    #[arg(long, env = "SHARDGATE_CLUSTER")]
    pub cluster: Option<String>,
    /// Embedded mode: the bots and their tokens (TOML, `[[bot]]` tables). Re-read on SIGHUP.
    #[arg(long, env = "SHARDGATE_BOTS_FILE")]
    pub bots_file: Option<PathBuf>,
    /// This instance's id [default: "<host name>-<gRPC port>"].
    #[arg(long, env = "SHARDGATE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// How peers reach this instance's gRPC API [default: the listen address].
    #[arg(long, env = "SHARDGATE_ADVERTISE")]
    pub advertise: Option<String>,
    /// TOML file with the same keys as these flags, plus [limits] and [telegram].
    #[arg(long, env = "SHARDGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Embedded mode: the callers (TOML, `[[caller]]` tables with key digests
    /// and quotas). Re-read on SIGHUP and when it changes.
    #[arg(long, env = "SHARDGATE_CALLERS_FILE")]
    pub callers_file: Option<PathBuf>,
    /// Embedded mode: where broadcast jobs are kept (jobs.redb) [default:
    /// $XDG_STATE_HOME/shardgate, else ~/.local/state/shardgate].
    #[arg(long, env = "SHARDGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Refuse calls without a caller's key: on, off, or auto (on as soon as
    /// any caller exists) [default: auto].
    #[arg(long, env = "SHARDGATE_AUTH", value_enum)]
    pub auth: Option<AuthArg>,
    /// Serve gRPC over TLS with this PEM certificate chain (with --tls-key).
    /// Re-read on SIGHUP.
    #[arg(long, env = "SHARDGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert. Re-read on SIGHUP.
    #[arg(long, env = "SHARDGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: a client certificate they signed names the
    /// caller by its subject CN (a key works too). Needs --tls-cert.
    #[arg(long, env = "SHARDGATE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Open connections on the gRPC port at most; more wait in the kernel's
    /// backlog [default: 4096].
    #[arg(long, env = "SHARDGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    #[command(flatten)]
    pub etcd_access: EtcdAccessArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthArg {
    On,
    Off,
    Auto,
}

impl From<AuthArg> for shardgate_callers::AuthMode {
    fn from(a: AuthArg) -> Self {
        match a {
            AuthArg::On => shardgate_callers::AuthMode::On,
            AuthArg::Off => shardgate_callers::AuthMode::Off,
            AuthArg::Auto => shardgate_callers::AuthMode::Auto,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Seconds of load (the demo then waits for the queues to drain).
    #[arg(long, default_value_t = 24)]
    pub seconds: u64,
    /// Messages per second offered to the gateway.
    #[arg(long, default_value_t = 45)]
    pub rate: u32,
    /// Private chats the load is spread over.
    #[arg(long, default_value_t = 400)]
    pub chats: u32,
    /// Do not revoke a bot halfway.
    #[arg(long)]
    pub no_revoke: bool,
    /// Print the summary as JSON too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BroadcastArgs {
    /// The gateway's gRPC address.
    #[arg(
        long,
        env = "SHARDGATE_ADDR",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// The caller's API key (sent as authorization: Bearer KEY).
    #[arg(long, env = "SHARDGATE_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// Print JSON objects (one a line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: BroadcastCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BroadcastCommand {
    /// Create a job: one text to every chat of a file; prints the job id.
    Create {
        /// The message text.
        #[arg(long)]
        text: String,
        /// The recipients: one chat id a line (blank lines and # comments
        /// skipped), or - for stdin.
        #[arg(long)]
        chats: PathBuf,
        /// The job's lane: interactive, normal or bulk.
        #[arg(long, value_enum, default_value_t = PriorityArg::Bulk)]
        priority: PriorityArg,
        /// Answer the plan and ETA only; send and store nothing.
        #[arg(long)]
        dry_run: bool,
        /// The job's id (a repeated create with it answers the same job);
        /// default: one is made.
        #[arg(long)]
        id: Option<String>,
        /// Cap over the whole fleet, messages per second (0 = the limits).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// "", HTML, Markdown or MarkdownV2.
        #[arg(long, default_value = "")]
        parse_mode: String,
    },
    /// Draw a job's progress (rate, ETA) until it ends.
    Watch {
        /// The job's id.
        id: String,
    },
    /// A job's state and counters.
    Status {
        /// The job's id.
        id: String,
    },
    /// Stop handing out recipients.
    Pause {
        /// The job's id.
        id: String,
    },
    /// Carry on a paused job.
    Resume {
        /// The job's id.
        id: String,
    },
    /// End a job; the unsent count as failed (CANCELLED).
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Every finished recipient: chat id, bot, message id or error.
    Results {
        /// The job's id.
        id: String,
    },
    /// Every stored job.
    List,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    Interactive,
    Normal,
    Bulk,
}
