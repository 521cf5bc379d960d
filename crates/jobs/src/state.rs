//! A job's life: the states a job can be in and the moves between them.
//!
//! ```text
//!   planned                      (a dry run: answered, never stored, no moves)
//!   queued  -> running | paused | cancelled | failed
//!   running -> paused | done | cancelled | failed | queued (its runner let go)
//!   paused  -> queued | running | cancelled | failed
//!   done, cancelled, failed      (final: no moves)
//! ```
//!
//! Every move not in this table is refused, so a late "pause" cannot revive a
//! cancelled job and a finished job's counters are never touched again. A
//! move to the state the job is already in is refused too: the gateway
//! decides whether a repeated pause is an error or a no-op, not this table.

use std::fmt;
use std::str::FromStr;

use crate::JobError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// A dry run's answer: the plan and ETA; nothing is sent or kept.
    Planned,
    /// Stored, waiting for a runner (or for its start time).
    Queued,
    /// A runner is sending it.
    Running,
    /// Held by the caller; sends nothing until resumed.
    Paused,
    /// Every recipient delivered or failed.
    Done,
    /// Stopped by the caller; the unsent count as failed with `CANCELLED`.
    Cancelled,
    /// Stopped by the gateway (the template cannot be sent, for example).
    Failed,
}

/// Every state, in the order the table above lists them.
pub const ALL_STATES: [JobState; 7] = [
    JobState::Planned,
    JobState::Queued,
    JobState::Running,
    JobState::Paused,
    JobState::Done,
    JobState::Cancelled,
    JobState::Failed,
];

impl JobState {
    /// The name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Planned => "planned",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    /// Done, cancelled or failed: nothing pending, nothing will change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Cancelled | JobState::Failed
        )
    }

    /// Whether a runner should be driving the job now.
    pub fn wants_runner(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }

    /// Whether the table allows `self -> to`.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        match self {
            Planned | Done | Cancelled | Failed => false,
            Queued => matches!(to, Running | Paused | Cancelled | Failed),
            Running => matches!(to, Paused | Done | Cancelled | Failed | Queued),
            Paused => matches!(to, Queued | Running | Cancelled | Failed),
        }
    }

    /// The move `self -> to`, or why not.
    pub fn transition(self, to: JobState) -> Result<JobState, JobError> {
        if self.can_move_to(to) {
            Ok(to)
        } else {
            Err(JobError::IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = JobError;

    fn from_str(s: &str) -> Result<JobState, JobError> {
        ALL_STATES
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| JobError::UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_and_unknown_names_are_refused() {
        for st in ALL_STATES {
            assert_eq!(st.as_str().parse::<JobState>().ok(), Some(st));
        }
        assert!("RUNNING".parse::<JobState>().is_err());
    }

    #[test]
    fn final_states_and_planned_have_no_moves_at_all() {
        for from in ALL_STATES
            .into_iter()
            .filter(|s| s.is_final() || *s == JobState::Planned)
        {
            for to in ALL_STATES {
                assert!(from.transition(to).is_err(), "{from} -> {to} allowed");
            }
        }
    }

    #[test]
    fn no_state_moves_to_itself_or_back_to_planned() {
        for st in ALL_STATES {
            assert!(!st.can_move_to(st));
            assert!(!st.can_move_to(JobState::Planned));
        }
    }

    #[test]
    fn a_live_job_can_always_be_cancelled_or_failed_and_only_running_finishes_done() {
        use JobState::*;
        for st in [Queued, Running, Paused] {
            assert!(st.can_move_to(Cancelled) && st.can_move_to(Failed));
            assert_eq!(st.can_move_to(Done), st == Running);
        }
        assert_eq!(
            Paused.transition(Running).ok(),
            Some(Running),
            "resume with a runner at hand"
        );
        assert_eq!(Running.transition(Queued).ok(), Some(Queued), "runner left");
    }
}
