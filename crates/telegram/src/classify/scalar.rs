//! One JSON value as a field of a Bot API answer sees it, and the lenient
//! conversions Telegram's answers need (an integer sent as a float or a
//! string, seconds with a fraction).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One JSON value as classification needs it: a boolean, a number, a string
/// (borrowed from the body unless it had escapes), or anything else (null, an
/// array, an object: skipped, kept as `Other`).
#[derive(Debug, Default, PartialEq)]
pub(super) enum Scalar<'a> {
    /// The key was not in the answer.
    #[default]
    Absent,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Other,
}

impl Scalar<'_> {
    pub(super) fn is_number(&self) -> bool {
        matches!(self, Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_))
    }

    /// An integer, also when sent as a float with no fraction or as a string.
    pub(super) fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            // Above i64::MAX: as a float it would be over the bound below.
            Scalar::UInt(u) => i64::try_from(*u).ok(),
            Scalar::Float(f) => (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(*f as i64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A non-negative number of seconds (fractions rounded up), also as a string.
    pub(super) fn as_secs(&self) -> Option<Duration> {
        let secs = match self {
            Scalar::UInt(u) => Some(*u),
            Scalar::Int(i) => u64::try_from(*i).ok(),
            Scalar::Float(f) if f.is_finite() && *f >= 0.0 => {
                Some(f.ceil().min(u64::MAX as f64) as u64)
            }
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }?;
        Some(Duration::from_secs(secs))
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}
