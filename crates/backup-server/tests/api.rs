//! The API end to end, against the `backup-server` binary, a real repository and a real
//! PostgreSQL catalog: backup → poll → restore → identical trees; verify passes, then fails
//! on a damaged repository; auth (401/403) and no token in any log line; validation errors
//! name their field; a server killed during a job retries it after a restart.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_verify_over_http() {
    let env = Env::new("").await;
    let srv = env.start("server.log").await;
    let (code, created) = srv
        .post(
            "/api/v1/backup/create",
            json!({"type": "full", "targets": ["test-data"], "description": "e2e"}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert!(created["estimated_duration"].as_str().is_some());
    let data = env.path("data");
    assert_eq!(
        created["targets"],
        json!([format!("files:{}", data.display())])
    );
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let job = srv
        .wait_for(
            &format!("/api/v1/backup/jobs/{job_id}"),
            &["completed", "failed"],
            120,
        )
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert!(job["storage_path"].as_str().unwrap().len() == 64);
    assert!(job["size_bytes"].as_i64().unwrap() >= 300_000);

    // The snapshot is listed, with the filters.
    let (code, list) = srv
        .get("/api/v1/backup/list?type=full&target=test-data")
        .await;
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], job["storage_path"]);
    let (_, none) = srv.get("/api/v1/backup/list?since=2999-01-01").await;
    assert_eq!(none, json!([]));

    // Restore into a new directory: identical tree.
    let dest = env.path("restored");
    let (code, r) = srv
        .post(
            "/api/v1/restore/create",
            json!({"backup_job_id": job_id, "targets": [], "destination": dest, "verify_before_restore": true}),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["status"], "pending");
    assert!(r["validation_results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["ok"] == true));
    let rid = r["restore_id"].as_str().unwrap();
    let rs = srv
        .wait_for(
            &format!("/api/v1/restore/status/{rid}"),
            &["completed", "failed"],
            120,
        )
        .await;
    assert_eq!(rs["status"], "completed", "{rs}");
    let restored_root = dest.join(data.strip_prefix("/").unwrap());
    assert_eq!(tree(&data), tree(&restored_root));

    // A restore into a non-empty destination is refused, naming the field.
    let (code, e) = srv
        .post(
            "/api/v1/restore/create",
            json!({"backup_job_id": job_id, "destination": dest}),
        )
        .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["error"]["field"], "destination");

    // Verify passes on an intact repository...
    let (code, v) = srv
        .post(&format!("/api/v1/backup/verify/{job_id}"), json!({}))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert!(v["files"].as_u64().unwrap() >= 3);

    // ...and fails once the packs are damaged.
    for e in walk_files(&env.repo.join("data")) {
        let mut b = std::fs::read(&e).unwrap();
        let n = b.len();
        for i in (n / 3..n).step_by(97) {
            b[i] ^= 0x5a;
        }
        std::fs::write(&e, b).unwrap();
    }
    let (code, v) = srv
        .post(&format!("/api/v1/backup/verify/{job_id}"), json!({}))
        .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["ok"], false);
    assert!(!v["errors"].as_array().unwrap().is_empty());

    // Status, metrics and the restore point endpoints answer.
    let (code, st) = srv.get("/api/v1/backup/status").await;
    assert_eq!(code, 200);
    assert!(["healthy", "degraded", "critical"].contains(&st["system_status"].as_str().unwrap()));
    assert!(st["storage_usage"]["used_gb"].is_number());
    let (code, rp) = srv
        .post(
            "/api/v1/restore-points",
            json!({"name": "before migration", "backup_job_ids": [job_id]}),
        )
        .await;
    assert_eq!(code, 201, "{rp}");
    let (_, rps) = srv.get("/api/v1/restore-points").await;
    assert_eq!(rps[0]["name"], "before migration");
    let m = srv
        .http
        .get(format!("{}/metrics", srv.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("dbm_jobs{status=\"completed\"} 1"), "{m}");
    assert!(
        m.contains("dbm_last_success_timestamp_seconds{target=\"files:"),
        "{m}"
    );
    assert!(m.contains("dbm_health{status="), "{m}");
}

