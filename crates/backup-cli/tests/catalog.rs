//! The catalog from the command line: jobs recorded by `backup`, crash recovery after a killed
//! process, `catalog rebuild`, `schedule` CRUD, `status`, `restore-point`. PostgreSQL tests use
//! a throwaway database on the machine's server (`DBM_TEST_PG_ADMIN`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn admin_url() -> String {
    std::env::var("DBM_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn admin(sql: &str) {
    let (c, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL (DBM_TEST_PG_ADMIN)");
    tokio::spawn(conn);
    c.batch_execute(sql).await.expect(sql);
}

/// A throwaway database, dropped when the guard goes.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    fn create() -> TestDb {
        let name = format!("dbm_test_{}", uuid::Uuid::new_v4().simple());
        rt().block_on(admin(&format!("CREATE DATABASE {name}")));
        let base = admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        TestDb { name, url }
    }

    /// Runs a query returning one JSON value per row (`SELECT to_jsonb(x) ...`).
    fn rows(&self, sql: &str) -> Vec<Value> {
        let url = self.url.clone();
        let sql = sql.to_string();
        rt().block_on(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            // Before the program created the schema there is nothing to read.
            c.query(&sql, &[])
                .await
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    let s: String = r.get(0);
                    serde_json::from_str(&s).unwrap()
                })
                .collect()
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        rt().block_on(admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )));
    }
}

fn put(p: &std::path::Path, data: &[u8]) {
    mkdirs(p.parent().unwrap());
    write_file(p, data);
}

fn jobs_json(repo: &Repo, env: &[(&str, &str)]) -> Vec<Value> {
    let run = repo.run_env(
        Password::Env(&repo.password),
        env,
        ["catalog", "jobs", "--json"],
    );
    run.expect_success();
    run.json().as_array().cloned().unwrap_or_default()
}

#[test]
fn backup_records_completed_jobs_and_status_reports_them() {
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    put(&src.join("a"), b"hello");
    let first = repo.backup_ok(&[&src], &["--type", "full"]);
    put(&src.join("b"), b"world");
    let second = repo.backup_ok(&[&src], &[]);
    let jobs = jobs_json(&repo, &[]);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    // Newest first.
    assert_eq!(jobs[0]["storage_path"], second.id.as_str());
    assert_eq!(jobs[1]["storage_path"], first.id.as_str());
    assert_eq!(jobs[1]["type"], "full");
    assert_eq!(jobs[0]["type"], "incremental");
    for j in &jobs {
        assert_eq!(j["status"], "completed");
        assert_eq!(j["target"], "files");
        assert!(j["target_identifier"]
            .as_str()
            .unwrap()
            .starts_with("files:/"));
        assert!(j["completed_at"].is_string());
    }
    assert_eq!(jobs[0]["size_bytes"], 10);

    let run = repo.run(["status", "--json"]);
    run.expect_success();
    let s = run.json();
    assert_eq!(s["system_status"], "healthy", "{}", run.describe());
    assert_eq!(s["active_jobs"].as_array().unwrap().len(), 0);
    assert!(s["last_successful_backup"].is_string());
    assert!(s["storage_usage"]["used_gb"].as_f64().unwrap() > 0.0);
    assert!(s["storage_usage"]["available_gb"].as_f64().unwrap() > 0.0);
    assert!(s["storage_usage"]["compression_ratio"].is_number());
    // The repository figures are still there.
    assert_eq!(s["snapshots"], 2);

    // A failed backup is recorded as failed and makes the system degraded.
    let missing = tmp.path().join("missing");
    let run = repo.run(["backup".into(), source_arg(&missing)]);
    run.expect_code(1);
    let jobs = jobs_json(&repo, &[]);
    assert_eq!(jobs[0]["status"], "failed");
    assert!(jobs[0]["error"].as_str().unwrap().contains("missing"));
    let run = repo.run(["status"]);
    run.expect_success();
    assert!(
        run.stdout_str().contains("system status    degraded"),
        "{}",
        run.describe()
    );
}

