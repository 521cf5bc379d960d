//! The drill's local cluster: etcd, the Bot API emulator (in this process,
//! with the official limits) and N `shardgate serve` processes, all on
//! loopback. Everything started here stops when the [`LocalCluster`] is
//! dropped, which also happens on Ctrl-C and on a failed drill.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use shardgate_etcd::testing::{EtcdServer, Proxy};
use shardgate_mock::{Control, MockConfig, MockServer, test_token};
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_proto::v1::{StatusRequest, StatusResponse};
use tonic::transport::Channel;

/// The etcd namespace of every drill.
pub const CLUSTER: &str = "chaos";

/// The emulator's numeric id of `bot-N` (index N-1).
pub fn bot_id(index: usize) -> u64 {
    7_000_001 + index as u64
}

/// The id a rotated token of `bot-N` belongs to (the emulator derives tokens
/// from ids, so a new token is a new id).
pub fn rotated_bot_id(index: usize) -> u64 {
    8_000_001 + index as u64
}

pub fn bot_name(index: usize) -> String {
    format!("bot-{}", index + 1)
}

/// One gateway process.
pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    pub channel: Channel,
}

impl Node {
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }
}

pub struct LocalCluster {
    pub etcd: EtcdServer,
    pub mock: MockServer,
    pub control: Control,
    pub nodes: Vec<Node>,
    pub bots: usize,
    shardgate: PathBuf,
    /// `--etcd-*` flags for `serve` (as the gateway user) and for `bot` (as
    /// the operator) when etcd is secured; empty otherwise.
    gateway_etcd_flags: Vec<String>,
    operator_etcd_flags: Vec<String>,
    /// By instance number: the TCP proxy through which that instance
    /// reaches etcd (instances a drill partitions).
    proxies: BTreeMap<usize, Proxy>,
    _dir: tempfile::TempDir,
}

/// Secures `etcd` (users `gateway` and `operator` with their roles, auth on)
/// and writes their password files into `dir`: the `--etcd-*` flags of each.
async fn secure(etcd: &mut EtcdServer, dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    etcd.add_shardgate_users(CLUSTER, "gateway-drill-pw", "operator-drill-pw")
        .await;
    etcd.enable_auth().await;
    let s = etcd.secure().context("a secured etcd")?;
    let tls = vec![
        "--etcd-ca".to_owned(),
        s.ca.to_string_lossy().into_owned(),
        "--etcd-cert".to_owned(),
        s.cert.to_string_lossy().into_owned(),
        "--etcd-key".to_owned(),
        s.key.to_string_lossy().into_owned(),
    ];
    let flags = |user: &str, password: &str| -> Result<Vec<String>> {
        let file = dir.join(format!("{user}.pw"));
        std::fs::write(&file, password).context("writing a password file")?;
        let mut f = tls.clone();
        f.extend([
            "--etcd-user".to_owned(),
            user.to_owned(),
            "--etcd-password-file".to_owned(),
            file.to_string_lossy().into_owned(),
        ]);
        Ok(f)
    };
    Ok((
        flags("gateway", "gateway-drill-pw")?,
        flags("operator", "operator-drill-pw")?,
    ))
}

