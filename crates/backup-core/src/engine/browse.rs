//! Browsing snapshots: `ls`, `diff`, `dump` (one file's bytes) and tar export.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::repository::id::Id;
use crate::repository::snapshot::Snapshot;
use crate::repository::tree::{display_path, Node, NodeKind};
use crate::repository::Repository;

/// Finds the node at absolute `path` in `snap` (`/` gives a synthetic root directory).
///
/// Errors: [`Error::InvalidInput`] if the path is not in the snapshot.
pub async fn find_node(repo: &Repository, snap: &Snapshot, path: &Path) -> Result<Node> {
    let mut node = Node::new(
        crate::repository::tree::RawName(b"/".to_vec()),
        NodeKind::Dir,
    );
    node.subtree = Some(snap.tree);
    node.mode = 0o755;
    for c in path.components() {
        let name = match c {
            std::path::Component::Normal(n) => n.as_bytes(),
            std::path::Component::RootDir | std::path::Component::CurDir => continue,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "path {} must be absolute, without `..`",
                    display_path(path)
                )))
            }
        };
        let sub = node
            .subtree
            .filter(|_| node.kind == NodeKind::Dir)
            .ok_or_else(|| not_found(path, snap))?;
        let tree = repo.load_tree(&sub).await?;
        node = tree
            .nodes
            .into_iter()
            .find(|n| n.name.0 == name)
            .ok_or_else(|| not_found(path, snap))?;
    }
    Ok(node)
}

fn not_found(path: &Path, snap: &Snapshot) -> Error {
    Error::InvalidInput(format!(
        "path {} is not in snapshot {}",
        display_path(path),
        snap.id.short()
    ))
}

/// One listed entry.
#[derive(Debug, Clone, Serialize)]
pub struct LsEntry {
    /// Absolute path inside the snapshot, escaped (see [`display_path`]).
    pub path: String,
    /// The node.
    #[serde(flatten)]
    pub node: Node,
}

