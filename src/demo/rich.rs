//! The demo's last act: what a notification bot does besides text, through
//! the same gateway and limits, over gRPC `Call`. A message with an inline
//! keyboard ("Pay" / "Later"), a photo uploaded byte for byte, and an edit of
//! the first message ("pending" becomes "paid") that finds its bot without
//! being told. Each step is checked against the emulator's copy.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shardgate_mock::Control;
use shardgate_proto::v1::{CallRequest, CallResponse, InputFile};

use super::setup::Grpc;

/// The chat the showcase writes to (apart from the load's chats).
const CHAT: i64 = 990_001;

/// What the showcase did: one line per step.
pub struct Showcase {
    pub lines: Vec<String>,
}

async fn call(
    grpc: &mut Grpc,
    method: &str,
    params: Value,
    files: Vec<InputFile>,
) -> anyhow::Result<(CallResponse, Value)> {
    let resp = grpc
        .call(CallRequest {
            method: method.into(),
            params_json: params.to_string(),
            files,
            ..CallRequest::default()
        })
        .await
        .with_context(|| format!("{method} through the gateway"))?
        .into_inner();
    let result = serde_json::from_str(&resp.result_json).context("Telegram's result as JSON")?;
    Ok((resp, result))
}

/// A small image's bytes (a deterministic pattern: the emulator keeps any bytes).
fn picture() -> Vec<u8> {
    (0..24_000u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

/// Runs the three steps; an error names the step that failed.
pub async fn run(grpc: &mut Grpc, control: &Control) -> anyhow::Result<Showcase> {
    let mut lines = Vec::new();
    let keyboard = json!({"inline_keyboard": [[
        {"text": "Pay", "callback_data": "pay:42"},
        {"text": "Later", "callback_data": "later:42"}
    ]]});
    let (sent, result) = call(
        grpc,
        "sendMessage",
        json!({"chat_id": CHAT, "text": "Invoice 42: pending", "reply_markup": keyboard}),
        Vec::new(),
    )
    .await?;
    let id = result["message_id"]
        .as_i64()
        .context("sendMessage answered no message_id")?;
    let kept = control
        .message(CHAT, id)
        .context("the emulator has no keyboard message")?;
    if kept["reply_markup"] != keyboard {
        bail!("the keyboard did not reach the Bot API: {kept}");
    }
    lines.push(format!(
        "keyboard  message {id} with buttons Pay / Later, sent by {}",
        sent.bot
    ));

    let bytes = picture();
    let (photo, result) = call(
        grpc,
        "sendPhoto",
        json!({"chat_id": CHAT, "photo": "attach://chart", "caption": "Usage this month"}),
        vec![InputFile {
            name: "chart".into(),
            filename: "chart.png".into(),
            content_type: "image/png".into(),
            data: bytes.clone().into(),
        }],
    )
    .await?;
    let file_id = result["photo"][0]["file_id"]
        .as_str()
        .context("sendPhoto answered no file_id")?;
    let (_, data) = control
        .file(file_id)
        .context("the emulator has no such upload")?;
    if data != bytes {
        bail!(
            "the photo's bytes changed on the way ({} bytes arrived)",
            data.len()
        );
    }
    lines.push(format!(
        "photo     {} bytes uploaded, arrived byte for byte, sent by {}",
        bytes.len(),
        photo.bot
    ));

    let (edit, _) = call(
        grpc,
        "editMessageText",
        json!({"chat_id": CHAT, "message_id": id, "text": "Invoice 42: paid"}),
        Vec::new(),
    )
    .await?;
    let kept = control
        .message(CHAT, id)
        .context("the edited message is gone")?;
    if kept["text"] != "Invoice 42: paid" || edit.bot != sent.bot {
        bail!(
            "the edit went wrong: by {} (sent by {}), text {}",
            edit.bot,
            sent.bot,
            kept["text"]
        );
    }
    lines.push(format!("edit      message {id} now reads \"Invoice 42: paid\", edited by {} (its sender, found by the gateway)", edit.bot));
    Ok(Showcase { lines })
}
