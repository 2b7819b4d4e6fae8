//! The `files:<path>` target: directory trees from the local filesystem.
//!
//! Stored per entry: type, permission bits, uid/gid, mtime and ctime in ns, inode/device/link
//! count (hard links and change detection), size, `rdev` of devices, symlink targets (never
//! followed), `user.*` xattrs, and raw name bytes. FIFOs, sockets and devices are never opened.
//! Several paths merge into one root tree holding each full path (`/a/b` → `a/b`), with the
//! real metadata of the parent directories.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{Source, Target, WalkEvent};
use crate::error::{Error, Result};
use crate::repository::crypto::b64;
use crate::repository::snapshot::PathError;
use crate::repository::tree::{Node, NodeKind, RawName, Xattr};

/// Makes `p` absolute (relative to the current directory) and lexically normal, without
/// resolving symlinks. Errors on `..` that would climb above `/`.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let base = if p.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|e| Error::io(".", e))?
    };
    let mut out = base;
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(Error::InvalidInput(format!(
                        "path {} climbs above /",
                        p.display()
                    )));
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// Exclude patterns (glob syntax). A pattern with a `/` matches the whole absolute path; one
/// without matches the entry's name at any depth (like restic and rsync).
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    by_path: Option<GlobSet>,
    by_name: Option<GlobSet>,
    exact: Vec<PathBuf>,
}

impl Excludes {
    /// Compiles patterns. Errors name the invalid pattern.
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut path_b = GlobSetBuilder::new();
        let mut name_b = GlobSetBuilder::new();
        let (mut np, mut nn) = (0, 0);
        for p in patterns {
            if p.is_empty() {
                return Err(Error::InvalidInput("empty exclude pattern".into()));
            }
            if p.contains('/') && !p.starts_with('/') && !p.starts_with("**/") {
                return Err(Error::InvalidInput(format!(
                    "exclude pattern {p:?}: a pattern with `/` matches absolute paths; write /full/path or **/{p}"
                )));
            }
            // `dir/` means the directory `dir`.
            let p = if p.len() > 1 {
                p.trim_end_matches('/')
            } else {
                p.as_str()
            };
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("exclude pattern {p:?}: {e}")))?;
            if p.contains('/') {
                path_b.add(glob);
                np += 1;
            } else {
                name_b.add(glob);
                nn += 1;
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidInput(format!("exclude patterns: {e}")))
        };
        Ok(Excludes {
            by_path: if np > 0 { Some(build(path_b)?) } else { None },
            by_name: if nn > 0 { Some(build(name_b)?) } else { None },

            exact: Vec::new(),
        })
    }

    /// Also excludes exactly `path` (and so everything below it).
    pub fn with_path(mut self, path: PathBuf) -> Excludes {
        self.exact.push(path);
        self
    }

    fn excluded(&self, path: &Path, name: &[u8]) -> bool {
        self.exact.iter().any(|p| p == path)
            || self.by_path.as_ref().is_some_and(|g| g.is_match(path))
            || self
                .by_name
                .as_ref()
                .is_some_and(|g| g.is_match(Path::new(std::ffi::OsStr::from_bytes(name))))
    }
}

/// The files target: one or more absolute paths.
pub struct FilesTarget {
    roots: Vec<PathBuf>,
    excludes: Excludes,
}

#[derive(Default)]
struct Trie {
    source: bool,
    children: BTreeMap<Vec<u8>, Trie>,
}

impl FilesTarget {
    /// A target over `paths` (made absolute). Paths nested in another one are folded into it.
    ///
    /// Errors: [`Error::Target`] when a path does not exist.
    pub fn new(paths: &[PathBuf], excludes: Excludes) -> Result<FilesTarget> {
        let mut roots: Vec<PathBuf> = Vec::new();
        for p in paths {
            let abs = absolute(p)?;
            std::fs::symlink_metadata(&abs).map_err(|e| Error::Target {
                target: format!("files:{}", abs.display()),
                reason: e.to_string(),
            })?;
            roots.push(abs);
        }
        roots.sort();
        roots.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for r in roots {
            if !kept.iter().any(|k| r.starts_with(k)) {
                kept.push(r);
            }
        }
        Ok(FilesTarget {
            roots: kept,
            excludes,
        })
    }

    fn trie(&self) -> Trie {
        let mut t = Trie::default();
        for r in &self.roots {
            let mut cur = &mut t;
            for c in r.components() {
                if let Component::Normal(n) = c {
                    cur = cur.children.entry(n.as_bytes().to_vec()).or_default();
                }
            }
            cur.source = true;
        }
        t
    }
}

