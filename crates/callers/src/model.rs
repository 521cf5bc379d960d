//! A caller's rules, the violation settings, and the two places they are
//! written down: the callers file (TOML, embedded mode) and etcd
//! (`callers/<name>`, `settings/violations`, `bans/<name>`, all JSON).
//!
//! ```toml
//! violation_score = 20          # optional; these four are the defaults
//! ban_threshold = 100
//! violation_window_secs = 1200
//! ban_secs = 7200
//!
//! [[caller]]
//! name = "billing"
//! key_sha256 = ["<64 hex digits>"]   # one or more (rotation)
//! messages_per_window = 600           # 0 = no quota
//! window_secs = 60
//! max_in_flight = 200                 # accepted and not yet answered; 0 = no bound
//! bots = []                           # allowed bot names; empty = all
//! chats = []                          # allowed chat ids; empty = all
//! paid_broadcast = false
//! ```
//!
//! A caller's table may also set `violation_score`, `ban_threshold`,
//! `violation_window_secs`, `ban_secs` (its own), `queue_bytes_max` (bytes
//! of its messages queued on one instance; default: the instance's
//! `[limits] queue_bytes_max`) and `banned_until` (Unix seconds; written by
//! `shardgate caller ban` in embedded mode). Unknown keys are errors, so a
//! typo never silently lifts a limit.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::key::KeyDigest;

/// A caller name: 1-64 letters, digits, '-', '_' or '.' (it is a metric
/// label and an etcd key segment).
pub fn valid_caller_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// How refusals turn into a ban (the defaults: 20 a refusal, ban at 100 for
/// 2 h, back to 0 after 20 min without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViolationSettings {
    /// Added to a caller's score by each refused request.
    pub violation_score: u32,
    /// A score at or over this bans the caller.
    pub ban_threshold: u32,
    /// The score returns to 0 after this long without a violation.
    pub violation_window_secs: u64,
    /// How long a ban lasts.
    pub ban_secs: u64,
}

impl Default for ViolationSettings {
    fn default() -> Self {
        ViolationSettings {
            violation_score: 20,
            ban_threshold: 100,
            violation_window_secs: 1200,
            ban_secs: 7200,
        }
    }
}

