//! The repository conformance suite: one body per promise, run against a local-folder
//! repository (`<test>::local`) and against an S3 repository on the real test server
//! (`<test>::s3`; see `backends`). Backup, byte-exact restore, `check --read-data`, forget +
//! prune, locks (including staleness by the store's own clock) and crash safety.

mod backends;
mod support;

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use backends::{assert_check_clean, rt, TestRepo};
use backup_core::repository::lock::LockInfo;
use support::*;

on_both_backends!(
    backup_restore_check,
    forget_and_prune_reclaim_space,
    locks_block_and_stale_locks_go,
    killed_backup_leaves_a_clean_repository,
);

/// Backup of the nasty tree (odd names, hard links, sparse file, xattrs, …), restore
/// byte-exact, `check --read-data` and `verify` clean.
fn backup_restore_check(repo: &TestRepo) {
    repo.init();
    let src = tempdir();
    let tree = build_nasty_tree(&src.path().join("src"), TreeSize::Small);
    let id = repo.backup_ok(&[&tree.root]);
    let dest = tempdir();
    repo.run([
        "restore",
        &id,
        "--destination",
        &dest.path().display().to_string(),
    ])
    .expect_success();
    assert_trees_equal(&tree.root, &restored_path(dest.path(), &tree.root));
    let check = repo.run(["check", "--read-data"]);
    check.expect_success();
    assert!(
        check.stdout_str().contains("no errors"),
        "{}",
        check.describe()
    );
    repo.run(["verify", &id]).expect_success();
    // Objects are where the layout says.
    let objects = repo.objects();
    assert!(objects.contains_key("config"), "{objects:?}");
    assert!(
        objects.keys().any(|k| k.starts_with("data/")),
        "{objects:?}"
    );
    assert!(
        objects.keys().any(|k| k.starts_with("index/")),
        "{objects:?}"
    );
    assert_eq!(
        objects
            .keys()
            .filter(|k| k.starts_with("snapshots/"))
            .count(),
        1
    );
    assert!(
        !objects.keys().any(|k| k.starts_with("locks/")),
        "a lock was left behind: {objects:?}"
    );
}

fn data_bytes(repo: &TestRepo) -> u64 {
    repo.objects()
        .iter()
        .filter(|(k, _)| k.starts_with("data/"))
        .map(|(_, v)| v)
        .sum()
}

