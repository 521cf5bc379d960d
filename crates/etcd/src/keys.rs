//! The etcd layout of one cluster (documented for operators in
//! `docs/etcd.md`), under `/shardgate/<cluster>/`:
//!
//! - `bots/<name>` = `{"token": "...", "enabled": true}` (operators)
//! - `health/<name>` = `{"state": ..., "until": ..., "reason": ..., "instance": ..., "at": ...}`
//! - `members/<instance-id>` = `{"grpc": "host:port", ...}` under the instance's lease
//! - `owners/<name>` = the owner's instance id (plain text) under its lease
//! - `callers/<name>` = a caller's rules (`shardgate_callers::CallerJson`)
//! - `bans/<caller>` = `{"until": <unix s>, "score": N, "reason": "..."}`
//!   under a lease that ends with the ban
//! - `quota/<caller>` = the caller's quota counter (`QuotaCount`; written
//!   with compare-and-set, not mirrored)
//! - `settings/violations` = the violation settings (`ViolationSettings`)
//! - `settings/cluster_key` = the key instances present to each other
//!
//! Key names and the (de)serialisation of values live here; decoding
//! validates (names, token shape, instance ids) and reports problems as
//! messages that never contain a token.

use serde::{Deserialize, Serialize};
use shardgate_registry::{BotSpec, Health, valid_bot_name};
use shardgate_telegram::{BotToken, redact_tokens};

use crate::EtcdError;

