//! S3 repository settings reach the CLI from the config file's `storage:` section and
//! `DBM_REPOSITORY`, plain http is refused unless allowed, a missing bucket reads as "no
//! repository", and the secret key never shows in output.

mod backends;
mod support;

use backends::{run_command, S3Env, BUCKET};
use support::*;

fn bare_command(home: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(BIN_PATH);
    c.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DBM_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::null());
    c
}

#[test]
fn config_file_and_environment() {
    let Some(s3) = S3Env::get("s3_config_file_and_environment") else {
        return;
    };
    let v = &s3.vars;
    let secret = v["AWS_SECRET_ACCESS_KEY"].clone();
    let home = tempdir();
    let url = format!("s3://{BUCKET}/{}", backends::unique("config"));
    let cfg_dir = home.path().join(".vrooli/data-backup-manager");
    mkdirs(&cfg_dir);
    let cfg = |allow_http: bool| {
        format!(
            "repository: {url}\nstorage:\n  endpoint: {}\n  region: {}\n  access_key_id: {}\n  secret_access_key: {secret}\n  allow_http: {allow_http}\n",
            v["AWS_ENDPOINT_URL"], v["AWS_REGION"], v["AWS_ACCESS_KEY_ID"]
        )
    };

    // Plain http without consent: refused before any request, secret not shown.
    write_file(&cfg_dir.join("config.yaml"), cfg(false).as_bytes());
    let run = run_command(bare_command(home.path()).arg("init"), "init (http refused)");
    run.expect_code(1);
    assert!(
        run.stderr_str().contains("allow_http"),
        "{}",
        run.describe()
    );
    assert!(
        !run.all_output().contains(&secret),
        "secret leaked\n{}",
        run.describe()
    );

    // With consent, everything comes from the config file.
    write_file(&cfg_dir.join("config.yaml"), cfg(true).as_bytes());
    run_command(bare_command(home.path()).arg("init"), "init").expect_success();
    let src = tempdir();
    build_random_tree(src.path(), 3, 50_000);
    let run = run_command(
        bare_command(home.path())
            .arg("backup")
            .arg(source_arg(src.path()))
            .arg("--verbose"),
        "backup",
    );
    run.expect_success();
    assert!(
        !run.all_output().contains(&secret),
        "secret leaked\n{}",
        run.describe()
    );

    // The environment overrides the config: a wrong secret in the env fails, naming the repo.
    let run = run_command(
        bare_command(home.path())
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")
            .arg("snapshots"),
        "snapshots (wrong env secret)",
    );
    run.expect_code(1);
    assert!(run.stderr_str().contains(&url), "{}", run.describe());
    assert!(
        !run.all_output().contains("not-the-secret-0123456789"),
        "{}",
        run.describe()
    );

    // DBM_REPOSITORY and AWS_* alone (no config file) reach the same repository.
    std::fs::remove_file(cfg_dir.join("config.yaml")).unwrap();
    let mut c = bare_command(home.path());
    c.envs(v.iter())
        .env("DBM_REPOSITORY", &url)
        .args(["snapshots", "--json"]);
    let run = run_command(&mut c, "snapshots via DBM_REPOSITORY");
    run.expect_success();
    assert_eq!(
        run.json().as_array().unwrap().len(),
        1,
        "{}",
        run.describe()
    );

    // A bucket that does not exist is "no repository" (init would create it).
    let mut c = bare_command(home.path());
    c.envs(v.iter())
        .args(["--repo", "s3://dbm-no-such-bucket-for-tests/x", "snapshots"]);
    let run = run_command(&mut c, "snapshots on a missing bucket");
    run.expect_code(1);
    assert!(
        run.stderr_str()
            .contains("no repository at s3://dbm-no-such-bucket-for-tests/x"),
        "{}",
        run.describe()
    );

    // Clean up the objects of this repository.
    drop(backends::TestRepo::s3_at(s3.clone(), url));
}
