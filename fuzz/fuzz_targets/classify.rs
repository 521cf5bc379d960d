//! The Bot API answer classifier on any status and body: never panics, and
//! a description never holds a token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_telegram::{MAX_RETRY_AFTER, Outcome, classify};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 600;
    let outcome = classify(status, &data[2..]);
    if let Outcome::RetryAfter { retry_after, .. } = &outcome {
        assert!(*retry_after <= MAX_RETRY_AFTER);
    }
    if let Some(d) = outcome.description() {
        assert_eq!(shardgate_telegram::redact_tokens(d), d, "a token survived");
    }
});
