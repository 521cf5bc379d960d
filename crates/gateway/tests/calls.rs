//! Any Bot API method through the gateway (`Call`), over its real gRPC
//! server, against the emulator: uploads arrive byte-exact, albums are
//! counted per item, edits share their chat's budget and reach the bot that
//! sent the message, and what must not be sent never reaches the Bot API.
//!
//! Real time on loopback, like the other emulator tests (a paused clock
//! would fire the HTTP client's timeouts while a request waits on the
//! socket); each bound is generous and each test prints what it measured.

use std::time::Duration;

use serde_json::{Value, json};
use shardgate_gateway::GatewayConfig;
use shardgate_gateway::local::LocalGateway;
use shardgate_metrics::Metrics;
use shardgate_mock::{MockConfig, MockServer, test_token};
use shardgate_proto::v1::{self as pb, gateway_client::GatewayClient};
use shardgate_registry::BotSpec;
use shardgate_telegram::{BotToken, Client, ClientConfig};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

/// Bot ids of the fleet: bot `b<i>` has id `BOT_IDS[i]`.
const BOT_IDS: [u64; 3] = [7_401, 7_402, 7_403];

/// The emulator, a ready gateway over `bots` bots, and a gRPC client.
async fn start(bots: usize) -> (MockServer, LocalGateway, GatewayClient<Channel>) {
    let mock = MockServer::start(
        MockConfig::default(),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("emulator starts");
    let client = Client::new(ClientConfig {
        api_base: mock.base_url(),
        ..ClientConfig::default()
    })
    .expect("client");
    let specs = BOT_IDS[..bots]
        .iter()
        .enumerate()
        .map(|(i, id)| BotSpec {
            name: format!("b{i}"),
            token: BotToken::parse(&test_token(*id)).expect("token"),
            enabled: true,
        })
        .collect();
    let local = LocalGateway::start(specs, GatewayConfig::default(), client, Metrics::new())
        .await
        .expect("gateway starts");
    let mut ready = local.gateway.ready();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");
    // A new dispatcher takes its bot over as if another process had just
    // used it: nothing for one bot window, and chats seen within a bucket's
    // refill time (3.3 s) start empty. Wait that out.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let grpc = GatewayClient::connect(format!("http://{}", local.addr))
        .await
        .expect("connects")
        .max_decoding_message_size(64 << 20);
    (mock, local, grpc)
}

async fn stop(mock: MockServer, local: LocalGateway) {
    local
        .stop(Duration::from_millis(100), Duration::from_secs(5))
        .await;
    mock.shutdown().await;
}

fn call(method: &str, params: Value) -> pb::CallRequest {
    pb::CallRequest {
        method: method.into(),
        params_json: params.to_string(),
        ..pb::CallRequest::default()
    }
}

fn result(r: &pb::CallResponse) -> Value {
    serde_json::from_str(&r.result_json).expect("result_json is JSON")
}

/// Bytes that no two uploads share (a simple LCG).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

/// A photo and a 5 MiB document (over gRPC's usual 4 MiB) arrive at the Bot
/// API byte for byte, as multipart parts: one as the `photo` parameter,
/// one by `attach://` reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_arrive_byte_exact() {
    let (mock, local, mut grpc) = start(1).await;
    let photo = bytes(300_000, 1);
    let answer = grpc
        .call(pb::CallRequest {
            files: vec![pb::InputFile {
                name: "photo".into(),
                filename: "cat.jpg".into(),
                content_type: "image/jpeg".into(),
                data: photo.clone().into(),
            }],
            ..call("sendPhoto", json!({"chat_id": 501, "caption": "a cat"}))
        })
        .await
        .expect("sendPhoto delivered")
        .into_inner();
    let sent = result(&answer);
    assert_eq!(answer.bot, "b0");
    assert_eq!(answer.chat_id, 501);
    assert_eq!(sent["caption"], "a cat");
    let file_id = sent["photo"]
        .as_array()
        .and_then(|sizes| sizes.last())
        .and_then(|p| p["file_id"].as_str())
        .expect("a photo in the answer")
        .to_owned();
    let (info, data) = mock
        .control()
        .file(&file_id)
        .expect("the emulator holds it");
    assert!(data == photo, "the photo's bytes differ");
    assert_eq!(info.file_name, "cat.jpg");

    let doc = bytes(5 << 20, 2);
    let answer = grpc
        .call(pb::CallRequest {
            files: vec![pb::InputFile {
                name: "report".into(),
                filename: "report.pdf".into(),
                content_type: "application/pdf".into(),
                data: doc.clone().into(),
            }],
            ..call(
                "sendDocument",
                json!({"chat_id": 502, "document": "attach://report"}),
            )
        })
        .await
        .expect("a 5 MiB sendDocument goes through Call's raised limit")
        .into_inner();
    let file_id = result(&answer)["document"]["file_id"]
        .as_str()
        .expect("a document")
        .to_owned();
    let (_, data) = mock.control().file(&file_id).expect("held");
    assert!(data == doc, "the document's bytes differ");
    println!(
        "uploads byte-exact: photo {} bytes, document {} bytes",
        photo.len(),
        doc.len()
    );
    stop(mock, local).await;
}

