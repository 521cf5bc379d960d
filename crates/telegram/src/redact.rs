//! Defence in depth for log writers: HTTP client crates log full URLs at debug and
//! trace level, and a Bot API URL contains the token. [`redact_tokens`] rewrites any
//! token-shaped substring so that the secret never reaches a log sink, whatever
//! produced the line. It is a hand-written byte scan (no regex dependency) that
//! allocates only when it finds something to redact.

use std::borrow::Cow;

use crate::token::{MIN_SECRET_LEN, is_secret_byte};

/// Replaces every token-shaped substring (one or more ASCII digits, `:`, then 20 or
/// more of `[A-Za-z0-9_-]`) with `<digits>:***`. The whole run of secret characters
/// after the colon is replaced, however long it is. The digits may be glued to
/// preceding text, as in a URL path (`/bot123:AAA.../sendMessage`).
///
/// Returns the input unchanged (borrowed) when it contains no token.
pub fn redact_tokens(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    // Everything before `copied` has been dealt with (emitted into `out` or redacted).
    let mut copied = 0;
    let mut search = 0;
    while let Some(off) = bytes[search..].iter().position(|&b| b == b':') {
        let colon = search + off;
        search = colon + 1;
        if colon == 0 || !bytes[colon - 1].is_ascii_digit() {
            continue;
        }
        let run = bytes[colon + 1..]
            .iter()
            .take_while(|&&b| is_secret_byte(b))
            .count();
        if run < MIN_SECRET_LEN {
            continue;
        }
        let end = colon + 1 + run;
        let buf = out.get_or_insert_with(|| String::with_capacity(s.len()));
        // The digits before the colon are kept; if they were part of a previous
        // redacted run, `copied == colon` and nothing is pushed.
        buf.push_str(&s[copied..colon]);
        buf.push_str(":***");
        copied = end;
        search = end;
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut buf) => {
            buf.push_str(&s[copied..]);
            Cow::Owned(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

    #[test]
    fn redacts_urls_and_plain_tokens() {
        let url = format!("POST https://api.telegram.org/bot123456:{SECRET}/sendMessage failed");
        assert_eq!(
            redact_tokens(&url),
            "POST https://api.telegram.org/bot123456:***/sendMessage failed"
        );
        let two = format!("a 1:{SECRET}, b 22:{SECRET}");
        assert_eq!(redact_tokens(&two), "a 1:***, b 22:***");
        assert_eq!(redact_tokens(&format!("7:{SECRET}")), "7:***");
    }

    #[test]
    fn leaves_other_text_alone() {
        for s in [
            "",
            "12:30 the meeting",
            "ratio 3:1",
            "host:8080",
            "::::",
            "héllo wörld 12:",
            "1:aaaaaaaaaaaaaaaaaaa", // 19 characters: too short
            ":aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "x:aaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(
                matches!(redact_tokens(s), Cow::Borrowed(b) if b == s),
                "{s}"
            );
        }
    }

    #[test]
    fn adjacent_tokens() {
        // The first token's run swallows the second one's digits; both secrets go.
        let s = format!("5:{SECRET}123:{SECRET}");
        assert_eq!(redact_tokens(&s), "5:***:***");
        let s = format!("é5:{SECRET}é");
        assert_eq!(redact_tokens(&s), "é5:***é");
    }

    /// A slow, obviously-correct statement of "does `s` contain a token shape".
    fn naive_has_token(s: &str) -> bool {
        let b = s.as_bytes();
        (1..b.len()).any(|i| {
            b[i] == b':'
                && b[i - 1].is_ascii_digit()
                && b[i + 1..]
                    .iter()
                    .take_while(|&&c| is_secret_byte(c))
                    .count()
                    >= 20
        })
    }

    fn token() -> impl Strategy<Value = (String, String)> {
        ("[1-9][0-9]{0,11}", "[A-Za-z0-9_-]{20,64}")
    }

    proptest! {
        #[test]
        fn no_secret_survives(
            parts in proptest::collection::vec((".{0,12}", token()), 1..5),
            tail in ".{0,12}",
        ) {
            let mut s = String::new();
            for (text, (id, secret)) in &parts {
                s.push_str(text);
                s.push_str(id);
                s.push(':');
                s.push_str(secret);
            }
            s.push_str(&tail);
            let out = redact_tokens(&s);
            prop_assert!(!naive_has_token(&out), "{out}");
            for (_, (_, secret)) in &parts {
                prop_assert!(!out.contains(secret.as_str()), "{secret} in {out}");
            }
            // Idempotent.
            prop_assert_eq!(redact_tokens(&out), out.clone());
        }

        #[test]
        fn text_without_tokens_is_unchanged(s in "(.|[0-9]+:[A-Za-z0-9_-]{0,25})*") {
            let out = redact_tokens(&s);
            if naive_has_token(&s) {
                prop_assert!(!naive_has_token(&out));
                prop_assert!(matches!(out, Cow::Owned(_)));
            } else {
                prop_assert!(matches!(out, Cow::Borrowed(b) if b == s));
            }
        }

        #[test]
        fn arbitrary_text_never_panics_and_redacts(s in "\\PC*") {
            let out = redact_tokens(&s);
            prop_assert!(!naive_has_token(&out));
        }
    }
}
