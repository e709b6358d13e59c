//! The phases of one request, named and run in order over one [`RequestCtx`].
//!
//! [`handle`] reads as the list: `route` (host, path, match, mode, rate
//! limit) → `request_headers` (reveal decision) → `request_body` (seal
//! selected fields, or measure in shadow) → `upstream` (target, hop-by-hop,
//! `X-Forwarded-*`, send) → `response_headers` (hop-by-hop, what the body
//! needs) → `response_body` (open / reveal / seal, or stream open-all, or
//! measure in shadow) → `logging` (access line, metrics, audit).
//! Modes plug into phases: shadow measures in the body phases, open-all and
//! reveal act in the response body phase; none branches through the others.
//! A phase fails with a typed [`ProxyError`]; [`ProxyError::answer`] alone
//! turns it into a status and a code.

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counts::{FieldCounts, FieldOp};
use super::error::{BodyError, BodySide, ClientError, ProxyError, UpstreamError};
use super::fields;
use super::headers::{self, REQUEST_ID};
use super::reveal::RevealDecision;
use super::shadow::ShadowReport;
use super::upstream::OwnedConn;
use super::{ActivePolicies, ProxyBody, ProxyState};
use crate::access_log::AccessRecord;
use crate::audit::{AuditEvent, RequestContext, REQUEST};
use crate::policy::{OnNonJson, Route, RouteMatch};

/// What one request carries from phase to phase: who and when, what was
/// decided, and what happened. Phases write here instead of into
/// out-parameters; `logging` reads it.
pub struct RequestCtx {
    /// The request id (the client's, if sane, else a new one).
    pub request_id: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The method the client sent.
    pub method: Method,
    /// When the request arrived.
    pub started: Instant,
    /// The matched route's name.
    pub route: Option<String>,
    /// The client's target, kept only when the access log is on (a shared
    /// handle, not a copy): the log line redacts its path when no route matched.
    pub raw_uri: Option<http::Uri>,
    /// Fields sealed, opened, passed and failed.
    pub counts: FieldCounts,
    /// Time waiting for the upstream (head, plus the body when rewritten).
    pub upstream_time: Option<Duration>,
    /// What shadow mode saw, when the request ran in shadow or was captured.
    pub shadow: Option<ShadowReport>,
    /// The path shadow mode records (only in shadow).
    pub shadow_path: String,
    /// Who was let see the route's reveal fields, with the count, for the audit.
    pub revealed: Option<RevealDecision>,
}

impl RequestCtx {
    fn new(req: &Request<Incoming>, peer: SocketAddr, log: bool) -> Self {
        Self {
            request_id: headers::request_id(req.headers()),
            peer,
            method: req.method().clone(),
            started: Instant::now(),
            route: None,
            // no raw path unless a line is logged; the raw path may hold a
            // value the route seals (`/people/by-ssn/{ssn}`): `logging` uses
            // the route's template or a redacted path
            raw_uri: log.then(|| req.uri().clone()),
            counts: FieldCounts::default(),
            upstream_time: None,
            shadow: None,
            shadow_path: String::new(),
            revealed: None,
        }
    }
}

/// How a matched (or unmatched) request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fields are sealed and opened as the route says (or no route: passed).
    Enforce,
    /// Passed unchanged and measured (a shadow route) or captured (unmatched).
    Shadow,
}

/// What the route phase decided, borrowed from the policy set in force.
struct Routing<'p> {
    matched: Option<RouteMatch<'p>>,
    mode: Mode,
    /// The route's AAD context, with path parameters substituted.
    context: Option<String>,
    /// A route that seals request bodies on this path for another method.
    sibling: Option<&'p Route>,
    /// The authority to report as `X-Forwarded-Host`, when it is not `Host`.
    forwarded_host: Option<String>,
    /// Whether the caller sees the route's reveal fields (request headers phase).
    reveal: Option<RevealDecision>,
}

