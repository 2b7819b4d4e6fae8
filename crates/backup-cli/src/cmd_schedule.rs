//! Catalog-backed commands: `schedule`, `status`, `run-scheduler`, `catalog`, `restore-point`,
//! and the job record of a plain `backup`. All logic is in `backup_core::{catalog, scheduler,
//! health}`; this file parses flags and prints.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use backup_core::catalog::{
    self, Catalog, Job, JobFilter, JobStatus, JobType, KeepPolicy, NewSchedule, Schedule,
    ScheduleAction, SchedulePatch,
};
use backup_core::events::EventBus;
use backup_core::health::{self, HealthOptions};
use backup_core::scheduler::{
    CronScheduler, JobRecorder, ScheduleBook, Scheduler, SchedulerOptions, SystemClock,
};
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::{size, table};
use crate::settings::Settings;

/// `schedule` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List schedules with their next and last run.
    List,
    /// Create a schedule (5-field cron in a time zone).
    Create(ScheduleArgs),
    /// Change a schedule (only the flags given change).
    Update(ScheduleArgs),
    /// Delete a schedule (its jobs stay in the catalog).
    Delete(NameArg),
    /// Enable a schedule.
    Enable(NameArg),
    /// Disable a schedule (it keeps its settings but never fires).
    Disable(NameArg),
}

/// Flags of `schedule create|update`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Schedule name (unique).
    #[arg(long)]
    pub name: String,
    /// Cron expression: minute hour day-of-month month day-of-week (Sunday = 0 or 7), or @daily etc.
    #[arg(long)]
    pub cron: Option<String>,
    /// Targets, comma-separated: specs (files:/srv/data, postgres:app) or config names; `all` = every named target.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Backup type.
    #[arg(long = "type", value_parser = ["full", "incremental", "differential"])]
    pub backup_type: Option<String>,
    /// Forget snapshots older than this many days (unless a keep rule or a restore point keeps them).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=36500))]
    pub retention: Option<i32>,
    /// IANA time zone of the cron expression (default UTC), e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Keep the N newest snapshots of each target.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,
    /// … of each of the last N weeks.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,
    /// update: new name.
    #[arg(long)]
    pub rename: Option<String>,
    /// create: a restore drill (restore and verify the newest snapshot of each target) instead of a backup.
    #[arg(long)]
    pub drill: bool,
    /// create: store the schedule disabled.
    #[arg(long)]
    pub disabled: bool,
}

/// A schedule name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Schedule name (or id).
    #[arg(long)]
    pub name: String,
}

/// Flags of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only these targets (comma-separated specs or config names).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
}

/// Flags of `run-scheduler`.
#[derive(Debug, Args)]
pub struct RunSchedulerArgs {
    /// One pass (recover, fire due schedules, run pending jobs), then exit.
    #[arg(long)]
    pub once: bool,
}

