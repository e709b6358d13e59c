//! The web console (`sealgate serve --console-listen ADDR`): onboarding
//! and operations in a browser, served by the binary itself.
//!
//! Pages are rendered on the server (no script at all; plots are inline
//! SVG) from what sealgate already holds: the policy set in force
//! ([`crate::proxy::ProxyState`]), the metrics counters
//! ([`crate::metrics::Metrics::snapshot`], sampled into a ring buffer for
//! the plots), the shadow capture (summed per route and field; a draft for
//! selected findings comes from `policy suggest`'s generator), the key
//! store's listings and the audit log's verifier. It is read-only: the one
//! form that does something downloads a policy draft.
//!
//! Access: the listener is loopback-only unless `[console.tls]` is set
//! (config validation refuses otherwise). A token made at start and
//! printed once on standard error logs a browser in; the session lives in
//! memory behind an HttpOnly, SameSite=Strict cookie. With
//! `[console.tls] client_ca_file`, a verified client certificate is enough.
//! Every form posts a per-session CSRF token; every answer carries a strict
//! Content-Security-Policy. No page renders a field value.

mod findings;
mod html;
mod pages;
mod series;
mod session;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::StartError;
use crate::config::{AuditSink, Config, ConsoleSettings};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::proxy::ProxyState;
use findings::Findings;
use series::Series;
use session::{Session, Sessions};

/// The Content-Security-Policy of every answer: nothing but this origin's
/// stylesheet, no script of any kind, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; \
                       object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The stylesheet, embedded in the binary.
const CSS: &str = include_str!("assets/console.css");

/// Largest form body read.
const MAX_FORM: usize = 64 * 1024;

/// What the console reads from the running sealgate.
pub struct Sources {
    /// The proxy (its policy set in force).
    pub state: Arc<ProxyState>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The key store (its listings).
    pub store: Arc<KeyStore>,
}

/// A started console.
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    /// The listener and the sampler.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Console {
    state: Arc<ProxyState>,
    metrics: Arc<Metrics>,
    store: Arc<KeyStore>,
    series: Arc<Series>,
    findings: Option<Findings>,
    sessions: Sessions,
    token: String,
    /// A verified client certificate logs in (`client_ca_file`).
    mtls: bool,
    /// The listener is TLS: cookies are `Secure`.
    secure: bool,
    audit: Option<AuditSink>,
    shadow_all: bool,
    remote_keys: bool,
    policies: PathBuf,
    started: u64,
    sample_every: std::time::Duration,
}

/// Binds the console listener of `settings` and starts it and its sampler
/// (both stop when `shutdown` turns true); prints the log-in token once on
/// standard error (never to the log).
pub async fn start(
    config: &Config,
    settings: &ConsoleSettings,
    sources: Sources,
    shutdown: watch::Receiver<bool>,
) -> Result<Started, StartError> {
    let acceptor = crate::tls::Acceptor::new(
        settings.tls.as_ref(),
        config.h2c,
        config.header_read_timeout,
    )
    .map_err(|e| StartError::Tls(format!("[console.tls]: {e}")))?;
    let addr = settings.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let series = Arc::new(Series::default());
    let console = Arc::new(Console {
        state: sources.state,
        metrics: sources.metrics.clone(),
        store: sources.store,
        series: series.clone(),
        findings: config
            .shadow_capture
            .as_ref()
            .map(|c| Findings::new(c.file.clone())),
        sessions: Sessions::default(),
        token: session::random_token(),
        mtls: settings
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some()),
        secure: settings.tls.is_some(),
        audit: config.audit.sink.clone(),
        shadow_all: config.shadow,
        remote_keys: config.provider.is_some(),
        policies: config.policies.clone(),
        started: crate::clock::unix_now(),
        sample_every: settings.sample_every,
    });
    let scheme = if console.secure { "https" } else { "http" };
    // the token goes to the terminal that started sealgate, once; the log
    // line says where the console is, never the token
    // (a closed standard error is no reason to fail the start)
    let _ = writeln!(
        std::io::stderr(),
        "sealgate console: {scheme}://{bound}/ log-in token: {} (printed once; not logged)",
        console.token
    );
    tracing::info!(listen = %bound, tls = console.secure, mtls = console.mtls, "console listening");
    let mut tasks = Vec::new();
    let mut rx = shutdown.clone();
    tasks.push(tokio::spawn(series::run(
        series,
        sources.metrics,
        settings.sample_every,
        async move {
            let _ = rx.wait_for(|v| *v).await;
        },
    )));
    let mut rx = shutdown;
    tasks.push(tokio::spawn(crate::listen::serve(
        "console",
        listener,
        acceptor,
        crate::listen::ListenLimits {
            max_connections: 256,
            header_read_timeout: config.header_read_timeout,
            drain: std::time::Duration::from_secs(2),
        },
        async move {
            let _ = rx.wait_for(|v| *v).await;
        },
        move |peer, req| {
            let console = console.clone();
            async move {
                let mut resp = handle(&console, peer, req).await;
                secure_headers(resp.headers_mut());
                resp
            }
        },
    )));
    Ok(Started { addr: bound, tasks })
}