impl<'p> Routing<'p> {
    /// The route whose fields are sealed and opened, if any.
    fn enforced(&self) -> Option<&RouteMatch<'p>> {
        self.matched.as_ref().filter(|_| self.mode == Mode::Enforce)
    }
    /// The shadow route measured, if any.
    fn shadow_route(&self) -> Option<&'p Route> {
        self.matched
            .as_ref()
            .filter(|_| self.mode == Mode::Shadow)
            .map(|m| m.route)
    }
    fn context(&self) -> &str {
        self.context.as_deref().unwrap_or("")
    }
    /// Whether the response is rewritten (opened, sealed or revealed).
    fn rewrites_response(&self) -> bool {
        self.enforced()
            .is_some_and(|m| m.route.open_all || !m.route.response.is_empty())
    }
}

/// Handles one request end to end; never fails (errors become responses).
pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    owned: Arc<OwnedConn>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let log = crate::access_log::enabled();
    let mut ctx = RequestCtx::new(&req, peer, log);
    // key operations deep in the data-key cache audit whom they served
    let who = RequestContext {
        request_id: ctx.request_id.clone(),
        caller: peer,
    };
    REQUEST
        .scope(who, async move {
            let policies = state.policies();
            let resp = match run(&state, &policies, &mut ctx, &owned, req).await {
                Ok(r) => r,
                Err(e) => refused(&ctx, e),
            };
            logging(&state, &policies, &ctx, resp.status(), log);
            resp
        })
        .await
}

/// The phases, in order.
async fn run(
    state: &ProxyState,
    active: &ActivePolicies,
    ctx: &mut RequestCtx,
    owned: &OwnedConn,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let mut routing = route(state, active, ctx, &req).await?;
    let (mut parts, body) = req.into_parts();
    request_headers(&mut routing, ctx, &parts);
    let body = request_body(state, &routing, ctx, &mut parts, body).await?;
    let resp = upstream(state, &routing, ctx, owned, parts, body).await?;
    let (mut rparts, rbody) = resp.into_parts();
    let plan = response_headers(&routing, ctx, &mut rparts)?;
    let body = response_body(state, &routing, ctx, &mut rparts, rbody, plan).await?;
    Ok(Response::from_parts(rparts, body))
}

/// The error response, and the warning that names it.
fn refused(ctx: &RequestCtx, e: ProxyError) -> Response<ProxyBody> {
    let answer = e.answer();
    tracing::warn!(
        request_id = %ctx.request_id,
        code = answer.code,
        status = answer.status.as_u16(),
        "request refused"
    );
    answer.into_response(&ctx.request_id)
}

/// Route: the host and path as the upstream will read them, the route that
/// applies, the mode it runs in, and the route's own rate limit.
async fn route<'p>(
    state: &ProxyState,
    active: &'p ActivePolicies,
    ctx: &mut RequestCtx,
    req: &Request<Incoming>,
) -> Result<Routing<'p>, ProxyError> {
    let policies = &active.set;
    let guard = !policies.is_empty() && !state.shadow.all;
    let host_routes = policies.routes().iter().any(|r| r.host().is_some());
    // with no host-scoped route, no decision below reads the host
    let (host, forwarded_host) =
        super::boundary::request_host(req, guard && host_routes, host_routes)?;
    if !state.shadow.all
        && state.unmatched_hosts == crate::config::UnmatchedHosts::Refuse
        && !policies.names_host(host.as_deref())
    {
        return Err(ProxyError::Client(ClientError::MisdirectedRequest));
    }
    // a spelling the upstream might read differently could dodge a route
    let refuse_path = |why| ProxyError::Client(ClientError::AmbiguousPath(why));
    if guard {
        if let Some(why) = crate::policy::ambiguous_path(req.uri().path()) {
            return Err(refuse_path(why));
        }
    }
    let resolved = policies
        .resolve(req.method().as_str(), host.as_deref(), req.uri().path())
        .map_err(refuse_path)?;
    if guard && resolved.covered && super::boundary::overrides_method(req) {
        // the upstream may run another method than the one routed here
        return Err(ProxyError::Client(ClientError::MethodOverrideRefused));
    }
    let matched = resolved.matched;
    ctx.route = matched.as_ref().map(|m| m.route.name.clone());
    // shadow: a shadow route is measured, an unmatched request captured; both pass unchanged
    let shadow = match &matched {
        Some(m) => state.shadow.applies(m.route),
        None => state.shadow.captures(),
    };
    if shadow {
        ctx.shadow = Some(state.shadow.begin(matched.is_some()));
        ctx.shadow_path = req.uri().path().to_owned();
    }
    let mode = if shadow { Mode::Shadow } else { Mode::Enforce };
    // a route that seals request fields for another method than this one
    // must not be dodged by sending the body with this method
    let sibling = resolved
        .sealing_sibling
        .filter(|_| guard && !(matched.is_some() && shadow));
    let routing = Routing {
        context: matched.as_ref().map(RouteMatch::context),
        matched,
        mode,
        sibling,
        forwarded_host,
        reveal: None,
    };
    if let Some(m) = routing.enforced().filter(|m| m.route.rate_limit.is_some()) {
        if let Err(retry) = active.limits.check("route", &m.route.name).await {
            state.metrics.rate_limited("proxy", &m.route.name);
            return Err(ProxyError::Client(ClientError::RateLimited {
                retry_after: retry.0.as_secs().max(1),
            }));
        }
    }
    Ok(routing)
}

