//! Broadcast jobs end to end, against the emulator and the real binary in
//! embedded mode: a job of 2,000 chats reaches each chat exactly once with
//! no 429 while interactive sends issued during it answer quickly, blocked
//! chats end failed and are not retried, and a gateway SIGKILLed mid-job
//! resumes it from its data directory without losing a recipient.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{BOTS, Gateway, signal, spawn_gateway_env, text_request, wait_for};
use shardgate_mock::{ChatState, MockConfig};
use shardgate_proto::v1 as pb;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tonic::transport::Channel;

const CHATS: i64 = 2_000;
const FIRST_CHAT: i64 = 1_000_000;

fn chunks(id: &str, text: &str) -> Vec<pb::BroadcastChunk> {
    chunks_of(id, text, CHATS)
}

/// A create of `chats` chats from [`FIRST_CHAT`] on, in several chunks.
fn chunks_of(id: &str, text: &str, chats: i64) -> Vec<pb::BroadcastChunk> {
    let ids: Vec<i64> = (FIRST_CHAT..FIRST_CHAT + chats).collect();
    let mut out = vec![pb::BroadcastChunk {
        spec: Some(pb::BroadcastSpec {
            id: id.into(),
            message: Some(pb::SendRequest {
                text: text.into(),
                ..pb::SendRequest::default()
            }),
            ..pb::BroadcastSpec::default()
        }),
        // The first chunk may carry recipients too; some come twice.
        chat_ids: ids[..100].to_vec(),
    }];
    out.extend(ids.chunks(500).map(|part| pb::BroadcastChunk {
        spec: None,
        chat_ids: part.to_vec(),
    }));
    out
}

async fn get(client: &mut GatewayClient<Channel>, id: &str) -> pb::Broadcast {
    client
        .get_broadcast(pb::BroadcastRef { id: id.into() })
        .await
        .expect("GetBroadcast")
        .into_inner()
}

/// Waits (polling the job, no fixed sleep) until `check` holds.
async fn until(
    client: &GatewayClient<Channel>,
    id: &str,
    limit: Duration,
    check: impl Fn(&pb::Broadcast) -> bool,
) -> pb::Broadcast {
    let found = wait_for(limit, || {
        let mut c = client.clone();
        let check = &check;
        async move { check(&get(&mut c, id).await) }
    })
    .await;
    let mut c = client.clone();
    let b = get(&mut c, id).await;
    assert!(found.is_some(), "not reached within {limit:?}: {b:?}");
    b
}

