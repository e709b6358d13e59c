//! Reading a policy directory: every `*.toml` file in it, sorted by name.
//! The only part of `policy` that touches the filesystem.

use std::path::Path;

use super::error::{PolicyError, Problem};
use super::PolicySet;

/// Loads every `*.toml` file in `dir` (not recursing), in file-name order.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Problem::file(&shown, format!("cannot read policy directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| Problem::file(&shown, format!("cannot list policy directory: {e}")))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut sources = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((name, text)),
            Err(e) => problems.push(Problem::file(&name, format!("cannot read: {e}"))),
        }
    }
    if !problems.is_empty() {
        return Err(PolicyError { problems });
    }
    PolicySet::from_sources(&sources)
}
