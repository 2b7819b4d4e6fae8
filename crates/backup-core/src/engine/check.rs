//! `check` (the whole repository) and `verify` (one snapshot).
//!
//! `check` proves structure: every index file decrypts and decodes, every indexed pack exists
//! and is long enough, every snapshot decrypts, every tree decodes and every blob a snapshot
//! references is indexed. With `read_data` (or a subset) it also downloads packs, checks each
//! pack's BLAKE3 against its name, reads its header, and decrypts and re-hashes every blob.
//! Damage is reported with the pack, the snapshots and the paths it affects.
//!
//! `verify` proves one snapshot restorable: every file's blobs are read, authenticated, and the
//! file's whole-file digest recomputed and compared.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::id::{Id, IdMap, IdSet};
use crate::repository::index::Index;
use crate::repository::pack::{open_blob, read_header, PackedBlob};
use crate::repository::snapshot::Snapshot;
use crate::repository::tree::{Node, NodeKind};
use crate::repository::{pack_path, Repository};

/// What `check` reads.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify every pack.
    pub read_data: bool,
    /// Read a random subset of packs: this percentage (0–100) of them.
    pub read_data_subset: Option<f64>,
}

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// `index`, `missing-pack`, `damaged-pack`, `snapshot`, `tree`, `missing-blob`, `file`.
    pub kind: String,
    /// The pack involved (full hex id), if any.
    pub pack: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Short ids of the snapshots affected.
    pub snapshots: Vec<String>,
    /// Paths affected (at most 100 listed; see `paths_total`).
    pub paths: Vec<String>,
    /// How many paths are affected in all.
    pub paths_total: usize,
}

/// The result of `check`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CheckReport {
    /// True when no error was found (warnings allowed).
    pub ok: bool,
    /// Problems that make data unrestorable or the repository inconsistent.
    pub errors: Vec<Problem>,
    /// Harmless findings (packs not referenced by any index, left by interrupted backups;
    /// `prune` removes them).
    pub warnings: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the store.
    pub packs: usize,
    /// Packs whose data was read.
    pub packs_read: usize,
    /// Blobs indexed.
    pub blobs: usize,
}

/// Visits every node reachable from `root` (each tree once per call), depth first, with its
/// absolute path. Tree load failures are passed to `on_error` and the subtree is skipped.
pub async fn walk_trees(
    repo: &Repository,
    root: Id,
    seen: &mut IdSet,
    mut visit: impl FnMut(&PathBuf, &Node),
    mut on_error: impl FnMut(&PathBuf, Id, Error),
) {
    let mut todo = vec![(root, PathBuf::from("/"))];
    while let Some((id, dir)) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        match repo.load_tree(&id).await {
            Ok(t) => {
                for n in &t.nodes {
                    let p = dir.join(OsStr::from_bytes(&n.name.0));
                    visit(&p, n);
                    if let (NodeKind::Dir, Some(s)) = (n.kind, n.subtree) {
                        todo.push((s, p));
                    }
                }
            }
            Err(e) => on_error(&dir, id, e),
        }
    }
}

/// Checks the repository. Returns a report; `report.ok` is false when errors were found.
pub async fn check(
    repo: &Arc<Repository>,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    tracing::info!(
        "checking {} (reading data: {})",
        repo.store().location(),
        opts.read_data || opts.read_data_subset.is_some()
    );
    repo.locked(false, "check", run_check(repo, opts, progress))
        .await
}

