//! What one Bot API answer means for the sender. This is pure (status code and body
//! bytes in, [`Outcome`] out) so that every Telegram answer the gateway may meet can
//! be unit-tested without a server, and so the client, the emulator's tests and the
//! dispatcher agree on one reading of Telegram's errors.
//!
//! Order of checks, as the official SDKs do it: a 2xx with `ok: true` is success;
//! then `parameters.retry_after`, then `parameters.migrate_to_chat_id`, then the
//! HTTP status. Only a Telegram-shaped JSON body can make a failure permanent: an
//! HTML page from a proxy, an empty or truncated body is [`TransientKind::Body`]
//! (or [`TransientKind::Server`] for a 5xx), never `Revoked` or `Rejected`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::outcome::{Outcome, TransientKind};
use crate::redact::redact_tokens;

/// Cooldown assumed for a 429 that carries no `retry_after` (the Bot API server
/// answers so while it restarts).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Longest description kept from an answer, in characters.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Longest excerpt of a non-JSON body kept in a description, in characters.
const MAX_SNIPPET_CHARS: usize = 120;

/// Classifies one Bot API answer. Pure and lenient about fields it does not need.
///
/// * 2xx with `ok: true` and `result.message_id` → [`Outcome::Delivered`]
///   (chat id from `result.chat.id`, 0 if absent); `ok: true` without a
///   `message_id` → `Transient(Body)`.
/// * `parameters.retry_after` (any status) → `RetryAfter`;
///   `parameters.migrate_to_chat_id` → `Migrated`.
/// * Then the HTTP status (or, for a 2xx with `ok: false`, the body's
///   `error_code`): 401/404 → `Revoked`, 403 → `Forbidden`, 429 → `RetryAfter`
///   ([`DEFAULT_RETRY_AFTER`]), other 4xx → `Rejected`, 5xx → `Transient(Server)`.
/// * A body that is not a Telegram-shaped JSON object → `Transient(Server)` for a
///   5xx, `RetryAfter` for a 429, otherwise `Transient(Body)`.
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) if is_telegram_shaped(&obj) => obj,
        _ => return classify_opaque(status, body),
    };
    let is_2xx = (200..300).contains(&status);
    let ok = obj.get("ok").and_then(Value::as_bool);
    let description = obj
        .get("description")
        .and_then(Value::as_str)
        .map(sanitize)
        .unwrap_or_else(|| status_text(status));

    if is_2xx && ok == Some(true) {
        let result = obj.get("result");
        let message_id = result.and_then(|r| r.get("message_id")).and_then(as_i64);
        let chat_id = result
            .and_then(|r| r.get("chat"))
            .and_then(|c| c.get("id"))
            .and_then(as_i64)
            .unwrap_or(0);
        return match message_id {
            Some(message_id) => Outcome::Delivered {
                message_id,
                chat_id,
            },
            None => Outcome::Transient {
                kind: TransientKind::Body,
                description: "answer has ok:true but no result.message_id".to_string(),
            },
        };
    }

    let params = obj.get("parameters");
    if let Some(retry_after) = params.and_then(|p| p.get("retry_after")).and_then(as_secs) {
        return Outcome::RetryAfter {
            retry_after,
            description,
        };
    }
    if let Some(to_chat_id) = params
        .and_then(|p| p.get("migrate_to_chat_id"))
        .and_then(as_i64)
    {
        return Outcome::Migrated {
            to_chat_id,
            description,
        };
    }

    let code = if is_2xx {
        match obj
            .get("error_code")
            .and_then(as_i64)
            .and_then(|c| u16::try_from(c).ok())
        {
            Some(code) => code,
            None => {
                return Outcome::Transient {
                    kind: TransientKind::Body,
                    description: format!(
                        "HTTP {status} with ok:false and no error_code: {description}"
                    ),
                };
            }
        }
    } else {
        status
    };
    by_code(code, description)
}

