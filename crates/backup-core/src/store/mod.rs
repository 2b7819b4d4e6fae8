//! Where repository objects live.
//!
//! [`Store`] is the small object-store interface the repository needs: whole and ranged reads,
//! create-only writes (objects are immutable and written once), overwrites (locks only), listing
//! and deletion. [`ObjectStoreBackend`] implements it over any `object_store` backend (the local
//! folder uses it directly); [`cloud::CloudStore`] adds what S3, GCS and Azure need on top
//! (multipart uploads, upload verification, conditional-create detection, bucket creation).

pub mod cloud;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

/// One listed object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Path relative to the repository root, e.g. `data/ab/ab12…`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-modified time as recorded by the store's own clock (UTC).
    pub last_modified: DateTime<Utc>,
}

/// The object-store interface of a repository. Paths are `/`-separated and relative to the
/// repository root.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Human-readable location (`/srv/backups`, `s3://bucket/prefix`), never with secrets.
    fn location(&self) -> &str;
    /// Reads a whole object. Errors: `object_store::Error::NotFound` inside [`Error::Store`].
    async fn get(&self, path: &str) -> Result<Bytes>;
    /// Reads `range` (bytes) of an object.
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes>;
    /// Writes a new object; returns `Ok(false)` (and writes nothing) if it already exists.
    async fn put_new(&self, path: &str, data: Bytes) -> Result<bool>;
    /// Writes an object, replacing any previous version (used for lock refreshes only).
    async fn put_overwrite(&self, path: &str, data: Bytes) -> Result<()>;
    /// Lists objects under `prefix` (a folder such as `snapshots`).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Metadata of one object, `None` if it does not exist.
    async fn head(&self, path: &str) -> Result<Option<ObjectInfo>>;
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// The folder holding the repository, when the store is the local filesystem (backups
    /// exclude it so a repository never backs itself up).
    fn local_root(&self) -> Option<&std::path::Path> {
        None
    }
    /// Deletes partial uploads left by interrupted writers and returns how many. Call only
    /// under the exclusive lock. Local folder: `object_store` stages a write as `<name>#<n>`
    /// and renames it into place; such names are never listed, so they are found here.
    /// S3: unfinished multipart uploads under the prefix are aborted.
    async fn remove_partial_uploads(&self) -> Result<usize> {
        Ok(0)
    }
    /// Creates the place the repository lives in when it is missing (S3: the bucket). Called
    /// by `init` only. Default: nothing to do.
    async fn create_location(&self) -> Result<()> {
        Ok(())
    }
    /// Makes every completed write durable (local folder: `syncfs(2)`; object stores are
    /// durable once a PUT returns). Called before a commit point such as a snapshot manifest.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// A [`Store`] over any `object_store` backend.
#[derive(Debug)]
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    location: String,
    /// Root folder when the backend is the local filesystem (for `flush`).
    local_root: Option<std::path::PathBuf>,
}

impl ObjectStoreBackend {
    /// Wraps an `object_store` backend; `location` is what messages show.
    pub fn new(inner: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        ObjectStoreBackend {
            inner,
            location: location.into(),
            local_root: None,
        }
    }

    /// The wrapped `object_store` backend.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// A repository in a local folder, created (with parents) if `create` is set.
    ///
    /// Errors: [`Error::RepositoryNotFound`] if the folder is missing and `create` is false.
    pub fn local(dir: &std::path::Path, create: bool) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::InvalidInput(format!(
                "repository location {} is a file, not a directory",
                dir.display()
            )));
        }
        if create {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        } else if !dir.is_dir() {
            return Err(Error::RepositoryNotFound {
                repo: dir.display().to_string(),
            });
        }
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(Error::Store)?;
        let mut me = Self::new(Arc::new(fs), dir.display().to_string());
        me.local_root = Some(dir.to_path_buf());
        Ok(me)
    }
}

/// Opens the store named by a repository URL: a local path, a `file://` URL, or
/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` with settings from the
/// environment (see [`cloud`]). `create` makes a missing local folder; buckets are created by
/// `init` ([`Store::create_location`]).
///
/// Errors: [`Error::InvalidInput`] for a scheme this build does not support or bad settings.
pub fn open_store(url: &str, create: bool) -> Result<Arc<dyn Store>> {
    open_store_with(url, create, &cloud::CloudOptions::default())
}

/// [`open_store`] with object-storage settings from a config file (the environment still
/// overrides them).
pub fn open_store_with(
    url: &str,
    create: bool,
    cloud_opts: &cloud::CloudOptions,
) -> Result<Arc<dyn Store>> {
    if url.is_empty() {
        return Err(Error::InvalidInput("empty repository location".into()));
    }
    if let Some(u) = cloud::CloudUrl::parse(url)? {
        return Ok(Arc::new(cloud::CloudStore::open(&u, cloud_opts)?));
    }
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(Arc::new(ObjectStoreBackend::local(
            std::path::Path::new(rest),
            create,
        )?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::InvalidInput(format!(
            "repository URL {url}: scheme {scheme}:// is not supported (use a local path, s3://, gs:// or az://)"
        )));
    }
    // Absolute and lexically normal, so messages and the backup's self-exclusion use the same
    // form as the paths being walked.
    let abs = crate::target::files::absolute(std::path::Path::new(url))?;
    Ok(Arc::new(ObjectStoreBackend::local(&abs, create)?))
}

fn info(m: object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        path: m.location.to_string(),
        size: m.size,
        last_modified: m.last_modified,
    }
}

#[async_trait]
impl Store for ObjectStoreBackend {
    fn location(&self) -> &str {
        &self.location
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let r = self.inner.get(&ObjPath::from(path)).await?;
        Ok(r.bytes().await?)
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self.inner.get_range(&ObjPath::from(path), range).await?)
    }

    async fn put_new(&self, path: &str, data: Bytes) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&ObjPath::from(path), PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_overwrite(&self, path: &str, data: Bytes) -> Result<()> {
        self.inner
            .put(&ObjPath::from(path), PutPayload::from(data))
            .await?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let p = ObjPath::from(prefix);
        let v: Vec<_> = self.inner.list(Some(&p)).map_ok(info).try_collect().await?;
        Ok(v)
    }

    async fn head(&self, path: &str) -> Result<Option<ObjectInfo>> {
        match self.inner.head(&ObjPath::from(path)).await {
            Ok(m) => Ok(Some(info(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.inner.delete(&ObjPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    async fn remove_partial_uploads(&self) -> Result<usize> {
        let Some(root) = self.local_root.clone() else {
            return Ok(0);
        };
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            // Never locks/: a lock being written right now is staged there too.
            let mut todo: Vec<std::path::PathBuf> = ["data", "index", "snapshots", "keys"]
                .iter()
                .map(|d| root.join(d))
                .filter(|d| d.is_dir())
                .collect();
            while let Some(dir) = todo.pop() {
                let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
                for e in rd {
                    let e = e.map_err(|e| Error::io(&dir, e))?;
                    let ft = e.file_type().map_err(|err| Error::io(e.path(), err))?;
                    if ft.is_dir() {
                        todo.push(e.path());
                    } else if e.file_name().as_encoded_bytes().contains(&b'#') {
                        std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("cleanup task failed: {e}")))?
    }

    async fn flush(&self) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            let dir = std::fs::File::open(&root).map_err(|e| Error::io(&root, e))?;
            // SAFETY: syncfs on a valid open file descriptor.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(Error::io(&root, std::io::Error::last_os_error()));
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("sync task failed: {e}")))?
    }
}
