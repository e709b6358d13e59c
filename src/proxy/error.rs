//! Typed proxy errors, and the one place one becomes an HTTP response.
//!
//! Inside the proxy an error says *what* went wrong and *whose* fault it is
//! (the side is the variant: the client, the upstream, the key store); it
//! carries no status and no code. [`ProxyError::answer`] is the only place
//! that chooses the HTTP status, the stable code and the message; the JSON
//! body also names the request id, and never carries key material or the
//! plaintext of a field.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::borrow::Cow;

use super::ProxyBody;
use crate::keys::KeyError;
use crate::policy::RewriteError;

/// Which way a body was travelling when it failed: from the client
/// (request) or from the upstream (response). The same failure is the
/// client's fault (4xx) on one side and the upstream's (502) on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySide {
    /// The client's request body.
    Request,
    /// The upstream's response body.
    Response,
}

/// A proxy error, by the side it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProxyError {
    /// The client sent something refused (4xx).
    Client(ClientError),
    /// The upstream failed or sent something refused (502/504).
    Upstream(UpstreamError),
    /// The key store refused or failed (503/500).
    KeyStore(KeyStoreError),
}

/// What the client got wrong.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientError {
    /// More than one host named (two `Host` headers, or `Host` against `:authority`).
    AmbiguousHost(&'static str),
    /// The `Host` header is not text.
    BadHost,
    /// No host where one is needed.
    MissingHost(&'static str),
    /// No route here is for the host named (`unmatched_hosts = "refuse"`).
    MisdirectedRequest,
    /// A path spelling the upstream might read differently; the reason.
    AmbiguousPath(&'static str),
    /// A method-override header on a path a policy covers.
    MethodOverrideRefused,
    /// The request target makes no valid upstream URI.
    BadTarget,
    /// A sealed query or path parameter (`"query"`, `"path"`, `"URL"`) is
    /// not valid percent-encoded UTF-8.
    InvalidParameter(&'static str),
    /// The route's rate limit is exceeded; seconds to wait.
    RateLimited {
        /// Seconds before a retry may pass.
        retry_after: u64,
    },
    /// A body on a method the named route does not seal, on a path where
    /// another method's route seals request fields.
    UnsealedMethodBody {
        /// The route that seals bodies on this path.
        route: String,
    },
    /// The `Content-Type` is ambiguous; why.
    AmbiguousContentType(&'static str),
    /// A sealing route got a body that is not JSON.
    NotJson,
    /// A sealing route got JSON that is not one UTF-8 JSON text.
    NotOneJsonText,
    /// A JSON Patch, which names fields by path.
    JsonPatch,
    /// A compressed body where fields must be sealed.
    CompressedBody,
    /// The body, once sealed, exceeds the limit (in bytes).
    SealedBodyTooLarge {
        /// The route's body limit.
        limit: usize,
    },
    /// A value a selector picked is not valid JSON.
    SelectedValueNotJson,
    /// The request body failed.
    Body(BodyError),
}

/// What the upstream got wrong.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No response head within the timeout (in milliseconds).
    HeadTimeout {
        /// The timeout.
        millis: u128,
    },
    /// The response body did not arrive within the timeout.
    BodyTimeout,
    /// The upstream could not be reached or failed; why, in words.
    Unavailable(&'static str),
    /// The response is not JSON on a route that must seal it.
    NotJson,
    /// A compressed response on a route that must rewrite it.
    Compressed,
    /// The response body failed.
    Body(BodyError),
}

/// A body that failed, on either side.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BodyError {
    /// Longer than the limit (in bytes).
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// It could not be read.
    ReadFailed,
    /// It is not JSON the rewrite can walk; the parser's reason (never a value).
    InvalidJson(String),
    /// A selected field did not open; the message names the route, the
    /// field's place and the reason, never the value.
    FieldDoesNotOpen(Cow<'static, str>),
}

/// What the key store refused or failed at.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The route's key does not exist.
    KeyNotFound,
    /// The key exists but cannot be used now; the message.
    KeyUnavailable(String),
    /// The store failed; the message.
    Failure(String),
}

/// What the edge answers for one error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine-readable code.
    pub code: &'static str,
    /// The human message: never a secret or a field value.
    pub message: Cow<'static, str>,
    /// Whose fault, as the body's `source` says it.
    pub source: &'static str,
    /// Seconds to wait before retrying (429).
    pub retry_after: Option<u64>,
}

impl ProxyError {
    /// A body failure on `side`: the client's on the request, the upstream's
    /// on the response.
    pub fn body(side: BodySide, e: BodyError) -> Self {
        match side {
            BodySide::Request => Self::Client(ClientError::Body(e)),
            BodySide::Response => Self::Upstream(UpstreamError::Body(e)),
        }
    }

    /// A key-store error of the data-key cache.
    pub fn from_key(e: KeyError) -> Self {
        match e {
            KeyError::CmkNotFound => Self::KeyStore(KeyStoreError::KeyNotFound),
            KeyError::CmkDisabled
            | KeyError::CmkPendingDelete
            | KeyError::CmkPendingImport
            | KeyError::VersionRetired => Self::KeyStore(KeyStoreError::KeyUnavailable(format!(
                "the key cannot be used: {e}"
            ))),
            // a remote provider that cannot be reached: the message names the
            // provider and what failed, never a credential
            KeyError::Unavailable(why) => Self::KeyStore(KeyStoreError::KeyUnavailable(why)),
            // a wrapped key that does not unwrap came with the stored field
            KeyError::DoesNotOpen | KeyError::VersionNotFound => {
                Self::Upstream(UpstreamError::Body(BodyError::FieldDoesNotOpen(
                    "a sealed field does not open".into(),
                )))
            }
            other => Self::KeyStore(KeyStoreError::Failure(other.to_string())),
        }
    }

    /// A failed body rewrite on `side`: the field's own error, or the body
    /// is not JSON.
    pub fn from_rewrite(e: RewriteError<ProxyError>, side: BodySide) -> Self {
        match e {
            RewriteError::Field(p) => p,
            other => Self::body(
                side,
                BodyError::InvalidJson(format!("body cannot be processed: {other}")),
            ),
        }
    }

    /// Whether the upstream's body is not JSON at all (a route that only
    /// opens fields passes such a body: it holds no envelope).
    pub fn is_upstream_not_json(&self) -> bool {
        matches!(
            self,
            Self::Upstream(UpstreamError::Body(BodyError::InvalidJson(_)))
        )
    }

    /// Whether the key store, not the field, is at fault.
    pub fn is_key_store(&self) -> bool {
        matches!(self, Self::KeyStore(_))
    }

    /// Replaces the message of a field that did not open (or whose key is
    /// unavailable) with one naming its place; other errors are left.
    /// Returns whether it applied.
    pub fn describe_field(&mut self, text: impl FnOnce() -> String) -> bool {
        match self {
            Self::Client(ClientError::Body(BodyError::FieldDoesNotOpen(m)))
            | Self::Upstream(UpstreamError::Body(BodyError::FieldDoesNotOpen(m))) => {
                *m = text().into();
                true
            }
            Self::KeyStore(KeyStoreError::KeyUnavailable(m)) => {
                *m = text();
                true
            }
            _ => false,
        }
    }

    /// The stable code (also the metrics reason of a field that did not open).
    pub fn code(&self) -> &'static str {
        self.answer().code
    }

    /// The status, code and message this error is answered with: the one
    /// place they are chosen.
    pub fn answer(&self) -> Answer {
        use StatusCode as S;
        let (status, code, message, source): (_, _, Cow<'static, str>, _) = match self {
            Self::Client(e) => {
                let (s, c, m) = match e {
                    ClientError::AmbiguousHost(m) => (S::BAD_REQUEST, "ambiguous_host", (*m).into()),
                    ClientError::BadHost => (
                        S::BAD_REQUEST,
                        "bad_host",
                        "the Host header is not a host name".into(),
                    ),
                    ClientError::MissingHost(m) => (S::BAD_REQUEST, "missing_host", (*m).into()),
                    ClientError::MisdirectedRequest => (
                        S::MISDIRECTED_REQUEST,
                        "misdirected_request",
                        "no route here is for this host".into(),
                    ),
                    ClientError::AmbiguousPath(why) => (
                        S::BAD_REQUEST,
                        "ambiguous_path",
                        format!("request path refused: {why}").into(),
                    ),
                    ClientError::MethodOverrideRefused => (
                        S::BAD_REQUEST,
                        "method_override_refused",
                        "a method override is refused on a path a policy covers".into(),
                    ),
                    ClientError::BadTarget => (
                        S::BAD_REQUEST,
                        "bad_request_target",
                        "request target is not a valid URI".into(),
                    ),
                    ClientError::InvalidParameter(what) => (
                        S::BAD_REQUEST,
                        "invalid_parameter",
                        format!("a sealed {what} parameter is not valid percent-encoded UTF-8")
                            .into(),
                    ),
                    ClientError::RateLimited { .. } => (
                        S::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "the route's rate limit is exceeded".into(),
                    ),
                    ClientError::UnsealedMethodBody { route } => (
                        S::BAD_REQUEST,
                        "unsealed_method_body",
                        format!(
                            "route '{route}' seals request bodies on this path for other methods; this method may not carry one"
                        )
                        .into(),
                    ),
                    ClientError::AmbiguousContentType(m) => {
                        (S::BAD_REQUEST, "ambiguous_content_type", (*m).into())
                    }
                    ClientError::NotJson => (
                        S::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        "this route seals fields and needs a JSON body".into(),
                    ),
                    ClientError::NotOneJsonText => (
                        S::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        "JSON here must be one UTF-8 JSON text to be sealed".into(),
                    ),
                    ClientError::JsonPatch => (
                        S::UNSUPPORTED_MEDIA_TYPE,
                        "json_patch_refused",
                        "a JSON Patch names fields by path, which this route cannot seal; send the fields as JSON".into(),
                    ),
                    ClientError::CompressedBody => (
                        S::UNSUPPORTED_MEDIA_TYPE,
                        "compressed_body",
                        "a compressed body cannot be sealed; send it with no Content-Encoding"
                            .into(),
                    ),
                    ClientError::SealedBodyTooLarge { limit } => (
                        S::PAYLOAD_TOO_LARGE,
                        "sealed_body_too_large",
                        format!("the request body sealed exceeds {limit} bytes").into(),
                    ),
                    ClientError::SelectedValueNotJson => (
                        S::BAD_REQUEST,
                        "invalid_json",
                        "a selected value is not valid JSON".into(),
                    ),
                    ClientError::Body(b) => match b {
                        BodyError::TooLarge { limit } => (
                            S::PAYLOAD_TOO_LARGE,
                            "body_too_large",
                            format!("request body exceeds {limit} bytes").into(),
                        ),
                        BodyError::ReadFailed => (
                            S::BAD_REQUEST,
                            "body_read_failed",
                            "request body could not be read".into(),
                        ),
                        BodyError::InvalidJson(m) => (S::BAD_REQUEST, "invalid_json", m.clone().into()),
                        BodyError::FieldDoesNotOpen(m) => {
                            (S::BAD_REQUEST, "field_does_not_open", m.clone())
                        }
                    },
                };
                (s, c, m, "client")
            }
            Self::Upstream(e) => {
                let (s, c, m) = match e {
                    UpstreamError::HeadTimeout { millis } => (
                        S::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        format!("upstream sent no response within {millis} ms").into(),
                    ),
                    UpstreamError::BodyTimeout => (
                        S::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        "upstream body too slow".into(),
                    ),
                    UpstreamError::Unavailable(m) => {
                        (S::BAD_GATEWAY, "upstream_unavailable", (*m).into())
                    }
                    UpstreamError::NotJson => (
                        S::BAD_GATEWAY,
                        "upstream_not_json",
                        "the upstream response must be JSON for this route to seal it".into(),
                    ),
                    UpstreamError::Compressed => (
                        S::BAD_GATEWAY,
                        "upstream_compressed",
                        "the upstream sent a compressed body on a route whose response must be rewritten".into(),
                    ),
                    UpstreamError::Body(b) => match b {
                        BodyError::TooLarge { limit } => (
                            S::BAD_GATEWAY,
                            "upstream_body_too_large",
                            format!("upstream body exceeds {limit} bytes").into(),
                        ),
                        BodyError::ReadFailed => (
                            S::BAD_GATEWAY,
                            "upstream_body_failed",
                            "upstream body could not be read".into(),
                        ),
                        BodyError::InvalidJson(m) => {
                            (S::BAD_GATEWAY, "upstream_invalid_json", m.clone().into())
                        }
                        BodyError::FieldDoesNotOpen(m) => {
                            (S::BAD_GATEWAY, "field_does_not_open", m.clone())
                        }
                    },
                };
                (s, c, m, "upstream")
            }
            Self::KeyStore(e) => {
                let (s, c, m) = match e {
                    KeyStoreError::KeyNotFound => (
                        S::SERVICE_UNAVAILABLE,
                        "key_not_found",
                        "the route's key does not exist".into(),
                    ),
                    KeyStoreError::KeyUnavailable(m) => {
                        (S::SERVICE_UNAVAILABLE, "key_unavailable", m.clone().into())
                    }
                    KeyStoreError::Failure(m) => (
                        S::INTERNAL_SERVER_ERROR,
                        "key_store_failure",
                        m.clone().into(),
                    ),
                };
                (s, c, m, "key_store")
            }
        };
        let retry_after = match self {
            Self::Client(ClientError::RateLimited { retry_after }) => Some(*retry_after),
            _ => None,
        };
        Answer {
            status,
            code,
            message,
            source,
            retry_after,
        }
    }

    /// Renders the JSON error response.
    pub fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        self.answer().into_response(request_id)
    }
}

