//! Repository locks as the operations see them: stale locks are cleaned up and do not block,
//! live ones do (shared vs exclusive), and a refused operation leaves no lock of its own.
//!
//! Every "stale lock is ignored" case has a live twin that must block: a lock object the
//! engine cannot parse is ignored too, so without the twin a wrong fixture would pass.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backup_core::engine::backup::{backup, BackupOptions};
use backup_core::engine::check::{check, CheckOptions};
use backup_core::engine::prune::{prune, PruneOptions};
use backup_core::engine::restore::{restore, RestoreOptions};
use backup_core::progress::NoProgress;
use backup_core::repository::lock::{self, LockInfo};
use backup_core::target::TargetSpec;
use backup_core::{ErrorKind, Repository};
use support::*;

/// A pid that does not exist on this host (checked with `kill(pid, 0)`).
fn dead_pid() -> u32 {
    for pid in [999_999u32, 4_194_303, 3_999_999] {
        // SAFETY: signal 0 only checks for existence.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return pid;
        }
    }
    panic!("no free pid found for the stale-lock test");
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo_dir: PathBuf,
    src: PathBuf,
    repo: Arc<Repository>,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), vec![1u8; 50_000]).unwrap();
    std::fs::write(src.join("b"), b"bee\n").unwrap();
    let repo = init_repo(&repo_dir).await;
    Fixture {
        _tmp: tmp,
        repo_dir,
        src,
        repo,
    }
}

impl Fixture {
    fn opts(&self) -> BackupOptions {
        BackupOptions::new(vec![TargetSpec::Files(self.src.clone())])
    }

    /// Writes `locks/<name>` holding `info` as the engine writes it (plain JSON).
    async fn plant_lock(&self, name: &str, info: &LockInfo) -> String {
        let path = format!("locks/{name}");
        let body = bytes::Bytes::from(serde_json::to_vec(info).unwrap());
        assert!(
            self.repo.store().put_new(&path, body).await.unwrap(),
            "lock {path} exists already"
        );
        path
    }

    async fn exists(&self, path: &str) -> bool {
        self.repo.store().head(path).await.unwrap().is_some()
    }

    async fn locks(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .repo
            .store()
            .list("locks")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect();
        v.sort();
        v
    }

    fn lock_file(&self, store_path: &str) -> PathBuf {
        self.repo_dir.join(store_path)
    }
}

fn info(exclusive: bool, hostname: &str, pid: u32) -> LockInfo {
    LockInfo {
        exclusive,
        hostname: hostname.into(),
        pid,
        purpose: "planted by test".into(),
        created: chrono::Utc::now(),
    }
}

fn age(p: &Path, by: Duration) {
    let t = filetime::FileTime::from_system_time(SystemTime::now() - by);
    filetime::set_file_mtime(p, t).unwrap();
}

#[track_caller]
fn assert_locked<T: std::fmt::Debug>(r: backup_core::Result<T>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Locked, "{what}: wrong error: {e}"),
        Ok(v) => panic!("{what}: succeeded despite a conflicting live lock: {v:?}"),
    }
}

#[test]
fn stale_lock_of_a_dead_local_process_is_removed_and_ignored() {
    runtime().block_on(async {
        let fx = fixture().await;
        let me = hostname();

        // Control: the same lock with a live pid (ours) blocks the backup, so the planted
        // object is one the engine reads.
        let live = fx
            .plant_lock("00live", &info(true, &me, std::process::id()))
            .await;
        assert_locked(
            backup(&fx.repo, &fx.opts(), &NoProgress).await,
            "backup under a live exclusive lock",
        );
        assert!(fx.exists(&live).await, "a live lock was removed");
        assert_eq!(
            fx.locks().await,
            vec![live.clone()],
            "the refused backup left its own lock behind"
        );
        fx.repo.store().delete(&live).await.unwrap();

        // Exclusive lock of a pid that does not exist on this host.
        let pid = dead_pid();
        let stale = fx.plant_lock("01stale", &info(true, &me, pid)).await;
        let snap = backup(&fx.repo, &fx.opts(), &NoProgress)
            .await
            .expect("backup despite a stale lock");
        assert!(!snap.partial);
        assert!(
            !fx.exists(&stale).await,
            "the stale lock {stale} was not removed"
        );
        assert!(
            fx.locks().await.is_empty(),
            "locks left after the backup: {:?}",
            fx.locks().await
        );

        // Shared stale lock: prune (exclusive) is not blocked by it either.
        let stale = fx.plant_lock("02stale", &info(false, &me, pid)).await;
        prune(&fx.repo, &PruneOptions::default(), &NoProgress)
            .await
            .expect("prune despite a stale lock");
        assert!(
            !fx.exists(&stale).await,
            "the stale shared lock was not removed by prune"
        );
        assert!(fx.locks().await.is_empty());
    });
}

