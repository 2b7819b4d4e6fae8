"""Encrypted, deduplicated backups from Python.

    import data_backup_manager as dbm

    repo = dbm.Repository.init("/srv/backups", password="a long passphrase")
    snap = repo.backup(["/srv/app"], description="before upgrade")
    repo.restore(snap, "/tmp/restore")

Every call runs in the Rust engine (``backup-core``) with the GIL released. Errors are
exceptions derived from :class:`BackupError`. See docs/python.md for the whole API.
"""

from ._native import (
    BackupError,
    Catalog,
    CatalogError,
    CheckReport,
    Conflict,
    Decision,
    DestinationError,
    FilesystemError,
    ForgetResult,
    InvalidArgument,
    NotFound,
    Partial,
    Problem,
    ProgressInfo,
    PruneReport,
    Repository,
    RepositoryCorrupt,
    RepositoryExists,
    RepositoryLocked,
    RepositoryNotFound,
    RestorePoint,
    RestoreResult,
    Snapshot,
    SnapshotNotFound,
    StorageError,
    Summary,
    TargetError,
    WrongPassword,
    __version__,
)
from .client import ApiError, Client

__all__ = [
    "ApiError",
    "Client",
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
