//! The flags that say how to reach a secured etcd (`--etcd-ca`,
//! `--etcd-cert`, `--etcd-key`, `--etcd-user`, the password from
//! `SHARDGATE_ETCD_PASSWORD` or `--etcd-password-file`), shared by `serve`,
//! `bot` and `caller` so that the three connect the same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use shardgate_etcd::EtcdAccess;

/// Where the password comes from when no file is given.
const PASSWORD_ENV: &str = "SHARDGATE_ETCD_PASSWORD";

#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdAccessArgs {
    /// PEM CA certificates that signed etcd's certificate: TLS to etcd
    /// (endpoints `https://...` or bare `host:port`).
    #[arg(long, env = "SHARDGATE_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd's client-certificate auth (with --etcd-key).
    #[arg(long, env = "SHARDGATE_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM key of --etcd-cert.
    #[arg(long, env = "SHARDGATE_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (etcd's auth); the password is read from
    /// SHARDGATE_ETCD_PASSWORD or --etcd-password-file.
    #[arg(long, env = "SHARDGATE_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// File whose first line is the etcd user's password.
    #[arg(long, env = "SHARDGATE_ETCD_PASSWORD_FILE", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdAccessArgs {
    /// `self`, with what it lacks taken from `other` (flags over the file).
    pub fn or(self, other: EtcdAccessArgs) -> EtcdAccessArgs {
        EtcdAccessArgs {
            etcd_ca: self.etcd_ca.or(other.etcd_ca),
            etcd_cert: self.etcd_cert.or(other.etcd_cert),
            etcd_key: self.etcd_key.or(other.etcd_key),
            etcd_user: self.etcd_user.or(other.etcd_user),
            etcd_password_file: self.etcd_password_file.or(other.etcd_password_file),
        }
    }

    /// Reads the files (and the password variable). Blocking: call it
    /// before the runtime starts.
    pub fn load(&self) -> anyhow::Result<EtcdAccess> {
        let identity = match (&self.etcd_cert, &self.etcd_key) {
            (Some(cert), Some(key)) => Some((
                read(cert, "etcd client certificate")?,
                read(key, "etcd client key")?,
            )),
            (None, None) => None,
            _ => bail!("etcd_cert and etcd_key go together"),
        };
        let user = match &self.etcd_user {
            None => None,
            Some(name) => {
                let password = match &self.etcd_password_file {
                    Some(path) => {
                        let text = std::fs::read_to_string(path).with_context(|| {
                            format!("reading the etcd password file {}", path.display())
                        })?;
                        text.lines().next().unwrap_or_default().to_owned()
                    }
                    None => std::env::var(PASSWORD_ENV).with_context(|| {
                        format!(
                            "--etcd-user {name} needs a password: set {PASSWORD_ENV} or give \
                             --etcd-password-file"
                        )
                    })?,
                };
                if password.is_empty() {
                    bail!("the password of etcd user {name} is empty");
                }
                Some((name.clone(), password))
            }
        };
        Ok(EtcdAccess {
            ca_pem: self
                .etcd_ca
                .as_deref()
                .map(|p| read(p, "etcd CA file"))
                .transpose()?,
            identity,
            user,
        })
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// `--etcd`'s comma-separated endpoints, at least one.
pub fn endpoints(list: &str) -> anyhow::Result<Vec<String>> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        bail!("--etcd needs at least one endpoint");
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_gives_the_first_line_and_errors_name_files_not_secrets() {
        let dir = tempfile::tempdir().expect("dir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2-pw\nignored\n").expect("write");
        let args = EtcdAccessArgs {
            etcd_user: Some("gateway".into()),
            etcd_password_file: Some(pw),
            ..Default::default()
        };
        let access = args.load().expect("load");
        assert_eq!(access.user, Some(("gateway".into(), "hunter2-pw".into())));
        let missing = EtcdAccessArgs {
            etcd_ca: Some(dir.path().join("nope.pem")),
            ..Default::default()
        };
        let err = format!("{:#}", missing.load().expect_err("no file"));
        assert!(err.contains("nope.pem"), "{err}");
    }

    #[test]
    fn endpoints_are_split_and_trimmed() {
        assert_eq!(
            endpoints(" https://a:2379, b:2379 ,").expect("two"),
            vec!["https://a:2379", "b:2379"]
        );
        assert!(endpoints(" , ").is_err());
    }
}
