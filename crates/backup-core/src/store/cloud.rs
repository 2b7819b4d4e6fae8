//! Repositories on object storage: S3 and S3-compatible servers (MinIO, Ceph RADOS Gateway,
//! …) as `s3://bucket/prefix`, Google Cloud Storage as `gs://bucket/prefix`, Azure Blob
//! Storage as `az://container/prefix`, all through `object_store`.
//!
//! # Settings (S3)
//! Lowest to highest precedence: [`CloudOptions`] (the config file's `storage:` section), then
//! the environment. Each setting is read from the first variable that is set:
//!
//! | setting | variables |
//! |---|---|
//! | endpoint | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT`, `MINIO_ENDPOINT` |
//! | region | `AWS_REGION`, `AWS_DEFAULT_REGION`, `MINIO_REGION` (default `us-east-1`) |
//! | access key id | `AWS_ACCESS_KEY_ID`, `MINIO_ACCESS_KEY`, `MINIO_ROOT_USER` |
//! | secret key | `AWS_SECRET_ACCESS_KEY`, `MINIO_SECRET_KEY`, `MINIO_ROOT_PASSWORD` |
//! | session token | `AWS_SESSION_TOKEN` |
//! | plain http allowed | `AWS_ALLOW_HTTP` (`true`/`false`) |
//! | retries, retry time, request time | `DBM_STORE_MAX_RETRIES`, `DBM_STORE_RETRY_TIMEOUT`, `DBM_STORE_TIMEOUT` (seconds) |
//!
//! Without keys, `object_store`'s other AWS sources apply (web identity, ECS/EC2 roles).
//! An endpoint without a scheme (`minio.local:9000`, MinIO's habit) means `https://`.
//! Plain `http://` endpoints are refused unless allowed: credentials would cross the network
//! in a form anyone on the path can replay. A custom endpoint uses path-style addressing
//! (`endpoint/bucket/key`), which every S3-compatible server understands; AWS itself keeps
//! path-style too unless `virtual_hosted_style` is set.
//!
//! Secrets are held in [`Secret`], whose `Debug` prints `****`; no message built here contains
//! one.
//!
//! # Transfers
//! * Retries: `object_store`'s retry loop (randomised exponential backoff from 0.5 s to 15 s) on 5xx,
//!   429, connection errors and, for idempotent requests, timeouts; at most `max_retries`
//!   (default 10) within `retry_timeout` (default 180 s).
//! * Objects from `multipart_threshold` bytes (default 8 MiB, so a 16 MiB pack is two parts)
//!   are sent as an S3 multipart upload of `part_size` parts, up to 4 at once
//!   (`CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`). A failed upload is
//!   aborted; parts left by a killed process are aborted by `prune` (`ListMultipartUploads`,
//!   `AbortMultipartUpload`), which runs under the exclusive lock.
//! * Verification: every request body is signed with its SHA-256 (SigV4
//!   `x-amz-content-sha256`), so the server rejects a body damaged in transit (a second
//!   SHA-256 as `x-amz-checksum-sha256` would only cost CPU: it checks the same bytes).
//!   After the upload the returned ETag is compared with the MD5 of what was sent
//!   (single PUT: `MD5(body)`; multipart: `MD5(MD5(part 1) ‖ … ‖ MD5(part n))-n`), and the
//!   stored size is compared after a multipart upload or when the server's ETag is not an MD5
//!   (GCS, Azure, SSE-KMS: set `verify_etag: false` there). A mismatch deletes the object and
//!   fails the write, naming it.
//! * Create-only writes ([`Store::put_new`]): `PutObject` with `If-None-Match: *` (answered by
//!   `412 Precondition Failed` when the key exists: AWS since 2024, MinIO, Ceph RGW). Whether
//!   the server honours it is probed once per process on the first write (a random probe key is
//!   written twice, then deleted); a server that ignores the header gets HEAD-then-PUT instead.
//!   Multipart uploads always use HEAD-then-PUT (`object_store` cannot make
//!   `CompleteMultipartUpload` conditional). Both fallbacks are safe for this repository:
//!   objects written that way are packs, whose names are the hash of their content, so a
//!   racing writer can only write the same bytes.
//!
//! # `init`
//! `init` creates the S3 bucket when it does not exist (`CreateBucket`, with the region as
//! `LocationConstraint` outside `us-east-1`). No other command creates anything: a mistyped
//! bucket then fails with "no repository". GCS buckets and Azure containers are never created.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    PutResult, RetryConfig,
};
use serde::Deserialize;

use super::{ObjectInfo, ObjectStoreBackend, Store};
use crate::error::{Error, Result};