fn by_code(code: u16, description: String) -> Outcome {
    match code {
        401 | 404 => Outcome::Revoked { code, description },
        403 => Outcome::Forbidden { description },
        429 => Outcome::RetryAfter {
            retry_after: DEFAULT_RETRY_AFTER,
            description,
        },
        400..=499 => Outcome::Rejected { code, description },
        500..=599 => Outcome::Transient {
            kind: TransientKind::Server(code),
            description,
        },
        _ => Outcome::Transient {
            kind: TransientKind::Body,
            description: format!("unexpected HTTP {code}: {description}"),
        },
    }
}

/// A body we cannot read as a Bot API answer (HTML error page, empty, truncated).
fn classify_opaque(status: u16, body: &[u8]) -> Outcome {
    let mut description = status_text(status);
    let snippet = snippet(body);
    if snippet.is_empty() {
        description.push_str(if body.is_empty() {
            " (empty body)"
        } else {
            " (unreadable body)"
        });
    } else {
        description.push_str(": ");
        description.push_str(&snippet);
    }
    match status {
        429 => Outcome::RetryAfter {
            retry_after: DEFAULT_RETRY_AFTER,
            description,
        },
        500..=599 => Outcome::Transient {
            kind: TransientKind::Server(status),
            description,
        },
        _ => Outcome::Transient {
            kind: TransientKind::Body,
            description: format!("not a Bot API answer: {description}"),
        },
    }
}

/// A JSON object is a Bot API answer if it has a boolean `ok` or an `error_code`.
fn is_telegram_shaped(obj: &Map<String, Value>) -> bool {
    obj.get("ok").is_some_and(Value::is_boolean)
        || obj.get("error_code").is_some_and(Value::is_number)
}

/// `HTTP 502 Bad Gateway`.
fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// A short excerpt of a non-JSON body: an HTML page's `<title>` if it has one,
/// else the text with whitespace collapsed; bounded and redacted.
fn snippet(body: &[u8]) -> String {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let lower = text.to_ascii_lowercase();
    let picked = match (lower.find("<title>"), lower.find("</title>")) {
        (Some(start), Some(end)) if start + 7 <= end => &text[start + 7..end],
        _ => &text[..],
    };
    let collapsed: String = picked
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SNIPPET_CHARS)
        .collect();
    redact_tokens(&collapsed).into_owned()
}

/// Bounds a Telegram description and strips anything token-shaped.
fn sanitize(description: &str) -> String {
    let bounded: String = description.chars().take(MAX_DESCRIPTION_CHARS).collect();
    redact_tokens(&bounded).into_owned()
}

