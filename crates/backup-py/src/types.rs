//! Result types returned to Python: read-only copies of the engine's structs. Sizes are bytes,
//! durations seconds, times timezone-aware `datetime`s in UTC.

use backup_core::engine::{check, forget, prune, restore};
use chrono::{DateTime, Utc};
use pyo3::prelude::*;

/// Counters of one backup (`Snapshot.summary`).
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose content changed.
    pub files_changed: u64,
    /// Files whose content equals the parent's.
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and devices.
    pub others: u64,
    /// Total size of all files in the snapshot (bytes).
    pub bytes_total: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Bytes added to the repository (compressed, encrypted, packed).
    pub bytes_added: u64,
    /// Uncompressed bytes of the blobs added.
    pub raw_bytes_added: u64,
    /// Blobs added (data and tree).
    pub blobs_added: u64,
    /// Wall time of the backup (seconds).
    pub duration_secs: f64,
}

#[pymethods]
impl Summary {
    /// All regular files in the snapshot: new + changed + unmodified.
    #[getter]
    fn files(&self) -> u64 {
        self.files_new + self.files_changed + self.files_unmodified
    }

    fn __repr__(&self) -> String {
        format!(
            "Summary(files={}, dirs={}, bytes_total={}, bytes_added={}, duration_secs={:.3})",
            self.files(),
            self.dirs,
            self.bytes_total,
            self.bytes_added,
            self.duration_secs
        )
    }
}

/// One snapshot: what was backed up, when, and how it went.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct Snapshot {
    /// Full id (64 hex digits).
    pub id: String,
    /// First 8 hex digits of the id, as the CLI shows it.
    pub short_id: String,
    /// When the backup started (UTC).
    pub time: DateTime<Utc>,
    /// `"full"` or `"incremental"`.
    #[pyo3(name = "type")]
    pub backup_type: String,
    /// Target kind (`"files"`).
    pub target_kind: String,
    /// Target specs as given (`"files:/srv/app"`).
    pub targets: Vec<String>,
    /// Absolute source paths.
    pub paths: Vec<String>,
    /// Host that took it.
    pub hostname: String,
    /// User that took it.
    pub username: String,
    /// Parent snapshot id used for change detection.
    pub parent: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Kept at least until then (from `retention_days`).
    pub retention_until: Option<DateTime<Utc>>,
    /// True when some paths could not be read (listed in `errors`).
    pub partial: bool,
    /// `(path, message)` of each path that could not be backed up (or changed while read).
    pub errors: Vec<(String, String)>,
    /// Counters.
    pub summary: Summary,
}

impl From<&backup_core::Snapshot> for Snapshot {
    fn from(s: &backup_core::Snapshot) -> Self {
        let m = &s.summary;
        Snapshot {
            id: s.id.to_hex(),
            short_id: s.id.short(),
            time: s.time,
            backup_type: s.backup_type.to_string(),
            target_kind: s.target_kind.clone(),
            targets: s.targets.clone(),
            paths: s.paths.clone(),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            parent: s.parent.map(|p| p.to_hex()),
            description: s.description.clone(),
            tags: s.tags.clone(),
            retention_until: s.retention_until,
            partial: s.partial,
            errors: s
                .errors
                .iter()
                .map(|e| (e.path.clone(), e.message.clone()))
                .collect(),
            summary: Summary {
                files_new: m.files_new,
                files_changed: m.files_changed,
                files_unmodified: m.files_unmodified,
                dirs: m.dirs,
                others: m.others,
                bytes_total: m.bytes_total,
                bytes_read: m.bytes_read,
                bytes_added: m.bytes_added,
                raw_bytes_added: m.raw_bytes_added,
                blobs_added: m.blobs_added,
                duration_secs: m.duration_secs,
            },
        }
    }
}

#[pymethods]
impl Snapshot {
    /// A Snapshot from the server's JSON (a manifest plus `id`, as `GET /api/v1/backup/list`
    /// and `data-backup-manager list --json` write it). Used by `Client`.
    #[staticmethod]
    fn _from_json(text: &str) -> PyResult<Snapshot> {
        let bad =
            |e: String| crate::errors::InvalidArgument::new_err(format!("snapshot JSON: {e}"));
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let id = v
            .get("id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| bad("no \"id\"".into()))?;
        let id = backup_core::Id::parse(id).map_err(|e| bad(e.to_string()))?;
        let mut s: backup_core::Snapshot =
            serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        s.id = id;
        Ok(Snapshot::from(&s))
    }

    fn __repr__(&self) -> String {
        format!(
            "Snapshot(id='{}', time='{}', type='{}', targets={:?}, partial={})",
            self.short_id,
            self.time.format("%Y-%m-%dT%H:%M:%SZ"),
            self.backup_type,
            self.targets,
            if self.partial { "True" } else { "False" }
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Snapshot>()
            .is_ok_and(|o| o.get().id == self.id)
    }

    fn __hash__(&self) -> u64 {
        // The id is already a uniformly distributed hash: its first 8 bytes will do.
        u64::from_str_radix(&self.id[..16], 16).unwrap_or(0)
    }
}

