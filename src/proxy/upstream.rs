//! The client side to the one upstream: `http://` or `https://` (system
//! roots or a given CA, SNI from the URL or `[upstream_tls] server_name`),
//! HTTP/1.1 keep-alive or, with `upstream_http2`, HTTP/2 (ALPN `h2` over
//! TLS, prior-knowledge h2c over plaintext). Connect and response timeouts
//! map to 502 / 504.
//!
//! Two ways out. A plaintext HTTP/1.1 upstream is reached over a connection
//! that the client's connection owns ([`OwnedConn`]): its requests follow
//! each other on it with no pool checkout, no shared lock and no hand-off
//! per request — what a thread-per-core proxy does, and most of what
//! separated sealgate's pass-through from nginx's. TLS and HTTP/2 upstreams,
//! and HTTP/2 clients (whose streams run at once), use the pooled client
//! (hyper-util's legacy client over hyper-rustls).

use http::Uri;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

use super::error::{ClientError, ProxyError, UpstreamError};
use super::ProxyBody;
use crate::config::UpstreamTls;

/// How to reach the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Base URL (`http://` or `https://host:port[/prefix]`).
    pub base: Uri,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Response-head timeout.
    pub timeout: Duration,
    /// Trust and name for an `https://` upstream.
    pub tls: UpstreamTls,
    /// Speak HTTP/2 (ALPN `h2` over TLS, h2c over plaintext).
    pub http2: bool,
}

/// The upstream: base URL and a pooled client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    timeout: Duration,
    connect_timeout: Duration,
    /// Plaintext HTTP/1.1: client connections own their upstream connection.
    direct: bool,
}

/// The upstream connection one client connection owns (plaintext HTTP/1.1
/// upstreams): made at its first request, reused by the next ones, closed
/// with the client's connection. An HTTP/1 client sends one request at a
/// time, so the slot is only ever contended by a misbehaving caller, and
/// then the pooled client serves.
#[derive(Default)]
pub struct OwnedConn {
    sender: std::sync::Mutex<Option<http1::SendRequest<ProxyBody>>>,
}

impl OwnedConn {
    fn take(&self) -> Option<http1::SendRequest<ProxyBody>> {
        self.sender.lock().ok()?.take()
    }

    fn put(&self, sender: http1::SendRequest<ProxyBody>) {
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(sender);
        }
    }
}

impl Upstream {
    /// Builds the client for `base` (http://host:port[/prefix]), plaintext
    /// HTTP/1.1.
    pub fn new(base: &Uri, connect_timeout: Duration, timeout: Duration) -> Result<Self, String> {
        Self::with_settings(&UpstreamSettings {
            base: base.clone(),
            connect_timeout,
            timeout,
            tls: UpstreamTls::default(),
            http2: false,
        })
    }

