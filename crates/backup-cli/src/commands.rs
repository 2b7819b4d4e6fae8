//! One function per command: build the core options, run, print.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use backup_core::engine::{backup, browse, check, forget, prune, restore, status};
use backup_core::repository::{keys, InitOptions, Repository};
use backup_core::{BackupType, Snapshot};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::cli::*;
use crate::output::{size, table};
use crate::settings::Settings;

/// Exit code for success with warnings.
const WARNING: u8 = 2;

pub async fn run(cli: Cli) -> Result<u8> {
    let s = Settings::resolve(&cli.global)?;
    if let Some(url) = cli.global.api_url.clone() {
        return crate::cmd_remote::run(cli, &url, &s).await;
    }
    match cli.command {
        Command::Init(a) => init(&s, a).await,
        Command::Backup(a) => backup_cmd(&s, a).await,
        Command::Restore(a) => restore_cmd(&s, a).await,
        Command::List(a) => list(&s, a).await,
        Command::Ls(a) => ls(&s, a).await,
        Command::Diff(a) => diff(&s, a).await,
        Command::Dump(a) => dump(&s, a).await,
        Command::Verify(a) => verify(&s, a).await,
        Command::Check(a) => check_cmd(&s, a).await,
        Command::Forget(a) => forget_cmd(&s, a).await,
        Command::Prune(a) => prune_cmd(&s, a).await,
        Command::Key(k) => key(&s, k).await,
        Command::Copy(a) => crate::cmd_copy::run(&s, a).await,
        Command::RepairIndex => {
            let repo = s.open().await?;
            let r = backup_core::engine::repair::rebuild_index(&repo, &s.bar()).await?;
            if s.json {
                print_json(&r)?;
            } else {
                println!(
                    "index rebuilt from {} packs: {} blobs ({} old index files replaced)",
                    r.packs_indexed, r.blobs, r.old_index_files
                );
                for p in &r.packs_unreadable {
                    eprintln!("warning: pack {p}: header unreadable, left out of the index");
                }
            }
            Ok(if r.packs_unreadable.is_empty() {
                0
            } else {
                WARNING
            })
        }
        Command::WalPush(a) => crate::cmd_pg::wal_push(&s, a).await,
        Command::WalFetch(a) => crate::cmd_pg::wal_fetch(&s, a).await,
        Command::WalConfig(a) => crate::cmd_pg::wal_config(&s, a).await,
        Command::WalPrune(a) => crate::cmd_pg::wal_prune(&s, a).await,
        Command::Status(a) => crate::cmd_schedule::status(&s, a).await,
        Command::Schedule(c) => crate::cmd_schedule::schedule(&s, c).await,
        Command::RunScheduler(a) => crate::cmd_schedule::run_scheduler(&s, a).await,
        Command::Catalog(c) => crate::cmd_schedule::catalog_cmd(&s, c).await,
        Command::RestorePoint(c) => crate::cmd_schedule::restore_point(&s, c).await,
        Command::Version => version(&s),
        Command::Job(a) => {
            let id = uuid::Uuid::parse_str(&a.id)
                .with_context(|| format!("job {:?}: expected a UUID", a.id))?;
            print_json(&s.catalog().await?.get_job(id).await?)?;
            Ok(0)
        }
        Command::RestoreStatus(a) => {
            let id = uuid::Uuid::parse_str(&a.id)
                .with_context(|| format!("restore {:?}: expected a UUID", a.id))?;
            let r = s.catalog().await?.get_restore_job(id).await?;
            print_json(&r)?;
            Ok(if r.status == backup_core::catalog::JobStatus::Failed {
                1
            } else {
                0
            })
        }
        Command::Event(a) => crate::cmd_schedule::event(&s, a).await,
        Command::Metrics => crate::cmd_schedule::metrics(&s).await,
        Command::ApiDoc => {
            print!("{}", include_str!("../../backup-server/openapi.json"));
            Ok(0)
        }
    }
}

/// `version`.
pub fn version(s: &Settings) -> Result<u8> {
    let v = env!("CARGO_PKG_VERSION");
    if s.json {
        println!(
            "{}",
            json!({"cli_version": v, "core_version": v, "repository_format": backup_core::repository::FORMAT_VERSION})
        );
    } else {
        println!(
            "data-backup-manager {v} (repository format {})",
            backup_core::repository::FORMAT_VERSION
        );
    }
    Ok(0)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A snapshot as JSON: the manifest plus `id` and `short_id`.
pub fn snapshot_json(s: &Snapshot) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(s.id.to_hex()));
        m.insert("short_id".into(), json!(s.id.short()));
    }
    v
}

