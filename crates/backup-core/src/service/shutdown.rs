//! What happens to running work when a server stops (SIGTERM): running backup jobs get a
//! grace period to finish; those still running after it are put back to `pending` (marked
//! for retry) so another instance, or this one after a restart, runs them again. None is left
//! `running`. (A process killed without this step is covered by the scheduler's recovery:
//! a `running` job whose owner is dead is retried at the next start.)

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::catalog::{AuditEntry, Catalog, JobFilter, JobStatus};
use crate::error::Result;

/// Puts the `running` jobs held by `owner` back to `pending` (retry count unchanged: the
/// attempt did not fail, it was interrupted). Returns their ids.
pub async fn release_jobs(catalog: &dyn Catalog, owner: &str) -> Result<Vec<Uuid>> {
    let running = catalog
        .list_jobs(&JobFilter {
            statuses: vec![JobStatus::Running],
            ..Default::default()
        })
        .await?;
    let mut released = Vec::new();
    for mut j in running {
        if j.owner.as_deref() != Some(owner) {
            continue;
        }
        j.status = JobStatus::Pending;
        j.owner = None;
        j.heartbeat_at = None;
        j.started_at = None;
        j.not_before = None;
        j.metadata["interrupted_at"] = json!(Utc::now());
        if catalog
            .update_job_if(&j, JobStatus::Running, Some(owner))
            .await?
        {
            let _ = catalog
                .audit(AuditEntry::new(
                    Utc::now(),
                    "scheduler",
                    "job.released",
                    j.id.to_string(),
                    json!({"reason": "server shutdown", "target": j.target_identifier}),
                ))
                .await;
            released.push(j.id);
        }
    }
    Ok(released)
}
