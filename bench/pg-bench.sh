#!/usr/bin/env bash
# PostgreSQL benchmark, one run (by hand, never in CI; takes a few minutes at scale 50):
#   1. logical backup of a pgbench database (scale >= 50) with data-backup-manager against plain
#      `pg_dump -Fc` to a file: wall time ratio, repository size vs dump size; a second backup
#      of the unchanged database (dedup);
#   2. logical restore into a new database (and pg_restore of the plain dump for reference);
#   3. point in time: a throwaway cluster (initdb, run as postgres) archiving through wal-push,
#      pgbench data loaded, base backup, more transactions, then `restore latest --check`:
#      the time to a promoted, recovered cluster (the PRD's RTO is under 15 minutes);
#   4. wal-push per 16 MiB segment, opened with a key file and with a password.
# Needs root (the point-in-time part runs the cluster as postgres), the server on
# 127.0.0.1:5432 (trust, user postgres), and about 4 GB free under $BENCH_DIR.
#   bench/pg-bench.sh                     # scale 50
#   PGBENCH_SCALE=10 bench/pg-bench.sh    # quick run
#   DBM_BIN=/path/to/data-backup-manager bench/pg-bench.sh
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
SCALE=${PGBENCH_SCALE:-50}
BENCH_DIR=$(realpath -m "${BENCH_DIR:-/var/tmp/dbm-pg-bench}")
DB=dbm_pgbench
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
unset PGPASSWORD PGDATABASE
export DBM_PASSWORD=${DBM_PASSWORD:-dbm-bench-password}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
say() { printf '==> %s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { printf '%.2f' "$(echo "$2 - $1" | bc)"; }
size_of() { du -sb "$1" | cut -f1; }
mib() { printf '%.1f' "$(echo "scale=3; $1 / 1048576" | bc)"; }
command -v bc >/dev/null || apt-get install -y bc >/dev/null

DBM=${DBM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/data-backup-manager}
if [[ -z ${DBM_BIN:-} ]]; then
  say "building data-backup-manager (cargo build --release -p backup-cli)"
  (cd "$ROOT" && cargo build --release -p backup-cli) >/dev/null 2>&1
fi
[[ -x $DBM ]] || { say "no binary at $DBM"; exit 1; }

rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"; chmod 755 "$BENCH_DIR"
install -m 755 "$DBM" "$BENCH_DIR/dbm"; DBM=$BENCH_DIR/dbm
cleanup() {
  [[ -f $BENCH_DIR/pitr/data/postmaster.pid ]] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$BENCH_DIR/pitr/data" -m immediate stop >/dev/null 2>&1 || true
  for d in "$DB" "${DB}_r" "${DB}_p"; do psql -Xq -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# ------------------------------------------------------------------ 1. logical backup
say "pgbench -i -s $SCALE on the shared server"
psql -Xq -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$PGBIN/pgbench" -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
DBSIZE=$(psql -XAt -d postgres -c "SELECT pg_database_size('$DB')")

say "pg_dump -Fc to a file"
t0=$(now); "$PGBIN/pg_dump" -Fc -d "$DB" -f "$BENCH_DIR/plain.dump"; t1=$(now)
T_DUMP=$(secs "$t0" "$t1"); S_DUMP=$(size_of "$BENCH_DIR/plain.dump")

say "data-backup-manager backup postgres (logical)"
REPO=$BENCH_DIR/repo
"$DBM" --repo "$REPO" init >/dev/null
t0=$(now); "$DBM" --repo "$REPO" -q backup postgres --database "$DB" >/dev/null; t1=$(now)
T_DBM=$(secs "$t0" "$t1"); S_REPO=$(size_of "$REPO")
t0=$(now); "$DBM" --repo "$REPO" -q backup postgres --database "$DB" >/dev/null; t1=$(now)
T_DBM2=$(secs "$t0" "$t1"); S_REPO2=$(size_of "$REPO")

# ------------------------------------------------------------------ 2. logical restore
say "restore into a new database"
t0=$(now); "$DBM" --repo "$REPO" -q restore latest --targets postgres --database "$DB" --target-database "${DB}_r" >/dev/null; t1=$(now)
T_RESTORE=$(secs "$t0" "$t1")
ROWS_R=$(psql -XAt -d "${DB}_r" -c "SELECT count(*) FROM pgbench_accounts")
psql -Xq -d postgres -c "CREATE DATABASE ${DB}_p TEMPLATE template0"
t0=$(now); "$PGBIN/pg_restore" --exit-on-error --single-transaction -d "${DB}_p" "$BENCH_DIR/plain.dump"; t1=$(now)
T_PGRESTORE=$(secs "$t0" "$t1")
psql -Xq -d postgres -c "DROP DATABASE ${DB}_r WITH (FORCE)" -c "DROP DATABASE ${DB}_p WITH (FORCE)" -c "DROP DATABASE $DB WITH (FORCE)"
rm -f "$BENCH_DIR/plain.dump"

# ------------------------------------------------------------------ 3. point in time
say "point in time: throwaway cluster archiving through wal-push"
P=$BENCH_DIR/pitr; mkdir -p "$P"; chown -R postgres: "$BENCH_DIR"
as_pg() { runuser -u postgres -- env DBM_PASSWORD="$DBM_PASSWORD" "$@"; }
PORT=$((40000 + RANDOM % 20000))
as_pg "$DBM" --repo "$P/repo" init >/dev/null
AC=$(as_pg "$DBM" --repo "$P/repo" wal-config --key-file "$P/wal.key" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["settings"]["archive_command"])')
as_pg "$PGBIN/initdb" -A trust -U postgres -D "$P/data" >/dev/null
cat >>"$P/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$P'
wal_level = replica
archive_mode = on
archive_command = '${AC//\'/\'\'}'
max_wal_size = 1GB
EOF
as_pg "$PGBIN/pg_ctl" -D "$P/data" -l "$P/server.log" -w start >/dev/null
PSQLP=("$PGBIN/psql" -XAtq -h "$P" -p "$PORT" -U postgres)
t0=$(now); "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$P" -p "$PORT" -U postgres postgres >/dev/null 2>&1; t1=$(now)
T_LOAD=$(secs "$t0" "$t1")
wait_archived() {
  local seg; seg=$("${PSQLP[@]}" -c "SELECT pg_walfile_name(pg_switch_wal())")
  until [[ $("${PSQLP[@]}" -c "SELECT coalesce(last_archived_wal,'') >= '$seg' FROM pg_stat_archiver") == t ]]; do sleep 0.5; done
}
t0=$(now); wait_archived; t1=$(now); T_ARCH_WAIT=$(secs "$t0" "$t1")
t0=$(now); as_pg env PGHOST="$P" PGPORT="$PORT" PGUSER=postgres "$DBM" --repo "$P/repo" -q backup postgres --type base >/dev/null; t1=$(now)
T_BASE=$(secs "$t0" "$t1")
"$PGBIN/pgbench" -T 20 -c 2 -h "$P" -p "$PORT" -U postgres postgres >/dev/null 2>&1
wait_archived
ARCHIVED=$("${PSQLP[@]}" -c "SELECT archived_count FROM pg_stat_archiver")
WANT=$("${PSQLP[@]}" -c "SELECT sum(abalance) FROM pgbench_accounts")
as_pg "$PGBIN/pg_ctl" -D "$P/data" -m fast -w stop >/dev/null
S_PREPO=$(size_of "$P/repo")
say "restore latest --check (point-in-time restore, recovery and promotion)"
t0=$(now)
as_pg "$DBM" --repo "$P/repo" -q restore latest --targets postgres --destination "$P/restored" --key-file "$P/wal.key" --check >"$P/restore.out"
t1=$(now); T_PITR=$(secs "$t0" "$t1")
# The restored cluster must hold the primary's final state.
as_pg "$PGBIN/pg_ctl" -D "$P/restored" -l "$P/restored.log" -o "-p $PORT -k $P -c listen_addresses=" -w start >/dev/null
GOT=$("${PSQLP[@]}" -c "SELECT sum(abalance) FROM pgbench_accounts")
as_pg "$PGBIN/pg_ctl" -D "$P/restored" -m fast -w stop >/dev/null

# ------------------------------------------------------------------ 4. wal-push cost
say "wal-push: key file vs password (16 MiB segments)"
SEG=$(ls "$P/data/pg_wal" | grep -E '^[0-9A-F]{24}$' | head -n1)
mkdir -p "$P/push"; chown postgres: "$P/push"
push_n() { # n mode
  local i t0 t1; t0=$(now)
  for ((i = 1; i <= $1; i++)); do
    f=$(printf '0000000A00000000%08X' $((i + ${3:-0})))
    cp "$P/data/pg_wal/$SEG" "$P/push/$f"; chown postgres: "$P/push/$f"
    if [[ $2 == key ]]; then as_pg "$DBM" --repo "$P/repo" wal-push --key-file "$P/wal.key" "$P/push/$f"
    else as_pg "$DBM" --repo "$P/repo" wal-push "$P/push/$f"; fi
    rm -f "$P/push/$f"
  done
  t1=$(now); printf '%.3f' "$(echo "scale=4; ($t1 - $t0) / $1" | bc)"
}
PUSH_KEY=$(push_n 10 key 0); PUSH_PW=$(push_n 5 pw 100)

cat <<EOF

PostgreSQL benchmark ($(nproc) cores; pgbench scale $SCALE; database $(mib "$DBSIZE") MiB; $(date -u '+%Y-%m-%d %H:%M UTC'))

| step                                             | time (s) | size (MiB) |
|--------------------------------------------------|---------:|-----------:|
| pg_dump -Fc to a file                            | $T_DUMP | $(mib "$S_DUMP") |
| data-backup-manager backup postgres (logical)    | $T_DBM | $(mib "$S_REPO") (repository) |
| same, database unchanged (dedup)                 | $T_DBM2 | +$(mib $((S_REPO2 - S_REPO))) |
| restore --target-database (pg_restore from repo) | $T_RESTORE | rows $ROWS_R |
| pg_restore of the plain dump, for reference      | $T_PGRESTORE | |
| PITR: pgbench -i load with archiving             | $T_LOAD | + wait for archiver $T_ARCH_WAIT |
| PITR: backup postgres --type base                | $T_BASE | repository $(mib "$S_PREPO"), $ARCHIVED segments archived |
| PITR: restore latest --check (to promoted)       | $T_PITR | balances $( [[ $GOT == "$WANT" ]] && echo match || echo "DIFFER ($GOT vs $WANT)") |
| wal-push per segment, key file                   | $PUSH_KEY | |
| wal-push per segment, password (Argon2id)        | $PUSH_PW | |

backup/pg_dump wall-time ratio: $(printf '%.2f' "$(echo "scale=4; $T_DBM / $T_DUMP" | bc)"); repository/dump size ratio: $(printf '%.3f' "$(echo "scale=4; $S_REPO / $S_DUMP" | bc)")
EOF
