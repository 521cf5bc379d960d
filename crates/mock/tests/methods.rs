//! End-to-end tests of the methods beyond `sendMessage`, over HTTP with a real multipart
//! client: uploads arrive byte-exact, albums by `attach://`, edits of the sender's own
//! message, copies, deletes, callback answers, the paid lane's setting.

mod common;

use common::{Api, TestResult, slow_limits, start};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use shardgate_mock::{FileInfo, test_token};

/// Bytes no text encoding would keep intact: every byte value, CR LF, and a fake boundary.
fn awkward_bytes(len: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    data.extend_from_slice(b"\r\n--boundary\r\n\x00\xff");
    data
}

async fn fetch_file(api: &Api, file_id: &str) -> Result<(Vec<u8>, String), reqwest::Error> {
    let resp = api.send_get(&format!("/_mock/files/{file_id}")).await?;
    let sha = resp
        .headers()
        .get("x-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((resp.bytes().await?.to_vec(), sha))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_arrive_byte_exact_and_can_be_fetched() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let api = Api::new(&server)?;
    let bot = format!("/bot{}", test_token(2001));
    let photo = awkward_bytes(300_000);
    let form = Form::new()
        .text("chat_id", "10")
        .text("caption", "a photo")
        .part(
            "photo",
            Part::bytes(photo.clone())
                .file_name("p.jpg")
                .mime_str("image/jpeg")?,
        );
    let (status, body) = api
        .post_multipart(&format!("{bot}/sendPhoto"), form)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["caption"], "a photo");
    let size = &body["result"]["photo"][0];
    assert_eq!(size["file_size"], photo.len());
    let file_id = size["file_id"].as_str().unwrap_or_default().to_owned();
    let (bytes, sha) = fetch_file(&api, &file_id).await?;
    assert!(bytes == photo, "the photo came back changed");
    let files: Vec<FileInfo> = api.get_as("/_mock/files").await?;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].sha256, sha);
    assert_eq!(files[0].file_name, "p.jpg");
    assert_eq!(files[0].bot_id, 2001);
    assert_eq!(server.control().file(&file_id).map(|f| f.1), Some(photo));

    // A document by attach://, then the same file again by its file_id in JSON.
    let doc = awkward_bytes(70_000);
    let form = Form::new()
        .text("chat_id", "11")
        .text("document", "attach://report")
        .part(
            "report",
            Part::bytes(doc.clone())
                .file_name("r.pdf")
                .mime_str("application/pdf")?,
        );
    let (status, body) = api
        .post_multipart(&format!("{bot}/sendDocument"), form)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["document"]["file_name"], "r.pdf");
    let doc_id = body["result"]["document"]["file_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(fetch_file(&api, &doc_id).await?.0 == doc);
    let (status, body) = api
        .post_json(
            &format!("{bot}/sendDocument"),
            &json!({"chat_id": 12, "document": doc_id}),
        )
        .await?;
    assert_eq!(
        (status, body["result"]["document"]["file_id"].as_str()),
        (200, Some(doc_id.as_str()))
    );
    assert_eq!(api.status("/_mock/files/unknown").await?, 404);

    // Telegram's size limits: a photo over 10 MB is refused, the same bytes as a document go.
    let big = vec![7u8; (10 << 20) + 1];
    let form = Form::new()
        .text("chat_id", "13")
        .part("photo", Part::bytes(big.clone()).file_name("big.jpg"));
    let (status, body) = api
        .post_multipart(&format!("{bot}/sendPhoto"), form)
        .await?;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: PHOTO_INVALID_DIMENSIONS"))
    );
    let form = Form::new()
        .text("chat_id", "13")
        .part("document", Part::bytes(big).file_name("big.bin"));
    assert_eq!(
        api.post_multipart(&format!("{bot}/sendDocument"), form)
            .await?
            .0,
        200
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_album_by_attach_is_one_message_per_item() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let api = Api::new(&server)?;
    let bot = format!("/bot{}", test_token(2002));
    let files: Vec<Vec<u8>> = (0..3).map(|i| awkward_bytes(1000 + i)).collect();
    let media: Vec<Value> = (0..3)
        .map(|i| json!({"type": "photo", "media": format!("attach://f{i}"), "caption": format!("#{i}")}))
        .collect();
    let mut form = Form::new()
        .text("chat_id", "-1001000000001")
        .text("media", Value::from(media).to_string());
    for (i, data) in files.iter().enumerate() {
        form = form.part(
            format!("f{i}"),
            Part::bytes(data.clone()).file_name(format!("f{i}.jpg")),
        );
    }
    let (status, body) = api
        .post_multipart(&format!("{bot}/sendMediaGroup"), form)
        .await?;
    assert_eq!(status, 200, "{body}");
    let items = body["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["caption"], format!("#{i}"));
        assert_eq!(item["media_group_id"], items[0]["media_group_id"]);
        let id = item["photo"][0]["file_id"].as_str().unwrap_or_default();
        assert!(
            fetch_file(&api, id).await?.0 == files[i],
            "item {i} changed"
        );
    }
    let stats = server.control().stats();
    assert_eq!(stats.bot(2002).delivered, 3);
    assert_eq!(server.control().deliveries(0).len(), 3);
    // One item is not an album.
    let (status, body) = api
        .post_json(
            &format!("{bot}/sendMediaGroup"),
            &json!({"chat_id": 5, "media": [{"type": "photo", "media": "x"}]}),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyboard_an_edit_a_copy_a_delete_and_a_callback() -> TestResult {
    let server = start(None).await?;
    let api = Api::new(&server)?;
    let bot = format!("/bot{}", test_token(2003));
    let other = format!("/bot{}", test_token(2004));
    let keyboard =
        json!({"inline_keyboard": [[{"text": "Mark paid", "callback_data": "paid:42"}]]});
    let (status, body) = api
        .post_json(
            &format!("{bot}/sendMessage"),
            &json!({"chat_id": -1001000000002i64, "text": "Order 42: pending", "reply_markup": keyboard,
                    "message_thread_id": 3, "entities": [{"type": "bold", "offset": 0, "length": 8}],
                    "link_preview_options": {"is_disabled": true}}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["reply_markup"], keyboard);
    assert_eq!(body["result"]["message_thread_id"], 3);
    assert_eq!(body["result"]["is_topic_message"], true);
    assert_eq!(body["result"]["entities"][0]["type"], "bold");
    let id = body["result"]["message_id"]
        .as_i64()
        .unwrap_or_default()
        .to_string();

    // Another bot cannot edit it; the sender can (form body, markup as JSON text).
    let edit = [
        ("chat_id", "-1001000000002"),
        ("message_id", id.as_str()),
        ("text", "Order 42: paid"),
    ];
    let (status, body) = api
        .post_form(&format!("{other}/editMessageText"), &edit)
        .await?;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"})
        )
    );
    let (status, body) = api
        .post_form(&format!("{bot}/editMessageText"), &edit)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], "Order 42: paid");
    assert!(body["result"]["edit_date"].is_u64());
    let (status, shown) = api
        .get(&format!(
            "/_mock/message?chat_id=-1001000000002&message_id={id}"
        ))
        .await?;
    assert_eq!(
        (status, shown["text"].clone()),
        (200, json!("Order 42: paid"))
    );

    // Copy it elsewhere, then delete the original.
    let (status, body) = api
        .post_json(
            &format!("{bot}/copyMessage"),
            &json!({"chat_id": 77, "from_chat_id": -1001000000002i64, "message_id": id.parse::<i64>()?}),
        )
        .await?;
    assert_eq!(
        (status, body["result"]["message_id"].clone()),
        (200, json!(1))
    );
    assert_eq!(
        server.control().message(77, 1).map(|m| m["text"].clone()),
        Some(json!("Order 42: paid"))
    );
    let delete = [("chat_id", "-1001000000002"), ("message_id", id.as_str())];
    assert_eq!(
        api.post_form(&format!("{bot}/deleteMessage"), &delete)
            .await?,
        (200, json!({"ok": true, "result": true}))
    );
    assert_eq!(
        api.status(&format!(
            "/_mock/message?chat_id=-1001000000002&message_id={id}"
        ))
        .await?,
        404
    );

    // The button's callback is answered.
    let (status, body) = api
        .post_form(
            &format!("{bot}/answerCallbackQuery"),
            &[("callback_query_id", "4242"), ("text", "Done")],
        )
        .await?;
    assert_eq!((status, body), (200, json!({"ok": true, "result": true})));
    let stats = server.control().stats().bot(2003);
    assert_eq!((stats.delivered, stats.edited, stats.deleted), (2, 1, 1));
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paid_lane_is_set_over_http() -> TestResult {
    let server = start(Some(slow_limits())).await?;
    let api = Api::new(&server)?;
    let (_, limits) = api.get("/_mock/limits").await?;
    assert_eq!(limits["paid_bot_max"], 1000);
    let (status, _) = api
        .post_json(
            "/_mock/limits",
            &json!({"paid_bot_max": 40, "bot_window_ms": 600_000}),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(server.control().paid_bot_max(), 40);
    // 40 paid messages in one (ten-minute) window from one bot; the 41st is a 429; 10 went
    // over the free 30.
    let bot = format!("/bot{}", test_token(2005));
    for chat in 1..=40 {
        let (status, body) = api
            .post_json(
                &format!("{bot}/sendMessage"),
                &json!({"chat_id": chat, "text": "sale", "allow_paid_broadcast": true}),
            )
            .await?;
        assert_eq!(status, 200, "{chat}: {body}");
    }
    let (status, body) = api
        .post_json(
            &format!("{bot}/sendMessage"),
            &json!({"chat_id": 41, "text": "sale", "allow_paid_broadcast": true}),
        )
        .await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(server.control().stats().bot(2005).paid, 10);
    server.shutdown().await;
    Ok(())
}
