//! The HTTP side: one pooled reqwest client that calls `sendMessage`, `getMe` and any
//! other method ([`Client::call`])
//! and turns whatever happens (an answer, a timeout, a refused connection) into an
//! [`Outcome`]. Its other job is keeping the token out of every error and log line:
//! reqwest errors carry the request URL, which contains the token, so they are
//! stripped (`without_url`) and redacted before they become descriptions.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::call::{CallFile, CallResult, read_answer};
use crate::classify::classify;
use crate::message::{BotInfo, SendMessage};
use crate::outcome::{Outcome, TransientKind};
use crate::redact::redact_tokens;
use crate::token::BotToken;

/// Largest answer body read; Bot API answers to these methods are a few KiB.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Tokens whose request URLs are kept parsed; past it the cache starts over
/// (a fleet has far fewer tokens; rotated ones would otherwise pile up).
const MAX_CACHED_TOKENS: usize = 4096;

/// The parsed request URLs of one token. They contain the token: never log,
/// print or return them.
struct Endpoints {
    send_message: reqwest::Url,
    get_me: reqwest::Url,
}

/// Bot API method URLs, parsed once per token: reqwest takes a `Url` as is,
/// where a `String` would be parsed again on every request.
type EndpointCache = RwLock<HashMap<BotToken, Arc<Endpoints>>>;

/// How to reach the Bot API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Base URL, `https://api.telegram.org` by default. May carry a path prefix and
    /// a trailing slash (local Bot API servers, the emulator, reverse proxies).
    pub api_base: String,
    /// Whole-request deadline (connect, send, answer). 15 s.
    pub request_timeout: Duration,
    /// TCP + TLS connect deadline. 5 s.
    pub connect_timeout: Duration,
    /// Idle connections kept per host. Keep it at least bots x
    /// `max_in_flight`, or every request beyond it opens and closes a TCP
    /// connection (measured: 11.3k vs 17.4k msg/s, BENCHMARKS.md). 1024.
    pub pool_idle_per_host: usize,
    /// How long an idle pooled connection is kept. 90 s.
    pub pool_idle_timeout: Duration,
    /// TCP keep-alive probe interval on pooled connections. 30 s.
    pub tcp_keepalive: Duration,
    /// `User-Agent` header. `shardgate/<version>`; the daemon sends
    /// [`ClientConfig::user_agent_for`] its instance id, so that the Bot API
    /// side can tell instances apart.
    pub user_agent: String,
}

