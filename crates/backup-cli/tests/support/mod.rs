//! Shared fixtures for the `data-backup-manager` CLI acceptance tests.
//!
//! * [`Repo`]: a repository in its own temporary directory plus helpers that
//!   run the binary against it (`DBM_PASSWORD` set, `--repo DIR` passed).
//! * [`build_nasty_tree`]: a source tree full of edge cases (odd names, hard
//!   links, sparse file, FIFO, device node, xattrs, odd modes and owners, ...).
//! * [`compare_trees`] / [`assert_trees_equal`]: a recursive, `lstat`-based
//!   comparison of a source tree with its restored copy.
//!
//! Every test file uses only part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub mod pg;

/// Name of the binary under test.
pub const BIN_NAME: &str = "data-backup-manager";
/// Path of the binary under test, as built by cargo for these tests.
pub const BIN_PATH: &str = env!("CARGO_BIN_EXE_data-backup-manager");
/// Password every test repository is created with.
pub const PASSWORD: &str = "correct horse battery staple";
/// Upper bound for one CLI invocation; a hung command (e.g. one that tries to
/// read a FIFO or prompts for a password) fails the test instead of hanging.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(900);

pub const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// The outcome of one CLI invocation, with the command line for messages.
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout followed by stderr, lossily decoded.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout_str(), self.stderr_str())
    }

    /// Command line, exit status and (truncated) output, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.status,
            truncate(&self.stdout_str(), 6000),
            truncate(&self.stderr_str(), 6000)
        )
    }

    /// Panics unless the process exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_success(&self) -> &Self {
        self.expect_code(0)
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_slice(self.stdout_str().trim().as_bytes()) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not one JSON document: {e}\n{}", self.describe()),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} more bytes]", &s[..end], s.len() - end)
}

fn render_cmdline(args: &[OsString]) -> String {
    let mut s = String::from(BIN_NAME);
    for a in args {
        s.push(' ');
        s.push_str(&format!("{:?}", a));
    }
    s
}

/// `files:<abs path>` source argument for `backup`.
pub fn source_arg(path: &Path) -> OsString {
    assert!(path.is_absolute(), "sources must be absolute: {path:?}");
    let mut s = OsString::from("files:");
    s.push(path.as_os_str());
    s
}

/// Where restore puts source `src` under `dest` (the full absolute path
/// below the destination, like restic).
pub fn restored_path(dest: &Path, src: &Path) -> PathBuf {
    dest.join(src.strip_prefix("/").expect("absolute source path"))
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create temp dir")
}

fn os_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect()
}

/// Which password an invocation gets.
#[derive(Clone, Copy, Debug)]
pub enum Password<'a> {
    /// `DBM_PASSWORD` set to this value.
    Env(&'a str),
    /// `DBM_PASSWORD` removed from the environment.
    None,
}

/// A repository in its own temporary directory. The directory `path` itself
/// does not exist until `init` creates it.
pub struct Repo {
    _tmp: tempfile::TempDir,
    pub path: PathBuf,
    pub password: String,
}

impl Repo {
    /// A repository location that is not initialised yet.
    pub fn uninit() -> Repo {
        let tmp = tempdir();
        let path = tmp.path().join("repo");
        Repo {
            _tmp: tmp,
            path,
            password: PASSWORD.to_string(),
        }
    }

    /// A freshly initialised repository (asserts that `init` works).
    #[track_caller]
    pub fn init() -> Repo {
        let repo = Repo::uninit();
        repo.run(["init"]).expect_success();
        assert!(
            repo.path.join("config").is_file(),
            "init succeeded but {:?} does not exist",
            repo.path.join("config")
        );
        repo
    }

    /// `assert_cmd` command for the binary with the repository's password in
    /// the environment and `--repo DIR` already given.
    pub fn cmd(&self) -> assert_cmd::Command {
        self.cmd_with(Password::Env(&self.password))
    }

    pub fn cmd_with(&self, password: Password<'_>) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin(BIN_NAME).expect("binary built by cargo");
        match password {
            Password::Env(p) => cmd.env("DBM_PASSWORD", p),
            Password::None => cmd.env_remove("DBM_PASSWORD"),
        };
        // Each test repository gets its own embedded catalog next to it.
        cmd.env("DBM_CATALOG_DIR", self.path.with_file_name("catalog"))
            .env_remove("DBM_DATABASE_URL")
            .env_remove("DATABASE_URL");
        cmd.arg("--repo").arg(&self.path).timeout(CMD_TIMEOUT);
        cmd
    }

