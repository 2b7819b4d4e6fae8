//! `repair-index`: rebuild the index from the packs themselves.
//!
//! Every pack ends with an encrypted header listing its blobs (see `repository::pack`), so the
//! index is redundant: when index files are lost or damaged, reading each pack's trailer and
//! header restores it. Under the exclusive lock: new index files are written first, then the
//! old ones deleted, so a crash leaves at worst duplicate entries.

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::index::IndexFile;
use crate::repository::pack::read_header_tail;
use crate::repository::{pack_path, Repository};

/// What `repair-index` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RepairReport {
    /// Packs whose header was read and indexed.
    pub packs_indexed: usize,
    /// Blobs in the new index.
    pub blobs: usize,
    /// Packs whose header could not be read (left out; `check --read-data` names them).
    pub packs_unreadable: Vec<String>,
    /// Old index files replaced.
    pub old_index_files: usize,
}

/// Rebuilds the index from pack headers.
pub async fn rebuild_index(
    repo: &Arc<Repository>,
    progress: &dyn Progress,
) -> Result<RepairReport> {
    let r = repo.locked(true, "repair-index", run(repo, progress)).await;
    repo.invalidate_index().await;
    r
}

async fn run(repo: &Arc<Repository>, progress: &dyn Progress) -> Result<RepairReport> {
    let old = repo.index_paths().await?;
    let packs = repo.list_packs().await?;
    progress.set_total(0, packs.len() as u64);
    let mut report = RepairReport {
        old_index_files: old.len(),
        ..Default::default()
    };
    let mut headers = futures::stream::iter(packs.into_iter().map(|(id, size)| {
        let repo = repo.clone();
        async move {
            let path = pack_path(&id);
            let r = async {
                if size < 4 {
                    return Err(Error::corrupt(&path, "shorter than a pack trailer"));
                }
                let tail = repo.store().get_range(&path, size - 4..size).await?;
                let hlen = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
                let start = size
                    .checked_sub(4 + hlen)
                    .ok_or_else(|| Error::corrupt(&path, "header longer than the pack"))?;
                let tail = repo.store().get_range(&path, start..size).await?;
                read_header_tail(&repo.key().data, &path, &tail, size)
            }
            .await;
            (id, r)
        }
    }))
    .buffer_unordered(8);
    let mut file = IndexFile::default();
    while let Some((id, r)) = headers.next().await {
        progress.add_item();
        match r {
            Ok(blobs) => {
                report.packs_indexed += 1;
                report.blobs += blobs.len();
                file.packs.push((id, blobs));
                if file.blob_count() >= 50_000 {
                    repo.write_index_file(&std::mem::take(&mut file)).await?;
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                report.packs_unreadable.push(id.to_hex());
            }
        }
    }
    if !file.packs.is_empty() {
        repo.write_index_file(&file).await?;
    }
    repo.store().flush().await?;
    for p in &old {
        repo.store().delete(p).await?;
    }
    Ok(report)
}
