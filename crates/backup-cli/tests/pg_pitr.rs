//! Point-in-time recovery end to end, on a throwaway cluster (initdb, private socket directory,
//! spare port) run as the `postgres` OS user, archiving into a repository through the binary
//! under test (`wal-push` as archive_command, `wal-fetch` as restore_command).
//!
//! Marker rows are written before the base backup, after it, and after a recorded time T:
//! restoring to T holds the first two, `latest` all three; T written with +05:00 means the same
//! instant; a target after the newest archived WAL is refused before anything is written; a
//! deleted archived segment is named by `verify --wal` and stops a restore across the gap.

mod support;

use std::path::{Path, PathBuf};

use support::pg::{as_postgres, can_run_as_postgres, run_cmd, Cluster, PgTemp};
use support::{Run, PASSWORD};

struct Env {
    tmp: PgTemp,
    bin: PathBuf,
    repo: PathBuf,
    key: PathBuf,
}

impl Env {
    /// Runs the binary as postgres against the repository (password in the environment).
    fn run(&self, args: &[&str], pg: Option<&Cluster>) -> Run {
        let mut envs = vec![("DBM_PASSWORD", PASSWORD.to_string())];
        if let Some(c) = pg {
            envs.push(("PGHOST", c.dir.display().to_string()));
            envs.push(("PGPORT", c.port.to_string()));
            envs.push(("PGUSER", "postgres".to_string()));
        }
        let mut cmd = as_postgres(&self.bin, &envs);
        cmd.arg("--repo").arg(&self.repo).args(args);
        run_cmd(
            cmd,
            format!(
                "(as postgres) data-backup-manager --repo {} {}",
                self.repo.display(),
                args.join(" ")
            ),
        )
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.tmp.path.join(name)
    }
}

