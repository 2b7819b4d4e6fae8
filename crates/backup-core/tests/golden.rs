//! Golden test of the on-disk format: a repository written by format version 1 (committed under
//! `tests/fixtures/repo-v1`) must stay readable, byte for byte. If this test fails, the format
//! changed: bump `FORMAT_VERSION` and keep a reader for version 1 rather than editing the fixture.
//!
//! The fixture is made by `cargo test -p backup-core --test golden -- --ignored make_fixture`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::engine::{backup, check, restore};
use backup_core::progress::NoProgress;
use backup_core::repository::chunker::ChunkerParams;
use backup_core::repository::crypto::KdfParams;
use backup_core::repository::{InitOptions, Repository};

const PASSWORD: &[u8] = b"golden";

/// The files of the fixture's source tree: (relative path, content).
fn expected_files() -> Vec<(&'static str, Vec<u8>)> {
    let big: Vec<u8> = (0u32..200_000)
        .flat_map(|i| (i.wrapping_mul(2654435761) >> 7).to_le_bytes())
        .collect();
    vec![
        ("hello.txt", b"hello, golden world\n".to_vec()),
        ("dir/empty", Vec::new()),
        ("dir/big.bin", big),
        (
            "dir/nested/notes.md",
            "# notes\nnon-ASCII: \u{e9}\u{e8}\u{fc}\n"
                .repeat(50)
                .into_bytes(),
        ),
    ]
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn format_v1_repository_restores_exactly() {
    // Work on a copy: opening takes a lock, and the committed fixture must never change.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), copy.path());
    let store = backup_core::store::open_store(copy.path().to_str().unwrap(), false).unwrap();
    let repo = Arc::new(
        Repository::open(store, PASSWORD)
            .await
            .expect("fixture opens with its password"),
    );
    assert_eq!(repo.config().version, 1);
    let snaps = repo.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 1, "the fixture holds one snapshot");
    let report = check::check(
        &repo,
        &check::CheckOptions {
            read_data: true,
            read_data_subset: None,
        },
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok, "check of the fixture: {:?}", report.errors);

    let out = tempfile::tempdir().unwrap();
    let summary = restore::restore(
        &repo,
        &snaps[0],
        &restore::RestoreOptions::new(out.path()),
        &NoProgress,
    )
    .await
    .unwrap()
    .into_result()
    .unwrap();
    assert_eq!(summary.files, expected_files().len() as u64);
    let root = out.path().join(snaps[0].paths[0].trim_start_matches('/'));
    for (rel, content) in expected_files() {
        let got = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            got == content,
            "{rel}: restored bytes differ from the fixture's source"
        );
    }
}

#[tokio::test]
#[ignore = "writes the fixture; run by hand only when the format version changes"]
async fn make_fixture() {
    let src = Path::new("/tmp/dbm-golden-src");
    let _ = std::fs::remove_dir_all(src);
    for (rel, content) in expected_files() {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    let _ = std::fs::remove_dir_all(fixture());
    let store = backup_core::store::open_store(fixture().to_str().unwrap(), true).unwrap();
    let opts = InitOptions {
        chunker: ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
        pack_size: 64 * 1024,
        compression_level: 3,
        kdf: KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
    };
    let repo = Arc::new(Repository::init(store, PASSWORD, opts).await.unwrap());
    let opts =
        backup::BackupOptions::new(vec![format!("files:{}", src.display()).parse().unwrap()]);
    backup::backup(&repo, &opts, &NoProgress).await.unwrap();
}
