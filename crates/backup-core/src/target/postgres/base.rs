//! Base backups: `pg_basebackup -D - -F tar -X none` streamed into the repository as one file,
//! `base.tar`, beside `server.json`.
//!
//! `-X none` leaves the WAL to the archive (PostgreSQL manual, "pg_basebackup": with `-D -` only
//! one tablespace can be written and WAL cannot be streamed); with `archive_mode` on, the server
//! ends the backup only once the last segment it needs is archived ("all required WAL segments
//! have been archived"), so a base backup that completes is consistent with the archive.
//!
//! Start LSN, stop LSN and timeline are read from the stream itself while it passes: the
//! `backup_label` member (`START WAL LOCATION`, `START TIMELINE`) and the `WAL-Ranges` of the
//! `backup_manifest` member that `pg_basebackup` appends to a tar written to stdout. The system
//! identifier comes from `pg_control_system()`. Nothing is guessed: a backup whose stream lacks
//! them fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::repository::snapshot::Snapshot;
use crate::repository::tree::{Node, NodeKind, RawName};
use crate::target::postgres::{block_on, format_lsn, parse_lsn, PgConn, ServerInfo};
use crate::target::{Source, StreamSource, Target, WalkEvent};

/// File name of the base backup inside the snapshot.
pub const BASE_TAR: &str = "base.tar";
/// File name of the server facts inside the snapshot.
pub const SERVER_JSON: &str = "server.json";

/// What a base backup snapshot records about itself (`Snapshot.meta`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaseInfo {
    /// Snapshot id (hex).
    pub snapshot: String,
    /// Snapshot time (UTC).
    pub time: DateTime<Utc>,
    /// Timeline the backup started on.
    pub timeline: u32,
    /// `START WAL LOCATION`.
    pub start_lsn: u64,
    /// End of the WAL range the backup needs to be consistent.
    pub stop_lsn: u64,
    /// Server time once the backup had ended (recovery targets before it cannot use it).
    pub stop_time: DateTime<Utc>,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: String,
    /// `wal_segment_size`, bytes.
    pub wal_segment_size: u64,
    /// `server_version_num`.
    pub server_version_num: i64,
}

impl BaseInfo {
    /// Reads the metadata of a base backup snapshot; `None` for any other snapshot.
    pub fn from_snapshot(s: &Snapshot) -> Option<BaseInfo> {
        if s.target_kind != "postgres" || s.meta.get("pg_backup")?.as_str()? != "base" {
            return None;
        }
        let m = &s.meta;
        let text = |k: &str| m.get(k).and_then(|v| v.as_str());
        Some(BaseInfo {
            snapshot: s.id.to_hex(),
            time: s.time,
            timeline: m.get("timeline")?.as_u64()? as u32,
            start_lsn: parse_lsn(text("start_lsn")?).ok()?,
            stop_lsn: parse_lsn(text("stop_lsn")?).ok()?,
            stop_time: text("stop_time")?.parse().ok()?,
            system_identifier: text("system_identifier")?.to_string(),
            wal_segment_size: m.get("wal_segment_size")?.as_u64()?,
            server_version_num: m
                .get("server_version_num")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
        })
    }
}

/// The base backup target.
pub struct BaseTarget {
    conn: PgConn,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    info: Option<ServerInfo>,
    scan: Option<Arc<Mutex<TarScan>>>,
}

impl BaseTarget {
    /// A base backup of the server `conn` reaches (needs a role with the REPLICATION attribute
    /// and a `replication` line in `pg_hba.conf`).
    pub fn new(conn: PgConn) -> BaseTarget {
        BaseTarget {
            conn,
            state: Default::default(),
        }
    }
}

fn file_node(name: &str, mode: u32) -> Node {
    let mut n = Node::new(RawName(name.as_bytes().to_vec()), NodeKind::File);
    n.mode = mode;
    n.mtime = Utc::now().timestamp();
    n
}

/// A `Source::Stream` over bytes already in memory (`server.json`).
pub(crate) fn memory_source(bytes: Vec<u8>) -> Source {
    Source::Stream(StreamSource {
        open: Box::new(move || Ok(Box::new(std::io::Cursor::new(bytes)) as Box<dyn Read + Send>)),
        version: None,
    })
}

