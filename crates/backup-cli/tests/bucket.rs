//! The `minio` bucket target against the real S3 server (Ceph RADOS Gateway, started by
//! `scripts/s3-server.sh`): backup of a bucket with every awkward key shape, metadata, tags
//! and bucket configuration, restore into a new bucket, and comparison through the S3 API.
//!
//! The server's settings come from `/tmp/dbm-s3.env` (or `$DBM_S3_ENV`). Without a server the
//! tests FAIL when `CI` is set and are skipped (with a message) otherwise.

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use backup_core::s3::{decode_form, parse_tagging, Method, S3Client, S3Request, S3Settings};
use sha2::{Digest, Sha256};
use support::*;

/// The test server: its variables (for the CLI) and a client (for setup and checks).
struct Server {
    env: BTreeMap<String, String>,
    client: S3Client,
    rt: tokio::runtime::Runtime,
}

/// The server, or `None` (test skipped) when it is absent and `CI` is not set.
fn server() -> Option<Server> {
    let ci = std::env::var_os("CI").is_some();
    let unavailable = |why: String| -> Option<Server> {
        if ci {
            panic!("S3 test server unavailable (CI is set, so this fails): {why}");
        }
        eprintln!("skipping: S3 test server unavailable: {why} (start it with scripts/s3-server.sh start)");
        None
    };
    let path = std::env::var("DBM_S3_ENV").unwrap_or_else(|_| "/tmp/dbm-s3.env".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return unavailable(format!("{path}: {e}")),
    };
    let env: BTreeMap<String, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let settings = match S3Settings::from_lookup(|k| env.get(k).cloned()) {
        Ok(s) => s,
        Err(e) => return unavailable(format!("{path}: {e}")),
    };
    let client = S3Client::new(settings).expect("client");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = rt.block_on(client.list_buckets()) {
        return unavailable(format!("{}: {e}", client.endpoint()));
    }
    Some(Server { env, client, rt })
}

impl Server {
    fn call(&self, req: S3Request<'_>) -> Vec<u8> {
        let what = format!("{} {}", req.method, req.resource());
        self.rt
            .block_on(self.client.call_bytes(&req))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .to_vec()
    }

    fn bucket_name(&self, what: &str) -> String {
        format!("dbm-bucket-{what}-{}", Rng::unique().hex(4))
    }

    fn create_bucket(&self, b: &str) {
        self.rt
            .block_on(self.client.create_bucket(b))
            .expect("create bucket");
    }

    fn put(&self, b: &str, key: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut req = S3Request::new(Method::PUT, Some(b), Some(key)).body(body.to_vec());
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        self.call(req);
    }

    /// A multipart upload with parts of `part` bytes.
    fn put_multipart(&self, b: &str, key: &str, body: &[u8], part: usize) {
        let created =
            self.call(S3Request::new(Method::POST, Some(b), Some(key)).query("uploads", ""));
        let text = String::from_utf8(created).unwrap();
        let id = between(&text, "<UploadId>", "</UploadId>").to_string();
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, chunk) in body.chunks(part).enumerate() {
            let req = S3Request::new(Method::PUT, Some(b), Some(key))
                .query("partNumber", (i + 1).to_string())
                .query("uploadId", id.clone())
                .body(chunk.to_vec());
            let resp = self
                .rt
                .block_on(self.client.call(&req))
                .expect("upload part");
            let etag = resp.headers()["etag"].to_str().unwrap().to_string();
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                etag
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        self.call(
            S3Request::new(Method::POST, Some(b), Some(key))
                .query("uploadId", id)
                .body(xml),
        );
    }

    fn put_config(&self, b: &str, sub: &str, body: &str) {
        let md5 = base64_md5(body.as_bytes());
        self.call(
            S3Request::new(Method::PUT, Some(b), None)
                .query(sub, "")
                .header("content-md5", md5)
                .body(body.to_string()),
        );
    }

    fn get_config(&self, b: &str, sub: &str) -> String {
        String::from_utf8(self.call(S3Request::new(Method::GET, Some(b), None).query(sub, "")))
            .unwrap()
    }

    /// Every key of a bucket, in listing order.
    fn keys(&self, b: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .rt
                .block_on(self.client.list_page(b, "", None, token.as_deref()))
                .expect("list");
            out.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    }

