//! How a job's records are written as bytes, for every store (the embedded
//! file and etcd's `jobs/<id>/` keys alike): protobuf messages declared
//! here, not in the API's `.proto`, since they are storage, not wire.
//!
//! Protobuf's rules give the records room to grow: a new field gets a new
//! tag, and an older reader skips it. Every decoded record is checked
//! against the same invariants the types keep ([`Counters::from_parts`],
//! [`ProgressRecord::check`], [`Manifest::new`]), so a damaged record is an
//! error, never a job with impossible counters.

use std::collections::BTreeMap;

use prost::Message;

use crate::JobError;
use crate::counters::Counters;
use crate::pack::Manifest;
use crate::progress::{ProgressRecord, RecipientResult, ResultError};
use crate::spec::{JobId, JobSpec, Priority, Template};
use crate::store::{JobMeta, JobStatus};

#[derive(Clone, PartialEq, Message)]
struct MetaPb {
    #[prost(string, tag = "1")]
    id: String,
    /// One of send_template / call_template is set.
    #[prost(bytes = "vec", tag = "2")]
    send_template: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    call_template: Vec<u8>,
    /// 0 interactive, 1 normal, 2 bulk.
    #[prost(uint32, tag = "4")]
    priority: u32,
    #[prost(uint32, tag = "5")]
    rate_per_s: u32,
    #[prost(int64, tag = "6")]
    start_at: i64,
    #[prost(int64, tag = "7")]
    created_at: i64,
    #[prost(uint32, repeated, tag = "8")]
    chunk_counts: Vec<u32>,
    /// The creating caller's name; empty with auth off.
    #[prost(string, tag = "9")]
    caller: String,
}

#[derive(Clone, PartialEq, Message)]
struct StatusPb {
    #[prost(string, tag = "1")]
    state: String,
    #[prost(uint64, tag = "2")]
    rev: u64,
    #[prost(int64, tag = "3")]
    finished_at: i64,
    #[prost(uint64, tag = "4")]
    next: u64,
    #[prost(sint64, repeated, tag = "5")]
    in_flight: Vec<i64>,
    #[prost(sint64, repeated, tag = "6")]
    redo: Vec<i64>,
    #[prost(uint64, tag = "7")]
    total: u64,
    #[prost(uint64, tag = "8")]
    delivered: u64,
    #[prost(btree_map = "string, uint64", tag = "9")]
    failed_by_code: BTreeMap<String, u64>,
    #[prost(uint64, tag = "10")]
    possible_duplicates: u64,
}

#[derive(Clone, PartialEq, Message)]
struct ResultPb {
    #[prost(sint64, tag = "1")]
    chat_id: i64,
    #[prost(string, tag = "2")]
    bot: String,
    #[prost(int64, tag = "3")]
    message_id: i64,
    /// Empty: delivered.
    #[prost(string, tag = "4")]
    error_code: String,
    #[prost(string, tag = "5")]
    error_message: String,
}

fn corrupt(_: prost::DecodeError) -> JobError {
    JobError::Corrupt("record does not decode")
}

/// A job's immutable part: spec (a dry run is never stored), creation time
/// and where its recipients are.
pub fn encode_meta(meta: &JobMeta) -> Vec<u8> {
    let (send_template, call_template) = match &meta.spec.template {
        Template::Send(b) => (b.clone(), Vec::new()),
        Template::Call(b) => (Vec::new(), b.clone()),
    };
    MetaPb {
        id: meta.spec.id.as_str().to_owned(),
        send_template,
        call_template,
        priority: match meta.spec.priority {
            Priority::Interactive => 0,
            Priority::Normal => 1,
            Priority::Bulk => 2,
        },
        rate_per_s: meta.spec.rate_per_s,
        start_at: meta.spec.start_at,
        created_at: meta.created_at,
        chunk_counts: meta.manifest.chunk_counts().to_vec(),
        caller: meta.spec.caller.clone(),
    }
    .encode_to_vec()
}

pub fn decode_meta(bytes: &[u8]) -> Result<JobMeta, JobError> {
    let pb = MetaPb::decode(bytes).map_err(corrupt)?;
    let template = match (pb.send_template.is_empty(), pb.call_template.is_empty()) {
        (false, true) => Template::Send(pb.send_template),
        (true, false) => Template::Call(pb.call_template),
        _ => return Err(JobError::Corrupt("job has no single template")),
    };
    let priority = match pb.priority {
        0 => Priority::Interactive,
        1 => Priority::Normal,
        2 => Priority::Bulk,
        _ => return Err(JobError::Corrupt("unknown priority")),
    };
    Ok(JobMeta {
        spec: JobSpec {
            id: JobId::new(&pb.id)?,
            template,
            priority,
            rate_per_s: pb.rate_per_s,
            start_at: pb.start_at,
            dry_run: false,
            caller: pb.caller,
        },
        created_at: pb.created_at,
        manifest: Manifest::new(pb.chunk_counts)?,
    })
}

