//! Keeps the [`Mirror`] in step with etcd: one full read of the cluster
//! prefix, then one prefix watch from the read's revision + 1.
//!
//! - After a broken stream (etcd restarted, connection lost, no answer to
//!   progress requests) the watch resumes from the last applied revision + 1,
//!   so nothing is missed and nothing re-read.
//! - A watch cancelled because its start revision was compacted
//!   (`compact_revision` set) re-reads everything and watches from that
//!   read's revision + 1.
//! - Every `progress_interval` a progress request goes out; a stream that
//!   has said nothing for `progress_interval + op_timeout` is taken as dead.
//!   Progress answers only prove the stream alive: their revision is not
//!   trusted (etcd 3.4.23 sends it ahead of pending events).
//! - Each batch of events is applied in order and published as a new
//!   snapshot; malformed values are logged and skipped by the mirror.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};

use crate::error::{EtcdError, call, describe};
use crate::keys::Keys;
use crate::mirror::{KvMeta, Mirror};
use crate::registry::Inner;
use crate::retry::Backoff;

fn meta(kv: &KeyValue) -> KvMeta {
    KvMeta {
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
        lease: kv.lease(),
    }
}

/// Reads every key of the cluster at one revision.
pub(crate) async fn full_read(
    client: &etcd_client::Client,
    keys: &Keys,
    timeout: Duration,
) -> Result<Mirror, EtcdError> {
    let resp = call(
        "read",
        timeout,
        client
            .kv_client()
            .get(keys.prefix(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    if revision <= 0 {
        return Err(EtcdError::Request {
            what: "read",
            message: "answer without a revision".into(),
        });
    }
    let mut mirror = Mirror::default();
    for kv in resp.kvs() {
        mirror.apply_put(keys, kv.key(), kv.value(), meta(kv));
    }
    mirror.revision = revision;
    Ok(mirror)
}

/// How one watch stream ended.
enum WatchEnd {
    Compacted(i64),
    Broken(String),
}

/// The watch task: follows etcd forever, re-reading or resuming as needed.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut mirror = Mirror::clone(&inner.mirror());
    let mut reread = false;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        if reread {
            match full_read(inner.client(), inner.keys(), inner.config().op_timeout).await {
                Ok(fresh) => {
                    tracing::info!(revision = fresh.revision, "re-read the cluster from etcd");
                    mirror = fresh;
                    inner.set_mirror(mirror.clone());
                    reread = false;
                }
                Err(e) => {
                    tracing::warn!("cannot re-read the cluster from etcd: {e}");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        let started = Instant::now();
        match follow(&inner, &mut mirror).await {
            WatchEnd::Compacted(compacted) => {
                tracing::info!(
                    compact_revision = compacted,
                    last_seen = mirror.revision,
                    "etcd watch fell behind a compaction; re-reading everything"
                );
                reread = true;
            }
            WatchEnd::Broken(why) => {
                if started.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                tracing::warn!(
                    resume_from = mirror.revision + 1,
                    "etcd watch interrupted: {why}"
                );
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Follows one watch stream from `mirror.revision + 1` until it ends.
async fn follow(inner: &Inner, mirror: &mut Mirror) -> WatchEnd {
    let cfg = inner.config();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(mirror.revision + 1);
    let stream = match call(
        "watch",
        cfg.op_timeout,
        inner.watches().watch(inner.keys().prefix(), Some(options)),
    )
    .await
    {
        Ok(stream) => stream,
        Err(e) => return WatchEnd::Broken(e.to_string()),
    };
    let (mut requests, mut responses) = stream.split();
    let mut ticker = tokio::time::interval(cfg.progress_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            msg = responses.message() => {
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return WatchEnd::Broken("stream closed by etcd".into()),
                    Err(e) => return WatchEnd::Broken(describe(&e)),
                };
                last_heard = Instant::now();
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        return WatchEnd::Compacted(resp.compact_revision());
                    }
                    return WatchEnd::Broken(format!("cancelled by etcd: {}", resp.cancel_reason()));
                }
                if resp.created() && resp.events().is_empty() {
                    continue;
                }
                if resp.events().is_empty() {
                    // A progress notification: proof of life only. etcd
                    // 3.4.23 may send one with the current revision before
                    // the events of a watcher still catching up, so its
                    // revision is never taken as "seen".
                    continue;
                }
                let mut relevant = false;
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    relevant |= match event.event_type() {
                        EventType::Put => {
                            mirror.apply_put(inner.keys(), kv.key(), kv.value(), meta(kv))
                        }
                        EventType::Delete => {
                            mirror.apply_delete(inner.keys(), kv.key(), kv.mod_revision())
                        }
                    };
                }
                // Writes outside the layout (the quota counters, often)
                // only move the resume point, kept in `mirror`.
                if relevant {
                    inner.set_mirror(mirror.clone());
                }
            }
            _ = ticker.tick() => {
                let silent = last_heard.elapsed();
                if silent > cfg.progress_interval + cfg.op_timeout {
                    return WatchEnd::Broken(format!("no answer to progress requests for {silent:?}"));
                }
                if let Err(e) = requests.request_progress().await {
                    return WatchEnd::Broken(describe(&e));
                }
            }
        }
    }
}