#[test]
fn dead_pid_on_another_host_still_blocks_until_old() {
    runtime().block_on(async {
        let fx = fixture().await;
        let pid = dead_pid();
        // The pid cannot be checked on another host: a fresh lock from there is live.
        let foreign = fx
            .plant_lock("10foreign", &info(true, "some-other-host.example", pid))
            .await;
        assert_locked(
            backup(&fx.repo, &fx.opts(), &NoProgress).await,
            "backup under a fresh foreign lock",
        );
        assert!(
            fx.exists(&foreign).await,
            "a fresh lock from another host was removed"
        );
        assert_eq!(fx.locks().await, vec![foreign.clone()]);

        // Not refreshed for longer than STALE_AFTER (by the store's clock): stale.
        age(
            &fx.lock_file(&foreign),
            lock::STALE_AFTER + Duration::from_secs(600),
        );
        backup(&fx.repo, &fx.opts(), &NoProgress)
            .await
            .expect("backup despite an expired foreign lock");
        assert!(
            !fx.exists(&foreign).await,
            "the expired foreign lock was not removed"
        );

        // Age alone also expires a lock of a live local process (e.g. a hung one).
        let hung = fx
            .plant_lock("11hung", &info(true, &hostname(), std::process::id()))
            .await;
        age(
            &fx.lock_file(&hung),
            lock::STALE_AFTER + Duration::from_secs(600),
        );
        backup(&fx.repo, &fx.opts(), &NoProgress)
            .await
            .expect("backup despite an expired local lock");
        assert!(!fx.exists(&hung).await);

        // Just under the limit: still live.
        let recent = fx
            .plant_lock("12recent", &info(true, "some-other-host.example", pid))
            .await;
        age(
            &fx.lock_file(&recent),
            lock::STALE_AFTER - Duration::from_secs(300),
        );
        assert_locked(
            backup(&fx.repo, &fx.opts(), &NoProgress).await,
            "backup under a 25-minute-old lock",
        );
        assert!(fx.exists(&recent).await);
    });
}

#[test]
fn live_exclusive_lock_blocks_every_operation() {
    runtime().block_on(async {
        let fx = fixture().await;
        let snap = backup(&fx.repo, &fx.opts(), &NoProgress).await.unwrap();
        let guard = lock::acquire(fx.repo.store().clone(), true, "test")
            .await
            .expect("take exclusive lock");
        let held = fx.locks().await;
        assert_eq!(held.len(), 1);
        let snapshots_before = fx.repo.snapshot_ids().await.unwrap();

        assert_locked(backup(&fx.repo, &fx.opts(), &NoProgress).await, "backup");
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("r");
        assert_locked(
            restore(&fx.repo, &snap, &RestoreOptions::new(&dest), &NoProgress).await,
            "restore",
        );
        assert_locked(
            check(&fx.repo, &CheckOptions::default(), &NoProgress).await,
            "check",
        );
        assert_locked(
            prune(&fx.repo, &PruneOptions::default(), &NoProgress).await,
            "prune",
        );
        assert_locked(
            lock::acquire(fx.repo.store().clone(), true, "second")
                .await
                .map(|_| ()),
            "second exclusive lock",
        );
        assert_locked(
            lock::acquire(fx.repo.store().clone(), false, "shared")
                .await
                .map(|_| ()),
            "shared lock",
        );

        assert_eq!(
            fx.locks().await,
            held,
            "refused operations left locks behind"
        );
        assert_eq!(
            fx.repo.snapshot_ids().await.unwrap(),
            snapshots_before,
            "a refused backup stored a snapshot"
        );

        guard.release().await.unwrap();
        assert!(
            fx.locks().await.is_empty(),
            "release did not delete the lock"
        );
        backup(&fx.repo, &fx.opts(), &NoProgress)
            .await
            .expect("backup after release");
        let s = restore(&fx.repo, &snap, &RestoreOptions::new(&dest), &NoProgress)
            .await
            .expect("restore after release");
        assert!(s.errors.is_empty());
    });
}

#[test]
fn live_shared_lock_blocks_prune_only() {
    runtime().block_on(async {
        let fx = fixture().await;
        let snap = backup(&fx.repo, &fx.opts(), &NoProgress).await.unwrap();
        let guard = lock::acquire(fx.repo.store().clone(), false, "test")
            .await
            .expect("take shared lock");
        let held = fx.locks().await;

        assert_locked(
            prune(&fx.repo, &PruneOptions::default(), &NoProgress).await,
            "prune under a shared lock",
        );
        assert_locked(
            prune(
                &fx.repo,
                &PruneOptions {
                    dry_run: true,
                    ..Default::default()
                },
                &NoProgress,
            )
            .await,
            "prune --dry-run under a shared lock",
        );
        assert_eq!(fx.locks().await, held, "refused prune left its lock behind");

        // Shared holders coexist.
        std::fs::write(fx.src.join("c"), b"new file\n").unwrap();
        let snap2 = backup(&fx.repo, &fx.opts(), &NoProgress)
            .await
            .expect("backup under a shared lock");
        assert_eq!(snap2.parent, Some(snap.id));
        let report = check(
            &fx.repo,
            &CheckOptions {
                read_data: true,
                ..Default::default()
            },
            &NoProgress,
        )
        .await
        .expect("check under a shared lock");
        assert!(report.ok, "{:?}", report.errors);
        assert_eq!(
            fx.locks().await,
            held,
            "shared operations left locks behind"
        );

        guard.release().await.unwrap();
        prune(&fx.repo, &PruneOptions::default(), &NoProgress)
            .await
            .expect("prune after release");
        assert!(fx.locks().await.is_empty());
    });
}

#[test]
fn unreadable_lock_objects_do_not_block() {
    runtime().block_on(async {
        let fx = fixture().await;
        // Garbage in locks/ (e.g. a truncated write) must not wedge the repository forever.
        fx.repo
            .store()
            .put_new("locks/garbage", bytes::Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        backup(&fx.repo, &fx.opts(), &NoProgress)
            .await
            .expect("backup with a garbage lock object");
    });
}
