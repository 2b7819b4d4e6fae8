//! Server settings: the `server:` section of the config file
//! (`~/.vrooli/data-backup-manager/config.yaml`), then the environment, then flags
//! (the PRD's "environment variables override config; command flags override everything").
//!
//! ```yaml
//! server:
//!   listen: 127.0.0.1          # address to bind (default 127.0.0.1: local only)
//!   port: 20010                # API_PORT overrides it
//!   tls: {cert: /etc/dbm/cert.pem, key: /etc/dbm/key.pem}
//!   tokens:                    # bearer tokens; DBM_API_TOKEN adds one named "env"
//!     - {name: n8n, token_file: /etc/dbm/n8n.token}
//!     - {name: grafana, token_env: GRAFANA_DBM_TOKEN, read_only: true}
//!   cors_origins: [http://localhost:3000]
//!   max_body_bytes: 1048576
//!   shutdown_grace_secs: 30
//!   status_cache_ms: 1000
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The PRD's API port (`ports.api` in `.vrooli/service.json`).
pub const DEFAULT_PORT: u16 = 20010;
/// Default request body limit: 1 MiB (every request body is a small JSON document).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The `server:` section of the config file. All fields optional; defaults documented.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to bind. Default `127.0.0.1`.
    pub listen: Option<IpAddr>,
    /// TCP port. Default 20010; `API_PORT` overrides.
    pub port: Option<u16>,
    /// TLS certificate chain and private key (PEM files). Plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// Bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Origins allowed to call the API from a browser (CORS). Default: none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Largest accepted request body, bytes. Default 1 MiB.
    pub max_body_bytes: Option<usize>,
    /// On SIGTERM, how long running jobs may take to finish before they are marked for
    /// retry, seconds. Default 30.
    pub shutdown_grace_secs: Option<u64>,
    /// How long a computed `/api/v1/backup/status` answer is reused, milliseconds. Default 1000.
    pub status_cache_ms: Option<u64>,
}

/// PEM files for TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One named bearer token. Give the secret by file or environment variable (a literal
/// `token:` works but puts the secret in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Name recorded as the user in the audit log and in request logs.
    pub name: String,
    /// The secret itself.
    pub token: Option<String>,
    /// A file whose first line is the secret.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub token_env: Option<String>,
    /// Read-only tokens may only read: create, restore, delete and changes answer 403.
    #[serde(default)]
    pub read_only: bool,
}

/// A resolved token (the secret is never logged or printed: `Debug` hides it).
#[derive(Clone)]
pub struct Token {
    /// Name (audit user).
    pub name: String,
    /// Secret bytes.
    pub secret: Vec<u8>,
    /// Read-only access.
    pub read_only: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket to bind.
    pub addr: SocketAddr,
    /// TLS files, if TLS is on.
    pub tls: Option<TlsFiles>,
    /// Accepted tokens (at least one).
    pub tokens: Vec<Token>,
    /// Allowed CORS origins (exact match on the `Origin` header).
    pub cors_origins: Vec<String>,
    /// Request body limit, bytes.
    pub max_body_bytes: usize,
    /// Grace period for running jobs on shutdown.
    pub shutdown_grace: std::time::Duration,
    /// Status cache lifetime.
    pub status_cache: std::time::Duration,
}

/// Overrides from flags (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<IpAddr>,
    /// `--port`.
    pub port: Option<u16>,
}

/// Reads the `server:` section of a YAML config file; other sections belong to the core.
pub fn read_section(path: &Path) -> Result<ServerSection> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("config file {}", path.display()))?;
    match v.get("server") {
        None => Ok(ServerSection::default()),
        Some(s) => serde_yaml_ng::from_value(s.clone())
            .with_context(|| format!("config file {}: section server", path.display())),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ServerConfig {
    /// Resolves the section, the environment (`API_PORT`, `DBM_API_LISTEN`, `DBM_API_TOKEN`)
    /// and the flags. Fails without any token: an API that anyone on the host can drive
    /// (restores overwrite data) must not start by accident.
    pub fn resolve(section: ServerSection, o: &Overrides) -> Result<ServerConfig> {
        let port = match (o.port, env("API_PORT")) {
            (Some(p), _) => p,
            (None, Some(p)) => p
                .parse()
                .with_context(|| format!("API_PORT {p:?}: not a port number"))?,
            (None, None) => section.port.unwrap_or(DEFAULT_PORT),
        };
        let listen = match (o.listen, env("DBM_API_LISTEN")) {
            (Some(a), _) => a,
            (None, Some(a)) => a
                .parse()
                .with_context(|| format!("DBM_API_LISTEN {a:?}: not an IP address"))?,
            (None, None) => section.listen.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let mut tokens = Vec::new();
        for t in &section.tokens {
            let secret = match (&t.token, &t.token_file, &t.token_env) {
                (Some(s), None, None) => s.clone(),
                (None, Some(f), None) => {
                    let text = std::fs::read_to_string(f).with_context(|| {
                        format!("token {}: reading token_file {}", t.name, f.display())
                    })?;
                    text.lines().next().unwrap_or_default().trim().to_string()
                }
                (None, None, Some(e)) => env(e).with_context(|| {
                    format!("token {}: environment variable {e} is not set", t.name)
                })?,
                _ => bail!(
                    "token {}: give exactly one of token, token_file, token_env",
                    t.name
                ),
            };
            if secret.len() < 16 {
                bail!(
                    "token {}: the secret must be at least 16 characters",
                    t.name
                );
            }
            tokens.push(Token {
                name: t.name.clone(),
                secret: secret.into_bytes(),
                read_only: t.read_only,
            });
        }
        if let Some(secret) = env("DBM_API_TOKEN") {
            if secret.len() < 16 {
                bail!("DBM_API_TOKEN: the secret must be at least 16 characters");
            }
            tokens.push(Token {
                name: "env".into(),
                secret: secret.into_bytes(),
                read_only: false,
            });
        }
        if tokens.is_empty() {
            bail!("no API token configured: set DBM_API_TOKEN or list server.tokens in the config file");
        }
        let mut names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("token name {:?} is used twice", w[0]);
        }
        Ok(ServerConfig {
            addr: SocketAddr::new(listen, port),
            tls: section.tls,
            tokens,
            cors_origins: section.cors_origins,
            max_body_bytes: section.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            shutdown_grace: std::time::Duration::from_secs(
                section.shutdown_grace_secs.unwrap_or(30),
            ),
            status_cache: std::time::Duration::from_millis(section.status_cache_ms.unwrap_or(1000)),
        })
    }
}
