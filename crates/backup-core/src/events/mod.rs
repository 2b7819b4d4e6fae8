//! Events (PRD "Event Interface").
//!
//! Published: `backup.job.started` `{job_id, type, targets}`, `backup.job.completed`
//! `{job_id, status, duration, size_bytes}`, `backup.job.failed` `{job_id, error,
//! retry_count}`, `restore.completed` `{restore_id, targets, success}` — the PRD's payloads,
//! plus a few extra fields (target, snapshot id, …) — and `backup.health.changed`
//! `{from, to, reasons}`.
//!
//! Sinks ([`EventSink`]): [`WebhookSink`] (n8n and others; JSON `POST`, retries with
//! exponential backoff, `X-DBM-Signature: sha256=<hex HMAC-SHA256 of the body>`),
//! PostgreSQL `NOTIFY backup_events` ([`crate::catalog::postgres::PgNotifySink`]) and
//! [`LogSink`]. An [`EventBus`] delivers each event to every sink on background tasks, so a
//! slow webhook never holds up a backup; [`EventBus::flush`] waits for deliveries in flight
//! (call it at shutdown).
//!
//! Consumed ([`IncomingEvent`]): `scenario.deployed` `{scenario}` or `{path}` backs up that
//! scenario's folder; `postgres.schema_updated` `{database}` backs up that database
//! (`postgres:<db>`). See [`crate::scheduler::CronScheduler::handle_event`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

use crate::catalog::{Job, RestoreJob};
use crate::config::{Config, WebhookConfig};
use crate::error::{Error, Result};

/// `backup.job.started`.
pub const JOB_STARTED: &str = "backup.job.started";
/// `backup.job.completed`.
pub const JOB_COMPLETED: &str = "backup.job.completed";
/// `backup.job.failed`.
pub const JOB_FAILED: &str = "backup.job.failed";
/// `restore.completed`.
pub const RESTORE_COMPLETED: &str = "restore.completed";
/// `backup.health.changed`.
pub const HEALTH_CHANGED: &str = "backup.health.changed";
/// Header with the body's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-DBM-Signature";
/// Header with the event name.
pub const EVENT_HEADER: &str = "X-DBM-Event";
/// Header with the event id (the same on every retry of one delivery).
pub const DELIVERY_HEADER: &str = "X-DBM-Delivery";

/// One published event: the JSON body a webhook receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (also `X-DBM-Delivery`).
    pub id: Uuid,
    /// Event name, e.g. `backup.job.failed`.
    pub event: String,
    /// When it happened (UTC).
    pub time: DateTime<Utc>,
    /// The PRD payload.
    pub payload: Value,
}

/// `90s` → `1m30s`; the PRD writes durations as `15m`.
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

impl Event {
    /// A new event named `event` at `time`.
    pub fn new(event: &str, time: DateTime<Utc>, payload: Value) -> Event {
        Event {
            id: Uuid::new_v4(),
            event: event.into(),
            time,
            payload,
        }
    }

    /// `backup.job.started` `{job_id, type, targets}`.
    pub fn job_started(job: &Job, time: DateTime<Utc>) -> Event {
        Event::new(
            JOB_STARTED,
            time,
            json!({"job_id": job.id, "type": job.job_type, "targets": [job.target_identifier],
                   "retry_count": job.retry_count, "schedule_id": job.schedule_id}),
        )
    }

    /// `backup.job.completed` `{job_id, status, duration, size_bytes}`.
    pub fn job_completed(job: &Job, time: DateTime<Utc>) -> Event {
        let secs = match (job.started_at, job.completed_at) {
            (Some(a), Some(b)) => (b - a).num_seconds(),
            _ => 0,
        };
        Event::new(
            JOB_COMPLETED,
            time,
            json!({"job_id": job.id, "status": job.status.as_str(), "duration": format_duration(secs),
                   "duration_secs": secs, "size_bytes": job.size_bytes.unwrap_or(0),
                   "targets": [job.target_identifier], "snapshot_id": job.storage_path,
                   "compression_ratio": job.compression_ratio}),
        )
    }

    /// `backup.job.failed` `{job_id, error, retry_count}`; `will_retry` tells whether another
    /// attempt is queued.
    pub fn job_failed(job: &Job, time: DateTime<Utc>, will_retry: bool) -> Event {
        Event::new(
            JOB_FAILED,
            time,
            json!({"job_id": job.id, "error": job.error.clone().unwrap_or_default(),
                   "retry_count": job.retry_count, "max_retries": job.max_retries,
                   "will_retry": will_retry, "targets": [job.target_identifier]}),
        )
    }