async fn run_check(
    repo: &Arc<Repository>,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    progress.phase("index");
    let mut index = Index::default();
    for o in repo.store().list("index").await? {
        match repo.read_index_file(&o.path).await {
            Ok(f) => index.merge(&f),
            Err(e) => report
                .errors
                .push(problem("index", None, format!("{}: {e}", o.path))),
        }
    }
    report.blobs = index.len();
    // Pack extents according to the index.
    let mut extent: IdMap<u64> = IdMap::default();
    for (pack, b) in index.iter() {
        let end = b.offset as u64 + b.len as u64;
        let e = extent.entry(pack).or_default();
        *e = (*e).max(end);
    }
    let stored: IdMap<u64> = repo.list_packs().await?.into_iter().collect();
    report.packs = stored.len();
    // Blobs whose data is known bad, with the pack and what is wrong.
    let mut damaged: IdMap<usize> = IdMap::default();
    let mut pack_problems: Vec<Problem> = Vec::new();
    let mark = |pack: Id,
                msg: String,
                blobs: &mut dyn Iterator<Item = Id>,
                damaged: &mut IdMap<usize>,
                probs: &mut Vec<Problem>| {
        let i = probs.len();
        probs.push(problem(
            if msg.starts_with("missing") {
                "missing-pack"
            } else {
                "damaged-pack"
            },
            Some(pack),
            msg,
        ));
        for b in blobs {
            damaged.insert(b, i);
        }
    };
    let mut packs_sorted: Vec<&Id> = extent.keys().collect();
    packs_sorted.sort();
    for pack in packs_sorted {
        let need = extent[pack];
        match stored.get(pack) {
            None => mark(
                *pack,
                "missing: the index names this pack but the store does not have it".into(),
                &mut index.iter().filter(|(p, _)| p == pack).map(|(_, b)| b.id),
                &mut damaged,
                &mut pack_problems,
            ),
            Some(&size) if size < need + 4 => mark(
                *pack,
                format!(
                    "truncated: {size} bytes, the index needs at least {}",
                    need + 4
                ),
                &mut index.iter().filter(|(p, _)| p == pack).map(|(_, b)| b.id),
                &mut damaged,
                &mut pack_problems,
            ),
            Some(_) => {}
        }
    }
    let unreferenced = stored.keys().filter(|p| !index.has_pack(p)).count();
    if unreferenced > 0 {
        report.warnings.push(format!(
            "{unreferenced} pack(s) are not named by any index file: normally left by an interrupted backup (prune \
             removes them); if snapshots report missing blobs, the index was damaged: run `repair-index` first"
        ));
    }

    // Read data.
    let mut to_read: Vec<Id> = stored
        .keys()
        .filter(|p| index.has_pack(p))
        .copied()
        .collect();
    to_read.sort();
    if let Some(pct) = opts.read_data_subset.filter(|_| !opts.read_data) {
        let n = ((to_read.len() as f64) * pct.clamp(0.0, 100.0) / 100.0).ceil() as usize;
        // A random subset, so repeated partial checks cover the repository over time.
        let mut keyed: Vec<(u64, Id)> = to_read
            .into_iter()
            .map(|p| {
                let mut r = [0u8; 8];
                crate::repository::crypto::random_bytes(&mut r);
                (u64::from_le_bytes(r), p)
            })
            .collect();
        keyed.sort();
        to_read = keyed.into_iter().take(n).map(|(_, p)| p).collect();
    } else if !opts.read_data {
        to_read.clear();
    }
    if !to_read.is_empty() {
        progress.phase("reading packs");
        progress.set_total(
            to_read.iter().map(|p| stored[p]).sum(),
            to_read.len() as u64,
        );
        let mut per_pack: IdMap<Vec<PackedBlob>> = IdMap::default();
        for (pack, b) in index.iter() {
            per_pack.entry(pack).or_default().push(*b);
        }
        let per_pack = Arc::new(per_pack);
        let mut results = futures::stream::iter(to_read.iter().map(|pack| {
            let (repo, per_pack, pack) = (repo.clone(), per_pack.clone(), *pack);
            async move {
                let path = pack_path(&pack);
                let data = match repo.store().get(&path).await {
                    Ok(d) => d,
                    Err(e) => return (pack, Some(format!("cannot read: {e}")), Vec::new(), 0),
                };
                let len = data.len() as u64;
                tokio::task::spawn_blocking(move || {
                    let (msg, bad) = read_pack(
                        &repo,
                        &pack,
                        &data,
                        per_pack.get(&pack).map(|v| v.as_slice()).unwrap_or(&[]),
                    );
                    (pack, msg, bad, len)
                })
                .await
                .unwrap_or_else(|e| (pack, Some(format!("check task failed: {e}")), Vec::new(), 0))
            }
        }))
        .buffer_unordered(super::cores());
        while let Some((pack, msg, bad, len)) = results.next().await {
            report.packs_read += 1;
            progress.add_bytes(len);
            progress.add_item();
            if let Some(msg) = msg {
                // A pack whose bytes do not match its name is damaged as a whole: every
                // snapshot using it is named, even if some of its blobs still decrypt.
                // The blobs that fail are the damage; if none fails (e.g. only the header or
                // trailer changed) the whole pack is suspect, so all of its blobs count.
                if bad.is_empty() {
                    let mut all = per_pack.get(&pack).into_iter().flatten().map(|b| b.id);
                    mark(pack, msg, &mut all, &mut damaged, &mut pack_problems);
                } else {
                    mark(
                        pack,
                        msg,
                        &mut bad.into_iter(),
                        &mut damaged,
                        &mut pack_problems,
                    );
                }
            }
        }
    }

    // Snapshots and trees.
    progress.phase("snapshots");
    let mut snaps: Vec<Snapshot> = Vec::new();
    for o in repo.store().list("snapshots").await? {
        let name = o.path.trim_start_matches("snapshots/");
        if Id::parse(name).is_err() {
            report.warnings.push(format!(
                "{}: not a snapshot (ignored; delete it by hand)",
                o.path
            ));
        }
    }
    let (ok, bad) = repo.snapshots_and_failures().await?;
    snaps.extend(ok);
    for (id, e) in bad {
        let mut p = problem(
            "snapshot",
            None,
            format!(
                "snapshot {}: {e} (remove it with `forget {}`)",
                id.short(),
                id.short()
            ),
        );
        p.snapshots.push(id.short());
        report.errors.push(p);
    }
    report.snapshots = snaps.len();
    let mut affected_snaps: Vec<BTreeSet<String>> = vec![BTreeSet::new(); pack_problems.len()];
    let mut affected_paths: Vec<BTreeSet<String>> = vec![BTreeSet::new(); pack_problems.len()];
    let mut affected_total: Vec<IdSet> = vec![IdSet::default(); pack_problems.len()];
    for s in &snaps {
        let mut seen = IdSet::default();
        let mut local: Vec<Problem> = Vec::new();
        let short = s.id.short();
        let mut hit = |blob: &Id, path: &PathBuf, local: &mut Vec<Problem>| {
            if let Some(&i) = damaged.get(blob) {
                affected_snaps[i].insert(short.clone());
                // Count each distinct path once across snapshots (keyed by a hash of it).
                let key =
                    crate::Id::of_bytes(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()));
                if affected_total[i].insert(key) && affected_paths[i].len() < 100 {
                    affected_paths[i].insert(crate::repository::tree::display_path(path));
                }
            } else if !index.contains(blob) {
                let mut p = problem(
                    "missing-blob",
                    None,
                    format!("blob {} is not in the index", blob.short()),
                );
                p.snapshots.push(short.clone());
                p.paths.push(crate::repository::tree::display_path(path));
                p.paths_total = 1;
                local.push(p);
            }
        };
        let root = PathBuf::from("/");
        hit(&s.tree, &root, &mut local);
        if !index.contains(&s.tree) {
            report.errors.append(&mut local);
            continue;
        }
        let mut tree_errors = Vec::new();
        walk_trees(
            repo,
            s.tree,
            &mut seen,
            |path, node| {
                for b in node.content.iter().chain(node.subtree.iter()) {
                    hit(b, path, &mut local);
                }
            },
            |path, id, e| tree_errors.push((path.clone(), id, e)),
        )
        .await;
        for (path, id, e) in tree_errors {
            if damaged.contains_key(&id) || !index.contains(&id) {
                continue; // already reported through its pack or as missing
            }
            let mut p = problem(
                "tree",
                None,
                format!(
                    "tree {} at {}: {e}",
                    id.short(),
                    crate::repository::tree::display_path(&path)
                ),
            );
            p.snapshots.push(short.clone());
            local.push(p);
        }
        report.errors.append(&mut local);
    }
    for (i, mut p) in pack_problems.into_iter().enumerate() {
        p.snapshots = affected_snaps[i].iter().cloned().collect();
        p.paths = std::mem::take(&mut affected_paths[i]).into_iter().collect();
        p.paths_total = affected_total[i].len();
        report.errors.push(p);
    }
    report.ok = report.errors.is_empty();
    Ok(report)
}