/// Request headers: who the caller is, for a route that reveals fields to
/// some callers only.
fn request_headers(routing: &mut Routing<'_>, ctx: &RequestCtx, parts: &Parts) {
    routing.reveal = routing
        .enforced()
        .and_then(|m| m.route.reveal.as_ref())
        .map(|r| {
            let conn = parts.extensions.get::<crate::tls::ConnectionInfo>();
            super::reveal::decide(r, &parts.headers, conn, ctx.peer)
        });
}

/// Request body: sealed when the route seals request fields, refused when
/// another method's route would be dodged, measured in shadow, else passed.
async fn request_body(
    state: &ProxyState,
    routing: &Routing<'_>,
    ctx: &mut RequestCtx,
    parts: &mut Parts,
    body: Incoming,
) -> Result<ProxyBody, ProxyError> {
    let seals = routing
        .enforced()
        .map(|m| m.route)
        .filter(|r| !r.request.is_empty());
    if seals.is_none() && routing.sibling.is_none() {
        let Some(report) = ctx.shadow.as_mut() else {
            return Ok(body.map_err(Into::into).boxed());
        };
        let route = routing.shadow_route();
        let limit = route
            .and_then(|r| r.max_body_bytes)
            .unwrap_or(state.max_body_bytes);
        return super::shadow::request_body(
            &state.shadow,
            route,
            &parts.method,
            &ctx.shadow_path,
            &parts.headers,
            body,
            limit,
            report,
        )
        .await;
    }
    let (non_empty, body) = super::boundary::peek(body).await?;
    if !non_empty {
        return Ok(body.map_err(Into::into).boxed());
    }
    if let Some(other) = routing.sibling {
        return Err(ProxyError::Client(ClientError::UnsealedMethodBody {
            route: other.name.clone(),
        }));
    }
    let Some(route) = seals else {
        return Ok(body.map_err(Into::into).boxed());
    };
    let accepts = route.accepts_content_type(headers::media_type(&parts.headers).as_deref());
    let kind = super::boundary::body_kind(&parts.headers, accepts)?;
    seal_request_body(
        state,
        route,
        routing.context(),
        &mut parts.headers,
        kind,
        body,
        &mut ctx.counts,
    )
    .await
}

