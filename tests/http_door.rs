//! The Bot API-compatible HTTP front door (`serve --http-listen`): Bot API
//! requests in each encoding a library uses (JSON, form, query string,
//! multipart uploads) go through the gateway's routing and limits and are
//! answered in the Bot API's shape; edits find their bot without a header;
//! refusals come as Bot API errors with the codes libraries handle, and a
//! refused request never reaches the Bot API. The real binary over the
//! emulator; every "nothing sent" reads the emulator's own count.

mod common;

use std::net::SocketAddr;

use common::{BOTS, Gateway, WEEK, away_from_a_window_edge, shardgate};
use serde_json::{Value, json};
use shardgate_mock::MockConfig;

async fn start(config_toml: &str) -> (Gateway, SocketAddr) {
    let args = ["--http-listen".into(), "127.0.0.1:0".into()];
    let gw = Gateway::start_with_args(MockConfig::default(), &BOTS, config_toml, &[], &args).await;
    let http = gw
        .http
        .expect("the daemon printed the front door's address");
    (gw, http)
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn url(http: SocketAddr, key: &str, method: &str) -> String {
    format!("http://{http}/bot{key}/{method}")
}

/// Status, the `X-Shardgate-Bot` header and the JSON answer.
async fn answer(resp: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = resp.status().as_u16();
    let bot = resp
        .headers()
        .get("x-shardgate-bot")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await.expect("body");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, bot, v)
}

fn bot_names() -> Vec<&'static str> {
    BOTS.iter().map(|b| b.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_form_and_query_requests_are_sent_and_answered_like_the_bot_api() {
    let (gw, http) = start("").await;
    let client = http_client();

    let keyboard = json!({"inline_keyboard": [[{"text": "Pay", "callback_data": "pay:1"}]]});
    let resp = client
        .post(url(http, "any-key", "sendMessage"))
        .json(&json!({"chat_id": 1001, "text": "as JSON", "reply_markup": keyboard}))
        .send()
        .await
        .expect("request");
    let (status, bot, v) = answer(resp).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        bot_names().contains(&bot.as_deref().unwrap_or("")),
        "{bot:?}"
    );
    let id = v["result"]["message_id"].as_i64().expect("message_id");
    let kept = gw.control.message(1001, id).expect("the emulator has it");
    assert_eq!(kept["text"], "as JSON");
    assert_eq!(kept["reply_markup"], keyboard);

    // A form, as python-telegram-bot sends: every value a string, the
    // keyboard as JSON text.
    let resp = client
        .post(url(http, "any-key", "sendMessage"))
        .form(&[
            ("chat_id", "1002"),
            ("text", "as a form"),
            ("reply_markup", &keyboard.to_string()),
        ])
        .send()
        .await
        .expect("request");
    let (status, _, v) = answer(resp).await;
    assert_eq!((status, &v["ok"]), (200, &json!(true)), "{v}");
    let id = v["result"]["message_id"].as_i64().expect("message_id");
    let kept = gw.control.message(1002, id).expect("the emulator has it");
    assert_eq!(kept["text"], "as a form");
    assert_eq!(kept["reply_markup"], keyboard);

    // The query string, and a pinned bot echoed in the answer.
    let resp = client
        .get(format!(
            "{}?chat_id=1003&text=in%20the%20query",
            url(http, "any-key", "sendMessage")
        ))
        .header("X-Shardgate-Bot", "bravo")
        .send()
        .await
        .expect("request");
    let (status, bot, v) = answer(resp).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(bot.as_deref(), Some("bravo"));
    let id = v["result"]["message_id"].as_i64().expect("message_id");
    assert_eq!(
        gw.control.message(1003, id).expect("kept")["text"],
        "in the query"
    );

    // getMe answers for a bot of the fleet.
    let resp = client
        .get(url(http, "any-key", "getMe"))
        .send()
        .await
        .expect("request");
    let (status, bot, v) = answer(resp).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["is_bot"], true, "{v}");
    let pinned = BOTS
        .iter()
        .find(|b| Some(b.name) == bot.as_deref())
        .expect("a bot of the fleet");
    assert_eq!(v["result"]["id"], pinned.id, "{v}");
    common::assert_no_429_nor_duplicate(&gw.control, None);
    gw.assert_no_token_in_logs(&BOTS);
}