fn secure_headers(h: &mut http::HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn html(status: StatusCode, body: String) -> Answer {
    answer(status, "text/html; charset=utf-8", body)
}

fn redirect(to: &'static str, cookie: Option<String>) -> Answer {
    let mut r = answer(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn with_cookie(mut r: Answer, cookie: Option<String>) -> Answer {
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// A short page saying what went wrong (`csrf`: the visitor is logged in).
fn problem(status: StatusCode, title: &str, message: &str, csrf: Option<&str>) -> Answer {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/routes\">Back to the console</a></p>",
        html::esc(message)
    );
    html(status, html::page(title, "", csrf, &body))
}

/// The visitor's session, if the cookie names a live one: (id, session).
fn current_session(c: &Console, req: &Request<Incoming>) -> Option<(String, Session)> {
    let h = req.headers().get(header::COOKIE)?.to_str().ok()?;
    let id = session::cookie(h, session::COOKIE)?;
    let s = c.sessions.get(id)?;
    Some((id.to_string(), s))
}

/// The connection presented a client certificate the listener verified.
fn has_client_cert(req: &Request<Incoming>) -> bool {
    req.extensions()
        .get::<crate::tls::ConnectionInfo>()
        .is_some_and(|i| i.client_certificate.is_some())
}

/// A POST from another origin is refused whatever it carries (the CSRF
/// token is the main defence; this is the second).
fn foreign_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return false;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    // `null` (a privacy setting, a sandboxed frame) names no origin: the
    // CSRF token and the SameSite=Strict cookie still decide
    if origin == "null" {
        return false;
    }
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin_host.is_none() || origin_host != host
}

async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Answer> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "This address takes a form post.",
            None,
        ));
    }
    let body = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The form could not be read.",
                None,
            )
        })?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| {
        problem(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The form is not UTF-8.",
            None,
        )
    })?;
    crate::kms::form::decode(text).map_err(|_| {
        problem(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The form is not well encoded.",
            None,
        )
    })
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The form's CSRF token matches the session's.
fn csrf_ok(form: &[(String, String)], s: &Session) -> bool {
    field(form, "csrf").is_some_and(|t| session::same_secret(t, &s.csrf))
}

/// A posted form that carries the session's CSRF token, or the answer that
/// refuses it (`then` tells the user what to do; `csrf` re-arms the page's
/// forms when the session is still good).
async fn checked_form(
    req: Request<Incoming>,
    s: &Session,
    then: &str,
    csrf: Option<&str>,
) -> Result<Vec<(String, String)>, Answer> {
    let form = read_form(req).await?;
    if !csrf_ok(&form, s) {
        let message = format!("The form's CSRF token is missing or wrong{then}");
        return Err(problem(StatusCode::FORBIDDEN, "Refused", &message, csrf));
    }
    Ok(form)
}

