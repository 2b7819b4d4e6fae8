//! Restores on request (`POST /api/v1/restore/create`, `GET /api/v1/restore/status/{id}`) and
//! restore points (`GET`/`POST /api/v1/restore-points`).
//!
//! A request is checked at once — the snapshots exist, the targets are in them, the
//! destination is usable — and answered with the PRD's `{restore_id, estimated_duration,
//! status: "pending", validation_results}`; the restore itself runs in a [`RestoreRunner`]
//! task, which records `running`, then `completed` or `failed` with a per-snapshot summary,
//! and publishes `restore.completed`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::catalog::{AuditEntry, Catalog, JobFilter, JobStatus, RestoreJob, RestorePoint};
use crate::config::Config;
use crate::engine::{check, restore};
use crate::error::{Error, Result};
use crate::events::{format_duration, Event, EventBus};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::target::TargetSpec;
use crate::Snapshot;

/// Restore throughput assumed for the estimate: 100 MB/s (plus 5 s per snapshot).
pub const ESTIMATE_BYTES_PER_SEC: u64 = 100_000_000;

/// `POST /api/v1/restore/create` (PRD input schema, plus `snapshot_id` and `overwrite`).
/// Exactly one of `restore_point_id`, `backup_job_id` and `snapshot_id` names what to restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Restore every snapshot of this restore point.
    #[serde(default)]
    pub restore_point_id: Option<Uuid>,
    /// Restore the snapshot of this (completed) backup job.
    #[serde(default)]
    pub backup_job_id: Option<Uuid>,
    /// Restore this snapshot (id, unique prefix or `latest`).
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Only these targets (specs or configured names); empty = everything.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Absolute directory to restore into; source `/a/b` lands at `DEST/a/b`. Default a new
    /// folder `dbm-restore-<restore_id>` in the scheduler's scratch folder.
    #[serde(default)]
    pub destination: Option<String>,
    /// Read every snapshot back and compare digests before writing anything, and re-read the
    /// restored files afterwards.
    #[serde(default)]
    pub verify_before_restore: bool,
    /// Allow a non-empty destination (entries with restored names are replaced).
    #[serde(default)]
    pub overwrite: bool,
}

/// One check made before the restore was accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// What was checked: `snapshot`, `targets`, `destination`, `verification`.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// Details.
    pub message: String,
}

/// Reply of `POST /api/v1/restore/create` (PRD output schema).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreCreated {
    /// PRD `restore_id`.
    pub restore_id: Uuid,
    /// PRD `estimated_duration`, e.g. `10s`.
    pub estimated_duration: String,
    /// PRD `status`: `pending`.
    pub status: JobStatus,
    /// PRD `validation_results`.
    pub validation_results: Vec<Validation>,
    /// Where the files will be.
    pub destination: String,
    /// Snapshots that will be restored.
    pub snapshot_ids: Vec<String>,
}

/// A restore job's work, as stored in its `metadata`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Plan {
    include: Vec<PathBuf>,
    verify: bool,
    overwrite: bool,
}

