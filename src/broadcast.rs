//! `shardgate broadcast ...`: broadcast jobs on a running gateway over
//! gRPC. Text for people by default (a progress bar for `watch`), one JSON
//! object a line with `--json`.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use shardgate_proto::v1 as pb;
use shardgate_proto::v1::gateway_client::GatewayClient;
use tonic::transport::Channel;

use crate::cli::{BroadcastArgs, BroadcastCommand, PriorityArg};

/// Recipients per `BroadcastChunk` sent.
const CHUNK: usize = 10_000;

pub fn run(args: BroadcastArgs) -> anyhow::Result<ExitCode> {
    crate::serve::runtime()?.block_on(async move {
        let channel = Channel::from_shared(format!("http://{}", args.addr))
            .context("the gateway address")?
            .connect()
            .await
            .with_context(|| format!("connecting to the gateway at {}", args.addr))?;
        let client = GatewayClient::new(channel);
        let cli = Client {
            client,
            key: args.key.clone(),
            json: args.json,
        };
        cli.command(args.command).await
    })
}

struct Client {
    client: GatewayClient<Channel>,
    key: Option<String>,
    json: bool,
}

impl Client {
    fn request<T>(&self, body: T) -> anyhow::Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(body);
        if let Some(key) = &self.key {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| anyhow::anyhow!("the key holds characters a header cannot"))?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }

    async fn command(mut self, command: BroadcastCommand) -> anyhow::Result<ExitCode> {
        let mut c = self.client.clone();
        let id_ref = |id: &str| pb::BroadcastRef { id: id.to_owned() };
        match command {
            BroadcastCommand::Create {
                text,
                chats,
                priority,
                dry_run,
                id,
                rate,
                parse_mode,
            } => {
                let ids = read_chats(&chats).await?;
                let spec = pb::BroadcastSpec {
                    id: id.unwrap_or_default(),
                    message: Some(pb::SendRequest {
                        text,
                        parse_mode,
                        ..pb::SendRequest::default()
                    }),
                    priority: match priority {
                        PriorityArg::Interactive => pb::Priority::Interactive,
                        PriorityArg::Normal => pb::Priority::Normal,
                        PriorityArg::Bulk => pb::Priority::Bulk,
                    } as i32,
                    rate_per_s: rate,
                    start_at: 0,
                    call: None,
                    dry_run,
                };
                let mut chunks = vec![pb::BroadcastChunk {
                    spec: Some(spec),
                    chat_ids: Vec::new(),
                }];
                chunks.extend(ids.chunks(CHUNK).map(|part| pb::BroadcastChunk {
                    spec: None,
                    chat_ids: part.to_vec(),
                }));
                let b = c
                    .create_broadcast(self.request(futures::stream::iter(chunks))?)
                    .await
                    .context("CreateBroadcast")?
                    .into_inner();
                if self.json {
                    println!("{}", json(&b));
                } else if dry_run {
                    println!("plan: {} recipients at {:.1} msg/s", b.total, b.rate_per_s);
                    println!("ETA {} s", eta(b.eta_s));
                } else {
                    println!("{}", b.id);
                }
            }
            BroadcastCommand::Status { id } => {
                let b = c
                    .get_broadcast(self.request(id_ref(&id))?)
                    .await?
                    .into_inner();
                self.print(&b);
            }
            BroadcastCommand::Pause { id } => {
                let b = c
                    .pause_broadcast(self.request(id_ref(&id))?)
                    .await?
                    .into_inner();
                self.print(&b);
            }
            BroadcastCommand::Resume { id } => {
                let b = c
                    .resume_broadcast(self.request(id_ref(&id))?)
                    .await?
                    .into_inner();
                self.print(&b);
            }
            BroadcastCommand::Cancel { id } => {
                let b = c
                    .cancel_broadcast(self.request(id_ref(&id))?)
                    .await?
                    .into_inner();
                self.print(&b);
            }
            BroadcastCommand::List => {
                let list = c
                    .list_broadcasts(self.request(pb::ListBroadcastsRequest {})?)
                    .await?
                    .into_inner();
                for b in &list.broadcasts {
                    if self.json {
                        println!("{}", json(b));
                    } else {
                        println!(
                            "{}\t{}\t{}/{} delivered\t{} failed",
                            b.id, b.state, b.delivered, b.total, b.failed
                        );
                    }
                }
            }
            BroadcastCommand::Results { id } => {
                let mut s = c
                    .broadcast_results(self.request(id_ref(&id))?)
                    .await?
                    .into_inner();
                let mut out = std::io::stdout().lock();
                while let Some(r) = s.message().await? {
                    let err = r.error.unwrap_or_default();
                    // A closed stdout (`| head`) ends the listing quietly.
                    let written = if self.json {
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"chat_id": r.chat_id, "bot": r.bot,
                                "message_id": r.message_id, "error_code": err.code,
                                "error": err.description})
                        )
                    } else if err.code.is_empty() {
                        writeln!(out, "{}\t{}\t{}", r.chat_id, r.bot, r.message_id)
                    } else {
                        writeln!(out, "{}\t{}\t{}", r.chat_id, err.code, err.description)
                    };
                    if written.is_err() {
                        break;
                    }
                }
            }
            BroadcastCommand::Watch { id } => return self.watch(&id).await,
        }
        let _ = &mut self;
        Ok(ExitCode::SUCCESS)
    }

    fn print(&self, b: &pb::Broadcast) {
        if self.json {
            println!("{}", json(b));
            return;
        }
        println!("id        {}", b.id);
        println!("state     {}", b.state);
        println!(
            "progress  {} delivered, {} failed, {} pending of {}",
            b.delivered, b.failed, b.pending, b.total
        );
        for (code, n) in &b.failed_by_code {
            println!("          {n} {code}");
        }
        println!(
            "rate      {:.1} msg/s, ETA {} s",
            b.rate_per_s,
            eta(b.eta_s)
        );
        if b.possible_duplicates > 0 {
            println!("possible duplicates {}", b.possible_duplicates);
        }
        if !b.runner.is_empty() {
            println!("runner    {}", b.runner);
        }
    }

    async fn watch(&self, id: &str) -> anyhow::Result<ExitCode> {
        let mut c = self.client.clone();
        let mut s = c
            .watch_broadcast(self.request(pb::BroadcastRef { id: id.to_owned() })?)
            .await
            .context("WatchBroadcast")?
            .into_inner();
        let bar = if self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut last = None;
        while let Some(b) = s.message().await? {
            if self.json {
                println!("{}", json(&b));
            }
            bar.set_length(b.total);
            bar.set_position(b.delivered + b.failed);
            bar.set_message(format!(
                "{} · {:.1} msg/s · ETA {} s · {} failed",
                b.state,
                b.rate_per_s,
                eta(b.eta_s),
                b.failed
            ));
            last = Some(b);
        }
        bar.finish();
        match last {
            Some(b) if b.state == "done" => Ok(ExitCode::SUCCESS),
            Some(b) => {
                if !self.json {
                    eprintln!("broadcast {} ended {}", b.id, b.state);
                }
                Ok(ExitCode::FAILURE)
            }
            None => bail!("the gateway sent no state"),
        }
    }
}

fn eta(s: f64) -> String {
    if s < 0.0 {
        "unknown".into()
    } else {
        format!("{}", s.ceil() as u64)
    }
}

fn json(b: &pb::Broadcast) -> serde_json::Value {
    serde_json::json!({
        "id": b.id, "state": b.state, "total": b.total, "delivered": b.delivered,
        "failed": b.failed, "pending": b.pending, "failed_by_code": b.failed_by_code,
        "rate_per_s": b.rate_per_s, "eta_s": b.eta_s, "created_at": b.created_at,
        "finished_at": b.finished_at, "runner": b.runner,
        "possible_duplicates": b.possible_duplicates,
    })
}

/// One chat id a line from `path` (`-`: stdin); blank lines and `#`
/// comments are skipped, anything else that is not an id is an error
/// naming the line.
async fn read_chats(path: &std::path::Path) -> anyhow::Result<Vec<i64>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?,
            ))
        };
        let mut ids = Vec::new();
        for (n, line) in reader.lines().enumerate() {
            let line = line.context("reading the chats")?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            ids.push(
                t.parse::<i64>()
                    .with_context(|| format!("line {}: {t:?} is not a chat id", n + 1))?,
            );
        }
        Ok(ids)
    })
    .await
    .context("reading the chats")?
}
