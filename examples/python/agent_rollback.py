#!/usr/bin/env python3
"""An agent's safety net: snapshot a working directory, make a change, detect that the change
broke something, roll back to the snapshot, and prove the files are back.

    python examples/python/agent_rollback.py                 # a demo project in a temp dir
    python examples/python/agent_rollback.py --workdir DIR --repo REPO

With --repo, the repository is kept (created if missing; password from DBM_PASSWORD or
DBM_PASSWORD_FILE); without it, a throwaway repository is made with a random password.
Exit status 0 when the rollback restored every file exactly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict

import data_backup_manager as dbm


def fingerprint(root: Path) -> Dict[str, str]:
    """Relative path -> kind, permission bits and sha256 of the content of every entry."""
    out: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = f"dir {p.stat().st_mode:o}"
            else:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = f"file {p.stat().st_mode:o} {h.hexdigest()}"
    return out


def make_demo_project(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"port": 8080, "workers": 4}, indent=2))
    (root / "src" / "app.py").write_text("def handler(event):\n    return {'ok': True}\n")
    (root / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "README.md").write_text("# demo project\n")


def risky_change(root: Path) -> None:
    """What an agent might do: rewrite config, delete a file, add a stray one."""
    (root / "config.json").write_text('{"port": 8080, "workers": }')  # broken JSON
    (root / "src" / "app.py").unlink()
    (root / "src" / "generated.py").write_text("# left behind by the failed change\n")


def healthy(root: Path) -> bool:
    """The agent's test of its change: the config parses and the app file exists."""
    try:
        json.loads((root / "config.json").read_text())
    except ValueError:
        return False
    return (root / "src" / "app.py").is_file()


def rollback(repo: dbm.Repository, snap: dbm.Snapshot, workdir: Path) -> None:
    """Restore the snapshot next to workdir, then swap it in: files the failed change added
    disappear too, and workdir is never left half-restored."""
    staging = Path(tempfile.mkdtemp(prefix=".rollback-", dir=workdir.parent))
    try:
        repo.restore(snap, staging, include=[str(workdir)], verify=True)
        restored = staging / workdir.relative_to(workdir.anchor)
        old = workdir.with_name(workdir.name + ".failed-change")
        os.rename(workdir, old)
        os.rename(restored, workdir)
        shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="directory to protect (default: a demo project)")
    ap.add_argument("--repo", type=Path, help="repository to use and keep (default: a temp one)")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="agent-rollback-"))
    try:
        workdir = (a.workdir or tmp / "project").resolve()
        if a.workdir is None:
            make_demo_project(workdir)
        if a.repo is not None:
            url = str(a.repo)
            password = None  # DBM_PASSWORD / DBM_PASSWORD_FILE
            try:
                repo = dbm.Repository.open(url)
            except dbm.RepositoryNotFound:
                repo = dbm.Repository.init(url)
        else:
            password = secrets.token_urlsafe(24)
            repo = dbm.Repository.init(tmp / "repo", password)

        before = fingerprint(workdir)
        snap = repo.backup(workdir, description="before risky change", tags=["agent", "pre-change"])
        print(f"1. snapshot {snap.short_id}: {snap.summary.files} files, "
              f"{snap.summary.bytes_total} bytes of {workdir}")

        risky_change(workdir)
        print("2. made the change")

        if healthy(workdir):
            print("3. the change works: keeping it")
            return 0
        print("3. the change broke the project: rolling back")

        rollback(repo, snap, workdir)
        after = fingerprint(workdir)
        if after != before:
            changed = sorted(set(before.items()) ^ set(after.items()))
            print(f"4. FAILED: {len(changed)} entries differ after rollback: {changed[:5]}")
            return 1
        assert healthy(workdir)
        print(f"4. rolled back to {snap.short_id}: all {len(after)} entries are identical "
              "to the snapshot, and the project is healthy again")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
