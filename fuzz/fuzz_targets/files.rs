//! The bots file and the callers file parsers on any text: an error,
//! never a panic, and an error message never holds a token.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = shardgate_registry::BotsFile::parse(std::path::Path::new("bots.toml"), text) {
        let m = e.to_string();
        assert_eq!(
            shardgate_telegram::redact_tokens(&m),
            m,
            "a token in an error"
        );
    }
    let _ = shardgate_callers::CallersFile::parse(text);
});
