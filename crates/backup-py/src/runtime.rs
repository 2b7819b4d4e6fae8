//! The one tokio runtime of the module, and the bridge that runs engine futures on it with the
//! GIL released.
//!
//! Fork safety. After `fork()` only the forking thread exists in the child. Two things break if
//! the parent's runtime had threads at that moment: blocking on that runtime in the child hangs
//! (its workers are gone), and global state of the thread-parking library (`parking_lot`, which
//! tokio uses) still points into the dead threads' stacks, which glibc hands to the child's new
//! threads — the child then crashes or hangs as soon as it starts threads of its own. So:
//!
//! * `os.register_at_fork(before=...)` (registered at import) shuts the runtime down and joins
//!   its threads before every `os.fork()`, provided no call is running in another thread; the
//!   next call, in the parent or the child, builds a new runtime. A fork is rare and a runtime
//!   starts in about a millisecond.
//! * As a fallback (a fork that bypassed the hook, or one taken while a call was running), the
//!   runtime is stored with the pid that built it, and a process with another pid builds its
//!   own, leaking (never dropping) the parent's: dropping would wait for threads that do not
//!   exist. Forking while another thread is inside a call stays unsafe, as for any threaded
//!   library.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The runtime and the pid of the process that built it.
static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

/// How long the before-fork hook waits for the runtime's threads to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The runtime of this process (built on first use, and again after a fork). Callers hold the
/// returned `Arc` only for the duration of one call: its count tells the fork hook whether a
/// call is running.
///
/// Errors: `RuntimeError` when the runtime's threads cannot be started.
pub fn runtime() -> PyResult<Arc<tokio::runtime::Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    match slot.take() {
        Some((p, rt)) if p == pid => {
            *slot = Some((p, rt.clone()));
            return Ok(rt);
        }
        // Built by the parent before a fork the hook did not see: unusable here, never drop.
        Some((_, stale)) => std::mem::forget(stale),
        None => {}
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("data-backup-manager")
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))?,
    );
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}

/// `os.register_at_fork(before=...)` hook: shuts the runtime down (joining its threads) when no
/// call is running, so the child starts clean. Runs with the GIL held, so no other thread can
/// start a call meanwhile.
#[pyfunction]
pub fn _before_fork(py: Python<'_>) {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((pid, rt)) = slot.take() {
        if pid != std::process::id() {
            std::mem::forget(rt);
            return;
        }
        match Arc::try_unwrap(rt) {
            // Idle: no thread needs the GIL, but release it anyway while joining threads.
            Ok(rt) => py.detach(move || rt.shutdown_timeout(SHUTDOWN_WAIT)),
            // A call is running in another thread: keep the runtime (see the module docs).
            Err(rt) => *slot = Some((pid, rt)),
        }
    }
}

/// Registers [`_before_fork`] with `os.register_at_fork`.
pub fn register_fork_hook(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let hook = wrap_pyfunction!(_before_fork, m)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("before", hook)?;
    py.import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    Ok(())
}

/// Runs the future that `make` returns to completion on the runtime, with the GIL released so
/// other Python threads run meanwhile. The future is built and polled on the calling thread
/// (so it need not be `Send`); the engine's heavy work runs on the runtime's worker and
/// blocking threads.
pub fn block_on<M, F, T>(py: Python<'_>, make: M) -> PyResult<T>
where
    M: FnOnce() -> F + Send,
    F: Future<Output = T>,
    T: Send,
{
    let rt = runtime()?;
    Ok(py.detach(move || rt.block_on(make())))
}
