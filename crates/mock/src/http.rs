//! The HTTP surface: the Bot API routes (`/bot<token>/<method>`, GET or POST) and the
//! assembly of the router with the `/_mock/` control endpoints.
//!
//! Parameters are parsed and validated before the state lock is taken; the arrival time is
//! read under it, so arrivals are in the order the engine decides them. Bodies are limited to [`MAX_BODY`] bytes (a bigger one is answered 413
//! "Request Entity Too Large", as Telegram answers a file over 50 MB). An injected drop is signalled to the connection layer by a
//! [`DropConnection`] marker in the response extensions (see `server.rs`), so the client
//! gets no answer at all.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::control::Control;
use crate::control_http;
use crate::methods::{self, Call};
use crate::params::Params;
use crate::reply::{ApiError, Reply};
use crate::state::Decision;

/// Largest request body read: one file at Telegram's 50 MB limit and its parameters.
pub(crate) const MAX_BODY: usize = (shardgate_botapi::MAX_FILE_BYTES as usize) + (4 << 20);

/// Response extension telling the connection layer to close the connection unanswered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DropConnection;

/// The whole emulator as an axum router.
pub(crate) fn router(control: Control) -> Router {
    control_http::routes()
        .fallback(bot_api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(control)
}

/// Splits `/bot<token>/<method>` into its token and method.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/bot")?;
    match rest.split_once('/') {
        Some((token, method)) => Some((token, method)),
        None => Some((rest, "")),
    }
}

/// Parses and validates the call (outside the lock).
async fn call_of(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Call {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = match body {
        Ok(body) => Params::collect(uri.query(), content_type, body)
            .await
            .map_err(|_| ApiError::bad_request("Bad Request: can't parse request body")),
        Err(_) => Err(ApiError::too_large()),
    };
    methods::parse(method, params)
}

async fn bot_api(
    State(control): State<Control>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((token, method)) = split_path(uri.path()) else {
        return Reply::Error(ApiError::not_found()).into_response();
    };
    let call = call_of(method, &uri, &headers, body).await;
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let decision = {
        let mut engine = control.engine();
        // Read under the lock, so arrivals are in the order the engine
        // decides them (the limiter's windows and the delivery log agree).
        let arrival = Instant::now();
        let wall_ms = control.wall_ms(arrival);
        let decision = engine.handle(token, call, arrival, wall_ms);
        engine.note_user_agent(token, &user_agent);
        decision
    };
    match decision {
        Decision::Drop => {
            let mut response = Response::new(Body::empty());
            response.extensions_mut().insert(DropConnection);
            response
        }
        Decision::Answer { reply, latency } => {
            if latency > Duration::ZERO {
                tokio::time::sleep(latency).await;
            }
            reply.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_bot_paths() {
        assert_eq!(
            split_path("/bot1:abc/sendMessage"),
            Some(("1:abc", "sendMessage"))
        );
        assert_eq!(split_path("/bot1:abc"), Some(("1:abc", "")));
        assert_eq!(split_path("/bot/getMe"), Some(("", "getMe")));
        assert_eq!(split_path("/favicon.ico"), None);
    }

    #[tokio::test]
    async fn methods_are_case_insensitive() {
        let uri: Uri = "/x?chat_id=1&text=a".parse().unwrap_or_default();
        let h = HeaderMap::new();
        let call = |m: &'static str, body: &'static [u8]| {
            call_of(m, &uri, &h, Ok(Bytes::from_static(body)))
        };
        assert!(matches!(call("sendmessage", b"").await, Call::Api(Ok(_))));
        assert_eq!(call("GETME", b"").await, Call::GetMe);
        assert_eq!(call("sendSticker", b"").await, Call::Unknown);
        let bad = call("sendMessage", b"{oops").await;
        assert!(matches!(bad, Call::Api(Err(e)) if e.error_code == 400));
    }
}
