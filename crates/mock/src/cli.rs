//! Command-line flags for running the emulator standalone (`shardgate mock`), and
//! [`serve_until`], which runs it until a shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::MockConfig;
use crate::faults::Faults;
use crate::limits::Limits;
use crate::server::MockServer;

/// Flags of the standalone emulator. Every flag can also come from `SHARDGATE_MOCK_<FLAG>`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct MockArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SHARDGATE_MOCK_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Disable every rate limit (throughput benchmarks).
    #[arg(long, env = "SHARDGATE_MOCK_NO_LIMITS")]
    pub no_limits: bool,
    /// Per (bot, chat) burst.
    #[arg(long, env = "SHARDGATE_MOCK_CHAT_BURST", default_value_t = 3)]
    pub chat_burst: u32,
    /// Per (bot, chat) refill rate, messages per second.
    #[arg(long, env = "SHARDGATE_MOCK_CHAT_RATE", default_value_t = 1.0)]
    pub chat_rate: f64,
    /// Per (bot, group) messages allowed per group window.
    #[arg(long, env = "SHARDGATE_MOCK_GROUP_MAX", default_value_t = 20)]
    pub group_max: u32,
    /// Group window, seconds.
    #[arg(long, env = "SHARDGATE_MOCK_GROUP_WINDOW_SECS", default_value_t = 60)]
    pub group_window_secs: u64,
    /// Per bot messages allowed per bot window.
    #[arg(long, env = "SHARDGATE_MOCK_BOT_MAX", default_value_t = 30)]
    pub bot_max: u32,
    /// Bot window, milliseconds.
    #[arg(long, env = "SHARDGATE_MOCK_BOT_WINDOW_MS", default_value_t = 1000)]
    pub bot_window_ms: u64,
    /// Messages per bot window a bot may send with `allow_paid_broadcast` (0: no paid lane).
    #[arg(long, env = "SHARDGATE_MOCK_PAID_BOT_MAX", default_value_t = 1000)]
    pub paid_bot_max: u32,
    /// Added latency, `MIN..MAX` milliseconds (uniform) or a fixed `N`.
    #[arg(long, env = "SHARDGATE_MOCK_LATENCY_MS", value_parser = parse_latency, value_name = "MIN..MAX")]
    pub latency_ms: Option<(u64, u64)>,
    /// Probability (0..=1) of answering 500/502.
    #[arg(long = "error-5xx", env = "SHARDGATE_MOCK_ERROR_5XX", default_value_t = 0.0, value_parser = parse_probability)]
    pub error_5xx: f64,
    /// Probability (0..=1) of dropping the connection without answering.
    #[arg(long, env = "SHARDGATE_MOCK_DROP", default_value_t = 0.0, value_parser = parse_probability)]
    pub drop: f64,
    /// Deliveries kept in the log.
    #[arg(
        long,
        env = "SHARDGATE_MOCK_MAX_DELIVERIES",
        default_value_t = 1_000_000
    )]
    pub max_deliveries: usize,
    /// Seed for the fault dice (default: random).
    #[arg(long, env = "SHARDGATE_MOCK_SEED")]
    pub seed: Option<u64>,
}

impl MockArgs {
    /// The emulator configuration these flags describe.
    pub fn config(&self) -> MockConfig {
        let limits = (!self.no_limits).then(|| Limits {
            chat_burst: self.chat_burst,
            chat_rate_per_s: self.chat_rate,
            group_max: self.group_max,
            group_window: Duration::from_secs(self.group_window_secs),
            bot_max: self.bot_max,
            bot_window: Duration::from_millis(self.bot_window_ms),
        });
        MockConfig {
            limits,
            faults: Faults {
                error_5xx: self.error_5xx,
                drop: self.drop,
                latency_ms: self.latency_ms.unwrap_or((0, 0)),
                retry_after: None,
            },
            max_deliveries: self.max_deliveries,
            seed: self.seed,
            paid_bot_max: self.paid_bot_max,
        }
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

fn parse_latency(raw: &str) -> Result<(u64, u64), String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("expected MIN..MAX or N milliseconds, got {raw:?}"))
    };
    let (lo, hi) = match raw.split_once("..") {
        Some((lo, hi)) => (number(lo)?, number(hi.trim_start_matches('='))?),
        None => {
            let n = number(raw)?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(format!("latency MIN must not exceed MAX in {raw:?}"));
    }
    Ok((lo, hi))
}

