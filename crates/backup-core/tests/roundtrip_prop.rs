//! Property: backup → restore reproduces any small directory tree exactly (raw name bytes,
//! file types, contents, permission bits), also after an incremental backup of a modified tree,
//! and the first snapshot still restores the original tree afterwards.
//!
//! Trees are random: nested directories with odd modes, names with non-UTF-8 bytes, newlines
//! and backslashes, files of 0 B .. 300 KiB (many chunks with the 4/16/64 KiB test chunker and
//! several 256 KiB packs), duplicated contents, zero-filled and sparse files. Modifications
//! include rewrites, appends, truncations, chmods, deletions, new files, and an in-place byte
//! flip with the old mtime put back (only the ctime tells that file changed).

mod support;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use backup_core::engine::backup::{backup, BackupOptions};
use backup_core::engine::restore::{restore, RestoreOptions};
use backup_core::progress::NoProgress;
use backup_core::target::TargetSpec;
use backup_core::BackupType;
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Content {
    Random { len: usize, seed: u64 },
    Zeros { len: usize },
    Sparse { len: usize, at: Pick, seed: u64 },
    Text { len: usize },
    SameAs(Pick),
}

#[derive(Debug, Clone)]
struct DirSpec {
    parent: Pick,
    name: Vec<u8>,
    mode: u32,
}

#[derive(Debug, Clone)]
struct FileSpec {
    dir: Pick,
    name: Vec<u8>,
    content: Content,
    mode: u32,
}

#[derive(Debug, Clone)]
enum Change {
    Rewrite(Content),
    Append { len: usize, seed: u64 },
    Truncate(Pick),
    FlipKeepMtime(Pick),
    Chmod(u32),
    Delete,
}

#[derive(Debug, Clone)]
struct Case {
    dirs: Vec<DirSpec>,
    files: Vec<FileSpec>,
    changes: Vec<(Pick, Change)>,
    new_files: Vec<FileSpec>,
}

/// A choice among `len` things, proportional to a random `u64` (shrinks towards the first).
#[derive(Debug, Clone, Copy)]
struct Pick(u64);

impl Pick {
    fn index(&self, len: usize) -> usize {
        assert!(len > 0, "pick from nothing");
        ((self.0 as u128 * len as u128) >> 64) as usize
    }
    /// Picks `n` of `of`.
    fn nth(n: usize, of: usize) -> Pick {
        Pick(((n as u128) << 64).div_ceil(of as u128) as u64)
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    any::<u64>().prop_map(Pick)
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        1usize..4096,
        4096usize..70_000,
        70_000usize..300 * 1024
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        4 => (size(), any::<u64>()).prop_map(|(len, seed)| Content::Random { len, seed }),
        1 => size().prop_map(|len| Content::Zeros { len }),
        1 => (70_000usize..300 * 1024, pick(), any::<u64>()).prop_map(|(len, at, seed)| Content::Sparse { len, at, seed }),
        1 => size().prop_map(|len| Content::Text { len }),
        1 => pick().prop_map(Content::SameAs),
    ]
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => b'a'..=b'z',
            1 => 0x80u8..=0xff,
            1 => prop::sample::select(vec![b' ', b'\n', b'\t', b'-', b'.', b'\\', b'*', b'?', 0x01u8, 0x7f]),
        ],
        1..10,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn file_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![
        0o644u32, 0o600, 0o755, 0o444, 0o400, 0o640, 0o000, 0o4755, 0o2711, 0o1644,
    ])
}

fn dir_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o755u32, 0o700, 0o555, 0o750, 0o1777, 0o2775, 0o500])
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    (pick(), name(), content(), file_mode()).prop_map(|(dir, name, content, mode)| FileSpec {
        dir,
        name,
        content,
        mode,
    })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        2 => content().prop_map(Change::Rewrite),
        1 => (1usize..20_000, any::<u64>()).prop_map(|(len, seed)| Change::Append { len, seed }),
        1 => pick().prop_map(Change::Truncate),
        2 => pick().prop_map(Change::FlipKeepMtime),
        1 => file_mode().prop_map(Change::Chmod),
        1 => Just(Change::Delete),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            (pick(), name(), dir_mode()).prop_map(|(parent, name, mode)| DirSpec {
                parent,
                name,
                mode,
            }),
            0..6,
        ),
        prop::collection::vec(file_spec(), 1..14),
        prop::collection::vec((pick(), change()), 1..7),
        prop::collection::vec(file_spec(), 0..4),
    )
        .prop_map(|(dirs, files, changes, new_files)| Case {
            dirs,
            files,
            changes,
            new_files,
        })
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The source tree on disk and what it should contain.
struct Source {
    root: PathBuf,
    model: BTreeMap<Vec<u8>, EntryState>,
    dirs: Vec<Vec<u8>>,
    files: Vec<Vec<u8>>,
}

