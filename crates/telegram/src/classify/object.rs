//! Reading a JSON object into a struct field by field without a
//! `serde_json::Value` tree: keys matched without allocating, unknown keys
//! skipped unread, and any value that is not an object read as "nothing in it".
//! The [`object!`](object) macro writes the `Deserialize` impl of one such struct.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// An object key, matched without allocating (escaped keys are compared after
/// unescaping, as `serde_json::Value` would store them).
struct Key(u8);

impl Key {
    const OTHER: u8 = 0;
}

/// Deserializes one object key as the index of `names` it equals (1-based), or
/// [`Key::OTHER`].
struct KeySeed(&'static [&'static str]);

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        struct V(&'static [&'static str]);
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                let i = self
                    .0
                    .iter()
                    .position(|n| *n == v)
                    .map_or(Key::OTHER, |i| u8::try_from(i + 1).unwrap_or(Key::OTHER));
                Ok(Key(i))
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// Reads an object's entries: `on` gets the key's index (see [`KeySeed`]) and
/// the map positioned at its value, and must consume that value.
pub(super) fn read_object<'de, A, F>(
    mut map: A,
    names: &'static [&'static str],
    mut on: F,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(u8, &mut A) -> Result<(), A::Error>,
{
    while let Some(Key(k)) = map.next_key_seed(KeySeed(names))? {
        if k == Key::OTHER {
            map.next_value::<IgnoredAny>()?;
        } else {
            on(k, &mut map)?;
        }
    }
    Ok(())
}

/// Implements `Deserialize` for a struct read from a JSON object; any other
/// JSON value reads as the default (all fields absent), as `Value::get` on a
/// non-object would, except at the top level (`$top`), where the answer itself
/// must be an object. `$n => $body` reads key `$n`: `$body` takes its value
/// from the map `$m` into the struct `$out`.
macro_rules! object {
    ($ty:ident, $top:expr, |$m:ident, $out:ident| [$($n:literal => $body:expr),+ $(,)?]) => {
        impl<'de> ::serde::Deserialize<'de> for $ty<'de> {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $ty<'de>;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($ty), ")"))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<Self::Value, A::Error> {
                        const NAMES: &[&str] = &[$($n),+];
                        let mut out = $ty::default();
                        $crate::classify::object::read_object(map, NAMES, |k, $m| {
                            let $out = &mut out;
                            match NAMES[usize::from(k) - 1] {
                                $($n => $body,)+
                                _ => {}
                            }
                            Ok(())
                        })?;
                        Ok(out)
                    }
                }
                if $top {
                    d.deserialize_map(V)
                } else {
                    // Not an object (`"result": true`, null, a number): nothing in it.
                    match $crate::classify::object::object_or_skip(d, V)? {
                        Some(v) => Ok(v),
                        None => Ok($ty::default()),
                    }
                }
            }
        }
    };
}
pub(super) use object;

/// Runs `object` on a JSON object; any other value is skipped (`None`).
pub(super) fn object_or_skip<'de, D, V>(d: D, object: V) -> Result<Option<V::Value>, D::Error>
where
    D: Deserializer<'de>,
    V: Visitor<'de>,
{
    struct Either<V>(V);
    impl<'de, V: Visitor<'de>> Visitor<'de> for Either<V> {
        type Value = Option<V::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            self.0.visit_map(map).map(Some)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Either(object))
}
