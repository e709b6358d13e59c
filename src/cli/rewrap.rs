//! `sealgate rewrap`: re-seals every envelope of a JSON document (or of
//! each line of a JSON-lines stream) read on stdin under the primary version
//! of its key, and writes the result to stdout. Needs the data directory,
//! so the server must be stopped (the store allows one process; the lock
//! error says so). Object keys come out in sorted order.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::keys::{CacheConfig, DataKeyCache, KeyStore, RootKeySource, StoreOptions};
use crate::rewrap::{rewrap_value, RewrapCounts};

/// `sealgate rewrap` arguments.
#[derive(Debug, clap::Args)]
pub struct RewrapArgs {
    /// The data directory of the key store (the server must be stopped).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The root key file, if not the default.
    #[arg(long)]
    pub root_key_file: Option<PathBuf>,
    /// The route context the values were sealed under (e.g. `users`).
    #[arg(long)]
    pub context: String,
    /// Re-seal under this key's primary instead of each envelope's own key.
    #[arg(long)]
    pub key: Option<String>,
    /// Input is JSON lines (one document per line) rather than one document.
    #[arg(long)]
    pub lines: bool,
}

/// Runs the rewrap from `input` to `output`; returns the counts.
pub fn run_io(
    args: &RewrapArgs,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<RewrapCounts, String> {
    let root = args
        .root_key_file
        .clone()
        .map_or(RootKeySource::Auto, RootKeySource::File);
    let store = KeyStore::open(&args.data_dir, root, StoreOptions::default())
        .map_err(|e| format!("{e} (is the server running? stop it first)"))?;
    let cache = DataKeyCache::with_system_clock(Arc::new(store), CacheConfig::default());
    let mut counts = RewrapCounts::default();
    let mut one = |text: &str, out: &mut dyn Write| -> Result<(), String> {
        let mut v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("input is not JSON: {e}"))?;
        rewrap_value(
            &cache,
            args.key.as_deref(),
            &args.context,
            &mut v,
            &mut counts,
        )
        .map_err(|e| e.to_string())?;
        serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())
    };
    if args.lines {
        for line in input.lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            one(&line, output)?;
        }
    } else {
        let mut text = String::new();
        input.read_to_string(&mut text).map_err(|e| e.to_string())?;
        one(&text, output)?;
    }
    Ok(counts)
}

/// Runs `sealgate rewrap` on stdin and stdout; the counts go to stderr.
pub fn run(args: RewrapArgs) -> Result<(), String> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let counts = run_io(&args, &mut stdin.lock(), &mut stdout.lock())?;
    eprintln!(
        "rewrapped {} envelope(s); {} already under the primary version",
        counts.rewrapped, counts.current
    );
    Ok(())
}
