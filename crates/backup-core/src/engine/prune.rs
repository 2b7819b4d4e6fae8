//! `prune`: delete data no snapshot references.
//!
//! Under the exclusive lock (so no backup can be adding blobs that reuse what we delete):
//! 1. load every index file and list every pack;
//! 2. mark every blob reachable from every snapshot (any unreadable tree aborts: we never
//!    delete when unsure what is used);
//! 3. packs with no used blob are deleted; packs whose unused share exceeds
//!    `max_unused_percent` are repacked (used blobs copied into new packs); packs not named by
//!    any index (left by interrupted backups) are deleted;
//! 4. write the new index (new packs first, then index files), delete the old index files,
//!    then delete packs. A crash at any step leaves a consistent repository: at worst
//!    duplicate index entries or unreferenced packs, which the next prune removes.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::id::{Id, IdMap, IdSet};
use crate::repository::index::{Index, IndexFile};
use crate::repository::pack::PackedBlob;
use crate::repository::packer::Packer;
use crate::repository::{pack_path, Repository};

/// Options of `prune`.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Report only; change nothing.
    pub dry_run: bool,
    /// Repack a pack when more than this percentage of its bytes is unused (default 10).
    pub max_unused_percent: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused_percent: 10.0,
        }
    }
}

/// What prune did (or would do with `dry_run`). Sizes in bytes.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PruneReport {
    /// Packs deleted because nothing in them is used.
    pub packs_deleted: usize,
    /// Packs rewritten.
    pub packs_repacked: usize,
    /// Packs deleted because no index named them.
    pub unreferenced_packs_deleted: usize,
    /// Bytes of packs deleted (including packs that were repacked).
    pub bytes_deleted: u64,
    /// Net bytes freed: deleted minus rewritten.
    pub bytes_freed: u64,
    /// Bytes written into new packs by repacking.
    pub bytes_repacked: u64,
    /// Blobs still in use.
    pub blobs_used: usize,
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Partial uploads (staging files of interrupted writes) deleted.
    pub partial_uploads_deleted: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Runs prune. Errors: [`Error::Locked`] while any other process uses the repository.
pub async fn prune(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    tracing::info!(
        "prune of {} (dry run: {})",
        repo.store().location(),
        opts.dry_run
    );
    let r = repo.locked(true, "prune", run(repo, opts, progress)).await;
    repo.invalidate_index().await;
    r
}

