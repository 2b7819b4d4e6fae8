//! Backup -> restore round trips: everything that goes in comes back out.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::*;

/// A repository holding one snapshot of a freshly built nasty tree.
fn repo_with_nasty_tree(size: TreeSize) -> (Repo, tempfile::TempDir, NastyTree, BackupReport) {
    let repo = Repo::init();
    let src = tempdir();
    let tree = build_nasty_tree(&src.path().join("src"), size);
    let snap = repo.backup_ok(&[&tree.root], &[]);
    (repo, src, tree, snap)
}

#[track_caller]
fn assert_sparse(path: &Path, len: u64) {
    let md = fs::symlink_metadata(path).unwrap();
    assert_eq!(md.len(), len, "size of {path:?}");
    assert!(
        md.blocks() * 512 < len,
        "{path:?} is not sparse after restore: {} bytes allocated for {len} bytes",
        md.blocks() * 512
    );
}

/// (a) /usr/share/doc plus the nasty tree, restored into a new directory and
/// compared entry by entry.
#[test]
fn roundtrip_real_and_nasty_tree() {
    let repo = Repo::init();
    let src = tempdir();
    let tree = build_nasty_tree(&src.path().join("src"), TreeSize::Full);
    let doc = Path::new("/usr/share/doc");
    assert!(doc.is_dir(), "test needs {doc:?}");

    let snap = repo.backup_ok(&[doc, &tree.root], &[]);

    // The snapshot is listed with its paths.
    let listed = repo.snapshots();
    assert_eq!(listed.len(), 1, "snapshots --json: {listed:?}");
    assert_eq!(
        listed[0]["id"],
        snap.id.as_str(),
        "snapshots --json: {listed:?}"
    );
    assert_eq!(
        listed[0]["short_id"],
        snap.short_id.as_str(),
        "snapshots --json: {listed:?}"
    );

    // Restore into a directory that does not exist yet.
    let out = tempdir();
    let dest = out.path().join("restore");
    repo.restore("latest", &dest, None::<&str>).expect_success();

    assert_trees_equal(doc, &restored_path(&dest, doc));
    assert_trees_equal(&tree.root, &restored_path(&dest, &tree.root));
    assert_sparse(&restored_path(&dest, &tree.sparse_file), tree.sparse_len);

    // Nothing but the two sources (and their parent directories) was created.
    for p in walk(&dest) {
        let ok = [doc, tree.root.as_path()].iter().any(|s| {
            let r = restored_path(&dest, s);
            p.starts_with(&r) || r.starts_with(&p)
        });
        assert!(ok, "restore created {p:?}, which is not part of any source");
    }
}

/// (b) `--include` of one subdirectory restores only that subdirectory.
#[test]
fn restore_include_restores_only_that_subtree() {
    let (repo, _src, tree, snap) = repo_with_nasty_tree(TreeSize::Small);
    let dest = tempdir();
    repo.restore(
        &snap.short_id,
        dest.path(),
        ["--include".as_ref(), tree.include_dir.as_os_str()],
    )
    .expect_success();

    let included = restored_path(dest.path(), &tree.include_dir);
    assert_trees_equal(&tree.include_dir, &included);
    let stray: Vec<_> = walk(dest.path())
        .into_iter()
        .filter(|p| !(p.starts_with(&included) || included.starts_with(p)))
        .collect();
    assert!(
        stray.is_empty(),
        "restore --include also restored {stray:?}"
    );
    assert!(
        !restored_path(dest.path(), &tree.root.join("plain.txt")).exists(),
        "file outside the included directory restored"
    );
}

/// (c) A non-empty destination is refused without `--overwrite` and left
/// untouched; with `--overwrite` the restore goes ahead.
#[test]
fn restore_into_non_empty_destination_needs_overwrite() {
    let (repo, _src, tree, snap) = repo_with_nasty_tree(TreeSize::Small);
    let dest = tempdir();
    write_file(&dest.path().join("marker"), b"do not touch\n");
    mkdirs(&dest.path().join("existing-dir"));
    write_file(&dest.path().join("existing-dir/file"), b"mine\n");
    set_mtime(&dest.path().join("existing-dir"), 1_000_000_000, 5);
    let before = tree_state(dest.path());

    let run = repo.restore(&snap.id, dest.path(), None::<&str>);
    run.expect_code(1);
    assert_eq!(
        tree_state(dest.path()),
        before,
        "refused restore changed the destination\n{}",
        run.describe()
    );

    repo.restore(&snap.id, dest.path(), ["--overwrite"])
        .expect_success();
    assert_trees_equal(&tree.root, &restored_path(dest.path(), &tree.root));
}

#[track_caller]
fn assert_dump(repo: &Repo, snapshot: &str, file: &Path) {
    let run = repo.run(["dump".as_ref(), snapshot.as_ref(), file.as_os_str()]);
    run.expect_success();
    let want = fs::read(file).unwrap();
    assert!(
        run.stdout == want,
        "dump {snapshot} {file:?}: got {} bytes, want {} bytes (same length: {})",
        run.stdout.len(),
        want.len(),
        run.stdout.len() == want.len()
    );
}

/// (d) `dump` writes a file's exact bytes to stdout.
#[test]
fn dump_prints_file_bytes() {
    let (repo, _src, tree, snap) = repo_with_nasty_tree(TreeSize::Small);
    assert_dump(&repo, &snap.short_id, &tree.random_file);
    assert_dump(&repo, &snap.id, &tree.root.join("plain.txt"));
    assert_dump(&repo, "latest", &tree.newline_file);
    assert_dump(&repo, "latest", &tree.sparse_file);
    assert_dump(&repo, "latest", &tree.root.join("zero"));
}

/// Paths inside a snapshot are arbitrary bytes: `dump` and
/// `restore --include` take non-UTF-8 paths as arguments.
#[test]
fn non_utf8_paths_are_accepted_as_arguments() {
    let (repo, _src, tree, snap) = repo_with_nasty_tree(TreeSize::Small);
    assert_dump(&repo, &snap.short_id, &tree.non_utf8_file);

    let dest = tempdir();
    repo.restore(
        &snap.short_id,
        dest.path(),
        ["--include".as_ref(), tree.non_utf8_file.as_os_str()],
    )
    .expect_success();
    let restored = restored_path(dest.path(), &tree.non_utf8_file);
    assert_eq!(
        fs::read(&restored).ok(),
        fs::read(&tree.non_utf8_file).ok(),
        "{restored:?} not restored"
    );
    assert!(
        !restored_path(dest.path(), &tree.newline_file).exists(),
        "restore --include restored more than the included file"
    );
}

/// (e) `restore --verify` succeeds on an intact repository and the restore
/// is exact; `verify <snapshot>` succeeds too.
#[test]
fn restore_with_verify_succeeds() {
    let (repo, _src, tree, snap) = repo_with_nasty_tree(TreeSize::Full);
    let dest = tempdir();
    repo.restore(&snap.short_id, dest.path(), ["--verify"])
        .expect_success();
    assert_trees_equal(&tree.root, &restored_path(dest.path(), &tree.root));
    assert_sparse(
        &restored_path(dest.path(), &tree.sparse_file),
        tree.sparse_len,
    );

    repo.run(["verify", snap.short_id.as_str()])
        .expect_success();
}
