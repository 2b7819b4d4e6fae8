//! Shared fixtures of the server tests: a real repository, a real PostgreSQL catalog (a fresh
//! database per server on the machine's PostgreSQL, 127.0.0.1:5432, user postgres), and the
//! `backup-server` binary started as a process whose log is kept in a file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "admin-token-7f3e9c1a5b2d4e6f";
pub const VIEWER: &str = "viewer-token-0a1b2c3d4e5f6a7b";
pub const PASSWORD: &str = "server-test-password";

/// PostgreSQL admin URL (override with DBM_TEST_PG).
pub fn pg_base() -> String {
    std::env::var("DBM_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Creates a fresh database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("dbm_srv_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) =
        tokio_postgres::connect(&format!("{}/postgres", pg_base()), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (user postgres) is needed by these tests");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    format!("{}/{name}", pg_base())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test environment: folder, repository, config; servers started on it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub database_url: String,
}

impl Env {
    /// A repository at `<dir>/repo`, a PostgreSQL catalog, named target `test-data` =
    /// `<dir>/data` (created with a few files), tokens admin + viewer (read-only).
    pub async fn new(extra_server_yaml: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let store = backup_core::store::open_store(repo.to_str().unwrap(), true).unwrap();
        backup_core::Repository::init(store, PASSWORD.as_bytes(), Default::default())
            .await
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
        std::fs::write(data.join("a.txt"), b"hello from the server test\n").unwrap();
        std::fs::write(data.join("sub/b.bin"), random_bytes(300_000, 7)).unwrap();
        std::fs::write(data.join("sub/deeper/c.txt"), b"c").unwrap();
        std::fs::write(data.join("empty"), b"").unwrap();
        let database_url = fresh_database().await;
        let port = free_port();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                r#"repository: {repo}
database_url: {database_url}
catalog_dir: {dir}/catalog
targets:
  test-data: files:{data}
scheduler:
  default_schedules: false
  max_retries: 2
  retry_backoff_secs: 1
  scratch_dir: {dir}/scratch
server:
  port: {port}
  tokens:
    - {{name: admin, token: {ADMIN}}}
    - {{name: viewer, token: {VIEWER}, read_only: true}}
{extra_server_yaml}"#,
                repo = repo.display(),
                dir = dir.path().display(),
                data = data.display(),
            ),
        )
        .unwrap();
        Env {
            dir,
            repo,
            config,
            port,
            database_url,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn url(&self, path: &str) -> String {
        if self.path("cert.pem").exists() {
            format!("https://127.0.0.1:{}{path}", self.port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    /// A client that trusts the test certificate when there is one.
    pub fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder();
        if let Ok(pem) = std::fs::read(self.path("cert.pem")) {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    /// Starts `backup-server` with this config; waits until /health answers.
    pub async fn start(&self, log_name: &str) -> Server {
        let log = self.path(log_name);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_backup-server"))
            .arg("--config")
            .arg(&self.config)
            .env("DBM_PASSWORD", PASSWORD)
            .env("DBM_LOG", "debug")
            .env("DBM_LOG_FORMAT", "json")
            .env_remove("DBM_API_TOKEN")
            .env_remove("API_PORT")
            .env_remove("DBM_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server {
            child: Some(child),
            base: self.url(""),
            log,
            http: self.client(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = match s.http.get(format!("{}/health", s.base)).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => format!("{e:?}"),
            };
            assert!(
                Instant::now() < deadline,
                "server did not start ({last}); log:\n{}",
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }
}

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub log: PathBuf,
    pub http: reqwest::Client,
}

impl Server {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(ADMIN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(ADMIN), Some(body)).await
    }

    /// Polls `path` until `field` is one of `done` (or the timeout); returns the last body.
    pub async fn wait_for(&self, path: &str, done: &[&str], secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (code, v) = self.get(path).await;
            assert_eq!(code, 200, "{path}: {v}");
            if done.contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} still {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        c.wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file and directory under `root`, with file contents and symlink targets, for tree
/// comparison.
pub fn tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, p: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            let rel = e.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&e).unwrap();
            if md.is_dir() {
                out.push((rel + "/", None));
                walk(root, &e, out);
            } else {
                out.push((rel, Some(std::fs::read(&e).unwrap())));
            }
        }
    }
    walk(root, root, &mut out);
    out
}
