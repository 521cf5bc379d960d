//! `shardgate`: the gateway daemon, the Bot API emulator and the demo in one
//! binary. This file only parses the command line and hands over; each
//! subcommand lives in its own module.

mod bot;
mod broadcast;
mod caller;
mod cli;
mod cli_reference;
mod demo;
mod etcd_access;
mod serve;
mod settings;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // Before anything can panic with a token or key in its message.
    shardgate_telemetry::install_panic_hook();
    let cli = Cli::parse();
    let log_format = cli.log_format;
    // The demo draws a progress bar; keep its logs to warnings unless asked.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    let telemetry = shardgate_telemetry::init(shardgate_telemetry::TelemetryConfig {
        format: match log_format {
            cli::LogFormat::Text => shardgate_telemetry::LogFormat::Text,
            cli::LogFormat::Json => shardgate_telemetry::LogFormat::Json,
        },
        default_level: default_level.into(),
        service_name: None,
    });
    let _telemetry = match telemetry {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("shardgate: telemetry not initialised: {e}");
            None
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Mock(args) => serve::run_mock(args),
        Command::Demo(args) => demo::run(args),
        Command::Bot(args) => bot::run(args),
        Command::Caller(args) => caller::run(args),
        Command::Broadcast(args) => broadcast::run(args),
        Command::Docs(args) => cli_reference::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = shardgate_telegram::redact_tokens(&format!("{e:#}")).into_owned();
            eprintln!("shardgate: error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
