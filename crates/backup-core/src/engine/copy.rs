//! `copy`: snapshots from one repository into another (local ↔ S3, S3 ↔ S3), the PRD's
//! cross-environment synchronisation.
//!
//! The two repositories have different master keys, so nothing can be copied byte for byte:
//! blob ids and file digests are keyed hashes (BLAKE3 under each repository's own keys), and
//! every blob is encrypted under the destination's data key. For each snapshot:
//! 1. every data blob of every file is read from the source (authenticated against its source
//!    id), named by the destination's id key and, unless the destination already holds that
//!    blob, queued into the destination's pack writer; each file's digest is recomputed under
//!    the destination's digest key from the same bytes;
//! 2. every tree is rewritten bottom-up with the new ids and stored the same way;
//! 3. after all packs and index files are stored, the manifests are written (snapshots last:
//!    a crash leaves at most unreferenced packs, which `prune` removes).
//!
//! Chunk boundaries are the source's, so the copy deduplicates against everything copied
//! before, not necessarily against backups made natively in the destination (whose chunker
//! has another seed).
//!
//! A source snapshot is *already copied* when the destination has a snapshot with the same
//! time (nanoseconds), host, user, target kind, targets and paths; it is skipped without
//! reading anything, so a repeated `copy` uploads nothing. Before copying new snapshots, each
//! already-copied pair is walked in lockstep to learn which source blob, tree and digest
//! correspond to which destination one: a file that did not change since the last copy is
//! then not read again.
//!
//! Memory: the id maps (three ids per blob, tree and file seen) and the pack writer's bounded
//! pipeline; file contents stream through blob by blob.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::id::{Id, IdMap};
use crate::repository::pack::BlobType;
use crate::repository::packer::PackerHandle;
use crate::repository::snapshot::Snapshot;
use crate::repository::tree::{NodeKind, Tree};
use crate::repository::Repository;

/// Blobs of one file read from the source at once.
const READ_AHEAD: usize = 8;

/// Options of [`copy`].
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Snapshots to copy: ids, unique prefixes or `latest`. Empty: every snapshot.
    pub snapshots: Vec<String>,
}

/// One snapshot copied.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedSnapshot {
    /// Id in the source repository.
    pub source: String,
    /// Id of the new snapshot in the destination.
    pub destination: String,
}

/// What [`copy`] did. Sizes in bytes.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CopyReport {
    /// Snapshots copied, oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Source snapshots the destination already had (id in the source).
    pub already_present: Vec<String>,
    /// Blobs read from the source.
    pub blobs_read: u64,
    /// Blobs (data and tree) added to the destination.
    pub blobs_added: u64,
    /// Bytes added to the destination (packs, after compression and encryption).
    pub bytes_added: u64,
    /// Packs added to the destination.
    pub packs_added: u64,
}

/// What makes two snapshots copies of each other (see the module docs).
fn identity(s: &Snapshot) -> String {
    serde_json::json!([
        s.time.timestamp(),
        s.time.timestamp_subsec_nanos(),
        s.hostname,
        s.username,
        s.target_kind,
        s.targets,
        s.paths
    ])
    .to_string()
}

/// Source-to-destination correspondences learned so far.
#[derive(Default)]
struct Maps {
    blobs: IdMap<Id>,
    trees: IdMap<Id>,
    digests: IdMap<Id>,
}

/// Copies snapshots from `src` into `dst` (see the module docs). Takes shared locks on both.
///
/// Errors: [`Error::SnapshotNotFound`] for a selector that matches nothing; [`Error::Corrupt`]
/// for source data that fails authentication (nothing is written for it: the snapshots of
/// this call are not saved); store errors of either side, naming the repository.
pub async fn copy(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    if src.config().id == dst.config().id {
        return Err(Error::InvalidInput(format!(
            "{} and {} are the same repository (id {})",
            src.store().location(),
            dst.store().location(),
            src.config().id
        )));
    }
    let work = async {
        dst.locked(false, "copy", run(src, dst, opts, progress))
            .await
    };
    let r = src.locked(false, "copy", work).await;
    dst.invalidate_index().await;
    r
}

