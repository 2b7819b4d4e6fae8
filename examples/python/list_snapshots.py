#!/usr/bin/env python3
"""List a repository's snapshots as a table.

    DBM_PASSWORD=... python examples/python/list_snapshots.py REPO [--target files:/srv/app] [--since 2026-12-01]

The password comes from DBM_PASSWORD or DBM_PASSWORD_FILE.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Sequence

import data_backup_manager as dbm


def size(n: int) -> str:
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{n} B"


def table(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line, fmt(header), line, *map(fmt, rows), line])


def main() -> int:
    ap = argparse.ArgumentParser(description="List snapshots as a table")
    ap.add_argument("repo")
    ap.add_argument("--target", help="a kind (files), a spec (files:/srv/app) or a path")
    ap.add_argument("--since", help="YYYY-MM-DD or an RFC 3339 time")
    a = ap.parse_args()
    try:
        repo = dbm.Repository.open(a.repo)
        snaps = repo.snapshots(target=a.target, since=a.since)
    except dbm.BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rows: List[Sequence[str]] = [
        (
            s.short_id,
            s.time.strftime("%Y-%m-%d %H:%M:%S"),
            s.type,
            ",".join(s.targets),
            str(s.summary.files),
            size(s.summary.bytes_total),
            size(s.summary.bytes_added),
            "partial" if s.partial else "complete",
            s.description or "",
        )
        for s in snaps
    ]
    header = ("ID", "Time (UTC)", "Type", "Targets", "Files", "Size", "Added", "Status", "Description")
    print(table(header, rows))
    print(f"{len(snaps)} snapshot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
