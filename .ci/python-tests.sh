#!/usr/bin/env bash
# The Python module and the examples, as a new user would meet them:
#   1. a fresh virtual environment outside the clone, and the README's one install command
#      (`pip install ./crates/backup-py`: maturin from PyPI builds the wheel; the cargo build
#      goes to $CARGO_TARGET_DIR, so reruns on this machine are incremental);
#   2. the pytest suite (pytest's exit 5, "no tests collected", counts as a failure);
#   3. the type stubs: mypy's stubtest against the built module, mypy --strict on the examples;
#   4. every example: the Python agent rollback and snapshot table, the Rust program.
# PostgreSQL on 127.0.0.1:5432 (started by .ci/run) is used by the restore-point tests.
# Called by .ci/run; runs on its own too: bash .ci/python-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dbm-ci-target}"
python=${PYTHON:-python3}
venv=$(mktemp -d /tmp/dbm-py-venv.XXXXXX)
work=$(mktemp -d /tmp/dbm-py-work.XXXXXX)
trap 'rm -rf "$venv" "$work"' EXIT

echo "== python: fresh venv ($("$python" --version)) and pip install ./crates/backup-py"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/pip" install --quiet ./crates/backup-py
"$venv/bin/pip" install --quiet pytest mypy
# The installed module, not the source tree, is what the tests import.
(cd "$work" && "$venv/bin/python" -c 'import data_backup_manager as d; print("installed data_backup_manager", d.__version__, "from", d.__file__)')

echo "== python: pytest (Client tests run against the real backup-server binary)"
cargo build --quiet --locked -p backup-server
export DBM_SERVER_BIN="$CARGO_TARGET_DIR/debug/backup-server" DBM_REQUIRE_SERVER=1
set +e
(cd crates/backup-py && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests)
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi

echo "== python: type stubs (stubtest, mypy --strict)"
(cd "$work" && "$venv/bin/python" -m mypy.stubtest data_backup_manager)
"$venv/bin/python" -m mypy --strict --cache-dir "$work/mypy-cache" examples/python crates/backup-py/tests

echo "== examples: python"
"$venv/bin/python" examples/python/agent_rollback.py
export DBM_PASSWORD="ci example password"
"$venv/bin/python" examples/python/agent_rollback.py --repo "$work/repo"
"$venv/bin/python" examples/python/list_snapshots.py "$work/repo"
unset DBM_PASSWORD

echo "== examples: rust (backup-core as a library)"
cargo run --quiet --locked -p rust-backup-example -- "$root/crates/backup-core/src"
echo "python tests and examples: ok"
