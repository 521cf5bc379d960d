//! `serve`'s settings: flags and environment over the `--config` TOML file
//! over defaults, resolved once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use shardgate_gateway::{ConnLimits, GatewayConfig, TlsFiles};
use shardgate_sched::Limits;
use shardgate_telegram::{Backoff, ClientConfig};

use crate::cli::ServeArgs;
use crate::etcd_access::EtcdAccessArgs;

/// The longest `[telegram] max_message_age_secs` accepted.
const MAX_MESSAGE_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `--config` file. Keys mirror the flags; tables hold what has no flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub telegram_api_base: Option<String>,
    pub etcd: Option<String>,
    pub cluster: Option<String>,
    pub bots_file: Option<PathBuf>,
    pub instance_id: Option<String>,
    pub advertise: Option<String>,
    pub callers_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub auth: Option<crate::cli::AuthArg>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    pub etcd_user: Option<String>,
    pub etcd_password_file: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub telegram: TelegramFile,
    /// Cluster mode: the etcd lease TTL in whole seconds (default 10), i.e.
    /// how long a dead instance's bots wait before survivors take them over.
    pub lease_ttl_secs: Option<u64>,
    /// Cluster mode: how long past its lease an instance keeps driving its
    /// bots while every other member confirms etcd is unreachable too
    /// (default 300; 0 turns the extension off: bots stop at the lease).
    pub max_outage_extension_secs: Option<u64>,
    /// Cluster mode: how long etcd must have been reachable before this
    /// instance starts driving a bot (default 3000; must exceed the peer
    /// confirmation bound plus the peer check interval, 1.5 s).
    pub claim_grace_ms: Option<u64>,
}

/// `[limits]`: every bot's limits and the cooldown policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub chat_burst: Option<u32>,
    pub chat_rate: Option<f64>,
    pub group_max: Option<u32>,
    pub group_window_secs: Option<f64>,
    pub bot_max: Option<u32>,
    pub bot_window_ms: Option<u64>,
    /// Messages per bot window with `allow_paid_broadcast` (default 1000;
    /// not above `bot_max`: no paid lane).
    pub paid_bot_max: Option<u32>,
    pub bot_burst: Option<u32>,
    pub jitter_margin_ms: Option<u64>,
    pub max_in_flight: Option<u32>,
    pub queue_max: Option<usize>,
    pub chat_queue_max: Option<usize>,
    /// Fraction of a bot's sends bulk messages keep while they wait
    /// (0..=1, default 0.10).
    pub bulk_min_share: Option<f64>,
    pub cooldown_factor: Option<f64>,
    pub bot_throttle_threshold_secs: Option<u64>,
    /// Caps every cooldown (drills, staging); unset in production.
    pub max_cooldown_secs: Option<u64>,
    /// Bytes of queued messages this instance holds at most (default 256 MiB),
    /// and each caller's default bound.
    pub queue_bytes_max: Option<u64>,
    /// Answers one SendStream may owe at once (default 10000).
    pub stream_pending_max: Option<usize>,
}

/// `[telegram]`: the Bot API client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramFile {
    pub request_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    /// No longer used: transient failures are retried until the message's
    /// deadline. Read only to refuse it with a message that says so.
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    /// The longest pause between two attempts (default 5000).
    pub backoff_max_ms: Option<u64>,
    /// The deadline of a message whose caller set none, in seconds from its
    /// acceptance (default 600): transient failures are retried until it.
    pub max_message_age_secs: Option<u64>,
}

/// Everything `serve` needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// The Bot API-compatible HTTP front door's address.
    pub http_listen: Option<SocketAddr>,
    pub etcd: Option<String>,
    pub cluster: String,
    pub bots_file: Option<PathBuf>,
    pub advertise: Option<String>,
    pub callers_file: Option<PathBuf>,
    /// `--data-dir` if given (embedded mode's job store).
    pub data_dir: Option<PathBuf>,
    pub lease_ttl: Option<Duration>,
    pub max_outage_extension: Option<Duration>,
    pub claim_grace: Option<Duration>,
    /// `--instance-id`, if given; else [`default_instance_id`] of the bound
    /// port (see [`Settings::for_instance`]).
    pub instance_id: Option<String>,
    /// `instance_id` is set by [`Settings::for_instance`].
    pub gateway: GatewayConfig,
    /// `user_agent` is set by [`Settings::for_instance`].
    pub client: ClientConfig,
    /// TLS of the gRPC port, when configured.
    pub tls: Option<TlsFiles>,
    /// Connection bounds of the gRPC port.
    pub conn_limits: ConnLimits,
    /// How to reach etcd (TLS, user); files read by `serve` before it starts.
    pub etcd_access: EtcdAccessArgs,
}

