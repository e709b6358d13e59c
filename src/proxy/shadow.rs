//! Shadow mode: run a policy on live traffic without changing a byte of it.
//!
//! A route with `mode = "shadow"` (or every route, with `shadow = true` in
//! the config or `--shadow`) forwards requests and responses exactly as they
//! came. Their JSON bodies (up to the body limit) are buffered, parsed and
//! measured against the route's selectors: how many fields the policy would
//! have sealed and opened, and which selectors matched nothing. That goes to
//! the metrics and to one log line per request — counts and selector texts,
//! never a value.
//!
//! With a capture file configured (`shadow_capture`), the field paths and
//! value classes ([`crate::policy::suggest::Observation`]) of sensitive-looking
//! values in every JSON body of a shadow route, and of every request no route
//! matches, are appended as JSON lines for `sealgate policy suggest`; so are
//! sensitive-looking path segments, as `{param}`s. Paths are written as
//! templates: the capture holds no value. The
//! capture is bounded (`shadow_capture_max_lines`) and may be sampled
//! (`shadow_capture_sample`).
//!
//! A body that is not JSON, is compressed, or is larger than the limit is
//! forwarded untouched and not measured (the log line says why).

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::Value;
use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use super::error::{BodyError, BodySide, ProxyError, UpstreamError};
use super::headers;
use super::{BoxError, ProxyBody, ProxyState};
use crate::config::ShadowCapture;
use crate::envelope;
use crate::policy::suggest::{
    observe_body, observe_path, template_path, Direction, Observation, ValueClass,
};
use crate::policy::{Route, RouteMode, Rules};

/// The proxy's shadow settings and its capture file.
#[derive(Debug, Default)]
pub struct Shadow {
    /// Every route runs in shadow (config `shadow = true`, `--shadow`).
    pub all: bool,
    capture: Option<Capture>,
}

#[derive(Debug)]
struct Capture {
    out: Mutex<BufWriter<File>>,
    max_lines: u64,
    sample: f64,
    requests: AtomicU64,
    lines: AtomicU64,
}

impl Shadow {
    /// Shadow mode off, no capture.
    pub fn off() -> Shadow {
        Shadow::default()
    }

    /// Shadow settings from the config; opens (appends to) the capture file.
    pub fn open(all: bool, capture: Option<&ShadowCapture>) -> std::io::Result<Shadow> {
        let capture = match capture {
            None => None,
            Some(c) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&c.file)?;
                Some(Capture {
                    out: Mutex::new(BufWriter::new(file)),
                    max_lines: c.max_lines,
                    sample: c.sample,
                    requests: AtomicU64::new(0),
                    lines: AtomicU64::new(0),
                })
            }
        };
        Ok(Shadow { all, capture })
    }

    /// True when `route` runs in shadow.
    pub fn applies(&self, route: &Route) -> bool {
        self.all || route.mode == RouteMode::Shadow
    }

    /// True when a capture file is configured.
    pub fn captures(&self) -> bool {
        self.capture.is_some()
    }

    /// Starts the report of one request: `measured` when a shadow route
    /// matched; whether its bodies are captured is decided here (sampling).
    pub fn begin(&self, measured: bool) -> ShadowReport {
        let captured = self.capture.as_ref().is_some_and(|c| {
            let n = c.requests.fetch_add(1, Ordering::Relaxed) + 1;
            // evenly spread: request n is taken when floor(n·rate) steps up
            (n as f64 * c.sample).floor() > ((n - 1) as f64 * c.sample).floor()
        });
        ShadowReport {
            measured,
            captured,
            ..ShadowReport::default()
        }
    }

    /// Appends the observations of one body; returns the lines written.
    fn write(&self, method: &Method, path: &str, direction: Direction, doc: &Value) -> u64 {
        if self.capture.is_none() {
            return 0;
        }
        self.write_found(method, path, direction, observe_body(doc))
    }

    /// Appends the sensitive-looking segments of a request path as
    /// parameters (`{email}`, …); returns the lines written.
    fn write_path(&self, method: &Method, path: &str) -> u64 {
        if self.capture.is_none() {
            return 0;
        }
        self.write_found(method, path, Direction::Request, observe_path(path))
    }

    /// Appends one line per (field, class); the path is written as a
    /// template, so the capture holds no value, not even an id.
    fn write_found(
        &self,
        method: &Method,
        path: &str,
        direction: Direction,
        found: Vec<(String, ValueClass)>,
    ) -> u64 {
        let Some(c) = &self.capture else { return 0 };
        if found.is_empty() {
            return 0;
        }
        let path = template_path(path);
        let mut out = c.out.lock().unwrap_or_else(PoisonError::into_inner);
        let mut written = 0;
        for (field, class) in found {
            if c.lines.load(Ordering::Relaxed) >= c.max_lines {
                break;
            }
            let o = Observation {
                method: method.as_str().to_string(),
                path: path.clone(),
                direction,
                field,
                class,
            };
            let Ok(line) = serde_json::to_string(&o) else {
                continue;
            };
            if writeln!(out, "{line}").is_err() {
                break;
            }
            c.lines.fetch_add(1, Ordering::Relaxed);
            written += 1;
        }
        if written > 0 && out.flush().is_err() {
            tracing::warn!("shadow capture could not be written");
        }
        written
    }
}

