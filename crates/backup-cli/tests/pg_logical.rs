//! Logical PostgreSQL backups against the real server on 127.0.0.1:5432: a database with
//! serial and identity columns, a standalone sequence, a large object, a view, a function, the
//! pgcrypto extension and a non-default owner with grants goes through backup and restore into
//! a new database; rows, content hashes, sequences, large-object bytes (and with
//! --with-globals, owners and grants) must match. A failing dump must leave no snapshot.

mod support;

use support::pg::{psql, run_pg, unique};
use support::Repo;

struct Names {
    src: String,
    owner: String,
    reader: String,
}

/// Drops the test's databases and roles whatever happens.
struct Cleanup(Vec<String>, Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(format!("DROP DATABASE IF EXISTS \"{d}\" WITH (FORCE)"))
                .output();
        }
        for r in &self.1 {
            let _ = std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(format!("DROP ROLE IF EXISTS \"{r}\""))
                .output();
        }
    }
}

fn make_source(n: &Names) {
    psql("postgres", &format!("CREATE ROLE \"{}\" NOLOGIN", n.owner));
    psql("postgres", &format!("CREATE ROLE \"{}\" NOLOGIN", n.reader));
    psql("postgres", &format!("CREATE DATABASE \"{}\"", n.src));
    let o = &n.owner;
    let r = &n.reader;
    psql(
        &n.src,
        &format!(
            r#"
CREATE EXTENSION pgcrypto;
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, digest bytea);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 500) g;
UPDATE items SET digest = digest(name, 'sha256');
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb, at timestamptz);
INSERT INTO events (payload, at) SELECT jsonb_build_object('n', g, 's', md5(g::text)), '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 300) g;
CREATE SEQUENCE standalone_seq START 100 INCREMENT 7;
SELECT nextval('standalone_seq'), nextval('standalone_seq'), nextval('standalone_seq');
CREATE TABLE docs (id int PRIMARY KEY, blob oid);
INSERT INTO docs VALUES (1, lo_from_bytea(0, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 300))));
CREATE VIEW item_names AS SELECT id, upper(name) AS name FROM items WHERE id % 2 = 0;
CREATE FUNCTION add_seven(i int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT i + 7';
ALTER TABLE items OWNER TO "{o}";
ALTER TABLE events OWNER TO "{o}";
ALTER VIEW item_names OWNER TO "{o}";
ALTER FUNCTION add_seven(int) OWNER TO "{o}";
ALTER SEQUENCE standalone_seq OWNER TO "{o}";
GRANT SELECT ON items TO "{r}";
GRANT SELECT, INSERT ON events TO "{r}";
GRANT EXECUTE ON FUNCTION add_seven(int) TO "{r}";
GRANT USAGE ON SEQUENCE standalone_seq TO "{r}";
SELECT lo_from_bytea(0, 'x');
"#
        ),
    );
    // The large object gets the owner too.
    let lo = psql(&n.src, "SELECT blob FROM docs WHERE id = 1");
    psql(&n.src, &format!("ALTER LARGE OBJECT {lo} OWNER TO \"{o}\""));
}

/// Data that must survive any restore: counts, content hashes, sequence states, LO bytes,
/// view and function results, the extension.
fn data_fingerprint(db: &str) -> Vec<String> {
    [
        "SELECT count(*) FROM items",
        "SELECT md5(string_agg(id || ':' || name || ':' || encode(digest, 'hex'), '|' ORDER BY id)) FROM items",
        "SELECT count(*) FROM events",
        "SELECT md5(string_agg(id || ':' || payload::text || ':' || at::text, '|' ORDER BY id)) FROM events",
        "SELECT last_value || ',' || is_called FROM standalone_seq",
        "SELECT pg_get_serial_sequence('items', 'id') IS NOT NULL",
        "SELECT pg_get_serial_sequence('events', 'id') IS NOT NULL",
        "SELECT attidentity FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'id'",
        "SELECT md5(lo_get(blob)) || ':' || length(lo_get(blob)) FROM docs WHERE id = 1",
        "SELECT count(*) FROM pg_largeobject_metadata",
        "SELECT md5(string_agg(id || name, ',' ORDER BY id)) FROM item_names",
        "SELECT add_seven(35)",
        "SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'",
        "SELECT encode(digest('abc', 'sha1'), 'hex')",
    ]
    .iter()
    .map(|q| format!("{q} => {}", psql(db, q)))
    .collect()
}

/// The next values each sequence hands out (consumes one value of each).
fn next_values(db: &str) -> String {
    psql(
        db,
        "SELECT nextval('standalone_seq') || ',' || nextval(pg_get_serial_sequence('items', 'id')) || ',' || nextval(pg_get_serial_sequence('events', 'id'))",
    )
}

/// Owners and grants of the test's objects.
fn acl_fingerprint(db: &str) -> Vec<String> {
    [
        "SELECT string_agg(relname || ' owner ' || pg_get_userbyid(relowner) || ' acl ' || coalesce(relacl::text, '-'), '; ' ORDER BY relname) FROM pg_class WHERE relname IN ('items', 'events', 'item_names', 'standalone_seq')",
        "SELECT proname || ' owner ' || pg_get_userbyid(proowner) || ' acl ' || coalesce(proacl::text, '-') FROM pg_proc WHERE proname = 'add_seven'",
        "SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata m JOIN docs d ON d.blob = m.oid",
    ]
    .iter()
    .map(|q| format!("{q} => {}", psql(db, q)))
    .collect()
}

