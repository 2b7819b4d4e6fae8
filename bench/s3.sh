#!/usr/bin/env bash
# Benchmark: backup and restore of a ~1 GiB corpus of real files to an S3 repository on the
# local test server (scripts/s3-server.sh, Ceph RGW on 127.0.0.1:7480), data-backup-manager
# ("dbm") against restic, in one run. Run by hand, never in CI; it takes both cores for a few
# minutes. Prints one table. See bench/README.md.
#
#   bench/s3.sh                                   # 1 GiB corpus
#   BENCH_MIN_BYTES=$((200*1024*1024)) bench/s3.sh   # quick run
#
# Variables: BENCH_DIR (default /var/tmp/dbm-bench-s3: corpus, restores, logs),
# BENCH_MIN_BYTES (default 1 GiB), BENCH_SOURCES (default "/usr/share /usr/lib/x86_64-linux-gnu"),
# DBM_BIN (default: cargo build --release), BENCH_TOOLS (default "dbm restic").
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=$(realpath -m "${BENCH_DIR:-/var/tmp/dbm-bench-s3}")
MIN_BYTES=${BENCH_MIN_BYTES:-1073741824}
read -ra SOURCES <<<"${BENCH_SOURCES:-/usr/share /usr/lib/x86_64-linux-gnu}"
read -ra TOOLS <<<"${BENCH_TOOLS:-dbm restic}"
CORPUS=$BENCH_DIR/corpus
LOGS=$BENCH_DIR/logs
RESTORES=$BENCH_DIR/restore
RUN_ID=$(date +%s)
export DBM_PASSWORD=${DBM_PASSWORD:-dbm-bench-password}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-dbm-bench-password}
export RESTIC_CACHE_DIR=$BENCH_DIR/cache/restic

say() { printf '==> %s\n' "$*" >&2; }
command -v restic >/dev/null || { say "installing restic"; apt-get install -y -qq restic >/dev/null; }
command -v /usr/bin/time >/dev/null || { say "installing time"; apt-get install -y -qq time >/dev/null; }

