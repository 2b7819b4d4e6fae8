//! Catalog, scheduler, retention, events and health against real components: the machine's
//! PostgreSQL (a throwaway database per test, `dbm_test_<random>`, dropped afterwards; admin
//! URL from `DBM_TEST_PG_ADMIN`, default `postgres://postgres@127.0.0.1:5432/postgres`), real
//! repositories in temp folders, real backups, and a real HTTP receiver for webhooks.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backup_core::catalog::{
    self, postgres::PgCatalog, Catalog, CatalogOptions, JobFilter, JobStatus, JobType, KeepPolicy,
    NewSchedule,
};
use backup_core::config::{Config, WebhookConfig};
use backup_core::engine::check::{check, CheckOptions};
use backup_core::events::{self, EventBus};
use backup_core::health::{self, HealthOptions, HealthStatus};
use backup_core::progress::NoProgress;
use backup_core::scheduler::{CronScheduler, JobRequest, ManualClock, Scheduler, SchedulerOptions};
use backup_core::{Id, Repository};
use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

fn admin_url() -> String {
    std::env::var("DBM_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A throwaway database, dropped (with its connections) when the guard goes.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        let name = format!("dbm_test_{}", uuid::Uuid::new_v4().simple());
        let (c, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL (DBM_TEST_PG_ADMIN)");
        tokio::spawn(conn);
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let base = admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A fresh runtime on its own thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            })
        })
        .join();
    }
}

