//! The one error type of `backup-core`.
//!
//! Every variant names the object involved (a path, a snapshot, a pack) and, where it helps,
//! what to do next. Callers match on [`Error::kind`] rather than on message text.

use std::path::PathBuf;

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::Store(e)
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure, stable for matching by the CLI, the server and Python bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No key slot in the repository opens with the given password.
    WrongPassword,
    /// The repository does not exist at the given location (or has no `config`).
    RepositoryNotFound,
    /// `init` on a location that already holds a repository.
    RepositoryExists,
    /// A snapshot id or prefix that matches nothing (or several snapshots).
    SnapshotNotFound,
    /// Data read from the repository failed authentication, hashing or decoding.
    Corrupt,
    /// The repository is locked by another process.
    Locked,
    /// Invalid input from the caller (a bad target, pattern, path, option).
    InvalidInput,
    /// The restore destination is unusable (non-empty without overwrite, not a directory...).
    Destination,
    /// A backup target failed (unreadable source).
    Target,
    /// The object store failed (I/O, network, permissions).
    Store,
    /// Local filesystem I/O failed.
    Io,
    /// The catalog (embedded file or PostgreSQL) failed.
    Catalog,
    /// A catalog record (job, schedule, restore point) that does not exist.
    NotFound,
    /// A catalog record that already exists (e.g. a schedule name), or a state change that
    /// is not allowed now.
    Conflict,
}

/// The error type of `backup-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`ErrorKind::WrongPassword`].
    #[error("wrong password: no key in {repo} can be opened with it (check DBM_PASSWORD or --password-file)")]
    WrongPassword {
        /// Repository location.
        repo: String,
    },
    /// See [`ErrorKind::RepositoryNotFound`].
    #[error("no repository at {repo}: run `data-backup-manager --repo {repo} init` first")]
    RepositoryNotFound {
        /// Repository location.
        repo: String,
    },
    /// See [`ErrorKind::RepositoryExists`].
    #[error("a repository already exists at {repo}")]
    RepositoryExists {
        /// Repository location.
        repo: String,
    },
    /// See [`ErrorKind::SnapshotNotFound`].
    #[error("snapshot {id}: {reason}")]
    SnapshotNotFound {
        /// The id, prefix or `latest` that was asked for.
        id: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// See [`ErrorKind::Corrupt`].
    #[error("repository data is damaged: {object}: {reason}")]
    Corrupt {
        /// The object (`data/ab/…`, `index/…`, `blob …`) that failed.
        object: String,
        /// What failed (authentication, hash mismatch, decode error).
        reason: String,
    },
    /// See [`ErrorKind::Locked`].
    #[error("repository is locked: {0}")]
    Locked(String),
    /// See [`ErrorKind::InvalidInput`].
    #[error("{0}")]
    InvalidInput(String),
    /// See [`ErrorKind::Destination`].
    #[error("restore destination {path}: {reason}")]
    Destination {
        /// The destination or a path below it.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// See [`ErrorKind::Target`].
    #[error("target {target}: {reason}")]
    Target {
        /// The target spec (`files:/srv/data`).
        target: String,
        /// What failed.
        reason: String,
    },
    /// See [`ErrorKind::Store`].
    #[error("object store: {0}")]
    Store(object_store::Error),
    /// An S3 API call failed (bucket target): kind [`ErrorKind::Store`].
    #[error("S3 {resource}: {code}{}{}", if *status > 0 { format!(" (HTTP {status})") } else { String::new() }, if message.is_empty() { String::new() } else { format!(": {message}") })]
    S3 {
        /// `bucket/key` (or the bucket, or the call) involved.
        resource: String,
        /// HTTP status, 0 when no response arrived.
        status: u16,
        /// S3 error code (`NoSuchKey`, `AccessDenied`, `PreconditionFailed`, ...).
        code: String,
        /// The server's message or what failed.
        message: String,
    },
    /// See [`ErrorKind::Io`].
    #[error("{}: {error}", crate::repository::tree::display_path(path))]
    Io {
        /// The local path involved.
        path: PathBuf,
        /// The underlying error (shown in the message, not repeated as a source).
        error: std::io::Error,
    },
    /// See [`ErrorKind::Catalog`].
    #[error("catalog {what}: {reason}")]
    Catalog {
        /// The catalog location (a path, or a database URL without its password) or the
        /// record involved.
        what: String,
        /// What failed.
        reason: String,
    },
    /// See [`ErrorKind::NotFound`].
    #[error("{0} not found")]
    NotFound(String),
    /// See [`ErrorKind::Conflict`].
    #[error("{0}")]
    Conflict(String),
    /// Several independent failures (e.g. files that failed to restore).
    #[error("{count} errors, first: {first}")]
    Many {
        /// How many failures there were.
        count: usize,
        /// The first one.
        first: Box<Error>,
    },
}

impl Error {
    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::WrongPassword { .. } => ErrorKind::WrongPassword,
            Error::RepositoryNotFound { .. } => ErrorKind::RepositoryNotFound,
            Error::RepositoryExists { .. } => ErrorKind::RepositoryExists,
            Error::SnapshotNotFound { .. } => ErrorKind::SnapshotNotFound,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Locked(_) => ErrorKind::Locked,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Destination { .. } => ErrorKind::Destination,
            Error::Target { .. } => ErrorKind::Target,
            Error::Store(_) | Error::S3 { .. } => ErrorKind::Store,
            Error::Io { .. } => ErrorKind::Io,
            Error::Catalog { .. } => ErrorKind::Catalog,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Many { first, .. } => first.kind(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn catalog(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Catalog {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }
}