fn problem(kind: &str, pack: Option<Id>, message: String) -> Problem {
    Problem {
        kind: kind.into(),
        pack: pack.map(|p| p.to_hex()),
        message,
        snapshots: Vec::new(),
        paths: Vec::new(),
        paths_total: 0,
    }
}

/// Verifies one pack's bytes. Returns a description of the damage (if any) and the ids of
/// blobs that failed to open.
fn read_pack(
    repo: &Repository,
    pack: &Id,
    data: &[u8],
    indexed: &[PackedBlob],
) -> (Option<String>, Vec<Id>) {
    let path = pack_path(pack);
    let key = repo.key();
    let mut problems: Vec<String> = Vec::new();
    if Id::of_bytes(data) != *pack {
        problems.push("content does not match the pack id (bytes changed)".into());
    }
    match read_header(&key.data, &path, data) {
        Ok(h) => {
            for b in indexed {
                if !h.contains(b) {
                    problems.push(format!(
                        "blob {} is in the index but not in the pack header",
                        b.id.short()
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("header: {e}")),
    }
    let mut bad = Vec::new();
    for b in indexed {
        let range = b.offset as usize..b.offset as usize + b.len as usize;
        let ok = data
            .get(range)
            .map(|env| open_blob(&key.data, &key.id_key, &path, b, env).is_ok())
            .unwrap_or(false);
        if !ok {
            bad.push(b.id);
        }
    }
    if !bad.is_empty() {
        problems.push(format!("{} blob(s) fail authentication", bad.len()));
    }
    ((!problems.is_empty()).then(|| problems.join("; ")), bad)
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    /// Snapshot verified (full id).
    pub snapshot: String,
    /// True when every file's bytes matched its digest.
    pub ok: bool,
    /// Files verified.
    pub files: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Files (or trees) that failed, with why.
    pub errors: Vec<crate::repository::snapshot::PathError>,
}

/// Reads back every file of `snap` and compares it with its whole-file digest.
/// Reads back every file of `snap` and compares it with its whole-file digest.
pub async fn verify(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    repo.locked(false, "verify", run_verify(repo, snap, progress))
        .await
}

async fn run_verify(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        snapshot: snap.id.to_hex(),
        ..Default::default()
    };
    let mut files: Vec<(PathBuf, Node)> = Vec::new();
    let mut seen = IdSet::default();
    let mut errors = Vec::new();
    walk_trees(
        repo,
        snap.tree,
        &mut seen,
        |p, n| {
            if n.kind == NodeKind::File {
                files.push((p.clone(), n.clone()));
            }
        },
        |p, id, e| {
            errors.push(crate::repository::snapshot::PathError {
                path: crate::repository::tree::display_path(p),
                message: format!("tree {}: {e}", id.short()),
            })
        },
    )
    .await;
    progress.set_total(files.iter().map(|(_, n)| n.size).sum(), files.len() as u64);
    let handle = tokio::runtime::Handle::current();
    let digest_key = repo.key().digest_key;
    let mut results = futures::stream::iter(files.into_iter().map(|(path, node)| {
        let (repo, handle) = (repo.clone(), handle.clone());
        tokio::task::spawn_blocking(move || {
            let r = super::browse::NodeReader::new(repo, handle, &node);
            let res = super::backup::file_digest(&digest_key, r);
            let outcome = match res {
                Ok((d, n)) if Some(d) == node.digest && n == node.size => Ok(n),
                Ok(_) => Err("content does not match the file's digest".to_string()),
                Err(e) => Err(e.to_string()),
            };
            (path, outcome)
        })
    }))
    .buffer_unordered(2 * super::cores());
    while let Some(r) = results.next().await {
        let (path, outcome) =
            r.map_err(|e| Error::InvalidInput(format!("verify task failed: {e}")))?;
        match outcome {
            Ok(n) => {
                report.files += 1;
                report.bytes += n;
                progress.add_bytes(n);
                progress.add_item();
            }
            Err(m) => errors.push(crate::repository::snapshot::PathError {
                path: crate::repository::tree::display_path(&path),
                message: m,
            }),
        }
    }
    drop(results);
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    report.errors = errors;
    report.ok = report.errors.is_empty();
    Ok(report)
}
