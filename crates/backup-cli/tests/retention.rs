//! Retention through the CLI: `forget` (keep rules, `--dry-run`, `--retention-days`, no rule)
//! and `prune`, with the repository still checking clean and the kept snapshots restoring
//! exactly afterwards.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::*;

/// A source tree that changes between snapshots: a shared file, a per-generation random
/// file (the previous one is deleted, so its data is used by that snapshot only) and a small
/// text file rewritten every time.
struct Changing {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    refs: PathBuf,
    rng: Rng,
    generation: usize,
}

impl Changing {
    fn new() -> Changing {
        let tmp = tempdir();
        let src = tmp.path().join("src");
        let refs = tmp.path().join("refs");
        mkdirs(&src);
        mkdirs(&refs);
        let mut rng = Rng::unique();
        write_random_file(&src.join("shared.bin"), 100_000, &mut rng);
        Changing {
            _tmp: tmp,
            src,
            refs,
            rng,
            generation: 0,
        }
    }

    /// Moves to the next generation.
    fn step(&mut self) {
        if self.generation > 0 {
            std::fs::remove_file(self.src.join(format!("gen-{}.bin", self.generation - 1)))
                .unwrap();
        }
        let g = self.generation;
        write_random_file(
            &self.src.join(format!("gen-{g}.bin")),
            300_000,
            &mut self.rng,
        );
        write_file(
            &self.src.join("notes.txt"),
            format!("generation {g}\n").repeat(g + 1).as_bytes(),
        );
        self.generation += 1;
    }

    /// Backs up the current state (must be complete) and keeps a copy of it; returns the id.
    #[track_caller]
    fn snapshot(&self, repo: &Repo, extra: &[&str]) -> String {
        let r = repo.backup_ok(&[&self.src], extra);
        copy_tree(&self.src, &self.reference(&r.id));
        r.id
    }

    fn reference(&self, id: &str) -> PathBuf {
        self.refs.join(id)
    }
}

/// Restores `id` and compares it with the copy taken when it was made.
#[track_caller]
fn assert_restores_exactly(repo: &Repo, tree: &Changing, id: &str) {
    let out = tempdir();
    let dest = out.path().join("restore");
    repo.restore(id, &dest, ["--verify"]).expect_success();
    assert_trees_equal(&tree.reference(id), &restored_path(&dest, &tree.src));
}

/// Parses `forget --json`: (removed count, id → (keep, reasons)).
#[track_caller]
fn forget_json(run: &Run) -> (u64, Vec<(String, bool, Vec<String>)>) {
    run.expect_success();
    let v = run.json();
    let removed = v["removed"]
        .as_u64()
        .unwrap_or_else(|| panic!("no `removed` count\n{}", run.describe()));
    let decisions = v["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no `decisions` array\n{}", run.describe()))
        .iter()
        .map(|d| {
            let reasons = d["reasons"]
                .as_array()
                .expect("reasons array")
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            (
                d["id"].as_str().expect("decision id").to_string(),
                d["keep"].as_bool().expect("keep bool"),
                reasons,
            )
        })
        .collect();
    (removed, decisions)
}

fn decision<'a>(d: &'a [(String, bool, Vec<String>)], id: &str) -> &'a (String, bool, Vec<String>) {
    d.iter()
        .find(|x| x.0 == id)
        .unwrap_or_else(|| panic!("no decision for {id}: {d:?}"))
}

#[test]
fn forget_keep_last_then_prune_reclaims_space() {
    let repo = Repo::init();
    let mut tree = Changing::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        tree.step();
        ids.push(tree.snapshot(&repo, &[]));
    }
    assert_eq!(repo.snapshot_ids(), ids, "snapshots oldest first");

    // Dry run: reports the decision, removes nothing.
    let run = repo.run(["forget", "--keep-last", "2", "--dry-run", "--json"]);
    let (removed, d) = forget_json(&run);
    assert_eq!(
        removed,
        2,
        "dry run should report 2 removals\n{}",
        run.describe()
    );
    assert_eq!(run.json()["dry_run"], Value::Bool(true));
    assert_eq!(d.len(), 4, "one decision per snapshot\n{}", run.describe());
    for (i, id) in ids.iter().enumerate() {
        let (_, keep, reasons) = decision(&d, id);
        assert_eq!(
            *keep,
            i >= 2,
            "decision for snapshot {i}\n{}",
            run.describe()
        );
        if i >= 2 {
            assert!(
                reasons.contains(&"last".to_string()),
                "reasons for snapshot {i}: {reasons:?}"
            );
        }
    }
    assert_eq!(
        repo.snapshot_ids(),
        ids,
        "forget --dry-run removed snapshots"
    );

    // For real.
    let run = repo.run(["forget", "--keep-last", "2", "--json"]);
    let (removed, _) = forget_json(&run);
    assert_eq!(removed, 2, "{}", run.describe());
    assert_eq!(
        repo.snapshot_ids(),
        ids[2..].to_vec(),
        "forget --keep-last 2 kept the wrong snapshots"
    );

    // prune --dry-run changes nothing; prune frees at least the two unique 300 kB files.
    let before = repo.data_size();
    let packs_before = repo.pack_files();
    repo.run(["prune", "--dry-run", "--json"]).expect_success();
    assert_eq!(
        repo.pack_files(),
        packs_before,
        "prune --dry-run changed packs"
    );
    let run = repo.run(["prune", "--json"]);
    run.expect_success();
    let after = repo.data_size();
    assert!(
        after + 500_000 <= before,
        "prune freed too little: data/ {before} -> {after} bytes (the forgotten snapshots used 600 kB of unique random data)\n{}",
        run.describe()
    );
    let report = run.json();
    assert!(
        report["bytes_deleted"].as_u64().unwrap() >= 500_000,
        "{}",
        run.describe()
    );

    let run = repo.run(["check", "--read-data", "--json"]);
    run.expect_success();
    let (ok, errors) = parse_check_json(&run);
    assert!(
        ok && errors.is_empty(),
        "check after prune: {errors:?}\n{}",
        run.describe()
    );
    for id in &ids[2..] {
        assert_restores_exactly(&repo, &tree, id);
    }
}

