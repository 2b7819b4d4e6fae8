//! The `minio` target: S3 / MinIO buckets with their objects' metadata and tags and the
//! buckets' configuration (PRD: "MinIO object storage backup ... metadata and access policies").
//!
//! Spec: `minio` (every bucket the credentials list) or `minio:<bucket>[/<key prefix>]`. The
//! server and credentials come from [`S3Settings`] (`AWS_*` / `MINIO_*` variables).
//!
//! # Snapshot layout
//!
//! ```text
//! /<bucket>/                      one directory per bucket
//! /<bucket>/config/policy.json    GetBucketPolicy, as the server returned it
//! /<bucket>/config/versioning.xml GetBucketVersioning (only when Enabled or Suspended)
//! /<bucket>/config/lifecycle.xml  GetBucketLifecycleConfiguration
//! /<bucket>/config/cors.xml       GetBucketCors
//! /<bucket>/config/tagging.xml    GetBucketTagging (only when it has tags)
//! /<bucket>/objects/<key>         every object, key mapped to names as in [`names`]
//! ```
//!
//! A configuration the bucket does not have (404 `NoSuch…`) or the server does not implement
//! (501) is simply absent. An object or document the server refuses (403, …) is named in the
//! snapshot's errors (partial snapshot); a server that stops answering (connection errors or
//! 5xx after retries) fails the backup. Each object is a file node whose content is the object body
//! (streamed from `GetObject`, never held in memory) and whose `meta` holds the headers a
//! restore sends back: `content-type`, `cache-control`, `content-encoding`,
//! `content-disposition`, `content-language`, `expires`, `x-amz-website-redirect-location`,
//! every `x-amz-meta-*`, and the object's tags as `x-amz-tagging` (`k=v&k2=v2`, URL-encoded,
//! the `PutObject` header form). `mtime` is the object's Last-Modified time.
//!
//! Only the current version of each object is backed up (not older versions of a versioned
//! bucket), and server-side encryption, storage class and object-lock settings are not kept:
//! the destination bucket's defaults apply on restore.
//!
//! # Change detection
//!
//! Each object's stream carries the version token `etag=<ETag>;size=<bytes>;mtime=<Last-Modified>`
//! from `HeadObject`; an incremental backup reuses the parent's content when the token is equal,
//! without reading the body. Size alone is never used, and the ETag is only compared, never
//! taken for an MD5 (multipart and encrypted objects' ETags are not). The body is fetched with
//! `If-Match: <ETag>`, so an object replaced between `HeadObject` and `GetObject` fails the
//! backup (412) instead of storing a body that does not match its metadata.

pub mod names;
pub mod restore;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use reqwest::Method;
use sha2::Digest;

use super::{Source, StreamSource, Target, WalkEvent};
use crate::error::{Error, Result};
use crate::repository::snapshot::PathError;
use crate::repository::tree::{escape_bytes, Node, NodeKind, RawName};
use crate::s3::{encode_query, BlockingBody, S3Client, S3Request, S3Settings};

/// Object headers kept in `Node.meta` and sent back on restore (besides `x-amz-meta-*`).
pub const KEPT_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
    "x-amz-website-redirect-location",
];

/// `Node.meta` entry holding the object's tags (URL-encoded `k=v&…`).
pub const TAGGING_META: &str = "x-amz-tagging";

/// Bucket configuration documents: (sub-resource, file name in `config/`).
pub const BUCKET_CONFIG: &[(&str, &str)] = &[
    ("cors", "cors.xml"),
    ("lifecycle", "lifecycle.xml"),
    ("policy", "policy.json"),
    ("tagging", "tagging.xml"),
    ("versioning", "versioning.xml"),
];

/// Name of the configuration directory in a bucket's directory.
pub const CONFIG_DIR: &str = "config";
/// Name of the objects directory in a bucket's directory.
pub const OBJECTS_DIR: &str = "objects";

