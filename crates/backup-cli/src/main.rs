//! `data-backup-manager`: the command-line shell over `backup-core`.
//!
//! Parsing happens in two stages (ripgrep's pattern): clap turns argv into [`cli::Cli`], then
//! [`settings`] resolves the repository and password from flags, environment and the config
//! file. Every command builds a `backup-core` options struct, runs it, and prints either a
//! human table or `--json`. Exit codes: 0 ok, 1 error, 2 warning (e.g. a partial backup).

mod cli;
mod cmd_bucket;
mod cmd_copy;
mod cmd_pg;
mod cmd_remote;
mod cmd_schedule;
mod commands;
mod output;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tune_allocator();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        // Usage errors exit 1 (2 means "warning" here); --help and --version exit 0.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // Like other Unix tools, the commands that stream to stdout end quietly when the reader
    // goes away (`| head`). Every other command keeps SIGPIPE ignored: a socket to a store
    // that dies mid-backup must give an error and exit 1, not kill the process.
    let streams_stdout = matches!(
        &cli.command,
        cli::Command::List(_) | cli::Command::Ls(_) | cli::Command::Diff(_) | cli::Command::Dump(_)
    ) || matches!(&cli.command, cli::Command::Restore(a) if a.format.is_some());
    if streams_stdout {
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    tracing_subscriber_init(cli.global.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Repository objects are created readable by their owner only. A restore keeps the
    // user's umask: it creates the destination's own folders.
    if !matches!(cli.command, cli::Command::Restore(_)) {
        // SAFETY: umask only changes this process's file-creation mask.
        unsafe {
            libc::umask(0o077);
        }
    }
    let json = cli.global.json;
    match rt.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if json {
                let kind = e
                    .downcast_ref::<backup_core::Error>()
                    .map(|e| format!("{:?}", e.kind()));
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": kind.unwrap_or_else(|| "Error".into()), "message": format!("{e:#}")}})
                );
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn tracing_subscriber_init(verbose: bool) {
    // Warnings always reach stderr; --verbose adds progress information (DBM_LOG=debug for
    // more). Messages never contain secrets.
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBM_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if verbose { "info" } else { "warn" })
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// Keeps glibc's allocator from holding on to freed pipeline buffers, so peak RSS follows the
/// pipeline's real working set:
/// * every thread that allocates gets its own arena (up to 8 per core) and freed chunk buffers
///   stay cached in each: two arenas are enough for this workload;
/// * the mmap threshold is normally raised each time a large block is freed, after which
///   megabyte-sized chunk and pack buffers come from the heap and fragment it; a fixed 1 MiB
///   threshold returns them to the OS on free.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
