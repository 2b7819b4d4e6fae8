//! `scenario:<name>` / `scenarios`: a Vrooli scenario directory backs up as kind `scenario`
//! and restores byte for byte; bad or missing names are refused before anything is stored.

mod support;

use std::path::Path;

use backup_core::engine::backup::{backup, BackupOptions};
use backup_core::engine::restore::{restore, RestoreOptions};
use backup_core::progress::NoProgress;
use backup_core::target::TargetSpec;
use backup_core::ErrorKind;

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

// One test: it sets VROOLI_SCENARIOS_DIR for the process.
#[test]
fn scenario_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("scenarios");
    write(
        &root.join("shop/.vrooli/service.json"),
        br#"{"service":{"name":"shop"}}"#,
    );
    write(&root.join("shop/api/main.go"), b"package main\n");
    write(&root.join("blog/README.md"), b"# blog\n");
    std::env::set_var("VROOLI_SCENARIOS_DIR", &root);

    assert!("scenario:../etc".parse::<TargetSpec>().is_err());
    assert!("scenario:.hidden".parse::<TargetSpec>().is_err());
    assert_eq!(
        "scenarios".parse::<TargetSpec>().unwrap(),
        TargetSpec::Scenario(None)
    );

    let rt = support::runtime();
    rt.block_on(async {
        let repo = support::init_repo(&tmp.path().join("repo")).await;
        let spec: TargetSpec = "scenario:shop".parse().unwrap();
        let snap = backup(&repo, &BackupOptions::new(vec![spec]), &NoProgress)
            .await
            .unwrap();
        assert_eq!(snap.target_kind, "scenario");
        assert_eq!(snap.targets, vec!["scenario:shop".to_string()]);
        assert_eq!(snap.summary.files_new, 2);

        let dest = tmp.path().join("out");
        let mut ro = RestoreOptions::new(&dest);
        ro.verify = true;
        restore(&repo, &snap, &ro, &NoProgress).await.unwrap();
        let restored = support::restored_path(&dest, &root.join("shop"));
        support::assert_same_state(
            &support::dir_state(&root.join("shop")),
            &support::dir_state(&restored),
            "scenario shop",
        );

        // Every scenario.
        let all = backup(
            &repo,
            &BackupOptions::new(vec!["scenarios".parse().unwrap()]),
            &NoProgress,
        )
        .await
        .unwrap();
        assert_eq!(all.summary.files_new + all.summary.files_unmodified, 3);

        // A scenario that does not exist fails before anything is stored.
        let before = repo.snapshots().await.unwrap().len();
        let err = backup(
            &repo,
            &BackupOptions::new(vec!["scenario:nope".parse().unwrap()]),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Target);
        assert!(err.to_string().contains("scenario:nope"), "{err}");
        assert_eq!(repo.snapshots().await.unwrap().len(), before);
    });
}
