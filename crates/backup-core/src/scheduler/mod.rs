//! The scheduler: cron schedules → jobs → real backups, retries, retention, restore drills.
//!
//! One pass ([`CronScheduler::tick`]):
//! 1. **recover** — a `running` job whose owner is gone (a dead process on this host, or no
//!    heartbeat for `stale_after`) is marked `failed` (event `backup.job.failed`, audit
//!    `job.recovered`) and, with retries left, queued again: none stays `running` forever;
//! 2. **fire** — every enabled schedule whose `next_run` has passed fires *once*, however many
//!    runs were missed while nothing was running (stated policy: "run once on start if any
//!    was missed"); the firing is claimed by a compare-and-set on `next_run`, so with several
//!    instances exactly one fires it. A backup schedule queues one job per target; a restore
//!    drill runs at once;
//! 3. **run** — pending jobs are claimed (`FOR UPDATE SKIP LOCKED` in PostgreSQL) and run, at
//!    most `concurrency` at a time per instance. A failed attempt with retries left goes back
//!    to `pending` with `retry_count` + 1 and `not_before` = now + `retry_backoff` ×
//!    2^(retry_count − 1); the last failure leaves the job `failed` and publishes
//!    `backup.job.failed`. A completed job is followed by retention for its target.
//!
//! Time comes from an injected [`Clock`] (tests move it by hand); sleeping between passes and
//! webhook retries use real time. [`CronScheduler::run`] loops until a shutdown future
//! resolves, then stops claiming, lets running jobs finish and flushes events.
//!
//! Retention ([`CronScheduler::apply_retention`]) after each completed job, for that job's
//! target: the schedule's keep rules (`keep_last/daily/weekly/monthly`, in the schedule's
//! zone) and `retention_days` (kept: snapshots within that many days of the newest), a
//! snapshot's or job's `retention_until` in the future, and any snapshot named by a restore
//! point are kept; the rest are forgotten ([`crate::engine::forget::apply_policy`]) and then a
//! prune runs. Prune takes the repository's exclusive lock, so it never runs while a backup
//! holds its shared lock: when the repository is busy it is skipped and the next job retries.

pub mod cron;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::catalog::{
    self, AuditEntry, Catalog, Job, JobFilter, JobStatus, JobType, KeepPolicy, NewSchedule,
    RestoreJob, RestorePoint, Schedule, ScheduleAction, SchedulePatch,
};
use crate::config::Config;
use crate::engine::backup::{self, BackupOptions};
use crate::engine::{forget, prune, restore};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, EventBus, IncomingEvent};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::target::TargetSpec;
use crate::BackupType;

pub use self::cron::CronExpr;

/// Where "now" comes from. Tests inject a [`ManualClock`].
pub trait Clock: Send + Sync {
    /// The current time (UTC).
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told (tests).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at `t`.
    pub fn new(t: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(t)))
    }
    /// Sets the time.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
    /// Moves the time forward.
    pub fn advance(&self, d: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Scheduler settings; [`SchedulerOptions::from_config`] reads the config file's
/// `scheduler:` section.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Jobs run at once by this instance. Default 2.
    pub concurrency: usize,
    /// Retries after a failed attempt. Default 3.
    pub max_retries: u32,
    /// First retry delay; doubles per retry. Default 60 s.
    pub retry_backoff: Duration,
    /// Heartbeat period of a running job (real time). Default 10 s.
    pub heartbeat_every: StdDuration,
    /// A running job without heartbeat for this long (clock time) is taken as crashed.
    /// Default 60 s.
    pub stale_after: Duration,
    /// Pause between passes of [`CronScheduler::run`] (real time). Default 5 s.
    pub poll_every: StdDuration,
    /// Scratch folder for restore drills. Default the system temp dir.
    pub scratch_dir: PathBuf,
    /// Worker name stored as job `owner` (`host:pid:<random>`).
    pub owner: String,
    /// Name written as `requested_by`/audit actor for scheduled work. Default `scheduler`.
    pub actor: String,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            concurrency: 2,
            max_retries: 3,
            retry_backoff: Duration::seconds(60),
            heartbeat_every: StdDuration::from_secs(10),
            stale_after: Duration::seconds(60),
            poll_every: StdDuration::from_secs(5),
            scratch_dir: std::env::temp_dir(),
            owner: default_owner(),
            actor: "scheduler".into(),
        }
    }
}

/// `host:pid:<8 hex>`: identifies a worker; the host and pid let recovery tell a dead local
/// process at once.
pub fn default_owner() -> String {
    format!(
        "{}:{}:{}",
        crate::repository::lock::hostname(),
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

impl SchedulerOptions {
    /// Defaults overridden by `cfg.scheduler`.
    pub fn from_config(cfg: &Config) -> Self {
        let d = SchedulerOptions::default();
        let s = &cfg.scheduler;
        SchedulerOptions {
            concurrency: s.concurrency.unwrap_or(d.concurrency).max(1),
            max_retries: s.max_retries.unwrap_or(d.max_retries),
            retry_backoff: s
                .retry_backoff_secs
                .map(|v| Duration::seconds(v as i64))
                .unwrap_or(d.retry_backoff),
            scratch_dir: s.scratch_dir.clone().unwrap_or(d.scratch_dir.clone()),
            ..d
        }
    }
}

/// A request for an immediate backup (PRD `POST /api/v1/backup/create`): one job per target.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct JobRequest {
    /// Target specs or config names (`all` = every named target).
    pub targets: Vec<String>,
    /// Default incremental.
    #[serde(default, rename = "type")]
    pub job_type: Option<JobType>,
    /// PRD `description`.
    #[serde(default)]
    pub description: Option<String>,
    /// PRD `retention_days`: sets `retention_until`.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Retries (default: the scheduler's `max_retries`).
    #[serde(default)]
    pub max_retries: Option<u32>,
}

/// What one [`CronScheduler::tick`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    /// Jobs recovered from a crashed worker.
    pub recovered: Vec<Uuid>,
    /// Schedules that fired.
    pub fired: Vec<String>,
    /// Jobs queued by firing schedules.
    pub queued: Vec<Uuid>,
    /// Jobs this instance ran (whatever the outcome).
    pub ran: Vec<Uuid>,
}

