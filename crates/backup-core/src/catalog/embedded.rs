//! The embedded catalog: one JSON document, `<dir>/catalog.json`, no server needed.
//!
//! Every operation takes an `flock` on `<dir>/catalog.lock` (shared to read, exclusive to
//! change), reads the document, and for a change writes it to a temporary file in the same
//! folder, fsyncs it, renames it over `catalog.json` and fsyncs the folder: a crash leaves the
//! old or the new document, never a mix. The lock makes the compare-and-set operations
//! ([`Catalog::claim_job`], [`Catalog::advance_schedule`]) atomic across processes on one host.
//! Memory and time grow with the number of records (the whole document is read per call); it
//! is meant for one machine's job history, the PostgreSQL catalog for more.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

/// Document format version.
const DOC_VERSION: u32 = 1;
/// Audit entries kept (oldest dropped first).
const MAX_AUDIT: usize = 100_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    version: u32,
    #[serde(default)]
    jobs: Vec<Job>,
    #[serde(default)]
    schedules: Vec<Schedule>,
    #[serde(default)]
    restore_points: Vec<RestorePoint>,
    #[serde(default)]
    restore_jobs: Vec<RestoreJob>,
    #[serde(default)]
    audit: Vec<AuditEntry>,
    #[serde(default)]
    next_audit_id: i64,
}

/// See the module docs.
pub struct EmbeddedCatalog {
    dir: PathBuf,
}

impl EmbeddedCatalog {
    /// Opens (creating the folder, mode 0700, when missing) the catalog in `dir`.
    ///
    /// Errors: [`Error::Catalog`] when the folder cannot be created or the document read.
    pub fn open(dir: impl Into<PathBuf>) -> Result<EmbeddedCatalog> {
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::catalog(dir.display().to_string(), e))?;
        let c = EmbeddedCatalog { dir };
        // Fail now, not at the first job, when the folder is unusable.
        c.locked(false, |_| Ok(()))?;
        Ok(c)
    }

    /// The document's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("catalog.json")
    }

    fn locked<R>(&self, write: bool, f: impl FnOnce(&mut Doc) -> Result<R>) -> Result<R> {
        let what = || self.path().display().to_string();
        let lock_path = self.dir.join("catalog.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::catalog(lock_path.display().to_string(), e))?;
        flock(&lock, write).map_err(|e| Error::catalog(lock_path.display().to_string(), e))?;
        let path = self.path();
        let mut doc: Doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::catalog(what(), format!("unreadable document: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc {
                version: DOC_VERSION,
                ..Default::default()
            },
            Err(e) => return Err(Error::catalog(what(), e)),
        };
        if doc.version > DOC_VERSION {
            return Err(Error::catalog(
                what(),
                format!(
                    "written by a newer program (format {}, this one reads {DOC_VERSION})",
                    doc.version
                ),
            ));
        }
        let r = f(&mut doc)?;
        if write {
            if doc.audit.len() > MAX_AUDIT {
                let extra = doc.audit.len() - MAX_AUDIT;
                doc.audit.drain(..extra);
            }
            write_atomic(&self.dir, &path, &doc).map_err(|e| Error::catalog(what(), e))?;
        }
        Ok(r)
        // `lock` is closed here, which releases the flock.
    }

    async fn run<R: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Doc) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let me = EmbeddedCatalog {
            dir: self.dir.clone(),
        };
        tokio::task::spawn_blocking(move || me.locked(write, f))
            .await
            .map_err(|e| Error::catalog(self.path().display().to_string(), e))?
    }
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

