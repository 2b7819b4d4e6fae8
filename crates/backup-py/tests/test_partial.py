"""A file the backup cannot read makes the snapshot partial: backup raises Partial (the
snapshot is stored and is e.result) unless allow_partial=True."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

import data_backup_manager as dbm

NOBODY = 65534


def scenario(base: Path) -> None:
    """Runs as a user who cannot read base/src/secret.key; raises on any unmet expectation."""
    src = base / "src"
    repo = dbm.Repository.init(base / "repo", "pw")
    with pytest.raises(dbm.Partial) as e:
        repo.backup(src)
    secret = str(src / "secret.key")
    assert [p for p, _ in e.value.errors] == [secret], e.value.errors
    assert "secret.key" in str(e.value) and "allow_partial" in str(e.value)
    stored = e.value.result
    assert isinstance(stored, dbm.Snapshot) and stored.partial
    assert repo.snapshots() == [stored]  # stored all the same

    snap = repo.backup(src, allow_partial=True)
    assert snap.partial and [p for p, _ in snap.errors] == [secret]
    dest = base / "restore"
    repo.restore(snap, dest)
    got = dest / src.relative_to("/")
    assert (got / "readable.txt").read_text() == "fine"
    assert not (got / "secret.key").exists()


def test_unreadable_file_raises_partial() -> None:
    base = Path(tempfile.mkdtemp(prefix="dbm-partial-"))
    try:
        src = base / "src"
        src.mkdir()
        (src / "readable.txt").write_text("fine")
        (src / "secret.key").write_text("top secret")
        os.chmod(src / "secret.key", 0o000)
        if os.geteuid() != 0:
            scenario(base)
            return
        # root reads everything: run the scenario as an unprivileged user in a child process.
        for p in [base, src, src / "readable.txt"]:
            os.chown(p, NOBODY, NOBODY)
        os.chown(src / "secret.key", 0, 0)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                scenario(base)
                code = 0
            except BaseException as e:  # noqa: BLE001
                print(f"child failed: {e!r}", file=sys.stderr)
            finally:
                os._exit(code)
        deadline = time.monotonic() + 120
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the child hung")
            time.sleep(0.05)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        shutil.rmtree(base, ignore_errors=True)
