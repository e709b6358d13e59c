//! The audit log: one JSON line per key operation and per sealed or opened
//! batch of fields, hash-chained so that an edited, inserted or removed line
//! is detectable, and `sealgate audit verify` checks the chain.
//!
//! # Line format
//!
//! ```text
//! {"seq":7,"time":"2025-01-01T00:00:00.123Z","action":"seal_fields","request_id":"…",
//!  "caller":"127.0.0.1:51234","key_id":"…","key_version":1,"route":"users","count":4,
//!  "result":"ok","prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! `hash` is SHA-256 of the line's bytes up to (not including) `,"hash":`;
//! `prev` is the previous line's `hash` (64 zeros on the first line). An
//! edit anywhere in a line breaks its own `hash`; a removed or inserted
//! line breaks the next line's `prev`; `seq` counts up by one. A cut at the
//! end is not visible in the chain itself: a clean shutdown writes a last
//! `audit_close` record, and `verify` says whether the log ends with one.
//! The chain is not keyed: it detects accidents and clumsy edits, not an
//! attacker who rewrites every later hash (ship the log off-box for that).
//!
//! Never a plaintext, a key byte, a ciphertext or a secret: records carry
//! ids, versions, names, counts and result codes only.
//!
//! Records go through a bounded channel to a writer thread, so the request
//! path never waits on the disk. When the channel is full a record is
//! dropped and counted; the writer then writes an `audit_dropped` record
//! with the number lost, so the gap itself is in the log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::AuditSink;
use crate::envelope::{CmkRef, WrappedDek};
use crate::keys::admin::{error_code, AdminRequest};
use crate::keys::{KeyError, KeyId, KeyProvider};
use crate::metrics::Metrics;
use crate::secret::DataKey;

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where each line's own hash begins.
const HASH_MARK: &str = ",\"hash\":\"";

tokio::task_local! {
    /// The request being served on this task (set by the proxy pipeline),
    /// so key operations deep in the data-key cache can say whom they served.
    pub static REQUEST: RequestContext;
}

/// Who a key operation was for.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// The caller: the client's address (spelled out only when a record
    /// needs it, not on every request).
    pub caller: std::net::SocketAddr,
}

/// The request the current task serves, if any.
pub fn current_request() -> Option<RequestContext> {
    REQUEST.try_with(Clone::clone).ok()
}

/// One thing to record. Only ids, names, counts and codes — never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What happened (`seal_fields`, `open_fields`, `generate_data_key`,
    /// `unwrap_data_key`, `admin.<Op>`, `kms.<dialect>.<Action>`, …).
    pub action: String,
    /// The request id, when the operation served a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who asked: a client address (proxy), a credential id (KMS),
    /// `admin-socket`, `policy-reload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The client's address, where the caller is a credential (KMS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The CMK's KeyId (or the alias asked for, when it did not resolve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The CMK version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// The proxy route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// How many values (for field batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The verified mTLS client certificate's subject (reveal decisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The reveal rule that matched (`header x-role`, `source 10.0.0.0/8`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The fields a reveal decision covered (selectors, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Why a reveal decision's JWT rules did not match
    /// (`jwt_claim role: token rejected: expired`), never a token or a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ok`, or an error code.
    pub result: String,
}

impl AuditEvent {
    /// An event for `action` with `result`, other fields empty.
    pub fn new(action: impl Into<String>, result: impl Into<String>) -> Self {
        AuditEvent {
            action: action.into(),
            result: result.into(),
            ..Default::default()
        }
    }

    /// Fills request id and caller from the current request, if any.
    pub fn for_current_request(mut self) -> Self {
        if let Some(r) = current_request() {
            self.request_id = Some(r.request_id);
            self.caller = Some(r.caller.to_string());
        }
        self
    }

    /// Sets the CMK and version.
    pub fn with_cmk(mut self, cmk: &CmkRef) -> Self {
        self.key_id = Some(KeyId::from_bytes(cmk.key_id).to_string());
        self.key_version = Some(cmk.version);
        self
    }
}

/// A written line: the event with its place in the chain.
#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    time: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev: &'a str,
}

enum Msg {
    // boxed: an event is large next to `Close`, and the channel holds many
    Record(Box<AuditEvent>),
    Close(mpsc::Sender<()>),
}

