//! A cluster with everything secured: etcd with TLS, client certificates and
//! user/password auth (a `gateway` user that may read `bots/` but not write
//! it, an `operator` user that may), and two `shardgate serve` instances
//! serving gRPC over TLS that forward to each other over mutual TLS.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tls::Ca;
use common::{BOTS, wait_for};
use shardgate_etcd::testing::EtcdServer;
use shardgate_mock::{MockConfig, MockServer};
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_proto::v1::{SendRequest, StatusRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const CLUSTER: &str = "sec";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

/// `shardgate bot --etcd ... ARGS` as `user` (password from a file).
fn bot_as(etcd: &EtcdServer, user: Option<(&str, &str)>, args: &[&str]) -> std::process::Output {
    let s = etcd.secure().expect("secured etcd");
    let endpoint = etcd.endpoint();
    let (ca, cert, key) = (
        s.ca.to_str().expect("utf-8"),
        s.cert.to_str().expect("utf-8"),
        s.key.to_str().expect("utf-8"),
    );
    let mut all = vec![
        "bot",
        "--etcd",
        &endpoint,
        "--cluster",
        CLUSTER,
        "--etcd-ca",
        ca,
        "--etcd-cert",
        cert,
        "--etcd-key",
        key,
    ];
    if let Some((name, password_file)) = user {
        all.extend(["--etcd-user", name, "--etcd-password-file", password_file]);
    }
    all.extend_from_slice(args);
    common::shardgate(&all, None)
}

async fn tls_client(addr: SocketAddr, ca: &Ca) -> Option<GatewayClient<Channel>> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .ok()?
        .tls_config(tls)
        .ok()?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    Some(GatewayClient::new(channel))
}

/// bot -> owner as the instance at `addr` reports it.
async fn owners(addr: SocketAddr, ca: &Ca) -> BTreeMap<String, String> {
    let Some(mut c) = tls_client(addr, ca).await else {
        return BTreeMap::new();
    };
    match c.status(StatusRequest {}).await {
        Ok(s) => s
            .into_inner()
            .bots
            .into_iter()
            .map(|b| (b.name, b.owner))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_a_secured_etcd_serves_over_tls_and_only_operators_write_bots() {
    let mut etcd = EtcdServer::start_secure().await;
    etcd.add_shardgate_users(CLUSTER, "gateway-pw", "operator-pw")
        .await;
    etcd.enable_auth().await;

    let dir = tempfile::tempdir().expect("dir");
    let operator_pw = write(dir.path(), "operator.pw", "operator-pw\n");
    let gateway_pw = write(dir.path(), "gateway.pw", "gateway-pw\n");
    let bots = write(dir.path(), "bots.toml", &common::bots_toml(&BOTS));

    // Without a user etcd refuses; the gateway's user may not write bots/;
    // the operator may.
    let anonymous = bot_as(&etcd, None, &["import", &bots]);
    assert!(
        !anonymous.status.success(),
        "etcd took a write without a user"
    );
    let denied = bot_as(&etcd, Some(("gateway", &gateway_pw)), &["import", &bots]);
    assert!(!denied.status.success(), "the gateway user wrote bots/");
    let stderr = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(
        !stderr.contains("gateway-pw"),
        "the password reached an error"
    );
    let imported = bot_as(&etcd, Some(("operator", &operator_pw)), &["import", &bots]);
    assert!(
        imported.status.success(),
        "import as operator: {}",
        String::from_utf8_lossy(&imported.stderr)
    );

    // Two instances with TLS on gRPC, one CA for servers and clients.
    let ca = Ca::new("cluster CA");
    let (cert, key) = ca.issue("gateway");
    let cert = write(dir.path(), "gw.pem", &cert);
    let key = write(dir.path(), "gw-key.pem", &key);
    let ca_path = write(dir.path(), "ca.pem", &ca.pem);
    let mock = MockServer::start(MockConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("emulator");
    let s = etcd.secure().expect("secured");
    let mut nodes = Vec::new();
    for id in ["gw-1", "gw-2"] {
        let args: Vec<OsString> = [
            "--etcd",
            &etcd.endpoint(),
            "--cluster",
            CLUSTER,
            "--instance-id",
            id,
            "--etcd-ca",
            s.ca.to_str().expect("utf-8"),
            "--etcd-cert",
            s.cert.to_str().expect("utf-8"),
            "--etcd-key",
            s.key.to_str().expect("utf-8"),
            "--etcd-user",
            "gateway",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca_path,
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let env = [("SHARDGATE_ETCD_PASSWORD", "gateway-pw".to_owned())];
        nodes.push(common::spawn_gateway_env(&mock.base_url(), &args, &env));
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|(_, addr, _)| *addr).collect();

    // Both instances drive bots and agree on who owns which.
    let settled = wait_for(Duration::from_secs(30), || async {
        let a = owners(addrs[0], &ca).await;
        let b = owners(addrs[1], &ca).await;
        let owners: Vec<&String> = a.values().collect();
        a.len() == BOTS.len()
            && a == b
            && owners.iter().any(|o| *o == "gw-1")
            && owners.iter().any(|o| *o == "gw-2")
    })
    .await;
    let logs = |i: usize| nodes[i].2.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        settled.is_some(),
        "the cluster did not settle over TLS:\n{}\n{}",
        logs(0),
        logs(1)
    );
    let owned = owners(addrs[0], &ca).await;

    // Every message enters at gw-1; those for gw-2's bots are forwarded to
    // it over mutual TLS.
    let mut client = tls_client(addrs[0], &ca).await.expect("TLS client");
    let mut by_owner: BTreeMap<String, u32> = BTreeMap::new();
    for chat in 1..=30i64 {
        let sent = client
            .send(SendRequest {
                chat_id: 7_000 + chat,
                text: format!("secure {chat}"),
                ..SendRequest::default()
            })
            .await
            .unwrap_or_else(|e| panic!("send {chat}: {e}\n{}", logs(0)))
            .into_inner();
        *by_owner.entry(owned[&sent.bot].clone()).or_default() += 1;
    }
    assert!(
        by_owner.get("gw-2").is_some_and(|n| *n > 0),
        "no message went through gw-2's bots (forwarding over mutual TLS): {by_owner:?}\n{}",
        logs(0)
    );
    assert_eq!(mock.control().stats().totals.requests, 30);
    for i in 0..2 {
        let text = logs(i);
        assert!(
            !text.contains("gateway-pw"),
            "the etcd password reached the logs"
        );
        assert!(
            !text.contains("BEGIN PRIVATE KEY"),
            "a key reached the logs"
        );
    }
    for (mut child, _, _) in nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
}
