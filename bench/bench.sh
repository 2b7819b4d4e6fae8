#!/usr/bin/env bash
# Benchmark data-backup-manager ("dbm") against restic and tar|zstd on >= 1 GiB of
# real files copied from this machine. Run by hand (not in CI); see bench/README.md.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_DIR=$(realpath -m "${BENCH_DIR:-/var/tmp/dbm-bench}")
MIN_BYTES=${BENCH_MIN_BYTES:-1073741824}
TOOLS=(${BENCH_TOOLS:-dbm restic tar})
CORPUS=$BENCH_DIR/corpus         # pristine copy, reused across runs
WORK=$BENCH_DIR/work/corpus      # per-run working copy: this is what gets backed up
REPOS=$BENCH_DIR/repos
RESTORES=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-dbm-bench-password}
export DBM_PASSWORD=${DBM_PASSWORD:-dbm-bench-password}
export RESTIC_CACHE_DIR=$BENCH_DIR/cache/restic

say() { printf '==> %s\n' "$*" >&2; }
SKIPPED=""
drop_tool() { local t keep=(); for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] || keep+=("$t"); done; TOOLS=("${keep[@]}"); }
need() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  say "$1 not found, installing Debian package $2"
  apt-get install -y "$2" >/dev/null || { say "cannot install $2"; exit 1; }
}
need restic restic; need zstd zstd; need /usr/bin/time time

mkdir -p "$BENCH_DIR"
rm -rf "$REPOS" "$RESTORES" "$LOGS" "$BENCH_DIR/cache" "$BENCH_DIR/work"
mkdir -p "$REPOS" "$RESTORES" "$LOGS"

# ---------------------------------------------------------------- build ours
DBM=${DBM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/data-backup-manager}
if [[ " ${TOOLS[*]} " == *" dbm "* ]]; then
  if [[ -z ${DBM_BIN:-} ]]; then
    say "building data-backup-manager (cargo build --release -p backup-cli)"
    (cd "$ROOT" && cargo build --release -p backup-cli) >"$LOGS/build.log" 2>&1 || rm -f "$DBM"
  fi
  if [[ ! -x $DBM ]]; then
    say "SKIPPING data-backup-manager: build failed or binary missing ($DBM); see $LOGS/build.log"
    drop_tool dbm; SKIPPED="dbm SKIPPED: build failed or binary missing, see $LOGS/build.log"
  fi
fi

# ---------------------------------------------------------------- corpus
# Top-level entries of each source are copied (sorted, cp -a) until the corpus is
# >= MIN_BYTES. Pass 1 caps each source at an equal share so the mix stays diverse;
# pass 2 fills up from all sources if some were too small.
pick_python() {
  local p; for p in "$HOME/.pyenv/versions/3.11.7/lib/python3.11" /usr/lib/python3*; do
    [[ -d $p ]] && { echo "$p"; return; }; done
}
if [[ -n ${BENCH_SOURCES:-} ]]; then read -ra SOURCES <<<"$BENCH_SOURCES"; else
  SOURCES=(/usr/lib/x86_64-linux-gnu "$HOME"/.cargo/registry/src/*/ /usr/lib/gcc /usr/share/doc "$(pick_python)")
fi
total=0
copy_entries() { # src quota
  local src=${1%/} quota=$2 added=0 e n dst
  dst=${src#/}; dst=$CORPUS/${dst//\//_}; mkdir -p "$dst"
  while IFS= read -r -d '' e; do
    (( total >= MIN_BYTES || added >= quota )) && break
    [[ -e $dst/${e##*/} || -L $dst/${e##*/} ]] && continue    # copied in pass 1
    cp -a "$e" "$dst/" || say "warning: could not fully copy $e"
    n=$(du -sb "$dst/${e##*/}" | cut -f1); (( added += n, total += n )) || true
  done < <(find "$src" -mindepth 1 -maxdepth 1 -print0 | sort -z)
}
if [[ -d $CORPUS && -f $BENCH_DIR/corpus.done ]] && (( $(cat "$BENCH_DIR/corpus.done") >= MIN_BYTES )); then
  say "reusing corpus $CORPUS"
