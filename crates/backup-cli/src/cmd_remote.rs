//! Remote mode: with `--api-url` (or `DBM_API_URL`) and `DBM_API_TOKEN`, every command that
//! has an API endpoint calls the server instead of opening the repository, and prints the
//! answer with the same printer as local mode (so `list --json` and `status --json` are the
//! same in both modes). Commands without an endpoint refuse to run remotely.
//!
//! The token is read from `DBM_API_TOKEN` only (never a flag: process arguments are visible
//! to every user of the host).

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{Cli, Command};
use crate::cmd_schedule::{
    keep, print_json, print_schedules, RestorePointCommand, ScheduleCommand,
};
use crate::settings::Settings;

/// Every API endpoint and the command that mirrors it (PRD "CLI-API Parity"). A unit test
/// checks this table against the server's OpenAPI document.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/health", "status"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/api/v1/openapi.json", "api-doc"),
    ("POST", "/api/v1/backup/create", "backup"),
    ("GET", "/api/v1/backup/status", "status"),
    ("GET", "/api/v1/backup/list", "list"),
    ("GET", "/api/v1/backup/jobs/{id}", "job"),
    ("POST", "/api/v1/backup/verify/{id}", "verify"),
    ("POST", "/api/v1/restore/create", "restore"),
    ("GET", "/api/v1/restore/status/{id}", "restore-status"),
    ("GET", "/api/v1/restore-points", "restore-point list"),
    ("POST", "/api/v1/restore-points", "restore-point create"),
    ("GET", "/api/v1/schedules", "schedule list"),
    ("POST", "/api/v1/schedules", "schedule create"),
    ("GET", "/api/v1/schedules/{id}", "schedule list"),
    ("PUT", "/api/v1/schedules/{id}", "schedule update"),
    ("DELETE", "/api/v1/schedules/{id}", "schedule delete"),
    ("POST", "/api/v1/schedules/{id}/enable", "schedule enable"),
    ("POST", "/api/v1/schedules/{id}/disable", "schedule disable"),
    ("POST", "/api/v1/events", "event"),
];

/// A client of one server.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Client {
    /// `base` like `http://localhost:20010`; the token from `DBM_API_TOKEN`.
    pub fn new(base: &str) -> Result<Client> {
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: std::env::var("DBM_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(600))
                .build()?,
        })
    }

    /// Calls an endpoint; an error reply becomes an error with the server's message.
    /// Returns the status and the body (JSON, or a string for text replies).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb
            .send()
            .await
            .with_context(|| format!("calling {method} {}{path}", self.base))?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 && !(status == 422 && v.get("ok").is_some()) {
            let msg = v["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            if status == 401 {
                bail!("{method} {path}: {msg} (set DBM_API_TOKEN)");
            }
            bail!("{method} {path}: HTTP {status}: {msg}");
        }
        Ok((status, v))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        Ok(self.call(Method::GET, path, None).await?.1)
    }

    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Runs `cli` against the server at `url`. Returns the exit code.