/// What a restore wrote.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct RestoreResult {
    /// Full id of the snapshot restored.
    pub snapshot: String,
    /// Absolute destination directory.
    pub destination: String,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and devices restored.
    pub others: u64,
    /// File bytes written (holes excluded).
    pub bytes_written: u64,
    /// Files re-read and matched against their stored digest (`verify=True`).
    pub files_verified: u64,
    /// `(path, message)` of each path that failed (empty unless `Partial` was raised).
    pub errors: Vec<(String, String)>,
}

impl From<&restore::RestoreSummary> for RestoreResult {
    fn from(r: &restore::RestoreSummary) -> Self {
        RestoreResult {
            snapshot: r.snapshot.clone(),
            destination: r.destination.clone(),
            files: r.files,
            dirs: r.dirs,
            others: r.others,
            bytes_written: r.bytes_written,
            files_verified: r.files_verified,
            errors: r
                .errors
                .iter()
                .map(|e| (e.path.clone(), e.message.clone()))
                .collect(),
        }
    }
}

#[pymethods]
impl RestoreResult {
    fn __repr__(&self) -> String {
        format!(
            "RestoreResult(snapshot='{}', destination='{}', files={}, dirs={}, bytes_written={}, files_verified={})",
            &self.snapshot[..self.snapshot.len().min(8)],
            self.destination,
            self.files,
            self.dirs,
            self.bytes_written,
            self.files_verified
        )
    }
}

/// One problem found by `check`.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct Problem {
    /// `index`, `missing-pack`, `damaged-pack`, `snapshot`, `tree`, `missing-blob` or `file`.
    pub kind: String,
    /// The pack involved (full hex id), if any.
    pub pack: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Short ids of the snapshots affected.
    pub snapshots: Vec<String>,
    /// Paths affected (at most 100; see `paths_total`).
    pub paths: Vec<String>,
    /// How many paths are affected in all.
    pub paths_total: usize,
}

#[pymethods]
impl Problem {
    fn __repr__(&self) -> String {
        format!("Problem(kind='{}', message={:?})", self.kind, self.message)
    }
}

/// The result of `check`.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct CheckReport {
    /// True when no error was found (warnings allowed).
    pub ok: bool,
    /// Problems that make data unrestorable or the repository inconsistent.
    pub errors: Vec<Problem>,
    /// Harmless findings (e.g. packs left by an interrupted backup; prune removes them).
    pub warnings: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the store.
    pub packs: usize,
    /// Packs whose data was read and verified.
    pub packs_read: usize,
    /// Blobs indexed.
    pub blobs: usize,
}

impl From<&check::CheckReport> for CheckReport {
    fn from(r: &check::CheckReport) -> Self {
        CheckReport {
            ok: r.ok,
            errors: r
                .errors
                .iter()
                .map(|p| Problem {
                    kind: p.kind.clone(),
                    pack: p.pack.clone(),
                    message: p.message.clone(),
                    snapshots: p.snapshots.clone(),
                    paths: p.paths.clone(),
                    paths_total: p.paths_total,
                })
                .collect(),
            warnings: r.warnings.clone(),
            snapshots: r.snapshots,
            packs: r.packs,
            packs_read: r.packs_read,
            blobs: r.blobs,
        }
    }
}

#[pymethods]
impl CheckReport {
    fn __repr__(&self) -> String {
        format!(
            "CheckReport(ok={}, errors={}, warnings={}, snapshots={}, packs={}, packs_read={})",
            if self.ok { "True" } else { "False" },
            self.errors.len(),
            self.warnings.len(),
            self.snapshots,
            self.packs,
            self.packs_read
        )
    }
}

