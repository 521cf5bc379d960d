//! The callers in force, and who a request comes from.
//!
//! A request presents an API key (`authorization: Bearer <key>`), or a TLS
//! client certificate whose subject CN names a caller, or nothing. The
//! instances of a cluster present the cluster key when they forward to each
//! other. [`Directory::identify`] turns that into an [`Identity`] or says why
//! not; keys are matched by digest in constant time (see `key.rs`), the
//! cluster key among them, so a lookup's time reveals nothing about which
//! digest matched.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::key::{self, KeyDigest};
use crate::model::{CallerSpec, Snapshot};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A configured caller.
    Caller(Arc<CallerSpec>),
    /// Another instance of the cluster (it presented the cluster key).
    Peer,
    /// Auth is off and the request named no known caller.
    Anonymous,
}

/// Why a request was not identified (`UNAUTHENTICATED`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key: send `authorization: Bearer <key>`")]
    MissingKey,
    #[error("unknown API key")]
    UnknownKey,
    #[error("the client certificate names no caller")]
    UnknownCertificate,
}

/// What a request presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The bearer key, if any.
    pub key: Option<&'a str>,
    /// The subject CN of a verified client certificate, if any.
    pub cert_name: Option<&'a str>,
}

/// The callers by key digest and by name.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    callers: Vec<Arc<CallerSpec>>,
    by_name: BTreeMap<String, usize>,
    /// Every key digest; `owner[i]` is the index of its caller, `None` for
    /// the cluster key.
    digests: Vec<KeyDigest>,
    owner: Vec<Option<usize>>,
}

impl Directory {
    /// The directory of `snapshot`'s callers, plus the cluster key's digest
    /// (if the cluster has one). A digest listed by two callers belongs to
    /// the first (the stores refuse such input; this stays deterministic).
    pub fn new(snapshot: &Snapshot, cluster_key: Option<KeyDigest>) -> Directory {
        let mut d = Directory::default();
        for (i, spec) in snapshot.callers.values().enumerate() {
            d.callers.push(Arc::new(spec.clone()));
            d.by_name.insert(spec.name.clone(), i);
            for k in &spec.key_sha256 {
                if !d.digests.contains(k) {
                    d.digests.push(*k);
                    d.owner.push(Some(i));
                }
            }
        }
        if let Some(k) = cluster_key
            && !d.digests.contains(&k)
        {
            d.digests.push(k);
            d.owner.push(None);
        }
        d
    }

    /// How many callers there are.
    pub fn len(&self) -> usize {
        self.callers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CallerSpec>> {
        self.by_name.get(name).map(|i| &self.callers[*i])
    }

    pub fn callers(&self) -> impl Iterator<Item = &Arc<CallerSpec>> {
        self.callers.iter()
    }

    /// Who presented `creds`. With `enforced` false, a request that names
    /// no known caller is [`Identity::Anonymous`] instead of an error.
    ///
    /// A key wins over a certificate: a request that sends a key is judged
    /// by it. The cluster key is recognised whatever `enforced` says.
    pub fn identify(&self, creds: Credentials<'_>, enforced: bool) -> Result<Identity, AuthError> {
        if let Some(k) = creds.key {
            let presented = KeyDigest::of(k);
            return match key::find(&presented, &self.digests).map(|i| self.owner[i]) {
                Some(Some(c)) => Ok(Identity::Caller(self.callers[c].clone())),
                Some(None) => Ok(Identity::Peer),
                None if enforced => Err(AuthError::UnknownKey),
                None => Ok(Identity::Anonymous),
            };
        }
        if let Some(name) = creds.cert_name {
            return match self.get(name) {
                Some(c) => Ok(Identity::Caller(c.clone())),
                None if enforced => Err(AuthError::UnknownCertificate),
                None => Ok(Identity::Anonymous),
            };
        }
        if enforced {
            Err(AuthError::MissingKey)
        } else {
            Ok(Identity::Anonymous)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (name, keys) in [("billing", &["k1", "k2"][..]), ("ops", &["k3"][..])] {
            let mut c = CallerSpec::new(name);
            c.key_sha256 = keys.iter().map(|k| KeyDigest::of(k)).collect();
            s.callers.insert(name.into(), c);
        }
        s
    }

    fn name(id: &Identity) -> &str {
        match id {
            Identity::Caller(c) => &c.name,
            Identity::Peer => "<peer>",
            Identity::Anonymous => "<anonymous>",
        }
    }

    #[test]
    fn keys_certificates_and_the_cluster_key_name_who_calls() {
        let d = Directory::new(&snapshot(), Some(KeyDigest::of("cluster")));
        let key = |k| Credentials {
            key: Some(k),
            cert_name: None,
        };
        for (k, who) in [
            ("k1", "billing"),
            ("k2", "billing"),
            ("k3", "ops"),
            ("cluster", "<peer>"),
        ] {
            assert_eq!(name(&d.identify(key(k), true).expect("known")), who);
        }
        assert_eq!(d.identify(key("nope"), true), Err(AuthError::UnknownKey));
        assert_eq!(d.identify(key("nope"), false), Ok(Identity::Anonymous));
        let cert = Credentials {
            key: None,
            cert_name: Some("ops"),
        };
        assert_eq!(name(&d.identify(cert, true).expect("known")), "ops");
        let stranger = Credentials {
            key: None,
            cert_name: Some("mallory"),
        };
        assert_eq!(
            d.identify(stranger, true),
            Err(AuthError::UnknownCertificate)
        );
        assert_eq!(
            d.identify(Credentials::default(), true),
            Err(AuthError::MissingKey)
        );
        assert_eq!(
            d.identify(Credentials::default(), false),
            Ok(Identity::Anonymous)
        );
        // A wrong key with a good certificate is refused: the key is judged.
        let both = Credentials {
            key: Some("nope"),
            cert_name: Some("ops"),
        };
        assert_eq!(d.identify(both, true), Err(AuthError::UnknownKey));
    }

    #[test]
    fn the_cluster_key_is_a_peer_even_with_auth_off() {
        let d = Directory::new(&Snapshot::default(), Some(KeyDigest::of("cluster")));
        let creds = Credentials {
            key: Some("cluster"),
            cert_name: None,
        };
        assert_eq!(d.identify(creds, false), Ok(Identity::Peer));
        assert!(d.is_empty());
    }
}
