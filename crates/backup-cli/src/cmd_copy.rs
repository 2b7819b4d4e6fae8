//! `copy`: snapshots from one repository into another (see `backup_core::engine::copy`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use backup_core::engine::copy;
use backup_core::repository::Repository;
use clap::Args;

use crate::output::size;
use crate::settings::{read_password, Settings};

/// Flags of `copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, unique prefixes, `latest`); or --all.
    pub snapshots: Vec<String>,
    /// Copy every snapshot of the source.
    #[arg(long, conflicts_with = "snapshots")]
    pub all: bool,
    /// Source repository (default: --repo).
    #[arg(long, env = "DBM_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// Destination repository (default: --repo).
    #[arg(long, env = "DBM_TO_REPOSITORY")]
    pub to_repo: Option<String>,
    /// File holding the source's password (else DBM_FROM_PASSWORD, else the --repo password).
    #[arg(long, env = "DBM_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// File holding the destination's password (else DBM_TO_PASSWORD, else the --repo password).
    #[arg(long, env = "DBM_TO_PASSWORD_FILE")]
    pub to_password_file: Option<PathBuf>,
}

async fn open(
    s: &Settings,
    url: &str,
    file: Option<&std::path::Path>,
    env: &str,
    flag: &str,
    what: &str,
) -> Result<Arc<Repository>> {
    let pw = if file.is_some() || std::env::var_os(env).is_some() {
        read_password(file, env, flag, what, false)?
    } else {
        s.password(false)?
    };
    let store = backup_core::store::open_store_with(url, false, &s.config.storage)?;
    let repo = Repository::open(store, &pw)
        .await
        .with_context(|| format!("opening the {what}'s repository {url}"))?;
    Ok(Arc::new(repo))
}

/// Runs `copy`; exit code 0.
pub async fn run(s: &Settings, a: CopyArgs) -> Result<u8> {
    if a.snapshots.is_empty() && !a.all {
        bail!("name the snapshots to copy, or use --all");
    }
    let from = a.from_repo.clone().unwrap_or_else(|| s.repo.clone());
    let to = a.to_repo.clone().unwrap_or_else(|| s.repo.clone());
    if from == to {
        bail!("copy needs two repositories: give --from-repo or --to-repo (the other defaults to --repo)");
    }
    let src = open(
        s,
        &from,
        a.from_password_file.as_deref(),
        "DBM_FROM_PASSWORD",
        "--from-password-file",
        "source",
    )
    .await?;
    src.set_no_lock(s.no_lock);
    let dst = open(
        s,
        &to,
        a.to_password_file.as_deref(),
        "DBM_TO_PASSWORD",
        "--to-password-file",
        "destination",
    )
    .await?;
    let opts = copy::CopyOptions {
        snapshots: a.snapshots,
    };
    let r = copy::copy(&src, &dst, &opts, &s.bar()).await?;
    if s.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    for c in &r.copied {
        println!(
            "snapshot {} copied as {}",
            &c.source[..8],
            &c.destination[..8]
        );
    }
    println!(
        "{} snapshots copied from {from} to {to}, {} already there; {} blobs read, {} blobs added ({} in {} packs)",
        r.copied.len(),
        r.already_present.len(),
        r.blobs_read,
        r.blobs_added,
        size(r.bytes_added),
        r.packs_added
    );
    Ok(0)
}