async fn pg(db: &TestDb) -> Arc<dyn Catalog> {
    catalog::open(&CatalogOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await
    .expect("open PostgreSQL catalog")
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn opts(owner: &str) -> SchedulerOptions {
    SchedulerOptions {
        owner: owner.into(),
        concurrency: 2,
        max_retries: 0,
        retry_backoff: Duration::seconds(60),
        ..Default::default()
    }
}

fn sched(
    cat: Arc<dyn Catalog>,
    repo: Arc<Repository>,
    cfg: Config,
    bus: EventBus,
    clock: Arc<ManualClock>,
    o: SchedulerOptions,
) -> Arc<CronScheduler> {
    Arc::new(CronScheduler::new(cat, repo, cfg, bus, clock, o))
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn files_spec(p: &Path) -> String {
    format!("files:{}", p.display())
}

fn tagged_job(s: &backup_core::Snapshot) -> Option<String> {
    s.tags
        .iter()
        .find_map(|t| t.strip_prefix("job:").map(str::to_string))
}

// ---------------------------------------------------------------------------------------

#[test]
fn schema_applies_twice_as_a_no_op_with_the_prd_columns() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        let a = PgCatalog::connect(&db.url, 2).await.expect("first apply");
        let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let describe = || async {
            let rows = c
                .query(
                    "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default
                     FROM information_schema.columns WHERE table_schema = 'public'
                     ORDER BY table_name, ordinal_position",
                    &[],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    (0..6)
                        .map(|i| r.get::<_, Option<String>>(i).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect::<Vec<_>>()
        };
        let before = describe().await;
        a.apply_schema().await.expect("second apply");
        let _b = PgCatalog::connect(&db.url, 2).await.expect("third apply");
        assert_eq!(before, describe().await, "applying schema.sql again changed the schema");
        let versions: i64 = c
            .query_one("SELECT count(*) FROM schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, 1);

        // The PRD's data models: table -> column -> type.
        let prd: &[(&str, &[(&str, &str)])] = &[
            (
                "backup_jobs",
                &[
                    ("id", "uuid"),
                    ("type", "text"),
                    ("target", "text"),
                    ("target_identifier", "text"),
                    ("status", "text"),
                    ("started_at", "timestamptz"),
                    ("completed_at", "timestamptz"),
                    ("size_bytes", "int8"),
                    ("compression_ratio", "float8"),
                    ("storage_path", "text"),
                    ("checksum", "text"),
                    ("retention_until", "timestamptz"),
                    ("metadata", "jsonb"),
                ],
            ),
            (
                "backup_schedules",
                &[
                    ("id", "uuid"),
                    ("name", "text"),
                    ("cron_expression", "text"),
                    ("backup_type", "text"),
                    ("targets", "_text"),
                    ("retention_days", "int4"),
                    ("enabled", "bool"),
                    ("last_run", "timestamptz"),
                    ("next_run", "timestamptz"),
                    ("created_by", "text"),
                ],
            ),
            (
                "restore_points",
                &[
                    ("id", "uuid"),
                    ("name", "text"),
                    ("backup_job_ids", "_uuid"),
                    ("created_at", "timestamptz"),
                    ("description", "text"),
                    ("verified", "bool"),
                    ("verification_date", "timestamptz"),
                ],
            ),
        ];
        let have: BTreeMap<(String, String), String> = before
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                ((f[0].to_string(), f[1].to_string()), f[3].to_string())
            })
            .collect();
        for (table, cols) in prd {
            for (col, ty) in *cols {
                assert_eq!(
                    have.get(&(table.to_string(), col.to_string())).map(String::as_str),
                    Some(*ty),
                    "{table}.{col} should exist with type {ty}"
                );
            }
        }
        for extra in ["restore_jobs", "audit_log", "schema_version"] {
            assert!(
                have.keys().any(|(t, _)| t == extra),
                "table {extra} is missing"
            );
        }
    });
}

async fn minute_schedule_runs_backups(cat: Arc<dyn Catalog>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a.txt"), b"first");
    let repo = support::init_repo(&tmp.path().join("repo")).await;
    let clock = ManualClock::new(utc("2030-01-01T00:00:30Z"));
    let s = sched(
        cat.clone(),
        repo.clone(),
        Config::default(),
        EventBus::new(),
        clock.clone(),
        opts("a"),
    );
    let sc = s
        .create_schedule(
            NewSchedule {
                name: "every-minute".into(),
                cron_expression: "* * * * *".into(),
                targets: vec![files_spec(&src)],
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(sc.next_run, Some(utc("2030-01-01T00:01:00Z")));
    // Nothing is due yet.
    let r = s.tick().await.unwrap();
    assert!(r.fired.is_empty() && r.ran.is_empty(), "{r:?}");
    let mut jobs = Vec::new();
    for i in 1..=3 {
        clock.advance(Duration::minutes(1));
        write(&src.join("a.txt"), format!("content {i}").as_bytes());
        let r = s.tick().await.unwrap();
        assert_eq!(r.fired, vec!["every-minute".to_string()], "{r:?}");
        assert_eq!(r.ran.len(), 1, "{r:?}");
        let j = cat.get_job(r.ran[0]).await.unwrap();
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
        assert_eq!(j.schedule_id, Some(sc.id));
        jobs.push(j);
        let stored = cat.get_schedule("every-minute").await.unwrap();
        assert_eq!(stored.last_run, Some(clock.now_utc()));
        assert_eq!(
            stored.next_run,
            Some(clock.now_utc() + Duration::seconds(30))
        );
    }
    // Each job's snapshot exists, holds the content of its minute and names its job.
    for (i, j) in jobs.iter().enumerate() {
        let id = Id::parse(j.storage_path.as_deref().unwrap()).unwrap();
        let snap = repo.load_snapshot(&id).await.expect("snapshot exists");
        assert_eq!(tagged_job(&snap), Some(j.id.to_string()));
        assert_eq!(j.checksum.as_deref(), Some(snap.tree.to_hex().as_str()));
        assert_eq!(
            j.size_bytes,
            Some(format!("content {}", i + 1).len() as i64)
        );
    }
    assert_eq!(repo.snapshots().await.unwrap().len(), 3);
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        backup_core::scheduler::Clock::now(self)
    }
}

#[test]
fn a_minute_schedule_produces_real_backups_postgres() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        minute_schedule_runs_backups(pg(&db).await).await;
    });
}

