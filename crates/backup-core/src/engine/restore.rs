//! Restore: write a snapshot (or parts of it) into a destination directory.
//!
//! The repository is hostile input (ARCHITECTURE principle 5):
//! * every name is validated as one normal path component when its tree is decoded, names in a
//!   tree are unique, and paths are only ever built by joining validated components onto the
//!   destination — no `..`, no absolute names;
//! * directories are created by us (or, with `overwrite`, checked with `lstat` to be real
//!   directories), files are written to a fresh temporary name (`O_CREAT|O_EXCL|O_NOFOLLOW`)
//!   and renamed into place, and symlinks are created last — so nothing is written through a
//!   symlink, and no restored symlink is ever followed;
//! * a file whose blobs fail to authenticate never appears under its final name.
//!
//! Data is restored pack by pack: each pack is read once (only the ranges needed) and its
//! blobs are written at their offsets in every file that uses them, packs in parallel. Holes
//! of sparse files are left unwritten. Then each file is optionally re-read and checked against
//! its whole-file digest, gets its metadata, and is renamed into place. Directory metadata is
//! applied last, deepest first. Memory grows with the number of entries restored.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::crypto::{random_id, unb64};
use crate::repository::id::{Id, IdMap};
use crate::repository::pack::{open_blob, PackedBlob};
use crate::repository::snapshot::{PathError, Snapshot};
use crate::repository::tree::{display_path, Node, NodeKind};
use crate::repository::{pack_path, Repository};

/// Largest ranged read of neighbouring blobs during restore, bytes.
const READ_RUN_BYTES: u64 = 8 << 20;
/// Neighbouring blobs this far apart (unused bytes between them, e.g. blobs of files not being
/// restored) are still read in one request, bytes.
const READ_GAP_BYTES: u64 = 256 << 10;

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Destination directory (created if missing). Source path `/a/b` lands at `DEST/a/b`.
    pub destination: PathBuf,
    /// Absolute paths inside the snapshot to restore (default: everything).
    pub include: Vec<PathBuf>,
    /// Allow a non-empty destination; existing entries with restored names are replaced.
    pub overwrite: bool,
    /// Re-read every restored file and compare it with its whole-file digest.
    pub verify: bool,
    /// Restore uid/gid (default: only when running as root).
    pub owners: bool,
    /// Packs processed concurrently (default: 2 × cores).
    pub concurrency: Option<usize>,
}

impl RestoreOptions {
    /// Defaults for `destination`.
    pub fn new(destination: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            destination: destination.into(),
            include: Vec::new(),
            overwrite: false,
            verify: false,
            // SAFETY: geteuid has no preconditions.
            owners: unsafe { libc::geteuid() } == 0,
            concurrency: None,
        }
    }
}

/// What a restore did. Sizes in bytes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Snapshot restored (full id).
    pub snapshot: String,
    /// Destination (absolute).
    pub destination: String,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and devices restored.
    pub others: u64,
    /// File bytes written (holes excluded).
    pub bytes_written: u64,
    /// Files re-read and matched against their digests (`verify`).
    pub files_verified: u64,
    /// Paths that failed; the restore is incomplete when not empty.
    pub errors: Vec<PathError>,
}

impl RestoreSummary {
    /// `Ok(self)` when nothing failed, else an error naming the first failure.
    pub fn into_result(self) -> Result<Self> {
        match self.errors.first() {
            None => Ok(self),
            Some(e) => Err(Error::Many {
                count: self.errors.len(),
                first: Box::new(Error::Destination {
                    path: e.path.clone().into(),
                    reason: e.message.clone(),
                }),
            }),
        }
    }
}

struct Entry {
    /// Path relative to the destination, from validated components.
    rel: PathBuf,
    node: Node,
}

struct FileJob {
    idx: usize,
    temp: PathBuf,
    failed: Mutex<Option<String>>,
}

/// Restores `snap` according to `opts`. Per-path failures are collected in the summary (check
/// [`RestoreSummary::into_result`]); errors that stop everything (destination unusable, lock,
/// unreadable trees) are returned.
pub async fn restore(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let dest = crate::target::files::absolute(&opts.destination)?;
    prepare_destination(&dest, opts.overwrite)?;
    tracing::info!(
        "restoring snapshot {} into {}",
        snap.id.short(),
        display_path(&dest)
    );
    repo.locked(false, "restore", run(repo, snap, opts, &dest, progress))
        .await
}

