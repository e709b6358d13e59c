//! The phases of one request, named and run in order.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use super::error::ProxyError;
use super::fields::{self, FieldCounts, FieldOp};
use super::headers::{self, REQUEST_ID};
use super::{ActivePolicies, ProxyBody, ProxyState};
use crate::audit::{AuditEvent, RequestContext, REQUEST};
use crate::policy::{OnNonJson, Route};

/// Handles one request end to end; never fails (errors become responses).
pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let request_id = headers::request_id(req.headers());
    // no span (and no `Instrumented` wrapper) unless info lines are logged;
    // the warning below names the request id itself
    // no path in the span: it is made before routing, and the raw path may
    // hold a value the route seals (`/people/by-ssn/{ssn}`); `done` logs it
    let span = tracing::enabled!(tracing::Level::INFO)
        .then(|| tracing::info_span!("request", request_id = %request_id, method = %req.method()));
    let raw_path = span.as_ref().map(|_| req.uri().path().to_owned());
    // key operations deep in the data-key cache audit whom they served
    let who = RequestContext {
        request_id: request_id.clone(),
        caller: peer.to_string(),
    };
    let work = async move {
        let started = Instant::now();
        let policies = state.policies();
        let method = req.method().clone();
        let mut counts = FieldCounts::default();
        let mut upstream_time = None;
        let (resp, route_name) = match run(
            &state,
            &policies,
            peer,
            req,
            &request_id,
            &mut counts,
            &mut upstream_time,
        )
        .await
        {
            Ok(r) => r,
            Err((e, route)) => {
                tracing::warn!(
                    request_id = %request_id,
                    code = e.code,
                    status = e.status.as_u16(),
                    "request refused"
                );
                (e.into_response(&request_id), route)
            }
        };
        // logging phase
        let route = route_name.as_deref().unwrap_or("-");
        let total = started.elapsed();
        tracing::info!(
            status = resp.status().as_u16(),
            route,
            path = %log_path(&policies, route_name.as_deref(), raw_path.as_deref()),
            sealed = counts.sealed,
            opened = counts.opened,
            plaintext_passed = counts.passed_plaintext,
            micros = total.as_micros() as u64,
            "done"
        );
        if let Some(report) = &counts.shadow {
            super::shadow::record(&state, route, report);
        }
        observe(
            &state,
            route,
            &method,
            resp.status().as_u16(),
            total,
            upstream_time,
            &counts,
            &request_id,
            peer,
        );
        resp
    };
    match span {
        Some(span) => REQUEST.scope(who, work.instrument(span)).await,
        None => REQUEST.scope(who, work).await,
    }
}

/// The path a log line may hold: the matched route's template, else the path
/// with its sensitive-looking segments redacted (`{email}`, …). Never a
/// value a route seals in the URL.
fn log_path(active: &ActivePolicies, route: Option<&str>, raw: Option<&str>) -> String {
    match route.and_then(|n| active.set.routes().iter().find(|r| r.name == n)) {
        Some(r) => r.path().as_str().to_owned(),
        None => raw
            .map(crate::policy::suggest::redact_path)
            .unwrap_or_default(),
    }
}

/// Metrics and audit records of one finished request: counts only, never a value.
#[allow(clippy::too_many_arguments)]
fn observe(
    state: &ProxyState,
    route: &str,
    method: &Method,
    status: u16,
    total: Duration,
    upstream_time: Option<Duration>,
    counts: &FieldCounts,
    request_id: &str,
    peer: SocketAddr,
) {
    let m = &state.metrics;
    m.observe_request(route, method, status, total, upstream_time);
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
        ev.request_id = Some(request_id.to_string());
        ev.caller = Some(peer.to_string());
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
    if let Some(d) = &counts.reveal {
        let result = if d.revealed { "revealed" } else { "masked" };
        let mut ev = base("reveal_fields", result.into(), d.count);
        ev.subject = d.subject.clone();
        ev.rule = d.rule.clone();
        ev.reason = d.reason.clone();
        ev.fields = Some(d.fields.clone());
        state.audit.record(ev);
    }
}

type PhaseResult = Result<(Response<ProxyBody>, Option<String>), (ProxyError, Option<String>)>;