fn flock(f: &File, exclusive: bool) -> std::io::Result<()> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    loop {
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn write_atomic(dir: &Path, path: &Path, doc: &Doc) -> std::io::Result<()> {
    let tmp = dir.join(format!(".catalog.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        serde_json::to_writer(&mut std::io::BufWriter::new(&mut f), doc)?;
        f.flush()?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn find_schedule<'a>(doc: &'a mut Doc, key: &str) -> Result<&'a mut Schedule> {
    let id = Uuid::parse_str(key).ok();
    doc.schedules
        .iter_mut()
        .find(|s| s.name == key || Some(s.id) == id)
        .ok_or_else(|| Error::NotFound(format!("schedule {key:?}")))
}

#[async_trait]
impl Catalog for EmbeddedCatalog {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }

    async fn insert_job(&self, job: &Job) -> Result<()> {
        let job = job.clone();
        self.run(true, move |d| {
            if d.jobs.iter().any(|j| j.id == job.id) {
                return Err(Error::Conflict(format!("job {} exists", job.id)));
            }
            d.jobs.push(job);
            Ok(())
        })
        .await
    }

    async fn get_job(&self, id: Uuid) -> Result<Job> {
        self.run(false, move |d| {
            d.jobs
                .iter()
                .find(|j| j.id == id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("job {id}")))
        })
        .await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let filter = filter.clone();
        self.run(false, move |d| {
            let mut v: Vec<Job> = d
                .jobs
                .iter()
                .filter(|j| filter.matches(j))
                .cloned()
                .collect();
            v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            if let Some(n) = filter.limit {
                v.truncate(n);
            }
            Ok(v)
        })
        .await
    }

    async fn update_job_if(
        &self,
        job: &Job,
        expect_status: JobStatus,
        expect_owner: Option<&str>,
    ) -> Result<bool> {
        let job = job.clone();
        let owner = expect_owner.map(str::to_string);
        self.run(true, move |d| {
            let Some(j) = d.jobs.iter_mut().find(|j| j.id == job.id) else {
                return Err(Error::NotFound(format!("job {}", job.id)));
            };
            if j.status != expect_status || j.owner != owner {
                return Ok(false);
            }
            *j = job;
            Ok(true)
        })
        .await
    }

    async fn claim_job(&self, owner: &str, now: DateTime<Utc>) -> Result<Option<Job>> {
        let owner = owner.to_string();
        self.run(true, move |d| {
            let pick = d
                .jobs
                .iter_mut()
                .filter(|j| j.status == JobStatus::Pending && j.not_before.is_none_or(|t| t <= now))
                .min_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(pick.map(|j| {
                j.status = JobStatus::Running;
                j.owner = Some(owner);
                j.started_at = Some(now);
                j.heartbeat_at = Some(now);
                j.clone()
            }))
        })
        .await
    }

    async fn heartbeat(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<bool> {
        let owner = owner.to_string();
        self.run(true, move |d| {
            Ok(match d.jobs.iter_mut().find(|j| j.id == id) {
                Some(j) if j.status == JobStatus::Running && j.owner.as_deref() == Some(&owner) => {
                    j.heartbeat_at = Some(now);
                    true
                }
                _ => false,
            })
        })
        .await
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.run(false, |d| {
            let mut v = d.schedules.clone();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(v)
        })
        .await
    }

    async fn get_schedule(&self, name_or_id: &str) -> Result<Schedule> {
        let key = name_or_id.to_string();
        self.run(false, move |d| find_schedule(d, &key).map(|s| s.clone()))
            .await
    }

    async fn insert_schedule(&self, s: &Schedule) -> Result<()> {
        let s = s.clone();
        self.run(true, move |d| {
            if d.schedules.iter().any(|x| x.name == s.name || x.id == s.id) {
                return Err(Error::Conflict(format!(
                    "a schedule named {:?} already exists",
                    s.name
                )));
            }
            d.schedules.push(s);
            Ok(())
        })
        .await
    }

    async fn update_schedule(&self, s: &Schedule) -> Result<()> {
        let s = s.clone();
        self.run(true, move |d| {
            if d.schedules.iter().any(|x| x.name == s.name && x.id != s.id) {
                return Err(Error::Conflict(format!(
                    "a schedule named {:?} already exists",
                    s.name
                )));
            }
            let x = find_schedule(d, &s.id.to_string())?;
            *x = s;
            Ok(())
        })
        .await
    }

    async fn delete_schedule(&self, id: Uuid) -> Result<()> {
        self.run(true, move |d| {
            let n = d.schedules.len();
            d.schedules.retain(|s| s.id != id);
            if d.schedules.len() == n {
                return Err(Error::NotFound(format!("schedule {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn advance_schedule(
        &self,
        id: Uuid,
        expect_next: Option<DateTime<Utc>>,
        last_run: Option<DateTime<Utc>>,
        next_run: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        self.run(true, move |d| {
            let s = find_schedule(d, &id.to_string())?;
            if s.next_run != expect_next {
                return Ok(false);
            }
            if last_run.is_some() {
                s.last_run = last_run;
            }
            s.next_run = next_run;
            Ok(true)
        })
        .await
    }

    async fn insert_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        let rp = rp.clone();
        self.run(true, move |d| {
            if d.restore_points.iter().any(|x| x.name == rp.name) {
                return Err(Error::Conflict(format!(
                    "a restore point named {:?} already exists",
                    rp.name
                )));
            }
            d.restore_points.push(rp);
            Ok(())
        })
        .await
    }

    async fn update_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        let rp = rp.clone();
        self.run(true, move |d| {
            match d.restore_points.iter_mut().find(|x| x.id == rp.id) {
                Some(x) => *x = rp,
                None => return Err(Error::NotFound(format!("restore point {}", rp.id))),
            }
            Ok(())
        })
        .await
    }

    async fn get_restore_point(&self, name_or_id: &str) -> Result<RestorePoint> {
        let key = name_or_id.to_string();
        self.run(false, move |d| {
            let id = Uuid::parse_str(&key).ok();
            d.restore_points
                .iter()
                .find(|r| r.name == key || Some(r.id) == id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("restore point {key:?}")))
        })
        .await
    }

    async fn list_restore_points(&self) -> Result<Vec<RestorePoint>> {
        self.run(false, |d| {
            let mut v = d.restore_points.clone();
            v.sort_by_key(|x| std::cmp::Reverse(x.created_at));
            Ok(v)
        })
        .await
    }

    async fn delete_restore_point(&self, id: Uuid) -> Result<()> {
        self.run(true, move |d| {
            let n = d.restore_points.len();
            d.restore_points.retain(|r| r.id != id);
            if n == d.restore_points.len() {
                return Err(Error::NotFound(format!("restore point {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn insert_restore_job(&self, r: &RestoreJob) -> Result<()> {
        let r = r.clone();
        self.run(true, move |d| {
            d.restore_jobs.push(r);
            Ok(())
        })
        .await
    }

    async fn update_restore_job(&self, r: &RestoreJob) -> Result<()> {
        let r = r.clone();
        self.run(true, move |d| {
            match d.restore_jobs.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => return Err(Error::NotFound(format!("restore job {}", r.id))),
            }
            Ok(())
        })
        .await
    }

    async fn get_restore_job(&self, id: Uuid) -> Result<RestoreJob> {
        self.run(false, move |d| {
            d.restore_jobs
                .iter()
                .find(|r| r.id == id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("restore job {id}")))
        })
        .await
    }

    async fn list_restore_jobs(&self, limit: usize) -> Result<Vec<RestoreJob>> {
        self.run(false, move |d| {
            let mut v = d.restore_jobs.clone();
            v.sort_by_key(|x| std::cmp::Reverse(x.created_at));
            v.truncate(limit);
            Ok(v)
        })
        .await
    }

    async fn audit(&self, mut e: AuditEntry) -> Result<()> {
        self.run(true, move |d| {
            d.next_audit_id += 1;
            e.id = d.next_audit_id;
            d.audit.push(e);
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.run(false, move |d| {
            Ok(d.audit.iter().rev().take(limit).cloned().collect())
        })
        .await
    }
}