async fn init(s: &Settings, a: InitArgs) -> Result<u8> {
    if a.pack_size_mib == 0 || a.pack_size_mib > 1024 {
        bail!("--pack-size-mib must be between 1 and 1024");
    }
    let opts = InitOptions {
        pack_size: a.pack_size_mib * 1024 * 1024,
        compression_level: a.compression_level,
        ..Default::default()
    };
    let repo = s.init(opts).await?;
    if s.json {
        print_json(&json!({"repository": s.repo, "id": repo.config().id, "key": repo.key_id()}))?;
    } else {
        println!(
            "created repository {} at {}",
            &repo.config().id[..8],
            s.repo
        );
        println!("keep the password safe: without it the data cannot be restored");
    }
    Ok(0)
}

async fn backup_cmd(s: &Settings, a: BackupArgs) -> Result<u8> {
    // A config name may stand for several comma-separated specs.
    let targets = a
        .targets
        .iter()
        .filter(|t| !t.is_empty())
        .flat_map(|t| {
            s.target(t)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|t| t.parse())
        .collect::<backup_core::Result<Vec<_>>>()?;
    let targets = crate::cmd_pg::resolve_specs(s, targets)?;
    let repo = s.open().await?;
    // PostgreSQL's kinds of backup: both store everything anew (a full backup).
    let (backup_type, pg_mode) = match a.backup_type.as_deref() {
        Some(m @ ("base" | "logical")) => (Some(BackupType::Full), Some(m.parse()?)),
        t => (t.map(str::parse::<BackupType>).transpose()?, None),
    };
    let opts = backup::BackupOptions {
        targets,
        backup_type,
        pg_mode,
        databases: a.databases,
        excludes: a.excludes,
        description: a.description,
        tags: a.tags,
        retention_days: a.retention_days,
        parent: a.parent,
        read_concurrency: None,
    };
    // The catalog record never makes the backup fail (warnings only).
    let rec = crate::cmd_schedule::record_start(
        s,
        &opts.targets,
        opts.backup_type.map(|t| t.to_string()).as_deref(),
        opts.description.clone(),
    )
    .await;
    let result = backup::backup(&repo, &opts, &s.bar()).await;
    crate::cmd_schedule::record_finish(rec, &result).await;
    let snap = result?;
    if s.json {
        print_json(&snapshot_json(&snap))?;
    } else {
        let m = &snap.summary;
        println!(
            "snapshot {} saved ({} backup of {})",
            snap.id.short(),
            snap.backup_type,
            snap.paths.join(", ")
        );
        println!(
            "files: {} new, {} changed, {} unmodified; {} dirs, {} other",
            m.files_new, m.files_changed, m.files_unmodified, m.dirs, m.others
        );
        println!(
            "data: {} total, {} read, {} added to the repository ({} before compression), {:.1}s",
            size(m.bytes_total),
            size(m.bytes_read),
            size(m.bytes_added),
            size(m.raw_bytes_added),
            m.duration_secs
        );
        for e in &snap.errors {
            eprintln!("warning: {}: {}", e.path, e.message);
        }
        if snap.partial {
            eprintln!(
                "warning: snapshot {} is partial: {} path(s) could not be read",
                snap.id.short(),
                snap.errors.len()
            );
        }
    }
    // Partial snapshots and files that changed while read are warnings.
    Ok(if snap.errors.is_empty() { 0 } else { WARNING })
}

async fn restore_cmd(s: &Settings, a: RestoreArgs) -> Result<u8> {
    if crate::cmd_pg::is_pg_restore(s, &a.targets) {
        return crate::cmd_pg::restore(s, &a.snapshot, &a.targets, a.destination, a.pg).await;
    }
    if crate::cmd_bucket::is_bucket_destination(&a) {
        return crate::cmd_bucket::restore(s, a).await;
    }
    if a.format.is_some() && a.destination.is_some() {
        bail!("--format tar writes to stdout; drop --destination (or redirect: > file.tar)");
    }
    if !a.targets.is_empty() && !a.include.is_empty() {
        bail!("give --targets or --include, not both (--targets T is --include with T's path)");
    }
    let repo = s.open().await?;
    let snap = repo.find_snapshot(&a.snapshot).await?;
    let mut include = a.include.clone();
    for t in &a.targets {
        match s.target(t).parse::<backup_core::target::TargetSpec>()? {
            backup_core::target::TargetSpec::Files(p) => {
                if !snap.paths.iter().any(|sp| p.starts_with(sp.as_str())) {
                    bail!(
                        "target {t} is not in snapshot {} (it holds {})",
                        snap.id.short(),
                        snap.paths.join(", ")
                    );
                }
                include.push(p);
            }
            backup_core::target::TargetSpec::Scenario(name) => {
                let p = backup_core::target::scenario::scenarios_root()
                    .join(name.as_deref().unwrap_or(""));
                let p = backup_core::target::files::absolute(&p)?;
                if !snap.paths.iter().any(|sp| p.starts_with(sp.as_str())) {
                    bail!(
                        "target {t} ({}) is not in snapshot {} (it holds {})",
                        p.display(),
                        snap.id.short(),
                        snap.paths.join(", ")
                    );
                }
                include.push(p);
            }
            other => bail!(
                "restoring a {} target is not available in this build ({other})",
                other.kind()
            ),
        }
    }
    if a.format.as_deref() == Some("tar") {
        let path = match include.as_slice() {
            [] => std::path::PathBuf::from("/"),
            [one] => one.clone(),
            _ => bail!("--format tar takes at most one --include path"),
        };
        return tar_out(repo, snap, path).await;
    }
    let dest = a.destination.context("--destination is required")?;
    let mut opts = restore::RestoreOptions::new(dest);
    opts.include = include;
    opts.overwrite = a.overwrite;
    opts.verify = a.verify;
    let r = restore::restore(&repo, &snap, &opts, &s.bar()).await?;
    if s.json {
        print_json(&r)?;
    } else {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} other, {} written{}",
            snap.id.short(),
            r.destination,
            r.files,
            r.dirs,
            r.others,
            size(r.bytes_written),
            if opts.verify {
                format!(", {} files verified", r.files_verified)
            } else {
                String::new()
            }
        );
    }
    for e in &r.errors {
        eprintln!("error: {}: {}", e.path, e.message);
    }
    if !r.errors.is_empty() {
        eprintln!(
            "error: restore incomplete: {} path(s) failed",
            r.errors.len()
        );
        return Ok(1);
    }
    Ok(0)
}