#[test]
fn a_minute_schedule_produces_real_backups_embedded() {
    support::runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let cat = catalog::open(&CatalogOptions {
            dir: Some(tmp.path().join("catalog")),
            ..Default::default()
        })
        .await
        .unwrap();
        minute_schedule_runs_backups(cat).await;
    });
}

#[test]
fn two_instances_run_each_of_20_jobs_exactly_once() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("f"), &vec![7u8; 100_000]);
        let repo_dir = tmp.path().join("repo");
        let repo_a = support::init_repo(&repo_dir).await;
        let store = backup_core::store::open_store(repo_dir.to_str().unwrap(), false).unwrap();
        let repo_b = Arc::new(Repository::open(store, support::PASSWORD).await.unwrap());
        let clock = ManualClock::new(utc("2030-01-01T00:00:00Z"));
        let mut oa = opts("instance-a");
        oa.concurrency = 3;
        let mut ob = opts("instance-b");
        ob.concurrency = 3;
        let a = sched(
            pg(&db).await,
            repo_a,
            Config::default(),
            EventBus::new(),
            clock.clone(),
            oa,
        );
        let b = sched(
            pg(&db).await,
            repo_b,
            Config::default(),
            EventBus::new(),
            clock.clone(),
            ob,
        );
        let mut ids = BTreeSet::new();
        for _ in 0..20 {
            let jobs = a
                .submit(
                    JobRequest {
                        targets: vec![files_spec(&src)],
                        ..Default::default()
                    },
                    "test",
                )
                .await
                .unwrap();
            ids.insert(jobs[0].id);
        }
        let (ra, rb) = tokio::join!(a.run_pending(), b.run_pending());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let sa: HashSet<_> = ra.iter().collect();
        let sb: HashSet<_> = rb.iter().collect();
        assert!(sa.is_disjoint(&sb), "a job ran on both instances");
        assert_eq!(ra.len() + rb.len(), 20, "a: {} b: {}", ra.len(), rb.len());
        assert!(
            !ra.is_empty() && !rb.is_empty(),
            "one instance did all the work"
        );
        let done = a
            .catalog()
            .list_jobs(&JobFilter {
                statuses: vec![JobStatus::Completed],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(done.len(), 20);
        // The repository holds exactly one snapshot per job.
        let snaps = a.repository().snapshots().await.unwrap();
        assert_eq!(snaps.len(), 20);
        let tagged: BTreeSet<uuid::Uuid> = snaps
            .iter()
            .map(|s| tagged_job(s).unwrap().parse().unwrap())
            .collect();
        assert_eq!(tagged, ids);
        let owners: HashSet<String> = done.iter().filter_map(|j| j.owner.clone()).collect();
        assert_eq!(owners.len(), 2, "{owners:?}");
    });
}

/// Fires schedules minute by minute from `from` to `to` (jobs are queued, not run) and
/// returns the jobs' creation times per schedule name.
async fn fire_minutes(
    s: &CronScheduler,
    clock: &ManualClock,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    clock.set(from);
    let mut out: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    while clock.now_utc() < to {
        let (fired, _) = s.fire_due().await.unwrap();
        for f in fired {
            out.entry(f).or_default().push(clock.now_utc());
        }
        clock.advance(Duration::minutes(1));
    }
    out
}

