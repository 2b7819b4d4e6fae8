//! Streaming with bounded memory: the peak RSS of a backup and of a restore must not grow with
//! the size of one file.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use support::*;

/// Runs the binary against `repo` with `args` and returns (exit code, peak RSS in KiB) from
/// `wait4(2)`'s resource usage of that one child.
fn run_measured(repo: &Repo, args: &[&std::ffi::OsStr]) -> (i32, i64) {
    let log = tempdir();
    let child = repo.spawn(args, &log.path().join("stderr"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child; status and usage point to valid memory.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    std::mem::forget(child); // already reaped
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    (code, usage.ru_maxrss)
}

#[test]
fn peak_rss_does_not_grow_with_file_size() {
    let repo = Repo::init();
    let src = tempdir();
    let small = src.path().join("small");
    let big = src.path().join("big");
    mkdirs(&small);
    mkdirs(&big);
    // 16 MiB versus 2 GiB: the 2 GiB file is sparse (cheap to make) but is read in full,
    // chunked, hashed and, being zeros, deduplicated to one blob.
    std::fs::File::create(small.join("f"))
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    std::fs::File::create(big.join("f"))
        .unwrap()
        .set_len(2048 * MIB)
        .unwrap();

    let arg = |p: &Path| source_arg(p);
    let (c1, rss_small) = run_measured(&repo, &[std::ffi::OsStr::new("backup"), &arg(&small)]);
    let (c2, rss_big) = run_measured(&repo, &[std::ffi::OsStr::new("backup"), &arg(&big)]);
    assert_eq!((c1, c2), (0, 0), "backups must succeed");
    eprintln!("backup peak RSS: 16 MiB file {rss_small} KiB, 2 GiB file {rss_big} KiB");
    assert!(
        rss_big < rss_small + 64 * 1024,
        "peak RSS grew with the file size: {rss_small} KiB for 16 MiB, {rss_big} KiB for 2 GiB"
    );

    let dest = tempdir();
    let d = dest.path().join("out");
    let (c3, rss_restore) = run_measured(
        &repo,
        &[
            std::ffi::OsStr::new("restore"),
            std::ffi::OsStr::new("latest"),
            std::ffi::OsStr::new("--destination"),
            d.as_os_str(),
        ],
    );
    assert_eq!(c3, 0, "restore must succeed");
    eprintln!("restore peak RSS for the 2 GiB file: {rss_restore} KiB");
    let restored = std::fs::metadata(restored_path(&d, &big).join("f")).unwrap();
    assert_eq!(restored.len(), 2048 * MIB);
    assert!(
        rss_restore < rss_small + 64 * 1024,
        "restore peak RSS {rss_restore} KiB grew with the file size"
    );
}
