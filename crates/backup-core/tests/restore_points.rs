//! Restore points are created against real snapshots of a real repository, in the embedded
//! catalog, and are linked to the backup jobs that produced them.

mod support;

use backup_core::catalog::embedded::EmbeddedCatalog;
use backup_core::catalog::restore_points::{create_restore_point, NewRestorePoint};
use backup_core::catalog::{job_from_snapshot, Catalog};
use backup_core::engine::backup::{backup, BackupOptions};
use backup_core::progress::NoProgress;
use backup_core::ErrorKind;

#[test]
fn restore_points_name_existing_snapshots() {
    let rt = support::runtime();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("f"), d.to_string_lossy().as_bytes()).unwrap();
        }
        let spec = |p: &std::path::Path| format!("files:{}", p.display()).parse().unwrap();
        let a1 = backup(&repo, &BackupOptions::new(vec![spec(&a)]), &NoProgress)
            .await
            .unwrap();
        let a2 = backup(&repo, &BackupOptions::new(vec![spec(&a)]), &NoProgress)
            .await
            .unwrap();
        let b1 = backup(&repo, &BackupOptions::new(vec![spec(&b)]), &NoProgress)
            .await
            .unwrap();
        let cat = EmbeddedCatalog::open(tmp.path().join("catalog")).unwrap();
        let job = job_from_snapshot(&b1);
        cat.insert_job(&job).await.unwrap();

        // Default: the newest snapshot of each group.
        let req = NewRestorePoint {
            name: "before migration".into(),
            ..Default::default()
        };
        let rp = create_restore_point(&cat, &repo, &req, "tester")
            .await
            .unwrap();
        let mut want = vec![a2.id.to_hex(), b1.id.to_hex()];
        want.sort();
        let mut got = rp.snapshot_ids.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(rp.backup_job_ids, vec![job.id]);
        assert_eq!(cat.get_restore_point("before migration").await.unwrap(), rp);

        // Explicit snapshots by prefix; duplicates collapse.
        let req = NewRestorePoint {
            name: "old".into(),
            snapshots: vec![a1.id.to_hex()[..8].to_string(), a1.id.to_hex()],
            description: Some("first".into()),
        };
        let rp2 = create_restore_point(&cat, &repo, &req, "tester")
            .await
            .unwrap();
        assert_eq!(rp2.snapshot_ids, vec![a1.id.to_hex()]);
        assert_eq!(cat.list_restore_points().await.unwrap().len(), 2);

        let dup = create_restore_point(&cat, &repo, &req, "tester")
            .await
            .unwrap_err();
        assert_eq!(dup.kind(), ErrorKind::Conflict);
        let missing = NewRestorePoint {
            name: "x".into(),
            snapshots: vec!["deadbeef".into()],
            ..Default::default()
        };
        let e = create_restore_point(&cat, &repo, &missing, "tester")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SnapshotNotFound);
        let blank = NewRestorePoint {
            name: "  ".into(),
            ..Default::default()
        };
        let e = create_restore_point(&cat, &repo, &blank, "tester")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let audit = cat.list_audit(10).await.unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.action == "restore_point.create")
                .count(),
            2
        );
    });
}
