//! CLI remote mode: with `--api-url` (and DBM_API_TOKEN) the commands call `backup-server`,
//! and `list --json` / `status --json` print the same as local mode. Needs PostgreSQL on
//! 127.0.0.1:5432 (user postgres) and the `backup-server` binary built next to this CLI
//! (`cargo test --workspace` builds both).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "remote-test-token-1234567890";
const PASSWORD: &str = "remote-test-password";

struct Ctx {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
}

impl Ctx {
    fn cli(&self, remote: bool, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_data-backup-manager"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("DBM_CONFIG", &self.config)
            .env("DBM_PASSWORD", PASSWORD)
            .env_remove("DBM_API_URL")
            .env_remove("DBM_REPOSITORY")
            .env_remove("DBM_DATABASE_URL")
            .env_remove("DATABASE_URL");
        if remote {
            c.env("DBM_API_URL", format!("http://127.0.0.1:{}", self.port))
                .env("DBM_API_TOKEN", TOKEN)
                // Remote mode must not need the repository: hide its password.
                .env_remove("DBM_PASSWORD");
        }
        c.output().unwrap()
    }

    fn ok(&self, remote: bool, args: &[&str]) -> String {
        let o = self.cli(remote, args);
        assert!(
            o.status.success(),
            "{args:?} (remote {remote}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_data-backup-manager")).with_file_name("backup-server");
    assert!(
        p.is_file(),
        "{} missing: cargo build -p backup-server (or cargo test --workspace)",
        p.display()
    );
    p
}

async fn setup() -> (Ctx, Server) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("dbm_cli_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/postgres",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("d")).unwrap();
    std::fs::write(data.join("a.txt"), b"remote mode\n").unwrap();
    std::fs::write(data.join("d/b.txt"), vec![7u8; 50_000]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "repository: {repo}\ndatabase_url: postgres://postgres@127.0.0.1:5432/{db}\ncatalog_dir: {d}/catalog\n\
             targets:\n  test-data: files:{data}\nscheduler:\n  default_schedules: false\n\
             server:\n  port: {port}\n  tokens:\n    - {{name: cli-test, token: {TOKEN}}}\n",
            repo = dir.path().join("repo").display(),
            d = dir.path().display(),
            data = data.display()
        ),
    )
    .unwrap();
    let ctx = Ctx { dir, config, port };
    ctx.ok(false, &["init"]);
    ctx.ok(
        false,
        &[
            "backup",
            "test-data",
            "--type",
            "full",
            "--description",
            "first",
        ],
    );
    ctx.ok(false, &["backup", "test-data"]);
    let log = std::fs::File::create(ctx.dir.path().join("server.log")).unwrap();
    let child = Command::new(server_bin())
        .arg("--config")
        .arg(&ctx.config)
        .env("DBM_PASSWORD", PASSWORD)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let srv = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://127.0.0.1:{port}/health");
    while http_get(&url).is_none() {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(ctx.dir.path().join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (ctx, srv)
}

/// A plain HTTP/1.0 GET; the response when the status is 200.
fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")).then_some(out)
}

fn strip_moment(v: &mut Value) {
    // Measured at the moment of the call: the age of the last backup, and the free space of
    // the shared file system.
    if let Some(m) = v["storage_usage"].as_object_mut() {
        m.remove("available_gb");
        m.remove("filesystem_used_percent");
    }
    if let Some(ts) = v["targets"].as_array_mut() {
        for t in ts {
            t.as_object_mut().unwrap().remove("age_secs");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_status_are_identical_in_local_and_remote_mode() {
    let (ctx, _srv) = setup().await;
    for args in [
        &["--json", "list"][..],
        &["--json", "list", "--type", "full"][..],
        &[
            "--json",
            "list",
            "--target",
            "test-data",
            "--since",
            "2000-01-01",
        ][..],
        &["list"][..],
    ] {
        let local = ctx.ok(false, args);
        let remote = ctx.ok(true, args);
        assert_eq!(local, remote, "{args:?}");
    }
    let local: Value = serde_json::from_str(&ctx.ok(false, &["--json", "list"])).unwrap();
    assert_eq!(local.as_array().unwrap().len(), 2);

    let mut local: Value = serde_json::from_str(&ctx.ok(false, &["--json", "status"])).unwrap();
    let mut remote: Value = serde_json::from_str(&ctx.ok(true, &["--json", "status"])).unwrap();
    strip_moment(&mut local);
    strip_moment(&mut remote);
    assert_eq!(local, remote);
    assert!(remote["system_status"].is_string() && remote["storage_usage"]["used_gb"].is_number());
    assert_eq!(remote["snapshots"], 2);

    // Other commands through the server.
    let snap = local_first_snapshot(&ctx);
    let v: Value = serde_json::from_str(&ctx.ok(true, &["--json", "verify", &snap])).unwrap();
    assert_eq!(v["ok"], true);
    let created: Value =
        serde_json::from_str(&ctx.ok(true, &["--json", "backup", "test-data", "--type", "full"]))
            .unwrap();
    assert_eq!(created["status"], "pending");
    let job = created["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j: Value = serde_json::from_str(&ctx.ok(true, &["job", &job])).unwrap();
        if j["status"] == "completed" {
            break;
        }
        assert_ne!(j["status"], "failed", "{j}");
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let dest = ctx.dir.path().join("restored");
    let r: Value = serde_json::from_str(&ctx.ok(
        true,
        &[
            "--json",
            "restore",
            &job,
            "--destination",
            dest.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(r["status"], "completed", "{r}");
    let data = ctx.dir.path().join("data");
    let restored = dest.join(data.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("d/b.txt")).unwrap(),
        vec![7u8; 50_000]
    );
    ctx.ok(
        true,
        &[
            "schedule",
            "create",
            "--name",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--targets",
            "test-data",
        ],
    );
    let l: Value = serde_json::from_str(&ctx.ok(true, &["--json", "schedule", "list"])).unwrap();
    assert_eq!(l[0]["name"], "nightly");
    assert_eq!(
        l[0]["created_by"], "cli-test",
        "the audit user is the token's name"
    );
    ctx.ok(true, &["schedule", "disable", "--name", "nightly"]);
    assert!(ctx
        .ok(true, &["metrics"])
        .contains("dbm_jobs{status=\"completed\"}"));
    // A command without an endpoint refuses remote mode.
    let o = ctx.cli(true, &["prune"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no API endpoint"));
    // Without a token: 401 explained.
    let o = Command::new(env!("CARGO_BIN_EXE_data-backup-manager"))
        .args([
            "--api-url",
            &format!("http://127.0.0.1:{}", ctx.port),
            "status",
        ])
        .env_remove("DBM_API_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("DBM_API_TOKEN"));
}

fn local_first_snapshot(ctx: &Ctx) -> String {
    let v: Value = serde_json::from_str(&ctx.ok(false, &["--json", "list"])).unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}
