"""Client of the backup-server HTTP API (docs/api.md), with Repository's method names.

The server runs the engine; this client only speaks HTTP (standard library only) and turns
answers into the module's own types (Snapshot, RestorePoint data, exceptions). Backups and
restores on the server are jobs: ``backup`` and ``restore`` wait for them by default.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterable, List, Optional, Union

from ._native import (
    BackupError,
    Conflict,
    InvalidArgument,
    NotFound,
    RepositoryCorrupt,
    RepositoryLocked,
    Snapshot,
    SnapshotNotFound,
)

__all__ = ["ApiError", "Client"]


class ApiError(BackupError):
    """The server answered with an error that has no more specific class (401, 403, 5xx, ...).

    ``status``: the HTTP status; ``code``: the API's error code (``unauthorized``,
    ``forbidden``, ``internal``, ...).
    """

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


_CODES: Dict[str, type] = {
    "invalid_field": InvalidArgument,
    "not_found": NotFound,
    "conflict": Conflict,
    "locked": RepositoryLocked,
    "corrupt": RepositoryCorrupt,
}

_Target = Union[str, Iterable[str]]


class Client:
    """``Client("http://127.0.0.1:20010", token)``: the same operations as Repository, through
    the server (which holds the repository and its password). ``token`` is sent as a bearer
    token and never appears in messages. ``timeout``: seconds for one HTTP request."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 60.0) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"api_url {api_url!r}: expected http://HOST:PORT or https://...")
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.api_url!r})"

    # -- HTTP ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            try:
                err = json.loads(raw)["error"]
                code, message = str(err.get("code", "")), str(err.get("message", raw))
            except (ValueError, KeyError, TypeError, AttributeError):
                code, message = "", raw or e.reason
            cls = _CODES.get(code)
            text = f"{method} {path}: {message}"
            if cls is not None:
                raise cls(text) from None
            raise ApiError(f"{text} (HTTP {e.code})", e.code, code) from None
        except urllib.error.URLError as e:
            raise ApiError(f"{method} {self.api_url}{path}: {e.reason}") from None
        return json.loads(text) if text else None

    def _wait(self, path: str, timeout: float, poll: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: Dict[str, Any] = self._request("GET", path)
            if job.get("status") in ("completed", "failed"):
                return job
            if time.monotonic() > deadline:
                raise ApiError(f"{path}: still {job.get('status')} after {timeout:.0f} s")
            time.sleep(poll)

    # -- operations ---------------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """``GET /health``: status (healthy|degraded|critical), reasons, checks, version."""
        req = urllib.request.Request(self.api_url + "/health")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return dict(json.loads(r.read().decode()))
        except urllib.error.HTTPError as e:  # 503 while critical still carries the report
            return dict(json.loads(e.read().decode()))

    def backup(
        self,
        targets: _Target,
        *,
        type: str = "incremental",
        description: Optional[str] = None,
        retention_days: Optional[int] = None,
        wait: bool = True,
        timeout: float = 3600.0,
        poll: float = 0.2,
    ) -> List[Snapshot]:
        """Asks the server to back up ``targets`` (specs or the server's target names; the
        server makes one job, hence one snapshot, per target) and waits for the jobs. Returns
        the snapshots; with ``wait=False`` returns [] at once (the jobs run on the server).
        A failed job raises ApiError naming it."""
        body: Dict[str, Any] = {
            "targets": [targets] if isinstance(targets, str) else list(targets),
            "type": type,
        }
        if description is not None:
            body["description"] = description
        if retention_days is not None:
            body["retention_days"] = retention_days
        created = self._request("POST", "/api/v1/backup/create", body)
        if not wait:
            return []
        ids: List[str] = []
        for job_id in created.get("job_ids") or [created["job_id"]]:
            job = self._wait(f"/api/v1/backup/jobs/{job_id}", timeout, poll)
            if job["status"] != "completed":
                raise ApiError(f"backup job {job_id} failed: {job.get('error')}", 0, "job_failed")
            ids.append(str(job["storage_path"]))
        by_id = {s.id: s for s in self.snapshots()}
        return [by_id[i] for i in ids if i in by_id]

    def snapshots(
        self, target: Optional[str] = None, since: Union[_dt.date, str, None] = None
    ) -> List[Snapshot]:
        """Snapshots, oldest first (``GET /api/v1/backup/list``). ``since``: a date or
        ``YYYY-MM-DD``."""
        q: Dict[str, str] = {}
        if target is not None:
            q["target"] = target
        if since is not None:
            q["since"] = since if isinstance(since, str) else since.strftime("%Y-%m-%d")
        path = "/api/v1/backup/list" + ("?" + urllib.parse.urlencode(q) if q else "")
        items = self._request("GET", path)
        snaps = [Snapshot._from_json(json.dumps(x)) for x in items]
        return sorted(snaps, key=lambda s: (s.time, s.id))

    def snapshot(self, id: str = "latest") -> Snapshot:
        """One snapshot by ``"latest"``, full id or unique prefix (at least 4 hex digits)."""
        snaps = self.snapshots()
        if id == "latest":
            if not snaps:
                raise SnapshotNotFound("snapshot latest: the repository has no snapshots")
            return snaps[-1]
        found = [s for s in snaps if len(id) >= 4 and s.id.startswith(id.lower())]
        if len(found) != 1:
            why = "no snapshot has this id" if not found else f"prefix matches {len(found)} snapshots"
            raise SnapshotNotFound(f"snapshot {id}: {why}")
        return found[0]

    def restore(
        self,
        snapshot: Union[Snapshot, str],
        destination: str,
        *,
        targets: Iterable[str] = (),
        verify: bool = True,
        overwrite: bool = False,
        wait: bool = True,
        timeout: float = 3600.0,
        poll: float = 0.2,
    ) -> Dict[str, Any]:
        """Asks the server to restore a snapshot (or ``"latest"``) into ``destination`` *on the
        server's machine*, and waits. Returns the restore job (``status``, ``metadata.results``).
        A failed restore raises ApiError naming the job."""
        snap_id = snapshot.id if isinstance(snapshot, Snapshot) else str(snapshot)
        if snap_id == "latest":
            snap_id = self.snapshot("latest").id
        body = {
            "snapshot_id": snap_id,
            "destination": str(destination),
            "targets": list(targets),
            "verify_before_restore": verify,
            "overwrite": overwrite,
        }
        created = self._request("POST", "/api/v1/restore/create", body)
        path = f"/api/v1/restore/status/{created['restore_id']}"
        if not wait:
            return dict(self._request("GET", path))
        job = self._wait(path, timeout, poll)
        if job["status"] != "completed":
            raise ApiError(f"restore {created['restore_id']} failed: {job.get('error')}", 0, "job_failed")
        return job

    def create_restore_point(
        self,
        name: str,
        *,
        description: Optional[str] = None,
        targets: Iterable[str] = (),
        backup_job_ids: Iterable[str] = (),
    ) -> Dict[str, Any]:
        """``POST /api/v1/restore-points``: by default the newest completed backup of every
        target (or of ``targets``), or the given jobs."""
        body: Dict[str, Any] = {"name": name, "targets": list(targets), "backup_job_ids": list(backup_job_ids)}
        if description is not None:
            body["description"] = description
        return dict(self._request("POST", "/api/v1/restore-points", body))

    def restore_points(self) -> List[Dict[str, Any]]:
        """``GET /api/v1/restore-points``."""
        return list(self._request("GET", "/api/v1/restore-points"))

    def status(self) -> Dict[str, Any]:
        """``GET /api/v1/backup/status``: the PRD status report."""
        return dict(self._request("GET", "/api/v1/backup/status"))
