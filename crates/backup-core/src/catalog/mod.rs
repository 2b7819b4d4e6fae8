//! The catalog: job, schedule, restore-point and audit records (PRD "Data Models").
//!
//! The repository stays the source of truth (ARCHITECTURE principle 1): the catalog is an
//! index plus job and schedule state, and [`rebuild`] repopulates it from the repository's
//! snapshots. Two implementations of [`Catalog`]:
//!
//! * [`embedded::EmbeddedCatalog`] — the default, no server: one JSON document in a folder
//!   (default `~/.local/share/data-backup-manager/catalog.json`), rewritten atomically (temp
//!   file, fsync, rename) under an exclusive `flock`, so several processes on one host share it.
//! * [`postgres::PgCatalog`] — tokio-postgres through a deadpool pool; the schema is
//!   `initialization/postgres/schema.sql` (the PRD's `backup_jobs`, `backup_schedules`,
//!   `restore_points` plus `restore_jobs`, `audit_log`, `schema_version`), applied at start
//!   under an advisory lock. Jobs are claimed with `FOR UPDATE SKIP LOCKED`, so several
//!   scheduler instances share one queue.
//!
//! [`open`] picks PostgreSQL when a database URL is configured (`DBM_DATABASE_URL`,
//! `DATABASE_URL` or `database_url:` in the config file), else the embedded catalog.
//! All times are UTC.

pub mod embedded;
pub mod postgres;
pub mod restore_points;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::repository::Repository;

/// PRD `BackupJob.type`. `Differential` means "parent = the newest full snapshot of the same
/// target", so each differential holds everything changed since the last full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    /// Every file is read.
    Full,
    /// Unchanged files (against the newest snapshot) are not read.
    #[default]
    Incremental,
    /// Unchanged files against the newest *full* snapshot are not read.
    Differential,
}

impl JobType {
    /// `full`, `incremental` or `differential`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobType::Full => "full",
            JobType::Incremental => "incremental",
            JobType::Differential => "differential",
        }
    }
}

impl std::str::FromStr for JobType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(JobType::Full),
            "incremental" => Ok(JobType::Incremental),
            "differential" => Ok(JobType::Differential),
            o => Err(Error::InvalidInput(format!(
                "unknown backup type {o:?}: expected full, incremental or differential"
            ))),
        }
    }
}

impl std::fmt::Display for JobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PRD `BackupJob.status`. `pending` → `running` → `completed` | `failed`; a failed attempt
/// with retries left goes back to `pending` (with `retry_count` + 1 and a `not_before`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to be claimed.
    #[default]
    Pending,
    /// Claimed by a worker (see `owner`, `heartbeat_at`).
    Running,
    /// Finished; `storage_path` names the snapshot.
    Completed,
    /// Finished without a snapshot after all retries; `error` says why.
    Failed,
}

impl JobStatus {
    /// `pending`, `running`, `completed` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(JobStatus::Pending),
            "running" => Ok(JobStatus::Running),
            "completed" => Ok(JobStatus::Completed),
            "failed" => Ok(JobStatus::Failed),
            o => Err(Error::InvalidInput(format!(
                "unknown job status {o:?}: expected pending, running, completed or failed"
            ))),
        }
    }
}

