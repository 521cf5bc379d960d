//! The process's panic hook: the panic's message and place, with every bot
//! token and caller key redacted, on stderr. A panic message is built from
//! whatever the panicking code formatted (a URL, a request, a value read
//! from etcd), so it is a log line like any other and is redacted like one.
//! The default hook would print it as is.

use std::borrow::Cow;
use std::io::Write;
use std::panic::PanicHookInfo;

use shardgate_telegram::redact_tokens;

/// What a caller key starts with (`sg_` and 48 hex digits).
const KEY_PREFIX: &[u8] = b"sg_";
/// Shortest run after the prefix treated as a key (a real one has 48).
const MIN_KEY_CHARS: usize = 16;

/// `s` with bot tokens (`123:***`) and caller keys (`sg_***`) redacted.
pub fn redact_secrets(s: &str) -> Cow<'_, str> {
    match redact_tokens(s) {
        Cow::Borrowed(b) => redact_keys(b),
        Cow::Owned(o) => Cow::Owned(redact_keys(&o).into_owned()),
    }
}

/// Replaces `sg_` followed by at least [`MIN_KEY_CHARS`] ASCII letters and
/// digits with `sg_***`.
fn redact_keys(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(off) = find(&bytes[at..], KEY_PREFIX) {
        let start = at + off;
        let body = start + KEY_PREFIX.len();
        let run = bytes[body..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        at = body + run;
        if run < MIN_KEY_CHARS {
            continue;
        }
        let buf = out.get_or_insert_with(|| String::with_capacity(s.len()));
        buf.push_str(&s[copied..start]);
        buf.push_str("sg_***");
        copied = at;
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut buf) => {
            buf.push_str(&s[copied..]);
            Cow::Owned(buf)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The redacted report of one panic: thread, message, place.
pub fn panic_report(info: &PanicHookInfo<'_>) -> String {
    let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    };
    let place = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let report = format!("thread '{name}' panicked{place}:\n{message}");
    redact_secrets(&report).into_owned()
}

/// Installs the redacting panic hook (stderr). With `RUST_BACKTRACE` set,
/// the backtrace follows, redacted too.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut report = panic_report(info);
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            report.push_str("\nstack backtrace:\n");
            report.push_str(&redact_secrets(&bt));
        }
        report.push('\n');
        let _ = std::io::stderr().lock().write_all(report.as_bytes());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    const KEY: &str = "sg_0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_and_keys_are_redacted_and_other_text_is_not() {
        let s = format!("GET /bot42:{SECRET}/getMe with Bearer {KEY}, then {KEY}.");
        assert_eq!(
            redact_secrets(&s),
            "GET /bot42:***/getMe with Bearer sg_***, then sg_***."
        );
        for plain in ["sg_short", "msg_id 12", "ratio 3:1", ""] {
            assert!(matches!(redact_secrets(plain), Cow::Borrowed(_)), "{plain}");
        }
    }
}