/// How many times the emulator delivered `text` to each chat.
fn deliveries(gw: &Gateway, text: &str) -> BTreeMap<i64, u64> {
    let mut per_chat = BTreeMap::new();
    for d in gw.control.deliveries(0) {
        if d.text == text {
            *per_chat.entry(d.chat_id).or_default() += 1;
        }
    }
    per_chat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_each_chat_once_without_a_429_while_interactive_sends_wait_little() {
    let data = tempfile::tempdir().expect("temp dir");
    let env = [("SHARDGATE_DATA_DIR", data.path().display().to_string())];
    let gw = Gateway::start_with_env(MockConfig::default(), &BOTS, "", &env).await;
    let blocked: Vec<i64> = (0..20).map(|i| FIRST_CHAT + i * 97).collect();
    for chat in &blocked {
        gw.control.set_chat(*chat, ChatState::Blocked);
    }
    let mut client = gw.client().await;

    let plan = client
        .create_broadcast(futures::stream::iter({
            let mut c = chunks("", "plan");
            if let Some(spec) = c[0].spec.as_mut() {
                spec.dry_run = true;
            }
            c
        }))
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!(plan.state, "planned");
    assert_eq!(plan.total, CHATS as u64, "a chat listed twice counts once");
    assert!(plan.eta_s > 0.0, "{plan:?}");

    let started = Instant::now();
    let created = client
        .create_broadcast(futures::stream::iter(chunks("news", "news")))
        .await
        .expect("created")
        .into_inner();
    assert_eq!((created.id.as_str(), created.total), ("news", CHATS as u64));
    println!("created in {:?}", started.elapsed());
    let listed = client
        .list_broadcasts(pb::ListBroadcastsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.broadcasts.len(), 1, "a dry run is not listed");

    // Interactive sends while the job saturates the bots.
    until(&client, "news", Duration::from_secs(60), |b| {
        b.delivered >= 200
    })
    .await;
    let mut waits = Vec::new();
    for i in 0..20 {
        let mut req = text_request(9_000_000 + i, 0, format!("reply {i}"), "");
        req.priority = pb::Priority::Interactive as i32;
        let t = Instant::now();
        client.send(req).await.expect("interactive send");
        waits.push(t.elapsed());
    }
    let during = get(&mut client, "news").await;
    assert!(
        during.pending > 0,
        "the job still ran when the last reply went"
    );
    waits.sort();
    let p99 = waits[waits.len() - 1];
    println!(
        "interactive sends during the broadcast: p50 {:?}, p99 {:?}",
        waits[waits.len() / 2],
        p99
    );
    assert!(
        p99 < Duration::from_secs(1),
        "an interactive send waited {p99:?}"
    );

    let done = until(&client, "news", Duration::from_secs(120), |b| {
        b.state == "done"
    })
    .await;
    let took = started.elapsed();
    println!(
        "{} recipients in {took:?} ({:.1}/s), {} failed",
        done.total,
        done.total as f64 / took.as_secs_f64(),
        done.failed
    );
    assert_eq!(done.pending, 0);
    assert_eq!(done.delivered, (CHATS - 20) as u64);
    assert_eq!(done.failed_by_code.get("FAILED_PRECONDITION"), Some(&20));
    assert_eq!(done.possible_duplicates, 0);

    let per_chat = deliveries(&gw, "news");
    assert_eq!(per_chat.len(), (CHATS - 20) as usize);
    assert!(per_chat.values().all(|n| *n == 1), "each chat exactly once");
    assert!(blocked.iter().all(|c| !per_chat.contains_key(c)));
    let totals = gw.control.stats().totals;
    assert_eq!(totals.rate_limited, 0, "{totals:?}");
    assert_eq!(totals.forbidden, 20, "a blocked chat is not retried");

    let mut results = client
        .broadcast_results(pb::BroadcastRef { id: "news".into() })
        .await
        .expect("results")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(r) = results.message().await.expect("a result") {
        assert_eq!(r.error.is_some(), blocked.contains(&r.chat_id), "{r:?}");
        seen.push(r.chat_id);
    }
    assert_eq!(seen, (FIRST_CHAT..FIRST_CHAT + CHATS).collect::<Vec<_>>());

    let err = client
        .pause_broadcast(pb::BroadcastRef { id: "news".into() })
        .await
        .expect_err("a finished job does not pause");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_broadcast_resumes_it_from_its_data_dir_and_loses_no_recipient() {
    let data = tempfile::tempdir().expect("temp dir");
    let env = [("SHARDGATE_DATA_DIR", data.path().display().to_string())];
    let gw = Gateway::start_with_env(MockConfig::default(), &BOTS, "", &env).await;
    let client = gw.client().await;
    let mut c = client.clone();
    c.create_broadcast(futures::stream::iter(chunks("kill", "kill")))
        .await
        .expect("created");
    // Paused and resumed on the way: the job carries on.
    let paused = c
        .pause_broadcast(pb::BroadcastRef { id: "kill".into() })
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.state, "paused");
    let resumed = c
        .resume_broadcast(pb::BroadcastRef { id: "kill".into() })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.state, "running");
    until(&client, "kill", Duration::from_secs(60), |b| {
        b.delivered >= 500
    })
    .await;
    assert!(signal(gw.pid(), "-9"), "SIGKILL");
    let killed_at = Instant::now();
    let before = deliveries(&gw, "kill").len();

    let args: Vec<std::ffi::OsString> = vec![
        "--bots-file".into(),
        gw.bots_file().into(),
        "--config".into(),
        gw.dir.path().join("shardgate.toml").into(),
    ];
    let (mut child, addr, _logs) = spawn_gateway_env(&gw.mock.base_url(), &args, &env);
    let client = common::connect(addr).await;
    let resumed = wait_for(Duration::from_secs(30), || {
        let n = deliveries(&gw, "kill").len();
        async move { n > before }
    })
    .await
    .expect("the restarted gateway resumed the job");
    let resumed_after_kill = killed_at.elapsed();
    let done = until(&client, "kill", Duration::from_secs(120), |b| {
        b.state == "done"
    })
    .await;
    let per_chat = deliveries(&gw, "kill");
    let twice = per_chat.values().filter(|n| **n > 1).count() as u64;
    println!(
        "killed after {before} chats; first new delivery {resumed:?} after the restart \
         ({resumed_after_kill:?} after the kill); {twice} chats got it twice, {} counted as \
         possible duplicates",
        done.possible_duplicates
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(done.delivered, CHATS as u64);
    assert_eq!(per_chat.len(), CHATS as usize, "no recipient lost");
    assert!(
        twice <= done.possible_duplicates,
        "every duplicate was counted"
    );
    assert!(
        done.possible_duplicates <= 16 * BOTS.len() as u64,
        "at most the in-flight bound: {}",
        done.possible_duplicates
    );
    assert_eq!(gw.control.stats().totals.rate_limited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_mid_broadcast_stores_its_progress_and_the_restart_sends_nobody_twice() {
    let data = tempfile::tempdir().expect("temp dir");
    let env = [("SHARDGATE_DATA_DIR", data.path().display().to_string())];
    let mut gw = Gateway::start_with_env(MockConfig::default(), &BOTS, "", &env).await;
    let client = gw.client().await;
    let mut c = client.clone();
    c.create_broadcast(futures::stream::iter(chunks_of("stop", "stop", 600)))
        .await
        .expect("created");
    until(&client, "stop", Duration::from_secs(60), |b| {
        b.delivered >= 200
    })
    .await;
    let status = gw.terminate_in_place();
    assert!(status.success(), "a clean stop: {status:?}");

    let args: Vec<std::ffi::OsString> = vec![
        "--bots-file".into(),
        gw.bots_file().into(),
        "--config".into(),
        gw.dir.path().join("shardgate.toml").into(),
    ];
    let (mut child, addr, _logs) = spawn_gateway_env(&gw.mock.base_url(), &args, &env);
    let client = common::connect(addr).await;
    let done = until(&client, "stop", Duration::from_secs(60), |b| {
        b.state == "done"
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let per_chat = deliveries(&gw, "stop");
    assert_eq!(done.delivered, 600);
    assert_eq!(per_chat.len(), 600, "no recipient lost");
    assert!(per_chat.values().all(|n| *n == 1), "nobody got it twice");
    assert_eq!(done.possible_duplicates, 0, "nothing was out at the stop");
}

/// The time a fleet of `bots` needs for `n` messages at the bot limit of 30
/// per second (sliding window): the first 30 of each bot go at once, the
/// last window's at `n / (30 * bots) - 1` seconds.
fn ceiling_secs(n: u64, bots: u64) -> f64 {
    n as f64 / (30.0 * bots as f64) - 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_3000_over_2_bots_ends_within_1_1_times_the_ceiling_time() {
    let data = tempfile::tempdir().expect("temp dir");
    let env = [("SHARDGATE_DATA_DIR", data.path().display().to_string())];
    let gw = Gateway::start_with_env(MockConfig::default(), &BOTS[..2], "", &env).await;
    let mut client = gw.client().await;
    // A dispatcher that starts treats its bot as just driven by someone
    // else (`Scheduler::taking_over`): a bot window with nothing sent, and
    // chats first seen within a bucket's refill (3.4 s) starting empty, so
    // each new chat waits 1.1 s for its first message. That is the start
    // of every gateway, not of a job: the job starts after it.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    const N: i64 = 3_000;
    client
        .create_broadcast(futures::stream::iter(chunks_of("fast", "fast", N)))
        .await
        .expect("created");
    let done = until(&client, "fast", Duration::from_secs(120), |b| {
        b.state == "done"
    })
    .await;
    assert_eq!(done.delivered, N as u64, "{done:?}");
    // Judged from the Bot API's side: first to last arrival.
    let arrivals: Vec<u64> = gw
        .control
        .deliveries(0)
        .iter()
        .filter(|d| d.text == "fast")
        .map(|d| d.at_ms)
        .collect();
    assert_eq!(arrivals.len(), N as usize, "each chat once");
    let first = arrivals.iter().min().copied().unwrap_or(0);
    let last = arrivals.iter().max().copied().unwrap_or(0);
    let span = (last - first) as f64 / 1000.0;
    let ceiling = ceiling_secs(N as u64, 2);
    println!(
        "{N} recipients over 2 bots: first to last arrival {span:.2} s, ceiling {ceiling:.2} s ({:.3} of the limits)",
        ceiling / span
    );
    assert!(
        span <= 1.1 * ceiling,
        "took {span:.2} s, more than 1.1 x the ceiling's {ceiling:.2} s"
    );
    assert_eq!(gw.control.stats().totals.rate_limited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_by_file_id_is_broadcast_from_a_call_template_and_bad_templates_are_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let env = [("SHARDGATE_DATA_DIR", data.path().display().to_string())];
    let gw = Gateway::start_with_env(MockConfig::default(), &BOTS, "", &env).await;
    let mut client = gw.client().await;
    // Upload once, then broadcast the file_id.
    let uploaded = client
        .call(pb::CallRequest {
            method: "sendPhoto".into(),
            params_json: r#"{"chat_id": 42, "photo": "attach://p"}"#.into(),
            files: vec![pb::InputFile {
                name: "p".into(),
                filename: "chart.png".into(),
                content_type: "image/png".into(),
                data: vec![7u8; 4096].into(),
            }],
            ..pb::CallRequest::default()
        })
        .await
        .expect("upload")
        .into_inner();
    let result: serde_json::Value = serde_json::from_str(&uploaded.result_json).expect("json");
    let file_id = result["photo"][0]["file_id"]
        .as_str()
        .expect("file_id")
        .to_owned();
    let template = |method: &str, params: serde_json::Value| pb::CallRequest {
        method: method.into(),
        params_json: params.to_string(),
        ..pb::CallRequest::default()
    };
    let create = |spec: pb::BroadcastSpec, chats: Vec<i64>| {
        futures::stream::iter(vec![pb::BroadcastChunk {
            spec: Some(spec),
            chat_ids: chats,
        }])
    };
    let chats: Vec<i64> = (FIRST_CHAT..FIRST_CHAT + 60).collect();
    let spec = pb::BroadcastSpec {
        id: "photo".into(),
        call: Some(template(
            "sendPhoto",
            serde_json::json!({"photo": file_id, "caption": "this week"}),
        )),
        ..pb::BroadcastSpec::default()
    };
    client
        .create_broadcast(create(spec, chats.clone()))
        .await
        .expect("created");
    let done = until(&client, "photo", Duration::from_secs(60), |b| {
        b.state == "done"
    })
    .await;
    assert_eq!((done.delivered, done.failed), (60, 0), "{done:?}");
    let mut results = client
        .broadcast_results(pb::BroadcastRef { id: "photo".into() })
        .await
        .expect("results")
        .into_inner();
    let mut seen = 0;
    while let Some(r) = results.message().await.expect("a result") {
        let kept = gw
            .control
            .message(r.chat_id, r.message_id)
            .unwrap_or_else(|| panic!("no message for {r:?}"));
        assert_eq!(kept["caption"], "this week", "{kept}");
        assert!(kept["photo"].is_array(), "{kept}");
        seen += 1;
    }
    assert_eq!(seen, 60);

    let before = gw.control.stats().totals.requests;
    let mut with_upload = template("sendPhoto", serde_json::json!({"photo": "attach://p"}));
    with_upload.files.push(pb::InputFile {
        name: "p".into(),
        data: vec![1u8; 10].into(),
        ..pb::InputFile::default()
    });
    let refused = [
        (template("getChat", serde_json::json!({})), "send-type"),
        (with_upload, "no uploads"),
        (
            template("sendFutureThing", serde_json::json!({})),
            "send-type",
        ),
        (
            template("sendPhoto", serde_json::json!({"photo": "x"})),
            "idempotency_key",
        ),
    ];
    for (mut call, words) in refused {
        if words == "idempotency_key" {
            call.idempotency_key = "k".into();
        }
        let spec = pb::BroadcastSpec {
            call: Some(call),
            ..pb::BroadcastSpec::default()
        };
        let err = client
            .create_broadcast(create(spec, vec![1, 2]))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(words), "{words}: {err:?}");
    }
    let both = pb::BroadcastSpec {
        message: Some(pb::SendRequest {
            text: "x".into(),
            ..pb::SendRequest::default()
        }),
        call: Some(template("sendPhoto", serde_json::json!({"photo": "x"}))),
        ..pb::BroadcastSpec::default()
    };
    let err = client
        .create_broadcast(create(both, vec![1]))
        .await
        .expect_err("both");
    assert!(err.message().contains("not both"), "{err:?}");
    assert_eq!(gw.control.stats().totals.requests, before, "nothing sent");
}