async fn run(
    state: &ProxyState,
    active: &ActivePolicies,
    peer: SocketAddr,
    req: Request<Incoming>,
    request_id: &str,
    counts: &mut FieldCounts,
    upstream_time: &mut Option<Duration>,
) -> PhaseResult {
    // request_filter: route match and the route's own rate limit
    let policies = &active.set;
    let guard = !policies.is_empty() && !state.shadow.all;
    let host_routes = policies.routes().iter().any(|r| r.host().is_some());
    let (host, forwarded_host) =
        super::boundary::request_host(&req, guard && host_routes).map_err(|e| (e, None))?;
    if !state.shadow.all
        && state.unmatched_hosts == crate::config::UnmatchedHosts::Refuse
        && !policies.names_host(host.as_deref())
    {
        return Err((
            ProxyError::client(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "no route here is for this host",
            ),
            None,
        ));
    }
    let refuse_path = |why: &str| {
        // a spelling the upstream might read differently could dodge a route
        (
            ProxyError::client(
                StatusCode::BAD_REQUEST,
                "ambiguous_path",
                format!("request path refused: {why}"),
            ),
            None,
        )
    };
    if guard {
        if let Some(why) = crate::policy::ambiguous_path(req.uri().path()) {
            return Err(refuse_path(why));
        }
    }
    let resolved = policies
        .resolve(req.method().as_str(), host.as_deref(), req.uri().path())
        .map_err(refuse_path)?;
    if guard && resolved.covered && super::boundary::overrides_method(&req) {
        // the upstream may run another method than the one routed here
        return Err((
            ProxyError::client(
                StatusCode::BAD_REQUEST,
                "method_override_refused",
                "a method override is refused on a path a policy covers",
            ),
            None,
        ));
    }
    let matched = resolved.matched;
    let route_name = matched.as_ref().map(|m| m.route.name.clone());
    let fail = |e: ProxyError| (e, route_name.clone());
    // shadow: a shadow route is measured, an unmatched request captured; both pass unchanged
    let shadow = match &matched {
        Some(m) => state.shadow.applies(m.route),
        None => state.shadow.captures(),
    };
    let enforce = matched.as_ref().filter(|_| !shadow);
    if shadow {
        counts.shadow = Some(state.shadow.begin(matched.is_some()));
    }
    if let Some(m) = enforce {
        if m.route.rate_limit.is_some() {
            if let Err(retry) = active.limits.check("route", &m.route.name).await {
                state.metrics.rate_limited("proxy", &m.route.name);
                let mut e = ProxyError::client(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "the route's rate limit is exceeded",
                );
                e.retry_after = Some(retry.0.as_secs().max(1));
                return Err(fail(e));
            }
        }
    }
    let context = matched.as_ref().map(|m| m.context());

    let (mut parts, body) = req.into_parts();
    let reveal = enforce.and_then(|m| m.route.reveal.as_ref()).map(|r| {
        let conn = parts.extensions.get::<crate::tls::ConnectionInfo>();
        super::reveal::decide(r, &parts.headers, conn, peer)
    });
    let client_host = match forwarded_host {
        // the absolute-form target's authority is what was routed on
        Some(a) => HeaderValue::from_str(&a).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };

    // request_body_filter
    let shadow_route = matched.as_ref().filter(|_| shadow).map(|m| m.route);
    // only shadow mode reads it after the request is sent
    let request_path = match counts.shadow {
        Some(_) => parts.uri.path().to_string(),
        None => String::new(),
    };
    // a route that seals request fields for another method than this one
    // must not be dodged by sending the body with this method
    let sibling = resolved
        .sealing_sibling
        .filter(|_| guard && !matched.as_ref().is_some_and(|_| shadow));
    let out_body: ProxyBody = match enforce {
        Some(m) if !m.route.request.is_empty() || sibling.is_some() => {
            let route = m.route;
            let (non_empty, body) = super::boundary::peek(body).await.map_err(fail)?;
            if !non_empty {
                body.map_err(Into::into).boxed()
            } else if let Some(other) = sibling {
                return Err(fail(unsealed_method_body(other)));
            } else {
                let ctx = context.as_deref().unwrap_or("");
                let accepts =
                    route.accepts_content_type(headers::media_type(&parts.headers).as_deref());
                let kind = super::boundary::body_kind(&parts.headers, accepts).map_err(fail)?;
                request_body(state, route, ctx, &mut parts.headers, kind, body, counts)
                    .await
                    .map_err(fail)?
            }
        }
        None if sibling.is_some() => {
            let (non_empty, body) = super::boundary::peek(body).await.map_err(fail)?;
            match sibling.filter(|_| non_empty) {
                Some(other) => return Err(fail(unsealed_method_body(other))),
                None => body.map_err(Into::into).boxed(),
            }
        }
        _ => match counts.shadow.as_mut() {
            Some(report) => {
                let limit = shadow_route
                    .and_then(|r| r.max_body_bytes)
                    .unwrap_or(state.max_body_bytes);
                super::shadow::request_body(
                    &state.shadow,
                    shadow_route,
                    &parts.method,
                    &request_path,
                    &parts.headers,
                    body,
                    limit,
                    report,
                )
                .await
                .map_err(fail)?
            }
            None => body.map_err(Into::into).boxed(),
        },
    };

    // upstream_request_filter
    let rewrites_response =
        enforce.is_some_and(|m| m.route.open_all || !m.route.response.is_empty());
    parts.uri = match enforce.filter(|m| !m.route.searchable.is_empty()) {
        Some(m) => {
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let ctx = context.as_deref().unwrap_or("");
            let pq = super::params::seal_target(&state.cache, m, ctx, pq, counts).map_err(fail)?;
            state.upstream.uri_for(&pq).map_err(fail)?
        }
        None => state
            .upstream
            .uri_passing(parts.uri.path_and_query())
            .map_err(fail)?,
    };
    parts.version = http::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    let proto = match parts.extensions.get::<crate::tls::ConnectionInfo>() {
        Some(c) if c.tls => "https",
        _ => "http",
    };
    headers::add_forwarded(&mut parts.headers, peer, proto, client_host);
    if let Ok(v) = HeaderValue::from_str(state.upstream.authority().as_str()) {
        parts.headers.insert(header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        parts.headers.insert(REQUEST_ID, v);
    }
    if rewrites_response {
        // a compressed body cannot be rewritten; ask for identity
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let method = parts.method.clone();
    let sent = Instant::now();
    let upstream_resp = state
        .upstream
        .send(Request::from_parts(parts, out_body))
        .await;
    *upstream_time = Some(sent.elapsed());
    let upstream_resp = upstream_resp.map_err(fail)?;

    // response_filter
    let (mut rparts, rbody) = upstream_resp.into_parts();
    headers::strip_hop_by_hop(&mut rparts.headers);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        rparts.headers.insert(REQUEST_ID, v);
    }
    let Some(m) = enforce.filter(|_| rewrites_response) else {
        let rbody = match counts.shadow.as_mut() {
            Some(report) => {
                let limit = shadow_route
                    .and_then(|r| r.max_body_bytes)
                    .unwrap_or(state.max_body_bytes);
                super::shadow::response_body(
                    state,
                    shadow_route,
                    &method,
                    &request_path,
                    rparts.status,
                    &rparts.headers,
                    rbody,
                    limit,
                    report,
                )
                .await
                .map_err(fail)?
            }
            None => rbody.map_err(Into::into).boxed(),
        };
        return Ok((Response::from_parts(rparts, rbody), route_name));
    };
    let media = headers::media_type(&rparts.headers);
    let no_body = method == Method::HEAD
        || rparts.status == StatusCode::NO_CONTENT
        || rparts.status == StatusCode::NOT_MODIFIED
        || rparts.status.is_informational();
    let lines = headers::is_json_lines(media.as_deref());
    if no_body || !(headers::is_json(media.as_deref()) || lines) {
        if m.route.response.seals() && !no_body && m.route.on_non_json != OnNonJson::Pass {
            return Err(fail(ProxyError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_not_json",
                "the upstream response must be JSON for this route to seal it",
            )));
        }
        if m.route.open_all && !no_body {
            // not JSON: open envelopes as the body streams, holding at most a
            // bounded window of a possible envelope between chunks
            if is_encoded(&rparts.headers) {
                return Err(fail(compressed_error()));
            }
            let mut contexts = vec![context.clone().unwrap_or_default()];
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
            return Ok((Response::from_parts(rparts, body.boxed()), route_name));
        }
        return Ok((
            Response::from_parts(rparts, rbody.map_err(Into::into).boxed()),
            route_name,
        ));
    }
    if is_encoded(&rparts.headers) {
        return Err(fail(compressed_error()));
    }

    // response_body_filter
    let limit = m.route.max_body_bytes.unwrap_or(state.max_body_bytes);
    let body_started = Instant::now();
    let bytes =
        tokio::time::timeout(state.upstream.timeout(), read_bounded(rbody, limit, true)).await;
    *upstream_time = upstream_time.map(|t| t + body_started.elapsed());
    let bytes = bytes
        .map_err(|_| {
            fail(ProxyError::upstream(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "upstream body too slow",
            ))
        })?
        .map_err(fail)?;
    let ctx = context.as_deref().unwrap_or("");
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
                rewrite_response(state, m.route, ctx, doc, reveal.clone(), counts).map_err(fail)?;
            out.extend_from_slice(&opened);
            out.extend_from_slice(eol);
        }
        Bytes::from(out)
    } else {
        rewrite_response(state, m.route, ctx, bytes, reveal, counts).map_err(fail)?
    };
    rparts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if m.route.stale_key_header {
        super::stale::mark_stale(&state.cache, counts, &mut rparts.headers);
    }
    Ok((
        Response::from_parts(rparts, Full::new(bytes).map_err(|e| match e {}).boxed()),
        route_name,
    ))
}

