//! One function per endpoint: parse the request's shape (PRD "API Contract"), call the core,
//! answer JSON. No backup decision is made here.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;

use crate::app::{App, Ctx};
use crate::error::ApiError;
use crate::http::{json, query, Reply};
use crate::routes::Handler;
use backup_core::service::restore::{NewRestorePoint, RestoreRequest};

/// Runs the handler of a route.
pub async fn dispatch(app: &Arc<App>, h: Handler, ctx: Ctx) -> Result<Reply, ApiError> {
    let core = &app.core;
    match h {
        Handler::Health => {
            let h = core.health().await?;
            // The Vrooli lifecycle and load balancers read the status code: critical is 503.
            let status = if h.is_critical() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            Ok(Reply::json(status, &h))
        }
        Handler::Metrics => Ok(Reply::text(
            "text/plain; version=0.0.4; charset=utf-8",
            core.metrics().await?,
        )),
        Handler::OpenApi => Ok(Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            body: bytes::Bytes::from_static(crate::OPENAPI.as_bytes()),
        }),
        Handler::BackupCreate => {
            let req: BackupCreate = json(&ctx.body)?;
            let created = core.create_backup(req, &ctx.user()).await?;
            Ok(Reply::json(StatusCode::CREATED, &created))
        }
        Handler::BackupStatus => {
            let q: StatusQuery = query(ctx.query.as_deref())?;
            Ok(Reply {
                status: StatusCode::OK,
                content_type: "application/json",
                body: core.status_for(app.config.status_cache, q).await?,
            })
        }
        Handler::BackupList => {
            let q: ListQuery = query(ctx.query.as_deref())?;
            Ok(Reply::ok(&core.list(q).await?))
        }
        Handler::BackupJob => Ok(Reply::ok(&core.job(parse_id(ctx.id())?).await?)),
        Handler::BackupVerify => {
            let r = core.verify(ctx.id(), &ctx.user()).await?;
            // 200 only when the verification passed; a failed one is 422 with the findings.
            let status = if r.report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(Reply::json(status, &r))
        }
        Handler::RestoreCreate => {
            let req: RestoreRequest = json(&ctx.body)?;
            let created = core.create_restore(req, &ctx.user()).await?;
            Ok(Reply::json(StatusCode::CREATED, &created))
        }
        Handler::RestoreStatus => Ok(Reply::ok(&core.restore_status(parse_id(ctx.id())?).await?)),
        Handler::RestorePointList => Ok(Reply::ok(&core.restore_points().await?)),
        Handler::RestorePointCreate => {
            let req: NewRestorePoint = json(&ctx.body)?;
            let rp = core.create_restore_point(req, &ctx.user()).await?;
            Ok(Reply::json(StatusCode::CREATED, &rp))
        }
        Handler::ScheduleList => Ok(Reply::ok(&core.schedules().await?)),
        Handler::ScheduleCreate => {
            let req: ScheduleBody = json(&ctx.body)?;
            let s = core.create_schedule(req, &ctx.user()).await?;
            Ok(Reply::json(StatusCode::CREATED, &s))
        }
        Handler::ScheduleGet => Ok(Reply::ok(&core.schedule(ctx.id()).await?)),
        Handler::ScheduleUpdate => {
            let req: ScheduleBody = json(&ctx.body)?;
            Ok(Reply::ok(
                &core.update_schedule(ctx.id(), req, &ctx.user()).await?,
            ))
        }
        Handler::ScheduleDelete => {
            let s = core.delete_schedule(ctx.id(), &ctx.user()).await?;
            Ok(Reply::ok(
                &serde_json::json!({"deleted": s.id, "schedule": s}),
            ))
        }
        Handler::ScheduleEnable | Handler::ScheduleDisable => {
            let on = h == Handler::ScheduleEnable;
            Ok(Reply::ok(
                &core.set_schedule_enabled(ctx.id(), on, &ctx.user()).await?,
            ))
        }
        Handler::Events => {
            let ev: Event = json(&ctx.body)?;
            let r = core.consume_event(ev, &ctx.user()).await?;
            Ok(Reply::json(StatusCode::ACCEPTED, &r))
        }
    }
}

/// A path `{id}`: a UUID (400 naming `id` otherwise).
pub fn parse_id(s: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(s).map_err(|_| ApiError::field("id", format!("{s:?} is not a UUID")))
}

/// `POST /api/v1/backup/create` (PRD input schema).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCreate {
    /// `full` or `incremental` (also `differential`). Default incremental.
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    /// Target names from the config or specs (`files:/srv/data`).
    pub targets: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Keep at least this many days.
    pub retention_days: Option<u32>,
}

/// `GET /api/v1/backup/status` options (the CLI `status` flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Only these targets (comma-separated specs or configured names).
    pub targets: Option<String>,
    /// Add `recent_jobs`.
    pub verbose: Option<bool>,
}

/// `GET /api/v1/backup/list` filters (the CLI `list` flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `full` or `incremental`.
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    /// A kind (`files`), a spec or a configured name.
    pub target: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    pub since: Option<String>,
}

/// `POST /api/v1/schedules` and `PUT /api/v1/schedules/{id}` (PRD BackupSchedule).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// Unique name.
    pub name: Option<String>,
    /// 5-field cron expression.
    pub cron_expression: Option<String>,
    /// IANA zone (default UTC).
    pub timezone: Option<String>,
    /// `full` or `incremental`.
    pub backup_type: Option<String>,
    /// Targets (names or specs).
    pub targets: Option<Vec<String>>,
    /// Retention in days.
    pub retention_days: Option<u32>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Keep rules (`keep_last`, `keep_daily`, `keep_weekly`, `keep_monthly`).
    pub keep: Option<backup_core::catalog::KeepPolicy>,
}

/// `POST /api/v1/events`: an event from another scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// `scenario.deployed` or `postgres.schema_updated`.
    pub event: String,
    /// Event payload (`{scenario}` or `{database}`).
    #[serde(default)]
    pub payload: serde_json::Value,
}
