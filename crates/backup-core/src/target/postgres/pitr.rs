//! Point-in-time restore: a base backup plus archived WAL, written as a data directory that
//! recovers to the target when started (PostgreSQL manual, "Recovering Using a Continuous
//! Archive Backup" and "Recovery Target").
//!
//! Order of work, so that nothing is written for a restore that cannot succeed:
//! 1. choose the base backup: the newest one that ended before the target (`stop_time <= T`,
//!    `stop_lsn <= L`, or simply the newest for `latest`);
//! 2. find where WAL ends on the timeline recovery will follow (`recovery_target_timeline =
//!    'latest'`, through the archived history files); refuse a target after it — for a time,
//!    after the moment the newest archived segment was last written by the server;
//! 3. check that every segment from the base backup's start to the segment holding the target
//!    is archived; name each missing one;
//! 4. only then extract `base.tar` into the destination (its whole-file digest checked), write
//!    `recovery.signal` and append the recovery settings to `postgresql.auto.conf`:
//!    `restore_command`, `recovery_target_time` in UTC with an explicit `+00:00` offset (or
//!    `recovery_target_lsn`), `recovery_target_action = 'promote'`,
//!    `recovery_target_timeline = 'latest'`, and `archive_mode = 'off'` so a trial restore never
//!    archives into the repository (turn it back on when the copy becomes the new primary).
//!
//! Times without an offset are read as UTC; every time is printed back in UTC.
//!
//! `check` then starts the restored cluster on a spare port with a private socket directory
//! and no TCP listener (as the `postgres` OS user when running as root), waits until recovery
//! has ended and the server was promoted, reads the server log for where recovery stopped, and
//! stops it again. The directory stays restorable: it is simply already recovered.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::engine::browse::{find_node, NodeReader};
use crate::error::{Error, Result};
use crate::repository::id::Id;
use crate::repository::Repository;
use crate::target::postgres::base::{not_base, BaseInfo, BASE_TAR};
use crate::target::postgres::wal::{
    self, missing_in, needed_ranges, segment_name, segno_of, ArchiveView, WalName,
};
use crate::target::postgres::{format_lsn, quote_conf};

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay all archived WAL (the end of the newest timeline).
    Latest,
    /// Stop at the first commit after this instant.
    Time(DateTime<Utc>),
    /// Stop at this WAL position.
    Lsn(u64),
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("latest"),
            RecoveryTarget::Time(t) => f.write_str(&format_time(t)),
            RecoveryTarget::Lsn(l) => f.write_str(&format_lsn(*l)),
        }
    }
}

/// A time in UTC with an explicit offset and microseconds, as PostgreSQL parses it:
/// `2026-12-04 22:40:01.123456+00:00`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

/// Parses a recovery target time: RFC 3339 (`2026-12-04T22:40:00+05:00`, `…Z`), or
/// `YYYY-MM-DD HH:MM:SS[.frac]` with an optional offset (`+05:00`, `+0500`, `Z`, ` UTC`).
/// **A time without an offset is UTC.**
///
/// Errors: [`Error::InvalidInput`] naming the text and the accepted forms.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    let mut t2 = t.to_string();
    if t2.len() > 10 && t2.as_bytes()[10] == b'T' {
        t2.replace_range(10..11, " ");
    }
    let t2 = t2
        .strip_suffix(" UTC")
        .or_else(|| t2.strip_suffix('Z'))
        .map(|x| format!("{x}+00:00"))
        .unwrap_or(t2.clone());
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(&t2, f) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&t2, f) {
            return Ok(n.and_utc());
        }
    }
    Err(Error::InvalidInput(format!(
        "time {s:?}: expected e.g. 2026-12-04T22:40:00+05:00 or '2026-12-04 22:40:00' (read as UTC)"
    )))
}

/// Options of [`restore_pitr`].
#[derive(Debug, Clone)]
pub struct PitrOptions {
    /// The data directory to write (must not exist or be empty).
    pub destination: PathBuf,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// Base backup to use (snapshot id or prefix). Default: chosen by the target.
    pub base: Option<String>,
    /// The `restore_command` the restored server runs (`… wal-fetch %f %p`). Required.
    pub restore_command: String,
    /// Start the restored cluster afterwards and report whether recovery reached the target.
    pub check: bool,
    /// OS user that owns the data directory and runs the check (default: `postgres` when
    /// running as root, else the current user).
    pub run_as: Option<String>,
    /// PostgreSQL server binaries for the check (default `/usr/lib/postgresql/<major>/bin`).
    pub bin_dir: Option<PathBuf>,
    /// Longest wait for the check's recovery, seconds (default 900).
    pub check_timeout_secs: u64,
}