/// What shadow mode saw in one request. Counts and selector texts only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShadowReport {
    /// A shadow route matched: its selectors were measured.
    pub measured: bool,
    /// The request was sampled for the capture file.
    pub captured: bool,
    /// Request fields the policy would have sealed.
    pub request_seal: u32,
    /// Request fields the policy would have opened.
    pub request_open: u32,
    /// Response fields the policy would have sealed.
    pub response_seal: u32,
    /// Response fields the policy would have opened.
    pub response_open: u32,
    /// Selected fields to open that hold plaintext, not an envelope.
    pub plaintext: u32,
    /// Selectors that matched nothing in a body: (direction, selector).
    pub unmatched: Vec<(&'static str, String)>,
    /// Bodies not measured, and why (`not_json`, `too_large`, `compressed`, `invalid_json`).
    pub skipped: Vec<(&'static str, &'static str)>,
    /// Capture lines written.
    pub capture_lines: u64,
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::Request => "request",
        Direction::Response => "response",
    }
}

/// Measures one body against one direction's rules. PURE.
pub fn assess(rules: &Rules, doc: &Value, direction: Direction, report: &mut ShadowReport) {
    let dir = dir_name(direction);
    let count = |set: &crate::policy::SelectorSet, open: bool, report: &mut ShadowReport| {
        let mut paths = BTreeSet::new();
        for sel in set {
            let found = set.select_in_records(sel, doc).unwrap_or_default();
            if found.is_empty() {
                report.unmatched.push((dir, sel.as_str().to_string()));
            }
            for node in found {
                if paths.insert(node.steps.clone()) && open {
                    let sealed = node
                        .value
                        .as_str()
                        .is_some_and(envelope::looks_like_envelope);
                    if !sealed {
                        report.plaintext += 1;
                    }
                }
            }
        }
        paths.len() as u32
    };
    let seal = count(&rules.encrypt, false, report);
    let open = count(&rules.decrypt, true, report);
    match direction {
        Direction::Request => {
            report.request_seal += seal;
            report.request_open += open;
        }
        Direction::Response => {
            report.response_seal += seal;
            report.response_open += open;
        }
    }
}

