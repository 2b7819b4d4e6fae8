//! The write pipeline: new blobs → compress → encrypt → pack → upload → index.
//!
//! ```text
//! producers (chunkers, tree builder)
//!      │  BlobJob, bounded MPMC channel (2 × workers)
//!      ▼
//! N worker threads (+1 for trees): zstd (raw when it does not shrink), AES-256-GCM, own pack
//!      │  finished packs, bounded channel (1)
//!      ▼
//! uploader task: ≤ 2 concurrent `put_new`; after each stored pack its blobs join the pending
//! index, written as an index file every 50 000 blobs and at the end
//! ```
//!
//! Deduplication happens before a blob enters the pipeline ([`PackerHandle::claim`]): a blob
//! already in the repository index or already queued in this session is never compressed or
//! stored again. Memory is bounded by the channel sizes and `(workers + 3) × pack size`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::repository::id::{Id, IdSet};
use crate::repository::index::{Index, IndexFile};
use crate::repository::pack::{compress_into, BlobType, PackWriter, PackedBlob};
use crate::repository::{pack_path, Repository};

/// Blobs per index file before it is written out during a long backup.
const INDEX_FLUSH_BLOBS: usize = 50_000;
/// Concurrent pack uploads.
const UPLOAD_CONCURRENCY: usize = 2;

struct BlobJob {
    kind: BlobType,
    id: Id,
    raw: Vec<u8>,
}

/// Counters of what a packer stored. Sizes in bytes.
#[derive(Debug, Clone, Default)]
pub struct PackerStats {
    /// Packs stored.
    pub packs: u64,
    /// Blobs stored.
    pub blobs: u64,
    /// Bytes stored (pack sizes).
    pub bytes_stored: u64,
    /// Uncompressed bytes of the stored blobs.
    pub raw_bytes: u64,
    /// Index files written.
    pub index_files: Vec<String>,
}

/// Recycled chunk buffers. Every chunk would otherwise be a fresh multi-megabyte allocation
/// (an `mmap`, page faults and an `munmap` each); buffers go back here once a worker has
/// packed them. Bounded by [`POOL_BYTES`] of capacity.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<(Vec<Vec<u8>>, usize)>,
}

/// Most bytes of buffer capacity kept in a [`BufferPool`].
pub const POOL_BYTES: usize = 12 << 20;

impl BufferPool {
    /// An empty buffer, recycled when one is available.
    pub fn get(&self) -> Vec<u8> {
        let mut f = self.free.lock().expect("pool poisoned");
        match f.0.pop() {
            Some(v) => {
                f.1 -= v.capacity();
                v
            }
            None => Vec::new(),
        }
    }

    /// Returns a buffer for reuse (dropped when the pool is full).
    pub fn put(&self, mut v: Vec<u8>) {
        let mut f = self.free.lock().expect("pool poisoned");
        if f.1 + v.capacity() <= POOL_BYTES {
            v.clear();
            f.1 += v.capacity();
            f.0.push(v);
        }
    }
}

/// A cloneable handle that producers (also blocking threads) use to add blobs.
#[derive(Clone)]
pub struct PackerHandle {
    pool: Arc<BufferPool>,
    tx: async_channel::Sender<BlobJob>,
    tree_tx: async_channel::Sender<BlobJob>,
    known: Arc<Index>,
    added: Arc<Mutex<IdSet>>,
    queued_raw: Arc<AtomicU64>,
}

impl PackerHandle {
    /// True if blob `id` is new: not in the repository and not yet queued. The first caller
    /// for an id gets `true` and must then [`add`](Self::add) it.
    pub fn claim(&self, id: &Id) -> bool {
        if self.known.contains(id) {
            return false;
        }
        self.added.lock().expect("packer set poisoned").insert(*id)
    }

    /// The buffer pool: take chunk buffers from it; buffers not handed to [`add`](Self::add)
    /// should be returned with [`BufferPool::put`].
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Whether `id` is in the repository or queued.
    pub fn has(&self, id: &Id) -> bool {
        self.known.contains(id) || self.added.lock().expect("packer set poisoned").contains(id)
    }

    /// Queues a blob that was claimed. Waits while the pipeline is full.
    ///
    /// Errors when the pipeline stopped (an upload failed); [`Packer::finish`] tells why.
    pub async fn add(&self, kind: BlobType, id: Id, raw: Vec<u8>) -> Result<()> {
        self.queued_raw
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        self.channel(kind)
            .send(BlobJob { kind, id, raw })
            .await
            .map_err(|_| stopped())
    }

    /// [`add`](Self::add) for blocking threads.
    pub fn add_blocking(&self, kind: BlobType, id: Id, raw: Vec<u8>) -> Result<()> {
        self.queued_raw
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        self.channel(kind)
            .send_blocking(BlobJob { kind, id, raw })
            .map_err(|_| stopped())
    }

    /// Trees go to their own packs, so loading a snapshot's trees reads few packs.
    fn channel(&self, kind: BlobType) -> &async_channel::Sender<BlobJob> {
        match kind {
            BlobType::Data => &self.tx,
            BlobType::Tree => &self.tree_tx,
        }
    }

    /// Claims and queues in one step; returns whether the blob was new.
    pub async fn add_if_new(&self, kind: BlobType, id: Id, raw: Vec<u8>) -> Result<bool> {
        if !self.claim(&id) {
            return Ok(false);
        }
        self.add(kind, id, raw).await?;
        Ok(true)
    }
}

fn stopped() -> Error {
    Error::InvalidInput("the pack writer stopped after an earlier error".into())
}

