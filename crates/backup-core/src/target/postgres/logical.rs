//! Logical backups and restores.
//!
//! Backup (PostgreSQL manual, "SQL Dump" and `pg_dump` / `pg_dumpall`): the snapshot tree is
//!
//! ```text
//! databases/<name>.dump   pg_dump --format=custom of each database (name escaped, see
//!                          `db_file_name`; the real name is in the node's `database` metadata)
//! globals.sql             pg_dumpall --globals-only (roles, memberships, tablespaces)
//! server.json             version, system identifier, settings, databases (ServerInfo)
//! ```
//!
//! Each dump is read from the child's stdout by the engine as it chunks (no temporary file);
//! the child's exit status is checked at EOF, so a failed dump fails the whole backup.
//!
//! Restore: `globals.sql` (optional) is piped into `psql -v ON_ERROR_STOP=1` with each
//! `CREATE ROLE` made conditional (the roles usually exist on the target server already); each
//! dump is piped from the repository into `pg_restore --exit-on-error --single-transaction`,
//! so the first error stops the restore and leaves nothing half-restored in that database.
//! Missing databases are created first (`TEMPLATE template0`, the dump's encoding).

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::engine::browse::{find_node, NodeReader};
use crate::error::{Error, Result};
use crate::repository::snapshot::Snapshot;
use crate::repository::tree::{Node, NodeKind, RawName};
use crate::repository::Repository;
use crate::target::postgres::base::{memory_source, SERVER_JSON};
use crate::target::postgres::{
    block_on, db_file_name, db_name_from_file, drain_stderr, quote_conf, quote_ident, PgConn,
    ServerInfo,
};
use crate::target::{Source, StreamSource, Target, WalkEvent};

/// File name of the globals dump.
pub const GLOBALS_SQL: &str = "globals.sql";
/// Folder of the per-database dumps.
pub const DATABASES_DIR: &str = "databases";

/// The logical backup target.
pub struct LogicalTarget {
    conn: PgConn,
    databases: Vec<String>,
    info: Mutex<Option<(ServerInfo, Vec<String>)>>,
}

impl LogicalTarget {
    /// Dumps `databases` (empty: every database that allows connections, templates excluded).
    pub fn new(conn: PgConn, databases: Vec<String>) -> LogicalTarget {
        LogicalTarget {
            conn,
            databases,
            info: Mutex::new(None),
        }
    }
}

fn node(name: &str, kind: NodeKind, mode: u32) -> Node {
    let mut n = Node::new(RawName(name.as_bytes().to_vec()), kind);
    n.mode = mode;
    n.mtime = chrono::Utc::now().timestamp();
    n
}

fn child_source(cmd: std::process::Command, what: String) -> Source {
    Source::Stream(StreamSource {
        open: Box::new(move || {
            crate::target::process::ChildReader::spawn(what, cmd)
                .map(|c| Box::new(c) as Box<dyn Read + Send>)
        }),
        version: None,
    })
}

impl Target for LogicalTarget {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn paths(&self) -> Vec<String> {
        vec![self.conn.to_string()]
    }

    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()> {
        let mut conn = self.conn.clone();
        let info = block_on(ServerInfo::read(&conn))?;
        conn.pick_bin_dir(info.version_num);
        // Named databases are dumped as named: one that does not exist makes pg_dump fail,
        // and with it the backup.
        let dbs: Vec<String> = if self.databases.is_empty() {
            info.databases.iter().map(|d| d.name.clone()).collect()
        } else {
            self.databases.clone()
        };
        let server_json = serde_json::to_vec_pretty(&info).expect("server info serializes");
        *self.info.lock().expect("info") = Some((info, dbs.clone()));

        let mut sorted: Vec<(String, String)> = dbs
            .iter()
            .map(|d| (format!("{}.dump", db_file_name(d)), d.clone()))
            .collect();
        sorted.sort();
        sorted.dedup();
        emit(WalkEvent::EnterDir(node(
            DATABASES_DIR,
            NodeKind::Dir,
            0o700,
        )))?;
        for (file, db) in sorted {
            let mut cmd = conn.command("pg_dump", &db);
            cmd.args(["--format=custom", "--no-password"]);
            let mut n = node(&file, NodeKind::File, 0o600);
            n.meta.insert("database".into(), db.clone());
            n.meta
                .insert("content-type".into(), "application/x-pg-dump-custom".into());
            emit(WalkEvent::Entry(
                n,
                child_source(cmd, format!("pg_dump of database {db:?}")),
            ))?;
        }
        emit(WalkEvent::LeaveDir)?;
        let mut cmd = conn.command("pg_dumpall", &conn.maintenance_db());
        cmd.args(["--globals-only", "--no-password"]);
        emit(WalkEvent::Entry(
            node(GLOBALS_SQL, NodeKind::File, 0o600),
            child_source(cmd, "pg_dumpall --globals-only".into()),
        ))?;
        emit(WalkEvent::Entry(
            node(SERVER_JSON, NodeKind::File, 0o600),
            memory_source(server_json),
        ))
    }