async fn handle(c: &Arc<Console>, peer: SocketAddr, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/static/console.css" && method == Method::GET {
        return answer(StatusCode::OK, "text/css; charset=utf-8", CSS);
    }
    if path == "/favicon.ico" && method == Method::GET {
        // no icon: an empty answer instead of a 404 in every browser console
        return answer(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "");
    }
    if method != Method::GET && method != Method::POST {
        let mut r = problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "GET and POST only.",
            None,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return r;
    }
    let mut current = current_session(c, &req);
    let mut new_cookie = None;
    // with mTLS a verified certificate logs in: a session is made for it
    // (its CSRF token is what the forms need)
    if c.mtls && has_client_cert(&req) && !current.as_ref().is_some_and(|(_, s)| s.authed) {
        let (id, s) = c.sessions.create(true);
        new_cookie = Some(session::set_cookie(&id, c.secure));
        current = Some((id, s));
    }
    let authed = current.as_ref().filter(|(_, s)| s.authed);
    if method == Method::POST && foreign_origin(&req) {
        return problem(
            StatusCode::FORBIDDEN,
            "Refused",
            "A form from another origin was refused.",
            None,
        );
    }
    match (method, path.as_str()) {
        (Method::GET, "/login") => {
            if authed.is_some() {
                return redirect("/routes", new_cookie);
            }
            let (s, cookie) = match current {
                Some((_, s)) => (s, None),
                None => {
                    let (id, s) = c.sessions.create(false);
                    (s, Some(session::set_cookie(&id, c.secure)))
                }
            };
            with_cookie(
                html(
                    StatusCode::OK,
                    html::page("Log in", "", None, &pages::login(&s.csrf, None)),
                ),
                cookie,
            )
        }
        (Method::POST, "/login") => {
            let Some((id, s)) = current else {
                return problem(
                    StatusCode::FORBIDDEN,
                    "Session expired",
                    "The log-in form has expired: open the log-in page again.",
                    None,
                );
            };
            let form = match checked_form(req, &s, ": open the log-in page again.", None).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            let given = field(&form, "token").unwrap_or("");
            if session::same_secret(given.trim(), &c.token) {
                // a new id on log-in: a session id known before is worth nothing
                c.sessions.remove(&id);
                let (new_id, _) = c.sessions.create(true);
                tracing::info!(%peer, "console: logged in");
                return redirect("/routes", Some(session::set_cookie(&new_id, c.secure)));
            }
            tracing::warn!(%peer, "console: log-in refused (wrong token)");
            // a little slower for every wrong guess
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            html(
                StatusCode::UNAUTHORIZED,
                html::page(
                    "Log in",
                    "",
                    None,
                    &pages::login(&s.csrf, Some("That token is not the console's token.")),
                ),
            )
        }
        (Method::POST, "/logout") => {
            let Some((id, s)) = current else {
                return redirect("/login", Some(session::clear_cookie(c.secure)));
            };
            if let Err(r) = checked_form(req, &s, ".", None).await {
                return r;
            }
            c.sessions.remove(&id);
            redirect("/login", Some(session::clear_cookie(c.secure)))
        }
        (Method::GET, "/" | "/routes" | "/findings" | "/keys" | "/audit") => {
            let Some((_, s)) = authed else {
                return redirect("/login", None);
            };
            let csrf = s.csrf.clone();
            let page = match path.as_str() {
                "/" => return redirect("/routes", new_cookie),
                "/routes" => html::page("Routes", "/routes", Some(&csrf), &routes_body(c)),
                "/findings" => {
                    let body = findings_body(c.clone(), &csrf, None).await;
                    html::page("Shadow findings", "/findings", Some(&csrf), &body)
                }
                "/keys" => html::page(
                    "Keys",
                    "/keys",
                    Some(&csrf),
                    &pages::keys(&c.store, c.remote_keys),
                ),
                _ => {
                    let view = audit_view(c.audit.clone()).await;
                    html::page("Audit", "/audit", Some(&csrf), &pages::audit(&view))
                }
            };
            with_cookie(html(StatusCode::OK, page), new_cookie)
        }
        (Method::POST, "/findings/draft") => {
            let Some((_, s)) = authed.cloned() else {
                return problem(
                    StatusCode::UNAUTHORIZED,
                    "Log in first",
                    "Log in to the console to download a draft.",
                    None,
                );
            };
            let then = ": reload the page and try again.";
            let form = match checked_form(req, &s, then, Some(&s.csrf)).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            draft(c.clone(), &form, &s.csrf).await
        }
        (Method::GET, _) | (Method::POST, _) => problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page.",
            authed.map(|(_, s)| s.csrf.as_str()),
        ),
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "GET and POST only.",
            None,
        ),
    }
}