/// A multipart body with text fields and one file.
fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let boundary = "sg-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (name, filename, data) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_arrives_byte_exact_and_its_edit_finds_the_bot_that_sent_it() {
    let (gw, http) = start("").await;
    let client = http_client();
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (content_type, body) = multipart(
        &[("chat_id", "2001"), ("caption", "before")],
        ("photo", "chart.png", &photo),
    );
    let resp = client
        .post(url(http, "k", "sendPhoto"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let (status, sent_by, v) = answer(resp).await;
    assert_eq!(status, 200, "{v}");
    let file_id = v["result"]["photo"][0]["file_id"]
        .as_str()
        .expect("file_id");
    let (_, data) = gw
        .control
        .file(file_id)
        .expect("the emulator kept the upload");
    assert_eq!(data, photo, "the upload arrives byte for byte");
    let message_id = v["result"]["message_id"].as_i64().expect("message_id");

    // No header: the gateway remembers which bot sent the photo.
    let resp = client
        .post(url(http, "k", "editMessageCaption"))
        .json(&json!({"chat_id": 2001, "message_id": message_id, "caption": "after"}))
        .send()
        .await
        .expect("request");
    let (status, edited_by, v) = answer(resp).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(edited_by, sent_by, "the edit goes through the sender");
    assert_eq!(
        gw.control.message(2001, message_id).expect("kept")["caption"],
        "after"
    );
    common::assert_no_429_nor_duplicate(&gw.control, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_bot_api_errors_and_never_reach_the_bot_api() {
    let (gw, http) = start("").await;
    let client = http_client();
    let before = gw.control.stats().totals.requests;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client.post(url(http, "k", "getUpdates")).json(&json!({})),
            400,
            "belongs to the bot's own process",
        ),
        (
            client
                .post(url(http, "k", "sendMessage"))
                .json(&json!({"chat_id": 0, "text": "x"})),
            400,
            "chat_id",
        ),
        (
            client
                .post(url(http, "k", "editMessageText"))
                .json(&json!({"chat_id": 3001, "message_id": 77, "text": "x"})),
            400,
            "Bad Request",
        ),
        (
            client
                .post(url(http, "k", "sendMessage"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "not a JSON object",
        ),
        (
            client
                .post(url(http, "k", "sendMessage"))
                .header("X-Shardgate-Priority", "urgent")
                .json(&json!({"chat_id": 1, "text": "x"})),
            400,
            "x-shardgate-priority",
        ),
        (
            client.get(format!("http://{http}/metrics")),
            404,
            "Not Found",
        ),
    ];
    for (req, code, words) in cases {
        let (status, bot, v) = answer(req.send().await.expect("request")).await;
        assert_eq!(status, code, "{v}");
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error_code"], code, "{v}");
        let description = v["description"].as_str().expect("description");
        assert!(description.contains(words), "{description}");
        assert_eq!(bot, None);
    }
    assert_eq!(
        gw.control.stats().totals.requests,
        before,
        "nothing refused reached the Bot API"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_callers_the_key_of_the_path_authenticates_and_quotas_answer_429() {
    away_from_a_window_edge().await;
    let dir = tempfile::tempdir().expect("tmp");
    let callers = dir.path().join("callers.toml");
    std::fs::write(&callers, "").expect("write");
    let file = callers.to_str().expect("utf-8");
    let out = shardgate(
        &[
            "caller",
            "--callers-file",
            file,
            "add",
            "shop",
            "--messages-per-window",
            "2",
            "--window-secs",
            &WEEK.to_string(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let (gw, http) = start(&format!("callers_file = {file:?}\n")).await;
    let client = http_client();
    let send = |key: String, chat: i64| {
        client
            .post(url(http, &key, "sendMessage"))
            .json(&json!({"chat_id": chat, "text": "hello"}))
            .send()
    };
    let (status, _, v) = answer(send("sg_not_a_key".into(), 4001).await.expect("request")).await;
    assert_eq!(status, 401, "{v}");
    assert!(
        v["description"]
            .as_str()
            .unwrap_or("")
            .starts_with("Unauthorized"),
        "{v}"
    );
    for chat in [4002, 4003] {
        let (status, _, v) = answer(send(key.clone(), chat).await.expect("request")).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, _, v) = answer(send(key.clone(), 4004).await.expect("request")).await;
    assert_eq!(status, 429, "{v}");
    let retry_after = v["parameters"]["retry_after"]
        .as_u64()
        .expect("retry_after");
    assert!(retry_after >= 1, "{v}");
    assert_eq!(
        gw.control.stats().totals.requests,
        2,
        "only the two admitted went out"
    );
    assert!(
        !gw.logs().contains(&key),
        "the key never appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_door_serves_https_and_a_client_certificate_names_the_caller() {
    use common::tls::Ca;
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    };
    let servers = Ca::new("servers");
    let clients = Ca::new("clients");
    let (cert, key) = servers.issue("gateway");
    let cert_path = write("cert.pem", &cert);
    let key_path = write("key.pem", &key);
    let ca_path = write("clients.pem", &clients.pem);
    // Auth is on (a caller exists); `billing` is named by its certificate.
    let callers = write(
        "callers.toml",
        "[[caller]]\nname = \"billing\"\nkey_sha256 = []\n",
    );
    let (gw, http) = start(&format!(
        "tls_cert = {cert_path:?}\ntls_key = {key_path:?}\ntls_client_ca = {ca_path:?}\ncallers_file = {callers:?}\n"
    ))
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trust = reqwest::Certificate::from_pem(servers.pem.as_bytes()).expect("CA");
    let (client_cert, client_key) = clients.issue("billing");
    let identity =
        reqwest::Identity::from_pem(format!("{client_cert}{client_key}").as_bytes()).expect("id");
    let with_cert = reqwest::Client::builder()
        .tls_certs_only([trust.clone()])
        .identity(identity)
        .build()
        .expect("client");
    let without = reqwest::Client::builder()
        .tls_certs_only([trust])
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/botkeyless/sendMessage", http.port());
    let body = json!({"chat_id": 7001, "text": "over TLS"});
    let (status, _, v) = answer(with_cert.post(&url).json(&body).send().await.expect("TLS")).await;
    assert_eq!(status, 200, "the certificate names billing: {v}");
    let (status, _, v) = answer(without.post(&url).json(&body).send().await.expect("TLS")).await;
    assert_eq!(status, 401, "no certificate, no key: {v}");
    let plain = http_client()
        .post(format!("http://{http}/botk/sendMessage"))
        .json(&body)
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP was served on the TLS port"
    );
    assert_eq!(gw.control.stats().totals.requests, 1);
}
