//! `shardgate-chaos`: the chaos drill runner behind `chaos/run`.
//!
//! `chaos/run DRILL [--quick] [--out DIR]` or `chaos/run all`: each drill
//! is a TOML file in `chaos/` (scenario.rs says what it may hold); the
//! runner starts a loopback cluster, drives load, injects the drill's
//! faults, and writes `DIR/DRILL.md` and `DIR/DRILL.svg`. Exit status 0
//! only when every criterion of every drill run passed; 1 when one failed;
//! 2 when a drill could not run at all; 130 on Ctrl-C (after stopping
//! everything it started).

mod chart;
mod cluster;
mod drill;
mod load;
mod observe;
mod report;
mod scenario;
mod series;
mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::drill::Setup;
use crate::scenario::Scenario;

#[derive(Parser, Debug)]
#[command(
    name = "chaos/run",
    about = "Run Shardgate's chaos drills against a local cluster"
)]
struct Args {
    /// A drill name (a file DRILL.toml in the scenarios directory), or `all`.
    #[arg(required = true)]
    drills: Vec<String>,
    /// Short version of each drill (under a minute each), for CI.
    #[arg(long)]
    quick: bool,
    /// Where the reports, charts and gateway logs go.
    #[arg(long, default_value = "chaos/out")]
    out: PathBuf,
    /// The directory of drill files.
    #[arg(long, default_value = "chaos", env = "SHARDGATE_CHAOS_DIR")]
    scenarios: PathBuf,
    /// The `shardgate` binary to run as the gateways.
    #[arg(
        long,
        default_value = "target/release/shardgate",
        env = "SHARDGATE_BIN"
    )]
    shardgate: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos/run: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        tokio::select! {
            code = run_all(args) => code,
            _ = interrupted() => {
                // Dropping run_all's future dropped the cluster: every
                // process it started is stopped by now.
                eprintln!("\nchaos/run: interrupted; everything it started is stopped");
                ExitCode::from(130)
            }
        }
    })
}

async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run_all(args: Args) -> ExitCode {
    let drills = match drill_names(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("chaos/run: {e:#}");
            return ExitCode::from(2);
        }
    };
    let setup = Setup {
        shardgate: args.shardgate.clone(),
        out: args.out.clone(),
    };
    let mut results: Vec<(String, Result<bool>)> = Vec::new();
    for name in &drills {
        let r = run_one(name, &args, &setup).await;
        if let Err(e) = &r {
            eprintln!("[{name}] could not run: {e:#}");
        }
        results.push((name.clone(), r));
    }
    eprintln!(
        "\n== chaos drills{}",
        if args.quick { " (quick)" } else { "" }
    );
    // 2 (could not run) outranks 1 (failed).
    let mut worst = 0u8;
    for (name, r) in &results {
        let (verdict, code) = match r {
            Ok(true) => ("PASS", 0),
            Ok(false) => ("FAIL", 1),
            Err(_) => ("ERROR", 2),
        };
        worst = worst.max(code);
        eprintln!("  {verdict:<5} {name}");
    }
    ExitCode::from(worst)
}

async fn run_one(name: &str, args: &Args, setup: &Setup) -> Result<bool> {
    let path = drill::scenario_path(&args.scenarios, name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let plan = Scenario::load(&path)?.plan(name, args.quick)?;
    let outcome = drill::run(&plan, &text, setup).await?;
    eprintln!(
        "[{name}] {}: report {}\n{}",
        if outcome.passed { "PASS" } else { "FAIL" },
        outcome.report.display(),
        outcome.summary
    );
    Ok(outcome.passed)
}

/// The drills to run: `all` is every `*.toml` in the scenarios directory.
fn drill_names(args: &Args) -> Result<Vec<String>> {
    if !args.shardgate.is_file() {
        bail!(
            "{} not found: build it first (chaos/run does: cargo build --release)",
            args.shardgate.display()
        );
    }
    if args.drills.iter().any(|d| d == "all") {
        let mut names: Vec<String> = std::fs::read_dir(&args.scenarios)
            .with_context(|| format!("listing {}", args.scenarios.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "toml")
                    .then(|| p.file_stem()?.to_str().map(str::to_owned))
                    .flatten()
            })
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("no drill files (*.toml) in {}", args.scenarios.display());
        }
        return Ok(names);
    }
    for d in &args.drills {
        let p = drill::scenario_path(&args.scenarios, d);
        if !p.is_file() {
            bail!("no drill {d:?}: {} does not exist", p.display());
        }
    }
    Ok(args.drills.clone())
}
