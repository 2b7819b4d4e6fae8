//! Key management: a second password opens the same repository (same data), `key list`
//! marks the key in use, and a removed key no longer opens anything, while the key in use
//! cannot be removed.

mod support;

use serde_json::Value;
use support::*;

const SECOND: &str = "second password, also long enough";

/// `key list --json` with `password`: (id, current) pairs.
#[track_caller]
fn key_list(repo: &Repo, password: &str) -> Vec<(String, bool)> {
    let run = repo.run_with(Password::Env(password), ["key", "list", "--json"]);
    run.expect_success();
    match run.json() {
        Value::Array(a) => a
            .iter()
            .map(|k| {
                let id = k["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("key without id\n{}", run.describe()))
                    .to_string();
                let cur = k["current"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("key without current\n{}", run.describe()));
                (id, cur)
            })
            .collect(),
        other => panic!(
            "key list --json is not an array: {other}\n{}",
            run.describe()
        ),
    }
}

#[test]
fn add_list_and_remove_keys() {
    let repo = Repo::init();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    mkdirs(&src);
    build_random_tree(&src, 3, 20_000);
    let snap = repo.backup_ok(&[&src], &[]);

    // One key at first, in use.
    let keys = key_list(&repo, PASSWORD);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].1, "the only key is not marked current: {keys:?}");
    let first = keys[0].0.clone();

    // The second password does not open the repository yet.
    repo.run_with(Password::Env(SECOND), ["list"])
        .expect_code(1);

    // key add, the new password from DBM_NEW_PASSWORD.
    let run = repo.run_env(
        Password::Env(PASSWORD),
        &[("DBM_NEW_PASSWORD", SECOND)],
        ["key", "add", "--json"],
    );
    run.expect_success();
    let second = run.json()["added"]
        .as_str()
        .unwrap_or_else(|| panic!("no `added` id\n{}", run.describe()))
        .to_string();
    assert_ne!(second, first);
    assert!(
        !run.all_output().contains(SECOND),
        "key add printed the new password\n{}",
        run.describe()
    );

    // Opened with the second password: two keys, the second is current.
    let keys = key_list(&repo, SECOND);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.1).count(),
        1,
        "exactly one key is current: {keys:?}"
    );
    assert!(
        keys.contains(&(second.clone(), true)) && keys.contains(&(first.clone(), false)),
        "{keys:?}"
    );
    // Opened with the first: the first is current.
    let keys = key_list(&repo, PASSWORD);
    assert!(
        keys.contains(&(first.clone(), true)) && keys.contains(&(second.clone(), false)),
        "{keys:?}"
    );

    // The key in use cannot be removed.
    let run = repo.run_with(Password::Env(SECOND), ["key", "remove", &second]);
    run.expect_code(1);
    assert_eq!(
        key_list(&repo, SECOND).len(),
        2,
        "a refused removal removed a key"
    );
    // An unknown id neither.
    repo.run_with(Password::Env(SECOND), ["key", "remove", "ffffffffffff"])
        .expect_code(1);

    // Remove the first key while opened with the second (by a unique prefix).
    let run = repo.run_with(
        Password::Env(SECOND),
        ["key", "remove", &first[..12], "--json"],
    );
    run.expect_success();
    assert_eq!(run.json()["removed"], first.as_str(), "{}", run.describe());
    assert_eq!(key_list(&repo, SECOND), vec![(second.clone(), true)]);

    // The first password no longer opens the repository.
    let run = repo.run_with(Password::Env(PASSWORD), ["list"]);
    run.expect_code(1);
    assert!(
        run.stderr_str().to_lowercase().contains("password"),
        "{}",
        run.describe()
    );

    // The second one reads the data written under the first (same master key).
    let out = tempdir();
    let dest = out.path().join("restore");
    let run = repo.run_with(
        Password::Env(SECOND),
        [
            "restore".as_ref(),
            snap.id.as_str().as_ref(),
            "--destination".as_ref(),
            dest.as_os_str(),
            "--verify".as_ref(),
        ] as [&std::ffi::OsStr; 5],
    );
    run.expect_success();
    assert_trees_equal(&src, &restored_path(&dest, &src));

    // The last key (also the one in use) cannot be removed.
    repo.run_with(Password::Env(SECOND), ["key", "remove", &second])
        .expect_code(1);
    assert_eq!(key_list(&repo, SECOND).len(), 1);
}

#[test]
fn key_add_without_a_new_password_fails() {
    let repo = Repo::init();
    // No DBM_NEW_PASSWORD and no terminal: refused, nothing added.
    let run = repo.run_env(Password::Env(PASSWORD), &[], ["key", "add"]);
    run.expect_code(1);
    let run = repo.run_env(
        Password::Env(PASSWORD),
        &[("DBM_NEW_PASSWORD", "")],
        ["key", "add"],
    );
    run.expect_code(1);
    assert_eq!(key_list(&repo, PASSWORD).len(), 1);
}