impl ViolationSettings {
    /// Checks the settings (etcd `settings/violations` and the callers file).
    pub fn validate(&self) -> Result<(), String> {
        if self.ban_threshold == 0 {
            return Err("ban_threshold must be at least 1".into());
        }
        if self.violation_window_secs == 0 {
            return Err("violation_window_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// One caller's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerSpec {
    #[serde(default)]
    pub name: String,
    /// SHA-256 hex of each valid key (several during a rotation).
    #[serde(default)]
    pub key_sha256: Vec<KeyDigest>,
    /// Messages per window; 0 = no quota.
    #[serde(default)]
    pub messages_per_window: u64,
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// Messages accepted and not yet answered; 0 = no bound.
    #[serde(default)]
    pub max_in_flight: u32,
    /// Allowed bot names; empty = all.
    #[serde(default)]
    pub bots: Vec<String>,
    /// Allowed chat ids; empty = all.
    #[serde(default)]
    pub chats: Vec<i64>,
    /// May set `allow_paid_broadcast` (paid messages cost Stars).
    #[serde(default)]
    pub paid_broadcast: bool,
    /// Bytes of this caller's messages queued on one instance (default:
    /// the instance's `[limits] queue_bytes_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_bytes_max: Option<u64>,
    /// Banned until this Unix second (embedded mode: `shardgate caller ban`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation_score: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation_window_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_secs: Option<u64>,
}

fn default_window_secs() -> u64 {
    60
}

/// The longest quota window: a week.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

impl CallerSpec {
    /// A caller with no key, no quota and no restriction.
    pub fn new(name: &str) -> CallerSpec {
        CallerSpec {
            name: name.to_owned(),
            key_sha256: Vec::new(),
            messages_per_window: 0,
            window_secs: default_window_secs(),
            max_in_flight: 0,
            bots: Vec::new(),
            chats: Vec::new(),
            paid_broadcast: false,
            queue_bytes_max: None,
            banned_until: None,
            violation_score: None,
            ban_threshold: None,
            violation_window_secs: None,
            ban_secs: None,
        }
    }

    /// The violation settings for this caller: its own overrides over the
    /// shared ones.
    pub fn violations(&self, shared: &ViolationSettings) -> ViolationSettings {
        ViolationSettings {
            violation_score: self.violation_score.unwrap_or(shared.violation_score),
            ban_threshold: self.ban_threshold.unwrap_or(shared.ban_threshold),
            violation_window_secs: self
                .violation_window_secs
                .unwrap_or(shared.violation_window_secs),
            ban_secs: self.ban_secs.unwrap_or(shared.ban_secs),
        }
    }

    /// May this caller send through `bot`?
    pub fn allows_bot(&self, bot: &str) -> bool {
        self.bots.is_empty() || self.bots.iter().any(|b| b == bot)
    }

    /// May this caller send into `chat_id`?
    pub fn allows_chat(&self, chat_id: i64) -> bool {
        self.chats.is_empty() || self.chats.contains(&chat_id)
    }

    /// Checks the rules; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_caller_name(&self.name) {
            return Err(format!(
                "caller name {:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
                self.name.chars().take(70).collect::<String>()
            ));
        }
        if self.window_secs == 0 || self.window_secs > MAX_WINDOW_SECS {
            return Err(format!(
                "window_secs must be 1..={MAX_WINDOW_SECS}, got {}",
                self.window_secs
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(d) = self.key_sha256.iter().find(|d| !seen.insert(**d)) {
            return Err(format!("key_sha256 lists {d} twice"));
        }
        if self.bots.iter().any(|b| b.is_empty()) {
            return Err("bots must not hold an empty name".into());
        }
        if self.chats.contains(&0) {
            return Err("chats must not hold 0".into());
        }
        self.violations(&ViolationSettings::default()).validate()
    }
}

/// A ban in force: etcd `bans/<caller>` (under a lease that ends with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Unix seconds when it ends.
    pub until: u64,
    /// The score that reached the threshold (0 for an operator's ban).
    #[serde(default)]
    pub score: u32,
    #[serde(default)]
    pub reason: String,
}

/// Everything the gateway enforces, as one value: published whole on every
/// change, so a request always sees one consistent version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub settings: ViolationSettings,
    /// By name.
    pub callers: BTreeMap<String, CallerSpec>,
    /// Bans from the store (etcd `bans/`), by caller name. Embedded mode
    /// keeps its bans in `CallerSpec::banned_until` and the gateway's memory.
    pub bans: BTreeMap<String, Ban>,
}

impl Snapshot {
    /// The caller's ban end (Unix s) if banned at `now_s`, from the store or
    /// its own `banned_until`.
    pub fn banned_until(&self, caller: &str, now_s: u64) -> Option<u64> {
        let stored = self.bans.get(caller).map(|b| b.until);
        let own = self.callers.get(caller).and_then(|c| c.banned_until);
        stored.into_iter().chain(own).filter(|u| *u > now_s).max()
    }
}

/// The callers file: violation settings at the top, then `[[caller]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallersFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation_score: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation_window_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_secs: Option<u64>,
    #[serde(default, rename = "caller")]
    pub callers: Vec<CallerSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallersFileError {
    #[error("callers file is not valid TOML: {0}")]
    Syntax(String),
    #[error("callers file, caller #{index} ({name:?}): {message}")]
    Caller {
        index: usize,
        name: String,
        message: String,
    },
    #[error("callers file: {0}")]
    Invalid(String),
}

impl CallersFile {
    /// The top-level violation settings, defaults filled in.
    pub fn settings(&self) -> ViolationSettings {
        let d = ViolationSettings::default();
        ViolationSettings {
            violation_score: self.violation_score.unwrap_or(d.violation_score),
            ban_threshold: self.ban_threshold.unwrap_or(d.ban_threshold),
            violation_window_secs: self
                .violation_window_secs
                .unwrap_or(d.violation_window_secs),
            ban_secs: self.ban_secs.unwrap_or(d.ban_secs),
        }
    }

    /// Parses and validates: names valid and unique, no digest shared by two
    /// callers, windows in range, settings sane.
    pub fn parse(text: &str) -> Result<CallersFile, CallersFileError> {
        let file: CallersFile =
            toml::from_str(text).map_err(|e| CallersFileError::Syntax(e.message().to_owned()))?;
        file.validate()?;
        Ok(file)
    }

    pub fn validate(&self) -> Result<(), CallersFileError> {
        self.settings()
            .validate()
            .map_err(CallersFileError::Invalid)?;
        let mut names = BTreeSet::new();
        let mut digests = BTreeMap::new();
        for (i, c) in self.callers.iter().enumerate() {
            let err = |message: String| CallersFileError::Caller {
                index: i + 1,
                name: c.name.clone(),
                message,
            };
            c.validate().map_err(err)?;
            if !names.insert(c.name.as_str()) {
                return Err(err("duplicate name".into()));
            }
            for d in &c.key_sha256 {
                if let Some(other) = digests.insert(*d, c.name.as_str()) {
                    return Err(err(format!("key_sha256 {d} also belongs to {other:?}")));
                }
            }
        }
        Ok(())
    }

    /// The file as what the gateway enforces (no store bans).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            settings: self.settings(),
            callers: self
                .callers
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect(),
            bans: BTreeMap::new(),
        }
    }
}