/// One backup of one target (PRD `BackupJob`, table `backup_jobs`). A request for several
/// targets becomes one job per target, so retries, health and retention are per target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// PRD `id`.
    pub id: Uuid,
    /// PRD `type`.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// PRD `target`: the target kind (`files`, `postgres`, `scenario`, `minio`).
    pub target: String,
    /// PRD `target_identifier`: the spec as requested (`files:/srv/data`, `postgres:app`,
    /// or a config name such as `test-data`).
    pub target_identifier: String,
    /// PRD `status`.
    pub status: JobStatus,
    /// When the job was queued.
    pub created_at: DateTime<Utc>,
    /// Do not start before (retry backoff). None = at once.
    pub not_before: Option<DateTime<Utc>>,
    /// PRD `started_at` (of the latest attempt).
    pub started_at: Option<DateTime<Utc>>,
    /// PRD `completed_at` (completed or finally failed).
    pub completed_at: Option<DateTime<Utc>>,
    /// PRD `size_bytes`: logical size of the snapshot (all files), bytes.
    pub size_bytes: Option<i64>,
    /// PRD `compression_ratio`: raw ÷ stored bytes of the data this backup added.
    pub compression_ratio: Option<f64>,
    /// PRD `storage_path`: the snapshot id (64 hex digits) in the repository.
    pub storage_path: Option<String>,
    /// PRD `checksum`: the snapshot's root tree id (BLAKE3, hex), which covers every file
    /// digest below it.
    pub checksum: Option<String>,
    /// PRD `retention_until`.
    pub retention_until: Option<DateTime<Utc>>,
    /// Failed attempts so far (retries made).
    pub retry_count: i32,
    /// Retries allowed after the first attempt.
    pub max_retries: i32,
    /// Error of the latest failed attempt.
    pub error: Option<String>,
    /// Schedule that created it, if any.
    pub schedule_id: Option<Uuid>,
    /// Who asked (user or token name; `scheduler`, `cli:<user>`, `event:<name>`).
    pub requested_by: String,
    /// Worker that holds it while `running` (`host:pid:instance`).
    pub owner: Option<String>,
    /// Last heartbeat of the owner while `running`.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// PRD `metadata`: description, tags, parent snapshot, summary counters, attempt errors.
    pub metadata: serde_json::Value,
}

impl Job {
    /// A new pending job with defaults: no retries, created now.
    pub fn new(job_type: JobType, target_identifier: &str, now: DateTime<Utc>) -> Job {
        let kind = target_identifier
            .split_once(':')
            .map(|(k, _)| k)
            .unwrap_or(target_identifier);
        Job {
            id: Uuid::new_v4(),
            job_type,
            target: kind.to_string(),
            target_identifier: target_identifier.to_string(),
            status: JobStatus::Pending,
            created_at: now,
            not_before: None,
            started_at: None,
            completed_at: None,
            size_bytes: None,
            compression_ratio: None,
            storage_path: None,
            checksum: None,
            retention_until: None,
            retry_count: 0,
            max_retries: 0,
            error: None,
            schedule_id: None,
            requested_by: String::new(),
            owner: None,
            heartbeat_at: None,
            metadata: serde_json::json!({}),
        }
    }

    /// A metadata string field (`description`, …).
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }
}

/// What a schedule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleAction {
    /// Queue one backup job per target.
    #[default]
    Backup,
    /// Restore the newest snapshot of each target into a scratch folder, verify it and record
    /// the result on the `restore-drill` restore point (PRD "automated backup testing").
    RestoreDrill,
}

/// Keep rules of a schedule, applied per target after each of its jobs (see
/// [`crate::engine::forget`]): a snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepPolicy {
    /// Keep the N newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last N days (in the schedule's zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// … ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// … months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
}

/// PRD `BackupSchedule` (table `backup_schedules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// PRD `id`.
    pub id: Uuid,
    /// PRD `name` (unique).
    pub name: String,
    /// PRD `cron_expression`: standard 5 fields, as given.
    pub cron_expression: String,
    /// IANA zone the expression is read in (default `UTC`).
    pub timezone: String,
    /// PRD `backup_type`.
    pub backup_type: JobType,
    /// PRD `targets`: specs or config names.
    pub targets: Vec<String>,
    /// PRD `retention_days`: snapshots older than this are forgotten unless kept by `keep`
    /// or a restore point. None = no age limit.
    pub retention_days: Option<i32>,
    /// Keep rules.
    pub keep: KeepPolicy,
    /// PRD `enabled`.
    pub enabled: bool,
    /// Backup or restore drill.
    pub action: ScheduleAction,
    /// PRD `last_run`.
    pub last_run: Option<DateTime<Utc>>,
    /// PRD `next_run` (None when disabled).
    pub next_run: Option<DateTime<Utc>>,
    /// PRD `created_by`.
    pub created_by: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Fields of a new schedule. `name`, `cron_expression` and `targets` are required.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewSchedule {
    /// Unique name.
    pub name: String,
    /// 5-field cron expression.
    pub cron_expression: String,
    /// IANA zone; default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Default incremental.
    #[serde(default)]
    pub backup_type: Option<JobType>,
    /// Specs or config names (`all` = every named target).
    pub targets: Vec<String>,
    /// See [`Schedule::retention_days`].
    #[serde(default)]
    pub retention_days: Option<i32>,
    /// Keep rules.
    #[serde(default)]
    pub keep: KeepPolicy,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Default backup.
    #[serde(default)]
    pub action: Option<ScheduleAction>,
}

