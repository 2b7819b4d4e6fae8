//! Restore of a `minio` snapshot into a bucket: the same one, another one (created if
//! missing), or a bucket on another server.
//!
//! Order per bucket: create the bucket if missing; `PutBucketVersioning` (so restored objects
//! get versions as the source had); every object, streamed from the repository — one
//! `PutObject` up to [`BucketRestoreOptions::part_size`], else a multipart upload
//! (`CreateMultipartUpload`, `UploadPart`…, `CompleteMultipartUpload`) with the object's
//! headers and tags (`x-amz-tagging`) on the create call; then `PutBucketPolicy`,
//! `PutBucketLifecycleConfiguration`, `PutBucketCors` and `PutBucketTagging`, last so a policy
//! or lifecycle rule cannot interfere with the upload. Objects already in the destination
//! bucket with other keys are left alone; objects with the same keys are replaced.
//!
//! A key that cannot be written (refused by the server, not UTF-8, too long, or with a `.`/`..`
//! segment HTTP cannot address) is listed in [`BucketRestoreReport::errors`] by name and the
//! restore goes on with the others; the caller turns a non-empty list into a failure.
//! Memory: one part buffer per upload in flight (`concurrency × part_size`).

use std::io::Read;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use md5::Digest as _;
use reqwest::Method;
use serde::Serialize;

use super::{names, BucketSpec, BUCKET_CONFIG, CONFIG_DIR, OBJECTS_DIR};
use crate::engine::browse::NodeReader;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::id::Id;
use crate::repository::snapshot::{PathError, Snapshot};
use crate::repository::tree::{escape_bytes, Node, NodeKind};
use crate::repository::Repository;
use crate::s3::{S3Client, S3Request, S3Settings};

/// Largest configuration document read back from a snapshot (S3's own limits are far lower:
/// a policy is at most 20 KiB).
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// S3's limit on a key's length in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Where and how to restore a `minio` snapshot.
#[derive(Debug, Clone)]
pub struct BucketRestoreOptions {
    /// Destination: `bucket: None` restores each bucket under its own name; a bucket name
    /// restores the snapshot's only bucket (or the one chosen in `buckets`) there. The prefix
    /// is prepended to every restored key (default empty: keys as they were).
    pub destination: BucketSpec,
    /// The destination server (default: the same variables as the backup, see [`S3Settings`]).
    pub settings: S3Settings,
    /// Buckets of the snapshot to restore; empty = all.
    pub buckets: Vec<String>,
    /// Objects uploaded at once. Default 4.
    pub concurrency: usize,
    /// Objects up to this size (bytes) go in one `PutObject`; larger ones are uploaded in
    /// parts of this size. Default 8 MiB (S3 needs at least 5 MiB per part).
    pub part_size: usize,
}

impl BucketRestoreOptions {
    /// Options with every default.
    pub fn new(destination: BucketSpec, settings: S3Settings) -> Self {
        BucketRestoreOptions {
            destination,
            settings,
            buckets: Vec::new(),
            concurrency: 4,
            part_size: 8 << 20,
        }
    }
}

/// What a bucket restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BucketRestoreReport {
    /// Destination buckets written, as `<endpoint>/<bucket>`.
    pub buckets: Vec<String>,
    /// Objects written.
    pub objects: u64,
    /// Body bytes written.
    pub bytes: u64,
    /// Configuration documents applied (`bucket/policy.json`, ...).
    pub configs: Vec<String>,
    /// Keys and documents that could not be restored, with the reason.
    pub errors: Vec<PathError>,
}

