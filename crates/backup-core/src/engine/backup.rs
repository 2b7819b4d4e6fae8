//! Backup: walk a target, chunk and store new data, write trees, index, then the snapshot.
//!
//! Pipeline (ARCHITECTURE principle 6):
//!
//! ```text
//! walker thread ──events──▶ in-order stream ──buffered(k)──▶ file readers (blocking pool):
//!   lstat, parent lookup,                                      read → FastCDC → keyed BLAKE3
//!   hard links                                                  → dedup → packer (N workers)
//!                          tree builder (in order) ◀─results──┘
//!                          → tree blobs → packer → packs → index → snapshot manifest
//! ```
//!
//! *Incremental* (the default once a parent exists) reuses the parent's entry for a file whose
//! size, mtime, ctime and inode are unchanged, without opening it. *Full* reads every file.
//! Both deduplicate against the whole repository, so every snapshot is logically full.
//! Memory: per file in flight one chunk buffer (≤ 2 × 8 MiB), the packer's bounded queues, the
//! index (~80 bytes per blob) and one parent tree per directory level.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::id::Id;
use crate::repository::lock;
use crate::repository::pack::BlobType;
use crate::repository::packer::PackerHandle;
use crate::repository::snapshot::{BackupType, PathError, Snapshot, Summary};
use crate::repository::tree::{display_path, Node, NodeKind, Tree};
use crate::repository::{Repository, FORMAT_VERSION};
use crate::target::files::Excludes;
use crate::target::{Source, StreamSource, Target, TargetSpec, WalkEvent};

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Targets (`files:<path>`, several allowed). Required.
    pub targets: Vec<TargetSpec>,
    /// `Full` reads every file; `Incremental` reuses unchanged files from the parent.
    /// Default (`None`): incremental when a parent snapshot exists, else full.
    pub backup_type: Option<BackupType>,
    /// Exclude patterns (see [`Excludes`]).
    pub excludes: Vec<String>,
    /// PRD `--description`.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// PRD `--retention-days`: the snapshot is kept at least this many days.
    pub retention_days: Option<u32>,
    /// Parent snapshot (`latest`, id or prefix). Default: the newest snapshot of the same host
    /// and paths.
    pub parent: Option<String>,
    /// Files read concurrently. Default: 2 × cores (at least 4).
    pub read_concurrency: Option<usize>,
}

impl BackupOptions {
    /// Options for `targets` with every default.
    pub fn new(targets: Vec<TargetSpec>) -> Self {
        BackupOptions {
            targets,
            ..Default::default()
        }
    }
}

enum Item {
    EnterDir(Node),
    LeaveDir,
    Ready(Node, Option<Node>, bool),
    /// Files to read, in order: one large file, or up to [`GROUP_FILES`] small ones (one
    /// blocking task each group, not each file).
    Read(Vec<(Node, PathBuf, Option<Node>)>),
    HardLink(Node, (u64, u64), bool),
    Error(PathError),
    /// A streamed entry to read: node, source, parent node, display path.
    Stream(Node, StreamSource, Option<Node>, String),
}

enum Done {
    EnterDir(Node),
    LeaveDir,
    File {
        node: Node,
        parent: Option<Node>,
        reused: bool,
        read: u64,
        warning: Option<PathError>,
    },
    Other(Node),
    HardLink(Node, (u64, u64), bool),
    Error(PathError),
}

/// Largest accepted `retention_days` (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Walk items per channel message.
const BATCH: usize = 256;
/// Files up to this size (bytes) are read in groups.
const SMALL_FILE: u64 = 256 * 1024;
/// Most files in one read group.
const GROUP_FILES: usize = 64;

type ParentLevel = Option<Arc<BTreeMap<Vec<u8>, Node>>>;

fn level_of(tree: Tree) -> ParentLevel {
    Some(Arc::new(
        tree.nodes
            .into_iter()
            .map(|n| (n.name.0.clone(), n))
            .collect(),
    ))
}

