//! `shardgate bot ...`: the operators' commands on the bots in etcd.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use shardgate_etcd::Admin;
use shardgate_registry::BotsFile;

use crate::cli::{BotArgs, BotCommand};
use crate::serve::runtime;

pub fn run(args: BotArgs) -> anyhow::Result<ExitCode> {
    // Reading files and stdin happens before the runtime starts.
    let command = match args.command {
        BotCommand::Add { name, token } => Op::Add(name, read_token(token)?),
        BotCommand::Rotate { name, token } => Op::Rotate(name, read_token(token)?),
        BotCommand::Revoke { name, reason } => Op::Revoke(name, reason),
        BotCommand::Enable { name, disable } => Op::Enable(name, !disable),
        BotCommand::List { json } => Op::List(json),
        BotCommand::Import { file } => Op::Import(BotsFile::load(&file)?),
    };
    let endpoints = crate::etcd_access::endpoints(&args.etcd)?;
    let access = args.access.load()?;
    runtime()?.block_on(async move {
        let admin = Admin::connect(&endpoints, &args.cluster, &access)
            .await
            .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
        match command {
            Op::Add(name, token) => {
                admin.add(&name, &token).await?;
                println!("added bot {name}");
            }
            Op::Rotate(name, token) => {
                admin.rotate(&name, &token).await?;
                println!(
                    "rotated the token of bot {name}; its owner uses it from the next request"
                );
            }
            Op::Revoke(name, reason) => {
                admin.revoke(&name, &reason).await?;
                println!("bot {name} is out of rotation (revoked) until rotated or enabled");
            }
            Op::Enable(name, enabled) => {
                admin.enable(&name, enabled).await?;
                println!(
                    "bot {name} {}",
                    if enabled { "enabled" } else { "disabled" }
                );
            }
            Op::List(json) => {
                let rows = admin.list().await?;
                if json {
                    for r in rows {
                        println!("{}", serde_json::to_string(&r)?);
                    }
                } else {
                    println!(
                        "{:<20} {:<10} {:<20} {:<12} {:<16} REASON",
                        "NAME", "STATE", "OWNER", "COOLDOWN", "TOKEN"
                    );
                    let now = shardgate_registry::unix_now();
                    for r in rows {
                        let cooldown = r
                            .cooldown_until
                            .filter(|u| *u > now)
                            .map_or_else(|| "-".to_owned(), |u| format!("{}s", u - now));
                        println!(
                            "{:<20} {:<10} {:<20} {:<12} {:<16} {}",
                            r.name,
                            r.state,
                            r.owner.as_deref().unwrap_or("-"),
                            cooldown,
                            r.token_redacted,
                            r.reason
                        );
                    }
                }
            }
            Op::Import(file) => {
                let report = admin.import(&file).await?;
                println!(
                    "imported: {} added, {} rotated, {} enabled/disabled, {} unchanged",
                    report.added.len(),
                    report.rotated.len(),
                    report.toggled.len(),
                    report.unchanged.len()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

enum Op {
    Add(String, String),
    Rotate(String, String),
    Revoke(String, String),
    Enable(String, bool),
    List(bool),
    Import(BotsFile),
}

/// `-` reads the token from standard input (so it stays out of `ps`).
fn read_token(arg: String) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the token from stdin")?;
    Ok(s.trim().to_owned())
}
