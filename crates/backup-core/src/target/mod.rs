//! Backup targets: what a snapshot is taken of.
//!
//! Every target presents its data as a tree (ARCHITECTURE, principle 2): it walks its source
//! and emits [`WalkEvent`]s — enter a directory, an entry with a content source, leave the
//! directory. The engine turns those into chunks, tree blobs and a snapshot, so listing,
//! diffing, verifying and restoring are written once for all targets. Targets whose data is
//! not a file (a dump, an object body) emit [`Source::Stream`] entries.

pub mod files;
pub mod minio;
pub mod process;
pub mod scenario;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::repository::snapshot::PathError;
use crate::repository::tree::Node;

/// A parsed target spec. Written `kind:argument` (PRD: `postgres`, `files`, `scenario`, `minio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `files:<path>` — a directory tree or a single file, by absolute path.
    Files(PathBuf),
    /// `postgres` or `postgres:<argument>` — a PostgreSQL server. The argument is empty (the
    /// standard `PG*` variables), a `postgres://` URL, or a named server from the config.
    Postgres(String),
    /// `minio` or `minio:<bucket>[/prefix]` — objects of an S3-compatible store (empty: every
    /// bucket).
    Minio(String),
    /// `scenario:<name>` (one Vrooli scenario directory) or `scenarios` (all of them); see
    /// [`scenario`].
    Scenario(Option<String>),
}

impl TargetSpec {
    /// The target kind recorded in snapshots (`files`, `postgres`, `minio`).
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSpec::Files(_) => "files",
            TargetSpec::Postgres(_) => "postgres",
            TargetSpec::Minio(_) => "minio",
            TargetSpec::Scenario(_) => "scenario",
        }
    }
}

impl std::str::FromStr for TargetSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "files" => {
                if arg.is_empty() {
                    return Err(Error::InvalidInput(format!("target {s:?}: give a path, e.g. files:/srv/data")));
                }
                Ok(TargetSpec::Files(files::absolute(std::path::Path::new(arg))?))
            }
            // A bare URL is a PostgreSQL target too.
            "postgres" | "postgresql" if arg.starts_with("//") => {
                Ok(TargetSpec::Postgres(s.to_string()))
            }
            "postgres" => Ok(TargetSpec::Postgres(arg.to_string())),
            "minio" => Ok(TargetSpec::Minio(arg.trim_start_matches('/').to_string())),
            "scenario" if !arg.is_empty() => {
                scenario::validate_name(arg)?;
                Ok(TargetSpec::Scenario(Some(arg.to_string())))
            }
            "scenarios" | "scenario" if arg.is_empty() => Ok(TargetSpec::Scenario(None)),
            _ => Err(Error::InvalidInput(format!(
                "unknown target {s:?}: expected files:<path> (e.g. files:/srv/data), scenario:<name>, scenarios, postgres[:<url|name>] or minio[:<bucket>[/prefix]]"
            ))),
        }
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Files(p) => write!(f, "files:{}", p.display()),
            TargetSpec::Postgres(a) if a.is_empty() => f.write_str("postgres"),
            TargetSpec::Postgres(a)
                if a.starts_with("postgres://") || a.starts_with("postgresql://") =>
            {
                f.write_str(a)
            }
            TargetSpec::Postgres(a) => write!(f, "postgres:{a}"),
            TargetSpec::Minio(a) if a.is_empty() => f.write_str("minio"),
            TargetSpec::Minio(a) => write!(f, "minio:{a}"),
            TargetSpec::Scenario(Some(n)) => write!(f, "scenario:{n}"),
            TargetSpec::Scenario(None) => f.write_str("scenarios"),
        }
    }
}

/// Where an entry's content comes from.
pub enum Source {
    /// No content (directories, links, special files, empty files).
    None,
    /// A regular file to open and read (the engine may skip reading it if unchanged).
    Path(PathBuf),
    /// Bytes from a reader the engine opens when it is ready to read them (a `pg_dump`
    /// stdout, an S3 object body). The entry must be a [`NodeKind::File`] node.
    ///
    /// [`NodeKind::File`]: crate::repository::tree::NodeKind::File
    Stream(StreamSource),
}