/// Runs a backup and returns the stored snapshot.
///
/// A path that vanishes or cannot be read is listed in `snapshot.errors` and marks the
/// snapshot `partial`; everything else is stored. Errors (nothing is stored as a snapshot):
/// [`Error::InvalidInput`] for bad options, [`Error::Target`] for a missing source path,
/// [`Error::Locked`], store errors.
pub async fn backup(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let started = Instant::now();
    let time = Utc::now();
    if opts.targets.is_empty() {
        return Err(Error::InvalidInput(
            "no backup targets given (e.g. files:/srv/data)".into(),
        ));
    }
    if opts.retention_days.is_some_and(|d| d > MAX_RETENTION_DAYS) {
        return Err(Error::InvalidInput(format!(
            "retention days must be at most {MAX_RETENTION_DAYS} (100 years)"
        )));
    }
    tracing::info!(
        "backup of {} started",
        opts.targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut excludes = Excludes::new(&opts.excludes)?;
    // A repository inside a source folder is never backed up into itself.
    if let Some(root) = repo.store().local_root() {
        excludes = excludes.with_path(root.to_path_buf());
        // Also its real location, when it was reached through a symlink.
        if let Ok(real) = std::fs::canonicalize(root) {
            excludes = excludes.with_path(real);
        }
    }
    let target = crate::target::open(&opts.targets, excludes)?;
    backup_target_at(repo, target, opts, progress, started, time).await
}

/// Backs up a [`Target`] built by the caller (a custom source, or one of ours opened with
/// options that [`BackupOptions`] does not carry). `opts.targets` is recorded in the snapshot
/// as given; the parent is the newest snapshot of the same host, kind and
/// [`Target::paths`]. Errors: as [`backup`].
pub async fn backup_target(
    repo: &Arc<Repository>,
    target: Arc<dyn Target>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    if opts.retention_days.is_some_and(|d| d > MAX_RETENTION_DAYS) {
        return Err(Error::InvalidInput(format!(
            "retention days must be at most {MAX_RETENTION_DAYS} (100 years)"
        )));
    }
    backup_target_at(repo, target, opts, progress, Instant::now(), Utc::now()).await
}

async fn backup_target_at(
    repo: &Arc<Repository>,
    target: Arc<dyn Target>,
    opts: &BackupOptions,
    progress: &dyn Progress,
    started: Instant,
    time: chrono::DateTime<Utc>,
) -> Result<Snapshot> {
    let guard = lock::acquire(repo.store().clone(), false, "backup").await?;
    progress.phase("backing up");
    // The lock is held until the manifest is written: a prune in between would see this
    // backup's packs as unreferenced.
    let result = async {
        let mut snap = run(repo, opts, target, progress, time).await?;
        snap.summary.duration_secs = started.elapsed().as_secs_f64();
        // Packs and index must be durable before the manifest that makes them a snapshot.
        repo.store().flush().await?;
        snap.id = repo.save_snapshot(&snap).await?;
        repo.store().flush().await?;
        Ok(snap)
    }
    .await;
    let _ = guard.release().await;
    repo.invalidate_index().await;
    if let Ok(s) = &result {
        tracing::info!(
            "snapshot {} saved: {} files, {} bytes read, {} bytes added, {:.1}s",
            s.id.short(),
            s.summary.files_new + s.summary.files_changed + s.summary.files_unmodified,
            s.summary.bytes_read,
            s.summary.bytes_added,
            s.summary.duration_secs
        );
    }
    result
}

async fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    kind: &str,
    host: &str,
    paths: &[String],
) -> Result<Option<Snapshot>> {
    if let Some(p) = &opts.parent {
        return repo.find_snapshot(p).await.map(Some);
    }
    let mut all = repo.snapshots().await?;
    all.retain(|s| s.hostname == host && s.target_kind == kind && s.paths == paths);
    Ok(all.pop())
}

