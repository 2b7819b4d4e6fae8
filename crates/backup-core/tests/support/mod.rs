//! Shared fixtures for the `backup-core` library tests.
//!
//! * [`runtime`] / [`fast_init_options`] / [`init_repo`]: a repository in a temporary folder,
//!   created with small chunks, small packs and a cheap KDF so tests stay fast.
//! * [`RawRepo`]: writes hand-made (possibly hostile) trees and data blobs straight through the
//!   packer, and snapshot manifests pointing at them.
//! * [`dir_state`] / [`assert_same_state`]: an `lstat`-based description of a directory tree
//!   (raw name bytes, type, permission bits, content, symlink targets) for exact comparisons.
//!
//! Every test file uses only part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::repository::chunker::ChunkerParams;
use backup_core::repository::crypto::KdfParams;
use backup_core::repository::pack::BlobType;
use backup_core::repository::tree::{Node, NodeKind, RawName, Tree};
use backup_core::repository::{InitOptions, Repository};
use backup_core::{BackupType, Id, Snapshot, Summary};

/// Password of every test repository.
pub const PASSWORD: &[u8] = b"library test password";

/// A multi-threaded runtime (the packer and restore need blocking threads and a scheduler).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Small chunks (4/16/64 KiB), 256 KiB packs and a cheap Argon2id: fast tests that still
/// exercise multi-chunk files and multi-pack snapshots.
pub fn fast_init_options() -> InitOptions {
    InitOptions {
        chunker: ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
        pack_size: 256 * 1024,
        kdf: KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    }
}

/// Initialises a repository in `dir` (created) with [`fast_init_options`].
pub async fn init_repo(dir: &Path) -> Arc<Repository> {
    let store = backup_core::store::open_store(dir.to_str().expect("utf-8 temp path"), true)
        .expect("open store");
    Arc::new(
        Repository::init(store, PASSWORD, fast_init_options())
            .await
            .expect("init repository"),
    )
}

/// The host name as `gethostname(2)` reports it (what lock files record).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a valid buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    assert_eq!(rc, 0, "gethostname: {}", std::io::Error::last_os_error());
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

// ---------------------------------------------------------------------------
// Hand-made repository content
// ---------------------------------------------------------------------------

/// Writes raw blobs through one packer session. Call [`RawRepo::finish`] before using the
/// blobs (it flushes packs and index files, then drops the cached index).
pub struct RawRepo {
    pub repo: Arc<Repository>,
    packer: Option<backup_core::repository::packer::Packer>,
}

impl RawRepo {
    pub async fn start(repo: &Arc<Repository>) -> RawRepo {
        let packer = repo.packer().await.expect("start packer");
        RawRepo {
            repo: repo.clone(),
            packer: Some(packer),
        }
    }

    async fn add(&self, kind: BlobType, bytes: Vec<u8>) -> Id {
        let id = self.repo.blob_id(&bytes);
        let h = self.packer.as_ref().expect("packer running").handle();
        h.add_if_new(kind, id, bytes).await.expect("queue blob");
        id
    }

    /// Stores `data` as a data blob; returns its id.
    pub async fn data(&self, data: &[u8]) -> Id {
        self.add(BlobType::Data, data.to_vec()).await
    }

    /// Stores `nodes` as a tree blob **exactly as given** (no sorting, no validation).
    pub async fn tree(&self, nodes: Vec<Node>) -> Id {
        self.add(BlobType::Tree, Tree { nodes }.encode()).await
    }

    /// Flushes the packer and makes the new blobs visible to the repository.
    pub async fn finish(mut self) -> Arc<Repository> {
        let packer = self.packer.take().expect("packer running");
        packer.finish().await.expect("finish packer");
        self.repo.invalidate_index().await;
        self.repo.clone()
    }
}

/// A directory node with sane metadata.
pub fn dir_node(name: &[u8], subtree: Id) -> Node {
    let mut n = Node::new(RawName(name.to_vec()), NodeKind::Dir);
    n.mode = 0o755;
    n.mtime = 1_600_000_000;
    n.subtree = Some(subtree);
    n
}

/// A regular-file node whose content is `blobs` (total `size` bytes), no digest.
pub fn file_node(name: &[u8], blobs: Vec<Id>, size: u64) -> Node {
    let mut n = Node::new(RawName(name.to_vec()), NodeKind::File);
    n.mode = 0o644;
    n.mtime = 1_600_000_000;
    n.size = size;
    n.content = blobs;
    n
}