/// An integer, also when sent as a float with no fraction or as a string.
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-negative number of seconds (fractions rounded up), also as a string.
fn as_secs(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.ceil().min(u64::MAX as f64) as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_body(code: u16, description: &str) -> Vec<u8> {
        serde_json::json!({"ok": false, "error_code": code, "description": description})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn delivered() {
        let body = br#"{"ok":true,"result":{"message_id":4242,"from":{"id":1,"is_bot":true,"first_name":"b"},"chat":{"id":-1001234567890,"type":"supergroup","title":"t"},"date":1700000000,"text":"hi"}}"#;
        let out = classify(200, body);
        assert_eq!(
            out,
            Outcome::Delivered {
                message_id: 4242,
                chat_id: -1001234567890
            }
        );
        assert!(!out.is_retryable());
        assert_eq!(out.telegram_code(), None);
        assert_eq!(out.label(), "delivered");
        assert_eq!(out.description(), None);
    }

    #[test]
    fn delivered_lenient_without_chat() {
        assert_eq!(
            classify(200, br#"{"ok":true,"result":{"message_id":7}}"#),
            Outcome::Delivered {
                message_id: 7,
                chat_id: 0
            }
        );
    }

    #[test]
    fn ok_true_without_message_id_is_transient_body() {
        for body in [
            &br#"{"ok":true,"result":{"chat":{"id":5}}}"#[..],
            br#"{"ok":true,"result":true}"#,
            br#"{"ok":true}"#,
        ] {
            let out = classify(200, body);
            assert!(
                matches!(
                    out,
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "{out:?}"
            );
            assert!(out.is_retryable());
        }
    }

    #[test]
    fn too_many_requests_with_retry_after() {
        for n in [1u64, 35, 4310] {
            let body = serde_json::json!({
                "ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {n}"),
                "parameters": {"retry_after": n}
            });
            let out = classify(429, body.to_string().as_bytes());
            assert_eq!(
                out,
                Outcome::RetryAfter {
                    retry_after: Duration::from_secs(n),
                    description: format!("Too Many Requests: retry after {n}")
                }
            );
            assert!(out.is_retryable());
            assert_eq!(out.telegram_code(), Some(429));
        }
    }

    #[test]
    fn retry_after_is_checked_before_status() {
        let body =
            br#"{"ok":false,"error_code":400,"description":"x","parameters":{"retry_after":3}}"#;
        assert!(
            matches!(classify(400, body), Outcome::RetryAfter { retry_after, .. } if retry_after == Duration::from_secs(3))
        );
        // Lenient number forms.
        let body =
            br#"{"ok":false,"error_code":429,"description":"x","parameters":{"retry_after":2.5}}"#;
        assert!(
            matches!(classify(429, body), Outcome::RetryAfter { retry_after, .. } if retry_after == Duration::from_secs(3))
        );
        let body =
            br#"{"ok":false,"error_code":429,"description":"x","parameters":{"retry_after":"9"}}"#;
        assert!(
            matches!(classify(429, body), Outcome::RetryAfter { retry_after, .. } if retry_after == Duration::from_secs(9))
        );
    }

    #[test]
    fn too_many_requests_without_retry_after() {
        let out = classify(429, &err_body(429, "Too Many Requests"));
        assert_eq!(
            out,
            Outcome::RetryAfter {
                retry_after: DEFAULT_RETRY_AFTER,
                description: "Too Many Requests".into()
            }
        );
        let out = classify(429, b"<html>slow down</html>");
        assert!(
            matches!(out, Outcome::RetryAfter { retry_after, .. } if retry_after == DEFAULT_RETRY_AFTER)
        );
    }

    #[test]
    fn unauthorized_and_not_found_revoke() {
        let out = classify(401, &err_body(401, "Unauthorized"));
        assert_eq!(
            out,
            Outcome::Revoked {
                code: 401,
                description: "Unauthorized".into()
            }
        );
        assert!(!out.is_retryable());
        assert_eq!(out.telegram_code(), Some(401));
        let out = classify(404, &err_body(404, "Not Found"));
        assert_eq!(
            out,
            Outcome::Revoked {
                code: 404,
                description: "Not Found".into()
            }
        );
        assert_eq!(out.telegram_code(), Some(404));
    }

    #[test]
    fn forbidden_strings() {
        for d in [
            "Forbidden: bot was blocked by the user",
            "Forbidden: bot was kicked from the supergroup chat",
            "Forbidden: user is deactivated",
        ] {
            let out = classify(403, &err_body(403, d));
            assert_eq!(
                out,
                Outcome::Forbidden {
                    description: d.into()
                }
            );
            assert!(!out.is_retryable());
            assert_eq!(out.telegram_code(), Some(403));
        }
    }

    #[test]
    fn bad_requests_are_rejected() {
        for d in [
            "Bad Request: chat not found",
            "Bad Request: message is too long",
            "Bad Request: message text is empty",
        ] {
            let out = classify(400, &err_body(400, d));
            assert_eq!(
                out,
                Outcome::Rejected {
                    code: 400,
                    description: d.into()
                }
            );
            assert!(!out.is_retryable());
            assert_eq!(out.telegram_code(), Some(400));
        }
        let out = classify(409, &err_body(409, "Conflict: whatever"));
        assert_eq!(
            out,
            Outcome::Rejected {
                code: 409,
                description: "Conflict: whatever".into()
            }
        );
    }

    #[test]
    fn migrated() {
        let body = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#;
        let out = classify(400, body);
        assert_eq!(
            out,
            Outcome::Migrated {
                to_chat_id: -1001234567890,
                description: "Bad Request: group chat was upgraded to a supergroup chat".into()
            }
        );
        assert!(!out.is_retryable());
        assert_eq!(out.telegram_code(), Some(400));
    }

    #[test]
    fn server_errors_with_html_bodies() {
        let html502 = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n";
        let out = classify(502, html502);
        assert_eq!(
            out,
            Outcome::Transient {
                kind: TransientKind::Server(502),
                description: "HTTP 502 Bad Gateway: 502 Bad Gateway".into()
            }
        );
        assert!(out.is_retryable());
        assert_eq!(out.telegram_code(), Some(502));
        let out = classify(500, b"<html><body>Internal Server Error</body></html>");
        assert!(
            matches!(&out, Outcome::Transient { kind: TransientKind::Server(500), description } if description.starts_with("HTTP 500 Internal Server Error: ")),
            "{out:?}"
        );
        let out = classify(500, &err_body(500, "Internal Server Error"));
        assert_eq!(
            out,
            Outcome::Transient {
                kind: TransientKind::Server(500),
                description: "Internal Server Error".into()
            }
        );
        let out = classify(503, b"");
        assert!(
            matches!(&out, Outcome::Transient { kind: TransientKind::Server(503), description } if description.contains("empty body")),
            "{out:?}"
        );
    }

    #[test]
    fn garbage_is_transient_body() {
        let full = br#"{"ok":true,"result":{"message_id":1,"chat":{"id":2}}}"#;
        for cut in [0, 1, 10, full.len() - 1] {
            let out = classify(200, &full[..cut]);
            assert!(
                matches!(
                    out,
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "cut {cut}: {out:?}"
            );
        }
        for (status, body) in [
            (200, &b"hello"[..]),
            (200, b"[1,2,3]"),
            (200, b"{\"foo\":1}"),
            (200, b"\xff\xfe\x00garbage"),
            (400, b"<html>Bad Request</html>"),
            (401, b"Unauthorized"),
            (404, b"<html><title>404 Not Found</title></html>"),
            (302, b""),
            (200, br#"{"ok":false}"#),
        ] {
            let out = classify(status, body);
            assert!(
                matches!(
                    out,
                    Outcome::Transient {
                        kind: TransientKind::Body,
                        ..
                    }
                ),
                "{status}: {out:?}"
            );
            assert!(out.is_retryable());
        }
    }

    #[test]
    fn ok_false_with_2xx_uses_error_code() {
        let out = classify(
            200,
            &err_body(403, "Forbidden: bot was blocked by the user"),
        );
        assert!(matches!(out, Outcome::Forbidden { .. }), "{out:?}");
    }

    #[test]
    fn descriptions_are_bounded_and_redacted() {
        let secret = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
        let d = format!("Bad Request: bot123:{secret} {}", "x".repeat(1000));
        let out = classify(400, &err_body(400, &d));
        let desc = out.description().expect("description");
        assert!(!desc.contains(secret));
        assert!(desc.contains("bot123:***"));
        assert!(desc.chars().count() <= MAX_DESCRIPTION_CHARS);
        let html = format!("<html><title>oops /bot9:{secret}/sendMessage</title></html>");
        let out = classify(502, html.as_bytes());
        assert!(!out.to_string().contains(secret), "{out}");
    }

    #[test]
    fn display_and_labels() {
        let out = classify(429, br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#);
        assert_eq!(
            out.to_string(),
            "throttled for 5s: Too Many Requests: retry after 5"
        );
        assert_eq!(out.label(), "retry_after");
        let t = Outcome::Transient {
            kind: TransientKind::Timeout,
            description: "d".into(),
        };
        assert_eq!(t.telegram_code(), None);
        assert_eq!(t.to_string(), "timeout: d");
    }
}
