//! Reading a policy directory: every `*.toml` file in it, sorted by name;
//! and the key files a policy names (`[route.reveal.jwt]`), relative to the
//! policy file's directory. The only part of `policy` that touches the
//! filesystem.

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

/// Longest key file read (a JWKS with many keys is still far smaller).
const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads a key file named in policy file `policy_file`: a relative `path` is
/// resolved against the policy file's directory, an absolute one is used as is.
pub(super) fn read_key_file(policy_file: &str, path: &str) -> Result<Vec<u8>, String> {
    if path.trim().is_empty() {
        return Err("the path is empty".into());
    }
    let base = Path::new(policy_file).parent().unwrap_or(Path::new(""));
    let full = base.join(path);
    let shown = full.display();
    let meta = std::fs::metadata(&full).map_err(|e| format!("cannot read '{shown}': {e}"))?;
    if !meta.is_file() {
        return Err(format!("'{shown}' is not a file"));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(format!(
            "'{shown}' is larger than {MAX_KEY_FILE} bytes: not a key file"
        ));
    }
    std::fs::read(&full).map_err(|e| format!("cannot read '{shown}': {e}"))
}
