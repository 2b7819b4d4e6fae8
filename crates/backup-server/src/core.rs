//! The backup service the server exposes: the core's catalog, scheduler, restore runner and
//! health, opened once at start. Each method is one call into `backup-core` (mostly
//! [`backup_core::service`]); what stays here is naming the request field a core validation
//! error belongs to, and caching the status report.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use backup_core::catalog::{
    self, Catalog, Job, JobType, NewSchedule, RestoreJob, RestorePoint, Schedule, SchedulePatch,
};
use backup_core::config::Config;
use backup_core::events::{EventBus, IncomingEvent};
use backup_core::health::{self, HealthOptions, HealthStatus};
use backup_core::repository::Repository;
use backup_core::scheduler::{
    CronExpr, CronScheduler, JobRequest, Scheduler, SchedulerOptions, SystemClock,
};
use backup_core::service::status::StatusView;
use backup_core::service::{
    self, backup::BackupCreated, restore::RestoreCreated, verify::Verification,
};
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::ApiError;
use crate::handlers::{BackupCreate, Event, ListQuery, ScheduleBody};

type R<T> = Result<T, ApiError>;

/// Maps a core error, blaming `field` when it is a validation error.
fn field(f: &'static str) -> impl Fn(backup_core::Error) -> ApiError {
    move |e| ApiError::from_core(e, Some(f))
}

/// `GET /health`: whether the service works (catalog and repository reachable, scheduler
/// running), plus the backup system's own health (`backup_status`, the PRD's
/// healthy/degraded/critical from RPO, failures, drills and storage).
#[derive(Debug, Serialize)]
pub struct ServiceHealth {
    /// `healthy` when the catalog and repository answer and the scheduler runs; `degraded`
    /// when the scheduler stopped; `critical` when the catalog or repository fails.
    pub status: HealthStatus,
    /// The backup system's health (as `system_status` in `/api/v1/backup/status`).
    pub backup_status: Option<HealthStatus>,
    /// Why `backup_status` is not healthy.
    pub reasons: Vec<health::HealthReason>,
    /// Component checks: `catalog`, `repository`, `scheduler` → `ok` or the error.
    pub checks: std::collections::BTreeMap<&'static str, String>,
    /// Server version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// When computed (UTC).
    pub checked_at: chrono::DateTime<chrono::Utc>,
}

impl ServiceHealth {
    /// True when the service cannot work.
    pub fn is_critical(&self) -> bool {
        self.status == HealthStatus::Critical
    }
}

/// A computed status report, kept serialized: a cached answer costs no encoding.
struct CachedStatus {
    at: Instant,
    json: bytes::Bytes,
}

/// The opened service.
pub struct Core {
    config: Config,
    catalog: Arc<dyn Catalog>,
    repo: Arc<Repository>,
    scheduler: Arc<CronScheduler>,
    restores: service::restore::RestoreRunner,
    stop: watch::Sender<bool>,
    scheduler_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    nudges: Mutex<tokio::task::JoinSet<()>>,
    started: Instant,
    status: tokio::sync::RwLock<Option<CachedStatus>>,
    refreshing: Arc<std::sync::atomic::AtomicBool>,
}

fn encode(v: &StatusView) -> R<bytes::Bytes> {
    serde_json::to_vec(v)
        .map(bytes::Bytes::from)
        .map_err(|e| ApiError::internal(format!("encoding the status: {e}")))
}

