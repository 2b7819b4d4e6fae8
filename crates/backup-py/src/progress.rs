//! The optional `progress=` callback: the engine reports through
//! [`backup_core::progress::Progress`] from its worker threads; this sink keeps counters in
//! atomics and calls the Python callable with the GIL re-acquired, at most once per interval
//! (plus once on each phase change and once at the end).
//!
//! The engine has no cancellation point, so an exception raised by the callback cannot stop the
//! operation cleanly (a dropped backup would leave its lock behind). It is reported through
//! `sys.unraisablehook`, further calls are skipped, and the operation runs to its end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backup_core::progress::Progress;
use pyo3::prelude::*;

use crate::types::ProgressInfo;

/// Default minimum time between two calls of the callback.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

/// Progress sink calling a Python callable.
pub struct CallbackProgress {
    callback: Py<PyAny>,
    interval_ms: u64,
    start: Instant,
    /// Milliseconds since `start` of the last call (u64::MAX: never called).
    last_ms: AtomicU64,
    bytes_total: AtomicU64,
    items_total: AtomicU64,
    bytes_done: AtomicU64,
    items_done: AtomicU64,
    phase: Mutex<String>,
    failed: AtomicBool,
}

impl CallbackProgress {
    /// A sink for `callback`, called at most every `interval`.
    pub fn new(callback: Py<PyAny>, phase: &str, interval: Duration) -> Self {
        CallbackProgress {
            callback,
            interval_ms: interval.as_millis() as u64,
            start: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            bytes_total: AtomicU64::new(0),
            items_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            items_done: AtomicU64::new(0),
            phase: Mutex::new(phase.to_string()),
            failed: AtomicBool::new(false),
        }
    }

    fn snapshot(&self) -> ProgressInfo {
        ProgressInfo {
            phase: self
                .phase
                .lock()
                .map(|p| p.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            items_done: self.items_done.load(Ordering::Relaxed),
            items_total: self.items_total.load(Ordering::Relaxed),
            elapsed_secs: self.start.elapsed().as_secs_f64(),
        }
    }

    /// Calls the callback if the interval has passed (or `force`), from any thread.
    fn report(&self, force: bool) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if !force && last != u64::MAX && now.saturating_sub(last) < self.interval_ms {
            return;
        }
        // One reporter per interval: the thread that wins the exchange calls, others skip.
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
            && !force
        {
            return;
        }
        let info = self.snapshot();
        Python::attach(|py| {
            if let Err(e) = self.callback.call1(py, (info,)) {
                self.failed.store(true, Ordering::Relaxed);
                e.write_unraisable(py, Some(self.callback.bind(py)));
            }
        });
    }

    /// The last call, with `phase` set to `"done"`.
    pub fn finish(&self) {
        if let Ok(mut p) = self.phase.lock() {
            *p = "done".into();
        }
        self.report(true);
    }
}

impl Progress for CallbackProgress {
    fn set_total(&self, bytes: u64, items: u64) {
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.items_total.store(items, Ordering::Relaxed);
        self.report(false);
    }

    fn add_bytes(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }

    fn add_item(&self) {
        self.items_done.fetch_add(1, Ordering::Relaxed);
        self.report(false);
    }

    fn phase(&self, name: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = name.to_string();
        }
        self.report(true);
    }
}