/// Lists every entry at or below `path`, depth first, in name order.
pub async fn ls(
    repo: &Repository,
    snap: &Snapshot,
    path: &Path,
    recursive: bool,
) -> Result<Vec<LsEntry>> {
    let start = find_node(repo, snap, path).await?;
    let base = if path.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        path.to_path_buf()
    };
    let mut out = Vec::new();
    if start.kind != NodeKind::Dir {
        out.push(LsEntry {
            path: display_path(&base),
            node: start,
        });
        return Ok(out);
    }
    let mut todo: Vec<(Id, PathBuf)> = start.subtree.map(|s| (s, base)).into_iter().collect();
    while let Some((id, dir)) = todo.pop() {
        let tree = repo.load_tree(&id).await?;
        let mut subs = Vec::new();
        for n in tree.nodes {
            let p = dir.join(OsStr::from_bytes(&n.name.0));
            if recursive {
                if let (NodeKind::Dir, Some(s)) = (n.kind, n.subtree) {
                    subs.push((s, p.clone()));
                }
            }
            out.push(LsEntry {
                path: display_path(&p),
                node: n,
            });
        }
        todo.extend(subs.into_iter().rev());
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffEntry {
    /// `+` added, `-` removed, `M` content changed, `T` type changed, `U` metadata only.
    pub change: String,
    /// Absolute path, escaped (see [`display_path`]).
    pub path: String,
}

/// Compares two snapshots entry by entry; unchanged subtrees (same tree id) are skipped.
pub async fn diff(repo: &Repository, a: &Snapshot, b: &Snapshot) -> Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    let mut todo: Vec<(Option<Id>, Option<Id>, PathBuf)> =
        vec![(Some(a.tree), Some(b.tree), PathBuf::from("/"))];
    while let Some((ta, tb, dir)) = todo.pop() {
        if ta == tb {
            continue;
        }
        let na = match ta {
            Some(t) => repo.load_tree(&t).await?.nodes,
            None => Vec::new(),
        };
        let nb = match tb {
            Some(t) => repo.load_tree(&t).await?.nodes,
            None => Vec::new(),
        };
        let (mut i, mut j) = (0, 0);
        while i < na.len() || j < nb.len() {
            let ord = match (na.get(i), nb.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (x, y) = match ord {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (na.get(i - 1), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (None, nb.get(j - 1))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (na.get(i - 1), nb.get(j - 1))
                }
            };
            let name = x.or(y).expect("one side").name.0.clone();
            let path = dir.join(OsStr::from_bytes(&name));
            let p = display_path(&path);
            let sub = |n: Option<&Node>| {
                n.filter(|n| n.kind == NodeKind::Dir)
                    .and_then(|n| n.subtree)
            };
            match (x, y) {
                (Some(_), None) => out.push(DiffEntry {
                    change: "-".into(),
                    path: p,
                }),
                (None, Some(_)) => out.push(DiffEntry {
                    change: "+".into(),
                    path: p,
                }),
                (Some(x), Some(y)) => {
                    if x.kind != y.kind {
                        out.push(DiffEntry {
                            change: "T".into(),
                            path: p,
                        });
                    } else if x.kind == NodeKind::File
                        && (x.content != y.content || x.size != y.size)
                    {
                        out.push(DiffEntry {
                            change: "M".into(),
                            path: p,
                        });
                    } else if x.mode != y.mode
                        || x.uid != y.uid
                        || x.gid != y.gid
                        || x.mtime != y.mtime
                        || x.mtime_nsec != y.mtime_nsec
                        || x.link_target != y.link_target
                        || x.xattrs != y.xattrs
                    {
                        out.push(DiffEntry {
                            change: "U".into(),
                            path: p,
                        });
                    }
                }
                (None, None) => unreachable!(),
            }
            let (sa, sb) = (sub(x), sub(y));
            if (sa.is_some() || sb.is_some()) && sa != sb {
                todo.push((sa, sb, path));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A blocking reader over a file node's content: blob by blob, each verified against its id.
/// Use on a blocking thread (it waits on the runtime `handle`).
pub struct NodeReader {
    repo: Arc<Repository>,
    handle: tokio::runtime::Handle,
    content: std::vec::IntoIter<Id>,
    buf: Vec<u8>,
    pos: usize,
}

impl NodeReader {
    /// A reader of `node`'s bytes.
    pub fn new(repo: Arc<Repository>, handle: tokio::runtime::Handle, node: &Node) -> Self {
        NodeReader {
            repo,
            handle,
            content: node.content.clone().into_iter(),
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for NodeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.content.next() else {
                return Ok(0);
            };
            self.buf = self
                .handle
                .block_on(self.repo.load_blob(&id))
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes the bytes of the file at `path` in `snap` to `out` (blocking; call from a blocking
/// thread). Errors if the path is not a regular file or a blob fails to verify.
pub fn dump(
    repo: Arc<Repository>,
    handle: tokio::runtime::Handle,
    snap: &Snapshot,
    path: &Path,
    out: &mut dyn Write,
) -> Result<u64> {
    let node = handle.block_on(find_node(&repo, snap, path))?;
    if node.kind != NodeKind::File {
        return Err(Error::InvalidInput(format!(
            "{} is a {:?} in snapshot {}, not a regular file{}",
            display_path(path),
            node.kind,
            snap.id.short(),
            if node.kind == NodeKind::Dir {
                " (use --format tar for a directory)"
            } else {
                ""
            }
        )));
    }
    let mut r = NodeReader::new(repo, handle, &node);
    std::io::copy(&mut r, out).map_err(|e| Error::io(path, e))
}

/// Writes the subtree at `path` of `snap` as a tar stream (GNU format, long names supported)
/// to `out` (blocking). Entry names are relative to the snapshot root.
pub fn export_tar(
    repo: Arc<Repository>,
    handle: tokio::runtime::Handle,
    snap: &Snapshot,
    path: &Path,
    out: &mut dyn Write,
) -> Result<()> {
    let start = handle.block_on(find_node(&repo, snap, path))?;
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let base: PathBuf = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    let mut todo: Vec<(PathBuf, Node)> = Vec::new();
    if start.kind == NodeKind::Dir && base.as_os_str().is_empty() {
        let tree = handle.block_on(repo.load_tree(&start.subtree.expect("root tree")))?;
        todo.extend(
            tree.nodes
                .into_iter()
                .rev()
                .map(|n| (PathBuf::from(OsStr::from_bytes(&n.name.0)), n)),
        );
    } else {
        todo.push((base, start));
    }
    let mut links: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
    while let Some((rel, node)) = todo.pop() {
        let mut h = tar::Header::new_gnu();
        h.set_mode(node.mode);
        h.set_uid(node.uid as u64);
        h.set_gid(node.gid as u64);
        h.set_mtime(node.mtime.max(0) as u64);
        h.set_size(0);
        let io = |e: std::io::Error| Error::io(&rel, e);
        if node.kind != NodeKind::Socket {
            // PAX records (POSIX.1-2001) for what the GNU header cannot hold: the exact mtime
            // and user.* extended attributes (GNU tar's SCHILY.xattr keys).
            let mtime = format!("{}.{:09}", node.mtime, node.mtime_nsec);
            let xattrs: Vec<(String, Vec<u8>)> = node
                .xattrs
                .iter()
                .filter_map(|x| {
                    let name = std::str::from_utf8(&x.name.0).ok()?;
                    let value = crate::repository::crypto::unb64("xattr", &x.value).ok()?;
                    Some((format!("SCHILY.xattr.{name}"), value))
                })
                .collect();
            let mut pax: Vec<(&str, &[u8])> = vec![("mtime", mtime.as_bytes())];
            pax.extend(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            builder.append_pax_extensions(pax).map_err(io)?;
        }
        match node.kind {
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                builder
                    .append_data(&mut h, &rel, std::io::empty())
                    .map_err(io)?;
                if let Some(s) = node.subtree {
                    let tree = handle.block_on(repo.load_tree(&s))?;
                    todo.extend(
                        tree.nodes
                            .into_iter()
                            .rev()
                            .map(|n| (rel.join(OsStr::from_bytes(&n.name.0)), n)),
                    );
                }
            }
            NodeKind::File => {
                let key = (node.device, node.inode);
                if node.links > 1 && node.inode != 0 {
                    if let Some(first) = links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        builder.append_link(&mut h, &rel, first).map_err(io)?;
                        continue;
                    }
                    links.insert(key, rel.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(node.size);
                let r = NodeReader::new(repo.clone(), handle.clone(), &node);
                builder.append_data(&mut h, &rel, r).map_err(io)?;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let t = node.link_target.clone().unwrap_or_default();
                builder
                    .append_link(&mut h, &rel, Path::new(OsStr::from_bytes(&t.0)))
                    .map_err(io)?;
            }
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                h.set_entry_type(match node.kind {
                    NodeKind::Fifo => tar::EntryType::Fifo,
                    NodeKind::Chardev => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                let (maj, min) = (
                    libc::major(node.rdev as libc::dev_t),
                    libc::minor(node.rdev as libc::dev_t),
                );
                h.set_device_major(maj).map_err(io)?;
                h.set_device_minor(min).map_err(io)?;
                builder
                    .append_data(&mut h, &rel, std::io::empty())
                    .map_err(io)?;
            }
            NodeKind::Socket => {} // tar has no socket type; skipped like GNU tar does
        }
    }
    builder.finish().map_err(|e| Error::io(path, e))
}
