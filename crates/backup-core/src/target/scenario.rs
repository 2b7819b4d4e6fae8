//! The `scenario:<name>` and `scenarios` targets: Vrooli scenario directories.
//!
//! A scenario is a directory `<scenarios root>/<name>` holding its files and its
//! `.vrooli/service.json` (Vrooli's service definition). It is backed up exactly like
//! `files:<dir>` (same tree, same restore), but recorded as kind `scenario` so that lists,
//! retention and the PRD's `scenario.deployed` event can tell scenarios from other files.
//!
//! The scenarios root is, in order: `$VROOLI_SCENARIOS_DIR`, `$VROOLI_ROOT/scenarios`,
//! `~/Vrooli/scenarios` (Vrooli's default checkout).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::files::{Excludes, FilesTarget};
use super::{Target, WalkEvent};
use crate::error::{Error, Result};

/// The directory holding the scenarios (see the module docs for how it is found).
pub fn scenarios_root() -> PathBuf {
    if let Some(d) = std::env::var_os("VROOLI_SCENARIOS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("VROOLI_ROOT").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("scenarios");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join("Vrooli").join("scenarios")
}

/// Validates a scenario name: one path component of letters, digits, `-`, `_` and `.`, not
/// starting with a dot (so a name can never climb out of the scenarios root).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "scenario name {name:?}: use letters, digits, '-', '_' and '.' (e.g. scenario:data-backup-manager)"
        )))
    }
}

/// The directory of scenario `name` (or the whole root for `None`). Errors:
/// [`Error::InvalidInput`] for a bad name, [`Error::Target`] when the directory is missing.
pub fn scenario_dir(name: Option<&str>) -> Result<PathBuf> {
    let root = scenarios_root();
    let dir = match name {
        Some(n) => {
            validate_name(n)?;
            root.join(n)
        }
        None => root,
    };
    if !dir.is_dir() {
        return Err(Error::Target {
            target: match name {
                Some(n) => format!("scenario:{n}"),
                None => "scenarios".into(),
            },
            reason: format!(
                "{} is not a directory (set VROOLI_SCENARIOS_DIR or VROOLI_ROOT)",
                dir.display()
            ),
        });
    }
    Ok(dir)
}

/// Scenario directories as a target of kind `scenario`.
pub struct ScenarioTarget {
    files: FilesTarget,
}

impl ScenarioTarget {
    /// A target over the given scenarios (`None`: every scenario under the root).
    pub fn new(names: &[Option<String>], excludes: Excludes) -> Result<ScenarioTarget> {
        let dirs = names
            .iter()
            .map(|n| scenario_dir(n.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScenarioTarget {
            files: FilesTarget::new(&dirs, excludes)?,
        })
    }
}

impl Target for ScenarioTarget {
    fn kind(&self) -> &'static str {
        "scenario"
    }
    fn paths(&self) -> Vec<String> {
        self.files.paths()
    }
    fn walk(&self, emit: &mut dyn FnMut(WalkEvent) -> Result<()>) -> Result<()> {
        self.files.walk(emit)
    }
    fn finish(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        Ok(BTreeMap::new())
    }
}