fn unsealed_method_body(other: &Route) -> ProxyError {
    ProxyError::client(
        StatusCode::BAD_REQUEST,
        "unsealed_method_body",
        format!(
            "route '{}' seals request bodies on this path for other methods; this method may not carry one",
            other.name
        ),
    )
}

/// The request body of a sealing route, known to be non-empty: sealed if
/// an upstream could read it as JSON, refused if it cannot be sealed, passed
/// only when it is not JSON and the route says `on_non_json = "pass"`.
async fn request_body(
    state: &ProxyState,
    route: &Route,
    ctx: &str,
    headers: &mut http::HeaderMap,
    kind: super::boundary::BodyKind,
    body: super::boundary::Peeked,
    counts: &mut FieldCounts,
) -> Result<ProxyBody, ProxyError> {
    use super::boundary::BodyKind;
    let unsupported = |code: &'static str, msg: &'static str| {
        ProxyError::client(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, msg)
    };
    match kind {
        BodyKind::Other if route.on_non_json == OnNonJson::Pass => {
            return Ok(body.map_err(Into::into).boxed())
        }
        BodyKind::Other => {
            return Err(unsupported(
                "unsupported_media_type",
                "this route seals fields and needs a JSON body",
            ))
        }
        BodyKind::JsonPatch => {
            return Err(unsupported(
                "json_patch_refused",
                "a JSON Patch names fields by path, which this route cannot seal; send the fields as JSON",
            ))
        }
        BodyKind::Unsealable => {
            return Err(unsupported(
                "unsupported_media_type",
                "JSON here must be one UTF-8 JSON text to be sealed",
            ))
        }
        BodyKind::Json => {}
    }
    if super::boundary::is_encoded(headers) {
        return Err(unsupported(
            "compressed_body",
            "a compressed body cannot be sealed; send it with no Content-Encoding",
        ));
    }
    let limit = route.max_body_bytes.unwrap_or(state.max_body_bytes);
    let bytes = read_bounded(body, limit, false).await?;
    let bytes = rewrite_request(state, route, ctx, bytes, counts)?;
    if bytes.len() > limit {
        // the upstream answers with what it stored: past the limit, that
        // answer could not be read back through this route
        return Err(ProxyError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "sealed_body_too_large",
            format!("the request body sealed exceeds {limit} bytes"),
        ));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.remove(header::TRANSFER_ENCODING);
    Ok(Full::new(bytes).map_err(|e| match e {}).boxed())
}