/// A partial update of a schedule: `Some` fields replace the stored ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchedulePatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New cron expression.
    #[serde(default)]
    pub cron_expression: Option<String>,
    /// New zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// New type.
    #[serde(default)]
    pub backup_type: Option<JobType>,
    /// New targets.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// New retention days (`Some(None)` removes the limit).
    #[serde(default)]
    pub retention_days: Option<Option<i32>>,
    /// New keep rules.
    #[serde(default)]
    pub keep: Option<KeepPolicy>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// PRD `RestorePoint` (table `restore_points`): a named set of snapshots across targets,
/// captured together (e.g. "before migration": files, database, bucket). Snapshots named by a
/// restore point are never removed by retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// PRD `id`.
    pub id: Uuid,
    /// PRD `name` (unique).
    pub name: String,
    /// PRD `backup_job_ids`.
    pub backup_job_ids: Vec<Uuid>,
    /// Snapshot ids (hex) in the repository, one or more per target.
    pub snapshot_ids: Vec<String>,
    /// PRD `created_at`.
    pub created_at: DateTime<Utc>,
    /// PRD `description`.
    pub description: Option<String>,
    /// PRD `verified`: the last verification restored every snapshot bit-exact.
    pub verified: bool,
    /// PRD `verification_date`.
    pub verification_date: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: String,
}

/// A restore (or restore drill) request and its outcome (table `restore_jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreJob {
    /// Id (PRD `restore_id`).
    pub id: Uuid,
    /// Restore point restored, if any.
    pub restore_point_id: Option<Uuid>,
    /// Backup job restored, if any.
    pub backup_job_id: Option<Uuid>,
    /// Snapshot ids restored.
    pub snapshot_ids: Vec<String>,
    /// Targets restored.
    pub targets: Vec<String>,
    /// Destination folder.
    pub destination: Option<String>,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: JobStatus,
    /// True for a scheduled restore drill (restored into a scratch folder and removed).
    pub drill: bool,
    /// When queued.
    pub created_at: DateTime<Utc>,
    /// When started.
    pub started_at: Option<DateTime<Utc>>,
    /// When finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Error if failed.
    pub error: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// Per-snapshot results (files, bytes, verified) and anything else.
    pub metadata: serde_json::Value,
}

/// One line of the audit log (table `audit_log`): every backup, restore, verify, schedule
/// change and deletion, with who asked and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number (assigned by the catalog; 0 when new).
    pub id: i64,
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// Who: a user or API token name (`scheduler` for the scheduler).
    pub actor: String,
    /// What: `backup`, `restore`, `verify`, `schedule.create`, `schedule.update`,
    /// `schedule.delete`, `schedule.enable`, `schedule.disable`, `restore_point.create`,
    /// `restore_point.delete`, `forget`, `prune`, `catalog.rebuild`, `job.recovered`.
    pub action: String,
    /// The object: a job, schedule, restore point or snapshot id, or a target.
    pub object: String,
    /// Details.
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// A new entry at `at`.
    pub fn new(
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        object: impl Into<String>,
        details: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            at,
            actor: actor.into(),
            action: action.into(),
            object: object.into(),
            details,
        }
    }
}

/// Filter of [`Catalog::list_jobs`]. Results are newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only these statuses (empty = all).
    pub statuses: Vec<JobStatus>,
    /// Only this `target_identifier`.
    pub target_identifier: Option<String>,
    /// Only jobs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this schedule's jobs.
    pub schedule_id: Option<Uuid>,
    /// At most this many (None = all).
    pub limit: Option<usize>,
}

impl JobFilter {
    fn matches(&self, j: &Job) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&j.status))
            && self
                .target_identifier
                .as_ref()
                .is_none_or(|t| *t == j.target_identifier)
            && self.since.is_none_or(|s| j.created_at >= s)
            && self.schedule_id.is_none_or(|s| j.schedule_id == Some(s))
    }
}

