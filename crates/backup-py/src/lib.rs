//! `data_backup_manager`: the Python module of data-backup-manager (pyo3, abi3 for CPython
//! 3.9+, built by maturin). A thin layer over `backup-core`: every method builds the engine's
//! options struct, runs the operation on one tokio runtime (rebuilt in a child after `fork`)
//! with the GIL released, and converts the result; engine errors become exceptions rooted at
//! `BackupError`. User documentation: `docs/python.md`; typed stubs:
//! `python/data_backup_manager/_native.pyi`.

mod args;
mod catalog;
mod errors;
mod progress;
mod repository;
mod runtime;
mod types;

use pyo3::prelude::*;

/// The compiled part of `data_backup_manager` (import the package, not this module).
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    runtime::register_fork_hook(m)?;
    m.add_class::<repository::Repository>()?;
    m.add_class::<types::Snapshot>()?;
    m.add_class::<types::Summary>()?;
    m.add_class::<types::RestoreResult>()?;
    m.add_class::<types::CheckReport>()?;
    m.add_class::<types::Problem>()?;
    m.add_class::<types::ForgetResult>()?;
    m.add_class::<types::Decision>()?;
    m.add_class::<types::PruneReport>()?;
    m.add_class::<types::ProgressInfo>()?;
    m.add_class::<catalog::Catalog>()?;
    m.add_class::<catalog::RestorePoint>()?;
    Ok(())
}