/// Schedule CRUD, job submission and one scheduling pass: what the CLI and the HTTP server
/// call. Implemented by [`CronScheduler`]. `who` is the user or API token name recorded in the
/// audit log and in `created_by`/`requested_by`.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// All schedules, by name.
    async fn list_schedules(&self) -> Result<Vec<Schedule>>;
    /// Creates a schedule (validates cron, zone and targets; computes `next_run`).
    /// Errors: [`Error::InvalidInput`], [`Error::Conflict`] (name taken).
    async fn create_schedule(&self, new: NewSchedule, who: &str) -> Result<Schedule>;
    /// Changes a schedule (by name or id); recomputes `next_run`.
    async fn update_schedule(
        &self,
        name_or_id: &str,
        patch: SchedulePatch,
        who: &str,
    ) -> Result<Schedule>;
    /// Deletes a schedule (its jobs stay).
    async fn delete_schedule(&self, name_or_id: &str, who: &str) -> Result<()>;
    /// Enables or disables a schedule (a disabled one has no `next_run`).
    async fn set_enabled(&self, name_or_id: &str, enabled: bool, who: &str) -> Result<Schedule>;
    /// Queues one pending job per target; returns them.
    async fn submit(&self, req: JobRequest, who: &str) -> Result<Vec<Job>>;
    /// Handles a consumed event (`scenario.deployed`, `postgres.schema_updated`) by queueing
    /// jobs.
    async fn handle_event(&self, event: &IncomingEvent, who: &str) -> Result<Vec<Job>>;
    /// One pass: recover, fire due schedules, run pending jobs (returns when they finished).
    async fn tick(&self) -> Result<TickReport>;
}

/// The scheduler over a [`Catalog`] and a [`Repository`]. See the module docs.
///
/// ```no_run
/// # async fn demo(repo: std::sync::Arc<backup_core::Repository>) -> backup_core::Result<()> {
/// use std::sync::Arc;
/// use backup_core::{catalog, config::Config, events::EventBus, scheduler::*};
/// let cfg = Config::load_with_env(None)?;
/// let cat = catalog::open(&catalog::CatalogOptions::from_config(&cfg)).await?;
/// let bus = EventBus::from_config(&cfg, &*cat)?;
/// let s = Arc::new(CronScheduler::new(cat, repo, cfg.clone(), bus, Arc::new(SystemClock),
///     SchedulerOptions::from_config(&cfg)));
/// s.ensure_config_schedules().await?;
/// s.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
pub struct CronScheduler {
    catalog: Arc<dyn Catalog>,
    repo: Arc<Repository>,
    config: Config,
    events: EventBus,
    clock: Arc<dyn Clock>,
    opts: SchedulerOptions,
    slots: Arc<tokio::sync::Semaphore>,
    stopping: AtomicBool,
    health: crate::health::HealthMonitor,
}

fn err_text(e: &Error) -> String {
    e.to_string()
}