/// Upstream: the target (with searchable parameters sealed), hop-by-hop
/// headers out, `X-Forwarded-*`, `Host` and the request id in; then send.
async fn upstream(
    state: &ProxyState,
    routing: &Routing<'_>,
    ctx: &mut RequestCtx,
    owned: &OwnedConn,
    mut parts: Parts,
    body: ProxyBody,
) -> Result<Response<Incoming>, ProxyError> {
    let client_host = match &routing.forwarded_host {
        // the absolute-form target's authority is what was routed on
        Some(a) => HeaderValue::from_str(a).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    parts.uri = match routing
        .enforced()
        .filter(|m| !m.route.searchable.is_empty())
    {
        Some(m) => {
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let pq = super::params::seal_target(
                &state.cache,
                m,
                routing.context(),
                pq,
                &mut ctx.counts,
            )?;
            state.upstream.uri_for(&pq)?
        }
        None => state.upstream.uri_passing(parts.uri.path_and_query())?,
    };
    let version = parts.version;
    parts.version = http::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    let proto = match parts.extensions.get::<crate::tls::ConnectionInfo>() {
        Some(c) if c.tls => "https",
        _ => "http",
    };
    headers::add_forwarded(&mut parts.headers, ctx.peer, proto, client_host);
    if let Ok(v) = HeaderValue::from_str(state.upstream.authority().as_str()) {
        parts.headers.insert(header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        parts.headers.insert(REQUEST_ID, v);
    }
    if routing.rewrites_response() {
        // a compressed body cannot be rewritten; ask for identity
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let sent = Instant::now();
    let req = Request::from_parts(parts, body);
    // an HTTP/2 client's streams run at once: they share the pool
    let owned = (version <= http::Version::HTTP_11).then_some(owned);
    let resp = state.upstream.send(owned, req).await;
    ctx.upstream_time = Some(sent.elapsed());
    resp
}

/// What the response body phase does with the body.
enum BodyPlan {
    /// Forwarded as it comes (measured, in shadow).
    Pass,
    /// Not JSON on an open-all route: envelopes opened as it streams.
    OpenStream,
    /// Buffered and rewritten; `lines`: one JSON text per line.
    Rewrite { lines: bool },
}

/// Response headers: hop-by-hop out, the request id in, and whether (and
/// how) the body can be rewritten.
fn response_headers(
    routing: &Routing<'_>,
    ctx: &RequestCtx,
    rparts: &mut http::response::Parts,
) -> Result<BodyPlan, ProxyError> {
    headers::strip_hop_by_hop(&mut rparts.headers);
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        rparts.headers.insert(REQUEST_ID, v);
    }
    let Some(m) = routing.enforced().filter(|_| routing.rewrites_response()) else {
        return Ok(BodyPlan::Pass);
    };
    let media = headers::media_type(&rparts.headers);
    let no_body = ctx.method == Method::HEAD
        || rparts.status == StatusCode::NO_CONTENT
        || rparts.status == StatusCode::NOT_MODIFIED
        || rparts.status.is_informational();
    let lines = headers::is_json_lines(media.as_deref());
    if no_body || !(headers::is_json(media.as_deref()) || lines) {
        if m.route.response.seals() && !no_body && m.route.on_non_json != OnNonJson::Pass {
            return Err(ProxyError::Upstream(UpstreamError::NotJson));
        }
        if m.route.open_all && !no_body {
            if is_encoded(&rparts.headers) {
                return Err(ProxyError::Upstream(UpstreamError::Compressed));
            }
            return Ok(BodyPlan::OpenStream);
        }
        return Ok(BodyPlan::Pass);
    }
    if is_encoded(&rparts.headers) {
        return Err(ProxyError::Upstream(UpstreamError::Compressed));
    }
    Ok(BodyPlan::Rewrite { lines })
}

/// Response body: as the plan says — passed (and measured in shadow),
/// opened as it streams, or buffered, opened, revealed or masked, sealed.
async fn response_body(
    state: &ProxyState,
    routing: &Routing<'_>,
    ctx: &mut RequestCtx,
    rparts: &mut http::response::Parts,
    rbody: Incoming,
    plan: BodyPlan,
) -> Result<ProxyBody, ProxyError> {
    let m = match (plan, routing.enforced()) {
        (BodyPlan::Rewrite { lines }, Some(m)) => (m, lines),
        (BodyPlan::OpenStream, Some(m)) => {
            // not JSON: open envelopes as the body streams, holding at most a
            // bounded window of a possible envelope between chunks
            let mut contexts = vec![routing.context().to_owned()];
            contexts.extend(m.route.open_contexts.iter().cloned());
            let candidates = super::discover::Candidates {
                contexts,
                labels: m.route.open_labels.clone(),
                keys: fields::route_key_ids(&state.cache, m.route),
            };
            let tally = std::sync::Arc::new(std::sync::Mutex::new(FieldCounts::default()));
            let opener = super::discover::token_opener(state.cache.clone(), candidates, tally);
            rparts.headers.remove(header::CONTENT_LENGTH);
            let body =
                super::discover::OpenStream::new(rbody, opener, super::discover::DEFAULT_WINDOW);
            return Ok(body.boxed());
        }
        _ => {
            let Some(report) = ctx.shadow.as_mut() else {
                return Ok(rbody.map_err(Into::into).boxed());
            };
            let route = routing.shadow_route();
            let limit = route
                .and_then(|r| r.max_body_bytes)
                .unwrap_or(state.max_body_bytes);
            return super::shadow::response_body(
                state,
                route,
                &ctx.method,
                &ctx.shadow_path,
                rparts.status,
                &rparts.headers,
                rbody,
                limit,
                report,
            )
            .await;
        }
    };
    let (m, lines) = m;
    let limit = m.route.max_body_bytes.unwrap_or(state.max_body_bytes);
    let body_started = Instant::now();
    let bytes = tokio::time::timeout(
        state.upstream.timeout(),
        read_bounded(rbody, limit, BodySide::Response),
    )
    .await;
    ctx.upstream_time = ctx.upstream_time.map(|t| t + body_started.elapsed());
    let bytes = bytes.map_err(|_| ProxyError::Upstream(UpstreamError::BodyTimeout))??;
    let ctx_text = routing.context();
    let bytes = if lines {
        // one record per line: each line is rewritten as a body of its own
        let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2);
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let end = line.len() - usize::from(line.ends_with(b"\n"));
            let end = end - usize::from(line[..end].ends_with(b"\r"));
            let (doc, eol) = line.split_at(end);
            if doc.iter().all(u8::is_ascii_whitespace) {
                out.extend_from_slice(line);
                continue;
            }
            let doc = Bytes::copy_from_slice(doc);
            let opened =
                rewrite_response(state, m.route, ctx_text, doc, routing.reveal.clone(), ctx)?;
            out.extend_from_slice(&opened);
            out.extend_from_slice(eol);
        }
        Bytes::from(out)
    } else {
        rewrite_response(state, m.route, ctx_text, bytes, routing.reveal.clone(), ctx)?
    };
    rparts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if m.route.stale_key_header {
        super::stale::mark_stale(&state.cache, &ctx.counts, &mut rparts.headers);
    }
    Ok(Full::new(bytes).map_err(|e| match e {}).boxed())
}