/// Checks a restore request and stores a pending restore job; the caller hands the job to
/// [`RestoreRunner::spawn`]. `scratch` is the folder for the default destination.
///
/// Errors: [`Error::NotFound`] (no such job or restore point), [`Error::InvalidInput`] naming
/// the field at fault (`restore_point_id`, `backup_job_id`, `targets`, `destination`),
/// [`Error::Conflict`] (a job without a snapshot), [`Error::SnapshotNotFound`].
pub async fn create_restore(
    catalog: &dyn Catalog,
    repo: &Repository,
    config: &Config,
    scratch: &Path,
    req: RestoreRequest,
    who: &str,
) -> Result<(RestoreJob, RestoreCreated)> {
    let named = [
        req.restore_point_id.is_some(),
        req.backup_job_id.is_some(),
        req.snapshot_id.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if named != 1 {
        return Err(Error::InvalidInput(
            "backup_job_id: give exactly one of restore_point_id, backup_job_id, snapshot_id"
                .into(),
        ));
    }
    let mut validation = Vec::new();
    let specs: Vec<String> = if let Some(rp) = req.restore_point_id {
        catalog
            .get_restore_point(&rp.to_string())
            .await?
            .snapshot_ids
    } else if let Some(j) = req.backup_job_id {
        let job = catalog.get_job(j).await?;
        match (job.status, job.storage_path) {
            (JobStatus::Completed, Some(p)) => vec![p],
            (s, _) => {
                return Err(Error::Conflict(format!(
                    "backup job {j} is {}: only a completed job can be restored",
                    s.as_str()
                )))
            }
        }
    } else {
        vec![req.snapshot_id.clone().unwrap_or_default()]
    };
    let mut snaps: Vec<Snapshot> = Vec::new();
    for s in &specs {
        snaps.push(repo.find_snapshot(s).await?);
    }
    validation.push(Validation {
        check: "snapshot".into(),
        ok: true,
        message: format!(
            "{} snapshot(s) found: {}",
            snaps.len(),
            snaps
                .iter()
                .map(|s| s.id.short())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    // Targets: keep the snapshots that hold one, and restore only its path.
    let mut include = Vec::new();
    if !req.targets.is_empty() {
        let wanted = config.expand_targets(&req.targets);
        let mut keep = Vec::new();
        for t in &wanted {
            let spec: TargetSpec = t
                .parse()
                .map_err(|e| Error::InvalidInput(format!("targets: {e}")))?;
            #[allow(unreachable_patterns)]
            let p = match &spec {
                TargetSpec::Files(p) => p,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "targets: {t}: only files targets can be picked out of a snapshot"
                    )))
                }
            };
            let holders: Vec<&Snapshot> = snaps
                .iter()
                .filter(|s| s.paths.iter().any(|sp| p.starts_with(sp.as_str())))
                .collect();
            if holders.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "targets: {t} is in none of the snapshots to restore"
                )));
            }
            include.push(p.clone());
            keep.extend(holders.iter().map(|s| s.id));
        }
        snaps.retain(|s| keep.contains(&s.id));
        validation.push(Validation {
            check: "targets".into(),
            ok: true,
            message: format!("restoring {}", wanted.join(", ")),
        });
    }
    let id = Uuid::new_v4();
    let dest = match &req.destination {
        Some(d) if !Path::new(d).is_absolute() => {
            return Err(Error::InvalidInput(format!(
                "destination: {d:?} must be an absolute path"
            )))
        }
        Some(d) => PathBuf::from(d),
        None => scratch.join(format!("dbm-restore-{id}")),
    };
    match std::fs::read_dir(&dest).map(|mut it| it.next().is_some()) {
        Ok(true) if !req.overwrite => {
            return Err(Error::InvalidInput(format!(
                "destination: {} is not empty (set overwrite to restore into it)",
                dest.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::InvalidInput(format!(
                "destination: {}: {e}",
                dest.display()
            )))
        }
    }
    validation.push(Validation {
        check: "destination".into(),
        ok: true,
        message: format!("{} is usable", dest.display()),
    });
    if req.verify_before_restore {
        validation.push(Validation {
            check: "verification".into(),
            ok: true,
            message: "every snapshot is read back and checked before the restore starts".into(),
        });
    }
    let bytes: u64 = snaps.iter().map(|s| s.summary.bytes_total).sum();
    let factor = if req.verify_before_restore { 2 } else { 1 };
    let secs = (factor * bytes / ESTIMATE_BYTES_PER_SEC) as i64 + 5 * snaps.len() as i64;
    let now = Utc::now();
    let rj = RestoreJob {
        id,
        restore_point_id: req.restore_point_id,
        backup_job_id: req.backup_job_id,
        snapshot_ids: snaps.iter().map(|s| s.id.to_hex()).collect(),
        targets: if req.targets.is_empty() {
            snaps.iter().flat_map(|s| s.targets.clone()).collect()
        } else {
            config.expand_targets(&req.targets)
        },
        destination: Some(dest.display().to_string()),
        status: JobStatus::Pending,
        drill: false,
        created_at: now,
        started_at: None,
        completed_at: None,
        error: None,
        requested_by: who.into(),
        metadata: json!({"plan": Plan { include, verify: req.verify_before_restore, overwrite: req.overwrite },
                          "validation_results": validation}),
    };
    catalog.insert_restore_job(&rj).await?;
    let created = RestoreCreated {
        restore_id: id,
        estimated_duration: format_duration(secs),
        status: JobStatus::Pending,
        validation_results: validation,
        destination: dest.display().to_string(),
        snapshot_ids: rj.snapshot_ids.clone(),
    };
    Ok((rj, created))
}

/// Runs restore jobs in background tasks and keeps track of them for shutdown.
pub struct RestoreRunner {
    catalog: Arc<dyn Catalog>,
    repo: Arc<Repository>,
    events: EventBus,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    running: Arc<Mutex<Vec<Uuid>>>,
}

impl RestoreRunner {
    /// A runner over a catalog and repository; events go to `events`.
    pub fn new(catalog: Arc<dyn Catalog>, repo: Arc<Repository>, events: EventBus) -> Self {
        RestoreRunner {
            catalog,
            repo,
            events,
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            running: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Starts the restore in a task; returns at once.
    pub fn spawn(&self, rj: RestoreJob) {
        let (cat, repo, events, running) = (
            self.catalog.clone(),
            self.repo.clone(),
            self.events.clone(),
            self.running.clone(),
        );
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let id = rj.id;
            running.lock().unwrap_or_else(|p| p.into_inner()).push(id);
            if let Err(e) = run_restore(&*cat, &repo, &events, rj).await {
                tracing::warn!("restore {id}: recording the outcome failed: {e}");
            }
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|x| *x != id);
        });
    }

    /// Waits up to `grace` for running restores; those still running then are stopped and
    /// recorded as `failed` ("interrupted by shutdown"), so none stays `running`.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_ok() {
            return;
        }
        let left: Vec<Uuid> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for id in left {
            if let Ok(mut rj) = self.catalog.get_restore_job(id).await {
                if matches!(rj.status, JobStatus::Running | JobStatus::Pending) {
                    rj.status = JobStatus::Failed;
                    rj.completed_at = Some(Utc::now());
                    rj.error =
                        Some("interrupted by a server shutdown; submit the restore again".into());
                    let _ = self.catalog.update_restore_job(&rj).await;
                }
            }
        }
    }

    /// At start-up: restore jobs (not drills) left `running` by a process that died are
    /// marked failed (a half-written destination must be looked at before retrying); those
    /// still `pending` are started. Returns how many were started.
    pub async fn recover(&self) -> Result<usize> {
        let mut started = 0;
        for mut rj in self.catalog.list_restore_jobs(500).await? {
            if rj.drill {
                continue;
            }
            match rj.status {
                JobStatus::Running => {
                    rj.status = JobStatus::Failed;
                    rj.completed_at = Some(Utc::now());
                    rj.error = Some(
                        "interrupted: the server stopped during the restore; submit it again"
                            .into(),
                    );
                    self.catalog.update_restore_job(&rj).await?;
                }
                JobStatus::Pending => {
                    self.spawn(rj);
                    started += 1;
                }
                _ => {}
            }
        }
        Ok(started)
    }
}