#[test]
fn an_unwritable_catalog_never_fails_a_backup() {
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    put(&src.join("a"), b"x");
    // A regular file where the catalog folder should be.
    let blocker = tmp.path().join("not-a-dir");
    put(&blocker, b"");
    let run = repo.run_env(
        Password::Env(&repo.password),
        &[("DBM_CATALOG_DIR", blocker.join("cat").to_str().unwrap())],
        ["backup".into(), source_arg(&src)],
    );
    run.expect_success();
    assert!(
        run.stderr_str()
            .contains("warning: the backup is not recorded in the catalog"),
        "{}",
        run.describe()
    );
    assert_eq!(repo.snapshot_ids().len(), 1);
}

#[test]
fn a_killed_backup_is_failed_and_retried_after_restart() {
    let db = TestDb::create();
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    mkdirs(&src);
    // Enough data that the backup is still running when it is killed.
    let mut rng = Rng::new(42);
    write_random_file(&src.join("big.bin"), 400 * MIB, &mut rng);
    let env = [("DBM_DATABASE_URL", db.url.as_str())];
    let mut child = std::process::Command::new(BIN_PATH)
        .env("DBM_PASSWORD", &repo.password)
        .env("DBM_DATABASE_URL", &db.url)
        .arg("--repo")
        .arg(&repo.path)
        .arg("backup")
        .arg(source_arg(&src))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let running = loop {
        let rows = db.rows("SELECT to_jsonb(j)::text FROM backup_jobs j WHERE status = 'running'");
        if let Some(r) = rows.into_iter().next() {
            break r;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup finished before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no running job");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let id = running["id"].as_str().unwrap().to_string();
    assert_eq!(
        db.rows(&format!(
            "SELECT to_jsonb(j.status)::text FROM backup_jobs j WHERE id = '{id}'"
        )),
        vec![Value::from("running")],
        "the killed backup's job should be left running"
    );
    assert!(repo.snapshot_ids().is_empty());

    // Restart: recovery fails the job, queues it again and runs it.
    let run = repo.run_env(
        Password::Env(&repo.password),
        &env,
        ["run-scheduler", "--once", "--json"],
    );
    run.expect_success();
    let r = run.json();
    assert_eq!(
        r["recovered"],
        serde_json::json!([id]),
        "{}",
        run.describe()
    );
    assert_eq!(r["ran"], serde_json::json!([id]), "{}", run.describe());
    let job = &db.rows(&format!(
        "SELECT to_jsonb(j)::text FROM backup_jobs j WHERE id = '{id}'"
    ))[0];
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["retry_count"], 1);
    assert!(job["metadata"]["attempt_errors"][0]["error"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(
        repo.snapshot_ids(),
        vec![job["storage_path"].as_str().unwrap()]
    );
    let audit = db.rows("SELECT to_jsonb(a)::text FROM audit_log a WHERE action = 'job.recovered'");
    assert_eq!(audit.len(), 1);
}

#[test]
fn catalog_rebuild_on_an_empty_catalog_lists_the_repository_snapshots() {
    let db = TestDb::create();
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    for i in 0..3 {
        put(&src.join(format!("f{i}")), format!("v{i}").as_bytes());
        repo.backup_ok(&[&src], &[]);
    }
    let other = tmp.path().join("other");
    put(&other.join("x"), b"x");
    repo.backup_ok(&[&other], &["--type", "full"]);
    let ids: BTreeSet<String> = repo.snapshot_ids().into_iter().collect();
    assert_eq!(ids.len(), 4);
    let env = [("DBM_DATABASE_URL", db.url.as_str())];
    assert!(
        jobs_json(&repo, &env).is_empty(),
        "the PostgreSQL catalog starts empty"
    );
    let run = repo.run_env(
        Password::Env(&repo.password),
        &env,
        ["catalog", "rebuild", "--json"],
    );
    run.expect_success();
    assert_eq!(run.json()["jobs_added"], 4, "{}", run.describe());
    let jobs = jobs_json(&repo, &env);
    let paths: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["storage_path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ids);
    assert!(jobs.iter().all(|j| j["status"] == "completed"));
    // Rebuilding again adds nothing.
    let run = repo.run_env(
        Password::Env(&repo.password),
        &env,
        ["catalog", "rebuild", "--json"],
    );
    assert_eq!(run.json()["jobs_added"], 0, "{}", run.describe());
    // Same for an empty embedded catalog.
    let dir = tmp.path().join("fresh-catalog");
    let env = [("DBM_CATALOG_DIR", dir.to_str().unwrap())];
    repo.run_env(Password::Env(&repo.password), &env, ["catalog", "rebuild"])
        .expect_success();
    let paths: BTreeSet<String> = jobs_json(&repo, &env)
        .iter()
        .map(|j| j["storage_path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ids);
}

#[test]
fn schedule_crud_from_the_cli() {
    let repo = Repo::init();
    let ok = |args: &[&str]| {
        let run = repo.run(args.iter().copied().chain(["--json"]));
        run.expect_success();
        run.json()
    };
    let s = ok(&[
        "schedule",
        "create",
        "--name",
        "nightly",
        "--cron",
        "30 2 * * *",
        "--targets",
        "files:/srv/a,files:/srv/b",
        "--retention",
        "14",
        "--timezone",
        "Europe/Berlin",
        "--type",
        "full",
        "--keep-daily",
        "7",
    ]);
    assert_eq!(s["cron_expression"], "30 2 * * *");
    assert_eq!(s["timezone"], "Europe/Berlin");
    assert_eq!(s["retention_days"], 14);
    assert_eq!(
        s["targets"],
        serde_json::json!(["files:/srv/a", "files:/srv/b"])
    );
    assert_eq!(s["keep"]["keep_daily"], 7);
    assert!(s["next_run"].is_string());
    // Duplicate names, bad cron expressions and zones are refused.
    repo.run([
        "schedule",
        "create",
        "--name",
        "nightly",
        "--cron",
        "0 1 * * *",
        "--targets",
        "files:/x",
    ])
    .expect_code(1);
    let run = repo.run([
        "schedule",
        "create",
        "--name",
        "bad",
        "--cron",
        "0 25 * * *",
        "--targets",
        "files:/x",
    ]);
    run.expect_code(1);
    assert!(
        run.stderr_str().contains("cron expression"),
        "{}",
        run.describe()
    );
    repo.run([
        "schedule",
        "create",
        "--name",
        "bad",
        "--cron",
        "0 1 * * *",
        "--timezone",
        "Mars/Olympus",
        "--targets",
        "files:/x",
    ])
    .expect_code(1);
    let s = ok(&[
        "schedule",
        "update",
        "--name",
        "nightly",
        "--cron",
        "0 3 * * 0",
        "--retention",
        "30",
    ]);
    assert_eq!(s["cron_expression"], "0 3 * * 0");
    assert_eq!(s["retention_days"], 30);
    assert_eq!(s["timezone"], "Europe/Berlin");
    let s = ok(&["schedule", "disable", "--name", "nightly"]);
    assert_eq!(s["enabled"], false);
    assert!(s["next_run"].is_null());
    let s = ok(&["schedule", "enable", "--name", "nightly"]);
    assert_eq!(s["enabled"], true);
    assert!(s["next_run"].is_string());
    assert_eq!(ok(&["schedule", "list"]).as_array().unwrap().len(), 1);
    ok(&["schedule", "delete", "--name", "nightly"]);
    assert_eq!(ok(&["schedule", "list"]).as_array().unwrap().len(), 0);
    repo.run(["schedule", "delete", "--name", "nightly"])
        .expect_code(1);
    let audit = ok(&["catalog", "audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "schedule.create",
        "schedule.update",
        "schedule.disable",
        "schedule.enable",
        "schedule.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[test]
fn restore_points_name_snapshots_across_targets() {
    let repo = Repo::init();
    let tmp = tempdir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put(&a.join("1"), b"1");
    put(&b.join("2"), b"2");
    let sa = repo.backup_ok(&[&a], &[]);
    let sb = repo.backup_ok(&[&b], &[]);
    let spec = |p: &std::path::Path| format!("files:{}", p.display());
    let run = repo.run([
        "restore-point",
        "create",
        "--name",
        "before-migration",
        "--targets",
        &format!("{},{}", spec(&a), spec(&b)),
        "--description",
        "both",
        "--json",
    ]);
    run.expect_success();
    let rp = run.json();
    let got: BTreeSet<&str> = rp["snapshot_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(got, [sa.id.as_str(), sb.id.as_str()].into_iter().collect());
    assert_eq!(rp["backup_job_ids"].as_array().unwrap().len(), 2);
    assert_eq!(rp["verified"], false);
    let run = repo.run(["restore-point", "list", "--json"]);
    run.expect_success();
    assert_eq!(run.json()[0]["name"], "before-migration");
}