/// Logging: the access line, shadow findings, metrics and audit records of
/// one finished request — counts only, never a value.
fn logging(
    state: &ProxyState,
    active: &ActivePolicies,
    ctx: &RequestCtx,
    status: StatusCode,
    log: bool,
) {
    let route = ctx.route.as_deref().unwrap_or("-");
    let total = ctx.started.elapsed();
    if log {
        crate::access_log::write(&AccessRecord {
            request_id: &ctx.request_id,
            method: ctx.method.as_str(),
            status: status.as_u16(),
            route,
            path: &log_path(active, ctx),
            sealed: ctx.counts.sealed,
            opened: ctx.counts.opened,
            plaintext_passed: ctx.counts.passed_plaintext,
            micros: total.as_micros() as u64,
        });
    }
    if let Some(report) = &ctx.shadow {
        super::shadow::record(state, route, report);
    }
    let counts = &ctx.counts;
    let m = &state.metrics;
    m.observe_request(
        route,
        &ctx.method,
        status.as_u16(),
        total,
        ctx.upstream_time,
    );
    m.fields(route, counts.sealed, counts.opened);
    m.plaintext_passed(route, counts.passed_plaintext);
    for (reason, n) in &counts.open_failures {
        for _ in 0..*n {
            m.open_failure(reason);
        }
    }
    if !state.audit.is_enabled() {
        return;
    }
    let base = |action: &str, result: String, count: u32| {
        let mut ev = AuditEvent::new(action, result);
        ev.request_id = Some(ctx.request_id.clone());
        ev.caller = Some(ctx.peer.to_string());
        ev.route = Some(route.to_string());
        ev.count = Some(u64::from(count));
        ev
    };
    for b in &counts.batches {
        let action = match b.op {
            FieldOp::Seal => "seal_fields",
            FieldOp::Open => "open_fields",
        };
        state
            .audit
            .record(base(action, "ok".into(), b.count).with_cmk(&b.cmk));
    }
    for (reason, n) in &counts.open_failures {
        state
            .audit
            .record(base("open_fields", (*reason).into(), *n));
    }
    if let Some(d) = &ctx.revealed {
        let result = if d.revealed { "revealed" } else { "masked" };
        let mut ev = base("reveal_fields", result.into(), d.count);
        ev.subject = d.subject.clone();
        ev.rule = d.rule.clone();
        ev.reason = d.reason.clone();
        ev.fields = Some(d.fields.clone());
        state.audit.record(ev);
    }
}

