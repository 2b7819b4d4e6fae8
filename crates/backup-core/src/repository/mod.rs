//! The repository format and its low-level operations.
//!
//! Layout in the store (see `ARCHITECTURE.md`):
//!
//! ```text
//! config                 envelope (aad "config") over JSON Config
//! keys/<id>              key slots: the master key wrapped under an Argon2id key (plain JSON)
//! data/<2 hex>/<pack id> packs (see `pack`)
//! index/<id>             index files (see `index`)
//! snapshots/<id>         envelope (aad "snapshot") over JSON Snapshot
//! locks/<id>             locks (see `lock`)
//! ```
//!
//! Write order is the commit protocol: packs, then the index files naming them, then the
//! snapshot manifest. Objects are written once (`put_new`) and never modified.

pub mod chunker;
pub mod crypto;
pub mod id;
pub mod index;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod packer;
pub mod snapshot;
pub mod tree;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;
use chunker::{Chunker, ChunkerParams};
use crypto::MasterKey;
use id::Id;
use index::{Index, IndexFile};
use pack::PackedBlob;
use snapshot::Snapshot;
use tree::Tree;

/// Repository format version written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// The repository configuration (`config`), fixed at `init`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Format version.
    pub version: u32,
    /// Random repository id (hex).
    pub id: String,
    /// FastCDC parameters.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for blobs.
    pub compression_level: i32,
    /// When the repository was created (UTC).
    pub created: DateTime<Utc>,
}

/// Options of [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// FastCDC parameters (default: 512 KiB / 1 MiB / 8 MiB).
    pub chunker: ChunkerParams,
    /// Target pack size in bytes (default 16 MiB, like restic).
    pub pack_size: u32,
    /// zstd level (default 3).
    pub compression_level: i32,
    /// Argon2id cost of the first key slot.
    pub kdf: crypto::KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            pack_size: 16 * 1024 * 1024,
            compression_level: 3,
            kdf: crypto::KdfParams::default(),
        }
    }
}

/// An open repository: store, keys and configuration. Cheap to share behind an `Arc`.
pub struct Repository {
    store: Arc<dyn Store>,
    key: Arc<MasterKey>,
    key_id: String,
    config: Config,
    chunker: Chunker,
    index: tokio::sync::Mutex<Option<Arc<Index>>>,
    trees: std::sync::Mutex<TreeCache>,
    no_lock: std::sync::atomic::AtomicBool,
}

/// Verified tree blobs, filled a whole pack at a time (trees are packed apart from data, so
/// one pack read usually brings every tree of a snapshot). Bounded by [`TREE_CACHE_BYTES`];
/// the oldest packs' trees are dropped first.
#[derive(Default)]
struct TreeCache {
    map: id::IdMap<Arc<Vec<u8>>>,
    order: std::collections::VecDeque<Vec<Id>>,
    bytes: usize,
}

/// Upper bound of the tree cache, bytes of decoded tree blobs.
pub const TREE_CACHE_BYTES: usize = 32 << 20;

impl TreeCache {
    fn insert_pack(&mut self, blobs: Vec<(Id, Vec<u8>)>) {
        let mut ids = Vec::with_capacity(blobs.len());
        for (id, raw) in blobs {
            self.bytes += raw.len();
            if self.map.insert(id, Arc::new(raw)).is_none() {
                ids.push(id);
            }
        }
        self.order.push_back(ids);
        while self.bytes > TREE_CACHE_BYTES && self.order.len() > 1 {
            for id in self.order.pop_front().unwrap_or_default() {
                if let Some(v) = self.map.remove(&id) {
                    self.bytes -= v.len();
                }
            }
        }
    }
}