/// Restores the buckets of `snap` (a `minio` snapshot) as `opts` says.
///
/// Errors: [`Error::InvalidInput`] for a snapshot of another kind, an unknown bucket in
/// `opts.buckets`, or several buckets into one destination bucket; [`Error::S3`] when the
/// destination bucket cannot be created. Per-object failures are in the report instead.
pub async fn restore_buckets(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    opts: &BucketRestoreOptions,
    progress: &dyn Progress,
) -> Result<BucketRestoreReport> {
    if snap.target_kind != "minio" {
        return Err(Error::InvalidInput(format!(
            "snapshot {} is a {} backup, not a minio one: restore it to a directory",
            snap.id.short(),
            snap.target_kind
        )));
    }
    let root = repo.load_tree(&snap.tree).await?;
    let mut buckets: Vec<Node> = root
        .nodes
        .into_iter()
        .filter(|n| n.kind == NodeKind::Dir)
        .collect();
    let names: Vec<String> = buckets
        .iter()
        .map(|b| b.name.lossy().into_owned())
        .collect();
    for want in &opts.buckets {
        if !names.contains(want) {
            return Err(Error::InvalidInput(format!(
                "bucket {want} is not in snapshot {} (it holds {})",
                snap.id.short(),
                names.join(", ")
            )));
        }
    }
    if !opts.buckets.is_empty() {
        buckets.retain(|b| opts.buckets.iter().any(|w| w.as_bytes() == b.name.0));
    }
    if opts.destination.bucket.is_some() && buckets.len() > 1 {
        return Err(Error::InvalidInput(format!(
            "snapshot {} holds {} buckets ({}); restore one into {} with --include /<bucket>, or give minio: to restore each under its own name",
            snap.id.short(),
            buckets.len(),
            names.join(", "),
            opts.destination
        )));
    }
    let client = Arc::new(S3Client::new(opts.settings.clone())?);
    let mut report = BucketRestoreReport::default();
    for b in buckets {
        let src = b.name.lossy().into_owned();
        let dest = opts
            .destination
            .bucket
            .clone()
            .unwrap_or_else(|| src.clone());
        progress.phase(&format!("restoring bucket {dest}"));
        restore_bucket(repo, &client, &b, &dest, opts, progress, &mut report).await?;
        report.buckets.push(format!("{}/{dest}", client.endpoint()));
    }
    Ok(report)
}

