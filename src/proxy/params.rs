//! Deterministic (searchable) fields: sealing them in bodies, opening their
//! envelopes, and sealing the query and path parameters a route lists, so
//! that `GET /users?email=…` reaches the upstream as `?email=<envelope>`
//! with the envelope the body field was stored as.
//!
//! URL parameters are sealed as JSON strings (the percent-decoded text), so
//! they match body fields that hold strings.

use super::counts::{FieldCounts, FieldOp};
use super::error::{BodySide, ClientError, ProxyError};
use super::fields::field_context;
use crate::envelope::{self, CmkRef};
use crate::keys::DataKeyCache;
use crate::policy::{self, RouteMatch, SelectorSet};

/// Seals one JSON value deterministically; returns the envelope text.
fn seal_one(
    cache: &DataKeyCache,
    key: &str,
    context: &str,
    label: &str,
    raw: &[u8],
) -> Result<(String, CmkRef), ProxyError> {
    let k = cache
        .deterministic_key(key, context.as_bytes())
        .map_err(ProxyError::from_key)?;
    let text = envelope::seal_deterministic(&k, raw, &field_context(context, label))
        .map_err(|_| ProxyError::Client(ClientError::SelectedValueNotJson))?;
    Ok((text, k.cmk))
}

/// Seals every value `selectors` pick in `body` deterministically under `key`.
/// Returns `None` when nothing was selected.
pub fn seal_deterministic_fields(
    cache: &DataKeyCache,
    key: &str,
    context: &str,
    body: &[u8],
    selectors: &SelectorSet,
    counts: &mut FieldCounts,
    side: BodySide,
) -> Result<Option<Vec<u8>>, ProxyError> {
    policy::rewrite(body, selectors, |site| {
        let (text, cmk) = seal_one(cache, key, context, site.label, site.raw)?;
        counts.note(FieldOp::Seal, cmk);
        let mut out = Vec::with_capacity(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(Some(out))
    })
    .map_err(|e| ProxyError::from_rewrite(e, side))
}

/// Characters left as they are in a rewritten query value or path segment
/// (RFC 3986 unreserved); envelopes are base64url and `.`, so they pass as is.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes a query component (`+` is a space, as forms write it).
fn decode_component(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn bad_param(what: &'static str) -> ProxyError {
    ProxyError::Client(ClientError::InvalidParameter(what))
}

/// Seals the route's searchable query and path parameters in `path_and_query`
/// (the request target as sent); returns the target to forward.
pub fn seal_target(
    cache: &DataKeyCache,
    m: &RouteMatch<'_>,
    context: &str,
    path_and_query: &str,
    counts: &mut FieldCounts,
) -> Result<String, ProxyError> {
    let s = &m.route.searchable;
    if s.is_empty() {
        return Ok(path_and_query.to_owned());
    }
    let key = m.route.key.as_str();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut seal_text = |label: &str, plain: &str| -> Result<String, ProxyError> {
        let json = serde_json::to_vec(plain).map_err(|_| bad_param("URL"))?;
        let (text, cmk) = seal_one(cache, key, context, label, &json)?;
        counts.note(FieldOp::Seal, cmk);
        Ok(text)
    };

    let mut out = String::with_capacity(path_and_query.len() + 64);
    if s.path.is_empty() {
        out.push_str(path);
    } else {
        // template segment i ↔ request segment i (after the leading '/')
        let names: Vec<Option<&str>> = m.route.path().param_positions();
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            let param = i
                .checked_sub(1)
                .and_then(|j| names.get(j).copied().flatten())
                .and_then(|n| s.path.iter().find(|p| p.name == n));
            match param {
                Some(p) => {
                    let plain = decode_component(seg, false).ok_or_else(|| bad_param("path"))?;
                    // seal exactly the segment the route matched, or refuse
                    if !m.params.iter().any(|(n, v)| *n == p.name && *v == plain) {
                        return Err(ProxyError::Client(ClientError::AmbiguousPath(
                            "a sealed path parameter is not where the route matched it",
                        )));
                    }
                    if envelope::looks_like_envelope(&plain) {
                        out.push_str(seg);
                    } else {
                        out.push_str(&encode_component(&seal_text(&p.label, &plain)?));
                    }
                }
                _ => out.push_str(seg),
            }
        }
    }
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (raw_name, raw_value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            let name = decode_component(raw_name, true);
            let param = name
                .as_deref()
                .and_then(|n| s.query.iter().find(|p| p.name == n));
            match (param, raw_value) {
                (Some(p), Some(v)) => {
                    let plain = decode_component(v, true).ok_or_else(|| bad_param("query"))?;
                    out.push_str(raw_name);
                    out.push('=');
                    if envelope::looks_like_envelope(&plain) {
                        out.push_str(v);
                    } else {
                        out.push_str(&encode_component(&seal_text(&p.label, &plain)?));
                    }
                }
                _ => out.push_str(pair),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip() {
        assert_eq!(encode_component("a@b.c d"), "a%40b.c%20d");
        assert_eq!(
            decode_component("a%40b.c+d", true).as_deref(),
            Some("a@b.c d")
        );
        assert_eq!(decode_component("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(decode_component("%zz", true), None);
        assert_eq!(decode_component("%ff", true), None);
    }
}