    /// `restore.completed` `{restore_id, targets, success}`.
    pub fn restore_completed(r: &RestoreJob, time: DateTime<Utc>) -> Event {
        Event::new(
            RESTORE_COMPLETED,
            time,
            json!({"restore_id": r.id, "targets": r.targets,
                   "success": r.status == crate::catalog::JobStatus::Completed,
                   "drill": r.drill, "snapshot_ids": r.snapshot_ids, "error": r.error}),
        )
    }
}

/// Somewhere events go.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// A name for logs (no secrets: a webhook is named by its URL without query).
    fn name(&self) -> String;
    /// Whether this sink wants events named `event` (default: all).
    fn accepts(&self, _event: &str) -> bool {
        true
    }
    /// Delivers one event (retrying as the sink sees fit).
    async fn deliver(&self, event: &Event) -> Result<()>;
}

/// Writes each event to the log (`tracing`, info level; failures at warn).
pub struct LogSink;

#[async_trait]
impl EventSink for LogSink {
    fn name(&self) -> String {
        "log".into()
    }
    async fn deliver(&self, e: &Event) -> Result<()> {
        if e.event == JOB_FAILED {
            tracing::warn!("event {} {}", e.event, e.payload);
        } else {
            tracing::info!("event {} {}", e.event, e.payload);
        }
        Ok(())
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `sha256=<hex>` header against `body` in constant time (for receivers and tests).
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(h) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(h) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Webhook sink. Each delivery is a `POST` of the [`Event`] as JSON with headers
/// [`EVENT_HEADER`], [`DELIVERY_HEADER`] and, with a secret, [`SIGNATURE_HEADER`]. Network
/// errors, 408, 429 and 5xx are retried after `backoff`, `2 × backoff`, … up to
/// `max_attempts` attempts; other 4xx answers are final.
pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    secret: Option<Vec<u8>>,
    events: Vec<String>,
    /// Delivery attempts (default 4).
    pub max_attempts: u32,
    /// First retry delay (default 1 s).
    pub backoff: Duration,
}

impl WebhookSink {
    /// From a config entry. Errors: [`Error::InvalidInput`] for a URL that is not http(s).
    pub fn new(cfg: &WebhookConfig) -> Result<WebhookSink> {
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            return Err(Error::InvalidInput(format!(
                "webhook URL {:?} must start with http:// or https://",
                redact_query(&cfg.url)
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::InvalidInput(format!("webhook client: {e}")))?;
        Ok(WebhookSink {
            client,
            url: cfg.url.clone(),
            secret: cfg.secret().map(String::into_bytes),
            events: cfg.events.clone(),
            max_attempts: cfg.max_attempts.unwrap_or(4).max(1),
            backoff: Duration::from_secs(1),
        })
    }
}

fn redact_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[async_trait]
impl EventSink for WebhookSink {
    fn name(&self) -> String {
        format!("webhook {}", redact_query(&self.url))
    }

    fn accepts(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    async fn deliver(&self, event: &Event) -> Result<()> {
        let body = serde_json::to_vec(event).unwrap_or_default();
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let mut req = self
                .client
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header(EVENT_HEADER, &event.event)
                .header(DELIVERY_HEADER, event.id.to_string());
            if let Some(s) = &self.secret {
                req = req.header(SIGNATURE_HEADER, sign(s, &body));
            }
            match req.body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let st = r.status();
                    last = format!("HTTP {st}");
                    if !(st.is_server_error() || st.as_u16() == 429 || st.as_u16() == 408) {
                        break;
                    }
                }
                // The error text may contain the URL; show it without its query string.
                Err(e) => last = format!("{}", e.without_url()),
            }
            if attempt < self.max_attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(Error::InvalidInput(format!(
            "{}: event {} {} not delivered: {last}",
            self.name(),
            event.event,
            event.id
        )))
    }
}

/// Fans events out to sinks on background tasks.
#[derive(Clone, Default)]
pub struct EventBus {
    sinks: Vec<Arc<dyn EventSink>>,
    inflight: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl EventBus {
    /// A bus with no sinks.
    pub fn new() -> EventBus {
        EventBus::default()
    }

    /// The usual sinks: the log, one webhook per config entry, and the catalog's `NOTIFY`
    /// sink when it has one. Errors: a bad webhook URL.
    pub fn from_config(cfg: &Config, catalog: &dyn crate::catalog::Catalog) -> Result<EventBus> {
        let mut bus = EventBus::new().with_sink(Arc::new(LogSink));
        for w in &cfg.webhooks {
            bus = bus.with_sink(Arc::new(WebhookSink::new(w)?));
        }
        if let Some(s) = catalog.notify_sink() {
            bus = bus.with_sink(s);
        }
        Ok(bus)
    }

    /// Adds a sink.
    pub fn with_sink(mut self, sink: Arc<dyn EventSink>) -> EventBus {
        self.sinks.push(sink);
        self
    }

    /// Delivers `event` to every sink that accepts it, in the background. A failed delivery
    /// is logged (warn), never returned.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        inflight.retain(|h| !h.is_finished());
        for sink in self.sinks.iter().filter(|s| s.accepts(&event.event)) {
            let (sink, event) = (sink.clone(), event.clone());
            inflight.push(tokio::spawn(async move {
                if let Err(e) = sink.deliver(&event).await {
                    tracing::warn!("{e}");
                }
            }));
        }
    }

