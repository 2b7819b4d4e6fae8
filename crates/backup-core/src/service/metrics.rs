//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4,
//! <https://prometheus.io/docs/instrumenting/exposition_formats/>), computed from the catalog
//! and the health evaluation at scrape time. Metric names start with `dbm_`.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::catalog::{Catalog, JobFilter, JobStatus};
use crate::error::Result;
use crate::health::{Health, HealthStatus};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

#[derive(Default)]
struct PerTarget {
    last_success: Option<DateTime<Utc>>,
    last_duration: Option<f64>,
    last_size: Option<i64>,
    duration_sum: f64,
    completed: u64,
    bytes_sum: f64,
}

/// Renders the metrics:
/// * `dbm_jobs{status}` — backup jobs in the catalog by status (gauge);
/// * `dbm_job_duration_seconds_sum` / `_count{target}` — run time of completed jobs;
/// * `dbm_backup_last_duration_seconds{target}`, `dbm_backup_last_size_bytes{target}` — of the
///   newest completed job;
/// * `dbm_backup_bytes_sum{target}` — logical bytes of all completed jobs;
/// * `dbm_last_success_timestamp_seconds{target}` — Unix time of the last success;
/// * `dbm_health{status}` — 1 for the current state, 0 for the others; `dbm_health_reasons`;
/// * `dbm_restore_jobs{status}`, `dbm_schedules{enabled}`.
pub async fn render(catalog: &dyn Catalog, health: &Health) -> Result<String> {
    let jobs = catalog.list_jobs(&JobFilter::default()).await?;
    let mut out = Out(String::new());
    let mut by_status: BTreeMap<&str, u64> = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
    ]
    .iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    let mut targets: BTreeMap<String, PerTarget> = BTreeMap::new();
    for j in &jobs {
        *by_status.entry(j.status.as_str()).or_default() += 1;
        if j.status != JobStatus::Completed {
            continue;
        }
        let t = targets.entry(j.target_identifier.clone()).or_default();
        let dur = match (j.started_at, j.completed_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        t.completed += 1;
        t.duration_sum += dur.unwrap_or(0.0);
        t.bytes_sum += j.size_bytes.unwrap_or(0) as f64;
        if j.completed_at > t.last_success {
            t.last_success = j.completed_at;
            t.last_duration = dur;
            t.last_size = j.size_bytes;
        }
    }
    out.head("dbm_jobs", "gauge", "Backup jobs in the catalog by status.");
    for (s, n) in &by_status {
        out.sample("dbm_jobs", &[("status", s)], *n as f64);
    }
    out.head(
        "dbm_job_duration_seconds",
        "summary",
        "Run time of completed backup jobs, seconds.",
    );
    for (t, p) in &targets {
        out.sample(
            "dbm_job_duration_seconds_sum",
            &[("target", t)],
            p.duration_sum,
        );
        out.sample(
            "dbm_job_duration_seconds_count",
            &[("target", t)],
            p.completed as f64,
        );
    }
    out.head(
        "dbm_backup_last_duration_seconds",
        "gauge",
        "Run time of the newest completed backup of a target, seconds.",
    );
    for (t, p) in &targets {
        if let Some(d) = p.last_duration {
            out.sample("dbm_backup_last_duration_seconds", &[("target", t)], d);
        }
    }
    out.head(
        "dbm_backup_last_size_bytes",
        "gauge",
        "Logical size of the newest completed backup of a target, bytes.",
    );
    for (t, p) in &targets {
        if let Some(s) = p.last_size {
            out.sample("dbm_backup_last_size_bytes", &[("target", t)], s as f64);
        }
    }
    out.head(
        "dbm_backup_bytes_sum",
        "counter",
        "Logical bytes of all completed backups of a target.",
    );
    for (t, p) in &targets {
        out.sample("dbm_backup_bytes_sum", &[("target", t)], p.bytes_sum);
    }
    out.head(
        "dbm_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful backup of a target.",
    );
    for t in &health.targets {
        if let Some(ts) = t.last_success {
            out.sample(
                "dbm_last_success_timestamp_seconds",
                &[("target", &t.target)],
                ts.timestamp_millis() as f64 / 1000.0,
            );
        }
    }
    out.head(
        "dbm_health",
        "gauge",
        "Backup system health: 1 for the current state (healthy, degraded, critical).",
    );
    for s in [
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Critical,
    ] {
        out.sample(
            "dbm_health",
            &[("status", s.as_str())],
            if health.status == s { 1.0 } else { 0.0 },
        );
    }
    out.head("dbm_health_reasons", "gauge", "Failed health rules.");
    out.sample("dbm_health_reasons", &[], health.reasons.len() as f64);
    let restores = catalog.list_restore_jobs(10_000).await?;
    out.head(
        "dbm_restore_jobs",
        "gauge",
        "Restore jobs (and drills) by status.",
    );
    for s in [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
    ] {
        let n = restores.iter().filter(|r| r.status == s).count();
        out.sample("dbm_restore_jobs", &[("status", s.as_str())], n as f64);
    }
    let schedules = catalog.list_schedules().await?;
    out.head("dbm_schedules", "gauge", "Schedules by state.");
    let on = schedules.iter().filter(|s| s.enabled).count();
    out.sample("dbm_schedules", &[("enabled", "true")], on as f64);
    out.sample(
        "dbm_schedules",
        &[("enabled", "false")],
        (schedules.len() - on) as f64,
    );
    Ok(out.0)
}
