//! The configuration model: `~/.vrooli/data-backup-manager/config.yaml`.
//!
//! Precedence (ARCHITECTURE, Interfaces): the file < environment variables < flags. This module
//! reads the file ([`Config::load`]) and applies the environment ([`Config::apply_env`]); the
//! shells (CLI, server, Python) apply their own flags on top by setting fields.
//!
//! ```yaml
//! repository: /srv/backups            # local path (object-store URLs come with their issue)
//! password_file: ~/.config/dbm.pass   # first line is the repository password
//! database_url: postgres://dbm@127.0.0.1/dbm   # PostgreSQL catalog; absent = embedded catalog
//! catalog_dir: ~/.local/share/data-backup-manager   # embedded catalog location
//! rpo_hours: 4                        # recovery point objective used by health
//! targets:                            # named targets: name -> spec (comma-separated allowed)
//!   test-data: files:/home/me/test-data
//!   scenarios: files:/home/me/Vrooli/scenarios
//! scenarios_dir: /home/me/Vrooli/scenarios   # where `scenario.deployed` finds scenarios
//! schedules:                          # extra schedules, created in the catalog at start-up
//!   - name: hourly-test-data
//!     cron: "0 * * * *"
//!     timezone: Europe/Berlin
//!     type: incremental
//!     targets: [test-data]
//!     retention_days: 7
//!     keep_daily: 7
//! webhooks:
//!   - url: http://localhost:5678/webhook/backups   # n8n
//!     secret_env: DBM_WEBHOOK_SECRET               # or `secret:` inline
//!     events: [backup.job.failed, restore.completed] # empty = every event
//! scheduler:
//!   concurrency: 2
//!   max_retries: 3
//!   retry_backoff_secs: 60
//! ```
//!
//! Environment: `DBM_REPOSITORY`, `DBM_PASSWORD_FILE`, `DBM_DATABASE_URL` (else `DATABASE_URL`),
//! `DBM_CATALOG_DIR`, `DBM_RPO_HOURS`, `DBM_WEBHOOK_URL` with `DBM_WEBHOOK_SECRET` (one more
//! webhook), `DBM_SCHEDULER_CONCURRENCY`, `DBM_MAX_RETRIES`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default repository location (relative to the working directory): the main job needs no
/// server and no setup.
pub const DEFAULT_REPOSITORY: &str = "./data/backups";
/// Default recovery point objective: 4 hours (PRD: "RPO: 4 hours").
pub const DEFAULT_RPO_HOURS: f64 = 4.0;

/// The whole configuration file. Unknown keys are errors (a typo must not silently disable a
/// schedule).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository location. Default [`DEFAULT_REPOSITORY`].
    pub repository: Option<String>,
    /// File whose first line is the repository password.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL catalog URL (`postgres://user@host:port/db`). When unset the embedded
    /// catalog is used.
    pub database_url: Option<String>,
    /// Folder of the embedded catalog. Default [`default_catalog_dir`].
    pub catalog_dir: Option<PathBuf>,
    /// Recovery point objective in hours (health turns degraded past it). Default 4.
    pub rpo_hours: Option<f64>,
    /// Named targets: name → spec, e.g. `test-data: files:/srv/test-data`. A value may list
    /// several comma-separated specs.
    #[serde(default)]
    pub targets: BTreeMap<String, String>,
    /// Folder holding Vrooli scenarios (`scenario.deployed` backs up `<dir>/<name>`).
    pub scenarios_dir: Option<PathBuf>,
    /// Schedules created (or updated) in the catalog when the scheduler starts.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Webhook sinks for events.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Scheduler tuning.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// The HTTP server's section (listen address, port, TLS, tokens, CORS), read by
    /// `backup-server`; kept opaque here so the core and the CLI accept a file that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<serde_yaml_ng::Value>,
    /// Object-storage settings of an `s3://`, `gs://` or `az://` repository (endpoint,
    /// region, keys, allow_http, …); the AWS_* / MINIO_* variables override them. Never
    /// serialized (it may hold keys).
    #[serde(default, skip_serializing)]
    pub storage: crate::store::cloud::CloudOptions,
}