impl CronScheduler {
    /// A scheduler; nothing runs until [`CronScheduler::tick`] or [`CronScheduler::run`].
    pub fn new(
        catalog: Arc<dyn Catalog>,
        repo: Arc<Repository>,
        config: Config,
        events: EventBus,
        clock: Arc<dyn Clock>,
        opts: SchedulerOptions,
    ) -> CronScheduler {
        let slots = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
        CronScheduler {
            health: crate::health::HealthMonitor::new(events.clone()),
            catalog,
            repo,
            config,
            events,
            clock,
            opts,
            slots,
            stopping: AtomicBool::new(false),
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The repository.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The options.
    pub fn options(&self) -> &SchedulerOptions {
        &self.opts
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn audit(
        &self,
        who: &str,
        action: &str,
        object: impl Into<String>,
        details: serde_json::Value,
    ) {
        let e = AuditEntry::new(self.now(), who, action, object, details);
        if let Err(err) = self.catalog.audit(e).await {
            tracing::warn!("audit log: {err}");
        }
    }

    /// Creates the config file's schedules (updating ones that exist by name) and, unless
    /// `scheduler.default_schedules: false`, the defaults when missing: `daily-full` (full
    /// backup of every named target, `0 2 * * *`) and `weekly-restore-drill` (`0 4 * * 0`).
    /// Default schedules are skipped when the config names no target.
    pub async fn ensure_config_schedules(&self) -> Result<()> {
        let mut wanted: Vec<NewSchedule> = Vec::new();
        let sc = &self.config.scheduler;
        let tz = sc.timezone.clone().unwrap_or_else(|| "UTC".into());
        if sc.default_schedules.unwrap_or(true) && !self.config.targets.is_empty() {
            wanted.push(NewSchedule {
                name: "daily-full".into(),
                cron_expression: sc.daily_cron.clone().unwrap_or_else(|| "0 2 * * *".into()),
                timezone: Some(tz.clone()),
                backup_type: Some(JobType::Full),
                targets: vec!["all".into()],
                retention_days: Some(30),
                ..Default::default()
            });
            wanted.push(NewSchedule {
                name: "weekly-restore-drill".into(),
                cron_expression: sc.drill_cron.clone().unwrap_or_else(|| "0 4 * * 0".into()),
                timezone: Some(tz.clone()),
                targets: vec!["all".into()],
                action: Some(ScheduleAction::RestoreDrill),
                ..Default::default()
            });
        }
        for s in &self.config.schedules {
            wanted.push(NewSchedule {
                name: s.name.clone(),
                cron_expression: s.cron.clone(),
                timezone: s.timezone.clone(),
                backup_type: s.backup_type.as_deref().map(str::parse).transpose()?,
                targets: s.targets.clone(),
                retention_days: s.retention_days.map(|d| d as i32),
                keep: KeepPolicy {
                    keep_last: s.keep_last,
                    keep_daily: s.keep_daily,
                    keep_weekly: s.keep_weekly,
                    keep_monthly: s.keep_monthly,
                },
                enabled: s.enabled,
                action: None,
            });
        }
        let existing: HashMap<String, Schedule> = self
            .catalog
            .list_schedules()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        for n in wanted {
            let from_file = self.config.schedules.iter().any(|s| s.name == n.name);
            match existing.get(&n.name) {
                None => match self.create_schedule(n, "config").await {
                    Ok(_) | Err(Error::Conflict(_)) => {}
                    Err(e) => return Err(e),
                },
                Some(old) if from_file => {
                    let patch = SchedulePatch {
                        cron_expression: Some(n.cron_expression.clone()),
                        timezone: n.timezone.clone(),
                        backup_type: n.backup_type,
                        targets: Some(n.targets.clone()),
                        retention_days: Some(n.retention_days),
                        keep: Some(n.keep.clone()),
                        enabled: n.enabled,
                        name: None,
                    };
                    let unchanged = old.cron_expression == n.cron_expression
                        && Some(&old.timezone) == n.timezone.as_ref().or(Some(&old.timezone))
                        && old.targets == n.targets
                        && old.retention_days == n.retention_days
                        && old.keep == n.keep
                        && n.backup_type.is_none_or(|t| t == old.backup_type)
                        && n.enabled.is_none_or(|e| e == old.enabled);
                    if !unchanged {
                        self.update_schedule(&old.id.to_string(), patch, "config")
                            .await?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn validate_targets(&self, targets: &[String]) -> Result<Vec<String>> {
        validate_targets(&self.config, targets)
    }

    /// The schedule CRUD part of this scheduler.
    pub fn book(&self) -> ScheduleBook {
        ScheduleBook::new(
            self.catalog.clone(),
            self.config.clone(),
            self.clock.clone(),
        )
    }

    /// Runs jobs until none is claimable; at most `concurrency` at once (shared with other
    /// calls on this instance). Returns the ids of the jobs run.
    pub async fn run_pending(&self) -> Result<Vec<Uuid>> {
        let mut set = tokio::task::JoinSet::new();
        let mut ran = Vec::new();
        let mut exhausted = false;
        loop {
            while !exhausted && !self.stopping.load(Ordering::SeqCst) {
                let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                    break;
                };
                match self.catalog.claim_job(&self.opts.owner, self.now()).await? {
                    Some(job) => {
                        ran.push(job.id);
                        let me = self.shallow();
                        set.spawn(async move {
                            let _permit = permit;
                            if let Err(e) = me.execute(job).await {
                                tracing::warn!("{e}");
                            }
                        });
                    }
                    None => exhausted = true,
                }
            }
            if set.join_next().await.is_none() {
                if exhausted || self.stopping.load(Ordering::SeqCst) {
                    break;
                }
                // All slots were taken by other calls: wait a moment, then try again.
                tokio::time::sleep(StdDuration::from_millis(50)).await;
                continue;
            }
            // A slot is free again: new work may have become claimable.
            exhausted = false;
            if self.stopping.load(Ordering::SeqCst) {
                while set.join_next().await.is_some() {}
                break;
            }
        }
        Ok(ran)
    }

    /// A cheap handle to this scheduler for spawned tasks.
    fn shallow(&self) -> Arc<CronScheduler> {
        Arc::new(CronScheduler {
            catalog: self.catalog.clone(),
            repo: self.repo.clone(),
            config: self.config.clone(),
            events: self.events.clone(),
            clock: self.clock.clone(),
            opts: self.opts.clone(),
            slots: self.slots.clone(),
            stopping: AtomicBool::new(false),
            health: self.health.clone(),
        })
    }

    /// Fails `running` jobs whose worker is gone and queues their retry. A worker is gone
    /// when it ran on this host and its process no longer exists, or when its heartbeat is
    /// older than `stale_after`.
    pub async fn recover(&self) -> Result<Vec<Uuid>> {
        let now = self.now();
        let running = self
            .catalog
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Running],
                ..Default::default()
            })
            .await?;
        let mut out = Vec::new();
        for job in running {
            let owner = job.owner.clone().unwrap_or_default();
            if owner == self.opts.owner {
                continue;
            }
            let dead_here = owner_is_dead_local(&owner);
            let stale = job
                .heartbeat_at
                .or(job.started_at)
                .is_none_or(|h| now - h > self.opts.stale_after);
            if !(dead_here || stale) {
                continue;
            }
            let why = if dead_here {
                format!("interrupted: worker {owner} is no longer running")
            } else {
                format!(
                    "interrupted: worker {owner} sent no heartbeat since {}",
                    job.heartbeat_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                )
            };
            let mut j = job.clone();
            j.error = Some(why.clone());
            push_attempt(&mut j, now, &why);
            let retry = j.retry_count < j.max_retries;
            if retry {
                j.retry_count += 1;
                j.status = JobStatus::Pending;
                j.not_before = Some(now);
            } else {
                j.status = JobStatus::Failed;
                j.completed_at = Some(now);
            }
            j.owner = None;
            j.heartbeat_at = None;
            if self
                .catalog
                .update_job_if(&j, JobStatus::Running, job.owner.as_deref())
                .await?
            {
                tracing::warn!(
                    "job {} ({}) {why}; {}",
                    j.id,
                    j.target_identifier,
                    if retry {
                        "queued again"
                    } else {
                        "no retries left"
                    }
                );
                let mut failed = j.clone();
                failed.status = JobStatus::Failed;
                self.events.publish(Event::job_failed(&failed, now, retry));
                self.audit(
                    &self.opts.actor,
                    "job.recovered",
                    j.id.to_string(),
                    json!({"error": why, "retry": retry}),
                )
                .await;
                out.push(j.id);
            }
        }
        Ok(out)
    }

    /// Fires due schedules (see the module docs); returns the fired schedules' names and the
    /// jobs queued. Restore drills run before this returns.
    pub async fn fire_due(&self) -> Result<(Vec<String>, Vec<Uuid>)> {
        let now = self.now();
        let mut fired = Vec::new();
        let mut queued = Vec::new();
        for s in self.catalog.list_schedules().await? {
            if !s.enabled {
                continue;
            }
            let expr = match CronExpr::parse_in(&s.cron_expression, &s.timezone) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("schedule {}: {e}", s.name);
                    continue;
                }
            };
            match s.next_run {
                None => {
                    // Newly created or enabled without a next run: plan it.
                    self.catalog
                        .advance_schedule(s.id, None, None, expr.next_after(now))
                        .await?;
                }
                Some(due) if due <= now => {
                    let next = expr.next_after(now);
                    if !self
                        .catalog
                        .advance_schedule(s.id, Some(due), Some(now), next)
                        .await?
                    {
                        continue; // another instance fired it
                    }
                    fired.push(s.name.clone());
                    match s.action {
                        ScheduleAction::Backup => {
                            let req = JobRequest {
                                targets: s.targets.clone(),
                                job_type: Some(s.backup_type),
                                description: Some(format!("schedule {}", s.name)),
                                retention_days: s.retention_days.map(|d| d.max(0) as u32),
                                max_retries: None,
                            };
                            match self.queue(req, &self.opts.actor, Some(&s)).await {
                                Ok(jobs) => queued.extend(jobs.iter().map(|j| j.id)),
                                Err(e) => tracing::warn!("schedule {}: {e}", s.name),
                            }
                        }
                        ScheduleAction::RestoreDrill => {
                            if let Err(e) = self.restore_drill(&s.targets, &self.opts.actor).await {
                                tracing::warn!("restore drill {}: {e}", s.name);
                            }
                        }
                    }
                }
                Some(_) => {}
            }
        }
        Ok((fired, queued))
    }

    async fn queue(
        &self,
        req: JobRequest,
        who: &str,
        schedule: Option<&Schedule>,
    ) -> Result<Vec<Job>> {
        let specs = self.validate_targets(&req.targets)?;
        let now = self.now();
        let mut jobs = Vec::new();
        for spec in specs {
            let mut j = Job::new(req.job_type.unwrap_or_default(), &spec, now);
            j.max_retries = req.max_retries.unwrap_or(self.opts.max_retries) as i32;
            j.requested_by = who.to_string();
            j.schedule_id = schedule.map(|s| s.id);
            if let Some(d) = req.retention_days {
                if d > backup::MAX_RETENTION_DAYS {
                    return Err(Error::InvalidInput(format!(
                        "retention days must be at most {}",
                        backup::MAX_RETENTION_DAYS
                    )));
                }
                j.retention_until = Some(now + Duration::days(d as i64));
                j.metadata["retention_days"] = json!(d);
            }
            if let Some(d) = &req.description {
                j.metadata["description"] = json!(d);
            }
            if let Some(s) = schedule {
                j.metadata["schedule"] = json!(s.name);
            }
            self.catalog.insert_job(&j).await?;
            jobs.push(j);
        }
        Ok(jobs)
    }

    /// Runs one claimed job to its end (completed, pending for a retry, or failed) and
    /// returns it as stored.
    pub async fn execute(&self, mut job: Job) -> Result<Job> {
        let owner = job.owner.clone();
        let hb = {
            let (cat, clock, id, o, every) = (
                self.catalog.clone(),
                self.clock.clone(),
                job.id,
                owner.clone().unwrap_or_default(),
                self.opts.heartbeat_every,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match cat.heartbeat(id, &o, clock.now()).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::warn!("heartbeat of job {id}: {e}"),
                    }
                }
            })
        };
        self.events.publish(Event::job_started(&job, self.now()));
        let result = self.backup_job(&job).await;
        hb.abort();
        let now = self.now();
        let mut retry = false;
        match &result {
            Ok(snap) => {
                catalog::apply_snapshot(&mut job, snap);
                job.status = JobStatus::Completed;
                job.completed_at = Some(now);
                job.error = None;
            }
            Err(e) => {
                let msg = err_text(e);
                job.error = Some(msg.clone());
                push_attempt(&mut job, now, &msg);
                if job.retry_count < job.max_retries {
                    retry = true;
                    job.retry_count += 1;
                    job.status = JobStatus::Pending;
                    let factor = 1i32 << (job.retry_count - 1).clamp(0, 20);
                    job.not_before = Some(now + self.opts.retry_backoff * factor);
                    job.owner = None;
                    job.heartbeat_at = None;
                } else {
                    job.status = JobStatus::Failed;
                    job.completed_at = Some(now);
                }
            }
        }
        if !self
            .catalog
            .update_job_if(&job, JobStatus::Running, owner.as_deref())
            .await?
        {
            return Err(Error::Conflict(format!(
                "job {}: taken over by another worker while it ran (heartbeat too old?)",
                job.id
            )));
        }
        match &result {
            Ok(_) => {
                self.events.publish(Event::job_completed(&job, now));
                self.audit(
                    &job.requested_by.clone(),
                    "backup",
                    job.id.to_string(),
                    json!({"target": job.target_identifier, "snapshot": job.storage_path}),
                )
                .await;
                if let Err(e) = self.apply_retention(&job).await {
                    tracing::warn!("retention after job {}: {e}", job.id);
                }
            }
            Err(e) => {
                if retry {
                    tracing::warn!(
                        "job {} ({}) attempt {} failed, retrying after {}: {e}",
                        job.id,
                        job.target_identifier,
                        job.retry_count,
                        job.not_before.map(|t| t.to_rfc3339()).unwrap_or_default()
                    );
                } else {
                    self.events.publish(Event::job_failed(&job, now, false));
                    self.audit(
                        &job.requested_by.clone(),
                        "backup",
                        job.id.to_string(),
                        json!({"target": job.target_identifier, "error": job.error}),
                    )
                    .await;
                }
            }
        }
        Ok(job)
    }

    async fn backup_job(&self, job: &Job) -> Result<crate::Snapshot> {
        let specs: Vec<TargetSpec> = self
            .config
            .expand_target(&job.target_identifier)
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_>>()?;
        let mut opts = BackupOptions::new(specs.clone());
        opts.tags = vec![format!("job:{}", job.id)];
        opts.description = job.meta_str("description").map(str::to_string);
        opts.retention_days = job
            .metadata
            .get("retention_days")
            .and_then(|v| v.as_u64())
            .map(|d| d as u32);
        match job.job_type {
            JobType::Full => opts.backup_type = Some(BackupType::Full),
            JobType::Incremental => {}
            JobType::Differential => {
                let want = spec_key(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
                let host = crate::repository::lock::hostname();
                let parent = self
                    .repo
                    .snapshots()
                    .await?
                    .into_iter()
                    .filter(|s| {
                        s.backup_type == BackupType::Full
                            && s.hostname == host
                            && spec_key(&s.targets) == want
                    })
                    .max_by_key(|s| s.time);
                match parent {
                    Some(p) => {
                        opts.parent = Some(p.id.to_hex());
                        opts.backup_type = Some(BackupType::Incremental);
                    }
                    // No full yet: this one reads everything.
                    None => opts.backup_type = Some(BackupType::Full),
                }
            }
        }
        backup::backup(&self.repo, &opts, &NoProgress).await
    }

    /// Applies retention for `job`'s target (see the module docs) and prunes when something
    /// was forgotten. Returns the forgotten snapshot ids.
    pub async fn apply_retention(&self, job: &Job) -> Result<Vec<String>> {
        let schedule = match job.schedule_id {
            Some(id) => self.catalog.get_schedule(&id.to_string()).await.ok(),
            None => None,
        };
        let Some(schedule) = schedule else {
            return Ok(Vec::new());
        };
        let keep = &schedule.keep;
        let policy = forget::RetentionPolicy {
            keep_last: keep.keep_last,
            keep_daily: keep.keep_daily,
            keep_weekly: keep.keep_weekly,
            keep_monthly: keep.keep_monthly,
            keep_within: schedule
                .retention_days
                .map(|d| Duration::days(d.max(0) as i64)),
            timezone: cron::parse_tz(&schedule.timezone).ok(),
            ..Default::default()
        };
        if policy.is_empty() {
            return Ok(Vec::new());
        }
        let want = spec_key(&self.config.expand_target(&job.target_identifier));
        let now = self.now();
        let mut protected = catalog::protected_snapshots(&*self.catalog).await?;
        for j in self
            .catalog
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Completed],
                target_identifier: Some(job.target_identifier.clone()),
                ..Default::default()
            })
            .await?
        {
            if j.retention_until.is_some_and(|t| t > now) {
                if let Some(p) = j.storage_path {
                    protected.insert(p);
                }
            }
        }
        let removed = self
            .repo
            .locked(false, "forget", async {
                let snaps: Vec<crate::Snapshot> = self
                    .repo
                    .snapshots()
                    .await?
                    .into_iter()
                    .filter(|s| spec_key(&s.targets) == want)
                    .collect();
                let mut removed = Vec::new();
                for d in forget::apply_policy(&snaps, &policy, now) {
                    if d.keep || protected.contains(&d.id) {
                        continue;
                    }
                    self.repo.delete_snapshot(&crate::Id::parse(&d.id)?).await?;
                    removed.push(d.id);
                }
                Ok(removed)
            })
            .await?;
        if removed.is_empty() {
            return Ok(removed);
        }
        tracing::info!(
            "retention for {}: forgot {} snapshot(s)",
            job.target_identifier,
            removed.len()
        );
        self.audit(
            &self.opts.actor,
            "forget",
            job.target_identifier.clone(),
            json!({"snapshots": removed, "schedule": schedule.name}),
        )
        .await;
        self.mark_forgotten(&removed, now).await;
        match prune::prune(&self.repo, &prune::PruneOptions::default(), &NoProgress).await {
            Ok(r) => {
                self.audit(
                    &self.opts.actor,
                    "prune",
                    self.repo.store().location(),
                    serde_json::to_value(&r).unwrap_or_default(),
                )
                .await;
            }
            Err(e) if e.kind() == ErrorKind::Locked => {
                tracing::info!("prune deferred: the repository is in use ({e})");
            }
            Err(e) => return Err(e),
        }
        Ok(removed)
    }

    async fn mark_forgotten(&self, ids: &[String], now: DateTime<Utc>) {
        let ids: HashSet<&String> = ids.iter().collect();
        let Ok(jobs) = self
            .catalog
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Completed],
                ..Default::default()
            })
            .await
        else {
            return;
        };
        for mut j in jobs {
            if j.storage_path.as_ref().is_some_and(|p| ids.contains(p)) {
                let owner = j.owner.clone();
                j.metadata["forgotten_at"] = json!(now);
                let _ = self
                    .catalog
                    .update_job_if(&j, JobStatus::Completed, owner.as_deref())
                    .await;
            }
        }
    }

    /// Restore drill: restores the newest snapshot of each target (`targets` as in a
    /// schedule; `all` or empty = every target that has a snapshot) into a scratch folder with
    /// verification, removes the folder, and records the result on the restore point
    /// `restore-drill` (created when missing; its snapshots are replaced) and as a restore job
    /// (`drill = true`). Publishes `restore.completed`.
    pub async fn restore_drill(&self, targets: &[String], who: &str) -> Result<RestoreJob> {
        let now = self.now();
        let snaps = self.repo.snapshots().await?;
        let wanted: Option<HashSet<Vec<String>>> = if targets.is_empty()
            || targets.iter().any(|t| t == "all") && self.config.targets.is_empty()
        {
            None
        } else {
            Some(
                self.config
                    .expand_targets(targets)
                    .into_iter()
                    .map(|s| spec_key(&[s]))
                    .collect(),
            )
        };
        let mut newest: HashMap<Vec<String>, crate::Snapshot> = HashMap::new();
        for s in snaps {
            let k = spec_key(&s.targets);
            if wanted.as_ref().is_some_and(|w| !w.contains(&k)) {
                continue;
            }
            if newest.get(&k).is_none_or(|o| s.time > o.time) {
                newest.insert(k, s);
            }
        }
        let mut chosen: Vec<crate::Snapshot> = newest.into_values().collect();
        chosen.sort_by(|a, b| a.targets.cmp(&b.targets));
        let mut rj = RestoreJob {
            id: Uuid::new_v4(),
            restore_point_id: None,
            backup_job_id: None,
            snapshot_ids: chosen.iter().map(|s| s.id.to_hex()).collect(),
            targets: chosen.iter().flat_map(|s| s.targets.clone()).collect(),
            destination: None,
            status: JobStatus::Running,
            drill: true,
            created_at: now,
            started_at: Some(now),
            completed_at: None,
            error: None,
            requested_by: who.into(),
            metadata: json!({}),
        };
        let scratch = self.opts.scratch_dir.join(format!("dbm-drill-{}", rj.id));
        rj.destination = Some(scratch.display().to_string());
        self.catalog.insert_restore_job(&rj).await?;
        let mut results = Vec::new();
        let mut errors = Vec::new();
        if chosen.is_empty() {
            errors.push("no snapshot to test".to_string());
        }
        for (i, s) in chosen.iter().enumerate() {
            let dest = scratch.join(i.to_string());
            let mut o = restore::RestoreOptions::new(&dest);
            o.verify = true;
            let r = restore::restore(&self.repo, s, &o, &NoProgress)
                .await
                .and_then(|r| r.into_result());
            match r {
                Ok(sum) => results.push(json!({"snapshot": s.id.to_hex(), "targets": s.targets, "ok": true,
                    "files": sum.files, "bytes": sum.bytes_written, "files_verified": sum.files_verified})),
                Err(e) => {
                    errors.push(format!("snapshot {}: {e}", s.id.short()));
                    results.push(json!({"snapshot": s.id.to_hex(), "targets": s.targets, "ok": false, "error": e.to_string()}));
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&scratch) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("restore drill: removing {}: {e}", scratch.display());
            }
        }
        let done = self.now();
        let ok = errors.is_empty();
        rj.status = if ok {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        rj.completed_at = Some(done);
        rj.error = (!ok).then(|| errors.join("; "));
        rj.metadata = json!({"results": results});
        // Record the result on the restore point.
        let job_ids: Vec<Uuid> = {
            let ids: HashSet<&String> = rj.snapshot_ids.iter().collect();
            self.catalog
                .list_jobs(&JobFilter {
                    statuses: vec![JobStatus::Completed],
                    ..Default::default()
                })
                .await?
                .into_iter()
                .filter(|j| j.storage_path.as_ref().is_some_and(|p| ids.contains(p)))
                .map(|j| j.id)
                .collect()
        };
        let rp = match self.catalog.get_restore_point(DRILL_RESTORE_POINT).await {
            Ok(mut rp) => {
                rp.snapshot_ids = rj.snapshot_ids.clone();
                rp.backup_job_ids = job_ids;
                rp.verified = ok;
                rp.verification_date = Some(done);
                self.catalog.update_restore_point(&rp).await?;
                rp
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let rp = RestorePoint {
                    id: Uuid::new_v4(),
                    name: DRILL_RESTORE_POINT.into(),
                    backup_job_ids: job_ids,
                    snapshot_ids: rj.snapshot_ids.clone(),
                    created_at: now,
                    description: Some("snapshots tested by the latest restore drill".into()),
                    verified: ok,
                    verification_date: Some(done),
                    created_by: who.into(),
                };
                self.catalog.insert_restore_point(&rp).await?;
                rp
            }
            Err(e) => return Err(e),
        };
        rj.restore_point_id = Some(rp.id);
        self.catalog.update_restore_job(&rj).await?;
        self.events.publish(Event::restore_completed(&rj, done));
        self.audit(
            who,
            "verify",
            rj.id.to_string(),
            json!({"drill": true, "ok": ok, "snapshots": rj.snapshot_ids}),
        )
        .await;
        Ok(rj)
    }

    /// Runs passes until `shutdown` resolves: recovery, firing, running jobs, a health check
    /// (state changes are published), then a pause of `poll_every`. On shutdown no new job is
    /// claimed; running jobs finish, then pending event deliveries are flushed.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<()> {
        let me = self.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(async move {
            // Jobs run in the background so that schedules keep firing while long backups run.
            let mut runner: Option<tokio::task::JoinHandle<()>> = None;
            loop {
                if let Err(e) = me.recover().await {
                    tracing::warn!("scheduler recovery: {e}");
                }
                if let Err(e) = me.fire_due().await {
                    tracing::warn!("scheduler: firing schedules: {e}");
                }
                if runner.as_ref().is_none_or(|h| h.is_finished()) {
                    let r = me.clone();
                    runner = Some(tokio::spawn(async move {
                        if let Err(e) = r.run_pending().await {
                            tracing::warn!("scheduler: running jobs: {e}");
                        }
                    }));
                }
                me.check_health().await;
                tokio::select! {
                    _ = tokio::time::sleep(me.opts.poll_every) => {}
                    _ = stop_rx.changed() => {}
                }
                if *stop_rx.borrow() {
                    break;
                }
            }
            if let Some(r) = runner {
                let _ = r.await;
            }
        });
        shutdown.await;
        tracing::info!("scheduler stopping: waiting for running jobs");
        self.stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        let _ = worker.await;
        self.events.flush().await;
        Ok(())
    }

    /// Asks a running [`CronScheduler::run`] loop (and `run_pending`) to stop claiming jobs.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Computes health and publishes `backup.health.changed` when the state changed.
    pub async fn check_health(&self) -> Option<crate::health::Health> {
        let opts = crate::health::HealthOptions::from_config(&self.config);
        match crate::health::health(&*self.catalog, Some(&self.repo), &opts, self.now()).await {
            Ok(h) => {
                self.health.observe(&h, self.now());
                Some(h)
            }
            Err(e) => {
                tracing::warn!("health check: {e}");
                None
            }
        }
    }
}

