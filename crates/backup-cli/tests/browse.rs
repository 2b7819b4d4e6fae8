//! Browsing through the CLI: `ls`, `diff`, `restore --format tar`, `status` and the filters
//! of `list`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// A small source tree and two snapshots of it: between them `added.txt` was added,
/// `removed.txt` removed and `modified.txt` changed; `same.txt` and `sub/` did not change.
struct TwoSnapshots {
    _tmp: tempfile::TempDir,
    repo: Repo,
    src: PathBuf,
    a: BackupReport,
    b: BackupReport,
}

fn two_snapshots() -> TwoSnapshots {
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    mkdirs(&src.join("sub/deeper"));
    write_file(&src.join("same.txt"), b"unchanged\n");
    write_file(&src.join("modified.txt"), b"version one\n");
    write_file(&src.join("removed.txt"), b"going away\n");
    write_file(
        &src.join("sub/nested.txt"),
        &b"nested file, compressible ".repeat(2000),
    );
    write_file(&src.join("sub/deeper/leaf"), b"leaf\n");
    write_random_file(&src.join("sub/random.bin"), 70_000, &mut Rng::unique());
    chmod(&src.join("sub/deeper/leaf"), 0o600);
    chmod(&src.join("same.txt"), 0o4755);
    symlink("sub/nested.txt", &src.join("link"));
    let a = repo.backup_ok(&[&src], &[]);

    write_file(&src.join("modified.txt"), b"version two, longer\n");
    fs::remove_file(src.join("removed.txt")).unwrap();
    write_file(&src.join("added.txt"), b"new here\n");
    let b = repo.backup_ok(&[&src], &[]);
    TwoSnapshots {
        _tmp: tmp,
        repo,
        src,
        a,
        b,
    }
}

fn lines(run: &Run) -> Vec<String> {
    run.stdout_str().lines().map(str::to_string).collect()
}

fn abs(p: &Path) -> String {
    p.to_str().expect("utf-8 test path").to_string()
}

#[test]
fn ls_lists_exactly_the_snapshot() {
    let t = two_snapshots();
    let run = t.repo.run(["ls", t.a.id.as_str()]);
    run.expect_success();
    let listed: BTreeSet<String> = lines(&run).into_iter().collect();
    // Everything below the source is listed, with absolute paths ...
    let mut want: BTreeSet<String> = walk(&t.src).iter().map(|p| abs(p)).collect();
    want.insert(abs(&t.src.join("removed.txt")));
    want.remove(&abs(&t.src.join("added.txt")));
    let below: BTreeSet<String> = listed
        .iter()
        .filter(|l| l.starts_with(&format!("{}/", abs(&t.src))))
        .cloned()
        .collect();
    assert_eq!(
        below,
        want,
        "ls of snapshot A below the source\n{}",
        run.describe()
    );
    // ... and above it only the source itself and its parent directories.
    for l in listed.difference(&below) {
        assert!(
            t.src.starts_with(l),
            "ls lists {l:?}, which is neither the source nor one of its parents\n{}",
            run.describe()
        );
    }
    assert!(listed.contains(&abs(&t.src)), "{}", run.describe());

    // --no-recursive: just the direct children.
    let run = t.repo.run(["ls", "latest", &abs(&t.src), "--no-recursive"]);
    run.expect_success();
    let got: BTreeSet<String> = lines(&run).into_iter().collect();
    let want: BTreeSet<String> = ["added.txt", "link", "modified.txt", "same.txt", "sub"]
        .iter()
        .map(|n| abs(&t.src.join(n)))
        .collect();
    assert_eq!(got, want, "{}", run.describe());

    // A single file lists itself.
    let run = t
        .repo
        .run(["ls", "latest", &abs(&t.src.join("sub/deeper/leaf"))]);
    run.expect_success();
    assert_eq!(lines(&run), vec![abs(&t.src.join("sub/deeper/leaf"))]);

    // --json carries type, mode and size.
    let run = t.repo.run(["ls", "latest", &abs(&t.src), "--json"]);
    run.expect_success();
    let entries: BTreeMap<String, Value> = run
        .json()
        .as_array()
        .expect("ls --json array")
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    let e = |rel: &str| {
        entries
            .get(&abs(&t.src.join(rel)))
            .unwrap_or_else(|| panic!("{rel} missing\n{}", run.describe()))
    };
    assert_eq!(e("sub")["type"], "dir");
    assert_eq!(e("link")["type"], "symlink");
    assert_eq!(e("link")["link_target"], "sub/nested.txt");
    assert_eq!(e("sub/random.bin")["type"], "file");
    assert_eq!(e("sub/random.bin")["size"], 70_000);
    assert_eq!(e("same.txt")["mode"], 0o4755);
    assert_eq!(e("sub/deeper/leaf")["mode"], 0o600);
    assert_eq!(entries.len(), walk(&t.src).len(), "{}", run.describe());

    // A path that is not in the snapshot.
    t.repo
        .run(["ls", "latest", &abs(&t.src.join("nope"))])
        .expect_code(1);
}

