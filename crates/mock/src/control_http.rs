//! The control plane over HTTP: JSON endpoints under `/_mock/` on the Bot API's port (listed
//! in the crate documentation). They map one to one onto [`Control`]'s methods.
//!
//! Mutations answer `{"ok":true}`; a bad request answers 400 `{"ok":false,"error":"..."}`
//! (which never echoes a token).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::control::Control;
use crate::faults::Faults;
use crate::limits::Limits;
use crate::state::ChatState;
use crate::token;

/// The `/_mock/` routes (state: the [`Control`] handle).
pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/_mock/health", get(health))
        .route("/_mock/stats", get(stats))
        .route("/_mock/deliveries", get(deliveries))
        .route("/_mock/revoke", post(revoke))
        .route("/_mock/unrevoke", post(unrevoke))
        .route("/_mock/throttle", post(throttle))
        .route("/_mock/unthrottle", post(unthrottle))
        .route("/_mock/faults", get(get_faults).post(set_faults))
        .route("/_mock/chat", post(set_chat))
        .route("/_mock/limits", get(get_limits).post(set_limits))
        .route("/_mock/reset", post(reset))
        .route("/_mock/message", get(message))
        .route("/_mock/files", get(files))
        .route("/_mock/files/{file_id}", get(file))
}

/// A control request that could not be honoured.
struct Bad(String);

impl IntoResponse for Bad {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"ok": false, "error": self.0})),
        )
            .into_response()
    }
}

fn done() -> Response {
    axum::Json(json!({"ok": true})).into_response()
}

/// Parses a JSON body; an empty body reads as `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Bad> {
    let raw: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(raw).map_err(|e| Bad(format!("invalid JSON body: {e}")))
}

/// Names a bot by numeric id or by token.
#[derive(Debug, Default, Deserialize)]
struct BotRef {
    bot_id: Option<u64>,
    token: Option<String>,
}

impl BotRef {
    fn resolve(&self) -> Result<Option<u64>, Bad> {
        match (&self.bot_id, &self.token) {
            (Some(id), _) => Ok(Some(*id)),
            (None, Some(t)) => token::bot_id(t)
                .map(Some)
                .ok_or_else(|| Bad(format!("malformed token {}", token::redact(t)))),
            (None, None) => Ok(None),
        }
    }

    fn required(&self) -> Result<u64, Bad> {
        self.resolve()?
            .ok_or_else(|| Bad("bot_id or token is required".into()))
    }
}

async fn health() -> Response {
    done()
}

async fn stats(State(c): State<Control>) -> Response {
    axum::Json(c.stats()).into_response()
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

async fn deliveries(State(c): State<Control>, Query(q): Query<Since>) -> Response {
    axum::Json(c.deliveries_page(q.since, q.limit.unwrap_or(usize::MAX))).into_response()
}

async fn revoke(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    c.revoke(parse::<BotRef>(&body)?.required()?);
    Ok(done())
}

async fn unrevoke(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    c.unrevoke(parse::<BotRef>(&body)?.required()?);
    Ok(done())
}

#[derive(Debug, Deserialize)]
struct ThrottleBody {
    #[serde(flatten)]
    bot: BotRef,
    retry_after: u64,
    for_secs: Option<f64>,
    for_ms: Option<u64>,
}

async fn throttle(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    let b: ThrottleBody = parse(&body)?;
    let bot = b.bot.required()?;
    let duration = match (b.for_ms, b.for_secs) {
        (Some(ms), _) => Some(Duration::from_millis(ms)),
        (None, Some(s)) => {
            Some(Duration::try_from_secs_f64(s).map_err(|_| Bad("for_secs must be >= 0".into()))?)
        }
        (None, None) => None,
    };
    c.throttle(bot, b.retry_after, duration);
    Ok(done())
}

async fn unthrottle(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    c.unthrottle(parse::<BotRef>(&body)?.required()?);
    Ok(done())
}

#[derive(Debug, Deserialize)]
struct FaultsBody {
    #[serde(flatten)]
    bot: BotRef,
    #[serde(default)]
    clear: bool,
    #[serde(flatten)]
    faults: Faults,
}

async fn set_faults(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    let b: FaultsBody = parse(&body)?;
    let bot = b.bot.resolve()?;
    for p in [b.faults.error_5xx, b.faults.drop] {
        if !(0.0..=1.0).contains(&p) {
            return Err(Bad("probabilities must be within 0..=1".into()));
        }
    }
    match (bot, b.clear) {
        (Some(id), true) => c.clear_faults(id),
        (None, true) => c.set_faults(None, Faults::default()),
        (bot, false) => c.set_faults(bot, b.faults),
    }
    Ok(done())
}

#[derive(Debug, Deserialize)]
struct FaultsQuery {
    bot_id: Option<u64>,
}

async fn get_faults(State(c): State<Control>, Query(q): Query<FaultsQuery>) -> Response {
    axum::Json(c.faults(q.bot_id)).into_response()
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    chat_id: i64,
    #[serde(flatten)]
    state: ChatState,
}

async fn set_chat(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    let b: ChatBody = parse(&body)?;
    c.set_chat(b.chat_id, b.state);
    Ok(done())
}

/// Limits over HTTP: every field optional on input (missing fields keep their current value,
/// or the official one when limits were off); `enabled: false` turns limits off.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LimitsBody {
    enabled: Option<bool>,
    chat_burst: Option<u32>,
    chat_rate_per_s: Option<f64>,
    group_max: Option<u32>,
    group_window_secs: Option<f64>,
    bot_max: Option<u32>,
    bot_window_ms: Option<u64>,
    paid_bot_max: Option<u32>,
}

