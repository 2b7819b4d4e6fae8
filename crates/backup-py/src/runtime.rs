//! The one tokio runtime of the module, and the bridge that runs engine futures on it with the
//! GIL released.
//!
//! Fork safety: after `os.fork()` only the forking thread exists in the child, so the parent's
//! runtime (its worker and blocking-pool threads) is unusable there; blocking on it would hang
//! forever. The runtime is therefore stored with the pid of the process that built it, and a
//! process whose pid differs (a child after fork) builds its own on first use. The parent's
//! runtime is leaked in the child, never dropped: dropping would wait for threads that do not
//! exist. The slot is a lock-free pointer, so a fork that happens while another thread is inside
//! `runtime()` cannot leave a held mutex behind in the child.

use std::future::Future;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

struct Slot {
    pid: u32,
    rt: tokio::runtime::Runtime,
}

static RUNTIME: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// The runtime of this process (built on first use, and again in a child after fork).
///
/// Errors: `RuntimeError` when the runtime's threads cannot be started.
pub fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    let pid = std::process::id();
    loop {
        let cur = RUNTIME.load(Ordering::Acquire);
        // SAFETY: a non-null pointer in RUNTIME comes from Box::into_raw below and is never
        // freed (slots are leaked on purpose), so it stays valid for the process lifetime.
        if let Some(slot) = unsafe { cur.as_ref() } {
            if slot.pid == pid {
                return Ok(&slot.rt);
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("data-backup-manager")
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))?;
        let new = Box::into_raw(Box::new(Slot { pid, rt }));
        match RUNTIME.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
            // The previous slot (if any) belongs to the parent process: leaked, see above.
            // SAFETY: `new` was just stored and is never freed.
            Ok(_) => return Ok(unsafe { &(*new).rt }),
            Err(_) => {
                // Another thread of this process installed one first: use that one. Our fresh
                // runtime has no tasks; dropping it joins its idle threads.
                // SAFETY: `new` came from Box::into_raw and was never shared.
                drop(unsafe { Box::from_raw(new) });
            }
        }
    }
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