    /// Runs the binary with the repository's password.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with(Password::Env(&self.password), args)
    }

    pub fn run_with<I, S>(&self, password: Password<'_>, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = os_args(args);
        let mut full = vec![OsString::from("--repo"), self.path.clone().into_os_string()];
        full.extend(args.iter().cloned());
        let cmdline = format!(
            "{}{}",
            match password {
                Password::Env(p) => format!("DBM_PASSWORD={p:?} "),
                Password::None => String::new(),
            },
            render_cmdline(&full)
        );
        let out = self
            .cmd_with(password)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        Run {
            cmdline,
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Starts the binary in the background (stdout discarded, stderr to
    /// `stderr_to`), for tests that kill it.
    pub fn spawn<I, S>(&self, args: I, stderr_to: &Path) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        std::process::Command::new(BIN_PATH)
            .env("DBM_PASSWORD", &self.password)
            .env("DBM_CATALOG_DIR", self.path.with_file_name("catalog"))
            .env_remove("DBM_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .arg("--repo")
            .arg(&self.path)
            .args(os_args(args))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(stderr_to).expect("create stderr file"))
            .spawn()
            .expect("spawn binary")
    }

    /// `backup files:<src>... <extra> --json` (not checked).
    pub fn backup(&self, sources: &[&Path], extra: &[&str]) -> Run {
        let mut args = vec![OsString::from("backup")];
        args.extend(sources.iter().map(|s| source_arg(s)));
        args.extend(extra.iter().map(OsString::from));
        args.push("--json".into());
        self.run(args)
    }

    /// A backup that must exit 0 and report a complete (non-partial) snapshot
    /// of exactly `sources`.
    #[track_caller]
    pub fn backup_ok(&self, sources: &[&Path], extra: &[&str]) -> BackupReport {
        let run = self.backup(sources, extra);
        run.expect_success();
        let report = BackupReport::parse(&run.json(), &run);
        assert!(
            !report.partial,
            "backup reported partial\n{}",
            run.describe()
        );
        assert!(
            report.errors.is_empty(),
            "backup reported errors: {:?}\n{}",
            report.errors,
            run.describe()
        );
        let want: Vec<String> = sources
            .iter()
            .map(|s| s.to_str().expect("utf-8 source path").to_string())
            .collect();
        let mut got = report.paths.clone();
        got.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got, want_sorted, "snapshot paths\n{}", run.describe());
        report
    }

    /// `restore <snapshot> --destination <dest> <extra>` (not checked).
    pub fn restore<I, S>(&self, snapshot: &str, dest: &Path, extra: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = vec![
            OsString::from("restore"),
            OsString::from(snapshot),
            OsString::from("--destination"),
            dest.as_os_str().to_os_string(),
        ];
        args.extend(os_args(extra));
        self.run(args)
    }

    /// `snapshots --json`, which must succeed and print an array.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<Value> {
        let run = self.run(["snapshots", "--json"]);
        run.expect_success();
        match run.json() {
            Value::Array(a) => a,
            other => panic!(
                "snapshots --json is not an array: {other}\n{}",
                run.describe()
            ),
        }
    }

    /// Sum of the sizes of all files under the repository except `locks/`.
    pub fn size_excluding_locks(&self) -> u64 {
        let locks = self.path.join("locks");
        walk(&self.path)
            .into_iter()
            .filter(|p| !p.starts_with(&locks))
            .filter_map(|p| {
                let md = fs::symlink_metadata(&p).ok()?;
                md.is_file().then_some(md.len())
            })
            .sum()
    }

    /// All pack files (`REPO/data/<2 hex>/<64 hex>`), sorted. Panics on any
    /// other entry under `data/`, which would break the documented layout.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        let data = self.path.join("data");
        let mut packs = Vec::new();
        for p in walk(&data) {
            let md = fs::symlink_metadata(&p).expect("lstat");
            if md.is_dir() {
                continue;
            }
            let name = file_name_str(&p);
            let parent = file_name_str(p.parent().unwrap());
            assert!(
                is_hex(&name, 64) && name.starts_with(&parent) && parent.len() == 2,
                "unexpected file under data/ (want data/<2 hex>/<64 hex pack id>): {p:?}"
            );
            packs.push(p);
        }
        packs.sort();
        packs
    }

    /// Names of the lock files currently in `REPO/locks`.
    pub fn lock_files(&self) -> Vec<String> {
        match fs::read_dir(self.path.join("locks")) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            }
            Err(_) => Vec::new(),
        }
    }
}

pub fn file_name_str(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------
// JSON reports
// ---------------------------------------------------------------------------

#[track_caller]
fn field<'a>(v: &'a Value, key: &str, run: &Run) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("JSON lacks field {key:?}: {v}\n{}", run.describe()))
}

