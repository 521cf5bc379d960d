//! `loadgen`: drives Shardgate's gRPC API (`SendStream` over N connections or
//! unary `Send`), or the Bot API emulator directly (`--bare-http`), and
//! reports what got through against the ceiling the limits allow.
//!
//! Two ways to run:
//! - `--embedded`: starts the emulator (official or lifted limits) and the
//!   gateway in this process, like `shardgate demo` does;
//! - `--target URL`: an already running gateway; `--emulator URL` lets it read
//!   the emulator's counters (`GET /_mock/stats`) for the 429s.
//!
//! The final table: delivered/s overall, per bot and per class of chat; the
//! ceiling per bot (`min(bot rate, sum of the per-chat/group rates of the
//! chats routed to it)`, i.e. `Limits::ceiling_per_s` per bot) and the ratio,
//! both over the steady-state window (warm-up excluded; with groups the window
//! is a whole number of group windows, since groups send in bursts);
//! 429s from the emulator; latency p50/p95/p99/max; queue depth over time
//! (`Status`, every second); RSS of this process (embedded mode).

mod args;
mod drive;
mod embedded;
mod phases;
mod procfs;
mod record;
mod report;
mod run;
mod sampler;
mod setup;
mod soak;
mod table;
mod workload;

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;

use crate::args::Args;

fn main() -> anyhow::Result<ExitCode> {
    let mut args = Args::parse();
    args.apply_smoke();
    args.apply_soak();
    // reqwest is built without a default crypto provider (workspace-wide);
    // the bare-HTTP loop and `--emulator` stats need one even for http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !args.embedded && args.target.is_none() {
        bail!("say where to send: --embedded, or --target URL of a running gateway");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.worker_threads {
        rt.worker_threads(n);
    }
    rt.build()?.block_on(run::run(args))
}