/// Writes the report's log line and metrics (after the request finished).
pub fn record(state: &ProxyState, route: &str, report: &ShadowReport) {
    let m = &state.metrics;
    if report.capture_lines > 0 {
        m.shadow_captured(report.capture_lines);
    }
    if !report.measured {
        return;
    }
    m.shadow_fields(route, "request", "seal", report.request_seal);
    m.shadow_fields(route, "request", "open", report.request_open);
    m.shadow_fields(route, "response", "seal", report.response_seal);
    m.shadow_fields(route, "response", "open", report.response_open);
    for (dir, sel) in &report.unmatched {
        m.shadow_unmatched(route, dir, sel);
    }
    let unmatched: Vec<String> = report
        .unmatched
        .iter()
        .map(|(d, s)| format!("{d}:{s}"))
        .collect();
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|(d, why)| format!("{d}:{why}"))
        .collect();
    tracing::info!(
        route,
        would_seal_request = report.request_seal,
        would_open_request = report.request_open,
        would_seal_response = report.response_seal,
        would_open_response = report.response_open,
        plaintext_where_envelope_expected = report.plaintext,
        unmatched_selectors = %unmatched.join(" "),
        not_measured = %skipped.join(" "),
        "shadow"
    );
}

/// The request body of a shadow (or unmatched, captured) request: forwarded
/// byte for byte; measured and captured when it is JSON within `limit`.
#[allow(clippy::too_many_arguments)]
pub async fn request_body<B>(
    shadow: &Shadow,
    route: Option<&Route>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: B,
    limit: usize,
    report: &mut ShadowReport,
) -> Result<ProxyBody, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if report.captured {
        // once per request, body or not: `GET /people/by-ssn/…` has none
        report.capture_lines += shadow.write_path(method, path);
    }
    let media = headers::media_type(headers);
    let json = match route {
        Some(r) => r.accepts_content_type(media.as_deref()),
        None => headers::is_json(media.as_deref()),
    };
    let wanted = report.captured || report.measured;
    if !json || !wanted || declared_len(headers).is_some_and(|n| n > limit as u64) {
        if report.measured && declared_len(headers) != Some(0) {
            report
                .skipped
                .push(("request", if json { "too_large" } else { "not_json" }));
        }
        return Ok(body.map_err(Into::into).boxed());
    }
    let buffered = buffer_prefix(body, limit)
        .await
        .map_err(|_| ProxyError::body(BodySide::Request, BodyError::ReadFailed))?;
    Ok(measure(
        shadow,
        route,
        method,
        path,
        Direction::Request,
        buffered,
        report,
    ))
}

/// The response body of a shadow (or captured) request: forwarded byte for
/// byte; measured and captured when it is uncompressed JSON within `limit`.
#[allow(clippy::too_many_arguments)]
pub async fn response_body<B>(
    state: &ProxyState,
    route: Option<&Route>,
    method: &Method,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: B,
    limit: usize,
    report: &mut ShadowReport,
) -> Result<ProxyBody, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let no_body = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let media = headers::media_type(headers);
    let json = match route {
        Some(r) => r.accepts_content_type(media.as_deref()),
        None => headers::is_json(media.as_deref()),
    };
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let too_large = declared_len(headers).is_some_and(|n| n > limit as u64);
    let wanted = report.captured || report.measured;
    if no_body || !json || encoded || too_large || !wanted {
        if report.measured && !no_body && declared_len(headers) != Some(0) {
            let why = if !json {
                "not_json"
            } else if encoded {
                "compressed"
            } else {
                "too_large"
            };
            report.skipped.push(("response", why));
        }
        return Ok(body.map_err(Into::into).boxed());
    }
    let buffered = tokio::time::timeout(state.upstream.timeout(), buffer_prefix(body, limit))
        .await
        .map_err(|_| ProxyError::Upstream(UpstreamError::BodyTimeout))?
        .map_err(|_| ProxyError::body(BodySide::Response, BodyError::ReadFailed))?;
    Ok(measure(
        &state.shadow,
        route,
        method,
        path,
        Direction::Response,
        buffered,
        report,
    ))
}