#[track_caller]
fn u64_field(v: &Value, key: &str, run: &Run) -> u64 {
    field(v, key, run).as_u64().unwrap_or_else(|| {
        panic!(
            "JSON field {key:?} is not an unsigned integer: {v}\n{}",
            run.describe()
        )
    })
}

#[track_caller]
fn str_field(v: &Value, key: &str, run: &Run) -> String {
    field(v, key, run)
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "JSON field {key:?} is not a string: {v}\n{}",
                run.describe()
            )
        })
        .to_string()
}

#[track_caller]
fn str_array(v: &Value, key: &str, run: &Run) -> Vec<String> {
    match field(v, key, run) {
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .unwrap_or_else(|| {
                        panic!("{key:?} holds a non-string: {v}\n{}", run.describe())
                    })
                    .to_string()
            })
            .collect(),
        _ => panic!(
            "JSON field {key:?} is not an array: {v}\n{}",
            run.describe()
        ),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub bytes_added: u64,
}

/// The object printed by `backup --json`.
#[derive(Clone, Debug)]
pub struct BackupReport {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub paths: Vec<String>,
    pub partial: bool,
    pub errors: Vec<Value>,
    pub summary: Summary,
}

impl BackupReport {
    #[track_caller]
    pub fn parse(v: &Value, run: &Run) -> BackupReport {
        let id = str_field(v, "id", run);
        let short_id = str_field(v, "short_id", run);
        assert!(
            is_hex(&id, 64),
            "id is not 64 lowercase hex: {id:?}\n{}",
            run.describe()
        );
        assert!(
            is_hex(&short_id, 8),
            "short_id is not 8 lowercase hex: {short_id:?}\n{}",
            run.describe()
        );
        let time = str_field(v, "time", run);
        assert!(!time.is_empty(), "empty time\n{}", run.describe());
        let partial = field(v, "partial", run)
            .as_bool()
            .unwrap_or_else(|| panic!("partial is not a bool\n{}", run.describe()));
        let errors = match field(v, "errors", run) {
            Value::Array(a) => a.clone(),
            _ => panic!("errors is not an array\n{}", run.describe()),
        };
        let s = field(v, "summary", run);
        let summary = Summary {
            files_new: u64_field(s, "files_new", run),
            files_changed: u64_field(s, "files_changed", run),
            files_unmodified: u64_field(s, "files_unmodified", run),
            dirs: u64_field(s, "dirs", run),
            bytes_read: u64_field(s, "bytes_read", run),
            bytes_total: u64_field(s, "bytes_total", run),
            bytes_added: u64_field(s, "bytes_added", run),
        };
        BackupReport {
            id,
            short_id,
            time,
            paths: str_array(v, "paths", run),
            partial,
            errors,
            summary,
        }
    }
}

/// One entry of `check --json`'s `errors`.
#[derive(Clone, Debug)]
pub struct CheckError {
    pub kind: String,
    pub pack: Option<String>,
    pub message: String,
    pub snapshots: Vec<String>,
    pub paths: Vec<String>,
}

/// Parses `check --json` output into (`ok`, errors).
#[track_caller]
pub fn parse_check_json(run: &Run) -> (bool, Vec<CheckError>) {
    let v = run.json();
    let ok = field(&v, "ok", run)
        .as_bool()
        .unwrap_or_else(|| panic!("ok is not a bool\n{}", run.describe()));
    let errors = match field(&v, "errors", run) {
        Value::Array(a) => a
            .iter()
            .map(|e| CheckError {
                kind: str_field(e, "kind", run),
                pack: match field(e, "pack", run) {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => panic!(
                        "pack is neither string nor null: {other}\n{}",
                        run.describe()
                    ),
                },
                message: str_field(e, "message", run),
                snapshots: str_array(e, "snapshots", run),
                paths: str_array(e, "paths", run),
            })
            .collect(),
        _ => panic!("errors is not an array\n{}", run.describe()),
    };
    (ok, errors)
}

// ---------------------------------------------------------------------------
// Low-level file system helpers (libc)
// ---------------------------------------------------------------------------

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

#[track_caller]
fn check_rc(rc: libc::c_int, what: &str, p: &Path) {
    if rc != 0 {
        panic!("{what} {p:?}: {}", io::Error::last_os_error());
    }
}

/// Sets atime and mtime (not following symlinks) to `sec`.`nsec`.
#[track_caller]
pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    // SAFETY: timespec is plain old data; zeroed is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = sec as libc::time_t;
    ts.tv_nsec = nsec as _;
    let times = [ts, ts];
    let c = cpath(p);
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check_rc(rc, "utimensat", p);
}