    /// HeadObject: the headers a restore must reproduce.
    fn head(&self, b: &str, key: &str) -> BTreeMap<String, String> {
        let req = S3Request::new(Method::HEAD, Some(b), Some(key));
        let resp = self.rt.block_on(self.client.call(&req)).expect("head");
        resp.headers()
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                n.starts_with("x-amz-meta-")
                    || [
                        "content-type",
                        "content-length",
                        "cache-control",
                        "content-encoding",
                        "content-disposition",
                        "content-language",
                        "expires",
                    ]
                    .contains(&n)
            })
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    fn tags(&self, b: &str, key: &str) -> Vec<(String, String)> {
        let mut t = parse_tagging(
            &self.call(S3Request::new(Method::GET, Some(b), Some(key)).query("tagging", "")),
        )
        .unwrap();
        t.sort();
        t
    }

    fn sha256(&self, b: &str, key: &str) -> String {
        hex(&Sha256::digest(self.call(S3Request::new(
            Method::GET,
            Some(b),
            Some(key),
        ))))
    }

    /// Deletes a test bucket with every object version (best effort: the server's memory is
    /// shared by all tests).
    fn drop_bucket(&self, b: &str) {
        for _ in 0..20 {
            let req = S3Request::new(Method::GET, Some(b), None)
                .query("versions", "")
                .query("encoding-type", "url");
            let Ok(body) = self.rt.block_on(self.client.call_bytes(&req)) else {
                return;
            };
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut found = false;
            for block in text.split("<Key>").skip(1) {
                let key = decode_form(&block[..block.find("</Key>").unwrap_or(0)]);
                let key = String::from_utf8_lossy(&key).into_owned();
                let Some(v) = block
                    .split("<VersionId>")
                    .nth(1)
                    .and_then(|v| v.split("</VersionId>").next())
                else {
                    continue;
                };
                found = true;
                let del = S3Request::new(Method::DELETE, Some(b), Some(&key))
                    .query("versionId", v.to_string());
                let _ = self.rt.block_on(self.client.call(&del));
            }
            if !found {
                break;
            }
        }
        let _ = self.rt.block_on(
            self.client
                .call(&S3Request::new(Method::DELETE, Some(b), None)),
        );
    }

    /// Runs the CLI against `repo` with the server's variables.
    fn run(&self, repo: &Repo, args: &[&str]) -> Run {
        self.run_env(repo, args, &[])
    }

    /// [`Server::run`] with variables added or replaced.
    fn run_env(&self, repo: &Repo, args: &[&str], extra: &[(String, String)]) -> Run {
        let mut cmd = repo.cmd();
        for (k, v) in self.env.iter().chain(extra.iter().map(|(k, v)| (k, v))) {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().expect("run binary");
        Run {
            cmdline: format!(
                "data-backup-manager --repo {:?} {}",
                repo.path,
                args.join(" ")
            ),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// `backup minio:<bucket> --json`, which must succeed with a complete snapshot.
    #[track_caller]
    fn backup(&self, repo: &Repo, bucket: &str) -> BackupReport {
        let run = self.run(repo, &["backup", &format!("minio:{bucket}"), "--json"]);
        run.expect_success();
        let report = BackupReport::parse(&run.json(), &run);
        assert!(
            !report.partial && report.errors.is_empty(),
            "{}",
            run.describe()
        );
        report
    }

    #[track_caller]
    fn restore(&self, repo: &Repo, snap: &str, dest: &str) {
        self.run(
            repo,
            &[
                "restore",
                snap,
                "--targets",
                "minio",
                "--destination",
                &format!("minio:{dest}"),
            ],
        )
        .expect_success();
    }
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    let start = s.find(a).unwrap_or_else(|| panic!("{a} not in {s}")) + a.len();
    let end = s[start..].find(b).unwrap() + start;
    &s[start..end]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn base64_md5(b: &[u8]) -> String {
    backup_core::repository::crypto::b64(&md5::Md5::digest(b))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Keys that must survive byte for byte, with their bodies.
fn awkward_keys() -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::unique();
    [
        "/leading-slash",
        "//double-leading",
        "a//b",
        "with space",
        "plus+sign",
        "percent%20literal",
        "percent%",
        "question?mark",
        "caf\u{e9}",   // NFC
        "cafe\u{301}", // NFD: same text, other bytes, another object
        "dir/",        // zero-byte directory marker
        "dir/file",
        "a",
        "a/b", // a key that is also a "directory" of another key
        "tricky%2Fslash",
        "x/y/z/deep",
        "trailing space ",
        "star*and&amp=",
    ]
    .iter()
    .map(|k| {
        let body = if k.ends_with('/') {
            Vec::new()
        } else {
            rng.bytes(1000 + k.len())
        };
        (k.to_string(), body)
    })
    .collect()
}

fn policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"PublicRead","Effect":"Allow","Principal":{{"AWS":["*"]}},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}"#
    )
}

const CORS: &str = "<CORSConfiguration><CORSRule><AllowedOrigin>https://example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>300</MaxAgeSeconds></CORSRule></CORSConfiguration>";

const LIFECYCLE: &str = "<LifecycleConfiguration><Rule><ID>expire-tmp</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>";

/// One object as the S3 API shows it: HeadObject headers, tags, body SHA-256.
type Described = (BTreeMap<String, String>, Vec<(String, String)>, String);