impl PitrOptions {
    /// Defaults for `destination`, `target` and `restore_command`.
    pub fn new(
        destination: impl Into<PathBuf>,
        target: RecoveryTarget,
        restore_command: String,
    ) -> Self {
        PitrOptions {
            destination: destination.into(),
            target,
            base: None,
            restore_command,
            check: false,
            run_as: None,
            bin_dir: None,
            check_timeout_secs: 900,
        }
    }
}

/// The plan of a restore, made before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct PitrPlan {
    /// The base backup.
    pub base: BaseInfo,
    /// The timeline recovery ends on.
    pub timeline: u32,
    /// First segment read.
    pub first_segment: String,
    /// Last segment the target needs.
    pub last_segment: String,
    /// Newest archived segment on that timeline.
    pub newest_segment: String,
    /// When the server last wrote the newest segment (UTC).
    pub newest_written: DateTime<Utc>,
    /// Segments needed in all.
    pub segments: u64,
}

/// What the check found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CheckReport {
    /// Recovery ended and the server was promoted (and, for a target, the log says where it
    /// stopped).
    pub reached: bool,
    /// The server left recovery.
    pub promoted: bool,
    /// Port the server ran on (Unix socket only).
    pub port: u16,
    /// Lines of the server log about recovery (where it stopped, the last transaction, errors).
    pub log: Vec<String>,
    /// Seconds from start to the end of recovery.
    pub seconds: f64,
}

/// What [`restore_pitr`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    /// The plan carried out.
    pub plan: PitrPlan,
    /// The target, in UTC.
    pub target: String,
    /// The data directory.
    pub destination: String,
    /// Settings appended to `postgresql.auto.conf`.
    pub settings: BTreeMap<String, String>,
    /// Bytes of `base.tar` extracted.
    pub base_bytes: u64,
    /// The check, when asked for.
    pub check: Option<CheckReport>,
}

fn refuse(reason: String) -> Error {
    Error::Target {
        target: "postgres point-in-time restore".into(),
        reason,
    }
}

