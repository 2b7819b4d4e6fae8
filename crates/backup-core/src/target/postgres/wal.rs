//! The WAL archive inside the repository: `wal-push` (`archive_command`), `wal-fetch`
//! (`restore_command`), continuity checks and WAL retention.
//!
//! Layout: one object per archived file, `wal/<timeline, 8 hex>/<file name>`, where the file is
//! a WAL segment (`000000010000000000000003`), a timeline history file (`00000002.history`), a
//! backup history file (`000000010000000000000003.00000028.backup`) or a partial segment
//! (`….partial`, left by a promotion). Each object is one envelope (see
//! [`crate::repository::crypto`]) bound to its path as associated data, over
//! `[header length u32 LE][header JSON][zstd of the file]`; the header gives the file's size,
//! its mtime (when the server last wrote it, used to decide which segments a recovery target
//! time needs) and its keyed BLAKE3 digest (checked on fetch and when a push repeats).
//!
//! Rules from the PostgreSQL manual, "Continuous Archiving and Point-in-Time Recovery (PITR)":
//! * `archive_command` must exit 0 only once the file is safely stored: [`push`] writes the
//!   object create-only, then makes it durable (`fsync` of the file and its folders in a local
//!   repository; an object store is durable once its PUT returns);
//! * archiving the same file twice must succeed when the content is identical and must fail
//!   when it differs (a second server archiving into the same repository);
//! * `restore_command` must exit non-zero for a file that is not in the archive (the server asks
//!   for history files of timelines that may not exist).
//!
//! Memory: a push or fetch holds one file in memory (a segment is `wal_segment_size`, 16 MiB by
//! default) plus its compressed form. WAL objects live beside the packs, not in them: `prune`
//! never touches `wal/`; [`prune_wal`] does, by the base backups that need them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::target::postgres::base::BaseInfo;
use crate::target::postgres::{format_lsn, parse_lsn};

/// Store folder of the archive.
pub const WAL_DIR: &str = "wal";
/// Default segment size (PostgreSQL's `--wal-segsize` default), bytes.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;
/// Default point-in-time window (PRD: recovery to any point of the last 7 days).
pub const DEFAULT_PITR_WINDOW_DAYS: i64 = 7;

/// What an archived file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WalKind {
    /// A whole WAL segment.
    Segment,
    /// `<timeline>.history`.
    History,
    /// `<segment>.<offset>.backup`.
    Backup,
    /// `<segment>.partial`.
    Partial,
}

/// A parsed archive file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct WalName {
    /// Timeline.
    pub timeline: u32,
    /// Segment position: `log` (high 32 bits) and `seg` (low 32 bits) as in the name; 0 for
    /// history files.
    pub pos: u64,
    /// Kind.
    pub kind: WalKind,
    /// The file name.
    pub name: String,
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalName {
    /// Parses the file name PostgreSQL hands to `archive_command` (`%f`) or asks of
    /// `restore_command`. Anything else is refused (the name becomes a store path).
    ///
    /// Errors: [`Error::InvalidInput`] naming the file.
    pub fn parse(name: &str) -> Result<WalName> {
        let bad = || {
            Error::InvalidInput(format!(
                "{name:?} is not a WAL file name (segment, .history, .backup or .partial)"
            ))
        };
        let seg = |s: &str| -> Option<(u32, u64)> {
            if s.len() != 24 {
                return None;
            }
            let tli = hex8(&s[..8])?;
            let log = hex8(&s[8..16])?;
            let seg = hex8(&s[16..])?;
            Some((tli, (log as u64) << 32 | seg as u64))
        };
        let (tli, pos, kind) = if let Some(t) = name.strip_suffix(".history") {
            (hex8(t).ok_or_else(bad)?, 0, WalKind::History)
        } else if let Some(s) = name.strip_suffix(".partial") {
            let (t, p) = seg(s).ok_or_else(bad)?;
            (t, p, WalKind::Partial)
        } else if let Some(s) = name.strip_suffix(".backup") {
            let (s, off) = s.split_once('.').ok_or_else(bad)?;
            hex8(off).ok_or_else(bad)?;
            let (t, p) = seg(s).ok_or_else(bad)?;
            (t, p, WalKind::Backup)
        } else {
            let (t, p) = seg(name).ok_or_else(bad)?;
            (t, p, WalKind::Segment)
        };
        if tli == 0 {
            return Err(bad());
        }
        Ok(WalName {
            timeline: tli,
            pos,
            kind,
            name: name.to_string(),
        })
    }

    /// Store path: `wal/<timeline>/<name>`.
    pub fn object_path(&self) -> String {
        format!("{WAL_DIR}/{:08X}/{}", self.timeline, self.name)
    }

    /// Segment number (`log * segments_per_log + seg`) for a segment size in bytes.
    pub fn segno(&self, seg_size: u64) -> u64 {
        (self.pos >> 32) * per_log(seg_size) + (self.pos & 0xffff_ffff)
    }
}