/// The catalog's storage. All methods are safe to call from several tasks and, for both
/// implementations, several processes at once. Compare-and-set methods (`*_if`, `claim_job`,
/// `advance_schedule`) are what makes several scheduler instances run each job and each
/// schedule firing exactly once.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// `embedded` or `postgres`.
    fn kind(&self) -> &'static str;
    /// Where it lives (a path, or the database URL without its password).
    fn location(&self) -> String;

    /// Stores a new job.
    async fn insert_job(&self, job: &Job) -> Result<()>;
    /// A job by id. Errors: [`Error::NotFound`].
    async fn get_job(&self, id: Uuid) -> Result<Job>;
    /// Jobs matching `filter`, newest first.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;
    /// Replaces a job when its stored `status` and `owner` still equal `expect_status` and
    /// `expect_owner`; returns false (and changes nothing) otherwise.
    async fn update_job_if(
        &self,
        job: &Job,
        expect_status: JobStatus,
        expect_owner: Option<&str>,
    ) -> Result<bool>;
    /// Claims the oldest pending job whose `not_before` has passed at `now`: sets it
    /// `running`, `owner`, `started_at` and `heartbeat_at` = `now`. PostgreSQL: `SELECT … FOR
    /// UPDATE SKIP LOCKED`.
    async fn claim_job(&self, owner: &str, now: DateTime<Utc>) -> Result<Option<Job>>;
    /// Refreshes `heartbeat_at` of a running job held by `owner`; false if it is no longer.
    async fn heartbeat(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<bool>;

    /// All schedules, by name.
    async fn list_schedules(&self) -> Result<Vec<Schedule>>;
    /// A schedule by name or id. Errors: [`Error::NotFound`].
    async fn get_schedule(&self, name_or_id: &str) -> Result<Schedule>;
    /// Stores a new schedule. Errors: [`Error::Conflict`] when the name exists.
    async fn insert_schedule(&self, s: &Schedule) -> Result<()>;
    /// Replaces a schedule (by id). Errors: [`Error::NotFound`], [`Error::Conflict`] (name).
    async fn update_schedule(&self, s: &Schedule) -> Result<()>;
    /// Deletes a schedule (its jobs stay). Errors: [`Error::NotFound`].
    async fn delete_schedule(&self, id: Uuid) -> Result<()>;
    /// Claims one firing: sets `last_run` and `next_run` when the stored `next_run` still
    /// equals `expect_next`. Returns false when another instance got there first.
    async fn advance_schedule(
        &self,
        id: Uuid,
        expect_next: Option<DateTime<Utc>>,
        last_run: Option<DateTime<Utc>>,
        next_run: Option<DateTime<Utc>>,
    ) -> Result<bool>;

    /// Stores a restore point. Errors: [`Error::Conflict`] when the name exists.
    async fn insert_restore_point(&self, rp: &RestorePoint) -> Result<()>;
    /// Replaces a restore point (by id).
    async fn update_restore_point(&self, rp: &RestorePoint) -> Result<()>;
    /// A restore point by name or id. Errors: [`Error::NotFound`].
    async fn get_restore_point(&self, name_or_id: &str) -> Result<RestorePoint>;
    /// All restore points, newest first.
    async fn list_restore_points(&self) -> Result<Vec<RestorePoint>>;
    /// Deletes a restore point (its snapshots become subject to retention again).
    async fn delete_restore_point(&self, id: Uuid) -> Result<()>;

    /// Stores a restore job.
    async fn insert_restore_job(&self, r: &RestoreJob) -> Result<()>;
    /// Replaces a restore job (by id).
    async fn update_restore_job(&self, r: &RestoreJob) -> Result<()>;
    /// A restore job by id. Errors: [`Error::NotFound`].
    async fn get_restore_job(&self, id: Uuid) -> Result<RestoreJob>;
    /// Restore jobs, newest first, at most `limit`.
    async fn list_restore_jobs(&self, limit: usize) -> Result<Vec<RestoreJob>>;

    /// Appends to the audit log.
    async fn audit(&self, e: AuditEntry) -> Result<()>;
    /// Audit entries, newest first, at most `limit`.
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>>;

    /// The PostgreSQL `NOTIFY` sink of this catalog (channel `backup_events`), if any.
    fn notify_sink(&self) -> Option<Arc<dyn crate::events::EventSink>> {
        None
    }
}

