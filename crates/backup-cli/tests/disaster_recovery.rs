//! The procedures of `docs/disaster-recovery.md`, run step by step through the real binary.
//!
//! Each procedure's commands are the tables below (`LOST_FILES`, `LOST_DATABASE`,
//! `LOST_BUCKET`, `LOST_CATALOG`): the step number of the doc and the command exactly as the
//! doc prints it, with its `<placeholders>`. A test fills the placeholders, runs the commands in
//! the table's order (a [`Procedure`] refuses to skip or reorder a step), and checks the real
//! outcome: restored bytes equal the originals, rows equal rows, bucket objects' bodies and
//! metadata match, the catalog lists the same snapshots. `doc_commands_are_the_ones_the_tests_run`
//! proves that the `data-backup-manager` lines of the doc's `sh` blocks are exactly these tables,
//! so the doc cannot drift from what CI runs.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use backup_core::s3::{decode_form, parse_tagging, Method, S3Client, S3Request, S3Settings};
use sha2::{Digest, Sha256};
use support::pg;
use support::*;

/// Procedure 1 of the doc: lost files.
const LOST_FILES: &[(&str, &str)] = &[
    ("1.1", "data-backup-manager list --target files:<dir>"),
    ("1.2", "data-backup-manager ls <snapshot> <dir>"),
    (
        "1.3",
        "data-backup-manager restore <snapshot> --destination <scratch> --include <dir> --verify",
    ),
    (
        "1.4",
        "data-backup-manager restore <snapshot> --destination / --include <dir> --overwrite",
    ),
];

/// Procedure 2 of the doc: a lost PostgreSQL database, restored to a point in time.
const LOST_DATABASE: &[(&str, &str)] = &[
    ("2.0", "data-backup-manager wal-config --key-file <keyfile>"),
    ("2.0", "data-backup-manager backup postgres --type base"),
    ("2.1", "data-backup-manager verify --wal"),
    ("2.2", "data-backup-manager list --target postgres"),
    (
        "2.3",
        "data-backup-manager restore latest --targets postgres --to-time <time> --destination <datadir> --key-file <keyfile> --check",
    ),
];

/// Procedure 3 of the doc: a lost MinIO / S3 bucket.
const LOST_BUCKET: &[(&str, &str)] = &[
    ("3.1", "data-backup-manager list --target minio:<bucket>"),
    ("3.2", "data-backup-manager ls <snapshot> /<bucket>/objects"),
    (
        "3.3",
        "data-backup-manager restore <snapshot> --targets minio:<bucket> --destination minio:<bucket>",
    ),
    ("3.4", "data-backup-manager backup minio:<bucket>"),
];

/// Procedure 4 of the doc: a lost catalog database.
const LOST_CATALOG: &[(&str, &str)] = &[
    ("4.2", "data-backup-manager catalog rebuild"),
    ("4.3", "data-backup-manager list --json"),
    ("4.3", "data-backup-manager catalog jobs --json"),
];

const ALL: &[&[(&str, &str)]] = &[LOST_FILES, LOST_DATABASE, LOST_BUCKET, LOST_CATALOG];

fn doc_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/disaster-recovery.md")
}