/// A job's changing part: state, revision and progress.
pub fn encode_status(status: &JobStatus) -> Vec<u8> {
    let p = &status.progress;
    StatusPb {
        state: status.state.as_str().to_owned(),
        rev: status.rev,
        finished_at: status.finished_at,
        next: p.next,
        in_flight: p.in_flight.clone(),
        redo: p.redo.clone(),
        total: p.counters.total(),
        delivered: p.counters.delivered(),
        failed_by_code: p.counters.failed_by_code().clone(),
        possible_duplicates: p.counters.possible_duplicates(),
    }
    .encode_to_vec()
}

pub fn decode_status(bytes: &[u8]) -> Result<JobStatus, JobError> {
    let pb = StatusPb::decode(bytes).map_err(corrupt)?;
    let progress = ProgressRecord {
        next: pb.next,
        in_flight: pb.in_flight,
        redo: pb.redo,
        counters: Counters::from_parts(
            pb.total,
            pb.delivered,
            pb.failed_by_code,
            pb.possible_duplicates,
        )?,
    };
    progress.check()?;
    Ok(JobStatus {
        state: pb.state.parse()?,
        rev: pb.rev,
        finished_at: pb.finished_at,
        progress,
    })
}

pub fn encode_result(r: &RecipientResult) -> Vec<u8> {
    let (error_code, error_message) = match &r.error {
        None => (String::new(), String::new()),
        Some(e) => (e.code.clone(), e.message.clone()),
    };
    ResultPb {
        chat_id: r.chat_id,
        bot: r.bot.clone(),
        message_id: r.message_id,
        error_code,
        error_message,
    }
    .encode_to_vec()
}

pub fn decode_result(bytes: &[u8]) -> Result<RecipientResult, JobError> {
    let pb = ResultPb::decode(bytes).map_err(corrupt)?;
    Ok(RecipientResult {
        chat_id: pb.chat_id,
        bot: pb.bot,
        message_id: pb.message_id,
        error: (!pb.error_code.is_empty()).then_some(ResultError {
            code: pb.error_code,
            message: pb.error_message,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Outcome;
    use crate::state::JobState;

    #[test]
    fn meta_status_and_results_round_trip() {
        let meta = JobMeta {
            spec: JobSpec {
                id: JobId::new("news").unwrap(),
                template: Template::Call(vec![1, 2, 3]),
                priority: Priority::Normal,
                rate_per_s: 40,
                start_at: 1_800_000_000,
                dry_run: false,
                caller: "billing".into(),
            },
            created_at: 1_700_000_000,
            manifest: Manifest::new(vec![100_000, 7]).unwrap(),
        };
        assert_eq!(decode_meta(&encode_meta(&meta)).unwrap(), meta);

        let mut counters = Counters::new(10);
        counters.record(Outcome::Failed("NOT_FOUND")).unwrap();
        counters.record(Outcome::Delivered).unwrap();
        counters.add_possible_duplicates(2);
        let status = JobStatus {
            state: JobState::Running,
            rev: 9,
            finished_at: 0,
            progress: ProgressRecord {
                next: 6,
                in_flight: vec![-7, 3],
                redo: vec![4, 5],
                counters,
            },
        };
        assert_eq!(decode_status(&encode_status(&status)).unwrap(), status);

        for r in [
            RecipientResult {
                chat_id: -100_123,
                bot: "b".into(),
                message_id: 77,
                error: None,
            },
            RecipientResult {
                chat_id: 5,
                bot: "b".into(),
                message_id: 0,
                error: Some(ResultError {
                    code: "PERMISSION_DENIED".into(),
                    message: "blocked".into(),
                }),
            },
        ] {
            assert_eq!(decode_result(&encode_result(&r)).unwrap(), r);
        }
    }

    #[test]
    fn records_that_break_invariants_or_do_not_decode_are_refused() {
        assert!(decode_meta(&[0xff, 0xff]).is_err());
        let bad = StatusPb {
            state: "running".into(),
            total: 1,
            delivered: 2,
            ..StatusPb::default()
        };
        assert!(decode_status(&bad.encode_to_vec()).is_err());
        let bad = StatusPb {
            state: "sleeping".into(),
            ..StatusPb::default()
        };
        assert!(decode_status(&bad.encode_to_vec()).is_err());
        let no_template = MetaPb {
            id: "x".into(),
            chunk_counts: vec![1],
            ..MetaPb::default()
        };
        assert!(decode_meta(&no_template.encode_to_vec()).is_err());
    }
}
