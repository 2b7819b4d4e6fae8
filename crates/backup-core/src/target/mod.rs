//! Backup targets: what a snapshot is taken of.
//!
//! Every target presents its data as a tree (ARCHITECTURE, principle 2): it walks its source
//! and emits [`WalkEvent`]s — enter a directory, an entry with a content source, leave the
//! directory. The engine turns those into chunks, tree blobs and a snapshot, so listing,
//! diffing, verifying and restoring are written once for all targets.

pub mod files;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::repository::snapshot::PathError;
use crate::repository::tree::Node;

/// A parsed target spec. Written `kind:argument` (PRD: `postgres`, `files`, `scenario`, `minio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `files:<path>` — a directory tree or a single file, by absolute path.
    Files(PathBuf),
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
            "postgres" | "minio" | "scenario" | "scenarios" => Err(Error::InvalidInput(format!(
                "target {s:?}: the {kind} target is not available in this build yet (supported: files:<path>)"
            ))),
            _ => Err(Error::InvalidInput(format!(
                "unknown target {s:?}: expected files:<path> (e.g. files:/srv/data)"
            ))),
        }
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Files(p) => write!(f, "files:{}", p.display()),
        }
    }
}

/// Where an entry's content comes from.
pub enum Source {
    /// No content (directories, links, special files, empty files).
    None,
    /// A regular file to open and read (the engine may skip reading it if unchanged).
    Path(PathBuf),
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
    /// Kind recorded in the snapshot (`files`).
    fn kind(&self) -> &'static str;
    /// Absolute source paths recorded in the snapshot.
    fn paths(&self) -> Vec<String>;
    /// Walks the source.
    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()>;
}