/// The repository password: `DBM_PASSWORD`, else the config's `password_file` (first line).
fn password(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(p) = std::env::var_os("DBM_PASSWORD").filter(|p| !p.is_empty()) {
        return Ok(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec());
    }
    let f = cfg
        .password_file
        .as_ref()
        .context("no repository password: set DBM_PASSWORD or password_file in the config (DBM_PASSWORD_FILE)")?;
    let text =
        std::fs::read(f).with_context(|| format!("reading password file {}", f.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    anyhow::ensure!(!line.is_empty(), "password file {} is empty", f.display());
    Ok(line.to_vec())
}

impl Core {
    /// Opens the config (file < environment), the repository, the catalog and the event
    /// sinks; creates the configured and default schedules; recovers interrupted work; starts
    /// the scheduler loop.
    pub async fn start(config_path: Option<&Path>) -> anyhow::Result<Core> {
        let config = Config::load_with_env(config_path)?;
        let store = backup_core::store::open_store(&config.repository(), false)?;
        let repo = Arc::new(Repository::open(store, &password(&config)?).await?);
        let catalog = catalog::open(&catalog::CatalogOptions::from_config(&config)).await?;
        let events = EventBus::from_config(&config, &*catalog)?;
        let opts = SchedulerOptions::from_config(&config);
        let scheduler = Arc::new(CronScheduler::new(
            catalog.clone(),
            repo.clone(),
            config.clone(),
            events.clone(),
            Arc::new(SystemClock),
            opts,
        ));
        scheduler.ensure_config_schedules().await?;
        let restores = service::restore::RestoreRunner::new(catalog.clone(), repo.clone(), events);
        let resumed = restores.recover().await?;
        if resumed > 0 {
            tracing::info!(resumed, "restores left pending were started");
        }
        let (stop, mut stop_rx) = watch::channel(false);
        let s = scheduler.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|v| *v).await;
            };
            if let Err(e) = s.run(shutdown).await {
                tracing::error!("scheduler stopped: {e}");
            }
        });
        tracing::info!(
            catalog = catalog.kind(),
            catalog_location = %catalog.location(),
            repository = %repo.store().location(),
            "backup service started"
        );
        Ok(Core {
            config,
            catalog,
            repo,
            scheduler,
            restores,
            stop,
            scheduler_task: Mutex::new(Some(task)),
            nudges: Mutex::new(tokio::task::JoinSet::new()),
            started: Instant::now(),
            status: tokio::sync::RwLock::new(None),
            refreshing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Stops the scheduler: no new job is claimed; running backup jobs get `grace` to finish,
    /// then the ones still running are put back to `pending` (retried later); restores the
    /// same, recorded as failed.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        self.scheduler.stop();
        let task = self.scheduler_task.lock().ok().and_then(|mut t| t.take());
        let mut nudges =
            std::mem::take(&mut *self.nudges.lock().unwrap_or_else(|p| p.into_inner()));
        let wait = async {
            if let Some(t) = task {
                let _ = t.await;
            }
            while nudges.join_next().await.is_some() {}
        };
        let finished = tokio::time::timeout(grace, wait).await.is_ok();
        if !finished {
            match service::shutdown::release_jobs(&*self.catalog, &self.scheduler.options().owner)
                .await
            {
                Ok(ids) => tracing::warn!(
                    jobs = ids.len(),
                    "jobs still running at shutdown were put back to pending"
                ),
                Err(e) => tracing::error!("releasing running jobs: {e}"),
            }
        }
        self.restores.shutdown(grace).await;
        self.scheduler.events().flush().await;
    }

    /// Lets the scheduler claim new jobs now rather than at its next pass.
    fn nudge(&self) {
        let s = self.scheduler.clone();
        let mut set = self.nudges.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            if let Err(e) = s.run_pending().await {
                tracing::warn!("running queued jobs: {e}");
            }
        });
    }

    /// `GET /health`.
    pub async fn health(&self) -> R<ServiceHealth> {
        let mut checks = std::collections::BTreeMap::new();
        let mut status = HealthStatus::Healthy;
        let opts = HealthOptions::from_config(&self.config);
        let now = chrono::Utc::now();
        let backup = match health::health(&*self.catalog, Some(&self.repo), &opts, now).await {
            Ok(h) => {
                checks.insert("catalog", "ok".to_string());
                Some(h)
            }
            Err(e) => {
                checks.insert("catalog", e.to_string());
                status = HealthStatus::Critical;
                None
            }
        };
        match self.repo.store().head("config").await {
            Ok(Some(_)) => {
                checks.insert("repository", "ok".to_string());
            }
            Ok(None) => {
                checks.insert("repository", "config object missing".to_string());
                status = HealthStatus::Critical;
            }
            Err(e) => {
                checks.insert("repository", e.to_string());
                status = HealthStatus::Critical;
            }
        }
        let running = self
            .scheduler_task
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| !t.is_finished()))
            .unwrap_or(false);
        checks.insert(
            "scheduler",
            if running { "ok" } else { "stopped" }.to_string(),
        );
        if !running {
            status = status.max(HealthStatus::Degraded);
        }
        Ok(ServiceHealth {
            status,
            backup_status: backup.as_ref().map(|h| h.status),
            reasons: backup.map(|h| h.reasons).unwrap_or_default(),
            checks,
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            checked_at: now,
        })
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> R<String> {
        let opts = HealthOptions::from_config(&self.config);
        let h = health::health(&*self.catalog, Some(&self.repo), &opts, chrono::Utc::now()).await?;
        let mut text = service::metrics::render(&*self.catalog, &h).await?;
        text.push_str("# HELP dbm_up The server is up.\n# TYPE dbm_up gauge\ndbm_up 1\n");
        Ok(text)
    }

    async fn compute_status(&self, only: &[String], verbose: bool) -> R<StatusView> {
        Ok(service::status::status_view(
            Ok(&*self.catalog),
            &self.repo,
            &self.config,
            only,
            verbose,
            chrono::Utc::now(),
        )
        .await?)
    }

    /// `GET /api/v1/backup/status?targets=a,b&verbose=true` (the CLI's `status` flags): with
    /// flags, computed for the request; without, the cached report ([`Core::status`]).
    pub async fn status_for(
        self: &Arc<Self>,
        ttl: Duration,
        q: crate::handlers::StatusQuery,
    ) -> R<bytes::Bytes> {
        let only: Vec<String> = q
            .targets
            .as_deref()
            .map(|t| {
                let names: Vec<String> = t
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect();
                self.config.expand_targets(&names)
            })
            .unwrap_or_default();
        let verbose = q.verbose.unwrap_or(false);
        if only.is_empty() && !verbose {
            return self.status(ttl).await;
        }
        encode(&self.compute_status(&only, verbose).await?)
    }

    /// `GET /api/v1/backup/status`: the PRD's status report. A report younger than `ttl` is
    /// reused; an older one is still answered at once while one request refreshes it in the
    /// background (so a slow catalog or repository never stalls every caller).
    pub async fn status(self: &Arc<Self>, ttl: Duration) -> R<bytes::Bytes> {
        if let Some(c) = &*self.status.read().await {
            if c.at.elapsed() < ttl {
                return Ok(c.json.clone());
            }
            if !self
                .refreshing
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let me = self.clone();
                tokio::spawn(async move {
                    match me.compute_status(&[], false).await.and_then(|r| encode(&r)) {
                        Ok(json) => {
                            *me.status.write().await = Some(CachedStatus {
                                at: Instant::now(),
                                json,
                            })
                        }
                        Err(e) => tracing::warn!("refreshing the status: {}", e.message),
                    }
                    me.refreshing
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                });
            }
            return Ok(c.json.clone());
        }
        let mut slot = self.status.write().await;
        if let Some(c) = &*slot {
            return Ok(c.json.clone());
        }
        let json = encode(&self.compute_status(&[], false).await?)?;
        *slot = Some(CachedStatus {
            at: Instant::now(),
            json: json.clone(),
        });
        Ok(json)
    }

    /// Drops the cached status (after a change the caller wants to see at once).
    async fn invalidate_status(&self) {
        if let Some(c) = self.status.write().await.as_mut() {
            c.at = Instant::now() - Duration::from_secs(3600);
        }
    }

    /// `POST /api/v1/backup/create`.
    pub async fn create_backup(&self, r: BackupCreate, user: &str) -> R<BackupCreated> {
        let job_type = r
            .backup_type
            .as_deref()
            .map(str::parse::<JobType>)
            .transpose()
            .map_err(field("type"))?;
        if r.retention_days
            .is_some_and(|d| d > backup_core::engine::backup::MAX_RETENTION_DAYS)
        {
            return Err(ApiError::field(
                "retention_days",
                format!(
                    "at most {}",
                    backup_core::engine::backup::MAX_RETENTION_DAYS
                ),
            ));
        }
        let req = JobRequest {
            targets: r.targets,
            job_type,
            description: r.description,
            retention_days: r.retention_days,
            max_retries: None,
        };
        let created = service::backup::create_backup(&*self.scheduler, &*self.catalog, req, user)
            .await
            .map_err(field("targets"))?;
        self.nudge();
        self.invalidate_status().await;
        Ok(created)
    }

    /// `GET /api/v1/backup/list`.
    pub async fn list(&self, q: ListQuery) -> R<Vec<serde_json::Value>> {
        let f = service::backup::ListFilter {
            backup_type: q.backup_type,
            target: q.target,
            since: q.since.clone(),
        };
        let blame = if q
            .since
            .as_deref()
            .is_some_and(|s| service::backup::parse_since(s).is_err())
        {
            "since"
        } else {
            "type"
        };
        let l = service::backup::list(&self.repo, &self.config, &f)
            .await
            .map_err(field(blame))?;
        for d in &l.damaged {
            tracing::warn!(snapshot = %d["short_id"], "snapshot manifest cannot be read: {}", d["error"]);
        }
        Ok(l.snapshots)
    }

    /// `GET /api/v1/backup/jobs/{id}`.
    pub async fn job(&self, id: Uuid) -> R<Job> {
        Ok(service::backup::job(&*self.catalog, id).await?)
    }

    /// `POST /api/v1/backup/verify/{id}`: a job id, or a snapshot id / prefix / `latest`.
    pub async fn verify(&self, id: &str, user: &str) -> R<Verification> {
        service::verify::verify(
            Some(&*self.catalog),
            &self.repo,
            id,
            user,
            &backup_core::progress::NoProgress,
        )
        .await
        .map_err(field("id"))
    }

    /// `POST /api/v1/restore/create`.
    pub async fn create_restore(
        &self,
        r: service::restore::RestoreRequest,
        user: &str,
    ) -> R<RestoreCreated> {
        let scratch = self.scheduler.options().scratch_dir.clone();
        let (rj, created) = service::restore::create_restore(
            &*self.catalog,
            &self.repo,
            &self.config,
            &scratch,
            r,
            user,
        )
        .await
        .map_err(|e| {
            // The core names the field first in its message (`destination: …`).
            let msg = e.to_string();
            let f = [
                "destination",
                "targets",
                "restore_point_id",
                "backup_job_id",
                "snapshot_id",
            ]
            .into_iter()
            .find(|f| msg.starts_with(&format!("{f}:")))
            .unwrap_or("backup_job_id");
            match e.kind() {
                backup_core::ErrorKind::InvalidInput => {
                    ApiError::field(f, msg.trim_start_matches(&format!("{f}:")).trim())
                }
                _ => ApiError::from_core(e, Some(f)),
            }
        })?;
        self.restores.spawn(rj);
        Ok(created)
    }

    /// `GET /api/v1/restore/status/{id}`.
    pub async fn restore_status(&self, id: Uuid) -> R<RestoreJob> {
        Ok(self.catalog.get_restore_job(id).await?)
    }

    /// `GET /api/v1/restore-points`.
    pub async fn restore_points(&self) -> R<Vec<RestorePoint>> {
        Ok(self.catalog.list_restore_points().await?)
    }

    /// `POST /api/v1/restore-points`.
    pub async fn create_restore_point(
        &self,
        r: service::restore::NewRestorePoint,
        user: &str,
    ) -> R<RestorePoint> {
        service::restore::create_restore_point(&*self.catalog, &self.config, r, user)
            .await
            .map_err(|e| {
                let msg = e.to_string();
                let f = ["name", "targets"]
                    .into_iter()
                    .find(|f| msg.starts_with(&format!("{f}:")))
                    .unwrap_or("backup_job_ids");
                ApiError::from_core(e, Some(f))
            })
    }

    /// `GET /api/v1/schedules`.
    pub async fn schedules(&self) -> R<Vec<Schedule>> {
        Ok(self.scheduler.list_schedules().await?)
    }

    /// `GET /api/v1/schedules/{id}` (id or name).
    pub async fn schedule(&self, key: &str) -> R<Schedule> {
        Ok(self.catalog.get_schedule(key).await?)
    }

    /// Checks the fields whose validation error names them: time zone, then cron.
    fn check_schedule_fields(cron: Option<&str>, tz: Option<&str>) -> R<()> {
        if let Some(tz) = tz {
            backup_core::scheduler::cron::parse_tz(tz).map_err(field("timezone"))?;
        }
        if let Some(c) = cron {
            CronExpr::parse_in(c, tz.unwrap_or("UTC")).map_err(field("cron_expression"))?;
        }
        Ok(())
    }

    /// `POST /api/v1/schedules`.
    pub async fn create_schedule(&self, b: ScheduleBody, user: &str) -> R<Schedule> {
        let name = b
            .name
            .clone()
            .ok_or_else(|| ApiError::field("name", "required"))?;
        let cron = b
            .cron_expression
            .clone()
            .ok_or_else(|| ApiError::field("cron_expression", "required"))?;
        Self::check_schedule_fields(Some(&cron), b.timezone.as_deref())?;
        let backup_type = b
            .backup_type
            .as_deref()
            .map(str::parse::<JobType>)
            .transpose()
            .map_err(field("backup_type"))?;
        let n = NewSchedule {
            name,
            cron_expression: cron,
            timezone: b.timezone,
            backup_type,
            targets: b.targets.unwrap_or_default(),
            retention_days: b.retention_days.map(|d| d as i32),
            keep: b.keep.unwrap_or_default(),
            enabled: b.enabled,
            action: None,
        };
        let s = self.scheduler.create_schedule(n, user).await.map_err(|e| {
            let f = if e.to_string().contains("retention") {
                "retention_days"
            } else if e.to_string().contains("name") {
                "name"
            } else {
                "targets"
            };
            ApiError::from_core(e, Some(f))
        })?;
        Ok(s)
    }

    /// `PUT /api/v1/schedules/{id}`: fields given replace the stored ones.
    pub async fn update_schedule(&self, key: &str, b: ScheduleBody, user: &str) -> R<Schedule> {
        let current = self.catalog.get_schedule(key).await?;
        let tz = b.timezone.clone().unwrap_or(current.timezone.clone());
        Self::check_schedule_fields(
            Some(
                b.cron_expression
                    .as_deref()
                    .unwrap_or(&current.cron_expression),
            ),
            Some(&tz),
        )?;
        let backup_type = b
            .backup_type
            .as_deref()
            .map(str::parse::<JobType>)
            .transpose()
            .map_err(field("backup_type"))?;
        let p = SchedulePatch {
            name: b.name,
            cron_expression: b.cron_expression,
            timezone: b.timezone,
            backup_type,
            targets: b.targets,
            retention_days: b.retention_days.map(|d| Some(d as i32)),
            keep: b.keep,
            enabled: b.enabled,
        };
        self.scheduler
            .update_schedule(&current.id.to_string(), p, user)
            .await
            .map_err(field("targets"))
    }

    /// `DELETE /api/v1/schedules/{id}`.
    pub async fn delete_schedule(&self, key: &str, user: &str) -> R<Schedule> {
        let s = self.catalog.get_schedule(key).await?;
        self.scheduler
            .delete_schedule(&s.id.to_string(), user)
            .await?;
        Ok(s)
    }

    /// `POST /api/v1/schedules/{id}/enable|disable`.
    pub async fn set_schedule_enabled(&self, key: &str, on: bool, user: &str) -> R<Schedule> {
        Ok(self.scheduler.set_enabled(key, on, user).await?)
    }

    /// `POST /api/v1/events`: queues the backups the event asks for.
    pub async fn consume_event(&self, e: Event, user: &str) -> R<serde_json::Value> {
        let ev = IncomingEvent {
            event: e.event,
            payload: e.payload,
        };
        let f = if ["scenario.deployed", "postgres.schema_updated"].contains(&ev.event.as_str()) {
            "payload"
        } else {
            "event"
        };
        let jobs = self
            .scheduler
            .handle_event(&ev, user)
            .await
            .map_err(field(f))?;
        self.nudge();
        Ok(serde_json::json!({
            "event": ev.event,
            "accepted": true,
            "job_ids": jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            "targets": jobs.iter().map(|j| j.target_identifier.clone()).collect::<Vec<_>>(),
        }))
    }
}