/// A symlink node pointing at `target`.
pub fn symlink_node(name: &[u8], target: &[u8]) -> Node {
    let mut n = Node::new(RawName(name.to_vec()), NodeKind::Symlink);
    n.mode = 0o777;
    n.mtime = 1_600_000_000;
    n.size = target.len() as u64;
    n.link_target = Some(RawName(target.to_vec()));
    n
}

/// Stores a snapshot manifest whose root tree is `tree`; returns it with its id set.
pub async fn save_snapshot(repo: &Repository, tree: Id, label: &str) -> Snapshot {
    let mut snap = Snapshot {
        id: Id::default(),
        version: 1,
        time: chrono::Utc::now(),
        utc_offset: "+00:00".into(),
        hostname: hostname(),
        username: "test".into(),
        target_kind: "files".into(),
        targets: vec![format!("files:/{label}")],
        paths: vec![format!("/{label}")],
        tree,
        parent: None,
        backup_type: BackupType::Full,
        description: Some(label.to_string()),
        tags: vec![],
        retention_until: None,
        partial: false,
        errors: vec![],
        summary: Summary::default(),
        program_version: "test".into(),
        meta: Default::default(),
    };
    snap.id = repo.save_snapshot(&snap).await.expect("save snapshot");
    snap
}

// ---------------------------------------------------------------------------
// Describing and comparing directory trees
// ---------------------------------------------------------------------------

/// What one entry of a directory tree is, as far as the tests care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: Vec<u8> },
    Other { mode: u32 },
}

/// Every entry below `root` (not `root` itself), keyed by its path relative to `root` in raw
/// bytes. Symlinks are never followed.
pub fn dir_state(root: &Path) -> BTreeMap<Vec<u8>, EntryState> {
    let mut out = BTreeMap::new();
    for p in walk(root) {
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {p:?}: {e}"));
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        let st = if ft.is_dir() {
            EntryState::Dir { mode }
        } else if ft.is_file() {
            EntryState::File {
                mode,
                content: fs::read(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}")),
            }
        } else if ft.is_symlink() {
            EntryState::Symlink {
                target: fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
            }
        } else {
            EntryState::Other { mode }
        };
        out.insert(rel, st);
    }
    out
}

fn show(path: &[u8]) -> String {
    path.escape_ascii().to_string()
}

fn brief(e: &EntryState) -> String {
    match e {
        EntryState::Dir { mode } => format!("dir {mode:o}"),
        EntryState::File { mode, content } => {
            format!(
                "file {mode:o}, {} bytes, blake3 {}",
                content.len(),
                &blake3::hash(content).to_hex()[..16]
            )
        }
        EntryState::Symlink { target } => format!("symlink -> {}", show(target)),
        EntryState::Other { mode } => format!("other {mode:o}"),
    }
}

/// The differences between two tree states, one line each.
pub fn state_diffs(
    want: &BTreeMap<Vec<u8>, EntryState>,
    got: &BTreeMap<Vec<u8>, EntryState>,
) -> Vec<String> {
    let mut d = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => d.push(format!("{}: missing (want {})", show(k), brief(w))),
            Some(g) if g != w => {
                d.push(format!("{}: want {}, got {}", show(k), brief(w), brief(g)))
            }
            _ => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            d.push(format!("{}: unexpected ({})", show(k), brief(g)));
        }
    }
    d
}

/// Panics with every difference unless `got` equals `want`.
#[track_caller]
pub fn assert_same_state(
    want: &BTreeMap<Vec<u8>, EntryState>,
    got: &BTreeMap<Vec<u8>, EntryState>,
    what: &str,
) {
    let d = state_diffs(want, got);
    assert!(
        d.is_empty(),
        "{what}: {} differences:\n  {}",
        d.len(),
        d.iter().take(40).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// All entries below `root` (not `root` itself), not following symlinks, sorted.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    fn rec(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<PathBuf> = rd.map(|e| e.expect("read_dir entry").path()).collect();
        entries.sort();
        for p in entries {
            let is_dir = fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            out.push(p.clone());
            if is_dir {
                rec(&p, out);
            }
        }
    }
    let mut out = Vec::new();
    rec(root, &mut out);
    out
}

/// Every path below `root` whose file name contains `needle` (bytes), symlinks not followed.
pub fn paths_named(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// `root/rel` for a raw relative path.
pub fn join_raw(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Where restore puts source `src` under `dest`.
pub fn restored_path(dest: &Path, src: &Path) -> PathBuf {
    dest.join(src.strip_prefix("/").expect("absolute source path"))
}
