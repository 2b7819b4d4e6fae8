"""Every failure raises a BackupError subclass whose message names the object involved."""

from __future__ import annotations

from pathlib import Path

import pytest

import data_backup_manager as dbm
from conftest import PASSWORD


def test_exception_hierarchy() -> None:
    for name in (
        "WrongPassword", "RepositoryNotFound", "RepositoryExists", "RepositoryCorrupt",
        "RepositoryLocked", "SnapshotNotFound", "InvalidArgument", "DestinationError",
        "TargetError", "StorageError", "FilesystemError", "Partial",
    ):
        cls = getattr(dbm, name)
        assert issubclass(cls, dbm.BackupError) and cls.__module__ == "data_backup_manager"
    assert issubclass(dbm.BackupError, Exception)


def test_wrong_password_raises_wrong_password(repo: dbm.Repository) -> None:
    with pytest.raises(dbm.WrongPassword) as e:
        dbm.Repository.open(repo.url, "not the password")
    assert repo.url in str(e.value)
    assert "not the password" not in str(e.value)


def test_missing_and_existing_repository(tmp_path: Path, repo: dbm.Repository) -> None:
    with pytest.raises(dbm.RepositoryNotFound, match=str(tmp_path / "nothing")):
        dbm.Repository.open(tmp_path / "nothing", PASSWORD)
    with pytest.raises(dbm.RepositoryExists, match=repo.url):
        dbm.Repository.init(repo.url, PASSWORD)


def test_password_arguments(tmp_path: Path, repo: dbm.Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBM_PASSWORD", raising=False)
    monkeypatch.delenv("DBM_PASSWORD_FILE", raising=False)
    with pytest.raises(dbm.InvalidArgument, match="no password"):
        dbm.Repository.open(repo.url)
    with pytest.raises(dbm.InvalidArgument, match="not both"):
        dbm.Repository.open(repo.url, PASSWORD, password_file=tmp_path / "pw")
    with pytest.raises(dbm.FilesystemError, match=str(tmp_path / "missing-pw")):
        dbm.Repository.open(repo.url, password_file=tmp_path / "missing-pw")
    (tmp_path / "empty-pw").write_text("\n")
    with pytest.raises(dbm.InvalidArgument, match="empty"):
        dbm.Repository.open(repo.url, password_file=tmp_path / "empty-pw")


def test_restore_into_non_empty_destination_without_overwrite_raises(
    repo: dbm.Repository, tree: Path, tmp_path: Path
) -> None:
    snap = repo.backup(tree)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep-me.txt").write_text("precious")
    with pytest.raises(dbm.DestinationError) as e:
        repo.restore(snap, dest)
    assert str(dest) in str(e.value)
    assert sorted(p.name for p in dest.iterdir()) == ["keep-me.txt"]
    assert (dest / "keep-me.txt").read_text() == "precious"


def test_unknown_snapshot_raises_snapshot_not_found(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    with pytest.raises(dbm.SnapshotNotFound, match="latest"):
        repo.snapshot()
    repo.backup(tree)
    with pytest.raises(dbm.SnapshotNotFound, match="deadbeef"):
        repo.restore("deadbeef", tmp_path / "x")
    with pytest.raises(dbm.SnapshotNotFound, match="zz"):
        repo.snapshot("zz")


def test_bad_targets_and_options(repo: dbm.Repository, tmp_path: Path) -> None:
    with pytest.raises(dbm.TargetError, match=str(tmp_path / "does-not-exist")):
        repo.backup(tmp_path / "does-not-exist")
    with pytest.raises(dbm.InvalidArgument, match="ftp"):
        repo.backup("ftp:/x")
    with pytest.raises(dbm.InvalidArgument, match="weekly"):
        repo.backup(tmp_path, type="weekly")
    with pytest.raises(dbm.InvalidArgument, match="no backup targets"):
        repo.backup([])
    with pytest.raises(dbm.InvalidArgument, match="retention"):
        repo.backup(tmp_path, retention_days=10**6)
    with pytest.raises(dbm.InvalidArgument, match="exclude"):
        repo.backup(tmp_path, exclude=[1])  # type: ignore[list-item]
    with pytest.raises(dbm.InvalidArgument, match="keep_within"):
        repo.forget(keep_within=3)  # type: ignore[arg-type]
    with pytest.raises(dbm.InvalidArgument):
        repo.forget(keep_within="3 fortnights")
    with pytest.raises(TypeError):
        repo.backup(tmp_path, "full")  # type: ignore[call-arg]


def test_exclude_patterns(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    snap = repo.backup(tree, exclude=["*.bin", "empty-dir"])
    dest = tmp_path / "r"
    repo.restore(snap, dest)
    names = {p.name for p in (dest / tree.relative_to("/")).rglob("*")}
    assert "main.py" in names and "big.bin" not in names and "data.bin" not in names
    assert "empty-dir" not in names