#[test]
fn retention_days_outlives_keep_last() {
    let repo = Repo::init();
    let mut tree = Changing::new();
    tree.step();
    let protected = tree.snapshot(&repo, &["--retention-days", "30"]);
    tree.step();
    let middle = tree.snapshot(&repo, &[]);
    tree.step();
    let newest = tree.snapshot(&repo, &[]);

    // The manifest carries retention_until, 30 days after the snapshot time.
    let listed = repo.snapshots();
    let p = listed
        .iter()
        .find(|s| s["id"] == protected.as_str())
        .expect("protected snapshot listed");
    let time = chrono::DateTime::parse_from_rfc3339(p["time"].as_str().unwrap()).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(
        p["retention_until"].as_str().expect("retention_until set"),
    )
    .unwrap();
    assert_eq!(
        until - time,
        chrono::Duration::days(30),
        "retention_until of {p}"
    );
    let m = listed.iter().find(|s| s["id"] == middle.as_str()).unwrap();
    assert!(
        m["retention_until"].is_null(),
        "retention_until set without --retention-days: {m}"
    );

    let run = repo.run(["forget", "--keep-last", "1", "--json"]);
    let (removed, d) = forget_json(&run);
    assert_eq!(removed, 1, "{}", run.describe());
    let (_, keep, reasons) = decision(&d, &protected);
    assert!(
        *keep,
        "the --retention-days 30 snapshot was forgotten\n{}",
        run.describe()
    );
    assert_eq!(
        reasons,
        &vec!["retention_until".to_string()],
        "{}",
        run.describe()
    );
    assert!(!decision(&d, &middle).1, "{}", run.describe());
    assert_eq!(
        decision(&d, &newest).2,
        vec!["last".to_string()],
        "{}",
        run.describe()
    );
    assert_eq!(repo.snapshot_ids(), vec![protected.clone(), newest.clone()]);

    repo.run(["prune", "--json"]).expect_success();
    repo.run(["check", "--read-data"]).expect_success();
    assert_restores_exactly(&repo, &tree, &protected);
    assert_restores_exactly(&repo, &tree, &newest);
}

#[test]
fn forget_without_rules_removes_only_expired_retention() {
    let repo = Repo::init();
    let mut tree = Changing::new();
    tree.step();
    let plain = tree.snapshot(&repo, &[]);
    tree.step();
    let kept30 = tree.snapshot(&repo, &["--retention-days", "30"]);

    // Nothing has expired: nothing is removed, dry run or not.
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["forget", "--json"];
        args.extend_from_slice(extra);
        let run = repo.run(&args);
        let (removed, d) = forget_json(&run);
        assert_eq!(removed, 0, "{}", run.describe());
        assert!(d.iter().all(|x| x.1), "{}", run.describe());
        assert_eq!(repo.snapshot_ids(), vec![plain.clone(), kept30.clone()]);
    }

    // `--retention-days 0` expires at the snapshot's own time: the rule-less forget removes
    // exactly that one (so the mode does remove what it should).
    tree.step();
    let expired = tree.snapshot(&repo, &["--retention-days", "0"]);
    let run = repo.run(["forget", "--json"]);
    let (removed, d) = forget_json(&run);
    assert_eq!(removed, 1, "{}", run.describe());
    assert!(!decision(&d, &expired).1, "{}", run.describe());
    assert_eq!(repo.snapshot_ids(), vec![plain.clone(), kept30.clone()]);
    assert_restores_exactly(&repo, &tree, &plain);
}

/// `--retention-days` beyond chrono's range once panicked after the packs were uploaded; it
/// must be refused (or accepted) cleanly, leaving no lock and no snapshot behind.
#[test]
fn huge_retention_days_never_panics() {
    let repo = Repo::init();
    let mut tree = Changing::new();
    tree.step();
    let run = repo.backup(&[&tree.src], &["--retention-days", "4294967295"]);
    assert!(
        matches!(run.code(), Some(0) | Some(1)),
        "backup must succeed or fail cleanly\n{}",
        run.describe()
    );
    if run.code() == Some(1) {
        assert!(
            repo.snapshots().is_empty(),
            "a refused backup stored a snapshot"
        );
    }
    assert!(
        repo.lock_files().is_empty(),
        "locks left behind: {:?}\n{}",
        repo.lock_files(),
        run.describe()
    );
}