pub async fn run(cli: Cli, url: &str, s: &Settings) -> Result<u8> {
    let c = Client::new(url)?;
    match cli.command {
        Command::Status(a) => {
            let mut q = Vec::new();
            if !a.targets.is_empty() {
                q.push(format!("targets={}", enc(&a.targets.join(","))));
            }
            if s.verbose {
                q.push("verbose=true".into());
            }
            let path = if q.is_empty() {
                "/api/v1/backup/status".to_string()
            } else {
                format!("/api/v1/backup/status?{}", q.join("&"))
            };
            let v: backup_core::service::status::StatusView =
                serde_json::from_value(c.get(&path).await?)
                    .context("reading the server's status")?;
            crate::cmd_schedule::print_status(&v, s.verbose, s.json)?;
            Ok(0)
        }
        Command::List(a) => {
            let mut q = Vec::new();
            if let Some(t) = &a.backup_type {
                q.push(format!("type={}", enc(t)));
            }
            if let Some(t) = &a.target {
                q.push(format!("target={}", enc(t)));
            }
            if let Some(t) = &a.since {
                q.push(format!("since={}", enc(t)));
            }
            let v = c
                .get(&format!("/api/v1/backup/list?{}", q.join("&")))
                .await?;
            let snaps: Vec<Value> = serde_json::from_value(v)?;
            crate::commands::print_listing(s, &snaps)?;
            Ok(0)
        }
        Command::Backup(a) => {
            if !a.excludes.is_empty() || a.parent.is_some() || !a.tags.is_empty() {
                bail!(
                    "--exclude, --tag and --parent are not part of the API: run the backup locally"
                );
            }
            let (_, v) = c
                .post(
                    "/api/v1/backup/create",
                    json!({"type": a.backup_type, "targets": a.targets, "description": a.description, "retention_days": a.retention_days}),
                )
                .await?;
            if s.json {
                print_json(&v)?;
            } else {
                println!(
                    "queued backup job {} of {} (estimated {}); follow it with: data-backup-manager job {}",
                    v["job_id"].as_str().unwrap_or_default(),
                    v["targets"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
                    v["estimated_duration"].as_str().unwrap_or_default(),
                    v["job_id"].as_str().unwrap_or_default()
                );
            }
            Ok(0)
        }
        Command::Verify(a) => {
            let Some(snapshot) = a.snapshot.as_deref().filter(|_| !a.wal) else {
                anyhow::bail!(
                    "verify --wal (the WAL archive) has no API endpoint: run it without --api-url"
                );
            };
            let (_, v) = c
                .post(
                    &format!("/api/v1/backup/verify/{}", enc(snapshot)),
                    json!({}),
                )
                .await?;
            let r: backup_core::service::verify::Verification = serde_json::from_value(v)?;
            crate::commands::print_verification(s, &r)
        }
        Command::Job(a) => {
            if !is_uuid(&a.id) {
                bail!("job {:?}: expected a job id (UUID)", a.id);
            }
            let v = c.get(&format!("/api/v1/backup/jobs/{}", a.id)).await?;
            print_json(&v)?;
            Ok(0)
        }
        Command::RestoreStatus(a) => {
            if !is_uuid(&a.id) {
                bail!("restore-status {:?}: expected a restore id (UUID)", a.id);
            }
            let v = c.get(&format!("/api/v1/restore/status/{}", a.id)).await?;
            print_json(&v)?;
            Ok(if v["status"] == "failed" { 1 } else { 0 })
        }
        Command::Restore(a) => {
            if a.format.is_some() || !a.include.is_empty() {
                bail!("--format and --include are not part of the API: restore locally");
            }
            let dest = a
                .destination
                .as_ref()
                .map(|d| std::path::absolute(d).map(|p| p.display().to_string()))
                .transpose()?;
            let mut body = json!({"targets": a.targets, "destination": dest,
                                  "verify_before_restore": a.verify, "overwrite": a.overwrite});
            if is_uuid(&a.snapshot) {
                // A job id or a restore point id.
                let is_job = c
                    .call(
                        Method::GET,
                        &format!("/api/v1/backup/jobs/{}", a.snapshot),
                        None,
                    )
                    .await
                    .is_ok();
                body[if is_job {
                    "backup_job_id"
                } else {
                    "restore_point_id"
                }] = json!(a.snapshot);
            } else {
                body["snapshot_id"] = json!(a.snapshot);
            }
            let (_, created) = c.post("/api/v1/restore/create", body).await?;
            let id = created["restore_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // The restore runs in the server; wait for it like the local command does.
            let done = loop {
                let v = c.get(&format!("/api/v1/restore/status/{id}")).await?;
                if v["status"] == "completed" || v["status"] == "failed" {
                    break v;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            };
            if s.json {
                print_json(&done)?;
            } else {
                println!(
                    "restore {id} {}: {} snapshot(s) into {}{}",
                    done["status"].as_str().unwrap_or_default(),
                    done["snapshot_ids"].as_array().map(Vec::len).unwrap_or(0),
                    done["destination"].as_str().unwrap_or_default(),
                    done["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(if done["status"] == "completed" { 0 } else { 1 })
        }
        Command::RestorePoint(RestorePointCommand::List) => {
            let v = c.get("/api/v1/restore-points").await?;
            print_json(&v)?;
            Ok(0)
        }
        Command::RestorePoint(RestorePointCommand::Create(a)) => {
            if !a.snapshots.is_empty() {
                bail!("--snapshots is not part of the API: give --targets (their newest backups)");
            }
            let (_, v) = c
                .post(
                    "/api/v1/restore-points",
                    json!({"name": a.name, "description": a.description, "targets": a.targets}),
                )
                .await?;
            print_json(&v)?;
            Ok(0)
        }
        Command::Schedule(sc) => {
            let one = |v: Value| -> Result<u8> {
                if s.json {
                    print_json(&v)?;
                } else {
                    print_schedules(&[serde_json::from_value(v)?]);
                }
                Ok(0)
            };
            match sc {
                ScheduleCommand::List => {
                    let v = c.get("/api/v1/schedules").await?;
                    let list: Vec<backup_core::catalog::Schedule> =
                        serde_json::from_value(v.clone())?;
                    if s.json {
                        print_json(&v)?;
                    } else if list.is_empty() {
                        println!("no schedules");
                    } else {
                        print_schedules(&list);
                    }
                    Ok(0)
                }
                ScheduleCommand::Create(a) => {
                    if a.drill {
                        bail!("--drill is not part of the API");
                    }
                    let (_, v) = c
                        .post(
                            "/api/v1/schedules",
                            json!({"name": a.name, "cron_expression": a.cron, "timezone": a.timezone,
                                   "backup_type": a.backup_type, "targets": a.targets, "retention_days": a.retention,
                                   "enabled": !a.disabled, "keep": keep(&a)}),
                        )
                        .await?;
                    one(v)
                }
                ScheduleCommand::Update(a) => {
                    let mut body = json!({"name": a.rename, "cron_expression": a.cron, "timezone": a.timezone,
                                          "backup_type": a.backup_type, "retention_days": a.retention, "keep": keep(&a)});
                    if !a.targets.is_empty() {
                        body["targets"] = json!(a.targets);
                    }
                    let (_, v) = c
                        .call(
                            Method::PUT,
                            &format!("/api/v1/schedules/{}", enc(&a.name)),
                            Some(body),
                        )
                        .await?;
                    one(v)
                }
                ScheduleCommand::Delete(n) => {
                    c.call(
                        Method::DELETE,
                        &format!("/api/v1/schedules/{}", enc(&n.name)),
                        None,
                    )
                    .await?;
                    if s.json {
                        print_json(&json!({"deleted": n.name}))?;
                    } else {
                        println!("deleted schedule {}", n.name);
                    }
                    Ok(0)
                }
                ScheduleCommand::Enable(n) => one(c
                    .post(
                        &format!("/api/v1/schedules/{}/enable", enc(&n.name)),
                        json!({}),
                    )
                    .await?
                    .1),
                ScheduleCommand::Disable(n) => one(c
                    .post(
                        &format!("/api/v1/schedules/{}/disable", enc(&n.name)),
                        json!({}),
                    )
                    .await?
                    .1),
            }
        }
        Command::Event(a) => {
            let payload: Value = serde_json::from_str(&a.payload).context("--payload: not JSON")?;
            let (_, v) = c
                .post(
                    "/api/v1/events",
                    json!({"event": a.event, "payload": payload}),
                )
                .await?;
            print_json(&v)?;
            Ok(0)
        }
        Command::Metrics => {
            let v = c.get("/metrics").await?;
            print!("{}", v.as_str().unwrap_or_default());
            Ok(0)
        }
        Command::ApiDoc => {
            let v = c.get("/api/v1/openapi.json").await?;
            print_json(&v)?;
            Ok(0)
        }
        Command::Version => crate::commands::version(s),
        other => {
            let mut remote: Vec<&str> = ENDPOINTS.iter().map(|e| e.2).collect();
            remote.sort_unstable();
            remote.dedup();
            bail!(
                "{} has no API endpoint: run it without --api-url on a host with the repository \
                 (remote commands: {})",
                format!("{other:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap_or("this command")
                    .to_lowercase(),
                remote.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every endpoint of the server's OpenAPI document has its command here and in clap, and
    /// the table holds nothing the server does not serve.
    #[test]
    fn every_endpoint_has_its_command() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../backup-server/openapi.json")).unwrap();
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (m, op) in item.as_object().unwrap() {
                let cmd = op["x-cli-command"].as_str().unwrap();
                let entry = super::ENDPOINTS
                    .iter()
                    .find(|(em, ep, _)| em.eq_ignore_ascii_case(m) && ep == path)
                    .unwrap_or_else(|| panic!("{m} {path} has no entry in the remote table"));
                assert_eq!(entry.2, cmd, "{m} {path}");
                // The command exists in the CLI.
                let mut c = crate::cli::Cli::command();
                for word in cmd.split(' ') {
                    c = c
                        .find_subcommand(word)
                        .unwrap_or_else(|| panic!("{m} {path}: no command `{cmd}`"))
                        .clone();
                }
                documented.push((m.to_uppercase(), path.clone()));
            }
        }
        assert_eq!(
            documented.len(),
            super::ENDPOINTS.len(),
            "no extra rows in the table"
        );
    }
}
