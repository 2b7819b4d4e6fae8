//! Health (`healthy` | `degraded` | `critical`, each with its reasons) and the PRD's status
//! report (`GET /api/v1/backup/status`, CLI `status`).
//!
//! Rules, each adding a reason; the worst level wins:
//! * per target (named targets from the config, plus every target with a job): no successful
//!   backup yet → degraded; last success older than the RPO (default 4 h, PRD) → degraded;
//!   older than 3 × RPO → critical;
//! * jobs finally failed in the last 24 h: 1 or more → degraded; 3 or more for one target →
//!   critical;
//! * the last restore drill or verification failed → critical; none in 8 days (when a drill
//!   schedule exists) → degraded;
//! * storage (local repository): file system ≥ 90 % full → degraded, ≥ 97 % → critical.
//!
//! [`HealthMonitor`] remembers the last state and publishes `backup.health.changed` when it
//! changes.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Catalog, Job, JobFilter, JobStatus, ScheduleAction};
use crate::config::Config;
use crate::error::Result;
use crate::events::{Event, EventBus, HEALTH_CHANGED};
use crate::repository::Repository;

/// The three states, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// All rules pass.
    Healthy,
    /// Attention needed.
    Degraded,
    /// Data is at risk.
    Critical,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `critical`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Critical => "critical",
        }
    }
}

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReason {
    /// How bad.
    pub level: HealthStatus,
    /// Rule: `rpo`, `never_backed_up`, `failures`, `drill`, `storage`.
    pub check: String,
    /// Human text naming the target or object.
    pub message: String,
}

/// Per-target facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetHealth {
    /// Target identifier.
    pub target: String,
    /// Last successful backup (UTC).
    pub last_success: Option<DateTime<Utc>>,
    /// Its snapshot id.
    pub last_snapshot: Option<String>,
    /// Age of the last success, seconds.
    pub age_secs: Option<i64>,
    /// Jobs finally failed in 24 h.
    pub failures_24h: usize,
    /// Worst level of this target's rules.
    pub status: HealthStatus,
}

/// Storage figures (PRD `storage_usage`). Sizes in GB (10^9 bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StorageUsage {
    /// Bytes the repository occupies, in GB (when known).
    pub used_gb: f64,
    /// Free space of the file system holding a local repository, GB.
    pub available_gb: Option<f64>,
    /// File system use, percent.
    pub filesystem_used_percent: Option<f64>,
    /// Raw ÷ stored bytes of the repository's data (when known).
    pub compression_ratio: Option<f64>,
}

/// A health evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// Overall state.
    pub status: HealthStatus,
    /// Why it is not healthy (empty when healthy).
    pub reasons: Vec<HealthReason>,
    /// Per target.
    pub targets: Vec<TargetHealth>,
    /// Latest restore drill or verification: when and whether it passed.
    pub last_drill: Option<(DateTime<Utc>, bool)>,
    /// Storage figures (file system only; repository size is in the status report).
    pub storage: StorageUsage,
    /// When computed.
    pub checked_at: DateTime<Utc>,
}

/// Thresholds; [`HealthOptions::from_config`] fills them from the config.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// RPO, seconds (default 4 h).
    pub rpo_secs: i64,
    /// Targets that must be backed up (the config's named targets, expanded).
    pub expected_targets: Vec<String>,
    /// Local repository folder, for the file-system check.
    pub local_repository: Option<std::path::PathBuf>,
    /// Degraded at this file-system use, percent (90).
    pub storage_degraded_percent: f64,
    /// Critical at this file-system use, percent (97).
    pub storage_critical_percent: f64,
    /// Failures of one target in 24 h that make the state critical (3).
    pub critical_failures: usize,
    /// A drill schedule's latest drill must be younger than this (8 days).
    pub drill_max_age: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            rpo_secs: (crate::config::DEFAULT_RPO_HOURS * 3600.0) as i64,
            expected_targets: Vec::new(),
            local_repository: None,
            storage_degraded_percent: 90.0,
            storage_critical_percent: 97.0,
            critical_failures: 3,
            drill_max_age: Duration::days(8),
        }
    }
}

impl HealthOptions {
    /// RPO and expected targets from `cfg`; its repository when it is a local path.
    pub fn from_config(cfg: &Config) -> Self {
        let repo = cfg.repository();
        let local = (!repo.contains("://") || repo.starts_with("file://"))
            .then(|| std::path::PathBuf::from(repo.trim_start_matches("file://")));
        HealthOptions {
            rpo_secs: cfg.rpo_secs(),
            expected_targets: cfg.expand_targets(&["all".into()]),
            local_repository: local,
            ..Default::default()
        }
    }
}

