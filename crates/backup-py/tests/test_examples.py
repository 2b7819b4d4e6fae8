"""The Python examples run end to end (CI runs them on their own too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_agent_rollback_example_end_to_end(tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    (work / "config.json").write_text('{"port": 1}')
    (work / "src").mkdir()
    (work / "src" / "app.py").write_text("x = 1\n")
    (work / "notes.txt").write_text("keep me\n")
    repo = tmp_path / "repo"
    env = {"DBM_PASSWORD": "example-secret"}
    p = run(str(EXAMPLES / "agent_rollback.py"), "--workdir", str(work), "--repo", str(repo), env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "rolled back to" in p.stdout
    # The project is exactly as before the change, the stray file is gone.
    assert (work / "config.json").read_text() == '{"port": 1}'
    assert (work / "src" / "app.py").read_text() == "x = 1\n"
    assert not (work / "src" / "generated.py").exists()
    assert "example-secret" not in p.stdout + p.stderr

    listing = run(str(EXAMPLES / "list_snapshots.py"), str(repo), env=env)
    assert listing.returncode == 0, listing.stderr
    assert "before risky change" in listing.stdout and "1 snapshot(s)" in listing.stdout

    wrong = run(str(EXAMPLES / "list_snapshots.py"), str(repo), env={"DBM_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr


def test_agent_rollback_demo_mode() -> None:
    p = run(str(EXAMPLES / "agent_rollback.py"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "identical to the snapshot" in p.stdout
