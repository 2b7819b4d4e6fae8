//! `backup-core`: the engine of data-backup-manager.
//!
//! It takes snapshots of data sources into a deduplicated, compressed, encrypted repository on
//! an object store, restores them, verifies them and applies retention. The CLI, the HTTP
//! server and the Python module are thin shells over this crate.
//!
//! * [`repository`] — the format: chunker, packs, index, trees, snapshots, keys, locks.
//! * [`store`] — where objects live ([`Store`], over `object_store`).
//! * [`target`] — what is backed up ([`target::TargetSpec`], [`target::Target`]; files, and
//!   streamed sources such as dumps and bucket objects).
//! * [`engine`] — backup, restore, check/verify, forget/prune, browse (ls, diff, dump, tar).
//! * [`config`] — the config file model (`~/.vrooli/data-backup-manager/config.yaml`).
//! * [`catalog`] — job, schedule, restore-point and audit records (embedded or PostgreSQL).
//! * [`scheduler`] — cron schedules, job queue, retries, retention, restore drills.
//! * [`events`] — published events and their sinks (webhooks, `NOTIFY`, log).
//! * [`health`] — healthy/degraded/critical and the PRD's status report.
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{engine, repository::{Repository, InitOptions}, store::open_store};
//! let store = open_store("/tmp/repo", true)?;
//! let repo = Arc::new(Repository::init(store, b"secret", InitOptions::default()).await?);
//! let opts = engine::backup::BackupOptions::new(vec!["files:/etc".parse()?]);
//! let snap = engine::backup::backup(&repo, &opts, &backup_core::progress::NoProgress).await?;
//! engine::restore::restore(&repo, &snap, &engine::restore::RestoreOptions::new("/tmp/out"), &backup_core::progress::NoProgress).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod health;
pub mod progress;
pub mod repository;
pub mod s3;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod target;

pub use error::{Error, ErrorKind, Result};
pub use repository::id::Id;
pub use repository::snapshot::{BackupType, Snapshot, Summary};
pub use repository::Repository;
pub use store::Store;
