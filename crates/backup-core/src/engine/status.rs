//! Repository status: size, snapshot count, last snapshot, compression and dedup ratios.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::repository::pack::BlobType;
use crate::repository::Repository;

/// Status of a repository. Sizes in bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoStatus {
    /// Repository location.
    pub location: String,
    /// Repository id.
    pub repository_id: String,
    /// Number of snapshots.
    pub snapshots: usize,
    /// Newest snapshot: full id.
    pub last_snapshot: Option<String>,
    /// Newest snapshot: time (UTC).
    pub last_snapshot_time: Option<DateTime<Utc>>,
    /// Whether the newest snapshot is partial.
    pub last_snapshot_partial: Option<bool>,
    /// Total size of every object in the store.
    pub total_size: u64,
    /// Packs.
    pub packs: usize,
    /// Distinct blobs.
    pub blobs: usize,
    /// Uncompressed size of all distinct data blobs (after deduplication).
    pub unique_raw_bytes: u64,
    /// Stored size of all distinct data blobs (compressed and encrypted).
    pub unique_stored_bytes: u64,
    /// Sum of the file sizes of all snapshots (before deduplication).
    pub logical_bytes: u64,
    /// `unique_raw_bytes / unique_stored_bytes` (≥ 1 when compression helps).
    pub compression_ratio: f64,
    /// `logical_bytes / unique_raw_bytes`: how many times each stored byte is used.
    pub dedup_ratio: f64,
    /// `1 - total_size / logical_bytes`, percent: the PRD's storage efficiency.
    pub space_saving_percent: f64,
}

/// Computes the status (lists the store, loads the index and every snapshot manifest).
pub async fn status(repo: &Repository) -> Result<RepoStatus> {
    let mut total = repo
        .store()
        .head("config")
        .await?
        .map(|o| o.size)
        .unwrap_or(0);
    for dir in ["keys", "data", "index", "snapshots", "locks"] {
        total += repo
            .store()
            .list(dir)
            .await?
            .iter()
            .map(|o| o.size)
            .sum::<u64>();
    }
    let index = repo.load_index().await?;
    let snaps = repo.snapshots().await?;
    let (mut raw, mut stored) = (0u64, 0u64);
    for (_, b) in index.iter().filter(|(_, b)| b.kind == BlobType::Data) {
        raw += b.raw_len as u64;
        stored += b.len as u64;
    }
    let logical: u64 = snaps.iter().map(|s| s.summary.bytes_total).sum();
    let last = snaps.last();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(RepoStatus {
        location: repo.store().location().to_string(),
        repository_id: repo.config().id.clone(),
        snapshots: snaps.len(),
        last_snapshot: last.map(|s| s.id.to_hex()),
        last_snapshot_time: last.map(|s| s.time),
        last_snapshot_partial: last.map(|s| s.partial),
        total_size: total,
        packs: index.packs.len(),
        blobs: index.len(),
        unique_raw_bytes: raw,
        unique_stored_bytes: stored,
        logical_bytes: logical,
        compression_ratio: ratio(raw, stored),
        dedup_ratio: ratio(logical, raw),
        space_saving_percent: if logical == 0 {
            0.0
        } else {
            100.0 * (1.0 - total as f64 / logical as f64)
        },
    })
}
