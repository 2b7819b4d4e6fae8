"""Round trips of real directories through a real repository."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import data_backup_manager as dbm
from conftest import PASSWORD, restored_path, tree_state


def test_round_trip_restores_identical_tree(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    snap = repo.backup([tree], description="first", tags=["t1", "t2"], retention_days=3)
    assert snap.type == "full" and not snap.partial and snap.errors == []
    assert snap.targets == [f"files:{tree}"] and snap.paths == [str(tree)]
    assert snap.description == "first" and snap.tags == ["t1", "t2"]
    assert snap.retention_until is not None and snap.retention_until - snap.time >= dt.timedelta(days=3)
    assert snap.time.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - snap.time) < dt.timedelta(minutes=5)
    files = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]
    assert snap.summary.files == snap.summary.files_new == len(files)
    assert snap.summary.bytes_total == sum(p.stat().st_size for p in files)
    assert len(snap.id) == 64 and snap.id.startswith(snap.short_id)

    dest = tmp_path / "restore"
    res = repo.restore(snap, dest)
    assert res.files == len(files) and res.files_verified == len(files)
    assert res.bytes_written == snap.summary.bytes_total
    assert tree_state(restored_path(dest, tree)) == tree_state(tree)


def test_incremental_reuses_unchanged_files_and_restores_each_version(
    repo: dbm.Repository, tree: Path, tmp_path: Path
) -> None:
    first = repo.backup(str(tree))
    before = tree_state(tree)
    (tree / "src" / "main.py").write_text("print('changed')\n")
    (tree / "new.txt").write_text("new\n")
    second = repo.backup(f"files:{tree}")
    assert second.type == "incremental" and second.parent == first.id
    assert second.summary.files_new == 1 and second.summary.files_changed == 1
    assert second.summary.files_unmodified == first.summary.files - 1
    assert second.summary.bytes_added < first.summary.bytes_added

    repo.restore(first.id[:10], tmp_path / "r1")
    assert tree_state(restored_path(tmp_path / "r1", tree)) == before
    repo.restore("latest", tmp_path / "r2")
    assert tree_state(restored_path(tmp_path / "r2", tree)) == tree_state(tree)

    full = repo.backup(tree, type="full")
    assert full.type == "full" and full.summary.bytes_read == full.summary.bytes_total


def test_snapshots_filters_and_lookup(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("x")
    a = repo.backup(tree)
    b = repo.backup(other)
    assert [s.id for s in repo.snapshots()] == [a.id, b.id]
    assert repo.snapshots(target=str(other)) == [b]
    assert repo.snapshots(target=f"files:{tree}") == [a]
    assert repo.snapshots(target="files") == [a, b]
    assert repo.snapshots(since=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)) == []
    assert repo.snapshots(since=dt.date(2000, 1, 1)) == [a, b]
    assert repo.snapshots(since="2000-01-01T00:00:00Z") == [a, b]
    with pytest.raises(dbm.InvalidArgument, match="naive"):
        repo.snapshots(since=dt.datetime(2000, 1, 1))
    assert repo.snapshot() == b and repo.snapshot(a.short_id) == a
    assert {a, b} == {repo.snapshot(a.id), repo.snapshot(b.id)}


def test_restore_include_and_overwrite(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    snap = repo.backup(tree)
    dest = tmp_path / "partial-restore"
    res = repo.restore(snap, dest, include=[tree / "src"])
    got = restored_path(dest, tree)
    assert (got / "src" / "main.py").read_text() == "print('hello')\n"
    assert not (got / "big.bin").exists()
    assert res.files == 2
    # A second restore into the same (now non-empty) destination needs overwrite=True.
    res = repo.restore(snap, dest, overwrite=True)
    assert tree_state(got) == tree_state(tree)


def test_reopen_with_password_file_and_environment(
    repo: dbm.Repository, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = repo.backup(tree)
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    again = dbm.Repository.open(repo.url, password_file=pwfile)
    assert again.id == repo.id and again.snapshot().id == snap.id
    monkeypatch.setenv("DBM_PASSWORD", PASSWORD)
    assert dbm.Repository.open(repo.url).id == repo.id
    assert dbm.Repository.open(repo.url, PASSWORD.encode()).id == repo.id


def test_forget_and_prune_free_space_and_keep_restorable(
    repo: dbm.Repository, tree: Path, tmp_path: Path
) -> None:
    snaps = []
    for i in range(3):
        (tree / f"gen{i}.bin").write_bytes(bytes([i]) * 300_000)
        snaps.append(repo.backup(tree, type="full"))
    dry = repo.forget(keep_last=1, dry_run=True)
    assert dry.dry_run and sorted(dry.removed) == sorted(s.id for s in snaps[:2])
    assert len(repo.snapshots()) == 3
    res = repo.forget(keep_last=1, prune=True)
    assert res.kept == [snaps[2].id] and len(res.removed) == 2
    # Only the old snapshots' directory trees became garbage: gen0/gen1 are in the newest too.
    assert res.prune is not None and not res.prune.dry_run and res.prune.blobs_removed > 0
    assert [s.id for s in repo.snapshots()] == [snaps[2].id]
    (tree / "gen0.bin").unlink()
    repo.backup(tree)
    repo.forget(keep_last=1)
    assert repo.prune(dry_run=True).blobs_removed >= 1
    pruned = repo.prune()
    assert pruned.blobs_removed >= 1 and pruned.bytes_deleted > 0 and not pruned.dry_run
    repo.check(read_data=True)
    dest = tmp_path / "after-prune"
    repo.restore("latest", dest)
    assert tree_state(restored_path(dest, tree)) == tree_state(tree)
    kept = repo.forget(keep_within="1d", keep_daily=7, timezone="Europe/Berlin")
    assert kept.removed == []
    with pytest.raises(dbm.InvalidArgument, match="Mars/Olympus"):
        repo.forget(keep_last=1, timezone="Mars/Olympus")


def test_check_reports_a_clean_repository(repo: dbm.Repository, tree: Path) -> None:
    repo.backup(tree)
    report = repo.check()
    assert report.ok and report.errors == [] and report.snapshots == 1 and report.packs_read == 0
    report = repo.check(read_data=True)
    assert report.ok and report.packs_read == report.packs > 0


def test_progress_callback_sees_the_work(repo: dbm.Repository, tree: Path, tmp_path: Path) -> None:
    seen: list[dbm.ProgressInfo] = []
    snap = repo.backup(tree, progress=seen.append)
    assert seen and seen[-1].phase == "done"
    assert seen[-1].bytes_done == snap.summary.bytes_total
    assert all(a.elapsed_secs <= b.elapsed_secs for a, b in zip(seen, seen[1:]))
    seen.clear()
    repo.restore(snap, tmp_path / "r", progress=seen.append)
    assert seen[-1].phase == "done" and seen[-1].bytes_done >= snap.summary.bytes_total


def test_failing_progress_callback_does_not_break_the_backup(
    repo: dbm.Repository, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    reported = []

    def bad(info: dbm.ProgressInfo) -> None:
        calls.append(info)
        raise RuntimeError("callback bug")

    monkeypatch.setattr("sys.unraisablehook", lambda u: reported.append(u.exc_value))
    snap = repo.backup(tree, progress=bad)
    assert snap.summary.files > 0
    assert len(calls) == 1 and len(reported) == 1 and "callback bug" in str(reported[0])
