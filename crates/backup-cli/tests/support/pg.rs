//! Fixtures for the PostgreSQL tests: `psql` against the shared server (127.0.0.1:5432, trust,
//! user postgres) and throwaway clusters made with `initdb`, run as the `postgres` OS user.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Repo, Run, BIN_PATH};

/// Host and port of the shared server.
pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;

/// Directory of the newest installed PostgreSQL server binaries.
pub fn bin_dir() -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed in /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    v.sort();
    v.pop().expect("a PostgreSQL bin directory")
}

/// A unique lowercase suffix for database and role names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        super::Rng::unique().hex(4)
    )
}

/// Runs SQL with `psql -XAt` (on_error_stop) on `host:port`, database `db`, as `user`;
/// returns stdout (trimmed). Panics with psql's stderr on failure.
#[track_caller]
pub fn psql_at(host: &str, port: u16, db: &str, sql: &str) -> String {
    let out = psql_cmd(host, port, db)
        .arg("-c")
        .arg(sql)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql on {db} failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn psql_cmd(host: &str, port: u16, db: &str) -> Command {
    let mut c = Command::new(bin_dir().join("psql"));
    c.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        host,
        "-p",
    ])
    .arg(port.to_string())
    .args(["-U", "postgres", "-d", db])
    .env_remove("PGPASSWORD")
    .stdin(Stdio::null());
    c
}

/// `psql_at` on the shared server.
#[track_caller]
pub fn psql(db: &str, sql: &str) -> String {
    psql_at(HOST, PORT, db, sql)
}

/// Runs the binary against `repo` with the shared server in the PG* variables.
pub fn run_pg<I, S>(repo: &Repo, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let cmdline = format!(
        "PGHOST={HOST} PGPORT={PORT} PGUSER=postgres data-backup-manager --repo {:?} {:?}",
        repo.path, args
    );
    let out = repo
        .cmd()
        .env("PGHOST", HOST)
        .env("PGPORT", PORT.to_string())
        .env("PGUSER", "postgres")
        .env_remove("PGPASSWORD")
        .env_remove("PGDATABASE")
        .args(&args)
        .output()
        .expect("run binary");
    Run {
        cmdline,
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// Whether this process may run commands as the `postgres` OS user.
pub fn can_run_as_postgres() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    root && Path::new("/usr/sbin/runuser").exists()
        && Command::new("id")
            .arg("postgres")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// `runuser -u postgres -- env VARS... prog args...`.
pub fn as_postgres(prog: &Path, envs: &[(&str, String)]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", "env"]);
    for (k, v) in envs {
        c.arg(format!("{k}={v}"));
    }
    c.arg(prog).stdin(Stdio::null());
    c
}

pub fn chown_postgres(p: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(p)
        .status()
        .expect("chown")
        .success();
    assert!(ok, "chown -R postgres {}", p.display());
}

/// A free-looking port for a cluster that listens only on a private Unix socket.
pub fn spare_port() -> u16 {
    40000 + (super::Rng::unique().next_u64() % 20000) as u16
}

/// A throwaway cluster in `dir/data`, socket in `dir`, run as postgres; stopped on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

impl Cluster {
    /// `initdb` (trust auth, user postgres) with `extra_conf` appended to postgresql.conf.
    pub fn init(dir: &Path, name: &str, extra_conf: &str) -> Cluster {
        let data = dir.join(name);
        let c = Cluster {
            dir: dir.to_path_buf(),
            port: spare_port(),
            log: dir.join(format!("{name}.log")),
            data,
        };
        let out = as_postgres(&bin_dir().join("initdb"), &[])
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&c.data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.append_conf(&format!(
            "port = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\nshared_buffers = 16MB\n{extra_conf}\n",
            c.port,
            dir.display()
        ));
        c
    }

    /// A cluster over an existing (restored) data directory.
    pub fn existing(dir: &Path, data: &Path, name: &str) -> Cluster {
        Cluster {
            dir: dir.to_path_buf(),
            data: data.to_path_buf(),
            port: spare_port(),
            log: dir.join(format!("{name}.log")),
        }
    }

    pub fn append_conf(&self, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        f.write_all(text.as_bytes()).expect("write postgresql.conf");
    }

    #[track_caller]
    pub fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=",
            self.port,
            self.dir.display()
        );
        let out = as_postgres(&bin_dir().join("pg_ctl"), &[])
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "600", "-o", &opts, "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start {}: {}\n{}",
            self.data.display(),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn stop(&self) {
        let _ = as_postgres(&bin_dir().join("pg_ctl"), &[])
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "120", "stop"])
            .output();
    }

    #[track_caller]
    pub fn sql(&self, sql: &str) -> String {
        psql_at(&self.dir.display().to_string(), self.port, "postgres", sql)
    }

    /// Waits until the server is out of recovery (a restored cluster promotes at its target).
    #[track_caller]
    pub fn wait_promoted(&self) {
        let t = Instant::now();
        loop {
            let out = psql_cmd(&self.dir.display().to_string(), self.port, "postgres")
                .args(["-c", "SELECT pg_is_in_recovery()"])
                .output()
                .expect("psql");
            if String::from_utf8_lossy(&out.stdout).trim() == "f" {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "cluster {} still in recovery after 600 s\n{}",
                self.data.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Switches to a new WAL segment and waits until the finished one is archived.
    #[track_caller]
    pub fn switch_and_wait_archived(&self) -> String {
        let seg = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        let t = Instant::now();
        loop {
            let last = self.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.len() == 24 && last.as_str() >= seg.as_str() {
                return seg;
            }
            let failed = self.sql("SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver");
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "segment {seg} not archived after 300 s (last archived {last:?}, last failed {failed:?})\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory under /tmp readable by the postgres user, removed on drop.
pub struct PgTemp {
    pub path: PathBuf,
}

impl PgTemp {
    pub fn new(prefix: &str) -> PgTemp {
        let path = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&path).expect("create temp dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        chown_postgres(&path);
        PgTemp { path }
    }

    /// Copies the binary under test here (world-executable), so the postgres user can run it
    /// from archive_command.
    pub fn install_binary(&self) -> PathBuf {
        let bin = self.path.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        let dst = bin.join("data-backup-manager");
        std::fs::copy(BIN_PATH, &dst).expect("copy binary");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dst
    }
}

impl Drop for PgTemp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `cmd` and packs the outcome as a [`Run`].
pub fn run_cmd(mut cmd: Command, cmdline: impl Into<String>) -> Run {
    let cmdline = cmdline.into();
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    Run {
        cmdline,
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}
