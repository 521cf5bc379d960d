//! Test harness: the Bot API emulator in-process on a free loopback port, and
//! the real `shardgate` binary as a child process pointed at it, with its
//! logs (at RUST_LOG=debug) captured so tests can check that no token leaks.
//! Also what every integration test does with a gateway: connect, stream a
//! batch of sends, check that none failed, signal the process, run the
//! `shardgate` command line, wait for a condition.

#![allow(dead_code)]

pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardgate_mock::{Control, MockConfig, MockServer, test_token};
use shardgate_proto::v1::gateway_client::GatewayClient;
use shardgate_proto::v1::{SendRequest, SendResponse, StatusResponse};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A bot of the test fleet: its name and the emulator's bot id.
#[derive(Clone, Copy, Debug)]
pub struct Bot {
    pub name: &'static str,
    pub id: u64,
}

pub const BOTS: [Bot; 3] = [
    Bot {
        name: "alpha",
        id: 5_000_001,
    },
    Bot {
        name: "bravo",
        id: 5_000_002,
    },
    Bot {
        name: "charlie",
        id: 5_000_003,
    },
];

/// The secret part of a test token: what must never appear in logs.
pub fn secret(bot_id: u64) -> String {
    let t = test_token(bot_id);
    t.split_once(':').map(|(_, s)| s.to_owned()).unwrap_or(t)
}

pub fn bots_toml(bots: &[Bot]) -> String {
    bots.iter()
        .map(|b| {
            format!(
                "[[bot]]\nname = \"{}\"\ntoken = \"{}\"\n",
                b.name,
                test_token(b.id)
            )
        })
        .collect()
}

/// One daemon at a time per test binary: the limits tests measure arrival
/// spacing at the emulator, which parallel daemons on 2 cores disturb.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Gateway {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    pub mock: MockServer,
    pub control: Control,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
    logs: Arc<Mutex<String>>,
    /// The /metrics address, when started with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    /// The HTTP front door's address, when started with `--http-listen`.
    pub http: Option<SocketAddr>,
}

impl Gateway {
    /// Starts the emulator with `mock` and a gateway over `bots`, with extra
    /// TOML (for example `[limits]`) in its config file.
    pub async fn start(mock: MockConfig, bots: &[Bot], config_toml: &str) -> Gateway {
        Gateway::start_with_env(mock, bots, config_toml, &[]).await
    }

    /// A gateway over the test fleet [`BOTS`] and a default emulator, with
    /// `config_toml` in its config file.
    pub async fn with_config(config_toml: &str) -> Gateway {
        Gateway::start(MockConfig::default(), &BOTS, config_toml).await
    }

    /// [`start`](Self::start) with extra environment for the daemon.
    pub async fn start_with_env(
        mock: MockConfig,
        bots: &[Bot],
        config_toml: &str,
        env: &[(&str, String)],
    ) -> Gateway {
        Gateway::start_with_args(mock, bots, config_toml, env, &[]).await
    }

    /// [`start_with_env`](Self::start_with_env) with extra `serve` flags.
    pub async fn start_with_args(
        mock: MockConfig,
        bots: &[Bot],
        config_toml: &str,
        env: &[(&str, String)],
        extra_args: &[std::ffi::OsString],
    ) -> Gateway {
        let serial = SERIAL.lock().await;
        let server = MockServer::start(mock, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("emulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let bots_file = dir.path().join("bots.toml");
        std::fs::write(&bots_file, bots_toml(bots)).expect("write bots");
        let config = dir.path().join("shardgate.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let (child, addr, logs) =
            spawn_serve(&server.base_url(), &bots_file, &config, env, extra_args);
        let listening = |what: &str| -> Option<SocketAddr> {
            let prefix = format!("stdout: shardgate listening {what}=");
            logs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
                .and_then(|a| a.trim().parse().ok())
        };
        let metrics = listening("metrics");
        let http = listening("http");
        Gateway {
            _serial: serial,
            control: server.control(),
            mock: server,
            addr,
            dir,
            child,
            logs,
            metrics,
            http,
        }
    }

    pub fn bots_file(&self) -> PathBuf {
        self.dir.path().join("bots.toml")
    }

    pub async fn client(&self) -> GatewayClient<Channel> {
        connect(self.addr).await
    }

    /// A plain channel to the gateway, for the other services it serves
    /// (health, reflection).
    pub async fn channel(&self) -> Channel {
        channel(self.addr).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// No token secret of `bots` in the logs; the logs are not empty (so the
    /// check is not vacuous) and show the per-message span fields.
    pub fn assert_no_token_in_logs(&self, bots: &[Bot]) {
        assert_no_token_in(&self.logs(), bots, "gateway");
    }

    pub async fn status(&self) -> StatusResponse {
        self.client()
            .await
            .status(shardgate_proto::v1::StatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    /// Sends SIGHUP (re-read the bots file).
    pub fn hup(&self) {
        assert!(signal(self.child.id(), "-HUP"), "kill -HUP failed");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.terminate_in_place()
    }

    /// [`terminate`](Self::terminate), keeping the emulator (and the rest
    /// of the harness) for a gateway started again on it.
    pub fn terminate_in_place(&mut self) -> std::process::ExitStatus {
        let _ = signal(self.child.id(), "-TERM");
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("gateway did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(
    api_base: &str,
    bots_file: &std::path::Path,
    config: &std::path::Path,
    env: &[(&str, String)],
    extra_args: &[std::ffi::OsString],
) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--bots-file".into(),
        bots_file.into(),
        "--config".into(),
        config.into(),
    ];
    args.extend(extra_args.iter().cloned());
    spawn_gateway_env(api_base, &args, env)
}

/// Starts `shardgate serve --listen 127.0.0.1:0 --telegram-api-base API ARGS...`
/// at RUST_LOG=debug; returns the child, its gRPC address and its logs.
pub fn spawn_gateway(
    api_base: &str,
    args: &[std::ffi::OsString],
) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    spawn_gateway_env(api_base, args, &[])
}

/// [`spawn_gateway`] with extra environment variables.
pub fn spawn_gateway_env(
    api_base: &str,
    args: &[std::ffi::OsString],
    env: &[(&str, String)],
) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--telegram-api-base",
            api_base,
        ])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardgate serve");
    let logs = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr piped");
    {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = logs.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                {
                    let mut l = logs.lock().unwrap_or_else(|p| p.into_inner());
                    l.push_str("stdout: ");
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(addr) = line.strip_prefix("shardgate listening grpc=") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
    }
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a.parse().expect("address"),
        Err(_) => {
            let _ = child.kill();
            let _ = std::io::stderr()
                .write_all(logs.lock().unwrap_or_else(|p| p.into_inner()).as_bytes());
            panic!("gateway did not report its address within 30 s");
        }
    };
    (child, addr, logs)
}

/// Sends `sig` (`-TERM`, `-HUP`, `-9`) to process `pid` with kill(1);
/// whether kill succeeded.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// No token secret of `bots` in `logs` (the logs of `who`); the logs are not
/// empty, so the check is not vacuous.
pub fn assert_no_token_in(logs: &str, bots: &[Bot], who: &str) {
    assert!(logs.len() > 100, "{who}: suspiciously few logs: {logs:?}");
    for b in bots {
        assert!(
            !logs.contains(&secret(b.id)),
            "{who}: token of {} leaked into the logs",
            b.name
        );
    }
}

/// Runs the `shardgate` command line (`bot import`, `bot rotate`, ...) to
/// completion, with `stdin` (if any) written to its standard input.
pub fn shardgate(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardgate");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .expect("write to shardgate's stdin");
    }
    child.wait_with_output().expect("run shardgate")
}

/// A channel to the gateway at `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to gateway")
}

