#!/usr/bin/env bash
# The main job, end to end on a fresh machine: build, create the default local repository
# (./data/backups) if needed, back up a real directory, list the snapshots, restore the
# newest one into a scratch directory and prove it is byte-for-byte identical.
#
#   bash examples/main-job.sh [DIRECTORY]     (default: /usr/share/doc)
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(realpath "${1:-/usr/share/doc}")"
export DBM_PASSWORD="${DBM_PASSWORD:-change-me-main-job}"
cargo build --release -q -p backup-cli
dbm="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/data-backup-manager"
[ -f data/backups/config ] || "$dbm" init
"$dbm" backup "files:$src" --description "main job"
"$dbm" list
out="$(mktemp -d /tmp/dbm-restore.XXXXXX)"
"$dbm" restore latest --destination "$out" --verify
diff -r --no-dereference "$src" "$out$src"
echo "restored tree $out$src is identical to $src"
rm -rf "$out"
"$dbm" status
