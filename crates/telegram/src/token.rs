//! The bot token type. It exists so that a token's secret half cannot reach a log
//! line, an error message or a `Debug` dump by accident: everything except
//! [`BotToken::expose`] (used only to build request URLs) and `Serialize` (used to
//! persist tokens in etcd) prints `123456:***`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Shortest secret accepted after the colon (Telegram's are 35 characters).
pub(crate) const MIN_SECRET_LEN: usize = 20;
/// Longest secret accepted after the colon.
pub(crate) const MAX_SECRET_LEN: usize = 64;
/// Longest bot id accepted before the colon (`u64::MAX` has 20 digits).
const MAX_ID_DIGITS: usize = 20;

/// Characters a token's secret is made of: `[A-Za-z0-9_-]`.
pub(crate) fn is_secret_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Why a string is not a bot token. No variant ever carries any part of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The input was empty (after trimming).
    #[error("bot token is empty")]
    Empty,
    /// No `:` separating the bot id from the secret.
    #[error("bot token has no ':' between the bot id and the secret")]
    MissingColon,
    /// The part before the colon is not a decimal bot id that fits in a u64.
    #[error("bot token's bot id (before ':') must be 1 to 20 decimal digits that fit in a u64")]
    InvalidBotId,
    /// The secret after the colon has the wrong length.
    #[error(
        "bot token's secret (after ':') has {len} characters; expected {MIN_SECRET_LEN} to {MAX_SECRET_LEN}"
    )]
    SecretLength {
        /// Length of the secret in bytes.
        len: usize,
    },
    /// The secret contains a character outside `[A-Za-z0-9_-]`.
    #[error(
        "bot token's secret (after ':') has an invalid character at position {position}; expected [A-Za-z0-9_-]"
    )]
    InvalidSecretChar {
        /// Byte offset within the secret.
        position: usize,
    },
}

/// A Telegram bot token, `<bot id>:<secret>`.
///
/// `Debug` and `Display` print `<bot id>:***`. Cloning is cheap (shared storage).
///
/// **`Serialize` writes the real token**: that is what lets the registry persist
/// tokens in etcd. Never serialize a `BotToken` into anything that is logged.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BotToken {
    full: Arc<str>,
    bot_id: u64,
}

impl BotToken {
    /// Parses `<digits>:<20..=64 of [A-Za-z0-9_-]>`, ignoring surrounding whitespace.
    /// The error never contains any part of the input.
    pub fn parse(s: &str) -> Result<BotToken, TokenError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TokenError::Empty);
        }
        let (id, secret) = s.split_once(':').ok_or(TokenError::MissingColon)?;
        if id.is_empty() || id.len() > MAX_ID_DIGITS || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::InvalidBotId);
        }
        let bot_id: u64 = id.parse().map_err(|_| TokenError::InvalidBotId)?;
        if let Some(position) = secret.bytes().position(|b| !is_secret_byte(b)) {
            return Err(TokenError::InvalidSecretChar { position });
        }
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
            return Err(TokenError::SecretLength { len: secret.len() });
        }
        Ok(BotToken {
            full: Arc::from(s),
            bot_id,
        })
    }

    /// The numeric bot id (the part before the colon); public information.
    pub fn bot_id(&self) -> u64 {
        self.bot_id
    }

    /// `"<bot id>:***"`, safe to log.
    pub fn redacted(&self) -> String {
        format!("{}:***", self.bot_id)
    }

    /// The whole token, secret included. Only for building the request URL.
    pub fn expose(&self) -> &str {
        &self.full
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.bot_id)
    }
}

impl fmt::Display for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.bot_id)
    }
}

impl FromStr for BotToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BotToken::parse(s)
    }
}

/// Writes the real token (see the type's documentation).
impl serde::Serialize for BotToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for BotToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        BotToken::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    fn token_str() -> String {
        format!("123456789:{SECRET}")
    }

    #[test]
    fn parses_and_redacts() {
        let t = BotToken::parse(&format!("  {}\n", token_str())).expect("valid");
        assert_eq!(t.bot_id(), 123456789);
        assert_eq!(t.expose(), token_str());
        assert_eq!(t.redacted(), "123456789:***");
        assert_eq!(format!("{t}"), "123456789:***");
        assert_eq!(format!("{t:?}"), "123456789:***");
        assert_eq!(format!("{:?}", Some(t.clone())), "Some(123456789:***)");
        assert_eq!(token_str().parse::<BotToken>(), Ok(t));
    }

    #[test]
    fn accepts_bounds() {
        assert!(BotToken::parse(&format!("1:{}", "a".repeat(20))).is_ok());
        assert!(BotToken::parse(&format!("1:{}", "_-".repeat(32))).is_ok());
        assert!(BotToken::parse(&format!("{}:{}", u64::MAX, "a".repeat(20))).is_ok());
    }

    #[test]
    fn rejects_without_echoing_the_secret() {
        let cases = [
            (String::new(), TokenError::Empty),
            ("   ".to_string(), TokenError::Empty),
            (SECRET.to_string(), TokenError::MissingColon),
            (format!(":{SECRET}"), TokenError::InvalidBotId),
            (format!("12a:{SECRET}"), TokenError::InvalidBotId),
            (format!("-12:{SECRET}"), TokenError::InvalidBotId),
            (
                format!("99999999999999999999:{SECRET}"),
                TokenError::InvalidBotId,
            ),
            (
                format!("123:{}", &SECRET[..19]),
                TokenError::SecretLength { len: 19 },
            ),
            (
                format!("123:{}", "a".repeat(65)),
                TokenError::SecretLength { len: 65 },
            ),
            (
                format!("123:{SECRET}:x"),
                TokenError::InvalidSecretChar {
                    position: SECRET.len(),
                },
            ),
            (
                format!("123:{SECRET} x"),
                TokenError::InvalidSecretChar {
                    position: SECRET.len(),
                },
            ),
            (
                format!("123:é{SECRET}"),
                TokenError::InvalidSecretChar { position: 0 },
            ),
        ];
        for (input, want) in cases {
            let err = BotToken::parse(&input).expect_err(&input);
            assert_eq!(err, want, "input {input:?}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&SECRET[..12]), "{shown}");
        }
    }

    #[test]
    fn serde_round_trip_writes_the_real_token() {
        let t = BotToken::parse(&token_str()).expect("valid");
        let json = serde_json::to_string(&t).expect("serialize");
        assert_eq!(json, format!("\"{}\"", token_str()));
        let back: BotToken = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, t);
        let err = serde_json::from_str::<BotToken>(&format!("\"{SECRET}\"")).expect_err("no colon");
        assert!(!err.to_string().contains(SECRET), "{err}");
        let err =
            serde_json::from_str::<BotToken>(&format!("\"1:{SECRET}!\"")).expect_err("bad char");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
}