fn prepare_destination(dest: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(dest) {
        Ok(md) if md.is_dir() => {
            let mut rd = std::fs::read_dir(dest).map_err(|e| Error::io(dest, e))?;
            if rd.next().is_some() && !overwrite {
                return Err(Error::Destination {
                    path: dest.into(),
                    reason: "is not empty (use --overwrite to restore into it anyway)".into(),
                });
            }
            Ok(())
        }
        Ok(_) => Err(Error::Destination {
            path: dest.into(),
            reason: "exists and is not a directory".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))
        }
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// Splits an include path into components; rejects `..`.
fn include_components(p: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => {
                return Err(Error::InvalidInput(format!(
                    "include path {} must not contain `..`",
                    display_path(p)
                )))
            }
        }
    }
    Ok(out)
}

/// Collects entries to restore in depth-first order (parents before children).
async fn plan(
    repo: &Repository,
    root: &Id,
    includes: &[Vec<Vec<u8>>],
) -> Result<(Vec<Entry>, Vec<bool>)> {
    let mut out = Vec::new();
    let mut matched = vec![false; includes.len()];
    // (tree id, relative path, depth, whether everything below is selected)
    let mut todo: Vec<(Id, PathBuf, usize, bool)> =
        vec![(*root, PathBuf::new(), 0, includes.is_empty())];
    while let Some((tree_id, rel, depth, all)) = todo.pop() {
        let tree = repo.load_tree(&tree_id).await?;
        let mut subdirs = Vec::new();
        for node in tree.nodes {
            let (take, take_all) = if all {
                (true, true)
            } else {
                let mut take = false;
                let mut take_all = false;
                for (i, inc) in includes.iter().enumerate() {
                    if inc.get(depth).is_some_and(|c| *c == node.name.0) {
                        take = true;
                        if inc.len() == depth + 1 {
                            take_all = true;
                            matched[i] = true;
                        }
                    }
                }
                (take, take_all)
            };
            if !take {
                continue;
            }
            // Defence in depth: trees are validated when decoded, and again here where names
            // become paths.
            crate::repository::tree::validate_name(&node.name)
                .map_err(|why| Error::corrupt(format!("tree {}", tree_id.short()), why))?;
            let path = rel.join(OsStr::from_bytes(&node.name.0));
            if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                subdirs.push((sub, path.clone(), depth + 1, take_all));
            }
            out.push(Entry { rel: path, node });
        }
        // Reverse so the stack pops subdirectories in name order.
        todo.extend(subdirs.into_iter().rev());
    }
    // `out` is in visit order; stable-sort by path so every parent precedes its children.
    out.sort_by(|a, b| {
        a.rel
            .as_os_str()
            .as_bytes()
            .cmp(b.rel.as_os_str().as_bytes())
    });
    Ok((out, matched))
}

