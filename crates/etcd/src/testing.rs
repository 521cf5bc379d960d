//! Test harness (feature `testing`): a real etcd on free loopback ports in a
//! temporary directory, plus readers of the ownership history kept by etcd.
//!
//! [`EtcdServer::start`] finds the `etcd` binary (PATH, then /usr/bin,
//! /usr/local/bin) and panics with the install command when there is none:
//! tests that need etcd fail loudly instead of skipping. `stop` and
//! `restart` (same data directory and ports) drive outage tests; the
//! process is killed when the server is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

use etcd_client::{Client, EventType, WatchOptions};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::keys::Keys;
use crate::ownership::{OwnershipChange, OwnershipEvent};

/// What to run when etcd is missing.
pub const INSTALL_HINT: &str = "etcd is not installed: install it with \
`apt-get update && apt-get install -y etcd-server` (Debian/Ubuntu; tests/run does this), \
or put an `etcd` binary on PATH";

/// The etcd binary: `etcd` on PATH, else /usr/bin/etcd or /usr/local/bin/etcd.
pub fn find_etcd() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"));
    let fixed = ["/usr/bin/etcd", "/usr/local/bin/etcd"].map(PathBuf::from);
    on_path.chain(fixed).find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One etcd member on loopback.
pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// TLS files and credentials, for a server from [`EtcdServer::start_secure`].
    secure: Option<Secure>,
}

/// A secured test etcd: TLS with client certificates required, and, once
/// [`EtcdServer::enable_auth`] ran, user/password auth with a root user.
pub struct Secure {
    /// The CA that signed etcd's certificate and the client certificate.
    pub ca: PathBuf,
    /// A client certificate (CN `shardgate-test-client`, not a user: its
    /// CN alone grants nothing once auth is on) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// The root user's password once auth is on.
    root_password: Option<String>,
}