/// The JSON of etcd `callers/<name>`: the same fields as a `[[caller]]`
/// table. `name` may be left out; if present it must be the key's.
pub struct CallerJson;

impl CallerJson {
    pub fn encode(spec: &CallerSpec) -> String {
        serde_json::to_string(spec).unwrap_or_default()
    }

    pub fn decode(name: &str, value: &[u8]) -> Result<CallerSpec, String> {
        let mut spec: CallerSpec =
            serde_json::from_slice(value).map_err(|e| format!("bad JSON: {e}"))?;
        if spec.name.is_empty() {
            spec.name = name.to_owned();
        } else if spec.name != name {
            return Err(format!(
                "\"name\" {:?} differs from the key's {name:?}",
                spec.name
            ));
        }
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn the_documented_file_parses_with_its_defaults() {
        let text = format!(
            "ban_secs = 60\n[[caller]]\nname = \"billing\"\nkey_sha256 = [\"{D1}\"]\nmessages_per_window = 600\nwindow_secs = 60\nmax_in_flight = 200\nbots = []\nchats = []\npaid_broadcast = false\n\n[[caller]]\nname = \"ops\"\nban_threshold = 40\n"
        );
        let f = CallersFile::parse(&text).expect("valid");
        let s = f.snapshot();
        assert_eq!(s.settings.ban_secs, 60);
        assert_eq!(s.settings.violation_score, 20);
        let billing = &s.callers["billing"];
        assert_eq!(billing.messages_per_window, 600);
        assert_eq!(billing.key_sha256[0].to_hex(), D1);
        let ops = &s.callers["ops"];
        assert_eq!(ops.window_secs, 60);
        assert_eq!(ops.violations(&s.settings).ban_threshold, 40);
        assert_eq!(ops.violations(&s.settings).ban_secs, 60);
    }

    #[test]
    fn typos_duplicates_and_shared_keys_are_errors() {
        let cases = [
            "[[caller]]\nname = \"a\"\nmesages_per_window = 1\n".to_owned(),
            "bogus = 1\n".to_owned(),
            "[[caller]]\nname = \"a\"\n[[caller]]\nname = \"a\"\n".to_owned(),
            format!(
                "[[caller]]\nname = \"a\"\nkey_sha256 = [\"{D1}\"]\n[[caller]]\nname = \"b\"\nkey_sha256 = [\"{D1}\"]\n"
            ),
            "[[caller]]\nname = \"a b\"\n".to_owned(),
            "[[caller]]\nname = \"a\"\nwindow_secs = 0\n".to_owned(),
            "[[caller]]\nname = \"a\"\nkey_sha256 = [\"abc\"]\n".to_owned(),
            "ban_threshold = 0\n".to_owned(),
        ];
        for text in cases {
            assert!(CallersFile::parse(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn etcd_json_round_trips_and_checks_the_name() {
        let mut c = CallerSpec::new("billing");
        c.key_sha256.push(KeyDigest::parse(D1).expect("digest"));
        c.bots.push("alpha".into());
        let json = CallerJson::encode(&c);
        assert_eq!(CallerJson::decode("billing", json.as_bytes()), Ok(c));
        assert!(CallerJson::decode("other", json.as_bytes()).is_err());
        let nameless = CallerJson::decode("x", br#"{"messages_per_window": 5}"#).expect("ok");
        assert_eq!(nameless.name, "x");
        assert!(CallerJson::decode("x", br#"{"colour": 5}"#).is_err());
    }

    #[test]
    fn a_ban_holds_until_its_end_from_either_source() {
        let mut s = Snapshot::default();
        let mut c = CallerSpec::new("a");
        c.banned_until = Some(100);
        s.callers.insert("a".into(), c);
        assert_eq!(s.banned_until("a", 99), Some(100));
        assert_eq!(s.banned_until("a", 100), None);
        s.bans.insert(
            "a".into(),
            Ban {
                until: 200,
                score: 100,
                reason: String::new(),
            },
        );
        assert_eq!(s.banned_until("a", 150), Some(200));
        assert_eq!(s.banned_until("b", 0), None);
    }
}