async fn run(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    opts: &RestoreOptions,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let includes: Vec<Vec<Vec<u8>>> = opts
        .include
        .iter()
        .map(|p| include_components(p))
        .collect::<Result<_>>()?;
    progress.phase("planning");
    let (entries, matched) = plan(repo, &snap.tree, &includes).await?;
    if let Some(i) = matched.iter().position(|m| !m) {
        return Err(Error::InvalidInput(format!(
            "path {} is not in snapshot {}",
            display_path(&opts.include[i]),
            snap.id.short()
        )));
    }
    let mut summary = RestoreSummary {
        snapshot: snap.id.to_hex(),
        destination: display_path(dest),
        ..Default::default()
    };

    progress.phase("creating directories and files");
    // 1. Directories, parents first. Created 0700 so read-only ones can be filled.
    // Anything below a failed directory is skipped.
    let mut failed_dirs: Vec<PathBuf> = Vec::new();
    for e in entries.iter().filter(|e| e.node.kind == NodeKind::Dir) {
        let p = dest.join(&e.rel);
        if failed_dirs.iter().any(|d| p.starts_with(d)) {
            continue;
        }
        if let Err(msg) = make_dir(&p, opts.overwrite) {
            summary.errors.push(PathError {
                path: display_path(&p),
                message: msg,
            });
            failed_dirs.push(p);
        }
    }
    let under_failed = |p: &Path| failed_dirs.iter().any(|d| p.starts_with(d));

    // 2. Files: temp file per file (first of each hard-link group), then the blob plan.
    let index = repo.index().await?;
    let mut jobs: Vec<FileJob> = Vec::new();
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    let mut links: Vec<(usize, usize)> = Vec::new(); // (entry idx, first entry idx)
    let mut by_pack: IdMap<Vec<(PackedBlob, Vec<(usize, u64)>)>> = IdMap::default();
    let mut blob_slot: IdMap<(Id, usize)> = IdMap::default();
    for (idx, e) in entries.iter().enumerate() {
        if e.node.kind != NodeKind::File || under_failed(&dest.join(&e.rel)) {
            continue;
        }
        if e.node.links > 1 && e.node.inode != 0 {
            let key = (e.node.device, e.node.inode);
            if let Some(&first) = first_link.get(&key) {
                links.push((idx, first));
                continue;
            }
            first_link.insert(key, idx);
        }
        let final_path = dest.join(&e.rel);
        let temp = temp_name(&final_path);
        let job = jobs.len();
        jobs.push(FileJob {
            idx,
            temp: temp.clone(),
            failed: Mutex::new(None),
        });
        if let Err(err) = create_temp(&temp, e.node.size) {
            *jobs[job].failed.lock().expect("poisoned") = Some(err);
            continue;
        }
        let mut offset = 0u64;
        for id in &e.node.content {
            let Some((pack, b)) = index.get(id) else {
                *jobs[job].failed.lock().expect("poisoned") =
                    Some(format!("blob {} is missing from the index", id.short()));
                break;
            };
            let list = by_pack.entry(pack).or_default();
            match blob_slot.get(id) {
                Some(&(p, slot)) if p == pack => list[slot].1.push((job, offset)),
                _ => {
                    blob_slot.insert(*id, (pack, list.len()));
                    list.push((b, vec![(job, offset)]));
                }
            }
            offset += b.raw_len as u64;
        }
    }
    drop(blob_slot);
    let total_bytes: u64 = entries
        .iter()
        .filter(|e| e.node.kind == NodeKind::File)
        .map(|e| e.node.size)
        .sum();
    progress.set_total(total_bytes, jobs.len() as u64);
    progress.phase("restoring");

    // 3. Packs in parallel.
    let jobs = Arc::new(jobs);
    let entries = Arc::new(entries);
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let conc = opts.concurrency.unwrap_or(2 * super::cores());
    let mut packs = futures::stream::iter(by_pack.into_iter().map(|(pack, blobs)| {
        let (repo, jobs, entries, written) =
            (repo.clone(), jobs.clone(), entries.clone(), written.clone());
        async move {
            let path = pack_path(&pack);
            let rt = tokio::runtime::Handle::current();
            // Blobs are fetched on this blocking thread in runs of neighbours (one ranged read
            // per run, not per blob: on S3 a request per small file would dominate): memory
            // stays at one run (at most READ_RUN_BYTES, or one larger blob) per pack in flight.
            tokio::task::spawn_blocking(move || {
                let key = repo.key();
                let mut open: Option<(usize, File)> = None;
                // File bytes this pack provides (holes included), for progress.
                let logical: u64 = blobs
                    .iter()
                    .map(|(b, t)| b.raw_len as u64 * t.len() as u64)
                    .sum();
                let mut blobs = blobs;
                blobs.sort_by_key(|(b, _)| b.offset);
                let mut run: Option<(u64, Result<bytes::Bytes>)> = None;
                for (i, (b, targets)) in blobs.iter().enumerate() {
                    let (start, end) = (b.offset as u64, b.offset as u64 + b.len as u64);
                    let cached = matches!(&run, Some((s, Ok(d))) if *s <= start && end <= *s + d.len() as u64);
                    if !cached {
                        let mut run_end = end;
                        for (n, _) in &blobs[i + 1..] {
                            let (ns, ne) = (n.offset as u64, n.offset as u64 + n.len as u64);
                            if ns > run_end + READ_GAP_BYTES || ne - start > READ_RUN_BYTES {
                                break;
                            }
                            run_end = run_end.max(ne);
                        }
                        run = Some((start, rt.block_on(repo.store().get_range(&path, start..run_end))));
                    }
                    let data = match &run {
                        Some((s, Ok(d))) => Ok(d.slice((start - s) as usize..(end - s) as usize)),
                        Some((_, Err(e))) => Err(Error::corrupt(
                            &path,
                            format!("cannot read blob {}: {e}", b.id.short()),
                        )),
                        None => unreachable!("a run was just read"),
                    }
                    .and_then(|env| open_blob(&key.data, &key.id_key, &path, b, &env));
                    let data = match data {
                        Ok(d) => d,
                        Err(e) => {
                            for (job, _) in targets {
                                fail(&jobs[*job], format!("{e}"));
                            }
                            continue;
                        }
                    };
                    let mut all_zero: Option<bool> = None;
                    for (job, off) in targets {
                        let j = &jobs[*job];
                        if j.failed.lock().expect("poisoned").is_some() {
                            continue;
                        }
                        if entries[j.idx].node.sparse
                            && *all_zero.get_or_insert_with(|| data.iter().all(|&b| b == 0))
                        {
                            continue; // a whole-blob hole: nothing to write
                        }
                        // Keep only the last file open: a pack can feed thousands of files.
                        if open.as_ref().map(|(j, _)| *j) != Some(*job) {
                            open = None;
                            match OpenOptions::new()
                                .write(true)
                                .custom_flags(libc::O_NOFOLLOW)
                                .open(&j.temp)
                            {
                                Ok(f) => open = Some((*job, f)),
                                Err(e) => {
                                    fail(j, e.to_string());
                                    continue;
                                }
                            }
                        }
                        let f = &open.as_ref().expect("opened above").1;
                        let sparse = entries[j.idx].node.sparse;
                        match write_blob(f, &data, *off, sparse) {
                            Ok(n) => {
                                written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => fail(j, e.to_string()),
                        }
                    }
                }
                logical
            })
            .await
            .map_err(|e| Error::InvalidInput(format!("restore task failed: {e}")))
        }
    }))
    .buffer_unordered(conc);
    while let Some(r) = packs.next().await {
        progress.add_bytes(r?);
        progress.add_item();
    }
    drop(packs);
    summary.bytes_written = written.load(std::sync::atomic::Ordering::Relaxed);

    // 4. Finish files: verify, metadata, rename into place — or remove the temp file.
    progress.phase("verifying and renaming files into place");
    let digest_key = repo.key().digest_key;
    let verify = opts.verify;
    let owners = opts.owners;
    let dest_owned = dest.to_path_buf();
    let results: Vec<(usize, std::result::Result<bool, String>)> =
        futures::stream::iter((0..jobs.len()).map(|j| {
            let (jobs, entries, dest) = (jobs.clone(), entries.clone(), dest_owned.clone());
            tokio::task::spawn_blocking(move || {
                let job = &jobs[j];
                let e = &entries[job.idx];
                (
                    job.idx,
                    finish_file(job, e, &dest.join(&e.rel), verify, owners, &digest_key),
                )
            })
        }))
        .buffer_unordered(conc)
        .map(|r| r.map_err(|e| Error::InvalidInput(format!("restore task failed: {e}"))))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut restored_ok = vec![false; entries.len()];
    for (idx, r) in results {
        match r {
            Ok(verified) => {
                summary.files += 1;
                summary.files_verified += verified as u64;
                restored_ok[idx] = true;
            }
            Err(msg) => summary.errors.push(PathError {
                path: display_path(&dest.join(&entries[idx].rel)),
                message: msg,
            }),
        }
    }

    // 5. Hard links to their first name.
    for (idx, first) in links {
        let target = dest.join(&entries[idx].rel);
        if !restored_ok[first] {
            summary.errors.push(PathError {
                path: display_path(&target),
                message: "hard-link target was not restored".into(),
            });
            continue;
        }
        let r = remove_existing(&target, opts.overwrite).and_then(|_| {
            std::fs::hard_link(dest.join(&entries[first].rel), &target).map_err(|e| e.to_string())
        });
        match r {
            Ok(()) => summary.files += 1,
            Err(m) => summary.errors.push(PathError {
                path: display_path(&target),
                message: m,
            }),
        }
    }

    // 6. Symlinks and special files, last: nothing restored is ever written through a link.
    for e in entries
        .iter()
        .filter(|e| !matches!(e.node.kind, NodeKind::Dir | NodeKind::File))
    {
        let p = dest.join(&e.rel);
        if under_failed(&p) {
            continue;
        }
        match make_special(&p, &e.node, opts.overwrite, owners) {
            Ok(()) => summary.others += 1,
            Err(m) => summary.errors.push(PathError {
                path: display_path(&p),
                message: m,
            }),
        }
    }

    // 7. Directory metadata, deepest first (after their contents were written).
    for e in entries
        .iter()
        .rev()
        .filter(|e| e.node.kind == NodeKind::Dir)
    {
        let p = dest.join(&e.rel);
        if under_failed(&p) {
            continue;
        }
        match apply_meta(&p, &e.node, owners) {
            Ok(()) => summary.dirs += 1,
            Err(m) => summary.errors.push(PathError {
                path: display_path(&p),
                message: m,
            }),
        }
    }
    Ok(summary)
}

/// Block size for hole detection in sparse files (bytes).
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `offset`. For a sparse file, all-zero 4 KiB blocks are skipped so they
/// stay holes (the file was pre-sized with `set_len`). Returns the bytes written.
fn write_blob(f: &File, data: &[u8], offset: u64, sparse: bool) -> std::io::Result<u64> {
    if !sparse {
        f.write_all_at(data, offset)?;
        return Ok(data.len() as u64);
    }
    let mut written = 0u64;
    let mut run_start: Option<usize> = None;
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + HOLE_BLOCK).min(data.len());
        let zero = data[pos..end].iter().all(|&b| b == 0);
        match (zero, run_start) {
            (false, None) => run_start = Some(pos),
            (true, Some(s)) => {
                f.write_all_at(&data[s..pos], offset + s as u64)?;
                written += (pos - s) as u64;
                run_start = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        f.write_all_at(&data[s..], offset + s as u64)?;
        written += (data.len() - s) as u64;
    }
    Ok(written)
}

fn fail(job: &FileJob, msg: String) {
    let mut g = job.failed.lock().expect("poisoned");
    if g.is_none() {
        *g = Some(msg);
    }
}

fn temp_name(final_path: &Path) -> PathBuf {
    let parent = final_path.parent().unwrap_or(Path::new("/"));
    parent.join(format!("{TEMP_PREFIX}{}.tmp", &random_id()[..16]))
}

fn create_temp(temp: &Path, size: u64) -> std::result::Result<(), String> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(temp)
        .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    f.set_len(size).map_err(|e| e.to_string())
}