/// Free and total bytes of the file system holding `path` (statvfs).
pub fn filesystem_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

const GB: f64 = 1e9;

/// Evaluates health at `now` (see the module docs). `repo` is unused today beyond its
/// location; the repository's size comes with [`status_report`].
pub async fn health(
    catalog: &dyn Catalog,
    _repo: Option<&Repository>,
    opts: &HealthOptions,
    now: DateTime<Utc>,
) -> Result<Health> {
    let mut summaries = catalog::target_summaries(catalog, now).await?;
    for t in &opts.expected_targets {
        summaries
            .entry(t.clone())
            .or_insert_with(|| catalog::TargetSummary {
                target: t.clone(),
                ..Default::default()
            });
    }
    let mut reasons = Vec::new();
    let mut targets = Vec::new();
    let rpo = Duration::seconds(opts.rpo_secs);
    for (name, s) in summaries {
        let mut level = HealthStatus::Healthy;
        let mut add = |l: HealthStatus, check: &str, msg: String, level: &mut HealthStatus| {
            *level = (*level).max(l);
            reasons.push(HealthReason {
                level: l,
                check: check.into(),
                message: msg,
            });
        };
        match s.last_success {
            None => add(
                HealthStatus::Degraded,
                "never_backed_up",
                format!("target {name}: no successful backup yet"),
                &mut level,
            ),
            Some(t) => {
                let age = now - t;
                if age > rpo * 3 {
                    add(
                        HealthStatus::Critical,
                        "rpo",
                        format!(
                            "target {name}: last successful backup {} hours ago (RPO {} h)",
                            age.num_hours(),
                            rpo.num_hours()
                        ),
                        &mut level,
                    );
                } else if age > rpo {
                    add(HealthStatus::Degraded, "rpo", format!("target {name}: last successful backup {} minutes ago, past the RPO of {} h", age.num_minutes(), rpo.num_hours()), &mut level);
                }
            }
        }
        if s.failures_24h >= opts.critical_failures {
            add(
                HealthStatus::Critical,
                "failures",
                format!("target {name}: {} failed backups in 24 h", s.failures_24h),
                &mut level,
            );
        } else if s.failures_24h > 0 {
            add(
                HealthStatus::Degraded,
                "failures",
                format!("target {name}: {} failed backup(s) in 24 h", s.failures_24h),
                &mut level,
            );
        }
        targets.push(TargetHealth {
            age_secs: s.last_success.map(|t| (now - t).num_seconds()),
            target: name,
            last_success: s.last_success,
            last_snapshot: s.last_snapshot,
            failures_24h: s.failures_24h,
            status: level,
        });
    }
    // Drills and verifications.
    let restores = catalog.list_restore_jobs(50).await?;
    let last_drill = restores
        .iter()
        .filter(|r| r.drill && r.completed_at.is_some())
        .max_by_key(|r| r.completed_at)
        .map(|r| {
            (
                r.completed_at.unwrap_or(r.created_at),
                r.status == JobStatus::Completed,
            )
        });
    match last_drill {
        Some((_, false)) => reasons.push(HealthReason {
            level: HealthStatus::Critical,
            check: "drill".into(),
            message: "the latest restore drill failed".into(),
        }),
        Some((at, true)) if now - at > opts.drill_max_age => reasons.push(HealthReason {
            level: HealthStatus::Degraded,
            check: "drill".into(),
            message: format!("no restore drill since {}", at.format("%Y-%m-%d")),
        }),
        None => {
            let has_drill_schedule = catalog.list_schedules().await?.iter().any(|s| {
                s.enabled
                    && s.action == ScheduleAction::RestoreDrill
                    && s.created_at < now - opts.drill_max_age
            });
            if has_drill_schedule {
                reasons.push(HealthReason {
                    level: HealthStatus::Degraded,
                    check: "drill".into(),
                    message: "no restore drill has run yet".into(),
                });
            }
        }
        _ => {}
    }
    let mut storage = StorageUsage::default();
    if let Some((free, total)) = opts.local_repository.as_deref().and_then(filesystem_space) {
        let used_pct = if total > 0 {
            100.0 * (total - free.min(total)) as f64 / total as f64
        } else {
            0.0
        };
        storage.available_gb = Some(free as f64 / GB);
        storage.filesystem_used_percent = Some(used_pct);
        if used_pct >= opts.storage_critical_percent {
            reasons.push(HealthReason {
                level: HealthStatus::Critical,
                check: "storage".into(),
                message: format!("repository file system {used_pct:.1}% full"),
            });
        } else if used_pct >= opts.storage_degraded_percent {
            reasons.push(HealthReason {
                level: HealthStatus::Degraded,
                check: "storage".into(),
                message: format!("repository file system {used_pct:.1}% full"),
            });
        }
    }
    let status = reasons
        .iter()
        .map(|r| r.level)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    Ok(Health {
        status,
        reasons,
        targets,
        last_drill,
        storage,
        checked_at: now,
    })
}

