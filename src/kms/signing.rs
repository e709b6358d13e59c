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

/// The fields of an `Authorization: <ALGORITHM> Credential=…,
/// SignedHeaders=a;b, Signature=<64 hex>` header, which Tencent's TC3 and
/// Alibaba's ACS3 share (each reads its own `Credential`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationFields<'a> {
    /// `Credential`, as sent.
    pub credential: &'a str,
    /// `SignedHeaders`: lower-case names, in the order listed.
    pub signed_headers: Vec<String>,
    /// `Signature`, decoded from hex.
    pub signature: [u8; 32],
}

/// Why an `Authorization` header does not parse; each dialect words it in
/// its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationError {
    /// It does not start with the algorithm and a space.
    UnknownAlgorithm,
    /// A part is not `key=value`.
    ExpectedKeyValue,
    /// A key other than the three.
    UnknownField,
    /// A key given twice.
    RepeatedField,
    /// No `Credential`.
    NoCredential,
    /// No `SignedHeaders`.
    NoSignedHeaders,
    /// No `Signature`.
    NoSignature,
    /// An empty name in `SignedHeaders`.
    EmptySignedHeader,
    /// `Signature` is not 64 hex digits.
    BadSignature,
}

impl AuthorizationError {
    /// What is wrong, in a few words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownAlgorithm => "unknown algorithm",
            Self::ExpectedKeyValue => "expected key=value",
            Self::UnknownField => "unknown field",
            Self::RepeatedField => "repeated field",
            Self::NoCredential => "no Credential",
            Self::NoSignedHeaders => "no SignedHeaders",
            Self::NoSignature => "no Signature",
            Self::EmptySignedHeader => "empty name in SignedHeaders",
            Self::BadSignature => "Signature is not 64 hex digits",
        }
    }
}

/// Parses `<algorithm> Credential=…, SignedHeaders=…, Signature=…` (the
/// parts in any order, spaces around them ignored).
pub fn parse_authorization<'a>(
    value: &'a str,
    algorithm: &str,
) -> Result<AuthorizationFields<'a>, AuthorizationError> {
    use AuthorizationError as E;
    let rest = value
        .trim()
        .strip_prefix(algorithm)
        .filter(|r| r.starts_with(' '))
        .ok_or(E::UnknownAlgorithm)?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(E::ExpectedKeyValue)?;
        let slot = match k.trim() {
            "Credential" => &mut cred,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut sig,
            _ => return Err(E::UnknownField),
        };
        if slot.replace(v.trim()).is_some() {
            return Err(E::RepeatedField);
        }
    }
    let credential = cred.ok_or(E::NoCredential)?;
    let signed_headers: Vec<String> = signed
        .ok_or(E::NoSignedHeaders)?
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(E::EmptySignedHeader);
    }
    let sig = sig.ok_or(E::NoSignature)?;
    let mut signature = [0u8; 32];
    if sig.len() != 64 || hex::decode_to_slice(sig, &mut signature).is_err() {
        return Err(E::BadSignature);
    }
    Ok(AuthorizationFields {
        credential,
        signed_headers,
        signature,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_fields_parse_in_any_order_and_refuse_what_is_off() {
        let sig = "ab".repeat(32);
        let v = format!("ALG Signature={sig}, Credential=id/x ,SignedHeaders=Content-Type;host");
        let f = parse_authorization(&v, "ALG").unwrap();
        assert_eq!(f.credential, "id/x");
        assert_eq!(f.signed_headers, ["content-type", "host"]);
        assert_eq!(f.signature, [0xab; 32]);
        let bad = |v: &str| parse_authorization(v, "ALG").unwrap_err();
        let rest = format!("Credential=a,SignedHeaders=h,Signature={sig}");
        assert_eq!(
            bad(&format!("ALGX {rest}")),
            AuthorizationError::UnknownAlgorithm
        );
        assert_eq!(
            bad(&format!("ALG {rest},x")),
            AuthorizationError::ExpectedKeyValue
        );
        assert_eq!(
            bad(&format!("ALG {rest},x=1")),
            AuthorizationError::UnknownField
        );
        assert_eq!(
            bad(&format!("ALG {rest},Credential=b")),
            AuthorizationError::RepeatedField
        );
        assert_eq!(
            bad(&format!(
                "ALG Credential=a,SignedHeaders=h;,Signature={sig}"
            )),
            AuthorizationError::EmptySignedHeader
        );
        assert_eq!(
            bad("ALG Credential=a,SignedHeaders=h,Signature=abc"),
            AuthorizationError::BadSignature
        );
        assert_eq!(
            bad(&format!("ALG SignedHeaders=h,Signature={sig}")),
            AuthorizationError::NoCredential
        );
    }
}