/// The `data-backup-manager` command lines of the doc's `sh` blocks, each with the number of
/// the `### Step N.M` heading above it, whitespace collapsed and `# comments` removed.
fn doc_commands(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut step = String::new();
    let mut in_sh = false;
    for line in doc.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("### Step ") {
            step = rest
                .split(|c: char| c == ':' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string();
        } else if t == "```sh" {
            in_sh = true;
        } else if t.starts_with("```") {
            in_sh = false;
        } else if in_sh {
            let code = t.split(" #").next().unwrap_or("").trim();
            if code.starts_with("data-backup-manager") {
                out.push((step.clone(), collapse(code)));
            }
        }
    }
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The doc's commands are exactly the tables' commands, step by step and in order; every step
/// heading the tables name exists.
#[test]
fn doc_commands_are_the_ones_the_tests_run() {
    let doc = std::fs::read_to_string(doc_path()).expect("read docs/disaster-recovery.md");
    let in_doc = doc_commands(&doc);
    let in_tests: Vec<(String, String)> = ALL
        .iter()
        .flat_map(|t| t.iter())
        .map(|(s, c)| (s.to_string(), collapse(c)))
        .collect();
    assert_eq!(
        in_doc, in_tests,
        "docs/disaster-recovery.md and tests/disaster_recovery.rs disagree: update both"
    );
    for (n, procedure) in ALL.iter().enumerate() {
        for (step, _) in procedure.iter() {
            assert!(
                step.starts_with(&format!("{}.", n + 1)),
                "step {step} in procedure {}",
                n + 1
            );
            assert!(
                doc.contains(&format!("### Step {step}:")),
                "no heading for step {step}"
            );
        }
    }
    // The parser itself sees commands (so the comparison above cannot pass on nothing).
    assert!(in_doc.len() >= 12, "{in_doc:?}");
}

/// How a procedure's commands are started.
enum Runner {
    /// The test's own binary with the repository and password in the environment.
    Direct,
    /// A copy of the binary run as the `postgres` OS user (for the throwaway cluster).
    AsPostgres(PathBuf),
}

/// Runs one procedure's table in order, filling placeholders.
struct Procedure {
    steps: &'static [(&'static str, &'static str)],
    next: usize,
    vars: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    runner: Runner,
}

impl Procedure {
    fn new(
        steps: &'static [(&'static str, &'static str)],
        repo: &Path,
        password: &str,
        runner: Runner,
    ) -> Procedure {
        Procedure {
            steps,
            next: 0,
            vars: BTreeMap::new(),
            env: vec![
                ("DBM_REPOSITORY".into(), repo.display().to_string()),
                ("DBM_PASSWORD".into(), password.to_string()),
            ],
            runner,
        }
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(format!("<{name}>"), value.into());
    }

    fn env(&mut self, name: &str, value: impl Into<String>) {
        self.env.push((name.to_string(), value.into()));
    }

    /// Runs the next command of the table, which must belong to `step` (not checked for
    /// success: the caller asserts the outcome).
    #[track_caller]
    fn step(&mut self, step: &str) -> Run {
        let (want, template) = *self
            .steps
            .get(self.next)
            .unwrap_or_else(|| panic!("step {step}: the procedure has no more commands"));
        assert_eq!(want, step, "steps run out of the doc's order");
        self.next += 1;
        let mut words = template.split_whitespace();
        assert_eq!(words.next(), Some(BIN_NAME), "{template}");
        let args: Vec<String> = words
            .map(|w| {
                let mut w = w.to_string();
                for (k, v) in &self.vars {
                    w = w.replace(k.as_str(), v);
                }
                assert!(
                    !w.contains('<'),
                    "step {step}: placeholder {w} not filled in {template}"
                );
                w
            })
            .collect();
        let mut cmd = match &self.runner {
            Runner::Direct => {
                let mut c = Command::new(BIN_PATH);
                c.env_remove("DBM_PASSWORD_FILE");
                for (k, v) in &self.env {
                    c.env(k, v);
                }
                c
            }
            Runner::AsPostgres(bin) => {
                let env: Vec<(&str, String)> = self
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                pg::as_postgres(bin, &env)
            }
        };
        cmd.args(&args).stdin(std::process::Stdio::null());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("step {step}: cannot run {template}: {e}"));
        Run {
            cmdline: format!("(step {step}) {BIN_NAME} {}", args.join(" ")),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Every command of the table ran.
    #[track_caller]
    fn finish(&self) {
        assert_eq!(
            self.next,
            self.steps.len(),
            "steps not run: {:?}",
            &self.steps[self.next..]
        );
    }
}

/// Every regular file under `want` has the same bytes at the same place under `got`; returns
/// how many were compared.
#[track_caller]
fn assert_same_files(want: &Path, got: &Path) -> usize {
    let mut n = 0;
    for p in walk(want) {
        if !std::fs::symlink_metadata(&p).unwrap().is_file() {
            continue;
        }
        let q = got.join(p.strip_prefix(want).unwrap());
        match compare_file_contents(&p, &q) {
            Ok(None) => n += 1,
            Ok(Some(d)) => panic!("{} differs from {}: {d}", q.display(), p.display()),
            Err(e) => panic!("{}: {e}", q.display()),
        }
    }
    n
}

// ---------------------------------------------------------------------------------------------
// 1. Lost files
// ---------------------------------------------------------------------------------------------

#[test]
fn procedure_1_lost_files() {
    let repo = Repo::init();
    let tmp = tempdir();
    let dir = tmp.path().join("app");
    let files = build_random_tree(&dir, 8, 40_000);
    write_file(&dir.join("config.yaml"), b"listen: 8080\n");
    let keep = tmp.path().join("keep");
    copy_tree(&dir, &keep);
    let snap = repo.backup_ok(&[&dir], &[]).id;

    // The disaster: a folder and a file deleted, a file overwritten; a new file appears.
    let sub = files[1].parent().unwrap().to_path_buf();
    assert_ne!(sub, dir);
    std::fs::remove_dir_all(&sub).unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    write_file(&dir.join("config.yaml"), b"garbage");
    write_file(&dir.join("new-after-backup"), b"keep me");

    let scratch = tmp.path().join("scratch");
    let mut p = Procedure::new(LOST_FILES, &repo.path, &repo.password, Runner::Direct);
    p.set("dir", dir.to_str().unwrap());
    p.set("scratch", scratch.to_str().unwrap());

    // Step 1.1: the backup of the path is listed.
    let run = p.step("1.1");
    run.expect_success();
    assert!(
        run.stdout_str().contains(&snap[..8]),
        "snapshot {snap} not listed\n{}",
        run.describe()
    );
    p.set("snapshot", &snap[..8]);

    // Step 1.2: the lost file is in the snapshot.
    let run = p.step("1.2");
    run.expect_success();
    assert!(
        run.stdout_str().contains(&file_name_str(&files[0])),
        "{}",
        run.describe()
    );

    // Step 1.3: restore into the scratch folder, verified, equal to the original tree.
    p.step("1.3").expect_success();
    assert_trees_equal(&keep, &restored_path(&scratch, &dir));

    // Step 1.4: back in place.
    p.step("1.4").expect_success();
    p.finish();
    let n = assert_same_files(&keep, &dir);
    assert_eq!(n, 9, "files compared");
    assert_eq!(
        std::fs::read(dir.join("new-after-backup")).unwrap(),
        b"keep me"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Lost bucket
// ---------------------------------------------------------------------------------------------

/// The S3 test server (Ceph RGW from `scripts/s3-server.sh`): its variables and a client.
struct Server {
    env: BTreeMap<String, String>,
    client: S3Client,
    rt: tokio::runtime::Runtime,
}

/// The server, or `None` (test skipped) when it is absent and `CI` is not set.
fn server() -> Option<Server> {
    let ci = std::env::var_os("CI").is_some();
    let unavailable = |why: String| -> Option<Server> {
        if ci {
            panic!("S3 test server unavailable (CI is set, so this fails): {why}");
        }
        eprintln!("skipping: S3 test server unavailable: {why} (scripts/s3-server.sh start)");
        None
    };
    let path = std::env::var("DBM_S3_ENV").unwrap_or_else(|_| "/tmp/dbm-s3.env".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return unavailable(format!("{path}: {e}")),
    };
    let env: BTreeMap<String, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let settings = match S3Settings::from_lookup(|k| env.get(k).cloned()) {
        Ok(s) => s,
        Err(e) => return unavailable(format!("{path}: {e}")),
    };
    let client = S3Client::new(settings).expect("client");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = rt.block_on(client.list_buckets()) {
        return unavailable(format!("{}: {e}", client.endpoint()));
    }
    Some(Server { env, client, rt })
}

impl Server {
    fn call(&self, req: S3Request<'_>) -> Vec<u8> {
        let what = format!("{} {}", req.method, req.resource());
        self.rt
            .block_on(self.client.call_bytes(&req))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .to_vec()
    }

    fn put(&self, b: &str, key: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut req = S3Request::new(Method::PUT, Some(b), Some(key)).body(body.to_vec());
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        self.call(req);
    }

    fn put_config(&self, b: &str, sub: &str, body: &str) {
        let md5 = backup_core::repository::crypto::b64(&md5::Md5::digest(body.as_bytes()));
        self.call(
            S3Request::new(Method::PUT, Some(b), None)
                .query(sub, "")
                .header("content-md5", md5)
                .body(body.to_string()),
        );
    }

    fn get_config(&self, b: &str, sub: &str) -> String {
        String::from_utf8(self.call(S3Request::new(Method::GET, Some(b), None).query(sub, "")))
            .unwrap()
    }

    fn bucket_exists(&self, b: &str) -> bool {
        let req = S3Request::new(Method::HEAD, Some(b), None);
        matches!(self.rt.block_on(self.client.call(&req)), Ok(r) if r.status().is_success())
    }

    fn keys(&self, b: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .rt
                .block_on(self.client.list_page(b, "", None, token.as_deref()))
                .expect("list");
            out.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    }

    /// Each key's HeadObject metadata headers, tags and body SHA-256.
    fn describe(&self, b: &str) -> BTreeMap<String, (BTreeMap<String, String>, String, String)> {
        self.keys(b)
            .into_iter()
            .map(|k| {
                let resp = self
                    .rt
                    .block_on(
                        self.client
                            .call(&S3Request::new(Method::HEAD, Some(b), Some(&k))),
                    )
                    .expect("head");
                let head: BTreeMap<String, String> = resp
                    .headers()
                    .iter()
                    .filter(|(n, _)| {
                        let n = n.as_str();
                        n.starts_with("x-amz-meta-")
                            || [
                                "content-type",
                                "content-length",
                                "cache-control",
                                "content-encoding",
                                "content-disposition",
                                "content-language",
                            ]
                            .contains(&n)
                    })
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                let mut tags = parse_tagging(
                    &self.call(S3Request::new(Method::GET, Some(b), Some(&k)).query("tagging", "")),
                )
                .unwrap();
                tags.sort();
                let body = self.call(S3Request::new(Method::GET, Some(b), Some(&k)));
                let sha: String = Sha256::digest(&body)
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect();
                (k, (head, format!("{tags:?}"), sha))
            })
            .collect()
    }

    /// Deletes a bucket with every object version: the disaster.
    fn drop_bucket(&self, b: &str) {
        for _ in 0..20 {
            let req = S3Request::new(Method::GET, Some(b), None)
                .query("versions", "")
                .query("encoding-type", "url");
            let Ok(body) = self.rt.block_on(self.client.call_bytes(&req)) else {
                return;
            };
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut found = false;
            for block in text.split("<Key>").skip(1) {
                let key = decode_form(&block[..block.find("</Key>").unwrap_or(0)]);
                let key = String::from_utf8_lossy(&key).into_owned();
                let Some(v) = block
                    .split("<VersionId>")
                    .nth(1)
                    .and_then(|v| v.split("</VersionId>").next())
                else {
                    continue;
                };
                found = true;
                let del = S3Request::new(Method::DELETE, Some(b), Some(&key))
                    .query("versionId", v.to_string());
                let _ = self.rt.block_on(self.client.call(&del));
            }
            if !found {
                break;
            }
        }
        let _ = self.rt.block_on(
            self.client
                .call(&S3Request::new(Method::DELETE, Some(b), None)),
        );
    }
}

#[test]
fn procedure_3_lost_bucket() {
    let Some(s) = server() else { return };
    let bucket = format!("dbm-dr-{}", Rng::unique().hex(4));
    s.rt.block_on(s.client.create_bucket(&bucket))
        .expect("create bucket");
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"PublicRead","Effect":"Allow","Principal":{{"AWS":["*"]}},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}"#
    );
    s.put_config(&bucket, "policy", &policy);
    s.put_config(
        &bucket,
        "tagging",
        "<Tagging><TagSet><Tag><Key>team</Key><Value>dr</Value></Tag></TagSet></Tagging>",
    );
    let mut rng = Rng::unique();
    s.put(
        &bucket,
        "photos/2024/a.jpg",
        &rng.bytes(300_000),
        &[
            ("content-type", "image/jpeg"),
            ("x-amz-meta-camera", "x100"),
            ("x-amz-tagging", "album=summer"),
        ],
    );
    s.put(
        &bucket,
        "index.html",
        b"<h1>hi</h1>",
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "max-age=60"),
        ],
    );
    s.put(&bucket, "dir/", b"", &[]);
    s.put(&bucket, "big.bin", &rng.bytes(9 << 20), &[]);
    let before = s.describe(&bucket);
    assert_eq!(before.len(), 4);
    let policy_before = s.get_config(&bucket, "policy");
    let tagging_before = s.get_config(&bucket, "tagging");

    // Before the disaster: the bucket is backed up (the doc's buckets.md command).
    let repo = Repo::init();
    let mut cmd = repo.cmd();
    cmd.envs(&s.env);
    let out = cmd
        .args(["backup", &format!("minio:{bucket}"), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let snap: String = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The disaster: the bucket and every object are deleted.
    s.drop_bucket(&bucket);
    assert!(!s.bucket_exists(&bucket), "bucket {bucket} still there");

    let mut p = Procedure::new(LOST_BUCKET, &repo.path, &repo.password, Runner::Direct);
    for (k, v) in &s.env {
        p.env(k, v);
    }
    p.set("bucket", &bucket);

    // Step 3.1: the bucket's snapshot is listed.
    let run = p.step("3.1");
    run.expect_success();
    assert!(run.stdout_str().contains(&snap[..8]), "{}", run.describe());
    p.set("snapshot", &snap[..8]);

    // Step 3.2: the objects are in it.
    let run = p.step("3.2");
    run.expect_success();
    assert!(
        run.stdout_str().contains("index.html"),
        "{}",
        run.describe()
    );

    // Step 3.3: restore recreates the bucket with every object, metadata and configuration.
    p.step("3.3").expect_success();
    let after = s.describe(&bucket);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (k, want) in &before {
        assert_eq!(&after[k], want, "object {k:?}: (HeadObject, tags, SHA-256)");
    }
    let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(json(&s.get_config(&bucket, "policy")), json(&policy_before));
    assert_eq!(s.get_config(&bucket, "tagging"), tagging_before);

    // Step 3.4: a new backup of the restored bucket is complete.
    let run = p.step("3.4");
    run.expect_success();
    p.finish();
    s.drop_bucket(&bucket);
}

// ---------------------------------------------------------------------------------------------
// 2. Lost PostgreSQL database, point in time
// ---------------------------------------------------------------------------------------------

/// Rows of the test table, in key order, as text.
fn accounts(c: &pg::Cluster) -> String {
    c.sql("SELECT coalesce(string_agg(id || ':' || owner || ':' || balance, ',' ORDER BY id), '') FROM accounts")
}

#[test]
fn procedure_2_lost_database_point_in_time() {
    if !pg::can_run_as_postgres() {
        eprintln!(
            "SKIPPED: needs root and the postgres OS user (runuser) to run a throwaway cluster"
        );
        return;
    }
    let tmp = pg::PgTemp::new("dbm_dr");
    let bin = tmp.install_binary();
    let repo = tmp.path.join("repo");
    let key = tmp.path.join("wal.key");
    let datadir = tmp.path.join("restored");
    let mut p = Procedure::new(
        LOST_DATABASE,
        &repo,
        PASSWORD,
        Runner::AsPostgres(bin.clone()),
    );
    p.set("keyfile", key.to_str().unwrap());
    p.set("datadir", datadir.to_str().unwrap());
    // The repository (made by the postgres user, who runs archive_command).
    let mut init = pg::as_postgres(
        &bin,
        &[
            ("DBM_REPOSITORY", repo.display().to_string()),
            ("DBM_PASSWORD", PASSWORD.to_string()),
        ],
    );
    init.arg("init");
    pg::run_cmd(init, "data-backup-manager init").expect_success();

    // Step 2.0: the archive settings, as printed, go into postgresql.conf.
    let run = p.step("2.0");
    run.expect_success();
    let conf = run.stdout_str();
    assert!(
        conf.lines()
            .any(|l| l.starts_with("archive_command = ") && l.contains("wal-push")),
        "{}",
        run.describe()
    );
    assert!(!conf.contains(PASSWORD), "the password is in the settings");
    let c = pg::Cluster::init(
        &tmp.path,
        "primary",
        &format!("{conf}\nmax_wal_senders = 4\n"),
    );
    c.start();
    p.env("PGHOST", c.dir.display().to_string());
    p.env("PGPORT", c.port.to_string());
    p.env("PGUSER", "postgres");
    c.sql(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL)",
    );
    c.sql("INSERT INTO accounts SELECT g, 'owner-' || g, g * 100 FROM generate_series(1, 500) g");

    // Step 2.0: a base backup.
    let run = p.step("2.0");
    run.expect_success();
    // Work after the base backup, replayed from the WAL archive.
    c.sql("UPDATE accounts SET balance = balance + 7 WHERE id % 3 = 0");
    c.sql("INSERT INTO accounts SELECT g, 'late-' || g, g FROM generate_series(501, 600) g");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let want = accounts(&c);
    let t = c.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // The disaster: rows deleted, then the table dropped.
    c.sql("DELETE FROM accounts WHERE id > 100");
    c.sql("DROP TABLE accounts");
    c.switch_and_wait_archived();
    p.set("time", t.clone());

    // Step 2.1: the archive is complete.
    p.step("2.1").expect_success();

    // Step 2.2: the base backup is listed.
    let run = p.step("2.2");
    run.expect_success();
    let base_id: String = {
        let mut l = pg::as_postgres(
            &bin,
            &[
                ("DBM_REPOSITORY", repo.display().to_string()),
                ("DBM_PASSWORD", PASSWORD.to_string()),
            ],
        );
        l.args(["list", "--target", "postgres", "--json"]);
        let r = pg::run_cmd(l, "list --json");
        r.expect_success();
        r.json()[0]["id"].as_str().unwrap().to_string()
    };
    assert!(
        run.stdout_str().contains(&base_id[..8]),
        "{}",
        run.describe()
    );

    // Step 2.3: restore to T; --check proves recovery reaches T.
    let run = p.step("2.3");
    run.expect_success();
    // PostgreSQL's own line about where replay stopped: before the first commit after T.
    assert!(
        run.all_output().contains("recovery stopping before"),
        "{}",
        run.describe()
    );
    assert!(datadir.join("PG_VERSION").is_file());
    p.finish();

    // Step 2.4: start the restored cluster: the rows are the rows at T.
    let r = pg::Cluster::existing(&tmp.path, &datadir, "restored");
    r.start();
    r.wait_promoted();
    let got = accounts(&r);
    r.stop();
    c.stop();
    assert_eq!(got.split(',').count(), 600);
    assert_eq!(got, want, "rows at T");
}

// ---------------------------------------------------------------------------------------------
// 4. Lost catalog database
// ---------------------------------------------------------------------------------------------

/// `catalog jobs --json` as (storage_path, target_identifier, status), sorted.
fn job_set(run: &Run) -> BTreeSet<(String, String, String)> {
    run.expect_success();
    run.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array\n{}", run.describe()))
        .iter()
        .map(|j| {
            (
                j["storage_path"].as_str().unwrap_or("").to_string(),
                j["target_identifier"].as_str().unwrap_or("").to_string(),
                j["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn procedure_4_lost_catalog() {
    let url_of = |db: &str| format!("postgres://postgres@{}:{}/{db}", pg::HOST, pg::PORT);
    let old_db = pg::unique("dbm_dr_cat_old");
    let new_db = pg::unique("dbm_dr_cat_new");
    pg::psql("postgres", &format!("CREATE DATABASE {old_db}"));
    let repo = Repo::init();
    let tmp = tempdir();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    build_random_tree(&a, 3, 1000);
    build_random_tree(&b, 2, 1000);
    let old_env = [("DBM_DATABASE_URL", url_of(&old_db))];
    let old_env: Vec<(&str, &str)> = old_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Backups recorded in the original catalog.
    for src in [&a, &b, &a] {
        let mut args = vec![OsString::from("backup")];
        args.push(source_arg(src));
        repo.run_env(Password::Env(&repo.password), &old_env, args)
            .expect_success();
    }
    let before = job_set(&repo.run_env(
        Password::Env(&repo.password),
        &old_env,
        ["catalog", "jobs", "--json"],
    ));
    assert_eq!(before.len(), 3, "{before:?}");
    // The disaster: the catalog database is gone.
    pg::psql("postgres", &format!("DROP DATABASE {old_db} WITH (FORCE)"));

    // Step 4.1: an empty database (createdb), named in DBM_DATABASE_URL.
    pg::psql("postgres", &format!("CREATE DATABASE {new_db}"));
    let mut p = Procedure::new(LOST_CATALOG, &repo.path, &repo.password, Runner::Direct);
    p.env("DBM_DATABASE_URL", url_of(&new_db));

    // Step 4.2: rebuild.
    let run = p.step("4.2");
    run.expect_success();

    // Step 4.3: every snapshot is a job again, with the same target and status as before.
    let run = p.step("4.3");
    run.expect_success();
    let ids: BTreeSet<String> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let after = job_set(&p.step("4.3"));
    p.finish();
    pg::psql("postgres", &format!("DROP DATABASE {new_db} WITH (FORCE)"));
    let paths: BTreeSet<String> = after.iter().map(|j| j.0.clone()).collect();
    assert_eq!(paths, ids, "job storage paths = snapshot ids");
    assert_eq!(after, before, "rebuilt catalog = lost catalog");
}
