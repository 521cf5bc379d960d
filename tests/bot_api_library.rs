//! A real Bot API library through the HTTP front door: python-telegram-bot
//! (installed by `tools/install-ptb`, which `tests/run` calls) pointed at
//! the gateway by its `base_url` alone sends a keyboard, a photo upload and
//! an album, edits and deletes, and gets the Bot API's refusal for
//! `getUpdates`; the emulator shows each of them, sent by the fleet's bots
//! under the limits.
//!
//! Without the library (a machine where `tools/install-ptb` was not run)
//! the test says so and passes, unless `SHARDGATE_REQUIRE_PTB=1`, which
//! `tests/run` sets once the library is installed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{BOTS, Gateway};
use serde_json::Value;
use shardgate_mock::MockConfig;

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SHARDGATE_PTB_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/shardgate/ptb-venv/bin/python");
    p.exists().then_some(p)
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * seed + 11) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_telegram_bot_works_through_the_front_door_by_its_base_url() {
    let Some(python) = python() else {
        assert!(
            std::env::var("SHARDGATE_REQUIRE_PTB").as_deref() != Ok("1"),
            "SHARDGATE_REQUIRE_PTB=1 but python-telegram-bot is not installed (tools/install-ptb)"
        );
        eprintln!("python-telegram-bot not installed (tools/install-ptb): skipped");
        return;
    };
    let args = ["--http-listen".into(), "127.0.0.1:0".into()];
    let gw = Gateway::start_with_args(MockConfig::default(), &BOTS, "", &[], &args).await;
    let http = gw.http.expect("front door address");
    let chat = 6001_i64;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bot_api_library/ptb_drive.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([
                script,
                &format!("http://{http}"),
                "service-key",
                &chat.to_string(),
            ])
            .output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-telegram-bot failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(stdout.trim()).expect("the script's JSON");

    // getMe answered for a bot of the fleet.
    let me = got["me"].as_u64().expect("me");
    assert!(BOTS.iter().any(|b| b.id == me), "{got}");
    // The keyboard message, then its edit.
    let text_id = got["text_id"].as_i64().expect("text_id");
    let text = gw.control.message(chat, text_id).expect("kept");
    assert_eq!(text["text"], "edited by python-telegram-bot", "{text}");
    assert_eq!(got["edited_text"], "edited by python-telegram-bot");
    // The photo upload, byte for byte.
    let file_id = got["photo_file_id"].as_str().expect("file id");
    let (_, data) = gw.control.file(file_id).expect("upload kept");
    assert_eq!(data, pattern(70_000, 7), "the photo arrives byte for byte");
    // The album: two messages, the first deleted.
    let album: Vec<i64> = got["album_ids"]
        .as_array()
        .expect("album")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(album.len(), 2, "{got}");
    assert_eq!(got["deleted"], true);
    assert!(gw.control.message(chat, album[1]).is_some());
    // The Bot API's refusal, raised by the library as BadRequest.
    let refused = got["get_updates"].as_str().expect("get_updates");
    assert!(refused.contains("bot's own process"), "{refused}");
    common::assert_no_429_nor_duplicate(&gw.control, None);
    gw.assert_no_token_in_logs(&BOTS);
}
