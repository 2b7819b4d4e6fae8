//! Verifying a backup on request (`POST /api/v1/backup/verify/{id}`, CLI `verify`): every
//! file of the job's snapshot is read back from the repository and compared with its
//! whole-file digest ([`crate::engine::check::verify`]). The outcome is recorded in the audit
//! log and on the restore points that hold the snapshot.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::catalog::{AuditEntry, Catalog, JobStatus};
use crate::engine::check::{self, VerifyReport};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;

/// The outcome of a verification: the engine's report (flattened: `snapshot`, `ok`, `files`,
/// `bytes`, `errors`), the job it belongs to, and when it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    /// The backup job whose snapshot was verified (None when a snapshot id was given).
    pub job_id: Option<Uuid>,
    /// When the verification finished (UTC).
    pub verified_at: DateTime<Utc>,
    /// The engine's report.
    #[serde(flatten)]
    pub report: VerifyReportData,
}

/// [`VerifyReport`] in a form that also deserializes (the CLI's remote mode reads it back).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReportData {
    /// Snapshot verified (full id).
    pub snapshot: String,
    /// True when every file's bytes matched its digest and every tree was readable.
    pub ok: bool,
    /// Files verified.
    pub files: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Files or trees that failed, with why.
    pub errors: Vec<crate::repository::snapshot::PathError>,
}

impl From<VerifyReport> for VerifyReportData {
    fn from(r: VerifyReport) -> Self {
        VerifyReportData {
            snapshot: r.snapshot,
            ok: r.ok,
            files: r.files,
            bytes: r.bytes,
            errors: r.errors,
        }
    }
}

/// Verifies what `id` names: a backup job id (its snapshot; the job must be `completed`), or a
/// snapshot id, unique prefix or `latest`. A snapshot whose manifest or trees cannot be read
/// gives `ok: false` with the reason in `errors` (not an `Err`): the verification ran and
/// failed. Records `verify` in the audit log (actor `who`) and sets `verified` /
/// `verification_date` on restore points holding the snapshot.
///
/// Errors: [`Error::NotFound`] (no such job), [`Error::Conflict`] (the job has no snapshot
/// yet), [`Error::SnapshotNotFound`].
pub async fn verify(
    catalog: Option<&dyn Catalog>,
    repo: &Arc<Repository>,
    id: &str,
    who: &str,
    progress: &dyn Progress,
) -> Result<Verification> {
    let (job_id, snap_spec) = match (Uuid::parse_str(id), catalog) {
        (Ok(uuid), Some(cat)) => {
            let job = cat.get_job(uuid).await?;
            let sp = match (job.status, job.storage_path.clone()) {
                (JobStatus::Completed, Some(sp)) => sp,
                (s, _) => {
                    return Err(Error::Conflict(format!(
                        "backup job {uuid} is {}: only a completed job has a snapshot to verify",
                        s.as_str()
                    )))
                }
            };
            (Some(uuid), sp)
        }
        (Ok(uuid), None) => {
            return Err(Error::InvalidInput(format!(
                "{uuid} is a job id, but no catalog is open"
            )))
        }
        (Err(_), _) => (None, id.to_string()),
    };
    let report: VerifyReportData = match repo.find_snapshot(&snap_spec).await {
        Ok(snap) => check::verify(repo, &snap, progress).await?.into(),
        Err(e) if job_id.is_some() && e.kind() != crate::ErrorKind::Locked => {
            // The job names a snapshot the repository can no longer produce: that is a failed
            // verification, not a bad request.
            VerifyReportData {
                snapshot: snap_spec.clone(),
                ok: false,
                files: 0,
                bytes: 0,
                errors: vec![crate::repository::snapshot::PathError {
                    path: "/".into(),
                    message: e.to_string(),
                }],
            }
        }
        Err(e) => return Err(e),
    };
    let now = Utc::now();
    if let Some(cat) = catalog {
        let _ = cat
            .audit(AuditEntry::new(
                now,
                who,
                "verify",
                job_id.map(|j| j.to_string()).unwrap_or_else(|| report.snapshot.clone()),
                json!({"snapshot": report.snapshot, "ok": report.ok, "files": report.files, "errors": report.errors.len()}),
            ))
            .await;
        if let Ok(points) = cat.list_restore_points().await {
            for mut rp in points {
                if rp.snapshot_ids.contains(&report.snapshot) {
                    // A point is verified when its latest check passed for this snapshot; one
                    // failure clears the flag.
                    rp.verified = report.ok;
                    rp.verification_date = Some(now);
                    let _ = cat.update_restore_point(&rp).await;
                }
            }
        }
    }
    Ok(Verification {
        job_id,
        verified_at: now,
        report,
    })
}
