//! The access log: one line per proxied request (`done`), with the request
//! id, method, status, route, log-safe path, field counts and duration —
//! never a value.
//!
//! A request pays for formatting its line and a short append to a shared
//! buffer, nothing more: a writer thread writes the buffer to standard error
//! in batches (at most every [`GATHER`]), off the request path. The buffer
//! is bounded ([`MAX_BUFFERED`]); when standard error falls that far behind,
//! lines are dropped and counted (`sealgate_access_log_dropped_total`)
//! rather than blocking a request. The line is the one the log format would
//! print for an event at INFO with target `sealgate::proxy::pipeline` inside
//! a `request{request_id, method}` span, and it is written when that target
//! is enabled at INFO (`RUST_LOG`, `[log] level`).
//!
//! `sealgate serve` installs the writer ([`install`]); a process that does
//! not (a test, an embedding) gets the same fields as a `tracing` event.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::config::LogFormat;

/// The target the line is logged under (and filtered by).
const TARGET: &str = "sealgate::proxy::pipeline";
/// Bytes of lines held for the writer at most; past it lines are dropped.
pub const MAX_BUFFERED: usize = 2 << 20;
/// How long the writer lets lines gather before one write.
pub const GATHER: Duration = Duration::from_millis(20);

/// One request's access line, as fields.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a str,
    /// The status answered.
    pub status: u16,
    /// The matched route, `-` for none.
    pub route: &'a str,
    /// The route's path template, or the redacted path.
    pub path: &'a str,
    /// Values sealed.
    pub sealed: u32,
    /// Envelopes opened.
    pub opened: u32,
    /// Selected values passed as plaintext.
    pub plaintext_passed: u32,
    /// Time in sealgate and the upstream, in microseconds.
    pub micros: u64,
}

struct Shared {
    /// Lines waiting for the writer.
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer when the first line after a write arrives.
    wake: Condvar,
    /// Held while a batch is written, so batches stay in order.
    writing: Mutex<()>,
}

struct Writer {
    format: LogFormat,
    ansi: bool,
    shared: Arc<Shared>,
}

static WRITER: OnceLock<Writer> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether access lines are logged (INFO enabled for their target).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// Lines dropped because standard error fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Starts the writer thread: from now on access lines are written in
/// `format` to standard error, batched. Returns false (lines keep going
/// through `tracing`) if the thread cannot start; a second call does nothing.
pub fn install(format: LogFormat, ansi: bool) -> bool {
    if WRITER.get().is_some() {
        return true;
    }
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::with_capacity(64 << 10)),
        wake: Condvar::new(),
        writing: Mutex::new(()),
    });
    let for_thread = shared.clone();
    let started = std::thread::Builder::new()
        .name("sealgate-access-log".into())
        .spawn(move || write_batches(&for_thread));
    if started.is_err() {
        return false;
    }
    WRITER
        .set(Writer {
            format,
            ansi,
            shared,
        })
        .is_ok()
}

/// Writes whatever lines are waiting, now (at shutdown).
pub fn flush() {
    if let Some(w) = WRITER.get() {
        write_pending(&w.shared, &mut Vec::new());
    }
}

/// Logs one request's line.
pub fn write(rec: &AccessRecord<'_>) {
    let Some(w) = WRITER.get() else {
        tracing::info!(
            target: TARGET,
            request_id = %rec.request_id,
            method = %rec.method,
            status = rec.status,
            route = rec.route,
            path = %rec.path,
            sealed = rec.sealed,
            opened = rec.opened,
            plaintext_passed = rec.plaintext_passed,
            micros = rec.micros,
            "done"
        );
        return;
    };
    thread_local! {
        static LINE: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
    }
    LINE.with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Scratch { line, clock } = &mut *scratch;
        line.clear();
        let now = clock.now();
        match w.format {
            LogFormat::Json => json_line(line, now, rec),
            LogFormat::Pretty => text_line(line, now, rec, w.ansi),
        }
        push(&w.shared, line);
    });
}

/// A request thread's line buffer and timestamp cache.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    clock: SecondCache,
}

/// The wall-clock second, formatted once per second per thread
/// (`2026-01-02T03:04:05`); only the microseconds change between lines.
#[derive(Default)]
struct SecondCache {
    second: Option<u64>,
    text: Vec<u8>,
}

/// A timestamp ready to write: the formatted second and the microseconds.
#[derive(Clone, Copy)]
struct Stamp<'a> {
    second: &'a [u8],
    micros: u32,
}

impl SecondCache {
    fn now(&mut self) -> Stamp<'_> {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        if self.second != Some(secs) {
            self.text.clear();
            let t = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let _ = write!(
                self.text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            self.second = Some(secs);
        }
        Stamp {
            second: &self.text,
            micros: since.subsec_micros(),
        }
    }
}