async fn restore_bucket(
    repo: &Arc<Repository>,
    client: &Arc<S3Client>,
    bucket_node: &Node,
    dest: &str,
    opts: &BucketRestoreOptions,
    progress: &dyn Progress,
    report: &mut BucketRestoreReport,
) -> Result<()> {
    let src = bucket_node.name.lossy().into_owned();
    let sub = bucket_node
        .subtree
        .ok_or_else(|| Error::corrupt(format!("bucket {src}"), "directory without a tree"))?;
    let tree = repo.load_tree(&sub).await?;
    let find = |name: &str| {
        tree.nodes
            .iter()
            .find(|n| n.name.0 == name.as_bytes() && n.kind == NodeKind::Dir)
            .and_then(|n| n.subtree)
    };
    let (config, objects) = (find(CONFIG_DIR), find(OBJECTS_DIR));

    if !client.bucket_exists(dest).await? {
        client.create_bucket(dest).await?;
    }

    let mut docs: Vec<(&'static str, &'static str, Vec<u8>)> = Vec::new();
    if let Some(id) = config {
        let ct = repo.load_tree(&id).await?;
        for (sub, file) in BUCKET_CONFIG {
            if let Some(n) = ct.nodes.iter().find(|n| n.name.0 == file.as_bytes()) {
                let (r, h, n) = (repo.clone(), tokio::runtime::Handle::current(), n.clone());
                let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
                    let mut buf = Vec::new();
                    NodeReader::new(r, h, &n)
                        .take(MAX_CONFIG_BYTES)
                        .read_to_end(&mut buf)
                        .map_err(|e| Error::io(format!("/{CONFIG_DIR}"), e))?;
                    Ok(buf)
                })
                .await
                .map_err(|e| Error::InvalidInput(format!("reader task failed: {e}")))?;
                match read {
                    Ok(doc) => docs.push((sub, file, doc)),
                    Err(e) => report.errors.push(PathError {
                        path: format!("{dest}/{CONFIG_DIR}/{file}"),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
    // Versioning first: objects restored into a versioned bucket get versions.
    for (sub, file, doc) in docs.iter().filter(|d| d.0 == "versioning") {
        apply_config(client, &src, dest, sub, file, doc, report).await;
    }

    if let Some(id) = objects {
        restore_objects(repo, client, id, dest, opts, progress, report).await?;
    }

    for (sub, file, doc) in docs.iter().filter(|d| d.0 != "versioning") {
        apply_config(client, &src, dest, sub, file, doc, report).await;
    }
    Ok(())
}

async fn apply_config(
    client: &S3Client,
    src: &str,
    bucket: &str,
    sub: &str,
    file: &str,
    doc: &[u8],
    report: &mut BucketRestoreReport,
) {
    let body = if sub == "versioning" {
        // Only the status: `MfaDelete` would need an MFA token header.
        let status = if String::from_utf8_lossy(doc).contains("<Status>Suspended</Status>") {
            "Suspended"
        } else {
            "Enabled"
        };
        format!("<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{status}</Status></VersioningConfiguration>").into_bytes()
    } else if sub == "policy" && src != bucket {
        // The policy names its own bucket in resource ARNs; they follow the bucket.
        String::from_utf8_lossy(doc)
            .replace(
                &format!("arn:aws:s3:::{src}/"),
                &format!("arn:aws:s3:::{bucket}/"),
            )
            .replace(
                &format!("arn:aws:s3:::{src}\""),
                &format!("arn:aws:s3:::{bucket}\""),
            )
            .into_bytes()
    } else {
        doc.to_vec()
    };
    let md5 = crate::repository::crypto::b64(&md5::Md5::digest(&body));
    let req = S3Request::new(Method::PUT, Some(bucket), None)
        .query(sub, "")
        .header("content-md5", md5)
        .body(body);
    match client.call(&req).await {
        Ok(_) => report.configs.push(format!("{bucket}/{file}")),
        Err(e) => report.errors.push(PathError {
            path: format!("{bucket} ({file})"),
            message: e.to_string(),
        }),
    }
}

/// Walks the `objects/` tree depth first and uploads every file node, `concurrency` at once.
async fn restore_objects(
    repo: &Arc<Repository>,
    client: &Arc<S3Client>,
    root: Id,
    dest: &str,
    opts: &BucketRestoreOptions,
    progress: &dyn Progress,
    report: &mut BucketRestoreReport,
) -> Result<()> {
    let prefix = opts.destination.prefix.as_bytes().to_vec();
    // Stack of (key prefix of this level, its remaining nodes, reversed).
    let first = repo.load_tree(&root).await?;
    let mut stack: Vec<(Vec<u8>, Vec<Node>)> =
        vec![(prefix, first.nodes.into_iter().rev().collect())];
    let mut running = FuturesUnordered::new();
    let concurrency = opts.concurrency.max(1);
    loop {
        // Next node in key order.
        let next = loop {
            match stack.last_mut() {
                None => break None,
                Some((base, nodes)) => match nodes.pop() {
                    Some(n) => break Some((base.clone(), n)),
                    None => {
                        stack.pop();
                    }
                },
            }
        };
        let Some((base, node)) = next else { break };
        let Some(piece) = names::unescape_name(&node.name.0) else {
            report.errors.push(PathError {
                path: format!(
                    "{dest}/{}{}",
                    escape_bytes(&base),
                    escape_bytes(&node.name.0)
                ),
                message: "not an object name written by the minio target".into(),
            });
            continue;
        };
        let mut key = base;
        key.extend_from_slice(&piece);
        match node.kind {
            NodeKind::Dir => {
                let sub = node.subtree.ok_or_else(|| {
                    Error::corrupt(
                        format!("{dest}/{}", escape_bytes(&key)),
                        "directory without a tree",
                    )
                })?;
                let t = repo.load_tree(&sub).await?;
                stack.push((key, t.nodes.into_iter().rev().collect()));
            }
            NodeKind::File => {
                if running.len() >= concurrency {
                    if let Some(done) = running.next().await {
                        account(done, report, progress);
                    }
                }
                let (repo, client) = (repo.clone(), client.clone());
                let (dest, part) = (dest.to_string(), opts.part_size.max(5 << 20));
                let rt = tokio::runtime::Handle::current();
                let shown = format!("{dest}/{}", escape_bytes(&key));
                running.push(async move {
                    let task = tokio::task::spawn_blocking(move || {
                        upload(&rt, &repo, &client, &dest, key, &node, part)
                    });
                    let r = match task.await {
                        Ok(r) => r,
                        Err(e) => Err(Error::InvalidInput(format!("upload task failed: {e}"))),
                    };
                    (shown, r)
                });
            }
            _ => report.errors.push(PathError {
                path: format!("{dest}/{}", escape_bytes(&key)),
                message: format!("a {:?} node is not an object", node.kind),
            }),
        }
    }
    while let Some(done) = running.next().await {
        account(done, report, progress);
    }
    Ok(())
}

fn account(done: (String, Result<u64>), report: &mut BucketRestoreReport, progress: &dyn Progress) {
    match done {
        (_, Ok(bytes)) => {
            report.objects += 1;
            report.bytes += bytes;
            progress.add_item();
            progress.add_bytes(bytes);
        }
        (path, Err(e)) => report.errors.push(PathError {
            path,
            message: e.to_string(),
        }),
    }
}

/// Reads up to `buf.capacity()` bytes (fewer only at the end of the stream).
fn fill(r: &mut impl Read, buf: &mut Vec<u8>, limit: usize, key: &str) -> Result<()> {
    buf.clear();
    r.by_ref()
        .take(limit as u64)
        .read_to_end(buf)
        .map_err(|e| Error::S3 {
            resource: key.to_string(),
            status: 0,
            code: "RepositoryReadFailed".into(),
            message: e.to_string(),
        })?;
    Ok(())
}

/// Uploads one object (on a blocking thread); returns the bytes written.
fn upload(
    rt: &tokio::runtime::Handle,
    repo: &Arc<Repository>,
    client: &S3Client,
    bucket: &str,
    key: Vec<u8>,
    node: &Node,
    part_size: usize,
) -> Result<u64> {
    let shown = format!("{bucket}/{}", escape_bytes(&key));
    let key = String::from_utf8(key).map_err(|_| Error::S3 {
        resource: shown.clone(),
        status: 0,
        code: "InvalidKey".into(),
        message: "S3 keys are UTF-8; this one is not".into(),
    })?;
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::S3 {
            resource: shown,
            status: 0,
            code: "KeyTooLong".into(),
            message: format!("{} bytes; S3 allows {MAX_KEY_BYTES}", key.len()),
        });
    }
    let headers: Vec<(String, String)> = node
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut reader = NodeReader::new(repo.clone(), rt.clone(), node);
    let mut buf = Vec::with_capacity(part_size.min(node.size as usize + 1));
    fill(&mut reader, &mut buf, part_size, &shown)?;
    if buf.len() < part_size {
        let written = buf.len() as u64;
        check_size(&shown, written, node.size)?;
        let mut req = S3Request::new(Method::PUT, Some(bucket), Some(&key)).body(buf);
        req.headers = headers;
        rt.block_on(client.call(&req))?;
        return Ok(written);
    }
    // Tags are set after completion with PutObjectTagging: not every server honours
    // `x-amz-tagging` on CreateMultipartUpload.
    let (tagging, headers): (Vec<_>, Vec<_>) = headers
        .into_iter()
        .partition(|(k, _)| k == super::TAGGING_META);
    let mut create = S3Request::new(Method::POST, Some(bucket), Some(&key)).query("uploads", "");
    create.headers = headers;
    let body = rt.block_on(client.call_bytes(&create))?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Initiated {
        upload_id: String,
    }
    let upload_id = crate::s3::parse_xml::<Initiated>("CreateMultipartUpload", &body)?.upload_id;
    let parts = (|| -> Result<(Vec<String>, u64)> {
        let mut etags = Vec::new();
        let mut written = 0u64;
        loop {
            let n = etags.len() + 1;
            let len = buf.len() as u64;
            let req = S3Request::new(Method::PUT, Some(bucket), Some(&key))
                .query("partNumber", n.to_string())
                .query("uploadId", upload_id.clone())
                .body(std::mem::take(&mut buf));
            let resp = rt.block_on(client.call(&req))?;
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            etags.push(etag);
            written += len;
            buf = Vec::with_capacity(part_size);
            fill(&mut reader, &mut buf, part_size, &shown)?;
            if buf.is_empty() {
                break;
            }
        }
        check_size(&shown, written, node.size)?;
        Ok((etags, written))
    })();
    let (etags, written) = match parts {
        Ok(p) => p,
        Err(e) => {
            abort(rt, client, bucket, &key, &upload_id);
            return Err(e);
        }
    };
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, e) in etags.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            crate::s3::xml_escape(e)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let req = S3Request::new(Method::POST, Some(bucket), Some(&key))
        .query("uploadId", upload_id.clone())
        .body(xml);
    let done = rt.block_on(client.call_bytes(&req));
    // CompleteMultipartUpload can fail with status 200 and an Error document.
    let failed = match &done {
        Ok(b) => String::from_utf8_lossy(b).contains("<Error>"),
        Err(_) => true,
    };
    if failed {
        abort(rt, client, bucket, &key, &upload_id);
        return Err(match done {
            Err(e) => e,
            Ok(b) => Error::S3 {
                resource: shown,
                status: 200,
                code: "CompleteMultipartUploadFailed".into(),
                message: String::from_utf8_lossy(&b).chars().take(300).collect(),
            },
        });
    }
    if let Some((_, form)) = tagging.first() {
        let body = tagging_xml(form);
        let md5 = crate::repository::crypto::b64(&md5::Md5::digest(body.as_bytes()));
        let req = S3Request::new(Method::PUT, Some(bucket), Some(&key))
            .query("tagging", "")
            .header("content-md5", md5)
            .body(body);
        rt.block_on(client.call(&req))?;
    }
    Ok(written)
}

/// A `Tagging` document from the `x-amz-tagging` form (`k=v&k2=v2`, URL-encoded).
fn tagging_xml(form: &str) -> String {
    let mut xml = String::from("<Tagging><TagSet>");
    for pair in form.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| String::from_utf8_lossy(&crate::s3::decode_form(s)).into_owned();
        xml.push_str(&format!(
            "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
            crate::s3::xml_escape(&dec(k)),
            crate::s3::xml_escape(&dec(v))
        ));
    }
    xml.push_str("</TagSet></Tagging>");
    xml
}

fn check_size(shown: &str, written: u64, want: u64) -> Result<()> {
    if written != want {
        return Err(Error::S3 {
            resource: shown.to_string(),
            status: 0,
            code: "SizeMismatch".into(),
            message: format!("read {written} bytes from the snapshot, the node says {want}"),
        });
    }
    Ok(())
}

fn abort(rt: &tokio::runtime::Handle, client: &S3Client, bucket: &str, key: &str, upload_id: &str) {
    let req = S3Request::new(Method::DELETE, Some(bucket), Some(key))
        .query("uploadId", upload_id.to_string());
    if let Err(e) = rt.block_on(client.call(&req)) {
        tracing::warn!(
            "could not abort the multipart upload of {bucket}/{}: {e}",
            escape_bytes(key.as_bytes())
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tagging_form_becomes_a_document() {
        assert_eq!(
            super::tagging_xml("a%20b=c%26d&e="),
            "<Tagging><TagSet><Tag><Key>a b</Key><Value>c&amp;d</Value></Tag><Tag><Key>e</Key><Value></Value></Tag></TagSet></Tagging>"
        );
    }
}