/// Where the catalog lives: PostgreSQL when `database_url` is set, else the embedded folder.
#[derive(Debug, Clone, Default)]
pub struct CatalogOptions {
    /// `postgres://…` URL.
    pub database_url: Option<String>,
    /// Embedded catalog folder (default [`crate::config::default_catalog_dir`]).
    pub dir: Option<PathBuf>,
    /// PostgreSQL pool size (default 8).
    pub pool_size: Option<usize>,
}

impl CatalogOptions {
    /// From a loaded config (file + environment already applied).
    pub fn from_config(c: &Config) -> Self {
        CatalogOptions {
            database_url: c.database_url.clone(),
            dir: Some(c.catalog_dir()),
            pool_size: None,
        }
    }
}

/// Opens the catalog `opts` names. PostgreSQL: connects, applies the schema (idempotent, under
/// an advisory lock). Embedded: creates the folder and file when missing.
///
/// Errors: [`Error::Catalog`] naming the location (a URL is shown without its password).
pub async fn open(opts: &CatalogOptions) -> Result<Arc<dyn Catalog>> {
    match &opts.database_url {
        Some(url) => Ok(Arc::new(
            postgres::PgCatalog::connect(url, opts.pool_size.unwrap_or(8)).await?,
        )),
        None => Ok(Arc::new(embedded::EmbeddedCatalog::open(
            opts.dir
                .clone()
                .unwrap_or_else(crate::config::default_catalog_dir),
        )?)),
    }
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// Snapshots in the repository.
    pub snapshots: usize,
    /// Jobs added for snapshots the catalog did not know.
    pub jobs_added: usize,
    /// Catalog jobs whose snapshot is gone from the repository (left as they are).
    pub jobs_missing_snapshot: usize,
}

/// Repopulates the catalog from the repository: each snapshot without a completed job naming
/// it (`storage_path`) gets one, with type, target, times, size, ratio and tree id taken from
/// the manifest. Existing jobs are not changed.
pub async fn rebuild(
    catalog: &dyn Catalog,
    repo: &Repository,
    actor: &str,
) -> Result<RebuildReport> {
    let snaps = repo.snapshots().await?;
    let jobs = catalog
        .list_jobs(&JobFilter {
            statuses: vec![JobStatus::Completed],
            ..Default::default()
        })
        .await?;
    let known: std::collections::HashSet<String> =
        jobs.iter().filter_map(|j| j.storage_path.clone()).collect();
    let ids: std::collections::HashSet<String> = snaps.iter().map(|s| s.id.to_hex()).collect();
    let mut report = RebuildReport {
        snapshots: snaps.len(),
        jobs_missing_snapshot: known.iter().filter(|k| !ids.contains(*k)).count(),
        ..Default::default()
    };
    for s in &snaps {
        if known.contains(&s.id.to_hex()) {
            continue;
        }
        let job = job_from_snapshot(s);
        catalog.insert_job(&job).await?;
        report.jobs_added += 1;
    }
    catalog
        .audit(AuditEntry::new(
            Utc::now(),
            actor,
            "catalog.rebuild",
            repo.store().location(),
            serde_json::to_value(&report).unwrap_or_default(),
        ))
        .await?;
    Ok(report)
}

/// A completed job describing snapshot `s` (used by [`rebuild`]).
pub fn job_from_snapshot(s: &crate::Snapshot) -> Job {
    let target_id = s.targets.first().cloned().unwrap_or_else(|| {
        format!(
            "{}:{}",
            s.target_kind,
            s.paths.first().cloned().unwrap_or_default()
        )
    });
    let mut job = Job::new(
        match s.backup_type {
            crate::BackupType::Full => JobType::Full,
            crate::BackupType::Incremental => JobType::Incremental,
        },
        &target_id,
        s.time,
    );
    job.target = s.target_kind.clone();
    job.status = JobStatus::Completed;
    job.started_at = Some(s.time);
    job.completed_at =
        Some(s.time + chrono::Duration::milliseconds((s.summary.duration_secs * 1000.0) as i64));
    apply_snapshot(&mut job, s);
    job.requested_by = "catalog rebuild".into();
    job
}

