//! TLS on the gRPC port, with certificates the test makes (rcgen): a client
//! certificate names its caller, a client without one needs a key, a
//! certificate from another CA and plain text are refused, and a SIGHUP
//! puts a new server certificate in place without a restart.

mod common;

use std::path::Path;
use std::time::Duration;

use common::tls::Ca;
use common::{Gateway, send, text_request, wait_for};
use shardgate_proto::v1::gateway_client::GatewayClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

/// A TLS channel that trusts `ca`, presenting `identity` if given.
async fn tls_channel(
    gw: &Gateway,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://localhost:{}", gw.addr.port()))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_names_the_caller_and_a_sighup_swaps_the_server_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let servers = Ca::new("servers");
    let clients = Ca::new("clients");
    let (cert, key) = servers.issue("gateway");
    let cert_path = write(dir.path(), "cert.pem", &cert);
    let key_path = write(dir.path(), "key.pem", &key);
    let ca_path = write(dir.path(), "clients.pem", &clients.pem);
    // `billing` has no key: only its certificate names it. `ops` has a key
    // (so auth is on).
    let callers = write(
        dir.path(),
        "callers.toml",
        &format!(
            "[[caller]]\nname = \"billing\"\nkey_sha256 = []\n\n[[caller]]\nname = \"ops\"\nkey_sha256 = [\"{}\"]\n",
            common::digest_of("sg_ops_key")
        ),
    );
    let config = format!(
        "tls_cert = {cert_path:?}\ntls_key = {key_path:?}\ntls_client_ca = {ca_path:?}\ncallers_file = {callers:?}\n"
    );
    let gw = Gateway::with_config(&config).await;
    let req = || text_request(42, 42, "over TLS", "r");

    let billing = clients.issue("billing");
    let channel = tls_channel(&gw, &servers, Some(&billing))
        .await
        .expect("TLS with a client certificate");
    let mut client = GatewayClient::new(channel);
    send(&mut client, None, req())
        .await
        .expect("the certificate names billing: no key needed");

    let anonymous = tls_channel(&gw, &servers, None)
        .await
        .expect("TLS without a client certificate");
    let mut client = GatewayClient::new(anonymous);
    let refused = send(&mut client, None, req()).await.expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    send(&mut client, Some("sg_ops_key"), req())
        .await
        .expect("a key works over TLS without a certificate");

    // A client certificate from a CA the gateway does not trust: the
    // handshake fails, or the first call does.
    let strangers = Ca::new("strangers");
    let forged = strangers.issue("billing");
    let refused = match tls_channel(&gw, &servers, Some(&forged)).await {
        Err(_) => true,
        Ok(channel) => send(&mut GatewayClient::new(channel), None, req())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA named a caller");

    // Plain text to the TLS port gets nothing.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", gw.addr.port()))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Ok(channel) = plain.connect().await {
        let out = send(&mut GatewayClient::new(channel), Some("sg_ops_key"), req()).await;
        assert!(out.is_err(), "plain text was served on the TLS port");
    }
    assert_eq!(gw.control.stats().totals.requests, 2, "two messages sent");

    // A new server certificate from another CA: clients that trust only
    // that CA connect once the gateway re-read its files on SIGHUP.
    let renewed = Ca::new("servers-2026");
    let (cert, key) = renewed.issue("gateway");
    write(dir.path(), "cert.pem", &cert);
    write(dir.path(), "key.pem", &key);
    assert!(
        tls_channel(&gw, &renewed, None).await.is_err(),
        "the new certificate is served before SIGHUP"
    );
    gw.hup();
    let took = wait_for(Duration::from_secs(10), || async {
        tls_channel(&gw, &renewed, None).await.is_ok()
    })
    .await;
    assert!(
        took.is_some(),
        "the renewed certificate was not served after SIGHUP"
    );
    let logs = gw.logs();
    assert!(logs.contains("TLS certificate and key re-read"), "{logs}");
    assert!(
        !logs.contains("BEGIN PRIVATE KEY"),
        "a key reached the logs"
    );
}