/// Every key's headers, tags and body digest.
fn describe_bucket(s: &Server, b: &str) -> BTreeMap<String, Described> {
    s.keys(b)
        .into_iter()
        .map(|k| {
            let d = (s.head(b, &k), s.tags(b, &k), s.sha256(b, &k));
            (k, d)
        })
        .collect()
}

/// Acceptance "Bucket round trip", plus an incremental backup of the unchanged bucket that
/// reads no object body.
#[test]
fn bucket_round_trip() {
    let Some(s) = server() else { return };
    let src = s.bucket_name("src");
    let dst = s.bucket_name("dst");
    s.create_bucket(&src);
    s.put_config(
        &src,
        "versioning",
        "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
    );
    s.put_config(&src, "policy", &policy(&src));
    s.put_config(&src, "lifecycle", LIFECYCLE);
    s.put_config(&src, "cors", CORS);
    s.put_config(
        &src,
        "tagging",
        "<Tagging><TagSet><Tag><Key>team</Key><Value>backup</Value></Tag></TagSet></Tagging>",
    );

    let keys = awkward_keys();
    for (k, body) in &keys {
        s.put(&src, k, body, &[]);
    }
    s.put(
        &src,
        "meta.html",
        b"<h1>hello</h1>",
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "max-age=60, public"),
            (
                "content-disposition",
                "attachment; filename=\"hello world.html\"",
            ),
            ("content-language", "en"),
            ("x-amz-meta-owner", "alice"),
            ("x-amz-meta-project-id", "42 and more"),
        ],
    );
    let json = br#"{"hello": "world", "n": [1, 2, 3]}"#.repeat(200);
    s.put(
        &src,
        "data.json.gz",
        &gzip(&json),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
    );
    let mut rng = Rng::unique();
    let big = rng.bytes(20 << 20);
    s.put_multipart(&src, "big/multipart.bin", &big, 7 << 20);
    let tags =
        "<Tagging><TagSet><Tag><Key>kind</Key><Value>big one</Value></Tag></TagSet></Tagging>";
    s.call(
        S3Request::new(Method::PUT, Some(&src), Some("big/multipart.bin"))
            .query("tagging", "")
            .header("content-md5", base64_md5(tags.as_bytes()))
            .body(tags),
    );
    s.put(
        &src,
        "tagged",
        b"tagged body",
        &[("x-amz-tagging", "team=backup&note=a%20b%26c")],
    );

    let source = describe_bucket(&s, &src);
    assert_eq!(
        source.len(),
        keys.len() + 4,
        "source keys: {:?}",
        source.keys()
    );
    assert!(source["big/multipart.bin"].0["content-length"] == (20u64 << 20).to_string());

    let repo = Repo::init();
    let first = s.backup(&repo, &src);
    assert_eq!(
        first.summary.files_new as usize,
        source.len() + 5,
        "objects + 5 config docs"
    );

    // Unchanged bucket: every object is reused from the parent, no body is read.
    let second = s.backup(&repo, &src);
    assert_eq!(
        second.summary.bytes_read, 0,
        "incremental re-read bodies: {:?}",
        second.summary
    );
    assert_eq!(second.summary.files_unmodified, first.summary.files_new);

    s.restore(&repo, &second.id, &dst);
    let restored = describe_bucket(&s, &dst);
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>(),
        "restored keys differ"
    );
    for (k, want) in &source {
        assert_eq!(
            &restored[k], want,
            "object {k:?}: (HeadObject, tags, SHA-256)"
        );
    }
    assert_eq!(
        s.tags(&dst, "tagged"),
        vec![
            ("note".into(), "a b&c".into()),
            ("team".into(), "backup".into())
        ]
    );

    // Bucket configuration; the policy's own-bucket ARN follows the bucket.
    let p_src: serde_json::Value = serde_json::from_str(&s.get_config(&src, "policy")).unwrap();
    let p_dst: serde_json::Value =
        serde_json::from_str(&s.get_config(&dst, "policy").replace(&dst, &src)).unwrap();
    assert_eq!(p_dst, p_src, "bucket policy");
    assert_eq!(
        s.get_config(&dst, "versioning"),
        s.get_config(&src, "versioning")
    );
    assert!(s
        .get_config(&dst, "versioning")
        .contains("<Status>Enabled</Status>"));
    assert_eq!(
        s.get_config(&dst, "lifecycle"),
        s.get_config(&src, "lifecycle")
    );
    assert!(s.get_config(&dst, "lifecycle").contains("expire-tmp"));
    assert_eq!(s.get_config(&dst, "cors"), s.get_config(&src, "cors"));
    assert!(s.get_config(&dst, "cors").contains("https://example.com"));
    assert_eq!(s.get_config(&dst, "tagging"), s.get_config(&src, "tagging"));
    assert!(s.get_config(&dst, "tagging").contains("<Key>team</Key>"));

    // A key that cannot be stored is named and the restore fails (exit 1): a destination
    // prefix that pushes the keys over S3's 1024-byte limit.
    let dst2 = s.bucket_name("dst2");
    let prefix = "p".repeat(1020);
    let run = s.run(
        &repo,
        &[
            "restore",
            &second.id,
            "--destination",
            &format!("minio:{dst2}/{prefix}"),
        ],
    );
    run.expect_code(1);
    let err = run.stderr_str();
    for key in ["big/multipart.bin", "meta.html", "//double-leading"] {
        assert!(
            err.contains(&format!("{dst2}/{prefix}{key}: ")),
            "{key} not named\n{}",
            run.describe()
        );
    }
    assert!(err.contains("KeyTooLong"), "{}", run.describe());

    for b in [&src, &dst, &dst2] {
        s.drop_bucket(b);
    }
}