/// The audit log handle: cheap to share, never blocks on the disk.
pub struct AuditLog {
    /// To the writer; `None` when auditing is off.
    tx: Option<SyncSender<Msg>>,
    /// Records dropped since the writer last noted a gap.
    dropped: Arc<AtomicU64>,
    /// Counters.
    metrics: Arc<Metrics>,
    /// The writer thread, until closed.
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

/// The line sink the writer thread owns.
enum Out {
    File(std::io::BufWriter<std::fs::File>),
    Stdout(std::io::Stdout),
}

impl Out {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Out::File(f) => {
                f.write_all(line)?;
                f.write_all(b"\n")
            }
            Out::Stdout(s) => {
                let mut l = s.lock();
                l.write_all(line)?;
                l.write_all(b"\n")
            }
        }
    }
    fn flush(&mut self, durable: bool) -> std::io::Result<()> {
        match self {
            Out::File(f) => {
                f.flush()?;
                if durable {
                    f.get_ref().sync_data()?;
                }
                Ok(())
            }
            Out::Stdout(s) => s.flush(),
        }
    }
}

/// The chain state the writer carries from line to line.
struct Chain {
    seq: u64,
    prev: String,
}

impl Chain {
    /// Builds the next line for `event` and advances the chain.
    fn next_line(&mut self, event: &AuditEvent) -> Vec<u8> {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let out = LineOut {
            seq: self.seq,
            time,
            event,
            prev: &self.prev,
        };
        let mut line = serde_json::to_vec(&out).unwrap_or_else(|_| b"{}".to_vec());
        // drop the closing brace, append the line's own hash, close again
        line.pop();
        let hash = hex::encode(Sha256::digest(&line));
        line.extend_from_slice(HASH_MARK.as_bytes());
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"\"}");
        self.seq += 1;
        self.prev = hash;
        line
    }
}

