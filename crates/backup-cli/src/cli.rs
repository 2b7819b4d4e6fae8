//! Stage one of parsing: the raw flags, as clap sees them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Encrypted, deduplicated backups of files (PostgreSQL and MinIO targets come next),
/// with restore, verification and retention.
///
/// The repository is a local folder (default ./data/backups) holding encrypted packs,
/// index files and snapshot manifests. Set the password with DBM_PASSWORD or --password-file;
/// on a terminal you are asked for it.
///
/// Exit codes: 0 ok, 1 error, 2 warning (e.g. a partial backup: some files unreadable).
#[derive(Debug, Parser)]
#[command(
    name = "data-backup-manager",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Repository location: a local path (default ./data/backups, or `repository:` in the config
    /// file), or s3://bucket/prefix, gs://bucket/prefix, az://container/prefix (settings from
    /// AWS_* / MINIO_* variables or the config's `storage:` section).
    #[arg(long, short = 'r', global = true, env = "DBM_REPOSITORY")]
    pub repo: Option<String>,
    /// Read the repository password from this file (first line). Else DBM_PASSWORD, else a prompt.
    #[arg(long, global = true, env = "DBM_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Config file (default ~/.vrooli/data-backup-manager/config.yaml).
    #[arg(long, global = true, env = "DBM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Remote mode: call the data-backup-manager API at this URL (e.g. http://localhost:20010)
    /// instead of opening the repository; the token comes from DBM_API_TOKEN.
    #[arg(long, global = true, env = "DBM_API_URL")]
    pub api_url: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Log what happens to stderr (warnings are always shown; also: DBM_LOG=debug).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Read without taking a lock (for a read-only repository). Commands that change the
    /// repository still lock.
    #[arg(long, global = true)]
    pub no_lock: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up targets (e.g. files:/srv/data); prints the new snapshot.
    Backup(BackupArgs),
    /// Restore a snapshot into a directory (or as a tar stream).
    Restore(RestoreArgs),
    /// List backups (snapshots), with the PRD's filters.
    #[command(alias = "snapshots")]
    List(ListArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Write one file of a snapshot to stdout (or a directory as tar with --format tar).
    Dump(DumpArgs),
    /// Read back every file of a snapshot and compare it with its digest.
    Verify(VerifyArgs),
    /// Check the repository's structure, and with --read-data all stored data.
    Check(CheckArgs),
    /// Remove snapshots according to a retention policy.
    Forget(ForgetArgs),
    /// Delete data no snapshot uses.
    Prune(PruneArgs),
    /// Copy snapshots to another repository (local <-> S3), re-encrypted and deduplicated there.
    Copy(crate::cmd_copy::CopyArgs),
    /// Manage the repository's keys (passwords).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Rebuild the index from the packs' own headers (after index files were lost or damaged).
    RepairIndex,
    /// Show system health, active jobs, the last successful backup and storage usage.
    Status(crate::cmd_schedule::StatusArgs),
    /// Manage backup schedules (cron in a time zone).
    #[command(subcommand)]
    Schedule(crate::cmd_schedule::ScheduleCommand),
    /// Run the scheduler in the foreground (scheduled backups, retries, retention, restore drills).
    RunScheduler(crate::cmd_schedule::RunSchedulerArgs),
    /// Inspect or rebuild the catalog of jobs.
    #[command(subcommand)]
    Catalog(crate::cmd_schedule::CatalogCommand),
    /// Manage restore points (named sets of snapshots kept by retention).
    #[command(subcommand)]
    RestorePoint(crate::cmd_schedule::RestorePointCommand),
    /// Show a backup job of the catalog (JSON).
    Job(IdArg),
    /// Show a restore job of the catalog (JSON).
    RestoreStatus(IdArg),
    /// Send an event (scenario.deployed, postgres.schema_updated): queues the backups it asks for.
    Event(EventArgs),
    /// Print the metrics in the Prometheus text format.
    Metrics,
    /// Print the server's OpenAPI document.
    ApiDoc,
    /// Show the version.
    Version,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pub pack_size_mib: u32,
    /// zstd level for new data (1 = fastest … 19 = smallest).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression_level: i32,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Targets, comma-separated or repeated: files:<path>, or names from the config file.
    #[arg(required = true, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// full: read every file; incremental (default once a parent exists): skip unchanged files.
    #[arg(long = "type", value_parser = ["full", "incremental"])]
    pub backup_type: Option<String>,
    /// Keep this snapshot at least this many days (forget will not remove it before).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=36500))]
    pub retention_days: Option<u32>,
    /// Human-readable description.
    #[arg(long)]
    pub description: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Exclude pattern (glob; without `/` it matches names at any depth). Repeatable.
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Parent snapshot for change detection (default: newest of the same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    pub snapshot: String,
    /// Destination directory; source /a/b is restored at DIR/a/b. For a minio snapshot:
    /// minio:<bucket>[/prefix] (or minio: for each bucket under its own name); the server is
    /// the backup's (AWS_*/MINIO_* variables) unless DBM_DEST_AWS_* variables name another.
    #[arg(long, short = 't', required_unless_present = "format")]
    pub destination: Option<PathBuf>,
    /// Restore only this path of the snapshot (absolute, repeatable).
    #[arg(long = "include", short = 'i')]
    pub include: Vec<PathBuf>,
    /// Restore only these targets of the snapshot (e.g. files:/srv/data), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Re-read every restored file and compare it with the snapshot's digest.
    #[arg(long)]
    pub verify: bool,
    /// Restore into a non-empty destination, replacing entries with the same names.
    #[arg(long)]
    pub overwrite: bool,
    /// `tar`: write the snapshot (or the --include path) as a tar stream to stdout.
    #[arg(long, value_parser = ["tar"])]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this type (full, incremental).
    #[arg(long = "type", value_parser = ["full", "incremental"])]
    pub backup_type: Option<String>,
    /// Only backups of this target: a kind (`files`) or a spec (`files:/srv/data`).
    #[arg(long)]
    pub target: Option<String>,
    /// Only backups taken on or after this date (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, prefix or `latest`.
    pub snapshot: String,
    /// Path inside the snapshot (default /).
    #[arg(default_value = "/")]
    pub path: PathBuf,
    /// Only the entries directly under PATH.
    #[arg(long)]
    pub no_recursive: bool,
    /// Long listing (mode, owner, size, time).
    #[arg(long, short = 'l')]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Older snapshot.
    pub from: String,
    /// Newer snapshot.
    pub to: String,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id, prefix or `latest`.
    pub snapshot: String,
    /// Absolute path of the file (or directory with --format tar) inside the snapshot.
    pub path: PathBuf,
    /// `tar`: write PATH (a directory) as a tar stream.
    #[arg(long, value_parser = ["tar"])]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Snapshot id, prefix or `latest`.
    pub snapshot: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Read and verify all stored data.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read and verify a random subset of packs: a percentage such as 10% (or 10).
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

/// Snapshots are grouped by host and paths; each rule applies within a group. A snapshot made
/// with --retention-days is kept until that time whatever the rules say. Without any rule or id,
/// only snapshots whose retention time has passed are removed.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Remove these snapshots (ids or prefixes), even damaged ones; no rule is applied.
    pub ids: Vec<String>,
    /// With ids: also remove snapshots whose retention time has not passed.
    #[arg(long)]
    pub force: bool,
    /// Keep the N newest snapshots.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_hourly: Option<u32>,
    /// … of each of the last N days.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,
    /// … of each of the last N weeks (ISO weeks).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,
    /// … of each of the last N years.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within this duration of the newest (e.g. 7d, 2w, 1y6m).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Time zone of the calendar buckets (IANA name; default UTC).
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Show what would be removed; remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be deleted; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Repack packs with more than this percentage of unused bytes.
    #[arg(long, default_value_t = 10.0)]
    pub max_unused: f64,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a key (a new password) to the repository.
    Add {
        /// Read the new password from this file (else DBM_NEW_PASSWORD, else a prompt).
        #[arg(long, env = "DBM_NEW_PASSWORD_FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// List keys.
    List,
    /// Remove a key (not the one in use).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Id (UUID).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    /// Event name: scenario.deployed or postgres.schema_updated.
    pub event: String,
    /// Payload as JSON, e.g. '{"scenario": "my-app"}' or '{"database": "shop"}'.
    #[arg(long, default_value = "{}")]
    pub payload: String,
}