async fn run(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let all = src.snapshots().await?;
    let mut wanted: Vec<Snapshot> = if opts.snapshots.is_empty() {
        all.clone()
    } else {
        let mut v = Vec::new();
        for spec in &opts.snapshots {
            let s = src.find_snapshot(spec).await?;
            if !v.iter().any(|o: &Snapshot| o.id == s.id) {
                v.push(s);
            }
        }
        v
    };
    wanted.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    let existing: std::collections::HashMap<String, Snapshot> = dst
        .snapshots()
        .await?
        .into_iter()
        .map(|s| (identity(&s), s))
        .collect();
    let mut report = CopyReport::default();
    let todo: Vec<Snapshot> = wanted
        .into_iter()
        .filter(|s| {
            let present = existing.contains_key(&identity(s));
            if present {
                report.already_present.push(s.id.to_hex());
            }
            !present
        })
        .collect();
    // Every source snapshot with a copy (selected or not): parents and the id maps come
    // from these.
    let pairs: Vec<(Snapshot, Snapshot)> = all
        .into_iter()
        .filter_map(|s| existing.get(&identity(&s)).map(|d| (s, d.clone())))
        .collect();
    if todo.is_empty() {
        return Ok(report);
    }
    let mut maps = Maps::default();
    progress.phase("matching earlier copies");
    for (s, d) in &pairs {
        if let Err(e) = learn(src, dst, &s.tree, &d.tree, &mut maps).await {
            // Only an optimisation: without it the files are read again.
            tracing::warn!(
                "snapshot {} and its copy {} differ in shape ({e}); copying without reusing it",
                s.id.short(),
                d.id.short()
            );
        }
    }
    progress.phase("copying");
    progress.set_total(todo.iter().map(|s| s.summary.bytes_total).sum(), 0);
    let packer = dst.packer().await?;
    let handle = packer.handle();
    let mut new_snaps = Vec::with_capacity(todo.len());
    let mut parents: IdMap<Id> = pairs.iter().map(|(s, d)| (s.id, d.id)).collect();
    let mut failed = None;
    for s in &todo {
        match copy_tree(src, dst, &handle, &s.tree, &mut maps, &mut report, progress).await {
            Ok(tree) => {
                let mut n = s.clone();
                n.tree = tree;
                new_snaps.push((s.id, n));
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(handle);
    let stats = packer.finish().await;
    if let Some(e) = failed {
        return Err(e);
    }
    let stats = stats?;
    report.packs_added = stats.packs;
    report.bytes_added = stats.bytes_stored;
    report.blobs_added = stats.blobs;
    // Packs and index are durable before any manifest refers to them.
    dst.store().flush().await?;
    for (src_id, mut n) in new_snaps {
        // The parent's copy, when there is one (copied earlier or just now: oldest first).
        n.parent = n.parent.and_then(|p| parents.get(&p).copied());
        let id = dst.save_snapshot(&n).await?;
        parents.insert(src_id, id);
        report.copied.push(CopiedSnapshot {
            source: src_id.to_hex(),
            destination: id.to_hex(),
        });
        tracing::info!(
            "snapshot {} copied to {} as {}",
            src_id.short(),
            dst.store().location(),
            id.short()
        );
    }
    dst.store().flush().await?;
    Ok(report)
}

/// Walks a source tree and its copy together, recording which ids correspond.
fn learn<'a>(
    src: &'a Arc<Repository>,
    dst: &'a Arc<Repository>,
    s: &'a Id,
    d: &'a Id,
    maps: &'a mut Maps,
) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if maps.trees.contains_key(s) {
            return Ok(());
        }
        let st = src.load_tree(s).await?;
        let dt = dst.load_tree(d).await?;
        if st.nodes.len() != dt.nodes.len() {
            return Err(Error::InvalidInput("different entry counts".into()));
        }
        for (a, b) in st.nodes.iter().zip(&dt.nodes) {
            if a.name != b.name || a.kind != b.kind || a.content.len() != b.content.len() {
                return Err(Error::InvalidInput(format!(
                    "entries {} and {} differ",
                    a.name.lossy(),
                    b.name.lossy()
                )));
            }
            for (x, y) in a.content.iter().zip(&b.content) {
                maps.blobs.insert(*x, *y);
            }
            if let (Some(x), Some(y)) = (a.digest, b.digest) {
                maps.digests.insert(x, y);
            }
            if let (Some(x), Some(y)) = (&a.subtree, &b.subtree) {
                learn(src, dst, x, y, maps).await?;
            }
        }
        maps.trees.insert(*s, *d);
        Ok(())
    })
}