#[track_caller]
pub fn mkfifo(p: &Path, mode: u32) {
    let c = cpath(p);
    // SAFETY: valid NUL-terminated path.
    check_rc(
        unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) },
        "mkfifo",
        p,
    );
}

#[track_caller]
pub fn mknod_char(p: &Path, mode: u32, major: u32, minor: u32) {
    let c = cpath(p);
    let dev = libc::makedev(major, minor);
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) };
    check_rc(rc, "mknod", p);
}

#[track_caller]
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check_rc(rc, "lsetxattr", p);
}

/// All `user.*` extended attributes of `p` (not following symlinks).
pub fn user_xattrs(p: &Path) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let c = cpath(p);
    let mut out = BTreeMap::new();
    // SAFETY: size query with a null buffer.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) {
            Ok(out)
        } else {
            Err(e)
        };
    }
    let mut names = vec![0u8; size as usize];
    // SAFETY: buffer of `names.len()` bytes.
    let size = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if size < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(size as usize);
    for name in names.split(|b| *b == 0).filter(|n| n.starts_with(b"user.")) {
        let cn = CString::new(name).unwrap();
        // SAFETY: size query with a null buffer.
        let vs = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        if vs < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut value = vec![0u8; vs as usize];
        // SAFETY: buffer of `value.len()` bytes.
        let vs = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if vs < 0 {
            return Err(io::Error::last_os_error());
        }
        value.truncate(vs as usize);
        out.insert(name.to_vec(), value);
    }
    Ok(out)
}

#[track_caller]
pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {p:?}: {e}"));
}

#[track_caller]
pub fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {p:?}: {e}"));
}

#[track_caller]
pub fn write_file(p: &Path, content: &[u8]) {
    fs::write(p, content).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
}

#[track_caller]
pub fn mkdirs(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {p:?}: {e}"));
}

#[track_caller]
pub fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("symlink {link:?}: {e}"));
}

/// Flips all bits of the byte at `offset` of `p` (making it writable first
/// and restoring its mode afterwards). Returns the original byte.
#[track_caller]
pub fn flip_byte(p: &Path, offset: u64) -> u8 {
    let mode = fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    chmod(p, mode | 0o600);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    let orig = b[0];
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
    drop(f);
    chmod(p, mode);
    orig
}

// ---------------------------------------------------------------------------
// Deterministic pseudo-random content
// ---------------------------------------------------------------------------