impl ClientConfig {
    /// `shardgate/<version> (<instance-id>)`.
    pub fn user_agent_for(instance_id: &str) -> String {
        format!("shardgate/{} ({instance_id})", env!("CARGO_PKG_VERSION"))
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_base: "https://api.telegram.org".to_string(),
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            pool_idle_per_host: 1024,
            pool_idle_timeout: Duration::from_secs(90),
            tcp_keepalive: Duration::from_secs(30),
            user_agent: concat!("shardgate/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// `api_base` is not an http(s) URL usable as a base.
    #[error("invalid Telegram API base {base:?}: {reason}")]
    InvalidApiBase {
        /// The offending value (redacted).
        base: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// A Bot API client. Cloning is cheap and clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `api_base` normalized, without a trailing slash.
    base: Arc<str>,
    /// Parsed method URLs per token (they hold the token: not in `Debug`).
    endpoints: Arc<EndpointCache>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &&*self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client: installs rustls' ring provider if no provider is
    /// installed, validates `api_base`, enables `TCP_NODELAY`, pools connections and
    /// disables redirects (a Bot API answer is never a redirect).
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let base = normalize_base(&config.api_base)?;
        // Fails only when a provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .pool_idle_timeout(config.pool_idle_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(config.tcp_keepalive)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(config.user_agent)
            .build()
            .map_err(|e| ClientError::Build(describe_error(e)))?;
        Ok(Client {
            http,
            base: Arc::from(base),
            endpoints: Arc::default(),
        })
    }

    /// The normalized API base this client talks to (no trailing slash).
    pub fn api_base(&self) -> &str {
        &self.base
    }

    /// `POST {base}/bot{token}/sendMessage` with a JSON body, classified.
    /// A `Delivered` answer that omits `result.chat.id` reports `msg.chat_id`.
    pub async fn send_message(&self, token: &BotToken, msg: &SendMessage) -> Outcome {
        let started = Instant::now();
        let request = self
            .http
            .post(self.endpoints(token).send_message.clone())
            .json(msg);
        let (status, outcome) = match self.exchange(request).await {
            Ok((status, body)) => (Some(status), classify(status, &body)),
            Err(outcome) => (None, outcome),
        };
        let outcome = match outcome {
            Outcome::Delivered {
                message_id,
                chat_id: 0,
            } => Outcome::Delivered {
                message_id,
                chat_id: msg.chat_id,
            },
            other => other,
        };
        log_call("sendMessage", token, status, started, Some(&outcome));
        outcome
    }

    /// `POST {base}/bot{token}/{method}`: the parameters as a JSON body, or a
    /// multipart form (every parameter a text field, every upload a file part)
    /// when `files` is not empty. A success keeps Telegram's `result`; any
    /// other answer is classified like `sendMessage`'s. `method` must pass
    /// [`check_method_name`](crate::check_method_name) (else `Rejected`, nothing sent).
    pub async fn call(
        &self,
        token: &BotToken,
        method: &str,
        params: &serde_json::Map<String, Value>,
        files: &[CallFile],
    ) -> Result<CallResult, Outcome> {
        let started = Instant::now();
        if let Err(e) = crate::call::check_method_name(method) {
            return Err(Outcome::Rejected {
                code: 400,
                description: e.to_string(),
            });
        }
        let url = self.url(token, method);
        let request = if files.is_empty() {
            self.http.post(url).json(params)
        } else {
            self.http
                .post(url)
                .multipart(crate::call::form(params, files)?)
        };
        let (status, result) = match self.exchange(request).await {
            Ok((status, body)) => (Some(status), read_answer(status, &body)),
            Err(outcome) => (None, Err(outcome)),
        };
        log_call(method, token, status, started, result.as_ref().err());
        result
    }

    /// `GET {base}/bot{token}/getMe`: the bot's identity, or what went wrong
    /// (`Revoked` for a dead token, `Transient` for a network problem, ...).
    pub async fn get_me(&self, token: &BotToken) -> Result<BotInfo, Outcome> {
        let started = Instant::now();
        let request = self.http.get(self.endpoints(token).get_me.clone());
        let (status, result) = match self.exchange(request).await {
            Ok((status, body)) => (Some(status), parse_get_me(status, &body)),
            Err(outcome) => (None, Err(outcome)),
        };
        log_call("getMe", token, status, started, result.as_ref().err());
        result
    }

    /// The token's parsed method URLs, from the cache or parsed now.
    fn endpoints(&self, token: &BotToken) -> Arc<Endpoints> {
        if let Some(e) = self
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
        {
            return Arc::clone(e);
        }
        let e = Arc::new(Endpoints {
            send_message: self.url(token, "sendMessage"),
            get_me: self.url(token, "getMe"),
        });
        let mut cache = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.clear();
        }
        Arc::clone(cache.entry(token.clone()).or_insert(e))
    }

    /// `{base}/bot{token}/{method}`, parsed. It cannot fail: the base was
    /// validated as an http(s) URL and a token is `digits:[A-Za-z0-9_-]`.
    fn url(&self, token: &BotToken, method: &str) -> reqwest::Url {
        let text = format!("{}/bot{}/{}", self.base, token.expose(), method);
        reqwest::Url::parse(&text).unwrap_or_else(|_| {
            // Unreachable; never panic with (or print) a URL holding a token.
            panic!("Bot API URL for bot {} does not parse", token.bot_id())
        })
    }

    /// Sends the request and reads the whole (bounded) answer body.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), Outcome> {
        let mut response = request.send().await.map_err(transport_failure)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_failure)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Outcome::Transient {
                    kind: TransientKind::Body,
                    description: format!("HTTP {status} answer body over {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// `getMe`: success is a 2xx with `ok: true` and a `result` holding the bot's id;
/// everything else is classified like any other answer.
fn parse_get_me(status: u16, body: &[u8]) -> Result<BotInfo, Outcome> {
    if (200..300).contains(&status)
        && let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body)
        && obj.get("ok").and_then(Value::as_bool) == Some(true)
    {
        return obj
            .remove("result")
            .and_then(|r| serde_json::from_value::<BotInfo>(r).ok())
            .ok_or_else(|| Outcome::Transient {
                kind: TransientKind::Body,
                description: "getMe answer has ok:true but no usable result".to_string(),
            });
    }
    match classify(status, body) {
        // Not reachable for getMe (handled above), but never report success as error
        // without saying why.
        Outcome::Delivered { .. } => Err(Outcome::Transient {
            kind: TransientKind::Body,
            description: "getMe answer is not a bot".to_string(),
        }),
        other => Err(other),
    }
}

/// Maps a reqwest failure to `Transient`, with a description free of URL and token.
/// A failure to connect is `Connect` even when it was a connect timeout (the request
/// never left), other timeouts are `Timeout` (it may have been delivered).
fn transport_failure(err: reqwest::Error) -> Outcome {
    let kind = if err.is_connect() {
        TransientKind::Connect
    } else if err.is_timeout() {
        TransientKind::Timeout
    } else if err.is_body() || err.is_decode() {
        TransientKind::Body
    } else {
        TransientKind::Connection
    };
    Outcome::Transient {
        kind,
        description: describe_error(err),
    }
}

/// The error and its causes, `a: b: c`, without the URL and with anything
/// token-shaped redacted (defence in depth: causes are not ours).
fn describe_error(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    redact_tokens(&text).into_owned()
}

/// One debug line per call: method, bot id, status, elapsed; never the URL.
/// `outcome` is `None` for a successful `getMe`.
fn log_call(
    method: &str,
    token: &BotToken,
    status: Option<u16>,
    started: Instant,
    outcome: Option<&Outcome>,
) {
    tracing::debug!(
        method,
        bot_id = token.bot_id(),
        status,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        outcome = outcome.map_or("ok", Outcome::label),
        telegram_code = outcome.and_then(Outcome::telegram_code),
        error = outcome.and_then(Outcome::description),
        "bot api call"
    );
}

/// Validates `api_base` and strips its trailing slashes.
fn normalize_base(raw: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidApiBase {
        base: redact_tokens(raw).chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let url = reqwest::Url::parse(trimmed).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_bases() {
        for (raw, want) in [
            ("https://api.telegram.org", "https://api.telegram.org"),
            ("https://api.telegram.org/", "https://api.telegram.org"),
            (" http://127.0.0.1:8081 ", "http://127.0.0.1:8081"),
            (
                "http://127.0.0.1:8081/prefix/",
                "http://127.0.0.1:8081/prefix",
            ),
            ("http://h/a/b//", "http://h/a/b"),
            ("HTTP://Example.COM:80/x", "http://example.com/x"),
        ] {
            assert_eq!(normalize_base(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn rejects_bad_bases() {
        for raw in [
            "",
            "   ",
            "api.telegram.org",
            "ftp://api.telegram.org",
            "unix:/tmp/sock",
            "http://",
            "https://h/?x=1",
            "https://h/#f",
            "https://user:pw@h/",
            "mailto:a@b",
        ] {
            let err = normalize_base(raw).expect_err(raw);
            assert!(
                err.to_string().starts_with("invalid Telegram API base"),
                "{err}"
            );
        }
    }

    #[test]
    fn builds_and_reports_base() {
        let c = Client::new(ClientConfig {
            api_base: "http://127.0.0.1:1/p/".into(),
            ..Default::default()
        })
        .expect("client");
        assert_eq!(c.api_base(), "http://127.0.0.1:1/p");
        assert!(format!("{c:?}").contains("http://127.0.0.1:1/p"));
        let token = BotToken::parse("42:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("token");
        assert_eq!(
            c.url(&token, "getMe").as_str(),
            "http://127.0.0.1:1/p/bot42:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/getMe"
        );
        // Parsed once per token, shared by clones, never in `Debug`.
        let e = c.endpoints(&token);
        assert_eq!(
            e.send_message.as_str(),
            "http://127.0.0.1:1/p/bot42:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/sendMessage"
        );
        assert!(Arc::ptr_eq(&e, &c.clone().endpoints(&token)));
        let other = BotToken::parse("43:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB").expect("token");
        assert!(!Arc::ptr_eq(&e, &c.endpoints(&other)));
        assert!(!format!("{c:?}").contains("AAAAAAAA"));
        // A second client builds fine with the provider already installed.
        Client::new(ClientConfig::default()).expect("second client");
    }

    #[test]
    fn get_me_parsing() {
        let ok = br#"{"ok":true,"result":{"id":42,"is_bot":true,"first_name":"Shard","username":"shard_bot","can_join_groups":true}}"#;
        assert_eq!(
            parse_get_me(200, ok),
            Ok(BotInfo {
                id: 42,
                username: "shard_bot".into(),
                first_name: "Shard".into()
            })
        );
        assert!(matches!(
            parse_get_me(200, br#"{"ok":true,"result":{"first_name":"x"}}"#),
            Err(Outcome::Transient {
                kind: TransientKind::Body,
                ..
            })
        ));
        assert!(matches!(
            parse_get_me(
                401,
                br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            Err(Outcome::Revoked { code: 401, .. })
        ));
        assert!(matches!(
            parse_get_me(200, b"<html>"),
            Err(Outcome::Transient {
                kind: TransientKind::Body,
                ..
            })
        ));
    }
}
