//! `shardgate caller ...`: the operators' commands on the callers, in the
//! callers file (embedded mode: the running gateway re-reads it when it
//! changes) or in etcd (cluster mode).
//!
//! `add` and `add-key` print the new key once, alone on stdout (so
//! `KEY=$(shardgate caller add billing)` works); everything else a person
//! should read goes to stderr. Only the key's SHA-256 is stored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use shardgate_callers::{ApiKey, Ban, CallerSpec, CallersFile, KeyDigest};

use shardgate_etcd::Admin;

use crate::cli::{CallerArgs, CallerCommand};

pub fn run(args: CallerArgs) -> anyhow::Result<ExitCode> {
    match (args.callers_file.clone(), args.etcd.clone()) {
        (Some(_), Some(_)) => {
            bail!("give --callers-file FILE (embedded) or --etcd URLS (cluster), not both")
        }
        (Some(path), None) => execute(&FileStore { path }, args.command)?,
        (None, Some(etcd)) => {
            let endpoints = crate::etcd_access::endpoints(&etcd)?;
            let access = args.access.load()?;
            let rt = crate::serve::runtime()?;
            let admin = rt
                .block_on(Admin::connect(&endpoints, &args.cluster, &access))
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
            execute(&EtcdStore { rt, admin }, args.command)?;
        }
        (None, None) => {
            bail!("give --callers-file FILE (embedded mode) or --etcd URLS (cluster mode)")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `execute` keeps the callers: the callers file or etcd.
trait Store {
    fn add(&self, spec: &CallerSpec) -> anyhow::Result<()>;
    /// Every caller, `banned_until` holding any ban in force.
    fn list(&self) -> anyhow::Result<Vec<CallerSpec>>;
    fn remove(&self, name: &str) -> anyhow::Result<()>;
    /// Applies `change` to caller `name` (may run more than once).
    fn update(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut CallerSpec) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;
    fn ban(&self, name: &str, ban: Ban) -> anyhow::Result<()>;
    fn unban(&self, name: &str) -> anyhow::Result<()>;
}

/// Cluster mode: `callers/<name>` and `bans/<name>` in etcd.
struct EtcdStore {
    rt: tokio::runtime::Runtime,
    admin: Admin,
}

impl Store for EtcdStore {
    fn add(&self, spec: &CallerSpec) -> anyhow::Result<()> {
        Ok(self.rt.block_on(self.admin.caller_add(spec))?)
    }

    fn list(&self) -> anyhow::Result<Vec<CallerSpec>> {
        let snapshot = self.rt.block_on(self.admin.caller_list())?;
        Ok(snapshot
            .callers
            .values()
            .map(|c| {
                let mut c = c.clone();
                let stored = snapshot.bans.get(&c.name).map(|b| b.until);
                c.banned_until = c.banned_until.into_iter().chain(stored).max();
                c
            })
            .collect())
    }

    fn remove(&self, name: &str) -> anyhow::Result<()> {
        Ok(self.rt.block_on(self.admin.caller_remove(name))?)
    }

    fn update(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut CallerSpec) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.rt.block_on(
            self.admin
                .caller_update(name, |spec| change(spec).map_err(|e| format!("{e:#}"))),
        )?;
        Ok(())
    }

    fn ban(&self, name: &str, ban: Ban) -> anyhow::Result<()> {
        Ok(self.rt.block_on(self.admin.caller_ban(name, &ban))?)
    }

    /// Deletes `bans/<name>`, and a `banned_until` someone wrote into the
    /// caller's JSON.
    fn unban(&self, name: &str) -> anyhow::Result<()> {
        self.rt.block_on(self.admin.caller_unban(name))?;
        self.update(name, &mut |spec| {
            spec.banned_until = None;
            Ok(())
        })
    }
}

fn new_key() -> ApiKey {
    ApiKey::from_random(rand::random())
}

fn now_s() -> u64 {
    shardgate_registry::unix_now()
}

/// One caller as `list` shows it.
#[derive(serde::Serialize)]
struct Row<'a> {
    name: &'a str,
    key_sha256: Vec<String>,
    messages_per_window: u64,
    window_secs: u64,
    max_in_flight: u32,
    bots: &'a [String],
    chats: &'a [i64],
    paid_broadcast: bool,
    banned_until: Option<u64>,
}

fn execute(store: &dyn Store, command: CallerCommand) -> anyhow::Result<()> {
    match command {
        CallerCommand::Add {
            name,
            messages_per_window,
            window_secs,
            max_in_flight,
            bots,
            chats,
            paid_broadcast,
        } => {
            let key = new_key();
            let mut spec = CallerSpec::new(&name);
            spec.key_sha256.push(key.digest());
            spec.messages_per_window = messages_per_window;
            spec.window_secs = window_secs;
            spec.max_in_flight = max_in_flight;
            spec.bots = bots;
            spec.chats = chats;
            spec.paid_broadcast = paid_broadcast;
            spec.validate().map_err(anyhow::Error::msg)?;
            store.add(&spec)?;
            eprintln!(
                "added caller {name} (key sha256 {}); the key is printed once, below",
                key.digest()
            );
            println!("{}", key.expose());
        }
        CallerCommand::List { json } => {
            let callers = store.list()?;
            let now = now_s();
            if !json {
                println!(
                    "{:<20} {:<5} {:<16} {:<10} {:<20} {:<8} BANNED",
                    "NAME", "KEYS", "QUOTA", "IN_FLIGHT", "BOTS", "CHATS"
                );
            }
            for c in &callers {
                let banned = c.banned_until.filter(|u| *u > now);
                if json {
                    let row = Row {
                        name: &c.name,
                        key_sha256: c.key_sha256.iter().map(KeyDigest::to_hex).collect(),
                        messages_per_window: c.messages_per_window,
                        window_secs: c.window_secs,
                        max_in_flight: c.max_in_flight,
                        bots: &c.bots,
                        chats: &c.chats,
                        paid_broadcast: c.paid_broadcast,
                        banned_until: banned,
                    };
                    println!("{}", serde_json::to_string(&row)?);
                    continue;
                }
                let quota = match c.messages_per_window {
                    0 => "-".to_owned(),
                    n => format!("{n}/{}s", c.window_secs),
                };
                let in_flight = match c.max_in_flight {
                    0 => "-".to_owned(),
                    n => n.to_string(),
                };
                let bots = if c.bots.is_empty() {
                    "all".to_owned()
                } else {
                    c.bots.join(",")
                };
                let chats = if c.chats.is_empty() {
                    "all".to_owned()
                } else {
                    c.chats.len().to_string()
                };
                let banned = banned.map_or_else(
                    || "-".to_owned(),
                    |u| format!("{} s", u.saturating_sub(now)),
                );
                println!(
                    "{:<20} {:<5} {:<16} {:<10} {:<20} {:<8} {banned}",
                    c.name,
                    c.key_sha256.len(),
                    quota,
                    in_flight,
                    bots,
                    chats
                );
                for d in &c.key_sha256 {
                    println!("    key sha256 {d}");
                }
            }
        }
        CallerCommand::Remove { name } => {
            store.remove(&name)?;
            eprintln!("removed caller {name}; its keys no longer work");
        }
        CallerCommand::Ban { name, secs } => {
            if secs == 0 {
                bail!("--secs must be at least 1");
            }
            let until = now_s().saturating_add(secs);
            store.ban(
                &name,
                Ban {
                    until,
                    score: 0,
                    reason: "banned by an operator".into(),
                },
            )?;
            eprintln!("caller {name} is banned for {secs} s (until unix {until})");
        }
        CallerCommand::Unban { name } => {
            store.unban(&name)?;
            eprintln!("caller {name} is no longer banned");
        }
        CallerCommand::AddKey { name } => {
            let key = new_key();
            let digest = key.digest();
            store.update(&name, &mut |spec| {
                spec.key_sha256.push(digest);
                Ok(())
            })?;
            eprintln!(
                "caller {name} has a new key (sha256 {digest}); remove the old one with \
                 `shardgate caller remove-key {name} <digest>` once services use it"
            );
            println!("{}", key.expose());
        }
        CallerCommand::RemoveKey { name, digest } => {
            let digest = KeyDigest::parse(&digest)?;
            store.update(&name, &mut |spec| {
                let before = spec.key_sha256.len();
                spec.key_sha256.retain(|d| *d != digest);
                if spec.key_sha256.len() == before {
                    bail!("caller {} has no key with sha256 {digest}", spec.name);
                }
                Ok(())
            })?;
            eprintln!("removed key {digest} of caller {name}");
        }
    }
    Ok(())
}

/// The callers file, edited in place with its comments and layout kept
/// (a changed caller's own table is rewritten), checked before it is
/// written, and replaced atomically (a temporary file renamed over it), so
/// the gateway never reads half a file.
struct FileStore {
    path: PathBuf,
}

impl FileStore {
    fn read(&self) -> anyhow::Result<toml_edit::DocumentMut> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.path.display()));
            }
        };
        CallersFile::parse(&text).with_context(|| format!("in {}", self.path.display()))?;
        text.parse::<toml_edit::DocumentMut>()
            .with_context(|| format!("parsing {}", self.path.display()))
    }

    fn write(&self, doc: &toml_edit::DocumentMut) -> anyhow::Result<()> {
        let text = doc.to_string();
        CallersFile::parse(&text).context("the edited callers file would be invalid")?;
        write_atomically(&self.path, &text)
    }

    fn tables(doc: &mut toml_edit::DocumentMut) -> anyhow::Result<&mut toml_edit::ArrayOfTables> {
        if !doc.contains_key("caller") {
            doc.insert(
                "caller",
                toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()),
            );
        }
        doc["caller"]
            .as_array_of_tables_mut()
            .context("`caller` must be an array of tables ([[caller]])")
    }

    fn index(tables: &toml_edit::ArrayOfTables, name: &str) -> Option<usize> {
        tables
            .iter()
            .position(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
    }
}