async fn run(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    progress.phase("loading index");
    let index_paths = repo.index_paths().await?;
    let mut files = Vec::new();
    for p in &index_paths {
        files.push(repo.read_index_file(p).await?);
    }
    let mut index = Index::default();
    for f in &files {
        index.merge(f);
    }
    let stored: IdMap<u64> = repo.list_packs().await?.into_iter().collect();

    progress.phase("marking used blobs");
    let mut used = IdSet::default();
    let mut seen = IdSet::default();
    for s in repo.snapshots().await? {
        used.insert(s.tree);
        let mut failure: Option<Error> = None;
        super::check::walk_trees(
            repo,
            s.tree,
            &mut seen,
            |_, n| {
                used.extend(n.content.iter().copied());
                used.extend(n.subtree.iter().copied());
            },
            |p, id, e| {
                failure.get_or_insert(Error::corrupt(
                    format!(
                        "tree {} at {} in snapshot {}",
                        id.short(),
                        p.display(),
                        s.id.short()
                    ),
                    format!("{e}; prune stopped without deleting anything (run check)"),
                ));
            },
        )
        .await;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    for id in &used {
        if !index.contains(id) {
            return Err(Error::corrupt(
                format!("blob {}", id.short()),
                "used by a snapshot but not indexed; prune stopped (run check)",
            ));
        }
    }
    report.blobs_used = used.len();

    // Per pack: all entries (duplicates included) and whether each is the used copy.
    let mut packs: IdMap<Vec<(PackedBlob, bool)>> = IdMap::default();
    for f in &files {
        for (pack, blobs) in &f.packs {
            for b in blobs {
                let chosen = index.get(&b.id).map(|(p, _)| p == *pack).unwrap_or(false);
                packs
                    .entry(*pack)
                    .or_default()
                    .push((*b, chosen && used.contains(&b.id)));
            }
        }
    }
    let mut keep: Vec<Id> = Vec::new();
    let mut delete: Vec<Id> = Vec::new();
    let mut repack: Vec<(Id, Vec<PackedBlob>)> = Vec::new();
    for (pack, blobs) in &packs {
        if !stored.contains_key(pack) {
            continue; // missing pack: nothing to delete; its index entries are dropped below
        }
        let total: u64 = blobs.iter().map(|(b, _)| b.len as u64).sum();
        let used_bytes: u64 = blobs
            .iter()
            .filter(|(_, u)| *u)
            .map(|(b, _)| b.len as u64)
            .sum();
        if used_bytes == 0 {
            delete.push(*pack);
        } else if (total - used_bytes) as f64 > total as f64 * opts.max_unused_percent / 100.0 {
            repack.push((
                *pack,
                blobs.iter().filter(|(_, u)| *u).map(|(b, _)| *b).collect(),
            ));
        } else {
            keep.push(*pack);
        }
    }
    let unreferenced: Vec<Id> = stored
        .keys()
        .filter(|p| !packs.contains_key(*p))
        .copied()
        .collect();
    report.packs_deleted = delete.len();
    report.packs_repacked = repack.len();
    report.unreferenced_packs_deleted = unreferenced.len();
    report.bytes_deleted = delete
        .iter()
        .chain(unreferenced.iter())
        .chain(repack.iter().map(|(p, _)| p))
        .map(|p| stored[p])
        .sum();
    let kept_blobs: IdSet = keep
        .iter()
        .flat_map(|p| packs[p].iter().map(|(b, _)| b.id))
        .collect();
    report.blobs_removed = index
        .len()
        .saturating_sub(kept_blobs.len() + repack.iter().map(|(_, b)| b.len()).sum::<usize>());
    if opts.dry_run {
        // Estimate: repacking rewrites the used bytes of the repacked packs.
        let rewrite: u64 = repack
            .iter()
            .flat_map(|(_, b)| b.iter())
            .map(|b| b.len as u64)
            .sum();
        report.bytes_repacked = rewrite;
        report.bytes_freed = report.bytes_deleted.saturating_sub(rewrite);
        return Ok(report);
    }

    // New packs for repacked blobs (dedup only against what this repack already wrote).
    if !repack.is_empty() {
        progress.phase("repacking");
        let packer = Packer::start(repo.clone(), Arc::new(Index::default()));
        let h = packer.handle();
        for (pack, blobs) in &repack {
            for b in blobs {
                if kept_blobs.contains(&b.id) || !h.claim(&b.id) {
                    continue;
                }
                let raw = repo.load_blob_at(pack, b).await?;
                h.add(b.kind, b.id, raw).await?;
            }
        }
        drop(h);
        let stats = packer.finish().await?;
        report.bytes_repacked = stats.bytes_stored;
    }
    report.bytes_freed = report.bytes_deleted.saturating_sub(report.bytes_repacked);
    // Index for kept packs.
    progress.phase("writing index");
    let mut file = IndexFile::default();
    for p in &keep {
        file.packs
            .push((*p, packs[p].iter().map(|(b, _)| *b).collect()));
        if file.blob_count() >= 50_000 {
            repo.write_index_file(&std::mem::take(&mut file)).await?;
        }
    }
    if !file.packs.is_empty() {
        repo.write_index_file(&file).await?;
    }
    repo.store().flush().await?;
    // The new index files are stored (each has a fresh name: envelopes use random nonces), so
    // the old ones can go, then the packs.
    for p in &index_paths {
        repo.store().delete(p).await?;
    }
    progress.phase("deleting packs");
    for p in delete
        .iter()
        .chain(unreferenced.iter())
        .chain(repack.iter().map(|(p, _)| p))
    {
        repo.store().delete(&pack_path(p)).await?;
    }
    // Partial uploads an interrupted writer left behind; no writer runs under our lock.
    report.partial_uploads_deleted = repo.store().remove_partial_uploads().await?;
    Ok(report)
}