# ---------------------------------------------------------------- server
"$ROOT/scripts/s3-server.sh" start
set -a; . "${DBM_S3_ENV:-/tmp/dbm-s3.env}"; set +a
ENDPOINT=$AWS_ENDPOINT_URL
CEPH_CONF=${DBM_CEPH_DIR:-/var/tmp/dbm-ceph}/ceph.conf
bucket_bytes() { # bucket -> bytes stored (RGW's own accounting)
  timeout 60 radosgw-admin -c "$CEPH_CONF" -n client.admin bucket stats --bucket="$1" 2>/dev/null |
    python3 -c 'import json,sys; u=json.load(sys.stdin).get("usage",{}); print(sum(v.get("size_actual",0) for v in u.values()))' 2>/dev/null || echo 0
}
bucket_rm() { timeout 300 radosgw-admin -c "$CEPH_CONF" -n client.admin bucket rm --bucket="$1" --purge-objects >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- build
DBM=${DBM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/data-backup-manager}
mkdir -p "$LOGS"
if [[ -z ${DBM_BIN:-} ]]; then
  say "building data-backup-manager (release)"
  (cd "$ROOT" && cargo build --release -p backup-cli) >"$LOGS/build.log" 2>&1 || { say "build failed: $LOGS/build.log"; exit 1; }
fi

# ---------------------------------------------------------------- corpus
if [[ -f $BENCH_DIR/corpus.done ]] && (( $(cat "$BENCH_DIR/corpus.done") >= MIN_BYTES )); then
  say "reusing corpus $CORPUS"
else
  say "copying >= $MIN_BYTES bytes of ${SOURCES[*]} into $CORPUS"
  rm -rf "$CORPUS"; mkdir -p "$CORPUS"; total=0
  for src in "${SOURCES[@]}"; do
    [[ -d $src ]] || continue
    dst=$CORPUS/${src//\//_}; mkdir -p "$dst"
    while IFS= read -r -d '' e; do
      (( total >= MIN_BYTES )) && break
      cp -a "$e" "$dst/" 2>/dev/null || true
      (( total += $(du -sb "$dst/${e##*/}" | cut -f1) )) || true
    done < <(find "$src" -mindepth 1 -maxdepth 1 -print0 | sort -z)
  done
  total=$(du -sb "$CORPUS" | cut -f1)
  (( total >= MIN_BYTES )) || { say "only $total bytes found"; exit 1; }
  echo "$total" >"$BENCH_DIR/corpus.done"
fi
BYTES=$(du -sb "$CORPUS" | cut -f1)
NFILES=$(find "$CORPUS" -type f | wc -l)
find "$CORPUS" -type f -print0 | xargs -0 -r cat >/dev/null   # warm the page cache

# ---------------------------------------------------------------- tools
bucket_of() { echo "dbm-bench-$1-$RUN_ID"; }
repo_of() {
  case $1 in
    dbm) echo "s3://$(bucket_of dbm)/repo" ;;
    restic) echo "s3:$ENDPOINT/$(bucket_of restic)/repo" ;;
  esac
}
run_step() { # tool step
  local t=$1 s=$2 repo; repo=$(repo_of "$t")
  case $t.$s in
    dbm.init) CMD=("$DBM" --repo "$repo" init) ;;
    dbm.first|dbm.nochange) CMD=("$DBM" --repo "$repo" backup "files:$CORPUS") ;;
    dbm.restore) CMD=("$DBM" --repo "$repo" restore latest --destination "$RESTORES/$t") ;;
    dbm.check) CMD=("$DBM" --repo "$repo" check --read-data) ;;
    restic.init) CMD=(restic --repo "$repo" init) ;;
    restic.first|restic.nochange) CMD=(restic --repo "$repo" backup "$CORPUS") ;;
    restic.restore) CMD=(restic --repo "$repo" restore latest --target "$RESTORES/$t") ;;
    restic.check) CMD=(restic --repo "$repo" check --read-data) ;;
  esac
  sync
  local rc=0
  /usr/bin/time -f '%e %M' -o "$LOGS/$t-$s.time" "${CMD[@]}" >"$LOGS/$t-$s.log" 2>&1 || rc=$?
  local line; line=$(tail -n1 "$LOGS/$t-$s.time")
  WALL[$t.$s]=${line% *}; RSS[$t.$s]=$(( ${line#* } / 1024 ))
  STATUS[$t.$s]=ok; (( rc == 0 )) || { STATUS[$t.$s]="FAIL($rc)"; say "$t $s failed: $LOGS/$t-$s.log"; }
}
manifest() { ( cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum; find . -type l -printf '%p -> %l\n' | sort ); }

declare -A WALL RSS STATUS STORED VERIFY
STEPS=(first nochange restore check)
manifest "$CORPUS" >"$LOGS/manifest-corpus.txt"
for t in "${TOOLS[@]}"; do
  say "$t: init, first backup, unchanged re-backup, restore, check --read-data"
  run_step "$t" init
  run_step "$t" first
  STORED[$t]=$(bucket_bytes "$(bucket_of "$t")")
  run_step "$t" nochange
  rm -rf "$RESTORES/$t"; mkdir -p "$RESTORES/$t"
  run_step "$t" restore
  if manifest "$RESTORES/$t$CORPUS" >"$LOGS/manifest-$t.txt" 2>/dev/null &&
     diff -q "$LOGS/manifest-corpus.txt" "$LOGS/manifest-$t.txt" >/dev/null; then VERIFY[$t]=OK
  else VERIFY[$t]="MISMATCH (see $LOGS/manifest-$t.txt)"; fi
  rm -rf "$RESTORES/$t"
  run_step "$t" check
  bucket_rm "$(bucket_of "$t")"
done

# ---------------------------------------------------------------- report
mbps() { awk -v b="$BYTES" -v w="$1" 'BEGIN { if (w > 0) printf "%.1f", b / 1e6 / w; else printf "n/a" }'; }
echo
echo "corpus: $CORPUS  $(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1048576}') MiB, $NFILES files; server: Ceph RGW $ENDPOINT (memstore)"
echo "host: $(nproc) CPUs, load before run $(cut -d' ' -f1-3 /proc/loadavg); $(restic version | cut -d' ' -f1,2); MB/s = corpus bytes / 10^6 / wall"
echo
fmt='%-8s %-9s %8s %8s %9s  %s\n'
printf "$fmt" tool step wall_s MB/s peak_MiB status
for t in "${TOOLS[@]}"; do for s in "${STEPS[@]}"; do
  printf "$fmt" "$t" "$s" "${WALL[$t.$s]:-}" "$(mbps "${WALL[$t.$s]:-0}")" "${RSS[$t.$s]:-}" "${STATUS[$t.$s]:-}"
done; done
echo
for t in "${TOOLS[@]}"; do
  printf '%-8s stored after first backup: %s MiB; restore verification: %s\n' "$t" \
    "$(awk -v b="${STORED[$t]}" 'BEGIN{printf "%.1f", b/1048576}')" "${VERIFY[$t]}"
done
echo "logs: $LOGS"