/// A schedule as written in the config file (see [`crate::catalog::NewSchedule`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// 5-field cron expression (`min hour dom month dow`, Sunday = 0 or 7) or `@daily` etc.
    pub cron: String,
    /// IANA zone the expression is read in. Default UTC.
    pub timezone: Option<String>,
    /// `full`, `incremental` (default) or `differential`.
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    /// Target specs or names; `all` = every named target.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Snapshots older than this many days are forgotten (unless a keep rule keeps them).
    pub retention_days: Option<u32>,
    /// Keep the N newest snapshots of each target.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    pub keep_daily: Option<u32>,
    /// … weeks.
    pub keep_weekly: Option<u32>,
    /// … months.
    pub keep_monthly: Option<u32>,
    /// Disabled schedules are stored but never fire. Default true.
    pub enabled: Option<bool>,
}

/// A webhook sink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL that receives a JSON `POST` per event.
    pub url: String,
    /// HMAC-SHA256 key for the `X-DBM-Signature` header (inline; prefer `secret_env`).
    pub secret: Option<String>,
    /// Name of an environment variable holding the key.
    pub secret_env: Option<String>,
    /// Event names delivered; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Delivery attempts (default 4).
    pub max_attempts: Option<u32>,
}

impl WebhookConfig {
    /// The signing key: `secret`, else the variable named by `secret_env`.
    pub fn secret(&self) -> Option<String> {
        self.secret.clone().or_else(|| {
            self.secret_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok())
                .filter(|s| !s.is_empty())
        })
    }
}

/// Scheduler tuning; every field has a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Jobs run at once by one scheduler instance. Default 2.
    pub concurrency: Option<usize>,
    /// Retries of a failed job. Default 3.
    pub max_retries: Option<u32>,
    /// First retry delay in seconds; doubles each retry. Default 60.
    pub retry_backoff_secs: Option<u64>,
    /// Create the default schedules (daily full backup, weekly restore drill). Default true.
    pub default_schedules: Option<bool>,
    /// Cron of the default daily full backup. Default `0 2 * * *`.
    pub daily_cron: Option<String>,
    /// Cron of the default weekly restore drill. Default `0 4 * * 0`.
    pub drill_cron: Option<String>,
    /// Zone of the default schedules. Default UTC.
    pub timezone: Option<String>,
    /// Scratch folder for restore drills. Default the system temp dir.
    pub scratch_dir: Option<PathBuf>,
}

/// `~/.vrooli/data-backup-manager/config.yaml` (None when `HOME` is unset).
pub fn default_config_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".vrooli/data-backup-manager/config.yaml"))
}

