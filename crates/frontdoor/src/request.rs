//! What a Bot API request becomes: a `CallRequest`, the same one a gRPC
//! client would send, so the door adds no rules of its own. The method and
//! parameters come from the path and body; Shardgate's own options (which
//! bot, the user a chat's order follows, priority, deadline, idempotency)
//! come from headers a Bot API library lets its user add, all optional.

use axum::http::HeaderMap;
use serde_json::Value;
use shardgate_gateway::SendError;
use shardgate_proto::v1 as pb;

use crate::body::Parsed;

/// Pins a bot by name; the answer carries the bot that sent.
pub const BOT: &str = "x-shardgate-bot";
/// The user whose messages into the chat keep their order (routing key).
pub const USER_ID: &str = "x-shardgate-user-id";
/// `interactive`, `normal` (the default) or `bulk`.
pub const PRIORITY: &str = "x-shardgate-priority";
/// The longest the message may wait, in milliseconds.
pub const TIMEOUT_MS: &str = "x-shardgate-timeout-ms";
/// `true`: a pinned bot that cannot send may hand over to another.
pub const ALLOW_FAILOVER: &str = "x-shardgate-allow-failover";
/// The same key and request answered once, however often it is sent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// W3C trace context: the request's spans join the caller's trace.
pub const TRACEPARENT: &str = "traceparent";

/// The `CallRequest` for `method` with these parameters and headers.
pub fn call_request(
    method: &str,
    parsed: Parsed,
    headers: &HeaderMap,
) -> Result<pb::CallRequest, SendError> {
    let Parsed { params, files } = parsed;
    let params_json = Value::Object(params).to_string();
    Ok(pb::CallRequest {
        method: method.to_owned(),
        params_json,
        files,
        user_id: header(headers, USER_ID)?
            .map(|v| parse(USER_ID, v, "an integer"))
            .transpose()?
            .unwrap_or(0),
        bot: header(headers, BOT)?.unwrap_or_default().to_owned(),
        allow_failover: header(headers, ALLOW_FAILOVER)?
            .map(flag)
            .transpose()?
            .unwrap_or(false),
        idempotency_key: header(headers, IDEMPOTENCY_KEY)?
            .unwrap_or_default()
            .to_owned(),
        client_ref: String::new(),
        timeout_ms: header(headers, TIMEOUT_MS)?
            .map(|v| parse(TIMEOUT_MS, v, "milliseconds (an unsigned integer)"))
            .transpose()?
            .unwrap_or(0),
        traceparent: header(headers, TRACEPARENT)?.unwrap_or_default().to_owned(),
        priority: header(headers, PRIORITY)?
            .map(priority)
            .transpose()?
            .unwrap_or(pb::Priority::Unspecified) as i32,
    })
}

/// A header's value as text (`None`: absent).
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, SendError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| SendError::Invalid(format!("header {name} must be visible ASCII"))),
    }
}

fn parse<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> Result<T, SendError> {
    v.parse()
        .map_err(|_| SendError::Invalid(format!("header {name} must be {what}")))
}

fn flag(v: &str) -> Result<bool, SendError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(SendError::Invalid(format!(
            "header {ALLOW_FAILOVER} must be true or false"
        ))),
    }
}

fn priority(v: &str) -> Result<pb::Priority, SendError> {
    match v.to_ascii_lowercase().as_str() {
        "interactive" => Ok(pb::Priority::Interactive),
        "normal" => Ok(pb::Priority::Normal),
        "bulk" => Ok(pb::Priority::Bulk),
        _ => Err(SendError::Invalid(format!(
            "header {PRIORITY} must be interactive, normal or bulk"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn parsed() -> Parsed {
        let mut p = Parsed::default();
        p.params
            .insert("chat_id".into(), Value::String("42".into()));
        p.params.insert("text".into(), Value::String("hi".into()));
        p
    }

    #[test]
    fn without_headers_the_call_is_the_method_and_its_parameters() {
        let req = call_request("sendMessage", parsed(), &HeaderMap::new()).expect("request");
        assert_eq!(req.method, "sendMessage");
        let params: Value = serde_json::from_str(&req.params_json).expect("JSON");
        assert_eq!(params["chat_id"], "42");
        assert_eq!(params["text"], "hi");
        assert_eq!(req.bot, "");
        assert_eq!(req.user_id, 0);
        assert_eq!(req.priority, pb::Priority::Unspecified as i32);
        assert_eq!(req.timeout_ms, 0);
        assert!(!req.allow_failover);
    }

    #[test]
    fn shardgate_headers_fill_the_gateways_own_fields() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("X-Shardgate-Bot", "alpha"),
            ("X-Shardgate-User-Id", "-7"),
            ("X-Shardgate-Priority", "Interactive"),
            ("X-Shardgate-Timeout-Ms", "2500"),
            ("X-Shardgate-Allow-Failover", "true"),
            ("Idempotency-Key", "order-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ] {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_static(v),
            );
        }
        let req = call_request("sendMessage", parsed(), &h).expect("request");
        assert_eq!(req.bot, "alpha");
        assert_eq!(req.user_id, -7);
        assert_eq!(req.priority, pb::Priority::Interactive as i32);
        assert_eq!(req.timeout_ms, 2500);
        assert!(req.allow_failover);
        assert_eq!(req.idempotency_key, "order-1");
        assert!(req.traceparent.starts_with("00-0af7"));
    }

    #[test]
    fn a_malformed_header_is_refused_by_name() {
        for (k, v) in [
            (USER_ID, "seven"),
            (PRIORITY, "urgent"),
            (TIMEOUT_MS, "-1"),
            (ALLOW_FAILOVER, "maybe"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(k, HeaderValue::from_static(v));
            let err = call_request("sendMessage", parsed(), &h).expect_err("refused");
            assert!(
                matches!(&err, SendError::Invalid(m) if m.contains(k)),
                "{k}: {err:?}"
            );
        }
    }
}