/// A secret (key, token) that never shows in `Debug` output or messages.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for handing to a client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Settings of an object-storage repository: the config file's `storage:` section. Every
/// field is optional; the environment overrides each (see the module docs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudOptions {
    /// S3 endpoint URL (`https://minio.example:9000`). Default: AWS for the region.
    pub endpoint: Option<String>,
    /// S3 region (default `us-east-1`).
    pub region: Option<String>,
    /// S3 access key id.
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    pub secret_access_key: Option<Secret>,
    /// S3 session token (temporary credentials).
    pub session_token: Option<Secret>,
    /// Allow a plain `http://` endpoint (default false).
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style addressing (`bucket.endpoint/key`) instead of path-style
    /// (default false).
    pub virtual_hosted_style: Option<bool>,
    /// Conditional create with `If-None-Match: *`: `None` (default) probes the server,
    /// `true` always uses it, `false` always uses HEAD-then-PUT.
    pub conditional_create: Option<bool>,
    /// Compare returned ETags with the MD5 of the upload (default true; turn off for
    /// SSE-KMS/SSE-C buckets, whose ETags are not MD5s).
    pub verify_etag: Option<bool>,
    /// Objects of at least this many bytes go up as multipart uploads (default 8 MiB).
    pub multipart_threshold: Option<u64>,
    /// Part size of multipart uploads in bytes (default 8 MiB; S3 needs at least 5 MiB).
    pub part_size: Option<u64>,
    /// Retries of one request (default 10).
    pub max_retries: Option<usize>,
    /// Longest time to keep retrying one request, seconds (default 180).
    pub retry_timeout_secs: Option<u64>,
    /// Timeout of one HTTP request, seconds (default 300).
    pub request_timeout_secs: Option<u64>,
}

/// Default multipart threshold and part size, bytes.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// Smallest part size S3 accepts (except for the last part), bytes.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Parts of one multipart upload sent at once.
const PART_CONCURRENCY: usize = 4;

/// Which object store a repository URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `s3://` (AWS or any S3-compatible server).
    S3,
    /// `gs://` Google Cloud Storage.
    Gcs,
    /// `az://` (or `azure://`) Azure Blob Storage.
    Azure,
}