/// Chooses the base backup and checks the archive for `target`. Writes nothing.
///
/// Errors: [`Error::Target`] when no base backup ends before the target, when the target is
/// after the newest archived WAL, or naming every missing segment on the way.
pub async fn plan(
    repo: &Repository,
    target: RecoveryTarget,
    base: Option<&str>,
) -> Result<PitrPlan> {
    let bases = wal::base_backups(repo).await?;
    let base =
        match base {
            Some(spec) => {
                let snap = repo.find_snapshot(spec).await?;
                BaseInfo::from_snapshot(&snap).ok_or_else(|| not_base(&snap))?
            }
            None => {
                let fits = |b: &&BaseInfo| match target {
                    RecoveryTarget::Latest => true,
                    RecoveryTarget::Time(t) => b.stop_time <= t,
                    RecoveryTarget::Lsn(l) => b.stop_lsn <= l,
                };
                match bases.iter().rev().find(fits) {
                    Some(b) => b.clone(),
                    None => return Err(refuse(match bases.first() {
                        None => {
                            "the repository has no base backup (run `backup postgres --type base`)"
                                .into()
                        }
                        Some(b) => format!(
                            "no base backup ended before {target}; the oldest ended at {} (LSN {})",
                            format_time(&b.stop_time),
                            format_lsn(b.stop_lsn)
                        ),
                    })),
                }
            }
        };
    match target {
        RecoveryTarget::Time(t) if t < base.stop_time => {
            return Err(refuse(format!(
                "target {} is before base backup {} became consistent ({})",
                format_time(&t),
                &base.snapshot[..8],
                format_time(&base.stop_time)
            )))
        }
        RecoveryTarget::Lsn(l) if l < base.stop_lsn => {
            return Err(refuse(format!(
                "target LSN {} is before base backup {} became consistent ({})",
                format_lsn(l),
                &base.snapshot[..8],
                format_lsn(base.stop_lsn)
            )))
        }
        _ => {}
    }
    let seg = base.wal_segment_size;
    let view = ArchiveView::load(repo, seg).await?;
    // The timeline recovery follows: the newest one descending from the base's.
    let mut tli = base.timeline;
    let mut history = Vec::new();
    if let Some(newest) = view.newest_timeline().filter(|t| *t > base.timeline) {
        let h = view.history(repo, newest).await?;
        if h.iter().any(|s| s.parent == base.timeline) {
            tli = newest;
            history = h;
        }
    }
    let newest = view
        .newest_segment(tli)
        .or_else(|| history.last().and_then(|h| view.newest_segment(h.parent)))
        .cloned()
        .ok_or_else(|| {
            refuse(format!(
                "the WAL archive has no segment on timeline {tli}: archiving into this repository is not working (see wal-config)"
            ))
        })?;
    let newest_written = wal::header(repo, &newest).await?.mtime;
    let path = needed_ranges(
        base.timeline,
        base.start_lsn,
        newest.timeline,
        newest.segno(seg),
        &history,
        seg,
    );
    let end_segno = match target {
        RecoveryTarget::Latest => newest.segno(seg),
        RecoveryTarget::Lsn(l) => {
            if segno_of(l, seg) > newest.segno(seg) {
                return Err(refuse(format!(
                    "target LSN {} is after the newest archived WAL (segment {} ends at {})",
                    format_lsn(l),
                    newest.name,
                    format_lsn((newest.segno(seg) + 1) * seg)
                )));
            }
            segno_of(l, seg)
        }
        RecoveryTarget::Time(t) => {
            if t >= newest_written {
                return Err(refuse(format!(
                    "target {} is after the newest archived WAL (segment {}, last written at {}); \
                     wait for the next segment to be archived (or run SELECT pg_switch_wal() on the server)",
                    format_time(&t),
                    newest.name,
                    format_time(&newest_written)
                )));
            }
            first_written_after(repo, &view, &path, seg, t).await?
        }
    };
    let ranges = needed_ranges(
        base.timeline,
        base.start_lsn,
        newest.timeline,
        end_segno,
        &history,
        seg,
    );
    // A base backup needs at least its own range, even for a target inside it.
    let own_end = segno_of(base.stop_lsn, seg).max(end_segno);
    let ranges = if own_end > end_segno {
        needed_ranges(
            base.timeline,
            base.start_lsn,
            newest.timeline,
            own_end,
            &history,
            seg,
        )
    } else {
        ranges
    };
    let missing = missing_in(&ranges, &view.segments, seg);
    if !missing.is_empty() {
        return Err(refuse(format!(
            "{} WAL segment(s) missing from the archive between base backup {} and the target {target}: {} \
             (recovery cannot pass a gap; choose an earlier target or a newer base backup)",
            missing.len(),
            &base.snapshot[..8],
            missing.join(", ")
        )));
    }
    let first = ranges
        .first()
        .map(|r| segment_name(r.timeline, r.from, seg))
        .unwrap_or_default();
    let last = ranges
        .last()
        .map(|r| segment_name(r.timeline, r.to, seg))
        .unwrap_or_default();
    Ok(PitrPlan {
        timeline: newest.timeline,
        first_segment: first,
        last_segment: last,
        newest_segment: newest.name.clone(),
        newest_written,
        segments: ranges.iter().map(|r| r.to - r.from + 1).sum(),
        base,
    })
}

