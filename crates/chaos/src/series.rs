//! The chart's data: per-second counts read off a run's records (the
//! emulator's delivery log and counters, the callers' final answers).

use std::collections::HashMap;

use crate::cluster::{bot_id, bot_name, rotated_bot_id};
use crate::load::Answer;
use crate::verdict::Run;

/// Per-second series for the chart: deliveries per bot (a rotated token
/// counts for its bot), unforced and forced 429s, and final errors.
pub struct Series {
    pub seconds: usize,
    pub per_bot: Vec<(String, Vec<u64>)>,
    pub rate_limited: Vec<u64>,
    pub forced_429: Vec<u64>,
    pub errors: Vec<u64>,
}

impl Series {
    pub fn compute(run: &Run) -> Series {
        let end = run
            .samples
            .last()
            .map_or(run.duration, |s| s.at.max(run.duration));
        let seconds = end.as_secs() as usize + 1;
        let mut per_bot: Vec<(String, Vec<u64>)> = (0..run.bots)
            .map(|i| (bot_name(i), vec![0; seconds]))
            .collect();
        let index: HashMap<u64, usize> = (0..run.bots)
            .flat_map(|i| [(bot_id(i), i), (rotated_bot_id(i), i)])
            .collect();
        for d in run.deliveries {
            let s = (d.at_ms.saturating_sub(run.start_unix_ms) / 1000) as usize;
            if let (Some(i), true) = (index.get(&d.bot_id), s < seconds) {
                per_bot[*i].1[s] += 1;
            }
        }
        let mut rate_limited = vec![0; seconds];
        let mut forced_429 = vec![0; seconds];
        let mut prev = (0u64, 0u64);
        for s in run.samples {
            let i = (s.at.as_secs() as usize).min(seconds - 1);
            let t = &s.stats.totals;
            let now = (
                t.rate_limited - t.rate_limited_forced,
                t.rate_limited_forced,
            );
            rate_limited[i] += now.0.saturating_sub(prev.0);
            forced_429[i] += now.1.saturating_sub(prev.1);
            prev = now;
        }
        let mut errors = vec![0; seconds];
        for m in &run.record.msgs {
            if let (Some(Answer::Failed { .. }), Some(at)) = (&m.last, m.answered) {
                errors[(at.as_secs() as usize).min(seconds - 1)] += 1;
            }
        }
        Series {
            seconds,
            per_bot,
            rate_limited,
            forced_429,
            errors,
        }
    }
}