/// `catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Add a job record for every repository snapshot the catalog does not know.
    Rebuild,
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Show the audit log, newest first.
    Audit {
        /// Entries shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Flags of `catalog jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs with this status.
    #[arg(long, value_parser = ["pending", "running", "completed", "failed"])]
    pub status: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `restore-point` subcommands.
#[derive(Debug, Subcommand)]
pub enum RestorePointCommand {
    /// Name a set of snapshots (kept by retention) — e.g. before a migration.
    Create(RestorePointArgs),
    /// List restore points.
    List,
    /// Delete a restore point (its snapshots become subject to retention again).
    Delete(NameArg),
}

/// Flags of `restore-point create`.
#[derive(Debug, Args)]
pub struct RestorePointArgs {
    /// Restore point name (unique).
    #[arg(long)]
    pub name: String,
    /// Snapshots (ids, prefixes or `latest`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub snapshots: Vec<String>,
    /// Or: the newest snapshot of each of these targets (specs or config names), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn time(t: Option<chrono::DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

async fn book(s: &Settings) -> Result<ScheduleBook> {
    Ok(ScheduleBook::new(
        s.catalog().await?,
        s.config.clone(),
        Arc::new(SystemClock),
    ))
}

pub(crate) fn print_schedules(list: &[Schedule]) {
    let mut t = table(&[
        "name",
        "cron",
        "zone",
        "action",
        "type",
        "targets",
        "retention",
        "enabled",
        "next run",
        "last run",
    ]);
    for x in list {
        t.add_row(vec![
            x.name.clone(),
            x.cron_expression.clone(),
            x.timezone.clone(),
            match x.action {
                ScheduleAction::Backup => "backup".into(),
                ScheduleAction::RestoreDrill => "restore drill".into(),
            },
            x.backup_type.to_string(),
            x.targets.join(","),
            x.retention_days
                .map(|d| format!("{d}d"))
                .unwrap_or_else(|| "-".into()),
            if x.enabled { "yes" } else { "no" }.into(),
            time(x.next_run),
            time(x.last_run),
        ]);
    }
    println!("{t}");
}

pub(crate) fn keep(a: &ScheduleArgs) -> Option<KeepPolicy> {
    let k = KeepPolicy {
        keep_last: a.keep_last,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
    };
    (k != KeepPolicy::default()).then_some(k)
}

pub async fn schedule(s: &Settings, c: ScheduleCommand) -> Result<u8> {
    let b = book(s).await?;
    let who = s.actor();
    let one = |x: Schedule| -> Result<u8> {
        if s.json {
            print_json(&x)?;
        } else {
            print_schedules(&[x]);
        }
        Ok(0)
    };
    match c {
        ScheduleCommand::List => {
            let list = b.list_schedules().await?;
            if s.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no schedules");
            } else {
                print_schedules(&list);
            }
            Ok(0)
        }
        ScheduleCommand::Create(a) => {
            let Some(cron) = a.cron.clone() else {
                bail!("schedule create needs --cron (e.g. --cron \"0 2 * * *\")");
            };
            let drill = a.drill;
            if a.targets.is_empty() && !drill {
                bail!("schedule create needs --targets (specs, config names or all)");
            }
            let n = NewSchedule {
                name: a.name.clone(),
                cron_expression: cron,
                timezone: a.timezone.clone(),
                backup_type: a.backup_type.as_deref().map(str::parse).transpose()?,
                targets: if a.targets.is_empty() {
                    vec!["all".into()]
                } else {
                    a.targets.clone()
                },
                retention_days: a.retention,
                keep: keep(&a).unwrap_or_default(),
                enabled: Some(!a.disabled),
                action: drill.then_some(ScheduleAction::RestoreDrill),
            };
            one(b.create_schedule(n, &who).await?)
        }
        ScheduleCommand::Update(a) => {
            let p = SchedulePatch {
                name: a.rename.clone(),
                cron_expression: a.cron.clone(),
                timezone: a.timezone.clone(),
                backup_type: a.backup_type.as_deref().map(str::parse).transpose()?,
                targets: (!a.targets.is_empty()).then(|| a.targets.clone()),
                retention_days: a.retention.map(Some),
                keep: keep(&a),
                enabled: None,
            };
            one(b.update_schedule(&a.name, p, &who).await?)
        }
        ScheduleCommand::Delete(n) => {
            b.delete_schedule(&n.name, &who).await?;
            if s.json {
                print_json(&json!({"deleted": n.name}))?;
            } else {
                println!("deleted schedule {}", n.name);
            }
            Ok(0)
        }
        ScheduleCommand::Enable(n) => one(b.set_enabled(&n.name, true, &who).await?),
        ScheduleCommand::Disable(n) => one(b.set_enabled(&n.name, false, &who).await?),
    }
}

/// `status`: health, active jobs, last successful backup, storage usage (the PRD's status
/// output), plus the repository's figures when it can be opened.
pub async fn status(s: &Settings, a: StatusArgs) -> Result<u8> {
    let only = s.config.expand_targets(&a.targets);
    let repo = s.open().await?;
    let cat = s.catalog().await;
    let view = backup_core::service::status::status_view(
        cat.as_ref()
            .map(|c| &**c as &dyn Catalog)
            .map_err(|e| format!("{e:#}")),
        &repo,
        &s.config,
        &only,
        s.verbose,
        Utc::now(),
    )
    .await?;
    print_status(&view, s.verbose, s.json)?;
    Ok(0)
}

/// Prints a status view (local or from the server's `GET /api/v1/backup/status`).
pub fn print_status(
    v: &backup_core::service::status::StatusView,
    verbose: bool,
    json: bool,
) -> Result<()> {
    if let Some(e) = &v.catalog_error {
        eprintln!("warning: catalog unavailable, health not shown: {e}");
    }
    if json {
        return print_json(v);
    }
    let storage = &v.storage_usage;
    if let Some(st) = v.system_status {
        println!("system status    {}", st.as_str());
        for reason in v.reasons.iter().flatten() {
            println!("  {:<9} {}", reason.level.as_str(), reason.message);
        }
        println!(
            "last successful  {}",
            time(v.last_successful_backup.flatten())
        );
        let active = v.active_jobs.clone().unwrap_or_default();
        println!("active jobs      {}", active.len());
        for j in &active {
            println!(
                "  {} {} {} {}",
                &j.id.to_string()[..8],
                j.status.as_str(),
                j.job_type,
                j.target_identifier
            );
        }
        let targets = v.targets.clone().unwrap_or_default();
        if !targets.is_empty() {
            let mut t = table(&["target", "status", "last success", "failures 24h"]);
            for th in &targets {
                t.add_row(vec![
                    th.target.clone(),
                    th.status.as_str().into(),
                    time(th.last_success),
                    th.failures_24h.to_string(),
                ]);
            }
            println!("{t}");
        }
        if verbose {
            print_jobs(v.recent_jobs.as_deref().unwrap_or_default());
        }
        println!("catalog          {}", v.catalog.clone().unwrap_or_default());
    }
    if let Some(avail) = storage.available_gb {
        println!(
            "storage          {} used, {:.1} GB available{}",
            size(v.repo.total_size),
            avail,
            storage
                .filesystem_used_percent
                .map(|p| format!(" (file system {p:.0}% full)"))
                .unwrap_or_default()
        );
    }
    crate::commands::print_repo_status(&v.repo);
    Ok(())
}

fn print_jobs(jobs: &[Job]) {
    let mut t = table(&[
        "job",
        "type",
        "target",
        "status",
        "started",
        "size",
        "retries",
        "snapshot / error",
    ]);
    for j in jobs {
        t.add_row(vec![
            j.id.to_string()[..8].to_string(),
            j.job_type.to_string(),
            j.target_identifier.clone(),
            j.status.as_str().into(),
            time(j.started_at),
            j.size_bytes
                .map(|b| size(b.max(0) as u64))
                .unwrap_or_default(),
            j.retry_count.to_string(),
            match (&j.storage_path, &j.error) {
                (Some(p), _) => p[..8.min(p.len())].to_string(),
                (None, Some(e)) => e.clone(),
                _ => String::new(),
            },
        ]);
    }
    println!("{t}");
}

/// `run-scheduler`: the scheduler in the foreground until SIGINT/SIGTERM (or one pass).
pub async fn run_scheduler(s: &Settings, a: RunSchedulerArgs) -> Result<u8> {
    let repo = s.open().await?;
    let cat = s.catalog().await?;
    let bus = EventBus::from_config(&s.config, &*cat)?;
    let sched = Arc::new(CronScheduler::new(
        cat.clone(),
        repo,
        s.config.clone(),
        bus.clone(),
        Arc::new(SystemClock),
        SchedulerOptions::from_config(&s.config),
    ));
    sched.ensure_config_schedules().await?;
    if a.once {
        let r = sched.tick().await?;
        bus.flush().await;
        let failed = cat
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Failed],
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|j| r.ran.contains(&j.id))
            .count();
        if s.json {
            print_json(&r)?;
        } else {
            println!(
                "recovered {} job(s), fired {} schedule(s), ran {} job(s), {} failed",
                r.recovered.len(),
                r.fired.len(),
                r.ran.len(),
                failed
            );
        }
        return Ok(if failed > 0 { 1 } else { 0 });
    }
    eprintln!(
        "scheduler running (catalog {} {}); stop with Ctrl-C",
        cat.kind(),
        cat.location()
    );
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    sched.run(shutdown).await?;
    Ok(0)
}