/// `HeadObject`/`GetObjectTagging` calls in flight while a directory level is listed.
const META_CONCURRENCY: usize = 16;

/// A parsed `minio:` argument: a bucket (or every bucket) and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketSpec {
    /// The bucket; `None` means every bucket.
    pub bucket: Option<String>,
    /// Key prefix (raw, may be empty); only keys starting with it are backed up.
    pub prefix: String,
}

impl BucketSpec {
    /// Parses `""`, `bucket` or `bucket/prefix` (the prefix is kept byte for byte).
    ///
    /// Errors: [`Error::InvalidInput`] for a bucket name that is `.`/`..` or holds characters
    /// S3 bucket names cannot have.
    pub fn parse(arg: &str) -> Result<BucketSpec> {
        if arg.is_empty() {
            return Ok(BucketSpec::default());
        }
        let (bucket, prefix) = arg.split_once('/').unwrap_or((arg, ""));
        let ok = !bucket.is_empty()
            && bucket != "."
            && bucket != ".."
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !ok {
            return Err(Error::InvalidInput(format!(
                "minio:{arg}: {bucket:?} is not a bucket name (letters, digits, `.`, `-`, `_`)"
            )));
        }
        Ok(BucketSpec {
            bucket: Some(bucket.to_string()),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for BucketSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bucket {
            None => write!(f, "minio"),
            Some(b) if self.prefix.is_empty() => write!(f, "minio:{b}"),
            Some(b) => write!(f, "minio:{b}/{}", self.prefix),
        }
    }
}

/// What the walk saw, recorded in `Snapshot.meta` by [`Target::finish`].
#[derive(Default)]
struct Seen {
    buckets: Vec<String>,
    objects: u64,
    bytes: u64,
}

/// The bucket target. Build it inside a tokio runtime (it keeps the runtime's handle to run
/// S3 calls from the engine's blocking walker and reader threads).
pub struct MinioTarget {
    client: Arc<S3Client>,
    spec: BucketSpec,
    rt: tokio::runtime::Handle,
    seen: Mutex<Seen>,
}

impl MinioTarget {
    /// A target for `spec` on the server of `settings`.
    ///
    /// Errors: [`Error::InvalidInput`] for bad settings or when called outside a runtime.
    pub fn new(spec: BucketSpec, settings: S3Settings) -> Result<MinioTarget> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::InvalidInput("the minio target needs a tokio runtime".into()))?;
        Ok(MinioTarget {
            client: Arc::new(S3Client::new(settings)?),
            spec,
            rt,
            seen: Mutex::new(Seen::default()),
        })
    }

    /// A target for the `minio:` argument `arg`, with settings from the environment.
    pub fn from_env(arg: &str) -> Result<MinioTarget> {
        MinioTarget::new(BucketSpec::parse(arg)?, S3Settings::from_env()?)
    }