impl Store for FileStore {
    fn add(&self, spec: &CallerSpec) -> anyhow::Result<()> {
        let mut doc = self.read()?;
        let tables = Self::tables(&mut doc)?;
        if Self::index(tables, &spec.name).is_some() {
            bail!("caller {} exists (add a key with `add-key`)", spec.name);
        }
        tables.push(table_of(spec)?);
        self.write(&doc)
    }

    fn list(&self) -> anyhow::Result<Vec<CallerSpec>> {
        let doc = self.read()?;
        Ok(CallersFile::parse(&doc.to_string())?.callers)
    }

    fn remove(&self, name: &str) -> anyhow::Result<()> {
        let mut doc = self.read()?;
        let tables = Self::tables(&mut doc)?;
        let i = Self::index(tables, name).with_context(|| format!("no caller {name}"))?;
        tables.remove(i);
        self.write(&doc)
    }

    /// Applies `change` to caller `name` and writes its table back.
    fn update(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut CallerSpec) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut doc = self.read()?;
        let tables = Self::tables(&mut doc)?;
        let i = Self::index(tables, name).with_context(|| format!("no caller {name}"))?;
        let table = tables.get_mut(i).context("caller table")?;
        let mut spec: CallerSpec =
            toml::from_str(&table.to_string()).with_context(|| format!("reading caller {name}"))?;
        change(&mut spec)?;
        spec.validate().map_err(anyhow::Error::msg)?;
        // Keep the table's own decoration (comments before it).
        let decor = table.decor().clone();
        *table = table_of(&spec)?;
        *table.decor_mut() = decor;
        self.write(&doc)
    }

    /// Embedded mode: `banned_until` in the caller's table.
    fn ban(&self, name: &str, ban: Ban) -> anyhow::Result<()> {
        self.update(name, &mut |spec| {
            spec.banned_until = Some(ban.until);
            Ok(())
        })
    }

    fn unban(&self, name: &str) -> anyhow::Result<()> {
        self.update(name, &mut |spec| {
            spec.banned_until = None;
            Ok(())
        })
    }
}

/// A `[[caller]]` table for `spec`.
fn table_of(spec: &CallerSpec) -> anyhow::Result<toml_edit::Table> {
    let text = toml::to_string(spec).context("rendering the caller")?;
    let doc: toml_edit::DocumentMut = text.parse().context("rendering the caller")?;
    Ok(doc.as_table().clone())
}

/// Writes `text` to a temporary file beside `path` and renames it over
/// `path`; a new file is readable by its owner only (it lists key digests).
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let tmp = tempfile_in(dir, path)?;
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn tempfile_in(dir: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .map_or_else(|| "callers".into(), |n| n.to_string_lossy().into_owned());
    Ok(dir.join(format!(".{name}.{}.tmp", std::process::id())))
}
