//! What the demo tells its user: the opening lines (what runs where, what
//! load comes), and at the end the summary table, the optional JSON line and
//! the verdict (PASS only if nothing was lost or failed and no 429 was seen).

use std::process::ExitCode;
use std::time::Duration;

use shardgate_mock::Stats;
use shardgate_proto::v1::StatusResponse;

use super::load::{Failover, HOT_GROUP_MESSAGES, REVOKED};
use super::progress::Answers;
use super::setup::{BOTS, CALLER, Stage};
use crate::cli::DemoArgs;

/// Where the emulator and the gateway listen, and the load to come.
pub fn print_intro(stage: &Stage, args: &DemoArgs) {
    println!(
        "Shardgate demo: Bot API emulator with Telegram's limits at {}, gateway at {} with bots {}.",
        stage.mock.base_url(),
        stage.local.addr,
        BOTS.map(|b| b.0).join(", ")
    );
    println!(
        "Auth on: one caller, `{CALLER}`, sends with its key; a call without a key was {}.",
        if stage.keyless_refused {
            "refused (UNAUTHENTICATED)"
        } else {
            "NOT refused"
        }
    );
    println!(
        "Load: {} msg/s over {} private chats for {} s, plus a burst of {HOT_GROUP_MESSAGES} into one hot group (20/min allowed){}.\n",
        args.rate,
        args.chats,
        args.seconds,
        if args.no_revoke {
            ""
        } else {
            "; bot bravo's token is revoked halfway"
        }
    );
}

/// Everything the summary reports, gathered once the load is over.
pub struct Report {
    /// A call without the caller's key was refused.
    pub keyless_refused: bool,
    /// Since the demo started.
    pub took: Duration,
    /// Messages the producer offered.
    pub accepted: u64,
    pub answers: Answers,
    /// What the emulator counted.
    pub stats: Stats,
    /// Whether a bot was to be revoked halfway.
    pub revoke: bool,
    pub failover: Option<Failover>,
    /// The gateway's `Status` at the end, if it answered.
    pub status: Option<StatusResponse>,
}

impl Report {
    /// Messages that got no answer at all.
    fn lost(&self) -> u64 {
        let answered = self.answers.delivered + self.answers.failed_total();
        self.accepted.saturating_sub(answered)
    }

    /// Nothing lost, nothing failed, no 429, and the revoked bot (if any)
    /// left rotation.
    fn passed(&self) -> bool {
        self.keyless_refused
            && self.lost() == 0
            && self.answers.failed_total() == 0
            && self.stats.totals.rate_limited == 0
            && (!self.revoke || self.failover.is_some())
    }

    pub fn exit_code(&self) -> ExitCode {
        if self.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// The summary table, the JSON line when `json`, and the verdict.
    pub fn print(&self, json: bool) {
        self.print_table();
        if json {
            self.print_json();
        }
        println!(
            "\n{}",
            if self.passed() {
                "PASS: nothing lost, no 429."
            } else {
                "FAIL: see above."
            }
        );
    }

    fn print_table(&self) {
        let a = &self.answers;
        let failed = a.failed_total();
        let totals = &self.stats.totals;
        let q = |p: f64| Duration::from_micros(a.latency.value_at_quantile(p));
        println!("Shardgate demo summary ({:.1} s)", self.took.as_secs_f64());
        println!("  {:<26} {}", "messages accepted", self.accepted);
        println!(
            "  {:<26} {}   ({})",
            "delivered",
            a.delivered,
            a.per_bot
                .iter()
                .map(|(b, n)| format!("{b} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  {:<26} {}{}",
            "failed",
            failed,
            if failed > 0 {
                format!("   {:?}", a.failed)
            } else {
                String::new()
            }
        );
        println!("  {:<26} {}", "lost", self.lost());
        println!("  {:<26} {}", "429s seen (emulator)", totals.rate_limited);
        println!("  {:<26} {}", "duplicates (emulator)", totals.duplicates);
        println!(
            "  {:<26} p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
            "latency (gRPC, in queue)",
            q(0.50),
            q(0.95),
            q(0.99),
            Duration::from_micros(a.latency.max())
        );
        match (self.revoke, self.failover) {
            (false, _) => {}
            (true, Some((at, took))) => println!(
                "  {:<26} bravo revoked at {:.1} s; out of rotation {:?} later ({} 401 seen; {} messages retried elsewhere)",
                "failover",
                at.as_secs_f64(),
                took,
                self.stats.bot(BOTS[REVOKED].1).unauthorized,
                a.rerouted
            ),
            (true, None) => println!("  {:<26} bravo was NOT taken out of rotation", "failover"),
        }
        if let Some(status) = &self.status {
            let states: Vec<String> = status
                .bots
                .iter()
                .map(|b| format!("{} {}", b.name, b.state))
                .collect();
            println!("  {:<26} {}", "bots now", states.join(", "));
        }
    }

    fn print_json(&self) {
        let a = &self.answers;
        println!(
            "{{\"accepted\":{},\"delivered\":{},\"failed\":{},\"lost\":{},\"rate_limited\":{},\"p50_us\":{},\"p99_us\":{},\"failover_ms\":{}}}",
            self.accepted,
            a.delivered,
            a.failed_total(),
            self.lost(),
            self.stats.totals.rate_limited,
            a.latency.value_at_quantile(0.5),
            a.latency.value_at_quantile(0.99),
            self.failover.map_or(-1, |(_, d)| d.as_millis() as i64)
        );
    }
}