/// Copies a snapshot's facts into a job: size, ratio, storage path, checksum, retention and a
/// summary in metadata.
pub fn apply_snapshot(job: &mut Job, s: &crate::Snapshot) {
    job.size_bytes = Some(s.summary.bytes_total as i64);
    job.compression_ratio = Some(if s.summary.bytes_added > 0 {
        s.summary.raw_bytes_added as f64 / s.summary.bytes_added as f64
    } else {
        1.0
    });
    job.storage_path = Some(s.id.to_hex());
    job.checksum = Some(s.tree.to_hex());
    if s.retention_until.is_some() {
        job.retention_until = s.retention_until;
    }
    let mut m = match std::mem::take(&mut job.metadata) {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    m.insert("snapshot_targets".into(), serde_json::json!(s.targets));
    m.insert("hostname".into(), serde_json::json!(s.hostname));
    m.insert("partial".into(), serde_json::json!(s.partial));
    m.insert(
        "summary".into(),
        serde_json::to_value(&s.summary).unwrap_or_default(),
    );
    if let Some(p) = &s.parent {
        m.insert("parent".into(), serde_json::json!(p.to_hex()));
    }
    if let Some(d) = &s.description {
        m.entry("description").or_insert(serde_json::json!(d));
    }
    job.metadata = serde_json::Value::Object(m);
}

/// Creates a restore point over `snapshot_ids` (hex ids), linking the completed jobs that
/// produced them, and writes the audit log. Errors: [`Error::Conflict`] (name taken),
/// [`Error::InvalidInput`] (no snapshots or no name).
pub async fn create_restore_point(
    catalog: &dyn Catalog,
    name: &str,
    snapshot_ids: Vec<String>,
    description: Option<String>,
    who: &str,
) -> Result<RestorePoint> {
    if name.trim().is_empty() || snapshot_ids.is_empty() {
        return Err(Error::InvalidInput(
            "a restore point needs a name and at least one snapshot".into(),
        ));
    }
    let jobs = catalog
        .list_jobs(&JobFilter {
            statuses: vec![JobStatus::Completed],
            ..Default::default()
        })
        .await?;
    let rp = RestorePoint {
        id: Uuid::new_v4(),
        name: name.trim().to_string(),
        backup_job_ids: jobs
            .iter()
            .filter(|j| {
                j.storage_path
                    .as_ref()
                    .is_some_and(|p| snapshot_ids.contains(p))
            })
            .map(|j| j.id)
            .collect(),
        snapshot_ids,
        created_at: Utc::now(),
        description,
        verified: false,
        verification_date: None,
        created_by: who.into(),
    };
    catalog.insert_restore_point(&rp).await?;
    catalog
        .audit(AuditEntry::new(
            rp.created_at,
            who,
            "restore_point.create",
            rp.name.clone(),
            serde_json::json!({"id": rp.id, "snapshots": rp.snapshot_ids}),
        ))
        .await?;
    Ok(rp)
}

/// Snapshot ids (hex) named by any restore point: retention keeps them.
pub async fn protected_snapshots(
    catalog: &dyn Catalog,
) -> Result<std::collections::HashSet<String>> {
    Ok(catalog
        .list_restore_points()
        .await?
        .into_iter()
        .flat_map(|rp| rp.snapshot_ids)
        .collect())
}

/// Per-target summary used by health and `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetSummary {
    /// Target identifier.
    pub target: String,
    /// Newest completed job's `completed_at`.
    pub last_success: Option<DateTime<Utc>>,
    /// Newest completed job's snapshot id.
    pub last_snapshot: Option<String>,
    /// Jobs finally failed within the last 24 hours.
    pub failures_24h: usize,
}

/// Per-target last success and 24-hour failures, from the catalog's jobs.
pub async fn target_summaries(
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, TargetSummary>> {
    let jobs = catalog
        .list_jobs(&JobFilter {
            statuses: vec![JobStatus::Completed, JobStatus::Failed],
            ..Default::default()
        })
        .await?;
    let mut out: BTreeMap<String, TargetSummary> = BTreeMap::new();
    for j in jobs {
        let t = out
            .entry(j.target_identifier.clone())
            .or_insert_with(|| TargetSummary {
                target: j.target_identifier.clone(),
                ..Default::default()
            });
        match j.status {
            JobStatus::Completed if j.completed_at > t.last_success => {
                t.last_success = j.completed_at;
                t.last_snapshot = j.storage_path.clone();
            }
            JobStatus::Failed
                if j.completed_at
                    .is_some_and(|c| c >= now - chrono::Duration::hours(24)) =>
            {
                t.failures_24h += 1;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Shows a database URL without its password (for messages and logs).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