pub async fn catalog_cmd(s: &Settings, c: CatalogCommand) -> Result<u8> {
    let cat = s.catalog().await?;
    match c {
        CatalogCommand::Rebuild => {
            let repo = s.open().await?;
            let r = catalog::rebuild(&*cat, &repo, &s.actor()).await?;
            if s.json {
                print_json(&r)?;
            } else {
                println!(
                    "{} snapshots in the repository; {} job record(s) added; {} job(s) name snapshots no longer in the repository",
                    r.snapshots, r.jobs_added, r.jobs_missing_snapshot
                );
            }
        }
        CatalogCommand::Jobs(a) => {
            let jobs = cat
                .list_jobs(&JobFilter {
                    statuses: a
                        .status
                        .as_deref()
                        .map(str::parse::<JobStatus>)
                        .transpose()?
                        .into_iter()
                        .collect(),
                    limit: a.limit,
                    ..Default::default()
                })
                .await?;
            if s.json {
                print_json(&jobs)?;
            } else {
                print_jobs(&jobs);
            }
        }
        CatalogCommand::Audit { limit } => {
            let entries = cat.list_audit(limit).await?;
            if s.json {
                print_json(&entries)?;
            } else {
                let mut t = table(&["when", "who", "action", "object"]);
                for e in entries {
                    t.add_row(vec![time(Some(e.at)), e.actor, e.action, e.object]);
                }
                println!("{t}");
            }
        }
    }
    Ok(0)
}