/// Publishes `backup.health.changed` `{from, to, reasons}` when the state changes.
#[derive(Clone)]
pub struct HealthMonitor {
    last: Arc<Mutex<Option<HealthStatus>>>,
    bus: EventBus,
}

impl HealthMonitor {
    /// A monitor publishing on `bus`.
    pub fn new(bus: EventBus) -> Self {
        HealthMonitor {
            last: Arc::new(Mutex::new(None)),
            bus,
        }
    }

    /// Records `h`; returns true (and publishes) when its state differs from the previous one
    /// (the first observation publishes only when not healthy).
    pub fn observe(&self, h: &Health, now: DateTime<Utc>) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let prev = *last;
        *last = Some(h.status);
        let changed = match prev {
            Some(p) => p != h.status,
            None => h.status != HealthStatus::Healthy,
        };
        if changed {
            self.bus.publish(Event::new(
                HEALTH_CHANGED,
                now,
                serde_json::json!({"from": prev.map(|p| p.as_str()), "to": h.status.as_str(), "reasons": h.reasons}),
            ));
        }
        changed
    }
}

/// The PRD's status output (`GET /api/v1/backup/status`, CLI `status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// PRD `system_status`.
    pub system_status: HealthStatus,
    /// Why not healthy.
    pub reasons: Vec<HealthReason>,
    /// PRD `active_jobs`: pending and running jobs.
    pub active_jobs: Vec<Job>,
    /// PRD `last_successful_backup`.
    pub last_successful_backup: Option<DateTime<Utc>>,
    /// PRD `storage_usage` `{used_gb, available_gb, compression_ratio}`.
    pub storage_usage: StorageUsage,
    /// Per-target health.
    pub targets: Vec<TargetHealth>,
    /// Latest jobs (newest first; 10, or 50 when verbose).
    pub recent_jobs: Vec<Job>,
    /// Snapshots in the repository (when it was opened).
    pub snapshots: Option<usize>,
    /// Catalog kind and location.
    pub catalog: String,
    /// Repository location.
    pub repository: Option<String>,
    /// When computed.
    pub checked_at: DateTime<Utc>,
}

/// Builds the status report. With `repo`, the repository's size and compression ratio are
/// read (this loads the index). `only_targets` limits targets and jobs to those identifiers.
pub async fn status_report(
    catalog: &dyn Catalog,
    repo: Option<&Repository>,
    opts: &HealthOptions,
    only_targets: &[String],
    verbose: bool,
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    let h = health(catalog, repo, opts, now).await?;
    let keep = |t: &str| only_targets.is_empty() || only_targets.iter().any(|o| o == t);
    let active_jobs: Vec<Job> = catalog
        .list_jobs(&JobFilter {
            statuses: vec![JobStatus::Pending, JobStatus::Running],
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|j| keep(&j.target_identifier))
        .collect();
    let recent_jobs: Vec<Job> = catalog
        .list_jobs(&JobFilter {
            limit: Some(if verbose { 200 } else { 50 }),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|j| keep(&j.target_identifier))
        .take(if verbose { 50 } else { 10 })
        .collect();
    let targets: Vec<TargetHealth> = h.targets.into_iter().filter(|t| keep(&t.target)).collect();
    let mut storage = h.storage;
    let mut snapshots = None;
    if let Some(r) = repo {
        let st = crate::engine::status::status(r).await?;
        storage.used_gb = st.total_size as f64 / GB;
        storage.compression_ratio = Some(st.compression_ratio);
        snapshots = Some(st.snapshots);
    }
    Ok(StatusReport {
        system_status: h.status,
        reasons: h.reasons,
        active_jobs,
        last_successful_backup: targets.iter().filter_map(|t| t.last_success).max(),
        storage_usage: storage,
        targets,
        recent_jobs,
        snapshots,
        catalog: format!("{} {}", catalog.kind(), catalog.location()),
        repository: repo.map(|r| r.store().location().to_string()),
        checked_at: now,
    })
}