async fn read_bounded<B>(body: B, limit: usize, upstream_side: bool) -> Result<Bytes, ProxyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<super::BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(if upstream_side {
            ProxyError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_body_too_large",
                format!("upstream body exceeds {limit} bytes"),
            )
        } else {
            ProxyError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {limit} bytes"),
            )
        }),
        Err(_) => Err(if upstream_side {
            ProxyError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_body_failed",
                "upstream body could not be read",
            )
        } else {
            ProxyError::client(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                "request body could not be read",
            )
        }),
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
            false,
        )? {
            cur = Bytes::from(b);
        }
    }
    if !route.request.deterministic.is_empty() {
        match super::params::seal_deterministic_fields(
            &state.cache,
            &route.key,
            ctx,
            &cur,
            &route.request.deterministic,
            counts,
            false,
        ) {
            Ok(Some(b)) => cur = Bytes::from(b),
            Ok(None) => {}
            // a body sent as JSON that does not parse is never passed: a
            // lenient upstream parser (BOM, comments, single quotes) reads it
            Err(e) => return Err(e),
        }
    }
    if !route.request.encrypt.is_empty() {
        match fields::seal_fields(
            &state.cache,
            &route.key,
            state.cache.partition(ctx, route.context_template()),
            ctx,
            &cur,
            &route.request.encrypt,
            counts,
            false,
        ) {
            Ok(Some(b)) => cur = Bytes::from(b),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

fn rewrite_response(
    state: &ProxyState,
    route: &Route,
    ctx: &str,
    bytes: Bytes,
    reveal: Option<super::reveal::RevealDecision>,
    counts: &mut FieldCounts,
) -> Result<Bytes, ProxyError> {
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
            true,
        ) {
            Ok(Some(b)) => cur = Bytes::from(b),
            Ok(None) => {}
            // an upstream body that is not JSON holds no envelope to open: pass it
            Err(e) if e.code == "upstream_invalid_json" && !route.response.seals() => {
                return Ok(cur)
            }
            Err(e) => return Err(e),
        }
    }
    if let Some((r, decision)) = reveal {
        // after opening: a masked caller never gets what a selector opened
        match super::reveal::apply(r, decision, &cur, counts) {
            Ok(Some(b)) => cur = Bytes::from(b),
            Ok(None) => {}
            Err(e) if super::reveal::is_not_json(&e) && !route.response.seals() => return Ok(cur),
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
            true,
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
            true,
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

fn compressed_error() -> ProxyError {
    ProxyError::upstream(
        StatusCode::BAD_GATEWAY,
        "upstream_compressed",
        "the upstream sent a compressed body on a route whose response must be rewritten",
    )
}