pub async fn restore_point(s: &Settings, c: RestorePointCommand) -> Result<u8> {
    let cat = s.catalog().await?;
    match c {
        RestorePointCommand::List => {
            let list = cat.list_restore_points().await?;
            if s.json {
                print_json(&list)?;
            } else {
                let mut t = table(&[
                    "name",
                    "created",
                    "snapshots",
                    "verified",
                    "verification date",
                    "description",
                ]);
                for r in list {
                    t.add_row(vec![
                        r.name,
                        time(Some(r.created_at)),
                        r.snapshot_ids
                            .iter()
                            .map(|i| i[..8.min(i.len())].to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        if r.verified { "yes" } else { "no" }.into(),
                        time(r.verification_date),
                        r.description.unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
        RestorePointCommand::Delete(n) => {
            let rp = cat.get_restore_point(&n.name).await?;
            cat.delete_restore_point(rp.id).await?;
            cat.audit(catalog::AuditEntry::new(
                Utc::now(),
                &s.actor(),
                "restore_point.delete",
                rp.name.clone(),
                json!({"id": rp.id}),
            ))
            .await?;
            if s.json {
                print_json(&json!({"deleted": rp.name}))?;
            } else {
                println!("deleted restore point {}", rp.name);
            }
        }
        RestorePointCommand::Create(a) => {
            if a.snapshots.is_empty() == a.targets.is_empty() {
                bail!("give --snapshots or --targets (one of them)");
            }
            let repo = s.open().await?;
            let mut ids: Vec<String> = Vec::new();
            for spec in &a.snapshots {
                ids.push(repo.find_snapshot(spec).await?.id.to_hex());
            }
            if !a.targets.is_empty() {
                let snaps = repo.snapshots().await?;
                for t in s.config.expand_targets(&a.targets) {
                    let want: String = t
                        .parse::<backup_core::target::TargetSpec>()
                        .map(|x| x.to_string())
                        .unwrap_or(t.clone());
                    let newest = snaps
                        .iter()
                        .filter(|x| x.targets.contains(&want))
                        .max_by_key(|x| x.time)
                        .with_context(|| format!("no snapshot of target {t}"))?;
                    ids.push(newest.id.to_hex());
                }
            }
            ids.dedup();
            let rp = catalog::create_restore_point(
                &*cat,
                &a.name,
                ids,
                a.description.clone(),
                &s.actor(),
            )
            .await?;
            if s.json {
                print_json(&rp)?;
            } else {
                println!(
                    "restore point {} holds {} snapshot(s)",
                    rp.name,
                    rp.snapshot_ids.len()
                );
            }
        }
    }
    Ok(0)
}

/// Starts the catalog record of a plain `backup`. Any catalog problem is a warning: a backup
/// never fails because its record cannot be written.
pub async fn record_start(
    s: &Settings,
    targets: &[backup_core::target::TargetSpec],
    backup_type: Option<&str>,
    description: Option<String>,
) -> Option<JobRecorder> {
    let id = targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let jt = if backup_type == Some("full") {
        JobType::Full
    } else {
        JobType::Incremental
    };
    let retries = SchedulerOptions::from_config(&s.config).max_retries;
    let r = async {
        let cat: Arc<dyn Catalog> = s.catalog().await?;
        anyhow::Ok(JobRecorder::start(cat, jt, &id, &s.actor(), description, retries).await?)
    }
    .await;
    match r {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("warning: the backup is not recorded in the catalog: {e:#}");
            None
        }
    }
}

/// Stores the outcome of a plain `backup` in its catalog record (warning on failure).
pub async fn record_finish(
    rec: Option<JobRecorder>,
    result: &backup_core::Result<backup_core::Snapshot>,
) {
    let Some(rec) = rec else { return };
    let outcome = match result {
        Ok(snap) => Ok(snap),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = rec.finish(outcome).await {
        eprintln!("warning: the backup's catalog record was not updated: {e}");
    }
}

/// `event NAME --payload JSON`: queues the backups a consumed event asks for.
pub async fn event(s: &Settings, a: crate::cli::EventArgs) -> Result<u8> {
    let payload: serde_json::Value =
        serde_json::from_str(&a.payload).context("--payload: not JSON")?;
    let cat = s.catalog().await?;
    let repo = s.open().await?;
    let bus = EventBus::from_config(&s.config, &*cat)?;
    let b = CronScheduler::new(
        cat,
        repo,
        s.config.clone(),
        bus,
        Arc::new(SystemClock),
        SchedulerOptions::from_config(&s.config),
    );
    let jobs = b
        .handle_event(
            &backup_core::events::IncomingEvent {
                event: a.event.clone(),
                payload,
            },
            &s.actor(),
        )
        .await?;
    print_json(&json!({"event": a.event, "accepted": true,
        "job_ids": jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        "targets": jobs.iter().map(|j| j.target_identifier.clone()).collect::<Vec<_>>()}))?;
    Ok(0)
}

/// `metrics`: the Prometheus text the server serves at `/metrics`, computed locally.
pub async fn metrics(s: &Settings) -> Result<u8> {
    let cat = s.catalog().await?;
    let opts = HealthOptions::from_config(&s.config);
    let h = health::health(&*cat, None, &opts, Utc::now()).await?;
    print!(
        "{}",
        backup_core::service::metrics::render(&*cat, &h).await?
    );
    Ok(0)
}