async fn get_limits(State(c): State<Control>) -> Response {
    let body = match c.limits() {
        None => LimitsBody {
            enabled: Some(false),
            ..LimitsBody::default()
        },
        Some(l) => LimitsBody {
            enabled: Some(true),
            chat_burst: Some(l.chat_burst),
            chat_rate_per_s: Some(l.chat_rate_per_s),
            group_max: Some(l.group_max),
            group_window_secs: Some(l.group_window.as_secs_f64()),
            bot_max: Some(l.bot_max),
            bot_window_ms: Some(u64::try_from(l.bot_window.as_millis()).unwrap_or(u64::MAX)),
            paid_bot_max: Some(c.paid_bot_max()),
        },
    };
    axum::Json(body).into_response()
}

async fn set_limits(State(c): State<Control>, body: Bytes) -> Result<Response, Bad> {
    let b: LimitsBody = parse(&body)?;
    if let Some(paid) = b.paid_bot_max {
        c.set_paid_bot_max(paid);
    }
    if b.enabled == Some(false) {
        c.set_limits(None);
        return Ok(done());
    }
    let mut l = c.limits().unwrap_or_else(Limits::official);
    if let Some(v) = b.chat_burst {
        l.chat_burst = v;
    }
    if let Some(v) = b.chat_rate_per_s {
        l.chat_rate_per_s = v;
    }
    if let Some(v) = b.group_max {
        l.group_max = v;
    }
    if let Some(v) = b.group_window_secs {
        l.group_window = Duration::try_from_secs_f64(v)
            .map_err(|_| Bad("group_window_secs must be >= 0".into()))?;
    }
    if let Some(v) = b.bot_max {
        l.bot_max = v;
    }
    if let Some(v) = b.bot_window_ms {
        l.bot_window = Duration::from_millis(v);
    }
    c.set_limits(Some(l));
    Ok(done())
}

async fn reset(State(c): State<Control>) -> Response {
    c.reset();
    done()
}

#[derive(Debug, Deserialize)]
struct MessageQuery {
    chat_id: i64,
    message_id: i64,
}

async fn message(State(c): State<Control>, Query(q): Query<MessageQuery>) -> Response {
    match c.message(q.chat_id, q.message_id) {
        Some(m) => axum::Json(m).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error": "no such message"})),
        )
            .into_response(),
    }
}

async fn files(State(c): State<Control>) -> Response {
    axum::Json(c.files()).into_response()
}

/// The bytes of an uploaded file, exactly as received; its SHA-256 in `x-sha256`.
async fn file(State(c): State<Control>, Path(file_id): Path<String>) -> Response {
    match c.file(&file_id) {
        Some((info, data)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::HeaderName::from_static("x-sha256"), info.sha256),
            ],
            data,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error": "no such file"})),
        )
            .into_response(),
    }
}