fn per_log(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size.max(1)
}

/// The segment file name of segment number `segno` on `timeline`.
pub fn segment_name(timeline: u32, segno: u64, seg_size: u64) -> String {
    let p = per_log(seg_size);
    format!("{:08X}{:08X}{:08X}", timeline, segno / p, segno % p)
}

/// Segment number holding WAL position `lsn`.
pub fn segno_of(lsn: u64, seg_size: u64) -> u64 {
    lsn / seg_size.max(1)
}

/// The header inside each archived object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WalHeader {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When the server last wrote the file (its mtime), UTC.
    pub mtime: DateTime<Utc>,
    /// Keyed BLAKE3 of the content, hex.
    pub digest: String,
}

/// Result of [`push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// Newly stored (and flushed).
    Stored,
    /// An identical file was already archived under this name.
    AlreadyArchived,
}

fn aad(path: &str) -> Vec<u8> {
    format!("wal {path}").into_bytes()
}

fn digest_hex(repo: &Repository, data: &[u8]) -> String {
    blake3::keyed_hash(&repo.key().digest_key, data)
        .to_hex()
        .to_string()
}

/// Decrypts an archived object into its header and file bytes (checked against the digest).
fn open_object(repo: &Repository, path: &str, body: &[u8]) -> Result<(WalHeader, Vec<u8>)> {
    let plain = repo.key().data.open(path, &aad(path), body)?;
    let bad = |why: &str| Error::corrupt(path, why.to_string());
    if plain.len() < 4 {
        return Err(bad("truncated header"));
    }
    let hlen = u32::from_le_bytes(plain[..4].try_into().expect("4 bytes")) as usize;
    let header: WalHeader = serde_json::from_slice(
        plain
            .get(4..4 + hlen)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|e| Error::corrupt(path, format!("bad header: {e}")))?;
    let data = zstd::decode_all(&plain[4 + hlen..])
        .map_err(|e| Error::corrupt(path, format!("decompression failed: {e}")))?;
    if data.len() as u64 != header.size || digest_hex(repo, &data) != header.digest {
        return Err(bad("content does not match its recorded size and digest"));
    }
    Ok((header, data))
}