/// A gRPC client of the gateway at `addr`.
pub async fn connect(addr: SocketAddr) -> GatewayClient<Channel> {
    GatewayClient::new(channel(addr).await)
}

/// Sends `reqs` over one SendStream and collects every response (see
/// [`collect`]).
pub async fn stream_all(
    client: &mut GatewayClient<Channel>,
    reqs: Vec<SendRequest>,
) -> Vec<SendResponse> {
    let responses = client
        .send_stream(tokio_stream::iter(reqs))
        .await
        .expect("stream opens")
        .into_inner();
    collect(responses).await
}

/// Every response of an open SendStream, until the gateway ends it; fails
/// the test if an answer takes more than 120 s or the stream breaks.
pub async fn collect(mut responses: tonic::Streaming<SendResponse>) -> Vec<SendResponse> {
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(120), responses.next())
        .await
        .expect("responses keep coming")
    {
        match r {
            Ok(r) => out.push(r),
            Err(status) => panic!("stream failed: {status}"),
        }
    }
    out
}

/// What the emulator counted: no 429 and no message delivered twice, and
/// exactly `delivered` deliveries when given.
pub fn assert_no_429_nor_duplicate(control: &Control, delivered: Option<u64>) {
    let totals = control.stats().totals;
    assert_eq!(
        totals.rate_limited, 0,
        "no 429 from the emulator: {totals:?}"
    );
    assert_eq!(totals.duplicates, 0, "{totals:?}");
    if let Some(n) = delivered {
        assert_eq!(totals.delivered, n, "{totals:?}");
    }
}

/// No response carries an error.
pub fn assert_none_failed(responses: &[SendResponse]) {
    let failed: Vec<_> = responses.iter().filter(|r| r.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}

/// `n` text messages spread over `chats` chats from `base` on (the user is
/// the chat), the i-th with text `{text}{i}` and client_ref `{client_ref}{i}`.
pub fn spread_over_chats(
    n: usize,
    chats: i64,
    base: i64,
    text: &str,
    client_ref: &str,
) -> Vec<SendRequest> {
    (0..n)
        .map(|i| {
            let chat = base + (i as i64 % chats);
            text_request(chat, chat, format!("{text}{i}"), format!("{client_ref}{i}"))
        })
        .collect()
}

pub fn text_request(
    chat_id: i64,
    user_id: i64,
    text: impl Into<String>,
    client_ref: impl Into<String>,
) -> SendRequest {
    SendRequest {
        chat_id,
        user_id,
        text: text.into(),
        client_ref: client_ref.into(),
        ..SendRequest::default()
    }
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns how
/// long it took (the figure tests print), or None.
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// GET http://addr/metrics over a plain TCP socket (no extra client needed).
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// A week: quota windows in these tests never end while they run (see
/// `away_from_a_window_edge`).
pub const WEEK: u64 = 7 * 24 * 3600;

/// `msg` with `authorization: Bearer <key>`.
pub fn with_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    r
}

/// One unary Send, with the caller's key if any.
pub async fn send(
    client: &mut GatewayClient<Channel>,
    key: Option<&str>,
    req: SendRequest,
) -> Result<(), tonic::Status> {
    let r = match key {
        Some(k) => with_key(req, k),
        None => tonic::Request::new(req),
    };
    client.send(r).await.map(|_| ())
}

/// Waits until the next week window is more than two minutes away.
pub async fn away_from_a_window_edge() {
    let now = shardgate_registry::unix_now();
    let left = WEEK - now % WEEK;
    if left < 120 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

/// The SHA-256 hex of a key, as `caller list` shows it.
pub fn digest_of(key: &str) -> String {
    shardgate_callers::KeyDigest::of(key).to_hex()
}
