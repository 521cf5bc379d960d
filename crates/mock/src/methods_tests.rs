//! Parsing and validation of each method, with Telegram's error descriptions.

use super::*;
use axum::body::Bytes;
use serde_json::json;

use crate::params::FilePart;

fn json_params(v: Value) -> Params {
    Params {
        values: match v {
            Value::Object(m) => m,
            _ => Default::default(),
        },
        files: Vec::new(),
    }
}

fn parse_json(method: &str, v: Value) -> Result<Request, ApiError> {
    match parse(method, Ok(json_params(v))) {
        Call::Api(r) => r,
        other => panic!("{other:?}"),
    }
}

fn description(r: Result<Request, ApiError>) -> String {
    match r {
        Err(e) => e.description.into_owned(),
        Ok(r) => format!("ok: {r:?}"),
    }
}

fn part(field: &str, data: &'static [u8]) -> FilePart {
    FilePart {
        field: field.into(),
        filename: format!("{field}.bin"),
        content_type: Some("application/octet-stream".into()),
        data: Bytes::from_static(data),
    }
}

#[test]
fn known_methods_only_and_case_insensitive() {
    assert_eq!(parse("getme", Ok(Params::default())), Call::GetMe);
    assert_eq!(parse("sendVoice", Ok(Params::default())), Call::Unknown);
    assert!(matches!(
        parse("EDITMESSAGETEXT", Ok(Params::default())),
        Call::Api(Err(_))
    ));
}

#[test]
fn send_message_validation_in_telegrams_order() {
    let d = |v| description(parse_json("sendMessage", v));
    assert_eq!(d(json!({"text": "hi"})), "Bad Request: chat_id is empty");
    assert_eq!(
        d(json!({"chat_id": " ", "text": "hi"})),
        "Bad Request: chat_id is empty"
    );
    assert_eq!(
        d(json!({"chat_id": 1})),
        "Bad Request: message text is empty"
    );
    assert_eq!(
        d(json!({"chat_id": 1, "text": "a".repeat(4097)})),
        "Bad Request: message is too long"
    );
    assert_eq!(
        d(json!({"chat_id": 1, "text": "x", "parse_mode": "BBCode"})),
        "Bad Request: unsupported parse_mode"
    );
    assert_eq!(
        d(json!({"chat_id": 1, "text": "x", "reply_markup": {"buttons": []}})),
        "Bad Request: can't parse reply keyboard markup JSON object"
    );
    assert_eq!(
        d(json!({"chat_id": 1, "text": "x", "message_thread_id": "x"})),
        "Bad Request: message thread not found"
    );
    assert_eq!(
        d(json!({"chat_id": 1, "text": "x", "entities": "{"})),
        "Bad Request: can't parse entities JSON object"
    );
}

#[test]
fn send_message_takes_markup_threads_entities_and_the_paid_flag() {
    let markup = json!({"inline_keyboard": [[{"text": "Pay", "callback_data": "pay"}]]});
    let r = parse_json(
        "sendMessage",
        json!({"chat_id": "-100123", "text": "x", "reply_markup": markup.to_string(), "message_thread_id": "7",
               "entities": [{"type": "bold", "offset": 0, "length": 1}], "allow_paid_broadcast": "true",
               "protect_content": true, "link_preview_options": {"is_disabled": true}}),
    );
    let Ok(Request {
        chat,
        paid,
        action: Action::Send {
            drafts,
            album: false,
        },
    }) = r
    else {
        panic!("{r:?}");
    };
    assert_eq!(chat, Some(Target::Id(-100123)));
    assert!(paid);
    assert_eq!(drafts[0].reply_markup, Some(markup));
    assert_eq!(drafts[0].thread, Some(7));
    assert_eq!(
        drafts[0]
            .entities
            .as_ref()
            .and_then(|e| e.as_array())
            .map(Vec::len),
        Some(1)
    );
    // Reply keyboards are accepted, not shown on the message.
    let r = parse_json(
        "sendMessage",
        json!({"chat_id": 1, "text": "x", "reply_markup": {"force_reply": true}}),
    );
    assert!(
        matches!(r, Ok(Request { action: Action::Send { ref drafts, .. }, .. }) if drafts[0].reply_markup.is_none())
    );
    assert!(matches!(
        parse_json("sendMessage", json!({"chat_id": "@chan", "text": "x"})),
        Ok(Request {
            chat: Some(Target::Unknown),
            ..
        })
    ));
}

