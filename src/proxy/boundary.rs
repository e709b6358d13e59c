//! The protocol boundary of a request: which host and method it is really
//! for, whether it really has a body, and how an upstream will read that
//! body. Each check closes a way a sealed field could reach the upstream in
//! clear by a protocol trick rather than by a policy gap.

use bytes::Bytes;
use http::{header, HeaderMap, Request, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::error::{BodyError, ClientError, ProxyError};

fn bad(e: ClientError) -> ProxyError {
    ProxyError::Client(e)
}

/// The host a request is for, lower-cased, port dropped (only when
/// `needed`: some route is scoped to a host), and the authority to report
/// as `X-Forwarded-Host` when it is not the `Host` header. The checks run
/// either way.
///
/// RFC 9112 §3.2: an HTTP/1.1 request without exactly one `Host` is answered
/// 400; §3.2.2: the authority of an absolute-form target wins over `Host`.
/// HTTP/2's `:authority` (the URI's authority here) is the host; a `Host`
/// beside it that names another is malformed (RFC 9113 §8.3.1).
pub(super) fn request_host<B>(
    req: &Request<B>,
    host_routes: bool,
    needed: bool,
) -> Result<(Option<String>, Option<String>), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(bad(ClientError::AmbiguousHost("more than one Host header"))),
        (Some(v), None) => Some(v.to_str().map_err(|_| bad(ClientError::BadHost))?),
        (None, None) => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    if req.version() == Version::HTTP_11 && header_host.is_none() {
        return Err(bad(ClientError::MissingHost(
            "an HTTP/1.1 request needs a Host header",
        )));
    }
    if req.version() == Version::HTTP_2 {
        if let (Some(a), Some(h)) = (authority, header_host) {
            if !a.eq_ignore_ascii_case(h) {
                return Err(bad(ClientError::AmbiguousHost(
                    "the Host header and :authority name different hosts",
                )));
            }
        }
    }
    let chosen = authority.or(header_host);
    if chosen.is_none() && host_routes {
        // HTTP/1.0 without a Host: no host-scoped route could be told apart
        return Err(bad(ClientError::MissingHost(
            "routes here are scoped to hosts: the request must name one",
        )));
    }
    let forwarded = authority
        .filter(|a| Some(*a) != header_host)
        .map(str::to_owned);
    Ok((chosen.filter(|_| needed).map(normalise_host), forwarded))
}

fn normalise_host(h: &str) -> String {
    let h = h.rsplit_once('@').map_or(h, |(_, host)| host);
    let h = if h.starts_with('[') {
        h.find(']').map_or(h, |end| &h[..=end])
    } else {
        h.split(':').next().unwrap_or(h)
    };
    h.to_ascii_lowercase()
}

/// Headers Express (`method-override`), ASP.NET Core and Symfony read as
/// the method the application runs.
const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// True when the request asks the upstream to run a method other than its
/// own: an override header or a `_method` query parameter naming another.
pub(super) fn overrides_method<B>(req: &Request<B>) -> bool {
    let method = req.method().as_str();
    let differs = |v: &[u8]| !v.trim_ascii().eq_ignore_ascii_case(method.as_bytes());
    let by_header = OVERRIDE_HEADERS
        .iter()
        .flat_map(|n| req.headers().get_all(*n).iter())
        .any(|v| differs(v.as_bytes()));
    let by_query = req.uri().query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = name.to_ascii_lowercase();
            // `_method`, `%5fmethod`, `_method[]`: how PHP and Rack read the key
            let name = name.replace("%5f", "_");
            name.starts_with("_method") && differs(value.as_bytes())
        })
    });
    by_header || by_query
}

/// How an upstream may read a body's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// No Content-Type, or one that is not JSON.
    Other,
    /// JSON (any JSON media type, charset UTF-8 or unnamed).
    Json,
    /// JSON Patch: operations whose `path` names a field, which field
    /// selectors cannot seal.
    JsonPatch,
    /// JSON in a form field selectors cannot seal: another charset, JSON
    /// text sequences, JSON lines.
    Unsealable,
}

/// Reads the `Content-Type` of a request body on a sealing route.
///
/// Refused (400) when it is repeated or a list: frameworks disagree on
/// which one counts. JSON is any `*/json`, `*/x-json` or `*/*+json`,
/// whatever the route's `content_types` say: an upstream reads those as
/// JSON, so they are sealed like JSON.
pub(super) fn body_kind(h: &HeaderMap, route_accepts: bool) -> Result<BodyKind, ProxyError> {
    let mut all = h.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = all.next() else {
        return Ok(BodyKind::Other);
    };
    if all.next().is_some() {
        return Err(bad(ClientError::AmbiguousContentType(
            "more than one Content-Type header",
        )));
    }
    let text = value.to_str().map_err(|_| {
        bad(ClientError::AmbiguousContentType(
            "the Content-Type is not text",
        ))
    })?;
    if text.contains(',') {
        return Err(bad(ClientError::AmbiguousContentType(
            "the Content-Type is a list of media types",
        )));
    }
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let subtype = essence.split_once('/').map_or("", |(_, s)| s);
    let charset_ok = parts.all(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        !k.trim().eq_ignore_ascii_case("charset")
            || v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    });
    let json = subtype == "json" || subtype == "x-json" || subtype.ends_with("+json");
    Ok(if subtype == "json-patch+json" {
        BodyKind::JsonPatch
    } else if json || route_accepts {
        if charset_ok {
            BodyKind::Json
        } else {
            BodyKind::Unsealable
        }
    } else if subtype.contains("json") {
        // json-seq, x-ndjson, jsonl…: JSON an upstream may well parse
        BodyKind::Unsealable
    } else {
        BodyKind::Other
    })
}