/// Runs blocking `write` (which streams snapshot data) with a buffered stdout.
async fn to_stdout(
    write: impl FnOnce(tokio::runtime::Handle, &mut dyn Write) -> backup_core::Result<()>
        + Send
        + 'static,
) -> Result<u8> {
    let h = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        write(h, &mut out)?;
        out.flush()?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(0)
}

async fn tar_out(repo: Arc<Repository>, snap: Snapshot, path: std::path::PathBuf) -> Result<u8> {
    to_stdout(move |h, out| browse::export_tar(repo, h, &snap, &path, out)).await
}

async fn list(s: &Settings, a: ListArgs) -> Result<u8> {
    let repo = s.open().await?;
    let filter = backup_core::service::backup::ListFilter {
        backup_type: a.backup_type,
        target: a.target,
        since: a.since,
    };
    let listing = backup_core::service::backup::list(&repo, &s.config, &filter).await?;
    for d in &listing.damaged {
        let short = d["short_id"].as_str().unwrap_or_default();
        eprintln!(
            "warning: snapshot {short} cannot be read: {} (see check; forget {short} removes it)",
            d["error"].as_str().unwrap_or_default()
        );
    }
    print_listing(s, &listing.snapshots)?;
    Ok(if listing.damaged.is_empty() {
        0
    } else {
        WARNING
    })
}