/// Store path of a pack.
pub fn pack_path(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

impl Repository {
    /// Creates a repository in an empty store: config plus one key slot for `password`.
    ///
    /// Errors: [`Error::RepositoryExists`] if `config` already exists.
    pub async fn init(
        store: Arc<dyn Store>,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<Repository> {
        store.create_location().await?;
        if store.head("config").await?.is_some() {
            return Err(Error::RepositoryExists {
                repo: store.location().to_string(),
            });
        }
        for dir in ["keys", "data", "index", "snapshots"] {
            if !store.list(dir).await?.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "{} already holds repository objects ({dir}/) but no config: it is a damaged repository, \
                     not an empty location; init refuses to write over it",
                    store.location()
                )));
            }
        }
        let key = MasterKey::generate();
        let config = Config {
            version: FORMAT_VERSION,
            id: crypto::random_id(),
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
            created: Utc::now(),
        };
        let key_id = keys::add_key(&*store, &key, password, opts.kdf).await?;
        let body = key.data.seal(
            b"config",
            &serde_json::to_vec(&config).expect("config serializes"),
        );
        if !store.put_new("config", Bytes::from(body)).await? {
            return Err(Error::RepositoryExists {
                repo: store.location().to_string(),
            });
        }
        Ok(Self::assemble(store, key, key_id, config))
    }

    /// Opens a repository with `password`, trying every key slot.
    ///
    /// Errors: [`Error::RepositoryNotFound`], [`Error::WrongPassword`], [`Error::Corrupt`].
    pub async fn open(store: Arc<dyn Store>, password: &[u8]) -> Result<Repository> {
        let cfg = match store.get("config").await {
            Ok(b) => b,
            Err(Error::Store(object_store::Error::NotFound { .. })) => {
                for dir in ["keys", "data", "snapshots"] {
                    if !store.list(dir).await?.is_empty() {
                        return Err(Error::corrupt(
                            format!("{}/config", store.location()),
                            format!("missing, but {dir}/ holds objects: the repository is damaged (do not run init here)"),
                        ));
                    }
                }
                return Err(Error::RepositoryNotFound {
                    repo: store.location().to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        let (key_id, key) = keys::unlock(&*store, password).await?;
        let plain = key.data.open("config", b"config", &cfg)?;
        let config: Config =
            serde_json::from_slice(&plain).map_err(|e| Error::corrupt("config", e.to_string()))?;
        if config.version != FORMAT_VERSION {
            return Err(Error::corrupt(
                "config",
                format!("unsupported format version {}", config.version),
            ));
        }
        Ok(Self::assemble(store, key, key_id, config))
    }

    fn assemble(
        store: Arc<dyn Store>,
        key: MasterKey,
        key_id: String,
        config: Config,
    ) -> Repository {
        let chunker = Chunker::new(config.chunker, key.chunker_seed);
        Repository {
            store,
            key: Arc::new(key),
            key_id,
            config,
            chunker,
            index: tokio::sync::Mutex::new(None),
            trees: Default::default(),
            no_lock: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The keys.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    /// Id of the key slot this repository was opened with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// The chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The index, loaded from all index files on first use.
    pub async fn index(&self) -> Result<Arc<Index>> {
        let mut g = self.index.lock().await;
        if let Some(i) = &*g {
            return Ok(i.clone());
        }
        let idx = Arc::new(self.load_index().await?);
        *g = Some(idx.clone());
        Ok(idx)
    }

    /// Reads without taking shared locks (for read-only repositories). Writers still lock;
    /// without locks a concurrent prune could delete data a reader is using.
    pub fn set_no_lock(&self, on: bool) {
        self.no_lock.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes the repository lock for `purpose` (see [`lock`]). Returns `None` for shared locks
    /// in no-lock mode. Errors: [`Error::Locked`]; [`Error::InvalidInput`] for an exclusive lock
    /// in no-lock mode.
    pub async fn lock(&self, exclusive: bool, purpose: &str) -> Result<Option<lock::LockGuard>> {
        if self.no_lock.load(std::sync::atomic::Ordering::Relaxed) {
            if exclusive {
                return Err(Error::InvalidInput(format!(
                    "{purpose} needs the exclusive lock; it cannot run with --no-lock"
                )));
            }
            return Ok(None);
        }
        lock::acquire(self.store.clone(), exclusive, purpose)
            .await
            .map(Some)
    }

    /// Runs `work` under the repository lock (see [`Repository::lock`]) and releases the lock
    /// afterwards, whether `work` succeeded or not.
    pub async fn locked<T>(
        &self,
        exclusive: bool,
        purpose: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let guard = self.lock(exclusive, purpose).await?;
        let result = work.await;
        if let Some(g) = guard {
            if let Err(e) = g.release().await {
                tracing::warn!("could not release the {purpose} lock: {e}");
            }
        }
        result
    }

    /// Forgets the cached index (after this process wrote new index files).
    pub async fn invalidate_index(&self) {
        *self.index.lock().await = None;
    }

    /// Reads every index file. Errors name the index file that failed.
    pub async fn load_index(&self) -> Result<Index> {
        let files = self.store.list("index").await?;
        let mut idx = Index::default();
        let mut decoded = futures::stream::iter(files.into_iter().map(|o| async move {
            let f = self.read_index_file(&o.path).await?;
            Ok::<_, Error>((o.path, f))
        }))
        .buffer_unordered(8);
        while let Some(r) = decoded.next().await {
            let (path, f) = r?;
            idx.merge(&f);
            idx.files.push(path);
        }
        Ok(idx)
    }

    /// Store paths of all index files (`index/<id>`).
    pub async fn index_paths(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .list("index")
            .await?
            .into_iter()
            .map(|o| o.path)
            .collect())
    }

    /// Reads and decodes one index file (`index/<id>`).
    pub async fn read_index_file(&self, path: &str) -> Result<IndexFile> {
        let data = self.store.get(path).await?;
        if path.rsplit('/').next().and_then(|n| Id::parse(n).ok()) != Some(Id::of_bytes(&data)) {
            return Err(Error::corrupt(
                path,
                "content does not match the index file's name (replaced or damaged)",
            ));
        }
        let plain = self.key.data.open(path, b"index", &data)?;
        IndexFile::decode(path, &plain)
    }

    /// Writes an index file; its packs must already be stored. Returns its path.
    pub async fn write_index_file(&self, file: &IndexFile) -> Result<String> {
        let body = self.key.data.seal(b"index", &file.encode());
        let path = format!("index/{}", Id::of_bytes(&body).to_hex());
        self.store.put_new(&path, Bytes::from(body)).await?;
        Ok(path)
    }

    /// Reads blob `id` (any type) through the index, verified against its id.
    ///
    /// Errors: [`Error::Corrupt`] if it is not indexed, its pack is missing, or it fails to
    /// authenticate.
    pub async fn load_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let index = self.index().await?;
        let (pack, b) = index
            .get(id)
            .ok_or_else(|| Error::corrupt(format!("blob {}", id.short()), "not in the index"))?;
        self.load_blob_at(&pack, &b).await
    }

    /// Reads one blob from a known pack location.
    pub async fn load_blob_at(&self, pack: &Id, b: &PackedBlob) -> Result<Vec<u8>> {
        let path = pack_path(pack);
        let env = self
            .store
            .get_range(&path, b.offset as u64..(b.offset as u64 + b.len as u64))
            .await
            .map_err(|e| {
                Error::corrupt(&path, format!("cannot read blob {}: {e}", b.id.short()))
            })?;
        let key = self.key.clone();
        let b = *b;
        // Decompression and hashing are CPU work: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            pack::open_blob(&key.data, &key.id_key, &path, &b, &env)
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("blob task failed: {e}")))?
    }

    /// Reads and validates a tree blob. On a cache miss the whole pack holding it is read and
    /// all its tree blobs are verified and cached.
    pub async fn load_tree(&self, id: &Id) -> Result<Tree> {
        let cached = self
            .trees
            .lock()
            .expect("tree cache poisoned")
            .map
            .get(id)
            .cloned();
        if let Some(raw) = cached {
            return Tree::decode(id, &raw);
        }
        let index = self.index().await?;
        let (pack, b) = index
            .get(id)
            .ok_or_else(|| Error::corrupt(format!("tree {}", id.short()), "not in the index"))?;
        let path = pack_path(&pack);
        let whole = self.store.get(&path).await;
        let key = self.key.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<Vec<(Id, Vec<u8>)>> {
            let data = whole?;
            let header = pack::read_header(&key.data, &path, &data)?;
            let mut out = Vec::new();
            for h in header.iter().filter(|h| h.kind == pack::BlobType::Tree) {
                let env = data
                    .get(h.offset as usize..h.offset as usize + h.len as usize)
                    .ok_or_else(|| Error::corrupt(&path, "blob outside the pack"))?;
                // A damaged blob is skipped here; loading it alone reports the damage.
                if let Ok(raw) = pack::open_blob(&key.data, &key.id_key, &path, h, env) {
                    out.push((h.id, raw));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("tree task failed: {e}")))?;
        let raw = match loaded {
            Ok(blobs) => {
                let mine = blobs.iter().find(|(i, _)| i == id).map(|(_, r)| r.clone());
                self.trees
                    .lock()
                    .expect("tree cache poisoned")
                    .insert_pack(blobs);
                match mine {
                    Some(r) => r,
                    None => self.load_blob_at(&pack, &b).await?,
                }
            }
            // The pack as a whole is unreadable (e.g. damaged header): read just this blob.
            Err(_) => self.load_blob_at(&pack, &b).await?,
        };
        Tree::decode(id, &raw)
    }

    /// Stores a snapshot manifest; the snapshot becomes visible. Returns its id.
    pub async fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let body = self.key.data.seal(
            b"snapshot",
            &serde_json::to_vec(snap).expect("snapshot serializes"),
        );
        let id = Id::of_bytes(&body);
        self.store
            .put_new(&format!("snapshots/{}", id.to_hex()), Bytes::from(body))
            .await?;
        Ok(id)
    }

    /// Loads one snapshot manifest by full id.
    pub async fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let path = format!("snapshots/{}", id.to_hex());
        let data = self.store.get(&path).await.map_err(|e| match e {
            Error::Store(object_store::Error::NotFound { .. }) => Error::SnapshotNotFound {
                id: id.to_hex(),
                reason: "no such snapshot".into(),
            },
            e => e,
        })?;
        // The name is the hash of the content: a manifest copied over another is caught here.
        if Id::of_bytes(&data) != *id {
            return Err(Error::corrupt(
                &path,
                "content does not match the snapshot id (replaced or damaged)",
            ));
        }
        let plain = self.key.data.open(&path, b"snapshot", &data)?;
        let mut s: Snapshot =
            serde_json::from_slice(&plain).map_err(|e| Error::corrupt(&path, e.to_string()))?;
        s.id = *id;
        Ok(s)
    }

    /// Ids of all snapshots. Objects under `snapshots/` whose name is not an id are ignored
    /// (with a warning).
    pub async fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let list = self.store.list("snapshots").await?;
        Ok(list
            .iter()
            .filter_map(|o| o.path.strip_prefix("snapshots/"))
            .filter_map(|name| match Id::parse(name) {
                Ok(id) => Some(id),
                Err(_) => {
                    tracing::warn!("ignoring snapshots/{name}: not a snapshot id");
                    None
                }
            })
            .collect())
    }

    /// All readable snapshots, oldest first, and the ones that could not be read (with why).
    pub async fn snapshots_and_failures(&self) -> Result<(Vec<Snapshot>, Vec<(Id, Error)>)> {
        let ids = self.snapshot_ids().await?;
        let loaded: Vec<(Id, Result<Snapshot>)> = futures::stream::iter(
            ids.into_iter()
                .map(|id| async move { (id, self.load_snapshot(&id).await) }),
        )
        .buffer_unordered(16)
        .collect()
        .await;
        let mut ok = Vec::with_capacity(loaded.len());
        let mut bad = Vec::new();
        for (id, r) in loaded {
            match r {
                Ok(s) => ok.push(s),
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => bad.push((id, e)),
            }
        }
        ok.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok((ok, bad))
    }

    /// All snapshots, oldest first. A damaged manifest is skipped with a warning, so one bad
    /// object never stops backups or restores of the others (`check` reports it).
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let (ok, bad) = self.snapshots_and_failures().await?;
        for (id, e) in bad {
            tracing::warn!("skipping snapshot {}: {e} (run check)", id.short());
        }
        Ok(ok)
    }

    /// Resolves `latest`, a full id, or a unique hex prefix (at least 4 digits).
    ///
    /// Errors: [`Error::SnapshotNotFound`] when nothing or several snapshots match.
    pub async fn find_snapshot(&self, spec: &str) -> Result<Snapshot> {
        if spec == "latest" {
            let (all, bad) = self.snapshots_and_failures().await?;
            if let Some((id, e)) = bad.first() {
                // A damaged manifest may be the newest one: never silently fall back to an
                // older snapshot.
                return Err(Error::SnapshotNotFound {
                    id: spec.into(),
                    reason: format!(
                        "`latest` is uncertain: snapshot {} cannot be read ({e}); name a snapshot id, or remove the damaged one with `forget {}`",
                        id.short(),
                        id.short()
                    ),
                });
            }
            return all
                .into_iter()
                .last()
                .ok_or_else(|| Error::SnapshotNotFound {
                    id: spec.into(),
                    reason: "the repository has no snapshots".into(),
                });
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.len() < 4 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::SnapshotNotFound {
                id: spec.into(),
                reason: "expected `latest` or a hex snapshot id (at least 4 digits)".into(),
            });
        }
        let ids: Vec<Id> = self
            .snapshot_ids()
            .await?
            .into_iter()
            .filter(|i| i.to_hex().starts_with(&spec_l))
            .collect();
        match ids.as_slice() {
            [one] => self.load_snapshot(one).await,
            [] => Err(Error::SnapshotNotFound {
                id: spec.into(),
                reason: "no snapshot has this id".into(),
            }),
            _ => Err(Error::SnapshotNotFound {
                id: spec.into(),
                reason: format!("prefix matches {} snapshots; give more digits", ids.len()),
            }),
        }
    }

    /// Deletes a snapshot manifest (its data is reclaimed by prune).
    pub async fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.store
            .delete(&format!("snapshots/{}", id.to_hex()))
            .await
    }

    /// Starts a packer that writes new blobs into packs (see [`packer::Packer`]).
    pub async fn packer(self: &Arc<Self>) -> Result<packer::Packer> {
        let index = self.index().await?;
        Ok(packer::Packer::start(self.clone(), index))
    }

    /// Lists stored packs: id and size in bytes.
    pub async fn list_packs(&self) -> Result<Vec<(Id, u64)>> {
        let list = self.store.list("data").await?;
        let mut out = Vec::with_capacity(list.len());
        for o in list {
            let name = o.path.rsplit('/').next().unwrap_or_default();
            match Id::parse(name) {
                Ok(id) => out.push((id, o.size)),
                Err(_) => tracing::warn!("ignoring unexpected object {}", o.path),
            }
        }
        Ok(out)
    }

    /// Blob type helper for callers that store raw trees (tests of hostile repositories).
    pub fn blob_id(&self, data: &[u8]) -> Id {
        Id::keyed(&self.key.id_key, data)
    }
}