else
  say "building corpus of >= $MIN_BYTES bytes in $CORPUS"
  rm -rf "$CORPUS" "$BENCH_DIR/corpus.done"; mkdir -p "$CORPUS"
  valid=(); for s in "${SOURCES[@]}"; do [[ -d $s && $s != "$BENCH_DIR"* ]] && valid+=("$s"); done
  (( ${#valid[@]} )) || { say "no corpus source directories found"; exit 1; }
  for s in "${valid[@]}"; do copy_entries "$s" $(( MIN_BYTES / ${#valid[@]} + 1 )); done
  for s in "${valid[@]}"; do copy_entries "$s" "$MIN_BYTES"; done
  total=$(du -sb "$CORPUS" | cut -f1)
  (( total >= MIN_BYTES )) || { say "sources only gave $total bytes (< $MIN_BYTES)"; exit 1; }
  echo "$total" >"$BENCH_DIR/corpus.done"
fi

say "making working copy $WORK (cp -a)"
mkdir -p "${WORK%/*}"; cp -a "$CORPUS" "$WORK"
BYTES=$(du -sb "$WORK" | cut -f1)
NFILES=$(find "$WORK" -type f | wc -l)
say "warming page cache (cat of every corpus file to /dev/null)"
find "$WORK" -type f -print0 | xargs -0 -r cat >/dev/null

# ---------------------------------------------------------------- tool commands
# Each sets the array CMD for one step; repos live in $REPOS/<tool>.
init_tool() {
  case $1 in
    dbm)    "$DBM" --repo "$REPOS/dbm" init ;;
    restic) restic init --repo "$REPOS/restic" ;;
    tar)    mkdir -p "$REPOS/tar" ;;
  esac >"$LOGS/$1-init.log" 2>&1
}
backup_cmd() { # tool n
  case $1 in
    dbm)    CMD=("$DBM" --repo "$REPOS/dbm" backup "files:$WORK") ;;
    restic) CMD=(restic --repo "$REPOS/restic" backup "$WORK") ;;
    tar)    CMD=(bash -c 'set -o pipefail; tar -C / -cf - "$1" | zstd -3 -T0 -q -o "$2"' _
                 "${WORK#/}" "$REPOS/tar/backup-$2.tar.zst") ;;
  esac
}
restore_cmd() { # tool dest
  case $1 in
    dbm)    CMD=("$DBM" --repo "$REPOS/dbm" restore latest --destination "$2") ;;
    restic) CMD=(restic --repo "$REPOS/restic" restore latest --target "$2") ;;
    tar)    CMD=(bash -c 'set -o pipefail; zstd -d -q -c "$1" | tar -C "$2" -xf -' _
                 "$(ls "$REPOS"/tar/backup-*.tar.zst 2>/dev/null | sort | tail -n1 || true)" "$2") ;;
  esac
}