/// A parsed object-storage repository URL: `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudUrl {
    /// The store.
    pub provider: Provider,
    /// Bucket (Azure: container).
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl CloudUrl {
    /// Parses `url`; `Ok(None)` if it is not an object-storage URL.
    ///
    /// Errors: [`Error::InvalidInput`] for a missing bucket, an invalid bucket name, or a
    /// prefix with empty, `.` or `..` segments.
    pub fn parse(url: &str) -> Result<Option<CloudUrl>> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(None);
        };
        let provider = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Provider::S3,
            "gs" => Provider::Gcs,
            "az" | "azure" => Provider::Azure,
            _ => return Ok(None),
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bad = |why: &str| Err(Error::InvalidInput(format!("repository URL {url}: {why}")));
        if bucket.is_empty() {
            return bad("no bucket (expected scheme://bucket/prefix)");
        }
        let valid = bucket.len() >= 3
            && bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
            && bucket.as_bytes()[0].is_ascii_alphanumeric()
            && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
        if !valid {
            return bad(&format!(
                "invalid bucket name {bucket:?} (3-63 lowercase letters, digits, '-', '.', '_')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return bad("the prefix has an empty, '.' or '..' segment");
        }
        Ok(Some(CloudUrl {
            provider,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }

    /// The canonical form, as messages show it (`s3://bucket/prefix`).
    pub fn display(&self) -> String {
        let scheme = match self.provider {
            Provider::S3 => "s3",
            Provider::Gcs => "gs",
            Provider::Azure => "az",
        };
        if self.prefix.is_empty() {
            format!("{scheme}://{}", self.bucket)
        } else {
            format!("{scheme}://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3 settings after merging [`CloudOptions`] with the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    /// Endpoint with scheme, without trailing `/`; `None` means AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id (not secret, but not shown either).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token.
    pub session_token: Option<Secret>,
    /// Plain http allowed.
    pub allow_http: bool,
    /// Virtual-hosted-style addressing.
    pub virtual_hosted_style: bool,
    /// See [`CloudOptions::conditional_create`].
    pub conditional_create: Option<bool>,
    /// See [`CloudOptions::verify_etag`].
    pub verify_etag: bool,
    /// Multipart threshold, bytes.
    pub multipart_threshold: u64,
    /// Part size, bytes.
    pub part_size: u64,
    /// Retry policy.
    pub max_retries: usize,
    /// Retry time limit.
    pub retry_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::InvalidInput(format!(
            "{name}={v:?}: expected true or false"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::InvalidInput(format!("{name}={v:?}: expected a number")))
}

impl S3Settings {
    /// Merges `opts` with the variables `env` returns (the process environment in
    /// [`S3Settings::resolve`]; a map in tests).
    ///
    /// Errors: [`Error::InvalidInput`] for a plain-http endpoint without `allow_http`, a bad
    /// number or boolean, or a part size below 5 MiB.
    pub fn resolve_with(
        opts: &CloudOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Settings> {
        let first = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.is_empty()).map(|v| (*n, v)))
        };
        let allow_http = match first(&["AWS_ALLOW_HTTP"]) {
            Some((n, v)) => parse_bool(n, &v)?,
            None => opts.allow_http.unwrap_or(false),
        };
        let endpoint = first(&[
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT",
            "MINIO_ENDPOINT",
        ])
        .map(|(_, v)| v)
        .or_else(|| opts.endpoint.clone());
        let endpoint = match endpoint {
            None => None,
            Some(e) => {
                let e = e.trim().trim_end_matches('/').to_string();
                let e = if e.contains("://") {
                    e
                } else {
                    format!("https://{e}")
                };
                let lower = e.to_ascii_lowercase();
                if lower.starts_with("http://") && !allow_http {
                    return Err(Error::InvalidInput(format!(
                        "S3 endpoint {e} is plain http: set AWS_ALLOW_HTTP=true (or allow_http in the config) to allow it, or use https"
                    )));
                }
                if !lower.starts_with("http://") && !lower.starts_with("https://") {
                    return Err(Error::InvalidInput(format!(
                        "S3 endpoint {e}: expected an http:// or https:// URL"
                    )));
                }
                Some(e)
            }
        };
        let region = first(&["AWS_REGION", "AWS_DEFAULT_REGION", "MINIO_REGION"])
            .map(|(_, v)| v)
            .or_else(|| opts.region.clone())
            .unwrap_or_else(|| "us-east-1".into());
        let access_key_id = first(&["AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY", "MINIO_ROOT_USER"])
            .map(|(_, v)| v)
            .or_else(|| opts.access_key_id.clone());
        let secret_access_key = first(&[
            "AWS_SECRET_ACCESS_KEY",
            "MINIO_SECRET_KEY",
            "MINIO_ROOT_PASSWORD",
        ])
        .map(|(_, v)| Secret(v))
        .or_else(|| opts.secret_access_key.clone());
        let session_token = first(&["AWS_SESSION_TOKEN"])
            .map(|(_, v)| Secret(v))
            .or_else(|| opts.session_token.clone());
        let max_retries = match first(&["DBM_STORE_MAX_RETRIES"]) {
            Some((n, v)) => parse_num(n, &v)?,
            None => opts.max_retries.unwrap_or(10),
        };
        let retry_timeout = match first(&["DBM_STORE_RETRY_TIMEOUT"]) {
            Some((n, v)) => parse_num(n, &v)?,
            None => opts.retry_timeout_secs.unwrap_or(180),
        };
        let request_timeout = match first(&["DBM_STORE_TIMEOUT"]) {
            Some((n, v)) => parse_num(n, &v)?,
            None => opts.request_timeout_secs.unwrap_or(300),
        };
        let part_size = opts.part_size.unwrap_or(DEFAULT_PART_SIZE);
        if part_size < MIN_PART_SIZE {
            return Err(Error::InvalidInput(format!(
                "storage part_size {part_size}: S3 needs parts of at least {MIN_PART_SIZE} bytes"
            )));
        }
        Ok(S3Settings {
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            allow_http,
            virtual_hosted_style: opts.virtual_hosted_style.unwrap_or(false),
            conditional_create: opts.conditional_create,
            verify_etag: opts.verify_etag.unwrap_or(true),
            multipart_threshold: opts.multipart_threshold.unwrap_or(DEFAULT_PART_SIZE),
            part_size,
            max_retries,
            retry_timeout: Duration::from_secs(retry_timeout),
            request_timeout: Duration::from_secs(request_timeout),
        })
    }

    /// [`S3Settings::resolve_with`] over the process environment.
    pub fn resolve(opts: &CloudOptions) -> Result<S3Settings> {
        Self::resolve_with(opts, &|n| std::env::var(n).ok())
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
            // object_store draws each wait from [init, previous × base): with its defaults
            // (0.1 s, × 2) ten retries are over in about 2 s, too soon for a server restart.
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(15),
                base: 3.0,
            },
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(Duration::from_secs(10))
            .with_allow_http(self.allow_http)
    }

    /// The `object_store` builder for `bucket` (no network access).
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        // Other AWS_* sources (web identity, container credentials) come from the
        // environment; everything this module resolves is set explicitly after.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_retry(self.retry())
            .with_client_options(self.client_options())
            .with_allow_http(self.allow_http)
            .with_virtual_hosted_style_request(self.virtual_hosted_style);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(k) = &self.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &self.secret_access_key {
            b = b.with_secret_access_key(s.expose());
        }
        if let Some(t) = &self.session_token {
            b = b.with_token(t.expose());
        }
        b
    }

    /// URL of the bucket itself (for bucket-level requests).
    pub fn bucket_url(&self, bucket: &str) -> String {
        let base = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region));
        if self.virtual_hosted_style {
            match base.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => base,
            }
        } else {
            format!("{base}/{bucket}")
        }
    }
}

