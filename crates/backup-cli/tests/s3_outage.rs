//! The S3 server dies in the middle of a backup: the backup fails with a clear error that
//! names the repository (exit 1) and leaves no snapshot; once the server is back, `check`
//! passes and the next backup succeeds.
//!
//! The test starts its own second gateway of the test cluster on port 7481
//! (`scripts/s3-server.sh` with `DBM_S3_PORT=7481`) and stops only that one, so other users
//! of the main gateway on 7480 are not disturbed.

mod backends;
mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backends::{S3Env, TestRepo, BUCKET};
use support::*;

const PORT: &str = "7481";
const BIG_TREE: &str = "/usr/lib";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.sh")
}

fn env_file() -> String {
    std::env::temp_dir()
        .join(format!("dbm-s3-{PORT}.env"))
        .display()
        .to_string()
}

fn gateway(action: &str) {
    let out = std::process::Command::new("bash")
        .arg(script())
        .arg(action)
        .env("DBM_S3_PORT", PORT)
        .env("DBM_S3_ENV", env_file())
        .output()
        .expect("run s3-server.sh");
    assert!(
        out.status.success(),
        "s3-server.sh {action} (port {PORT}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the second gateway at the end, whatever happened.
struct Gateway;
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("DBM_S3_PORT", PORT)
            .status();
    }
}

#[test]
fn server_dies_mid_backup() {
    // The main gateway must run (it owns the cluster); then add ours.
    let Some(main) = S3Env::get("server_dies_mid_backup") else {
        return;
    };
    gateway("start");
    let _stop = Gateway;
    let mut vars = main.vars.clone();
    vars.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://127.0.0.1:{PORT}"),
    );
    // Give up quickly once the server is gone (the defaults retry for 3 minutes).
    vars.insert("DBM_STORE_MAX_RETRIES".into(), "3".into());
    vars.insert("DBM_STORE_RETRY_TIMEOUT".into(), "10".into());
    let mut repo = TestRepo::s3("server_dies_mid_backup").expect("S3 is up");
    repo.env = vars.clone().into_iter().collect();
    repo.s3 = Some(S3Env { vars });
    repo.init();

    let src = tempdir();
    let small = src.path().join("small");
    mkdirs(&small);
    build_random_tree(&small, 4, 200_000);
    let first = repo.backup_ok(&[&small]);

    let log = src.path().join("backup.stderr");
    let mut child = repo
        .command()
        .args([OsString::from("backup"), source_arg(Path::new(BIG_TREE))])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn backup");
    let packs = |r: &TestRepo| {
        r.objects()
            .keys()
            .filter(|k| k.starts_with("data/"))
            .count()
    };
    let before = packs(&repo);
    let start = Instant::now();
    while packs(&repo) < before + 2 {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "the backup of {BIG_TREE} ended ({st}) before the server was stopped:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no pack stored in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gateway("stop");
    let stopped = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if stopped.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("the backup did not give up within 180 s of the server stopping");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "backup failed {:.1} s after the server stopped; stderr:\n{err}",
        stopped.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "backup must exit 1; stderr:\n{err}");
    assert!(
        err.contains("error:") && err.contains(&format!("s3://{BUCKET}/")),
        "the error must name the repository; stderr:\n{err}"
    );
    assert!(
        !err.contains(
            &repo
                .env
                .iter()
                .find(|(k, _)| k == "AWS_SECRET_ACCESS_KEY")
                .unwrap()
                .1
        ),
        "the secret key leaked into the error"
    );

    gateway("start");
    let check = repo.run(["check", "--read-data"]);
    assert!(
        matches!(check.code(), Some(0) | Some(2)),
        "check after the outage\n{}",
        check.describe()
    );
    let snaps = repo.run(["snapshots", "--json"]).json();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "no snapshot from the failed backup: {snaps}"
    );
    build_random_tree(&small, 3, 100_000);
    let next = repo.backup_ok(&[&small]);
    let dest = tempdir();
    repo.run([
        "restore",
        &next,
        "--destination",
        &dest.path().display().to_string(),
    ])
    .expect_success();
    assert_trees_equal(&small, &restored_path(dest.path(), &small));
    repo.run(["prune"]).expect_success();
    repo.run(["check", "--read-data"]).expect_success();
    let _ = first;

    // A short outage is ridden out by the retries (backoff up to 15 s; 60 s allowed).
    let mut patient = repo.env.clone();
    patient.retain(|(k, _)| !k.starts_with("DBM_STORE_"));
    patient.push(("DBM_STORE_RETRY_TIMEOUT".into(), "60".into()));
    repo.env = patient;
    let bulk = src.path().join("bulk");
    mkdirs(&bulk);
    build_random_tree(&bulk, 12, 8 << 20);
    let mut child = repo
        .command()
        .args([
            OsString::from("backup"),
            source_arg(&bulk),
            OsString::from("--json"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn backup");
    let before = packs(&repo);
    let start = Instant::now();
    while packs(&repo) < before + 1 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup ended too early"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no pack stored in 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway("stop");
    std::thread::sleep(Duration::from_secs(2));
    gateway("start");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the backup should survive a 2 s outage: {}\n{}",
        out.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dest = tempdir();
    repo.run([
        "restore",
        &id,
        "--destination",
        &dest.path().display().to_string(),
    ])
    .expect_success();
    assert_trees_equal(&bulk, &restored_path(dest.path(), &bulk));
    repo.run(["check", "--read-data"]).expect_success();
}