impl LocalCluster {
    /// Starts etcd, the emulator, imports the fleet and starts `instances`
    /// gateways; returns once every instance sees every bot owned.
    pub async fn start(
        shardgate: &Path,
        instances: usize,
        bots: usize,
        gateway_config: &str,
        secure_etcd: bool,
        partitioned: &[usize],
        logs: &Path,
    ) -> Result<LocalCluster> {
        let mut etcd = if secure_etcd {
            EtcdServer::start_secure().await
        } else {
            EtcdServer::try_start().await.map_err(|e| anyhow!(e))?
        };
        let mock = MockServer::start(MockConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("starting the Bot API emulator")?;
        let dir = tempfile::tempdir().context("temp dir")?;
        let (gateway_etcd_flags, operator_etcd_flags) = if secure_etcd {
            secure(&mut etcd, dir.path()).await?
        } else {
            (Vec::new(), Vec::new())
        };
        let bots_file = dir.path().join("bots.toml");
        let fleet: String = (0..bots)
            .map(|i| {
                format!(
                    "[[bot]]\nname = \"{}\"\ntoken = \"{}\"\n",
                    bot_name(i),
                    test_token(bot_id(i))
                )
            })
            .collect();
        std::fs::write(&bots_file, fleet).context("writing the bots file")?;
        let config = dir.path().join("shardgate.toml");
        std::fs::write(&config, gateway_config).context("writing the gateway config")?;
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let mut cluster = LocalCluster {
            control: mock.control(),
            mock,
            etcd,
            nodes: Vec::new(),
            bots,
            shardgate: shardgate.to_owned(),
            gateway_etcd_flags,
            operator_etcd_flags,
            proxies: BTreeMap::new(),
            _dir: dir,
        };
        for n in partitioned {
            let proxy = Proxy::start(cluster.etcd.client_addr()).await;
            cluster.proxies.insert(*n, proxy);
        }
        cluster
            .admin(&["import", &bots_file.to_string_lossy()], None)
            .await?;
        for i in 1..=instances {
            let node = cluster.spawn(i, &config, logs).await?;
            cluster.nodes.push(node);
        }
        let settled = tokio::time::timeout(Duration::from_secs(30), async {
            while !cluster.settled().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if settled.is_err() {
            bail!("the cluster did not settle within 30 s (see the gateway logs)");
        }
        Ok(cluster)
    }

    /// Runs `shardgate bot ARGS` against this cluster's etcd, with `stdin`.
    pub async fn admin(&self, args: &[&str], stdin: Option<String>) -> Result<()> {
        let mut cmd = Command::new(&self.shardgate);
        cmd.args(["bot", "--etcd", &self.etcd.endpoint(), "--cluster", CLUSTER])
            .args(&self.operator_etcd_flags)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("shardgate bot {}", args.first().copied().unwrap_or(""));
        let out = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut child = cmd.spawn()?;
            if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
                pipe.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await
        .context("joining the admin command")?
        .with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The etcd endpoint instance `n` uses: its proxy's, if it has one.
    fn etcd_endpoint_of(&self, n: usize) -> String {
        match self.proxies.get(&n) {
            Some(proxy) => {
                let scheme = if self.etcd.secure().is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", proxy.addr())
            }
            None => self.etcd.endpoint(),
        }
    }

    /// Cuts instance `n` off from etcd (`heal` false) or ends that.
    pub fn partition(&self, n: usize, cut: bool) -> Result<()> {
        let proxy = self
            .proxies
            .get(&n)
            .with_context(|| format!("gw-{n} has no etcd proxy"))?;
        if cut {
            proxy.cut();
        } else {
            proxy.heal();
        }
        Ok(())
    }

    async fn spawn(&self, n: usize, config: &Path, logs: &Path) -> Result<Node> {
        let id = &format!("gw-{n}");
        let log_path = logs.join(format!("{id}.log"));
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = Command::new(&self.shardgate)
            .args(["serve", "--listen", "127.0.0.1:0", "--telegram-api-base"])
            .arg(self.mock.base_url())
            .args(["--etcd", &self.etcd_endpoint_of(n), "--cluster", CLUSTER])
            .args(["--instance-id", id])
            .args(&self.gateway_etcd_flags)
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().context("log file")?)
            .spawn()
            .with_context(|| format!("starting {}", self.shardgate.display()))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "stdout: {line}");
                if let Some(addr) = line.strip_prefix("shardgate listening grpc=")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut node = Node {
            id: id.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            channel: Channel::from_static("http://127.0.0.1:1").connect_lazy(),
        };
        let addr = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                node.kill();
                bail!(
                    "{id} did not report its address within 30 s; see {}",
                    log_path.display()
                );
            }
        };
        node.addr = addr
            .parse()
            .with_context(|| format!("{id} printed a bad address {addr:?}"))?;
        node.channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
            .context("endpoint")?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        Ok(node)
    }

    /// `Status` of node `i`, or None when it does not answer within 1 s.
    pub async fn status(&self, i: usize) -> Option<StatusResponse> {
        if !self.nodes[i].alive() {
            return None;
        }
        status_of(self.nodes[i].channel.clone()).await
    }

    /// (id, alive, channel) of every node, to poll without holding the cluster.
    pub fn handles(&self) -> Vec<(String, bool, Channel)> {
        self.nodes
            .iter()
            .map(|n| (n.id.clone(), n.alive(), n.channel.clone()))
            .collect()
    }

    pub fn live_ids(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .map(|n| n.id.clone())
            .collect()
    }

    /// Every live node sees every bot owned by a live node.
    async fn settled(&self) -> bool {
        let live = self.live_ids();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive() {
                continue;
            }
            let Some(s) = self.status(i).await else {
                return false;
            };
            let owners: BTreeMap<_, _> = s.bots.iter().map(|b| (&b.name, &b.owner)).collect();
            if owners.len() != self.bots || !owners.values().all(|o| live.contains(o)) {
                return false;
            }
        }
        true
    }

    /// SIGKILL node `i` (instances count from 1 in scenarios: pass index).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// The index of the live node that owns `bot`, as the first live node
    /// that answers sees it.
    pub async fn owner_of(&self, bot: &str) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if let Some(s) = self.status(i).await {
                let owner = s.bots.into_iter().find(|b| b.name == bot)?.owner;
                return self.nodes.iter().position(|n| n.alive() && n.id == owner);
            }
        }
        None
    }
}

/// `Status` through `channel`, or None when it does not answer within 1 s.
pub async fn status_of(channel: Channel) -> Option<StatusResponse> {
    let mut c = GatewayClient::new(channel);
    tokio::time::timeout(Duration::from_secs(1), c.status(StatusRequest {}))
        .await
        .ok()?
        .ok()
        .map(|r| r.into_inner())
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        self.etcd.stop();
    }
}
