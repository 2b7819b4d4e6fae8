//! The scenario runner: executes every test of `scenario-test.yaml` (http, exec, sql) against
//! a started `backup-server`, a real PostgreSQL catalog and a config whose named target
//! `test-data` is a folder made here; and checks the Vrooli scenario files.
//!
//! The exec tests run the `data-backup-manager` binary built next to `backup-server`
//! (`cargo test --workspace` builds both; alone: `cargo build -p backup-cli` first).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn subst(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// `expected` matches `actual`: `"not_null"` = anything but null; a list = one of; else equal
/// (numbers compared as numbers, so `1` matches `1` from PostgreSQL's int8 or int4).
fn matches(expected: &Value, actual: &Value) -> bool {
    match expected {
        Value::String(s) if s == "not_null" => !actual.is_null(),
        Value::Array(options) => options.iter().any(|o| matches(o, actual)),
        Value::Number(n) => actual.as_f64() == n.as_f64(),
        other => other == actual,
    }
}

/// The S3 endpoint: DBM_MINIO_URL, else AWS_ENDPOINT_URL from $DBM_S3_ENV (default
/// /tmp/dbm-s3.env, written by scripts/s3-server.sh).
fn s3_endpoint() -> Option<String> {
    if let Ok(u) = std::env::var("DBM_MINIO_URL") {
        return Some(u);
    }
    let f = std::env::var("DBM_S3_ENV").unwrap_or_else(|_| "/tmp/dbm-s3.env".into());
    let text = std::fs::read_to_string(f).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("AWS_ENDPOINT_URL="))
        .map(|v| v.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn scenario_test_yaml_passes() {
    let spec = yaml(&root().join("scenario-test.yaml"));
    for f in spec["structure"]["required_files"].as_array().unwrap() {
        let p = root().join(f.as_str().unwrap());
        assert!(p.is_file(), "required file {} is missing", p.display());
    }
    for d in spec["structure"]["required_dirs"].as_array().unwrap() {
        let p = root().join(d.as_str().unwrap());
        assert!(p.is_dir(), "required dir {} is missing", p.display());
    }

    let env = Env::new("").await;
    let srv = env.start("server.log").await;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_backup-server"))
        .parent()
        .unwrap()
        .to_path_buf();
    let cli = bin_dir.join("data-backup-manager");
    assert!(
        cli.is_file(),
        "{} is missing: build it (cargo build -p backup-cli) or run cargo test --workspace",
        cli.display()
    );
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("DBM_API_TOKEN".into(), ADMIN.into());
    vars.insert("API_PORT".into(), env.port.to_string());
    let (pg, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ci = std::env::var_os("CI").is_some();

    let mut passed = 0;
    let mut skipped = Vec::new();
    for t in spec["tests"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let expect = &t["expect"];
        match t["type"].as_str().unwrap() {
            "http" => {
                let base = match t["service"].as_str().unwrap() {
                    "api" => srv.base.clone(),
                    "minio" => match s3_endpoint() {
                        Some(u) => u,
                        None if ci => panic!("{name}: no S3 server (scripts/s3-server.sh start)"),
                        None => {
                            skipped.push(name.to_string());
                            eprintln!("SKIP {name}: no S3 server configured (DBM_MINIO_URL or /tmp/dbm-s3.env)");
                            continue;
                        }
                    },
                    other => panic!("{name}: unknown service {other}"),
                };
                let url = format!(
                    "{}{}",
                    base.trim_end_matches('/'),
                    t["endpoint"].as_str().unwrap()
                );
                let method =
                    reqwest::Method::from_bytes(t["method"].as_str().unwrap().as_bytes()).unwrap();
                let mut rb = srv.http.request(method, url);
                if let Some(h) = t["headers"].as_object() {
                    for (k, v) in h {
                        rb = rb.header(k, subst(v.as_str().unwrap(), &vars));
                    }
                }
                if !t["body"].is_null() {
                    rb = rb.json(&t["body"]);
                }
                let r = rb.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                assert!(
                    matches(&expect["status"], &Value::from(status)),
                    "{name}: status {status}, expected {}: {text}",
                    expect["status"]
                );
                if let Some(fields) = expect["body"].as_object() {
                    for (k, v) in fields {
                        assert!(
                            matches(v, &body[k]),
                            "{name}: body.{k} = {}, expected {v}",
                            body[k]
                        );
                    }
                }
            }
            "exec" => {
                let cmd = subst(t["command"].as_str().unwrap(), &vars);
                let path = format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                );
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(&cmd)
                    .current_dir(env.dir.path())
                    .env("PATH", path)
                    .env("DBM_CONFIG", &env.config)
                    .env("DBM_PASSWORD", PASSWORD)
                    .env("DBM_API_TOKEN", ADMIN)
                    .env_remove("DBM_API_URL")
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                if let Some(code) = expect["exit_code"].as_i64() {
                    assert_eq!(
                        out.status.code(),
                        Some(code as i32),
                        "{name}: `{cmd}`:\n{text}"
                    );
                }
                for s in expect["output_contains"].as_array().into_iter().flatten() {
                    assert!(
                        text.contains(s.as_str().unwrap()),
                        "{name}: output lacks {s}:\n{text}"
                    );
                }
            }
            "sql" => {
                assert_eq!(t["service"], "postgres", "{name}");
                let rows = pg
                    .query(t["query"].as_str().unwrap(), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let want = expect["rows"].as_array().unwrap();
                assert_eq!(rows.len(), want.len(), "{name}: row count");
                for (row, w) in rows.iter().zip(want) {
                    for (col, v) in w.as_object().unwrap() {
                        let idx = row
                            .columns()
                            .iter()
                            .position(|c| c.name() == col)
                            .unwrap_or_else(|| panic!("{name}: no column {col}"));
                        let got: Value = match row.columns()[idx].type_().name() {
                            "int8" => Value::from(row.get::<_, i64>(idx)),
                            "int4" => Value::from(row.get::<_, i32>(idx)),
                            "text" | "varchar" => Value::from(row.get::<_, String>(idx)),
                            "bool" => Value::from(row.get::<_, bool>(idx)),
                            other => panic!("{name}: column type {other} not handled"),
                        };
                        assert!(matches(v, &got), "{name}: {col} = {got}, expected {v}");
                    }
                }
            }
            other => panic!("{name}: unknown test type {other}"),
        }
        eprintln!("PASS {name}");
        passed += 1;
    }
    let total = spec["tests"].as_array().unwrap().len();
    assert_eq!(passed + skipped.len(), total);
    assert!(
        passed >= total - 1,
        "at most the S3 check may be skipped (outside CI)"
    );
}

#[test]
fn vrooli_service_json_follows_the_conventions() {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(".vrooli/service.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["service"]["name"], "data-backup-manager");
    assert!(v["service"]["version"].is_string());
    assert!(!v["service"]["tags"].as_array().unwrap().is_empty());
    let api = &v["ports"]["api"];
    assert_eq!(api["env_var"], "API_PORT");
    let (lo, hi) = api["range"].as_str().unwrap().split_once('-').unwrap();
    assert!((lo.parse::<u16>().unwrap()..=hi.parse().unwrap()).contains(&20010));
    for step in ["setup", "develop", "test", "stop"] {
        assert!(
            !v["lifecycle"][step]["steps"].as_array().unwrap().is_empty(),
            "lifecycle.{step}"
        );
    }
    assert_eq!(v["lifecycle"]["health"]["endpoints"]["api"], "/health");
    for (r, required) in [
        ("postgres", true),
        ("minio", true),
        ("n8n", true),
        ("redis", false),
    ] {
        assert_eq!(v["resources"][r]["required"], required, "resource {r}");
        for i in v["resources"][r]["initialization"].as_array().unwrap() {
            if let Some(f) = i["file"].as_str() {
                assert!(root().join(f).is_file(), "{r}: initialization file {f}");
            }
        }
    }
}

#[test]
fn n8n_workflows_are_valid() {
    let dir = root().join("initialization/n8n");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let w: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert!(w["name"].is_string(), "{}", p.display());
        let nodes = w["nodes"].as_array().unwrap();
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for n in nodes {
            assert!(
                n["type"].as_str().unwrap().starts_with("n8n-nodes-base."),
                "{n}"
            );
            assert!(
                n["typeVersion"].is_number() && n["parameters"].is_object(),
                "{n}"
            );
            assert_eq!(n["position"].as_array().unwrap().len(), 2);
            assert!(
                names.insert(n["name"].as_str().unwrap().to_string()),
                "unique names"
            );
            assert!(
                ids.insert(n["id"].as_str().unwrap().to_string()),
                "unique ids"
            );
        }
        for (from, c) in w["connections"].as_object().unwrap() {
            assert!(names.contains(from), "{from}");
            for out in c["main"].as_array().unwrap() {
                for link in out.as_array().unwrap() {
                    assert!(names.contains(link["node"].as_str().unwrap()), "{link}");
                }
            }
        }
        let text = serde_json::to_string(&w).unwrap();
        if text.contains("scheduleTrigger") {
            assert!(
                text.contains("/api/v1/backup/create"),
                "the trigger calls the API"
            );
        }
        if text.contains("n8n-nodes-base.webhook") {
            assert!(
                text.contains("backup.job.failed"),
                "the alert handler filters failures"
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 2);
}

#[test]
fn install_script_installs_into_vrooli_bin() {
    let home = tempfile::tempdir().unwrap();
    let bins = tempfile::tempdir().unwrap();
    for b in ["data-backup-manager", "backup-server"] {
        std::fs::write(bins.path().join(b), "#!/bin/sh\necho ok\n").unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(bins.path().join(b))
            .status()
            .unwrap();
    }
    let run = || {
        Command::new("bash")
            .arg(root().join("cli/install.sh"))
            .arg("--from-binary")
            .arg(bins.path())
            .env("HOME", home.path())
            .env("SHELL", "/bin/bash")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = home.path().join(".vrooli/bin/data-backup-manager");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&installed).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    let profile = std::fs::read_to_string(home.path().join(".bashrc")).unwrap();
    assert_eq!(profile.matches(".vrooli/bin").count(), 1);
    // Idempotent: a second run does not add PATH again.
    assert!(run().status.success());
    let profile = std::fs::read_to_string(home.path().join(".bashrc")).unwrap();
    assert_eq!(profile.matches(".vrooli/bin").count(), 1);
}
