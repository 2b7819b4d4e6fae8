//! Partial backups: an unreadable file is reported and marks the snapshot partial (exit 2),
//! everything else is stored and restores exactly; a missing source path stores nothing
//! (exit 1).
//!
//! As root, `chmod 000` does not make a file unreadable. `/proc/<pid>/mem` of a live child
//! does the job: `lstat` says it is a regular file of size 0, and reading at offset 0 fails
//! with EIO (address 0 is never mapped).

mod support;

use std::process::{Child, Command, Stdio};

use support::*;

/// A `sleep` child, killed when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unreadable_file_makes_the_backup_partial() {
    let child = Sleeper::start();
    let mem = std::path::PathBuf::from(format!("/proc/{}/mem", child.pid()));
    let md = std::fs::symlink_metadata(&mem).expect("lstat /proc/<pid>/mem");
    assert!(
        md.is_file() && md.len() == 0,
        "test setup: {mem:?} is not an empty regular file: {md:?}"
    );
    assert!(
        std::fs::read(&mem).is_err(),
        "test setup: {mem:?} is readable"
    );

    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    mkdirs(&src.join("nested"));
    build_random_tree(&src, 5, 40_000);
    write_file(&src.join("nested/small.txt"), b"small\n");
    symlink("nested/small.txt", &src.join("link"));

    let run = repo.backup(&[&src, &mem], &[]);
    run.expect_code(2);
    let report = BackupReport::parse(&run.json(), &run);
    assert!(
        report.partial,
        "snapshot not marked partial\n{}",
        run.describe()
    );
    let mem_s = mem.to_str().unwrap();
    let paths: Vec<&str> = report
        .errors
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        vec![mem_s],
        "errors should list exactly the unreadable file\n{}",
        run.describe()
    );
    assert!(
        report.errors[0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message\n{}",
        run.describe()
    );
    // The readable part is complete.
    assert_eq!(
        report.summary.files_new,
        count_regular_files(&src),
        "{}",
        run.describe()
    );

    // Human output says so too (warning on stderr, exit 2).
    let child2 = Sleeper::start();
    let mem2 = format!("/proc/{}/mem", child2.pid());
    let human = repo.run([
        "backup",
        &format!("files:{}", src.display()),
        &format!("files:{mem2}"),
    ]);
    human.expect_code(2);
    assert!(
        human.stderr_str().contains("partial"),
        "no partial warning on stderr\n{}",
        human.describe()
    );
    assert!(
        human.stderr_str().contains(&mem2),
        "unreadable path not named on stderr\n{}",
        human.describe()
    );
    drop(child2);

    // `list --json` shows the first snapshot as partial, with its error.
    let listed = repo.snapshots();
    let s = listed
        .iter()
        .find(|s| s["id"] == report.id.as_str())
        .expect("snapshot listed");
    assert_eq!(s["partial"], true, "list --json: {s}");
    assert_eq!(s["errors"][0]["path"], mem_s, "list --json: {s}");
    let human = repo.run(["list"]);
    human.expect_success();
    assert!(
        human.stdout_str().contains("partial"),
        "list table does not show partial\n{}",
        human.describe()
    );

    // The rest restores exactly; the unreadable file is not restored at all.
    let out = tempdir();
    let dest = out.path().join("restore");
    repo.restore(&report.id, &dest, ["--verify"])
        .expect_success();
    assert_trees_equal(&src, &restored_path(&dest, &src));
    assert!(
        std::fs::symlink_metadata(restored_path(&dest, &mem)).is_err(),
        "the unreadable file was restored (as an empty file?)"
    );
    repo.run(["check", "--read-data"]).expect_success();
    drop(child);
}

#[test]
fn missing_source_path_stores_nothing() {
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    mkdirs(&src);
    write_file(&src.join("f"), b"content\n");
    let missing = tmp.path().join("does-not-exist");

    let run = repo.backup(&[&missing], &[]);
    run.expect_code(1);
    assert_eq!(run.json()["error"]["code"], "Target", "{}", run.describe());
    assert!(
        run.stderr_str().contains("does-not-exist"),
        "error does not name the path\n{}",
        run.describe()
    );
    assert!(repo.snapshots().is_empty(), "a snapshot was stored");

    // One good and one missing path: still nothing, and no lock or data left behind.
    let run = repo.backup(&[&src, &missing], &[]);
    run.expect_code(1);
    assert!(
        repo.snapshots().is_empty(),
        "a snapshot was stored for a partly missing target list"
    );
    assert!(
        repo.lock_files().is_empty(),
        "locks left: {:?}",
        repo.lock_files()
    );
    assert!(
        repo.pack_files().is_empty(),
        "packs written: {:?}",
        repo.pack_files()
    );

    // The literal `files:/nonexistent`.
    assert!(
        !std::path::Path::new("/nonexistent").exists(),
        "test setup: /nonexistent exists"
    );
    let run = repo.run(["backup", "files:/nonexistent", "--json"]);
    run.expect_code(1);
    assert!(repo.snapshots().is_empty());
}
