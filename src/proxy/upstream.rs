//! The pooled client to the one upstream (hyper-util's legacy client,
//! HTTP/1.1 keep-alive), with connect and response timeouts mapped to
//! 502 / 504.

use http::{StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

use super::error::ProxyError;
use super::ProxyBody;

/// The upstream: base URL and a pooled client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, ProxyBody>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    timeout: Duration,
}

impl Upstream {
    /// Builds the client for `base` (http://host:port[/prefix]).
    pub fn new(base: &Uri, connect_timeout: Duration, timeout: Duration) -> Result<Self, String> {
        let scheme = base.scheme().cloned().ok_or("upstream URL has no scheme")?;
        if scheme != http::uri::Scheme::HTTP {
            return Err("only http:// upstreams are supported in this build".into());
        }
        let authority = base
            .authority()
            .cloned()
            .ok_or("upstream URL has no host")?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
            client,
            scheme,
            authority,
            base_path: base.path().trim_end_matches('/').to_string(),
            timeout,
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
            .map_err(|_| {
                ProxyError::client(
                    StatusCode::BAD_REQUEST,
                    "bad_request_target",
                    "request target is not a valid URI",
                )
            })
    }

    /// The response timeout (also bounds buffered body reads).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends the request; waits for the response head up to the timeout.
    pub async fn send(
        &self,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<Incoming>, ProxyError> {
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::upstream(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "upstream sent no response within {} ms",
                    self.timeout.as_millis()
                ),
            )),
            Ok(Err(e)) => {
                let msg = if e.is_connect() {
                    "upstream refused or unreachable"
                } else {
                    "upstream connection failed"
                };
                tracing::warn!(error = %e, "upstream request failed");
                Err(ProxyError::upstream(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    msg,
                ))
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}
