//! Repository backends for the tests that run against both a local folder and the real S3
//! server (`scripts/s3-server.sh`, a Ceph RADOS Gateway on 127.0.0.1:7480).
//!
//! The S3 settings come from the env file the script writes (`$DBM_S3_ENV`, default
//! `/tmp/dbm-s3.env`). When the server is absent, S3 tests FAIL under CI (`CI` set and not
//! `false`/`0`) and are skipped with a printed reason otherwise.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::store::cloud::{CloudOptions, Secret};
use backup_core::Store;

use crate::support::{Run, BIN_PATH, PASSWORD};

/// Bucket that holds every S3 test repository (one prefix per repository).
pub const BUCKET: &str = "dbm-repo-tests";

/// The S3 test server's settings (from the env file).
#[derive(Clone, Debug)]
pub struct S3Env {
    pub vars: BTreeMap<String, String>,
}

impl S3Env {
    /// Reads the env file and checks that the gateway answers; `None` (after printing why)
    /// when it does not and CI is not set; panics under CI.
    pub fn get(test: &str) -> Option<S3Env> {
        let path = std::env::var("DBM_S3_ENV").unwrap_or_else(|_| "/tmp/dbm-s3.env".into());
        let why = match std::fs::read_to_string(&path) {
            Err(e) => format!("cannot read {path} ({e})"),
            Ok(text) => {
                let vars: BTreeMap<String, String> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                match vars.get("AWS_ENDPOINT_URL") {
                    None => format!("{path} has no AWS_ENDPOINT_URL"),
                    Some(ep) => {
                        let hostport = ep
                            .split("://")
                            .nth(1)
                            .unwrap_or(ep)
                            .trim_end_matches('/')
                            .to_string();
                        let up = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
                            .ok()
                            .and_then(|mut a| a.next())
                            .map(|a| {
                                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3))
                                    .is_ok()
                            })
                            .unwrap_or(false);
                        if up {
                            return Some(S3Env { vars });
                        }
                        format!("the S3 server at {ep} does not answer")
                    }
                }
            }
        };
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "false" && v != "0")
            .unwrap_or(false);
        if ci {
            panic!(
                "{test}: needs the S3 test server, but {why}; start it with scripts/s3-server.sh"
            );
        }
        eprintln!("SKIPPED {test}: {why} (start the S3 test server with scripts/s3-server.sh)");
        None
    }

    /// The same settings as config-file options, for opening a store inside the test.
    pub fn options(&self) -> CloudOptions {
        CloudOptions {
            endpoint: self.vars.get("AWS_ENDPOINT_URL").cloned(),
            region: self.vars.get("AWS_REGION").cloned(),
            access_key_id: self.vars.get("AWS_ACCESS_KEY_ID").cloned(),
            secret_access_key: self
                .vars
                .get("AWS_SECRET_ACCESS_KEY")
                .map(|s| Secret::new(s.clone())),
            allow_http: Some(true),
            ..Default::default()
        }
    }
}

/// A unique name for a repository of test `test`.
pub fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos:x}", std::process::id())
}