    /// Waits until every delivery started so far has finished (or given up).
    pub async fn flush(&self) {
        loop {
            let handles: Vec<_> = {
                let mut v = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut *v)
            };
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }
}

/// An event from another scenario (PRD `consumed_events`), as the server receives it:
/// `{"event": "scenario.deployed", "payload": {"scenario": "my-app"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingEvent {
    /// `scenario.deployed` or `postgres.schema_updated`.
    pub event: String,
    /// Event data (see the module docs).
    #[serde(default)]
    pub payload: Value,
}

impl IncomingEvent {
    /// The targets and backup type this event asks for:
    /// * `scenario.deployed` `{scenario: name}` → `files:<scenarios_dir>/<name>` (config
    ///   `scenarios_dir`), or `{path: "/abs/dir"}` → `files:/abs/dir`; incremental.
    /// * `postgres.schema_updated` `{database: name}` → `postgres:<name>`; incremental.
    ///
    /// Errors: [`Error::InvalidInput`] for unknown events or missing fields.
    pub fn to_targets(&self, cfg: &Config) -> Result<(Vec<String>, crate::catalog::JobType)> {
        let field = |k: &str| {
            self.payload
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        match self.event.as_str() {
            "scenario.deployed" => {
                if let Some(p) = field("path") {
                    if !p.starts_with('/') {
                        return Err(Error::InvalidInput(format!(
                            "scenario.deployed: path {p:?} must be absolute"
                        )));
                    }
                    return Ok((vec![format!("files:{p}")], crate::catalog::JobType::Incremental));
                }
                let name = field("scenario").or_else(|| field("name")).ok_or_else(|| {
                    Error::InvalidInput("scenario.deployed: payload needs `scenario` or `path`".into())
                })?;
                if name.contains('/') || name == ".." || name == "." {
                    return Err(Error::InvalidInput(format!(
                        "scenario.deployed: bad scenario name {name:?}"
                    )));
                }
                let dir = cfg.scenarios_dir.clone().ok_or_else(|| {
                    Error::InvalidInput(
                        "scenario.deployed: set scenarios_dir in the config file (or send `path`)".into(),
                    )
                })?;
                Ok((
                    vec![format!("files:{}", dir.join(name).display())],
                    crate::catalog::JobType::Incremental,
                ))
            }
            "postgres.schema_updated" => {
                let db = field("database").or_else(|| field("db")).ok_or_else(|| {
                    Error::InvalidInput("postgres.schema_updated: payload needs `database`".into())
                })?;
                Ok((vec![format!("postgres:{db}")], crate::catalog::JobType::Incremental))
            }
            other => Err(Error::InvalidInput(format!(
                "unknown event {other:?}: accepted are scenario.deployed and postgres.schema_updated"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify() {
        let s = sign(b"k", b"body");
        assert!(verify_signature(b"k", b"body", &s));
        assert!(!verify_signature(b"k", b"bodx", &s));
        assert!(!verify_signature(b"j", b"body", &s));
        assert_eq!(format_duration(90), "1m30s");
    }

    #[test]
    fn incoming_events_map_to_targets() {
        let cfg = Config {
            scenarios_dir: Some("/srv/scenarios".into()),
            ..Default::default()
        };
        let e = IncomingEvent {
            event: "scenario.deployed".into(),
            payload: json!({"scenario": "app"}),
        };
        assert_eq!(
            e.to_targets(&cfg).unwrap().0,
            vec!["files:/srv/scenarios/app"]
        );
        let e = IncomingEvent {
            event: "postgres.schema_updated".into(),
            payload: json!({"database": "shop"}),
        };
        assert_eq!(e.to_targets(&cfg).unwrap().0, vec!["postgres:shop"]);
        let e = IncomingEvent {
            event: "scenario.deployed".into(),
            payload: json!({"scenario": "../x"}),
        };
        assert!(e.to_targets(&cfg).is_err());
    }
}