fn walk_files(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk_files(&e));
        } else {
            out.push(e);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_validation_and_logs_without_secrets() {
    let env = Env::new("  cors_origins: [http://dash.example]\n  max_body_bytes: 4096\n").await;
    let srv = env.start("server.log").await;
    // /health needs no token.
    let (code, h) = srv.call("GET", "/health", None, None).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "healthy");
    // No token, a wrong token: 401 with the error shape.
    let (code, e) = srv.call("GET", "/api/v1/backup/status", None, None).await;
    assert_eq!(code, 401);
    assert_eq!(e["error"]["code"], "unauthorized");
    let wrong = "wrong-token-55aa55aa55aa55aa";
    let (code, _) = srv
        .call("GET", "/api/v1/backup/status", Some(wrong), None)
        .await;
    assert_eq!(code, 401);
    let (code, _) = srv.call("GET", "/metrics", None, None).await;
    assert_eq!(code, 401);
    // Read-only: reads yes, create/restore/delete no.
    let (code, _) = srv
        .call("GET", "/api/v1/backup/status", Some(VIEWER), None)
        .await;
    assert_eq!(code, 200);
    let (code, e) = srv
        .call(
            "POST",
            "/api/v1/backup/create",
            Some(VIEWER),
            Some(json!({"targets": ["test-data"]})),
        )
        .await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(e["error"]["code"], "forbidden");
    let (code, _) = srv
        .call(
            "POST",
            "/api/v1/restore/create",
            Some(VIEWER),
            Some(json!({"snapshot_id": "latest"})),
        )
        .await;
    assert_eq!(code, 403);
    let (code, _) = srv
        .call("DELETE", "/api/v1/schedules/x", Some(VIEWER), None)
        .await;
    assert_eq!(code, 403);
    // 400 naming the field: unknown target, bad cron, bad id, bad type, wrong JSON type.
    let (code, e) = srv
        .post(
            "/api/v1/backup/create",
            json!({"targets": ["no-such-target"]}),
        )
        .await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("targets")),
        "{e}"
    );
    let (code, e) = srv
        .post(
            "/api/v1/schedules",
            json!({"name": "n", "cron_expression": "* * *", "targets": ["test-data"]}),
        )
        .await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("cron_expression")),
        "{e}"
    );
    let (code, e) = srv.get("/api/v1/backup/jobs/not-a-uuid").await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("id")),
        "{e}"
    );
    let (code, e) = srv
        .post(
            "/api/v1/backup/create",
            json!({"type": "weekly", "targets": ["test-data"]}),
        )
        .await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("type")),
        "{e}"
    );
    let (code, e) = srv
        .post("/api/v1/backup/create", json!({"targets": "test-data"}))
        .await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("targets")),
        "{e}"
    );
    let (code, e) = srv.get("/api/v1/backup/list?since=yesterday").await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("since")),
        "{e}"
    );
    let (code, e) = srv
        .post("/api/v1/events", json!({"event": "moon.landed"}))
        .await;
    assert_eq!(
        (code, e["error"]["field"].as_str()),
        (400, Some("event")),
        "{e}"
    );
    // Unknown job: 404; unknown path: 404; wrong method: 405.
    let (code, _) = srv
        .get(&format!("/api/v1/backup/jobs/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(code, 404);
    let (code, _) = srv.get("/api/v1/nothing").await;
    assert_eq!(code, 404);
    let (code, _) = srv
        .call("DELETE", "/api/v1/backup/status", Some(ADMIN), None)
        .await;
    assert_eq!(code, 405);
    // Body limit.
    let big = "x".repeat(10_000);
    let (code, e) = srv
        .post("/api/v1/backup/create", json!({"targets": [big]}))
        .await;
    assert_eq!(code, 413, "{e}");
    // CORS only for the configured origin.
    let r = srv
        .http
        .get(format!("{}/health", srv.base))
        .header("Origin", "http://dash.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://dash.example"
    );
    let r = srv
        .http
        .get(format!("{}/health", srv.base))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // Schedules CRUD with the admin token, recorded under its name.
    let (code, s) = srv
        .post("/api/v1/schedules", json!({"name": "nightly", "cron_expression": "30 2 * * *", "timezone": "Europe/Berlin", "targets": ["test-data"], "retention_days": 7}))
        .await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["created_by"], "admin");
    let (code, s) = srv
        .post("/api/v1/schedules/nightly/disable", json!({}))
        .await;
    assert_eq!((code, s["enabled"].as_bool()), (200, Some(false)));
    let (code, s) = srv
        .call(
            "PUT",
            "/api/v1/schedules/nightly",
            Some(ADMIN),
            Some(json!({"cron_expression": "0 3 * * *"})),
        )
        .await;
    assert_eq!(
        (code, s["cron_expression"].as_str()),
        (200, Some("0 3 * * *")),
        "{s}"
    );
    let (code, _) = srv
        .call("DELETE", "/api/v1/schedules/nightly", Some(ADMIN), None)
        .await;
    assert_eq!(code, 200);
    let (_, all) = srv.get("/api/v1/schedules").await;
    assert_eq!(all, json!([]));
    // Events: scenario.deployed with a path queues a backup.
    let (code, ev) = srv
        .post(
            "/api/v1/events",
            json!({"event": "scenario.deployed", "payload": {"path": env.path("data")}}),
        )
        .await;
    assert_eq!(code, 202, "{ev}");
    assert_eq!(ev["job_ids"].as_array().unwrap().len(), 1);

    // The audit user is the token's name (PostgreSQL catalog).
    let (client, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT DISTINCT actor FROM audit_log WHERE action LIKE 'schedule.%'",
            &[],
        )
        .await
        .unwrap();
    let actors: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(actors, vec!["admin".to_string()]);

    // No token value in any log line (DBM_LOG=debug).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = srv.log_text();
    assert!(log.lines().count() > 20, "the log has the requests: {log}");
    assert!(
        log.contains("\"user\":\"viewer\""),
        "requests are logged with the token name"
    );
    for secret in [ADMIN, VIEWER, wrong, PASSWORD] {
        assert!(!log.contains(secret), "a secret is in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_during_a_job_it_is_retried_after_restart() {
    let env = Env::new("").await;
    // A target big enough that the backup is still running when the server is killed.
    let big = env.path("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..48 {
        std::fs::write(big.join(format!("f{i}")), random_bytes(8 << 20, i)).unwrap();
    }
    let mut srv = env.start("server1.log").await;
    let (code, created) = srv
        .post(
            "/api/v1/backup/create",
            json!({"type": "full", "targets": [format!("files:{}", big.display())]}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/backup/jobs/{job_id}");
    let running = srv.wait_for(&path, &["running", "completed"], 60).await;
    assert_eq!(
        running["status"], "running",
        "the job finished before the kill: make the data bigger"
    );
    srv.kill();

    let srv = env.start("server2.log").await;
    let done = srv.wait_for(&path, &["completed", "failed"], 240).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done["retry_count"].as_i64().unwrap() >= 1,
        "recorded as a retry: {done}"
    );
    let (_, st) = srv.get("/api/v1/backup/status").await;
    assert!(st["active_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] != "running"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_puts_a_running_job_back_to_pending() {
    let env = Env::new("  shutdown_grace_secs: 0\n").await;
    let big = env.path("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..48 {
        std::fs::write(big.join(format!("f{i}")), random_bytes(8 << 20, 100 + i)).unwrap();
    }
    let mut srv = env.start("server1.log").await;
    let (_, created) = srv
        .post(
            "/api/v1/backup/create",
            json!({"type": "full", "targets": [format!("files:{}", big.display())]}),
        )
        .await;
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/backup/jobs/{job_id}");
    let running = srv.wait_for(&path, &["running", "completed"], 60).await;
    assert_eq!(running["status"], "running");
    let status = srv.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let (client, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT status FROM backup_jobs WHERE id = $1::text::uuid",
            &[&job_id],
        )
        .await
        .unwrap();
    let st: String = row.get(0);
    assert_eq!(st, "pending", "marked for retry, not left running");
    let srv = env.start("server2.log").await;
    let done = srv.wait_for(&path, &["completed", "failed"], 240).await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[test]
fn openapi_documents_exactly_the_routes() {
    let doc: serde_json::Value = serde_json::from_str(backup_server::OPENAPI).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            documented.push((m.to_uppercase(), path.clone()));
            assert!(
                op["x-cli-command"].is_string(),
                "{m} {path} names its CLI command"
            );
            let public = op.get("security").is_some_and(|s| s == &json!([]));
            let route = backup_server::routes::ROUTES
                .iter()
                .find(|r| r.method == m.to_uppercase() && r.path == path);
            if let Some(r) = route {
                assert_eq!(
                    public,
                    r.access == backup_server::routes::Access::Public,
                    "{m} {path}: auth documented"
                );
                let write = r.access == backup_server::routes::Access::Write;
                assert_eq!(
                    op["x-access"] == "write",
                    write,
                    "{m} {path}: access documented"
                );
            }
        }
    }
    let mut routed: Vec<(String, String)> = backup_server::routes::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed, "OpenAPI paths == route table");
}

#[test]
fn docs_api_md_is_generated_from_openapi() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = backup_server::apidoc::markdown(backup_server::OPENAPI);
    assert!(
        committed == generated,
        "docs/api.md is stale: run `bash docs/gen-api-md.sh`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_configured_certificate() {
    // A self-signed certificate for localhost, made with openssl.
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl is needed for the TLS test");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let env = Env::new(&format!(
        "  tls: {{cert: {d}/cert.pem, key: {d}/key.pem}}\n",
        d = dir.path().display()
    ))
    .await;
    std::fs::copy(dir.path().join("cert.pem"), env.path("cert.pem")).unwrap();
    let srv = env.start("server.log").await;
    assert!(srv.base.starts_with("https://"));
    let (code, st) = srv.get("/api/v1/backup/status").await;
    assert_eq!(code, 200, "{st}");
    // Plain HTTP on the TLS port does not get an answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", env.port))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