/// A restore request (PRD `POST /api/v1/restore/create`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct RestoreRequest {
    /// Restore every snapshot of this restore point (name or id)…
    #[serde(default)]
    pub restore_point_id: Option<String>,
    /// …or the snapshot of this backup job.
    #[serde(default)]
    pub backup_job_id: Option<Uuid>,
    /// Only snapshots of these targets (specs or config names); empty = all.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Absolute folder to restore into (source `/a/b` lands at `<destination>/a/b`).
    /// Required unless `in_place`.
    #[serde(default)]
    pub destination: Option<String>,
    /// Restore over the original paths (destination `/`, replacing what is there).
    #[serde(default)]
    pub in_place: bool,
    /// PRD `verify_before_restore`: read back every file of each snapshot first and refuse
    /// to restore a damaged one.
    #[serde(default)]
    pub verify_before_restore: bool,
}

impl CronScheduler {
    /// Validates `req`, resolves its snapshots and stores a `pending` restore job (the PRD's
    /// API answers with its id at once). Run it with [`CronScheduler::run_restore`].
    /// Errors: [`Error::InvalidInput`], [`Error::NotFound`], [`Error::SnapshotNotFound`].
    pub async fn create_restore(&self, req: &RestoreRequest, who: &str) -> Result<RestoreJob> {
        let (rp, job) = match (&req.restore_point_id, req.backup_job_id) {
            (Some(r), None) => (Some(self.catalog.get_restore_point(r).await?), None),
            (None, Some(j)) => (None, Some(self.catalog.get_job(j).await?)),
            _ => {
                return Err(Error::InvalidInput(
                    "give restore_point_id or backup_job_id (one of them)".into(),
                ))
            }
        };
        let destination =
            match (&req.destination, req.in_place) {
                (Some(d), false) if d.starts_with('/') => d.clone(),
                (None, true) => "/".to_string(),
                (Some(_), true) => {
                    return Err(Error::InvalidInput(
                        "give destination or in_place, not both".into(),
                    ))
                }
                (Some(d), false) => {
                    return Err(Error::InvalidInput(format!(
                        "destination {d:?} must be an absolute path"
                    )))
                }
                (None, false) => return Err(Error::InvalidInput(
                    "give a destination folder (or in_place to restore over the original paths)"
                        .into(),
                )),
            };
        let ids: Vec<String> = match (&rp, &job) {
            (Some(rp), _) => rp.snapshot_ids.clone(),
            (_, Some(j)) => match (&j.storage_path, j.status) {
                (Some(p), JobStatus::Completed) => vec![p.clone()],
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "job {} has no snapshot (status {})",
                        j.id,
                        j.status.as_str()
                    )))
                }
            },
            _ => Vec::new(),
        };
        let want: Option<HashSet<String>> = (!req.targets.is_empty()).then(|| {
            spec_key(&self.config.expand_targets(&req.targets))
                .into_iter()
                .collect()
        });
        let mut targets = Vec::new();
        let mut kept = Vec::new();
        for id in ids {
            let snap = self.repo.find_snapshot(&id).await?;
            if want
                .as_ref()
                .is_some_and(|w| !spec_key(&snap.targets).iter().any(|k| w.contains(k)))
            {
                continue;
            }
            targets.extend(snap.targets.clone());
            kept.push(snap.id.to_hex());
        }
        if kept.is_empty() {
            return Err(Error::InvalidInput(format!(
                "no snapshot matches targets {:?}",
                req.targets
            )));
        }
        let rj = RestoreJob {
            id: Uuid::new_v4(),
            restore_point_id: rp.map(|r| r.id),
            backup_job_id: job.map(|j| j.id),
            snapshot_ids: kept,
            targets,
            destination: Some(destination),
            status: JobStatus::Pending,
            drill: false,
            created_at: self.now(),
            started_at: None,
            completed_at: None,
            error: None,
            requested_by: who.into(),
            metadata: json!({"verify_before_restore": req.verify_before_restore, "in_place": req.in_place}),
        };
        self.catalog.insert_restore_job(&rj).await?;
        Ok(rj)
    }

    /// Runs a restore job made by [`CronScheduler::create_restore`]: optional verification
    /// first, then each snapshot is restored with verification (replacing existing entries
    /// only in place); the job is stored as completed or failed, `restore.completed` is
    /// published and the audit log written (`restore`).
    pub async fn run_restore(&self, mut rj: RestoreJob) -> Result<RestoreJob> {
        rj.status = JobStatus::Running;
        rj.started_at = Some(self.now());
        self.catalog.update_restore_job(&rj).await?;
        let verify_first = rj.metadata["verify_before_restore"]
            .as_bool()
            .unwrap_or(false);
        let in_place = rj.metadata["in_place"].as_bool().unwrap_or(false);
        let dest = PathBuf::from(rj.destination.clone().unwrap_or_default());
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for id in rj.snapshot_ids.clone() {
            let r: Result<serde_json::Value> = async {
                let snap = self.repo.find_snapshot(&id).await?;
                if verify_first {
                    let v = crate::engine::check::verify(&self.repo, &snap, &NoProgress).await?;
                    if !v.ok {
                        return Err(Error::Corrupt {
                            object: format!("snapshot {}", snap.id.short()),
                            reason: format!(
                                "verification found {} damaged file(s); not restored",
                                v.errors.len()
                            ),
                        });
                    }
                }
                let mut o = restore::RestoreOptions::new(&dest);
                o.verify = true;
                o.overwrite = in_place;
                let sum = restore::restore(&self.repo, &snap, &o, &NoProgress)
                    .await?
                    .into_result()?;
                Ok(json!({"snapshot": id, "ok": true, "files": sum.files,
                          "bytes": sum.bytes_written, "files_verified": sum.files_verified}))
            }
            .await;
            match r {
                Ok(v) => results.push(v),
                Err(e) => {
                    errors.push(format!("snapshot {}: {e}", &id[..8.min(id.len())]));
                    results.push(json!({"snapshot": id, "ok": false, "error": e.to_string()}));
                }
            }
        }
        let done = self.now();
        rj.status = if errors.is_empty() {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        rj.completed_at = Some(done);
        rj.error = (!errors.is_empty()).then(|| errors.join("; "));
        rj.metadata["results"] = json!(results);
        self.catalog.update_restore_job(&rj).await?;
        self.events.publish(Event::restore_completed(&rj, done));
        let who = rj.requested_by.clone();
        self.audit(
            &who,
            "restore",
            rj.id.to_string(),
            json!({"snapshots": rj.snapshot_ids, "destination": rj.destination, "ok": errors.is_empty()}),
        )
        .await;
        Ok(rj)
    }
}