/// Extra abilities of an S3 repository beyond `object_store`'s interface: bucket-level
/// requests signed with SigV4 and the multipart API.
struct S3Extra {
    s3: Arc<AmazonS3>,
    settings: S3Settings,
    bucket_url: String,
    http: reqwest::Client,
}

impl S3Extra {
    /// Sends a signed bucket-level request (`query` without `?`); returns status and body.
    async fn request(
        &self,
        method: http::Method,
        query: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes)> {
        let cred = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(Error::Store)?;
        let url = if query.is_empty() {
            format!("{}/", self.bucket_url)
        } else {
            format!("{}/?{query}", self.bucket_url)
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(object_store::client::HttpRequestBody::from(body.clone()))
            .map_err(|e| generic(format!("{url}: {e}")))?;
        AwsAuthorizer::new(&cred, "s3", &self.settings.region)
            .try_authorize(&mut req, None)
            .map_err(Error::Store)?;
        let mut r = self.http.request(method, &url).body(body);
        for (k, v) in req.headers() {
            r = r.header(k.as_str(), v.as_bytes());
        }
        let resp = r.send().await.map_err(|e| generic(format!("{url}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| generic(format!("{url}: {e}")))?;
        Ok((status, bytes))
    }

    /// `CreateBucket`; an existing bucket owned by us is fine.
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let body = if self.settings.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.settings.region
            ))
        };
        let (status, text) = self.request(http::Method::PUT, "", body).await?;
        if status.is_success() {
            tracing::info!("created bucket {bucket}");
            return Ok(());
        }
        let text = String::from_utf8_lossy(&text);
        if status == http::StatusCode::CONFLICT && text.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        if status == http::StatusCode::CONFLICT {
            // Exists; whether we may use it shows on the first read.
            return Ok(());
        }
        Err(generic(format!(
            "cannot create bucket {bucket}: HTTP {status}: {}",
            s3_error_code(&text)
        )))
    }