#[test]
fn diff_shows_added_removed_modified() {
    let t = two_snapshots();
    let run = t.repo.run(["diff", t.a.id.as_str(), t.b.id.as_str()]);
    run.expect_success();
    let mut by_change: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all = lines(&run);
    let (summary, changes) = all.split_last().expect("diff output");
    for l in changes {
        let (c, p) = l
            .split_once("    ")
            .unwrap_or_else(|| panic!("odd diff line {l:?}\n{}", run.describe()));
        by_change
            .entry(c.to_string())
            .or_default()
            .insert(p.to_string());
    }
    let one = |rel: &str| BTreeSet::from([abs(&t.src.join(rel))]);
    assert_eq!(
        by_change.get("+"),
        Some(&one("added.txt")),
        "added\n{}",
        run.describe()
    );
    assert_eq!(
        by_change.get("-"),
        Some(&one("removed.txt")),
        "removed\n{}",
        run.describe()
    );
    assert_eq!(
        by_change.get("M"),
        Some(&one("modified.txt")),
        "modified\n{}",
        run.describe()
    );
    assert_eq!(by_change.get("T"), None, "type changes\n{}", run.describe());
    // Metadata-only changes: at most the source directory (its mtime changed) and its
    // parents (other tests create files in /tmp meanwhile).
    for p in by_change.get("U").into_iter().flatten() {
        assert!(
            t.src.starts_with(p),
            "unexpected metadata change of {p}\n{}",
            run.describe()
        );
    }
    assert!(
        summary.starts_with("1 added, 1 removed, 1 modified"),
        "summary line {summary:?}\n{}",
        run.describe()
    );
    for unchanged in ["same.txt", "sub", "link", "sub/nested.txt"] {
        assert!(
            !run.stdout_str().contains(&abs(&t.src.join(unchanged))),
            "{unchanged} listed\n{}",
            run.describe()
        );
    }

    // Reverse direction swaps + and -.
    let run = t
        .repo
        .run(["diff", t.b.id.as_str(), t.a.id.as_str(), "--json"]);
    run.expect_success();
    let d: BTreeSet<(String, String)> = run
        .json()
        .as_array()
        .expect("diff --json array")
        .iter()
        .map(|e| {
            (
                e["change"].as_str().unwrap().to_string(),
                e["path"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(c, _)| c != "U")
        .collect();
    let want = BTreeSet::from([
        ("-".to_string(), abs(&t.src.join("added.txt"))),
        ("+".to_string(), abs(&t.src.join("removed.txt"))),
        ("M".to_string(), abs(&t.src.join("modified.txt"))),
    ]);
    assert_eq!(d, want, "{}", run.describe());

    // A snapshot compared with itself: no changes.
    let run = t
        .repo
        .run(["diff", t.b.id.as_str(), t.b.id.as_str(), "--json"]);
    run.expect_success();
    assert_eq!(run.json(), Value::Array(vec![]), "{}", run.describe());
}

/// Reads a tar stream: relative path → (entry type, mode, content or link target).
fn read_tar(bytes: &[u8]) -> BTreeMap<PathBuf, (tar::EntryType, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let path = e.path().expect("entry path").into_owned();
        let kind = e.header().entry_type();
        let mode = e.header().mode().expect("entry mode");
        let data = if kind.is_symlink() || kind.is_hard_link() {
            e.link_name_bytes().expect("link name").into_owned()
        } else {
            let mut v = Vec::new();
            e.read_to_end(&mut v).expect("entry data");
            v
        };
        assert!(
            out.insert(path.clone(), (kind, mode, data)).is_none(),
            "{path:?} twice in the tar stream"
        );
    }
    out
}

/// What `below` (and everything under it) should look like in a tar stream whose names are
/// relative to the snapshot root.
fn expected_tar(below: &Path) -> BTreeMap<PathBuf, (tar::EntryType, u32, Vec<u8>)> {
    let mut want = BTreeMap::new();
    let mut paths = walk(below);
    paths.push(below.to_path_buf());
    for p in paths {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix("/").unwrap().to_path_buf();
        let mode = md.mode() & 0o7777;
        let v = if md.is_dir() {
            (tar::EntryType::Directory, mode, Vec::new())
        } else if md.file_type().is_symlink() {
            (
                tar::EntryType::Symlink,
                mode,
                fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
            )
        } else {
            (tar::EntryType::Regular, mode, fs::read(&p).unwrap())
        };
        want.insert(rel, v);
    }
    want
}

#[test]
fn restore_format_tar_streams_the_snapshot() {
    let t = two_snapshots();
    let run = t.repo.run(["restore", t.b.id.as_str(), "--format", "tar"]);
    run.expect_success();
    let got = read_tar(&run.stdout);
    let want = expected_tar(&t.src);
    // Entries below (and including) the source match exactly; above it only its parents.
    let src_rel = t.src.strip_prefix("/").unwrap();
    for (p, (kind, mode, data)) in &got {
        if p.starts_with(src_rel) {
            continue;
        }
        assert!(
            src_rel.starts_with(p),
            "tar has {p:?}, which is not part of the source"
        );
        assert!(
            kind.is_dir() && data.is_empty(),
            "{p:?} is a {kind:?} (mode {mode:o})"
        );
    }
    let below: BTreeMap<_, _> = got
        .into_iter()
        .filter(|(p, _)| p.starts_with(src_rel))
        .collect();
    let kinds = |m: &BTreeMap<PathBuf, (tar::EntryType, u32, Vec<u8>)>| -> Vec<(PathBuf, String, u32, usize)> {
        m.iter().map(|(p, (k, mode, d))| (p.clone(), format!("{k:?}"), *mode & 0o7777, d.len())).collect()
    };
    assert_eq!(
        kinds(&below),
        kinds(&want),
        "tar entries (path, type, mode, length)"
    );
    for (p, (_, _, data)) in &want {
        assert!(
            below[p].2 == *data,
            "content of {p:?} differs in the tar stream"
        );
    }
    assert!(!below.contains_key(&src_rel.join("removed.txt")));

    // The system tar accepts the stream too.
    let mut child = std::process::Command::new("tar")
        .arg("-tf")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run tar");
    let mut stdin = child.stdin.take().unwrap();
    let bytes = run.stdout.clone();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "tar -t failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.trim_end_matches('/') == src_rel.join("sub/deeper/leaf").to_str().unwrap()),
        "tar -t: {listed}"
    );

    // --include narrows the stream to one subtree.
    let sub = t.src.join("sub");
    let run = t.repo.run([
        OsString::from("restore"),
        "latest".into(),
        "--format".into(),
        "tar".into(),
        "--include".into(),
        sub.clone().into(),
    ]);
    run.expect_success();
    let got = read_tar(&run.stdout);
    let want = expected_tar(&sub);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "tar --include sub"
    );
    for (p, v) in &want {
        assert_eq!(got[p].2, v.2, "content of {p:?}");
    }
}