/// Methods that belong to the bot's own process are refused at the door,
/// and so are malformed calls and oversized uploads: not one request
/// reaches the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_malformed_calls_never_reach_the_emulator() {
    let (mock, local, mut grpc) = start(1).await;
    let before = mock.control().stats().totals.requests;
    for method in [
        "getUpdates",
        "setWebhook",
        "deleteWebhook",
        "logOut",
        "close",
    ] {
        let err = grpc
            .call(call(method, json!({"url": "https://example.org"})))
            .await
            .expect_err(method);
        assert_eq!(err.code(), Code::FailedPrecondition, "{method}: {err:?}");
    }
    let too_big = pb::CallRequest {
        files: vec![pb::InputFile {
            name: "photo".into(),
            data: vec![0u8; 10 * 1024 * 1024 + 1].into(),
            ..pb::InputFile::default()
        }],
        ..call("sendPhoto", json!({"chat_id": 1}))
    };
    for (what, req) in [
        (
            "unknown JSON",
            pb::CallRequest {
                params_json: "{not json".into(),
                ..call("sendMessage", json!({}))
            },
        ),
        (
            "chat_id",
            call("sendMessage", json!({"chat_id": "news", "text": "x"})),
        ),
        (
            "a missing upload",
            call("sendPhoto", json!({"chat_id": 1, "photo": "attach://p"})),
        ),
        ("a photo over 10 MB", too_big),
    ] {
        let err = grpc.call(req).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    // In a stream, errors are answers.
    let requests = tokio_stream::iter(vec![pb::CallRequest {
        client_ref: "r1".into(),
        ..call("logOut", json!({}))
    }]);
    let mut answers = grpc
        .call_stream(requests)
        .await
        .expect("stream opens")
        .into_inner();
    let first = answers.message().await.expect("an answer").expect("one");
    assert_eq!(first.client_ref, "r1");
    assert_eq!(
        first.error.map(|e| e.code).as_deref(),
        Some("FAILED_PRECONDITION")
    );
    assert_eq!(
        mock.control().stats().totals.requests,
        before,
        "nothing reached the Bot API"
    );
    stop(mock, local).await;
}

/// Over three bots, messages into many chats land on different bots; each
/// edit, made without `bot`, goes through the bot that sent its message
/// (the emulator lets only the sender edit), and an edit of a message the
/// gateway never sent is refused with nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reach_the_bot_that_sent_the_message() {
    let (mock, local, mut grpc) = start(3).await;
    let mut sent = Vec::new();
    for chat in 601..=612 {
        let answer = grpc
            .call(call(
                "sendMessage",
                json!({"chat_id": chat, "text": "pending"}),
            ))
            .await
            .expect("sent")
            .into_inner();
        let id = result(&answer)["message_id"].as_i64().expect("message_id");
        sent.push((chat, id, answer.bot));
    }
    let bots: std::collections::BTreeSet<_> = sent.iter().map(|s| s.2.clone()).collect();
    assert!(bots.len() > 1, "chats spread over the bots: {bots:?}");
    for (chat, id, bot) in &sent {
        let answer = grpc
            .call(call(
                "editMessageText",
                json!({"chat_id": chat, "message_id": id, "text": "paid"}),
            ))
            .await
            .expect("edited")
            .into_inner();
        assert_eq!(&answer.bot, bot, "chat {chat}: the sender edits");
        let now = mock.control().message(*chat, *id).expect("still there");
        assert_eq!(now["text"], "paid");
    }
    // A Send's messages are remembered too.
    let via_send = grpc
        .send(pb::SendRequest {
            chat_id: 620,
            text: "sent with Send".into(),
            ..pb::SendRequest::default()
        })
        .await
        .expect("sent")
        .into_inner();
    let answer = grpc
        .call(call(
            "deleteMessage",
            json!({"chat_id": 620, "message_id": via_send.message_id}),
        ))
        .await
        .expect("deleted")
        .into_inner();
    assert_eq!(answer.bot, via_send.bot);
    assert_eq!(answer.result_json, "true");
    assert!(mock.control().message(620, via_send.message_id).is_none());

    let before = mock.control().stats().totals.requests;
    let err = grpc
        .call(call(
            "editMessageText",
            json!({"chat_id": 601, "message_id": 9_999, "text": "x"}),
        ))
        .await
        .expect_err("unknown message");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("set `bot`"), "{}", err.message());
    assert_eq!(
        mock.control().stats().totals.requests,
        before,
        "nothing sent"
    );
    let stats = mock.control().stats();
    println!(
        "{} messages over {} bots, each edited by its sender; {} edits, {} 429s",
        sent.len(),
        bots.len(),
        stats.totals.edited,
        stats.totals.rate_limited
    );
    assert_eq!(stats.totals.rate_limited, 0);
    stop(mock, local).await;
}

