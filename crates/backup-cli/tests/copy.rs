//! `copy` between a local repository and the S3 test server, both ways: the copies restore
//! byte-exact, and copying again uploads nothing.

mod backends;
mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;

use backends::TestRepo;
use support::*;

fn copy(from: &TestRepo, to: &TestRepo, extra: &[&str]) -> Run {
    // Each side's password from its own variable, the S3 settings from either side.
    let mut cmd = std::process::Command::new(BIN_PATH);
    cmd.envs(from.env.iter().chain(&to.env).map(|(k, v)| (k, v)))
        .env_remove("DBM_PASSWORD")
        .env("DBM_FROM_PASSWORD", &from.password)
        .env("DBM_TO_PASSWORD", &to.password)
        .args([
            "copy",
            "--json",
            "--from-repo",
            &from.url,
            "--to-repo",
            &to.url,
        ])
        .args(extra);
    backends::run_command(
        &mut cmd,
        &format!("copy {} -> {} {extra:?}", from.url, to.url),
    )
}

fn restore(repo: &TestRepo, id: &str) -> tempfile::TempDir {
    let dest = tempdir();
    repo.run([
        "restore",
        id,
        "--destination",
        &dest.path().display().to_string(),
    ])
    .expect_success();
    dest
}

fn non_lock_objects(repo: &TestRepo) -> BTreeMap<String, u64> {
    repo.objects()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("locks/"))
        .collect()
}

fn snapshot_ids(repo: &TestRepo) -> Vec<String> {
    let run = repo.run(["snapshots", "--json"]);
    run.expect_success();
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn local_to_s3_and_back() {
    let Some(mut s3) = TestRepo::s3("copy_local_to_s3_and_back") else {
        return;
    };
    s3.password = "another password for the S3 side".into();
    let local = TestRepo::local();
    let back = TestRepo::local();
    local.init();
    s3.init();
    back.init();

    let src = tempdir();
    let tree = build_nasty_tree(&src.path().join("src"), TreeSize::Small);
    let states = tempdir();
    let first = local.backup_ok(&[&tree.root]);
    copy_tree(&tree.root, &states.path().join("first"));
    let extra = tree.root.join("added later");
    mkdirs(&extra);
    build_random_tree(&extra, 5, 300_000);
    let second = local.backup_ok(&[&tree.root]);

    // local -> S3 (explicit ids) and S3 -> local (all).
    let run = copy(&local, &s3, &[&first, &second]);
    run.expect_success();
    assert_eq!(
        run.json()["copied"].as_array().unwrap().len(),
        2,
        "{}",
        run.describe()
    );
    let run = copy(&s3, &back, &["--all"]);
    run.expect_success();
    assert_eq!(
        run.json()["copied"].as_array().unwrap().len(),
        2,
        "{}",
        run.describe()
    );

    // Every copy restores to the same bytes as its original.
    for repo in [&s3, &back] {
        let ids = snapshot_ids(repo);
        assert_eq!(ids.len(), 2);
        let d = restore(repo, &ids[0]);
        assert_trees_equal(
            &states.path().join("first"),
            &restored_path(d.path(), &tree.root),
        );
        let d = restore(repo, &ids[1]);
        assert_trees_equal(&tree.root, &restored_path(d.path(), &tree.root));
        repo.run(["check", "--read-data"]).expect_success();
    }

    // A second copy in either direction adds nothing: same objects, same bytes.
    let before_s3 = non_lock_objects(&s3);
    let before_back = non_lock_objects(&back);
    for (from, to) in [(&local, &s3), (&s3, &back), (&back, &s3)] {
        let run = copy(from, to, &["--all"]);
        run.expect_success();
        let r = run.json();
        assert_eq!(
            r["copied"].as_array().unwrap().len(),
            0,
            "{}",
            run.describe()
        );
        assert_eq!(r["blobs_added"], 0, "{}", run.describe());
        assert_eq!(r["bytes_added"], 0, "{}", run.describe());
    }
    assert_eq!(
        non_lock_objects(&s3),
        before_s3,
        "the S3 repository changed"
    );
    assert_eq!(
        non_lock_objects(&back),
        before_back,
        "the local copy changed"
    );

    // A new snapshot: only the new data travels, and an unchanged file is not read again.
    write_file(&tree.root.join("one more file"), b"0123456789");
    let third = local.backup_ok(&[&tree.root]);
    let run = copy(&local, &s3, &[&third]);
    run.expect_success();
    let r = run.json();
    assert_eq!(
        r["copied"].as_array().unwrap().len(),
        1,
        "{}",
        run.describe()
    );
    assert!(
        r["blobs_read"].as_u64().unwrap() <= 2,
        "unchanged files were read again: {}",
        run.describe()
    );
    let added = r["bytes_added"].as_u64().unwrap();
    assert!(added > 0 && added < 100_000, "{}", run.describe());
    let ids = snapshot_ids(&s3);
    let d = restore(&s3, ids.last().unwrap());
    assert_trees_equal(&tree.root, &restored_path(d.path(), &tree.root));
    let snaps = s3.run(["snapshots", "--json"]).json();
    assert_eq!(
        snaps[2]["parent"], snaps[1]["id"],
        "the copy's parent is the copy of the original's parent"
    );

    // S3 -> S3 (another prefix of the same server).
    let s3b = TestRepo::s3("copy_s3_to_s3").expect("S3 is up");
    s3b.init();
    copy(&s3, &s3b, &["--all"]).expect_success();
    let ids = snapshot_ids(&s3b);
    assert_eq!(ids.len(), 3);
    let d = restore(&s3b, ids.last().unwrap());
    assert_trees_equal(&tree.root, &restored_path(d.path(), &tree.root));
    let r = copy(&s3, &s3b, &["--all"]);
    r.expect_success();
    assert_eq!(r.json()["bytes_added"], 0, "{}", r.describe());
}

#[test]
fn copy_needs_two_repositories_and_a_selection() {
    let local = TestRepo::local();
    local.init();
    local.run(["copy", "--all"]).expect_code(1);
    let other = TestRepo::local();
    other.init();
    let run = local.run([
        OsString::from("copy"),
        OsString::from("--to-repo"),
        OsString::from(&other.url),
    ]);
    run.expect_code(1);
    assert!(run.stderr_str().contains("--all"), "{}", run.describe());
}