fn markers(c: &Cluster) -> Vec<String> {
    c.sql("SELECT string_agg(label, ',' ORDER BY id) FROM markers")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Starts a restored data directory on its own port, waits for promotion, returns its markers.
fn start_restored(env: &Env, data: &Path, name: &str) -> Vec<String> {
    let c = Cluster::existing(&env.tmp.path, data, name);
    c.start();
    c.wait_promoted();
    let m = markers(&c);
    c.stop();
    m
}

fn auto_conf_setting(data: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(data.join("postgresql.auto.conf")).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")).map(str::to_string))
}

#[test]
fn point_in_time_restore_and_missing_wal() {
    if !can_run_as_postgres() {
        eprintln!(
            "SKIPPED: needs root and the postgres OS user (runuser) to run a throwaway cluster"
        );
        return;
    }
    let tmp = PgTemp::new("dbm_pitr");
    let bin = tmp.install_binary();
    let env = Env {
        repo: tmp.path.join("repo"),
        key: tmp.path.join("wal.key"),
        bin,
        tmp,
    };
    env.run(&["init"], None).expect_success();
    // The key file and the archive settings come from the tool itself.
    let cfg = env.run(
        &[
            "wal-config",
            "--key-file",
            env.key.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    cfg.expect_success();
    let settings = cfg.json()["settings"].clone();
    let archive_command = settings["archive_command"]
        .as_str()
        .expect("archive_command")
        .to_string();
    assert!(
        archive_command.contains("wal-push") && archive_command.contains("--key-file"),
        "{archive_command}"
    );
    assert!(!archive_command.contains(PASSWORD));

    let c = Cluster::init(
        &env.tmp.path,
        "primary",
        &format!(
            "wal_level = replica\narchive_mode = on\narchive_command = '{}'\nmax_wal_senders = 4\n",
            archive_command.replace('\'', "''")
        ),
    );
    c.start();
    c.sql("CREATE TABLE markers (id serial PRIMARY KEY, label text NOT NULL, at timestamptz DEFAULT clock_timestamp())");
    c.sql("INSERT INTO markers (label) VALUES ('before-base')");

    let b = env.run(
        &["backup", "postgres", "--type", "base", "--json"],
        Some(&c),
    );
    b.expect_success();
    let base = b.json();
    assert_eq!(base["meta"]["pg_backup"], "base", "{}", b.describe());
    for k in ["start_lsn", "stop_lsn", "system_identifier", "stop_time"] {
        assert!(
            base["meta"][k].is_string(),
            "meta.{k} missing: {}",
            b.describe()
        );
    }
    assert_eq!(
        base["meta"]["system_identifier"].as_str().unwrap(),
        c.sql("SELECT system_identifier::text FROM pg_control_system()")
    );
    assert_eq!(base["meta"]["timeline"], 1);

    c.sql("INSERT INTO markers (label) VALUES ('after-base')");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // T by the server's clock, in UTC without an offset (read as UTC by the tool).
    // The same instant, also written in +05:00.
    let both = c.sql(
        "SELECT to_char(t, 'YYYY-MM-DD HH24:MI:SS.US') || '|' || to_char(t + interval '5 hours', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+05:00' \
         FROM (SELECT now() AT TIME ZONE 'UTC' AS t) x",
    );
    let (t_utc, t_plus5) = both.split_once('|').expect("two times");
    let (t_utc, t_plus5) = (t_utc.to_string(), t_plus5.to_string());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.sql("INSERT INTO markers (label) VALUES ('after-T')");
    c.switch_and_wait_archived();

    let v = env.run(&["verify", "--wal"], None);
    v.expect_success();

    // Restore to T, with --check: the first two rows, not the third.
    let r1 = env.dest("r1");
    let run = env.run(
        &[
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--to-time",
            &t_utc,
            "--destination",
            r1.to_str().unwrap(),
            "--check",
            "--key-file",
            env.key.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    run.expect_success();
    let rep = run.json();
    assert_eq!(rep["check"]["reached"], true, "{}", run.describe());
    let written =
        auto_conf_setting(&r1, "recovery_target_time").expect("recovery_target_time written");
    assert!(written.ends_with("+00:00'"), "{written}");
    assert_eq!(
        auto_conf_setting(&r1, "recovery_target_action").as_deref(),
        Some("'promote'")
    );
    assert_eq!(
        start_restored(&env, &r1, "r1"),
        vec!["before-base", "after-base"]
    );

    // The same instant written with +05:00: the same target, printed back in UTC.
    let r2 = env.dest("r2");
    let run = env.run(
        &[
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--to-time",
            &t_plus5,
            "--destination",
            r2.to_str().unwrap(),
            "--key-file",
            env.key.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    run.expect_success();
    assert_eq!(run.json()["target"], rep["target"], "{}", run.describe());
    assert_eq!(
        auto_conf_setting(&r2, "recovery_target_time"),
        Some(written.clone())
    );
    assert_eq!(
        start_restored(&env, &r2, "r2"),
        vec!["before-base", "after-base"]
    );

    // latest: all three.
    let r3 = env.dest("r3");
    let run = env.run(
        &[
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--destination",
            r3.to_str().unwrap(),
            "--key-file",
            env.key.to_str().unwrap(),
        ],
        None,
    );
    run.expect_success();
    assert!(r3.join("recovery.signal").is_file());
    assert_eq!(
        start_restored(&env, &r3, "r3"),
        vec!["before-base", "after-base", "after-T"]
    );

    // A target after the newest archived WAL: refused, nothing written.
    let future = c.sql(
        "SELECT to_char(now() AT TIME ZONE 'UTC' + interval '1 hour', 'YYYY-MM-DD HH24:MI:SS')",
    );
    let r4 = env.dest("r4");
    let run = env.run(
        &[
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--to-time",
            &future,
            "--destination",
            r4.to_str().unwrap(),
            "--key-file",
            env.key.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stderr_str().contains("after the newest archived WAL"),
        "{}",
        run.describe()
    );
    assert!(!r4.exists(), "a refused restore wrote {}", r4.display());

    // Missing WAL: more segments, then one in the middle is lost.
    let mut archived = Vec::new();
    for i in 0..3 {
        c.sql(&format!("INSERT INTO markers (label) VALUES ('more-{i}')"));
        archived.push(c.switch_and_wait_archived());
    }
    let lost = archived[1].clone();
    let obj = env.repo.join("wal").join(&lost[..8]).join(&lost);
    assert!(
        obj.is_file(),
        "archived segment {} not at {}",
        lost,
        obj.display()
    );
    std::fs::remove_file(&obj).expect("delete segment");
    let v = env.run(&["verify", "--wal"], None);
    assert_eq!(v.code(), Some(1), "{}", v.describe());
    assert!(
        v.stdout_str().contains(&format!("MISSING {lost}")),
        "{}",
        v.describe()
    );
    let r5 = env.dest("r5");
    let run = env.run(
        &[
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--destination",
            r5.to_str().unwrap(),
            "--key-file",
            env.key.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.stderr_str().contains(&lost), "{}", run.describe());
    assert!(!r5.exists(), "a refused restore wrote {}", r5.display());
    // Retention: with a zero window only WAL before the base backup may go; everything the
    // base backup needs stays, and a restore to T still works afterwards.
    let start_lsn = base["meta"]["start_lsn"].as_str().unwrap().to_string();
    let (hi, lo) = start_lsn.split_once('/').unwrap();
    let lsn = u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap();
    let segno = lsn / (16 << 20);
    let start_seg = format!("00000001{:08X}{:08X}", segno / 256, segno % 256);
    let p = env.run(&["wal-prune", "--window", "0d", "--json"], None);
    p.expect_success();
    let pr = p.json();
    for d in pr["deleted"].as_array().expect("deleted list") {
        let d = d.as_str().unwrap();
        assert!(
            &d[..24] < start_seg.as_str(),
            "wal-prune deleted {d}, which base backup (start {start_seg}) needs\n{}",
            p.describe()
        );
    }
    assert!(env.repo.join("wal/00000001").join(&start_seg).is_file());
    // The segment before the backup (switched away by pg_backup_start) is no longer needed.
    assert!(
        !pr["deleted"].as_array().unwrap().is_empty(),
        "{}",
        p.describe()
    );
    let after = env.run(&["verify", "--wal"], None);
    assert_eq!(after.code(), Some(1), "{}", after.describe());
    assert_eq!(
        after
            .stdout_str()
            .lines()
            .filter(|l| l.starts_with("MISSING"))
            .collect::<Vec<_>>(),
        vec![format!("MISSING {lost}")],
        "{}",
        after.describe()
    );
    // A target before the gap still works (T's WAL is all there).
    let r6 = env.dest("r6");
    env.run(
        &[
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--to-time",
            &t_utc,
            "--destination",
            r6.to_str().unwrap(),
            "--key-file",
            env.key.to_str().unwrap(),
        ],
        None,
    )
    .expect_success();
    c.stop();
}

#[test]
fn wal_push_is_idempotent_and_refuses_different_content() {
    if !can_run_as_postgres() {
        eprintln!("SKIPPED: needs root and the postgres OS user");
        return;
    }
    let tmp = PgTemp::new("dbm_walpush");
    let bin = tmp.install_binary();
    let env = Env {
        repo: tmp.path.join("repo"),
        key: tmp.path.join("wal.key"),
        bin,
        tmp,
    };
    env.run(&["init"], None).expect_success();
    env.run(
        &["wal-config", "--key-file", env.key.to_str().unwrap()],
        None,
    )
    .expect_success();
    let key = env.key.to_str().unwrap().to_string();
    let dir = env.tmp.path.join("pg_wal");
    std::fs::create_dir_all(&dir).unwrap();
    let seg = dir.join("000000010000000000000007");
    let mut rng = support::Rng::unique();
    let content = rng.bytes(1 << 20);
    std::fs::write(&seg, &content).unwrap();
    let hist = dir.join("00000002.history");
    std::fs::write(&hist, "1\t0/7000100\tno recovery target specified\n").unwrap();
    let backup = dir.join("000000010000000000000007.00000028.backup");
    std::fs::write(&backup, "START WAL LOCATION: 0/7000028\n").unwrap();
    support::pg::chown_postgres(&env.tmp.path);
    for f in [&seg, &hist, &backup] {
        env.run(&["wal-push", "--key-file", &key, f.to_str().unwrap()], None)
            .expect_success();
    }
    // Identical again: success.
    env.run(
        &["wal-push", "--key-file", &key, seg.to_str().unwrap()],
        None,
    )
    .expect_success();
    // Different content under the same name: failure, the archived copy is untouched.
    let mut other = content.clone();
    other[1000] ^= 0xff;
    std::fs::write(&seg, &other).unwrap();
    let r = env.run(
        &["wal-push", "--key-file", &key, seg.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(
        r.stderr_str().contains("different content"),
        "{}",
        r.describe()
    );
    // Fetch returns the original bytes; every kind of file comes back.
    let out = env.tmp.path.join("out");
    std::fs::create_dir_all(&out).unwrap();
    support::pg::chown_postgres(&out);
    for (name, want) in [
        ("000000010000000000000007", content.clone()),
        ("00000002.history", std::fs::read(&hist).unwrap()),
        (
            "000000010000000000000007.00000028.backup",
            std::fs::read(&backup).unwrap(),
        ),
    ] {
        let p = out.join("RECOVERYXLOG");
        env.run(
            &["wal-fetch", "--key-file", &key, name, p.to_str().unwrap()],
            None,
        )
        .expect_success();
        assert_eq!(std::fs::read(&p).unwrap(), want, "{name}");
    }
    // Missing: non-zero, nothing written.
    let p = out.join("missing");
    let r = env.run(
        &[
            "wal-fetch",
            "--key-file",
            &key,
            "000000010000000000000009",
            p.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(!p.exists());
    let r = env.run(
        &[
            "wal-fetch",
            "--key-file",
            &key,
            "00000003.history",
            p.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    // Objects are encrypted: the segment's bytes are not in the repository in the clear.
    let stored = std::fs::read(env.repo.join("wal/00000001/000000010000000000000007")).unwrap();
    assert!(!stored.windows(64).any(|w| w == &content[4096..4160]));
}