#[test]
fn dst_berlin_2025_daily_once_and_hourly_per_real_hour() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let clock = ManualClock::new(utc("2025-03-29T12:00:00Z"));
        let s = sched(
            pg(&db).await,
            repo,
            Config::default(),
            EventBus::new(),
            clock.clone(),
            opts("a"),
        );
        for (name, cron) in [("daily-0230", "30 2 * * *"), ("hourly", "0 * * * *")] {
            s.create_schedule(
                NewSchedule {
                    name: name.into(),
                    cron_expression: cron.into(),
                    timezone: Some("Europe/Berlin".into()),
                    targets: vec!["files:/srv/data".into()],
                    ..Default::default()
                },
                "test",
            )
            .await
            .unwrap();
        }
        let berlin = chrono_tz::Europe::Berlin;
        let local_day = |t: &DateTime<Utc>| {
            berlin
                .from_utc_datetime(&t.naive_utc())
                .date_naive()
                .to_string()
        };
        for (from, to, day, daily_at, hours) in [
            (
                "2025-03-29T12:00:00Z",
                "2025-03-31T00:00:00Z",
                "2025-03-30",
                "2025-03-30T01:00:00Z",
                23,
            ),
            (
                "2025-10-25T12:00:00Z",
                "2025-10-27T00:00:00Z",
                "2025-10-26",
                "2025-10-26T00:30:00Z",
                25,
            ),
        ] {
            // Re-plan both schedules from the start of the window.
            clock.set(utc(from));
            for n in ["daily-0230", "hourly"] {
                s.set_enabled(n, true, "test").await.unwrap();
            }
            let fired = fire_minutes(&s, &clock, utc(from), utc(to)).await;
            let daily: Vec<_> = fired["daily-0230"]
                .iter()
                .filter(|t| local_day(t) == day)
                .collect();
            assert_eq!(daily, vec![&utc(daily_at)], "02:30 on {day}");
            let hourly: Vec<_> = fired["hourly"]
                .iter()
                .filter(|t| local_day(t) == day)
                .collect();
            assert_eq!(hourly.len(), hours, "hourly runs on {day}: {hourly:?}");
            for w in hourly.windows(2) {
                assert_eq!(*w[1] - *w[0], Duration::hours(1), "{hourly:?}");
            }
        }
        // The firings queued real job records.
        let jobs = s.catalog().list_jobs(&JobFilter::default()).await.unwrap();
        assert!(jobs.len() >= 2 + 23 + 25, "{}", jobs.len());
    });
}

/// A tiny HTTP/1.1 server recording each request's headers (lower-case) and body.
type Deliveries = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<u8>)>>>;

async fn receiver() -> (String, Deliveries) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?token=x", listener.local_addr().unwrap());
    let got: Deliveries = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = tokio::io::BufReader::new(r);
                loop {
                    let mut headers = BTreeMap::new();
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let n: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; n];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    g.lock().unwrap().push((headers, body));
                    if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, got)
}

