//! Creating backups on request and listing what the repository holds.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::catalog::{Catalog, Job, JobFilter, JobStatus};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::format_duration;
use crate::repository::Repository;
use crate::scheduler::{JobRequest, Scheduler};
use crate::{BackupType, Snapshot};

/// Duration assumed for a target that has never completed a backup: 1 minute.
pub const UNKNOWN_TARGET_ESTIMATE_SECS: i64 = 60;

/// Reply of `POST /api/v1/backup/create` (PRD output schema, plus `job_ids`: a request for
/// several targets queues one job per target; `job_id` is the first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupCreated {
    /// PRD `job_id`: the first job.
    pub job_id: Uuid,
    /// Every job queued, in target order.
    pub job_ids: Vec<Uuid>,
    /// PRD `estimated_duration`, e.g. `1m30s` (see [`estimate_secs`]).
    pub estimated_duration: String,
    /// The same in seconds.
    pub estimated_duration_secs: i64,
    /// PRD `status`: always `pending` (the work runs in the scheduler).
    pub status: JobStatus,
    /// PRD `targets`: the target specs, after expanding configured names.
    pub targets: Vec<String>,
}

/// Estimated run time of backups of `targets`, seconds: for each target the mean duration of
/// its last 5 completed jobs ([`UNKNOWN_TARGET_ESTIMATE_SECS`] when it has none), summed (the
/// scheduler may run them in parallel, so this is an upper bound).
pub async fn estimate_secs(catalog: &dyn Catalog, targets: &[String]) -> Result<i64> {
    let mut total = 0;
    for t in targets {
        let jobs = catalog
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Completed],
                target_identifier: Some(t.clone()),
                limit: Some(5),
                ..Default::default()
            })
            .await?;
        let durations: Vec<i64> = jobs
            .iter()
            .filter_map(|j| Some((j.completed_at? - j.started_at?).num_seconds().max(1)))
            .collect();
        total += if durations.is_empty() {
            UNKNOWN_TARGET_ESTIMATE_SECS
        } else {
            durations.iter().sum::<i64>() / durations.len() as i64
        };
    }
    Ok(total)
}

/// Queues a backup of `req.targets` (one pending job per target) and returns at once; the
/// scheduler's job runner does the work. Errors: [`Error::InvalidInput`] for unknown targets,
/// types or retention (the scheduler's validation).
pub async fn create_backup(
    scheduler: &dyn Scheduler,
    catalog: &dyn Catalog,
    req: JobRequest,
    who: &str,
) -> Result<BackupCreated> {
    let jobs = scheduler.submit(req, who).await?;
    let first = jobs
        .first()
        .ok_or_else(|| Error::InvalidInput("no targets given".into()))?;
    let targets: Vec<String> = jobs.iter().map(|j| j.target_identifier.clone()).collect();
    let secs = estimate_secs(catalog, &targets).await?;
    Ok(BackupCreated {
        job_id: first.id,
        job_ids: jobs.iter().map(|j| j.id).collect(),
        estimated_duration: format_duration(secs),
        estimated_duration_secs: secs,
        status: JobStatus::Pending,
        targets,
    })
}

/// A job by id. Errors: [`Error::NotFound`].
pub async fn job(catalog: &dyn Catalog, id: Uuid) -> Result<Job> {
    catalog.get_job(id).await
}

/// Filters of `list` / `GET /api/v1/backup/list` (PRD CLI `list` flags).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFilter {
    /// `full` or `incremental`.
    #[serde(default, rename = "type")]
    pub backup_type: Option<String>,
    /// A kind (`files`), a spec (`files:/srv/data`) or a configured target name.
    #[serde(default)]
    pub target: Option<String>,
    /// Only snapshots taken on or after this UTC date, `YYYY-MM-DD`.
    #[serde(default)]
    pub since: Option<String>,
}

/// A listing: the snapshots that match, as JSON objects ([`snapshot_json`]), oldest first,
/// and the snapshots whose manifest could not be read (id and error text).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Listing {
    /// Matching snapshots.
    pub snapshots: Vec<Value>,
    /// Unreadable manifests: `{id, error}`.
    pub damaged: Vec<Value>,
}

/// A snapshot as JSON: the manifest plus `id` and `short_id`.
pub fn snapshot_json(s: &Snapshot) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(s.id.to_hex()));
        m.insert("short_id".into(), json!(s.id.short()));
    }
    v
}

/// Parses `YYYY-MM-DD` as midnight UTC. Errors: [`Error::InvalidInput`] naming `since`.
pub fn parse_since(d: &str) -> Result<DateTime<Utc>> {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .ok()
        .and_then(|n| n.and_hms_opt(0, 0, 0))
        .map(|n| Utc.from_utc_datetime(&n))
        .ok_or_else(|| Error::InvalidInput(format!("since {d:?}: expected YYYY-MM-DD")))
}

/// Lists the repository's snapshots that match `f` (the repository is the source of truth:
/// this never depends on the catalog). `config` expands a configured target name.
/// Errors: [`Error::InvalidInput`] for a bad `type` or `since`; the store's errors.
pub async fn list(repo: &Repository, config: &Config, f: &ListFilter) -> Result<Listing> {
    let since = f.since.as_deref().map(parse_since).transpose()?;
    let ty = f
        .backup_type
        .as_deref()
        .map(str::parse::<BackupType>)
        .transpose()?;
    let target: Option<Vec<String>> = f.target.as_deref().map(|t| config.expand_target(t));
    let (all, damaged) = repo.snapshots_and_failures().await?;
    let snapshots = all
        .iter()
        .filter(|x| ty.is_none_or(|t| x.backup_type == t))
        .filter(|x| since.is_none_or(|d| x.time >= d))
        .filter(|x| match &target {
            None => true,
            Some(ts) => ts.iter().any(|t| {
                if t.contains(':') {
                    x.targets.iter().any(|xt| xt == t)
                } else {
                    x.target_kind == *t
                }
            }),
        })
        .map(snapshot_json)
        .collect();
    Ok(Listing {
        snapshots,
        damaged: damaged
            .iter()
            .map(|(id, e)| json!({"id": id.to_hex(), "short_id": id.short(), "error": e.to_string()}))
            .collect(),
    })
}
