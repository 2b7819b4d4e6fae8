//! `restore <snapshot> --destination minio:<bucket>[/prefix]`: a `minio` snapshot back into a
//! bucket. The logic is `backup_core::target::minio::restore`; this file maps flags to its
//! options and prints the report.

use anyhow::{bail, Result};
use backup_core::s3::S3Settings;
use backup_core::target::minio::restore::{restore_buckets, BucketRestoreOptions};
use backup_core::target::minio::BucketSpec;

use crate::cli::RestoreArgs;
use crate::output::size;
use crate::settings::Settings;

/// Prefix of the variables that point a restore at another server (`DBM_DEST_AWS_ENDPOINT_URL`,
/// `DBM_DEST_AWS_ACCESS_KEY_ID`, ...); without any, the backup's variables are used.
pub const DEST_ENV_PREFIX: &str = "DBM_DEST_";

/// Whether `--destination` names a bucket (`minio:` or `minio:<bucket>[/prefix]`).
pub fn is_bucket_destination(a: &RestoreArgs) -> bool {
    a.destination
        .as_ref()
        .and_then(|d| d.to_str())
        .is_some_and(|d| d == "minio" || d.starts_with("minio:"))
}

/// Runs the restore into a bucket. Exit code 1 when any key or configuration failed.
pub async fn restore(s: &Settings, a: RestoreArgs) -> Result<u8> {
    if a.format.is_some() {
        bail!("--format tar writes to stdout; it cannot be combined with a minio: destination");
    }
    if a.verify {
        bail!("--verify re-reads restored files; uploads to a bucket are verified by the server instead (each request's SHA-256 is signed): drop --verify");
    }
    let dest = a
        .destination
        .as_ref()
        .and_then(|d| d.to_str())
        .unwrap_or_default();
    let spec = BucketSpec::parse(
        dest.strip_prefix("minio")
            .unwrap_or(dest)
            .trim_start_matches(':'),
    )?;
    let settings = match S3Settings::from_env_prefixed(DEST_ENV_PREFIX)? {
        Some(s) => s,
        None => S3Settings::from_env()?,
    };
    // Buckets chosen by --targets minio:<bucket> or --include /<bucket>.
    let mut buckets = Vec::new();
    for t in &a.targets {
        let t = s.target(t);
        match t.strip_prefix("minio") {
            Some("") | Some(":") => {}
            Some(rest) if rest.starts_with(':') => {
                let b = BucketSpec::parse(&rest[1..])?;
                if !b.prefix.is_empty() {
                    bail!("--targets {t}: a restore takes whole buckets; drop the key prefix");
                }
                buckets.extend(b.bucket);
            }
            _ => bail!("--targets {t}: a minio: destination restores minio targets only"),
        }
    }
    for p in &a.include {
        let mut parts = p.components().filter_map(|c| match c {
            std::path::Component::Normal(n) => n.to_str(),
            _ => None,
        });
        match (parts.next(), parts.next()) {
            (Some(b), None) => buckets.push(b.to_string()),
            _ => bail!(
                "--include {}: with a minio: destination give whole buckets (/<bucket>)",
                p.display()
            ),
        }
    }
    let repo = s.open().await?;
    let snap = repo.find_snapshot(&a.snapshot).await?;
    let mut opts = BucketRestoreOptions::new(spec, settings);
    opts.buckets = buckets;
    let r = restore_buckets(&repo, &snap, &opts, &s.bar()).await?;
    if s.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "restored snapshot {} to {}: {} objects, {} written, {} bucket settings",
            snap.id.short(),
            r.buckets.join(", "),
            r.objects,
            size(r.bytes),
            r.configs.len()
        );
    }
    for e in &r.errors {
        eprintln!("error: {}: {}", e.path, e.message);
    }
    if !r.errors.is_empty() {
        eprintln!(
            "error: restore incomplete: {} key(s) or setting(s) failed",
            r.errors.len()
        );
        return Ok(1);
    }
    Ok(0)
}
