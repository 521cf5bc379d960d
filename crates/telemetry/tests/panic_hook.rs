//! A panic whose message holds a bot token and a caller key is reported
//! with both redacted (its own process: the panic hook is process-wide).

use std::sync::{Arc, Mutex};

use shardgate_telemetry::panic_report;

const SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const KEY: &str = "sg_0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn a_panic_message_with_a_token_and_a_key_is_reported_redacted() {
    let captured = Arc::new(Mutex::new(String::new()));
    let sink = captured.clone();
    std::panic::set_hook(Box::new(move |info| {
        *sink.lock().unwrap_or_else(|e| e.into_inner()) = panic_report(info);
    }));
    let result = std::panic::catch_unwind(|| {
        panic!("POST https://api.telegram.org/bot123456:{SECRET}/sendMessage for {KEY} failed");
    });
    let _ = std::panic::take_hook();
    assert!(result.is_err());
    let report = captured.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("{report}");
    assert!(report.contains("panicked at"), "{report}");
    assert!(
        report.contains("bot123456:***/sendMessage for sg_*** failed"),
        "{report}"
    );
    assert!(
        !report.contains(SECRET) && !report.contains(&KEY[3..]),
        "{report}"
    );
}
