//! The PostgreSQL target: logical backups (`pg_dump`), base backups (`pg_basebackup`), the WAL
//! archive (`wal-push` / `wal-fetch`) and point-in-time restore.
//!
//! * [`PgConn`] — where the server is: the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`,
//!   `PGPASSWORD`, `PGDATABASE`), a `postgres://` URL (fields it leaves out come from the
//!   variables, as in libpq), or a config entry the CLI resolves to one of these. The password
//!   is handed to child processes in their environment (`PGPASSWORD`, never on a command line,
//!   which any user can read in `/proc/<pid>/cmdline`) and never appears in logs, snapshot
//!   metadata or error messages: [`PgConn`]'s `Display` leaves it out.
//! * [`logical`] — `pg_dumpall --globals-only` and `pg_dump -Fc` per database, streamed into the
//!   repository; restore through `psql` / `pg_restore` fed from the repository.
//! * [`base`] — `pg_basebackup -Ft -D - -X none` streamed as one tar member; start/stop LSN and
//!   timeline come from the stream's own `backup_label` and `backup_manifest`.
//! * [`wal`] — the WAL archive in the repository (`wal/<timeline>/<file>`), continuity checks and
//!   WAL retention.
//! * [`pitr`] — point-in-time restore into a data directory, and `--check`.
//!
//! External programs: the PostgreSQL client binaries of the server's major version
//! (`/usr/lib/postgresql/<major>/bin`, Debian's layout) when present, else `PATH`, or the
//! directory given as [`PgConn::bin_dir`] / `DBM_PG_BIN`.

pub mod base;
pub mod logical;
pub mod pitr;
pub mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::target::{Target, TargetSpec};

/// What `backup postgres` takes (the PRD's default is logical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgBackupMode {
    /// `pg_dumpall --globals-only` plus `pg_dump -Fc` of each database.
    #[default]
    Logical,
    /// A physical base backup (`pg_basebackup`), the start point of point-in-time recovery.
    Base,
}

impl std::str::FromStr for PgBackupMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logical" => Ok(PgBackupMode::Logical),
            "base" => Ok(PgBackupMode::Base),
            _ => Err(Error::InvalidInput(format!(
                "unknown PostgreSQL backup type {s:?}: expected logical or base"
            ))),
        }
    }
}

/// Opens the PostgreSQL target for `specs` (one server per backup): a logical backup of
/// `databases` (empty: all) or a base backup.
///
/// Errors: [`Error::InvalidInput`] for several servers in one backup, a spec that is not a
/// `postgres://` URL (config names are resolved by the caller), or `databases` with a base
/// backup (it always copies the whole cluster).
pub fn open(
    specs: &[TargetSpec],
    mode: PgBackupMode,
    databases: &[String],
) -> Result<Arc<dyn Target>> {
    let arg = match specs {
        [TargetSpec::Postgres(a)] => a,
        [TargetSpec::Postgres(_), ..] => {
            return Err(Error::InvalidInput(
                "one PostgreSQL server per backup: back up each server separately".into(),
            ))
        }
        _ => return Err(Error::InvalidInput("not a postgres target".into())),
    };
    let conn = PgConn::parse(arg)?;
    Ok(match mode {
        PgBackupMode::Logical => Arc::new(logical::LogicalTarget::new(conn, databases.to_vec())),
        PgBackupMode::Base if !databases.is_empty() => return Err(Error::InvalidInput(
            "a base backup copies the whole cluster: --database applies to logical backups only"
                .into(),
        )),
        PgBackupMode::Base => Arc::new(base::BaseTarget::new(conn)),
    })
}

