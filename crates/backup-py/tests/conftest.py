"""Shared fixtures: real directories on disk, real repositories in tmp_path."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Callable, Dict

import pytest

import data_backup_manager as dbm

PASSWORD = "correct horse battery staple"


def make_tree(root: Path, big_mib: int = 3) -> Path:
    """A directory with nested dirs, empty and random files, a multi-chunk file, unusual names,
    a symlink, an empty dir and distinct permission bits."""
    (root / "src" / "deep" / "er").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "src" / "main.py").write_text("print('hello')\n")
    (root / "src" / "deep" / "er" / "data.bin").write_bytes(os.urandom(200_000))
    (root / "empty.txt").write_bytes(b"")
    (root / "naïve name with spaces.txt").write_text("unicode ✓\n")
    (root / "big.bin").write_bytes(os.urandom(big_mib * 1024 * 1024))
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o750)
    os.chmod(root / "src" / "deep", 0o700)
    os.symlink("src/main.py", root / "link-to-main")
    return root


def tree_state(root: Path) -> Dict[str, str]:
    """Relative path -> type, permission bits and content digest (or link target)."""
    out: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = f"dir {stat.S_IMODE(st.st_mode):o}"
            else:
                out[rel] = f"file {stat.S_IMODE(st.st_mode):o} " + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def restored_path(dest: Path, source: Path) -> Path:
    """Where source /a/b lands inside a restore destination: dest/a/b."""
    return dest / source.resolve().relative_to("/")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "source")


@pytest.fixture
def repo(tmp_path: Path) -> dbm.Repository:
    return dbm.Repository.init(tmp_path / "repo", PASSWORD)


@pytest.fixture
def state() -> Callable[[Path], Dict[str, str]]:
    return tree_state
