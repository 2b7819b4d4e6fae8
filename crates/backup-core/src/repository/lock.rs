//! Repository locks (`locks/<id>`): shared for backups, restores, checks and forget,
//! exclusive for prune and index repair.
//!
//! Protocol: write our lock object first, then list the others. If a conflicting lock that is
//! not stale exists, remove ours and fail. Two racing writers both see each other and both back
//! off, so at most one exclusive holder can ever proceed.
//!
//! A lock is *stale* when its process is gone on this host (`kill(pid, 0)` fails with ESRCH),
//! or when it was not refreshed for [`STALE_AFTER`]. Ages are computed with the store's own
//! clock only (the last-modified time of our fresh lock versus theirs), so hosts' wall clocks
//! never need to agree. Holders refresh every [`REFRESH_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::crypto::random_id;
use crate::store::Store;

/// A lock not refreshed for this long (by the store's clock) is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a holder rewrites its lock.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// Content of a lock object (plain JSON: it holds nothing secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (prune) or shared.
    pub exclusive: bool,
    /// Host of the holder.
    pub hostname: String,
    /// Process id of the holder.
    pub pid: u32,
    /// What the holder is doing (`backup`, `prune`, …).
    pub purpose: String,
    /// When the lock was first taken, holder's clock (informational only).
    pub created: DateTime<Utc>,
}

/// A held lock; refreshed in the background until [`LockGuard::release`].
pub struct LockGuard {
    store: Arc<dyn Store>,
    path: String,
    refresher: tokio::task::JoinHandle<()>,
}

impl LockGuard {
    /// Releases the lock (deletes its object).
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        self.store.delete(&self.path).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a valid buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Takes a lock. `exclusive` conflicts with every other live lock; shared conflicts only with
/// exclusive ones. Stale locks are removed on the way.
///
/// Errors: [`Error::Locked`] naming the holder.
pub async fn acquire(store: Arc<dyn Store>, exclusive: bool, purpose: &str) -> Result<LockGuard> {
    let me = hostname();
    let info = LockInfo {
        exclusive,
        hostname: me.clone(),
        pid: std::process::id(),
        purpose: purpose.to_string(),
        created: Utc::now(),
    };
    let body = Bytes::from(serde_json::to_vec(&info).expect("lock serializes"));
    let id = random_id();
    let path = format!("locks/{id}");
    store.put_new(&path, body.clone()).await.map_err(|e| {
        Error::Locked(format!(
            "cannot create a lock in {}/locks ({e}); to read a read-only repository, add --no-lock",
            store.location()
        ))
    })?;
    let result = check_conflicts(&*store, &path, exclusive, &me).await;
    if let Err(e) = result {
        let _ = store.delete(&path).await;
        return Err(e);
    }
    let (s2, p2) = (store.clone(), path.clone());
    let refresher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH_EVERY).await;
            if let Err(e) = s2.put_overwrite(&p2, body.clone()).await {
                tracing::warn!("could not refresh lock {p2}: {e}");
            }
        }
    });
    Ok(LockGuard {
        store,
        path,
        refresher,
    })
}

async fn check_conflicts(store: &dyn Store, mine: &str, exclusive: bool, me: &str) -> Result<()> {
    let all = store.list("locks").await?;
    let now = all
        .iter()
        .find(|o| o.path == mine)
        .map(|o| o.last_modified)
        .ok_or_else(|| Error::Locked(format!("own lock {mine} vanished")))?;
    for o in all.iter().filter(|o| o.path != mine) {
        let Ok(data) = store.get(&o.path).await else {
            continue;
        };
        let Ok(other) = serde_json::from_slice::<LockInfo>(&data) else {
            tracing::warn!("ignoring unreadable lock {}", o.path);
            continue;
        };
        let age = (now - o.last_modified).to_std().unwrap_or_default();
        let dead = other.hostname == me && !process_alive(other.pid);
        if dead || age > STALE_AFTER {
            tracing::info!(
                "removing stale lock {} ({} pid {})",
                o.path,
                other.hostname,
                other.pid
            );
            store.delete(&o.path).await?;
            continue;
        }
        if exclusive || other.exclusive {
            return Err(Error::Locked(format!(
                "{} lock held by pid {} on {} for {} since {} ({})",
                if other.exclusive {
                    "an exclusive"
                } else {
                    "a shared"
                },
                other.pid,
                other.hostname,
                other.purpose,
                other.created.format("%Y-%m-%d %H:%M:%S UTC"),
                o.path
            )));
        }
    }
    Ok(())
}