/// Name of the restore point the restore drill records its result on.
pub const DRILL_RESTORE_POINT: &str = "restore-drill";

fn push_attempt(job: &mut Job, at: DateTime<Utc>, error: &str) {
    if !job.metadata.is_object() {
        job.metadata = json!({});
    }
    let entry = json!({"at": at, "error": error});
    match job
        .metadata
        .get_mut("attempt_errors")
        .and_then(|v| v.as_array_mut())
    {
        Some(a) => a.push(entry),
        None => job.metadata["attempt_errors"] = json!([entry]),
    }
}

/// A sorted list of specs, the key that ties snapshots to a job's target.
fn spec_key(specs: &[String]) -> Vec<String> {
    let mut v: Vec<String> = specs
        .iter()
        .map(|s| match s.parse::<TargetSpec>() {
            Ok(t) => t.to_string(),
            Err(_) => s.clone(),
        })
        .collect();
    v.sort();
    v
}

fn validate_targets(config: &Config, targets: &[String]) -> Result<Vec<String>> {
    if targets.is_empty() {
        return Err(Error::InvalidInput(
            "no targets given (e.g. files:/srv/data, a config name, or all)".into(),
        ));
    }
    let specs = config.expand_targets(targets);
    if specs.is_empty() {
        return Err(Error::InvalidInput(format!(
            "targets {targets:?} name nothing (no targets in the config file?)"
        )));
    }
    for s in &specs {
        check_target_syntax(s)?;
    }
    Ok(specs)
}

