//! Answers in the Bot API's shape: `{"ok":true,"result":...}`, or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{...}}`.
//!
//! Telegram's own refusals pass through with its code and words, so a
//! library raises what it would have raised talking to Telegram. The
//! gateway's refusals take the HTTP code a library already handles: 400 for
//! a bad request or a method the gateway never calls, 401 for an unknown key,
//! 403 for a caller's lists or a ban, 429 with `retry_after` when a quota or a
//! queue bound says "later", 502 when no bot can send, 504 when the deadline
//! passes first or a request to Telegram went unanswered (it may have been
//! sent).

use serde_json::json;
use shardgate_gateway::SendError;

use crate::body::BodyError;

/// `retry_after` of a refusal that names no wait (a full queue): long
/// enough that a library's automatic retry does not hammer the bound.
pub const QUEUE_FULL_RETRY_AFTER: u64 = 5;

/// A refusal as the Bot API words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status and `error_code`.
    pub code: u16,
    /// `description`, prefixed like Telegram's ("Bad Request: ...").
    pub description: String,
    /// `parameters.retry_after`, seconds.
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn ours(code: u16, detail: impl std::fmt::Display) -> Refusal {
        Refusal {
            code,
            description: format!("{}: {detail}", reason_phrase(code)),
            retry_after: None,
        }
    }

    /// The answer for a send that did not deliver.
    pub fn of(err: &SendError) -> Refusal {
        match err {
            // Telegram's own answer, word for word.
            SendError::Rejected { code, description }
            | SendError::Unreachable { code, description } => Refusal {
                code: *code,
                description: description.clone(),
                retry_after: None,
            },
            SendError::Invalid(_) | SendError::Refused(_) => Refusal::ours(400, err),
            SendError::Unauthenticated(_) => Refusal::ours(401, err),
            SendError::PermissionDenied(_) => Refusal::ours(403, err),
            SendError::OverQuota {
                retry_after_secs, ..
            } => Refusal {
                retry_after: Some((*retry_after_secs).max(1)),
                ..Refusal::ours(429, err)
            },
            SendError::QueueFull(_) => Refusal {
                retry_after: Some(QUEUE_FULL_RETRY_AFTER),
                ..Refusal::ours(429, err)
            },
            SendError::Unavailable(_) | SendError::NotOwner(_) => Refusal::ours(502, err),
            // A request to Telegram went unanswered: it may have arrived.
            SendError::DeadlineExceeded
            | SendError::WouldMissDeadline { .. }
            | SendError::MaybeSent(_) => Refusal::ours(504, err),
        }
    }

    /// The answer for a body that could not be read.
    pub fn of_body(err: &BodyError) -> Refusal {
        match err {
            BodyError::TooLarge => Refusal::ours(413, err),
            _ => Refusal::ours(400, err),
        }
    }

    /// A path that is not `/bot<key>/<method>`.
    pub fn not_found() -> Refusal {
        Refusal {
            code: 404,
            description: "Not Found".into(),
            retry_after: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let mut v = json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        if let Some(secs) = self.retry_after {
            v["parameters"] = json!({ "retry_after": secs });
        }
        v.to_string()
    }
}

/// The JSON body of a success: Telegram's `result` as it answered it
/// (`true` for a method whose answer carried none).
pub fn success(result_json: &str) -> String {
    let result = if result_json.trim().is_empty() {
        "true"
    } else {
        result_json
    };
    format!("{{\"ok\":true,\"result\":{result}}}")
}

/// The words Telegram puts before its descriptions.
fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(r: &Refusal) -> serde_json::Value {
        serde_json::from_str(&r.body()).expect("JSON")
    }

    #[test]
    fn telegrams_refusals_pass_through_with_its_code_and_words() {
        let r = Refusal::of(&SendError::Unreachable {
            code: 403,
            description: "Forbidden: bot was blocked by the user".into(),
        });
        assert_eq!(r.code, 403);
        let v = parsed(&r);
        assert_eq!(v["ok"], false);
        assert_eq!(v["error_code"], 403);
        assert_eq!(v["description"], "Forbidden: bot was blocked by the user");
        assert!(v.get("parameters").is_none());
        let r = Refusal::of(&SendError::Rejected {
            code: 400,
            description: "Bad Request: message text is empty".into(),
        });
        assert_eq!(
            (r.code, r.description.as_str()),
            (400, "Bad Request: message text is empty")
        );
    }

    #[test]
    fn gateway_refusals_take_the_codes_a_library_handles() {
        let cases = [
            (SendError::Invalid("chat_id must be set".into()), 400),
            (
                SendError::Refused("method getUpdates belongs to the bot".into()),
                400,
            ),
            (SendError::Unauthenticated("unknown key".into()), 401),
            (SendError::PermissionDenied("banned until ...".into()), 403),
            (SendError::Unavailable("no healthy bot".into()), 502),
            (SendError::NotOwner("moved".into()), 502),
            (SendError::DeadlineExceeded, 504),
            (SendError::WouldMissDeadline { in_secs: 40 }, 504),
            (SendError::MaybeSent("may have been sent".into()), 504),
        ];
        for (err, code) in cases {
            let r = Refusal::of(&err);
            assert_eq!(r.code, code, "{err:?}");
            assert!(r.description.contains(&err.to_string()), "{r:?}");
            assert_eq!(r.retry_after, None);
        }
        assert!(
            Refusal::of(&SendError::Unauthenticated("x".into()))
                .description
                .starts_with("Unauthorized: ")
        );
    }

    #[test]
    fn a_quota_or_a_full_queue_is_429_with_retry_after() {
        let r = Refusal::of(&SendError::OverQuota {
            message: "caller a is over its quota; retry in 12 s".into(),
            retry_after_secs: 12,
        });
        assert_eq!(r.code, 429);
        assert_eq!(parsed(&r)["parameters"]["retry_after"], 12);
        let r = Refusal::of(&SendError::QueueFull("full".into()));
        assert_eq!(r.code, 429);
        assert_eq!(
            parsed(&r)["parameters"]["retry_after"],
            QUEUE_FULL_RETRY_AFTER
        );
    }

    #[test]
    fn success_carries_telegrams_result_unchanged() {
        let body = success(r#"{"message_id":7,"chat":{"id":42}}"#);
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["ok"], true);
        assert_eq!(v["result"]["message_id"], 7);
        assert_eq!(success(""), r#"{"ok":true,"result":true}"#);
    }
}
