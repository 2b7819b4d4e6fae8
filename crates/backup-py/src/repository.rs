//! `data_backup_manager.Repository`: one opened repository. Each method builds the engine's
//! options struct from its keyword arguments, runs the engine operation on the shared runtime
//! with the GIL released, and converts the result. No backup logic lives here.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::engine::{backup, check, forget, prune, restore};
use backup_core::progress::{NoProgress, Progress};
use backup_core::repository::InitOptions;
use backup_core::BackupType;
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::args;
use crate::catalog::{Catalog, RestorePoint};
use crate::errors::{partial, to_py, InvalidArgument, RepositoryCorrupt};
use crate::progress::{CallbackProgress, DEFAULT_INTERVAL};
use crate::runtime::block_on;
use crate::types::{CheckReport, ForgetResult, PruneReport, RestoreResult, Snapshot};

/// An open repository. Create one with `Repository.init(...)` or `Repository.open(...)`.
/// Safe to share between threads; each call takes the repository locks it needs.
#[pyclass(frozen, module = "data_backup_manager")]
pub struct Repository {
    inner: Arc<backup_core::Repository>,
    url: String,
}

/// The progress sink for an optional callback.
fn sink(progress: Option<Py<PyAny>>, phase: &str) -> Option<CallbackProgress> {
    progress.map(|cb| CallbackProgress::new(cb, phase, DEFAULT_INTERVAL))
}

/// Runs `op` with the callback's sink (or none) and makes the callback's final call.
fn with_progress<'a, T, F, Fut>(
    py: Python<'_>,
    progress: &'a Option<CallbackProgress>,
    op: F,
) -> PyResult<T>
where
    F: FnOnce(&'a dyn Progress) -> Fut + Send,
    Fut: std::future::Future<Output = backup_core::Result<T>> + 'a,
    T: Send,
{
    let p: &'a dyn Progress = match progress {
        Some(p) => p,
        None => &NoProgress,
    };
    let r = block_on(py, move || op(p))?;
    if let Some(p) = progress {
        py.detach(|| p.finish());
    }
    r.map_err(to_py)
}

/// Who creates catalog records from Python: `$USER`, else "python".
fn default_actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "python".into())
}

