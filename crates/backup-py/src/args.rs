//! Python arguments to engine options: paths, passwords, targets, times. Argument errors raise
//! `InvalidArgument` (a `BackupError`) naming the argument.

use std::path::{Path, PathBuf};

use backup_core::target::TargetSpec;
use chrono::{DateTime, TimeZone, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors::{to_py, FilesystemError, InvalidArgument};

/// A repository location: `str` or `os.PathLike`, returned as the engine's URL string.
pub fn location(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.to_string());
    }
    let p: PathBuf = obj.extract()?;
    p.into_os_string().into_string().map_err(|p| {
        InvalidArgument::new_err(format!(
            "repository location {}: not valid UTF-8",
            Path::new(&p).display()
        ))
    })
}

/// The repository password from `password` (str or bytes), else `password_file` (its first
/// line), else the environment (`DBM_PASSWORD_FILE`, then `DBM_PASSWORD`), as the CLI does.
/// The password itself never appears in an error message.
pub fn password(
    password: Option<&Bound<'_, PyAny>>,
    password_file: Option<PathBuf>,
) -> PyResult<Vec<u8>> {
    let pw = match (password, password_file) {
        (Some(_), Some(_)) => {
            return Err(InvalidArgument::new_err(
                "give password= or password_file=, not both",
            ))
        }
        (Some(p), None) => {
            if let Ok(b) = p.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else if let Ok(s) = p.cast::<PyString>() {
                s.to_cow()?.as_bytes().to_vec()
            } else {
                return Err(InvalidArgument::new_err("password must be str or bytes"));
            }
        }
        (None, Some(f)) => read_password_file(&f)?,
        (None, None) => {
            if let Some(f) = std::env::var_os("DBM_PASSWORD_FILE").filter(|f| !f.is_empty()) {
                read_password_file(Path::new(&f))?
            } else if let Some(p) = std::env::var_os("DBM_PASSWORD").filter(|p| !p.is_empty()) {
                std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()
            } else {
                return Err(InvalidArgument::new_err(
                    "no password: pass password= or password_file= (or set DBM_PASSWORD_FILE or DBM_PASSWORD)",
                ));
            }
        }
    };
    if pw.is_empty() {
        return Err(InvalidArgument::new_err("the password is empty"));
    }
    Ok(pw)
}

/// First line of a password file (a trailing `\r` removed), like the CLI's `--password-file`.
fn read_password_file(path: &Path) -> PyResult<Vec<u8>> {
    let text = std::fs::read(path)
        .map_err(|e| FilesystemError::new_err(format!("password file {}: {e}", path.display())))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(InvalidArgument::new_err(format!(
            "password file {} is empty",
            path.display()
        )));
    }
    Ok(line.to_vec())
}

/// One target: a `str` spec (`"files:/srv/app"`), or a path (`str` without a `kind:` prefix,
/// or `os.PathLike`), which means `files:<path>`. Relative paths are made absolute against the
/// current directory.
pub fn target(obj: &Bound<'_, PyAny>) -> PyResult<TargetSpec> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return if has_kind_prefix(&s) {
            s.parse().map_err(to_py)
        } else {
            files_spec(Path::new(&*s))
        };
    }
    let p: PathBuf = obj.extract().map_err(|_| {
        InvalidArgument::new_err(format!(
            "target {}: expected a str spec such as 'files:/srv/app' or a path",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    files_spec(&p)
}

fn files_spec(p: &Path) -> PyResult<TargetSpec> {
    if p.as_os_str().is_empty() {
        return Err(InvalidArgument::new_err("empty target path"));
    }
    Ok(TargetSpec::Files(
        backup_core::target::files::absolute(p).map_err(to_py)?,
    ))
}

/// `kind:` at the start, with a lowercase kind (`files:`, `postgres:`), as opposed to a path.
fn has_kind_prefix(s: &str) -> bool {
    match s.split_once(':') {
        Some((k, _)) => !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase()),
        None => matches!(s, "postgres" | "minio" | "scenario" | "scenarios"),
    }
}

/// Targets: one target or an iterable of them.
pub fn targets(obj: &Bound<'_, PyAny>) -> PyResult<Vec<TargetSpec>> {
    if obj.cast::<PyString>().is_ok() || obj.hasattr("__fspath__")? {
        return Ok(vec![target(obj)?]);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(target(&item?)?);
    }
    if out.is_empty() {
        return Err(InvalidArgument::new_err(
            "no backup targets given (e.g. ['files:/srv/app'] or a path)",
        ));
    }
    Ok(out)
}

/// Strings: one `str` or an iterable of them (`tags`, `exclude`).
pub fn strings(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(vec![s.to_cow()?.to_string()]);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        out.push(
            item.cast::<PyString>()
                .map_err(|_| InvalidArgument::new_err(format!("{what}: every item must be a str")))?
                .to_cow()?
                .to_string(),
        );
    }
    Ok(out)
}

/// Paths: one path or an iterable of them (`include`).
pub fn paths(obj: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if obj.cast::<PyString>().is_ok() || obj.hasattr("__fspath__")? {
        return Ok(vec![obj.extract()?]);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(item?.extract()?);
    }
    Ok(out)
}

/// A point in time: an aware `datetime`, a `date` (midnight UTC), or an ISO 8601 string
/// (`"2026-12-01"`, `"2026-12-01T10:00:00+01:00"`). Naive datetimes are refused: every time
/// is explicit (ARCHITECTURE, principle 8).
pub fn time(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<DateTime<Utc>> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
            return Ok(t.with_timezone(&Utc));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            return Ok(Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)));
        }
        return Err(InvalidArgument::new_err(format!(
            "{what} {s:?}: expected YYYY-MM-DD or an RFC 3339 time with offset"
        )));
    }
    if obj.hasattr("utcoffset")? && obj.hasattr("timestamp")? {
        if obj.call_method0("utcoffset")?.is_none() {
            return Err(InvalidArgument::new_err(format!(
                "{what}: a naive datetime; give one with tzinfo (e.g. datetime.now(timezone.utc))"
            )));
        }
        let ts: f64 = obj.call_method0("timestamp")?.extract()?;
        let micros = (ts * 1e6).round() as i64;
        return DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| InvalidArgument::new_err(format!("{what}: out of range")));
    }
    if obj.hasattr("toordinal")? {
        let (y, m, d): (i32, u32, u32) = (
            obj.getattr("year")?.extract()?,
            obj.getattr("month")?.extract()?,
            obj.getattr("day")?.extract()?,
        );
        return chrono::NaiveDate::from_ymd_opt(y, m, d)
            .map(|d| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)))
            .ok_or_else(|| InvalidArgument::new_err(format!("{what}: invalid date")));
    }
    Err(InvalidArgument::new_err(format!(
        "{what}: expected a datetime with tzinfo, a date or an ISO 8601 str"
    )))
}
