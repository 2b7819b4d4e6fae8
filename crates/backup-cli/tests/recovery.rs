//! Recovery paths: a lost pack healed by the next backup after `repair-index`, an interrupted
//! restore cleaned up without touching the user's own files, partial uploads removed by prune.

mod support;

use std::path::Path;

use support::*;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// After a pack is lost and the index rebuilt, an incremental backup must not reuse the lost
/// blobs of unchanged files: it reads them again, and the new snapshot restores exactly.
#[test]
fn incremental_after_lost_pack_stores_the_data_again() {
    let repo = Repo::init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    for i in 0..3 {
        write_file(&root.join(format!("f{i}")), &random_bytes(3 << 20, i + 1));
    }
    repo.backup_ok(&[&root], &[]);
    let packs = repo.pack_files();
    assert!(packs.len() > 1, "expected several packs, got {packs:?}");
    let biggest = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(biggest).unwrap();
    repo.run(["check"]).expect_code(1);
    repo.run(["repair-index"]).expect_success();

    let second = repo.backup_ok(&[&root], &[]);
    assert!(
        second.summary.bytes_read > 0,
        "the lost data must be read again: {:?}",
        second.summary
    );
    let dest = tempdir();
    repo.restore("latest", &dest.path().join("out"), ["--verify"])
        .expect_success();
    assert_trees_equal(&root, &restored_path(&dest.path().join("out"), &root));
    // Same content, same blob ids: storing the data again heals the first snapshot too.
    repo.run(["check", "--read-data"]).expect_success();
}

/// `restore --overwrite` removes only temporary files of exactly the generated form.
#[test]
fn overwrite_keeps_user_files_that_look_like_temp_files() {
    let repo = Repo::init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    write_file(&root.join("a"), b"data");
    repo.backup_ok(&[&root], &[]);
    let dest = tempdir();
    let out = dest.path().join("out");
    repo.restore("latest", &out, Vec::<&str>::new())
        .expect_success();
    let restored = restored_path(&out, &root);
    let mine = restored.join(".dbm-restore-mine.tmp");
    let leftover = restored.join(".dbm-restore-0123456789abcdef.tmp");
    write_file(&mine, b"user data");
    write_file(&leftover, b"left by an interrupted restore");
    repo.restore("latest", &out, ["--overwrite"])
        .expect_success();
    assert_eq!(std::fs::read(&mine).unwrap(), b"user data");
    assert!(
        !leftover.exists(),
        "a leftover temporary file was not removed"
    );
    assert_eq!(std::fs::read(restored.join("a")).unwrap(), b"data");
    assert!(Path::new(&restored).is_dir());
}

/// A write interrupted by a kill leaves a staging file (`<name>#<n>`) that no listing shows;
/// prune removes it and the repository stays clean.
#[test]
fn prune_removes_partial_uploads() {
    let repo = Repo::init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    write_file(&root.join("a"), &random_bytes(100_000, 7));
    repo.backup_ok(&[&root], &[]);
    let pack = repo.pack_files().pop().expect("a pack");
    let staging = pack
        .parent()
        .unwrap()
        .join(format!("{}#1", pack.file_name().unwrap().to_string_lossy()));
    write_file(&staging, b"half a pack");
    repo.run(["prune"]).expect_success();
    assert!(
        !staging.exists(),
        "prune left the partial upload {staging:?}"
    );
    repo.run(["check", "--read-data"]).expect_success();
    let dest = tempdir();
    repo.restore("latest", &dest.path().join("out"), Vec::<&str>::new())
        .expect_success();
    assert_trees_equal(&root, &restored_path(&dest.path().join("out"), &root));
}

/// A manifest copied over another one (same key, valid encryption) is caught by its name, and a
/// damaged manifest never makes `latest` silently mean an older snapshot.
#[test]
fn replaced_or_damaged_manifests_are_never_used_silently() {
    let repo = Repo::init();
    let src = tempdir();
    let root = src.path().join("src");
    mkdirs(&root);
    write_file(&root.join("a"), b"first");
    let first = repo.backup_ok(&[&root], &[]);
    write_file(&root.join("a"), b"second version");
    let second = repo.backup_ok(&[&root], &[]);
    let snaps = repo.path.join("snapshots");
    let (p1, p2) = (snaps.join(&first.id), snaps.join(&second.id));
    let saved = std::fs::read(&p2).unwrap();

    std::fs::copy(&p1, &p2).unwrap(); // the second snapshot's name now holds the first's manifest
    let dest = tempdir();
    let run = repo.restore(&second.short_id, &dest.path().join("x"), Vec::<&str>::new());
    assert_ne!(
        run.code(),
        Some(0),
        "a replaced manifest was restored\n{}",
        run.describe()
    );
    repo.run(["check"]).expect_code(1);

    let mut damaged = saved.clone();
    damaged[40] ^= 1;
    std::fs::write(&p2, &damaged).unwrap();
    let run = repo.restore("latest", &dest.path().join("y"), Vec::<&str>::new());
    assert_eq!(
        run.code(),
        Some(1),
        "`latest` fell back to an older snapshot\n{}",
        run.describe()
    );
    repo.run(["list"]).expect_code(2);
    repo.run(["forget", &second.short_id]).expect_success();
    repo.restore("latest", &dest.path().join("z"), Vec::<&str>::new())
        .expect_success();
    assert_eq!(
        std::fs::read(restored_path(&dest.path().join("z"), &root).join("a")).unwrap(),
        b"first"
    );
}