/// xorshift64* generator: fast, good enough for incompressible test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator whose stream differs between calls and between runs, so
    /// that separately generated data never deduplicates.
    pub fn unique() -> Rng {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let c = COUNTER.fetch_add(1, Ordering::Relaxed);
        Rng::new(t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }

    pub fn hex(&mut self, n: usize) -> String {
        self.bytes(n).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Writes `size` random bytes to `p`, streaming.
#[track_caller]
pub fn write_random_file(p: &Path, size: u64, rng: &mut Rng) {
    let mut f = File::create(p).unwrap_or_else(|e| panic!("create {p:?}: {e}"));
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

// ---------------------------------------------------------------------------
// Source trees
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeSize {
    /// 64 MiB sparse file, 20 MiB random file.
    Full,
    /// 8 MiB sparse file, 3 MiB random file.
    Small,
}

/// A built nasty tree and some interesting paths inside it.
pub struct NastyTree {
    pub root: PathBuf,
    /// Sparse file (`sparse_len` bytes, data at 0 and at `sparse_len * 5 / 8`).
    pub sparse_file: PathBuf,
    pub sparse_len: u64,
    /// Incompressible random file.
    pub random_file: PathBuf,
    /// File whose name has the bytes 0xff 0xfe.
    pub non_utf8_file: PathBuf,
    /// File whose name contains a newline.
    pub newline_file: PathBuf,
    /// A subdirectory (files, nested dir, symlink) for `--include` tests.
    pub include_dir: PathBuf,
    /// Number of regular-file names in the tree.
    pub regular_files: u64,
}

/// Builds a tree of edge cases under `root` (which must not exist yet).
/// Needs root privileges (device node, chown).
pub fn build_nasty_tree(root: &Path, size: TreeSize) -> NastyTree {
    let mut rng = Rng::unique();
    assert!(!root.exists(), "{root:?} exists already");
    mkdirs(root);
    let r = |rel: &str| root.join(rel);

    // Plain and oddly named files.
    write_file(&r("plain.txt"), b"hello, world\n");
    let non_utf8 = root.join(OsStr::from_bytes(b"bad-\xff\xfe-name"));
    write_file(&non_utf8, b"file with a non-UTF-8 name\n");
    let newline = r("new\nline");
    write_file(&newline, b"file with a newline in its name\n");
    write_file(&r("  spaced name  "), b"spaces\n");
    write_file(
        &r("unicode-\u{e4}\u{f6}\u{fc}-\u{65e5}\u{672c}"),
        b"unicode name\n",
    );
    write_file(&r("zero"), b"");

    // Hard-link group of 3 names (two directories).
    mkdirs(&r("links/sub"));
    write_file(&r("links/a"), b"one inode, three names\n");
    fs::hard_link(r("links/a"), r("links/b")).unwrap();
    fs::hard_link(r("links/a"), r("links/sub/c")).unwrap();
    write_file(&r("links/not-linked"), b"one inode, three names\n");

    // Sparse file.
    let (sparse_len, random_len) = match size {
        TreeSize::Full => (64 * MIB, 20 * MIB),
        TreeSize::Small => (8 * MIB, 3 * MIB),
    };
    let sparse = r("sparse.img");
    {
        let f = File::create(&sparse).unwrap();
        f.set_len(sparse_len).unwrap();
        f.write_all_at(b"data at offset zero", 0).unwrap();
        f.write_all_at(&rng.bytes(4096), sparse_len * 5 / 8)
            .unwrap();
    }
    let md = fs::metadata(&sparse).unwrap();
    assert!(
        md.blocks() * 512 < sparse_len / 2,
        "test setup: the file system did not create a sparse file"
    );

    // Empty directories (nested) and one more empty dir.
    mkdirs(&r("empty/nested/deeper"));
    mkdirs(&r("empty2"));

    // FIFO and character device (same numbers as /dev/null).
    mkfifo(&r("fifo"), 0o640);
    chmod(&r("fifo"), 0o640);
    mknod_char(&r("chardev"), 0o620, 1, 3);
    chmod(&r("chardev"), 0o620);

    // Extended attributes on a file and on a directory.
    write_file(&r("xattr-file"), b"has xattrs\n");
    set_xattr(&r("xattr-file"), "user.test", b"\x00\x01binary\xffvalue");
    set_xattr(&r("xattr-file"), "user.second", b"second value");
    mkdirs(&r("xattr-dir"));
    write_file(&r("xattr-dir/inside"), b"inside a dir with xattrs\n");
    set_xattr(&r("xattr-dir"), "user.test", b"directory value");

    // Symlinks: dangling, to a directory, owned by someone else.
    symlink("does/not/exist", &r("dangling"));
    symlink("empty", &r("dirlink"));
    symlink("plain.txt", &r("owned-link"));

    // Odd modes.
    write_file(&r("mode600"), b"private\n");
    chmod(&r("mode600"), 0o600);
    write_file(&r("setuid"), b"#!/bin/sh\necho setuid\n");
    chmod(&r("setuid"), 0o4755);
    mkdirs(&r("sticky-dir"));
    chmod(&r("sticky-dir"), 0o1777);
    mkdirs(&r("setgid-dir"));
    write_file(&r("setgid-dir/f"), b"in a setgid dir\n");
    chmod(&r("setgid-dir"), 0o2750);

    // Foreign owners (chown before any chmod that matters).
    write_file(&r("owned"), b"owned by 1234:5678\n");
    lchown(&r("owned"), 1234, 5678);
    chmod(&r("owned"), 0o640);
    mkdirs(&r("owned-dir"));
    write_file(&r("owned-dir/file"), b"also owned\n");
    lchown(&r("owned-dir/file"), 1234, 5678);
    lchown(&r("owned-dir"), 1234, 5678);
    chmod(&r("owned-dir"), 0o750);
    lchown(&r("owned-link"), 1234, 5678);

    // Large incompressible file.
    let random = r("random.bin");
    write_random_file(&random, random_len, &mut rng);

    // Subdirectory for --include tests.
    let include_dir = r("include-me");
    mkdirs(&include_dir.join("nested"));
    write_file(&include_dir.join("one.txt"), b"first included file\n");
    write_random_file(&include_dir.join("two.bin"), 100_000, &mut rng);
    write_file(&include_dir.join("nested/three.txt"), b"third\n");
    symlink("one.txt", &include_dir.join("link-to-one"));

    // Read-only directory with a file in it (content first).
    mkdirs(&r("readonly-dir"));
    write_file(&r("readonly-dir/inner.txt"), b"inside a read-only dir\n");
    chmod(&r("readonly-dir/inner.txt"), 0o444);
    chmod(&r("readonly-dir"), 0o555);

    // Timestamps with nanoseconds, files first, directories deepest first,
    // the root last (creating entries changes the parent's mtime).
    set_mtime(&r("plain.txt"), 1_500_000_000, 123_456_789);
    set_mtime(&random, 1_700_000_000, 999_999_999);
    set_mtime(&non_utf8, 1_234_567_890, 1);
    set_mtime(&r("zero"), 0, 0);
    set_mtime(&r("setuid"), 1_111_111_111, 111_111_111);
    set_mtime(&r("dangling"), 1_300_000_000, 42);
    set_mtime(&r("dirlink"), 1_300_000_001, 999_000_001);
    set_mtime(&r("readonly-dir/inner.txt"), 1_400_000_000, 500);
    write_file(&r("before-1970"), b"old\n");
    set_mtime(&r("before-1970"), -31_536_000, 250_000_000);
    write_file(&r("year-2200"), b"future\n");
    set_mtime(&r("year-2200"), 7_258_118_400, 7);
    set_mtime(&r("empty/nested/deeper"), 1_600_000_000, 1);
    set_mtime(&r("empty/nested"), 1_600_000_001, 2);
    set_mtime(&include_dir.join("nested"), 1_610_000_000, 3);
    set_mtime(&include_dir, 1_620_000_000, 4);
    set_mtime(&r("readonly-dir"), 1_400_000_001, 987_654_321);
    set_mtime(&r("xattr-dir"), 1_450_000_000, 450_000_000);
    set_mtime(root, 1_650_000_000, 555_555_555);

    let regular_files = count_regular_files(root);
    NastyTree {
        root: root.to_path_buf(),
        sparse_file: sparse,
        sparse_len,
        random_file: random,
        non_utf8_file: non_utf8,
        newline_file: newline,
        include_dir,
        regular_files,
    }
}

/// `count` random files of `size` bytes with random names in two
/// directories under `root` (no empty files or directories, so nothing in it
/// deduplicates with other trees).
pub fn build_random_tree(root: &Path, count: usize, size: u64) -> Vec<PathBuf> {
    let mut rng = Rng::unique();
    let sub = root.join(format!("dir-{}", rng.hex(6)));
    mkdirs(&sub);
    (0..count)
        .map(|i| {
            let dir = if i % 2 == 0 { root } else { sub.as_path() };
            let p = dir.join(format!("file-{i}-{}", rng.hex(8)));
            write_random_file(&p, size, &mut rng);
            p
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Walking and comparing trees
// ---------------------------------------------------------------------------

/// All entries below `root` (not `root` itself), not following symlinks,
/// sorted. A missing `root` gives an empty list.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    fn rec(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.expect("read_dir entry").path()).collect(),
            Err(_) => return,
        };
        entries.sort();
        for p in entries {
            let is_dir = fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            out.push(p.clone());
            if is_dir {
                rec(&p, out);
            }
        }
    }
    let mut out = Vec::new();
    rec(root, &mut out);
    out
}

pub fn count_regular_files(root: &Path) -> u64 {
    walk(root)
        .iter()
        .filter(|p| {
            fs::symlink_metadata(p)
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
        .count() as u64
}

pub fn sum_regular_file_sizes(root: &Path) -> u64 {
    walk(root)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streaming byte comparison of two regular files. `Ok(None)` when equal,
/// otherwise a description of the first difference.
pub fn compare_file_contents(a: &Path, b: &Path) -> io::Result<Option<String>> {
    let mut fa = File::open(a)?;
    let mut fb = File::open(b)?;
    let mut ba = vec![0u8; MIB as usize];
    let mut bb = vec![0u8; MIB as usize];
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if ba[..na] != bb[..nb] {
            let first = ba[..na]
                .iter()
                .zip(&bb[..nb])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Ok(Some(format!(
                "content differs at byte {}",
                offset + first as u64
            )));
        }
        if na == 0 {
            return Ok(None);
        }
        offset += na as u64;
    }
}

fn file_type_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        libc::S_IFSOCK => "socket",
        _ => "unknown",
    }
}

/// For every name in a hard-link group of 2+ names inside `root`: the sorted
/// group (paths relative to `root`).
fn link_groups(root: &Path) -> BTreeMap<PathBuf, Vec<PathBuf>> {
    let mut by_inode: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    for p in walk(root) {
        let md = fs::symlink_metadata(&p).expect("lstat");
        if !md.is_dir() && md.nlink() > 1 {
            by_inode
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    let mut out = BTreeMap::new();
    for (_, mut group) in by_inode {
        if group.len() < 2 {
            continue;
        }
        group.sort();
        for p in &group {
            out.insert(p.clone(), group.clone());
        }
    }
    out
}

/// Compares `src` with its restored copy `dst` recursively (lstat): names
/// (bytes), file type, content, permission bits (`& 0o7777`), uid/gid, mtime
/// in ns (files, directories, symlinks), `user.*` xattrs, symlink targets,
/// device numbers and hard-link groups. Returns the differences found.
pub fn compare_trees(src: &Path, dst: &Path) -> Vec<String> {
    let mut diffs = Vec::new();
    compare_node(src, dst, Path::new("."), &mut diffs);

    let sg = link_groups(src);
    let dg = link_groups(dst);
    let names: BTreeSet<&PathBuf> = sg.keys().chain(dg.keys()).collect();
    for name in names {
        let s = sg.get(name);
        let d = dg.get(name);
        if s != d {
            diffs.push(format!(
                "{name:?}: hard-link group in source {s:?}, in restore {d:?}"
            ));
        }
    }
    diffs
}

fn compare_node(src: &Path, dst: &Path, rel: &Path, diffs: &mut Vec<String>) {
    let sm = match fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) => {
            diffs.push(format!("{rel:?}: cannot lstat source: {e}"));
            return;
        }
    };
    let dm = match fs::symlink_metadata(dst) {
        Ok(m) => m,
        Err(e) => {
            diffs.push(format!("{rel:?}: missing in restore ({e})"));
            return;
        }
    };
    let (st, dt) = (sm.mode() & libc::S_IFMT, dm.mode() & libc::S_IFMT);
    if st != dt {
        diffs.push(format!(
            "{rel:?}: type {} in source, {} in restore",
            file_type_name(st),
            file_type_name(dt)
        ));
        return;
    }
    if sm.mode() & 0o7777 != dm.mode() & 0o7777 {
        diffs.push(format!(
            "{rel:?}: mode {:o} in source, {:o} in restore",
            sm.mode() & 0o7777,
            dm.mode() & 0o7777
        ));
    }
    if (sm.uid(), sm.gid()) != (dm.uid(), dm.gid()) {
        diffs.push(format!(
            "{rel:?}: owner {}:{} in source, {}:{} in restore",
            sm.uid(),
            sm.gid(),
            dm.uid(),
            dm.gid()
        ));
    }
    if matches!(st, libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK)
        && (sm.mtime(), sm.mtime_nsec()) != (dm.mtime(), dm.mtime_nsec())
    {
        diffs.push(format!(
            "{rel:?}: mtime {}.{:09} in source, {}.{:09} in restore",
            sm.mtime(),
            sm.mtime_nsec(),
            dm.mtime(),
            dm.mtime_nsec()
        ));
    }
    match (user_xattrs(src), user_xattrs(dst)) {
        (Ok(a), Ok(b)) if a == b => {}
        (a, b) => diffs.push(format!(
            "{rel:?}: user xattrs {} in source, {} in restore",
            show_xattrs(&a),
            show_xattrs(&b)
        )),
    }
    match st {
        libc::S_IFREG => {
            if sm.len() != dm.len() {
                diffs.push(format!(
                    "{rel:?}: size {} in source, {} in restore",
                    sm.len(),
                    dm.len()
                ));
            } else {
                match compare_file_contents(src, dst) {
                    Ok(None) => {}
                    Ok(Some(d)) => diffs.push(format!("{rel:?}: {d}")),
                    Err(e) => diffs.push(format!("{rel:?}: cannot compare content: {e}")),
                }
            }
        }
        libc::S_IFLNK => {
            let a = fs::read_link(src).map(|p| p.into_os_string().into_vec());
            let b = fs::read_link(dst).map(|p| p.into_os_string().into_vec());
            match (a, b) {
                (Ok(a), Ok(b)) if a == b => {}
                (a, b) => diffs.push(format!(
                    "{rel:?}: symlink target {:?} in source, {:?} in restore",
                    a.map(OsString::from_vec),
                    b.map(OsString::from_vec)
                )),
            }
        }
        libc::S_IFCHR | libc::S_IFBLK if sm.rdev() != dm.rdev() => {
            diffs.push(format!(
                "{rel:?}: device {:#x} in source, {:#x} in restore",
                sm.rdev(),
                dm.rdev()
            ));
        }
        libc::S_IFDIR => {
            let names = |d: &Path| -> BTreeSet<OsString> {
                fs::read_dir(d)
                    .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
                    .unwrap_or_default()
            };
            let (sn, dn) = (names(src), names(dst));
            for extra in dn.difference(&sn) {
                diffs.push(format!("{:?}: only in restore", rel.join(extra)));
            }
            for name in &sn {
                compare_node(&src.join(name), &dst.join(name), &rel.join(name), diffs);
            }
        }
        _ => {}
    }
}

fn show_xattrs(x: &io::Result<BTreeMap<Vec<u8>, Vec<u8>>>) -> String {
    match x {
        Ok(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}=\"{}\"", k.escape_ascii(), v.escape_ascii()))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Err(e) => format!("<error: {e}>"),
    }
}

/// Panics with the list of differences unless `dst` is an exact copy of `src`.
#[track_caller]
pub fn assert_trees_equal(src: &Path, dst: &Path) {
    let diffs = compare_trees(src, dst);
    if !diffs.is_empty() {
        let shown: Vec<&String> = diffs.iter().take(60).collect();
        panic!(
            "restored tree {dst:?} differs from source {src:?} ({} differences):\n  {}",
            diffs.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

/// A description of every entry under `root` (type, mode, owner, mtime, size
/// and full content for regular files), to prove a directory was untouched.
pub fn tree_state(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut entries = walk(root);
    entries.push(root.to_path_buf());
    for p in entries {
        let md = fs::symlink_metadata(&p).expect("lstat");
        let mut desc = format!(
            "{} mode={:o} owner={}:{} mtime={}.{:09} size={}",
            file_type_name(md.mode()),
            md.mode() & 0o7777,
            md.uid(),
            md.gid(),
            md.mtime(),
            md.mtime_nsec(),
            md.len()
        );
        if md.is_file() {
            desc.push_str(&format!(" content={:?}", fs::read(&p).expect("read")));
        }
        out.insert(p, desc);
    }
    out
}

/// For a restore into `dest` that may have stopped half-way: every regular
/// file present under `dest` whose name maps back to an existing source file
/// (DEST/a/b -> /a/b) must hold exactly that source file's bytes. Returns the
/// violations and the number of files checked.
pub fn restored_files_with_wrong_content(dest: &Path) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut checked = 0;
    for p in walk(dest) {
        let md = fs::symlink_metadata(&p).expect("lstat");
        if !md.is_file() {
            continue;
        }
        let src = Path::new("/").join(p.strip_prefix(dest).unwrap());
        match fs::symlink_metadata(&src) {
            Ok(sm) if sm.is_file() => {}
            _ => continue,
        }
        checked += 1;
        match compare_file_contents(&src, &p) {
            Ok(None) if md.len() == fs::metadata(&src).unwrap().len() => {}
            Ok(None) => bad.push(format!("{p:?}: size differs from {src:?}")),
            Ok(Some(d)) => bad.push(format!("{p:?}: {d} (vs {src:?})")),
            Err(e) => bad.push(format!("{p:?}: cannot compare: {e}")),
        }
    }
    (bad, checked)
}

// ---------------------------------------------------------------------------
// Helpers added for the retention, partial, keys and browse tests
// ---------------------------------------------------------------------------

impl Repo {
    /// Like [`Repo::run_with`], with extra environment variables set.
    pub fn run_env<I, S>(&self, password: Password<'_>, env: &[(&str, &str)], args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = os_args(args);
        let mut full = vec![OsString::from("--repo"), self.path.clone().into_os_string()];
        full.extend(args.iter().cloned());
        let mut prefix = String::new();
        for (k, v) in env {
            prefix.push_str(&format!("{k}={v:?} "));
        }
        if let Password::Env(p) = password {
            prefix.push_str(&format!("DBM_PASSWORD={p:?} "));
        }
        let cmdline = format!("{prefix}{}", render_cmdline(&full));
        let mut cmd = self.cmd_with(password);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        Run {
            cmdline,
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Sum of the sizes of all files under `REPO/data` (the packs).
    pub fn data_size(&self) -> u64 {
        walk(&self.path.join("data"))
            .iter()
            .filter_map(|p| fs::symlink_metadata(p).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Ids of `snapshots --json`, oldest first.
    #[track_caller]
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.snapshots()
            .iter()
            .map(|s| {
                s["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("snapshot without id: {s}"))
                    .to_string()
            })
            .collect()
    }
}

/// Copies `src` to `dst` (which must not exist) with `cp -a`: contents, modes, owners,
/// timestamps (ns), symlinks, xattrs. For keeping the state of a source at one snapshot.
#[track_caller]
pub fn copy_tree(src: &Path, dst: &Path) {
    assert!(!dst.exists(), "{dst:?} exists already");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .output()
        .expect("run cp -a");
    assert!(
        out.status.success(),
        "cp -a {src:?} {dst:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