pub fn load_config_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "config file {} is invalid: {}",
            path.display(),
            shardgate_telegram::redact_tokens(&e.to_string())
        )
    })
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_config_file(path)?,
            None => ConfigFile::default(),
        };
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051)));
        let instance_id = args.instance_id.or(file.instance_id);
        if let Some(id) = &instance_id
            && !shardgate_etcd::valid_instance_id(id)
        {
            bail!(
                "instance id {:?} must be 1-128 printable ASCII characters without spaces or '/'",
                id.chars().take(140).collect::<String>()
            );
        }
        let l = &file.limits;
        let d = Limits::default();
        let limits = Limits {
            chat_burst: l.chat_burst.unwrap_or(d.chat_burst),
            chat_rate: l.chat_rate.unwrap_or(d.chat_rate),
            group_max: l.group_max.unwrap_or(d.group_max),
            group_window: l
                .group_window_secs
                .map(Duration::try_from_secs_f64)
                .transpose()
                .context("limits.group_window_secs")?
                .unwrap_or(d.group_window),
            bot_max: l.bot_max.unwrap_or(d.bot_max),
            bot_window: l.bot_window_ms.map_or(d.bot_window, Duration::from_millis),
            paid_bot_max: l.paid_bot_max.unwrap_or(d.paid_bot_max),
            bot_burst: l.bot_burst.unwrap_or(d.bot_burst),
            jitter_margin: l
                .jitter_margin_ms
                .map_or(d.jitter_margin, Duration::from_millis),
            max_in_flight: l.max_in_flight.unwrap_or(d.max_in_flight),
            queue_max: l.queue_max.unwrap_or(d.queue_max),
            chat_queue_max: l.chat_queue_max.unwrap_or(d.chat_queue_max),
            bulk_min_share: l.bulk_min_share.unwrap_or(d.bulk_min_share),
        };
        limits.validate().context("in [limits]")?;
        if l.queue_bytes_max.is_some_and(|b| b < 64 * 1024) {
            bail!("limits.queue_bytes_max must be at least 65536 (64 KiB)");
        }
        let g = GatewayConfig::default();
        let cooldown_factor = l.cooldown_factor.unwrap_or(g.cooldown_factor);
        if !(cooldown_factor.is_finite() && cooldown_factor >= 1.0) {
            bail!("limits.cooldown_factor must be at least 1.0");
        }
        let t = &file.telegram;
        if t.max_attempts.is_some() {
            bail!(
                "telegram.max_attempts is no longer used: transient failures are retried until \
                 the message's deadline (the caller's, else telegram.max_message_age_secs); \
                 remove it"
            );
        }
        let b = Backoff::default();
        let backoff = Backoff {
            base: t.backoff_base_ms.map_or(b.base, Duration::from_millis),
            max: t.backoff_max_ms.map_or(b.max, Duration::from_millis),
        };
        let max_message_age = t
            .max_message_age_secs
            .map_or(g.max_message_age, Duration::from_secs);
        if max_message_age.is_zero() || max_message_age > MAX_MESSAGE_AGE {
            bail!(
                "telegram.max_message_age_secs must be 1 to {} (30 days)",
                MAX_MESSAGE_AGE.as_secs()
            );
        }
        let c = ClientConfig::default();
        let client = ClientConfig {
            api_base: args
                .telegram_api_base
                .or(file.telegram_api_base)
                .unwrap_or(c.api_base.clone()),
            request_timeout: t
                .request_timeout_ms
                .map_or(c.request_timeout, Duration::from_millis),
            connect_timeout: t
                .connect_timeout_ms
                .map_or(c.connect_timeout, Duration::from_millis),
            ..c
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.tls_client_ca.or(file.tls_client_ca),
        ) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            _ => bail!("TLS needs both tls_cert and tls_key (tls_client_ca is optional with them)"),
        };
        let max_connections = args.max_connections.or(file.max_connections);
        if max_connections == Some(0) {
            bail!("max_connections must be at least 1");
        }
        let conn_limits = ConnLimits {
            max_connections: max_connections.unwrap_or(ConnLimits::default().max_connections),
            ..ConnLimits::default()
        };
        let etcd_access = args.etcd_access.clone().or(EtcdAccessArgs {
            etcd_ca: file.etcd_ca.clone(),
            etcd_cert: file.etcd_cert.clone(),
            etcd_key: file.etcd_key.clone(),
            etcd_user: file.etcd_user.clone(),
            etcd_password_file: file.etcd_password_file.clone(),
        });
        Ok(Settings {
            listen,
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            http_listen: args.http_listen.or(file.http_listen),
            etcd: args.etcd.or(file.etcd),
            cluster: args
                .cluster
                .or(file.cluster)
                .unwrap_or_else(|| "default".into()),
            bots_file: args.bots_file.or(file.bots_file),
            advertise: args.advertise.or(file.advertise),
            callers_file: args.callers_file.or(file.callers_file),
            data_dir: args.data_dir.or(file.data_dir),
            lease_ttl: file.lease_ttl_secs.map(Duration::from_secs),
            max_outage_extension: file.max_outage_extension_secs.map(Duration::from_secs),
            claim_grace: file.claim_grace_ms.map(Duration::from_millis),
            instance_id,
            gateway: GatewayConfig {
                limits,
                cooldown_factor,
                bot_throttle_threshold: l
                    .bot_throttle_threshold_secs
                    .map_or(g.bot_throttle_threshold, Duration::from_secs),
                max_cooldown: l.max_cooldown_secs.map(Duration::from_secs),
                queue_bytes_max: l.queue_bytes_max.unwrap_or(g.queue_bytes_max),
                stream_pending_max: l.stream_pending_max.unwrap_or(g.stream_pending_max),
                auth: args.auth.or(file.auth).map_or(g.auth, Into::into),
                backoff,
                max_message_age,
                ..g
            },
            client,
            tls,
            conn_limits,
            etcd_access,
        })
    }
}

