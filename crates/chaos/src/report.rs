//! `DIR/DRILL.md`: the scenario, the timeline, each criterion with its
//! measured figure and verdict, the raw figures, and where to look next.

use std::fmt::Write as _;
use std::time::Duration;

use crate::scenario::Plan;
use crate::verdict::{Check, Figures};

pub struct Report<'a> {
    pub plan: &'a Plan,
    pub scenario_text: &'a str,
    pub started: &'a str,
    pub host: &'a str,
    /// (moment, what happened), in time order.
    pub timeline: &'a [(Duration, String)],
    pub checks: &'a [Check],
    pub figures: &'a Figures,
    pub logs_dir: &'a str,
    pub elapsed: Duration,
}

impl Report<'_> {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    pub fn markdown(&self) -> String {
        let p = self.plan;
        let s = &p.scenario;
        let f = self.figures;
        let mut md = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(md, "# Drill `{}`: {verdict}\n", p.name);
        let _ = writeln!(md, "{}\n", s.description.trim());
        let _ = writeln!(
            md,
            "Run {} on {}, {} run (`chaos/run {}{}`), {:.0} s in all.\n",
            self.started,
            self.host,
            if p.quick { "quick" } else { "full" },
            p.name,
            if p.quick { " --quick" } else { "" },
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(md, "![timeline]({}.svg)\n", p.name);
        let _ = writeln!(md, "## Criteria\n");
        let _ = writeln!(md, "| criterion | wanted | measured | result |");
        let _ = writeln!(md, "|---|---|---|---|");
        for c in self.checks {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} |",
                c.name,
                c.wanted,
                c.measured,
                if c.pass { "pass" } else { "**FAIL**" }
            );
        }
        if self.checks.is_empty() {
            let _ = writeln!(md, "| (none set) | | | |");
        }
        let _ = writeln!(
            md,
            "\nMoments (failover, takeover, re-sync) are read off every instance's `Status`, \
             polled every {} ms: that is their resolution.",
            crate::observe::POLL.as_millis()
        );
        let _ = writeln!(md, "\n## Timeline\n");
        let _ = writeln!(md, "| t (s) | event |");
        let _ = writeln!(md, "|---:|---|");
        for (t, what) in self.timeline {
            let _ = writeln!(md, "| {:.2} | {what} |", t.as_secs_f64());
        }
        let _ = writeln!(md, "\n## Figures\n");
        let failed = if f.failed.is_empty() {
            "none".to_owned()
        } else {
            f.failed
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rows = [
            ("background sends", f.sent.to_string()),
            (
                "delivered at the first attempt",
                format!("{} ({:.2}%)", f.first_try_ok, f.first_try_ratio() * 100.0),
            ),
            (
                "delivered in the end (after the caller's retries)",
                f.delivered.to_string(),
            ),
            ("sends retried by the caller", f.retried.to_string()),
            (
                "hot-group sends / delivered",
                format!("{} / {}", f.sent_hot, f.delivered_hot),
            ),
            ("final errors, by code", failed),
            ("never answered", f.unanswered.to_string()),
            (
                "lost (unanswered, or answered delivered but not in the log)",
                f.lost.to_string(),
            ),
            (
                "delivered twice or more (extra copies)",
                f.duplicates.to_string(),
            ),
            ("answered with an error yet delivered", f.ghosts.to_string()),
            ("429 from the emulator's limits", f.rate_limited.to_string()),
            ("429 forced by the drill", f.forced_429.to_string()),
            (
                "Bot API requests the emulator received",
                f.bot_api_requests.to_string(),
            ),
            (
                "faults injected: 5xx answers / dropped connections",
                format!("{} / {}", f.injected_5xx, f.injected_drops),
            ),
            (
                "largest queue depth of one bot",
                f.max_queue_depth.to_string(),
            ),
        ];
        let _ = writeln!(md, "| figure | value |");
        let _ = writeln!(md, "|---|---:|");
        for (k, v) in rows {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        let _ = writeln!(
            md,
            "\nCluster: {} instances, {} bots. Load: {} msg/s over {} private chats and {} groups \
             ({:.0}% to groups), deadline {} ms, {} caller retries, {:.0} s.\n",
            s.cluster.instances,
            s.cluster.bots,
            s.load.rate,
            s.load.private_chats,
            s.load.groups,
            s.load.group_share * 100.0,
            s.load.timeout_ms,
            s.load.retries,
            p.duration.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "## Scenario file\n\n```toml\n{}\n```\n",
            self.scenario_text.trim()
        );
        let _ = writeln!(md, "## When it fails\n");
        let _ = writeln!(
            md,
            "Each gateway's log is in `{}/`. README's \"Operating Shardgate\" says what each \
             criterion means and what to look at first.",
            self.logs_dir
        );
        md
    }

    /// The terminal summary: one line per criterion.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for c in self.checks {
            let _ = writeln!(
                out,
                "  {} {:<26} wanted {:<10} measured {}",
                if c.pass { "ok  " } else { "FAIL" },
                c.name,
                c.wanted,
                c.measured
            );
        }
        out
    }
}