async fn run(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    target: Arc<dyn Target>,
    progress: &dyn Progress,
    time: chrono::DateTime<Utc>,
) -> Result<Snapshot> {
    let host = lock::hostname();
    let paths = target.paths();
    let kind = target.kind();
    let parent = find_parent(repo, opts, kind, &host, &paths).await?;
    let backup_type = match (opts.backup_type, &parent) {
        (_, None) => BackupType::Full,
        (Some(t), Some(_)) => t,
        (None, Some(_)) => BackupType::Incremental,
    };
    let reuse = backup_type == BackupType::Incremental;
    let root_level = match &parent {
        Some(p) => match repo.load_tree(&p.tree).await {
            Ok(t) => level_of(t),
            // A damaged parent only costs speed: every file is read again.
            Err(e) => {
                tracing::warn!(
                    "parent snapshot {} unreadable, reading every file: {e}",
                    p.id.short()
                );
                None
            }
        },
        None => None,
    };

    let packer = repo.packer().await?;
    let handle = packer.handle();
    // Items travel in batches: one wake-up per 256 entries instead of one per entry.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Item>>(8);

    // Walker: lstat, parent lookup and hard-link detection on one blocking thread.
    let walk_repo = repo.clone();
    let walk_handle = handle.clone();
    let walk_target = target.clone();
    let rt = tokio::runtime::Handle::current();
    let walker = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut stack: Vec<ParentLevel> = vec![root_level];
        // Names of the directories entered (for messages about streamed entries).
        let mut dirs: Vec<Vec<u8>> = Vec::new();
        let mut links: HashMap<(u64, u64), ()> = HashMap::new();
        let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
        let mut send = |item: Item| {
            match item {
                // Consecutive small files join the previous read group.
                Item::Read(mut files) if files.len() == 1 && files[0].0.size <= SMALL_FILE => {
                    match batch.last_mut() {
                        Some(Item::Read(group))
                            if group.len() < GROUP_FILES
                                && group.iter().all(|(n, _, _)| n.size <= SMALL_FILE) =>
                        {
                            group.append(&mut files)
                        }
                        _ => batch.push(Item::Read(files)),
                    }
                }
                item => batch.push(item),
            }
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.blocking_send(full)
                    .map_err(|_| Error::InvalidInput("backup aborted".into()))?;
            }
            Ok(())
        };
        let walked = walk_target.walk(&mut |ev| match ev {
            WalkEvent::EnterDir(node) => {
                let prev = stack
                    .last()
                    .and_then(|l| l.as_ref())
                    .and_then(|m| m.get(&node.name.0))
                    .filter(|p| p.kind == NodeKind::Dir)
                    .and_then(|p| p.subtree);
                let level = match prev {
                    Some(id) => match rt.block_on(walk_repo.load_tree(&id)) {
                        Ok(t) => level_of(t),
                        Err(e) => {
                            tracing::warn!(
                                "parent tree {} unreadable, reading files again: {e}",
                                id.short()
                            );
                            None
                        }
                    },
                    None => None,
                };
                stack.push(level);
                dirs.push(node.name.0.clone());
                send(Item::EnterDir(node))
            }
            WalkEvent::LeaveDir => {
                stack.pop();
                dirs.pop();
                send(Item::LeaveDir)
            }
            WalkEvent::Entry(node, source) => {
                let prev = stack
                    .last()
                    .and_then(|l| l.as_ref())
                    .and_then(|m| m.get(&node.name.0))
                    .cloned();
                match source {
                    Source::Path(path) if node.kind == NodeKind::File => {
                        if node.links > 1 {
                            let key = (node.device, node.inode);
                            if links.insert(key, ()).is_some() {
                                let had = prev.is_some();
                                return send(Item::HardLink(node, key, had));
                            }
                        }
                        match prev {
                            // Reuse only what the repository still holds (after a lost pack and
                            // repair-index, the file is read again and the data stored anew).
                            Some(p)
                                if reuse
                                    && node.unchanged_since(&p)
                                    && p.content.iter().all(|id| walk_handle.has(id)) =>
                            {
                                let mut n = node;
                                n.content = p.content.clone();
                                n.digest = p.digest;
                                n.sparse = p.sparse || n.sparse;
                                send(Item::Ready(n, Some(p), true))
                            }
                            prev => send(Item::Read(vec![(node, path, prev)])),
                        }
                    }
                    Source::Stream(src) if node.kind == NodeKind::File => match prev {
                        Some(p)
                            if reuse
                                && src.version.is_some()
                                && p.version == src.version
                                && p.kind == NodeKind::File
                                && p.error.is_none()
                                && p.digest.is_some()
                                && p.content.iter().all(|id| walk_handle.has(id)) =>
                        {
                            let mut n = node;
                            n.content = p.content.clone();
                            n.digest = p.digest;
                            n.size = p.size;
                            n.version = src.version;
                            send(Item::Ready(n, Some(p), true))
                        }
                        prev => {
                            let mut n = node;
                            n.version = src.version.clone();
                            let path = stream_path(&dirs, &n.name.0);
                            send(Item::Stream(n, src, prev, path))
                        }
                    },
                    Source::Stream(_) => Err(Error::InvalidInput(format!(
                        "target {kind}: a streamed entry {} is not a file",
                        stream_path(&dirs, &node.name.0)
                    ))),
                    _ => send(Item::Ready(node, prev, false)),
                }
            }
            WalkEvent::Error(e) => send(Item::Error(e)),
        });
        drop(send);
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        walked
    });

    let chunker = Arc::new(repo.chunker().clone());
    let key = repo.key();
    let (id_key, digest_key) = (key.id_key, key.digest_key);
    let concurrency = opts
        .read_concurrency
        .unwrap_or_else(|| (2 * super::cores()).max(4));
    let items =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).flat_map(futures::stream::iter);
    let mut done = items
        .map(|item| {
            let handle = handle.clone();
            let chunker = chunker.clone();
            async move {
                match item {
                    Item::Read(files) => {
                        let h = handle.clone();
                        let done = tokio::task::spawn_blocking(move || {
                            files
                                .into_iter()
                                .map(|(node, path, parent)| {
                                    match read_file(&h, &chunker, &id_key, &digest_key, &path, node)
                                    {
                                        Ok((node, read, warning)) => {
                                            let warning = warning.map(|message| PathError {
                                                path: display_path(&path),
                                                message,
                                            });
                                            Ok(Done::File {
                                                node,
                                                parent,
                                                reused: false,
                                                read,
                                                warning,
                                            })
                                        }
                                        Err(ReadError::Skip(message)) => {
                                            Ok(Done::Error(PathError {
                                                path: display_path(&path),
                                                message,
                                            }))
                                        }
                                        Err(ReadError::Fatal(e)) => Err(e),
                                    }
                                })
                                .collect::<Vec<_>>()
                        })
                        .await
                        .map_err(|e| Error::InvalidInput(format!("reader task failed: {e}")))?;
                        Ok(done)
                    }
                    Item::Ready(node, parent, reused) if node.kind == NodeKind::File => {
                        Ok(vec![Ok(Done::File {
                            node,
                            parent,
                            reused,
                            read: 0,
                            warning: None,
                        })])
                    }
                    Item::Ready(node, _, _) => Ok(vec![Ok(Done::Other(node))]),
                    Item::EnterDir(n) => Ok(vec![Ok(Done::EnterDir(n))]),
                    Item::LeaveDir => Ok(vec![Ok(Done::LeaveDir)]),
                    Item::HardLink(n, k, had) => Ok(vec![Ok(Done::HardLink(n, k, had))]),
                    Item::Error(e) => Ok(vec![Ok(Done::Error(e))]),
                    Item::Stream(node, src, parent, path) => {
                        let h = handle.clone();
                        let done = tokio::task::spawn_blocking(move || {
                            read_stream(&h, &chunker, &id_key, &digest_key, node, src, &path)
                        })
                        .await
                        .map_err(|e| Error::InvalidInput(format!("reader task failed: {e}")))??;
                        let (node, read) = done;
                        Ok(vec![Ok(Done::File {
                            node,
                            parent,
                            reused: false,
                            read,
                            warning: None,
                        })])
                    }
                }
            }
        })
        .buffered(concurrency)
        .flat_map(|r: Result<Vec<Result<Done>>>| match r {
            Ok(v) => futures::stream::iter(v),
            Err(e) => futures::stream::iter(vec![Err(e)]),
        });

    let mut summary = Summary::default();
    let mut errors: Vec<PathError> = Vec::new();
    let mut partial = false;
    let mut stack: Vec<(Option<Node>, Vec<Node>)> = vec![(None, Vec::new())];
    let mut link_content: HashMap<(u64, u64), Node> = HashMap::new();
    let mut failure: Option<Error> = None;
    let handle = packer.handle();
    while let Some(d) = done.next().await {
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        match d {
            Done::EnterDir(n) => stack.push((Some(n), Vec::new())),
            Done::LeaveDir => {
                let (node, children) = stack.pop().expect("balanced walk");
                let mut node = node.expect("directory frame");
                match store_tree(&handle, &id_key, children).await {
                    Ok(id) => node.subtree = Some(id),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
                summary.dirs += 1;
                stack.last_mut().expect("root frame").1.push(node);
            }
            Done::File {
                node,
                parent,
                reused,
                read,
                warning,
            } => {
                errors.extend(warning);
                summary.bytes_total += node.size;
                summary.bytes_read += read;
                match parent {
                    Some(p) if reused || (p.content == node.content && p.digest == node.digest) => {
                        summary.files_unmodified += 1
                    }
                    Some(_) => summary.files_changed += 1,
                    None => summary.files_new += 1,
                }
                if node.links > 1 {
                    link_content.insert((node.device, node.inode), node.clone());
                }
                progress.add_item();
                progress.add_bytes(read);
                stack.last_mut().expect("frame").1.push(node);
            }
            Done::HardLink(mut node, key, had) => match link_content.get(&key) {
                Some(first) => {
                    node.content = first.content.clone();
                    node.digest = first.digest;
                    node.size = first.size;
                    node.sparse = first.sparse;
                    summary.bytes_total += node.size;
                    if had {
                        summary.files_unmodified += 1
                    } else {
                        summary.files_new += 1
                    }
                    stack.last_mut().expect("frame").1.push(node);
                }
                None => {
                    partial = true;
                    errors.push(PathError {
                        path: format!("{} (hard link)", node.name.lossy()),
                        message: "the first name of this hard-link group could not be read".into(),
                    });
                }
            },
            Done::Other(node) => {
                summary.others += 1;
                stack.last_mut().expect("frame").1.push(node);
            }
            Done::Error(e) => {
                partial = true;
                errors.push(e);
            }
        }
    }
    drop(done);
    let walk_result = walker
        .await
        .map_err(|e| Error::InvalidInput(format!("walker failed: {e}")))?;
    let root = if failure.is_none() && walk_result.is_ok() {
        let (_, children) = stack.pop().expect("root frame");
        match store_tree(&handle, &id_key, children).await {
            Ok(id) => Some(id),
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    } else {
        None
    };
    drop(handle);
    // Always drain the packer: its error (e.g. the store failed) explains a stopped pipeline.
    let stats = packer.finish().await;
    let stats = match (stats, failure, walk_result) {
        (Err(e), _, _) => return Err(e),
        (Ok(_), Some(e), _) => return Err(e),
        (Ok(_), None, Err(e)) => return Err(e),
        (Ok(s), None, Ok(())) => s,
    };
    summary.bytes_added = stats.bytes_stored;
    summary.raw_bytes_added = stats.raw_bytes;
    summary.blobs_added = stats.blobs;
    let finisher = target.clone();
    let meta = tokio::task::spawn_blocking(move || finisher.finish())
        .await
        .map_err(|e| Error::InvalidInput(format!("target finish failed: {e}")))??;
    Ok(Snapshot {
        id: Id::default(),
        version: FORMAT_VERSION,
        time,
        utc_offset: chrono::Local::now().offset().to_string(),
        hostname: host,
        username: crate::repository::keys::username(),
        target_kind: kind.into(),
        targets: opts.targets.iter().map(|t| t.to_string()).collect(),
        paths,
        tree: root.expect("root tree stored"),
        parent: parent.map(|p| p.id),
        backup_type,
        description: opts.description.clone(),
        tags: opts.tags.clone(),
        retention_until: opts
            .retention_days
            .map(|d| time + chrono::Duration::days(d as i64)),
        partial,
        errors,
        summary,
        program_version: env!("CARGO_PKG_VERSION").into(),
        meta,
    })
}

async fn store_tree(handle: &PackerHandle, id_key: &[u8; 32], nodes: Vec<Node>) -> Result<Id> {
    let bytes = Tree { nodes }.encode();
    let id = Id::keyed(id_key, &bytes);
    handle.add_if_new(BlobType::Tree, id, bytes).await?;
    Ok(id)
}

enum ReadError {
    /// The file is skipped and reported (vanished, unreadable, replaced).
    Skip(String),
    /// The backup must stop (the pipeline failed).
    Fatal(Error),
}

/// Reads one file: chunk, hash, hand new chunks to the packer. Returns the node with content
/// and digest, the bytes read, and a warning if the file changed while it was read.
fn read_file(
    handle: &PackerHandle,
    chunker: &crate::repository::chunker::Chunker,
    id_key: &[u8; 32],
    digest_key: &[u8; 32],
    path: &std::path::Path,
    mut node: Node,
) -> std::result::Result<(Node, u64, Option<String>), ReadError> {
    let open = |flags: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    // O_NOATIME keeps backups from touching atimes; it needs ownership, so fall back.
    let file: File = match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            open(libc::O_NOFOLLOW).map_err(|e| ReadError::Skip(e.to_string()))?
        }
        Err(e) => return Err(ReadError::Skip(e.to_string())),
    };
    let before = file
        .metadata()
        .map_err(|e| ReadError::Skip(e.to_string()))?;
    if !before.is_file() {
        return Err(ReadError::Skip(
            "was replaced by a non-regular file during the backup".into(),
        ));
    }
    let mut digest = blake3::Hasher::new_keyed(digest_key);
    let mut content = Vec::with_capacity((before.len() / (1 << 20) + 1) as usize);
    let mut read = 0u64;
    let mut stream = chunker.stream(&file, before.len());
    loop {
        let mut chunk = handle.pool().get();
        match stream.next_into(&mut chunk) {
            Ok(true) => {}
            Ok(false) => {
                handle.pool().put(chunk);
                break;
            }
            Err(e) => {
                handle.pool().put(chunk);
                return Err(ReadError::Skip(format!(
                    "read failed after {read} bytes: {e}"
                )));
            }
        }
        read += chunk.len() as u64;
        digest.update(&chunk);
        let id = Id::keyed(id_key, &chunk);
        if handle.claim(&id) {
            handle
                .add_blocking(BlobType::Data, id, chunk)
                .map_err(ReadError::Fatal)?;
        } else {
            handle.pool().put(chunk); // already stored: reuse the buffer
        }
        content.push(id);
    }
    let after = file
        .metadata()
        .map_err(|e| ReadError::Skip(e.to_string()))?;
    let warning = (after.len() != read
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec())
    .then(|| "changed while it was read; the snapshot holds the bytes read".to_string());
    node.size = read;
    node.mtime = before.mtime();
    node.mtime_nsec = before.mtime_nsec() as u32;
    node.ctime = before.ctime();
    node.ctime_nsec = before.ctime_nsec() as u32;
    node.inode = before.ino();
    node.content = content;
    node.digest = Some(Id(*digest.finalize().as_bytes()));
    Ok((node, read, warning))
}