#[test]
fn a_failing_target_retries_then_fails_and_a_signed_webhook_arrives() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let (url, got) = receiver().await;
        let secret = "webhook-secret";
        let cfg = Config {
            webhooks: vec![WebhookConfig {
                url,
                secret: Some(secret.into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let cat = pg(&db).await;
        // LISTEN on the NOTIFY channel.
        let (lc, mut lconn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut msgs = futures::stream::poll_fn(move |cx| lconn.poll_message(cx));
            while let Some(Ok(m)) = msgs.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = m {
                    let _ = ntx.send(n.payload().to_string());
                }
            }
        });
        lc.batch_execute("LISTEN backup_events").await.unwrap();

        let bus = EventBus::from_config(&cfg, &*cat).unwrap();
        let clock = ManualClock::new(utc("2030-01-01T00:00:00Z"));
        let mut o = opts("a");
        o.max_retries = 2;
        let s = sched(cat.clone(), repo, cfg, bus.clone(), clock.clone(), o);
        let missing = tmp.path().join("does-not-exist");
        let job = s
            .submit(
                JobRequest {
                    targets: vec![files_spec(&missing)],
                    job_type: Some(JobType::Full),
                    ..Default::default()
                },
                "test",
            )
            .await
            .unwrap()
            .remove(0);
        assert_eq!(job.max_retries, 2);
        // Attempt 1 fails; the retry waits for its backoff (60 s).
        assert_eq!(s.tick().await.unwrap().ran, vec![job.id]);
        let j = cat.get_job(job.id).await.unwrap();
        assert_eq!((j.status, j.retry_count), (JobStatus::Pending, 1));
        assert_eq!(j.not_before, Some(clock.now_utc() + Duration::seconds(60)));
        assert!(
            s.tick().await.unwrap().ran.is_empty(),
            "retried before its backoff"
        );
        // Attempt 2 after 60 s; attempt 3 after another 120 s (exponential).
        clock.advance(Duration::seconds(60));
        assert_eq!(s.tick().await.unwrap().ran, vec![job.id]);
        let j = cat.get_job(job.id).await.unwrap();
        assert_eq!((j.status, j.retry_count), (JobStatus::Pending, 2));
        assert_eq!(j.not_before, Some(clock.now_utc() + Duration::seconds(120)));
        clock.advance(Duration::seconds(120));
        assert_eq!(s.tick().await.unwrap().ran, vec![job.id]);
        let j = cat.get_job(job.id).await.unwrap();
        assert_eq!(j.status, JobStatus::Failed);
        assert_eq!(
            j.retry_count, 2,
            "retry_count equals the configured retries"
        );
        assert!(
            j.error.as_deref().unwrap().contains("does-not-exist"),
            "{:?}",
            j.error
        );
        assert_eq!(j.metadata["attempt_errors"].as_array().unwrap().len(), 3);
        clock.advance(Duration::hours(1));
        assert!(
            s.tick().await.unwrap().ran.is_empty(),
            "a failed job ran again"
        );
        bus.flush().await;

        // One backup.job.failed delivery, signed with the secret, with the PRD payload.
        let deliveries = got.lock().unwrap().clone();
        let failed: Vec<_> = deliveries
            .iter()
            .filter(|(h, _)| h.get("x-dbm-event").map(String::as_str) == Some(events::JOB_FAILED))
            .collect();
        assert_eq!(failed.len(), 1, "{deliveries:?}");
        let (h, body) = failed[0];
        assert!(events::verify_signature(
            secret.as_bytes(),
            body,
            &h["x-dbm-signature"]
        ));
        assert!(!events::verify_signature(
            b"other",
            body,
            &h["x-dbm-signature"]
        ));
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["event"], events::JOB_FAILED);
        assert_eq!(v["payload"]["job_id"], job.id.to_string());
        assert_eq!(v["payload"]["retry_count"], 2);
        assert!(v["payload"]["error"]
            .as_str()
            .unwrap()
            .contains("does-not-exist"));
        // Every attempt was announced as started.
        let started = deliveries
            .iter()
            .filter(|(h, _)| h.get("x-dbm-event").map(String::as_str) == Some(events::JOB_STARTED))
            .count();
        assert_eq!(started, 3);
        // The same event went out on NOTIFY backup_events.
        let mut saw = false;
        while let Ok(Some(p)) =
            tokio::time::timeout(std::time::Duration::from_secs(5), nrx.recv()).await
        {
            if p.contains(events::JOB_FAILED) && p.contains(&job.id.to_string()) {
                saw = true;
                break;
            }
        }
        assert!(saw, "no NOTIFY backup_events for the failed job");

        // Health: the failure makes the target degraded, with a reason naming it.
        let h = health::health(&*cat, None, &HealthOptions::default(), clock.now_utc())
            .await
            .unwrap();
        assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
        assert!(h
            .reasons
            .iter()
            .any(|r| r.check == "failures" && r.message.contains("does-not-exist")));
        let audit = cat.list_audit(100).await.unwrap();
        assert!(audit
            .iter()
            .any(|a| a.action == "backup" && a.object == job.id.to_string()));
    });
}

