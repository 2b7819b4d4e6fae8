//! The PostgreSQL catalog: tokio-postgres through a deadpool-postgres pool.
//!
//! The schema is `initialization/postgres/schema.sql` (compiled in). [`PgCatalog::connect`]
//! applies it in one transaction holding `pg_advisory_xact_lock(SCHEMA_LOCK)` (PostgreSQL docs,
//! "Advisory Lock Functions"), so instances starting together apply it once; every statement
//! is idempotent, so applying it again is a no-op.
//!
//! Jobs are claimed with `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL docs, "The Locking
//! Clause"): each pending job goes to exactly one of the instances polling the table.
//! Schedule firings are claimed with a compare-and-set on `next_run`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::*;
use crate::events::{Event, EventSink};

/// The catalog schema, `initialization/postgres/schema.sql`.
pub const SCHEMA_SQL: &str = include_str!("../../../../initialization/postgres/schema.sql");
/// The schema version this program writes (row in `schema_version`).
pub const SCHEMA_VERSION: i32 = 1;
/// Advisory lock key held while the schema is applied.
pub const SCHEMA_LOCK: i64 = 7_305_166_102_113_296_641;
/// `NOTIFY` channel of published events.
pub const NOTIFY_CHANNEL: &str = "backup_events";

/// See the module docs.
#[derive(Clone)]
pub struct PgCatalog {
    pool: Pool,
    location: String,
}

const JOB_COLS: &str = "id, type, target, target_identifier, status, started_at, completed_at, \
    size_bytes, compression_ratio, storage_path, checksum, retention_until, metadata, created_at, \
    not_before, retry_count, max_retries, error, schedule_id, requested_by, owner, heartbeat_at";
const SCHED_COLS: &str = "id, name, cron_expression, backup_type, targets, retention_days, \
    enabled, last_run, next_run, created_by, timezone, keep_policy, action, created_at";
const RP_COLS: &str = "id, name, backup_job_ids, created_at, description, verified, \
    verification_date, snapshot_ids, created_by";
const RJ_COLS: &str = "id, restore_point_id, backup_job_id, snapshot_ids, targets, destination, \
    status, drill, created_at, started_at, completed_at, error, requested_by, metadata";

fn db_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::catalog(what.to_string(), e)
}

fn pg_err(loc: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return Error::Conflict(format!(
                "{} already exists ({})",
                db.table().unwrap_or("record"),
                db.constraint().unwrap_or("")
            ));
        }
        return Error::catalog(loc.to_string(), db.message());
    }
    Error::catalog(loc.to_string(), e)
}

fn parse<T: std::str::FromStr<Err = Error>>(s: String) -> Result<T> {
    s.parse()
}

fn job_from_row(r: &Row) -> Result<Job> {
    let g = |e: tokio_postgres::Error| db_err("backup_jobs row", e);
    Ok(Job {
        id: r.try_get("id").map_err(g)?,
        job_type: parse(r.try_get("type").map_err(g)?)?,
        target: r.try_get("target").map_err(g)?,
        target_identifier: r.try_get("target_identifier").map_err(g)?,
        status: parse(r.try_get("status").map_err(g)?)?,
        started_at: r.try_get("started_at").map_err(g)?,
        completed_at: r.try_get("completed_at").map_err(g)?,
        size_bytes: r.try_get("size_bytes").map_err(g)?,
        compression_ratio: r.try_get("compression_ratio").map_err(g)?,
        storage_path: r.try_get("storage_path").map_err(g)?,
        checksum: r.try_get("checksum").map_err(g)?,
        retention_until: r.try_get("retention_until").map_err(g)?,
        metadata: r.try_get("metadata").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        not_before: r.try_get("not_before").map_err(g)?,
        retry_count: r.try_get("retry_count").map_err(g)?,
        max_retries: r.try_get("max_retries").map_err(g)?,
        error: r.try_get("error").map_err(g)?,
        schedule_id: r.try_get("schedule_id").map_err(g)?,
        requested_by: r.try_get("requested_by").map_err(g)?,
        owner: r.try_get("owner").map_err(g)?,
        heartbeat_at: r.try_get("heartbeat_at").map_err(g)?,
    })
}

