//! Creating restore points (PRD `RestorePoint`): a named set of snapshots captured together,
//! e.g. "before migration" over files, database and bucket. The snapshots are resolved against
//! the repository first, so a restore point never names a snapshot that does not exist, and the
//! completed backup jobs that produced them are linked (`backup_job_ids`). Every shell (CLI,
//! server, Python) creates restore points through [`create_restore_point`].

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use uuid::Uuid;

use super::{AuditEntry, Catalog, JobFilter, JobStatus, RestorePoint};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// What to record in a new restore point.
#[derive(Debug, Clone, Default)]
pub struct NewRestorePoint {
    /// Unique name (PRD `name`). Required, at most 200 characters.
    pub name: String,
    /// Snapshots: full ids, unique prefixes (at least 4 hex digits) or `latest`. Empty: the
    /// newest snapshot of each group of host, target kind and paths in the repository ("every
    /// target as it is now").
    pub snapshots: Vec<String>,
    /// PRD `description`.
    pub description: Option<String>,
}

/// Longest accepted restore point name (characters).
pub const MAX_NAME_CHARS: usize = 200;

/// Creates a restore point in `catalog` naming snapshots of `repo`, audited as
/// `restore_point.create` by `who`.
///
/// Errors: [`Error::InvalidInput`] for an empty or overlong name or an empty repository,
/// [`Error::SnapshotNotFound`] for a snapshot that does not resolve, [`Error::Conflict`] when
/// the name is taken, catalog and store errors.
pub async fn create_restore_point(
    catalog: &dyn Catalog,
    repo: &Repository,
    req: &NewRestorePoint,
    who: &str,
) -> Result<RestorePoint> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidInput(format!(
            "restore point name {:?}: give 1 to {MAX_NAME_CHARS} characters",
            req.name
        )));
    }
    let mut ids: Vec<String> = Vec::new();
    if req.snapshots.is_empty() {
        // Snapshots are oldest first: the last one of each group wins.
        let mut newest: BTreeMap<(String, String, Vec<String>), String> = BTreeMap::new();
        for s in repo.snapshots().await? {
            newest.insert(
                (s.hostname.clone(), s.target_kind.clone(), s.paths.clone()),
                s.id.to_hex(),
            );
        }
        if newest.is_empty() {
            return Err(Error::InvalidInput(format!(
                "restore point {name:?}: the repository {} has no snapshots",
                repo.store().location()
            )));
        }
        ids.extend(newest.into_values());
    } else {
        for spec in &req.snapshots {
            let id = repo.find_snapshot(spec).await?.id.to_hex();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let wanted: HashSet<&String> = ids.iter().collect();
    let backup_job_ids: Vec<Uuid> = catalog
        .list_jobs(&JobFilter {
            statuses: vec![JobStatus::Completed],
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|j| j.storage_path.as_ref().is_some_and(|p| wanted.contains(p)))
        .map(|j| j.id)
        .collect();
    let rp = RestorePoint {
        id: Uuid::new_v4(),
        name: name.to_string(),
        backup_job_ids,
        snapshot_ids: ids,
        created_at: Utc::now(),
        description: req.description.clone(),
        verified: false,
        verification_date: None,
        created_by: who.to_string(),
    };
    catalog.insert_restore_point(&rp).await?;
    catalog
        .audit(AuditEntry::new(
            rp.created_at,
            who,
            "restore_point.create",
            rp.id.to_string(),
            serde_json::json!({"name": rp.name, "snapshots": rp.snapshot_ids}),
        ))
        .await?;
    Ok(rp)
}