fn child(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

impl Source {
    fn path(&self, rel: &[u8]) -> PathBuf {
        join_raw(&self.root, rel)
    }

    /// Writes `c` to `rel` (created or truncated). Returns the bytes written.
    fn write(&self, rel: &[u8], c: &Content) -> Vec<u8> {
        let p = self.path(rel);
        let f = File::create(&p).unwrap_or_else(|e| panic!("create {p:?}: {e}"));
        let bytes = match c {
            Content::Random { len, seed } => pseudo_random(*len, *seed),
            Content::Zeros { len } => vec![0; *len],
            Content::Text { len } => b"the quick brown fox jumps over the lazy dog\n"
                .iter()
                .copied()
                .cycle()
                .take(*len)
                .collect(),
            Content::SameAs(i) => match self.files.as_slice() {
                [] => Vec::new(),
                files => match self.model.get(&files[i.index(files.len())]) {
                    Some(EntryState::File { content, .. }) => content.clone(),
                    other => panic!("model: {other:?}"),
                },
            },
            Content::Sparse { len, at, seed } => {
                let data = pseudo_random(4096, *seed);
                let off = at.index(len - 4096);
                f.set_len(*len as u64).unwrap();
                f.write_all_at(&data, off as u64).unwrap();
                let mut v = vec![0; *len];
                v[off..off + 4096].copy_from_slice(&data);
                return v;
            }
        };
        (&f).write_all(&bytes).unwrap();
        bytes
    }

    fn add_file(&mut self, spec: &FileSpec) -> Option<Vec<u8>> {
        let dir = self.dirs[spec.dir.index(self.dirs.len())].clone();
        let rel = child(&dir, &spec.name);
        if self.model.contains_key(&rel) {
            return None;
        }
        let content = self.write(&rel, &spec.content);
        fs::set_permissions(self.path(&rel), fs::Permissions::from_mode(spec.mode)).unwrap();
        self.model.insert(
            rel.clone(),
            EntryState::File {
                mode: spec.mode,
                content,
            },
        );
        self.files.push(rel.clone());
        Some(rel)
    }

    fn build(root: PathBuf, case: &Case) -> Source {
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
        let mut s = Source {
            root,
            model: BTreeMap::new(),
            dirs: vec![Vec::new()],
            files: Vec::new(),
        };
        for d in &case.dirs {
            let parent = s.dirs[d.parent.index(s.dirs.len())].clone();
            let rel = child(&parent, &d.name);
            if s.model.contains_key(&rel) {
                continue;
            }
            fs::create_dir(s.path(&rel)).unwrap();
            s.model
                .insert(rel.clone(), EntryState::Dir { mode: d.mode });
            s.dirs.push(rel);
        }
        for f in &case.files {
            s.add_file(f);
        }
        // Modes of directories last: 0o500 and friends do not stop root, but keep it tidy.
        for rel in s.dirs.iter().skip(1) {
            let EntryState::Dir { mode } = s.model[rel] else {
                unreachable!()
            };
            fs::set_permissions(s.path(rel), fs::Permissions::from_mode(mode)).unwrap();
        }
        s
    }

    fn content_mut(&mut self, rel: &[u8]) -> (&mut u32, &mut Vec<u8>) {
        match self.model.get_mut(rel) {
            Some(EntryState::File { mode, content }) => (mode, content),
            other => panic!("model: {other:?}"),
        }
    }

    fn apply(&mut self, target: &Pick, change: &Change) {
        if self.files.is_empty() {
            return;
        }
        let i = target.index(self.files.len());
        let rel = self.files[i].clone();
        let p = self.path(&rel);
        match change {
            Change::Rewrite(c) => {
                let bytes = self.write(&rel, c);
                *self.content_mut(&rel).1 = bytes;
            }
            Change::Append { len, seed } => {
                let extra = pseudo_random(*len, *seed);
                OpenOptions::new()
                    .append(true)
                    .open(&p)
                    .unwrap()
                    .write_all(&extra)
                    .unwrap();
                self.content_mut(&rel).1.extend_from_slice(&extra);
            }
            Change::Truncate(at) => {
                let (_, content) = self.content_mut(&rel);
                if content.is_empty() {
                    return;
                }
                let len = at.index(content.len());
                content.truncate(len);
                OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(len as u64)
                    .unwrap();
            }
            Change::FlipKeepMtime(at) => {
                let (_, content) = self.content_mut(&rel);
                if content.is_empty() {
                    return;
                }
                let off = at.index(content.len());
                content[off] ^= 0xff;
                let b = content[off];
                let before = fs::metadata(&p).unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .write_all_at(&[b], off as u64)
                    .unwrap();
                let mtime = filetime::FileTime::from_last_modification_time(&before);
                filetime::set_file_mtime(&p, mtime).unwrap();
                let after = fs::metadata(&p).unwrap();
                assert_eq!(
                    (after.len(), after.mtime(), after.mtime_nsec()),
                    (before.len(), before.mtime(), before.mtime_nsec())
                );
            }
            Change::Chmod(m) => {
                fs::set_permissions(&p, fs::Permissions::from_mode(*m)).unwrap();
                *self.content_mut(&rel).0 = *m;
            }
            Change::Delete => {
                fs::remove_file(&p).unwrap();
                self.model.remove(&rel);
                self.files.remove(i);
            }
        }
    }

    /// (size, mtime, ctime, inode) of every file: what the engine's change detection looks at.
    fn stats(&self) -> BTreeMap<Vec<u8>, (u64, i64, i64, i64, i64, u64)> {
        self.files
            .iter()
            .map(|rel| {
                let m = fs::symlink_metadata(self.path(rel)).unwrap();
                (
                    rel.clone(),
                    (
                        m.len(),
                        m.mtime(),
                        m.mtime_nsec(),
                        m.ctime(),
                        m.ctime_nsec(),
                        m.ino(),
                    ),
                )
            })
            .collect()
    }
}

async fn restore_and_compare(
    repo: &std::sync::Arc<backup_core::Repository>,
    snap: &backup_core::Snapshot,
    src: &Source,
    verify: bool,
    what: &str,
) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restore");
    let mut opts = RestoreOptions::new(&dest);
    opts.verify = verify;
    let s = restore(repo, snap, &opts, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{what}: restore failed: {e}"));
    assert!(
        s.errors.is_empty(),
        "{what}: restore errors: {:?}",
        s.errors
    );
    let files = src
        .model
        .values()
        .filter(|e| matches!(e, EntryState::File { .. }))
        .count() as u64;
    assert_eq!(s.files, files, "{what}: files restored");
    if verify {
        assert_eq!(s.files_verified, files, "{what}: files verified");
    }
    let restored = restored_path(&dest, &src.root);
    assert_same_state(&src.model, &dir_state(&restored), what);
    let root_mode = fs::symlink_metadata(&restored).unwrap().mode() & 0o7777;
    assert_eq!(root_mode, 0o750, "{what}: mode of the source root");
}

fn run_case(case: Case) {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let repo = init_repo(&tmp.path().join("repo")).await;
        let mut src = Source::build(tmp.path().join("src"), &case);
        let opts = BackupOptions::new(vec![TargetSpec::Files(src.root.clone())]);

        let snap1 = backup(&repo, &opts, &NoProgress)
            .await
            .expect("first backup");
        assert!(!snap1.partial, "first backup partial: {:?}", snap1.errors);
        assert_eq!(snap1.backup_type, BackupType::Full);
        let model1 = src.model.clone();
        let total1: usize = model1
            .values()
            .map(|e| {
                if let EntryState::File { content, .. } = e {
                    content.len()
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(
            snap1.summary.bytes_read, total1 as u64,
            "first backup reads everything"
        );
        restore_and_compare(&repo, &snap1, &src, false, "snapshot 1").await;

        // Modify, remembering what the engine's change detection will see.
        let stats1 = src.stats();
        for (target, change) in &case.changes {
            src.apply(target, change);
        }
        for f in &case.new_files {
            src.add_file(f);
        }
        let stats2 = src.stats();
        let mut expect_read = 0u64;
        for (rel, st) in &stats2 {
            let changed_content = model1.get(rel) != src.model.get(rel);
            let stat_changed = stats1.get(rel) != Some(st);
            if changed_content {
                // Otherwise the test would be asking for the impossible.
                assert!(
                    stat_changed,
                    "test setup: {rel:?} changed but its stat did not"
                );
            }
            if stat_changed {
                expect_read += st.0;
            }
        }

        let snap2 = backup(&repo, &opts, &NoProgress)
            .await
            .expect("second backup");
        assert!(!snap2.partial, "second backup partial: {:?}", snap2.errors);
        assert_eq!(snap2.parent, Some(snap1.id), "second backup's parent");
        assert_eq!(snap2.backup_type, BackupType::Incremental);
        let m = &snap2.summary;
        assert_eq!(
            m.bytes_read, expect_read,
            "incremental backup must read exactly the files whose stat changed: {m:?}"
        );
        assert_eq!(
            m.files_new + m.files_changed + m.files_unmodified,
            src.files.len() as u64,
            "file counts: {m:?}"
        );
        let total2: usize = src
            .model
            .values()
            .map(|e| {
                if let EntryState::File { content, .. } = e {
                    content.len()
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(m.bytes_total, total2 as u64, "bytes_total: {m:?}");

        restore_and_compare(&repo, &snap2, &src, true, "snapshot 2").await;
        let src1 = Source {
            root: src.root.clone(),
            model: model1,
            dirs: Vec::new(),
            files: Vec::new(),
        };
        restore_and_compare(
            &repo,
            &snap1,
            &src1,
            true,
            "snapshot 1 after the incremental backup",
        )
        .await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn backup_restore_roundtrip(case in case()) {
        run_case(case);
    }
}

/// One fixed case, so every run covers each kind of modification at least once.
#[test]
fn fixed_case_with_every_modification() {
    let p = Pick::nth;
    let f = |dir: Pick, name: &[u8], content: Content, mode: u32| FileSpec {
        dir,
        name: name.to_vec(),
        content,
        mode,
    };
    let case = Case {
        dirs: vec![
            DirSpec {
                parent: p(0, 1),
                name: b"sub".to_vec(),
                mode: 0o755,
            },
            DirSpec {
                parent: p(1, 2),
                name: b"ro \xff\xfe".to_vec(),
                mode: 0o555,
            },
        ],
        // Directories: "" (root), "sub", "sub/ro \xff\xfe".
        files: vec![
            f(
                p(0, 3),
                b"big",
                Content::Random {
                    len: 290_000,
                    seed: 1,
                },
                0o644,
            ),
            f(p(0, 3), b"empty", Content::Zeros { len: 0 }, 0o600),
            f(
                p(1, 3),
                b"text\nname",
                Content::Text { len: 100_000 },
                0o4755,
            ),
            f(
                p(2, 3),
                b"sparse",
                Content::Sparse {
                    len: 200_000,
                    at: p(1, 3),
                    seed: 2,
                },
                0o640,
            ),
            f(p(2, 3), b"copy", Content::SameAs(p(0, 4)), 0o000),
            f(
                p(0, 3),
                b"flip-me",
                Content::Random {
                    len: 50_000,
                    seed: 3,
                },
                0o644,
            ),
            f(
                p(0, 3),
                b"untouched",
                Content::Random {
                    len: 120_000,
                    seed: 4,
                },
                0o644,
            ),
            f(
                p(1, 3),
                b"chmod-me",
                Content::Random {
                    len: 10_000,
                    seed: 6,
                },
                0o644,
            ),
            f(
                p(1, 3),
                b"rewrite-me",
                Content::Random {
                    len: 10_000,
                    seed: 7,
                },
                0o644,
            ),
        ],
        // Files in order: big, empty, text\nname, sparse, copy, flip-me, untouched, chmod-me,
        // rewrite-me (9). Later indices refer to the list as it is at that point.
        changes: vec![
            (p(0, 9), Change::Append { len: 5000, seed: 9 }),
            (p(5, 9), Change::FlipKeepMtime(p(1, 2))),
            (p(2, 9), Change::Truncate(p(1, 4))),
            (p(7, 9), Change::Chmod(0o600)),
            (
                p(8, 9),
                Change::Rewrite(Content::Random {
                    len: 10_000,
                    seed: 8,
                }),
            ),
            (p(4, 9), Change::Delete),
        ],
        new_files: vec![f(
            p(1, 3),
            b"new",
            Content::Random {
                len: 30_000,
                seed: 5,
            },
            0o644,
        )],
    };
    run_case(case);
}