/// Connection parameters of a PostgreSQL server. Unset fields fall back to libpq's defaults in
/// child processes; for the tool's own connection (tokio-postgres) the defaults are host
/// `/var/run/postgresql` (if it exists, else `localhost`), port 5432, user `$USER`, database
/// `postgres`.
#[derive(Clone, Default)]
pub struct PgConn {
    /// Host name, IP address, or the directory of a Unix socket (starts with `/`).
    pub host: Option<String>,
    /// TCP port (also names the Unix socket file).
    pub port: Option<u16>,
    /// Role to connect as.
    pub user: Option<String>,
    /// Database for the tool's own queries (`PGDATABASE`; default `postgres`).
    pub dbname: Option<String>,
    /// `sslmode` (passed on as `PGSSLMODE`).
    pub sslmode: Option<String>,
    /// Directory holding `pg_dump` & co. (default: see the module docs).
    pub bin_dir: Option<PathBuf>,
    password: Option<String>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "PgConn({self})")
    }
}

impl std::fmt::Display for PgConn {
    /// `postgres://user@host:port` — never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}",
            self.user_or_default(),
            self.host_or_default(),
            self.port.unwrap_or(5432)
        )
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl PgConn {
    /// Parameters from the libpq environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`) and `DBM_PG_BIN`.
    ///
    /// Errors: [`Error::InvalidInput`] for a `PGPORT` that is not a port number.
    pub fn from_env() -> Result<PgConn> {
        let port =
            match env_nonempty("PGPORT") {
                Some(p) => Some(p.parse::<u16>().map_err(|_| {
                    Error::InvalidInput(format!("PGPORT={p:?} is not a port number"))
                })?),
                None => None,
            };
        Ok(PgConn {
            host: env_nonempty("PGHOST"),
            port,
            user: env_nonempty("PGUSER"),
            dbname: env_nonempty("PGDATABASE"),
            sslmode: env_nonempty("PGSSLMODE"),
            bin_dir: env_nonempty("DBM_PG_BIN").map(PathBuf::from),
            password: env_nonempty("PGPASSWORD"),
        })
    }

    /// Parses the argument of a `postgres:` target: empty (the environment) or a
    /// `postgres://` / `postgresql://` URL (libpq's URI syntax, RFC 3986 escapes; a Unix socket
    /// directory as `host=/path` query parameter or percent-encoded host). Fields the URL leaves
    /// out come from the environment.
    ///
    /// Errors: [`Error::InvalidInput`] naming the problem (never echoing a password).
    pub fn parse(arg: &str) -> Result<PgConn> {
        let mut conn = PgConn::from_env()?;
        if arg.is_empty() {
            return Ok(conn);
        }
        if !(arg.starts_with("postgres://") || arg.starts_with("postgresql://")) {
            return Err(Error::InvalidInput(format!(
                "postgres target {arg:?}: expected `postgres` (PG* variables), `postgres:postgres://user@host:port/db`, or a name from the config file"
            )));
        }
        let cfg: tokio_postgres::Config = arg.parse().map_err(|e| {
            // The parser's message may quote the input; say only what kind of problem it is.
            let _ = e;
            Error::InvalidInput(
                "postgres target: the postgres:// URL cannot be parsed (check its syntax and percent-escapes)".into(),
            )
        })?;
        if let Some(h) = cfg.get_hosts().first() {
            conn.host = Some(match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            });
        }
        if let Some(p) = cfg.get_ports().first() {
            conn.port = Some(*p);
        }
        if let Some(u) = cfg.get_user() {
            conn.user = Some(u.to_string());
        }
        if let Some(d) = cfg.get_dbname() {
            conn.dbname = Some(d.to_string());
        }
        if let Some(p) = cfg.get_password() {
            conn.password = Some(String::from_utf8_lossy(p).into_owned());
        }
        if arg.contains("sslmode=") {
            conn.sslmode = Some(
                match cfg.get_ssl_mode() {
                    tokio_postgres::config::SslMode::Disable => "disable",
                    tokio_postgres::config::SslMode::Require => "require",
                    _ => "prefer",
                }
                .into(),
            );
        }
        Ok(conn)
    }

    /// Sets the password (e.g. read from a file named in the config).
    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password;
    }

    /// Whether a password is known (from `PGPASSWORD`, the URL or `~/.pgpass`).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    fn host_or_default(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            if Path::new("/var/run/postgresql").is_dir() {
                "/var/run/postgresql".into()
            } else {
                "localhost".into()
            }
        })
    }

    fn user_or_default(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(crate::repository::keys::username)
    }

    /// The database for the tool's own queries.
    pub fn maintenance_db(&self) -> String {
        self.dbname.clone().unwrap_or_else(|| "postgres".into())
    }

    /// The password: given explicitly, else from the password file (`PGPASSFILE` or
    /// `~/.pgpass`, libpq's format and matching rules, only if not group/world readable).
    fn password_for(&self, db: &str) -> Option<String> {
        if self.password.is_some() {
            return self.password.clone();
        }
        pgpass_lookup(
            &self.host_or_default(),
            self.port.unwrap_or(5432),
            db,
            &self.user_or_default(),
        )
    }

    /// A command for PostgreSQL program `prog` with the connection in its environment (never
    /// in its arguments): `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE = db`.
    pub fn command(&self, prog: &str, db: &str) -> Command {
        let mut cmd = Command::new(self.program(prog));
        for v in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGSSLMODE",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("PGHOST", self.host_or_default());
        cmd.env("PGPORT", self.port.unwrap_or(5432).to_string());
        cmd.env("PGUSER", self.user_or_default());
        cmd.env("PGDATABASE", db);
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        if let Some(s) = &self.sslmode {
            cmd.env("PGSSLMODE", s);
        }
        // Never prompt: a backup runs unattended.
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Path of PostgreSQL program `prog` (see the module docs for the search order).
    pub fn program(&self, prog: &str) -> PathBuf {
        if let Some(d) = &self.bin_dir {
            return d.join(prog);
        }
        PathBuf::from(prog)
    }

    /// Picks the client binaries of the server's major version when they are installed
    /// side by side (`/usr/lib/postgresql/<major>/bin`) and none were chosen explicitly.
    pub fn pick_bin_dir(&mut self, server_version_num: i32) {
        if self.bin_dir.is_none() {
            let d = PathBuf::from(format!(
                "/usr/lib/postgresql/{}/bin",
                server_version_num / 10000
            ));
            if d.join("pg_dump").is_file() {
                self.bin_dir = Some(d);
            }
        }
    }

    /// Connects the tool's own session to database `db` (tokio-postgres, no TLS).
    ///
    /// Errors: [`Error::Target`] naming the server (never the password).
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let mut cfg = tokio_postgres::Config::new();
        let host = self.host_or_default();
        if host.starts_with('/') {
            cfg.host_path(&host);
        } else {
            cfg.host(&host);
        }
        cfg.port(self.port.unwrap_or(5432))
            .user(self.user_or_default())
            .dbname(db)
            .application_name("data-backup-manager")
            .connect_timeout(std::time::Duration::from_secs(30));
        if let Some(p) = self.password_for(db) {
            cfg.password(p);
        }
        if self.sslmode.as_deref() == Some("disable") {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        let (client, connection) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| self.err(format!("cannot connect to database {db:?}: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// An [`Error::Target`] about this server.
    pub fn err(&self, reason: impl Into<String>) -> Error {
        Error::Target {
            target: self.to_string(),
            reason: reason.into(),
        }
    }
}

/// libpq's password file lookup (PostgreSQL docs, "The Password File"): lines
/// `host:port:database:user:password`, `*` matches anything, `\` escapes `:` and `\`.
fn pgpass_lookup(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = env_nonempty("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        return None; // libpq ignores such a file too
    }
    let text = std::fs::read_to_string(&path).ok()?;
    // A socket directory matches `localhost` in the file, as in libpq.
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        if m(&fields[0], host) && m(&fields[1], &port) && m(&fields[2], db) && m(&fields[3], user) {
            return Some(fields.swap_remove(4));
        }
    }
    None
}

/// A `postgres://` URL without its password (in the user info or a `password=` parameter),
/// for anything that is shown or stored: snapshot targets, logs, messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if q.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", q.join("&"))
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Quotes an SQL identifier (`"` doubled).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a value for `postgresql.conf` or a libpq connection string (`'` and `\` escaped).
pub fn quote_conf(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Runs `fut` to completion on a private current-thread runtime on a scoped thread, so it can
/// be called from synchronous code anywhere (a blocking walker thread, or inside a runtime).
pub(crate) fn block_on<T: Send>(
    fut: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::InvalidInput(format!("cannot start a runtime: {e}")))?
                .block_on(fut)
        })
        .join()
        .map_err(|_| Error::InvalidInput("postgres helper thread panicked".into()))?
    })
}

/// Facts about a server, stored as `server.json` and in the snapshot metadata.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    /// `SELECT version()`.
    pub version: String,
    /// `server_version_num` (e.g. 150020).
    pub version_num: i32,
    /// `pg_control_system().system_identifier`, as a decimal string.
    pub system_identifier: String,
    /// Settings that matter for a restore (encoding, locale, WAL and block sizes, ...).
    pub settings: BTreeMap<String, String>,
    /// Databases that allow connections (templates excluded): name, owner, encoding, locale.
    pub databases: Vec<DatabaseInfo>,
    /// When these facts were read, by the server's clock (UTC).
    pub server_time: chrono::DateTime<chrono::Utc>,
}

/// One database as listed in `pg_database`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DatabaseInfo {
    /// Name.
    pub name: String,
    /// Owner role.
    pub owner: String,
    /// Encoding name (`UTF8`).
    pub encoding: String,
    /// `LC_COLLATE`.
    pub collate: String,
    /// `LC_CTYPE`.
    pub ctype: String,
}

/// Settings recorded in `server.json` (never `archive_command` / `restore_command`, which may
/// hold paths of secrets).
const SETTINGS: &[&str] = &[
    "server_encoding",
    "lc_collate",
    "lc_ctype",
    "TimeZone",
    "data_checksums",
    "block_size",
    "wal_block_size",
    "wal_segment_size",
    "wal_level",
    "archive_mode",
    "max_connections",
    "shared_buffers",
    "data_directory",
    "server_version",
];

impl ServerInfo {
    /// Reads the facts from the server.
    pub async fn read(conn: &PgConn) -> Result<ServerInfo> {
        let c = conn.connect(&conn.maintenance_db()).await?;
        let q = |e: tokio_postgres::Error| conn.err(format!("query failed: {e}"));
        let row = c
            .query_one(
                "SELECT version(), current_setting('server_version_num')::int, \
                 (SELECT system_identifier::text FROM pg_control_system()), now()",
                &[],
            )
            .await
            .map_err(q)?;
        let mut info = ServerInfo {
            version: row.get(0),
            version_num: row.get(1),
            system_identifier: row.get(2),
            server_time: row.get(3),
            ..Default::default()
        };
        let names: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
        for r in c
            .query(
                "SELECT name, setting || COALESCE(unit, '') FROM pg_settings WHERE name = ANY($1)",
                &[&names],
            )
            .await
            .map_err(q)?
        {
            info.settings.insert(r.get(0), r.get(1));
        }
        // wal_segment_size in bytes, whatever unit pg_settings reports.
        let seg: i64 = c
            .query_one(
                "SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN '8kB' THEN 8192 \
                 WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576 ELSE 1 END \
                 FROM pg_settings WHERE name = 'wal_segment_size'",
                &[],
            )
            .await
            .map_err(q)?
            .get(0);
        info.settings
            .insert("wal_segment_size_bytes".into(), seg.to_string());
        for r in c
            .query(
                "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
                 d.datcollate::text, d.datctype::text FROM pg_database d \
                 WHERE d.datallowconn AND NOT d.datistemplate ORDER BY d.datname",
                &[],
            )
            .await
            .map_err(q)?
        {
            info.databases.push(DatabaseInfo {
                name: r.get(0),
                owner: r.get(1),
                encoding: r.get(2),
                collate: r.get(3),
                ctype: r.get(4),
            });
        }
        Ok(info)
    }

    /// `wal_segment_size` in bytes (16 MiB unless the cluster was made with another size).
    pub fn wal_segment_size(&self) -> u64 {
        self.settings
            .get("wal_segment_size_bytes")
            .and_then(|s| s.parse().ok())
            .unwrap_or(16 << 20)
    }
}

/// Bytes of a child's stderr kept for error messages (the last ones).
const STDERR_KEEP: usize = 8 * 1024;

/// Reads a child's stderr on a thread (so it can never fill its pipe and stall), logging each
/// line at debug level and keeping the last [`STDERR_KEEP`] bytes.
pub(crate) fn drain_stderr(
    child: &mut Child,
    what: &str,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let keep = Arc::new(Mutex::new(String::new()));
    let k = keep.clone();
    let what = what.to_string();
    let t = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            tracing::debug!("{what}: {line}");
            let mut g = k.lock().expect("stderr buffer");
            g.push_str(&line);
            g.push('\n');
            if g.len() > 2 * STDERR_KEEP {
                let cut = g.len() - STDERR_KEEP;
                let cut = (cut..g.len()).find(|i| g.is_char_boundary(*i)).unwrap_or(0);
                g.drain(..cut);
            }
        }
    });
    (keep, t)
}

/// Escapes a database name into one safe file name: `/`, `%`, control characters and a leading
/// `.` become `%XX`. The real name is also kept in the node's metadata (`database`).
pub fn db_file_name(db: &str) -> String {
    let mut out = String::new();
    for (i, c) in db.chars().enumerate() {
        if c == '/' || c == '%' || c.is_control() || (i == 0 && c == '.') {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Inverse of [`db_file_name`] (for snapshots whose nodes lack the `database` metadata).
pub fn db_name_from_file(file: &str) -> String {
    let b = file.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                if v != 0 {
                    out.push(v);
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an LSN written `X/Y` (hex) into a 64-bit position.
///
/// Errors: [`Error::InvalidInput`] naming the text.
pub fn parse_lsn(s: &str) -> Result<u64> {
    let bad = || Error::InvalidInput(format!("LSN {s:?}: expected the form 0/3000060 (hex)"));
    let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return Err(bad());
    }
    Ok(hi << 32 | lo)
}

/// Formats a 64-bit WAL position as `X/Y`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_round_trip_through_file_names() {
        for n in ["postgres", "a/b", "100%", ".hidden", "tab\tname", "ü", ""] {
            let f = db_file_name(n);
            assert!(
                !f.contains('/') && !f.starts_with('.') && !f.is_empty(),
                "{f}"
            );
            assert_eq!(db_name_from_file(&f), n);
        }
    }

    #[test]
    fn lsn_parse_and_format() {
        assert_eq!(parse_lsn("0/2000028").unwrap(), 0x2000028);
        assert_eq!(parse_lsn("1/0").unwrap(), 1 << 32);
        assert_eq!(format_lsn(0x1_0300_0060), "1/3000060");
        assert!(parse_lsn("zz").is_err());
    }

    #[test]
    fn redacted_urls_have_no_password() {
        assert_eq!(
            redact_url("postgres://alice:s3cret@db:5432/app?sslmode=require&password=x"),
            "postgres://alice@db:5432/app?sslmode=require"
        );
        assert_eq!(redact_url("postgresql://db/app"), "postgresql://db/app");
        assert_eq!(redact_url("postgres://a:b:c@h"), "postgres://a@h");
        assert_eq!(redact_url("postgres://h?password=x"), "postgres://h");
    }

    #[test]
    fn urls_fill_in_and_display_without_password() {
        let c = PgConn::parse("postgres://alice:s3cret@db.example:6543/app").unwrap();
        assert_eq!(c.to_string(), "postgres://alice@db.example:6543");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.dbname.as_deref(), Some("app"));
        assert!(c.has_password());
        let s = PgConn::parse("postgresql://bob@%2Ftmp%2Fsock:5433/x").unwrap();
        assert_eq!(s.host.as_deref(), Some("/tmp/sock"));
        assert!(PgConn::parse("mysql://x").is_err());
    }
}