/// The first archived segment on `path` the server last wrote after `t` (segment mtimes grow
/// along the path): a commit after `t` is in it or before it. Binary search, one object read
/// per step.
async fn first_written_after(
    repo: &Repository,
    view: &ArchiveView,
    path: &[wal::SegmentRange],
    seg: u64,
    t: DateTime<Utc>,
) -> Result<u64> {
    let names: Vec<WalName> = path
        .iter()
        .flat_map(|r| (r.from..=r.to).map(move |s| segment_name(r.timeline, s, seg)))
        .filter(|n| view.segments.contains(n))
        .filter_map(|n| WalName::parse(&n).ok())
        .collect();
    let (mut lo, mut hi) = (0usize, names.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if wal::header(repo, &names[mid]).await?.mtime > t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    names
        .get(lo)
        .or(names.last())
        .map(|n| n.segno(seg))
        .ok_or_else(|| refuse("no archived WAL after the base backup".into()))
}

/// Runs a point-in-time restore (see the module docs).
///
/// Errors: those of [`plan`] (nothing written); [`Error::Destination`] when the destination is
/// not empty; [`Error::Corrupt`] when `base.tar` fails to verify.
pub async fn restore_pitr(repo: &Arc<Repository>, opts: &PitrOptions) -> Result<PitrReport> {
    let plan = plan(repo, opts.target, opts.base.as_deref()).await?;
    let dest = crate::target::files::absolute(&opts.destination)?;
    if dest.exists() {
        let empty = std::fs::read_dir(&dest)
            .map_err(|e| Error::io(&dest, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::Destination {
                path: dest,
                reason: "is not empty; a data directory is restored into an empty or new directory"
                    .into(),
            });
        }
    }
    let snap = repo.find_snapshot(&plan.base.snapshot).await?;
    let node = find_node(repo, &snap, Path::new("/").join(BASE_TAR).as_path()).await?;
    tracing::info!(
        "restoring base backup {} to {} (target {})",
        snap.id.short(),
        dest.display(),
        opts.target
    );
    let run_as = opts.run_as.clone().or_else(|| {
        // SAFETY: geteuid has no preconditions.
        (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string())
    });
    let owner = match &run_as {
        Some(u) => Some(lookup_user(u)?),
        None => None,
    };
    let h = tokio::runtime::Handle::current();
    let r = repo.clone();
    let d = dest.clone();
    let digest_key = repo.key().digest_key;
    let base_bytes = tokio::task::spawn_blocking(move || -> Result<u64> {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&d, e))?;
        let mut reader = HashingReader {
            inner: NodeReader::new(r, h, &node),
            hash: blake3::Hasher::new_keyed(&digest_key),
            n: 0,
        };
        {
            let mut ar = tar::Archive::new(&mut reader);
            ar.set_preserve_permissions(true);
            ar.set_preserve_mtime(true);
            ar.set_unpack_xattrs(false);
            ar.set_overwrite(false);
            ar.unpack(&d).map_err(|e| Error::io(&d, e))?;
        }
        // The rest of the stream (tar padding) still counts for the digest.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| Error::io(&d, e))?;
        if Some(Id(*reader.hash.finalize().as_bytes())) != node.digest {
            return Err(Error::corrupt(
                format!("{BASE_TAR} of the base backup"),
                "the restored bytes do not match the snapshot's digest",
            ));
        }
        Ok(reader.n)
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("restore task failed: {e}")))??;

    let mut settings = BTreeMap::new();
    settings.insert("restore_command".to_string(), opts.restore_command.clone());
    settings.insert("recovery_target_timeline".into(), "latest".into());
    settings.insert("archive_mode".into(), "off".into());
    match opts.target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(t) => {
            settings.insert("recovery_target_time".into(), format_time(&t));
            settings.insert("recovery_target_action".into(), "promote".into());
        }
        RecoveryTarget::Lsn(l) => {
            settings.insert("recovery_target_lsn".into(), format_lsn(l));
            settings.insert("recovery_target_action".into(), "promote".into());
        }
    }
    write_recovery_files(&dest, &settings, &snap.id.short(), opts.target)?;
    if let Some((uid, gid)) = owner {
        chown_tree(&dest, uid, gid)?;
    }
    let check = if opts.check {
        Some(check(&dest, run_as.as_deref(), opts).await?)
    } else {
        None
    };
    Ok(PitrReport {
        target: opts.target.to_string(),
        destination: dest.display().to_string(),
        settings,
        base_bytes,
        check,
        plan,
    })
}

struct HashingReader<R> {
    inner: R,
    hash: blake3::Hasher,
    n: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

fn write_recovery_files(
    dest: &Path,
    settings: &BTreeMap<String, String>,
    snap: &str,
    target: RecoveryTarget,
) -> Result<()> {
    use std::io::Write;
    for stale in ["postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(dest.join(stale));
    }
    for d in ["pg_wal", "pg_wal/archive_status"] {
        let p = dest.join(d);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&p, e))?;
    }
    let auto = dest.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode_0600()
        .open(&auto)
        .map_err(|e| Error::io(&auto, e))?;
    let mut text = format!(
        "\n# Point-in-time restore by data-backup-manager from base backup {snap}, target {target} (UTC)\n"
    );
    for (k, v) in settings {
        text.push_str(&format!("{k} = {}\n", quote_conf(v)));
    }
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(&auto, e))?;
    f.sync_all().map_err(|e| Error::io(&auto, e))?;
    let signal = dest.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(|e| Error::io(&signal, e))?;
    std::fs::set_permissions(&signal, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&signal, e))
}

trait Mode600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// uid and gid of OS user `name`.
fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::InvalidInput(format!("user name {name:?} contains NUL")))?;
    // SAFETY: getpwnam with a valid C string; the result is read before any other call.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(Error::InvalidInput(format!(
            "no OS user {name:?} (the user that runs PostgreSQL)"
        )));
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|e| Error::io(&p, e))?;
        let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| Error::io(&p, e))? {
                todo.push(e.map_err(|e| Error::io(&p, e))?.path());
            }
        }
    }
    Ok(())
}

fn as_user(run_as: Option<&str>, prog: &Path) -> Command {
    match run_as {
        // SAFETY: geteuid has no preconditions.
        Some(u) if unsafe { libc::geteuid() } == 0 => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(prog);
            c
        }
        _ => Command::new(prog),
    }
}

