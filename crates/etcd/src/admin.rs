//! The operator's commands on etcd (`shardgate bot add|rotate|revoke|enable|
//! list|import`), over a plain etcd client: no session, no ownership.
//!
//! Every write of a bot is a compare-and-set on the bot's revision, and a
//! rotation or a re-enable writes `health/<name>` = healthy in the same
//! transaction. Names and tokens are validated; errors and rows never hold a
//! token (`BotRow::token_redacted` is `123456:***`).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use serde::Serialize;
use shardgate_registry::{
    BotSpec, BotState, BotView, BotsFile, Health, HealthState, Member, unix_now, valid_bot_name,
};
use shardgate_telegram::{BotToken, redact_tokens};

use crate::error::{EtcdError, call};
use crate::keys::{self, Key, Keys};
use crate::mirror::{KvMeta, Mirror};
use crate::view::skip_if_same_bot;

/// The `instance` recorded in health written by operators.
pub const OPERATOR: &str = "operator";

/// How many times a compare-and-set is retried against concurrent writers.
const CAS_TRIES: usize = 5;

/// One line of `shardgate bot list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BotRow {
    pub name: String,
    /// `healthy`, `throttled`, `revoked`, `disabled`, or `invalid` (the
    /// `bots/` value cannot be read; `reason` says why).
    pub state: String,
    pub owner: Option<String>,
    /// Unix seconds when a throttle ends (throttled bots only).
    pub cooldown_until: Option<u64>,
    pub reason: String,
    /// `123456:***`; empty for an invalid value.
    pub token_redacted: String,
    pub enabled: bool,
}

/// What `import` did, by bot name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub added: Vec<String>,
    /// New token (health reset to healthy).
    pub rotated: Vec<String>,
    /// Same token, `enabled` changed (re-enabling resets health).
    pub toggled: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Operator commands on one cluster.
pub struct Admin {
    client: Client,
    keys: Keys,
    timeout: Duration,
}

fn check_name(name: &str) -> Result<(), EtcdError> {
    if valid_bot_name(name) {
        Ok(())
    } else {
        Err(EtcdError::InvalidName(name.to_owned()))
    }
}

fn parse_token(name: &str, token: &str) -> Result<BotToken, EtcdError> {
    BotToken::parse(token).map_err(|e| EtcdError::InvalidToken {
        name: name.to_owned(),
        message: e.to_string(),
    })
}

fn operator_health(state: HealthState, reason: &str) -> Health {
    Health {
        state,
        until: 0,
        reason: redact_tokens(reason).into_owned(),
        instance: OPERATOR.to_owned(),
        at: unix_now(),
    }
}

impl Admin {
    /// Connects to etcd (requests time out after 5 s each).
    pub async fn connect(
        endpoints: &[String],
        cluster: &str,
        access: &crate::EtcdAccess,
    ) -> Result<Admin, EtcdError> {
        let timeout = Duration::from_secs(5);
        let client = crate::registry::connect(endpoints, timeout, access).await?;
        Admin::new(client, cluster)
    }

    /// Over an existing client.
    pub fn new(client: Client, cluster: &str) -> Result<Admin, EtcdError> {
        Ok(Admin {
            client,
            keys: Keys::new(cluster)?,
            timeout: Duration::from_secs(5),
        })
    }

