//! `data_backup_manager.Catalog` and restore points. The catalog (embedded JSON file or
//! PostgreSQL) holds the PRD's restore points; creating one goes through
//! `backup_core::catalog::restore_points::create_restore_point`, which resolves the snapshots
//! against the repository.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::catalog::{self, CatalogOptions};
use backup_core::config::Config;
use chrono::{DateTime, Utc};
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::runtime::block_on;

/// A catalog: the PostgreSQL database at `database_url`, or the embedded catalog in
/// `directory`; with neither, what the config file and environment say (`DBM_DATABASE_URL`,
/// `DATABASE_URL`, `DBM_CATALOG_DIR`; default `~/.local/share/data-backup-manager`).
#[pyclass(frozen, module = "data_backup_manager")]
pub struct Catalog {
    pub inner: Arc<dyn catalog::Catalog>,
    location: String,
}

impl Catalog {
    /// The catalog the config file and environment name.
    pub fn open_default(py: Python<'_>) -> PyResult<Catalog> {
        Catalog::open(py, None, None)
    }
}

#[pymethods]
impl Catalog {
    /// Opens (and creates when missing) a catalog. Errors: CatalogError.
    #[staticmethod]
    #[pyo3(signature = (database_url=None, *, directory=None))]
    fn open(
        py: Python<'_>,
        database_url: Option<String>,
        directory: Option<PathBuf>,
    ) -> PyResult<Catalog> {
        let opts = match (&database_url, &directory) {
            (None, None) => {
                CatalogOptions::from_config(&Config::load_with_env(None).map_err(to_py)?)
            }
            _ => CatalogOptions {
                database_url: database_url.clone(),
                dir: directory.clone(),
                pool_size: None,
            },
        };
        let location = match (&opts.database_url, &opts.dir) {
            (Some(u), _) => catalog::redact_url(u),
            (None, Some(d)) => d.display().to_string(),
            (None, None) => "default".into(),
        };
        let inner =
            block_on(py, move || async move { catalog::open(&opts).await })?.map_err(to_py)?;
        Ok(Catalog { inner, location })
    }

    /// Where the catalog is (a database URL without its password, or a folder).
    #[getter]
    fn location(&self) -> &str {
        &self.location
    }

    fn __repr__(&self) -> String {
        format!("Catalog({:?})", self.location)
    }

    /// Every restore point, newest first.
    fn restore_points(&self, py: Python<'_>) -> PyResult<Vec<RestorePoint>> {
        let cat = self.inner.clone();
        let v =
            block_on(py, move || async move { cat.list_restore_points().await })?.map_err(to_py)?;
        Ok(v.iter().map(RestorePoint::from).collect())
    }

    /// One restore point by name or id. Errors: NotFound.
    fn restore_point(&self, py: Python<'_>, name_or_id: String) -> PyResult<RestorePoint> {
        let cat = self.inner.clone();
        let rp = block_on(py, move || async move {
            cat.get_restore_point(&name_or_id).await
        })?
        .map_err(to_py)?;
        Ok(RestorePoint::from(&rp))
    }
}

/// PRD `RestorePoint`: a named set of snapshots captured together.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct RestorePoint {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Full ids of the snapshots it names.
    pub snapshot_ids: Vec<String>,
    /// Ids (UUIDs) of the catalog's backup jobs that produced them.
    pub backup_job_ids: Vec<String>,
    /// When it was created (UTC).
    pub created_at: DateTime<Utc>,
    /// Free text.
    pub description: Option<String>,
    /// The last verification restored every snapshot bit-exact.
    pub verified: bool,
    /// When it was last verified.
    pub verification_date: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: String,
}

impl From<&catalog::RestorePoint> for RestorePoint {
    fn from(r: &catalog::RestorePoint) -> Self {
        RestorePoint {
            id: r.id.to_string(),
            name: r.name.clone(),
            snapshot_ids: r.snapshot_ids.clone(),
            backup_job_ids: r.backup_job_ids.iter().map(|u| u.to_string()).collect(),
            created_at: r.created_at,
            description: r.description.clone(),
            verified: r.verified,
            verification_date: r.verification_date,
            created_by: r.created_by.clone(),
        }
    }
}

#[pymethods]
impl RestorePoint {
    fn __repr__(&self) -> String {
        format!(
            "RestorePoint(name={:?}, snapshots={}, created_at='{}')",
            self.name,
            self.snapshot_ids.len(),
            self.created_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}