impl Target for BaseTarget {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn paths(&self) -> Vec<String> {
        vec![format!("{}#base", self.conn)]
    }

    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()> {
        let mut conn = self.conn.clone();
        let info = block_on(ServerInfo::read(&conn))?;
        conn.pick_bin_dir(info.version_num);
        let archive_mode = info
            .settings
            .get("archive_mode")
            .cloned()
            .unwrap_or_default();
        if archive_mode == "off" {
            return Err(conn.err(
                "archive_mode is off: a base backup is only restorable with the WAL archived \
                 after it; run `data-backup-manager wal-config --apply`, restart the server, then back up again",
            ));
        }
        let server_json = serde_json::to_vec_pretty(&info).expect("server info serializes");
        let scan = Arc::new(Mutex::new(TarScan::default()));
        {
            let mut st = self.state.lock().expect("state");
            st.info = Some(info);
            st.scan = Some(scan.clone());
        }
        let mut cmd = conn.command("pg_basebackup", "postgres");
        cmd.args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=none",
            "--checkpoint=fast",
            "--no-password",
            "--label=data-backup-manager",
        ]);
        let what = format!("pg_basebackup of {conn}");
        let open = move || -> std::io::Result<Box<dyn Read + Send>> {
            let child = crate::target::process::ChildReader::spawn(what, cmd)?;
            Ok(Box::new(ScanReader { inner: child, scan }))
        };
        let mut tar = file_node(BASE_TAR, 0o600);
        tar.meta
            .insert("content-type".into(), "application/x-tar".into());
        emit(WalkEvent::Entry(
            tar,
            Source::Stream(StreamSource {
                open: Box::new(open),
                version: None,
            }),
        ))?;
        emit(WalkEvent::Entry(
            file_node(SERVER_JSON, 0o600),
            memory_source(server_json),
        ))
    }

    fn finish(&self) -> Result<BTreeMap<String, Value>> {
        let st = self.state.lock().expect("state");
        let info = st
            .info
            .as_ref()
            .ok_or_else(|| self.conn.err("base backup finished without a walk"))?;
        let scan = st
            .scan
            .as_ref()
            .ok_or_else(|| self.conn.err("base backup finished without a stream"))?
            .lock()
            .expect("scan")
            .clone();
        let label = String::from_utf8_lossy(&scan.label).into_owned();
        let field = |k: &str| {
            label
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        let start = field("START WAL LOCATION:")
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
            .ok_or_else(|| self.conn.err("the base backup stream has no backup_label"))?;
        let start_lsn = parse_lsn(&start)?;
        let tli: u32 = field("START TIMELINE:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.conn.err("backup_label has no START TIMELINE"))?;
        let ranges = wal_ranges(&scan.manifest_tail).ok_or_else(|| {
            self.conn
                .err("the base backup stream has no backup_manifest with WAL-Ranges")
        })?;
        let last = ranges
            .last()
            .ok_or_else(|| self.conn.err("backup_manifest lists no WAL range"))?;
        if ranges.first().map(|r| r.1) != Some(start_lsn) {
            return Err(self
                .conn
                .err("backup_label and backup_manifest disagree about the start LSN"));
        }
        // The backup has ended: the server's clock now is after its stop point.
        let stop_time = block_on(async {
            let c = self.conn.connect(&self.conn.maintenance_db()).await?;
            let row = c
                .query_one("SELECT now()", &[])
                .await
                .map_err(|e| self.conn.err(format!("query failed: {e}")))?;
            Ok(row.get::<_, DateTime<Utc>>(0))
        })?;
        let mut m = BTreeMap::new();
        m.insert("pg_backup".into(), json!("base"));
        m.insert("timeline".into(), json!(tli));
        m.insert("start_lsn".into(), json!(format_lsn(start_lsn)));
        m.insert("stop_lsn".into(), json!(format_lsn(last.2)));
        m.insert("stop_timeline".into(), json!(last.0));
        m.insert("stop_time".into(), json!(stop_time.to_rfc3339()));
        m.insert("start_time".into(), json!(field("START TIME:")));
        m.insert("system_identifier".into(), json!(info.system_identifier));
        m.insert("wal_segment_size".into(), json!(info.wal_segment_size()));
        m.insert("server_version".into(), json!(info.version));
        m.insert("server_version_num".into(), json!(info.version_num));
        m.insert("server".into(), json!(self.conn.to_string()));
        Ok(m)
    }
}

/// `(timeline, start, end)` of each `WAL-Ranges` entry found in the manifest's tail.
fn wal_ranges(tail: &[u8]) -> Option<Vec<(u32, u64, u64)>> {
    let text = String::from_utf8_lossy(tail);
    let at = text.rfind("\"WAL-Ranges\"")?;
    let open = at + text[at..].find('[')?;
    let close = open + text[open..].find(']')?;
    let arr: Vec<Value> = serde_json::from_str(&text[open..=close]).ok()?;
    arr.iter()
        .map(|r| {
            Some((
                r.get("Timeline")?.as_u64()? as u32,
                parse_lsn(r.get("Start-LSN")?.as_str()?).ok()?,
                parse_lsn(r.get("End-LSN")?.as_str()?).ok()?,
            ))
        })
        .collect()
}

/// Passes a tar stream through and keeps `backup_label` and the tail of `backup_manifest`.
struct ScanReader<R> {
    inner: R,
    scan: Arc<Mutex<TarScan>>,
}

impl<R: Read> Read for ScanReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan.lock().expect("scan").feed(&buf[..n]);
        Ok(n)
    }
}

