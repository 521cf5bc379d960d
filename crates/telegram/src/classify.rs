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
//!
//! The rules live here; reading the body is split by job:
//! - `answer`: the borrowed answer reader, the few fields classification
//!   reads, straight from the body bytes;
//! - `scalar`: one JSON value as a field sees it (boolean, number, string or
//!   other), with the lenient conversions Telegram's answers need;
//! - `object`: the generic machinery that reads a JSON object into such a
//!   struct field by field, skipping every other key unread.

mod answer;
mod object;
#[cfg(test)]
mod reference;
mod scalar;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::outcome::{Outcome, TransientKind};
use crate::redact::redact_tokens;
use answer::Answer;
use scalar::Scalar;

/// Cooldown assumed for a 429 that carries no `retry_after` (the Bot API server
/// answers so while it restarts).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest `retry_after` believed: 24 h. Telegram's real long cooldowns
/// are about an hour (4310 s seen); 10^19 s or 10^30 s is a broken or hostile
/// server, and waiting it out (or multiplying it) would stop the bot for ever
/// or overflow. Longer values are clamped and say so in the description.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Longest description kept from an answer, in characters.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Longest excerpt of a non-JSON body kept in a description, in characters.
const MAX_SNIPPET_CHARS: usize = 120;

/// Classifies one Bot API answer. Pure and lenient about fields it does not need.
///
/// * 2xx with `ok: true` and `result.message_id` → [`Outcome::Delivered`]
///   (chat id from `result.chat.id`, 0 if absent); `ok: true` without a
///   `message_id` → `Transient(Body)`.
/// * `parameters.retry_after` (any status) → `RetryAfter`, at most
///   [`MAX_RETRY_AFTER`];
///   `parameters.migrate_to_chat_id` → `Migrated`.
/// * Then the HTTP status (or, for a 2xx with `ok: false`, the body's
///   `error_code`): 401/404 → `Revoked`, 403 → `Forbidden`, 429 → `RetryAfter`
///   ([`DEFAULT_RETRY_AFTER`]), other 4xx → `Rejected`, 5xx → `Transient(Server)`.
/// * A body that is not a Telegram-shaped JSON object → `Transient(Server)` for a
///   5xx, `RetryAfter` for a 429, otherwise `Transient(Body)`.
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let answer = match serde_json::from_slice::<Answer<'_>>(body) {
        Ok(answer) if answer.is_telegram_shaped() => answer,
        _ => return classify_opaque(status, body),
    };
    let is_2xx = (200..300).contains(&status);
    if is_2xx && answer.ok == Scalar::Bool(true) {
        return match answer.result.message_id.as_i64() {
            Some(message_id) => Outcome::Delivered {
                message_id,
                chat_id: answer.result.chat_id.as_i64().unwrap_or(0),
            },
            None => Outcome::Transient {
                kind: TransientKind::Body,
                description: "answer has ok:true but no result.message_id".to_string(),
            },
        };
    }
    let description = match &answer.description {
        Scalar::Str(d) => sanitize(d),
        _ => status_text(status),
    };

    if let Some(asked) = answer.parameters.retry_after.as_secs() {
        return retry_after(asked, description);
    }
    if let Some(to_chat_id) = answer.parameters.migrate_to_chat_id.as_i64() {
        return Outcome::Migrated {
            to_chat_id,
            description,
        };
    }

    let code = if is_2xx {
        match answer
            .error_code
            .as_i64()
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

/// `RetryAfter` for an answer's `retry_after`, clamped to
/// [`MAX_RETRY_AFTER`] (the description then says so).
fn retry_after(asked: Duration, description: String) -> Outcome {
    if asked <= MAX_RETRY_AFTER {
        return Outcome::RetryAfter {
            retry_after: asked,
            description,
        };
    }
    Outcome::RetryAfter {
        retry_after: MAX_RETRY_AFTER,
        description: format!(
            "{description} (retry_after over {} s clamped to it)",
            MAX_RETRY_AFTER.as_secs()
        ),
    }
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
/// else the text with whitespace collapsed; redacted, then bounded.
///
/// Redaction comes first and sees the whole body (at most the client's
/// body bound): a cut would leave a token's first part, too short to look
/// like a token, in the excerpt.
///
/// Control characters become spaces before that: dropping them after
/// redaction would glue a token's pieces back together (a fuzzer found
/// `1234:abc\0defgh...` turning into a token once the NUL went).
fn snippet(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = redact_tokens(&text);
    let head = match text.char_indices().nth(4096) {
        Some((end, _)) => &text[..end],
        None => &text[..],
    };
    let lower = head.to_ascii_lowercase();
    let picked = match (lower.find("<title>"), lower.find("</title>")) {
        (Some(start), Some(end)) if start + 7 <= end => &head[start + 7..end],
        _ => head,
    };
    let collapsed: String = picked
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_SNIPPET_CHARS)
        .collect();
    collapsed
}

/// Strips anything token-shaped from a Telegram description, then bounds
/// it (in this order: see [`snippet`]).
fn sanitize(description: &str) -> String {
    redact_tokens(description)
        .chars()
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}
