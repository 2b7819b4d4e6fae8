//! The exception hierarchy, rooted at `data_backup_manager.BackupError`, and the mapping from
//! [`backup_core::ErrorKind`]. Messages are the engine's own: each names the repository,
//! snapshot, path or pack involved, and none contains a password.

use backup_core::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    data_backup_manager,
    BackupError,
    PyException,
    "Base class of every error raised by data_backup_manager."
);
create_exception!(
    data_backup_manager,
    WrongPassword,
    BackupError,
    "No key of the repository opens with the given password."
);
create_exception!(
    data_backup_manager,
    RepositoryNotFound,
    BackupError,
    "There is no repository at the given location (run Repository.init first)."
);
create_exception!(
    data_backup_manager,
    RepositoryExists,
    BackupError,
    "Repository.init on a location that already holds a repository."
);
create_exception!(
    data_backup_manager,
    RepositoryCorrupt,
    BackupError,
    "Repository data failed authentication, hashing or decoding (or check() found problems)."
);
create_exception!(
    data_backup_manager,
    RepositoryLocked,
    BackupError,
    "Another process holds a conflicting repository lock (e.g. prune runs)."
);
create_exception!(
    data_backup_manager,
    SnapshotNotFound,
    BackupError,
    "A snapshot id, prefix or 'latest' that matches no snapshot (or several)."
);
create_exception!(
    data_backup_manager,
    InvalidArgument,
    BackupError,
    "An argument the engine rejects (bad target, pattern, option value)."
);
create_exception!(
    data_backup_manager,
    DestinationError,
    BackupError,
    "The restore destination is unusable (non-empty without overwrite=True, not a directory)."
);
create_exception!(
    data_backup_manager,
    TargetError,
    BackupError,
    "A backup target failed (e.g. its source path does not exist)."
);
create_exception!(
    data_backup_manager,
    StorageError,
    BackupError,
    "The object store holding the repository failed (I/O, permissions, network)."
);
create_exception!(
    data_backup_manager,
    FilesystemError,
    BackupError,
    "Local file system I/O failed; the message names the path."
);
create_exception!(
    data_backup_manager,
    Partial,
    BackupError,
    "The operation finished but not everything succeeded. Attributes: `errors` (list of \
     (path, message)) and `result` (the Snapshot stored, or the RestoreResult)."
);

create_exception!(
    data_backup_manager,
    CatalogError,
    BackupError,
    "The catalog (embedded file or PostgreSQL) failed."
);
create_exception!(
    data_backup_manager,
    NotFound,
    CatalogError,
    "A catalog record (e.g. a restore point) that does not exist."
);
create_exception!(
    data_backup_manager,
    Conflict,
    CatalogError,
    "A catalog record that already exists (e.g. a restore point name)."
);

/// Maps an engine error to its Python exception (by kind; the message is the engine's).
pub fn to_py(e: backup_core::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::WrongPassword => WrongPassword::new_err(msg),
        ErrorKind::RepositoryNotFound => RepositoryNotFound::new_err(msg),
        ErrorKind::RepositoryExists => RepositoryExists::new_err(msg),
        ErrorKind::SnapshotNotFound => SnapshotNotFound::new_err(msg),
        ErrorKind::Corrupt => RepositoryCorrupt::new_err(msg),
        ErrorKind::Locked => RepositoryLocked::new_err(msg),
        ErrorKind::InvalidInput => InvalidArgument::new_err(msg),
        ErrorKind::Destination => DestinationError::new_err(msg),
        ErrorKind::Target => TargetError::new_err(msg),
        ErrorKind::Store => StorageError::new_err(msg),
        ErrorKind::Io => FilesystemError::new_err(msg),
        ErrorKind::Catalog => CatalogError::new_err(msg),
        ErrorKind::NotFound => NotFound::new_err(msg),
        ErrorKind::Conflict => Conflict::new_err(msg),
    }
}

/// A [`Partial`] exception carrying `errors` and `result`.
pub fn partial(
    py: Python<'_>,
    msg: String,
    errors: Vec<(String, String)>,
    result: Py<PyAny>,
) -> PyErr {
    let err = Partial::new_err(msg);
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail short of memory errors; if it
    // does, that error is the better one to raise.
    if let Err(e) = value
        .setattr("errors", errors)
        .and_then(|_| value.setattr("result", result))
    {
        return e;
    }
    err
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BackupError", py.get_type::<BackupError>())?;
    m.add("WrongPassword", py.get_type::<WrongPassword>())?;
    m.add("RepositoryNotFound", py.get_type::<RepositoryNotFound>())?;
    m.add("RepositoryExists", py.get_type::<RepositoryExists>())?;
    m.add("RepositoryCorrupt", py.get_type::<RepositoryCorrupt>())?;
    m.add("RepositoryLocked", py.get_type::<RepositoryLocked>())?;
    m.add("SnapshotNotFound", py.get_type::<SnapshotNotFound>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("DestinationError", py.get_type::<DestinationError>())?;
    m.add("TargetError", py.get_type::<TargetError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("FilesystemError", py.get_type::<FilesystemError>())?;
    m.add("Partial", py.get_type::<Partial>())?;
    m.add("CatalogError", py.get_type::<CatalogError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    Ok(())
}
