//! PostgreSQL commands: `wal-push`, `wal-fetch`, `wal-config`, `wal-prune`, `verify --wal`, and
//! the PostgreSQL side of `restore` (logical into a server, or point in time into a data
//! directory). The logic is in `backup_core::target::postgres`; this file parses and prints.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use backup_core::repository::{keyfile, Repository};
use backup_core::target::postgres::{self as pg, logical, pitr, wal, PgConn};
use backup_core::target::TargetSpec;
use clap::Args;
use serde_json::json;

use crate::output::{size, table};
use crate::settings::Settings;

/// Flags of `restore` for PostgreSQL snapshots (used with `--targets postgres`).
#[derive(Debug, Args, Default)]
pub struct PgRestoreArgs {
    /// PostgreSQL (logical): restore only this database of the snapshot (repeatable).
    #[arg(long = "database")]
    pub databases: Vec<String>,
    /// PostgreSQL (logical): restore the one selected database under this name (created if missing).
    #[arg(long)]
    pub target_database: Option<String>,
    /// PostgreSQL (logical): objects are owned by the connecting role (pg_restore --no-owner).
    #[arg(long)]
    pub no_owner: bool,
    /// PostgreSQL (logical): restore roles and tablespaces (globals.sql) first, so owners and grants match.
    #[arg(long)]
    pub with_globals: bool,
    /// PostgreSQL (point in time): recover to this time, e.g. 2026-12-04T22:40:00+05:00; without an offset it is UTC.
    #[arg(long, conflicts_with = "to_lsn")]
    pub to_time: Option<String>,
    /// PostgreSQL (point in time): recover to this WAL position, e.g. 0/3000060.
    #[arg(long)]
    pub to_lsn: Option<String>,
    /// PostgreSQL (point in time): start the restored cluster on a spare port and report whether recovery reached the target.
    #[arg(long)]
    pub check: bool,
    /// PostgreSQL (point in time): key file the restored server's restore_command uses (default DBM_KEY_FILE).
    #[arg(long, env = "DBM_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// PostgreSQL (point in time): use this restore_command instead of `<this program> wal-fetch %f %p`.
    #[arg(long)]
    pub restore_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The WAL file (PostgreSQL's %p, relative to the data directory).
    pub path: PathBuf,
    /// Open the repository with this key file (fast; see wal-config). Else the password.
    #[arg(long, env = "DBM_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The WAL file name PostgreSQL asks for (%f).
    pub name: String,
    /// Where to write it (%p).
    pub dest: PathBuf,
    /// Open the repository with this key file (fast; see wal-config). Else the password.
    #[arg(long, env = "DBM_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WalConfigArgs {
    /// Key file for archive_command/restore_command; created (with its own key slot) if missing.
    #[arg(long, env = "DBM_KEY_FILE")]
    pub key_file: PathBuf,
    /// Apply the settings to the server with ALTER SYSTEM and reload (archive_mode needs a restart).
    #[arg(long)]
    pub apply: bool,
    /// The server for --apply: postgres (PG* variables) or postgres:postgres://user@host:port/db.
    #[arg(long, default_value = "postgres")]
    pub target: String,
    /// Program path written into the commands (default: this program).
    #[arg(long)]
    pub program: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WalPruneArgs {
    /// Point-in-time window to keep (e.g. 7d, 2w); WAL any retained base backup needs is always kept.
    #[arg(long, default_value = "7d")]
    pub window: String,
    /// Show what would be deleted; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// PostgreSQL runs these commands and treats exit codes above 125 as fatal; a command that
/// writes into a child's stdin must also survive the child exiting early.
fn ignore_sigpipe() {
    // SAFETY: changes only this process's SIGPIPE disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Opens the repository with a key file when one is given, else as every command does.
pub async fn open_repo(s: &Settings, key_file: Option<&Path>) -> Result<Arc<Repository>> {
    match key_file {
        Some(k) => {
            let store = backup_core::store::open_store_with(&s.repo, false, &s.config.storage)?;
            let repo = keyfile::open_with_key_file(store, k).await?;
            repo.set_no_lock(s.no_lock);
            Ok(Arc::new(repo))
        }
        None => s.open().await,
    }
}

/// Resolves `postgres`, `postgres:<url>` or `postgres:<name>` (a config entry whose value is a
/// `postgres:` spec) to connection parameters.
pub fn conn_of(s: &Settings, spec: &str) -> Result<PgConn> {
    let spec = s.target(spec);
    let arg = match spec.split_once(':') {
        Some(("postgres", a)) => a.to_string(),
        None if spec == "postgres" => String::new(),
        _ => bail!(
            "{:?} is not a postgres target (postgres, postgres:postgres://…, or a config name)",
            pg::redact_url(&spec)
        ),
    };
    if !arg.is_empty() && !arg.contains("://") {
        // A name from the config file.
        let named = s.target(&arg);
        if named == arg {
            bail!("postgres:{arg}: no target named {arg:?} in the config file");
        }
        return conn_of(s, &named);
    }
    Ok(PgConn::parse(&arg)?)
}

/// Replaces `postgres:<name>` specs by the config entry `name` stands for (a `postgres:` spec
/// or a `postgres://` URL), so the core only ever sees the environment or a URL.
pub fn resolve_specs(s: &Settings, specs: Vec<TargetSpec>) -> Result<Vec<TargetSpec>> {
    specs
        .into_iter()
        .map(|t| match t {
            TargetSpec::Postgres(a) if !a.is_empty() && !a.contains("://") => {
                let named = s.target(&a);
                if named == a {
                    bail!("postgres:{a}: no target named {a:?} in the config file (expected postgres, postgres:postgres://user@host:port/db or a config name)");
                }
                match named.parse::<TargetSpec>()? {
                    p @ TargetSpec::Postgres(_) => Ok(p),
                    other => bail!("postgres:{a}: the config entry {a:?} is {other}, not a postgres target"),
                }
            }
            t => Ok(t),
        })
        .collect()
}

pub async fn wal_push(s: &Settings, a: WalPushArgs) -> Result<u8> {
    let t = std::time::Instant::now();
    let repo = open_repo(s, a.key_file.as_deref()).await?;
    let opened = t.elapsed();
    let outcome = wal::push(&repo, &a.path)
        .await
        .with_context(|| format!("wal-push {}", a.path.display()))?;
    tracing::info!(
        "wal-push {}: {:?} (open {:.3}s, total {:.3}s)",
        a.path.display(),
        outcome,
        opened.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    if s.json {
        print_json(
            &json!({"file": a.path, "outcome": outcome, "seconds": t.elapsed().as_secs_f64()}),
        )?;
    }
    Ok(0)
}

pub async fn wal_fetch(s: &Settings, a: WalFetchArgs) -> Result<u8> {
    let repo = open_repo(s, a.key_file.as_deref()).await?;
    if wal::fetch(&repo, &a.name, &a.dest).await? {
        Ok(0)
    } else {
        // PostgreSQL asks for files that may not exist (the next timeline's history, the segment
        // after the last one): say so quietly and exit 1.
        tracing::info!("wal-fetch: {} is not in the archive", a.name);
        if s.json {
            print_json(&json!({"file": a.name, "found": false}))?;
        }
        Ok(1)
    }
}

fn shell_word(p: &str) -> String {
    if p.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        p.to_string()
    } else {
        format!("'{}'", p.replace('\'', "'\\''"))
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(backup_core::target::files::absolute(p)?)
}

/// `<program> --repo <repo> … --key-file <file>`: the prefix of archive/restore commands.
fn command_prefix(s: &Settings, program: Option<&Path>, key_file: &Path) -> Result<String> {
    let prog = match program {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().context("locating this program")?,
    };
    let repo = if s.repo.contains("://") {
        s.repo.clone()
    } else {
        absolute(Path::new(&s.repo))?.display().to_string()
    };
    Ok(format!(
        "{} --repo {} --key-file {}",
        shell_word(&prog.display().to_string()),
        shell_word(&repo),
        shell_word(&absolute(key_file)?.display().to_string())
    ))
}

pub async fn wal_config(s: &Settings, a: WalConfigArgs) -> Result<u8> {
    let mut created = None;
    if !a.key_file.exists() {
        let repo = s.open().await?;
        created = Some(keyfile::create_key_file(&repo, &a.key_file).await?);
    } else {
        // Prove the file opens this repository before telling anyone to use it.
        open_repo(s, Some(&a.key_file)).await?;
    }
    // The global flag order: `--repo` belongs before the subcommand; `--key-file` after it.
    let prefix = command_prefix(s, a.program.as_deref(), &a.key_file)?;
    let (pre, key) = prefix
        .rsplit_once(" --key-file ")
        .expect("prefix has --key-file");
    let settings = wal::archive_settings(pre);
    let settings: Vec<(String, String)> = settings
        .into_iter()
        .map(|(k, v)| {
            let v = match k {
                "archive_command" => {
                    v.replace(" wal-push %p", &format!(" wal-push --key-file {key} %p"))
                }
                "restore_command" => v.replace(
                    " wal-fetch %f %p",
                    &format!(" wal-fetch --key-file {key} %f %p"),
                ),
                _ => v,
            };
            (k.to_string(), v)
        })
        .collect();
    let mut applied = Vec::new();
    let mut restart = false;
    if a.apply {
        let conn = conn_of(s, &a.target)?;
        let c = conn.connect(&conn.maintenance_db()).await?;
        for (k, v) in &settings {
            if k == "restore_command" {
                continue; // only for a server in recovery; restore writes it itself
            }
            let cur: String = c
                .query_one("SELECT current_setting($1)", &[&k])
                .await
                .with_context(|| format!("reading {k}"))?
                .get(0);
            // Never lower wal_level (logical includes replica) or replace a chosen timeout.
            if (k == "wal_level" && cur != "minimal") || (k == "archive_timeout" && cur != "0") {
                continue;
            }
            c.batch_execute(&format!("ALTER SYSTEM SET {k} = {}", sql_literal(v)))
                .await
                .with_context(|| format!("ALTER SYSTEM SET {k}"))?;
            if (k == "archive_mode" || k == "wal_level") && cur != *v {
                restart = true;
            }
            applied.push(k.clone());
        }
        c.batch_execute("SELECT pg_reload_conf()").await?;
    }
    if s.json {
        print_json(&json!({
            "settings": settings.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "key_slot_created": created,
            "applied": applied,
            "restart_needed": restart,
        }))?;
        return Ok(0);
    }
    if let Some(id) = &created {
        println!(
            "# created key file {} (key slot {}); keep it readable only by the server's OS user",
            a.key_file.display(),
            &id[..8]
        );
    }
    println!(
        "# postgresql.conf settings that archive WAL into {}",
        s.repo
    );
    for (k, v) in &settings {
        if k == "restore_command" {
            println!("# for a restored server (restore writes it itself):");
            println!("# {k} = {}", sql_literal(v));
        } else {
            println!("{k} = {}", sql_literal(v));
        }
    }
    if a.apply {
        println!(
            "# applied with ALTER SYSTEM and reloaded{}",
            if restart {
                "; RESTART the server for archive_mode/wal_level to take effect"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

pub async fn wal_prune(s: &Settings, a: WalPruneArgs) -> Result<u8> {
    let window = backup_core::engine::forget::parse_duration(&a.window)?;
    let repo = s.open().await?;
    let r = wal::prune_wal(&repo, window, chrono::Utc::now(), a.dry_run).await?;
    if s.json {
        print_json(&r)?;
    } else {
        for n in &r.deleted {
            println!("{} {n}", if a.dry_run { "would delete" } else { "deleted" });
        }
        println!(
            "{} WAL file(s) {}, {} kept (window {}; base backups covering it: {})",
            r.deleted.len(),
            if a.dry_run {
                "would be deleted"
            } else {
                "deleted"
            },
            r.kept,
            a.window,
            if r.window_bases.is_empty() {
                "none: nothing is deleted without a base backup".to_string()
            } else {
                r.window_bases
                    .iter()
                    .map(|b| b[..8].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    Ok(0)
}

pub async fn verify_wal(s: &Settings) -> Result<u8> {
    let repo = s.open().await?;
    let r = wal::verify_wal(&repo).await?;
    if s.json {
        print_json(&r)?;
    } else {
        for m in &r.missing {
            println!("MISSING {m}");
        }
        for w in &r.warnings {
            println!("warning: {w}");
        }
        println!(
            "WAL archive: {} segments from {} (base backup {}) to {}{}",
            r.segments,
            r.first_segment.as_deref().unwrap_or("-"),
            r.oldest_base.as_deref().map(|b| &b[..8]).unwrap_or("none"),
            r.newest_segment.as_deref().unwrap_or("-"),
            if r.ok {
                ", continuous".to_string()
            } else {
                format!(", {} MISSING", r.missing.len())
            }
        );
    }
    Ok(if r.ok { 0 } else { 1 })
}

/// Whether a `restore` invocation is about PostgreSQL (`--targets postgres…`).
pub fn is_pg_restore(s: &Settings, targets: &[String]) -> bool {
    targets
        .iter()
        .any(|t| t == "postgres" || s.target(t).starts_with("postgres"))
}

/// `restore <snapshot|latest> --targets postgres …`: logical into a server without
/// `--destination`, point in time into a data directory with it.
pub async fn restore(
    s: &Settings,
    snapshot: &str,
    targets: &[String],
    destination: Option<PathBuf>,
    a: PgRestoreArgs,
) -> Result<u8> {
    ignore_sigpipe();
    let spec = match targets {
        [one] => one.clone(),
        _ => bail!("restore --targets postgres takes one postgres target"),
    };
    let pitr_flags = a.to_time.is_some() || a.to_lsn.is_some() || a.check;
    match destination {
        Some(dest) => restore_pitr(s, snapshot, dest, a).await,
        None if pitr_flags => bail!(
            "--to-time, --to-lsn and --check need --destination DIR (the data directory to write)"
        ),
        None => {
            let conn = conn_of(s, &spec)?;
            restore_logical(s, snapshot, conn, a).await
        }
    }
}

async fn restore_logical(
    s: &Settings,
    snapshot: &str,
    conn: PgConn,
    a: PgRestoreArgs,
) -> Result<u8> {
    let repo = s.open().await?;
    let snap = if snapshot == "latest" {
        let all = repo.snapshots().await?;
        all.into_iter()
            .rev()
            .find(|x| {
                x.target_kind == "postgres"
                    && x.meta.get("pg_backup").and_then(|v| v.as_str()) == Some("logical")
            })
            .context("the repository has no logical PostgreSQL backup")?
    } else {
        repo.find_snapshot(snapshot).await?
    };
    let opts = logical::LogicalRestoreOptions {
        conn,
        databases: a.databases,
        target_database: a.target_database,
        no_owner: a.no_owner,
        with_globals: a.with_globals,
    };
    let r = repo
        .locked(
            false,
            "restore",
            logical::restore_logical(&repo, &snap, &opts),
        )
        .await?;
    if s.json {
        print_json(&r)?;
    } else {
        let mut t = table(&["Database", "Restored as", "Created", "Dump size"]);
        for d in &r.databases {
            t.add_row(vec![
                d.source.clone(),
                d.target.clone(),
                if d.created {
                    "yes".into()
                } else {
                    "no (existed)".into()
                },
                size(d.bytes),
            ]);
        }
        println!("{t}");
        println!(
            "restored snapshot {} into {}{}",
            &r.snapshot[..8],
            r.server,
            if r.globals {
                " (with roles and tablespaces)"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

async fn restore_pitr(s: &Settings, snapshot: &str, dest: PathBuf, a: PgRestoreArgs) -> Result<u8> {
    let target = match (&a.to_time, &a.to_lsn) {
        (Some(t), _) => pitr::RecoveryTarget::Time(pitr::parse_time(t)?),
        (None, Some(l)) => pitr::RecoveryTarget::Lsn(pg::parse_lsn(l)?),
        (None, None) => pitr::RecoveryTarget::Latest,
    };
    let restore_command = match (&a.restore_command, &a.key_file) {
        (Some(c), _) => c.clone(),
        (None, Some(k)) => {
            let prefix = command_prefix(s, None, k)?;
            let (pre, key) = prefix.rsplit_once(" --key-file ").expect("prefix has --key-file");
            format!("{pre} wal-fetch --key-file {key} %f %p")
        }
        (None, None) => bail!(
            "a point-in-time restore needs a key file for the restored server's restore_command: \
             --key-file FILE or DBM_KEY_FILE (make one with wal-config --key-file FILE), or give --restore-command"
        ),
    };
    let repo = open_repo(s, a.key_file.as_deref()).await?;
    let mut opts = pitr::PitrOptions::new(dest, target, restore_command);
    opts.check = a.check;
    opts.base = (snapshot != "latest").then(|| snapshot.to_string());
    let r = repo
        .locked(false, "restore", pitr::restore_pitr(&repo, &opts))
        .await?;
    let reached = r.check.as_ref().map(|c| c.reached);
    if s.json {
        print_json(&r)?;
    } else {
        println!(
            "restored base backup {} (ended {} UTC) to {}",
            &r.plan.base.snapshot[..8],
            r.plan.base.stop_time.format("%Y-%m-%d %H:%M:%S"),
            r.destination
        );
        println!(
            "recovery target: {}{}; WAL {} .. {} ({} segments, all archived; newest {} written {})",
            r.target,
            if matches!(target, pitr::RecoveryTarget::Time(_)) {
                " (UTC)"
            } else {
                ""
            },
            r.plan.first_segment,
            r.plan.last_segment,
            r.plan.segments,
            r.plan.newest_segment,
            pitr::format_time(&r.plan.newest_written)
        );
        for (k, v) in &r.settings {
            println!("  {k} = {}", sql_literal(v));
        }
        match &r.check {
            None => println!(
                "start it with: pg_ctl -D {} start   (it replays WAL to the target, then promotes)",
                r.destination
            ),
            Some(c) => {
                for l in &c.log {
                    println!("  log: {l}");
                }
                println!(
                    "check: {} after {:.1}s",
                    if c.reached {
                        "recovery reached the target and the server was promoted"
                    } else if c.promoted {
                        "the server was promoted but the log does not show where recovery stopped"
                    } else {
                        "recovery did NOT reach the target"
                    },
                    c.seconds
                );
            }
        }
    }
    Ok(if reached == Some(false) { 1 } else { 0 })
}