/// Prints a listing of snapshots (as JSON objects: local, or from `GET /api/v1/backup/list`).
pub fn print_listing(s: &Settings, snaps: &[Value]) -> Result<()> {
    if s.json {
        return print_json(&snaps);
    }
    let mut t = table(&[
        "ID",
        "Time (UTC)",
        "Type",
        "Targets",
        "Size",
        "Added",
        "Status",
        "Description",
    ]);
    for v in snaps {
        let x: Snapshot = serde_json::from_value(v.clone()).context("reading a snapshot")?;
        t.add_row(vec![
            v["short_id"].as_str().unwrap_or_default().to_string(),
            x.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            x.backup_type.to_string(),
            x.targets.join(","),
            size(x.summary.bytes_total),
            size(x.summary.bytes_added),
            if x.partial {
                "partial".into()
            } else if !x.errors.is_empty() {
                "warnings".into()
            } else {
                "complete".into()
            },
            x.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    println!("{} snapshot(s)", snaps.len());
    Ok(())
}

async fn ls(s: &Settings, a: LsArgs) -> Result<u8> {
    let repo = s.open().await?;
    let snap = repo.find_snapshot(&a.snapshot).await?;
    let entries = browse::ls(&repo, &snap, &a.path, !a.no_recursive).await?;
    if s.json {
        print_json(&entries)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for e in entries {
        if a.long {
            let n = &e.node;
            let t = Utc
                .timestamp_opt(n.mtime, n.mtime_nsec)
                .single()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
            writeln!(
                out,
                "{:?} {:o} {:>5} {:>5} {:>12} {} {}",
                n.kind,
                n.mode,
                n.uid,
                n.gid,
                n.size,
                t.unwrap_or_default(),
                e.path
            )?;
        } else {
            writeln!(out, "{}", e.path)?;
        }
    }
    Ok(0)
}

async fn diff(s: &Settings, a: DiffArgs) -> Result<u8> {
    let repo = s.open().await?;
    let x = repo.find_snapshot(&a.from).await?;
    let y = repo.find_snapshot(&a.to).await?;
    let d = browse::diff(&repo, &x, &y).await?;
    if s.json {
        print_json(&d)?;
    } else {
        for e in &d {
            println!("{}    {}", e.change, e.path);
        }
        let count = |c: &str| d.iter().filter(|e| e.change == c).count();
        println!(
            "{} added, {} removed, {} modified, {} metadata only",
            count("+"),
            count("-"),
            count("M") + count("T"),
            count("U")
        );
    }
    Ok(0)
}

async fn dump(s: &Settings, a: DumpArgs) -> Result<u8> {
    let repo = s.open().await?;
    let snap = repo.find_snapshot(&a.snapshot).await?;
    if a.format.as_deref() == Some("tar") {
        return tar_out(repo, snap, a.path).await;
    }
    to_stdout(move |h, out| browse::dump(repo, h, &snap, &a.path, out).map(|_| ())).await
}

async fn verify(s: &Settings, a: VerifyArgs) -> Result<u8> {
    let Some(snapshot) = a.snapshot.filter(|_| !a.wal) else {
        return crate::cmd_pg::verify_wal(s).await;
    };
    let repo = s.open().await?;
    // A job id needs the catalog; a snapshot id does not.
    let cat = if uuid::Uuid::parse_str(&snapshot).is_ok() {
        Some(s.catalog().await?)
    } else {
        s.catalog().await.ok()
    };
    let r = backup_core::service::verify::verify(
        cat.as_deref(),
        &repo,
        &snapshot,
        &s.actor(),
        &s.bar(),
    )
    .await?;
    print_verification(s, &r)
}

/// Prints a verification (local, or from `POST /api/v1/backup/verify/{id}`); exit 1 when it
/// failed.
pub fn print_verification(
    s: &Settings,
    v: &backup_core::service::verify::Verification,
) -> Result<u8> {
    let r = &v.report;
    if s.json {
        print_json(v)?;
    } else {
        for e in &r.errors {
            println!("FAILED {}: {}", e.path, e.message);
        }
        println!(
            "snapshot {}: {} files, {} verified{}",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.files,
            size(r.bytes),
            if r.ok {
                ", all match".to_string()
            } else {
                format!(", {} FAILED", r.errors.len())
            }
        );
    }
    Ok(if r.ok { 0 } else { 1 })
}

async fn check_cmd(s: &Settings, a: CheckArgs) -> Result<u8> {
    let subset = match &a.read_data_subset {
        Some(p) => {
            let n: f64 = p
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|n: &f64| (0.0..=100.0).contains(n))
                .with_context(|| {
                    format!("--read-data-subset {p:?}: expected a percentage such as 10%")
                })?;
            Some(n)
        }
        None => None,
    };
    let repo = s.open().await?;
    let r = check::check(
        &repo,
        &check::CheckOptions {
            read_data: a.read_data,
            read_data_subset: subset,
        },
        &s.bar(),
    )
    .await?;
    if s.json {
        print_json(&r)?;
    } else {
        println!(
            "checked {} snapshots, {} packs ({} read), {} blobs",
            r.snapshots, r.packs, r.packs_read, r.blobs
        );
        for w in &r.warnings {
            println!("warning: {w}");
        }
        for e in &r.errors {
            match &e.pack {
                Some(p) => println!("ERROR [{}] pack {p}: {}", e.kind, e.message),
                None => println!("ERROR [{}] {}", e.kind, e.message),
            }
            if !e.snapshots.is_empty() {
                println!("  affects snapshots: {}", e.snapshots.join(", "));
            }
            for p in e.paths.iter().take(20) {
                println!("  affects: {p}");
            }
            let total = e.paths_total.max(e.paths.len());
            if total > 20.min(e.paths.len()) {
                println!("  … {} paths affected in all", total);
            }
        }
        println!(
            "{}",
            if r.ok {
                "no errors found"
            } else {
                "repository has errors"
            }
        );
    }
    Ok(if !r.ok {
        1
    } else if r.warnings.is_empty() {
        0
    } else {
        WARNING
    })
}

async fn forget_cmd(s: &Settings, a: ForgetArgs) -> Result<u8> {
    if !a.ids.is_empty() {
        let any_rule = a.keep_last.is_some()
            || a.keep_hourly.is_some()
            || a.keep_daily.is_some()
            || a.keep_weekly.is_some()
            || a.keep_monthly.is_some()
            || a.keep_yearly.is_some()
            || a.keep_within.is_some();
        if any_rule {
            bail!("give snapshot ids or --keep-* rules, not both");
        }
        let repo = s.open().await?;
        if !a.force {
            let now = chrono::Utc::now();
            for id in &a.ids {
                if let Ok(snap) = repo.find_snapshot(id).await {
                    if let Some(until) = snap.retention_until.filter(|u| *u > now) {
                        bail!(
                            "snapshot {} is kept until {} (--retention-days); add --force to remove it anyway",
                            snap.id.short(),
                            until.format("%Y-%m-%d %H:%M UTC")
                        );
                    }
                }
            }
        }
        let removed = forget::forget_ids(&repo, &a.ids, a.dry_run).await?;
        if s.json {
            print_json(&json!({"removed": removed, "dry_run": a.dry_run}))?;
        } else {
            for id in &removed {
                println!(
                    "{} snapshot {}",
                    if a.dry_run { "would remove" } else { "removed" },
                    &id[..8]
                );
            }
        }
        if a.prune && !a.dry_run {
            let p = prune::prune(
                &repo,
                &prune::PruneOptions::default(),
                &backup_core::progress::NoProgress,
            )
            .await?;
            if !s.json {
                print_prune(&p);
            }
        }
        return Ok(0);
    }
    let tz: chrono_tz::Tz =
        a.tz.parse()
            .map_err(|_| anyhow::anyhow!("--tz {:?}: not an IANA time zone name", a.tz))?;
    let policy = forget::RetentionPolicy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a
            .keep_within
            .as_deref()
            .map(forget::parse_duration)
            .transpose()?,
        timezone: Some(tz),
    };
    let repo = s.open().await?;
    let d = forget::forget(&repo, &policy, a.dry_run).await?;
    let removed = d.iter().filter(|x| !x.keep).count();
    let pr = if a.prune && !a.dry_run {
        Some(
            prune::prune(
                &repo,
                &prune::PruneOptions::default(),
                &backup_core::progress::NoProgress,
            )
            .await?,
        )
    } else {
        None
    };
    if s.json {
        print_json(
            &json!({"decisions": d, "removed": removed, "dry_run": a.dry_run, "prune": pr}),
        )?;
    } else {
        let mut t = table(&["ID", "Time (UTC)", "Decision", "Reasons"]);
        for x in &d {
            t.add_row(vec![
                x.id[..8].to_string(),
                x.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                if x.keep {
                    "keep".into()
                } else if a.dry_run {
                    "would remove".into()
                } else {
                    "removed".into()
                },
                x.reasons.join(", "),
            ]);
        }
        println!("{t}");
        println!(
            "{} kept, {} {}",
            d.len() - removed,
            removed,
            if a.dry_run {
                "would be removed"
            } else {
                "removed"
            }
        );
        if let Some(p) = pr {
            print_prune(&p);
        }
    }
    Ok(0)
}

fn print_prune(p: &prune::PruneReport) {
    let would = if p.dry_run { "would be " } else { "" };
    println!(
        "prune{}: {} unused packs {would}deleted, {} packs {would}repacked, {} unreferenced packs {would}deleted; \
         {} {would}freed ({} {would}rewritten); {} blobs kept, {} {would}removed",
        if p.dry_run { " (dry run)" } else { "" },
        p.packs_deleted,
        p.packs_repacked,
        p.unreferenced_packs_deleted,
        size(p.bytes_freed),
        size(p.bytes_repacked),
        p.blobs_used,
        p.blobs_removed
    );
    if p.partial_uploads_deleted > 0 {
        println!(
            "removed {} partial upload(s) left by interrupted writes",
            p.partial_uploads_deleted
        );
    }
}

async fn prune_cmd(s: &Settings, a: PruneArgs) -> Result<u8> {
    if !(0.0..=100.0).contains(&a.max_unused) {
        bail!("--max-unused must be a percentage between 0 and 100");
    }
    let repo = s.open().await?;
    let r = prune::prune(
        &repo,
        &prune::PruneOptions {
            dry_run: a.dry_run,
            max_unused_percent: a.max_unused,
        },
        &s.bar(),
    )
    .await?;
    if s.json {
        print_json(&r)?;
    } else {
        print_prune(&r);
    }
    Ok(0)
}

async fn key(s: &Settings, k: KeyCommand) -> Result<u8> {
    let repo = s.open().await?;
    let store = repo.store().clone();
    match k {
        KeyCommand::Add { new_password_file } => {
            let pw = crate::settings::read_password(
                new_password_file.as_deref(),
                "DBM_NEW_PASSWORD",
                "--new-password-file",
                "new password",
                true,
            )?;
            let id = keys::add_key(&*store, repo.key(), &pw, Default::default()).await?;
            if s.json {
                print_json(&json!({"added": id}))?;
            } else {
                println!("added key {}", &id[..8]);
            }
        }
        KeyCommand::List => {
            let list = keys::list_keys(&*store, repo.key_id()).await?;
            if s.json {
                print_json(&list)?;
            } else {
                let mut t = table(&["", "ID", "Created (UTC)", "Host", "User"]);
                for k in &list {
                    t.add_row(vec![
                        if k.current { "*".into() } else { String::new() },
                        k.id[..8].to_string(),
                        k.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                        k.hostname.clone(),
                        k.username.clone(),
                    ]);
                }
                println!("{t}");
            }
        }
        KeyCommand::Remove { id } => {
            let removed = keys::remove_key(&*store, &id, repo.key_id()).await?;
            if s.json {
                print_json(&json!({"removed": removed}))?;
            } else {
                println!("removed key {}", &removed[..8]);
            }
        }
    }
    Ok(0)
}

/// The repository lines of `status`.
pub fn print_repo_status(st: &status::RepoStatus) {
    println!(
        "repository       {} ({})",
        st.location,
        &st.repository_id[..8]
    );
    println!("snapshots        {}", st.snapshots);
    match (&st.last_snapshot, st.last_snapshot_time) {
        (Some(id), Some(t)) => println!(
            "last snapshot    {} at {}{}",
            &id[..8],
            t.format("%Y-%m-%d %H:%M:%S UTC"),
            if st.last_snapshot_partial == Some(true) {
                " (partial)"
            } else {
                ""
            }
        ),
        _ => println!("last snapshot    none"),
    }
    println!(
        "repository size  {} in {} packs, {} blobs",
        size(st.total_size),
        st.packs,
        st.blobs
    );
    println!(
        "data             {} unique ({} stored)",
        size(st.unique_raw_bytes),
        size(st.unique_stored_bytes)
    );
    println!("compression      {:.2}x", st.compression_ratio);
    println!(
        "deduplication    {:.2}x ({} across all snapshots)",
        st.dedup_ratio,
        size(st.logical_bytes)
    );
    println!("space saving     {:.1}%", st.space_saving_percent);
}