impl Target for FilesTarget {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn paths(&self) -> Vec<String> {
        self.roots
            .iter()
            .map(|p| crate::repository::tree::display_path(p))
            .collect()
    }

    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()> {
        let trie = self.trie();
        let mut w = Walker {
            excludes: &self.excludes,
            emit,
        };
        if trie.source {
            // The root directory itself is a source: its entries form the root tree.
            return w.dir_entries(Path::new("/"));
        }
        w.virtual_level(&trie, PathBuf::from("/"))
    }
}

struct Walker<'a> {
    excludes: &'a Excludes,
    emit: &'a mut dyn FnMut(WalkEvent) -> Result<()>,
}

impl Walker<'_> {
    fn error(&mut self, path: &Path, e: impl std::fmt::Display) -> Result<()> {
        (self.emit)(WalkEvent::Error(PathError {
            path: crate::repository::tree::display_path(path),
            message: e.to_string(),
        }))
    }

    /// A level of the synthetic tree above the sources: only the named children are walked.
    fn virtual_level(&mut self, trie: &Trie, dir: PathBuf) -> Result<()> {
        for (name, child) in &trie.children {
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            if child.source {
                self.entry(&path, name)?;
                continue;
            }
            match std::fs::symlink_metadata(&path) {
                Ok(md) if md.is_dir() => {
                    (self.emit)(WalkEvent::EnterDir(node_from(&path, name, &md)))?;
                    self.virtual_level(child, path)?;
                    (self.emit)(WalkEvent::LeaveDir)?;
                }
                Ok(_) => self.error(&path, "is not a directory")?,
                Err(e) => self.error(&path, e)?,
            }
        }
        Ok(())
    }

    /// One real entry at `path`, recursing into directories.
    fn entry(&mut self, path: &Path, name: &[u8]) -> Result<()> {
        let md = match std::fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) => return self.error(path, e), // vanished since it was listed
        };
        let node = node_from(path, name, &md);
        match node.kind {
            NodeKind::Dir => {
                (self.emit)(WalkEvent::EnterDir(node))?;
                self.dir_entries(path)?;
                (self.emit)(WalkEvent::LeaveDir)
            }
            NodeKind::File => (self.emit)(WalkEvent::Entry(node, Source::Path(path.to_path_buf()))),
            _ => (self.emit)(WalkEvent::Entry(node, Source::None)),
        }
    }

    fn dir_entries(&mut self, dir: &Path) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return self.error(dir, e),
        };
        let mut names: Vec<OsString> = Vec::new();
        for ent in rd {
            match ent {
                Ok(ent) => names.push(ent.file_name()),
                Err(e) => self.error(dir, e)?,
            }
        }
        let mut names: Vec<Vec<u8>> = names.into_iter().map(|n| n.into_vec()).collect();
        names.sort_unstable();
        for name in names {
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            if self.excludes.excluded(&path, &name) {
                continue;
            }
            self.entry(&path, &name)?;
        }
        Ok(())
    }
}

/// Builds a node from `lstat` metadata (and `user.*` xattrs, symlink target).
pub fn node_from(path: &Path, name: &[u8], md: &std::fs::Metadata) -> Node {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_socket() {
        NodeKind::Socket
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else {
        NodeKind::Blockdev
    };
    let mut n = Node::new(RawName(name.to_vec()), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.mtime = md.mtime();
    n.mtime_nsec = md.mtime_nsec() as u32;
    n.ctime = md.ctime();
    n.ctime_nsec = md.ctime_nsec() as u32;
    n.inode = md.ino();
    n.device = md.dev();
    n.links = md.nlink();
    match kind {
        NodeKind::File => {
            n.size = md.len();
            n.sparse = md.blocks().saturating_mul(512) < md.len();
        }
        NodeKind::Symlink => {
            if let Ok(t) = std::fs::read_link(path) {
                n.size = t.as_os_str().len() as u64;
                n.link_target = Some(RawName(t.into_os_string().into_vec()));
            }
        }
        NodeKind::Chardev | NodeKind::Blockdev => n.rdev = md.rdev(),
        _ => {}
    }
    if kind != NodeKind::Symlink {
        n.xattrs = read_xattrs(path);
    }
    n
}

fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter(|n| n.as_bytes().starts_with(b"user."))
        .filter_map(|n| {
            let v = xattr::get(path, &n).ok()??;
            Some(Xattr {
                name: RawName(n.into_vec()),
                value: b64(&v),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_normalizes_lexically() {
        assert_eq!(
            absolute(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
        assert!(absolute(Path::new("/..")).is_err());
    }

    #[test]
    fn excludes_by_name_and_path() {
        let e = Excludes::new(&["*.log".into(), "/srv/cache/**".into()]).unwrap();
        assert!(e.excluded(Path::new("/x/y/a.log"), b"a.log"));
        assert!(e.excluded(Path::new("/srv/cache/z"), b"z"));
        assert!(!e.excluded(Path::new("/srv/data/z"), b"z"));
        assert!(Excludes::new(&["[".into()]).is_err());
    }
}
