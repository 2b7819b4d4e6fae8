//! A hostile repository must not make restore write outside its destination.
//!
//! Each test crafts trees by hand through the public packer API (`Tree::decode` validation is
//! on the read side, so nothing stops a writer from storing anything), points a snapshot at
//! them and restores it into a fresh destination inside a "jail":
//!
//! ```text
//! TMP/repo                      the repository
//! TMP/outside                   must stay empty
//! TMP/victim/target.txt         must keep its bytes
//! TMP/jail/<label>/dest         the only place restore may write
//! ```
//!
//! After every restore the whole of TMP is walked: no entry may exist except the repository,
//! the fixtures above and what is below a destination, and no payload file may exist outside
//! a destination. Every hostile layout is also built once with harmless names (a control) that
//! must restore completely, so a rejection is proven to come from the hostile names and not
//! from a broken fixture.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::engine::check::{check, CheckOptions};
use backup_core::engine::restore::{restore, RestoreOptions, RestoreSummary};
use backup_core::progress::NoProgress;
use backup_core::repository::tree::Node;
use backup_core::{Id, Repository, Snapshot};
use support::*;

const PAYLOAD: &[u8] = b"PWNED: written by a hostile repository\n";
const VICTIM: &[u8] = b"original victim content\n";

struct Jail {
    tmp: tempfile::TempDir,
    repo_dir: PathBuf,
    outside: PathBuf,
    victim_dir: PathBuf,
    victim: PathBuf,
    jail: PathBuf,
    dests: std::cell::RefCell<Vec<PathBuf>>,
}