/// Does the work of a pending restore job and records the outcome.
pub async fn run_restore(
    catalog: &dyn Catalog,
    repo: &Arc<Repository>,
    events: &EventBus,
    mut rj: RestoreJob,
) -> Result<RestoreJob> {
    let plan: Plan = serde_json::from_value(rj.metadata["plan"].clone()).unwrap_or_default();
    rj.status = JobStatus::Running;
    rj.started_at = Some(Utc::now());
    catalog.update_restore_job(&rj).await?;
    let dest = PathBuf::from(rj.destination.clone().unwrap_or_default());
    let mut results: Vec<Value> = Vec::new();
    let mut error: Option<String> = None;
    let mut snaps = Vec::new();
    for id in &rj.snapshot_ids {
        match repo.find_snapshot(id).await {
            Ok(s) => snaps.push(s),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if error.is_none() && plan.verify {
        for s in &snaps {
            match check::verify(repo, s, &NoProgress).await {
                Ok(r) if r.ok => {}
                Ok(r) => {
                    error = Some(format!(
                        "verification before restore failed: snapshot {}: {} file(s) damaged, first {}: {}",
                        s.id.short(),
                        r.errors.len(),
                        r.errors.first().map(|e| e.path.as_str()).unwrap_or(""),
                        r.errors.first().map(|e| e.message.as_str()).unwrap_or("")
                    ));
                    break;
                }
                Err(e) => {
                    error = Some(format!("verification before restore failed: {e}"));
                    break;
                }
            }
        }
    }
    if error.is_none() {
        for (i, s) in snaps.iter().enumerate() {
            let mut o = restore::RestoreOptions::new(&dest);
            o.include = plan
                .include
                .iter()
                .filter(|p| s.paths.iter().any(|sp| p.starts_with(sp.as_str())))
                .cloned()
                .collect();
            // Later snapshots of a restore point share the (checked) destination.
            o.overwrite = plan.overwrite || i > 0;
            o.verify = plan.verify;
            match restore::restore(repo, s, &o, &NoProgress).await {
                Ok(sum) => {
                    let failed = !sum.errors.is_empty();
                    if failed {
                        error = Some(format!(
                            "snapshot {}: {} path(s) failed, first {}: {}",
                            s.id.short(),
                            sum.errors.len(),
                            sum.errors[0].path,
                            sum.errors[0].message
                        ));
                    }
                    results.push(serde_json::to_value(&sum).unwrap_or_default());
                    if failed {
                        break;
                    }
                }
                Err(e) => {
                    error = Some(format!("snapshot {}: {e}", s.id.short()));
                    break;
                }
            }
        }
    }
    let done = Utc::now();
    rj.status = if error.is_none() {
        JobStatus::Completed
    } else {
        JobStatus::Failed
    };
    rj.completed_at = Some(done);
    rj.error = error;
    rj.metadata["results"] = json!(results);
    catalog.update_restore_job(&rj).await?;
    events.publish(Event::restore_completed(&rj, done));
    let _ = catalog
        .audit(AuditEntry::new(
            done,
            &rj.requested_by,
            "restore",
            rj.id.to_string(),
            json!({"snapshots": rj.snapshot_ids, "destination": rj.destination, "ok": rj.error.is_none(), "error": rj.error}),
        ))
        .await;
    Ok(rj)
}

/// `POST /api/v1/restore-points`: a named set of snapshots captured together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRestorePoint {
    /// Unique name, e.g. `before migration`.
    pub name: String,
    /// PRD `description`.
    #[serde(default)]
    pub description: Option<String>,
    /// PRD `backup_job_ids`: completed jobs whose snapshots the point holds.
    #[serde(default)]
    pub backup_job_ids: Vec<Uuid>,
    /// Without job ids: the newest completed job of each of these targets (specs or names;
    /// empty = of every target that has one).
    #[serde(default)]
    pub targets: Vec<String>,
}

/// Creates a restore point (retention keeps its snapshots). Errors: [`Error::InvalidInput`]
/// (no name, nothing to hold), [`Error::NotFound`] (a job), [`Error::Conflict`] (a job
/// without snapshot, a name taken).
pub async fn create_restore_point(
    catalog: &dyn Catalog,
    config: &Config,
    req: NewRestorePoint,
    who: &str,
) -> Result<RestorePoint> {
    if req.name.trim().is_empty() {
        return Err(Error::InvalidInput(
            "name: a restore point needs a name".into(),
        ));
    }
    let mut jobs = Vec::new();
    if !req.backup_job_ids.is_empty() {
        for id in &req.backup_job_ids {
            let j = catalog.get_job(*id).await?;
            if j.status != JobStatus::Completed || j.storage_path.is_none() {
                return Err(Error::Conflict(format!(
                    "backup job {id} is {}: only completed jobs can be in a restore point",
                    j.status.as_str()
                )));
            }
            jobs.push(j);
        }
    } else {
        let wanted = config.expand_targets(&req.targets);
        let completed = catalog
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Completed],
                ..Default::default()
            })
            .await?;
        let mut seen = std::collections::HashSet::new();
        for j in completed {
            // Newest first: the first job of each target is its newest.
            if (wanted.is_empty() || wanted.contains(&j.target_identifier))
                && seen.insert(j.target_identifier.clone())
            {
                jobs.push(j);
            }
        }
        if let Some(missing) = wanted.iter().find(|t| !seen.contains(*t)) {
            return Err(Error::InvalidInput(format!(
                "targets: {missing} has no completed backup"
            )));
        }
    }
    if jobs.is_empty() {
        return Err(Error::InvalidInput(
            "backup_job_ids: there is no completed backup to put in the restore point".into(),
        ));
    }
    let rp = RestorePoint {
        id: Uuid::new_v4(),
        name: req.name.trim().to_string(),
        backup_job_ids: jobs.iter().map(|j| j.id).collect(),
        snapshot_ids: jobs.iter().filter_map(|j| j.storage_path.clone()).collect(),
        created_at: Utc::now(),
        description: req.description,
        verified: false,
        verification_date: None,
        created_by: who.into(),
    };
    catalog.insert_restore_point(&rp).await?;
    let _ = catalog
        .audit(AuditEntry::new(
            rp.created_at,
            who,
            "restore_point.create",
            rp.id.to_string(),
            json!({"name": rp.name, "snapshots": rp.snapshot_ids}),
        ))
        .await;
    Ok(rp)
}