#[test]
fn a_job_left_running_by_a_dead_worker_is_failed_and_retried() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        let cat = pg(&db).await;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("x"), b"data");
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let clock = ManualClock::new(utc("2030-01-01T00:00:00Z"));
        let mut o = opts("b");
        o.max_retries = 1;
        let s = sched(
            cat.clone(),
            repo.clone(),
            Config::default(),
            EventBus::new(),
            clock.clone(),
            o,
        );
        // A worker on another host claimed a job and stopped sending heartbeats.
        let job = s
            .submit(
                JobRequest {
                    targets: vec![files_spec(&src)],
                    ..Default::default()
                },
                "test",
            )
            .await
            .unwrap()
            .remove(0);
        let claimed = cat
            .claim_job("otherhost:1:dead", clock.now_utc())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, job.id);
        // Within the heartbeat window it is left alone.
        clock.advance(Duration::seconds(30));
        let r = s.tick().await.unwrap();
        assert!(r.recovered.is_empty() && r.ran.is_empty(), "{r:?}");
        assert_eq!(
            cat.get_job(job.id).await.unwrap().status,
            JobStatus::Running
        );
        // After it, the job is failed, queued again and run by this instance.
        clock.advance(Duration::seconds(60));
        let r = s.tick().await.unwrap();
        assert_eq!(r.recovered, vec![job.id]);
        assert_eq!(r.ran, vec![job.id]);
        let j = cat.get_job(job.id).await.unwrap();
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(j.retry_count, 1);
        assert!(j.metadata["attempt_errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"));
        assert!(repo
            .load_snapshot(&Id::parse(j.storage_path.as_deref().unwrap()).unwrap())
            .await
            .is_ok());
    });
}

