#!/usr/bin/env bash
# Benchmark of GET /api/v1/backup/status (PRD SLA 200 ms; goal p99 <= 20 ms) with 10,000 jobs
# in a PostgreSQL catalog, at 200 concurrent connections, measured with wrk (Debian package).
#
#   bash bench/api-status.sh            # uses target/release binaries (cargo build --release)
# Environment: BIN_DIR (folder with backup-server and data-backup-manager), PG (admin URL,
# default postgres://postgres@127.0.0.1:5432), DURATION (default 30s), CONNECTIONS (200),
# THREADS (2), JOBS (10000), PORT (20910), STATUS_CACHE_MS (1000: the server's status cache).
# Prints wrk's latency distribution and a one-line summary (p50, p99, requests/s).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
DURATION="${DURATION:-30s}"
CONNECTIONS="${CONNECTIONS:-200}"
THREADS="${THREADS:-2}"
JOBS="${JOBS:-10000}"
PORT="${PORT:-20910}"
STATUS_CACHE_MS="${STATUS_CACHE_MS:-1000}"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
for b in backup-server data-backup-manager; do
  [ -x "$BIN_DIR/$b" ] || { echo "$BIN_DIR/$b missing: cargo build --release -p backup-server -p backup-cli" >&2; exit 1; }
done

work="$(mktemp -d /tmp/dbm-bench-XXXXXX)"
db="dbm_bench_$$"
token="bench-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DBM_PASSWORD="bench-password"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql -q "$PG/postgres" -c "CREATE DATABASE $db" >/dev/null
mkdir -p "$work/data"
echo "benchmark data" > "$work/data/a.txt"
cat > "$work/config.yaml" <<YAML
repository: $work/repo
database_url: $PG/$db
catalog_dir: $work/catalog
targets:
  bench: files:$work/data
scheduler:
  default_schedules: false
server:
  port: $PORT
  status_cache_ms: $STATUS_CACHE_MS
  tokens:
    - {name: bench, token_env: DBM_BENCH_TOKEN}
YAML
export DBM_BENCH_TOKEN="$token"
"$BIN_DIR/data-backup-manager" --config "$work/config.yaml" init >/dev/null
"$BIN_DIR/data-backup-manager" --config "$work/config.yaml" backup bench >/dev/null
DBM_LOG=warn "$BIN_DIR/backup-server" --config "$work/config.yaml" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

# 10,000 jobs: mostly completed, some failed, a few pending/running, over 30 days and 50 targets.
psql -q "$PG/$db" >/dev/null <<SQL
INSERT INTO backup_jobs (id, type, target, target_identifier, status, created_at, started_at,
                         completed_at, size_bytes, compression_ratio, storage_path, requested_by, error)
SELECT gen_random_uuid(),
       (ARRAY['full','incremental','differential'])[1 + i % 3],
       'files', 'files:/srv/bench/t' || (i % 50),
       CASE WHEN i % 100 = 0 THEN 'pending' WHEN i % 101 = 0 THEN 'running'
            WHEN i % 17 = 0 THEN 'failed' ELSE 'completed' END,
       now() - (i || ' minutes')::interval * 4,
       now() - (i || ' minutes')::interval * 4,
       now() - (i || ' minutes')::interval * 4 + interval '90 seconds',
       1000000 + i * 1000, 2.5, md5(i::text) || md5((i+1)::text), 'bench',
       CASE WHEN i % 17 = 0 THEN 'simulated failure' END
FROM generate_series(1, $JOBS) AS i;
SQL
echo "jobs in the catalog: $(psql -tAq "$PG/$db" -c 'SELECT count(*) FROM backup_jobs')"
url="http://127.0.0.1:$PORT/api/v1/backup/status"
# One warm-up request (the first computes the report; later ones are served from the
# status cache and refreshed in the background once older than status_cache_ms).
curl -fsS -H "Authorization: Bearer $token" "$url" >/dev/null
out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $token" "$url")"
echo "$out"
p50="$(echo "$out" | awk '$1=="50%"{print $2}')"
p99="$(echo "$out" | awk '$1=="99%"{print $2}')"
rps="$(echo "$out" | awk '/Requests\/sec/{print $2}')"
non2xx="$(echo "$out" | awk '/Non-2xx/{print $NF}')"
echo "api-status: $JOBS jobs, $CONNECTIONS connections, $DURATION: p50 $p50, p99 $p99, $rps req/s, non-2xx ${non2xx:-0}"