/// Sets attributes on the exception value of `err`.
fn with_attr(py: Python<'_>, err: PyErr, name: &str, value: Py<PyAny>) -> PyErr {
    match err.value(py).setattr(name, value) {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// The id of a `Snapshot` object or a str (`"latest"`, an id or a unique prefix).
fn snapshot_spec(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = obj.cast::<Snapshot>() {
        return Ok(s.get().id.clone());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.to_string());
    }
    Err(InvalidArgument::new_err(
        "snapshot: expected a Snapshot, 'latest', or a snapshot id (or unique prefix)",
    ))
}

#[pymethods]
impl Repository {
    /// Creates a repository at `url` (a local directory, created if missing) protected by a
    /// password. Errors: RepositoryExists, InvalidArgument, StorageError.
    #[staticmethod]
    #[pyo3(signature = (url, password=None, *, password_file=None))]
    fn init(
        py: Python<'_>,
        url: &Bound<'_, PyAny>,
        password: Option<&Bound<'_, PyAny>>,
        password_file: Option<PathBuf>,
    ) -> PyResult<Repository> {
        let url = args::location(url)?;
        let pw = args::password(password, password_file)?;
        let u = url.clone();
        let repo = block_on(py, move || async move {
            let store = backup_core::store::open_store(&u, true)?;
            backup_core::Repository::init(store, &pw, InitOptions::default()).await
        })?
        .map_err(to_py)?;
        Ok(Repository {
            inner: Arc::new(repo),
            url,
        })
    }

    /// Opens the repository at `url`. The password comes from `password` (str or bytes),
    /// `password_file` (its first line), or else `DBM_PASSWORD_FILE` / `DBM_PASSWORD`.
    /// Errors: WrongPassword, RepositoryNotFound, RepositoryCorrupt, InvalidArgument.
    #[staticmethod]
    #[pyo3(signature = (url, password=None, *, password_file=None))]
    fn open(
        py: Python<'_>,
        url: &Bound<'_, PyAny>,
        password: Option<&Bound<'_, PyAny>>,
        password_file: Option<PathBuf>,
    ) -> PyResult<Repository> {
        let url = args::location(url)?;
        let pw = args::password(password, password_file)?;
        let u = url.clone();
        let repo = block_on(py, move || async move {
            let store = backup_core::store::open_store(&u, false)?;
            backup_core::Repository::open(store, &pw).await
        })?
        .map_err(to_py)?;
        Ok(Repository {
            inner: Arc::new(repo),
            url,
        })
    }

    /// The location the repository was opened with.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// The repository id (hex, from its config).
    #[getter]
    fn id(&self) -> &str {
        &self.inner.config().id
    }

    fn __repr__(&self) -> String {
        format!("Repository({:?})", self.url)
    }

    /// Backs up `targets` and returns the stored Snapshot.
    ///
    /// `targets`: a spec (`"files:/srv/app"`), a path, or a list of them. `type`: `"full"`
    /// reads every file; `"incremental"` (default) skips files unchanged since the newest
    /// snapshot of the same paths (a first backup is always full). `retention_days`: keep the
    /// snapshot at least that long. `exclude`: glob patterns (without `/` they match a name at
    /// any depth). A snapshot in which some paths could not be read raises `Partial` (the
    /// snapshot is stored: `e.result`) unless `allow_partial=True`.
    /// Errors: TargetError, InvalidArgument, RepositoryLocked, StorageError, Partial.
    #[pyo3(signature = (
        targets, *, r#type="incremental", description=None, retention_days=None, tags=None,
        exclude=None, parent=None, allow_partial=false, progress=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn backup(
        &self,
        py: Python<'_>,
        targets: &Bound<'_, PyAny>,
        r#type: &str,
        description: Option<String>,
        retention_days: Option<u32>,
        tags: Option<&Bound<'_, PyAny>>,
        exclude: Option<&Bound<'_, PyAny>>,
        parent: Option<&Bound<'_, PyAny>>,
        allow_partial: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Snapshot> {
        let opts = backup::BackupOptions {
            targets: args::targets(targets)?,
            backup_type: Some(r#type.parse::<BackupType>().map_err(to_py)?),
            excludes: match exclude {
                Some(e) => args::strings(e, "exclude")?,
                None => Vec::new(),
            },
            description,
            tags: match tags {
                Some(t) => args::strings(t, "tags")?,
                None => Vec::new(),
            },
            retention_days,
            parent: parent.map(snapshot_spec).transpose()?,
            ..Default::default()
        };
        let repo = self.inner.clone();
        let sink = sink(progress, "backup");
        let snap = with_progress(py, &sink, |p| async move {
            backup::backup(&repo, &opts, p).await
        })?;
        let out = Snapshot::from(&snap);
        if snap.partial && !allow_partial {
            let msg = match snap.errors.first() {
                Some(e) => format!(
                    "snapshot {} is partial: {} path(s) could not be read, first {}: {} \
                     (the snapshot is stored; pass allow_partial=True to accept it)",
                    out.short_id,
                    snap.errors.len(),
                    e.path,
                    e.message
                ),
                None => format!("snapshot {} is partial", out.short_id),
            };
            let errors = out.errors.clone();
            return Err(partial(py, msg, errors, Py::new(py, out)?.into_any()));
        }
        Ok(out)
    }

    /// Snapshots, oldest first. `target`: a kind (`"files"`), a spec (`"files:/srv/app"`) or
    /// a path; `since`: an aware datetime, a date or an ISO 8601 str. A damaged snapshot
    /// manifest is skipped with a `UserWarning` (check() reports it).
    #[pyo3(signature = (target=None, since=None))]
    fn snapshots(
        &self,
        py: Python<'_>,
        target: Option<&Bound<'_, PyAny>>,
        since: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Snapshot>> {
        let since = since.map(|s| args::time(s, "since")).transpose()?;
        // A bare kind name filters by kind; anything else is a target spec or path.
        let (kind, spec) = match target {
            None => (None, None),
            Some(t) => match t.cast::<PyString>() {
                Ok(s) if s.to_cow()?.bytes().all(|b| b.is_ascii_lowercase()) => {
                    (Some(s.to_cow()?.to_string()), None)
                }
                _ => (None, Some(args::target(t)?.to_string())),
            },
        };
        let repo = self.inner.clone();
        let (all, damaged) = block_on(
            py,
            move || async move { repo.snapshots_and_failures().await },
        )?
        .map_err(to_py)?;
        for (id, e) in &damaged {
            PyErr::warn(
                py,
                &py.get_type::<PyUserWarning>(),
                &std::ffi::CString::new(format!(
                    "snapshot {} cannot be read and is skipped: {e}",
                    id.short()
                ))
                .unwrap_or_default(),
                1,
            )?;
        }
        Ok(all
            .iter()
            .filter(|s| since.is_none_or(|t| s.time >= t))
            .filter(|s| kind.as_ref().is_none_or(|k| &s.target_kind == k))
            .filter(|s| {
                spec.as_ref()
                    .is_none_or(|t| s.targets.iter().any(|x| x == t))
            })
            .map(Snapshot::from)
            .collect())
    }

    /// One snapshot by `"latest"`, full id or unique prefix (at least 4 hex digits).
    /// Errors: SnapshotNotFound, RepositoryCorrupt (its manifest is damaged).
    #[pyo3(signature = (id="latest"))]
    fn snapshot(&self, py: Python<'_>, id: &str) -> PyResult<Snapshot> {
        let repo = self.inner.clone();
        let id = id.to_string();
        let s =
            block_on(py, move || async move { repo.find_snapshot(&id).await })?.map_err(to_py)?;
        Ok(Snapshot::from(&s))
    }

    /// Restores `snapshot` (a Snapshot, `"latest"`, an id or prefix) into `destination`
    /// (created if missing): source path `/a/b` lands at `destination/a/b`. `include`: absolute
    /// paths inside the snapshot to restore (default: everything). `verify`: re-read every
    /// restored file and compare it with its stored digest. `overwrite`: allow a non-empty
    /// destination. Files that fail raise `Partial` (everything else is restored; `e.result`).
    /// Errors: SnapshotNotFound, DestinationError, RepositoryCorrupt, Partial.
    #[pyo3(signature = (snapshot, destination, *, include=None, verify=true, overwrite=false, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn restore(
        &self,
        py: Python<'_>,
        snapshot: &Bound<'_, PyAny>,
        destination: PathBuf,
        include: Option<&Bound<'_, PyAny>>,
        verify: bool,
        overwrite: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<RestoreResult> {
        let spec = snapshot_spec(snapshot)?;
        let mut opts = restore::RestoreOptions::new(destination);
        opts.include = match include {
            Some(i) => args::paths(i)?,
            None => Vec::new(),
        };
        opts.verify = verify;
        opts.overwrite = overwrite;
        let repo = self.inner.clone();
        let sink = sink(progress, "restore");
        let summary = with_progress(py, &sink, |p| async move {
            let snap = repo.find_snapshot(&spec).await?;
            restore::restore(&repo, &snap, &opts, p).await
        })?;
        let out = RestoreResult::from(&summary);
        if let Some(first) = summary.errors.first() {
            let msg = format!(
                "restore of snapshot {} into {} is incomplete: {} path(s) failed, first {}: {}",
                &out.snapshot[..out.snapshot.len().min(8)],
                out.destination,
                summary.errors.len(),
                first.path,
                first.message
            );
            let errors = out.errors.clone();
            return Err(partial(py, msg, errors, Py::new(py, out)?.into_any()));
        }
        Ok(out)
    }

    /// Checks the repository's structure (index, snapshots, trees); with `read_data=True` also
    /// decrypts and re-hashes every pack (`read_data_subset`: only this percentage of packs).
    /// Returns the CheckReport; when it found errors, raises RepositoryCorrupt naming the first
    /// damaged object, with the report as `e.report`.
    #[pyo3(signature = (*, read_data=false, read_data_subset=None, progress=None))]
    fn check(
        &self,
        py: Python<'_>,
        read_data: bool,
        read_data_subset: Option<f64>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<CheckReport> {
        if read_data_subset.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            return Err(InvalidArgument::new_err(
                "read_data_subset: a percentage between 0 and 100",
            ));
        }
        let opts = check::CheckOptions {
            read_data,
            read_data_subset,
        };
        let repo = self.inner.clone();
        let sink = sink(progress, "check");
        let report = with_progress(
            py,
            &sink,
            |p| async move { check::check(&repo, &opts, p).await },
        )?;
        let out = CheckReport::from(&report);
        if !report.ok {
            let msg = match report.errors.first() {
                Some(p) => format!(
                    "check of {} found {} problem(s), first: {}{}: {}",
                    self.url,
                    report.errors.len(),
                    p.kind,
                    p.pack
                        .as_deref()
                        .map(|k| format!(" (pack {k})"))
                        .unwrap_or_default(),
                    p.message
                ),
                None => format!("check of {} found problems", self.url),
            };
            let err = RepositoryCorrupt::new_err(msg);
            return Err(with_attr(py, err, "report", Py::new(py, out)?.into_any()));
        }
        Ok(out)
    }

    /// Applies a retention policy: keeps the newest `keep_last` snapshots and the newest of
    /// each of the last N hours/days/weeks/months/years (calendar buckets in `timezone`, an IANA
    /// name), everything within `keep_within` (`"7d"`, `"2w"`, `"1y6m"` or a timedelta) of the
    /// newest, and every snapshot whose `retention_days` has not passed; removes the rest
    /// (snapshots are grouped by host and paths). `prune=True` then frees the data.
    /// With no keep_* rule, only snapshots whose retention has passed are removed.
    #[pyo3(signature = (
        *, keep_last=None, keep_hourly=None, keep_daily=None, keep_weekly=None,
        keep_monthly=None, keep_yearly=None, keep_within=None, timezone="UTC", dry_run=false,
        prune=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn forget(
        &self,
        py: Python<'_>,
        keep_last: Option<u32>,
        keep_hourly: Option<u32>,
        keep_daily: Option<u32>,
        keep_weekly: Option<u32>,
        keep_monthly: Option<u32>,
        keep_yearly: Option<u32>,
        keep_within: Option<&Bound<'_, PyAny>>,
        timezone: &str,
        dry_run: bool,
        prune: bool,
    ) -> PyResult<ForgetResult> {
        let tz: chrono_tz::Tz = timezone.parse().map_err(|_| {
            InvalidArgument::new_err(format!("timezone {timezone:?}: not an IANA time zone name"))
        })?;
        let keep_within = match keep_within {
            None => None,
            Some(k) => Some(match k.cast::<PyString>() {
                Ok(s) => forget::parse_duration(&s.to_cow()?).map_err(to_py)?,
                Err(_) => k.extract::<chrono::TimeDelta>().map_err(|_| {
                    InvalidArgument::new_err("keep_within: a str such as '7d' or a timedelta")
                })?,
            }),
        };
        let policy = forget::RetentionPolicy {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            timezone: Some(tz),
        };
        let repo = self.inner.clone();
        let (decisions, pruned) = block_on(py, move || async move {
            let d = forget::forget(&repo, &policy, dry_run).await?;
            let p = if prune && !dry_run {
                Some(prune::prune(&repo, &prune::PruneOptions::default(), &NoProgress).await?)
            } else {
                None
            };
            Ok::<_, backup_core::Error>((d, p))
        })?
        .map_err(to_py)?;
        Ok(ForgetResult::new(
            &decisions,
            dry_run,
            pruned.as_ref().map(PruneReport::from),
        ))
    }

    /// Records a restore point named `name` in `catalog` (default: `Catalog.open()`) naming
    /// `snapshots` (Snapshots, ids or prefixes, `"latest"`; default: the newest snapshot of each
    /// target in this repository). Errors: Conflict (the name is taken), SnapshotNotFound,
    /// InvalidArgument, CatalogError.
    #[pyo3(signature = (name, snapshots=None, *, description=None, catalog=None, created_by=None))]
    fn create_restore_point(
        &self,
        py: Python<'_>,
        name: String,
        snapshots: Option<&Bound<'_, PyAny>>,
        description: Option<String>,
        catalog: Option<Py<Catalog>>,
        created_by: Option<String>,
    ) -> PyResult<RestorePoint> {
        let snapshots = match snapshots {
            None => Vec::new(),
            Some(s) if s.cast::<PyString>().is_ok() || s.cast::<Snapshot>().is_ok() => {
                vec![snapshot_spec(s)?]
            }
            Some(s) => s
                .try_iter()?
                .map(|x| snapshot_spec(&x?))
                .collect::<PyResult<Vec<_>>>()?,
        };
        let cat = match catalog {
            Some(c) => c.get().inner.clone(),
            None => Catalog::open_default(py)?.inner,
        };
        let who = created_by.unwrap_or_else(default_actor);
        let req = backup_core::catalog::restore_points::NewRestorePoint {
            name,
            snapshots,
            description,
        };
        let repo = self.inner.clone();
        let rp = block_on(py, move || async move {
            backup_core::catalog::restore_points::create_restore_point(&*cat, &repo, &req, &who)
                .await
        })?
        .map_err(to_py)?;
        Ok(RestorePoint::from(&rp))
    }

    /// Restore points in `catalog` (default: `Catalog.open()`), newest first.
    #[pyo3(signature = (*, catalog=None))]
    fn restore_points(
        &self,
        py: Python<'_>,
        catalog: Option<Py<Catalog>>,
    ) -> PyResult<Vec<RestorePoint>> {
        let cat = match catalog {
            Some(c) => c.get().inner.clone(),
            None => Catalog::open_default(py)?.inner,
        };
        let v =
            block_on(py, move || async move { cat.list_restore_points().await })?.map_err(to_py)?;
        Ok(v.iter().map(RestorePoint::from).collect())
    }

    /// Deletes data no snapshot references (after forget). Takes the exclusive lock: raises
    /// RepositoryLocked while a backup or restore runs. `max_unused_percent`: repack a pack when
    /// more than this percentage of it is unused.
    #[pyo3(signature = (*, dry_run=false, max_unused_percent=10.0, progress=None))]
    fn prune(
        &self,
        py: Python<'_>,
        dry_run: bool,
        max_unused_percent: f64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PruneReport> {
        if !(0.0..=100.0).contains(&max_unused_percent) {
            return Err(InvalidArgument::new_err(
                "max_unused_percent: a percentage between 0 and 100",
            ));
        }
        let opts = prune::PruneOptions {
            dry_run,
            max_unused_percent,
        };
        let repo = self.inner.clone();
        let sink = sink(progress, "prune");
        let r = with_progress(
            py,
            &sink,
            |p| async move { prune::prune(&repo, &opts, p).await },
        )?;
        Ok(PruneReport::from(&r))
    }
}