/// Archives the file at `path` (`archive_command = '… wal-push %p'`). Returns only once the
/// object is durable in the store.
///
/// Errors: [`Error::InvalidInput`] for a name that is not a WAL file name; [`Error::Target`]
/// when a *different* file is already archived under this name (two servers archiving into one
/// repository, or a reused repository: never overwrite); I/O and store errors.
pub async fn push(repo: &Repository, path: &Path) -> Result<PushOutcome> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::InvalidInput(format!("{}: no file name", path.display())))?;
    let name = WalName::parse(file_name)?;
    let p = path.to_path_buf();
    let (data, mtime) = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, DateTime<Utc>)> {
        let data = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let m = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
        let mtime = Utc
            .timestamp_opt(m.mtime(), m.mtime_nsec() as u32)
            .single()
            .unwrap_or_else(Utc::now);
        Ok((data, mtime))
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("read task failed: {e}")))??;
    let obj = name.object_path();
    let digest = digest_hex(repo, &data);
    if let Some(o) = compare_existing(repo, &obj, &digest).await? {
        return Ok(o);
    }
    let header = WalHeader {
        name: name.name.clone(),
        size: data.len() as u64,
        mtime,
        digest: digest.clone(),
    };
    let level = repo.config().compression_level;
    let plain = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let h = serde_json::to_vec(&header).expect("header serializes");
        let mut plain = Vec::with_capacity(data.len() / 2 + h.len() + 4);
        plain.extend_from_slice(&(h.len() as u32).to_le_bytes());
        plain.extend_from_slice(&h);
        let mut enc = zstd::Encoder::new(plain, level)
            .map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
        enc.write_all(&data)
            .map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
        enc.finish()
            .map_err(|e| Error::InvalidInput(format!("zstd: {e}")))
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("compression task failed: {e}")))??;
    let body = repo.key().data.seal(&aad(&obj), &plain);
    drop(plain);
    if !repo.store().put_new(&obj, Bytes::from(body)).await? {
        // Another push of the same name won the race: the same rule applies.
        if let Some(o) = compare_existing(repo, &obj, &digest).await? {
            return Ok(o);
        }
    }
    make_durable(repo, &obj).await?;
    tracing::info!("archived {}", name.name);
    Ok(PushOutcome::Stored)
}

/// Makes one archived object durable. In a local folder: `fsync` of the file and of the
/// folders on its path (much cheaper than `syncfs` of the whole filesystem on a busy host);
/// elsewhere the store's `flush` (an object store is durable once its PUT returns).
async fn make_durable(repo: &Repository, obj: &str) -> Result<()> {
    let Some(root) = repo.store().local_root().map(Path::to_path_buf) else {
        return repo.store().flush().await;
    };
    let obj = obj.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let file = root.join(&obj);
        let sync = |p: &Path| {
            std::fs::File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(p, e))
        };
        sync(&file)?;
        let mut dir = file.parent();
        while let Some(d) = dir {
            sync(d)?;
            if d == root {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("sync task failed: {e}")))?
}

async fn compare_existing(
    repo: &Repository,
    obj: &str,
    digest: &str,
) -> Result<Option<PushOutcome>> {
    if repo.store().head(obj).await?.is_none() {
        return Ok(None);
    }
    let body = repo.store().get(obj).await?;
    let h = match open_object(repo, obj, &body) {
        Ok((h, _)) => h,
        Err(e @ Error::Corrupt { .. }) => {
            // Left damaged by a crash before an earlier push returned (so the server still has
            // the file and is pushing it again): replace it.
            tracing::warn!("replacing damaged archived file: {e}");
            repo.store().delete(obj).await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if h.digest == digest {
        // Make sure the earlier copy is durable too before saying yes.
        make_durable(repo, obj).await?;
        Ok(Some(PushOutcome::AlreadyArchived))
    } else {
        Err(Error::Target {
            target: format!("WAL archive {}", repo.store().location()),
            reason: format!(
                "{obj} is already archived with different content; refusing to overwrite it \
                 (is another server archiving into this repository?)"
            ),
        })
    }
}

/// Restores archived file `name` to `dest` (`restore_command = '… wal-fetch %f %p'`). Returns
/// `Ok(false)` when the archive has no such file. The file is written to a temporary name
/// beside `dest` and renamed, so the server never sees half a segment.
///
/// Errors: [`Error::Corrupt`] when the object fails to authenticate or its digest differs.
pub async fn fetch(repo: &Repository, name: &str, dest: &Path) -> Result<bool> {
    let name = WalName::parse(name)?;
    let obj = name.object_path();
    let body = match repo.store().get(&obj).await {
        Ok(b) => b,
        Err(Error::Store(object_store::Error::NotFound { .. })) => return Ok(false),
        Err(e) => return Err(e),
    };
    let (_, data) = open_object(repo, &obj, &body)?;
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let tmp = dest.with_file_name(format!(
            ".{}.dbm-tmp",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal")
        ));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&data).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("write task failed: {e}")))??;
    Ok(true)
}

