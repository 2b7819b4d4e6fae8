"""Restore points in a real catalog: the embedded one, and PostgreSQL when it runs here."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, Optional

import pytest

import data_backup_manager as dbm
from conftest import restored_path, tree_state


def test_restore_points_in_the_embedded_catalog(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    cat = dbm.Catalog.open(directory=tmp_path / "catalog")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    a1 = repo.backup(tree)
    (tree / "later.txt").write_text("later")
    a2 = repo.backup(tree)
    b = repo.backup(other)

    rp = repo.create_restore_point("before migration", description="all targets", catalog=cat)
    assert sorted(rp.snapshot_ids) == sorted([a2.id, b.id])  # the newest of each target
    assert rp.name == "before migration" and rp.description == "all targets" and not rp.verified
    assert rp.created_by

    old = repo.create_restore_point("old", [a1, a1.short_id], catalog=cat, created_by="agent-7")
    assert old.snapshot_ids == [a1.id] and old.created_by == "agent-7"
    assert [p.name for p in repo.restore_points(catalog=cat)] == ["old", "before migration"]
    assert cat.restore_point("before migration").id == rp.id
    assert cat.restore_point(old.id).name == "old"

    with pytest.raises(dbm.Conflict, match="old"):
        repo.create_restore_point("old", catalog=cat)
    with pytest.raises(dbm.NotFound, match="nope"):
        cat.restore_point("nope")
    with pytest.raises(dbm.SnapshotNotFound, match="beefbeef"):
        repo.create_restore_point("bad", ["beefbeef"], catalog=cat)
    assert issubclass(dbm.NotFound, dbm.CatalogError) and issubclass(dbm.CatalogError, dbm.BackupError)

    # A restore point is a way back: restore the snapshots it names.
    dest = tmp_path / "r"
    before_later = tree_state(tree)
    (tree / "later.txt").unlink()
    point = dbm.Catalog.open(directory=tmp_path / "catalog").restore_point("old")
    for sid in point.snapshot_ids:
        repo.restore(sid, dest)
    assert tree_state(restored_path(dest, tree)) == tree_state(tree)
    assert tree_state(tree) != before_later


def _pg_bin(name: str) -> Optional[str]:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)


@pytest.fixture
def pg_url() -> Iterator[str]:
    createdb, dropdb = _pg_bin("createdb"), _pg_bin("dropdb")
    if not createdb or not dropdb:
        pytest.skip("PostgreSQL client tools are not installed")
    name = f"dbm_py_{uuid.uuid4().hex[:12]}"
    args = ["-h", os.environ.get("PGHOST", "127.0.0.1"), "-U", os.environ.get("PGUSER", "postgres")]
    r = subprocess.run([createdb, *args, name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"PostgreSQL is not reachable: {r.stderr.strip()}")
    try:
        yield f"postgres://{args[3]}@{args[1]}:5432/{name}"
    finally:
        subprocess.run([dropdb, *args, "--force", name], capture_output=True)


def test_restore_points_in_postgresql(repo: dbm.Repository, tree: Path, pg_url: str) -> None:
    cat = dbm.Catalog.open(pg_url)
    assert "postgres://" in cat.location
    snap = repo.backup(tree)
    rp = repo.create_restore_point("pg point", catalog=cat)
    assert rp.snapshot_ids == [snap.id]
    again = dbm.Catalog.open(pg_url)
    assert [p.id for p in again.restore_points()] == [rp.id]
    with pytest.raises(dbm.Conflict):
        repo.create_restore_point("pg point", catalog=again)