/// A repository location under test: a local folder or a prefix in the S3 test bucket.
pub struct TestRepo {
    /// What `--repo` gets.
    pub url: String,
    /// Environment of every invocation (the S3 settings for S3).
    pub env: Vec<(String, String)>,
    pub password: String,
    pub s3: Option<S3Env>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestRepo {
    /// A not yet initialised local repository.
    pub fn local() -> TestRepo {
        let tmp = tempfile::tempdir().expect("temp dir");
        TestRepo {
            url: tmp.path().join("repo").display().to_string(),
            env: Vec::new(),
            password: PASSWORD.into(),
            s3: None,
            _tmp: Some(tmp),
        }
    }

    /// A not yet initialised S3 repository (`None`: skipped, see the module docs).
    pub fn s3(test: &str) -> Option<TestRepo> {
        let s3 = S3Env::get(test)?;
        Some(TestRepo::s3_at(
            s3,
            format!("s3://{BUCKET}/{}", unique(test)),
        ))
    }

    /// The S3 repository at `url` (deleted when dropped).
    pub fn s3_at(s3: S3Env, url: String) -> TestRepo {
        TestRepo {
            url,
            env: s3.vars.clone().into_iter().collect(),
            password: PASSWORD.into(),
            s3: Some(s3),
            _tmp: None,
        }
    }

    pub fn is_s3(&self) -> bool {
        self.s3.is_some()
    }

    /// A command for the binary with the password and settings set, `--repo` given.
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(BIN_PATH);
        c.env("DBM_PASSWORD", &self.password)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--repo")
            .arg(&self.url)
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs the binary against this repository.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
        run_command(
            self.command().args(&args),
            &format!("--repo {} {args:?}", self.url),
        )
    }

    /// `init`, which must succeed.
    #[track_caller]
    pub fn init(&self) -> &Self {
        self.run(["init"]).expect_success();
        self
    }

    /// `backup files:<paths> --json`, which must succeed; returns the snapshot id.
    #[track_caller]
    pub fn backup_ok(&self, paths: &[&Path]) -> String {
        let mut args = vec![OsString::from("backup")];
        args.extend(paths.iter().map(|p| crate::support::source_arg(p)));
        args.push("--json".into());
        let run = self.run(args);
        run.expect_success();
        run.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id\n{}", run.describe()))
            .to_string()
    }

    /// The repository's objects as the store lists them: path → size (bytes).
    pub fn objects(&self) -> BTreeMap<String, u64> {
        let store = self.store();
        rt().block_on(async {
            let mut all = BTreeMap::new();
            if let Some(o) = store.head("config").await.expect("head config") {
                all.insert(o.path, o.size);
            }
            for dir in ["keys", "data", "index", "snapshots", "locks"] {
                for o in store.list(dir).await.expect("list") {
                    all.insert(o.path, o.size);
                }
            }
            all
        })
    }

    /// The repository's store, opened in this process.
    pub fn store(&self) -> Arc<dyn Store> {
        let opts = self.s3.as_ref().map(|s| s.options()).unwrap_or_default();
        backup_core::store::open_store_with(&self.url, false, &opts).expect("open store")
    }
}

impl Drop for TestRepo {
    /// S3 repositories are deleted after the test (the local ones go with their temp dir).
    fn drop(&mut self) {
        if self.s3.is_none() || std::thread::panicking() {
            return;
        }
        let store = self.store();
        let _ = rt().block_on(async {
            let mut n = 0;
            store.delete("config").await?;
            for dir in ["keys", "data", "index", "snapshots", "locks"] {
                for o in store.list(dir).await? {
                    store.delete(&o.path).await?;
                    n += 1;
                }
            }
            Ok::<_, backup_core::Error>(n)
        });
    }
}

/// A small runtime for store calls from synchronous tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs a prepared command and captures its outcome.
pub fn run_command(cmd: &mut std::process::Command, cmdline: &str) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    Run {
        cmdline: format!("data-backup-manager {cmdline}"),
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// `check --read-data` must find no damage: exit 0, or 2 (warnings such as unreferenced
/// packs after an interrupted backup), never 1.
#[track_caller]
pub fn assert_check_clean(repo: &TestRepo, when: &str) {
    let run = repo.run(["check", "--read-data"]);
    assert!(
        matches!(run.code(), Some(0) | Some(2)),
        "{when}: check --read-data must exit 0 or 2\n{}",
        run.describe()
    );
}

/// Defines `local` and `s3` tests that run the generic test body `$body(&TestRepo)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn local() {
                super::$body(&$crate::backends::TestRepo::local());
            }
            #[test]
            fn s3() {
                if let Some(r) = $crate::backends::TestRepo::s3(stringify!($body)) {
                    super::$body(&r);
                }
            }
        }
    )*};
}