#[test]
fn logical_round_trip_into_new_databases_with_and_without_globals() {
    let n = Names {
        src: unique("dbm_src"),
        owner: unique("dbm_owner"),
        reader: unique("dbm_reader"),
    };
    let dst_a = unique("dbm_dst_a");
    let dst_b = unique("dbm_dst_b");
    let _cleanup = Cleanup(
        vec![n.src.clone(), dst_a.clone(), dst_b.clone()],
        vec![n.owner.clone(), n.reader.clone()],
    );
    make_source(&n);
    let want_data = data_fingerprint(&n.src);
    let want_acl = acl_fingerprint(&n.src);
    assert!(
        want_acl[0].contains(&n.owner) && want_acl[0].contains(&n.reader),
        "{want_acl:?}"
    );

    let repo = Repo::init();
    let b = run_pg(
        &repo,
        ["backup", "postgres", "--database", n.src.as_str(), "--json"],
    );
    b.expect_success();
    let snap = b.json();
    assert_eq!(snap["target_kind"], "postgres", "{}", b.describe());
    assert_eq!(snap["meta"]["pg_backup"], "logical", "{}", b.describe());
    let id = snap["id"].as_str().expect("snapshot id").to_string();
    let ls = repo.run(["ls", &id, "/"]);
    ls.expect_success();
    let listing = ls.stdout_str();
    for want in [
        "/globals.sql",
        "/server.json",
        &format!("/databases/{}.dump", n.src),
    ] {
        assert!(listing.contains(want), "{want} missing from\n{listing}");
    }
    let server = repo.run(["dump", &id, "/server.json"]);
    server.expect_success();
    let sj: serde_json::Value = serde_json::from_slice(&server.stdout).expect("server.json");
    assert!(sj["version"]
        .as_str()
        .unwrap_or("")
        .starts_with("PostgreSQL"));
    assert!(sj["settings"]["server_encoding"].is_string());

    // 1. Into a new database on the same server (roles exist).
    let r = run_pg(
        &repo,
        [
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--database",
            n.src.as_str(),
            "--target-database",
            dst_a.as_str(),
        ],
    );
    r.expect_success();
    assert_eq!(data_fingerprint(&dst_a), want_data);
    assert_eq!(acl_fingerprint(&dst_a), want_acl);
    let next_src = next_values(&n.src);
    assert_eq!(next_values(&dst_a), next_src, "next sequence values");

    // 2. Restoring into a database that already holds the objects stops at the first error,
    //    exits non-zero and names the failed object.
    let again = run_pg(
        &repo,
        [
            "restore",
            &id,
            "--targets",
            "postgres",
            "--database",
            n.src.as_str(),
            "--target-database",
            dst_a.as_str(),
        ],
    );
    assert_eq!(again.code(), Some(1), "{}", again.describe());
    let err = again.stderr_str();
    assert!(
        err.contains("TOC entry") || err.contains("already exists"),
        "{}",
        again.describe()
    );
    assert!(err.contains(&dst_a), "{}", again.describe());

    // 3. The source and its roles are gone; --with-globals brings the roles back, so owners and
    //    grants match again.
    psql(
        "postgres",
        &format!("DROP DATABASE \"{}\" WITH (FORCE)", n.src),
    );
    psql(
        "postgres",
        &format!("DROP DATABASE \"{dst_a}\" WITH (FORCE)"),
    );
    psql("postgres", &format!("DROP ROLE \"{}\"", n.owner));
    psql("postgres", &format!("DROP ROLE \"{}\"", n.reader));
    let r = run_pg(
        &repo,
        [
            "restore",
            "latest",
            "--targets",
            "postgres",
            "--database",
            n.src.as_str(),
            "--target-database",
            dst_b.as_str(),
            "--with-globals",
        ],
    );
    r.expect_success();
    assert_eq!(data_fingerprint(&dst_b), want_data);
    assert_eq!(acl_fingerprint(&dst_b), want_acl);
    assert_eq!(next_values(&dst_b), next_src, "next sequence values");
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{dst_b}'")
        ),
        "postgres"
    );
}

#[test]
fn failing_dump_exits_1_and_leaves_no_snapshot() {
    let repo = Repo::init();
    let missing = unique("dbm_no_such_db");
    let r = run_pg(
        &repo,
        ["backup", "postgres", "--database", missing.as_str()],
    );
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr_str().contains("pg_dump"), "{}", r.describe());
    assert!(r.stderr_str().contains(&missing), "{}", r.describe());
    assert!(repo.snapshots().is_empty(), "a failed dump left a snapshot");
    // And the repository is still consistent (no dangling index entries).
    let c = repo.run(["check"]);
    assert!(matches!(c.code(), Some(0) | Some(2)), "{}", c.describe());
}
