"""Client against the real backup-server binary (built by cargo; DBM_SERVER_BIN names it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, Tuple

import pytest

import data_backup_manager as dbm
from conftest import PASSWORD, restored_path, tree_state

TOKEN = "python-client-test-token-0123456789"


def server_binary() -> Optional[Path]:
    env = os.environ.get("DBM_SERVER_BIN")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[3]
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    for p in (target / "debug" / "backup-server", target / "release" / "backup-server"):
        if p.is_file():
            return p
    return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Tuple[str, dbm.Repository]]:
    binary = server_binary()
    if binary is None or not binary.is_file():
        if os.environ.get("DBM_REQUIRE_SERVER"):
            pytest.fail("backup-server binary not found (set DBM_SERVER_BIN)")
        pytest.skip("backup-server binary not built (cargo build -p backup-server)")
    repo = dbm.Repository.init(tmp_path / "repo", PASSWORD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"repository: {tmp_path / 'repo'}\n"
        f"catalog_dir: {tmp_path / 'catalog'}\n"
        "scheduler:\n  default_schedules: false\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DBM_DATABASE_URL", "DATABASE_URL")}
    env.update(DBM_PASSWORD=PASSWORD, DBM_API_TOKEN=TOKEN, HOME=str(tmp_path))
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "--config", str(config), "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("server did not start:\n" + (tmp_path / "server.log").read_text())
                time.sleep(0.1)
        yield url, repo
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_client_backs_up_lists_and_restores_through_the_server(
    server: Tuple[str, dbm.Repository], tree: Path, tmp_path: Path
) -> None:
    url, repo = server
    client = dbm.Client(url, TOKEN)
    assert client.health()["status"] in ("healthy", "degraded", "critical")

    snaps = client.backup(f"files:{tree}", type="full", description="via api", retention_days=2)
    assert len(snaps) == 1
    snap = snaps[0]
    assert isinstance(snap, dbm.Snapshot) and snap.type == "full" and snap.description == "via api"
    assert snap.summary.files == len([p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()])
    # The server wrote into the repository we can open ourselves.
    assert [s.id for s in repo.snapshots()] == [snap.id]
    assert client.snapshots() == [snap] and client.snapshot() == snap
    assert client.snapshot(snap.short_id) == snap
    assert client.snapshots(since="2999-01-01") == []

    dest = tmp_path / "restore"
    job = client.restore(snap, str(dest))
    assert job["status"] == "completed"
    assert tree_state(restored_path(dest, tree)) == tree_state(tree)

    rp = client.create_restore_point("api point", description="from python")
    assert rp["snapshot_ids"] == [snap.id]
    assert [p["name"] for p in client.restore_points()] == ["api point"]
    with pytest.raises(dbm.Conflict):
        client.create_restore_point("api point")
    with pytest.raises(dbm.SnapshotNotFound):
        client.snapshot("ffff0000")
    with pytest.raises(dbm.InvalidArgument):
        client.backup("ftp:/nowhere")


def test_client_errors(server: Tuple[str, dbm.Repository]) -> None:
    url, _ = server
    with pytest.raises(dbm.ApiError) as e:
        dbm.Client(url, "wrong-token-wrong-token").snapshots()
    assert e.value.status == 401 and "wrong-token" not in str(e.value)
    with pytest.raises(dbm.InvalidArgument):
        dbm.Client("localhost:1", TOKEN)
    with pytest.raises(dbm.ApiError):
        dbm.Client("http://127.0.0.1:1", TOKEN, timeout=2).snapshots()