/// Sends and edits into one chat share its budget (Telegram's, and the
/// emulator's): three sends take the bucket's burst, so the edits after
/// them wait their turn, and no request earns a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_share_the_chats_budget() {
    let (mock, local, mut grpc) = start(1).await;
    let chat = 701;
    let mut ids = Vec::new();
    let started = Instant::now();
    for i in 0..3 {
        let answer = grpc
            .call(call(
                "sendMessage",
                json!({"chat_id": chat, "text": format!("m{i}")}),
            ))
            .await
            .expect("sent")
            .into_inner();
        ids.push(result(&answer)["message_id"].as_i64().expect("id"));
    }
    let burst = started.elapsed();
    for (i, id) in ids.iter().enumerate() {
        grpc.call(call(
            "editMessageText",
            json!({"chat_id": chat, "message_id": id, "text": format!("e{i}")}),
        ))
        .await
        .expect("edited");
    }
    let took = started.elapsed();
    let stats = mock.control().stats();
    println!(
        "3 sends in {burst:?}, then 3 edits of them: {took:?} in all, {} 429s",
        stats.totals.rate_limited
    );
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    assert_eq!(stats.totals.edited, 3);
    // After a burst of 3, each edit waits about 1/0.9 s for the bucket.
    assert!(
        took >= Duration::from_millis(3_000),
        "the edits were counted against the chat: {took:?}"
    );
    stop(mock, local).await;
}

/// An album of ten photos (uploads) into one chat is one request counted as
/// ten messages: it goes at once from a full bucket, and the chat's next
/// message waits until the bucket's debt is paid, so the emulator (which
/// charges all ten) never answers 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_album_of_ten_is_counted_as_ten_messages() {
    let (mock, local, mut grpc) = start(1).await;
    let chat = 801;
    let media: Vec<Value> = (0..10)
        .map(|i| json!({"type": "photo", "media": format!("attach://p{i}")}))
        .collect();
    let files = (0..10)
        .map(|i| pb::InputFile {
            name: format!("p{i}"),
            filename: format!("p{i}.jpg"),
            content_type: "image/jpeg".into(),
            data: bytes(2_000, 10 + i).into(),
        })
        .collect();
    let started = Instant::now();
    let album = grpc
        .call(pb::CallRequest {
            files,
            ..call("sendMediaGroup", json!({"chat_id": chat, "media": media}))
        })
        .await
        .expect("album delivered")
        .into_inner();
    let album_took = started.elapsed();
    let sent = result(&album);
    let ids: Vec<i64> = sent
        .as_array()
        .expect("an array of messages")
        .iter()
        .filter_map(|m| m["message_id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 10);
    let after = grpc
        .call(call(
            "sendMessage",
            json!({"chat_id": chat, "text": "and one more"}),
        ))
        .await
        .expect("the next message is delivered")
        .into_inner();
    let took = started.elapsed();
    // Every item of the album is remembered: its last photo can be deleted.
    let deleted = grpc
        .call(call(
            "deleteMessage",
            json!({"chat_id": chat, "message_id": ids[9]}),
        ))
        .await
        .expect("deleted by the album's bot")
        .into_inner();
    assert_eq!(deleted.bot, album.bot);
    let stats = mock.control().stats();
    println!(
        "album of 10 into one chat: sent in {album_took:?}; the next message after {took:?} \
         (bot {}); {} delivered, {} 429s",
        after.bot, stats.totals.delivered, stats.totals.rate_limited
    );
    assert_eq!(stats.totals.delivered, 11, "ten items and one message");
    assert_eq!(stats.totals.rate_limited, 0, "no 429");
    // Ten charged, three covered by the burst: about 7 s of debt first.
    assert!(
        took >= Duration::from_secs(7),
        "the next message waited for the album's debt: {took:?}"
    );
    stop(mock, local).await;
}

/// A method the gateway's table does not know goes through on the bot's
/// limit (forward compatible); the Bot API's 404 for it is the call's
/// failure (`INVALID_ARGUMENT`), and the bot stays in rotation. Other
/// methods answer their own `result` (`getMe`: the bot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_reaches_the_bot_api_and_leaves_the_bot_healthy() {
    let (mock, local, mut grpc) = start(1).await;
    let err = grpc
        .call(call("someFutureMethod", json!({"chat_id": 901})))
        .await
        .expect_err("the emulator has no such method");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let me = grpc
        .call(call("getMe", json!({})))
        .await
        .expect("getMe")
        .into_inner();
    assert_eq!(result(&me)["id"], BOT_IDS[0]);
    assert_eq!(me.chat_id, 0, "a chat-less call names no chat");
    let status = grpc
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.bots[0].state, "healthy", "{:?}", status.bots[0]);
    let stats = mock.control().stats();
    assert_eq!((stats.totals.not_found, stats.totals.requests), (1, 2));
    stop(mock, local).await;
}