/// The path a log line may hold: the matched route's template, else the path
/// with its sensitive-looking segments redacted (`{email}`, …). Never a
/// value a route seals in the URL.
fn log_path<'a>(active: &'a ActivePolicies, ctx: &RequestCtx) -> std::borrow::Cow<'a, str> {
    let route = ctx.route.as_deref();
    match route.and_then(|n| active.set.routes().iter().find(|r| r.name == n)) {
        Some(r) => std::borrow::Cow::Borrowed(r.path().as_str()),
        None => std::borrow::Cow::Owned(
            ctx.raw_uri
                .as_ref()
                .map(|u| crate::policy::suggest::redact_path(u.path()))
                .unwrap_or_default(),
        ),
    }
}

/// The request body of a sealing route, known to be non-empty: sealed if
/// an upstream could read it as JSON, refused if it cannot be sealed, passed
/// only when it is not JSON and the route says `on_non_json = "pass"`.
async fn seal_request_body(
    state: &ProxyState,
    route: &Route,
    ctx: &str,
    headers: &mut http::HeaderMap,
    kind: super::boundary::BodyKind,
    body: super::boundary::Peeked,
    counts: &mut FieldCounts,
) -> Result<ProxyBody, ProxyError> {
    use super::boundary::BodyKind;
    match kind {
        BodyKind::Other if route.on_non_json == OnNonJson::Pass => {
            return Ok(body.map_err(Into::into).boxed())
        }
        BodyKind::Other => return Err(ProxyError::Client(ClientError::NotJson)),
        BodyKind::JsonPatch => return Err(ProxyError::Client(ClientError::JsonPatch)),
        BodyKind::Unsealable => return Err(ProxyError::Client(ClientError::NotOneJsonText)),
        BodyKind::Json => {}
    }
    if super::boundary::is_encoded(headers) {
        return Err(ProxyError::Client(ClientError::CompressedBody));
    }
    let limit = route.max_body_bytes.unwrap_or(state.max_body_bytes);
    let bytes = read_bounded(body, limit, BodySide::Request).await?;
    let bytes = rewrite_request(state, route, ctx, bytes, counts)?;
    if bytes.len() > limit {
        // the upstream answers with what it stored: past the limit, that
        // answer could not be read back through this route
        return Err(ProxyError::Client(ClientError::SealedBodyTooLarge {
            limit,
        }));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.remove(header::TRANSFER_ENCODING);
    Ok(Full::new(bytes).map_err(|e| match e {}).boxed())
}

async fn read_bounded<B>(body: B, limit: usize, side: BodySide) -> Result<Bytes, ProxyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<super::BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::body(side, BodyError::TooLarge { limit }))
        }
        Err(_) => Err(ProxyError::body(side, BodyError::ReadFailed)),
    }
}