#[test]
fn photos_and_documents_come_as_uploads_file_ids_or_urls() {
    let source = |p: Params, method: &str| match parse(method, Ok(p)) {
        Call::Api(Ok(Request {
            action: Action::Send { mut drafts, .. },
            ..
        })) => drafts.pop().and_then(|d| d.media).map(|m| m.1),
        other => panic!("{other:?}"),
    };
    let mut p = json_params(json!({"chat_id": 1, "caption": "c"}));
    p.files.push(part("photo", b"\x89PNG"));
    assert!(
        matches!(source(p, "sendPhoto"), Some(FileSource::Upload { ref data, .. }) if &data[..] == b"\x89PNG")
    );
    let mut p = json_params(json!({"chat_id": 1, "document": "attach://f1"}));
    p.files.push(part("f1", b"%PDF"));
    assert!(matches!(
        source(p, "sendDocument"),
        Some(FileSource::Upload { .. })
    ));
    assert_eq!(
        source(
            json_params(json!({"chat_id": 1, "photo": "AgAD"})),
            "sendPhoto"
        ),
        Some(FileSource::Id("AgAD".into()))
    );
    assert_eq!(
        source(
            json_params(json!({"chat_id": 1, "document": "https://example.invalid/a.pdf"})),
            "sendDocument"
        ),
        Some(FileSource::Url("https://example.invalid/a.pdf".into()))
    );
    let d = |method: &str, v| description(parse_json(method, v));
    assert_eq!(
        d("sendPhoto", json!({"chat_id": 1})),
        "Bad Request: there is no photo in the request"
    );
    assert_eq!(
        d("sendDocument", json!({"chat_id": 1})),
        "Bad Request: there is no document in the request"
    );
    assert_eq!(
        d("sendPhoto", json!({"chat_id": 1, "photo": "attach://nope"})),
        "Bad Request: wrong file identifier/HTTP URL specified"
    );
    assert_eq!(
        d(
            "sendPhoto",
            json!({"chat_id": 1, "photo": "x", "caption": "c".repeat(1025)})
        ),
        "Bad Request: message caption is too long"
    );
}

#[test]
fn oversized_uploads_are_refused() {
    static BIG_PHOTO: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| vec![0u8; (MAX_PHOTO_BYTES + 1) as usize]);
    let mut p = json_params(json!({"chat_id": 1}));
    p.files.push(FilePart {
        data: Bytes::from_static(&BIG_PHOTO),
        ..part("photo", b"")
    });
    assert_eq!(
        description(request("sendPhoto", &p)),
        "Bad Request: PHOTO_INVALID_DIMENSIONS"
    );
    // The same bytes are a fine document.
    let mut p = json_params(json!({"chat_id": 1}));
    p.files.push(FilePart {
        data: Bytes::from_static(&BIG_PHOTO),
        ..part("document", b"")
    });
    assert!(request("sendDocument", &p).is_ok());
}

#[test]
fn albums_hold_two_to_ten_media() {
    let items = |n: usize| {
        (0..n)
            .map(
                |i| json!({"type": "photo", "media": format!("id{i}"), "caption": format!("c{i}")}),
            )
            .collect::<Vec<_>>()
    };
    let r = parse_json("sendMediaGroup", json!({"chat_id": 1, "media": items(10)}));
    assert!(
        matches!(r, Ok(Request { action: Action::Send { ref drafts, album: true }, .. }) if drafts.len() == 10)
    );
    for n in [0, 1, 11] {
        assert_eq!(
            description(parse_json(
                "sendMediaGroup",
                json!({"chat_id": 1, "media": items(n)})
            )),
            "Bad Request: wrong number of media in the group: 2 to 10 are allowed"
        );
    }
    let mut p = json_params(
        json!({"chat_id": 1, "media": json!([{"type": "photo", "media": "attach://a"}, {"type": "document", "media": "attach://b"}]).to_string()}),
    );
    p.files.push(part("a", b"1"));
    assert_eq!(
        description(request("sendMediaGroup", &p)),
        "Bad Request: wrong file identifier/HTTP URL specified"
    );
    p.files.push(part("b", b"2"));
    assert!(request("sendMediaGroup", &p).is_ok());
    assert_eq!(
        description(parse_json(
            "sendMediaGroup",
            json!({"chat_id": 1, "media": [{"type": "sticker", "media": "a"}, {"type": "photo", "media": "b"}]})
        )),
        "Bad Request: unsupported media type in the group"
    );
}

