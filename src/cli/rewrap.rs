//! `sealgate rewrap`: re-seals every envelope of a JSON document (or of
//! each line of a JSON-lines stream) read on stdin under the primary version
//! of its key, and writes the result to stdout. Object keys come out in
//! sorted order.
//!
//! Opens the key store in the data directory; when a running server holds
//! it, sends the documents over the server's admin socket instead
//! ([`AdminRequest::Rewrap`]), so the plaintext stays in the server process
//! either way. Lines are sent in batches (at most [`BATCH_DOCUMENTS`]
//! documents or [`BATCH_BYTES`] of JSON, whichever comes first), so a stream
//! of any length is rewrapped in bounded memory. Errors read the same either
//! way; on any error the exit status is 1 and what was written to stdout
//! before it is incomplete.

use std::io::{BufRead, Write};
use std::sync::Arc;

use serde_json::Value;

use crate::cli::keys::{StoreArgs, StoreLocationArgs, Target};
use crate::keys::admin::MAX_REQUEST_BYTES;
use crate::keys::admin::{AdminClient, AdminConnection, AdminRequest, AdminResponse};
use crate::keys::{CacheConfig, DataKeyCache, KeyStore};
use crate::rewrap::{rewrap_value, RewrapCounts};

/// Most documents in one admin-socket request.
pub const BATCH_DOCUMENTS: usize = 256;
/// Most bytes of JSON in one admin-socket request, unless one document is
/// larger by itself (it then goes alone, up to [`MAX_REQUEST_BYTES`]).
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Room left in a request for everything but the documents.
const REQUEST_OVERHEAD: usize = 256;

/// `sealgate rewrap` arguments.
#[derive(Debug, clap::Args)]
pub struct RewrapArgs {
    /// Where the key store is (`--config`, `--data-dir`, `--root-key-file`,
    /// resolved as for `serve`); through the admin socket if a server holds it.
    #[command(flatten)]
    pub store: StoreLocationArgs,
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

/// Where the rewrapping happens.
enum Rewrapper<'a> {
    /// Here, with the store opened by this process.
    Local {
        cache: Box<DataKeyCache>,
        args: &'a RewrapArgs,
    },
    /// In the server, over one admin-socket connection.
    Remote {
        conn: AdminConnection,
        args: &'a RewrapArgs,
    },
}

impl<'a> Rewrapper<'a> {
    fn open(args: &'a RewrapArgs) -> Result<Self, String> {
        let location = args.store.resolve().map_err(|e| e.to_string())?;
        let store_args = StoreArgs {
            data_dir: location.data_dir,
            root_key_file: location.root_key_file,
            store_url: location.url,
            json: false,
        };
        match Target::open(&store_args).map_err(|e| e.to_string())? {
            Target::Local(store) => {
                let store: Arc<KeyStore> = Arc::from(store);
                Ok(Rewrapper::Local {
                    cache: Box::new(DataKeyCache::with_system_clock(
                        store,
                        CacheConfig::default(),
                    )),
                    args,
                })
            }
            Target::Remote(client) => Ok(Rewrapper::Remote {
                conn: connect(&client)?,
                args,
            }),
        }
    }

    /// Rewraps `docs` in place, all or nothing.
    fn rewrap(&mut self, docs: &mut Vec<Value>, counts: &mut RewrapCounts) -> Result<(), String> {
        match self {
            Rewrapper::Local { cache, args } => {
                let mut batch = RewrapCounts::default();
                for v in docs.iter_mut() {
                    rewrap_value(cache, args.key.as_deref(), &args.context, v, &mut batch)
                        .map_err(|e| e.to_string())?;
                }
                counts.rewrapped += batch.rewrapped;
                counts.current += batch.current;
                Ok(())
            }
            Rewrapper::Remote { conn, args } => {
                let expected = docs.len();
                let req = AdminRequest::Rewrap {
                    context: args.context.clone(),
                    key: args.key.clone(),
                    documents: std::mem::take(docs),
                };
                let sent = conn.send(&req);
                drop(req);
                let answer = match sent.map_err(|e| e.to_string())? {
                    AdminResponse::Ok(v) => v,
                    // the server's message is the direct path's, path included
                    AdminResponse::Error(e) => return Err(e.message),
                };
                let bad = || "bad answer from the server's admin socket".to_string();
                let n = |field: &str| answer.get(field).and_then(Value::as_u64).ok_or_else(bad);
                counts.rewrapped += n("Rewrapped")?;
                counts.current += n("Current")?;
                match answer {
                    Value::Object(mut m) => match m.remove("Documents") {
                        Some(Value::Array(out)) if out.len() == expected => *docs = out,
                        _ => return Err(bad()),
                    },
                    _ => return Err(bad()),
                }
                Ok(())
            }
        }
    }

    fn remote(&self) -> bool {
        matches!(self, Rewrapper::Remote { .. })
    }
}

fn connect(client: &AdminClient) -> Result<AdminConnection, String> {
    client.connect().map_err(|e| e.to_string())
}

fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("input is not JSON: {e}"))
}

fn too_large(bytes: usize) -> String {
    format!(
        "a document of {bytes} bytes is larger than the server's admin socket takes \
         ({MAX_REQUEST_BYTES} bytes per request); stop the server to rewrap it directly"
    )
}

fn write_all(docs: &[Value], out: &mut dyn Write) -> Result<(), String> {
    for v in docs {
        serde_json::to_writer(&mut *out, v).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the rewrap from `input` to `output`; returns the counts.
pub fn run_io(
    args: &RewrapArgs,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<RewrapCounts, String> {
    let mut rw = Rewrapper::open(args)?;
    let overhead =
        REQUEST_OVERHEAD + 2 * args.context.len() + 2 * args.key.as_ref().map_or(0, String::len);
    // the JSON size of a document, if it must fit a request
    let size = |v: &Value| -> Result<usize, String> {
        let n = serde_json::to_vec(v).map_err(|e| e.to_string())?.len();
        if n + overhead > MAX_REQUEST_BYTES {
            return Err(too_large(n));
        }
        Ok(n)
    };
    let mut counts = RewrapCounts::default();
    if !args.lines {
        let mut text = String::new();
        input.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let v = parse(&text)?;
        drop(text);
        if rw.remote() {
            size(&v)?;
        }
        let mut docs = vec![v];
        rw.rewrap(&mut docs, &mut counts)?;
        write_all(&docs, output)?;
        return Ok(counts);
    }
    let (max_docs, max_bytes) = if rw.remote() {
        (BATCH_DOCUMENTS, BATCH_BYTES)
    } else {
        (1, usize::MAX)
    };
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut flush = |rw: &mut Rewrapper<'_>, batch: &mut Vec<Value>| -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        rw.rewrap(batch, &mut counts)?;
        write_all(batch, output)?;
        batch.clear();
        Ok(())
    };
    for line in input.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let v = match parse(&line) {
            Ok(v) => v,
            Err(e) => {
                // the lines before the bad one are written, as one at a time would
                flush(&mut rw, &mut batch)?;
                return Err(e);
            }
        };
        let n = if rw.remote() { size(&v)? } else { 0 };
        if !batch.is_empty() && bytes + n > max_bytes {
            flush(&mut rw, &mut batch)?;
            bytes = 0;
        }
        bytes += n;
        batch.push(v);
        if batch.len() >= max_docs {
            flush(&mut rw, &mut batch)?;
            bytes = 0;
        }
    }
    flush(&mut rw, &mut batch)?;
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