# ---------------------------------------------------------------- measuring
declare -A WALL RSS REPO STATUS VERIFY
STEPS=(first nochange change1pct restore)
measure() { # tool step  (runs "${CMD[@]}")
  local t=$1 s=$2 rc=0 line
  sync
  /usr/bin/time -f '%e %M' -o "$LOGS/$t-$s.time" "${CMD[@]}" >"$LOGS/$t-$s.log" 2>&1 || rc=$?
  line=$(tail -n1 "$LOGS/$t-$s.time")
  WALL[$t.$s]=${line% *}; RSS[$t.$s]=$(( ${line#* } / 1024 ))
  REPO[$t.$s]=$(du -sb "$REPOS/$t" 2>/dev/null | cut -f1 || true); REPO[$t.$s]=${REPO[$t.$s]:-0}
  if (( rc == 0 )); then STATUS[$t.$s]=ok
  elif [[ $t == dbm && $rc == 2 ]]; then STATUS[$t.$s]="warn(2)"
  else STATUS[$t.$s]="FAIL($rc)"; say "$t $s failed (exit $rc), see $LOGS/$t-$s.log"; fi
}

manifest() { # dir: type/path/mode/owner/size/mtime(s)/link target, then sha256 of files
  ( cd "$1" || exit 1
    find . -type d -printf 'd %m %u:%g %p\n'
    find . -type l -printf 'l %p -> %l\n'
    find . -type f -printf 'f %m %u:%g %s %T@ %p\n' | awk '{ $5 = int($5); print }'
    find . -type f -print0 | sort -z | xargs -0 -r sha256sum ) | sort
}

for t in "${TOOLS[@]}"; do
  init_tool "$t" || { say "SKIPPING $t: init failed"; drop_tool "$t"; SKIPPED+="$t SKIPPED: init failed, see $LOGS/$t-init.log"; }
done
(( ${#TOOLS[@]} )) || { say "no tool left to benchmark"; exit 1; }
say "step 1/4: first backup";       for t in "${TOOLS[@]}"; do backup_cmd "$t" 1; measure "$t" first; done
say "step 2/4: unchanged re-backup"; for t in "${TOOLS[@]}"; do backup_cmd "$t" 2; measure "$t" nochange; done
say "changing every 100th file (sorted) by appending bytes"
changed=0
while IFS= read -r -d '' f; do printf 'dbm-bench change\n' >>"$f"; (( ++changed )); done \
  < <(find "$WORK" -type f -print0 | sort -z | awk 'BEGIN { RS = ORS = "\0" } NR % 100 == 0')
say "step 3/4: re-backup after changing $changed files"
for t in "${TOOLS[@]}"; do backup_cmd "$t" 3; measure "$t" change1pct; done
say "step 4/4: restore latest snapshot + verify"
manifest "$WORK" >"$LOGS/manifest-corpus.txt"
for t in "${TOOLS[@]}"; do
  dest=$RESTORES/$t; rm -rf "$dest"; mkdir -p "$dest"
  restore_cmd "$t" "$dest"; measure "$t" restore
  if [[ ! -d $dest$WORK ]]; then
    VERIFY[$t]="MISMATCH (nothing restored at $dest$WORK)"
  elif manifest "$dest$WORK" >"$LOGS/manifest-$t.txt" &&
       diff "$LOGS/manifest-corpus.txt" "$LOGS/manifest-$t.txt" >"$LOGS/verify-$t.diff"; then
    VERIFY[$t]=OK
  else
    VERIFY[$t]="MISMATCH ($(grep -c '^[<>]' "$LOGS/verify-$t.diff" || true) manifest lines differ, see $LOGS/verify-$t.diff)"
  fi
  rm -rf "$dest"
done

# ---------------------------------------------------------------- report
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b > 0) printf f, a / b; else printf "n/a" }'; }
mib() { div "$1" 1048576 %.1f; }
mbps() { awk -v b="$BYTES" -v w="$1" 'BEGIN { if (w > 0) printf "%.1f", b / 1e6 / w; else printf "n/a" }'; }
echo
echo "corpus: $WORK  $(mib "$BYTES") MiB ($BYTES bytes), $NFILES files; $changed files changed in step 3"
echo "host: $(nproc) CPUs, $(uname -r); $(restic version | cut -d' ' -f1,2); $(zstd -V | grep -o 'v[0-9.]*' | head -n1 | sed 's/^/zstd /')"
echo "page cache warmed before the run; MB/s = corpus bytes / 10^6 / wall; dbm = data-backup-manager"
[[ -z $SKIPPED ]] || echo "$SKIPPED"
echo
fmt='%-8s %-11s %9s %9s %10s %10s  %s\n'
printf "$fmt" tool step wall_s MB/s peak_MiB repo_MiB status
for t in "${TOOLS[@]}"; do
  for s in "${STEPS[@]}"; do
    printf "$fmt" "$t" "$s" "${WALL[$t.$s]}" "$(mbps "${WALL[$t.$s]}")" \
      "${RSS[$t.$s]}" "$(mib "${REPO[$t.$s]}")" "${STATUS[$t.$s]}"
  done
done
echo
echo "restore verification (restored tree vs corpus):"
for t in "${TOOLS[@]}"; do printf '  %-8s %s\n' "$t" "${VERIFY[$t]}"; done
echo
if [[ -n ${WALL[dbm.first]:-} && -n ${WALL[restic.first]:-} ]]; then
  maxrss() { local m=0 s; for s in "${STEPS[@]}"; do (( ${RSS[$1.$s]} > m )) && m=${RSS[$1.$s]}; done; echo "$m"; }
  echo "ratios, ours vs restic:"
  printf '  %-56s %s\n' "first-backup throughput (dbm/restic, >1 = ours faster)" "$(div "${WALL[restic.first]}" "${WALL[dbm.first]}")" \
    "no-change re-backup speed (>1 = ours faster)" "$(div "${WALL[restic.nochange]}" "${WALL[dbm.nochange]}")" \
    "restore speed (>1 = ours faster)" "$(div "${WALL[restic.restore]}" "${WALL[dbm.restore]}")" \
    "repo size after step 3 (dbm/restic, <1 = smaller)" "$(div "${REPO[dbm.change1pct]}" "${REPO[restic.change1pct]}")" \
    "peak RSS, max over steps (dbm/restic)" "$(div "$(maxrss dbm)" "$(maxrss restic)")"
else
  echo "ratios, ours vs restic: n/a (dbm or restic was not run)"
fi
echo
echo "logs, timings and manifests: $LOGS"