/// Reads where an existing log's chain ends: (next seq, last hash).
fn chain_tail(file: &mut std::fs::File) -> std::io::Result<(Chain, bool)> {
    const TAIL: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((
            Chain {
                seq: 0,
                prev: GENESIS.into(),
            },
            false,
        ));
    }
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let torn = buf.last() != Some(&b'\n');
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let last =
        match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => &body[i + 1..],
            None if start == 0 => body,
            None => return Err(std::io::Error::other(
                "the audit log's last line is longer than 64 KiB; it is not a sealgate audit log",
            )),
        };
    let parsed: Option<Value> = serde_json::from_slice(last).ok();
    let prev = parsed
        .as_ref()
        .and_then(|v| v.get("hash"))
        .and_then(Value::as_str)
        .map(str::to_string)
        // a torn or foreign last line: chain on its bytes; verify flags it
        .unwrap_or_else(|| hex::encode(Sha256::digest(last)));
    let seq = parsed
        .as_ref()
        .and_then(|v| v.get("seq"))
        .and_then(Value::as_u64)
        .map_or(0, |s| s + 1);
    Ok((Chain { seq, prev }, torn))
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        AuditLog {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
            metrics,
            writer: Mutex::new(None),
        }
    }

    /// Opens `sink` (a file is appended to, continuing its chain) and starts
    /// the writer thread; `queue` records may wait for it.
    pub fn open(sink: &AuditSink, queue: usize, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (out, chain) = match sink {
            AuditSink::Stdout => (
                Out::Stdout(std::io::stdout()),
                Chain {
                    seq: 0,
                    prev: GENESIS.into(),
                },
            ),
            AuditSink::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                // ids and client addresses: readable by the operator only
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)?;
                let (chain, torn) = chain_tail(&mut file)?;
                if torn {
                    file.write_all(b"\n")?;
                }
                (Out::File(std::io::BufWriter::new(file)), chain)
            }
        };
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        let m = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("sealgate-audit".into())
            .spawn(move || write_loop(rx, out, chain, d, m))?;
        let log = AuditLog {
            tx: Some(tx),
            dropped,
            metrics,
            writer: Mutex::new(Some(writer)),
        };
        log.record(AuditEvent::new("audit_open", "ok"));
        Ok(log)
    }

    /// Whether records are kept.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one record; never blocks. A full queue drops it (counted, and
    /// noted in the log as a gap).
    pub fn record(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Record(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::SeqCst);
                self.metrics.audit_record(false);
            }
        }
    }

    /// Writes an `audit_close` record, flushes (and syncs a file), and stops
    /// the writer. Blocks until done; later records are dropped.
    pub fn close(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack_tx, ack_rx) = mpsc::channel();
        if tx.send(Msg::Close(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn write_loop(
    rx: Receiver<Msg>,
    mut out: Out,
    mut chain: Chain,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) {
    let write = |out: &mut Out, chain: &mut Chain, ev: &AuditEvent| {
        let lost = dropped.swap(0, Ordering::SeqCst);
        if lost > 0 {
            let mut gap = AuditEvent::new("audit_dropped", "dropped");
            gap.count = Some(lost);
            let line = chain.next_line(&gap);
            if let Err(e) = out.write_line(&line) {
                tracing::error!(error = %e, "audit log write failed");
            }
        }
        let line = chain.next_line(ev);
        match out.write_line(&line) {
            Ok(()) => metrics.audit_record(true),
            Err(e) => tracing::error!(error = %e, "audit log write failed"),
        }
    };
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        // write everything queued, then flush once
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(ev) => write(&mut out, &mut chain, &ev),
                Msg::Close(ack) => {
                    write(&mut out, &mut chain, &AuditEvent::new("audit_close", "ok"));
                    if let Err(e) = out.flush(true) {
                        tracing::error!(error = %e, "audit log flush failed");
                    }
                    let _ = ack.send(());
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush(false) {
            tracing::error!(error = %e, "audit log flush failed");
        }
    }
    let _ = out.flush(true);
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines checked.
    pub lines: u64,
    /// The last record is `audit_close` (the writer stopped cleanly there).
    pub closed: bool,
}

/// The first line that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct VerifyError {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks every line of a log: each line's own hash, its link to the line
/// before, and the sequence numbers.
pub fn verify(mut reader: impl BufRead) -> Result<VerifyReport, VerifyError> {
    let mut prev = GENESIS.to_string();
    let mut prev_seq: Option<u64> = None;
    let mut lines = 0u64;
    let mut closed = false;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| VerifyError {
                line: lines + 1,
                reason: format!("cannot read: {e}"),
            })?;
        if n == 0 {
            break;
        }
        lines += 1;
        let bad = |reason: String| VerifyError {
            line: lines,
            reason,
        };
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Err(bad(
                "incomplete last line (no newline): a torn write or a cut".into(),
            ));
        };
        let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
        let Some(at) = text.rfind(HASH_MARK) else {
            return Err(bad("no hash field at the end of the line".into()));
        };
        let (body, tail) = text.split_at(at);
        let own = tail
            .strip_prefix(HASH_MARK)
            .and_then(|t| t.strip_suffix("\"}"))
            .filter(|h| h.len() == 64)
            .ok_or_else(|| bad("malformed hash field".into()))?;
        if hex::encode(Sha256::digest(body.as_bytes())) != own {
            return Err(bad("the line was changed (its hash does not match)".into()));
        }
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let p = v.get("prev").and_then(Value::as_str).unwrap_or("");
        if p != prev {
            return Err(bad(
                "does not follow the line before (a line was removed, inserted or changed)".into(),
            ));
        }
        let seq = v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no seq".into()))?;
        if let Some(s) = prev_seq {
            if seq != s + 1 {
                return Err(bad(format!("seq {seq} does not follow {s}")));
            }
        }
        prev_seq = Some(seq);
        closed = v.get("action").and_then(Value::as_str) == Some("audit_close");
        prev = own.to_string();
    }
    Ok(VerifyReport { lines, closed })
}

/// Verifies the log file at `path`.
pub fn verify_file(path: &Path) -> Result<VerifyReport, VerifyError> {
    let f = std::fs::File::open(path).map_err(|e| VerifyError {
        line: 0,
        reason: format!("cannot open {}: {e}", path.display()),
    })?;
    verify(std::io::BufReader::new(f))
}

/// A [`KeyProvider`] that counts and audits every call the data-key cache
/// makes (each data key generated or unwrapped), then passes it on.
pub struct AuditedProvider {
    /// The real provider.
    pub inner: Arc<dyn KeyProvider>,
    /// Where records go.
    pub audit: Arc<AuditLog>,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
}

fn result_code<T>(r: &Result<T, KeyError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => error_code(e).into(),
    }
}

