//! The one place a proxy error becomes an HTTP response.
//!
//! Every error carries where it came from (the client, the upstream, the key
//! store, sealgate itself); that decides 4xx vs 502/504 vs 5xx. Bodies are
//! JSON with a stable code and the request id, and never carry key material
//! or the plaintext of a field.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something we refuse (4xx).
    Client,
    /// The upstream failed or sent something we refuse (502/504).
    Upstream,
    /// The key store refused or failed.
    KeyStore,
    /// sealgate itself.
    Internal,
}

/// A proxy error with its HTTP status and stable code.
#[derive(Debug, Clone)]
pub struct ProxyError {
    /// Where it came from.
    pub source: Source,
    /// HTTP status to answer with.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human message: never a secret or a field value.
    pub message: String,
    /// Seconds to wait before retrying (429).
    pub retry_after: Option<u64>,
}

impl ProxyError {
    /// A client error (4xx).
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            source: Source::Client,
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// An upstream error (502 or 504).
    pub fn upstream(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            source: Source::Upstream,
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A key-store error.
    pub fn key_store(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            source: Source::KeyStore,
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// An internal error (500).
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            source: Source::Internal,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Renders the JSON error response.
    pub fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "source": match self.source {
                    Source::Client => "client",
                    Source::Upstream => "upstream",
                    Source::KeyStore => "key_store",
                    Source::Internal => "sealgate",
                },
                "request_id": request_id,
            }
        });
        let bytes = Bytes::from(body.to_string());
        let mut resp = Response::new(Full::new(bytes).map_err(|e| match e {}).boxed());
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(super::headers::REQUEST_ID, v);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for ProxyError {}