/// Prefix of the temporary names restored files are written under:
/// `.dbm-restore-<16 hex digits>.tmp`.
const TEMP_PREFIX: &str = ".dbm-restore-";

fn is_temp_name(b: &[u8]) -> bool {
    b.len() == TEMP_PREFIX.len() + 16 + 4
        && b.starts_with(TEMP_PREFIX.as_bytes())
        && b.ends_with(b".tmp")
        && b[TEMP_PREFIX.len()..TEMP_PREFIX.len() + 16]
            .iter()
            .all(|c| c.is_ascii_hexdigit())
}

fn make_dir(p: &Path, overwrite: bool) -> std::result::Result<(), String> {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => {
            // An existing directory must be writable by us until its metadata is applied at
            // the end (a read-only one from an earlier restore, for a non-root user).
            if md.permissions().mode() & 0o700 != 0o700 {
                let mut perm = md.permissions();
                perm.set_mode(md.permissions().mode() | 0o700);
                std::fs::set_permissions(p, perm).map_err(|e| e.to_string())?;
            }
            // Restoring over an earlier, interrupted restore: drop its temporary files (only
            // names of exactly the form this module generates).
            if overwrite {
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        if is_temp_name(e.file_name().as_bytes()) {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
            }
            Ok(())
        }
        Ok(_) if overwrite => {
            std::fs::remove_file(p).map_err(|e| e.to_string())?;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(p)
                .map_err(|e| e.to_string())
        }
        Ok(_) => Err("exists and is not a directory".into()),
        Err(_) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(p)
                .map_err(|e| e.to_string())
        }
    }
}
use std::os::unix::fs::DirBuilderExt;