    /// `ListMultipartUploads` under `prefix` (all pages): (key, upload id).
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Upload {
            key: String,
            upload_id: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct ListResult {
            #[serde(default)]
            upload: Vec<Upload>,
            #[serde(default)]
            is_truncated: bool,
            next_key_marker: Option<String>,
            next_upload_id_marker: Option<String>,
        }
        let enc = uri_encode;
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut q = format!("prefix={}&uploads=", enc(prefix));
            if let Some((k, u)) = &markers {
                q = format!(
                    "key-marker={}&prefix={}&upload-id-marker={}&uploads=",
                    enc(k),
                    enc(prefix),
                    enc(u)
                );
            }
            let (status, body) = self.request(http::Method::GET, &q, Bytes::new()).await?;
            if !status.is_success() {
                return Err(generic(format!(
                    "ListMultipartUploads: HTTP {status}: {}",
                    s3_error_code(&String::from_utf8_lossy(&body))
                )));
            }
            let r: ListResult = quick_xml::de::from_reader(body.as_ref())
                .map_err(|e| generic(format!("ListMultipartUploads: bad answer: {e}")))?;
            out.extend(r.upload.into_iter().map(|u| (u.key, u.upload_id)));
            match (r.is_truncated, r.next_key_marker, r.next_upload_id_marker) {
                (true, Some(k), Some(u)) => markers = Some((k, u)),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Percent-encodes a query value the way SigV4 canonicalizes it (RFC 3986 unreserved kept).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn s3_error_code(body: &str) -> String {
    let code = body
        .split_once("<Code>")
        .and_then(|(_, r)| r.split_once("</Code>"))
        .map(|(c, _)| c.to_string());
    code.unwrap_or_else(|| "no error code".into())
}

fn generic(msg: String) -> Error {
    Error::Store(object_store::Error::Generic {
        store: "S3",
        source: msg.into(),
    })
}

/// A repository on object storage (see the module docs).
pub struct CloudStore {
    url: CloudUrl,
    /// `S3`, `GCS` or `Azure`, for messages.
    label: &'static str,
    location: String,
    /// Shared read/list/delete code over the prefixed store.
    backend: ObjectStoreBackend,
    s3: Option<S3Extra>,
    multipart_threshold: u64,
    part_size: u64,
    verify_etag: bool,
    conditional_create: tokio::sync::OnceCell<bool>,
    /// How long a failed write is tried again (see [`CloudStore::write_retrying`]).
    retry_timeout: Duration,
}

impl std::fmt::Debug for CloudStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl CloudStore {
    /// Opens the store for `url` (no network access yet).
    ///
    /// Errors: [`Error::InvalidInput`] for bad settings (see [`S3Settings::resolve_with`]),
    /// [`Error::Store`] when `object_store` rejects the configuration (e.g. Azure without an
    /// account name).
    pub fn open(url: &CloudUrl, opts: &CloudOptions) -> Result<CloudStore> {
        let location = url.display();
        let ctx = |e: object_store::Error| {
            generic(format!("repository {location}: invalid configuration: {e}"))
        };
        let (inner, s3, threshold, part, verify): (Arc<dyn ObjectStore>, _, _, _, _) =
            match url.provider {
                Provider::S3 => {
                    let settings = S3Settings::resolve(opts)?;
                    let s3 = Arc::new(settings.builder(&url.bucket).build().map_err(ctx)?);
                    let http = reqwest::Client::builder()
                        .timeout(settings.request_timeout)
                        .connect_timeout(Duration::from_secs(10))
                        .build()
                        .map_err(|e| generic(format!("HTTP client: {e}")))?;
                    let extra = S3Extra {
                        bucket_url: settings.bucket_url(&url.bucket),
                        s3: s3.clone(),
                        http,
                        settings: settings.clone(),
                    };
                    (
                        prefixed(s3, &url.prefix),
                        Some(extra),
                        settings.multipart_threshold,
                        settings.part_size,
                        settings.verify_etag,
                    )
                }
                Provider::Gcs => {
                    let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(&url.bucket)
                        .with_retry(RetryConfig::default())
                        .build()
                        .map_err(ctx)?;
                    (
                        prefixed(Arc::new(gcs), &url.prefix),
                        None,
                        opts.multipart_threshold.unwrap_or(DEFAULT_PART_SIZE),
                        opts.part_size.unwrap_or(DEFAULT_PART_SIZE),
                        false,
                    )
                }
                Provider::Azure => {
                    let az = object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_container_name(&url.bucket)
                        .with_retry(RetryConfig::default())
                        .build()
                        .map_err(ctx)?;
                    (
                        prefixed(Arc::new(az), &url.prefix),
                        None,
                        opts.multipart_threshold.unwrap_or(DEFAULT_PART_SIZE),
                        opts.part_size.unwrap_or(DEFAULT_PART_SIZE),
                        false,
                    )
                }
            };
        let retry_timeout = s3
            .as_ref()
            .map_or(Duration::from_secs(180), |s| s.settings.retry_timeout);
        let cc = tokio::sync::OnceCell::new();
        if let Some(v) = s3.as_ref().and_then(|s| s.settings.conditional_create) {
            let _ = cc.set(v);
        } else if s3.is_none() {
            // GCS and Azure implement PutMode::Create natively (generation / If-None-Match).
            let _ = cc.set(true);
        }
        Ok(CloudStore {
            url: url.clone(),
            label: match url.provider {
                Provider::S3 => "S3",
                Provider::Gcs => "GCS",
                Provider::Azure => "Azure",
            },
            backend: ObjectStoreBackend::new(inner, location.clone()),
            location,
            s3,
            multipart_threshold: threshold,
            part_size: part,
            verify_etag: verify,
            conditional_create: cc,
            retry_timeout,
        })
    }

    /// Whether create-only writes use `If-None-Match: *` (probed on first use).
    pub async fn conditional_create(&self) -> Result<bool> {
        self.conditional_create
            .get_or_try_init(|| self.probe_conditional_create())
            .await
            .copied()
    }

    async fn probe_conditional_create(&self) -> Result<bool> {
        let path = ObjPath::from(format!(
            "conditional-put-probe-{}",
            crate::repository::crypto::random_id()
        ));
        let store = self.backend.object_store();
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let first = store
            .put_opts(&path, PutPayload::from_static(b"1"), create())
            .await;
        let second = match first {
            Ok(_) => Some(
                store
                    .put_opts(&path, PutPayload::from_static(b"2"), create())
                    .await,
            ),
            Err(_) => None,
        };
        let _ = store.delete(&path).await;
        let supported = match (first, second) {
            (Ok(_), Some(Err(object_store::Error::AlreadyExists { .. }))) => true,
            // The server ignored the header (second write replaced the first), or rejects it.
            (Ok(_), Some(Ok(_))) => false,
            (Ok(_), None) => false,
            (Ok(_), Some(Err(e))) | (Err(e), _) => {
                if matches!(
                    e,
                    object_store::Error::NotImplemented { .. }
                        | object_store::Error::NotSupported { .. }
                ) || e.to_string().contains("501")
                    || e.to_string().contains("400")
                {
                    false
                } else {
                    return Err(self.ctx(e));
                }
            }
        };
        tracing::info!(
            "{}: conditional create with If-None-Match {}",
            self.location,
            if supported {
                "supported"
            } else {
                "not supported: using HEAD-then-PUT"
            }
        );
        Ok(supported)
    }

    /// Adds the repository to an error, keeping the kinds callers match on. A missing bucket
    /// means there is no repository (`init` creates the bucket).
    fn ctx(&self, e: object_store::Error) -> Error {
        if e.to_string().contains("<Code>NoSuchBucket</Code>") {
            return Error::RepositoryNotFound {
                repo: self.location.clone(),
            };
        }
        match e {
            e @ (object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }) => Error::Store(e),
            e => {
                // Generic errors already say "Generic S3 error": do not say it twice.
                let inner = match &e {
                    object_store::Error::Generic { source, .. } => source.to_string(),
                    e => e.to_string(),
                };
                Error::Store(object_store::Error::Generic {
                    store: self.label,
                    source: format!("repository {}: {inner}", self.location).into(),
                })
            }
        }
    }

    fn ctx_err(&self, e: Error) -> Error {
        match e {
            Error::Store(e) => self.ctx(e),
            e => e,
        }
    }

    /// [`CloudStore::write`], tried again after transport failures that `object_store` does
    /// not retry itself: a PUT whose connection broke after the body was sent (it cannot know
    /// whether the object was stored) and multipart uploads that failed half-way. A retried
    /// create-only PUT that finds the object is reported as existing; every object written
    /// that way is named by its content (packs, index, snapshots) or random (locks), so that
    /// is the object we sent. Errors with an HTTP status (403, 404, …) are not retried.
    async fn write_retrying(&self, path: &str, data: Bytes, mode: PutMode) -> Result<PutResult> {
        let start = std::time::Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            match self.write(path, data.clone(), mode.clone()).await {
                Err(Error::Store(e @ object_store::Error::Generic { .. }))
                    if !e.to_string().contains("status code")
                        && start.elapsed() + wait < self.retry_timeout =>
                {
                    tracing::warn!(
                        "{}: writing {path} failed ({e}); trying again in {wait:?}",
                        self.location
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(15));
                }
                r => return r,
            }
        }
    }

    /// Writes `data` (single PUT or multipart) and verifies what the server stored.
    async fn write(&self, path: &str, data: Bytes, mode: PutMode) -> Result<PutResult> {
        let store = self.backend.object_store();
        let p = ObjPath::from(path);
        let multipart = data.len() as u64 >= self.multipart_threshold;
        let (result, expected_etag) = if multipart {
            self.write_multipart(store, &p, &data).await?
        } else {
            let md5 = hex::encode(Md5::digest(&data));
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            let r = store
                .put_opts(&p, PutPayload::from(data.clone()), opts)
                .await
                .map_err(|e| self.ctx(e))?;
            (r, md5)
        };
        self.verify(
            store,
            &p,
            &result,
            &expected_etag,
            data.len() as u64,
            multipart,
        )
        .await?;
        Ok(result)
    }

    async fn write_multipart(
        &self,
        store: &Arc<dyn ObjectStore>,
        p: &ObjPath,
        data: &Bytes,
    ) -> Result<(PutResult, String)> {
        let mut upload = store.put_multipart(p).await.map_err(|e| self.ctx(e))?;
        let mut md5s = Vec::new();
        let mut parts = Vec::new();
        let mut off = 0usize;
        while off < data.len() {
            let end = (off + self.part_size as usize).min(data.len());
            let part = data.slice(off..end);
            md5s.extend_from_slice(&Md5::digest(&part));
            parts.push(upload.put_part(PutPayload::from(part)));
            off = end;
        }
        let n = parts.len();
        let sent: std::result::Result<Vec<()>, _> = futures::stream::iter(parts)
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await;
        let done = match sent {
            Ok(_) => upload.complete().await,
            Err(e) => Err(e),
        };
        match done {
            Ok(r) => Ok((r, format!("{}-{n}", hex::encode(Md5::digest(&md5s))))),
            Err(e) => {
                if let Err(a) = upload.abort().await {
                    tracing::warn!("{}: could not abort the multipart upload of {p}: {a} (prune aborts it later)", self.location);
                }
                Err(self.ctx(e))
            }
        }
    }

    async fn verify(
        &self,
        store: &Arc<dyn ObjectStore>,
        p: &ObjPath,
        r: &PutResult,
        expected_etag: &str,
        size: u64,
        multipart: bool,
    ) -> Result<()> {
        let etag = r
            .e_tag
            .as_deref()
            .map(|e| e.trim_matches('"').to_ascii_lowercase());
        let md5_like = etag.as_deref().is_some_and(|e| {
            let (h, n) = e.split_once('-').unwrap_or((e, "1"));
            h.len() == 32
                && h.bytes().all(|b| b.is_ascii_hexdigit())
                && n.bytes().all(|b| b.is_ascii_digit())
        });
        let fail = |why: String| {
            let store = store.clone();
            let p = p.clone();
            async move {
                // Never leave an object that does not hold what we meant to write.
                let _ = store.delete(&p).await;
                Err(Error::Store(object_store::Error::Generic {
                    store: self.label,
                    source: format!(
                        "repository {}: upload of {p} failed verification: {why}; the object was deleted",
                        self.location
                    )
                    .into(),
                }))
            }
        };
        if self.verify_etag && md5_like {
            let etag = etag.unwrap_or_default();
            if etag != expected_etag {
                return fail(format!(
                    "the server's ETag {etag} is not the MD5 {expected_etag} of the data sent"
                ))
                .await;
            }
            if !multipart {
                return Ok(());
            }
        }
        let m = store.head(p).await.map_err(|e| self.ctx(e))?;
        if m.size != size {
            return fail(format!("stored {} bytes instead of {size}", m.size)).await;
        }
        Ok(())
    }
}

fn prefixed(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

#[async_trait]
impl Store for CloudStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.backend.get(path).await.map_err(|e| self.ctx_err(e))
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.backend
            .get_range(path, range)
            .await
            .map_err(|e| self.ctx_err(e))
    }

