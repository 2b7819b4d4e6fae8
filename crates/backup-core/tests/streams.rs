//! Streamed entries (`Source::Stream`): the engine path under the PostgreSQL dump and bucket
//! object targets. A custom `Target` emits a directory with streams from child processes and
//! in-memory readers; the tests check byte-exact restore, failure semantics (a failed stream
//! leaves no snapshot), change-token reuse, `Target::finish` facts, and that one snapshot
//! holds one kind.

mod support;

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use backup_core::engine::backup::{backup, backup_target, BackupOptions};
use backup_core::engine::check::{check, CheckOptions};
use backup_core::engine::restore::{restore, RestoreOptions};
use backup_core::progress::NoProgress;
use backup_core::repository::tree::{Node, NodeKind, RawName};
use backup_core::target::process::ChildReader;
use backup_core::target::{Source, StreamSource, Target, TargetSpec, WalkEvent};
use backup_core::{ErrorKind, Result};

/// Deterministic pseudo-random bytes (xorshift), so content is incompressible and repeatable.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One streamed entry of the fake target.
#[derive(Clone)]
enum Entry {
    /// In-memory bytes with an optional change token.
    Memory(Vec<u8>, Option<String>),
    /// A shell command whose stdout is the content (checked exit status).
    Shell(String),
}

struct FakeTarget {
    entries: Vec<(String, Entry)>,
    opened: Arc<AtomicUsize>,
}

impl Target for FakeTarget {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn paths(&self) -> Vec<String> {
        vec!["fake-source".into()]
    }
    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()> {
        let mut dir = Node::new(RawName(b"streams".to_vec()), NodeKind::Dir);
        dir.mode = 0o755;
        emit(WalkEvent::EnterDir(dir))?;
        let mut sorted = self.entries.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in sorted {
            let mut node = Node::new(RawName(name.into_bytes()), NodeKind::File);
            node.mode = 0o640;
            node.meta
                .insert("content-type".into(), "application/octet-stream".into());
            let opened = self.opened.clone();
            let src = match entry {
                Entry::Memory(data, version) => {
                    let mut s = StreamSource::new(move || {
                        opened.fetch_add(1, Ordering::SeqCst);
                        Ok(Box::new(Cursor::new(data)) as Box<dyn Read + Send>)
                    });
                    s.version = version;
                    s
                }
                Entry::Shell(script) => StreamSource::new(move || {
                    opened.fetch_add(1, Ordering::SeqCst);
                    let mut cmd = Command::new("sh");
                    cmd.args(["-c", &script]);
                    Ok(Box::new(ChildReader::spawn("test command", cmd)?) as Box<dyn Read + Send>)
                }),
            };
            emit(WalkEvent::Entry(node, Source::Stream(src)))?;
        }
        emit(WalkEvent::LeaveDir)
    }
    fn finish(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        Ok(BTreeMap::from([(
            "entries".to_string(),
            serde_json::json!(self.entries.len()),
        )]))
    }
}

fn fake(entries: Vec<(&str, Entry)>) -> (Arc<dyn Target>, Arc<AtomicUsize>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let t = FakeTarget {
        entries: entries
            .into_iter()
            .map(|(n, e)| (n.to_string(), e))
            .collect(),
        opened: opened.clone(),
    };
    (Arc::new(t), opened)
}

fn opts() -> BackupOptions {
    BackupOptions::new(vec![])
}

#[test]
fn streams_restore_byte_for_byte_with_meta_and_facts() {
    let rt = support::runtime();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let big = bytes(7, 3 * 1024 * 1024 + 17);
        let (target, _) = fake(vec![
            ("big.bin", Entry::Memory(big.clone(), None)),
            ("empty.bin", Entry::Memory(Vec::new(), None)),
            (
                "child.out",
                Entry::Shell("head -c 1000000 /dev/zero | tr '\\0' 'x'; exit 0".into()),
            ),
        ]);
        let snap = backup_target(&repo, target, &opts(), &NoProgress)
            .await
            .unwrap();
        assert_eq!(snap.target_kind, "fake");
        assert_eq!(snap.paths, vec!["fake-source".to_string()]);
        assert_eq!(snap.meta["entries"], serde_json::json!(3));
        assert_eq!(snap.summary.files_new, 3);
        assert_eq!(snap.summary.bytes_total, big.len() as u64 + 1_000_000);

        // Node metadata survives the round trip through the repository.
        let node = backup_core::engine::browse::find_node(
            &repo,
            &snap,
            std::path::Path::new("/streams/big.bin"),
        )
        .await
        .unwrap();
        assert_eq!(node.meta["content-type"], "application/octet-stream");
        assert_eq!(node.size, big.len() as u64);

        let dest = tmp.path().join("out");
        let mut ro = RestoreOptions::new(&dest);
        ro.verify = true;
        let r = restore(&repo, &snap, &ro, &NoProgress).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(std::fs::read(dest.join("streams/big.bin")).unwrap(), big);
        assert_eq!(std::fs::read(dest.join("streams/empty.bin")).unwrap(), b"");
        assert_eq!(
            std::fs::read(dest.join("streams/child.out")).unwrap(),
            vec![b'x'; 1_000_000]
        );
        let c = check(
            &repo,
            &CheckOptions {
                read_data: true,
                ..Default::default()
            },
            &NoProgress,
        )
        .await
        .unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
    });
}

