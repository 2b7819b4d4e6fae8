//! Child processes as stream sources (`pg_dump`, `pg_basebackup`, ...).
//!
//! [`ChildReader`] reads a child's stdout. At the end of the stream it waits for the child and
//! turns a non-zero exit status into a read error that carries the tail of the child's stderr,
//! so a dump that failed half way fails the backup instead of being stored as if complete
//! (see [`StreamSource`](super::StreamSource)).

use std::io::Read;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Bytes of stderr kept for the error message (the last ones).
const STDERR_TAIL: usize = 8 * 1024;

/// A running child whose stdout is read as a stream.
pub struct ChildReader {
    name: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
    done: bool,
}

impl ChildReader {
    /// Spawns `cmd` with stdout and stderr piped and stdin closed. `name` names the process
    /// in errors (e.g. `pg_dump of database shop`); never put secrets in it or in `cmd`'s
    /// arguments (pass them through the environment).
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> std::io::Result<ChildReader> {
        let name = name.into();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{name}: could not start: {e}")))?;
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr_pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || drain_tail(stderr_pipe, &sink));
        Ok(ChildReader {
            name,
            child,
            stdout,
            stderr,
            stderr_thread: Some(stderr_thread),
            done: false,
        })
    }

    /// Waits for the child after its stdout ended; a non-zero exit is an error naming the
    /// process and quoting its stderr.
    fn finish(&mut self) -> std::io::Result<()> {
        self.done = true;
        let status = self.child.wait()?;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        if status.success() {
            return Ok(());
        }
        let tail = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8_lossy(&tail);
        Err(std::io::Error::other(format!(
            "{} failed ({status}): {}",
            self.name,
            text.trim()
        )))
    }
}

fn drain_tail(mut pipe: ChildStderr, sink: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut v) = sink.lock() {
                    v.extend_from_slice(&buf[..n]);
                    if v.len() > STDERR_TAIL {
                        let cut = v.len() - STDERR_TAIL;
                        v.drain(..cut);
                    }
                }
            }
        }
    }
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        // A reader dropped early (the backup failed elsewhere) must not leave the child behind.
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_streams_all_bytes() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf hello"]);
        let mut r = ChildReader::spawn("printf", cmd).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn failure_at_end_is_an_error_with_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf partial; echo 'dump broke' >&2; exit 3"]);
        let mut r = ChildReader::spawn("fake dump", cmd).unwrap();
        let mut s = Vec::new();
        let e = r.read_to_end(&mut s).unwrap_err().to_string();
        assert!(e.contains("fake dump failed"), "{e}");
        assert!(e.contains("dump broke"), "{e}");
    }
}
