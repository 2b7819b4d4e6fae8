//! The operations: backup, restore, check/verify, forget/prune, and browsing (ls, diff, dump,
//! tar export). Each takes an `*Options` struct (plain data with documented defaults) so the
//! CLI, the server and Python build the same request.

pub mod backup;
pub mod browse;
pub mod check;
pub mod copy;
pub mod forget;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod status;

/// Number of CPU cores available to this process (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