#[test]
fn retention_forgets_what_the_policy_says_keeps_restore_points_and_prunes_clean() {
    support::runtime().block_on(async {
        let db = TestDb::create().await;
        let cat = pg(&db).await;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let clock = ManualClock::new(utc("2030-01-01T00:00:30Z"));
        let s = sched(
            cat.clone(),
            repo.clone(),
            Config::default(),
            EventBus::new(),
            clock.clone(),
            opts("a"),
        );
        s.create_schedule(
            NewSchedule {
                name: "keep-two".into(),
                cron_expression: "* * * * *".into(),
                targets: vec![files_spec(&src)],
                keep: KeepPolicy {
                    keep_last: Some(2),
                    ..Default::default()
                },
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
        let mut rng = support_rng(1);
        let mut snaps = Vec::new();
        for i in 0..5 {
            // Unique data per run, so forgotten snapshots leave data for prune to remove.
            let mut data = vec![0u8; 200_000];
            rng(&mut data);
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("data.bin"), &data).unwrap();
            clock.advance(Duration::minutes(1));
            let r = s.tick().await.unwrap();
            let j = cat.get_job(r.ran[0]).await.unwrap();
            assert_eq!(j.status, JobStatus::Completed, "{j:?}");
            snaps.push(j.storage_path.clone().unwrap());
            if i == 0 {
                catalog::create_restore_point(
                    &*cat,
                    "before-migration",
                    vec![snaps[0].clone()],
                    None,
                    "test",
                )
                .await
                .unwrap();
            }
        }
        let left: BTreeSet<String> = repo
            .snapshots()
            .await
            .unwrap()
            .iter()
            .map(|s| s.id.to_hex())
            .collect();
        let want: BTreeSet<String> = [&snaps[0], &snaps[3], &snaps[4]]
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(left, want, "keep_last 2 plus the restore point's snapshot");
        let audit = cat.list_audit(200).await.unwrap();
        let forgotten: BTreeSet<String> = audit
            .iter()
            .filter(|a| a.action == "forget")
            .flat_map(|a| {
                a.details["snapshots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(
            forgotten,
            [&snaps[1], &snaps[2]].into_iter().cloned().collect()
        );
        let pruned: u64 = audit
            .iter()
            .filter(|a| a.action == "prune")
            .map(|a| a.details["blobs_removed"].as_u64().unwrap())
            .sum();
        assert!(pruned > 0, "prune removed nothing");
        let report = check(
            &repo,
            &CheckOptions {
                read_data: true,
                ..Default::default()
            },
            &NoProgress,
        )
        .await
        .unwrap();
        assert!(report.ok && report.errors.is_empty(), "{report:?}");
        // The forgotten snapshots' jobs say so.
        let j = cat
            .list_jobs(&JobFilter::default())
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.storage_path.as_deref() == Some(snaps[1].as_str()))
            .unwrap();
        assert!(j.metadata.get("forgotten_at").is_some());
    });
}

fn support_rng(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

#[test]
fn restore_drill_verifies_and_records_on_the_restore_point() {
    support::runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let cat = catalog::open(&CatalogOptions {
            dir: Some(tmp.path().join("catalog")),
            ..Default::default()
        })
        .await
        .unwrap();
        let src = tmp.path().join("src");
        let mut data = vec![0u8; 300_000];
        support_rng(7)(&mut data);
        write(&src.join("a/b.bin"), &data);
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let clock = ManualClock::new(utc("2030-01-01T00:00:00Z"));
        let mut o = opts("a");
        o.scratch_dir = tmp.path().join("scratch");
        let s = sched(
            cat.clone(),
            repo.clone(),
            Config::default(),
            EventBus::new(),
            clock.clone(),
            o,
        );
        s.submit(
            JobRequest {
                targets: vec![files_spec(&src)],
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
        let ran = s.run_pending().await.unwrap();
        let job = cat.get_job(ran[0]).await.unwrap();
        let rj = s.restore_drill(&[], "test").await.unwrap();
        assert_eq!(rj.status, JobStatus::Completed, "{rj:?}");
        assert!(rj.drill);
        assert_eq!(rj.snapshot_ids, vec![job.storage_path.clone().unwrap()]);
        assert_eq!(rj.metadata["results"][0]["files_verified"], 1);
        let rp = cat.get_restore_point("restore-drill").await.unwrap();
        assert!(rp.verified);
        assert_eq!(rp.verification_date, Some(clock.now_utc()));
        assert_eq!(rp.backup_job_ids, vec![job.id]);
        // The scratch copy is gone.
        let left: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("scratch"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");

        // Damage every pack (the data lives in packs; the tree may be cached): the next drill
        // fails and the restore point says so.
        for p in support::walk(&tmp.path().join("repo/data"))
            .into_iter()
            .filter(|p| p.is_file())
        {
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n / 2] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        }
        clock.advance(Duration::days(7));
        let rj = s.restore_drill(&[], "test").await.unwrap();
        assert_eq!(rj.status, JobStatus::Failed, "{rj:?}");
        let rp = cat.get_restore_point("restore-drill").await.unwrap();
        assert!(!rp.verified);
        let h = health::health(&*cat, None, &HealthOptions::default(), clock.now_utc())
            .await
            .unwrap();
        assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
    });
}

#[test]
fn restore_requests_restore_a_restore_point_and_the_run_loop_stops_gracefully() {
    support::runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let cat = catalog::open(&CatalogOptions {
            dir: Some(tmp.path().join("catalog")),
            ..Default::default()
        })
        .await
        .unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write(&a.join("one.txt"), b"first target");
        write(&b.join("two.txt"), b"second target");
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let clock = ManualClock::new(utc("2030-01-01T00:00:00Z"));
        let mut o = opts("a");
        o.poll_every = std::time::Duration::from_millis(50);
        let s = sched(
            cat.clone(),
            repo,
            Config::default(),
            EventBus::new(),
            clock,
            o,
        );
        // The run loop picks up submitted jobs; a shutdown lets it finish and return.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn(s.clone().run(async move {
            let _ = stop_rx.await;
        }));
        let jobs = s
            .submit(
                JobRequest {
                    targets: vec![files_spec(&a), files_spec(&b)],
                    ..Default::default()
                },
                "test",
            )
            .await
            .unwrap();
        assert_eq!(jobs.len(), 2, "one job per target");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let done = loop {
            let done = cat
                .list_jobs(&JobFilter {
                    statuses: vec![JobStatus::Completed],
                    ..Default::default()
                })
                .await
                .unwrap();
            if done.len() == 2 {
                break done;
            }
            assert!(std::time::Instant::now() < deadline, "jobs did not run");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        stop_tx.send(()).unwrap();
        runner.await.unwrap().unwrap();
        let ids: Vec<String> = done
            .iter()
            .map(|j| j.storage_path.clone().unwrap())
            .collect();
        catalog::create_restore_point(&*cat, "both", ids, None, "test")
            .await
            .unwrap();
        let dest = tmp.path().join("restored");
        let req = backup_core::scheduler::RestoreRequest {
            restore_point_id: Some("both".into()),
            destination: Some(dest.display().to_string()),
            verify_before_restore: true,
            targets: vec![files_spec(&b)],
            ..Default::default()
        };
        let rj = s.create_restore(&req, "test").await.unwrap();
        assert_eq!(rj.status, JobStatus::Pending);
        assert_eq!(rj.snapshot_ids.len(), 1, "only target b");
        let rj = s.run_restore(rj).await.unwrap();
        assert_eq!(rj.status, JobStatus::Completed, "{rj:?}");
        let restored = dest.join(b.strip_prefix("/").unwrap()).join("two.txt");
        assert_eq!(std::fs::read(restored).unwrap(), b"second target");
        assert!(!dest.join(a.strip_prefix("/").unwrap()).exists());
        assert_eq!(
            cat.get_restore_job(rj.id).await.unwrap().status,
            JobStatus::Completed
        );
        // A relative destination is refused.
        let bad = backup_core::scheduler::RestoreRequest {
            restore_point_id: Some("both".into()),
            destination: Some("relative".into()),
            ..Default::default()
        };
        assert!(s.create_restore(&bad, "test").await.is_err());
    });
}