/// Starts the restored cluster, waits for recovery to end, reports, stops it.
async fn check(dest: &Path, run_as: Option<&str>, opts: &PitrOptions) -> Result<CheckReport> {
    let dest = dest.to_path_buf();
    let run_as = run_as.map(str::to_string);
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || check_blocking(&dest, run_as.as_deref(), &opts))
        .await
        .map_err(|e| Error::InvalidInput(format!("check task failed: {e}")))?
}

fn check_blocking(dest: &Path, run_as: Option<&str>, opts: &PitrOptions) -> Result<CheckReport> {
    let version = std::fs::read_to_string(dest.join("PG_VERSION"))
        .map_err(|e| Error::io(dest.join("PG_VERSION"), e))?;
    let bin = opts
        .bin_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{}/bin", version.trim())));
    let tmp = std::env::temp_dir().join(format!(
        "dbm-check-{}",
        &crate::repository::crypto::random_id()[..12]
    ));
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(&tmp, e))?;
    if let Some(u) = run_as {
        if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = lookup_user(u)?;
            chown_tree(&tmp, uid, gid)?;
        }
    }
    let result = run_check(dest, run_as, &bin, &tmp, opts);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn run_check(
    dest: &Path,
    run_as: Option<&str>,
    bin: &Path,
    tmp: &Path,
    opts: &PitrOptions,
) -> Result<CheckReport> {
    let mut rng = [0u8; 2];
    crate::repository::crypto::random_bytes(&mut rng);
    let port = 20000 + (u16::from_le_bytes(rng) % 40000);
    let log = tmp.join("postgres.log");
    let started = Instant::now();
    let fail = |why: String| Error::Target {
        target: format!("restored cluster {}", dest.display()),
        reason: why,
    };
    let server_opts = format!(
        "-p {port} -k {} -c listen_addresses='' -c archive_mode=off",
        tmp.display()
    );
    let out = as_user(run_as, &bin.join("pg_ctl"))
        .arg("-D")
        .arg(dest)
        .arg("-l")
        .arg(&log)
        .args([
            "-w",
            "-t",
            &opts.check_timeout_secs.to_string(),
            "-o",
            &server_opts,
            "start",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run pg_ctl: {e}")))?;
    let mut report = CheckReport {
        port,
        ..Default::default()
    };
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !out.status.success() {
        report.log = interesting(&read_log());
        if report.log.is_empty() {
            report
                .log
                .push(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let deadline = started + Duration::from_secs(opts.check_timeout_secs);
    loop {
        let q = as_user(run_as, &bin.join("psql"))
            .args(["-X", "-A", "-t", "-h"])
            .arg(tmp)
            .args([
                "-p",
                &port.to_string(),
                "-d",
                "template1",
                "-c",
                "SELECT pg_is_in_recovery()",
            ])
            .env_remove("PGPASSWORD")
            .stdin(std::process::Stdio::null())
            .output();
        if let Ok(o) = &q {
            if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "f" {
                report.promoted = true;
                break;
            }
        }
        let alive = as_user(run_as, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(dest)
            .arg("status")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !alive || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    report.seconds = started.elapsed().as_secs_f64();
    let _ = as_user(run_as, &bin.join("pg_ctl"))
        .arg("-D")
        .arg(dest)
        .args(["-m", "fast", "-w", "-t", "300", "stop"])
        .output();
    let text = read_log();
    report.log = interesting(&text);
    let stopped_at_target = text.contains("recovery stopping");
    report.reached = report.promoted
        && match opts.target {
            RecoveryTarget::Latest => true,
            _ => stopped_at_target,
        };
    Ok(report)
}

fn interesting(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            [
                "recovery stopping",
                "last completed transaction",
                "redo done",
                "archive recovery complete",
                "selected new timeline",
                "consistent recovery state",
                "FATAL",
                "PANIC",
                "recovery ended before",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .map(|l| l.trim().to_string())
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_offsets() {
        let utc = parse_time("2026-12-04 17:40:00").unwrap();
        assert_eq!(parse_time("2026-12-04T22:40:00+05:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04 22:40:00+05:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04 22:40:00+0500").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04T17:40:00Z").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04 17:40:00 UTC").unwrap(), utc);
        assert_eq!(format_time(&utc), "2026-12-04 17:40:00.000000+00:00");
        let frac = parse_time("2026-12-04 17:40:00.123456-03:00").unwrap();
        assert_eq!(format_time(&frac), "2026-12-04 20:40:00.123456+00:00");
        assert!(parse_time("yesterday").is_err());
    }
}
