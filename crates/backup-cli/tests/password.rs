//! Passwords: wrong ones are refused, `init` never re-initialises.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use support::*;

/// Every file of the repository with its bytes (locks excluded).
fn repo_files(repo: &Repo) -> BTreeMap<PathBuf, Vec<u8>> {
    let locks = repo.path.join("locks");
    walk(&repo.path)
        .into_iter()
        .filter(|p| !p.starts_with(&locks) && p.is_file())
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// A repository with one small snapshot in it.
fn repo_with_snapshot() -> (Repo, tempfile::TempDir, BackupReport) {
    let repo = Repo::init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    build_random_tree(&root, 3, 1000);
    let snap = repo.backup_ok(&[&root], &[]);
    (repo, src, snap)
}

#[track_caller]
fn assert_password_refused(run: &Run, hidden: Option<&str>) {
    run.expect_code(1);
    assert!(
        run.stderr_str().to_lowercase().contains("password"),
        "error does not mention the password\n{}",
        run.describe()
    );
    if let Some(secret) = hidden {
        assert!(
            !run.all_output().contains(secret),
            "output with a wrong password shows encrypted repository data ({secret})\n{}",
            run.describe()
        );
    }
}

#[test]
fn wrong_password_is_refused() {
    let (repo, _src, snap) = repo_with_snapshot();

    // The right password lists the snapshot...
    let listed = repo.snapshots();
    assert!(
        listed.iter().any(|s| s["id"] == snap.id.as_str()),
        "snapshot missing from {listed:?}"
    );

    // ...a wrong one fails and says why.
    let run = repo.run_with(Password::Env("not the password"), ["snapshots"]);
    assert_password_refused(&run, Some(&snap.paths[0]));
    let run = repo.run_with(Password::Env("not the password"), ["snapshots", "--json"]);
    assert_password_refused(&run, Some(&snap.paths[0]));
}

#[test]
fn init_on_existing_repository_fails() {
    let (repo, _src, snap) = repo_with_snapshot();
    let before = repo_files(&repo);

    let run = repo.run(["init"]);
    run.expect_code(1);
    let run = repo.run_with(Password::Env("a different password"), ["init"]);
    run.expect_code(1);
    assert!(
        repo_files(&repo) == before,
        "failed init changed the repository's files\n{}",
        run.describe()
    );

    // The original password still opens it; the second one does not.
    assert!(repo.snapshots().iter().any(|s| s["id"] == snap.id.as_str()));
    let run = repo.run_with(Password::Env("a different password"), ["snapshots"]);
    assert_password_refused(&run, Some(&snap.paths[0]));
}

#[test]
fn password_file_is_accepted() {
    let repo = Repo::uninit();
    let dir = tempdir();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    write_file(&good, repo.password.as_bytes());
    write_file(&bad, b"wrong password from a file");

    repo.run_with(
        Password::None,
        [
            "--password-file".as_ref(),
            good.as_os_str(),
            "init".as_ref(),
        ],
    )
    .expect_success();
    // Same password via the environment opens it.
    assert!(repo.snapshots().is_empty());
    repo.run_with(
        Password::None,
        [
            "--password-file".as_ref(),
            good.as_os_str(),
            "snapshots".as_ref(),
        ],
    )
    .expect_success();
    let run = repo.run_with(
        Password::None,
        [
            "--password-file".as_ref(),
            bad.as_os_str(),
            "snapshots".as_ref(),
        ],
    );
    assert_password_refused(&run, None);
}
