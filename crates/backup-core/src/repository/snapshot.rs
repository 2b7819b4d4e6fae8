//! Snapshot manifests (`snapshots/<id>`): what was backed up, when, from where, and the root
//! tree. A snapshot exists once its manifest is stored; it is written last (after packs and
//! index), so a visible snapshot is always complete. The id is BLAKE3 of the stored bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::repository::id::Id;

/// The PRD's backup types (`BackupJob.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Every file is read again (still deduplicated against the whole repository).
    Full,
    /// Files whose size, mtime, ctime and inode match the parent snapshot are not read.
    #[default]
    Incremental,
}

impl std::str::FromStr for BackupType {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "full" => Ok(BackupType::Full),
            "incremental" => Ok(BackupType::Incremental),
            other => Err(crate::Error::InvalidInput(format!(
                "unknown backup type {other:?}: expected full or incremental"
            ))),
        }
    }
}

impl std::fmt::Display for BackupType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
        })
    }
}

/// A path that could not be backed up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathError {
    /// The path (lossy UTF-8).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Counters of one backup. Sizes in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose content changed.
    pub files_changed: u64,
    /// Files whose content equals the parent's (reused without reading, or re-read and equal).
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and devices.
    pub others: u64,
    /// Total size of all files in the snapshot.
    pub bytes_total: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Bytes added to the repository (encrypted, compressed, packed).
    pub bytes_added: u64,
    /// Uncompressed bytes of the blobs added.
    pub raw_bytes_added: u64,
    /// Blobs added (data and tree).
    pub blobs_added: u64,
    /// Wall time of the backup, seconds.
    pub duration_secs: f64,
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Id (BLAKE3 of the stored object); not part of the stored JSON.
    #[serde(skip)]
    pub id: Id,
    /// Manifest format version.
    pub version: u32,
    /// When the backup started (UTC).
    pub time: DateTime<Utc>,
    /// The UTC offset of the host's local zone at that time, e.g. `+01:00`.
    pub utc_offset: String,
    /// Host that took the snapshot.
    pub hostname: String,
    /// User that ran it.
    pub username: String,
    /// Target kind: `files`, `postgres`, `minio`, ... (one snapshot holds one kind).
    pub target_kind: String,
    /// The target specs as given (`files:/srv/data`).
    pub targets: Vec<String>,
    /// Absolute source paths, in the root tree.
    pub paths: Vec<String>,
    /// Root tree id.
    pub tree: Id,
    /// Parent snapshot used for change detection, if any.
    pub parent: Option<Id>,
    /// Backup type (PRD).
    pub backup_type: BackupType,
    /// Free text (PRD `--description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Keep at least until then (PRD `retention_until`, from `--retention-days`).
    #[serde(default)]
    pub retention_until: Option<DateTime<Utc>>,
    /// True when some paths could not be read (see `errors`).
    pub partial: bool,
    /// Paths that could not be backed up.
    #[serde(default)]
    pub errors: Vec<PathError>,
    /// Counters.
    pub summary: Summary,
    /// Version of the program that wrote it.
    pub program_version: String,
    /// Facts the target recorded when it finished (PostgreSQL: start/stop LSN, timeline,
    /// system identifier, server version; see `Target::finish`). Empty for files.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, serde_json::Value>,
}