impl Answer {
    /// The JSON error response: `{"error":{"code","message","source","request_id"}}`.
    pub fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "source": self.source,
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
        let a = self.answer();
        write!(f, "{} ({}): {}", a.code, a.status.as_u16(), a.message)
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_failure_is_the_client_s_on_the_request_and_the_upstream_s_on_the_response() {
        let req = ProxyError::body(BodySide::Request, BodyError::TooLarge { limit: 10 }).answer();
        assert_eq!(
            (req.status, req.code, req.source),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "client")
        );
        let resp = ProxyError::body(BodySide::Response, BodyError::TooLarge { limit: 10 }).answer();
        assert_eq!(
            (resp.status, resp.code, resp.source),
            (
                StatusCode::BAD_GATEWAY,
                "upstream_body_too_large",
                "upstream"
            )
        );
        let resp = ProxyError::body(BodySide::Response, BodyError::InvalidJson("x".into()));
        assert!(resp.is_upstream_not_json());
        let req = ProxyError::body(BodySide::Request, BodyError::InvalidJson("x".into()));
        assert!(!req.is_upstream_not_json());
        assert_eq!(req.code(), "invalid_json");
    }

    #[test]
    fn key_errors_keep_their_codes() {
        assert_eq!(
            ProxyError::from_key(KeyError::CmkNotFound).answer().status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ProxyError::from_key(KeyError::CmkDisabled).code(),
            "key_unavailable"
        );
        let dne = ProxyError::from_key(KeyError::DoesNotOpen).answer();
        assert_eq!(
            (dne.status, dne.code, dne.source),
            (StatusCode::BAD_GATEWAY, "field_does_not_open", "upstream")
        );
    }

    #[test]
    fn only_field_failures_take_a_description() {
        let mut e = ProxyError::from_key(KeyError::VersionRetired);
        assert!(e.describe_field(|| "the field at $.ssn".into()));
        assert_eq!(e.answer().message, "the field at $.ssn");
        let mut e = ProxyError::Client(ClientError::BadHost);
        assert!(!e.describe_field(|| "no".into()));
        assert_eq!(e.answer().message, "the Host header is not a host name");
    }

    #[test]
    fn a_rate_limit_answers_with_retry_after() {
        let resp =
            ProxyError::Client(ClientError::RateLimited { retry_after: 3 }).into_response("rid-1");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(resp.headers()["x-request-id"], "rid-1");
    }
}