#[test]
fn copies_forwards_edits_and_deletes_name_their_messages() {
    let r = parse_json(
        "copyMessages",
        json!({"chat_id": 1, "from_chat_id": 2, "message_ids": "[3,4]"}),
    );
    assert!(
        matches!(r, Ok(Request { action: Action::Copy(Copy { ref ids, many: true, forward: false, from: Target::Id(2), .. }), .. }) if ids == &[3, 4])
    );
    let r = parse_json(
        "forwardMessage",
        json!({"chat_id": 1, "from_chat_id": 2, "message_id": 3}),
    );
    assert!(matches!(
        r,
        Ok(Request {
            action: Action::Copy(Copy {
                many: false,
                forward: true,
                ..
            }),
            ..
        })
    ));
    let d = |method: &str, v| description(parse_json(method, v));
    assert_eq!(
        d("copyMessage", json!({"chat_id": 1, "from_chat_id": 2})),
        "Bad Request: message identifier is not specified"
    );
    assert_eq!(
        d(
            "forwardMessages",
            json!({"chat_id": 1, "from_chat_id": 2, "message_ids": []})
        ),
        "Bad Request: message identifiers are not specified"
    );
    assert_eq!(
        d("copyMessage", json!({"chat_id": 1, "message_id": 2})),
        "Bad Request: chat_id is empty"
    );
    let r = parse_json(
        "editMessageText",
        json!({"chat_id": 1, "message_id": 2, "text": "new"}),
    );
    assert!(matches!(
        r,
        Ok(Request {
            action: Action::Edit {
                message_id: 2,
                change: Change::Text { .. }
            },
            ..
        })
    ));
    assert_eq!(
        d(
            "editMessageText",
            json!({"inline_message_id": "x", "text": "t"})
        ),
        "Bad Request: chat_id is empty"
    );
    assert_eq!(
        d(
            "editMessageText",
            json!({"chat_id": 1, "inline_message_id": "x", "text": "t"})
        ),
        "Bad Request: MESSAGE_ID_INVALID"
    );
    assert_eq!(
        d("editMessageText", json!({"chat_id": 1, "message_id": 2})),
        "Bad Request: message text is empty"
    );
    assert_eq!(
        d(
            "editMessageReplyMarkup",
            json!({"chat_id": 1, "message_id": 2, "reply_markup": {"remove_keyboard": true}})
        ),
        "Bad Request: inline keyboard expected"
    );
    let r = parse_json(
        "editMessageReplyMarkup",
        json!({"chat_id": 1, "message_id": 2}),
    );
    assert!(matches!(
        r,
        Ok(Request {
            action: Action::Edit {
                change: Change::Markup(None),
                ..
            },
            ..
        })
    ));
    let r = parse_json(
        "deleteMessages",
        json!({"chat_id": 1, "message_ids": [5, 6]}),
    );
    assert!(
        matches!(r, Ok(Request { action: Action::Delete { ref ids, many: true }, .. }) if ids == &[5, 6])
    );
    assert_eq!(
        d("deleteMessage", json!({"chat_id": 1})),
        "Bad Request: message identifier is not specified"
    );
}

#[test]
fn the_paid_flag_counts_only_where_the_bot_api_takes_it() {
    let paid = |method: &str, extra: Value| {
        let mut v = json!({"chat_id": 1, "text": "x", "from_chat_id": 2, "message_id": 3, "message_ids": [3], "allow_paid_broadcast": true});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        parse_json(method, v).map(|r| r.paid)
    };
    assert_eq!(paid("sendMessage", json!({})), Ok(true));
    assert_eq!(paid("copyMessage", json!({})), Ok(true));
    assert_eq!(paid("copyMessages", json!({})), Ok(false));
    assert_eq!(paid("forwardMessage", json!({})), Ok(false));
    assert_eq!(paid("forwardMessages", json!({})), Ok(false));
    assert_eq!(paid("editMessageText", json!({})), Ok(false));
    assert_eq!(
        paid("sendMessage", json!({"allow_paid_broadcast": "false"})),
        Ok(false)
    );
}

#[test]
fn callback_answers_need_a_query_id() {
    assert!(matches!(
        parse_json(
            "answerCallbackQuery",
            json!({"callback_query_id": "42", "text": "ok"})
        ),
        Ok(Request {
            chat: None,
            action: Action::AnswerCallback,
            ..
        })
    ));
    assert_eq!(
        description(parse_json("answerCallbackQuery", json!({}))),
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );
}
