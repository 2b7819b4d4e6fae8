//! A backup killed with SIGKILL at any point leaves a consistent repository.

mod support;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use support::*;

/// Large real tree whose backup takes well over the longest kill delay.
const BIG_TREE: &str = "/usr/lib";
const KILL_AFTER_MS: [u64; 3] = [150, 600, 1500];

/// `check --read-data` must not find damage: 0, or 2 (warning, e.g. for
/// unreferenced packs left by the killed process), never 1.
#[track_caller]
fn assert_check_clean(repo: &Repo, when: &str) {
    let run = repo.run(["check", "--read-data"]);
    assert!(
        matches!(run.code(), Some(0) | Some(2)),
        "{when}: check --read-data must exit 0 or 2\n{}",
        run.describe()
    );
}

#[test]
fn killed_backups_leave_repository_consistent() {
    assert!(Path::new(BIG_TREE).is_dir(), "test needs {BIG_TREE}");
    let repo = Repo::init();
    let src = tempdir();
    let tree = build_nasty_tree(&src.path().join("src"), TreeSize::Small);
    let first = repo.backup_ok(&[&tree.root], &[]);
    let mut expected: BTreeSet<String> = BTreeSet::from([first.id.clone()]);

    let logs = tempdir();
    for (round, delay) in KILL_AFTER_MS.into_iter().enumerate() {
        let when = format!("after SIGKILL at {delay} ms (round {round})");
        let stderr_log = logs.path().join(format!("killed-{round}.stderr"));
        let args = [OsString::from("backup"), source_arg(Path::new(BIG_TREE))];
        let mut child = repo.spawn(&args, &stderr_log);
        sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "{when}: the backup of {BIG_TREE} was no longer running when it was to be killed \
                 (status {status}); stderr:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            );
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(
            status.code().is_none(),
            "{when}: child was not killed: {status}"
        );
        let data_files: Vec<String> = walk(&repo.path.join("data"))
            .iter()
            .filter(|p| p.is_file())
            .map(|p| file_name_str(p))
            .collect();
        eprintln!(
            "{when}: {} files under data/ (not named like a pack: {:?}), lock files left: {:?}",
            data_files.len(),
            data_files
                .iter()
                .filter(|n| !is_hex(n, 64))
                .collect::<Vec<_>>(),
            repo.lock_files()
        );

        // 1. The repository has no damage.
        assert_check_clean(&repo, &when);

        // 2. The first snapshot restores exactly.
        let dest = tempdir();
        repo.restore(&first.id, dest.path(), None::<&str>)
            .expect_success();
        assert_trees_equal(&tree.root, &restored_path(dest.path(), &tree.root));

        // 3. A new backup with new data works despite any stale lock.
        let extra = src.path().join(format!("round-{round}"));
        mkdirs(&extra);
        build_random_tree(&extra, 6, 300_000);
        let snap = repo.backup_ok(&[&tree.root, &extra], &[]);
        expected.insert(snap.id.clone());

        let dest = tempdir();
        repo.restore(&snap.id, dest.path(), None::<&str>)
            .expect_success();
        assert_trees_equal(&extra, &restored_path(dest.path(), &extra));
    }

    // The killed backups left no snapshot behind, and everything still reads.
    let listed: BTreeSet<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_string())
        .collect();
    assert_eq!(listed, expected, "snapshots after the killed backups");
    assert_check_clean(&repo, "at the end");
}