fn parse_probability(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a probability within 0..=1, got {raw:?}")),
    }
}

/// Runs the emulator with `args` until `shutdown` completes, printing where it listens and
/// its control endpoints.
pub async fn serve_until(
    args: MockArgs,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = args.config();
    let server = MockServer::start(config.clone(), args.listen()).await?;
    let url = server.base_url();
    println!("Bot API emulator listening on {url}");
    println!("  Bot API:  {url}/bot<token>/sendMessage  {url}/bot<token>/getMe");
    match config.limits {
        Some(l) => println!(
            "  limits:   chat {} burst at {}/s, group {} per {:?}, bot {} per {:?}",
            l.chat_burst, l.chat_rate_per_s, l.group_max, l.group_window, l.bot_max, l.bot_window
        ),
        None => println!("  limits:   off"),
    }
    if !config.faults.is_none() {
        let f = config.faults;
        println!(
            "  faults:   5xx {:.3}, drop {:.3}, latency {}..{} ms",
            f.error_5xx, f.drop, f.latency_ms.0, f.latency_ms.1
        );
    }
    println!(
        "  control:  GET  {url}/_mock/stats | {url}/_mock/deliveries?since=SEQ | {url}/_mock/limits | {url}/_mock/health"
    );
    println!(
        "            POST {url}/_mock/revoke | unrevoke | throttle | unthrottle | faults | chat | limits | reset"
    );
    shutdown.await;
    server.shutdown().await;
    println!("Bot API emulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mock: MockArgs,
    }

    fn parse(args: &[&str]) -> Result<MockArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("mock").chain(args.iter().copied())).map(|c| c.mock)
    }

    #[test]
    fn defaults_are_official() -> Result<(), clap::Error> {
        let a = parse(&[])?;
        assert_eq!(a.listen().to_string(), "127.0.0.1:8081");
        assert_eq!(a.config(), MockConfig::default());
        Ok(())
    }

    #[test]
    fn flags_map_to_config() -> Result<(), clap::Error> {
        let a = parse(&[
            "--listen",
            "0.0.0.0:0",
            "--chat-burst",
            "5",
            "--chat-rate",
            "0.5",
            "--group-max",
            "10",
            "--group-window-secs",
            "30",
            "--bot-max",
            "100",
            "--bot-window-ms",
            "2000",
            "--latency-ms",
            "5..20",
            "--error-5xx",
            "0.2",
            "--drop",
            "0.1",
        ])?;
        let c = a.config();
        let l = c.limits.unwrap_or_else(Limits::official);
        assert_eq!(l.chat_burst, 5);
        assert_eq!(l.chat_rate_per_s, 0.5);
        assert_eq!(l.group_max, 10);
        assert_eq!(l.group_window, Duration::from_secs(30));
        assert_eq!(l.bot_max, 100);
        assert_eq!(l.bot_window, Duration::from_secs(2));
        assert_eq!(c.faults.latency_ms, (5, 20));
        assert_eq!(c.faults.error_5xx, 0.2);
        assert_eq!(c.faults.drop, 0.1);
        assert_eq!(parse(&["--no-limits"])?.config().limits, None);
        assert_eq!(parse(&["--latency-ms", "7"])?.latency_ms, Some((7, 7)));
        Ok(())
    }

    #[tokio::test]
    async fn serve_until_starts_and_stops() -> Result<(), Box<dyn std::error::Error>> {
        let args = parse(&["--listen", "127.0.0.1:0", "--no-limits"])?;
        tokio::time::timeout(Duration::from_secs(10), serve_until(args, async {})).await??;
        Ok(())
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert!(parse(&["--drop", "1.5"]).is_err());
        assert!(parse(&["--latency-ms", "20..5"]).is_err());
        assert!(parse(&["--latency-ms", "x"]).is_err());
    }
}