/// Reads the header of an archived file (decrypting the object).
pub async fn header(repo: &Repository, name: &WalName) -> Result<WalHeader> {
    let obj = name.object_path();
    let body = repo.store().get(&obj).await?;
    open_object(repo, &obj, &body).map(|(h, _)| h)
}

/// Reads an archived file's bytes (small files: history and backup history files).
pub async fn read_file(repo: &Repository, name: &WalName) -> Result<Option<Vec<u8>>> {
    let obj = name.object_path();
    match repo.store().get(&obj).await {
        Ok(b) => open_object(repo, &obj, &b).map(|(_, d)| Some(d)),
        Err(Error::Store(object_store::Error::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One archived file as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Archived {
    /// Parsed name.
    pub name: WalName,
    /// Stored (compressed, encrypted) size, bytes.
    pub stored_size: u64,
}

/// Every archived file, sorted by timeline, position, kind. Unknown objects under `wal/` are
/// skipped with a warning.
pub async fn list(repo: &Repository) -> Result<Vec<Archived>> {
    let mut out = Vec::new();
    for o in repo.store().list(WAL_DIR).await? {
        let file = o.path.rsplit('/').next().unwrap_or_default();
        match WalName::parse(file) {
            Ok(n) if n.object_path() == o.path => out.push(Archived {
                name: n,
                stored_size: o.size,
            }),
            _ => tracing::warn!("ignoring unexpected object {} in the WAL archive", o.path),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One line of a timeline history file: timeline `parent` ended at `switch_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switch {
    /// The ancestor timeline.
    pub parent: u32,
    /// First WAL position of the child timeline.
    pub switch_lsn: u64,
}

/// Parses a timeline history file (`parentTLI <tab> X/Y <tab> reason`, `#` comments).
pub fn parse_history(text: &str) -> Vec<Switch> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let parent = f.next()?.parse().ok()?;
            let switch_lsn = parse_lsn(f.next()?).ok()?;
            Some(Switch { parent, switch_lsn })
        })
        .collect()
}

/// A run of segments one recovery reads from one timeline (segment numbers, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRange {
    /// Timeline.
    pub timeline: u32,
    /// First segment number.
    pub from: u64,
    /// Last segment number.
    pub to: u64,
}

/// The segments a recovery reads from a base backup that starts at `start_lsn` on
/// `start_tli` up to segment `end_segno` on `end_tli`, following `history` (the history file of
/// `end_tli`): the segment holding a switch point is read from the child timeline.
pub fn needed_ranges(
    start_tli: u32,
    start_lsn: u64,
    end_tli: u32,
    end_segno: u64,
    history: &[Switch],
    seg_size: u64,
) -> Vec<SegmentRange> {
    let mut out = Vec::new();
    let mut cur = segno_of(start_lsn, seg_size);
    let mut tli = start_tli;
    if end_tli != start_tli {
        for (i, sw) in history.iter().enumerate() {
            if sw.parent < start_tli {
                continue;
            }
            let next = history.get(i + 1).map(|n| n.parent).unwrap_or(end_tli);
            let last = segno_of(sw.switch_lsn, seg_size).saturating_sub(1);
            if sw.parent == tli && cur <= last && segno_of(sw.switch_lsn, seg_size) > 0 {
                out.push(SegmentRange {
                    timeline: tli,
                    from: cur,
                    to: last,
                });
            }
            cur = cur.max(segno_of(sw.switch_lsn, seg_size));
            tli = next;
        }
    }
    if cur <= end_segno {
        out.push(SegmentRange {
            timeline: end_tli,
            from: cur,
            to: end_segno,
        });
    }
    out
}

/// Names in `ranges` that are not archived.
pub fn missing_in(ranges: &[SegmentRange], have: &BTreeSet<String>, seg_size: u64) -> Vec<String> {
    let mut out = Vec::new();
    for r in ranges {
        for s in r.from..=r.to {
            let n = segment_name(r.timeline, s, seg_size);
            if !have.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The archive as a recovery sees it: which files exist and where WAL ends.
pub struct ArchiveView {
    /// Every archived file.
    pub files: Vec<Archived>,
    /// Names of archived whole segments.
    pub segments: BTreeSet<String>,
    /// Segment size used for names (bytes).
    pub seg_size: u64,
}

impl ArchiveView {
    /// Lists the archive.
    pub async fn load(repo: &Repository, seg_size: u64) -> Result<ArchiveView> {
        let files = list(repo).await?;
        let segments = files
            .iter()
            .filter(|f| f.name.kind == WalKind::Segment)
            .map(|f| f.name.name.clone())
            .collect();
        Ok(ArchiveView {
            files,
            segments,
            seg_size,
        })
    }

    /// The highest timeline that has segments or a history file.
    pub fn newest_timeline(&self) -> Option<u32> {
        self.files
            .iter()
            .filter(|f| matches!(f.name.kind, WalKind::Segment | WalKind::History))
            .map(|f| f.name.timeline)
            .max()
    }

    /// The newest segment of `tli` (by position).
    pub fn newest_segment(&self, tli: u32) -> Option<&WalName> {
        self.files
            .iter()
            .filter(|f| f.name.kind == WalKind::Segment && f.name.timeline == tli)
            .map(|f| &f.name)
            .max()
    }

    /// The oldest segment of `tli`.
    pub fn oldest_segment(&self, tli: u32) -> Option<&WalName> {
        self.files
            .iter()
            .filter(|f| f.name.kind == WalKind::Segment && f.name.timeline == tli)
            .map(|f| &f.name)
            .min()
    }

    /// The history of timeline `tli` (empty for timeline 1).
    ///
    /// Errors: [`Error::Target`] when a timeline above 1 has no history file in the archive.
    pub async fn history(&self, repo: &Repository, tli: u32) -> Result<Vec<Switch>> {
        if tli <= 1 {
            return Ok(Vec::new());
        }
        let n = WalName::parse(&format!("{tli:08X}.history"))?;
        match read_file(repo, &n).await? {
            Some(d) => Ok(parse_history(&String::from_utf8_lossy(&d))),
            None => Err(Error::Target {
                target: format!("WAL archive {}", repo.store().location()),
                reason: format!("timeline history file {} is missing", n.name),
            }),
        }
    }
}

/// Base backups (snapshots of kind `postgres` with `pg_backup = base`), oldest first.
pub async fn base_backups(repo: &Repository) -> Result<Vec<BaseInfo>> {
    let snaps = repo.snapshots().await?;
    Ok(snaps.iter().filter_map(BaseInfo::from_snapshot).collect())
}

/// What [`verify_wal`] found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WalVerifyReport {
    /// Archived whole segments.
    pub segments: usize,
    /// Oldest retained base backup (snapshot id) the check starts from, if any.
    pub oldest_base: Option<String>,
    /// Where the check starts: the oldest base backup's first segment (or the oldest archived
    /// segment when there is no base backup).
    pub first_segment: Option<String>,
    /// The newest archived segment (on the newest timeline).
    pub newest_segment: Option<String>,
    /// Every segment missing between the two, in order; also those a base backup needs for
    /// its own consistency.
    pub missing: Vec<String>,
    /// Problems other than missing segments (a missing history file, no base backup).
    pub warnings: Vec<String>,
    /// True when nothing is missing.
    pub ok: bool,
}

/// Checks the archive's continuity: every segment from the oldest retained base backup's start
/// to the newest archived segment (following timeline history), and each base backup's own
/// start..stop range, must be archived.
pub async fn verify_wal(repo: &Repository) -> Result<WalVerifyReport> {
    let bases = base_backups(repo).await?;
    let seg_size = bases
        .last()
        .map(|b| b.wal_segment_size)
        .unwrap_or(DEFAULT_SEGMENT_SIZE);
    let view = ArchiveView::load(repo, seg_size).await?;
    let mut r = WalVerifyReport {
        segments: view.segments.len(),
        ..Default::default()
    };
    let mut missing: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |v: Vec<String>, missing: &mut Vec<String>| {
        for n in v {
            if seen.insert(n.clone()) {
                missing.push(n);
            }
        }
    };
    for b in &bases {
        let ranges = needed_ranges(
            b.timeline,
            b.start_lsn,
            b.timeline,
            segno_of(b.stop_lsn, seg_size),
            &[],
            seg_size,
        );
        add(missing_in(&ranges, &view.segments, seg_size), &mut missing);
    }
    if let Some(tli) = view.newest_timeline() {
        let history = match view.history(repo, tli).await {
            Ok(h) => h,
            Err(e) => {
                r.warnings.push(e.to_string());
                Vec::new()
            }
        };
        // The newest timeline may only have its history file so far.
        let newest = view
            .newest_segment(tli)
            .or_else(|| history.last().and_then(|h| view.newest_segment(h.parent)))
            .cloned();
        let start = match bases.first() {
            Some(b) => Some((b.timeline, b.start_lsn, Some(b.snapshot.clone()))),
            None => {
                r.warnings.push(
                    "no base backup in the repository: point-in-time recovery is not possible yet"
                        .into(),
                );
                let t = (1..=tli).find(|t| view.oldest_segment(*t).is_some());
                t.and_then(|t| view.oldest_segment(t))
                    .map(|o| (o.timeline, o.segno(seg_size) * seg_size, None))
            }
        };
        if let (Some((stli, slsn, snap)), Some(newest)) = (start, newest) {
            r.oldest_base = snap;
            r.first_segment = Some(segment_name(stli, segno_of(slsn, seg_size), seg_size));
            r.newest_segment = Some(newest.name.clone());
            let ranges = needed_ranges(
                stli,
                slsn,
                newest.timeline,
                newest.segno(seg_size),
                if newest.timeline == tli {
                    &history
                } else {
                    &[]
                },
                seg_size,
            );
            add(missing_in(&ranges, &view.segments, seg_size), &mut missing);
        }
    }
    if view.newest_timeline().is_none() {
        r.warnings.push(
            "the WAL archive is empty: is archive_command set to wal-push (see wal-config)?".into(),
        );
    }
    missing.sort();
    r.missing = missing;
    r.ok = r.missing.is_empty();
    Ok(r)
}

/// What [`prune_wal`] removed (or would remove).
#[derive(Debug, Clone, Serialize, Default)]
pub struct WalPruneReport {
    /// Files deleted (or to delete in a dry run).
    pub deleted: Vec<String>,
    /// Files kept.
    pub kept: usize,
    /// Base backups whose WAL is kept for the point-in-time window (snapshot ids).
    pub window_bases: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// WAL retention. Keeps:
/// * every file from the start of the newest base backup taken at or before `now - window`
///   onwards (so any time in the window can be recovered), and from every base backup inside
///   the window — on every timeline;
/// * for every other retained base backup, the segments from its start to its stop (so it
///   stays restorable);
/// * timeline history files, always.
///
/// Deletes nothing when the repository has no base backup. Runs under the exclusive lock.
pub async fn prune_wal(
    repo: &Repository,
    window: chrono::Duration,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<WalPruneReport> {
    repo.locked(true, "wal-prune", async {
        let bases = base_backups(repo).await?;
        let mut rep = WalPruneReport {
            dry_run,
            ..Default::default()
        };
        let files = list(repo).await?;
        if bases.is_empty() {
            rep.kept = files.len();
            return Ok(rep);
        }
        let seg_size = bases
            .last()
            .map(|b| b.wal_segment_size)
            .unwrap_or(DEFAULT_SEGMENT_SIZE);
        let edge = now - window;
        // The newest base at or before the window's start covers it; all newer ones too.
        let anchor = bases.iter().rposition(|b| b.stop_time <= edge).unwrap_or(0);
        let window_bases = &bases[anchor..];
        rep.window_bases = window_bases.iter().map(|b| b.snapshot.clone()).collect();
        let keep_from = window_bases
            .iter()
            .map(|b| segno_of(b.start_lsn, seg_size))
            .min()
            .unwrap_or(0);
        let own: Vec<(u32, u64, u64)> = bases
            .iter()
            .map(|b| {
                (
                    b.timeline,
                    segno_of(b.start_lsn, seg_size),
                    segno_of(b.stop_lsn, seg_size),
                )
            })
            .collect();
        for f in files {
            let n = &f.name;
            let keep = match n.kind {
                WalKind::History => true,
                _ => {
                    let s = n.segno(seg_size);
                    s >= keep_from
                        || own
                            .iter()
                            .any(|(t, a, b)| *t == n.timeline && (*a..=*b).contains(&s))
                }
            };
            if keep {
                rep.kept += 1;
            } else {
                if !dry_run {
                    repo.store().delete(&n.object_path()).await?;
                }
                rep.deleted.push(n.name.clone());
            }
        }
        Ok(rep)
    })
    .await
}

/// The `postgresql.conf` lines that archive into this repository (PostgreSQL manual,
/// "Setting Up WAL Archiving"). `command` is the `data-backup-manager …` prefix that reaches
/// this repository (program path, `--repo`, key file).
pub fn archive_settings(command: &str) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("wal_level", "replica".to_string());
    m.insert("archive_mode", "on".to_string());
    m.insert("archive_command", format!("{command} wal-push %p"));
    m.insert("archive_timeout", "60".to_string());
    m.insert("restore_command", format!("{command} wal-fetch %f %p"));
    m
}

/// Formats `lsn` (helper for messages).
pub fn lsn_text(lsn: u64) -> String {
    format_lsn(lsn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = WalName::parse("000000010000000200000003").unwrap();
        assert_eq!((s.timeline, s.kind), (1, WalKind::Segment));
        assert_eq!(s.segno(16 << 20), 2 * 256 + 3);
        assert_eq!(s.object_path(), "wal/00000001/000000010000000200000003");
        assert_eq!(segment_name(1, 2 * 256 + 3, 16 << 20), s.name);
        assert_eq!(
            WalName::parse("00000002.history").unwrap().kind,
            WalKind::History
        );
        assert_eq!(
            WalName::parse("000000010000000000000002.00000028.backup")
                .unwrap()
                .kind,
            WalKind::Backup
        );
        assert_eq!(
            WalName::parse("000000020000000000000005.partial")
                .unwrap()
                .kind,
            WalKind::Partial
        );
        for bad in [
            "../x",
            "00000001000000000000000G",
            "RECOVERYXLOG",
            "0000000000000000000000001",
            "00000000.history",
        ] {
            assert!(WalName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_follow_timeline_switches() {
        let seg = 16u64 << 20;
        // Base at 0/2000028 on tli 1; tli 2 forked at 0/5000100; newest segment 7 on tli 2.
        let h = parse_history("1\t0/5000100\tno recovery target specified\n");
        let r = needed_ranges(1, 0x2000028, 2, 7, &h, seg);
        assert_eq!(
            r,
            vec![
                SegmentRange {
                    timeline: 1,
                    from: 2,
                    to: 4
                },
                SegmentRange {
                    timeline: 2,
                    from: 5,
                    to: 7
                }
            ]
        );
        let have: BTreeSet<String> = [
            "000000010000000000000002",
            "000000010000000000000004",
            "000000020000000000000005",
            "000000020000000000000006",
            "000000020000000000000007",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(missing_in(&r, &have, seg), vec!["000000010000000000000003"]);
        assert_eq!(
            needed_ranges(1, 0x2000028, 1, 3, &[], seg),
            vec![SegmentRange {
                timeline: 1,
                from: 2,
                to: 3
            }]
        );
    }
}
