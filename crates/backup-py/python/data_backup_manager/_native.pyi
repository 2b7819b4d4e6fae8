"""Type stubs of the compiled module data_backup_manager._native (import data_backup_manager).

Sizes are bytes, durations seconds, times timezone-aware datetimes in UTC.
"""

import datetime
import os
from typing import Callable, Iterable, List, Optional, Tuple, Union, final

__version__: str
__all__ = [
    "BackupError",
    "Catalog",
    "CatalogError",
    "CheckReport",
    "Conflict",
    "Decision",
    "DestinationError",
    "FilesystemError",
    "ForgetResult",
    "InvalidArgument",
    "NotFound",
    "Partial",
    "Problem",
    "ProgressInfo",
    "PruneReport",
    "Repository",
    "RepositoryCorrupt",
    "RepositoryExists",
    "RepositoryLocked",
    "RepositoryNotFound",
    "RestorePoint",
    "RestoreResult",
    "Snapshot",
    "SnapshotNotFound",
    "StorageError",
    "Summary",
    "TargetError",
    "WrongPassword",
    "__version__",
]

_StrPath = Union[str, "os.PathLike[str]"]
_Target = Union[str, "os.PathLike[str]"]
_SnapshotRef = Union["Snapshot", str]
_PointInTime = Union[datetime.datetime, datetime.date, str]
_ProgressCallback = Callable[["ProgressInfo"], object]

class BackupError(Exception):
    """Base class of every error raised by data_backup_manager."""

class WrongPassword(BackupError):
    """No key of the repository opens with the given password."""

class RepositoryNotFound(BackupError):
    """There is no repository at the given location (run Repository.init first)."""

class RepositoryExists(BackupError):
    """Repository.init on a location that already holds a repository."""

class RepositoryCorrupt(BackupError):
    """Repository data failed authentication, hashing or decoding (or check() found problems).

    Raised by check(): ``report`` holds the CheckReport. Raised elsewhere: no ``report``.
    """

    report: "CheckReport"

class RepositoryLocked(BackupError):
    """Another process holds a conflicting repository lock (e.g. prune runs)."""

class SnapshotNotFound(BackupError):
    """A snapshot id, prefix or 'latest' that matches no snapshot (or several)."""

class InvalidArgument(BackupError):
    """An argument the engine rejects (bad target, pattern, option value)."""

class DestinationError(BackupError):
    """The restore destination is unusable (non-empty without overwrite=True, not a directory)."""

class TargetError(BackupError):
    """A backup target failed (e.g. its source path does not exist)."""

class StorageError(BackupError):
    """The object store holding the repository failed (I/O, permissions, network)."""

class FilesystemError(BackupError):
    """Local file system I/O failed; the message names the path."""

class Partial(BackupError):
    """The operation finished but not everything succeeded.

    ``errors``: (path, message) of each failure. ``result``: the Snapshot that was stored
    (backup) or the RestoreResult (restore).
    """

    errors: List[Tuple[str, str]]
    result: Union["Snapshot", "RestoreResult"]

class CatalogError(BackupError):
    """The catalog (embedded file or PostgreSQL) failed."""

class NotFound(CatalogError):
    """A catalog record (e.g. a restore point) that does not exist."""

class Conflict(CatalogError):
    """A catalog record that already exists (e.g. a restore point name)."""

