//! TLS for the gateway's ports (rustls): the server certificate and key, the
//! optional client CA whose certificates name callers, and their re-reading on
//! SIGHUP without a restart.
//!
//! Why not tonic's own `tls_config`: it fixes the certificate when the server
//! starts, while an operator rotates certificates (cert-manager renews every
//! 60 days) and expects a SIGHUP to pick the new one up. Here every accepted
//! connection takes the [`ServerConfig`] current at that moment; a reload that
//! fails (a half-written file) keeps the old one and says why.
//!
//! Invariant: a client certificate's CN reaches the caller check only after
//! rustls verified the certificate against the client CA, because
//! [`client_cn`] is called on the chain of a finished handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the TLS material is read from (`--tls-cert`, `--tls-key`,
/// `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients may present a certificate
    /// signed by one of them, and its subject CN names the caller.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS material could not be used. Messages name the file, never its
/// contents (a key file's bytes are a secret).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no usable PEM item.
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// rustls refused the combination (key does not match, bad CA, ...).
    #[error("TLS setup: {0}")]
    Config(String),
}

/// The live TLS configuration of one port: cheap to clone, shared by the
/// accept loop and the SIGHUP handler.
#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads the files and builds the configuration. Reads files: call it
    /// before the runtime serves, or from `spawn_blocking`.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let config = build(&files)?;
        Ok(Tls {
            files: Arc::new(files),
            config: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    /// Re-reads the files; on error the running configuration stays. Reads
    /// files: call it from `spawn_blocking`.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        *self.config.write() = Arc::new(config);
        Ok(())
    }

    /// Whether client certificates are asked for.
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the configuration current now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().clone())
    }
}

impl TlsFiles {
    /// TLS for this instance's calls to its peers: their certificates are
    /// checked against the client CA (the cluster's CA), and this
    /// instance's certificate is presented (mutual TLS). Reads files.
    pub fn peer_client_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::File {
                what,
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        };
        let Some(ca) = &self.client_ca else {
            return Err(TlsError::Config(
                "in cluster mode with TLS, give --tls-client-ca: the CA that signed the \
                 instances' certificates, so that peers can verify each other"
                    .into(),
            ));
        };
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("client CA file", ca)?))
            .identity(Identity::from_pem(
                read("certificate file", &self.cert)?,
                read("key file", &self.key)?,
            )))
    }
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs("certificate file", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        what: "key file",
        path: files.key.display().to_string(),
        reason: pem_reason(&e),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("client CA file", path)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    what: "client CA file",
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
            // Unauthenticated clients still connect: they may present a key.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // gRPC needs h2; HTTP/1.1 for the HTTP door and health checkers.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The PEM error without any of the file's bytes.
fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".into(),
        _ => "not valid PEM".into(),
    }
}

/// The subject CN of a verified client certificate (the leaf of the chain).
pub(crate) fn client_cn(chain: &[CertificateDer<'_>]) -> Option<String> {
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca");
        (rcgen::Issuer::new(params, key), cert.pem())
    }

    fn leaf(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_client_certificates_cn_is_read_from_the_leaf() {
        let (issuer, _) = ca();
        let (pem, _) = leaf(&issuer, "billing");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
        assert_eq!(client_cn(&[der]).as_deref(), Some("billing"));
        assert_eq!(client_cn(&[]), None);
        assert_eq!(client_cn(&[CertificateDer::from(vec![1, 2, 3])]), None);
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_config_when_a_file_is_bad() {
        let dir = tempfile::tempdir().expect("dir");
        let (issuer, ca_pem) = ca();
        let (cert, key) = leaf(&issuer, "gateway");
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: Some(dir.path().join("ca.pem")),
        };
        std::fs::write(&files.cert, &cert).expect("write");
        std::fs::write(&files.key, &key).expect("write");
        std::fs::write(files.client_ca.as_ref().expect("ca"), &ca_pem).expect("write");
        let tls = Tls::load(files.clone()).expect("load");
        assert!(tls.verifies_clients());
        let before = Arc::as_ptr(&tls.config.read().clone());

        std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nnot base64\n").expect("write");
        let err = tls.reload().expect_err("bad key");
        assert!(err.to_string().contains("key.pem"), "{err}");
        assert!(!err.to_string().contains("not base64"), "{err}");
        assert_eq!(Arc::as_ptr(&tls.config.read().clone()), before);

        std::fs::write(&files.key, &key).expect("write");
        tls.reload().expect("reload");
        assert_ne!(Arc::as_ptr(&tls.config.read().clone()), before);
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (issuer, _) = ca();
        let (cert, _) = leaf(&issuer, "a");
        let (_, other_key) = leaf(&issuer, "b");
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: None,
        };
        std::fs::write(&files.cert, cert).expect("write");
        std::fs::write(&files.key, other_key).expect("write");
        assert!(matches!(Tls::load(files), Err(TlsError::Config(_))));
    }
}
