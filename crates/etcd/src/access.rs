//! How this process reaches a secured etcd: TLS (the CA that signed etcd's
//! certificate, and a client certificate when etcd asks for one) and etcd's
//! user/password auth.
//!
//! It exists so that the gateway, `shardgate bot` and `shardgate caller`
//! connect the same way: one value, built once by the binary from its flags,
//! handed to [`connect`](crate::connect) and [`Admin::connect`](crate::Admin::connect).
//! The password is a secret: `Debug` never shows it, and nothing here puts
//! it into an error.

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

/// TLS material and credentials for etcd; the default is plain text and no
/// auth.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EtcdAccess {
    /// PEM CA certificates to verify etcd's server certificate against.
    /// Set: endpoints are `https://` (or bare `host:port`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key (etcd's `--client-cert-auth`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// etcd user and password.
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish()
    }
}

impl EtcdAccess {
    /// Whether TLS is configured.
    pub fn tls(&self) -> bool {
        self.ca_pem.is_some() || self.identity.is_some()
    }

    /// `options` with this access's TLS and credentials.
    pub(crate) fn apply(&self, mut options: ConnectOptions) -> ConnectOptions {
        if self.tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        if let Some((name, password)) = &self.user {
            // etcd's auth tokens expire (simple tokens after 5 minutes):
            // the client gets a new one instead of failing every call.
            options = options
                .with_user(name.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_what_is_set_but_never_the_password() {
        let access = EtcdAccess {
            ca_pem: Some(b"ca".to_vec()),
            identity: None,
            user: Some(("gateway".into(), "s3cr3t-pw".into())),
        };
        let text = format!("{access:?}");
        assert!(
            text.contains("gateway") && text.contains("tls: true"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(access.tls());
        assert!(!EtcdAccess::default().tls());
    }
}