fn declared_len(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Measures a buffered body (when whole) and gives back a body with the same bytes.
fn measure<B>(
    shadow: &Shadow,
    route: Option<&Route>,
    method: &Method,
    path: &str,
    direction: Direction,
    buffered: Buffered<B>,
    report: &mut ShadowReport,
) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let dir = dir_name(direction);
    if buffered.rest.is_some() {
        if report.measured {
            report.skipped.push((dir, "too_large"));
        }
        return buffered.into_body();
    }
    if !buffered.data.is_empty() {
        match serde_json::from_slice::<Value>(&buffered.data) {
            Ok(doc) => {
                if let (Some(r), true) = (route, report.measured) {
                    let rules = match direction {
                        Direction::Request => &r.request,
                        Direction::Response => &r.response,
                    };
                    assess(rules, &doc, direction, report);
                }
                if report.captured {
                    report.capture_lines += shadow.write(method, path, direction, &doc);
                }
            }
            Err(_) if report.measured => report.skipped.push((dir, "invalid_json")),
            Err(_) => {}
        }
    }
    buffered.into_body()
}

/// A body read up to a limit: the frames read, their data joined, and the
/// unread rest when the limit was reached first.
struct Buffered<B> {
    frames: VecDeque<Frame<Bytes>>,
    data: Bytes,
    rest: Option<B>,
}

impl<B> Buffered<B>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// The same bytes, as a body to forward.
    fn into_body(self) -> ProxyBody {
        if self.rest.is_none() && self.frames.iter().all(Frame::is_data) {
            return Full::new(self.data).map_err(|e| match e {}).boxed();
        }
        Replay {
            frames: self.frames,
            rest: self.rest,
        }
        .boxed()
    }
}

/// Reads `body` until it ends or more than `limit` bytes have been read.
async fn buffer_prefix<B>(mut body: B, limit: usize) -> Result<Buffered<B>, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut frames = VecDeque::new();
    let mut data = BytesMut::new();
    loop {
        if data.len() > limit {
            return Ok(Buffered {
                frames,
                data: data.freeze(),
                rest: Some(body),
            });
        }
        match body.frame().await {
            None => {
                return Ok(Buffered {
                    frames,
                    data: data.freeze(),
                    rest: None,
                })
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    data.extend_from_slice(d);
                }
                frames.push_back(f);
            }
        }
    }
}