fn schedule_from_row(r: &Row) -> Result<Schedule> {
    let g = |e: tokio_postgres::Error| db_err("backup_schedules row", e);
    let keep: serde_json::Value = r.try_get("keep_policy").map_err(g)?;
    let action: String = r.try_get("action").map_err(g)?;
    Ok(Schedule {
        id: r.try_get("id").map_err(g)?,
        name: r.try_get("name").map_err(g)?,
        cron_expression: r.try_get("cron_expression").map_err(g)?,
        timezone: r.try_get("timezone").map_err(g)?,
        backup_type: parse(r.try_get("backup_type").map_err(g)?)?,
        targets: r.try_get("targets").map_err(g)?,
        retention_days: r.try_get("retention_days").map_err(g)?,
        keep: serde_json::from_value(keep).unwrap_or_default(),
        enabled: r.try_get("enabled").map_err(g)?,
        action: if action == "restore_drill" {
            ScheduleAction::RestoreDrill
        } else {
            ScheduleAction::Backup
        },
        last_run: r.try_get("last_run").map_err(g)?,
        next_run: r.try_get("next_run").map_err(g)?,
        created_by: r.try_get("created_by").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
    })
}

fn rp_from_row(r: &Row) -> Result<RestorePoint> {
    let g = |e: tokio_postgres::Error| db_err("restore_points row", e);
    Ok(RestorePoint {
        id: r.try_get("id").map_err(g)?,
        name: r.try_get("name").map_err(g)?,
        backup_job_ids: r.try_get("backup_job_ids").map_err(g)?,
        snapshot_ids: r.try_get("snapshot_ids").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        description: r.try_get("description").map_err(g)?,
        verified: r.try_get("verified").map_err(g)?,
        verification_date: r.try_get("verification_date").map_err(g)?,
        created_by: r.try_get("created_by").map_err(g)?,
    })
}

fn rj_from_row(r: &Row) -> Result<RestoreJob> {
    let g = |e: tokio_postgres::Error| db_err("restore_jobs row", e);
    Ok(RestoreJob {
        id: r.try_get("id").map_err(g)?,
        restore_point_id: r.try_get("restore_point_id").map_err(g)?,
        backup_job_id: r.try_get("backup_job_id").map_err(g)?,
        snapshot_ids: r.try_get("snapshot_ids").map_err(g)?,
        targets: r.try_get("targets").map_err(g)?,
        destination: r.try_get("destination").map_err(g)?,
        status: parse(r.try_get("status").map_err(g)?)?,
        drill: r.try_get("drill").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        started_at: r.try_get("started_at").map_err(g)?,
        completed_at: r.try_get("completed_at").map_err(g)?,
        error: r.try_get("error").map_err(g)?,
        requested_by: r.try_get("requested_by").map_err(g)?,
        metadata: r.try_get("metadata").map_err(g)?,
    })
}

fn action_str(a: ScheduleAction) -> &'static str {
    match a {
        ScheduleAction::Backup => "backup",
        ScheduleAction::RestoreDrill => "restore_drill",
    }
}

impl PgCatalog {
    /// Connects to `url` (a pool of at most `pool_size` connections) and applies the schema.
    ///
    /// Errors: [`Error::Catalog`] naming the URL without its password.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PgCatalog> {
        let location = redact_url(url);
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| db_err(&location, format!("bad database URL: {e}")))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(std::time::Duration::from_secs(10));
        }
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| db_err(&location, e))?;
        let c = PgCatalog { pool, location };
        c.apply_schema().await?;
        Ok(c)
    }

    /// The connection pool (for the server's own queries and `LISTEN`).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| db_err(&self.location, e))
    }

    /// Applies `schema.sql` under the advisory lock. Idempotent.
    pub async fn apply_schema(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c
            .transaction()
            .await
            .map_err(|e| pg_err(&self.location, e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| pg_err(&self.location, e))?;
        tx.batch_execute(SCHEMA_SQL)
            .await
            .map_err(|e| pg_err(&format!("{} (applying schema.sql)", self.location), e))?;
        let v: Option<i32> = tx
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await
            .map_err(|e| pg_err(&self.location, e))?
            .get(0);
        if v.unwrap_or(0) > SCHEMA_VERSION {
            return Err(db_err(
                &self.location,
                format!(
                    "schema version {} is newer than this program's ({SCHEMA_VERSION}): upgrade data-backup-manager",
                    v.unwrap_or(0)
                ),
            ));
        }
        tx.commit().await.map_err(|e| pg_err(&self.location, e))
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let c = self.client().await?;
        c.execute(sql, params)
            .await
            .map_err(|e| pg_err(&self.location, e))
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let c = self.client().await?;
        c.query(sql, params)
            .await
            .map_err(|e| pg_err(&self.location, e))
    }
}