#[test]
fn status_reports_counts_and_compression() {
    let doc = Path::new("/usr/share/doc");
    assert!(doc.is_dir(), "test needs {doc:?}");
    let repo = Repo::init();
    let run = repo.run(["status", "--json"]);
    run.expect_success();
    let s = run.json();
    assert_eq!(s["snapshots"], 0, "{}", run.describe());
    assert!(s["last_snapshot"].is_null(), "{}", run.describe());

    let first = repo.backup_ok(&[doc], &[]);
    let run = repo.run(["status", "--json"]);
    run.expect_success();
    let s = run.json();
    assert_eq!(s["snapshots"], 1, "{}", run.describe());
    assert_eq!(s["last_snapshot"], first.id.as_str(), "{}", run.describe());
    assert_eq!(s["last_snapshot_partial"], false, "{}", run.describe());
    let ratio = s["compression_ratio"].as_f64().expect("compression_ratio");
    assert!(
        ratio > 1.0,
        "compression ratio of /usr/share/doc should exceed 1: {ratio}\n{}",
        run.describe()
    );
    let raw = s["unique_raw_bytes"].as_u64().unwrap();
    let stored = s["unique_stored_bytes"].as_u64().unwrap();
    assert!(
        (ratio - raw as f64 / stored as f64).abs() < 1e-9,
        "compression_ratio is not raw/stored\n{}",
        run.describe()
    );
    assert_eq!(
        s["logical_bytes"],
        first.summary.bytes_total,
        "{}",
        run.describe()
    );
    // total_size is (about) everything stored; exact equality is checked by the ignored
    // test below (the engine leaves out `config`).
    let total = s["total_size"].as_u64().unwrap();
    let on_disk = repo.size_excluding_locks();
    assert!(
        total <= on_disk && on_disk - total <= 4096,
        "total_size {total} vs {on_disk} bytes on disk\n{}",
        run.describe()
    );
    assert!(
        s["packs"].as_u64().unwrap() as usize == repo.pack_files().len(),
        "{}",
        run.describe()
    );
    let dedup1 = s["dedup_ratio"].as_f64().unwrap();

    // A second, unchanged snapshot doubles the logical size, adds (almost) nothing.
    let second = repo.backup_ok(&[doc], &[]);
    let run = repo.run(["status", "--json"]);
    run.expect_success();
    let s2 = run.json();
    assert_eq!(s2["snapshots"], 2, "{}", run.describe());
    assert_eq!(
        s2["last_snapshot"],
        second.id.as_str(),
        "{}",
        run.describe()
    );
    assert_eq!(
        s2["logical_bytes"],
        2 * first.summary.bytes_total,
        "{}",
        run.describe()
    );
    assert_eq!(
        s2["unique_raw_bytes"],
        raw,
        "an unchanged second backup added data\n{}",
        run.describe()
    );
    let dedup2 = s2["dedup_ratio"].as_f64().unwrap();
    assert!(
        (dedup2 - 2.0 * dedup1).abs() < 1e-6,
        "dedup ratio {dedup1} -> {dedup2}\n{}",
        run.describe()
    );

    // The human form shows the same numbers.
    let run = repo.run(["status"]);
    run.expect_success();
    assert!(
        run.stdout_str().contains(&format!(
            "{:.2}x",
            s2["compression_ratio"].as_f64().unwrap()
        )),
        "{}",
        run.describe()
    );
}