/// Accepts what the engine can parse, plus `postgres:` / `minio:` / `scenario:` specs whose
/// targets may be added by other modules (the job then fails with the engine's message if the
/// target is not available).
fn check_target_syntax(spec: &str) -> Result<()> {
    match spec.parse::<TargetSpec>() {
        Ok(_) => Ok(()),
        Err(e) => {
            let kind = spec.split_once(':').map(|(k, _)| k).unwrap_or(spec);
            if matches!(kind, "postgres" | "minio" | "scenario" | "s3") {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

fn owner_is_dead_local(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    if host != crate::repository::lock::hostname() {
        return false;
    }
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if pid as u32 == std::process::id() {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn apply_patch(s: &mut Schedule, p: SchedulePatch) {
    if let Some(v) = p.name {
        s.name = v;
    }
    if let Some(v) = p.cron_expression {
        s.cron_expression = v;
    }
    if let Some(v) = p.timezone {
        s.timezone = v;
    }
    if let Some(v) = p.backup_type {
        s.backup_type = v;
    }
    if let Some(v) = p.targets {
        s.targets = v;
    }
    if let Some(v) = p.retention_days {
        s.retention_days = v;
    }
    if let Some(v) = p.keep {
        s.keep = v;
    }
    if let Some(v) = p.enabled {
        s.enabled = v;
    }
}

/// Schedule CRUD over a catalog, without a repository (the CLI's `schedule` commands use it
/// directly; [`CronScheduler`] delegates to it). Validates cron expressions, zones and target
/// syntax, computes `next_run`, and writes the audit log.
#[derive(Clone)]
pub struct ScheduleBook {
    catalog: Arc<dyn Catalog>,
    config: Config,
    clock: Arc<dyn Clock>,
}

impl ScheduleBook {
    /// A book over `catalog`; `config` expands target names.
    pub fn new(catalog: Arc<dyn Catalog>, config: Config, clock: Arc<dyn Clock>) -> ScheduleBook {
        ScheduleBook {
            catalog,
            config,
            clock,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn audit(
        &self,
        who: &str,
        action: &str,
        object: impl Into<String>,
        details: serde_json::Value,
    ) {
        let e = AuditEntry::new(self.now(), who, action, object, details);
        if let Err(err) = self.catalog.audit(e).await {
            tracing::warn!("audit log: {err}");
        }
    }

    fn validate_targets(&self, targets: &[String]) -> Result<Vec<String>> {
        validate_targets(&self.config, targets)
    }

    /// All schedules, by name.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.catalog.list_schedules().await
    }

    /// See [`Scheduler::create_schedule`].
    pub async fn create_schedule(&self, n: NewSchedule, who: &str) -> Result<Schedule> {
        if n.name.trim().is_empty() {
            return Err(Error::InvalidInput("a schedule needs a name".into()));
        }
        let tz = n.timezone.clone().unwrap_or_else(|| "UTC".into());
        let expr = CronExpr::parse_in(&n.cron_expression, &tz)?;
        if n.retention_days
            .is_some_and(|d| d < 0 || d as u32 > backup::MAX_RETENTION_DAYS)
        {
            return Err(Error::InvalidInput(
                "retention days must be between 0 and 36500".into(),
            ));
        }
        let action = n.action.unwrap_or_default();
        if action == ScheduleAction::Backup {
            self.validate_targets(&n.targets)?;
        }
        let now = self.now();
        let enabled = n.enabled.unwrap_or(true);
        let s = Schedule {
            id: Uuid::new_v4(),
            name: n.name.trim().to_string(),
            cron_expression: n.cron_expression.trim().to_string(),
            timezone: tz,
            backup_type: n.backup_type.unwrap_or_default(),
            targets: n.targets,
            retention_days: n.retention_days,
            keep: n.keep,
            enabled,
            action,
            last_run: None,
            next_run: if enabled { expr.next_after(now) } else { None },
            created_by: who.into(),
            created_at: now,
        };
        self.catalog.insert_schedule(&s).await?;
        self.audit(
            who,
            "schedule.create",
            s.name.clone(),
            serde_json::to_value(&s).unwrap_or_default(),
        )
        .await;
        Ok(s)
    }

    /// See [`Scheduler::update_schedule`].
    pub async fn update_schedule(
        &self,
        key: &str,
        p: SchedulePatch,
        who: &str,
    ) -> Result<Schedule> {
        let mut s = self.catalog.get_schedule(key).await?;
        let details = serde_json::to_value(&p).unwrap_or_default();
        apply_patch(&mut s, p);
        let expr = CronExpr::parse_in(&s.cron_expression, &s.timezone)?;
        if s.action == ScheduleAction::Backup {
            self.validate_targets(&s.targets)?;
        }
        s.next_run = if s.enabled {
            expr.next_after(self.now())
        } else {
            None
        };
        self.catalog.update_schedule(&s).await?;
        self.audit(who, "schedule.update", s.name.clone(), details)
            .await;
        Ok(s)
    }

    /// See [`Scheduler::delete_schedule`].
    pub async fn delete_schedule(&self, key: &str, who: &str) -> Result<()> {
        let s = self.catalog.get_schedule(key).await?;
        self.catalog.delete_schedule(s.id).await?;
        self.audit(who, "schedule.delete", s.name.clone(), json!({"id": s.id}))
            .await;
        Ok(())
    }

    /// See [`Scheduler::set_enabled`].
    pub async fn set_enabled(&self, key: &str, enabled: bool, who: &str) -> Result<Schedule> {
        let mut s = self.catalog.get_schedule(key).await?;
        s.enabled = enabled;
        s.next_run = if enabled {
            CronExpr::parse_in(&s.cron_expression, &s.timezone)?.next_after(self.now())
        } else {
            None
        };
        self.catalog.update_schedule(&s).await?;
        self.audit(
            who,
            if enabled {
                "schedule.enable"
            } else {
                "schedule.disable"
            },
            s.name.clone(),
            json!({"id": s.id}),
        )
        .await;
        Ok(s)
    }
}

#[async_trait]
impl Scheduler for CronScheduler {
    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.book().list_schedules().await
    }

    async fn create_schedule(&self, n: NewSchedule, who: &str) -> Result<Schedule> {
        self.book().create_schedule(n, who).await
    }

    async fn update_schedule(&self, key: &str, p: SchedulePatch, who: &str) -> Result<Schedule> {
        self.book().update_schedule(key, p, who).await
    }

    async fn delete_schedule(&self, key: &str, who: &str) -> Result<()> {
        self.book().delete_schedule(key, who).await
    }

    async fn set_enabled(&self, key: &str, enabled: bool, who: &str) -> Result<Schedule> {
        self.book().set_enabled(key, enabled, who).await
    }

    async fn submit(&self, req: JobRequest, who: &str) -> Result<Vec<Job>> {
        self.queue(req, who, None).await
    }

    async fn handle_event(&self, event: &IncomingEvent, who: &str) -> Result<Vec<Job>> {
        let (targets, job_type) = event.to_targets(&self.config)?;
        let jobs = self
            .queue(
                JobRequest {
                    targets,
                    job_type: Some(job_type),
                    description: Some(format!("event {}", event.event)),
                    ..Default::default()
                },
                who,
                None,
            )
            .await?;
        self.audit(who, "event", event.event.clone(), json!({"payload": event.payload, "jobs": jobs.iter().map(|j| j.id).collect::<Vec<_>>()})).await;
        Ok(jobs)
    }

    async fn tick(&self) -> Result<TickReport> {
        let recovered = self.recover().await?;
        let (fired, queued) = self.fire_due().await?;
        let ran = self.run_pending().await?;
        Ok(TickReport {
            recovered,
            fired,
            queued,
            ran,
        })
    }
}

/// Records a backup run outside the scheduler (the CLI's plain `backup`): inserts a
/// `running` job owned by this process, runs `run` with a heartbeat, and stores the outcome.
/// Catalog errors are returned separately from the backup's result, so a broken catalog never
/// fails a backup: the caller warns.
pub struct JobRecorder {
    catalog: Arc<dyn Catalog>,
    job: Job,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl JobRecorder {
    /// Inserts the running job. `max_retries` applies when the process dies while the job
    /// runs: a scheduler's recovery then queues it again. Errors: the catalog's.
    pub async fn start(
        catalog: Arc<dyn Catalog>,
        job_type: JobType,
        target_identifier: &str,
        who: &str,
        description: Option<String>,
        max_retries: u32,
    ) -> Result<JobRecorder> {
        let now = Utc::now();
        let mut job = Job::new(job_type, target_identifier, now);
        job.status = JobStatus::Running;
        job.owner = Some(default_owner());
        job.started_at = Some(now);
        job.heartbeat_at = Some(now);
        job.requested_by = who.into();
        job.max_retries = max_retries as i32;
        if let Some(d) = description {
            job.metadata["description"] = json!(d);
        }
        catalog.insert_job(&job).await?;
        let (cat, id, owner) = (
            catalog.clone(),
            job.id,
            job.owner.clone().unwrap_or_default(),
        );
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(SchedulerOptions::default().heartbeat_every).await;
                if !matches!(cat.heartbeat(id, &owner, Utc::now()).await, Ok(true)) {
                    break;
                }
            }
        });
        Ok(JobRecorder {
            catalog,
            job,
            heartbeat,
        })
    }

    /// The job as inserted.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Stores the outcome: completed with the snapshot's facts, or failed with the error.
    pub async fn finish(
        self,
        outcome: std::result::Result<&crate::Snapshot, String>,
    ) -> Result<Job> {
        self.heartbeat.abort();
        let mut job = self.job.clone();
        let owner = job.owner.clone();
        job.completed_at = Some(Utc::now());
        match outcome {
            Ok(s) => {
                catalog::apply_snapshot(&mut job, s);
                // With no type asked for, the engine makes a full backup when no parent exists.
                if s.backup_type == BackupType::Full {
                    job.job_type = JobType::Full;
                }
                job.status = JobStatus::Completed;
            }
            Err(e) => {
                job.status = JobStatus::Failed;
                job.error = Some(e);
            }
        }
        self.catalog
            .update_job_if(&job, JobStatus::Running, owner.as_deref())
            .await?;
        let _ = self
            .catalog
            .audit(AuditEntry::new(
                Utc::now(),
                &job.requested_by,
                "backup",
                job.id.to_string(),
                json!({"target": job.target_identifier, "snapshot": job.storage_path, "error": job.error}),
            ))
            .await;
        Ok(job)
    }
}