    async fn put_new(&self, path: &str, data: Bytes) -> Result<bool> {
        let multipart = data.len() as u64 >= self.multipart_threshold;
        if multipart || !self.conditional_create().await? {
            if self.head(path).await?.is_some() {
                return Ok(false);
            }
            self.write_retrying(path, data, PutMode::Overwrite).await?;
            return Ok(true);
        }
        match self.write_retrying(path, data, PutMode::Create).await {
            Ok(_) => Ok(true),
            Err(Error::Store(object_store::Error::AlreadyExists { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put_overwrite(&self, path: &str, data: Bytes) -> Result<()> {
        self.write_retrying(path, data, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.backend.list(prefix).await.map_err(|e| self.ctx_err(e))
    }

    async fn head(&self, path: &str) -> Result<Option<ObjectInfo>> {
        self.backend.head(path).await.map_err(|e| self.ctx_err(e))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.backend.delete(path).await.map_err(|e| self.ctx_err(e))
    }

    async fn create_location(&self) -> Result<()> {
        if let Some(s3) = &self.s3 {
            s3.create_bucket(&self.url.bucket)
                .await
                .map_err(|e| self.ctx_err(e))?;
        }
        Ok(())
    }

    /// Aborts every unfinished multipart upload under the repository's prefix (S3). Called
    /// under the exclusive lock, so none of them belongs to a live writer.
    async fn remove_partial_uploads(&self) -> Result<usize> {
        let Some(s3) = &self.s3 else {
            return Ok(0);
        };
        let prefix = if self.url.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.url.prefix)
        };
        let uploads = s3
            .list_uploads(&prefix)
            .await
            .map_err(|e| self.ctx_err(e))?;
        let mut aborted = 0;
        for (key, id) in uploads {
            match s3
                .s3
                .abort_multipart(&ObjPath::from(key.as_str()), &id)
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => aborted += 1,
                Err(e) => return Err(self.ctx(e)),
            }
        }
        Ok(aborted)
    }
}

/// Unit tests of URL and settings parsing; the transfers are tested against a real S3 server
/// in `tests/`.
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn parses_urls() {
        let u = CloudUrl::parse("s3://my-bucket/a/b/").unwrap().unwrap();
        assert_eq!(u.provider, Provider::S3);
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("my-bucket", "a/b"));
        assert_eq!(u.display(), "s3://my-bucket/a/b");
        let u = CloudUrl::parse("gs://bkt").unwrap().unwrap();
        assert_eq!((u.provider, u.prefix.as_str()), (Provider::Gcs, ""));
        assert_eq!(u.display(), "gs://bkt");
        let u = CloudUrl::parse("azure://cont/x").unwrap().unwrap();
        assert_eq!(u.provider, Provider::Azure);
        assert_eq!(u.display(), "az://cont/x");
        assert!(CloudUrl::parse("/srv/backups").unwrap().is_none());
        assert!(CloudUrl::parse("ftp://x/y").unwrap().is_none());
        for bad in [
            "s3://",
            "s3:///p",
            "s3://B/x",
            "s3://ab",
            "s3://b-/x",
            "s3://bkt/a//b",
            "s3://bkt/a/../b",
        ] {
            assert!(CloudUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn env_overrides_config_and_http_needs_consent() {
        let cfg = CloudOptions {
            endpoint: Some("http://cfg:9000".into()),
            region: Some("eu-west-1".into()),
            access_key_id: Some("cfgkey".into()),
            secret_access_key: Some(Secret::new("cfgsecret")),
            allow_http: Some(true),
            ..Default::default()
        };
        let s = S3Settings::resolve_with(&cfg, &env(&[])).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://cfg:9000"));
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.access_key_id.as_deref(), Some("cfgkey"));
        assert_eq!(s.bucket_url("b"), "http://cfg:9000/b");

        let s = S3Settings::resolve_with(
            &cfg,
            &env(&[
                ("AWS_ENDPOINT_URL", "https://s3.example/"),
                ("AWS_REGION", "us-west-2"),
                ("AWS_ACCESS_KEY_ID", "envkey"),
                ("AWS_SECRET_ACCESS_KEY", "envsecret"),
                ("MINIO_ACCESS_KEY", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("https://s3.example"));
        assert_eq!(s.region, "us-west-2");
        assert_eq!(s.access_key_id.as_deref(), Some("envkey"));
        assert_eq!(s.secret_access_key.as_ref().unwrap().expose(), "envsecret");

        // MinIO variables; an endpoint without scheme means https.
        let s = S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[
                ("MINIO_ENDPOINT", "minio.local:9000"),
                ("MINIO_ACCESS_KEY", "mk"),
                ("MINIO_SECRET_KEY", "ms"),
            ]),
        )
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("https://minio.local:9000"));
        assert_eq!(s.access_key_id.as_deref(), Some("mk"));
        assert_eq!(s.region, "us-east-1");
        assert!(!s.allow_http);

        // Plain http is refused unless allowed, and the env can withdraw the config's consent.
        let e = S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:7480")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("AWS_ALLOW_HTTP"), "{e}");
        assert!(S3Settings::resolve_with(&cfg, &env(&[("AWS_ALLOW_HTTP", "false")])).is_err());
        let s = S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:7480"),
                ("AWS_ALLOW_HTTP", "true"),
            ]),
        )
        .unwrap();
        assert!(s.allow_http);
        assert!(S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[("AWS_ALLOW_HTTP", "maybe")])
        )
        .is_err());
    }

    #[test]
    fn aws_default_and_virtual_hosted_urls() {
        let s = S3Settings::resolve_with(
            &CloudOptions {
                virtual_hosted_style: Some(true),
                ..Default::default()
            },
            &env(&[("AWS_REGION", "eu-central-1")]),
        )
        .unwrap();
        assert_eq!(s.endpoint, None);
        assert_eq!(
            s.bucket_url("bkt"),
            "https://bkt.s3.eu-central-1.amazonaws.com"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[
                ("AWS_SECRET_ACCESS_KEY", "TOPSECRETVALUE"),
                ("AWS_SESSION_TOKEN", "TOKENVALUE"),
            ]),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("TOPSECRETVALUE") && !dbg.contains("TOKENVALUE"),
            "{dbg}"
        );
        let cfg: CloudOptions =
            serde_yaml_ng::from_str("secret_access_key: TOPSECRETVALUE\nregion: x\n").unwrap();
        assert!(!format!("{cfg:?}").contains("TOPSECRETVALUE"));
        let store = CloudStore::open(
            &CloudUrl::parse("s3://bkt/p").unwrap().unwrap(),
            &CloudOptions {
                access_key_id: Some("AK".into()),
                secret_access_key: Some(Secret::new("TOPSECRETVALUE")),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!format!("{store:?}").contains("TOPSECRETVALUE"));
        assert_eq!(store.location(), "s3://bkt/p");
    }

    #[test]
    fn bad_numbers_and_part_sizes_are_rejected() {
        assert!(S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[("DBM_STORE_MAX_RETRIES", "lots")])
        )
        .is_err());
        assert!(S3Settings::resolve_with(
            &CloudOptions {
                part_size: Some(1 << 20),
                ..Default::default()
            },
            &env(&[])
        )
        .is_err());
        let s = S3Settings::resolve_with(
            &CloudOptions::default(),
            &env(&[("DBM_STORE_RETRY_TIMEOUT", "7")]),
        )
        .unwrap();
        assert_eq!(s.retry_timeout, Duration::from_secs(7));
        assert_eq!(s.multipart_threshold, DEFAULT_PART_SIZE);
    }

    #[test]
    fn gcs_and_azure_build_from_urls() {
        // Building touches no network; credentials are looked up on first request.
        let g = CloudStore::open(
            &CloudUrl::parse("gs://bkt/pre/fix").unwrap().unwrap(),
            &CloudOptions::default(),
        )
        .unwrap();
        assert_eq!(g.location(), "gs://bkt/pre/fix");
        // Azure needs an account name (AZURE_STORAGE_ACCOUNT_NAME); without one the error
        // names the repository.
        let a = CloudStore::open(
            &CloudUrl::parse("az://cont/x").unwrap().unwrap(),
            &CloudOptions::default(),
        );
        match a {
            Ok(s) => assert_eq!(s.location(), "az://cont/x"),
            Err(e) => assert!(e.to_string().contains("az://cont/x"), "{e}"),
        }
    }
}
