//! Bot token shape: parsing a token into its numeric bot id, redacting it for logs, and
//! minting deterministic well-formed tokens for tests.
//!
//! A token looks like `<digits>:<20..64 chars of [A-Za-z0-9_-]>`. The numeric part is the
//! bot's identity everywhere in the emulator; the secret part is never logged, printed or
//! returned (see [`redact`]).

/// Characters allowed in the secret part of a token, in the order [`test_token`] uses them.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Shortest and longest secret part accepted after the colon.
const SECRET_LEN: std::ops::RangeInclusive<usize> = 20..=64;

/// The numeric bot id of a well-formed token, or `None` when the token is malformed
/// (the Bot API then answers 404 "Not Found").
pub fn bot_id(token: &str) -> Option<u64> {
    let (id, secret) = token.split_once(':')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !SECRET_LEN.contains(&secret.len())
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    id.parse().ok()
}

/// The loggable form of a token: `123456:***` (or `***` when there is no numeric prefix).
pub fn redact(token: &str) -> String {
    match token.split_once(':') {
        Some((id, _)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{id}:***")
        }
        _ => "***".to_owned(),
    }
}

/// A deterministic, well-formed token for `bot_id`: `"<bot_id>:AA<33 chars>"` (35 characters
/// after the colon, like real tokens). The same id always gives the same token.
pub fn test_token(bot_id: u64) -> String {
    let mut state = bot_id ^ 0x5348_4152_4447_4154; // "SHARDGAT"
    let mut secret = String::with_capacity(35);
    secret.push_str("AA");
    while secret.len() < 35 {
        let mut word = splitmix64(&mut state);
        for _ in 0..10 {
            if secret.len() == 35 {
                break;
            }
            secret.push(char::from(ALPHABET[(word & 63) as usize]));
            word >>= 6;
        }
    }
    format!("{bot_id}:{secret}")
}

/// SplitMix64 step: a tiny, well-mixed deterministic generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_well_formed_tokens() {
        assert_eq!(
            bot_id("123456:AAbcdefghijklmnopqrstuvwxyz012345"),
            Some(123456)
        );
        assert_eq!(bot_id("1:abcdefghij_-ABCDEFGH"), Some(1));
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "123456",
            ":AAbcdefghijklmnopqrstuvwxyz012345",
            "12a:AAbcdefghijklmnopqrstuvwxyz012345",
            "123:short",
            "123:AAbcdefghijklmnopqrstuvwxyz01234!",
            "123:AAbcdefghijklmnopqrstuvwxyz0123:5",
            "99999999999999999999999:AAbcdefghijklmnopqrstuvwxyz012345",
        ] {
            assert_eq!(bot_id(bad), None, "{bad:?}");
        }
        let long = format!("1:{}", "a".repeat(65));
        assert_eq!(bot_id(&long), None);
        let longest = format!("1:{}", "a".repeat(64));
        assert_eq!(bot_id(&longest), Some(1));
    }

    #[test]
    fn test_tokens_are_deterministic_and_well_formed() {
        for id in [1, 42, 123_456_789, u64::MAX] {
            let t = test_token(id);
            assert_eq!(t, test_token(id));
            assert_eq!(bot_id(&t), Some(id));
            assert_eq!(t.split_once(':').map(|(_, s)| s.len()), Some(35));
        }
        assert_ne!(test_token(1), test_token(2));
    }

    #[test]
    fn redaction_hides_the_secret() {
        assert_eq!(redact(&test_token(77)), "77:***");
        assert_eq!(redact("garbage"), "***");
    }
}