@final
class Summary:
    """Counters of one backup (Snapshot.summary)."""

    @property
    def files_new(self) -> int: ...
    @property
    def files_changed(self) -> int: ...
    @property
    def files_unmodified(self) -> int: ...
    @property
    def files(self) -> int:
        """new + changed + unmodified."""
    @property
    def dirs(self) -> int: ...
    @property
    def others(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def bytes_added(self) -> int: ...
    @property
    def raw_bytes_added(self) -> int: ...
    @property
    def blobs_added(self) -> int: ...
    @property
    def duration_secs(self) -> float: ...

@final
class Snapshot:
    """One snapshot: what was backed up, when, and how it went. Compares equal by id."""

    @property
    def id(self) -> str:
        """Full id (64 hex digits)."""
    @property
    def short_id(self) -> str:
        """First 8 hex digits."""
    @property
    def time(self) -> datetime.datetime:
        """When the backup started (UTC)."""
    @property
    def type(self) -> str:
        """'full' or 'incremental'."""
    @property
    def target_kind(self) -> str: ...
    @property
    def targets(self) -> List[str]:
        """Target specs, e.g. ['files:/srv/app']."""
    @property
    def paths(self) -> List[str]: ...
    @property
    def hostname(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def parent(self) -> Optional[str]: ...
    @property
    def description(self) -> Optional[str]: ...
    @property
    def tags(self) -> List[str]: ...
    @property
    def retention_until(self) -> Optional[datetime.datetime]: ...
    @property
    def partial(self) -> bool:
        """True when some paths could not be read (listed in errors)."""
    @property
    def errors(self) -> List[Tuple[str, str]]: ...
    @property
    def summary(self) -> Summary: ...
    @staticmethod
    def _from_json(text: str) -> "Snapshot":
        """A Snapshot from the server's JSON (used by Client)."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class RestoreResult:
    """What a restore wrote."""

    @property
    def snapshot(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...
    @property
    def others(self) -> int: ...
    @property
    def bytes_written(self) -> int: ...
    @property
    def files_verified(self) -> int: ...
    @property
    def errors(self) -> List[Tuple[str, str]]: ...

@final
class Problem:
    """One problem found by check()."""

    @property
    def kind(self) -> str: ...
    @property
    def pack(self) -> Optional[str]: ...
    @property
    def message(self) -> str: ...
    @property
    def snapshots(self) -> List[str]: ...
    @property
    def paths(self) -> List[str]: ...
    @property
    def paths_total(self) -> int: ...

@final
class CheckReport:
    """The result of check()."""

    @property
    def ok(self) -> bool: ...
    @property
    def errors(self) -> List[Problem]: ...
    @property
    def warnings(self) -> List[str]: ...
    @property
    def snapshots(self) -> int: ...
    @property
    def packs(self) -> int: ...
    @property
    def packs_read(self) -> int: ...
    @property
    def blobs(self) -> int: ...

@final
class PruneReport:
    """What prune() removed (or would remove with dry_run=True)."""

    @property
    def packs_deleted(self) -> int: ...
    @property
    def packs_repacked(self) -> int: ...
    @property
    def unreferenced_packs_deleted(self) -> int: ...
    @property
    def bytes_deleted(self) -> int: ...
    @property
    def bytes_freed(self) -> int: ...
    @property
    def bytes_repacked(self) -> int: ...
    @property
    def blobs_used(self) -> int: ...
    @property
    def blobs_removed(self) -> int: ...
    @property
    def partial_uploads_deleted(self) -> int: ...
    @property
    def dry_run(self) -> bool: ...

@final
class Decision:
    """The retention decision for one snapshot."""

    @property
    def id(self) -> str: ...
    @property
    def time(self) -> datetime.datetime: ...
    @property
    def keep(self) -> bool: ...
    @property
    def reasons(self) -> List[str]: ...

@final
class ForgetResult:
    """The result of forget()."""

    @property
    def decisions(self) -> List[Decision]: ...
    @property
    def kept(self) -> List[str]: ...
    @property
    def removed(self) -> List[str]: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def prune(self) -> Optional[PruneReport]: ...

@final
class ProgressInfo:
    """Passed to a progress callback (at most every 0.2 s, on each phase change, and once
    with phase 'done' at the end)."""

    @property
    def phase(self) -> str: ...
    @property
    def bytes_done(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...
    @property
    def items_done(self) -> int: ...
    @property
    def items_total(self) -> int: ...
    @property
    def elapsed_secs(self) -> float: ...

@final
class RestorePoint:
    """PRD RestorePoint: a named set of snapshots captured together."""

    @property
    def id(self) -> str:
        """UUID."""
    @property
    def name(self) -> str: ...
    @property
    def snapshot_ids(self) -> List[str]: ...
    @property
    def backup_job_ids(self) -> List[str]: ...
    @property
    def created_at(self) -> datetime.datetime: ...
    @property
    def description(self) -> Optional[str]: ...
    @property
    def verified(self) -> bool: ...
    @property
    def verification_date(self) -> Optional[datetime.datetime]: ...
    @property
    def created_by(self) -> str: ...

@final
class Catalog:
    """The catalog holding restore points: PostgreSQL or an embedded file."""

    @staticmethod
    def open(database_url: Optional[str] = None, *, directory: Optional[_StrPath] = None) -> "Catalog":
        """PostgreSQL at database_url, the embedded catalog in directory, or (neither) what the
        config file and environment name."""
    @property
    def location(self) -> str: ...
    def restore_points(self) -> List[RestorePoint]:
        """Every restore point, newest first."""
    def restore_point(self, name_or_id: str) -> RestorePoint:
        """One restore point by name or id (raises NotFound)."""

@final
class Repository:
    """An open repository. Safe to share between threads."""

    @staticmethod
    def init(
        url: _StrPath,
        password: Union[str, bytes, None] = None,
        *,
        password_file: Optional[_StrPath] = None,
    ) -> "Repository":
        """Create a repository at url (a local directory, created if missing)."""
    @staticmethod
    def open(
        url: _StrPath,
        password: Union[str, bytes, None] = None,
        *,
        password_file: Optional[_StrPath] = None,
    ) -> "Repository":
        """Open the repository at url (password, password_file, or DBM_PASSWORD_FILE /
        DBM_PASSWORD)."""
    @property
    def url(self) -> str: ...
    @property
    def id(self) -> str: ...
    def backup(
        self,
        targets: Union[_Target, Iterable[_Target]],
        *,
        type: str = "incremental",
        description: Optional[str] = None,
        retention_days: Optional[int] = None,
        tags: Optional[Union[str, Iterable[str]]] = None,
        exclude: Optional[Union[str, Iterable[str]]] = None,
        parent: Optional[_SnapshotRef] = None,
        allow_partial: bool = False,
        progress: Optional[_ProgressCallback] = None,
    ) -> Snapshot:
        """Back up targets; raises Partial for a partial snapshot unless allow_partial."""
    def snapshots(
        self,
        target: Optional[_Target] = None,
        since: Optional[_PointInTime] = None,
    ) -> List[Snapshot]:
        """Snapshots, oldest first."""
    def snapshot(self, id: str = "latest") -> Snapshot:
        """One snapshot by 'latest', id or unique prefix."""
    def restore(
        self,
        snapshot: _SnapshotRef,
        destination: _StrPath,
        *,
        include: Optional[Union[_StrPath, Iterable[_StrPath]]] = None,
        verify: bool = True,
        overwrite: bool = False,
        progress: Optional[_ProgressCallback] = None,
    ) -> RestoreResult:
        """Restore a snapshot into destination (source /a/b lands at destination/a/b)."""
    def check(
        self,
        *,
        read_data: bool = False,
        read_data_subset: Optional[float] = None,
        progress: Optional[_ProgressCallback] = None,
    ) -> CheckReport:
        """Check the repository; raises RepositoryCorrupt when problems are found."""
    def forget(
        self,
        *,
        keep_last: Optional[int] = None,
        keep_hourly: Optional[int] = None,
        keep_daily: Optional[int] = None,
        keep_weekly: Optional[int] = None,
        keep_monthly: Optional[int] = None,
        keep_yearly: Optional[int] = None,
        keep_within: Optional[Union[str, datetime.timedelta]] = None,
        timezone: str = "UTC",
        dry_run: bool = False,
        prune: bool = False,
    ) -> ForgetResult:
        """Apply a retention policy (and prune with prune=True)."""
    def create_restore_point(
        self,
        name: str,
        snapshots: Optional[Union[_SnapshotRef, Iterable[_SnapshotRef]]] = None,
        *,
        description: Optional[str] = None,
        catalog: Optional[Catalog] = None,
        created_by: Optional[str] = None,
    ) -> RestorePoint:
        """Record a restore point naming snapshots of this repository (default: the newest
        snapshot of each target)."""
    def restore_points(self, *, catalog: Optional[Catalog] = None) -> List[RestorePoint]:
        """Restore points in the catalog, newest first."""
    def prune(
        self,
        *,
        dry_run: bool = False,
        max_unused_percent: float = 10.0,
        progress: Optional[_ProgressCallback] = None,
    ) -> PruneReport:
        """Delete data no snapshot references."""
