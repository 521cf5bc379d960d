//! API keys and their digests.
//!
//! A key is `sg_` followed by 48 lowercase hex digits (24 random bytes, 192
//! bits). Only its SHA-256 digest is ever stored (`key_sha256`, 64 hex
//! digits); the key itself is shown once, when it is made, and travels only
//! in a caller's `authorization: Bearer <key>` header (or the HTTP door's
//! path). Neither [`ApiKey`] nor anything here prints a key: `Debug` and
//! `Display` show `sg_***`.
//!
//! Matching is constant-time in the key's content: the digest of the
//! presented key is compared with every stored digest with
//! [`subtle::ConstantTimeEq`], without stopping at the first match, so the
//! time a lookup takes says nothing about which digest (or how much of one)
//! matched.

use std::fmt;

use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What every key starts with (so a leaked key is recognisable, and the
/// log redactor can find one).
pub const KEY_PREFIX: &str = "sg_";
/// Random bytes in a key.
pub const KEY_BYTES: usize = 24;

/// A freshly made key. Printed only by [`ApiKey::expose`], once.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key made from `random` (from the operating system's CSPRNG).
    pub fn from_random(random: [u8; KEY_BYTES]) -> ApiKey {
        ApiKey(format!("{KEY_PREFIX}{}", hex(&random)))
    }

    /// The key itself: for the one line that hands it to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}***")
    }
}

/// The SHA-256 digest of a key: what the callers file and etcd hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDigest([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key_sha256 must be 64 hex digits (the SHA-256 of the key), got {len} characters")]
pub struct KeyDigestError {
    pub len: usize,
}

impl KeyDigest {
    /// The digest of a presented key (any string: what a caller sends).
    pub fn of(key: &str) -> KeyDigest {
        let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        KeyDigest(out)
    }

    /// Parses 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<KeyDigest, KeyDigestError> {
        let t = text.trim();
        let err = KeyDigestError { len: t.len() };
        if t.len() != 64 {
            return Err(err);
        }
        let mut out = [0u8; 32];
        for (i, pair) in t.as_bytes().chunks(2).enumerate() {
            let hi = nibble(pair[0]).ok_or(err.clone())?;
            let lo = nibble(pair[1]).ok_or(err.clone())?;
            out[i] = (hi << 4) | lo;
        }
        Ok(KeyDigest(out))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({})", self.to_hex())
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for KeyDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for KeyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyDigest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Finds which of `digests` the key with digest `presented` matches, in time
/// that depends only on how many digests there are. Returns the index.
pub fn find(presented: &KeyDigest, digests: &[KeyDigest]) -> Option<usize> {
    // u32::MAX = no match; every digest is compared, none short-circuits.
    let mut found = u32::MAX;
    for (i, d) in digests.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        found = u32::conditional_select(&found, &i, presented.0.ct_eq(&d.0));
    }
    (found != u32::MAX).then_some(found as usize)
}

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_digest_is_sha256_hex_as_sha256sum_prints_it() {
        // printf %s abc | sha256sum
        assert_eq!(
            KeyDigest::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_key_never_prints_itself() {
        let k = ApiKey::from_random([7; KEY_BYTES]);
        assert_eq!(k.expose().len(), KEY_PREFIX.len() + 2 * KEY_BYTES);
        assert!(k.expose().starts_with(KEY_PREFIX));
        assert_eq!(format!("{k} {k:?}"), "sg_*** sg_***");
        assert_eq!(k.digest(), KeyDigest::of(k.expose()));
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(KeyDigest::parse(bad).is_err(), "{bad}");
        }
        let upper = KeyDigest::of("x").to_hex().to_uppercase();
        assert_eq!(KeyDigest::parse(&upper), Ok(KeyDigest::of("x")));
    }

    proptest! {
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            let d = KeyDigest(bytes);
            prop_assert_eq!(KeyDigest::parse(&d.to_hex()), Ok(d));
        }

        #[test]
        fn find_returns_exactly_the_matching_index(
            keys in proptest::collection::vec("[a-z]{1,8}", 0..20),
            probe in "[a-z]{1,8}",
        ) {
            let digests: Vec<KeyDigest> = keys.iter().map(|k| KeyDigest::of(k)).collect();
            let expected = keys.iter().rposition(|k| *k == probe);
            // With duplicates the last match wins; callers reject duplicates.
            prop_assert_eq!(find(&KeyDigest::of(&probe), &digests), expected);
        }
    }
}