fn routes_body(c: &Console) -> String {
    let active = c.state.policies();
    let now = c.metrics.snapshot();
    pages::routes(
        &active.set,
        &pages::RoutesContext {
            dir: &c.policies.display().to_string(),
            shadow_all: c.shadow_all,
            started: c.started,
            sample_every: c.sample_every,
        },
        &now,
        &c.series,
    )
}

async fn findings_body(c: Arc<Console>, csrf: &str, error: Option<&str>) -> String {
    let summary = tokio::task::spawn_blocking(move || {
        c.findings
            .as_ref()
            .map(|f| (f.file().display().to_string(), f.refresh()))
    })
    .await
    .ok()
    .flatten();
    pages::findings(
        summary.as_ref().map(|(file, s)| (file.as_str(), s)),
        csrf,
        error,
    )
}

/// A key name the draft may carry: it is written into TOML as a string.
fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b':' | b'-'))
}

async fn draft(c: Arc<Console>, form: &[(String, String)], csrf: &str) -> Answer {
    let key = field(form, "key").unwrap_or("default").trim().to_string();
    let selected: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "f")
        .map(|(_, v)| v.clone())
        .collect();
    let again = |c: Arc<Console>, msg: &'static str| async move {
        let body = findings_body(c, csrf, Some(msg)).await;
        html(
            StatusCode::BAD_REQUEST,
            html::page("Shadow findings", "/findings", Some(csrf), &body),
        )
    };
    if !valid_key(&key) {
        return again(
            c,
            "The key name may hold letters, digits and _ . / : - only (at most 128).",
        )
        .await;
    }
    if selected.is_empty() {
        return again(c, "Select at least one finding for the draft.").await;
    }
    let c2 = c.clone();
    let text = tokio::task::spawn_blocking(move || {
        c2.findings.as_ref().and_then(|f| f.draft(&selected, &key))
    })
    .await
    .ok()
    .flatten();
    match text {
        Some(toml) => {
            let mut r = answer(StatusCode::OK, "application/toml; charset=utf-8", toml);
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"sealgate-policy-draft.toml\""),
            );
            r
        }
        None => {
            again(
                c,
                "None of the selected findings is in the capture any more.",
            )
            .await
        }
    }
}

/// Bytes read from the end of the audit file for its last lines.
const TAIL_BYTES: u64 = 64 * 1024;

async fn audit_view(sink: Option<AuditSink>) -> pages::AuditView {
    match sink {
        None => pages::AuditView::Off,
        Some(AuditSink::Stdout) => pages::AuditView::Stdout,
        Some(AuditSink::File(path)) => tokio::task::spawn_blocking(move || {
            let verified = crate::audit::verify_file(&path);
            pages::AuditView::File {
                path: path.display().to_string(),
                verified,
                tail: tail_lines(&path, pages::AUDIT_TAIL),
            }
        })
        .await
        .unwrap_or(pages::AuditView::Off),
    }
}

/// The last `n` complete lines of a file (reading at most its last 64 KiB).
fn tail_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // the first line was cut by where the read began
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}