#[test]
fn a_failing_child_fails_the_backup_and_leaves_no_snapshot() {
    let rt = support::runtime();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let (target, _) = fake(vec![
            ("a.bin", Entry::Memory(bytes(1, 200_000), None)),
            (
                "broken.dump",
                Entry::Shell(
                    "head -c 300000 /dev/urandom; echo 'database vanished' >&2; exit 1".into(),
                ),
            ),
        ]);
        let err = backup_target(&repo, target, &opts(), &NoProgress)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Target, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("/streams/broken.dump"),
            "names the entry: {msg}"
        );
        assert!(msg.contains("database vanished"), "quotes the child: {msg}");
        assert!(
            repo.snapshots().await.unwrap().is_empty(),
            "no snapshot may exist"
        );

        // A command that cannot even start fails the same way.
        let (target, _) = fake(vec![("x", Entry::Shell("exec /nonexistent/dump".into()))]);
        assert!(backup_target(&repo, target, &opts(), &NoProgress)
            .await
            .is_err());
        assert!(repo.snapshots().await.unwrap().is_empty());
    });
}

#[test]
fn change_tokens_skip_unchanged_streams() {
    let rt = support::runtime();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let a = bytes(11, 500_000);
        let b = bytes(20, 500_000);
        let (t1, opened1) = fake(vec![
            ("a", Entry::Memory(a.clone(), Some("etag-a".into()))),
            ("b", Entry::Memory(b.clone(), Some("etag-b".into()))),
        ]);
        let s1 = backup_target(&repo, t1, &opts(), &NoProgress)
            .await
            .unwrap();
        assert_eq!(opened1.load(Ordering::SeqCst), 2);

        // Same token for `a`: not opened; a new token for `b` (same size): read again.
        let b2 = bytes(14, 500_000);
        let (t2, opened2) = fake(vec![
            ("a", Entry::Memory(a.clone(), Some("etag-a".into()))),
            ("b", Entry::Memory(b2.clone(), Some("etag-b2".into()))),
        ]);
        let s2 = backup_target(&repo, t2, &opts(), &NoProgress)
            .await
            .unwrap();
        assert_eq!(s2.parent, Some(s1.id));
        assert_eq!(
            opened2.load(Ordering::SeqCst),
            1,
            "only the changed stream is opened"
        );
        assert_eq!(s2.summary.bytes_read, 500_000);
        assert_eq!(s2.summary.files_unmodified, 1);
        assert_eq!(s2.summary.files_changed, 1);

        // A full backup reads everything regardless of tokens.
        let (t3, opened3) = fake(vec![
            ("a", Entry::Memory(a.clone(), Some("etag-a".into()))),
            ("b", Entry::Memory(b2.clone(), Some("etag-b2".into()))),
        ]);
        let mut full = opts();
        full.backup_type = Some(backup_core::BackupType::Full);
        backup_target(&repo, t3, &full, &NoProgress).await.unwrap();
        assert_eq!(opened3.load(Ordering::SeqCst), 2);

        // Each snapshot restores its own bytes.
        for (snap, want_b) in [(&s1, &b), (&s2, &b2)] {
            let dest = tmp.path().join(format!("out-{}", snap.id.short()));
            let mut ro = RestoreOptions::new(&dest);
            ro.verify = true;
            let r = restore(&repo, snap, &ro, &NoProgress).await.unwrap();
            assert!(r.errors.is_empty());
            assert_eq!(std::fs::read(dest.join("streams/a")).unwrap(), a);
            assert_eq!(&std::fs::read(dest.join("streams/b")).unwrap(), want_b);
        }
    });
}

#[test]
fn one_snapshot_holds_one_kind() {
    let rt = support::runtime();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let specs: Vec<TargetSpec> =
            vec!["files:/etc".parse().unwrap(), "postgres".parse().unwrap()];
        let err = backup(&repo, &BackupOptions::new(specs), &NoProgress)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("one snapshot holds one kind"),
            "{err}"
        );
    });
}

#[test]
fn target_specs_parse_and_print() {
    for (input, shown) in [
        ("postgres", "postgres"),
        ("postgres:shop", "postgres:shop"),
        ("postgres://u@h:5432/db", "postgres://u@h:5432/db"),
        ("postgres:postgresql://h/db", "postgresql://h/db"),
        ("minio", "minio"),
        ("minio:bucket/prefix", "minio:bucket/prefix"),
    ] {
        let spec: TargetSpec = input.parse().unwrap();
        assert_eq!(spec.to_string(), shown, "{input}");
    }
    assert!("nosuch:x".parse::<TargetSpec>().is_err());
}
