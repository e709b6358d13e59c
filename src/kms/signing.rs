//! What every face's signature check shares: the request as a verifier
//! sees it, and the HMAC / SHA-256 primitives. PURE.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A request as a signature verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// Path without the query, e.g. `/` or `/v2/index.php`.
    pub path: &'a str,
    /// The raw query string as sent (no leading `?`), empty if none.
    pub query: &'a str,
    /// Request headers as (name, value); names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The raw body.
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    /// All values of header `name` (case-insensitive), joined by `,`.
    pub fn header(&self, name: &str) -> Option<String> {
        let vals: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect();
        if vals.is_empty() {
            None
        } else {
            Some(vals.join(","))
        }
    }

    /// True when the body is an HTML form.
    pub fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    }
}

/// HMAC-SHA256 (any key length).
pub(crate) fn hmac256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// HMAC-SHA1 (any key length), for the v1 signatures that still use it.
pub(crate) fn hmac1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut m = match <Hmac<Sha1> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 20],
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Lower-case hex of SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A request captured from a real SDK (tests/sdk/vectors/*.jsonl), owned, so
/// the faces' vector tests can rebuild [`RequestParts`] from it.
#[cfg(test)]
pub(crate) struct CapturedRequest {
    method: String,
    path: String,
    query: String,
    body: String,
    headers: Vec<(String, String)>,
}

#[cfg(test)]
impl CapturedRequest {
    /// Reads `method`, `path`, `query`, `body` and `headers` ([[name, value]…]).
    pub(crate) fn from_json(v: &serde_json::Value) -> Self {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let headers = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        let part = |i: usize| h[i].as_str().unwrap_or_default().to_string();
                        (part(0), part(1))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            method: s("method"),
            path: s("path"),
            query: s("query"),
            body: s("body"),
            headers,
        }
    }

    /// The header list as borrowed pairs (keep it alive for [`Self::parts`]).
    pub(crate) fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    /// The request as a verifier sees it.
    pub(crate) fn parts<'a>(&'a self, headers: &'a [(&'a str, &'a str)]) -> RequestParts<'a> {
        RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers,
            body: self.body.as_bytes(),
        }
    }
}