/// Frames already read, then the rest of the body.
struct Replay<B> {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<B>,
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        match self.rest.as_mut() {
            None => Poll::Ready(None),
            Some(rest) => Pin::new(rest).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(r) => {
                let h = r.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + buffered);
                if let Some(u) = h.upper() {
                    out.set_upper(u + buffered);
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;
    use serde_json::json;

    fn route(text: &str) -> Route {
        let set = PolicySet::from_sources(&[("t.toml".into(), text.into())]).unwrap();
        set.routes()[0].clone()
    }

    #[test]
    fn assess_counts_would_be_fields_and_unmatched_selectors() {
        let r = route(
            "[[route]]\nname = \"u\"\npath = \"/u\"\nkey = \"k\"\nmode = \"shadow\"\n\
             request.encrypt = [\"$.ssn\", \"$.cards[*].number\", \"$.nope\"]\n\
             response.decrypt = [\"$.ssn\", \"$.email\"]\n",
        );
        assert_eq!(r.mode, RouteMode::Shadow);
        let mut rep = ShadowReport {
            measured: true,
            ..Default::default()
        };
        let body = json!({"ssn":"123-45-6789","cards":[{"number":"4111"},{"number":"5500"}]});
        assess(&r.request, &body, Direction::Request, &mut rep);
        assert_eq!(rep.request_seal, 3);
        assert_eq!(rep.unmatched, vec![("request", "$.nope".to_string())]);
        let resp = json!({"ssn":"sg1.AAAA","email":"a@b.co"});
        assess(&r.response, &resp, Direction::Response, &mut rep);
        assert_eq!(rep.response_open, 2);
        assert_eq!(
            rep.plaintext, 1,
            "the e-mail is plaintext, the ssn an envelope"
        );
    }

    #[test]
    fn route_modes_are_validated() {
        let bad = |extra: &str| {
            let text = format!(
                "[[route]]\nname = \"m\"\npath = \"/m\"\nkey = \"k\"\nmode = \"migrate\"\n{extra}"
            );
            PolicySet::from_sources(&[("t.toml".into(), text)])
                .err()
                .map(|e| e.to_string())
        };
        let e = bad("request.encrypt = [\"$.a\"]\non_plaintext = \"refuse\"\n").unwrap();
        assert!(e.contains("on_plaintext"), "{e}");
        let e = bad("").unwrap();
        assert!(e.contains("migrate mode"), "{e}");
        assert_eq!(bad("request.encrypt = [\"$.a\"]\n"), None);
        let e = PolicySet::from_sources(&[(
            "t.toml".into(),
            "[[route]]\nname = \"m\"\npath = \"/m\"\nkey = \"k\"\nmode = \"dry-run\"\n".into(),
        )])
        .unwrap_err()
        .to_string();
        assert!(e.contains("mode"), "{e}");
    }

    #[test]
    fn sampling_takes_an_even_share_and_capture_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cap.jsonl");
        let s = Shadow::open(
            true,
            Some(&ShadowCapture {
                file: file.clone(),
                max_lines: 3,
                sample: 0.25,
            }),
        )
        .unwrap();
        let taken = (0..100).filter(|_| s.begin(true).captured).count();
        assert_eq!(taken, 25);
        let doc = json!({"email":"ann@example.com","ssn":"123-45-6789"});
        let m = Method::POST;
        assert_eq!(s.write(&m, "/users", Direction::Request, &doc), 2);
        assert_eq!(s.write(&m, "/users", Direction::Request, &doc), 1);
        assert_eq!(s.write(&m, "/users", Direction::Request, &doc), 0);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("ann@example.com") && !text.contains("123-45"));
        let o: Observation = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(o.path, "/users");
    }

    #[test]
    fn the_capture_holds_path_templates_and_no_segment_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cap.jsonl");
        let s = Shadow::open(
            true,
            Some(&ShadowCapture {
                file: file.clone(),
                max_lines: 100,
                sample: 1.0,
            }),
        )
        .unwrap();
        let m = Method::GET;
        assert_eq!(s.write_path(&m, "/people/by-ssn/123-45-6789"), 1);
        assert_eq!(s.write_path(&m, "/orders/42"), 0, "an id is no finding");
        let doc = json!({"email":"ann@example.com"});
        let path = "/users/ann%40example.com/orders/4242";
        assert_eq!(s.write(&m, path, Direction::Response, &doc), 1);
        let text = std::fs::read_to_string(&file).unwrap();
        for v in ["123-45", "6789", "ann", "example.com", "4242"] {
            assert!(!text.contains(v), "{v} in the capture: {text}");
        }
        let lines: Vec<Observation> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0].path, "/people/by-ssn/{national_id}");
        assert_eq!(lines[0].field, "{national_id}");
        assert_eq!(lines[0].class, ValueClass::NationalId);
        assert_eq!(lines[1].path, "/users/{email}/orders/{id}");
    }

    /// A body that yields the given chunks one by one.
    pub(crate) struct Chunks(pub(crate) VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn an_overlong_body_is_replayed_byte_for_byte() {
        let body = Chunks((0..10).map(|i| Bytes::from(format!("chunk{i};"))).collect());
        let b = buffer_prefix(body, 15).await.unwrap();
        assert!(b.rest.is_some());
        let all = b.into_body().collect().await.unwrap().to_bytes();
        let want: String = (0..10).map(|i| format!("chunk{i};")).collect();
        assert_eq!(all, want.as_bytes());
        let whole = Chunks((0..3).map(|i| Bytes::from(format!("c{i}"))).collect());
        let b = buffer_prefix(whole, 100).await.unwrap();
        assert!(b.rest.is_none());
        assert_eq!(&b.data[..], b"c0c1c2");
    }
}