/// A cluster's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// What a key under the cluster prefix names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    Bot(&'a str),
    Health(&'a str),
    Member(&'a str),
    Owner(&'a str),
    Caller(&'a str),
    Ban(&'a str),
    /// `settings/violations`.
    Violations,
    /// `settings/cluster_key`.
    ClusterKey,
    /// Under the prefix but not part of the layout (ignored).
    Other,
}

impl Keys {
    /// The keys of cluster `cluster` (same character rules as bot names).
    pub fn new(cluster: &str) -> Result<Keys, EtcdError> {
        if !valid_bot_name(cluster) {
            return Err(EtcdError::Config(format!(
                "cluster name {cluster:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(Keys {
            prefix: format!("/shardgate/{cluster}/"),
        })
    }

    /// `/shardgate/<cluster>/`: everything of the cluster.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn bot(&self, name: &str) -> String {
        format!("{}bots/{name}", self.prefix)
    }

    pub fn health(&self, name: &str) -> String {
        format!("{}health/{name}", self.prefix)
    }

    pub fn member(&self, instance_id: &str) -> String {
        format!("{}members/{instance_id}", self.prefix)
    }

    pub fn owner(&self, name: &str) -> String {
        format!("{}owners/{name}", self.prefix)
    }

    pub fn caller(&self, name: &str) -> String {
        format!("{}callers/{name}", self.prefix)
    }

    /// `/shardgate/<cluster>/callers/`.
    pub fn callers_prefix(&self) -> String {
        format!("{}callers/", self.prefix)
    }

    pub fn ban(&self, caller: &str) -> String {
        format!("{}bans/{caller}", self.prefix)
    }

    pub fn quota(&self, caller: &str) -> String {
        format!("{}quota/{caller}", self.prefix)
    }

    pub fn violations(&self) -> String {
        format!("{}settings/violations", self.prefix)
    }

    pub fn cluster_key(&self) -> String {
        format!("{}settings/cluster_key", self.prefix)
    }

    /// `/shardgate/<cluster>/owners/`.
    pub fn owners_prefix(&self) -> String {
        format!("{}owners/", self.prefix)
    }

    /// Classifies a key; `None` if it is not under the prefix at all.
    pub fn parse<'a>(&self, key: &'a [u8]) -> Option<Key<'a>> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let Some((kind, name)) = rest.split_once('/') else {
            return Some(Key::Other);
        };
        Some(match kind {
            "bots" => Key::Bot(name),
            "health" => Key::Health(name),
            "members" => Key::Member(name),
            "owners" => Key::Owner(name),
            "callers" => Key::Caller(name),
            "bans" => Key::Ban(name),
            "settings" if name == "violations" => Key::Violations,
            "settings" if name == "cluster_key" => Key::ClusterKey,
            _ => Key::Other,
        })
    }
}

/// An instance id as used in `members/` and `owners/`: 1-128 printable
/// ASCII characters, no whitespace, no '/'.
pub fn valid_instance_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// The JSON of `bots/<name>`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BotValue {
    token: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// The value of `bots/<name>` for a token (the only place a token is
/// serialised).
pub fn encode_bot(token: &BotToken, enabled: bool) -> String {
    let value = BotValue {
        token: token.expose().to_owned(),
        enabled,
    };
    serde_json::to_string(&value).unwrap_or_default()
}

/// Reads `bots/<name>`; the error message never contains the token.
pub fn decode_bot(name: &str, value: &[u8]) -> Result<BotSpec, String> {
    if !valid_bot_name(name) {
        return Err("invalid bot name".into());
    }
    let raw: BotValue = serde_json::from_slice(value).map_err(|e| json_problem(&e))?;
    let token = BotToken::parse(&raw.token).map_err(|e| format!("bad token: {e}"))?;
    Ok(BotSpec {
        name: name.to_owned(),
        token,
        enabled: raw.enabled,
    })
}

/// The value of `health/<name>`.
pub fn encode_health(health: &Health) -> String {
    serde_json::to_string(health).unwrap_or_default()
}

pub fn decode_health(name: &str, value: &[u8]) -> Result<Health, String> {
    if !valid_bot_name(name) {
        return Err("invalid bot name".into());
    }
    serde_json::from_slice(value).map_err(|e| json_problem(&e))
}

/// The JSON of `members/<instance-id>`: how peers reach the instance, plus
/// facts for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValue {
    pub grpc: String,
    /// The gateway's version.
    #[serde(default)]
    pub version: String,
    /// Unix seconds when this session started.
    #[serde(default)]
    pub started: u64,
}

pub fn encode_member(member: &MemberValue) -> String {
    serde_json::to_string(member).unwrap_or_default()
}

pub fn decode_member(instance_id: &str, value: &[u8]) -> Result<MemberValue, String> {
    if !valid_instance_id(instance_id) {
        return Err("invalid instance id".into());
    }
    let member: MemberValue = serde_json::from_slice(value).map_err(|e| json_problem(&e))?;
    if member.grpc.is_empty() {
        return Err("empty \"grpc\" address".into());
    }
    Ok(member)
}

/// Reads `owners/<name>`: a plain instance id.
pub fn decode_owner(name: &str, value: &[u8]) -> Result<String, String> {
    if !valid_bot_name(name) {
        return Err("invalid bot name".into());
    }
    match std::str::from_utf8(value) {
        Ok(id) if valid_instance_id(id) => Ok(id.to_owned()),
        _ => Err("not an instance id".into()),
    }
}

/// serde_json quotes offending strings in some messages: redact them.
fn json_problem(e: &serde_json::Error) -> String {
    redact_tokens(&format!("bad JSON: {e}")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_registry::HealthState;

    const T1: &str = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn layout_matches_the_spec() {
        let k = Keys::new("prod").expect("valid");
        assert_eq!(k.bot("a"), "/shardgate/prod/bots/a");
        assert_eq!(k.health("a"), "/shardgate/prod/health/a");
        assert_eq!(k.member("gw-1"), "/shardgate/prod/members/gw-1");
        assert_eq!(k.owner("a"), "/shardgate/prod/owners/a");
        assert_eq!(k.parse(b"/shardgate/prod/bots/a"), Some(Key::Bot("a")));
        assert_eq!(
            k.parse(b"/shardgate/prod/owners/x.y"),
            Some(Key::Owner("x.y"))
        );
        assert_eq!(k.caller("billing"), "/shardgate/prod/callers/billing");
        assert_eq!(k.ban("billing"), "/shardgate/prod/bans/billing");
        assert_eq!(k.violations(), "/shardgate/prod/settings/violations");
        assert_eq!(k.parse(k.caller("b").as_bytes()), Some(Key::Caller("b")));
        assert_eq!(k.parse(k.ban("b").as_bytes()), Some(Key::Ban("b")));
        assert_eq!(k.parse(k.violations().as_bytes()), Some(Key::Violations));
        assert_eq!(k.parse(k.cluster_key().as_bytes()), Some(Key::ClusterKey));
        assert_eq!(k.parse(k.quota("b").as_bytes()), Some(Key::Other));
        assert_eq!(k.parse(b"/shardgate/prod/zzz/a"), Some(Key::Other));
        assert_eq!(k.parse(b"/shardgate/prod/bots"), Some(Key::Other));
        assert_eq!(k.parse(b"/shardgate/production/bots/a"), None);
        assert!(Keys::new("bad/cluster").is_err());
    }

    #[test]
    fn bot_values_round_trip_and_show_readably() {
        let token = BotToken::parse(T1).expect("token");
        let json = encode_bot(&token, true);
        assert_eq!(json, format!(r#"{{"token":"{T1}","enabled":true}}"#));
        let spec = decode_bot("a", json.as_bytes()).expect("valid");
        assert_eq!(spec.token, token);
        assert!(spec.enabled);
        let spec = decode_bot("a", format!(r#"{{"token":"{T1}"}}"#).as_bytes()).expect("lenient");
        assert!(spec.enabled);
    }

    #[test]
    fn malformed_values_are_refused_without_the_token() {
        let cases: Vec<(&str, String)> = vec![
            ("a", "not json".into()),
            ("a", r#"{"token":"123456:short"}"#.into()),
            ("a", format!(r#"{{"token":"{T1}","enabled":"{T1}"}}"#)),
            ("a", format!(r#"{{"token":"{T1}","colour":1}}"#)),
            ("bad name", format!(r#"{{"token":"{T1}"}}"#)),
        ];
        for (name, value) in cases {
            let err = decode_bot(name, value.as_bytes()).expect_err("malformed");
            assert!(!err.contains("AAAAAAAAAAAAAAAAAAAA"), "token leaked: {err}");
        }
        assert!(decode_health("a", br#"{"state":"sleepy"}"#).is_err());
        assert!(decode_member("gw 1", br#"{"grpc":"h:1"}"#).is_err());
        assert!(decode_member("gw-1", br#"{"grpc":""}"#).is_err());
        assert!(decode_owner("a", b"gw/1").is_err());
        assert_eq!(decode_owner("a", b"gw-1").as_deref(), Ok("gw-1"));
    }

    #[test]
    fn health_and_member_values() {
        let h = decode_health("a", br#"{"state":"revoked","reason":"Unauthorized"}"#).expect("ok");
        assert_eq!(h.state, HealthState::Revoked);
        let m = MemberValue {
            grpc: "127.0.0.1:50051".into(),
            version: "0.1.0".into(),
            started: 7,
        };
        let json = encode_member(&m);
        assert_eq!(
            json,
            r#"{"grpc":"127.0.0.1:50051","version":"0.1.0","started":7}"#
        );
        assert_eq!(decode_member("gw-1", json.as_bytes()), Ok(m));
        // Fields added by later versions are ignored.
        assert!(decode_member("gw-1", br#"{"grpc":"h:1","zone":"b"}"#).is_ok());
    }
}
