//! Header handling between client and upstream: hop-by-hop removal,
//! X-Forwarded-*, request ids.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

/// The request-id header: kept if the client sent a sane one, else made.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// `Connection` header names. `TE: trailers` is kept: it asks the next hop
/// for trailers, which we pass on.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // most messages carry none: one look at each name (standard names
    // compare as enum tags) instead of eight hashed removals
    if !h
        .keys()
        .any(|k| k == header::TE || HOP_BY_HOP.iter().any(|hop| hop == k))
    {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
    let keep_te = h.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    h.remove(header::TE);
    if keep_te {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Returns the client's request id if it is sane (1–128 visible ASCII
/// characters), or a new UUID.
pub fn request_id(h: &HeaderMap) -> String {
    match h.get(&REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(s) if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            s.to_string()
        }
        _ => new_request_id(),
    }
}

/// A UUID-shaped id: a random per-process prefix and a counter. Unique
/// within the process and across restarts, without a `getrandom` system
/// call per request (a fresh v4 UUID costs one).
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let u = uuid::Uuid::new_v4().to_string();
        u[..23].to_string()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff;
    let mut id = String::with_capacity(prefix.len() + 13);
    id.push_str(prefix);
    id.push('-');
    for shift in (0..12).rev() {
        let digit = (n >> (shift * 4)) & 0xf;
        id.push(char::from(b"0123456789abcdef"[digit as usize]));
    }
    id
}

/// The client's address as `X-Forwarded-For` spells it. IPv4 by hand: the
/// standard formatter's padding support costs more than the rest of the
/// header work of a request.
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

/// Adds X-Forwarded-For (appended), -Proto and -Host.
pub fn add_forwarded(
    h: &mut HeaderMap,
    client: SocketAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    let ip = ip_text(client.ip());
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR, v);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST, host);
    }
}

/// The media type of a Content-Type header, lower-cased, parameters dropped.
pub fn media_type(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// True for `application/json` and any `*/*+json`.
pub fn is_json(media: Option<&str>) -> bool {
    media.is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// True for newline-delimited JSON (one JSON document, a record, per line):
/// `application/x-ndjson`, `application/ndjson`, `application/jsonl`,
/// `application/x-jsonlines`, `application/jsonlines`.
pub fn is_json_lines(media: Option<&str>) -> bool {
    matches!(
        media,
        Some(
            "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/jsonlines"
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_spells_addresses_as_the_standard_formatter_does() {
        let samples = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.9",
            "255.255.255.255",
            "1.10.100.199",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ];
        for text in samples {
            let ip: std::net::IpAddr = text.parse().expect("a sample address");
            assert_eq!(ip_text(ip), ip.to_string(), "{text}");
        }
        for n in (0u32..=u32::MAX).step_by(65_521) {
            let ip = std::net::IpAddr::V4(n.into());
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn new_request_ids_are_uuid_shaped_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id} is UUID-shaped");
        }
        assert_eq!(a[..23], b[..23], "one prefix per process");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert("x-app", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("x-app").unwrap(), "stays");
    }

    #[test]
    fn request_id_is_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_eq!(a.len(), 36);
        assert_ne!(a, b, "each request gets its own id");
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut h,
            "127.0.0.1:5000".parse().unwrap(),
            "http",
            Some(HeaderValue::from_static("a.example")),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example");
    }

    #[test]
    fn json_media_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
    }
}
