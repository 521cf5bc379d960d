//! Callers on one instance: API keys from the callers file (edited with
//! `shardgate caller ...` while the gateway runs), quotas with RetryInfo,
//! violation scores and bans, bot and chat lists, and the forwarding header
//! from outside the cluster. The real binary over the emulator, driven over
//! gRPC; every check of "nothing sent" reads the emulator's own count.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Gateway, WEEK, away_from_a_window_edge, digest_of, scrape, send, shardgate, text_request,
    wait_for, with_key,
};
use shardgate_proto::v1::{SendRequest, StatusRequest};
use tonic::{Code, Request};
use tonic_types::StatusExt;

struct Callers {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Callers {
    fn new(top: &str) -> Callers {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("callers.toml");
        std::fs::write(&path, top).expect("write callers file");
        Callers { _dir: dir, path }
    }

    /// Runs `shardgate caller --callers-file F ARGS`; returns stdout.
    fn run(&self, args: &[&str]) -> String {
        let file = self.path.to_str().expect("utf-8 path");
        let mut all = vec!["caller", "--callers-file", file];
        all.extend_from_slice(args);
        let out = shardgate(&all, None);
        assert!(
            out.status.success(),
            "shardgate caller {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `caller add NAME ARGS`: the key it printed, alone on stdout.
    fn add(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["add", name];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "stdout is the key alone: {out:?}");
        assert!(lines[0].starts_with("sg_"), "{out:?}");
        lines[0].to_owned()
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "callers_file = {:?}\n{extra}",
            self.path.display().to_string()
        )
    }
}

fn delivered(gw: &Gateway) -> u64 {
    gw.control.stats().totals.delivered
}

fn file_text(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read callers file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_known_key_gets_nothing_sent_and_health_needs_none() {
    let callers = Callers::new("");
    let key = callers.add("billing", &[]);
    assert!(
        file_text(&callers.path).contains(&digest_of(&key)),
        "the file holds the digest"
    );
    assert!(
        !file_text(&callers.path).contains(&key),
        "the file never holds the key"
    );
    let gw = Gateway::with_config(&callers.config("")).await;
    let mut client = gw.client().await;
    let req = || text_request(42, 42, "hello", "r");

    let none = send(&mut client, None, req()).await.expect_err("no key");
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let wrong = send(&mut client, Some("sg_0000"), req())
        .await
        .expect_err("unknown key");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let status = client
        .status(StatusRequest {})
        .await
        .expect_err("Status needs a key");
    assert_eq!(status.code(), Code::Unauthenticated);
    let stream_req = Request::new(tokio_stream::iter(vec![req(), req()]));
    let stream = client.send_stream(stream_req).await;
    match stream {
        Err(s) => assert_eq!(s.code(), Code::Unauthenticated),
        Ok(r) => {
            let first = r.into_inner().message().await;
            assert!(
                matches!(&first, Err(s) if s.code() == Code::Unauthenticated),
                "{first:?}"
            );
        }
    }
    // The forwarding header with a caller's key: not a peer.
    let mut forged = with_key(tokio_stream::iter(vec![req()]), &key);
    forged
        .metadata_mut()
        .insert("shardgate-forwarded-by", "gw-evil".parse().expect("ascii"));
    let refused = match client.send_stream(forged).await {
        Err(s) => s,
        Ok(r) => r
            .into_inner()
            .message()
            .await
            .expect_err("refused before any answer"),
    };
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(gw.channel().await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shardgate.v1.Gateway".into(),
        })
        .await
        .expect("health needs no key")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(delivered(&gw), 0, "nothing was sent for refused calls");
    assert_eq!(gw.control.stats().totals.requests, 0);

    send(&mut client, Some(&key), req())
        .await
        .expect("the caller's key sends");
    client
        .status(with_key(StatusRequest {}, &key))
        .await
        .expect("Status with a key");
    assert_eq!(delivered(&gw), 1);
    let logs = gw.logs();
    assert!(
        !logs.contains(&key[3..]),
        "the key appeared in the gateway's logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_is_resource_exhausted_with_retry_info_and_a_flooder_is_banned() {
    away_from_a_window_edge().await;
    let callers = Callers::new("ban_secs = 3600\n");
    let week = WEEK.to_string();
    let flooder = callers.add(
        "flooder",
        &["--messages-per-window", "3", "--window-secs", &week],
    );
    let calm = callers.add("calm", &[]);
    let gw = Gateway::with_config(&callers.config("metrics_listen = \"127.0.0.1:0\"\n")).await;
    let mut client = gw.client().await;
    for i in 0..3 {
        send(
            &mut client,
            Some(&flooder),
            text_request(100 + i, 0, "q", "r"),
        )
        .await
        .expect("within the quota");
    }
    let over = send(&mut client, Some(&flooder), text_request(200, 0, "q", "r"))
        .await
        .expect_err("over the quota");
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert!(over.message().contains("retry in "), "{}", over.message());
    let info = over.get_details_retry_info().expect("a RetryInfo detail");
    let delay = info.retry_delay.expect("a delay");
    assert!(
        delay > Duration::from_secs(60) && delay <= Duration::from_secs(WEEK),
        "{delay:?}"
    );
    // Four more refusals: five violations of 20 reach the threshold of 100.
    for _ in 0..4 {
        let e = send(&mut client, Some(&flooder), text_request(200, 0, "q", "r"))
            .await
            .expect_err("over the quota");
        assert_eq!(e.code(), Code::ResourceExhausted);
    }
    let banned = send(&mut client, Some(&flooder), text_request(200, 0, "q", "r"))
        .await
        .expect_err("banned");
    assert_eq!(banned.code(), Code::PermissionDenied, "{banned:?}");
    assert!(
        banned.message().contains("banned until"),
        "{}",
        banned.message()
    );
    let status = client
        .status(with_key(StatusRequest {}, &flooder))
        .await
        .expect_err("a banned caller gets nothing");
    assert_eq!(status.code(), Code::PermissionDenied);
    // Others are not affected.
    for i in 0..5 {
        send(&mut client, Some(&calm), text_request(300 + i, 0, "c", "r"))
            .await
            .expect("another caller sends");
    }
    assert_eq!(delivered(&gw), 8);

    let logs = gw.logs();
    let violations = logs
        .lines()
        .filter(|l| l.contains("caller violation") && l.contains("caller=flooder"))
        .count();
    assert_eq!(violations, 5, "one line per violation:\n{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("caller banned") && l.contains("score=100")),
        "a ban line"
    );
    for k in [&flooder, &calm] {
        assert!(!logs.contains(&k[3..]), "a key leaked into the logs");
    }
    let text = scrape(gw.metrics.expect("metrics address")).await;
    assert!(
        text.contains(r#"shardgate_caller_violations_total{caller="flooder",kind="quota"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"shardgate_caller_banned{caller="flooder"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"shardgate_caller_banned{caller="calm"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"shardgate_caller_messages_accepted_total{caller="calm"} 5"#),
        "{text}"
    );
    assert!(!text.contains(&flooder[3..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_bans_apply_live_from_the_callers_file() {
    let callers = Callers::new("");
    let old = callers.add("svc", &[]);
    let gw = Gateway::with_config(&callers.config("")).await;
    let mut client = gw.client().await;
    send(&mut client, Some(&old), text_request(1, 0, "a", "r"))
        .await
        .expect("old key");
    let out = callers.run(&["add-key", "svc"]);
    let new = out.trim().to_owned();
    assert!(
        new.starts_with("sg_") && out.lines().count() == 1,
        "{out:?}"
    );
    let took = wait_for(Duration::from_secs(10), || {
        let mut c = client.clone();
        let new = new.clone();
        async move {
            send(&mut c, Some(&new), text_request(2, 0, "b", "r"))
                .await
                .is_ok()
        }
    })
    .await
    .expect("the new key works without a restart");
    eprintln!("new key accepted {took:?} after add-key");
    send(&mut client, Some(&old), text_request(3, 0, "c", "r"))
        .await
        .expect("both keys work during the rotation");
    callers.run(&["remove-key", "svc", &digest_of(&old)]);
    wait_for(Duration::from_secs(10), || {
        let mut c = client.clone();
        let old = old.clone();
        async move {
            matches!(send(&mut c, Some(&old), text_request(4, 0, "d", "r")).await,
                Err(s) if s.code() == Code::Unauthenticated)
        }
    })
    .await
    .expect("the old key stops working");

    callers.run(&["ban", "svc", "--secs", "600"]);
    assert!(file_text(&callers.path).contains("banned_until"));
    wait_for(Duration::from_secs(10), || {
        let mut c = client.clone();
        let new = new.clone();
        async move {
            matches!(send(&mut c, Some(&new), text_request(5, 0, "e", "r")).await,
                Err(s) if s.code() == Code::PermissionDenied && s.message().contains("banned until"))
        }
    })
    .await
    .expect("the operator's ban applies live");
    callers.run(&["unban", "svc"]);
    wait_for(Duration::from_secs(10), || {
        let mut c = client.clone();
        let new = new.clone();
        async move {
            send(&mut c, Some(&new), text_request(6, 0, "f", "r"))
                .await
                .is_ok()
        }
    })
    .await
    .expect("unbanned");
    let listed = callers.run(&["list", "--json"]);
    assert!(listed.contains("\"name\":\"svc\""), "{listed}");
    assert!(
        listed.contains(&digest_of(&new)) && !listed.contains(&new),
        "{listed}"
    );
    callers.run(&["remove", "svc"]);
    wait_for(Duration::from_secs(10), || {
        let mut c = client.clone();
        let new = new.clone();
        async move {
            matches!(send(&mut c, Some(&new), text_request(7, 0, "g", "r")).await,
                Err(s) if s.code() == Code::Unauthenticated)
        }
    })
    .await
    .expect("a removed caller's key stops working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_bots_and_chats_bound_where_its_messages_go() {
    let callers = Callers::new("");
    let key = callers.add(
        "narrow",
        &["--bot", "alpha", "--chat", "10", "--chat", "-20"],
    );
    let gw = Gateway::with_config(&callers.config("")).await;
    let mut client = gw.client().await;
    let pinned = SendRequest {
        bot: "bravo".into(),
        ..text_request(10, 0, "x", "r")
    };
    let e = send(&mut client, Some(&key), pinned)
        .await
        .expect_err("bot not allowed");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = send(&mut client, Some(&key), text_request(11, 0, "x", "r"))
        .await
        .expect_err("chat not allowed");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(gw.control.stats().totals.requests, 0, "nothing sent");
    for i in 0..6 {
        let chat = if i % 2 == 0 { 10 } else { -20 };
        let r = with_key(text_request(chat, i, format!("m{i}"), "r"), &key);
        let answer = client.send(r).await.expect("allowed").into_inner();
        assert_eq!(
            answer.bot, "alpha",
            "unpinned messages use the caller's bots only"
        );
    }
}

/// `allow_paid_broadcast` costs Stars: only a caller with `paid_broadcast`
/// may set it; anyone else is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_allowed_paid_broadcasts_may_set_allow_paid_broadcast() {
    let callers = Callers::new("");
    let plain = callers.add("plain", &[]);
    let payer = callers.add("payer", &["--paid-broadcast"]);
    let gw = Gateway::with_config(&callers.config("")).await;
    let mut client = gw.client().await;
    let paid = |chat| SendRequest {
        allow_paid_broadcast: true,
        ..text_request(chat, 0, "x", "r")
    };
    let e = send(&mut client, Some(&plain), paid(1))
        .await
        .expect_err("no paid_broadcast");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("paid broadcasts"), "{e:?}");
    assert_eq!(gw.control.stats().totals.requests, 0, "nothing sent");
    send(&mut client, Some(&plain), text_request(2, 0, "x", "r"))
        .await
        .expect("without the flag it may send");
    send(&mut client, Some(&payer), paid(3))
        .await
        .expect("a caller with paid_broadcast may");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_caller_auth_is_off_and_the_daemon_says_so() {
    let gw = Gateway::with_config("").await;
    let mut client = gw.client().await;
    send(&mut client, None, text_request(1, 0, "open", "r"))
        .await
        .expect("auth off: no key needed");
    let paid = SendRequest {
        allow_paid_broadcast: true,
        ..text_request(2, 0, "paid", "r")
    };
    send(&mut client, None, paid)
        .await
        .expect("auth off: anyone may send paid broadcasts");
    let addr = gw.addr.to_string();
    assert!(
        gw.logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("auth is off") && l.contains(&addr)),
        "a warning naming {addr}:\n{}",
        gw.logs()
    );
}
