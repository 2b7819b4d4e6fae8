"""Damaged repository data raises RepositoryCorrupt (or Partial for the files it affects)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import data_backup_manager as dbm
from conftest import PASSWORD, restored_path


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def data_packs(repo_dir: Path) -> list[Path]:
    return sorted(p for p in (repo_dir / "data").rglob("*") if p.is_file())


def test_damaged_pack_is_named_by_check_and_fails_only_its_files(
    tmp_path: Path, repo: dbm.Repository, tree: Path
) -> None:
    snap = repo.backup(tree)
    repo_dir = Path(repo.url)
    # The largest pack holds file data (tree blobs go to separate, small packs).
    pack = max(data_packs(repo_dir), key=lambda p: p.stat().st_size)
    flip_byte(pack, pack.stat().st_size // 3)

    repo.check()  # structure only: the damage is inside the pack's data
    with pytest.raises(dbm.RepositoryCorrupt) as e:
        repo.check(read_data=True)
    assert pack.name in str(e.value)
    report = e.value.report
    assert not report.ok and any(p.pack == pack.name for p in report.errors)

    dest = tmp_path / "restore"
    with pytest.raises(dbm.Partial) as p:
        repo.restore(snap, dest)
    assert p.value.errors, "the damaged files are listed"
    assert isinstance(p.value.result, dbm.RestoreResult)
    failed = {path for path, _ in p.value.errors}  # paths in the destination
    assert all("damaged" in msg for _, msg in p.value.errors)
    # Every file not reported as failed was restored intact; no damaged file sits under its name.
    root = restored_path(dest, tree)
    for f in tree.rglob("*"):
        if f.is_file() and not f.is_symlink():
            out = root / f.relative_to(tree)
            if str(out) in failed:
                assert not out.exists()
            else:
                assert out.read_bytes() == f.read_bytes()


def test_damaged_config_raises_repository_corrupt(repo: dbm.Repository) -> None:
    flip_byte(Path(repo.url) / "config", 40)
    with pytest.raises(dbm.RepositoryCorrupt, match="config"):
        dbm.Repository.open(repo.url, PASSWORD)


def test_damaged_snapshot_manifest(repo: dbm.Repository, tree: Path) -> None:
    good = repo.backup(tree)
    (tree / "more.txt").write_text("more")
    bad = repo.backup(tree)
    flip_byte(Path(repo.url) / "snapshots" / bad.id, 30)
    with pytest.raises(dbm.RepositoryCorrupt, match=bad.id):
        repo.snapshot(bad.id)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert repo.snapshots() == [good]
    assert any(bad.short_id in str(x.message) for x in w)
    # "latest" refuses to guess past a damaged manifest.
    with pytest.raises(dbm.SnapshotNotFound, match="uncertain"):
        repo.snapshot("latest")
    with pytest.raises(dbm.RepositoryCorrupt, match=bad.short_id):
        repo.check()