    /// The deadline of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Admin {
        self.timeout = timeout;
        self
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn get_bot(&self, name: &str) -> Result<Option<KeyValue>, EtcdError> {
        let mut resp = call(
            "read bot",
            self.timeout,
            self.client.kv_client().get(self.keys.bot(name), None),
        )
        .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    async fn txn(&self, what: &'static str, txn: Txn) -> Result<bool, EtcdError> {
        let resp = call(what, self.timeout, self.client.kv_client().txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// Writes `bots/<name>` if its revision is still `expected` (0 = absent),
    /// with `health/<name>` = `health` in the same transaction if given.
    async fn cas_bot(
        &self,
        name: &str,
        expected: i64,
        token: &BotToken,
        enabled: bool,
        health: Option<Health>,
    ) -> Result<bool, EtcdError> {
        let key = self.keys.bot(name);
        let compare = if expected == 0 {
            Compare::create_revision(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, expected)
        };
        let mut ops = vec![TxnOp::put(key, keys::encode_bot(token, enabled), None)];
        if let Some(h) = health {
            ops.push(TxnOp::put(
                self.keys.health(name),
                keys::encode_health(&h),
                None,
            ));
        }
        self.txn("write bot", Txn::new().when([compare]).and_then(ops))
            .await
    }

    /// Adds a bot (enabled, healthy). Fails if it exists.
    pub async fn add(&self, name: &str, token: &str) -> Result<(), EtcdError> {
        check_name(name)?;
        let token = parse_token(name, token)?;
        let spec = BotSpec {
            name: name.to_owned(),
            token,
            enabled: true,
        };
        self.check_one_entry_per_bot(&[&spec]).await?;
        self.add_spec(&spec).await
    }

    /// Refuses `changes` if, applied over the bots in etcd, two names would
    /// hold one Telegram bot (same bot id before the token's colon). Racing
    /// operators can still get past it; the registry then skips the newer
    /// entry and says so.
    async fn check_one_entry_per_bot(&self, changes: &[&BotSpec]) -> Result<(), EtcdError> {
        let resp = call(
            "read bots",
            self.timeout,
            self.client.kv_client().get(
                format!("{}bots/", self.keys.prefix()),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        let mut ids: BTreeMap<String, u64> = resp
            .kvs()
            .iter()
            .filter_map(|kv| match self.keys.parse(kv.key()) {
                Some(Key::Bot(name)) => keys::decode_bot(name, kv.value())
                    .ok()
                    .map(|b| (name.to_owned(), b.token.bot_id())),
                _ => None,
            })
            .collect();
        for spec in changes {
            ids.insert(spec.name.clone(), spec.token.bot_id());
        }
        for spec in changes {
            let bot_id = spec.token.bot_id();
            if let Some((other, _)) = ids
                .iter()
                .find(|(name, id)| **id == bot_id && **name != spec.name)
            {
                return Err(EtcdError::SameBot {
                    name: spec.name.clone(),
                    other: other.clone(),
                    bot_id,
                });
            }
        }
        Ok(())
    }

    async fn add_spec(&self, spec: &BotSpec) -> Result<(), EtcdError> {
        let health = operator_health(HealthState::Healthy, "added");
        if self
            .cas_bot(&spec.name, 0, &spec.token, spec.enabled, Some(health))
            .await?
        {
            Ok(())
        } else {
            Err(EtcdError::AlreadyExists(spec.name.clone()))
        }
    }

    /// Puts a new token for an existing bot and resets its health to
    /// healthy (its `enabled` flag is kept).
    pub async fn rotate(&self, name: &str, token: &str) -> Result<(), EtcdError> {
        check_name(name)?;
        let token = parse_token(name, token)?;
        let spec = BotSpec {
            name: name.to_owned(),
            token: token.clone(),
            enabled: true,
        };
        self.check_one_entry_per_bot(&[&spec]).await?;
        for _ in 0..CAS_TRIES {
            let kv = self
                .get_bot(name)
                .await?
                .ok_or_else(|| EtcdError::UnknownBot(name.to_owned()))?;
            let enabled = keys::decode_bot(name, kv.value()).map_or(true, |b| b.enabled);
            let health = operator_health(HealthState::Healthy, "token rotated");
            if self
                .cas_bot(name, kv.mod_revision(), &token, enabled, Some(health))
                .await?
            {
                return Ok(());
            }
        }
        Err(EtcdError::Conflict(name.to_owned()))
    }

    /// Marks a bot revoked (out of rotation on every instance) until its
    /// token is rotated or it is re-enabled.
    pub async fn revoke(&self, name: &str, reason: &str) -> Result<(), EtcdError> {
        check_name(name)?;
        let reason = if reason.is_empty() {
            "revoked by the operator".to_owned()
        } else {
            format!("revoked by the operator: {reason}")
        };
        let health = operator_health(HealthState::Revoked, &reason);
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.bot(name),
                CompareOp::Greater,
                0,
            )])
            .and_then([TxnOp::put(
                self.keys.health(name),
                keys::encode_health(&health),
                None,
            )]);
        if self.txn("revoke", txn).await? {
            Ok(())
        } else {
            Err(EtcdError::UnknownBot(name.to_owned()))
        }
    }

    /// Enables or disables a bot; enabling resets its health to healthy.
    pub async fn enable(&self, name: &str, enabled: bool) -> Result<(), EtcdError> {
        check_name(name)?;
        for _ in 0..CAS_TRIES {
            let kv = self
                .get_bot(name)
                .await?
                .ok_or_else(|| EtcdError::UnknownBot(name.to_owned()))?;
            let spec =
                keys::decode_bot(name, kv.value()).map_err(|message| EtcdError::Malformed {
                    key: self.keys.bot(name),
                    message,
                })?;
            let health = enabled.then(|| operator_health(HealthState::Healthy, "enabled"));
            if self
                .cas_bot(name, kv.mod_revision(), &spec.token, enabled, health)
                .await?
            {
                return Ok(());
            }
        }
        Err(EtcdError::Conflict(name.to_owned()))
    }

    /// Every bot with its state, owner and cooldown; tokens redacted.
    pub async fn list(&self) -> Result<Vec<BotRow>, EtcdError> {
        let resp = call(
            "list",
            self.timeout,
            self.client
                .kv_client()
                .get(self.keys.prefix(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut mirror = Mirror::default();
        let mut invalid = BTreeMap::new();
        for kv in resp.kvs() {
            if let Some(Key::Bot(name)) = self.keys.parse(kv.key())
                && let Err(problem) = keys::decode_bot(name, kv.value())
            {
                invalid.insert(name.to_owned(), problem);
                continue;
            }
            let meta = KvMeta {
                mod_revision: kv.mod_revision(),
                create_revision: kv.create_revision(),
                lease: kv.lease(),
            };
            mirror.apply_put(&self.keys, kv.key(), kv.value(), meta);
        }
        let now = unix_now();
        let skipped = mirror.same_bot_skipped();
        let owner_of = |name: &str| {
            mirror
                .owners
                .get(name)
                .map(|o| o.instance.clone())
                .filter(|o| !o.is_empty())
        };
        let mut rows: Vec<BotRow> = mirror
            .bots
            .iter()
            .map(|(name, bot)| {
                let stored_enabled = bot.value.enabled;
                let view = skip_if_same_bot(
                    BotView {
                        spec: bot.value.clone(),
                        health: mirror.effective_health(name),
                        owner: owner_of(name),
                        desired_owner: None,
                    },
                    &skipped,
                );
                let state = view.state(now);
                BotRow {
                    name: name.clone(),
                    state: state.as_str().to_owned(),
                    owner: view.owner.clone(),
                    cooldown_until: (state == BotState::Throttled).then_some(view.health.until),
                    reason: view.health.reason.clone(),
                    token_redacted: view.spec.token.redacted(),
                    enabled: stored_enabled,
                }
            })
            .collect();
        rows.extend(invalid.into_iter().map(|(name, problem)| BotRow {
            owner: owner_of(&name),
            name,
            state: "invalid".into(),
            cooldown_until: None,
            reason: problem,
            token_redacted: String::new(),
            enabled: false,
        }));
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// The live gateway instances.
    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let prefix = format!("{}members/", self.keys.prefix());
        let resp = call(
            "members",
            self.timeout,
            self.client
                .kv_client()
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            if let Some(Key::Member(id)) = self.keys.parse(kv.key())
                && let Ok(m) = keys::decode_member(id, kv.value())
            {
                out.push(Member {
                    instance_id: id.to_owned(),
                    grpc: m.grpc,
                });
            }
        }
        Ok(out)
    }

    /// Seeds etcd from a bots file: adds new bots, rotates changed tokens,
    /// applies `enabled`; bots absent from the file are left alone.
    pub async fn import(&self, file: &BotsFile) -> Result<ImportReport, EtcdError> {
        let mut report = ImportReport::default();
        self.check_one_entry_per_bot(&file.bots.iter().collect::<Vec<_>>())
            .await?;
        for spec in &file.bots {
            let mut done = false;
            for _ in 0..CAS_TRIES {
                let Some(kv) = self.get_bot(&spec.name).await? else {
                    match self.add_spec(spec).await {
                        Ok(()) => {
                            report.added.push(spec.name.clone());
                            done = true;
                            break;
                        }
                        Err(EtcdError::AlreadyExists(_)) => continue,
                        Err(e) => return Err(e),
                    }
                };
                let current = keys::decode_bot(&spec.name, kv.value()).ok();
                let (health, bucket) = match &current {
                    Some(cur) if cur.token == spec.token && cur.enabled == spec.enabled => {
                        report.unchanged.push(spec.name.clone());
                        done = true;
                        break;
                    }
                    Some(cur) if cur.token == spec.token => (
                        spec.enabled
                            .then(|| operator_health(HealthState::Healthy, "enabled")),
                        &mut report.toggled,
                    ),
                    _ => (
                        Some(operator_health(HealthState::Healthy, "token rotated")),
                        &mut report.rotated,
                    ),
                };
                if self
                    .cas_bot(
                        &spec.name,
                        kv.mod_revision(),
                        &spec.token,
                        spec.enabled,
                        health,
                    )
                    .await?
                {
                    bucket.push(spec.name.clone());
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(EtcdError::Conflict(spec.name.clone()));
            }
        }
        Ok(report)
    }
}