    fn finish(&self) -> Result<BTreeMap<String, Value>> {
        let g = self.info.lock().expect("info");
        let (info, dbs) = g
            .as_ref()
            .ok_or_else(|| self.conn.err("backup finished without a walk"))?;
        let mut m = BTreeMap::new();
        m.insert("pg_backup".into(), json!("logical"));
        m.insert("databases".into(), json!(dbs));
        m.insert("server".into(), json!(self.conn.to_string()));
        m.insert("server_version".into(), json!(info.version));
        m.insert("server_version_num".into(), json!(info.version_num));
        m.insert("system_identifier".into(), json!(info.system_identifier));
        Ok(m)
    }
}

/// Options of [`restore_logical`].
#[derive(Debug, Clone, Default)]
pub struct LogicalRestoreOptions {
    /// The server to restore into.
    pub conn: PgConn,
    /// Databases of the snapshot to restore (default: all).
    pub databases: Vec<String>,
    /// Restore the one selected database under this name.
    pub target_database: Option<String>,
    /// `pg_restore --no-owner`: objects are owned by the connecting role.
    pub no_owner: bool,
    /// Run `globals.sql` first (roles, memberships, tablespaces), so owners and grants match.
    pub with_globals: bool,
}

/// One restored database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoredDatabase {
    /// Name in the snapshot.
    pub source: String,
    /// Name restored to.
    pub target: String,
    /// Whether it was created.
    pub created: bool,
    /// Bytes of dump fed to `pg_restore`.
    pub bytes: u64,
}

/// What [`restore_logical`] did.
#[derive(Debug, Clone, serde::Serialize, Default)]
pub struct LogicalRestoreReport {
    /// Snapshot restored (hex id).
    pub snapshot: String,
    /// Server restored into (no password).
    pub server: String,
    /// Whether `globals.sql` was applied.
    pub globals: bool,
    /// Databases restored, in order.
    pub databases: Vec<RestoredDatabase>,
}