    fn target_err(&self, reason: impl std::fmt::Display) -> Error {
        Error::Target {
            target: self.spec.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Emits `config/` of one bucket.
    fn walk_config(
        &self,
        bucket: &str,
        emit: &mut dyn FnMut(WalkEvent) -> Result<()>,
    ) -> Result<()> {
        emit(WalkEvent::EnterDir(dir_node(CONFIG_DIR.as_bytes())))?;
        for (sub, file) in BUCKET_CONFIG {
            let doc = match self.rt.block_on(self.client.get_bucket_config(bucket, sub)) {
                Ok(d) => d,
                Err(e) if server_failure(&e) => return Err(self.target_err(e)),
                Err(e) => {
                    emit(WalkEvent::Error(PathError {
                        path: format!("/{bucket}/{CONFIG_DIR}/{file}"),
                        message: e.to_string(),
                    }))?;
                    continue;
                }
            };
            let Some(doc) = doc.filter(|d| config_is_set(sub, d)) else {
                continue;
            };
            let mut node = Node::new(RawName(file.as_bytes().to_vec()), NodeKind::File);
            node.mode = 0o644;
            node.size = doc.len() as u64;
            let version = hex::encode(sha2::Sha256::digest(&doc));
            let source = StreamSource {
                open: Box::new(move || {
                    Ok(Box::new(std::io::Cursor::new(doc)) as Box<dyn std::io::Read + Send>)
                }),
                version: Some(format!("sha256={version}")),
            };
            emit(WalkEvent::Entry(node, Source::Stream(source)))?;
        }
        emit(WalkEvent::LeaveDir)
    }

    /// Emits one directory level: the objects and common prefixes under `base` (a prefix that
    /// is empty or ends with `/`) that start with `list_prefix`, sorted by node name.
    fn walk_level(
        &self,
        bucket: &str,
        base: &str,
        list_prefix: &str,
        emit: &mut dyn FnMut(WalkEvent) -> Result<()>,
    ) -> Result<()> {
        enum Entry {
            Dir(String),
            Obj(String),
        }
        let mut entries: Vec<(Vec<u8>, Entry)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .rt
                .block_on(
                    self.client
                        .list_page(bucket, list_prefix, Some("/"), token.as_deref()),
                )
                .map_err(|e| self.target_err(format!("listing {bucket}: {e}")))?;
            for o in page.objects {
                let piece = o.key.as_bytes().get(base.len()..).unwrap_or_default();
                entries.push((names::escape_piece(piece), Entry::Obj(o.key)));
            }
            for p in page.prefixes {
                let piece = p.as_bytes().get(base.len()..).unwrap_or_default();
                entries.push((names::escape_piece(piece), Entry::Dir(p)));
            }
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        // Metadata of this level's objects, fetched concurrently, in entry order.
        let keys: Vec<String> = entries
            .iter()
            .filter_map(|(_, e)| match e {
                Entry::Obj(k) => Some(k.clone()),
                Entry::Dir(_) => None,
            })
            .collect();
        let client = self.client.clone();
        let metas: Vec<Result<Option<ObjectMeta>>> = self.rt.block_on(
            futures::stream::iter(keys)
                .map(|k| {
                    let client = client.clone();
                    let bucket = bucket.to_string();
                    async move { object_meta(&client, &bucket, &k).await }
                })
                .buffered(META_CONCURRENCY)
                .collect(),
        );
        let mut metas = metas.into_iter();
        for (name, entry) in entries {
            match entry {
                Entry::Dir(prefix) => {
                    emit(WalkEvent::EnterDir(dir_node(&name)))?;
                    self.walk_level(bucket, &prefix, &prefix, emit)?;
                    emit(WalkEvent::LeaveDir)?;
                }
                Entry::Obj(key) => {
                    let meta = metas.next().expect("one metadata result per object");
                    match meta {
                        // Deleted since it was listed: not part of the bucket any more.
                        Ok(None) => {}
                        Ok(Some(m)) => {
                            let (node, source) = self.object_entry(bucket, &key, name, m);
                            emit(WalkEvent::Entry(node, source))?;
                        }
                        // The server is gone or failing: no snapshot, not a partial one.
                        Err(e) if server_failure(&e) => return Err(self.target_err(e)),
                        Err(e) => emit(WalkEvent::Error(PathError {
                            path: format!("{bucket}/{}", escape_bytes(key.as_bytes())),
                            message: e.to_string(),
                        }))?,
                    }
                }
            }
        }
        Ok(())
    }

    fn object_entry(
        &self,
        bucket: &str,
        key: &str,
        name: Vec<u8>,
        m: ObjectMeta,
    ) -> (Node, Source) {
        {
            let mut seen = self.seen.lock().expect("seen lock");
            seen.objects += 1;
            seen.bytes += m.size;
        }
        let mut node = Node::new(RawName(name), NodeKind::File);
        node.mode = 0o644;
        node.size = m.size;
        node.mtime = m.mtime;
        node.meta = m.headers;
        let version = format!("etag={};size={};mtime={}", m.etag, m.size, m.last_modified);
        let (client, rt) = (self.client.clone(), self.rt.clone());
        let (bucket, key, etag, size) = (bucket.to_string(), key.to_string(), m.etag, m.size);
        let open = move || -> std::io::Result<Box<dyn std::io::Read + Send>> {
            let resource = format!("{bucket}/{}", escape_bytes(key.as_bytes()));
            let resp = rt
                .block_on(client.get_object(&bucket, &key, Some(&etag)))
                .map_err(|e| match &e {
                    Error::S3 { status: 412, .. } => std::io::Error::other(format!(
                        "S3 {resource} changed during the backup (its ETag is no longer {etag}); run the backup again"
                    )),
                    _ => std::io::Error::other(e.to_string()),
                })?;
            Ok(Box::new(BlockingBody::new(rt, resp, Some(size), resource)))
        };
        (
            node,
            Source::Stream(StreamSource {
                open: Box::new(open),
                version: Some(version),
            }),
        )
    }
}

impl Target for MinioTarget {
    fn kind(&self) -> &'static str {
        "minio"
    }

    /// `<endpoint>/<bucket>/<prefix>` (or `<endpoint>/` for every bucket): a different server
    /// with the same bucket names is a different source.
    fn paths(&self) -> Vec<String> {
        let mut p = format!("{}/", self.client.endpoint());
        if let Some(b) = &self.spec.bucket {
            p.push_str(b);
            p.push('/');
            p.push_str(&escape_bytes(self.spec.prefix.as_bytes()));
        }
        vec![p]
    }

    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()> {
        let buckets = match &self.spec.bucket {
            Some(b) => {
                let exists = self
                    .rt
                    .block_on(self.client.bucket_exists(b))
                    .map_err(|e| self.target_err(e))?;
                if !exists {
                    return Err(self.target_err(format!(
                        "bucket {b} does not exist at {}",
                        self.client.endpoint()
                    )));
                }
                vec![b.clone()]
            }
            None => self
                .rt
                .block_on(self.client.list_buckets())
                .map_err(|e| self.target_err(e))?,
        };
        self.seen.lock().expect("seen lock").buckets = buckets.clone();
        for bucket in &buckets {
            emit(WalkEvent::EnterDir(dir_node(bucket.as_bytes())))?;
            self.walk_config(bucket, emit)?;
            emit(WalkEvent::EnterDir(dir_node(OBJECTS_DIR.as_bytes())))?;
            // Directories of the prefix's complete pieces, then the level holding the rest.
            let prefix = &self.spec.prefix;
            let base_len = prefix.rfind('/').map(|i| i + 1).unwrap_or(0);
            let base = &prefix[..base_len];
            let dirs = names::pieces(base.as_bytes());
            let dirs = &dirs[..dirs.len() - 1];
            for piece in dirs {
                emit(WalkEvent::EnterDir(dir_node(&names::escape_piece(piece))))?;
            }
            self.walk_level(bucket, base, prefix, emit)?;
            for _ in dirs {
                emit(WalkEvent::LeaveDir)?;
            }
            emit(WalkEvent::LeaveDir)?;
            emit(WalkEvent::LeaveDir)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let seen = self.seen.lock().expect("seen lock");
        let mut m = BTreeMap::new();
        m.insert("endpoint".into(), self.client.endpoint().into());
        m.insert("buckets".into(), seen.buckets.clone().into());
        m.insert("objects".into(), seen.objects.into());
        m.insert("object_bytes".into(), seen.bytes.into());
        if !self.spec.prefix.is_empty() {
            m.insert("prefix".into(), self.spec.prefix.clone().into());
        }
        Ok(m)
    }
}

/// Whether an error is the server's or the network's (after retries) rather than one object's
/// (access denied, unaddressable key, bad metadata): the former fails the backup, the latter
/// marks the snapshot partial and names the object.
fn server_failure(e: &Error) -> bool {
    match e {
        Error::S3 { status, code, .. } => {
            *status >= 500 || code == "ConnectionFailed" || code == "ReadFailed"
        }
        _ => true,
    }
}

fn dir_node(name: &[u8]) -> Node {
    let mut n = Node::new(RawName(name.to_vec()), NodeKind::Dir);
    n.mode = 0o755;
    n
}

/// Whether a fetched configuration document says something (an unversioned bucket answers
/// `GetBucketVersioning` with an empty document; some servers answer an empty tag set).
fn config_is_set(sub: &str, doc: &[u8]) -> bool {
    let text = String::from_utf8_lossy(doc);
    match sub {
        "versioning" => text.contains("<Status>"),
        "tagging" => text.contains("<Tag>"),
        _ => !doc.is_empty(),
    }
}

/// What `HeadObject` and `GetObjectTagging` say about one object.
struct ObjectMeta {
    etag: String,
    size: u64,
    last_modified: String,
    mtime: i64,
    headers: BTreeMap<String, String>,
}

/// Reads one object's metadata and tags; `None` if it was deleted after it was listed.
async fn object_meta(client: &S3Client, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
    let req = S3Request::new(Method::HEAD, Some(bucket), Some(key));
    let resp = client.send(&req).await?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(crate::s3::failure(req.resource(), resp).await);
    }
    let h = resp.headers();
    let text = |name: &str| -> Result<Option<String>> {
        match h.get(name) {
            None => Ok(None),
            Some(v) => String::from_utf8(v.as_bytes().to_vec())
                .map(Some)
                .map_err(|_| Error::S3 {
                    resource: req.resource(),
                    status: 0,
                    code: "InvalidMetadata".into(),
                    message: format!("header {name} is not UTF-8"),
                }),
        }
    };
    let etag = text("etag")?.unwrap_or_default();
    let size = text("content-length")?
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let last_modified = text("last-modified")?.unwrap_or_default();
    let mtime = chrono::DateTime::parse_from_rfc2822(&last_modified)
        .map(|t| t.timestamp())
        .unwrap_or(0);
    let mut headers = BTreeMap::new();
    for name in KEPT_HEADERS {
        if let Some(v) = text(name)? {
            headers.insert(name.to_string(), v);
        }
    }
    let user: Vec<String> = h
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-amz-meta-"))
        .map(str::to_string)
        .collect();
    for name in user {
        // A repeated header is one value joined by commas (RFC 9110 §5.3).
        let mut values = Vec::new();
        for v in h.get_all(&name) {
            values.push(
                String::from_utf8(v.as_bytes().to_vec()).map_err(|_| Error::S3 {
                    resource: req.resource(),
                    status: 0,
                    code: "InvalidMetadata".into(),
                    message: format!("header {name} is not UTF-8"),
                })?,
            );
        }
        headers.insert(name, values.join(","));
    }
    let tags = client.get_object_tagging(bucket, key).await?;
    if !tags.is_empty() {
        let encoded: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
            .collect();
        headers.insert(TAGGING_META.to_string(), encoded.join("&"));
    }
    Ok(Some(ObjectMeta {
        etag,
        size,
        last_modified,
        mtime,
        headers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(BucketSpec::parse("").unwrap(), BucketSpec::default());
        let s = BucketSpec::parse("b/x//y ?").unwrap();
        assert_eq!(s.bucket.as_deref(), Some("b"));
        assert_eq!(s.prefix, "x//y ?");
        assert_eq!(s.to_string(), "minio:b/x//y ?");
        assert!(BucketSpec::parse("..").is_err());
        assert!(BucketSpec::parse("a b/x").is_err());
    }

    #[test]
    fn empty_configs_are_not_set() {
        assert!(!config_is_set("versioning", b"<VersioningConfiguration/>"));
        assert!(config_is_set(
            "versioning",
            b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
        ));
        assert!(!config_is_set("tagging", b"<Tagging><TagSet/></Tagging>"));
    }
}