    /// Builds the client from full settings (TLS, HTTP/2).
    pub fn with_settings(s: &UpstreamSettings) -> Result<Self, String> {
        let base = &s.base;
        let scheme = base.scheme().cloned().ok_or("upstream URL has no scheme")?;
        let https = scheme == http::uri::Scheme::HTTPS;
        if !https && scheme != http::uri::Scheme::HTTP {
            return Err("the upstream URL must be http:// or https://".into());
        }
        let authority = base
            .authority()
            .cloned()
            .ok_or("upstream URL has no host")?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(s.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls_config = if https {
            crate::tls::upstream_client_config(&s.tls).map_err(|e| e.to_string())?
        } else {
            // never used for http://, but the connector wants one
            empty_client_config()?
        };
        let b = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        let b = match crate::tls::upstream_server_name(&s.tls).map_err(|e| e.to_string())? {
            Some(name) => b.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => b,
        };
        let connector = if s.http2 {
            b.enable_http1().enable_http2().wrap_connector(http)
        } else {
            b.enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // over TLS the version comes from ALPN; plaintext h2 needs prior knowledge
            .http2_only(s.http2 && !https)
            .build(connector);
        Ok(Self {
            client,
            direct: !https && !s.http2,
            scheme,
            authority,
            base_path: base.path().trim_end_matches('/').to_string(),
            timeout: s.timeout,
            connect_timeout: s.connect_timeout,
        })
    }

    /// The upstream authority (for the Host header).
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The upstream URI for a client's path and query.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, ProxyError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()
            .map_err(|_| bad_target())
    }

    /// The upstream URI for the client's own path and query, unchanged:
    /// without a base path it shares the client's bytes instead of formatting a new string.
    pub fn uri_passing(
        &self,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<Uri, ProxyError> {
        match path_and_query {
            Some(pq) if self.base_path.is_empty() => {
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(self.scheme.clone());
                parts.authority = Some(self.authority.clone());
                parts.path_and_query = Some(pq.clone());
                Uri::from_parts(parts).map_err(|_| bad_target())
            }
            _ => self.uri_for(path_and_query.map_or("/", |p| p.as_str())),
        }
    }

    /// The response timeout (also bounds buffered body reads).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends the request; waits for the response head up to the timeout.
    /// With `owned` (the client connection's own upstream connection) and
    /// a plaintext HTTP/1.1 upstream, the request goes out on it;
    /// anything else through the pool.
    pub async fn send(
        &self,
        owned: Option<&OwnedConn>,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<Incoming>, ProxyError> {
        let owned = owned.filter(|_| self.direct);
        let sent = match owned {
            Some(conn) => tokio::time::timeout(self.timeout, self.send_owned(conn, req)).await,
            None => {
                tokio::time::timeout(self.timeout, async {
                    self.client.request(req).await.map_err(|e| {
                        let connect = e.is_connect();
                        Failed {
                            error: Box::new(e),
                            connect,
                        }
                    })
                })
                .await
            }
        };
        match sent {
            Err(_) => Err(ProxyError::Upstream(UpstreamError::HeadTimeout {
                millis: self.timeout.as_millis(),
            })),
            Ok(Err(failed)) => Err(failed.report()),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// One request on the client connection's own upstream connection,
    /// made (or made again, if the upstream closed it) as needed. A request
    /// the closed connection never took is sent once more on a new one;
    /// one it took is not (it may have been acted on).
    async fn send_owned(
        &self,
        conn: &OwnedConn,
        mut req: http::Request<ProxyBody>,
    ) -> Result<http::Response<Incoming>, Failed> {
        // the connection is the upstream's own: the target in origin form
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = req.uri().path_and_query().cloned();
        if let Ok(origin) = Uri::from_parts(parts) {
            *req.uri_mut() = origin;
        }
        // connecting is rare and its future large: boxed, so the request's
        // own future (moved by value into hyper) stays small
        let mut sender = match conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => Box::pin(self.connect()).await?,
        };
        if sender.ready().await.is_err() {
            sender = Box::pin(self.connect()).await?;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                conn.put(sender);
                Ok(resp)
            }
            Err(mut e) => match e.take_message() {
                Some(req) => {
                    let mut sender = Box::pin(self.connect()).await?;
                    let resp = sender.send_request(req).await.map_err(Failed::exchange)?;
                    conn.put(sender);
                    Ok(resp)
                }
                None => Err(Failed::exchange(e.into_error())),
            },
        }
    }

    /// A new HTTP/1.1 connection to a plaintext upstream, driven by a task
    /// of its own until either side closes it.
    async fn connect(&self) -> Result<http1::SendRequest<ProxyBody>, Failed> {
        let host = self.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = self.authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| Failed::connect(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
        .map_err(Failed::connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(Failed::connect)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Why a request did not reach the upstream or got no answer, before it is
/// reported.
struct Failed {
    error: Box<dyn std::error::Error + Send + Sync>,
    /// Failed while connecting (refused, unreachable, timed out).
    connect: bool,
}

impl Failed {
    fn connect(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            error: Box::new(e),
            connect: true,
        }
    }

    fn exchange(e: hyper::Error) -> Self {
        Self {
            error: Box::new(e),
            connect: false,
        }
    }

    /// The warning that names the request and the cause, and the error the
    /// client gets.
    fn report(self) -> ProxyError {
        let e: &(dyn std::error::Error + 'static) = &*self.error;
        // hyper-util's own Display is only "client error (Connect)":
        // the reason is further down the source chain
        let chain = error_chain(e);
        // no request span: the warning names the request itself
        let request_id = crate::audit::current_request()
            .map(|r| r.request_id)
            .unwrap_or_default();
        let msg = if let Some(tls) = rustls_error(e) {
            tracing::warn!(
                request_id,
                error = %chain,
                tls_error = %tls,
                "upstream TLS handshake failed: {}",
                tls_reason(tls)
            );
            "TLS to the upstream failed (certificate not trusted, wrong name, or no common protocol)"
        } else {
            tracing::warn!(request_id, error = %chain, "upstream request failed");
            if self.connect {
                "upstream refused or unreachable"
            } else {
                "upstream connection failed"
            }
        };
        ProxyError::Upstream(UpstreamError::Unavailable(msg))
    }
}

/// A client config with no roots, which trusts nothing: the unused TLS side
/// of an `http://` upstream's connector.
pub(crate) fn empty_client_config() -> Result<rustls::ClientConfig, String> {
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    )
}

/// The errors of a chain, outermost first. An `io::Error` wrapping
/// another error does not always return it from `source()`, so look inside.
fn chain_of<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        out.push(err);
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        // an io::Error's `source()` skips its payload: take the payload
        cur = inner.or_else(|| err.source());
    }
    out
}

/// The whole chain as one line, `outer: inner: …`, without repeating a
/// message an outer error already includes.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    for err in chain_of(e) {
        let text = err.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The rustls error somewhere in the chain, if the failure was TLS.
pub(crate) fn rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    chain_of(e)
        .into_iter()
        .find_map(|err| err.downcast_ref::<rustls::Error>())
}

/// What an operator should read from a TLS failure: the cause in words and
/// the setting that fixes it, then rustls's own text (names, times).
pub(crate) fn tls_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "the upstream's certificate is not signed by a CA sealgate trusts (unknown CA); \
                 set [upstream_tls] ca_file (--upstream-ca) to the CA that issued it"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the upstream's certificate is not valid for the name sealgate checks (wrong \
                 name); fix the upstream URL's host or set [upstream_tls] server_name \
                 (--upstream-server-name)"
            }
            C::Expired | C::ExpiredContext { .. } => "the upstream's certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the upstream's certificate is not valid yet (check both clocks)"
            }
            C::BadSignature => "the upstream's certificate chain has a bad signature",
            _ => "the upstream's certificate was refused",
        },
        rustls::Error::AlertReceived(_) => "the upstream refused the handshake",
        rustls::Error::PeerIncompatible(_) => {
            "the upstream shares no TLS version, cipher suite or ALPN protocol with sealgate"
        }
        _ => "TLS error",
    };
    format!("{why} ({e})")
}

/// A request target that does not make a valid upstream URI.
fn bad_target() -> ProxyError {
    ProxyError::Client(ClientError::BadTarget)
}