fn rewrite_request(
    state: &ProxyState,
    route: &Route,
    ctx: &str,
    bytes: Bytes,
    counts: &mut FieldCounts,
) -> Result<Bytes, ProxyError> {
    if bytes.is_empty() {
        return Ok(bytes);
    }
    let mut cur = bytes;
    if !route.request.decrypt.is_empty() {
        let keys = fields::route_key_ids(&state.cache, route);
        let scope = fields::OpenScope {
            route: &route.name,
            keys: &keys,
        };
        if let Some(b) = fields::open_fields(
            &state.cache,
            scope,
            ctx,
            &cur,
            &route.request.decrypt,
            route.on_plaintext,
            route.on_open_failure,
            counts,
            BodySide::Request,
        )? {
            cur = Bytes::from(b);
        }
    }
    if !route.request.deterministic.is_empty() {
        // a body sent as JSON that does not parse is never passed: a
        // lenient upstream parser (BOM, comments, single quotes) reads it
        if let Some(b) = super::params::seal_deterministic_fields(
            &state.cache,
            &route.key,
            ctx,
            &cur,
            &route.request.deterministic,
            counts,
            BodySide::Request,
        )? {
            cur = Bytes::from(b);
        }
    }
    if !route.request.encrypt.is_empty() {
        if let Some(b) = fields::seal_fields(
            &state.cache,
            &route.key,
            state.cache.partition(ctx, route.context_template()),
            ctx,
            &cur,
            &route.request.encrypt,
            counts,
            BodySide::Request,
        )? {
            cur = Bytes::from(b);
        }
    }
    Ok(cur)
}

fn rewrite_response(
    state: &ProxyState,
    route: &Route,
    ctx: &str,
    bytes: Bytes,
    reveal: Option<RevealDecision>,
    rctx: &mut RequestCtx,
) -> Result<Bytes, ProxyError> {
    let counts = &mut rctx.counts;
    if bytes.is_empty() {
        return Ok(bytes);
    }
    let mut cur = bytes;
    let reveal = route.reveal.as_ref().zip(reveal);
    let decrypt = super::reveal::open_selectors(
        reveal.as_ref().map(|(r, d)| (*r, d)),
        &route.response.decrypt,
    );
    if !decrypt.is_empty() {
        let keys = fields::route_key_ids(&state.cache, route);
        let scope = fields::OpenScope {
            route: &route.name,
            keys: &keys,
        };
        match fields::open_fields(
            &state.cache,
            scope,
            ctx,
            &cur,
            decrypt,
            route.on_plaintext,
            route.on_open_failure,
            counts,
            BodySide::Response,
        ) {
            Ok(Some(b)) => cur = Bytes::from(b),
            Ok(None) => {}
            // an upstream body that is not JSON holds no envelope to open: pass it
            Err(e) if e.is_upstream_not_json() && !route.response.seals() => return Ok(cur),
            Err(e) => return Err(e),
        }
    }
    if let Some((r, decision)) = reveal {
        // after opening: a masked caller never gets what a selector opened
        match super::reveal::apply(r, decision, &cur, &mut rctx.revealed) {
            Ok(Some(b)) => cur = Bytes::from(b),
            Ok(None) => {}
            Err(e) if e.is_upstream_not_json() && !route.response.seals() => return Ok(cur),
            Err(e) => return Err(e),
        }
    }
    if !route.response.deterministic.is_empty() {
        if let Some(b) = super::params::seal_deterministic_fields(
            &state.cache,
            &route.key,
            ctx,
            &cur,
            &route.response.deterministic,
            counts,
            BodySide::Response,
        )? {
            cur = Bytes::from(b);
        }
    }
    if !route.response.encrypt.is_empty() {
        if let Some(b) = fields::seal_fields(
            &state.cache,
            &route.key,
            state.cache.partition(ctx, route.context_template()),
            ctx,
            &cur,
            &route.response.encrypt,
            counts,
            BodySide::Response,
        )? {
            cur = Bytes::from(b);
        }
    }
    if route.open_all {
        // whatever envelopes are left, wherever they sit
        let mut contexts = Vec::with_capacity(1 + route.open_contexts.len());
        contexts.push(ctx.to_string());
        contexts.extend(route.open_contexts.iter().cloned());
        let keys = fields::route_key_ids(&state.cache, route);
        if let Some(b) =
            crate::proxy::discover::open_found(&state.cache, &contexts, &keys, &cur, counts)
        {
            cur = Bytes::from(b);
        }
    }
    Ok(cur)
}

fn is_encoded(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}
