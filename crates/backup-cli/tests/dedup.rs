//! Deduplication and change detection.

mod support;

use std::fs;
use std::path::Path;

use support::*;

const DOC: &str = "/usr/share/doc";

/// `after - before` must be under 1% of `before`.
#[track_caller]
fn assert_grew_less_than_1_percent(before: u64, after: u64, what: &str) {
    assert!(
        after >= before,
        "{what}: repository shrank from {before} to {after} bytes"
    );
    let growth = after - before;
    assert!(
        growth * 100 < before,
        "{what}: repository grew by {growth} bytes from {before} bytes (>= 1%)"
    );
}

/// First backup of /usr/share/doc, with its summary checked. Returns the
/// report, the number of regular files and their total size.
fn first_doc_backup(repo: &Repo) -> (BackupReport, u64, u64) {
    let doc = Path::new(DOC);
    let files = count_regular_files(doc);
    let bytes = sum_regular_file_sizes(doc);
    assert!(files > 100, "test needs a populated {DOC}");
    let first = repo.backup_ok(&[doc], &[]);
    let s = &first.summary;
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unmodified),
        (files, 0, 0),
        "first backup of {DOC} ({files} files): {s:?}"
    );
    assert_eq!(s.bytes_total, bytes, "bytes_total of first backup: {s:?}");
    assert_eq!(s.bytes_read, bytes, "bytes_read of first backup: {s:?}");
    assert!(s.dirs > 0, "dirs of first backup: {s:?}");
    assert!(s.bytes_added > 0, "first backup added nothing: {s:?}");
    let size = repo.size_excluding_locks();
    assert!(
        s.bytes_added <= size,
        "bytes_added {} exceeds the whole repository size {size} (should be stored bytes)",
        s.bytes_added
    );
    (first, files, bytes)
}

/// A second backup of an unchanged tree stores (almost) nothing and reports
/// every file as unmodified.
#[test]
fn unchanged_tree_is_deduplicated() {
    let repo = Repo::init();
    let (first, files, bytes) = first_doc_backup(&repo);
    let size1 = repo.size_excluding_locks();

    let second = repo.backup_ok(&[Path::new(DOC)], &[]);
    let size2 = repo.size_excluding_locks();
    assert_ne!(first.id, second.id, "second backup must be a new snapshot");
    let s = &second.summary;
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unmodified),
        (0, 0, files),
        "second backup of an unchanged {DOC} ({files} files): {s:?}"
    );
    assert_eq!(s.bytes_total, bytes, "bytes_total of second backup: {s:?}");
    assert!(
        s.bytes_added * 100 < size1,
        "second backup reports {} bytes added (repository: {size1})",
        s.bytes_added
    );
    assert_grew_less_than_1_percent(size1, size2, "unchanged re-backup");
    assert_eq!(repo.snapshots().len(), 2);
}

/// `--type full` reads every file again but still stores (almost) nothing.
#[test]
fn full_backup_rereads_but_deduplicates() {
    let repo = Repo::init();
    let (_, files, bytes) = first_doc_backup(&repo);
    let size1 = repo.size_excluding_locks();

    let full = repo.backup_ok(&[Path::new(DOC)], &["--type", "full"]);
    let size2 = repo.size_excluding_locks();
    let s = &full.summary;
    // Every file is read again (bytes_read below); its content equals the parent's, so it
    // counts as unmodified, not changed.
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unmodified),
        (0, 0, files),
        "full backup of an unchanged tree: {s:?}"
    );
    assert_eq!(
        s.bytes_read, bytes,
        "full backup must read every byte: {s:?}"
    );
    assert_eq!(s.bytes_total, bytes, "bytes_total of full backup: {s:?}");
    assert!(
        s.bytes_added * 100 < size1,
        "full backup of unchanged data reports {} bytes added (repository: {size1})",
        s.bytes_added
    );
    assert_grew_less_than_1_percent(size1, size2, "full re-backup");
}

/// Incremental backups notice exactly one changed file, then one new file,
/// and the changed content is what gets restored.
#[test]
fn incremental_backup_detects_changed_and_new_files() {
    let repo = Repo::init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    let files = build_random_tree(&root, 40, 10_000);
    let n = files.len() as u64;

    let first = repo.backup_ok(&[&root], &[]);
    assert_eq!(
        (
            first.summary.files_new,
            first.summary.files_changed,
            first.summary.files_unmodified
        ),
        (n, 0, 0),
        "first backup: {:?}",
        first.summary
    );

    // Change one file (new content, new size).
    let victim = &files[7];
    let mut rng = Rng::unique();
    write_random_file(victim, 12_345, &mut rng);
    let second = repo.backup_ok(&[&root], &["--type", "incremental"]);
    let s = &second.summary;
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unmodified),
        (0, 1, n - 1),
        "incremental backup after changing {victim:?}: {s:?}"
    );
    assert!(s.bytes_added > 0, "changed data was not stored: {s:?}");

    // Add one file.
    write_file(&root.join("brand-new"), &rng.bytes(5000));
    let third = repo.backup_ok(&[&root], &["--type", "incremental"]);
    let s = &third.summary;
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unmodified),
        (1, 0, n),
        "incremental backup after adding a file: {s:?}"
    );

    // The second snapshot holds the changed content.
    let dest = tempdir();
    repo.restore(&second.short_id, dest.path(), None::<&str>)
        .expect_success();
    let restored_victim = restored_path(dest.path(), victim);
    assert_eq!(
        fs::read(&restored_victim).unwrap(),
        fs::read(victim).unwrap(),
        "restored {restored_victim:?} lacks the change"
    );
    assert!(
        !restored_path(dest.path(), &root.join("brand-new")).exists(),
        "second snapshot contains a file added after it"
    );
}
