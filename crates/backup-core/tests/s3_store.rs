//! `CloudStore` against the real S3 test server (`scripts/s3-server.sh`): create-only writes
//! with `If-None-Match: *` and with the HEAD-then-PUT fallback, multipart uploads, ranged
//! reads, overwrites, missing objects, the store clock, and prune's abort of unfinished
//! multipart uploads. Fails under CI when the server is absent; skipped otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::store::cloud::{CloudOptions, CloudStore, CloudUrl, Secret};
use backup_core::{ErrorKind, Store};
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};

const BUCKET: &str = "dbm-repo-tests";

/// The test server's settings, or `None` (skip) outside CI when it is absent.
fn server(test: &str) -> Option<BTreeMap<String, String>> {
    let path = std::env::var("DBM_S3_ENV").unwrap_or_else(|_| "/tmp/dbm-s3.env".into());
    let vars: BTreeMap<String, String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().into(), v.trim().into()))
        .collect();
    let up = vars
        .get("AWS_ENDPOINT_URL")
        .and_then(|e| e.split("://").nth(1))
        .and_then(|h| std::net::TcpStream::connect(h.trim_end_matches('/')).ok())
        .is_some();
    if up {
        return Some(vars);
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("{test}: the S3 test server ({path}) is not running; start scripts/s3-server.sh");
    }
    eprintln!("SKIPPED {test}: the S3 test server ({path}) is not running");
    None
}

fn options(vars: &BTreeMap<String, String>) -> CloudOptions {
    CloudOptions {
        endpoint: vars.get("AWS_ENDPOINT_URL").cloned(),
        region: vars.get("AWS_REGION").cloned(),
        access_key_id: vars.get("AWS_ACCESS_KEY_ID").cloned(),
        secret_access_key: vars
            .get("AWS_SECRET_ACCESS_KEY")
            .map(|s| Secret::new(s.clone())),
        allow_http: Some(true),
        ..Default::default()
    }
}

fn prefix(test: &str) -> String {
    format!(
        "{test}-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn open(opts: &CloudOptions, prefix: &str) -> CloudStore {
    let url = CloudUrl::parse(&format!("s3://{BUCKET}/{prefix}"))
        .unwrap()
        .unwrap();
    let s = CloudStore::open(&url, opts).unwrap();
    s.create_location().await.unwrap();
    s
}

fn random(n: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn exercise(store: &CloudStore) {
    // Small object: create-only.
    assert!(store
        .put_new("data/aa/small", Bytes::from_static(b"first"))
        .await
        .unwrap());
    assert!(!store
        .put_new("data/aa/small", Bytes::from_static(b"second"))
        .await
        .unwrap());
    assert_eq!(store.get("data/aa/small").await.unwrap(), "first");
    // Large object: multipart (threshold 8 MiB), create-only, ranged reads.
    let big = random(19 << 20, 7);
    assert!(store.put_new("data/bb/big", big.clone()).await.unwrap());
    assert!(!store
        .put_new("data/bb/big", random(9 << 20, 8))
        .await
        .unwrap());
    let back = store.get("data/bb/big").await.unwrap();
    assert!(back == big, "multipart object differs");
    let r = (9 << 20) - 5..(9 << 20) + 5;
    assert_eq!(
        store.get_range("data/bb/big", r.clone()).await.unwrap(),
        big.slice(r.start as usize..r.end as usize)
    );
    // Overwrite (locks only).
    store
        .put_overwrite("locks/l", Bytes::from_static(b"1"))
        .await
        .unwrap();
    store
        .put_overwrite("locks/l", Bytes::from_static(b"22"))
        .await
        .unwrap();
    assert_eq!(store.get("locks/l").await.unwrap(), "22");
    // Listing and the store's clock.
    let list = store.list("data").await.unwrap();
    let mut names: Vec<_> = list.iter().map(|o| (o.path.as_str(), o.size)).collect();
    names.sort();
    assert_eq!(names, vec![("data/aa/small", 5), ("data/bb/big", 19 << 20)]);
    let age = chrono::Utc::now() - list[0].last_modified;
    assert!(age.num_minutes().abs() < 10, "store clock far off: {age}");
    // Missing objects.
    assert!(store.head("data/cc/missing").await.unwrap().is_none());
    let e = store.get("data/cc/missing").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store);
    assert!(matches!(
        e,
        backup_core::Error::Store(object_store::Error::NotFound { .. })
    ));
    store.delete("data/cc/missing").await.unwrap();
    for p in ["data/aa/small", "data/bb/big", "locks/l"] {
        store.delete(p).await.unwrap();
    }
    assert!(store.list("data").await.unwrap().is_empty());
}

#[tokio::test]
async fn conditional_create_probed_forced_and_fallback() {
    let Some(vars) = server("conditional_create_probed_forced_and_fallback") else {
        return;
    };
    let opts = options(&vars);
    let probed = open(&opts, &prefix("probed")).await;
    // Ceph RGW honours If-None-Match: * on PutObject.
    assert!(probed.conditional_create().await.unwrap());
    exercise(&probed).await;
    let fallback = open(
        &CloudOptions {
            conditional_create: Some(false),
            ..opts.clone()
        },
        &prefix("head-then-put"),
    )
    .await;
    assert!(!fallback.conditional_create().await.unwrap());
    exercise(&fallback).await;
    // No probe objects are left behind.
    for s in [&probed, &fallback] {
        let left = s.list("").await.unwrap();
        assert!(left.is_empty(), "{:?}", left);
    }
}

fn raw_s3(vars: &BTreeMap<String, String>) -> Arc<object_store::aws::AmazonS3> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(&vars["AWS_ENDPOINT_URL"])
            .with_region(&vars["AWS_REGION"])
            .with_access_key_id(&vars["AWS_ACCESS_KEY_ID"])
            .with_secret_access_key(&vars["AWS_SECRET_ACCESS_KEY"])
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn unfinished_multipart_uploads_are_aborted() {
    let Some(vars) = server("unfinished_multipart_uploads_are_aborted") else {
        return;
    };
    let p = prefix("mpu");
    let store = open(&options(&vars), &p).await;
    // What a killed writer leaves: an upload with a part, never completed.
    let raw = raw_s3(&vars);
    let key = object_store::path::Path::from(format!("{p}/data/dd/unfinished"));
    let mut up = raw.put_multipart(&key).await.unwrap();
    up.put_part(PutPayload::from(random(5 << 20, 3)))
        .await
        .unwrap();
    std::mem::forget(up);
    // One outside the prefix is not ours and stays.
    let other = object_store::path::Path::from(format!("{p}-other/x"));
    let mut up2 = raw.put_multipart(&other).await.unwrap();
    up2.put_part(PutPayload::from_static(b"x")).await.unwrap();

    assert_eq!(store.remove_partial_uploads().await.unwrap(), 1);
    assert_eq!(store.remove_partial_uploads().await.unwrap(), 0);
    assert!(store.head("data/dd/unfinished").await.unwrap().is_none());
    up2.abort().await.unwrap();
}