/// The content of a streamed entry.
///
/// The reader is opened and read on a blocking thread, chunked, deduplicated and digested like
/// a file. Unlike a file, any error — opening, reading, or an error the reader returns at end
/// of stream (a child process that exited non-zero) — fails the whole backup, and no snapshot
/// is written: a dump that stopped half way is not a backup.
pub struct StreamSource {
    /// Opens the reader; called at most once.
    pub open: Box<dyn FnOnce() -> std::io::Result<Box<dyn std::io::Read + Send>> + Send>,
    /// Change token (e.g. an S3 object's ETag, size and last-modified). An incremental backup
    /// reuses the parent's entry without opening the stream when the parent's token is equal
    /// and every blob of it is still in the repository. `None`: always read.
    pub version: Option<String>,
}

impl StreamSource {
    /// A stream without a change token (always read).
    pub fn new(
        open: impl FnOnce() -> std::io::Result<Box<dyn std::io::Read + Send>> + Send + 'static,
    ) -> Self {
        StreamSource {
            open: Box::new(open),
            version: None,
        }
    }

    /// Sets the change token.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// One step of a target's walk, in depth-first order with entries sorted by name bytes.
pub enum WalkEvent {
    /// A directory begins; its entries follow until the matching [`WalkEvent::LeaveDir`].
    EnterDir(Node),
    /// The current directory ends.
    LeaveDir,
    /// A non-directory entry.
    Entry(Node, Source),
    /// A path that could not be read; the snapshot will be marked partial.
    Error(PathError),
}

/// A backup source. `walk` runs on a blocking thread and calls `emit` for each event; it stops
/// early when `emit` returns an error.
pub trait Target: Send + Sync {
    /// Kind recorded in the snapshot (`files`, `postgres`, `minio`).
    fn kind(&self) -> &'static str;
    /// What was backed up, recorded in the snapshot (absolute paths, database or bucket
    /// names). With the kind and the host, it identifies the parent snapshot of the next
    /// incremental backup.
    fn paths(&self) -> Vec<String>;
    /// Walks the source.
    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()>;
    /// Called once after the walk and every read succeeded, before the snapshot is written;
    /// the map is stored as [`Snapshot::meta`](crate::Snapshot::meta) (e.g. a base backup's
    /// stop LSN). An error fails the backup.
    fn finish(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        Ok(BTreeMap::new())
    }
}

/// Opens the [`Target`] for one or more specs of one kind.
///
/// `files` specs merge into one tree (`excludes` apply to them). Errors:
/// [`Error::InvalidInput`] when the specs mix kinds or a kind is not available in this build.
pub fn open(specs: &[TargetSpec], excludes: files::Excludes) -> Result<Arc<dyn Target>> {
    let Some(first) = specs.first() else {
        return Err(Error::InvalidInput(
            "no backup targets given (e.g. files:/srv/data)".into(),
        ));
    };
    if let Some(other) = specs.iter().find(|s| s.kind() != first.kind()) {
        return Err(Error::InvalidInput(format!(
            "targets {first} and {other} are of different kinds; one snapshot holds one kind (back them up separately)"
        )));
    }
    match first {
        TargetSpec::Files(_) => {
            let paths: Vec<PathBuf> = specs
                .iter()
                .filter_map(|t| match t {
                    TargetSpec::Files(p) => Some(p.clone()),
                    _ => None,
                })
                .collect();
            Ok(Arc::new(files::FilesTarget::new(&paths, excludes)?))
        }
        TargetSpec::Minio(arg) => {
            if specs.len() > 1 {
                return Err(Error::InvalidInput(format!(
                    "targets {}: one minio target per backup (minio alone takes every bucket)",
                    specs
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(Arc::new(minio::MinioTarget::from_env(arg)?))
        }
        TargetSpec::Scenario(_) => {
            let names: Vec<Option<String>> = specs
                .iter()
                .filter_map(|t| match t {
                    TargetSpec::Scenario(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            Ok(Arc::new(scenario::ScenarioTarget::new(&names, excludes)?))
        }
        other => Err(Error::InvalidInput(format!(
            "target {other}: the {} target is not available in this build yet",
            other.kind()
        ))),
    }
}