impl Settings {
    /// Settles the instance id once the gRPC port is bound: the one given,
    /// else [`default_instance_id`]. The gateway reports it and the Bot API
    /// client sends it in its `User-Agent`.
    pub fn for_instance(&mut self, port: u16) -> String {
        let id = self
            .instance_id
            .clone()
            .unwrap_or_else(|| default_instance_id(port));
        self.gateway.instance_id = id.clone();
        self.client.user_agent = ClientConfig::user_agent_for(&id);
        id
    }
}

/// `<host name>-<port>`: unique across hosts (two instances on one host
/// cannot share a port), stable across restarts. Without a usable host name,
/// `shardgate-<random>-<port>`.
pub fn default_instance_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| sanitize_host(&h))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("shardgate-{:08x}", rand::random::<u32>()));
    format!("{host}-{port}")
}

/// A host name as part of an instance id: printable ASCII without '/',
/// at most 100 characters.
fn sanitize_host(host: &str) -> String {
    host.trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '/')
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_limits_are_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ninstance_id = \"from-file\"\nmax_outage_extension_secs = 0\nclaim_grace_ms = 2500\n[limits]\ngroup_window_secs = 6\nchat_rate = 9.0\npaid_bot_max = 500\nbulk_min_share = 0.25\nmax_cooldown_secs = 10\n[telegram]\nmax_message_age_secs = 90\n",
        )
        .expect("write");
        let s = Settings::resolve(ServeArgs {
            config: Some(path),
            instance_id: Some("from-flag".into()),
            ..ServeArgs::default()
        })
        .expect("valid");
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.instance_id.as_deref(), Some("from-flag"));
        assert_eq!(s.gateway.limits.group_window, Duration::from_secs(6));
        assert_eq!(s.gateway.limits.chat_rate, 9.0);
        assert_eq!(s.gateway.limits.bulk_min_share, 0.25);
        assert_eq!(s.gateway.limits.paid_bot_max, 500);
        assert_eq!(s.gateway.limits.paid_lane(), Some(470));
        assert_eq!(s.gateway.max_message_age, Duration::from_secs(90));
        assert_eq!(s.cluster, "default");
        assert_eq!(s.max_outage_extension, Some(Duration::ZERO));
        assert_eq!(s.claim_grace, Some(Duration::from_millis(2_500)));
        assert_eq!(s.gateway.max_cooldown, Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_instance_id_names_the_host_and_port_and_goes_into_the_user_agent() {
        let mut s = Settings::resolve(ServeArgs::default()).expect("defaults");
        let id = s.for_instance(50_051);
        assert!(id.ends_with("-50051"), "{id}");
        assert!(id.len() > "-50051".len(), "{id}");
        assert!(shardgate_etcd::valid_instance_id(&id), "{id}");
        assert_eq!(s.gateway.instance_id, id);
        assert_eq!(
            s.client.user_agent,
            format!("shardgate/{} ({id})", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(sanitize_host(" web 1/a\n"), "web1a");
        let mut s = Settings::resolve(ServeArgs {
            instance_id: Some("gw-7".into()),
            ..ServeArgs::default()
        })
        .expect("valid");
        assert_eq!(s.for_instance(1), "gw-7");
        for bad in ["", "has space", "a/b", "é"] {
            let err = Settings::resolve(ServeArgs {
                instance_id: Some(bad.into()),
                ..ServeArgs::default()
            })
            .expect_err(bad);
            assert!(err.to_string().contains("instance id"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        for (i, text) in [
            "lisen = \"x\"\n",
            "[limits]\nchat_rate = 0.0\n",
            "[limits]\ncooldown_factor = 0.5\n",
            "[limits]\nbulk_min_share = 1.5\n",
            "[limits]\nbulk_min_share = -0.1\n",
            "[telegram]\nmax_attempts = 6\n",
            "[telegram]\nmax_message_age_secs = 0\n",
        ]
        .iter()
        .enumerate()
        {
            let path = dir.path().join(format!("c{i}.toml"));
            std::fs::write(&path, text).expect("write");
            assert!(
                Settings::resolve(ServeArgs {
                    config: Some(path),
                    ..ServeArgs::default()
                })
                .is_err(),
                "{text}"
            );
        }
    }
}
