//! The command reference (docs/cli.md) must match what the binary says in `--help`.

mod support;

use support::BIN_PATH;

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN_PATH)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn cli_reference_matches_help() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md"))
        .expect("docs/cli.md");
    let mut commands: Vec<Vec<&str>> = vec![vec![]];
    for c in [
        "init",
        "backup",
        "restore",
        "list",
        "ls",
        "diff",
        "dump",
        "verify",
        "check",
        "forget",
        "prune",
        "key",
        "repair-index",
        "status",
        "schedule",
        "run-scheduler",
        "catalog",
        "restore-point",
        "version",
        "wal-push",
        "wal-fetch",
        "wal-config",
        "wal-prune",
    ] {
        commands.push(vec![c]);
    }
    for k in ["add", "list", "remove"] {
        commands.push(vec!["key", k]);
    }
    for k in ["list", "create", "update", "delete", "enable", "disable"] {
        commands.push(vec!["schedule", k]);
    }
    for k in ["rebuild", "jobs", "audit"] {
        commands.push(vec!["catalog", k]);
    }
    for k in ["create", "list", "delete"] {
        commands.push(vec!["restore-point", k]);
    }
    for c in commands {
        let h = help(&c);
        assert!(
            doc.contains(h.trim_end()),
            "docs/cli.md is out of date for `{}`: run bash docs/gen-cli-md.sh",
            c.join(" ")
        );
    }
}