/// A key range's permission for a test user (see [`EtcdServer::add_user`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Read,
    ReadWrite,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers; panics (with the install
    /// command if etcd is missing) when it cannot.
    pub async fn start() -> EtcdServer {
        match Self::try_start().await {
            Ok(server) => server,
            Err(e) => panic!("cannot start etcd for this test: {e}"),
        }
    }

    pub async fn try_start() -> Result<EtcdServer, String> {
        let binary = find_etcd().ok_or_else(|| INSTALL_HINT.to_owned())?;
        let mut last = String::new();
        // Free ports can be taken between the probe and etcd's bind: retry.
        for _ in 0..3 {
            let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
            let ports = (free_port(), free_port());
            let (Ok(client_port), Ok(peer_port)) = ports else {
                return Err("no free loopback port".into());
            };
            let mut server = EtcdServer {
                binary: binary.clone(),
                dir,
                client_port,
                peer_port,
                child: None,
                secure: None,
            };
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` when
    /// secured).
    pub fn endpoint(&self) -> String {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd with TLS on its client port and client certificates
    /// required (`--client-cert-auth`), with certificates made here.
    /// [`add_user`](Self::add_user) and [`enable_auth`](Self::enable_auth)
    /// turn on user/password auth.
    pub async fn start_secure() -> EtcdServer {
        let mut server = EtcdServer::start().await;
        server.stop();
        let secure = match make_certificates(server.dir.path()) {
            Ok(s) => s,
            Err(e) => panic!("cannot make test certificates: {e}"),
        };
        server.secure = Some(secure);
        server.restart().await;
        server
    }

    /// The TLS files of a secured server.
    pub fn secure(&self) -> Option<&Secure> {
        self.secure.as_ref()
    }

    /// TLS (and, once auth is on, root's credentials) for this server.
    pub fn access(&self) -> crate::EtcdAccess {
        let Some(s) = &self.secure else {
            return crate::EtcdAccess::default();
        };
        let read =
            |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        crate::EtcdAccess {
            ca_pem: Some(read(&s.ca)),
            identity: Some((read(&s.cert), read(&s.key))),
            user: s.root_password.clone().map(|pw| ("root".to_owned(), pw)),
        }
    }

    /// Adds a user with a role of the same name holding `grants` (key
    /// prefixes). Before [`enable_auth`](Self::enable_auth).
    pub async fn add_user(&self, name: &str, password: &str, grants: &[(Grant, &str)]) {
        use etcd_client::{Permission, PermissionType};
        let mut c = self.client().await;
        let fail = |what: &str, e: etcd_client::Error| -> ! { panic!("{what} {name}: {e}") };
        c.role_add(name)
            .await
            .unwrap_or_else(|e| fail("role add", e));
        for (grant, prefix) in grants {
            let kind = match grant {
                Grant::Read => PermissionType::Read,
                Grant::ReadWrite => PermissionType::Readwrite,
            };
            let perm = Permission::new(kind, prefix.as_bytes()).with_prefix();
            c.role_grant_permission(name, perm)
                .await
                .unwrap_or_else(|e| fail("grant", e));
        }
        c.user_add(name, password, None)
            .await
            .unwrap_or_else(|e| fail("user add", e));
        c.user_grant_role(name, name)
            .await
            .unwrap_or_else(|e| fail("grant role", e));
    }

    /// The two users docs/etcd.md describes for `cluster`: `gateway` reads
    /// the whole prefix and writes only what an instance writes at run time
    /// (members, owners, health, bans, quota, settings); `operator` writes
    /// it all. Before [`enable_auth`](Self::enable_auth).
    pub async fn add_shardgate_users(&self, cluster: &str, gateway_pw: &str, operator_pw: &str) {
        let prefix = format!("/shardgate/{cluster}/");
        self.add_user("operator", operator_pw, &[(Grant::ReadWrite, &prefix)])
            .await;
        let writable = [
            "members/",
            "owners/",
            "health/",
            "bans/",
            "quota/",
            "settings/",
        ]
        .map(|p| format!("{prefix}{p}"));
        let mut grants = vec![(Grant::Read, prefix.as_str())];
        grants.extend(writable.iter().map(|p| (Grant::ReadWrite, p.as_str())));
        self.add_user("gateway", gateway_pw, &grants).await;
    }

    /// Creates the root user and turns etcd's auth on: from now on every
    /// request needs a user's credentials.
    pub async fn enable_auth(&mut self) {
        let password = "root-test-password".to_owned();
        let mut c = self.client().await;
        c.role_add("root").await.expect("role add root");
        c.user_add("root", password.as_str(), None)
            .await
            .expect("user add root");
        c.user_grant_role("root", "root").await.expect("grant root");
        c.auth_enable().await.expect("auth enable");
        if let Some(s) = self.secure.as_mut() {
            s.root_password = Some(password);
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// The client address, for a [`Proxy`].
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client of this server (with TLS and root's credentials when
    /// secured).
    pub async fn client(&self) -> Client {
        let options = self.access().apply(etcd_client::ConnectOptions::new());
        Client::connect([self.endpoint()], Some(options))
            .await
            .unwrap_or_else(|e| panic!("connect to test etcd: {e}"))
    }

    /// Kills etcd (SIGKILL): clients see it vanish. Data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub async fn restart(&mut self) {
        if let Err(e) = self.try_restart().await {
            panic!("cannot restart etcd: {e}");
        }
    }

    /// [`restart`](Self::restart), reporting a failure instead of panicking.
    pub async fn try_restart(&mut self) -> Result<(), String> {
        self.stop();
        let mut last = String::new();
        // The old ports may linger for a moment.
        for _ in 0..5 {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last)
    }

    /// The last lines of etcd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn launch(&mut self) -> Result<(), String> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("etcd log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("etcd log file: {e}"))?;
        let child = Command::new(&self.binary)
            .args(["--name", "n1", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("n1={peer}")])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(self.secure.as_ref().map_or_else(Vec::new, |s| {
                vec![
                    "--cert-file".into(),
                    s.server_cert.clone().into_os_string(),
                    "--key-file".into(),
                    s.server_key.clone().into_os_string(),
                    "--trusted-ca-file".into(),
                    s.ca.clone().into_os_string(),
                    "--client-cert-auth".into(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "etcd exited with {status}; log:\n{}",
                    self.log_tail()
                ));
            }
            if self.answers().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "etcd did not answer within 30 s; log:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answers(&self) -> bool {
        let attempt = async {
            let options = self.access().apply(etcd_client::ConnectOptions::new());
            let mut c = Client::connect([self.endpoint()], Some(options))
                .await
                .ok()?;
            c.get("/shardgate-probe", None).await.ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(_))
        )
    }
}

/// A CA, etcd's server certificate (127.0.0.1, localhost) and a client
/// certificate, written into `dir`.
fn make_certificates(dir: &Path) -> Result<Secure, rcgen::Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shardgate test etcd CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |cn: &str| -> Result<(String, String), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key_pem) = leaf("etcd")?;
    let (client_pem, client_key_pem) = leaf("shardgate-test-client")?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        path
    };
    Ok(Secure {
        ca: write("ca.pem", &ca_cert.pem()),
        cert: write("client.pem", &client_pem),
        key: write("client-key.pem", &client_key_pem),
        server_cert: write("server.pem", &server_pem),
        server_key: write("server-key.pem", &server_key_pem),
        root_password: None,
    })
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of etcd that can black-hole its traffic, to cut one
/// client off while others still reach etcd (a network partition).
pub struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: AbortHandle,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"));
        let (cut, _) = watch::channel(false);
        let cut_rx = cut.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, target, cut_rx.clone()));
            }
        })
        .abort_handle();
        Proxy { addr, cut, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Black hole: connections stay open but nothing goes through, like a
    /// partition (requests time out, nothing is refused).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Ends the partition: held connections are closed, new ones forward.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    mut inbound: tokio::net::TcpStream,
    target: SocketAddr,
    mut cut: watch::Receiver<bool>,
) {
    if *cut.borrow() {
        let _ = cut.wait_for(|c| !*c).await;
        return;
    }
    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if was_cut {
        // Hold both ends silently until healed.
        let _ = cut.wait_for(|c| !*c).await;
    }
}

/// One change of an `owners/<bot>` key in etcd's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChange {
    pub bot: String,
    /// The new owner; `None` for a delete (release or lease expiry).
    pub owner: Option<String>,
    pub revision: i64,
    /// The key's version after a put (1 = created).
    pub version: i64,
}

/// Every change of `owners/` in `cluster` from revision 1 up to now, read
/// from etcd's history with a watch (fails if history was compacted).
///
/// Puts a marker key (`/shardgate-test-marker`) and reads every event up to
/// it: progress notifications cannot say "caught up" on etcd 3.4.23.
pub async fn owner_changes(client: &Client, cluster: &str) -> Result<Vec<OwnerChange>, String> {
    let keys = Keys::new(cluster).map_err(|e| e.to_string())?;
    let prefix = keys.owners_prefix();
    let marker = client
        .kv_client()
        .put("/shardgate-test-marker", "", None)
        .await
        .map_err(|e| e.to_string())?
        .header()
        .map_or(0, |h| h.revision());
    let mut stream = client
        .watch_client()
        .watch(
            "/",
            Some(WatchOptions::new().with_from_key().with_start_revision(1)),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < marker {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .map_err(|_| "owner history watch went silent".to_owned())?
            .map_err(|e| e.to_string())?
            .ok_or("owner history watch ended")?;
        if msg.canceled() {
            return Err(format!(
                "owner history watch cancelled (compacted at {})",
                msg.compact_revision()
            ));
        }
        for ev in msg.events() {
            let Some(kv) = ev.kv() else { continue };
            seen = seen.max(kv.mod_revision());
            let key = String::from_utf8_lossy(kv.key());
            let Some(bot) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let owner = match ev.event_type() {
                EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                EventType::Delete => None,
            };
            out.push(OwnerChange {
                bot: bot.to_owned(),
                owner,
                revision: kv.mod_revision(),
                version: kv.version(),
            });
        }
    }
    Ok(out)
}

/// Checks etcd's owner history: an owner key is only ever created (on an
/// absent key) and deleted, never handed from one owner to another by an
/// overwrite, so at any revision a bot has at most one owner.
pub fn check_owner_history(changes: &[OwnerChange]) -> Result<(), String> {
    let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
    for c in changes {
        match &c.owner {
            Some(owner) => {
                if c.version != 1 {
                    return Err(format!("{c:?}: owner key overwritten instead of created"));
                }
                if let Some(prev) = holder.insert(&c.bot, owner) {
                    return Err(format!("{c:?}: {prev} still held the bot"));
                }
            }
            None => {
                holder.remove(c.bot.as_str());
            }
        }
    }
    Ok(())
}

/// Checks the local histories of several registries (same process, so
/// their instants compare): no bot is ever driven by two at once.
pub fn check_local_exclusive(histories: &[Vec<OwnershipEvent>]) -> Result<(), String> {
    let mut all: Vec<&OwnershipEvent> = histories.iter().flatten().collect();
    all.sort_by_key(|e| e.at);
    let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
    for e in all {
        match e.change {
            OwnershipChange::Claimed => {
                if let Some(prev) = holder.insert(&e.bot, &e.instance)
                    && prev != e.instance
                {
                    return Err(format!(
                        "{} claimed {} while {prev} still held it ({e:?})",
                        e.instance, e.bot
                    ));
                }
            }
            _ => {
                if holder.get(e.bot.as_str()) == Some(&e.instance.as_str()) {
                    holder.remove(e.bot.as_str());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(bot: &str, owner: &str, revision: i64, version: i64) -> OwnerChange {
        OwnerChange {
            bot: bot.into(),
            owner: Some(owner.into()),
            revision,
            version,
        }
    }

    #[test]
    fn owner_history_check_catches_overwrites() {
        let del = |revision| OwnerChange {
            bot: "a".into(),
            owner: None,
            revision,
            version: 0,
        };
        assert!(check_owner_history(&[put("a", "i1", 2, 1), del(3), put("a", "i2", 4, 1)]).is_ok());
        assert!(check_owner_history(&[put("a", "i1", 2, 1), put("a", "i2", 3, 2)]).is_err());
    }
}