/// Makes room for a non-directory at `p`: nothing there, or (with overwrite) a non-directory
/// that is removed. Directories are never removed.
fn remove_existing(p: &Path, overwrite: bool) -> std::result::Result<(), String> {
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(md) if md.is_dir() => Err("a directory is in the way".into()),
        Ok(_) if overwrite => std::fs::remove_file(p).map_err(|e| e.to_string()),
        Ok(_) => Err("already exists".into()),
    }
}

fn finish_file(
    job: &FileJob,
    e: &Entry,
    final_path: &Path,
    verify: bool,
    owners: bool,
    digest_key: &[u8; 32],
) -> std::result::Result<bool, String> {
    let result = (|| {
        if let Some(msg) = job.failed.lock().expect("poisoned").clone() {
            return Err(msg);
        }
        let mut verified = false;
        if verify {
            let f = File::open(&job.temp).map_err(|e| e.to_string())?;
            let (digest, len) = super::backup::file_digest(
                digest_key,
                std::io::BufReader::with_capacity(1 << 20, f),
            )
            .map_err(|e| e.to_string())?;
            if len != e.node.size || Some(digest) != e.node.digest {
                return Err(
                    "verification failed: restored bytes differ from the snapshot's digest".into(),
                );
            }
            verified = true;
        }
        apply_meta(&job.temp, &e.node, owners)?;
        match std::fs::symlink_metadata(final_path) {
            Ok(md) if md.is_dir() => return Err("a directory is in the way".into()),
            _ => {}
        }
        std::fs::rename(&job.temp, final_path).map_err(|e| e.to_string())?;
        Ok(verified)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&job.temp);
    }
    result
}