/// Acceptance "Same-size change": one byte of the multipart object changes, its size does not;
/// the next snapshot holds the new bytes and each snapshot restores its own.
#[test]
fn same_size_change_is_detected() {
    let Some(s) = server() else { return };
    let src = s.bucket_name("same");
    s.create_bucket(&src);
    let mut rng = Rng::unique();
    let mut body = rng.bytes(20 << 20);
    let key = "big/multipart.bin";
    s.put_multipart(&src, key, &body, 7 << 20);
    let before = hex(&Sha256::digest(&body));

    let repo = Repo::init();
    let first = s.backup(&repo, &src);
    body[10 << 20] ^= 0x01;
    s.put_multipart(&src, key, &body, 7 << 20);
    let after = hex(&Sha256::digest(&body));
    assert_ne!(before, after);
    let second = s.backup(&repo, &src);
    assert_eq!(second.summary.files_changed, 1, "{:?}", second.summary);
    assert_eq!(second.summary.bytes_read, 20 << 20, "{:?}", second.summary);

    // Tags changed in place: the new tags are stored, the body is the same (AWS keeps
    // Last-Modified on PutObjectTagging, the RADOS Gateway bumps it, so the body may be read
    // again; it deduplicates).
    let tags =
        "<Tagging><TagSet><Tag><Key>state</Key><Value>reviewed</Value></Tag></TagSet></Tagging>";
    s.call(
        S3Request::new(Method::PUT, Some(&src), Some(key))
            .query("tagging", "")
            .header("content-md5", base64_md5(tags.as_bytes()))
            .body(tags),
    );
    let third = s.backup(&repo, &src);
    assert_eq!(third.summary.files_unmodified, 1, "{:?}", third.summary);
    assert!(third.summary.bytes_added < 1 << 20, "{:?}", third.summary);

    for (snap, want) in [
        (&first.id, &before),
        (&second.id, &after),
        (&third.id, &after),
    ] {
        let dst = s.bucket_name("same-dst");
        s.restore(&repo, snap, &dst);
        assert_eq!(
            &s.sha256(&dst, key),
            want,
            "snapshot {snap} restored other bytes"
        );
        let want_tags = if snap == &third.id {
            vec![("state".to_string(), "reviewed".to_string())]
        } else {
            vec![]
        };
        assert_eq!(s.tags(&dst, key), want_tags, "tags of snapshot {snap}");
        s.drop_bucket(&dst);
    }

    // A key prefix that ends inside a name: only matching keys, restored under their full keys.
    s.put(&src, "big/other.bin", b"not under the prefix", &[]);
    let run = s.run(
        &repo,
        &["backup", &format!("minio:{src}/big/multi"), "--json"],
    );
    run.expect_success();
    let part = BackupReport::parse(&run.json(), &run);
    assert_eq!(part.summary.files_new, 1, "{}", run.describe());
    let dst = s.bucket_name("same-prefix");
    s.restore(&repo, &part.id, &dst);
    assert_eq!(s.keys(&dst), vec![key.to_string()]);
    assert_eq!(s.sha256(&dst, key), after);
    s.drop_bucket(&dst);

    // Into "another server": the destination comes from DBM_DEST_* alone (the source
    // variables are made useless to prove it).
    let dst = s.bucket_name("same-dest-env");
    let mut extra: Vec<(String, String)> = s
        .env
        .iter()
        .map(|(k, v)| (format!("DBM_DEST_{k}"), v.clone()))
        .collect();
    extra.push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
    s.run_env(
        &repo,
        &[
            "restore",
            &second.id,
            "--destination",
            &format!("minio:{dst}"),
        ],
        &extra,
    )
    .expect_success();
    assert_eq!(s.sha256(&dst, key), after);
    s.drop_bucket(&dst);
    s.drop_bucket(&src);
}