/// The running pipeline. Call [`Packer::finish`] to flush packs and write the index.
pub struct Packer {
    handle: PackerHandle,
    workers: Vec<std::thread::JoinHandle<()>>,
    uploader: tokio::task::JoinHandle<Result<PackerStats>>,
}

type FinishedPack = (Id, Vec<u8>, Vec<PackedBlob>);

impl Packer {
    /// Starts worker threads (one per core) and the uploader. `known` is the repository index
    /// used for deduplication.
    pub fn start(repo: Arc<Repository>, known: Arc<Index>) -> Packer {
        let workers_n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (tx, rx) = async_channel::bounded::<BlobJob>(2 * workers_n);
        let (tree_tx, tree_rx) = async_channel::bounded::<BlobJob>(64);
        let (ptx, prx) = tokio::sync::mpsc::channel::<FinishedPack>(1);
        let pool = Arc::new(BufferPool::default());
        let mut workers = Vec::with_capacity(workers_n + 1);
        // N data workers, plus one for tree blobs (small, cheap to compress).
        for i in 0..=workers_n {
            let rx = if i < workers_n {
                rx.clone()
            } else {
                tree_rx.clone()
            };
            let ptx = ptx.clone();
            let repo = repo.clone();
            let pool = pool.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("dbm-pack-{i}"))
                    .spawn(move || worker(repo, rx, ptx, pool))
                    .expect("spawn pack worker"),
            );
        }
        drop(ptx);
        let uploader = tokio::spawn(uploader(repo, prx));
        Packer {
            handle: PackerHandle {
                pool,
                tx,
                tree_tx,
                known,
                added: Arc::new(Mutex::new(IdSet::default())),
                queued_raw: Arc::new(AtomicU64::new(0)),
            },
            workers,
            uploader,
        }
    }

    /// A handle for producers.
    pub fn handle(&self) -> PackerHandle {
        self.handle.clone()
    }

    /// Closes the input, waits for every pack and index file to be stored, and returns the
    /// counters. Errors: the first store error of the pipeline.
    pub async fn finish(self) -> Result<PackerStats> {
        let Packer {
            handle,
            workers,
            uploader,
        } = self;
        handle.tx.close();
        handle.tree_tx.close();
        drop(handle);
        tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("pack worker failed: {e}")))?;
        uploader
            .await
            .map_err(|e| Error::InvalidInput(format!("uploader failed: {e}")))?
    }
}

fn worker(
    repo: Arc<Repository>,
    rx: async_channel::Receiver<BlobJob>,
    ptx: tokio::sync::mpsc::Sender<FinishedPack>,
    pool: Arc<BufferPool>,
) {
    let key = repo.key();
    let level = repo.config().compression_level;
    let pack_size = repo.config().pack_size as usize;
    // Sized once for a full pack plus the largest blob: no reallocation while filling.
    let capacity = pack_size + repo.config().chunker.max_size as usize + 4096;
    let mut pw = PackWriter::new(0);
    let mut compressed = Vec::new();
    while let Ok(job) = rx.recv_blocking() {
        if pw.is_empty() {
            // Untouched capacity costs address space, not memory.
            pw = PackWriter::new(capacity);
        }
        let raw_len = job.raw.len();
        if compress_into(&job.raw, level, &mut compressed) {
            pw.add(&key.data, job.kind, job.id, &compressed, raw_len, true);
        } else {
            pw.add(&key.data, job.kind, job.id, &job.raw, raw_len, false);
        }
        pool.put(job.raw);
        if compressed.capacity() > 4 << 20 {
            compressed = Vec::new(); // keep only a typical chunk's worth between blobs
        }
        if pw.len() >= pack_size {
            let full = std::mem::replace(&mut pw, PackWriter::new(0));
            if ptx.blocking_send(full.finish(&key.data)).is_err() {
                return; // uploader failed; it reports the error
            }
        }
    }
    if !pw.is_empty() {
        let _ = ptx.blocking_send(pw.finish(&key.data));
    }
}

async fn uploader(
    repo: Arc<Repository>,
    mut rx: tokio::sync::mpsc::Receiver<FinishedPack>,
) -> Result<PackerStats> {
    let mut stats = PackerStats::default();
    let mut pending = IndexFile::default();
    let mut inflight = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            done = inflight.next(), if !inflight.is_empty() => {
                let (id, size, blobs): (Id, u64, Vec<PackedBlob>) = done.expect("non-empty")?;
                stats.packs += 1;
                stats.bytes_stored += size;
                stats.blobs += blobs.len() as u64;
                stats.raw_bytes += blobs.iter().map(|b| b.raw_len as u64).sum::<u64>();
                pending.packs.push((id, blobs));
                if pending.blob_count() >= INDEX_FLUSH_BLOBS {
                    stats.index_files.push(repo.write_index_file(&pending).await?);
                    pending = IndexFile::default();
                }
            }
            msg = rx.recv(), if open && inflight.len() < UPLOAD_CONCURRENCY => match msg {
                Some((id, bytes, blobs)) => {
                    let store = repo.store().clone();
                    inflight.push(async move {
                        let size = bytes.len() as u64;
                        store.put_new(&pack_path(&id), Bytes::from(bytes)).await?;
                        Ok::<_, Error>((id, size, blobs))
                    });
                }
                None => open = false,
            },
            else => break,
        }
    }
    if !pending.packs.is_empty() {
        stats
            .index_files
            .push(repo.write_index_file(&pending).await?);
    }
    Ok(stats)
}