/// Display path of a streamed entry: its directories and name, `/`-joined.
fn stream_path(dirs: &[Vec<u8>], name: &[u8]) -> String {
    let mut p = String::new();
    for d in dirs
        .iter()
        .map(|d| d.as_slice())
        .chain(std::iter::once(name))
    {
        p.push('/');
        p.push_str(&crate::repository::tree::escape_bytes(d));
    }
    p
}

/// Reads a streamed entry to its end: chunk, hash, hand new chunks to the packer. Any error
/// fails the backup (see [`StreamSource`]); it names the entry.
fn read_stream(
    handle: &PackerHandle,
    chunker: &crate::repository::chunker::Chunker,
    id_key: &[u8; 32],
    digest_key: &[u8; 32],
    mut node: Node,
    src: StreamSource,
    path: &str,
) -> Result<(Node, u64)> {
    let reader = (src.open)().map_err(|e| Error::Target {
        target: path.to_string(),
        reason: format!("could not open the stream: {e}"),
    })?;
    let mut digest = blake3::Hasher::new_keyed(digest_key);
    let mut content = Vec::new();
    let mut read = 0u64;
    let mut stream = chunker.stream(reader, u64::MAX);
    loop {
        let mut chunk = handle.pool().get();
        match stream.next_into(&mut chunk) {
            Ok(true) => {}
            Ok(false) => {
                handle.pool().put(chunk);
                break;
            }
            Err(e) => {
                handle.pool().put(chunk);
                return Err(Error::Target {
                    target: path.to_string(),
                    reason: format!("the stream failed after {read} bytes: {e}"),
                });
            }
        }
        read += chunk.len() as u64;
        digest.update(&chunk);
        let id = Id::keyed(id_key, &chunk);
        if handle.claim(&id) {
            handle.add_blocking(BlobType::Data, id, chunk)?;
        } else {
            handle.pool().put(chunk);
        }
        content.push(id);
    }
    node.size = read;
    node.content = content;
    node.digest = Some(Id(*digest.finalize().as_bytes()));
    Ok((node, read))
}

/// Reads a whole stream into the digest used by file nodes (for verification).
pub fn file_digest(digest_key: &[u8; 32], mut r: impl Read) -> std::io::Result<(Id, u64)> {
    let mut h = blake3::Hasher::new_keyed(digest_key);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((Id(*h.finalize().as_bytes()), n))
}