#[test]
fn list_filters() {
    let t = two_snapshots();
    // A third snapshot of the same source, forced full; and one of another source.
    let c = t.repo.backup_ok(&[&t.src], &["--type", "full"]);
    let other_tmp = tempdir();
    let other = other_tmp.path().join("other");
    mkdirs(&other);
    write_file(&other.join("x"), b"x\n");
    let d = t.repo.backup_ok(&[&other], &[]);

    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["list", "--json"];
        a.extend_from_slice(args);
        let run = t.repo.run(&a);
        run.expect_success();
        run.json()
            .as_array()
            .unwrap_or_else(|| panic!("not an array\n{}", run.describe()))
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b, c, d) = (t.a.id.clone(), t.b.id.clone(), c.id, d.id);
    assert_eq!(ids(&[]), vec![a.clone(), b.clone(), c.clone(), d.clone()]);
    assert_eq!(
        ids(&[
            "--since",
            "2000-01-01",
            "--type",
            "full",
            "--target",
            "files"
        ]),
        vec![a.clone(), c.clone(), d.clone()]
    );
    assert_eq!(ids(&["--type", "incremental"]), vec![b.clone()]);
    let src_target = format!("files:{}", abs(&t.src));
    assert_eq!(
        ids(&["--target", &src_target]),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        ids(&["--target", &src_target, "--type", "full"]),
        vec![a.clone(), c.clone()]
    );
    assert_eq!(
        ids(&["--target", &format!("files:{}", abs(&other))]),
        vec![d.clone()]
    );
    assert_eq!(ids(&["--target", "postgres"]), Vec::<String>::new());
    assert_eq!(ids(&["--since", "2999-01-01"]), Vec::<String>::new());
    assert_eq!(ids(&["--since", "2000-01-01"]).len(), 4);

    // Human table with the same filter.
    let run = t.repo.run([
        "list",
        "--since",
        "2000-01-01",
        "--type",
        "full",
        "--target",
        "files",
    ]);
    run.expect_success();
    let out = run.stdout_str();
    assert!(out.contains("3 snapshot(s)"), "{}", run.describe());
    assert!(
        !out.contains(&b[..8]),
        "the incremental snapshot is listed\n{}",
        run.describe()
    );
    assert!(
        out.contains(&a[..8]) && out.contains(&c[..8]) && out.contains(&d[..8]),
        "{}",
        run.describe()
    );

    // Bad filter values are usage errors.
    t.repo.run(["list", "--since", "yesterday"]).expect_code(1);
    t.repo.run(["list", "--type", "weekly"]).expect_code(1);
}

/// `status.total_size` counts every object, the `config` object included.
#[test]
fn status_total_size_counts_every_object() {
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    mkdirs(&src);
    build_random_tree(&src, 2, 10_000);
    repo.backup_ok(&[&src], &[]);
    let run = repo.run(["status", "--json"]);
    run.expect_success();
    assert_eq!(
        run.json()["total_size"].as_u64().unwrap(),
        repo.size_excluding_locks(),
        "total_size vs the sum of the repository's files (config, keys, data, index, snapshots)\n{}",
        run.describe()
    );
}