/// Three snapshots of a changing tree; forgetting all but the last and pruning frees the
/// data only the old ones used, and the survivor still restores byte-exact.
fn forget_and_prune_reclaim_space(repo: &TestRepo) {
    repo.init();
    let src = tempdir();
    let root = src.path().join("src");
    let a = root.join("a");
    let b = root.join("b");
    mkdirs(&a);
    mkdirs(&b);
    build_random_tree(&a, 8, 700_000);
    repo.backup_ok(&[&root]);
    build_random_tree(&b, 8, 700_000);
    repo.backup_ok(&[&root]);
    std::fs::remove_dir_all(&a).unwrap();
    let last = repo.backup_ok(&[&root]);
    let before = data_bytes(repo);
    repo.run(["forget", "--keep-last", "1"]).expect_success();
    let prune = repo.run(["prune", "--json"]);
    prune.expect_success();
    let after = data_bytes(repo);
    assert!(
        after + 4_000_000 < before,
        "prune should free the ~5.6 MB only the forgotten snapshots used: {before} -> {after} bytes\n{}",
        prune.describe()
    );
    let check = repo.run(["check", "--read-data"]);
    check.expect_success();
    let dest = tempdir();
    repo.run([
        "restore",
        &last,
        "--destination",
        &dest.path().display().to_string(),
    ])
    .expect_success();
    assert_trees_equal(&root, &restored_path(dest.path(), &root));
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

fn put_lock(repo: &TestRepo, name: &str, exclusive: bool, host: &str, pid: u32) {
    let info = LockInfo {
        exclusive,
        hostname: host.into(),
        pid,
        purpose: "test".into(),
        created: chrono::Utc::now(),
    };
    let store = repo.store();
    rt().block_on(store.put_new(
        &format!("locks/{name}"),
        serde_json::to_vec(&info).unwrap().into(),
    ))
    .expect("write lock");
}

/// An exclusive lock of a live holder on another host blocks a backup: its age is computed
/// from the store's own last-modified times, so a fresh lock is not stale however the
/// hosts' clocks differ. A lock of a dead process on this host is stale and removed.
fn locks_block_and_stale_locks_go(repo: &TestRepo) {
    repo.init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    build_random_tree(&root, 3, 10_000);

    put_lock(repo, "elsewhere", true, "some-other-host.invalid", 4242);
    let run = repo.run([OsString::from("backup"), source_arg(&root)]);
    run.expect_code(1);
    let err = run.stderr_str();
    assert!(
        err.contains("locked") && err.contains("some-other-host.invalid"),
        "the error should say the repository is locked and by whom\n{}",
        run.describe()
    );
    assert!(repo
        .run(["snapshots", "--json"])
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    // Shared locks do not block each other: a check runs alongside another host's backup.
    rt().block_on(repo.store().delete("locks/elsewhere"))
        .unwrap();
    put_lock(
        repo,
        "elsewhere-shared",
        false,
        "some-other-host.invalid",
        4242,
    );
    repo.run(["check"]).expect_success();
    // ...but prune (exclusive) waits for it.
    repo.run(["prune"]).expect_code(1);
    rt().block_on(repo.store().delete("locks/elsewhere-shared"))
        .unwrap();

    // A lock whose process is gone on this host is stale.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    put_lock(repo, "dead-holder", true, &hostname(), dead);
    repo.backup_ok(&[&root]);
    let left: Vec<String> = repo
        .objects()
        .into_keys()
        .filter(|k| k.starts_with("locks/"))
        .collect();
    assert!(left.is_empty(), "locks left: {left:?}");
    repo.run(["prune"]).expect_success();
}

/// Large real tree whose backup takes longer than the time before the kill.
const BIG_TREE: &str = "/usr/lib";

/// A backup killed with SIGKILL once packs are being stored leaves a repository that checks
/// clean; prune removes what it left (on S3 also unfinished multipart uploads); the next
/// backup succeeds and restores byte-exact.
fn killed_backup_leaves_a_clean_repository(repo: &TestRepo) {
    repo.init();
    let src = tempdir();
    let small = src.path().join("small");
    mkdirs(&small);
    build_random_tree(&small, 4, 200_000);
    let first = repo.backup_ok(&[&small]);

    let log = src.path().join("killed.stderr");
    let mut child = repo
        .command()
        .args([OsString::from("backup"), source_arg(Path::new(BIG_TREE))])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn backup");
    let packs_before = repo
        .objects()
        .keys()
        .filter(|k| k.starts_with("data/"))
        .count();
    let start = Instant::now();
    loop {
        let packs = repo
            .objects()
            .keys()
            .filter(|k| k.starts_with("data/"))
            .count();
        if packs >= packs_before + 2 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "the backup of {BIG_TREE} ended ({st}) before it could be killed:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no pack stored within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_check_clean(repo, "after the killed backup");
    let snaps = repo.run(["snapshots", "--json"]).json();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "the killed backup must leave no snapshot: {snaps}"
    );
    // The killed process's lock is stale (dead pid on this host): prune may run.
    let prune = repo.run(["prune", "--json"]);
    prune.expect_success();
    let report = prune.json();
    assert!(
        report["unreferenced_packs_deleted"].as_u64().unwrap() >= 1,
        "prune should delete the killed backup's packs\n{}",
        prune.describe()
    );
    repo.run(["check", "--read-data"]).expect_success();

    let dest = tempdir();
    repo.run([
        "restore",
        &first,
        "--destination",
        &dest.path().display().to_string(),
    ])
    .expect_success();
    assert_trees_equal(&small, &restored_path(dest.path(), &small));
    mkdirs(&small.join("more"));
    build_random_tree(&small.join("more"), 3, 100_000);
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
}