/// Bytes of `backup_manifest` kept (its `WAL-Ranges` are at the end).
const MANIFEST_TAIL: usize = 256 * 1024;
/// Largest `backup_label` kept.
const LABEL_MAX: usize = 64 * 1024;

#[derive(Default, Clone)]
struct TarScan {
    header: Vec<u8>,
    data_left: u64,
    pad_left: u64,
    capture: Capture,
    label: Vec<u8>,
    manifest_tail: Vec<u8>,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Capture {
    #[default]
    None,
    Label,
    Manifest,
}

fn octal(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 size.
        return field[1..]
            .iter()
            .fold(0u64, |a, b| a.wrapping_shl(8) | *b as u64);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(s.trim(), 8).unwrap_or(0)
}

impl TarScan {
    fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.data_left > 0 {
                let n = (self.data_left as usize).min(buf.len());
                match self.capture {
                    Capture::Label if self.label.len() < LABEL_MAX => {
                        self.label.extend_from_slice(&buf[..n])
                    }
                    Capture::Manifest => {
                        self.manifest_tail.extend_from_slice(&buf[..n]);
                        if self.manifest_tail.len() > 2 * MANIFEST_TAIL {
                            let cut = self.manifest_tail.len() - MANIFEST_TAIL;
                            self.manifest_tail.drain(..cut);
                        }
                    }
                    _ => {}
                }
                self.data_left -= n as u64;
                buf = &buf[n..];
                continue;
            }
            if self.pad_left > 0 {
                let n = (self.pad_left as usize).min(buf.len());
                self.pad_left -= n as u64;
                buf = &buf[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(buf.len());
            self.header.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.header.len() == 512 {
                let h = std::mem::take(&mut self.header);
                if h.iter().all(|b| *b == 0) {
                    continue; // end-of-archive blocks
                }
                let cstr = |b: &[u8]| {
                    String::from_utf8_lossy(&b[..b.iter().position(|x| *x == 0).unwrap_or(b.len())])
                        .into_owned()
                };
                let mut name = cstr(&h[..100]);
                if &h[257..262] == b"ustar" {
                    let prefix = cstr(&h[345..500]);
                    if !prefix.is_empty() {
                        name = format!("{prefix}/{name}");
                    }
                }
                let size = octal(&h[124..136]);
                let name = name.trim_start_matches("./");
                self.capture = match (h[156], name) {
                    (b'0' | 0, "backup_label") => {
                        self.label.clear();
                        Capture::Label
                    }
                    (b'0' | 0, "backup_manifest") => {
                        self.manifest_tail.clear();
                        Capture::Manifest
                    }
                    _ => Capture::None,
                };
                self.data_left = size;
                self.pad_left = (512 - size % 512) % 512;
            }
        }
    }
}

/// Errors of a base backup as [`Error::Target`].
pub fn not_base(snap: &Snapshot) -> Error {
    Error::InvalidInput(format!(
        "snapshot {} is not a PostgreSQL base backup (it is a {} backup)",
        snap.id.short(),
        snap.meta
            .get("pg_backup")
            .and_then(|v| v.as_str())
            .unwrap_or(&snap.target_kind)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_label_and_manifest_across_any_read_sizes() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add("PG_VERSION", b"15\n");
        add(
            "backup_label",
            b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n",
        );
        add("base/1/1234", &vec![7u8; 10_000]);
        add("backup_manifest", br#"{"Files": [], "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" } ], "Manifest-Checksum": "x"}"#);
        let bytes = b.into_inner().unwrap();
        for step in [1usize, 7, 512, 4096, 100_000] {
            let mut s = TarScan::default();
            for c in bytes.chunks(step) {
                s.feed(c);
            }
            assert!(String::from_utf8_lossy(&s.label).contains("START TIMELINE: 1"));
            assert_eq!(
                wal_ranges(&s.manifest_tail),
                Some(vec![(1, 0x2000028, 0x2000100)])
            );
        }
    }
}