/// Restores a logical snapshot into a server. Stops at the first error.
///
/// The caller must ignore `SIGPIPE` (Rust programs do by default): when `pg_restore` stops
/// early, writing the rest of the dump to it fails with `EPIPE`, which is then reported as the
/// restore error it stands for.
///
/// Errors: [`Error::InvalidInput`] (not a logical snapshot, unknown database, `target_database`
/// with several databases); [`Error::Target`] naming the database and the objects `pg_restore`
/// or `psql` reported when they fail.
pub async fn restore_logical(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    opts: &LogicalRestoreOptions,
) -> Result<LogicalRestoreReport> {
    if snap.target_kind != "postgres"
        || snap.meta.get("pg_backup").and_then(|v| v.as_str()) != Some("logical")
    {
        return Err(Error::InvalidInput(format!(
            "snapshot {} is not a logical PostgreSQL backup (restore a base backup with --destination DIR)",
            snap.id.short()
        )));
    }
    let dir = find_node(repo, snap, std::path::Path::new("/databases")).await?;
    let tree = repo
        .load_tree(&dir.subtree.ok_or_else(|| {
            Error::corrupt(
                format!("snapshot {}", snap.id.short()),
                "databases/ has no tree",
            )
        })?)
        .await?;
    let mut available: BTreeMap<String, Node> = BTreeMap::new();
    for n in tree.nodes {
        let name = match n.meta.get("database") {
            Some(d) => d.clone(),
            None => db_name_from_file(n.name.lossy().trim_end_matches(".dump")),
        };
        available.insert(name, n);
    }
    let selected: Vec<String> = if opts.databases.is_empty() {
        available.keys().cloned().collect()
    } else {
        for d in &opts.databases {
            if !available.contains_key(d) {
                return Err(Error::InvalidInput(format!(
                    "database {d:?} is not in snapshot {} (it holds {})",
                    snap.id.short(),
                    available.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        opts.databases.clone()
    };
    if opts.target_database.is_some() && selected.len() != 1 {
        return Err(Error::InvalidInput(format!(
            "--target-database needs exactly one database; snapshot {} holds {} (choose one with --database)",
            snap.id.short(),
            selected.len()
        )));
    }
    let server_info: Option<ServerInfo> =
        match find_node(repo, snap, std::path::Path::new("/server.json")).await {
            Ok(n) => {
                let r = repo.clone();
                let h = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let mut s = String::new();
                    NodeReader::new(r, h, &n)
                        .take(16 << 20)
                        .read_to_string(&mut s)
                        .ok()?;
                    serde_json::from_str(&s).ok()
                })
                .await
                .ok()
                .flatten()
            }
            Err(_) => None,
        };
    let mut conn = opts.conn.clone();
    let admin = conn.connect(&conn.maintenance_db()).await?;
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| conn.err(format!("query failed: {e}")))?
        .get(0);
    conn.pick_bin_dir(version);
    let mut report = LogicalRestoreReport {
        snapshot: snap.id.to_hex(),
        server: conn.to_string(),
        ..Default::default()
    };

    if opts.with_globals {
        let node = find_node(repo, snap, std::path::Path::new("/globals.sql")).await?;
        let mut cmd = conn.command("psql", &conn.maintenance_db());
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--no-password",
            "-f",
            "-",
        ]);
        let h = tokio::runtime::Handle::current();
        let r = repo.clone();
        let c = conn.clone();
        tokio::task::spawn_blocking(move || {
            let reader = GlobalsFilter::new(std::io::BufReader::new(NodeReader::new(r, h, &node)));
            feed_child(cmd, reader, "psql applying globals.sql").map_err(|why| {
                c.err(format!(
                    "restoring roles and tablespaces (globals.sql) failed: {why}"
                ))
            })
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("restore task failed: {e}")))??;
        report.globals = true;
    }

    for db in selected {
        let target = opts.target_database.clone().unwrap_or_else(|| db.clone());
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
            .await
            .map_err(|e| conn.err(format!("query failed: {e}")))?
            .is_some();
        if !exists {
            let src = server_info
                .as_ref()
                .and_then(|i| i.databases.iter().find(|d| d.name == db));
            let mut sql = format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_ident(&target)
            );
            if let Some(d) = src {
                sql.push_str(&format!(" ENCODING '{}'", d.encoding.replace('\'', "''")));
                if opts.with_globals && !opts.no_owner {
                    sql.push_str(&format!(" OWNER {}", quote_ident(&d.owner)));
                }
            }
            admin
                .batch_execute(&sql)
                .await
                .map_err(|e| conn.err(format!("cannot create database {target:?}: {e}")))?;
            tracing::info!("created database {target:?}");
        }
        let node = available.get(&db).expect("selected from available").clone();
        let mut cmd = conn.command("pg_restore", &target);
        // The database goes in a connection string (not PGDATABASE: pg_restore needs -d to
        // restore into a server rather than print SQL).
        cmd.arg(format!("--dbname=dbname={}", quote_conf(&target)));
        cmd.args(["--exit-on-error", "--single-transaction", "--no-password"]);
        if opts.no_owner {
            cmd.arg("--no-owner");
        }
        let h = tokio::runtime::Handle::current();
        let r = repo.clone();
        let c = conn.clone();
        let what = format!("pg_restore into database {target:?}");
        let t2 = target.clone();
        let source = db.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            feed_child(cmd, NodeReader::new(r, h, &node), &what).map_err(|why| {
                c.err(format!(
                    "restore of database {db:?} into {t2:?} stopped at the first error; nothing of it was committed: {why}"
                ))
            })
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("restore task failed: {e}")))?;
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                // A database this restore created is removed again, so a retry starts clean.
                if !exists {
                    if let Err(d) = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&target)))
                        .await
                    {
                        tracing::warn!("could not drop the database {target:?} created for the failed restore: {d}");
                    }
                }
                return Err(e);
            }
        };
        tracing::info!("restored database {target:?} ({bytes} bytes of dump)");
        report.databases.push(RestoredDatabase {
            source,
            target,
            created: !exists,
            bytes,
        });
    }
    Ok(report)
}