/// Appends a line for the writer, or drops it when the buffer is full.
fn push(shared: &Shared, line: &[u8]) {
    let mut pending = shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if pending.len() + line.len() > MAX_BUFFERED {
        drop(pending);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let first = pending.is_empty();
    pending.extend_from_slice(line);
    drop(pending);
    if first {
        shared.wake.notify_one();
    }
}

/// The writer thread: waits for a line, lets more gather, writes them all.
fn write_batches(shared: &Shared) {
    let mut batch = Vec::with_capacity(64 << 10);
    loop {
        {
            let mut pending = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while pending.is_empty() {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        std::thread::sleep(GATHER);
        write_pending(shared, &mut batch);
    }
}

/// Takes the waiting lines and writes them to standard error in one write.
fn write_pending(shared: &Shared, batch: &mut Vec<u8>) {
    let _order = shared
        .writing
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    {
        let mut pending = shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *pending, batch);
    }
    if batch.is_empty() {
        return;
    }
    // standard error's own lock, held for the whole batch: other log lines
    // (written by `tracing` on other threads) fall between batches, never
    // inside a line
    let _ = std::io::stderr().lock().write_all(batch);
    batch.clear();
    if batch.capacity() > MAX_BUFFERED {
        batch.shrink_to(64 << 10);
    }
}

/// `2026-01-02T03:04:05.123456Z`, as the log formatter writes timestamps.
fn timestamp(out: &mut Vec<u8>, t: Stamp<'_>) {
    out.extend_from_slice(t.second);
    out.push(b'.');
    let mut digits = [b'0'; 6];
    let mut m = t.micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `n` in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `s` as a JSON string: copied as is when nothing in it needs escaping
/// (ids, methods, templates: nearly always), else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if crate::policy::json_plain_run(s.as_bytes()) == s.len() {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// The JSON line, field for field as `--log-format json` prints the event.
fn json_line(out: &mut Vec<u8>, now: Stamp<'_>, r: &AccessRecord<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"done\",\"status\":");
    push_u64(out, u64::from(r.status));
    out.extend_from_slice(b",\"route\":");
    json_str(out, r.route);
    out.extend_from_slice(b",\"path\":");
    json_str(out, r.path);
    out.extend_from_slice(b",\"sealed\":");
    push_u64(out, u64::from(r.sealed));
    out.extend_from_slice(b",\"opened\":");
    push_u64(out, u64::from(r.opened));
    out.extend_from_slice(b",\"plaintext_passed\":");
    push_u64(out, u64::from(r.plaintext_passed));
    out.extend_from_slice(b",\"micros\":");
    push_u64(out, r.micros);
    out.extend_from_slice(b"},\"target\":\"");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b"\",\"span\":");
    let span_at = out.len();
    out.extend_from_slice(b"{\"method\":");
    json_str(out, r.method);
    out.extend_from_slice(b",\"request_id\":");
    json_str(out, r.request_id);
    out.extend_from_slice(b",\"name\":\"request\"}");
    let span_end = out.len();
    out.extend_from_slice(b",\"spans\":[");
    out.extend_from_within(span_at..span_end);
    out.extend_from_slice(b"]}\n");
}

/// The text line, as the default log format prints the event.
fn text_line(out: &mut Vec<u8>, now: Stamp<'_>, r: &AccessRecord<'_>, ansi: bool) {
    if ansi {
        out.extend_from_slice(b"\x1b[2m");
    }
    timestamp(out, now);
    out.extend_from_slice(if ansi {
        b"\x1b[0m \x1b[32m INFO\x1b[0m "
    } else {
        b"  INFO "
    });
    let _ = write!(
        out,
        "request{{request_id={} method={}}}: {TARGET}: done status={} route={:?} path={} sealed={} opened={} plaintext_passed={} micros={}",
        r.request_id, r.method, r.status, r.route, r.path, r.sealed, r.opened, r.plaintext_passed, r.micros
    );
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> AccessRecord<'static> {
        AccessRecord {
            request_id: "rid-\"1\"",
            method: "GET",
            status: 200,
            route: "-",
            path: "/people/{id}",
            sealed: 1,
            opened: 2,
            plaintext_passed: 3,
            micros: 45,
        }
    }

    fn at() -> Stamp<'static> {
        Stamp {
            second: b"2026-01-02T03:04:05",
            micros: 123,
        }
    }

    #[test]
    fn the_cached_second_is_the_calendar_time() {
        let mut c = SecondCache::default();
        let mut out = Vec::new();
        timestamp(&mut out, c.now());
        let text = String::from_utf8(out).unwrap();
        let parsed =
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let age = time::OffsetDateTime::now_utc() - parsed;
        assert!(
            age >= time::Duration::ZERO && age < time::Duration::hours(1),
            "{text}"
        );
        assert_eq!(text.len(), "2026-01-02T03:04:05.000123Z".len(), "{text}");
        let mut n = Vec::new();
        push_u64(&mut n, 0);
        push_u64(&mut n, 18_446_744_073_709_551_615);
        assert_eq!(n, b"018446744073709551615");
    }

    #[test]
    fn the_json_line_has_the_fields_and_shape_of_the_log_formatter() {
        let mut out = Vec::new();
        json_line(&mut out, at(), &rec());
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let span =
            serde_json::json!({"method": "GET", "request_id": "rid-\"1\"", "name": "request"});
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp": "2026-01-02T03:04:05.000123Z",
                "level": "INFO",
                "fields": {
                    "message": "done", "status": 200, "route": "-", "path": "/people/{id}",
                    "sealed": 1, "opened": 2, "plaintext_passed": 3, "micros": 45
                },
                "target": "sealgate::proxy::pipeline",
                "span": span,
                "spans": [span],
            })
        );
    }

    #[test]
    fn the_text_line_reads_like_the_default_format() {
        let mut out = Vec::new();
        text_line(&mut out, at(), &rec(), false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T03:04:05.000123Z  INFO request{request_id=rid-\"1\" method=GET}: \
             sealgate::proxy::pipeline: done status=200 route=\"-\" path=/people/{id} \
             sealed=1 opened=2 plaintext_passed=3 micros=45\n"
        );
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        let shared = Shared {
            pending: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            writing: Mutex::new(()),
        };
        let line = vec![b'x'; MAX_BUFFERED / 2];
        let before = dropped();
        push(&shared, &line);
        push(&shared, &line);
        assert_eq!(dropped(), before, "two halves fit");
        push(&shared, b"one more\n");
        assert_eq!(dropped(), before + 1, "the third line is dropped");
        let held = shared.pending.lock().unwrap().len();
        assert_eq!(held, MAX_BUFFERED, "nothing past the bound is held");
    }
}