/// Copies the tree `id` (recursively) and returns its id in the destination.
fn copy_tree<'a>(
    src: &'a Arc<Repository>,
    dst: &'a Arc<Repository>,
    handle: &'a PackerHandle,
    id: &'a Id,
    maps: &'a mut Maps,
    report: &'a mut CopyReport,
    progress: &'a dyn Progress,
) -> futures::future::BoxFuture<'a, Result<Id>> {
    Box::pin(async move {
        if let Some(d) = maps.trees.get(id) {
            return Ok(*d);
        }
        let mut tree = src.load_tree(id).await?;
        for node in &mut tree.nodes {
            if let Some(sub) = node.subtree {
                node.subtree =
                    Some(copy_tree(src, dst, handle, &sub, maps, report, progress).await?);
            }
            // Also empty files: their digest is keyed too.
            if node.kind == NodeKind::File {
                copy_file(src, dst, handle, node, maps, report).await?;
                progress.add_bytes(node.size);
                progress.add_item();
            }
        }
        let bytes = Tree { nodes: tree.nodes }.encode();
        let new_id = dst.blob_id(&bytes);
        handle.add_if_new(BlobType::Tree, new_id, bytes).await?;
        maps.trees.insert(*id, new_id);
        Ok(new_id)
    })
}

/// Rewrites one file node: new blob ids and digest; new blobs queued into the destination.
async fn copy_file(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    handle: &PackerHandle,
    node: &mut crate::repository::tree::Node,
    maps: &mut Maps,
    report: &mut CopyReport,
) -> Result<()> {
    let known = node.content.iter().all(|b| maps.blobs.contains_key(b));
    let digest_known = node.digest.is_none_or(|d| maps.digests.contains_key(&d));
    if known && digest_known {
        for b in &mut node.content {
            *b = maps.blobs[b];
        }
        node.digest = node.digest.map(|d| maps.digests[&d]);
        return Ok(());
    }
    let digest_key = dst.key().digest_key;
    let mut hasher = blake3::Hasher::new_keyed(&digest_key);
    let ids = node.content.clone();
    let reads = ids.clone().into_iter().map(|b| {
        let src = src.clone();
        async move {
            src.load_blob(&b).await.map_err(|e| match e {
                Error::Corrupt { object, reason } => Error::Corrupt {
                    object: format!("{}: {object}", src.store().location()),
                    reason,
                },
                e => e,
            })
        }
    });
    let mut blobs = futures::stream::iter(reads).buffered(READ_AHEAD);
    let mut out = Vec::with_capacity(ids.len());
    let mut i = 0;
    while let Some(raw) = blobs.try_next().await? {
        report.blobs_read += 1;
        hasher.update(&raw);
        let src_id = ids[i];
        i += 1;
        let new_id = match maps.blobs.get(&src_id) {
            Some(d) => *d,
            None => {
                let d = dst.blob_id(&raw);
                maps.blobs.insert(src_id, d);
                d
            }
        };
        if !handle.has(&new_id) {
            handle.add_if_new(BlobType::Data, new_id, raw).await?;
        }
        out.push(new_id);
    }
    let new_digest = Id(*hasher.finalize().as_bytes());
    if let Some(d) = node.digest {
        maps.digests.insert(d, new_digest);
        node.digest = Some(new_digest);
    }
    node.content = out;
    Ok(())
}
