//! The status view of `status` (CLI) and `GET /api/v1/backup/status`: the repository's
//! figures ([`RepoStatus`]) with the PRD's status report on top (`system_status`,
//! `active_jobs`, `last_successful_backup`, `storage_usage`, per-target health). One
//! function builds it, so the CLI prints the same thing locally and through the server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Job};
use crate::config::Config;
use crate::engine::status::{self, RepoStatus};
use crate::error::Result;
use crate::health::{self, HealthOptions, HealthReason, HealthStatus, StorageUsage, TargetHealth};
use crate::repository::Repository;

/// Status of the repository and of the backup system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Repository figures (location, snapshots, sizes, ratios).
    #[serde(flatten)]
    pub repo: RepoStatus,
    /// PRD `system_status` (absent when the catalog could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_status: Option<HealthStatus>,
    /// Why not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<HealthReason>>,
    /// PRD `active_jobs`: pending and running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_jobs: Option<Vec<Job>>,
    /// PRD `last_successful_backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<Option<DateTime<Utc>>>,
    /// Per-target health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetHealth>>,
    /// Catalog kind and location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// Latest jobs (only when verbose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_jobs: Option<Vec<Job>>,
    /// PRD `storage_usage` `{used_gb, available_gb, compression_ratio}` (+ file system use).
    pub storage_usage: StorageUsage,
    /// Why the catalog part is missing, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
}

/// Builds the view. `catalog` is an error when it could not be opened: the view then has the
/// repository part only (and `catalog_error`). `only` limits targets and jobs to those
/// identifiers (already expanded); `verbose` adds `recent_jobs`.
pub async fn status_view(
    catalog: std::result::Result<&dyn Catalog, String>,
    repo: &Repository,
    config: &Config,
    only: &[String],
    verbose: bool,
    now: DateTime<Utc>,
) -> Result<StatusView> {
    let repo_status = status::status(repo).await?;
    let (report, catalog_error) = match catalog {
        Ok(cat) => {
            let opts = HealthOptions::from_config(config);
            (
                Some(health::status_report(cat, None, &opts, only, verbose, now).await?),
                None,
            )
        }
        Err(e) => (None, Some(e)),
    };
    let mut storage = report
        .as_ref()
        .map(|r| r.storage_usage.clone())
        .unwrap_or_default();
    storage.used_gb = repo_status.total_size as f64 / 1e9;
    storage.compression_ratio = Some(repo_status.compression_ratio);
    Ok(StatusView {
        repo: repo_status,
        system_status: report.as_ref().map(|r| r.system_status),
        reasons: report.as_ref().map(|r| r.reasons.clone()),
        active_jobs: report.as_ref().map(|r| r.active_jobs.clone()),
        last_successful_backup: report.as_ref().map(|r| r.last_successful_backup),
        targets: report.as_ref().map(|r| r.targets.clone()),
        catalog: report.as_ref().map(|r| r.catalog.clone()),
        recent_jobs: if verbose {
            report.as_ref().map(|r| r.recent_jobs.clone())
        } else {
            None
        },
        storage_usage: storage,
        catalog_error,
    })
}