impl Jail {
    fn new() -> Jail {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let outside = root.join("outside");
        let victim_dir = root.join("victim");
        let jail = root.join("jail");
        fs::create_dir(&outside).unwrap();
        fs::create_dir(&victim_dir).unwrap();
        fs::create_dir(&jail).unwrap();
        let victim = victim_dir.join("target.txt");
        fs::write(&victim, VICTIM).unwrap();
        Jail {
            repo_dir: root.join("repo"),
            tmp,
            outside,
            victim_dir,
            victim,
            jail,
            dests: Default::default(),
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A destination that does not exist yet, three levels below TMP so that up to three `..`
    /// components still land inside TMP (where they are detected).
    fn dest(&self, label: &str) -> PathBuf {
        let d = self.jail.join(label).join("dest");
        fs::create_dir_all(d.parent().unwrap()).unwrap();
        self.dests.borrow_mut().push(d.clone());
        d
    }

    /// Nothing exists under TMP but the fixtures and what is inside a destination; `outside`
    /// is empty; the victim file is intact.
    #[track_caller]
    fn assert_nothing_escaped(&self, when: &str) {
        let dests = self.dests.borrow();
        let mut bad = Vec::new();
        for p in walk(self.root()) {
            let allowed = p.starts_with(&self.repo_dir)
                || p == self.outside
                || p == self.victim_dir
                || p == self.victim
                || p == self.jail
                || dests
                    .iter()
                    .any(|d| p.starts_with(d) || p == d.parent().unwrap());
            if !allowed {
                bad.push(p);
            }
        }
        assert!(
            bad.is_empty(),
            "{when}: restore created entries outside its destination: {bad:#?}"
        );
        let outside: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            outside.is_empty(),
            "{when}: restore wrote into the outside directory: {outside:?}"
        );
        assert_eq!(
            fs::read(&self.victim).unwrap(),
            VICTIM,
            "{when}: the victim file outside the destination was changed"
        );
        assert!(
            fs::symlink_metadata(&self.victim)
                .unwrap()
                .file_type()
                .is_file(),
            "{when}: the victim file was replaced"
        );
        let escaped: Vec<PathBuf> = paths_named(self.root(), b"pwned")
            .into_iter()
            .filter(|p| !dests.iter().any(|d| p.starts_with(d)))
            .collect();
        assert!(
            escaped.is_empty(),
            "{when}: payload files outside every destination: {escaped:?}"
        );
    }
}

/// Sorts nodes by name (stable), as a well-formed tree would be.
fn sorted(mut nodes: Vec<Node>) -> Vec<Node> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

fn bytes_of(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

async fn restore_into(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    dest: &Path,
    overwrite: bool,
) -> backup_core::Result<RestoreSummary> {
    let mut opts = RestoreOptions::new(dest);
    opts.overwrite = overwrite;
    restore(repo, snap, &opts, &NoProgress).await
}

/// The restore of a hostile snapshot must fail, as a whole or per path.
#[track_caller]
fn assert_refused(r: &backup_core::Result<RestoreSummary>, what: &str) {
    match r {
        Err(_) => {}
        Ok(s) => assert!(
            !s.errors.is_empty(),
            "{what}: restore of a hostile snapshot reported success: {s:?}"
        ),
    }
}

/// The restore of a control snapshot must succeed completely.
#[track_caller]
fn assert_clean(r: &backup_core::Result<RestoreSummary>, what: &str) -> RestoreSummary {
    match r {
        Err(e) => panic!("{what}: control restore failed (the fixture is broken): {e}"),
        Ok(s) => {
            assert!(
                s.errors.is_empty(),
                "{what}: control restore reported errors: {:?}",
                s.errors
            );
            s.clone()
        }
    }
}

/// `check` must flag the snapshot's trees as bad.
async fn assert_check_flags(repo: &Arc<Repository>, snap: &Snapshot, what: &str) {
    let report = check(repo, &CheckOptions::default(), &NoProgress)
        .await
        .expect("check runs");
    let short = snap.id.short();
    assert!(
        report.errors.iter().any(|p| p.snapshots.contains(&short)),
        "{what}: check does not report snapshot {short}: {:?}",
        report.errors
    );
}

/// root → `names[0]` → `names[1]` → `names[2]` → `outside` → pwned-4, with a payload file at
/// every level. With `..` as names, a naive restore into TMP/jail/L/dest writes
/// TMP/jail/L/pwned-1, TMP/jail/pwned-2, TMP/pwned-3 and TMP/outside/pwned-4.
async fn chain_snapshot(repo: &Arc<Repository>, names: [&[u8]; 3], label: &str) -> Snapshot {
    let raw = RawRepo::start(repo).await;
    let blob = raw.data(PAYLOAD).await;
    let f = |n: &[u8]| file_node(n, vec![blob], PAYLOAD.len() as u64);
    let t4 = raw.tree(vec![f(b"pwned-4")]).await;
    let t3 = raw
        .tree(sorted(vec![dir_node(b"outside", t4), f(b"pwned-3")]))
        .await;
    let t2 = raw
        .tree(sorted(vec![dir_node(names[2], t3), f(b"pwned-2")]))
        .await;
    let t1 = raw
        .tree(sorted(vec![dir_node(names[1], t2), f(b"pwned-1")]))
        .await;
    let root = raw.tree(vec![dir_node(names[0], t1)]).await;
    let repo = raw.finish().await;
    save_snapshot(&repo, root, label).await
}

#[test]
fn dotdot_names_cannot_climb_out() {
    runtime().block_on(async {
        let jail = Jail::new();
        let repo = init_repo(&jail.repo_dir).await;

        let control = chain_snapshot(&repo, [b"up1", b"up2", b"up3"], "control").await;
        let dest = jail.dest("control");
        let s = assert_clean(
            &restore_into(&repo, &control, &dest, false).await,
            "chain with safe names",
        );
        assert_eq!(s.files, 4, "control restore: {s:?}");
        assert_eq!(
            fs::read(dest.join("up1/up2/up3/outside/pwned-4")).unwrap(),
            PAYLOAD
        );
        jail.assert_nothing_escaped("control chain");

        let hostile = chain_snapshot(&repo, [b"..", b"..", b".."], "dotdot").await;
        let dest = jail.dest("dotdot");
        let r = restore_into(&repo, &hostile, &dest, false).await;
        jail.assert_nothing_escaped("`..` chain");
        assert_refused(&r, "`..` chain");
        assert_check_flags(&repo, &hostile, "`..` chain").await;

        // `..` only below a normal directory (one level up stays inside dest; two levels do not).
        let deep = chain_snapshot(&repo, [b"a", b"..", b".."], "dotdot-deep").await;
        let dest = jail.dest("dotdot-deep");
        let r = restore_into(&repo, &deep, &dest, false).await;
        jail.assert_nothing_escaped("`a/../..` chain");
        assert_refused(&r, "`a/../..` chain");

        // A regular file called `..` and one called `.`.
        for (i, name) in [&b".."[..], b"."].into_iter().enumerate() {
            let raw = RawRepo::start(&repo).await;
            let blob = raw.data(PAYLOAD).await;
            let root = raw
                .tree(vec![file_node(name, vec![blob], PAYLOAD.len() as u64)])
                .await;
            let repo = raw.finish().await;
            let snap = save_snapshot(&repo, root, &format!("dotfile{i}")).await;
            let dest = jail.dest(&format!("dotfile{i}"));
            let r = restore_into(&repo, &snap, &dest, false).await;
            jail.assert_nothing_escaped("file named `..`/`.`");
            assert_refused(&r, "file named `..`/`.`");
        }
    });
}

/// A tree whose entry names are `dir_name` (a directory holding pwned-dir) and `file_name`
/// (a payload file).
async fn named_snapshot(
    repo: &Arc<Repository>,
    dir_name: &[u8],
    file_name: &[u8],
    label: &str,
) -> Snapshot {
    let raw = RawRepo::start(repo).await;
    let blob = raw.data(PAYLOAD).await;
    let inner = raw
        .tree(vec![file_node(
            b"pwned-dir",
            vec![blob],
            PAYLOAD.len() as u64,
        )])
        .await;
    let root = raw
        .tree(sorted(vec![
            dir_node(dir_name, inner),
            file_node(file_name, vec![blob], PAYLOAD.len() as u64),
        ]))
        .await;
    let repo = raw.finish().await;
    save_snapshot(&repo, root, label).await
}

#[test]
fn absolute_and_slashed_names_are_refused() {
    runtime().block_on(async {
        let jail = Jail::new();
        let repo = init_repo(&jail.repo_dir).await;

        let control = named_snapshot(&repo, b"abs-dir", b"abs-file-pwned", "control").await;
        let dest = jail.dest("control");
        assert_clean(
            &restore_into(&repo, &control, &dest, false).await,
            "safe names",
        );
        assert_eq!(fs::read(dest.join("abs-dir/pwned-dir")).unwrap(), PAYLOAD);
        assert_eq!(fs::read(dest.join("abs-file-pwned")).unwrap(), PAYLOAD);
        jail.assert_nothing_escaped("control");

        // Absolute names: `dest.join("/x")` is `/x`. Both point into TMP/outside.
        let abs_dir = bytes_of(&jail.outside);
        let abs_file = bytes_of(&jail.outside.join("abs-file-pwned"));
        let abs_victim = bytes_of(&jail.victim);
        let rel_up = b"../../../outside".to_vec();
        let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
            ("absolute", abs_dir.clone(), abs_file.clone()),
            ("absolute-victim", b"plain-dir".to_vec(), abs_victim),
            ("slash", b"a/b".to_vec(), b"c/pwned-file".to_vec()),
            (
                "relative-up",
                rel_up.clone(),
                b"../../../outside/pwned-file".to_vec(),
            ),
            ("trailing-slash", b"dir/".to_vec(), b"pwned-file/".to_vec()),
            ("empty", b"".to_vec(), b"pwned-file".to_vec()),
        ];
        for (label, dir_name, file_name) in cases {
            let snap = named_snapshot(&repo, &dir_name, &file_name, label).await;
            let dest = jail.dest(label);
            let r = restore_into(&repo, &snap, &dest, false).await;
            jail.assert_nothing_escaped(label);
            assert_refused(&r, label);
            assert_check_flags(&repo, &snap, label).await;
        }
    });
}

/// A tree with a symlink `x` → TMP/outside and a directory `x` holding pwned-dup, in the given
/// order (names equal, so the tree is "sorted" but not unique).
async fn duplicate_snapshot(
    repo: &Arc<Repository>,
    outside: &Path,
    link_name: &[u8],
    dir_name: &[u8],
    link_first: bool,
    label: &str,
) -> Snapshot {
    let raw = RawRepo::start(repo).await;
    let blob = raw.data(PAYLOAD).await;
    let inner = raw
        .tree(vec![file_node(
            b"pwned-dup",
            vec![blob],
            PAYLOAD.len() as u64,
        )])
        .await;
    let link = symlink_node(link_name, &bytes_of(outside));
    let dir = dir_node(dir_name, inner);
    let nodes = if link_first {
        vec![link, dir]
    } else {
        vec![dir, link]
    };
    let root = raw.tree(nodes).await;
    let repo = raw.finish().await;
    save_snapshot(&repo, root, label).await
}

#[test]
fn duplicate_names_cannot_route_through_a_symlink() {
    runtime().block_on(async {
        let jail = Jail::new();
        let repo = init_repo(&jail.repo_dir).await;

        let control = duplicate_snapshot(&repo, &jail.outside, b"x", b"y", true, "control").await;
        let dest = jail.dest("control");
        assert_clean(
            &restore_into(&repo, &control, &dest, false).await,
            "symlink x and dir y",
        );
        assert_eq!(fs::read_link(dest.join("x")).unwrap(), jail.outside);
        assert_eq!(fs::read(dest.join("y/pwned-dup")).unwrap(), PAYLOAD);
        jail.assert_nothing_escaped("control");

        for link_first in [true, false] {
            let label = if link_first {
                "dup-link-first"
            } else {
                "dup-dir-first"
            };
            let snap =
                duplicate_snapshot(&repo, &jail.outside, b"x", b"x", link_first, label).await;
            let dest = jail.dest(label);
            let r = restore_into(&repo, &snap, &dest, false).await;
            jail.assert_nothing_escaped(label);
            assert_refused(&r, label);
            assert_check_flags(&repo, &snap, label).await;
        }
    });
}

#[test]
fn symlink_then_directory_across_snapshots() {
    runtime().block_on(async {
        let jail = Jail::new();
        let repo = init_repo(&jail.repo_dir).await;

        // Snapshot A: `l` → TMP/outside, `f` → TMP/victim/target.txt.
        let raw = RawRepo::start(&repo).await;
        let root_a = raw
            .tree(vec![
                symlink_node(b"f", &bytes_of(&jail.victim)),
                symlink_node(b"l", &bytes_of(&jail.outside)),
            ])
            .await;
        // Snapshot B: `l` is a directory holding a payload, `f` is a payload file.
        let blob = raw.data(PAYLOAD).await;
        let inner = raw
            .tree(vec![file_node(
                b"pwned-l",
                vec![blob],
                PAYLOAD.len() as u64,
            )])
            .await;
        let root_b = raw
            .tree(vec![
                file_node(b"f", vec![blob], PAYLOAD.len() as u64),
                dir_node(b"l", inner),
            ])
            .await;
        let repo = raw.finish().await;
        let snap_a = save_snapshot(&repo, root_a, "a").await;
        let snap_b = save_snapshot(&repo, root_b, "b").await;

        // Each restores cleanly into a fresh destination.
        let dest_a = jail.dest("a");
        assert_clean(
            &restore_into(&repo, &snap_a, &dest_a, false).await,
            "snapshot A",
        );
        assert_eq!(fs::read_link(dest_a.join("l")).unwrap(), jail.outside);
        assert_eq!(fs::read_link(dest_a.join("f")).unwrap(), jail.victim);
        jail.assert_nothing_escaped("A into a fresh destination");
        let dest_b = jail.dest("b");
        assert_clean(
            &restore_into(&repo, &snap_b, &dest_b, false).await,
            "snapshot B",
        );
        assert_eq!(fs::read(dest_b.join("l/pwned-l")).unwrap(), PAYLOAD);
        assert_eq!(fs::read(dest_b.join("f")).unwrap(), PAYLOAD);
        jail.assert_nothing_escaped("B into a fresh destination");

        // B over A's symlinks (`--overwrite`): nothing may be written through them.
        let r = restore_into(&repo, &snap_b, &dest_a, true).await;
        jail.assert_nothing_escaped("B over A with overwrite");
        if let Ok(s) = &r {
            if s.errors.is_empty() {
                let md = fs::symlink_metadata(dest_a.join("l")).unwrap();
                assert!(
                    md.is_dir(),
                    "B over A reported success but `l` is not a real directory: {md:?}"
                );
                assert_eq!(fs::read(dest_a.join("l/pwned-l")).unwrap(), PAYLOAD);
                let md = fs::symlink_metadata(dest_a.join("f")).unwrap();
                assert!(
                    md.is_file(),
                    "B over A reported success but `f` is not a regular file: {md:?}"
                );
                assert_eq!(fs::read(dest_a.join("f")).unwrap(), PAYLOAD);
            }
        }

        // And a second time, now that `l` may be a directory: still nothing outside.
        let _ = restore_into(&repo, &snap_b, &dest_a, true).await;
        jail.assert_nothing_escaped("B over A again");

        // A over B's directory: a symlink does not replace a directory silently, and nothing
        // leaks outside either way.
        let r = restore_into(&repo, &snap_a, &dest_b, true).await;
        jail.assert_nothing_escaped("A over B with overwrite");
        if let Ok(s) = &r {
            if s.errors.is_empty() {
                assert_eq!(fs::read_link(dest_b.join("l")).unwrap(), jail.outside);
            }
        }
        // Then B over that again.
        let _ = restore_into(&repo, &snap_b, &dest_b, true).await;
        jail.assert_nothing_escaped("B over A over B");
    });
}

#[test]
fn file_with_unindexed_blob_never_appears() {
    runtime().block_on(async {
        let jail = Jail::new();
        let repo = init_repo(&jail.repo_dir).await;
        let raw = RawRepo::start(&repo).await;
        let good = vec![7u8; 10_000];
        let good_blob = raw.data(&good).await;
        let missing = Id([0x5a; 32]);
        let root = raw
            .tree(vec![
                file_node(b"a-good", vec![good_blob], good.len() as u64),
                // First blob fine (the temp file gets written), second blob unknown.
                file_node(
                    b"b-missing",
                    vec![good_blob, missing],
                    good.len() as u64 + 100,
                ),
                file_node(b"c-only-missing", vec![missing], 100),
            ])
            .await;
        let repo = raw.finish().await;
        assert!(
            !repo.index().await.unwrap().contains(&missing),
            "fixture: the blob must not be indexed"
        );
        let snap = save_snapshot(&repo, root, "missing").await;

        let dest = jail.dest("missing");
        let s = match restore_into(&repo, &snap, &dest, false).await {
            Ok(s) => s,
            Err(e) => {
                panic!("restore should report the broken file in its summary, not abort: {e}")
            }
        };
        jail.assert_nothing_escaped("missing blob");
        let failed: Vec<&str> = s.errors.iter().map(|e| e.path.as_str()).collect();
        for name in ["b-missing", "c-only-missing"] {
            assert!(
                failed.iter().any(|p| p.ends_with(name)),
                "{name} is not reported as failed: {:?}",
                s.errors
            );
            assert!(
                fs::symlink_metadata(dest.join(name)).is_err(),
                "{name} appeared under its final name although a blob is missing"
            );
        }
        assert!(
            !failed.iter().any(|p| p.ends_with("a-good")),
            "a-good reported as failed: {:?}",
            s.errors
        );
        assert_eq!(fs::read(dest.join("a-good")).unwrap(), good);
        let leftovers = paths_named(&dest, b".dbm-restore-");
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );
        let names: Vec<_> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("a-good")],
            "destination holds more than the good file"
        );
        assert!(
            s.clone().into_result().is_err(),
            "into_result of an incomplete restore must be an error"
        );

        // check names the missing blob and the snapshot.
        let report = check(&repo, &CheckOptions::default(), &NoProgress)
            .await
            .unwrap();
        assert!(
            report
                .errors
                .iter()
                .any(|p| p.kind == "missing-blob" && p.snapshots.contains(&snap.id.short())),
            "check does not report the missing blob: {:?}",
            report.errors
        );
    });
}
