//! A message with a keyboard, a forum topic and further `sendMessage`
//! parameters goes through the gateway and reaches the Bot API with all of
//! them, read back from the emulator's copy of the sent message; a malformed
//! keyboard is refused at the door and nothing is sent.

mod common;

use common::Gateway;
use shardgate_proto::v1::SendRequest;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyboard_a_topic_and_entities_reach_the_bot_api_with_the_text() {
    let gw = Gateway::with_config("").await;
    let mut client = gw.client().await;
    let keyboard = r#"{"inline_keyboard":[[{"text":"Pay","callback_data":"pay:42"},{"text":"Later","callback_data":"later"}]]}"#;
    let sent = client
        .send(SendRequest {
            chat_id: -100_555,
            text: "Invoice 42 is due".into(),
            reply_markup_json: keyboard.into(),
            message_thread_id: 7,
            params_json:
                r#"{"entities":[{"type":"bold","offset":0,"length":7}],"protect_content":true}"#
                    .into(),
            ..SendRequest::default()
        })
        .await
        .expect("sent")
        .into_inner();
    let message = gw
        .control
        .message(sent.chat_id, sent.message_id)
        .expect("the emulator kept the message");
    assert_eq!(message["text"], "Invoice 42 is due");
    let want: serde_json::Value = serde_json::from_str(keyboard).expect("json");
    assert_eq!(message["reply_markup"], want, "{message}");
    assert_eq!(message["message_thread_id"], 7, "{message}");
    assert_eq!(message["entities"][0]["type"], "bold", "{message}");

    let before = gw.control.stats().totals.requests;
    let refused = client
        .send(SendRequest {
            chat_id: -100_555,
            text: "no".into(),
            reply_markup_json: r#"{"inline_keyboard":"Pay"}"#.into(),
            ..SendRequest::default()
        })
        .await
        .expect_err("a malformed keyboard");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("reply_markup_json"),
        "{refused:?}"
    );
    let twice = client
        .send(SendRequest {
            chat_id: -100_555,
            text: "no".into(),
            params_json: r#"{"text":"other"}"#.into(),
            ..SendRequest::default()
        })
        .await
        .expect_err("a typed key in params_json");
    assert_eq!(twice.code(), Code::InvalidArgument);
    assert!(twice.message().contains("params_json"), "{twice:?}");
    assert_eq!(gw.control.stats().totals.requests, before, "nothing sent");
}
