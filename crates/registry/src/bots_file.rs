//! The bots file: `[[bot]]` tables with `name`, `token` and optional
//! `enabled`. Read at start and on SIGHUP in embedded mode, and by
//! `shardgate bot import` in cluster mode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shardgate_telegram::{BotToken, redact_tokens};

use crate::BotSpec;

/// A parsed, validated bots file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotsFile {
    pub bots: Vec<BotSpec>,
}

/// Why a bots file was refused. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum BotsFileError {
    #[error("cannot read bots file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bots file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("bots file {path}: bot #{index} ({name:?}): {message}")]
    Entry {
        path: PathBuf,
        index: usize,
        name: String,
        message: String,
    },
    #[error("bots file {path} defines no bots (add [[bot]] tables with name and token)")]
    Empty { path: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    bot: Vec<RawBot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBot {
    name: String,
    token: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// A bot name as used in etcd keys, metrics and the `bot` pin.
pub fn valid_bot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Two entries with one bot id (the same token, or an old and a new token
/// of one bot) would be two limiters driving one Telegram bot: Telegram
/// counts their sends together and answers 429s neither expects.
fn same_bot_message(bot_id: u64, index: usize, name: &str) -> String {
    format!(
        "same Telegram bot (bot id {bot_id}) as bot #{index} ({name:?}): two entries would \
         drive one bot past its limits; keep one of them"
    )
}

impl BotsFile {
    /// Reads and validates a bots file (blocking: call it off the runtime).
    pub fn load(path: &Path) -> Result<BotsFile, BotsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| BotsFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses a bots file's text; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<BotsFile, BotsFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| BotsFileError::Syntax {
            path: path.to_owned(),
            // TOML errors quote the offending line, which may hold a token.
            message: redact_tokens(&e.to_string()).into_owned(),
        })?;
        let mut names = BTreeSet::new();
        // Bot id (the digits before the colon) to the entry that has it.
        let mut ids: BTreeMap<u64, (usize, String)> = BTreeMap::new();
        let mut bots = Vec::with_capacity(raw.bot.len());
        for (i, b) in raw.bot.into_iter().enumerate() {
            let entry_err = |message: String| BotsFileError::Entry {
                path: path.to_owned(),
                index: i + 1,
                name: b.name.clone(),
                message,
            };
            if !valid_bot_name(&b.name) {
                return Err(entry_err(
                    "name must be 1-64 characters of letters, digits, '-', '_' or '.'".into(),
                ));
            }
            if !names.insert(b.name.clone()) {
                return Err(entry_err("duplicate name".into()));
            }
            let token = BotToken::parse(&b.token).map_err(|e| entry_err(e.to_string()))?;
            if let Some((index, name)) = ids.get(&token.bot_id()) {
                return Err(entry_err(same_bot_message(token.bot_id(), *index, name)));
            }
            ids.insert(token.bot_id(), (i + 1, b.name.clone()));
            bots.push(BotSpec {
                name: b.name,
                token,
                enabled: b.enabled,
            });
        }
        if bots.is_empty() {
            return Err(BotsFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(BotsFile { bots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const T2: &str = "654321:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn parse(text: &str) -> Result<BotsFile, BotsFileError> {
        BotsFile::parse(Path::new("bots.toml"), text)
    }

    #[test]
    fn reads_bots_with_defaults() {
        let f = parse(&format!(
            "[[bot]]\nname = \"a\"\ntoken = \"{T1}\"\n[[bot]]\nname = \"b\"\ntoken = \"{T2}\"\nenabled = false\n"
        ))
        .expect("valid");
        assert_eq!(f.bots.len(), 2);
        assert!(f.bots[0].enabled);
        assert!(!f.bots[1].enabled);
        assert_eq!(f.bots[1].token.bot_id(), 654321);
    }

    #[test]
    fn two_entries_for_one_telegram_bot_are_refused_naming_both() {
        // The same token twice, and two tokens of one bot id (an old and a
        // new one): either way two limiters would drive one Telegram bot.
        let same_id = "123456:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
        for second in [T1, same_id] {
            let text = format!(
                "[[bot]]\nname = \"a\"\ntoken = \"{T2}\"\n[[bot]]\nname = \"b\"\ntoken = \"{T1}\"\n[[bot]]\nname = \"c\"\ntoken = \"{second}\"\n"
            );
            let err = parse(&text)
                .expect_err("one Telegram bot twice")
                .to_string();
            assert!(err.contains("bot #3 (\"c\")"), "{err}");
            assert!(err.contains("bot #2 (\"b\")"), "{err}");
            assert!(err.contains("123456"), "names the bot id: {err}");
            assert!(!err.contains("AAAAAAAAAAAAAAAA"), "token leaked: {err}");
            assert!(!err.contains("CCCCCCCCCCCCCCCC"), "token leaked: {err}");
        }
    }

    #[test]
    fn errors_name_the_entry_and_never_the_token() {
        let cases = [
            format!(
                "[[bot]]\nname = \"a\"\ntoken = \"{T1}\"\n[[bot]]\nname = \"a\"\ntoken = \"{T2}\"\n"
            ),
            format!("[[bot]]\nname = \"bad name\"\ntoken = \"{T1}\"\n"),
            "[[bot]]\nname = \"a\"\ntoken = \"123456:short\"\n".to_string(),
            format!("[[bot]]\nname = \"a\"\ntoken = \"{T1}\"\ncolour = 3\n"),
            format!("[[bot]]\nname = \"a\"\ntoken = \"{T1}\n"),
            String::new(),
        ];
        for text in cases {
            let err = parse(&text).expect_err("invalid").to_string();
            assert!(!err.contains("AAAAAAAAAAAAAAAA"), "token leaked: {err}");
            assert!(!err.contains("BBBBBBBBBBBBBBBB"), "token leaked: {err}");
            assert!(err.contains("bots.toml"), "{err}");
        }
    }
}