/// Publishes events with `NOTIFY backup_events, '<json>'` (payloads over PostgreSQL's 8000-byte
/// limit are cut to the event name and id).
pub struct PgNotifySink {
    catalog: PgCatalog,
}

#[async_trait]
impl EventSink for PgNotifySink {
    fn name(&self) -> String {
        format!("postgres NOTIFY {NOTIFY_CHANNEL}")
    }

    async fn deliver(&self, event: &Event) -> Result<()> {
        let mut text = serde_json::to_string(event).unwrap_or_default();
        if text.len() > 7900 {
            text = serde_json::json!({"id": event.id, "event": event.event, "time": event.time, "truncated": true}).to_string();
        }
        self.catalog
            .exec("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &text])
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Catalog for PgCatalog {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn notify_sink(&self) -> Option<Arc<dyn EventSink>> {
        Some(Arc::new(PgNotifySink {
            catalog: self.clone(),
        }))
    }

    async fn insert_job(&self, j: &Job) -> Result<()> {
        let sql = format!(
            "INSERT INTO backup_jobs ({JOB_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)"
        );
        self.exec(
            &sql,
            &[
                &j.id,
                &j.job_type.as_str(),
                &j.target,
                &j.target_identifier,
                &j.status.as_str(),
                &j.started_at,
                &j.completed_at,
                &j.size_bytes,
                &j.compression_ratio,
                &j.storage_path,
                &j.checksum,
                &j.retention_until,
                &j.metadata,
                &j.created_at,
                &j.not_before,
                &j.retry_count,
                &j.max_retries,
                &j.error,
                &j.schedule_id,
                &j.requested_by,
                &j.owner,
                &j.heartbeat_at,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_job(&self, id: Uuid) -> Result<Job> {
        let rows = self
            .query(
                &format!("SELECT {JOB_COLS} FROM backup_jobs WHERE id = $1"),
                &[&id],
            )
            .await?;
        match rows.first() {
            Some(r) => job_from_row(r),
            None => Err(Error::NotFound(format!("job {id}"))),
        }
    }

    async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let limit = f.limit.map(|l| l as i64);
        let rows = self
            .query(
                &format!(
                    "SELECT {JOB_COLS} FROM backup_jobs
                     WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
                       AND ($2::text IS NULL OR target_identifier = $2)
                       AND ($3::timestamptz IS NULL OR created_at >= $3)
                       AND ($4::uuid IS NULL OR schedule_id = $4)
                     ORDER BY created_at DESC, id DESC
                     LIMIT $5"
                ),
                &[
                    &statuses,
                    &f.target_identifier,
                    &f.since,
                    &f.schedule_id,
                    &limit,
                ],
            )
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn update_job_if(
        &self,
        j: &Job,
        expect_status: JobStatus,
        expect_owner: Option<&str>,
    ) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE backup_jobs SET type=$2, target=$3, target_identifier=$4, status=$5,
                   started_at=$6, completed_at=$7, size_bytes=$8, compression_ratio=$9,
                   storage_path=$10, checksum=$11, retention_until=$12, metadata=$13,
                   not_before=$14, retry_count=$15, max_retries=$16, error=$17,
                   requested_by=$18, owner=$19, heartbeat_at=$20
                 WHERE id=$1 AND status=$21 AND owner IS NOT DISTINCT FROM $22",
                &[
                    &j.id,
                    &j.job_type.as_str(),
                    &j.target,
                    &j.target_identifier,
                    &j.status.as_str(),
                    &j.started_at,
                    &j.completed_at,
                    &j.size_bytes,
                    &j.compression_ratio,
                    &j.storage_path,
                    &j.checksum,
                    &j.retention_until,
                    &j.metadata,
                    &j.not_before,
                    &j.retry_count,
                    &j.max_retries,
                    &j.error,
                    &j.requested_by,
                    &j.owner,
                    &j.heartbeat_at,
                    &expect_status.as_str(),
                    &expect_owner,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn claim_job(&self, owner: &str, now: DateTime<Utc>) -> Result<Option<Job>> {
        let rows = self
            .query(
                &format!(
                    "UPDATE backup_jobs SET status='running', owner=$1, started_at=$2, heartbeat_at=$2
                     WHERE status='pending' AND id = (
                        SELECT id FROM backup_jobs
                        WHERE status='pending' AND (not_before IS NULL OR not_before <= $2)
                        ORDER BY created_at, id
                        FOR UPDATE SKIP LOCKED
                        LIMIT 1)
                     RETURNING {JOB_COLS}"
                ),
                &[&owner, &now],
            )
            .await?;
        rows.first().map(job_from_row).transpose()
    }

    async fn heartbeat(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE backup_jobs SET heartbeat_at=$3 WHERE id=$1 AND owner=$2 AND status='running'",
                &[&id, &owner, &now],
            )
            .await?
            == 1)
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        let rows = self
            .query(
                &format!("SELECT {SCHED_COLS} FROM backup_schedules ORDER BY name"),
                &[],
            )
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn get_schedule(&self, key: &str) -> Result<Schedule> {
        let id = Uuid::parse_str(key).ok();
        let rows = self
            .query(
                &format!("SELECT {SCHED_COLS} FROM backup_schedules WHERE name=$1 OR id=$2"),
                &[&key, &id],
            )
            .await?;
        match rows.first() {
            Some(r) => schedule_from_row(r),
            None => Err(Error::NotFound(format!("schedule {key:?}"))),
        }
    }

    async fn insert_schedule(&self, s: &Schedule) -> Result<()> {
        let keep = serde_json::to_value(&s.keep).unwrap_or_default();
        self.exec(
            &format!("INSERT INTO backup_schedules ({SCHED_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"),
            &[
                &s.id,
                &s.name,
                &s.cron_expression,
                &s.backup_type.as_str(),
                &s.targets,
                &s.retention_days,
                &s.enabled,
                &s.last_run,
                &s.next_run,
                &s.created_by,
                &s.timezone,
                &keep,
                &action_str(s.action),
                &s.created_at,
            ],
        )
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => Error::Conflict(format!("a schedule named {:?} already exists", s.name)),
            e => e,
        })
        .map(|_| ())
    }

    async fn update_schedule(&self, s: &Schedule) -> Result<()> {
        let keep = serde_json::to_value(&s.keep).unwrap_or_default();
        let n = self
            .exec(
                "UPDATE backup_schedules SET name=$2, cron_expression=$3, backup_type=$4, targets=$5,
                   retention_days=$6, enabled=$7, last_run=$8, next_run=$9, created_by=$10,
                   timezone=$11, keep_policy=$12, action=$13 WHERE id=$1",
                &[
                    &s.id,
                    &s.name,
                    &s.cron_expression,
                    &s.backup_type.as_str(),
                    &s.targets,
                    &s.retention_days,
                    &s.enabled,
                    &s.last_run,
                    &s.next_run,
                    &s.created_by,
                    &s.timezone,
                    &keep,
                    &action_str(s.action),
                ],
            )
            .await
            .map_err(|e| match e {
                Error::Conflict(_) => {
                    Error::Conflict(format!("a schedule named {:?} already exists", s.name))
                }
                e => e,
            })?;
        if n == 0 {
            return Err(Error::NotFound(format!("schedule {}", s.id)));
        }
        Ok(())
    }

    async fn delete_schedule(&self, id: Uuid) -> Result<()> {
        if self
            .exec("DELETE FROM backup_schedules WHERE id=$1", &[&id])
            .await?
            == 0
        {
            return Err(Error::NotFound(format!("schedule {id}")));
        }
        Ok(())
    }

    async fn advance_schedule(
        &self,
        id: Uuid,
        expect_next: Option<DateTime<Utc>>,
        last_run: Option<DateTime<Utc>>,
        next_run: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE backup_schedules SET last_run = COALESCE($3, last_run), next_run=$4
                 WHERE id=$1 AND next_run IS NOT DISTINCT FROM $2",
                &[&id, &expect_next, &last_run, &next_run],
            )
            .await?
            == 1)
    }

    async fn insert_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        self.exec(
            &format!("INSERT INTO restore_points ({RP_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"),
            &[
                &rp.id,
                &rp.name,
                &rp.backup_job_ids,
                &rp.created_at,
                &rp.description,
                &rp.verified,
                &rp.verification_date,
                &rp.snapshot_ids,
                &rp.created_by,
            ],
        )
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => Error::Conflict(format!(
                "a restore point named {:?} already exists",
                rp.name
            )),
            e => e,
        })
        .map(|_| ())
    }

    async fn update_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        let n = self
            .exec(
                "UPDATE restore_points SET name=$2, backup_job_ids=$3, description=$4, verified=$5,
                   verification_date=$6, snapshot_ids=$7 WHERE id=$1",
                &[
                    &rp.id,
                    &rp.name,
                    &rp.backup_job_ids,
                    &rp.description,
                    &rp.verified,
                    &rp.verification_date,
                    &rp.snapshot_ids,
                ],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(format!("restore point {}", rp.id)));
        }
        Ok(())
    }

    async fn get_restore_point(&self, key: &str) -> Result<RestorePoint> {
        let id = Uuid::parse_str(key).ok();
        let rows = self
            .query(
                &format!("SELECT {RP_COLS} FROM restore_points WHERE name=$1 OR id=$2"),
                &[&key, &id],
            )
            .await?;
        match rows.first() {
            Some(r) => rp_from_row(r),
            None => Err(Error::NotFound(format!("restore point {key:?}"))),
        }
    }

    async fn list_restore_points(&self) -> Result<Vec<RestorePoint>> {
        let rows = self
            .query(
                &format!("SELECT {RP_COLS} FROM restore_points ORDER BY created_at DESC"),
                &[],
            )
            .await?;
        rows.iter().map(rp_from_row).collect()
    }

    async fn delete_restore_point(&self, id: Uuid) -> Result<()> {
        if self
            .exec("DELETE FROM restore_points WHERE id=$1", &[&id])
            .await?
            == 0
        {
            return Err(Error::NotFound(format!("restore point {id}")));
        }
        Ok(())
    }

    async fn insert_restore_job(&self, r: &RestoreJob) -> Result<()> {
        self.exec(
            &format!("INSERT INTO restore_jobs ({RJ_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"),
            &[
                &r.id,
                &r.restore_point_id,
                &r.backup_job_id,
                &r.snapshot_ids,
                &r.targets,
                &r.destination,
                &r.status.as_str(),
                &r.drill,
                &r.created_at,
                &r.started_at,
                &r.completed_at,
                &r.error,
                &r.requested_by,
                &r.metadata,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn update_restore_job(&self, r: &RestoreJob) -> Result<()> {
        let n = self
            .exec(
                "UPDATE restore_jobs SET snapshot_ids=$2, targets=$3, destination=$4, status=$5,
                   started_at=$6, completed_at=$7, error=$8, metadata=$9 WHERE id=$1",
                &[
                    &r.id,
                    &r.snapshot_ids,
                    &r.targets,
                    &r.destination,
                    &r.status.as_str(),
                    &r.started_at,
                    &r.completed_at,
                    &r.error,
                    &r.metadata,
                ],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(format!("restore job {}", r.id)));
        }
        Ok(())
    }

    async fn get_restore_job(&self, id: Uuid) -> Result<RestoreJob> {
        let rows = self
            .query(
                &format!("SELECT {RJ_COLS} FROM restore_jobs WHERE id=$1"),
                &[&id],
            )
            .await?;
        match rows.first() {
            Some(r) => rj_from_row(r),
            None => Err(Error::NotFound(format!("restore job {id}"))),
        }
    }

    async fn list_restore_jobs(&self, limit: usize) -> Result<Vec<RestoreJob>> {
        let rows = self
            .query(
                &format!("SELECT {RJ_COLS} FROM restore_jobs ORDER BY created_at DESC LIMIT $1"),
                &[&(limit as i64)],
            )
            .await?;
        rows.iter().map(rj_from_row).collect()
    }

    async fn audit(&self, e: AuditEntry) -> Result<()> {
        self.exec(
            "INSERT INTO audit_log (at, actor, action, object, details) VALUES ($1,$2,$3,$4,$5)",
            &[&e.at, &e.actor, &e.action, &e.object, &e.details],
        )
        .await
        .map(|_| ())
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let rows = self
            .query(
                "SELECT id, at, actor, action, object, details FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let g = |e: tokio_postgres::Error| db_err("audit_log row", e);
                Ok(AuditEntry {
                    id: r.try_get("id").map_err(g)?,
                    at: r.try_get("at").map_err(g)?,
                    actor: r.try_get("actor").map_err(g)?,
                    action: r.try_get("action").map_err(g)?,
                    object: r.try_get("object").map_err(g)?,
                    details: r.try_get("details").map_err(g)?,
                })
            })
            .collect()
    }
}