fn make_special(
    p: &Path,
    node: &Node,
    overwrite: bool,
    owners: bool,
) -> std::result::Result<(), String> {
    remove_existing(p, overwrite)?;
    let cpath = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    match node.kind {
        NodeKind::Symlink => {
            let target = node
                .link_target
                .as_ref()
                .ok_or("symlink without a target")?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target.0), p)
                .map_err(|e| e.to_string())?;
        }
        NodeKind::Fifo | NodeKind::Socket | NodeKind::Chardev | NodeKind::Blockdev => {
            let kind = match node.kind {
                NodeKind::Fifo => libc::S_IFIFO,
                NodeKind::Socket => libc::S_IFSOCK,
                NodeKind::Chardev => libc::S_IFCHR,
                _ => libc::S_IFBLK,
            };
            // SAFETY: cpath is a valid NUL-terminated path.
            let rc = unsafe {
                libc::mknod(
                    cpath.as_ptr(),
                    kind | (node.mode & 0o7777),
                    node.rdev as libc::dev_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error().to_string());
            }
        }
        _ => return Err("unexpected node type".into()),
    }
    apply_meta(p, node, owners)
}

/// Applies xattrs, owner, mode and times to `p` without following a symlink at `p`.
fn apply_meta(p: &Path, node: &Node, owners: bool) -> std::result::Result<(), String> {
    let cpath = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let is_link = node.kind == NodeKind::Symlink;
    if !is_link {
        for x in &node.xattrs {
            let v = unb64("xattr", &x.value).map_err(|e| e.to_string())?;
            xattr::set(p, OsStr::from_bytes(&x.name.0), &v)
                .map_err(|e| format!("xattr {}: {e}", x.name.lossy()))?;
        }
    }
    if owners {
        // SAFETY: valid path; lchown never follows a symlink.
        if unsafe { libc::lchown(cpath.as_ptr(), node.uid, node.gid) } != 0 {
            return Err(format!("chown: {}", std::io::Error::last_os_error()));
        }
    }
    if !is_link {
        // After chown: chown clears setuid/setgid bits.
        // SAFETY: valid path. p is not a symlink (created by us as a file, dir or node).
        if unsafe { libc::chmod(cpath.as_ptr(), node.mode & 0o7777) } != 0 {
            return Err(format!("chmod: {}", std::io::Error::last_os_error()));
        }
    }
    let ts = [
        libc::timespec {
            tv_sec: node.mtime,
            tv_nsec: node.mtime_nsec as _,
        },
        libc::timespec {
            tv_sec: node.mtime,
            tv_nsec: node.mtime_nsec as _,
        },
    ];
    // SAFETY: valid path and two timespecs; AT_SYMLINK_NOFOLLOW sets a link's own times.
    if unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cpath.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(format!("set times: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
