//! Progress reporting, injected by the caller (a progress bar in the CLI, nothing in tests).

/// Receives progress of long operations. All methods have no-op defaults; implementations
/// must be cheap and thread-safe (they are called from worker threads).
pub trait Progress: Send + Sync {
    /// The total amount of work is known (`bytes` of data, `items` files or packs).
    fn set_total(&self, _bytes: u64, _items: u64) {}
    /// `bytes` more bytes were processed.
    fn add_bytes(&self, _bytes: u64) {}
    /// One more item (file, pack) was processed.
    fn add_item(&self) {}
    /// A short description of the current phase.
    fn phase(&self, _name: &str) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
