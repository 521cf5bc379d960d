//! A plain classification through a `serde_json::Value` tree: the reference
//! the borrowed [`Answer`](super::answer::Answer) reader must agree with, and
//! the property tests that check it does, on answer-shaped JSON and on
//! arbitrary bytes.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::outcome::{Outcome, TransientKind};

/// [`classify`](super::classify), read through a `Value`.
fn classify_via_value(status: u16, body: &[u8]) -> Outcome {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) if is_telegram_shaped(&obj) => obj,
        _ => return super::classify_opaque(status, body),
    };
    let is_2xx = (200..300).contains(&status);
    let ok = obj.get("ok").and_then(Value::as_bool);
    let description = obj
        .get("description")
        .and_then(Value::as_str)
        .map(super::sanitize)
        .unwrap_or_else(|| super::status_text(status));

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
        return super::retry_after(retry_after, description);
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
    super::by_code(code, description)
}

/// A JSON object is a Bot API answer if it has a boolean `ok` or an `error_code`.
fn is_telegram_shaped(obj: &Map<String, Value>) -> bool {
    obj.get("ok").is_some_and(Value::is_boolean)
        || obj.get("error_code").is_some_and(Value::is_number)
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

/// JSON values shaped like Bot API answers, with the fields classification
/// reads given every JSON type.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        (-2_000_000_000_000i64..2_000_000_000_000).prop_map(|i| json!(i)),
        (-1.0e16f64..1.0e16).prop_map(|f| json!(f)),
        (0u32..100).prop_map(|i| json!(f64::from(i) / 2.0)),
        "[ -~]{0,12}".prop_map(Value::String),
        (-5000i64..5000).prop_map(|i| json!(i.to_string())),
        prop_oneof![
            Just("Forbidden: bot was blocked by the user"),
            Just("Bad Request: chat not found"),
            Just("caf\u{e9} \"quoted\" \\ back\nline"),
            Just("bot42:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        let key = prop_oneof![
            Just("ok"),
            Just("result"),
            Just("message_id"),
            Just("chat"),
            Just("id"),
            Just("error_code"),
            Just("description"),
            Just("parameters"),
            Just("retry_after"),
            Just("migrate_to_chat_id"),
            Just("text"),
            Just("date"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The borrowed reading classifies every answer as the `Value` one did.
    #[test]
    fn agrees_with_the_value_reading(
        status in prop_oneof![Just(200u16), Just(400), Just(401), Just(403), Just(404), Just(429), Just(502), 100u16..600],
        ok in prop_oneof![Just(None), any::<bool>().prop_map(|b| Some(json!(b))), any_value().prop_map(Some)],
        code in prop_oneof![Just(None), (0i64..700).prop_map(|c| Some(json!(c))), any_value().prop_map(Some)],
        rest in any_value(),
    ) {
        let mut obj = match rest {
            Value::Object(o) => o,
            other => {
                let mut o = serde_json::Map::new();
                o.insert("result".into(), other);
                o
            }
        };
        if let Some(ok) = ok {
            obj.insert("ok".into(), ok);
        }
        if let Some(code) = code {
            obj.insert("error_code".into(), code);
        }
        let body = Value::Object(obj).to_string();
        prop_assert_eq!(
            super::classify(status, body.as_bytes()),
            classify_via_value(status, body.as_bytes()),
            "{}", body
        );
    }

    /// Also for bytes that are mostly not JSON.
    #[test]
    fn agrees_on_any_bytes(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(super::classify(status, &body), classify_via_value(status, &body));
    }
}