/// What `prune` removed (or would remove with `dry_run=True`). Sizes in bytes.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct PruneReport {
    /// Packs deleted because nothing in them is used.
    pub packs_deleted: usize,
    /// Packs rewritten.
    pub packs_repacked: usize,
    /// Packs deleted because no index named them.
    pub unreferenced_packs_deleted: usize,
    /// Bytes of packs deleted (including packs that were repacked).
    pub bytes_deleted: u64,
    /// Net bytes freed.
    pub bytes_freed: u64,
    /// Bytes written into new packs by repacking.
    pub bytes_repacked: u64,
    /// Blobs still in use.
    pub blobs_used: usize,
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Staging files of interrupted writes deleted.
    pub partial_uploads_deleted: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl From<&prune::PruneReport> for PruneReport {
    fn from(p: &prune::PruneReport) -> Self {
        PruneReport {
            packs_deleted: p.packs_deleted,
            packs_repacked: p.packs_repacked,
            unreferenced_packs_deleted: p.unreferenced_packs_deleted,
            bytes_deleted: p.bytes_deleted,
            bytes_freed: p.bytes_freed,
            bytes_repacked: p.bytes_repacked,
            blobs_used: p.blobs_used,
            blobs_removed: p.blobs_removed,
            partial_uploads_deleted: p.partial_uploads_deleted,
            dry_run: p.dry_run,
        }
    }
}

#[pymethods]
impl PruneReport {
    fn __repr__(&self) -> String {
        format!(
            "PruneReport(packs_deleted={}, packs_repacked={}, bytes_freed={}, blobs_removed={}, dry_run={})",
            self.packs_deleted,
            self.packs_repacked,
            self.bytes_freed,
            self.blobs_removed,
            if self.dry_run { "True" } else { "False" }
        )
    }
}

/// The retention decision for one snapshot.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct Decision {
    /// Full snapshot id.
    pub id: String,
    /// Snapshot time (UTC).
    pub time: DateTime<Utc>,
    /// Whether it is kept.
    pub keep: bool,
    /// Rules that keep it (`last`, `daily`, `retention_until`, ...).
    pub reasons: Vec<String>,
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        format!(
            "Decision(id='{}', keep={}, reasons={:?})",
            &self.id[..self.id.len().min(8)],
            if self.keep { "True" } else { "False" },
            self.reasons
        )
    }
}

/// The result of `forget`.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct ForgetResult {
    /// One decision per snapshot, in the engine's order.
    pub decisions: Vec<Decision>,
    /// Full ids kept.
    pub kept: Vec<String>,
    /// Full ids removed (or that would be, with `dry_run=True`).
    pub removed: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// What the prune that followed did (`prune=True`), else None.
    pub prune: Option<PruneReport>,
}

impl ForgetResult {
    pub fn new(d: &[forget::Decision], dry_run: bool, prune: Option<PruneReport>) -> Self {
        ForgetResult {
            decisions: d
                .iter()
                .map(|x| Decision {
                    id: x.id.clone(),
                    time: x.time,
                    keep: x.keep,
                    reasons: x.reasons.clone(),
                })
                .collect(),
            kept: d.iter().filter(|x| x.keep).map(|x| x.id.clone()).collect(),
            removed: d.iter().filter(|x| !x.keep).map(|x| x.id.clone()).collect(),
            dry_run,
            prune,
        }
    }
}

#[pymethods]
impl ForgetResult {
    fn __repr__(&self) -> String {
        format!(
            "ForgetResult(kept={}, removed={}, dry_run={})",
            self.kept.len(),
            self.removed.len(),
            if self.dry_run { "True" } else { "False" }
        )
    }
}

/// Progress of a long operation, passed to the `progress` callback.
#[pyclass(frozen, get_all, module = "data_backup_manager")]
#[derive(Clone)]
pub struct ProgressInfo {
    /// Current phase (`"backup"`, `"restore"`, `"check"`, ..., `"done"` in the last call).
    pub phase: String,
    /// Bytes processed so far.
    pub bytes_done: u64,
    /// Bytes to process in all, 0 while unknown.
    pub bytes_total: u64,
    /// Items (files, packs) processed so far.
    pub items_done: u64,
    /// Items in all, 0 while unknown.
    pub items_total: u64,
    /// Seconds since the operation started.
    pub elapsed_secs: f64,
}

#[pymethods]
impl ProgressInfo {
    fn __repr__(&self) -> String {
        format!(
            "ProgressInfo(phase='{}', bytes_done={}, bytes_total={}, items_done={}, items_total={})",
            self.phase, self.bytes_done, self.bytes_total, self.items_done, self.items_total
        )
    }
}