/// Pipes `input` into the stdin of `cmd` and waits. Returns the bytes fed; on failure, a message
/// naming the failed objects from the program's stderr (`pg_restore: from TOC entry …`,
/// `ERROR: …`, `Command was: …`).
fn feed_child(
    mut cmd: std::process::Command,
    mut input: impl Read,
    what: &str,
) -> std::result::Result<u64, String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what} ({:?}): {e}", cmd.get_program()))?;
    let (stderr, t) = drain_stderr(&mut child, what);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut buf = vec![0u8; 1 << 20];
    let mut fed = 0u64;
    let mut read_err = None;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                read_err = Some(format!("reading the backup failed: {e}"));
                break;
            }
        };
        if stdin.write_all(&buf[..n]).is_err() {
            break; // the program stopped reading: its exit status says why
        }
        fed += n as u64;
    }
    if read_err.is_some() {
        // Never let a program commit a truncated input.
        let _ = child.kill();
    }
    drop(stdin);
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    let _ = t.join();
    let err = stderr.lock().expect("stderr").clone();
    if let Some(e) = read_err {
        return Err(e);
    }
    if status.success() {
        return Ok(fed);
    }
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.contains("from TOC entry")
                || l.contains("error:")
                || l.contains("ERROR:")
                || l.contains("Command was:")
                || l.contains("FATAL")
        })
        .take(12)
        .collect();
    Err(format!(
        "{what} failed ({status}): {}",
        if lines.is_empty() {
            err.trim().to_string()
        } else {
            lines.join(" | ")
        }
    ))
}

/// Makes `globals.sql` re-runnable on a server that already has some of its roles: each line
/// `CREATE ROLE name;` becomes a `DO` block that skips an existing role (the `ALTER ROLE` that
/// follows in `pg_dumpall`'s output still sets its attributes).
struct GlobalsFilter<R> {
    inner: R,
    pending: Vec<u8>,
    pos: usize,
}

impl<R: BufRead> GlobalsFilter<R> {
    fn new(inner: R) -> Self {
        GlobalsFilter {
            inner,
            pending: Vec::new(),
            pos: 0,
        }
    }
}

impl<R: BufRead> Read for GlobalsFilter<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.pending.len() {
            self.pending.clear();
            self.pos = 0;
            let mut line = Vec::new();
            if self.inner.read_until(b'\n', &mut line)? == 0 {
                return Ok(0);
            }
            match std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.strip_prefix("CREATE ROLE "))
                .and_then(|r| r.trim_end().strip_suffix(';'))
            {
                Some(role) if !role.contains('$') => {
                    self.pending.extend_from_slice(
                        format!(
                            "DO $dbm$BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END$dbm$;\n"
                        )
                        .as_bytes(),
                    );
                }
                _ => self.pending = line,
            }
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_filter_wraps_create_role_only() {
        let src = "SET x = 1;\nCREATE ROLE \"app owner\";\nALTER ROLE \"app owner\" WITH LOGIN;\n";
        let mut out = String::new();
        GlobalsFilter::new(std::io::Cursor::new(src))
            .read_to_string(&mut out)
            .unwrap();
        assert!(out
            .contains("DO $dbm$BEGIN CREATE ROLE \"app owner\"; EXCEPTION WHEN duplicate_object"));
        assert!(out.contains("ALTER ROLE \"app owner\" WITH LOGIN;\n"));
        assert!(out.starts_with("SET x = 1;\n"));
    }
}