/// The embedded catalog's default folder: `$XDG_DATA_HOME/data-backup-manager`, else
/// `~/.local/share/data-backup-manager`, else `./data/catalog`.
pub fn default_catalog_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Path::new(&x).join("data-backup-manager");
    }
    match std::env::var_os("HOME") {
        Some(h) => Path::new(&h).join(".local/share/data-backup-manager"),
        None => PathBuf::from("./data/catalog"),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Reads `path`, or the default path when `None`. A missing default file gives the
    /// default config; a missing explicit file is an error.
    ///
    /// Errors: [`Error::Io`] (unreadable), [`Error::InvalidInput`] naming the file and the
    /// YAML problem.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (p, explicit) = match path {
            Some(p) => (Some(p.to_path_buf()), true),
            None => (default_config_path(), false),
        };
        match p {
            Some(p) if explicit || p.exists() => {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                Config::parse(&text)
                    .map_err(|e| Error::InvalidInput(format!("config file {}: {e}", p.display())))
            }
            _ => Ok(Config::default()),
        }
    }

    /// Parses YAML text. Errors: [`Error::InvalidInput`].
    pub fn parse(text: &str) -> Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| Error::InvalidInput(e.to_string()))
    }

    /// Applies the environment variables listed in the module docs (they override the file).
    pub fn apply_env(&mut self) {
        if let Some(v) = env("DBM_REPOSITORY") {
            self.repository = Some(v);
        }
        if let Some(v) = env("DBM_PASSWORD_FILE") {
            self.password_file = Some(v.into());
        }
        if let Some(v) = env("DBM_DATABASE_URL").or_else(|| env("DATABASE_URL")) {
            self.database_url = Some(v);
        }
        if let Some(v) = env("DBM_CATALOG_DIR") {
            self.catalog_dir = Some(v.into());
        }
        if let Some(v) = env("DBM_RPO_HOURS").and_then(|v| v.parse().ok()) {
            self.rpo_hours = Some(v);
        }
        if let Some(url) = env("DBM_WEBHOOK_URL") {
            self.webhooks.push(WebhookConfig {
                url,
                secret_env: Some("DBM_WEBHOOK_SECRET".into()),
                ..Default::default()
            });
        }
        if let Some(v) = env("DBM_SCHEDULER_CONCURRENCY").and_then(|v| v.parse().ok()) {
            self.scheduler.concurrency = Some(v);
        }
        if let Some(v) = env("DBM_MAX_RETRIES").and_then(|v| v.parse().ok()) {
            self.scheduler.max_retries = Some(v);
        }
    }

    /// [`Config::load`] then [`Config::apply_env`].
    pub fn load_with_env(path: Option<&Path>) -> Result<Config> {
        let mut c = Config::load(path)?;
        c.apply_env();
        Ok(c)
    }

    /// The repository location (default [`DEFAULT_REPOSITORY`]).
    pub fn repository(&self) -> String {
        self.repository
            .clone()
            .unwrap_or_else(|| DEFAULT_REPOSITORY.to_string())
    }

    /// The RPO in seconds (default 4 h).
    pub fn rpo_secs(&self) -> i64 {
        (self.rpo_hours.unwrap_or(DEFAULT_RPO_HOURS) * 3600.0) as i64
    }

    /// The embedded catalog folder.
    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog_dir.clone().unwrap_or_else(default_catalog_dir)
    }

    /// Expands one name or spec: a named target becomes its spec(s), `all` every named
    /// target, anything else is returned as written (split at commas).
    pub fn expand_target(&self, name: &str) -> Vec<String> {
        if name == "all" {
            return self.targets.values().flat_map(|v| split_specs(v)).collect();
        }
        match self.targets.get(name) {
            Some(v) => split_specs(v),
            None => split_specs(name),
        }
    }

    /// Expands several names or specs ([`Config::expand_target`]), without duplicates.
    pub fn expand_targets(&self, names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            for s in self.expand_target(n) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }
}

fn split_specs(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
repository: /srv/backups
database_url: postgres://dbm@127.0.0.1/dbm
rpo_hours: 2
targets:
  test-data: files:/tmp/a,files:/tmp/b
schedules:
  - name: h
    cron: "0 * * * *"
    timezone: Europe/Berlin
    type: incremental
    targets: [test-data]
    retention_days: 7
webhooks:
  - url: http://localhost:5678/x
    secret: k
scheduler:
  concurrency: 3
"#;
        let c = Config::parse(text).unwrap();
        assert_eq!(c.repository(), "/srv/backups");
        assert_eq!(c.rpo_secs(), 7200);
        assert_eq!(
            c.expand_targets(&["test-data".into(), "files:/tmp/a".into()]),
            vec!["files:/tmp/a", "files:/tmp/b"]
        );
        assert_eq!(c.schedules[0].backup_type.as_deref(), Some("incremental"));
        assert!(Config::parse("reposit: x").is_err());
    }
}
