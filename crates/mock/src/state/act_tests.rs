//! The methods beyond `sendMessage` against the engine, with explicit arrival times: uploads
//! kept byte-exact, albums counted per item and all or none, copies and forwards, edits and
//! deletes of a bot's own messages sharing the chat's budget, the paid lane.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};

use super::tests::call;
use super::*;
use crate::methods;
use crate::params::{FilePart, Params};
use crate::token::test_token;

fn engine() -> Engine {
    Engine::new(MockConfig {
        seed: Some(3),
        ..MockConfig::default()
    })
}

fn json_call(method: &str, v: Value, files: Vec<FilePart>) -> Call {
    let values = match v {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    methods::parse(method, Ok(Params { values, files }))
}

fn upload(field: &str, data: &[u8]) -> FilePart {
    FilePart {
        field: field.into(),
        filename: format!("{field}.jpg"),
        content_type: Some("image/jpeg".into()),
        data: Bytes::copy_from_slice(data),
    }
}

/// The answer as Telegram's JSON body, and its status.
fn run(e: &mut Engine, bot: u64, c: Call, at: Instant) -> (u16, Value) {
    match e.handle(&test_token(bot), c, at, 1_700_000_000_000) {
        Decision::Answer { reply, .. } => (reply.status(), reply.to_json()),
        Decision::Drop => (0, Value::Null),
    }
}

#[test]
fn photos_are_stored_byte_exact_and_their_file_id_resends() {
    let mut e = engine();
    let t = Instant::now();
    let bytes = b"\xff\xd8\xff\xe0 not really a jpeg \x00\r\n";
    let (code, body) = run(
        &mut e,
        1,
        json_call(
            "sendPhoto",
            json!({"chat_id": 5, "caption": "look"}),
            vec![upload("photo", bytes)],
        ),
        t,
    );
    assert_eq!(code, 200, "{body}");
    let photo = &body["result"]["photo"][0];
    assert_eq!(body["result"]["caption"], "look");
    assert_eq!(photo["file_size"], bytes.len());
    let file_id = photo["file_id"].as_str().unwrap_or_default().to_owned();
    let stored = e.file(&file_id).map(|f| f.data.to_vec());
    assert_eq!(stored.as_deref(), Some(&bytes[..]));
    assert_eq!(e.files()[0].sha256, crate::files::sha256_hex(bytes));
    // The file_id may be sent again, and as a document too.
    let (code, body) = run(
        &mut e,
        1,
        json_call("sendPhoto", json!({"chat_id": 6, "photo": file_id}), vec![]),
        t,
    );
    assert_eq!(code, 200);
    assert_eq!(body["result"]["photo"][0]["file_id"], file_id.as_str());
    let (code, body) = run(
        &mut e,
        1,
        json_call(
            "sendDocument",
            json!({"chat_id": 6, "document": "nope"}),
            vec![],
        ),
        t,
    );
    assert_eq!(
        (code, body["description"].as_str()),
        (
            400,
            Some("Bad Request: wrong file identifier/HTTP URL specified")
        )
    );
    let (code, body) = run(
        &mut e,
        1,
        json_call(
            "sendDocument",
            json!({"chat_id": 7}),
            vec![FilePart {
                filename: "r.pdf".into(),
                content_type: Some("application/pdf".into()),
                ..upload("document", b"%PDF-1.7")
            }],
        ),
        t,
    );
    assert_eq!(code, 200);
    assert_eq!(body["result"]["document"]["file_name"], "r.pdf");
    assert_eq!(body["result"]["document"]["mime_type"], "application/pdf");
    assert_eq!(e.stats().totals.delivered, 3);
}

fn album(chat: i64, n: usize) -> Call {
    let media: Vec<Value> = (0..n)
        .map(|i| json!({"type": "photo", "media": format!("attach://p{i}")}))
        .collect();
    let files = (0..n)
        .map(|i| upload(&format!("p{i}"), format!("bytes {i}").as_bytes()))
        .collect();
    json_call(
        "sendMediaGroup",
        json!({"chat_id": chat, "media": media}),
        files,
    )
}

#[test]
fn an_album_of_ten_is_ten_messages_counted_against_every_limit_all_or_none() {
    let mut e = engine();
    let t = Instant::now();
    let (code, body) = run(&mut e, 1, album(5, 10), t);
    assert_eq!(code, 200, "{body}");
    let items = body["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 10);
    let group = items[0]["media_group_id"].clone();
    assert!(group.is_string());
    assert!(items.iter().all(|m| m["media_group_id"] == group));
    let ids: Vec<i64> = items
        .iter()
        .filter_map(|m| m["message_id"].as_i64())
        .collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    assert_eq!(e.stats().totals.delivered, 10);
    assert_eq!(e.stats().totals.max_delivered_per_s, 10);
    // The chat is 7 messages in debt: the next message waits about 8 s.
    let (code, body) = run(
        &mut e,
        1,
        call("sendMessage", "chat_id=5&text=next"),
        t + Duration::from_secs(1),
    );
    assert_eq!(code, 429);
    assert_eq!(body["parameters"]["retry_after"], 7);
    // A rejected album consumes nothing: no ids, no files, no log entries.
    let files_before = e.files().len();
    let (code, _) = run(&mut e, 1, album(5, 2), t + Duration::from_secs(2));
    assert_eq!(code, 429);
    assert_eq!(e.files().len(), files_before);
    assert_eq!(e.deliveries(0, usize::MAX).len(), 10);
    // Three albums fill the bot's 30 per second.
    let (c1, _) = run(&mut e, 2, album(11, 10), t);
    let (c2, _) = run(&mut e, 2, album(12, 10), t);
    let (c3, _) = run(&mut e, 2, album(13, 10), t);
    assert_eq!((c1, c2, c3), (200, 200, 200));
    let (code, _) = run(&mut e, 2, call("sendMessage", "chat_id=14&text=x"), t);
    assert_eq!(code, 429);
    assert_eq!(e.stats().bot(2).rate_limited_bot, 1);
}

#[test]
fn edits_reach_only_the_senders_message_and_share_the_chats_budget() {
    let mut e = engine();
    let t = Instant::now();
    let markup = json!({"inline_keyboard": [[{"text": "Pay", "callback_data": "pay"}]]});
    let (code, body) = run(
        &mut e,
        1,
        json_call(
            "sendMessage",
            json!({"chat_id": 5, "text": "pending", "reply_markup": markup}),
            vec![],
        ),
        t,
    );
    assert_eq!(code, 200);
    assert_eq!(body["result"]["reply_markup"], markup);
    let edit = |text: &str| {
        json_call(
            "editMessageText",
            json!({"chat_id": 5, "message_id": 1, "text": text}),
            vec![],
        )
    };
    // Another bot, another chat, another id: not found.
    let not_found = Some("Bad Request: message to edit not found");
    assert_eq!(
        run(&mut e, 2, edit("paid"), t).1["description"].as_str(),
        not_found
    );
    let elsewhere = json_call(
        "editMessageText",
        json!({"chat_id": 6, "message_id": 1, "text": "x"}),
        vec![],
    );
    assert_eq!(
        run(&mut e, 1, elsewhere, t).1["description"].as_str(),
        not_found
    );
    let missing = json_call(
        "editMessageText",
        json!({"chat_id": 5, "message_id": 9, "text": "x"}),
        vec![],
    );
    assert_eq!(
        run(&mut e, 1, missing, t).1["description"].as_str(),
        not_found
    );
    // The sender edits: text replaced, keyboard gone (not given again), edit_date set.
    let (code, body) = run(&mut e, 1, edit("paid"), t);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"]["text"], "paid");
    assert!(body["result"].get("reply_markup").is_none());
    assert_eq!(body["result"]["edit_date"], 1_700_000_000);
    assert_eq!(
        e.message(5, 1).map(|m| m["text"].clone()),
        Some(json!("paid"))
    );
    // Send, edit, edit: the chat's burst of 3 is used; the next edit is a 429.
    assert_eq!(run(&mut e, 1, edit("third"), t).0, 200);
    assert_eq!(run(&mut e, 1, edit("fourth"), t).0, 429);
    assert_eq!(e.stats().bot(1).edited, 2);
    assert_eq!(e.stats().bot(1).rate_limited_chat, 1);
    let (code, body) = run(&mut e, 1, edit("third"), t + Duration::from_secs(5));
    assert_eq!(code, 400);
    assert!(
        body["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Bad Request: message is not modified")
    );
    // Markup and caption edits.
    let later = t + Duration::from_secs(10);
    let markup_edit = json_call(
        "editMessageReplyMarkup",
        json!({"chat_id": 5, "message_id": 1, "reply_markup": markup}),
        vec![],
    );
    let (code, body) = run(&mut e, 1, markup_edit, later);
    assert_eq!(
        (code, body["result"]["reply_markup"].clone()),
        (200, markup.clone())
    );
    let caption_edit = json_call(
        "editMessageCaption",
        json!({"chat_id": 5, "message_id": 1, "caption": "c"}),
        vec![],
    );
    assert_eq!(
        run(&mut e, 1, caption_edit, later).1["description"],
        "Bad Request: there is no caption in the message to edit"
    );
    let (_, body) = run(
        &mut e,
        1,
        json_call(
            "sendPhoto",
            json!({"chat_id": 5, "caption": "old"}),
            vec![upload("photo", b"p")],
        ),
        later,
    );
    let id = body["result"]["message_id"].clone();
    let caption_edit = json_call(
        "editMessageCaption",
        json!({"chat_id": 5, "message_id": id, "caption": "new"}),
        vec![],
    );
    let (code, body) = run(&mut e, 1, caption_edit, later + Duration::from_secs(1));
    assert_eq!(
        (code, body["result"]["caption"].clone()),
        (200, json!("new"))
    );
    let text_edit = json_call(
        "editMessageText",
        json!({"chat_id": 5, "message_id": id, "text": "t"}),
        vec![],
    );
    assert_eq!(
        run(&mut e, 1, text_edit, later + Duration::from_secs(2)).1["description"],
        "Bad Request: there is no text in the message to edit"
    );
}

#[test]
fn deletes_remove_the_senders_messages() {
    let mut e = engine();
    let t = Instant::now();
    for i in 0..3 {
        assert_eq!(
            run(
                &mut e,
                1,
                call("sendMessage", &format!("chat_id=5&text=m{i}")),
                t
            )
            .0,
            200
        );
    }
    let later = t + Duration::from_secs(10);
    let delete = |id: i64| {
        json_call(
            "deleteMessage",
            json!({"chat_id": 5, "message_id": id}),
            vec![],
        )
    };
    assert_eq!(
        run(&mut e, 2, delete(1), later).1["description"],
        "Bad Request: message to delete not found"
    );
    assert_eq!(
        run(&mut e, 1, delete(1), later),
        (200, json!({"ok": true, "result": true}))
    );
    assert_eq!(
        run(&mut e, 1, delete(1), later).1["description"],
        "Bad Request: message to delete not found"
    );
    assert_eq!(e.message(5, 1), None);
    // deleteMessages skips what it cannot find.
    let many = json_call(
        "deleteMessages",
        json!({"chat_id": 5, "message_ids": [1, 2, 3, 99]}),
        vec![],
    );
    assert_eq!(run(&mut e, 1, many, later + Duration::from_secs(1)).0, 200);
    assert_eq!(e.message(5, 3), None);
    assert_eq!(e.stats().bot(1).deleted, 3);
}

#[test]
fn copies_and_forwards_deliver_new_messages_per_item() {
    let mut e = engine();
    let t = Instant::now();
    run(&mut e, 1, call("sendMessage", "chat_id=5&text=original"), t);
    run(
        &mut e,
        1,
        json_call(
            "sendPhoto",
            json!({"chat_id": 5, "caption": "pic"}),
            vec![upload("photo", b"px")],
        ),
        t,
    );
    let (code, body) = run(
        &mut e,
        2,
        json_call(
            "copyMessage",
            json!({"chat_id": 6, "from_chat_id": 5, "message_id": 1}),
            vec![],
        ),
        t,
    );
    assert_eq!(
        (code, body["result"].clone()),
        (200, json!({"message_id": 1}))
    );
    assert_eq!(
        e.message(6, 1)
            .map(|m| (m["text"].clone(), m["from"]["id"].clone())),
        Some((json!("original"), json!(2)))
    );
    let (code, body) = run(
        &mut e,
        2,
        json_call(
            "forwardMessage",
            json!({"chat_id": 6, "from_chat_id": 5, "message_id": 2}),
            vec![],
        ),
        t,
    );
    assert_eq!(code, 200);
    assert_eq!(body["result"]["forward_origin"]["sender_user"]["id"], 1);
    assert_eq!(body["result"]["caption"], "pic");
    assert!(body["result"]["photo"][0]["file_id"].is_string());
    let (code, body) = run(
        &mut e,
        2,
        json_call(
            "copyMessages",
            json!({"chat_id": 7, "from_chat_id": 5, "message_ids": [1, 2, 50]}),
            vec![],
        ),
        t,
    );
    assert_eq!(
        (code, body["result"].clone()),
        (200, json!([{"message_id": 1}, {"message_id": 2}]))
    );
    let (code, body) = run(
        &mut e,
        2,
        json_call(
            "forwardMessage",
            json!({"chat_id": 6, "from_chat_id": 5, "message_id": 50}),
            vec![],
        ),
        t,
    );
    assert_eq!(
        (code, body["description"].as_str()),
        (400, Some("Bad Request: message to forward not found"))
    );
    // Chat 7 took two messages at once, chat 6 two: a third copy into 7 fits, a second
    // batch of two does not.
    let (code, _) = run(
        &mut e,
        2,
        json_call(
            "forwardMessages",
            json!({"chat_id": 7, "from_chat_id": 5, "message_ids": [1, 2]}),
            vec![],
        ),
        t,
    );
    assert_eq!(code, 429);
    assert_eq!(e.stats().bot(2).delivered, 4);
}

#[test]
fn the_paid_lane_lifts_one_bot_to_a_thousand_a_second() {
    let mut e = engine();
    let t = Instant::now();
    for chat in 1..=1000 {
        let c = json_call(
            "sendMessage",
            json!({"chat_id": chat, "text": "sale", "allow_paid_broadcast": true}),
            vec![],
        );
        assert_eq!(run(&mut e, 1, c, t).0, 200, "chat {chat}");
    }
    let c = json_call(
        "sendMessage",
        json!({"chat_id": 1001, "text": "sale", "allow_paid_broadcast": true}),
        vec![],
    );
    assert_eq!(run(&mut e, 1, c, t).0, 429);
    let s = e.stats().bot(1);
    assert_eq!(
        (s.delivered, s.paid, s.max_delivered_per_s),
        (1000, 970, 1000)
    );
    // Without the flag the free 30 per second hold.
    for chat in 1..=30 {
        assert_eq!(
            run(
                &mut e,
                2,
                call("sendMessage", &format!("chat_id={chat}&text=x")),
                t
            )
            .0,
            200
        );
    }
    assert_eq!(
        run(&mut e, 2, call("sendMessage", "chat_id=31&text=x"), t).0,
        429
    );
    // The control plane may turn the lane off.
    e.set_paid_bot_max(0);
    let c = json_call(
        "sendMessage",
        json!({"chat_id": 1, "text": "sale", "allow_paid_broadcast": true}),
        vec![],
    );
    assert_eq!(run(&mut e, 3, c, t).0, 200);
    assert_eq!(e.paid_bot_max(), 0);
}

#[test]
fn callback_answers_are_true_and_unlimited() {
    let mut e = engine();
    let t = Instant::now();
    for i in 0..100 {
        let c = json_call(
            "answerCallbackQuery",
            json!({"callback_query_id": format!("q{i}")}),
            vec![],
        );
        assert_eq!(
            run(&mut e, 1, c, t),
            (200, json!({"ok": true, "result": true}))
        );
    }
    assert_eq!(e.stats().bot(1).rate_limited, 0);
}