/// True when the body is content-coded (gzip, br…): its fields cannot be
/// found, so it must not pass a sealing route.
pub(super) fn is_encoded(h: &HeaderMap) -> bool {
    h.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|c| {
            !c.trim_ascii().is_empty() && !c.trim_ascii().eq_ignore_ascii_case(b"identity")
        })
    })
}

/// A request body whose first frame was read to learn whether it is empty;
/// it yields that frame again, then the rest.
pub(super) struct Peeked {
    head: Option<Frame<Bytes>>,
    rest: Option<Incoming>,
}

/// Reads up to the first data frame of `body`: whether the body is empty
/// is decided by the body itself, never by `Content-Length` or
/// `Transfer-Encoding` (an HTTP/2 body needs neither).
pub(super) async fn peek(mut body: Incoming) -> Result<(bool, Peeked), ProxyError> {
    let empty = Peeked {
        head: None,
        rest: None,
    };
    if body.is_end_stream() {
        return Ok((false, empty));
    }
    loop {
        match body.frame().await {
            None => return Ok((false, empty)),
            Some(Err(_)) => return Err(bad(ClientError::Body(BodyError::ReadFailed))),
            Some(Ok(f)) if f.data_ref().is_some_and(Bytes::is_empty) => continue,
            Some(Ok(f)) => {
                let data = f.is_data();
                return Ok((
                    data,
                    Peeked {
                        head: Some(f),
                        rest: Some(body),
                    },
                ));
            }
        }
    }
}

impl Body for Peeked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(f) = self.head.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let head = self
            .head
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + head);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + head);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn kind(values: &[&str], accepts: bool) -> Result<BodyKind, &'static str> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        }
        body_kind(&h, accepts).map_err(|e| e.code())
    }

    #[test]
    fn json_family_types_are_json_whatever_the_route_lists() {
        for t in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
            "text/json",
            "application/x-json",
            "application/merge-patch+json",
            "application/vnd.api+json",
        ] {
            assert_eq!(kind(&[t], false), Ok(BodyKind::Json), "{t}");
        }
        assert_eq!(
            kind(&["application/json-patch+json"], true),
            Ok(BodyKind::JsonPatch)
        );
        assert_eq!(
            kind(&["application/json; charset=utf-16"], true),
            Ok(BodyKind::Unsealable)
        );
        assert_eq!(
            kind(&["application/x-ndjson"], false),
            Ok(BodyKind::Unsealable)
        );
        assert_eq!(kind(&["text/plain"], false), Ok(BodyKind::Other));
        assert_eq!(kind(&[], false), Ok(BodyKind::Other));
        assert_eq!(
            kind(&["text/plain", "application/json"], false),
            Err("ambiguous_content_type")
        );
        assert_eq!(
            kind(&["text/plain, application/json"], false),
            Err("ambiguous_content_type")
        );
    }

    #[test]
    fn overrides_are_seen_in_headers_and_query() {
        let req = |uri: &str, h: Option<(&str, &str)>| {
            let mut b = Request::post(uri);
            if let Some((k, v)) = h {
                b = b.header(k, v);
            }
            b.body(()).unwrap()
        };
        assert!(overrides_method(&req(
            "/u",
            Some(("X-HTTP-Method-Override", "PATCH"))
        )));
        assert!(overrides_method(&req("/u", Some(("x-http-method", "put")))));
        assert!(overrides_method(&req(
            "/u",
            Some(("X-Method-Override", "PUT"))
        )));
        assert!(overrides_method(&req("/u?a=1&_method=PATCH", None)));
        assert!(overrides_method(&req("/u?%5Fmethod=PATCH", None)));
        assert!(!overrides_method(&req(
            "/u",
            Some(("X-HTTP-Method-Override", "POST"))
        )));
        assert!(!overrides_method(&req("/u?method=PATCH", None)));
    }

    #[test]
    fn content_coding_other_than_identity_is_encoded() {
        let mut h = HeaderMap::new();
        assert!(!is_encoded(&h));
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!is_encoded(&h));
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity, gzip"),
        );
        assert!(is_encoded(&h));
    }
}