#[test]
fn consumed_events_queue_backups() {
    support::runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let cat = catalog::open(&CatalogOptions {
            dir: Some(tmp.path().join("catalog")),
            ..Default::default()
        })
        .await
        .unwrap();
        let scenarios = tmp.path().join("scenarios");
        write(&scenarios.join("shop/.vrooli/service.json"), b"{}");
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let cfg = Config {
            scenarios_dir: Some(scenarios.clone()),
            ..Default::default()
        };
        let clock = ManualClock::new(utc("2030-01-01T00:00:00Z"));
        let s = sched(
            cat.clone(),
            repo.clone(),
            cfg,
            EventBus::new(),
            clock,
            opts("a"),
        );
        let ev = |name: &str, payload: serde_json::Value| backup_core::events::IncomingEvent {
            event: name.into(),
            payload,
        };
        let jobs = s
            .handle_event(
                &ev("scenario.deployed", serde_json::json!({"scenario": "shop"})),
                "n8n",
            )
            .await
            .unwrap();
        assert_eq!(
            jobs[0].target_identifier,
            files_spec(&scenarios.join("shop"))
        );
        let jobs_pg = s
            .handle_event(
                &ev(
                    "postgres.schema_updated",
                    serde_json::json!({"database": "shop"}),
                ),
                "n8n",
            )
            .await
            .unwrap();
        assert_eq!(jobs_pg[0].target_identifier, "postgres:shop");
        assert_eq!(jobs_pg[0].target, "postgres");
        assert!(s
            .handle_event(
                &ev(
                    "scenario.deployed",
                    serde_json::json!({"scenario": "../etc"})
                ),
                "n8n"
            )
            .await
            .is_err());
        assert!(s
            .handle_event(&ev("other.event", serde_json::json!({})), "n8n")
            .await
            .is_err());
        s.run_pending().await.unwrap();
        let j = cat.get_job(jobs[0].id).await.unwrap();
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
        let snap = repo
            .load_snapshot(&Id::parse(j.storage_path.as_deref().unwrap()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            snap.paths,
            vec![scenarios.join("shop").display().to_string()]
        );
    });
}