impl KeyProvider for AuditedProvider {
    fn generate_data_key(&self, key: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError> {
        self.metrics.key_op("proxy", "GenerateDataKey");
        let r = self.inner.generate_data_key(key);
        let mut ev = AuditEvent::new("generate_data_key", result_code(&r)).for_current_request();
        match &r {
            Ok((cmk, _, _)) => ev = ev.with_cmk(cmk),
            Err(_) => ev.key_id = Some(key.to_string()),
        }
        self.audit.record(ev);
        r
    }

    fn unwrap_data_key(&self, cmk: &CmkRef, wrapped: &WrappedDek) -> Result<DataKey, KeyError> {
        self.metrics.key_op("proxy", "UnwrapDataKey");
        let r = self.inner.unwrap_data_key(cmk, wrapped);
        let ev = AuditEvent::new("unwrap_data_key", result_code(&r))
            .for_current_request()
            .with_cmk(cmk);
        self.audit.record(ev);
        r
    }

    fn derive_key(
        &self,
        key: &str,
        version: Option<u32>,
        label: &[u8],
    ) -> Result<(CmkRef, DataKey), KeyError> {
        self.metrics.key_op("proxy", "DeriveKey");
        let r = self.inner.derive_key(key, version, label);
        let mut ev = AuditEvent::new("derive_key", result_code(&r)).for_current_request();
        match &r {
            Ok((cmk, _)) => ev = ev.with_cmk(cmk),
            Err(_) => ev.key_id = Some(key.to_string()),
        }
        self.audit.record(ev);
        r
    }

    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    fn primary_version(&self, key_id: &[u8; 16]) -> Option<u32> {
        self.inner.primary_version(key_id)
    }

    fn key_id_of(&self, key: &str) -> Option<[u8; 16]> {
        self.inner.key_id_of(key)
    }
}

/// The audit record of one admin-socket request (key id from the request
/// or its answer; never the answer's other contents).
pub fn admin_event(req: &AdminRequest, result: &Result<Value, KeyError>) -> AuditEvent {
    use crate::keys::KeyCommand as C;
    let (action, key): (String, Option<String>) = match req {
        AdminRequest::Execute { command } => {
            let (name, key) = match command {
                C::Create(_) => ("Create", None),
                C::Enable { key } => ("Enable", Some(key)),
                C::Disable { key } => ("Disable", Some(key)),
                C::ScheduleDeletion { key, .. } => ("ScheduleDeletion", Some(key)),
                C::CancelDeletion { key } => ("CancelDeletion", Some(key)),
                C::UpdateAlias { key, .. } => ("UpdateAlias", Some(key)),
                C::UpdateDescription { key, .. } => ("UpdateDescription", Some(key)),
                C::EnableRotation { key, .. } => ("EnableRotation", Some(key)),
                C::DisableRotation { key } => ("DisableRotation", Some(key)),
                C::Rotate { key } => ("Rotate", Some(key)),
                C::SetMinDecryptionVersion { key, .. } => ("SetMinDecryptionVersion", Some(key)),
            };
            (format!("admin.{name}"), key.cloned())
        }
        AdminRequest::Describe { key } => ("admin.Describe".into(), Some(key.clone())),
        AdminRequest::List { .. } => ("admin.List".into(), None),
        AdminRequest::Export => ("admin.Export".into(), None),
        AdminRequest::Import { .. } => ("admin.Import".into(), None),
        AdminRequest::CreateCredential { .. } => ("admin.CreateCredential".into(), None),
        AdminRequest::ListCredentials => ("admin.ListCredentials".into(), None),
        AdminRequest::RevokeCredential { id } => {
            ("admin.RevokeCredential".into(), Some(id.clone()))
        }
        AdminRequest::Rewrap { key, .. } => ("admin.Rewrap".into(), key.clone()),
    };
    let mut ev = AuditEvent::new(action, result_code(result));
    ev.caller = Some("admin-socket".into());
    let answered = result.as_ref().ok();
    // a key's metadata answers with its id and primary version; a new
    // credential with its id (its secret is never read here)
    ev.key_id = answered
        .and_then(|v| v.get("KeyId").or_else(|| v.get("Id")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(key);
    ev.key_version = answered
        .and_then(|v| v.get("PrimaryVersion"))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    ev
}

/// A KMS face that counts and audits each request it answers, from the
/// face's own [`KmsOutcome`](crate::kms::KmsOutcome): the request and the
/// response pass through unread.
pub struct ObservedFace {
    /// The face.
    pub inner: Arc<dyn crate::kms::Face>,
    /// Where records go.
    pub audit: Arc<AuditLog>,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
}

/// The audit record of one KMS request.
pub fn kms_event(outcome: &crate::kms::KmsOutcome, peer: std::net::SocketAddr) -> AuditEvent {
    let mut ev = AuditEvent::new(
        format!("kms.{}.{}", outcome.dialect.name(), outcome.action),
        outcome.result(),
    );
    ev.caller = outcome.credential.clone();
    ev.peer = Some(peer.to_string());
    ev.key_id = outcome.key.map(|k| k.to_string());
    ev
}

impl crate::kms::Face for ObservedFace {
    fn handle(&self, req: crate::kms::KmsRequest) -> crate::kms::KmsReply {
        let peer = req.peer;
        let reply = self.inner.handle(req);
        let o = &reply.outcome;
        self.metrics.key_op(o.dialect.name(), o.action);
        if o.limited {
            self.metrics.rate_limited(o.dialect.name(), o.action);
        }
        self.audit.record(kms_event(o, peer));
        reply
    }
}

/// Where a config-named audit sink lives, for messages.
pub fn sink_name(sink: &AuditSink) -> String {
    match sink {
        AuditSink::Stdout => "stdout".into(),
        AuditSink::File(p) => p.display().to_string(),
    }
}

/// Default bound of the audit queue.
pub const DEFAULT_QUEUE: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    fn write_log(path: &Path, n: usize) {
        let log = AuditLog::open(
            &AuditSink::File(path.to_path_buf()),
            64,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        for i in 0..n {
            let mut ev = AuditEvent::new("seal_fields", "ok");
            ev.count = Some(i as u64);
            ev.route = Some("users".into());
            log.record(ev);
        }
        log.close();
    }

    #[test]
    fn a_written_log_verifies_and_says_it_was_closed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        write_log(&p, 10);
        let r = verify_file(&p).unwrap();
        // open + 10 + close
        assert_eq!(r.lines, 12);
        assert!(r.closed);
        let first: Value =
            serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["action"], "audit_open");
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        write_log(&p, 3);
        write_log(&p, 3);
        let r = verify_file(&p).unwrap();
        assert_eq!(r.lines, 10);
        assert!(r.closed);
    }

    #[test]
    fn edits_cuts_and_insertions_are_found_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        write_log(&p, 5);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        // one byte changed on line 3 (a count digit)
        let mut edited: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        edited[2] = edited[2].replacen("\"count\":1", "\"count\":7", 1);
        assert_ne!(edited[2], lines[2]);
        let e = verify((edited.join("\n") + "\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 3, "{e}");

        // line 4 removed: line 5 (now 4th) does not follow
        let mut cut: Vec<&str> = lines.clone();
        cut.remove(3);
        let e = verify((cut.join("\n") + "\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 4, "{e}");

        // a line duplicated
        let mut dup: Vec<&str> = lines.clone();
        dup.insert(2, lines[1]);
        let e = verify((dup.join("\n") + "\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 3, "{e}");

        // the tail cut: the chain holds, but the log no longer ends closed
        let r = verify((lines[..4].join("\n") + "\n").as_bytes()).unwrap();
        assert_eq!(r.lines, 4);
        assert!(!r.closed);
    }

    #[test]
    fn a_full_queue_drops_and_the_gap_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let metrics = Arc::new(Metrics::new());
        let log = AuditLog::open(&AuditSink::File(p.clone()), 64, metrics.clone()).unwrap();
        // as if 5 records had found the queue full
        log.dropped.fetch_add(5, Ordering::SeqCst);
        log.record(AuditEvent::new("seal_fields", "ok"));
        log.close();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("\"action\":\"audit_dropped\"") && text.contains("\"count\":5"),
            "{text}"
        );
        assert!(text.contains("\"action\":\"seal_fields\""), "{text}");
        verify_file(&p).unwrap();
    }

    /// A face that answers with a fixed body and outcome.
    struct FixedFace(&'static str, crate::kms::KmsOutcome);

    impl crate::kms::Face for FixedFace {
        fn handle(&self, _req: crate::kms::KmsRequest) -> crate::kms::KmsReply {
            crate::kms::KmsReply {
                response: http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(self.0.as_bytes()),
                )),
                outcome: self.1.clone(),
            }
        }
    }

    fn kms_request(body: &str) -> crate::kms::KmsRequest {
        crate::kms::KmsRequest {
            method: http::Method::POST,
            uri: "/".parse().unwrap(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
            peer: "127.0.0.1:5555".parse().unwrap(),
        }
    }

    #[test]
    fn kms_requests_are_counted_and_audited_from_their_outcome() {
        use crate::kms::{Dialect, Face, KmsOutcome};
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let metrics = Arc::new(Metrics::new());
        let audit =
            Arc::new(AuditLog::open(&AuditSink::File(p.clone()), 64, metrics.clone()).unwrap());
        let key = KeyId::parse("0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b").unwrap();
        let limited = ObservedFace {
            inner: Arc::new(FixedFace(
                r#"{"Response":{"Error":{"Code":"RequestLimitExceeded"}}}"#,
                KmsOutcome {
                    action: "Encrypt",
                    credential: Some("AKIDcaller".into()),
                    key: Some(key),
                    code: Some("RequestLimitExceeded"),
                    limited: true,
                    ..KmsOutcome::new(Dialect::Tencent)
                },
            )),
            audit: audit.clone(),
            metrics: metrics.clone(),
        };
        // the body is never read: a plaintext in it stays out of the log
        let resp = limited
            .handle(kms_request(r#"{"KeyId":"k-1","Plaintext":"c2VjcmV0"}"#))
            .response;
        let body = futures_body(resp.into_body());
        assert_eq!(
            body, r#"{"Response":{"Error":{"Code":"RequestLimitExceeded"}}}"#,
            "the answer passes through unchanged"
        );
        let ok = ObservedFace {
            inner: Arc::new(FixedFace(
                r#"{"plaintext":"c2VjcmV0"}"#,
                KmsOutcome {
                    action: "DecryptData",
                    credential: Some("client-1".into()),
                    key: Some(key),
                    ..KmsOutcome::new(Dialect::Infisical)
                },
            )),
            audit: audit.clone(),
            metrics: metrics.clone(),
        };
        ok.handle(kms_request("{}"));
        audit.close();
        let m = metrics.render(None);
        assert!(
            m.contains(r#"sealgate_key_operations_total{source="tencent",action="Encrypt"} 1"#),
            "{m}"
        );
        assert!(
            m.contains(r#"sealgate_rate_limited_total{source="tencent",action="Encrypt"} 1"#),
            "{m}"
        );
        assert!(
            m.contains(
                r#"sealgate_key_operations_total{source="infisical",action="DecryptData"} 1"#
            ),
            "{m}"
        );
        assert!(
            !m.contains(r#"sealgate_rate_limited_total{source="infisical""#),
            "{m}"
        );
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v["action"].as_str().unwrap().starts_with("kms."))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["action"], "kms.tencent.Encrypt");
        assert_eq!(lines[0]["result"], "RequestLimitExceeded");
        assert_eq!(lines[0]["caller"], "AKIDcaller");
        assert_eq!(lines[0]["peer"], "127.0.0.1:5555");
        assert_eq!(lines[0]["key_id"], key.to_string());
        assert_eq!(lines[1]["action"], "kms.infisical.DecryptData");
        assert_eq!(lines[1]["result"], "ok");
        assert_eq!(lines[1]["caller"], "client-1");
        assert!(!text.contains("c2VjcmV0"), "no plaintext in the audit log");
        verify_file(&p).unwrap();
        // the body helper: a Full body is ready at once
        fn futures_body(b: http_body_util::Full<bytes::Bytes>) -> String {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let bytes = rt.block_on(b.collect()).unwrap().to_bytes();
            String::from_utf8(bytes.to_vec()).unwrap()
        }
    }

    #[test]
    fn admin_events_never_carry_a_credential_secret() {
        let req = AdminRequest::CreateCredential { allowed_keys: None };
        let ans = Ok(serde_json::json!({"Id": "cred-1", "Secret": "very-secret"}));
        let ev = admin_event(&req, &ans);
        let line = serde_json::to_string(&ev).unwrap();
        assert!(!line.contains("very-secret"), "{line}");
        assert_eq!(ev.key_id.as_deref(), Some("cred-1"));
        assert_eq!(ev.action, "admin.CreateCredential");
    }
}
