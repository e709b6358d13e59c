//! Per-caller reveal: who sees a route's opened response fields in clear,
//! and the mask everyone else gets. PURE: parsing and matching only.
//!
//! Written in a route as
//!
//! ```toml
//! [route.reveal]
//! to = [ { header = "x-role", value = "support" },
//!        { cert_subject = "CN=billing" },
//!        { source = "10.0.0.0/8" },
//!        { jwt_claim = "role", value = "support" } ]   # any one matches
//! mask = { keep_last = 4 }                  # or { fixed = "****" } | "null" | "envelope"
//! fields = ["$.ssn"]                        # optional: default = all of response.decrypt
//!
//! [route.reveal.jwt]                        # needed by jwt_claim rules
//! public_key_file = "keys/idp.pem"          # and/or jwks_file, hs256_secret_file
//! issuer = "https://idp.example.com/"       # optional; audience too
//! ```
//!
//! CIDR blocks are parsed here by hand: `std::net` parses the address, and
//! a prefix compare is a shift and a mask — less code than a dependency.
//!
//! JWT verification keys are read at policy load through the reader the
//! caller passes (`load.rs` resolves a path against the policy file's
//! directory); turning the bytes into keys happens here. Verifying a token
//! (signature, clock) is the proxy's job (`proxy::reveal`); matching a
//! verified claim is [`claim_matches`], here.

use std::net::IpAddr;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::selector::{Selector, SelectorSet};

/// Certificate subject attributes a `cert_subject` rule may name, with their OIDs
/// (DER content bytes of the attribute type).
pub const SUBJECT_ATTRIBUTES: &[(&str, &[u8])] = &[
    ("CN", &[0x55, 0x04, 0x03]),
    ("serialNumber", &[0x55, 0x04, 0x05]),
    ("C", &[0x55, 0x04, 0x06]),
    ("L", &[0x55, 0x04, 0x07]),
    ("ST", &[0x55, 0x04, 0x08]),
    ("O", &[0x55, 0x04, 0x0a]),
    ("OU", &[0x55, 0x04, 0x0b]),
];

/// One way a caller can be let see the fields in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevealTo {
    /// A request header (name lower case) whose value equals `value` exactly.
    Header {
        /// Header name, lower case.
        name: String,
        /// The value it must carry.
        value: String,
    },
    /// The verified mTLS client certificate's subject holds every listed
    /// attribute (`type`, `value`); other attributes may be present too.
    CertSubject {
        /// The rule as written, for the audit line.
        text: String,
        /// Pairs of attribute type (as named in [`SUBJECT_ATTRIBUTES`]) and value.
        attributes: Vec<(&'static str, String)>,
    },
    /// The TCP peer's address lies in this block.
    Source(Cidr),
    /// A claim of the caller's verified JWT (see [`JwtVerifier`]) equals
    /// `value`, or holds it (see [`claim_matches`]).
    JwtClaim {
        /// The claim's name (`role`, `groups`, `scope`, `realm_access.roles`).
        claim: String,
        /// The value it must carry.
        value: String,
    },
}

impl RevealTo {
    /// The rule as the audit line names it (`header x-role`, `cert_subject CN=billing`,
    /// `source 10.0.0.0/8`); a header rule never shows the value it wants.
    pub fn describe(&self) -> String {
        match self {
            RevealTo::Header { name, .. } => format!("header {name}"),
            RevealTo::CertSubject { text, .. } => format!("cert_subject {text}"),
            RevealTo::Source(c) => format!("source {c}"),
            RevealTo::JwtClaim { claim, .. } => format!("jwt_claim {claim}"),
        }
    }
}

/// What a caller who is not let see the fields gets instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    /// The opened string with all but its last N characters as `*`
    /// (a string of at most N characters is all `*`; a non-string is `"****"`).
    KeepLast(usize),
    /// This string instead of the value.
    Fixed(String),
    /// JSON `null`.
    Null,
    /// The envelope, not opened (a value that is not an envelope becomes `null`).
    Envelope,
}

/// A route's reveal rule, validated.
#[derive(Debug, Clone)]
pub struct Reveal {
    /// Any one of these lets the caller see the fields in clear.
    pub to: Vec<RevealTo>,
    /// What everyone else gets.
    pub mask: Mask,
    /// The fields masked (a subset of `response.decrypt`).
    pub fields: SelectorSet,
    /// `response.decrypt` without `fields`: what a masked caller still gets opened
    /// when the mask is `envelope`.
    pub open_unmasked: SelectorSet,
    /// How a caller's JWT is verified; set exactly when a rule is a `jwt_claim`.
    pub jwt: Option<JwtVerifier>,
}

/// Default clock leeway for `exp` and `nbf`, in seconds.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;
/// Largest `leeway_secs` a policy may set.
pub const MAX_JWT_LEEWAY_SECS: u64 = 300;
/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET: usize = 32;

/// How a route verifies the caller's JWT for its `jwt_claim` rules: where
/// the token is, the keys (loaded once, at policy load) and the claims
/// checked besides the signature. `exp` is always required.
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    /// The header carrying the token, lower case. `authorization` (the
    /// default) wants `Bearer <token>`; another header carries the token,
    /// with or without `Bearer `.
    pub header: String,
    /// The keys a token may be signed with; each accepts one algorithm.
    pub keys: Vec<JwtKey>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub issuer: Vec<String>,
    /// Accepted `aud` values; empty: a token that carries `aud` is refused
    /// (RFC 7519 §4.1.3: a recipient that is not named must reject it).
    pub audience: Vec<String>,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// One verification key.
#[derive(Clone)]
pub struct JwtKey {
    /// The only algorithm this key verifies (`HS256`, `RS256` or `ES256`):
    /// a token whose header names another never meets this key.
    pub alg: Algorithm,
    /// The JWKS `kid`, when the key came with one.
    pub kid: Option<String>,
    /// The key itself.
    pub key: DecodingKey,
    /// Where it came from (`keys/idp.pem`, `keys/idp.jwks.json#1`), for `policy check`.
    pub source: String,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// One line for `policy check`: the header, the keys, the claims checked.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| match &k.kid {
                Some(kid) => format!("{:?} {} (kid {kid})", k.alg, k.source),
                None => format!("{:?} {}", k.alg, k.source),
            })
            .collect();
        let mut out = format!(
            "JWT from {} verified with {}; exp required (leeway {}s)",
            if self.header == "authorization" {
                "authorization: Bearer".to_owned()
            } else {
                self.header.clone()
            },
            keys.join(", "),
            self.leeway_secs
        );
        if !self.issuer.is_empty() {
            out.push_str(&format!("; iss {}", self.issuer.join(" or ")));
        }
        if !self.audience.is_empty() {
            out.push_str(&format!("; aud {}", self.audience.join(" or ")));
        }
        out
    }
}

/// True when the verified claims carry `value` under `claim`: a string equal
/// to it, an array holding a string equal to it, or — for `scope` and `scp`
/// (OAuth 2.0, space-separated) — a string one of whose words equals it.
/// The claim is looked up by its exact name first (`https://example.com/roles`
/// works); when there is none and the name has dots, as a path into nested
/// objects (`realm_access.roles`). Numbers, booleans and objects never match.
pub fn claim_matches(
    claims: &serde_json::Map<String, serde_json::Value>,
    claim: &str,
    value: &str,
) -> bool {
    use serde_json::Value;
    let found = claims.get(claim).or_else(|| {
        let mut parts = claim.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |v, p| v.as_object()?.get(p))
    });
    let last = claim.rsplit('.').next().unwrap_or(claim);
    match found {
        Some(Value::String(s)) if last == "scope" || last == "scp" => {
            s.split(' ').any(|w| w == value)
        }
        Some(Value::String(s)) => s == value,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
        _ => false,
    }
}

/// An IPv4 or IPv6 block: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (a block of one).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}': '{addr_text}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{text}': the prefix length is 0 to {max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        if !cidr.contains(addr) || cidr.network() != addr {
            return Err(format!(
                "'{text}': bits are set past the /{prefix} prefix; write '{}/{prefix}'",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(&self, width: u8) -> u128 {
        if self.prefix == 0 {
            return 0;
        }
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        (all >> (width - self.prefix)) << (width - self.prefix)
    }

    fn network(&self) -> IpAddr {
        let (bits, width) = Self::bits(self.addr);
        let net = bits & self.mask(width);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(net)),
        }
    }

    /// True when `ip` lies in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (a, width) = Self::bits(ip);
        let (b, _) = Self::bits(self.addr);
        let m = self.mask(width);
        a & m == b & m
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `[route.reveal]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileReveal {
    to: Vec<FileRevealTo>,
    mask: toml::Value,
    fields: Option<Vec<String>>,
    jwt: Option<FileJwt>,
}

/// `[route.reveal.jwt]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJwt {
    header: Option<String>,
    hs256_secret_file: Option<String>,
    public_key_file: Option<String>,
    jwks_file: Option<String>,
    issuer: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    leeway_secs: Option<u64>,
}

/// A string or a list of strings (also a route's `records`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// One entry of `to` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRevealTo {
    header: Option<String>,
    value: Option<String>,
    cert_subject: Option<String>,
    source: Option<String>,
    jwt_claim: Option<String>,
}

/// Reads a key file named in a policy (a path as written); the error says why.
pub(super) type KeyReader<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The HS256 key in a secret file: its bytes, less one trailing newline.
fn hs256_key(path: &str, bytes: Zeroizing<Vec<u8>>) -> Result<JwtKey, String> {
    let mut secret: &[u8] = &bytes;
    if let Some(s) = secret.strip_suffix(b"\n") {
        secret = s.strip_suffix(b"\r").unwrap_or(s);
    }
    if secret.len() < MIN_HS256_SECRET {
        return Err(format!(
            "'{path}': an HS256 secret is at least {MIN_HS256_SECRET} bytes (it has {})",
            secret.len()
        ));
    }
    Ok(JwtKey {
        alg: Algorithm::HS256,
        kid: None,
        key: DecodingKey::from_secret(secret),
        source: path.to_owned(),
    })
}

/// The key in a PEM public key file: RSA (RS256) or EC P-256 (ES256).
fn pem_key(path: &str, bytes: &[u8]) -> Result<JwtKey, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("PRIVATE KEY-----") {
        return Err(format!(
            "'{path}' holds a private key: give sealgate the public key only \
             (openssl pkey -in KEY -pubout)"
        ));
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----")
        && !text.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err(format!(
            "'{path}' is not a PEM public key (-----BEGIN PUBLIC KEY-----)"
        ));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok(JwtKey {
            alg: Algorithm::RS256,
            kid: None,
            key,
            source: path.to_owned(),
        });
    }
    match DecodingKey::from_ec_pem(bytes) {
        // an uncompressed P-256 point: 0x04, x, y (32 bytes each)
        Ok(key) if key.as_bytes().len() == 65 && key.as_bytes()[0] == 4 => Ok(JwtKey {
            alg: Algorithm::ES256,
            kid: None,
            key,
            source: path.to_owned(),
        }),
        Ok(_) => Err(format!(
            "'{path}': an EC key is accepted on curve P-256 only (ES256)"
        )),
        Err(e) => Err(format!(
            "'{path}' is neither an RSA nor an EC P-256 public key: {e}"
        )),
    }
}

/// The signing keys of a JWKS file (`{"keys": [...]}`): RSA keys (RS256) and
/// EC P-256 keys (ES256). Keys for encryption (`use: enc`), of other types or
/// naming another `alg` are skipped; a file with no usable key is an error.
fn jwks_keys(path: &str, bytes: &[u8]) -> Result<Vec<JwtKey>, String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("'{path}' is not JSON: {e}"))?;
    let Some(items) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Err(format!("'{path}' is not a JWKS: no \"keys\" array"));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kty = item.get("kty").and_then(|v| v.as_str()).unwrap_or("");
        let usage = item.get("use").and_then(|v| v.as_str());
        if !matches!(kty, "RSA" | "EC") || usage.is_some_and(|u| u != "sig") {
            continue;
        }
        let jwk: Jwk = serde_json::from_value(item.clone())
            .map_err(|e| format!("'{path}': key {i} is not a valid JWK: {e}"))?;
        let written = item.get("alg").and_then(|v| v.as_str());
        let alg = match (&jwk.algorithm, written) {
            (AlgorithmParameters::RSA(_), None | Some("RS256")) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some("ES256"))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("'{path}': key {i} cannot be used: {e}"))?;
        if alg == Algorithm::ES256 && key.as_bytes().len() != 65 {
            return Err(format!("'{path}': key {i} is not a P-256 point"));
        }
        out.push(JwtKey {
            alg,
            kid: jwk.common.key_id.clone(),
            key,
            source: format!("{path}#{i}"),
        });
    }
    if out.is_empty() {
        return Err(format!(
            "'{path}' holds no signing key sealgate can use (RSA for RS256, EC P-256 for ES256)"
        ));
    }
    Ok(out)
}

/// Validates `[route.reveal.jwt]` and loads its keys through `read`.
fn parse_jwt(
    raw: FileJwt,
    read: KeyReader<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<JwtVerifier> {
    let before_ok = std::cell::Cell::new(true);
    let mut bad = |field: &str, message: String| {
        before_ok.set(false);
        fail(&format!("reveal.jwt.{field}"), message);
    };
    let header = match raw.header {
        None => "authorization".to_owned(),
        Some(h) if is_header_name(&h) => h.to_ascii_lowercase(),
        Some(h) => {
            bad("header", format!("'{h}' is not an HTTP header name"));
            String::new()
        }
    };
    let mut keys = Vec::new();
    if raw.hs256_secret_file.is_none() && raw.public_key_file.is_none() && raw.jwks_file.is_none() {
        bad(
            "hs256_secret_file",
            "give the keys tokens are verified with: hs256_secret_file, public_key_file \
             and/or jwks_file"
                .into(),
        );
    }
    if let Some(path) = raw.hs256_secret_file {
        match read(&path).map(Zeroizing::new) {
            Ok(bytes) => match hs256_key(&path, bytes) {
                Ok(k) => keys.push(k),
                Err(e) => bad("hs256_secret_file", e),
            },
            Err(e) => bad("hs256_secret_file", e),
        }
    }
    if let Some(path) = raw.public_key_file {
        match read(&path).and_then(|b| pem_key(&path, &b)) {
            Ok(k) => keys.push(k),
            Err(e) => bad("public_key_file", e),
        }
    }
    if let Some(path) = raw.jwks_file {
        match read(&path).and_then(|b| jwks_keys(&path, &b)) {
            Ok(k) => keys.extend(k),
            Err(e) => bad("jwks_file", e),
        }
    }
    let mut list = |field: &str, v: Option<OneOrMany>| -> Vec<String> {
        let v = v.map(OneOrMany::into_vec).unwrap_or_default();
        if v.iter().any(|s| s.trim().is_empty()) {
            bad(field, "an empty value matches no token".into());
        }
        v
    };
    let issuer = list("issuer", raw.issuer);
    let audience = list("audience", raw.audience);
    let leeway_secs = raw.leeway_secs.unwrap_or(DEFAULT_JWT_LEEWAY_SECS);
    if leeway_secs > MAX_JWT_LEEWAY_SECS {
        bad(
            "leeway_secs",
            format!("at most {MAX_JWT_LEEWAY_SECS} seconds: leeway lets expired tokens through"),
        );
    }
    if !before_ok.get() {
        return None;
    }
    Some(JwtVerifier {
        header,
        keys,
        issuer,
        audience,
        leeway_secs,
    })
}

/// Parses a `cert_subject` rule: `CN=billing` or `CN=billing, O=Acme`.
fn parse_subject(text: &str) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let Some((ty, value)) = part.split_once('=') else {
            return Err(format!(
                "'{text}': write TYPE=value pairs separated by ',' (e.g. 'CN=billing, O=Acme')"
            ));
        };
        let ty = ty.trim();
        let Some((name, _)) = SUBJECT_ATTRIBUTES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(ty))
        else {
            let known: Vec<&str> = SUBJECT_ATTRIBUTES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "'{text}': '{ty}' is not a subject attribute sealgate reads ({})",
                known.join(", ")
            ));
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("'{text}': the value of {name} is empty"));
        }
        out.push((*name, value.to_owned()));
    }
    Ok(out)
}

fn parse_mask(v: &toml::Value) -> Result<Mask, String> {
    const HELP: &str =
        "write mask = { keep_last = 4 }, { fixed = \"****\" }, \"null\" or \"envelope\"";
    match v {
        toml::Value::String(s) if s == "null" => Ok(Mask::Null),
        toml::Value::String(s) if s == "envelope" => Ok(Mask::Envelope),
        toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
            Some((k, toml::Value::Integer(n))) if k == "keep_last" => match usize::try_from(*n) {
                Ok(n) if n > 0 => Ok(Mask::KeepLast(n)),
                _ => Err("keep_last is a number of characters greater than 0".into()),
            },
            Some((k, toml::Value::String(s))) if k == "fixed" => Ok(Mask::Fixed(s.clone())),
            _ => Err(HELP.into()),
        },
        _ => Err(HELP.into()),
    }
}

/// Validates a route's `reveal` table against its `response.decrypt` list and
/// `open_all`, reading JWT key files through `read`; pushes `(field, message)`
/// for each problem.
pub(super) fn parse(
    raw: FileReveal,
    decrypt: &[String],
    open_all: bool,
    read: KeyReader<'_>,
    bad: &mut dyn FnMut(&str, String),
) -> Option<Reveal> {
    let mut ok = true;
    let mut fail = |field: &str, message: String| {
        ok = false;
        bad(field, message);
    };
    if open_all {
        fail(
            "reveal",
            "open_all opens every envelope found, masked fields too: a route with reveal \
             lists its fields in response.decrypt"
                .into(),
        );
    }
    if decrypt.is_empty() {
        fail(
            "reveal",
            "reveal decides who sees opened response fields: give the route response.decrypt"
                .into(),
        );
    }
    if raw.to.is_empty() {
        fail(
            "reveal.to",
            "an empty list reveals to no one; list at least one header, cert_subject, source \
             or jwt_claim"
                .into(),
        );
    }
    let mut to = Vec::new();
    for (i, entry) in raw.to.into_iter().enumerate() {
        let at = format!("reveal.to[{i}]");
        let kinds = [
            entry.header.is_some(),
            entry.cert_subject.is_some(),
            entry.source.is_some(),
            entry.jwt_claim.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            fail(
                &at,
                "write exactly one of { header = \"…\", value = \"…\" }, { cert_subject = \"CN=…\" }, \
                 { source = \"10.0.0.0/8\" }, { jwt_claim = \"…\", value = \"…\" }"
                    .into(),
            );
            continue;
        }
        if entry.value.is_some() && entry.header.is_none() && entry.jwt_claim.is_none() {
            fail(&at, "'value' goes with 'header' or 'jwt_claim' only".into());
            continue;
        }
        if let Some(claim) = entry.jwt_claim {
            if claim.trim().is_empty() || claim != claim.trim() {
                fail(&at, format!("'{claim}' is not a claim name"));
                continue;
            }
            match entry.value {
                Some(value) if !value.trim().is_empty() => {
                    to.push(RevealTo::JwtClaim { claim, value })
                }
                _ => fail(
                    &at,
                    format!("jwt_claim '{claim}' needs a non-empty 'value' to compare with"),
                ),
            }
        } else if let Some(name) = entry.header {
            if !is_header_name(&name) {
                fail(&at, format!("'{name}' is not an HTTP header name"));
                continue;
            }
            match entry.value {
                Some(value) if !value.trim().is_empty() => to.push(RevealTo::Header {
                    name: name.to_ascii_lowercase(),
                    value,
                }),
                _ => fail(
                    &at,
                    format!("header '{name}' needs a non-empty 'value' to compare with"),
                ),
            }
        } else if let Some(text) = entry.cert_subject {
            match parse_subject(&text) {
                Ok(attributes) => to.push(RevealTo::CertSubject { text, attributes }),
                Err(e) => fail(&at, e),
            }
        } else if let Some(text) = entry.source {
            match Cidr::parse(&text) {
                Ok(c) => to.push(RevealTo::Source(c)),
                Err(e) => fail(&at, e),
            }
        }
    }
    let wants_jwt = to.iter().any(|r| matches!(r, RevealTo::JwtClaim { .. }));
    let jwt = match raw.jwt {
        Some(j) if wants_jwt => parse_jwt(j, read, &mut fail),
        Some(_) => {
            fail(
                "reveal.jwt",
                "no rule in reveal.to is a jwt_claim: remove the table or add one".into(),
            );
            None
        }
        None => {
            if wants_jwt {
                fail(
                    "reveal.jwt",
                    "a jwt_claim rule needs [route.reveal.jwt] with the keys tokens are \
                     verified with (hs256_secret_file, public_key_file or jwks_file)"
                        .into(),
                );
            }
            None
        }
    };
    let mask = match parse_mask(&raw.mask) {
        Ok(m) => Some(m),
        Err(e) => {
            fail("reveal.mask", e);
            None
        }
    };
    let texts: Vec<String> = match raw.fields {
        None => decrypt.to_vec(),
        Some(list) if list.is_empty() => {
            fail(
                "reveal.fields",
                "an empty list masks nothing; omit it to mask every response.decrypt field".into(),
            );
            Vec::new()
        }
        Some(list) => {
            for (i, t) in list.iter().enumerate() {
                if !decrypt.contains(t) {
                    fail(
                        &format!("reveal.fields[{i}]"),
                        format!(
                            "'{t}' is not in response.decrypt: reveal masks fields the route opens"
                        ),
                    );
                } else if list[..i].contains(t) {
                    fail(
                        &format!("reveal.fields[{i}]"),
                        format!("'{t}' is listed twice"),
                    );
                }
            }
            list
        }
    };
    let compile = |list: Vec<&String>| -> SelectorSet {
        SelectorSet::new(
            list.into_iter()
                .filter_map(|t| Selector::compile(t).ok())
                .collect(),
        )
    };
    let fields = compile(texts.iter().collect());
    let open_unmasked = compile(decrypt.iter().filter(|t| !texts.contains(t)).collect());
    if !ok {
        return None;
    }
    Some(Reveal {
        to,
        mask: mask?,
        fields,
        open_unmasked,
        jwt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_contain_what_they_should() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_cidr_blocks_say_why() {
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("ten/8").unwrap_err().contains("not an IP"));
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef\n";

    /// Parses a `[route.reveal]` table (TOML text, without the header) over
    /// `response.decrypt = ["$.ssn"]`, with `files` as the key files there are.
    fn reveal(text: &str, files: &[(&str, Vec<u8>)]) -> Result<Reveal, Vec<(String, String)>> {
        let raw: FileReveal = toml::from_str(text).unwrap();
        let read = |path: &str| -> Result<Vec<u8>, String> {
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| b.clone())
                .ok_or_else(|| format!("cannot read '{path}': not found"))
        };
        let mut problems = Vec::new();
        let out = parse(raw, &["$.ssn".to_owned()], false, &read, &mut |f, m| {
            problems.push((f.to_owned(), m))
        });
        match out {
            Some(r) if problems.is_empty() => Ok(r),
            _ => Err(problems),
        }
    }

    fn problem(problems: &[(String, String)], field: &str, words: &str) {
        assert!(
            problems
                .iter()
                .any(|(f, m)| f == field && m.contains(words)),
            "no problem at {field} saying {words:?}: {problems:?}"
        );
    }

    const JWT_RULE: &str = r#"
to = [{ jwt_claim = "role", value = "support" }, { header = "x-role", value = "support" }]
mask = "null"
"#;

    #[test]
    fn a_jwt_claim_rule_loads_its_keys_and_names_the_claim() {
        let text = format!("{JWT_RULE}[jwt]\nhs256_secret_file = \"s\"\nissuer = \"https://idp\"\naudience = [\"sealgate\", \"api\"]\n");
        let r = reveal(&text, &[("s", SECRET.to_vec())]).unwrap();
        assert_eq!(
            r.to[0],
            RevealTo::JwtClaim {
                claim: "role".into(),
                value: "support".into()
            }
        );
        assert_eq!(r.to[0].describe(), "jwt_claim role");
        let jwt = r.jwt.unwrap();
        assert_eq!(jwt.header, "authorization");
        assert_eq!(jwt.leeway_secs, DEFAULT_JWT_LEEWAY_SECS);
        assert_eq!(jwt.issuer, ["https://idp"]);
        assert_eq!(jwt.audience, ["sealgate", "api"]);
        assert_eq!(jwt.keys.len(), 1);
        assert_eq!(jwt.keys[0].alg, Algorithm::HS256);
        // the trailing newline is not part of the secret
        assert_eq!(jwt.keys[0].key.as_bytes(), &SECRET[..32]);
        assert!(jwt.describe().contains("HS256 s"), "{}", jwt.describe());
        assert!(
            !format!("{jwt:?}").contains("0123456789"),
            "Debug shows the secret"
        );

        let text = format!("{JWT_RULE}[jwt]\nhs256_secret_file = \"s\"\nheader = \"X-Id-Token\"\nleeway_secs = 0\n");
        let jwt = reveal(&text, &[("s", SECRET.to_vec())])
            .unwrap()
            .jwt
            .unwrap();
        assert_eq!(jwt.header, "x-id-token");
        assert_eq!(jwt.leeway_secs, 0);
    }

    #[test]
    fn jwt_rules_and_the_jwt_table_come_together() {
        let e = reveal(JWT_RULE, &[]).unwrap_err();
        problem(&e, "reveal.jwt", "needs [route.reveal.jwt]");
        let text = "to = [{ source = \"10.0.0.0/8\" }]\nmask = \"null\"\n[jwt]\nhs256_secret_file = \"s\"\n";
        let e = reveal(text, &[("s", SECRET.to_vec())]).unwrap_err();
        problem(&e, "reveal.jwt", "no rule in reveal.to is a jwt_claim");
        let e = reveal(&format!("{JWT_RULE}[jwt]\n"), &[]).unwrap_err();
        problem(&e, "reveal.jwt.hs256_secret_file", "give the keys");
        let text = "to = [{ jwt_claim = \"role\" }, { jwt_claim = \" \", value = \"x\" }, { source = \"10.0.0.0/8\", value = \"x\" }]\nmask = \"null\"\n[jwt]\nhs256_secret_file = \"s\"\n";
        let e = reveal(text, &[("s", SECRET.to_vec())]).unwrap_err();
        problem(&e, "reveal.to[0]", "needs a non-empty 'value'");
        problem(&e, "reveal.to[1]", "not a claim name");
        problem(
            &e,
            "reveal.to[2]",
            "'value' goes with 'header' or 'jwt_claim'",
        );
    }

    #[test]
    fn bad_key_files_and_settings_are_load_errors_that_say_why() {
        let jwt = |body: &str| format!("{JWT_RULE}[jwt]\n{body}\n");
        let e = reveal(&jwt("hs256_secret_file = \"gone\""), &[]).unwrap_err();
        problem(&e, "reveal.jwt.hs256_secret_file", "cannot read 'gone'");
        let e = reveal(
            &jwt("hs256_secret_file = \"s\""),
            &[("s", b"short\n".to_vec())],
        )
        .unwrap_err();
        problem(
            &e,
            "reveal.jwt.hs256_secret_file",
            "at least 32 bytes (it has 5)",
        );

        let private = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let e = reveal(
            &jwt("public_key_file = \"k.pem\""),
            &[("k.pem", private.into_bytes())],
        )
        .unwrap_err();
        problem(&e, "reveal.jwt.public_key_file", "holds a private key");
        let e = reveal(
            &jwt("public_key_file = \"k.pem\""),
            &[("k.pem", b"hello".to_vec())],
        )
        .unwrap_err();
        problem(&e, "reveal.jwt.public_key_file", "not a PEM public key");
        let junk = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec();
        let e = reveal(&jwt("public_key_file = \"k.pem\""), &[("k.pem", junk)]).unwrap_err();
        problem(
            &e,
            "reveal.jwt.public_key_file",
            "neither an RSA nor an EC P-256",
        );
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap()
            .public_key_pem();
        let e = reveal(
            &jwt("public_key_file = \"k.pem\""),
            &[("k.pem", p384.into_bytes())],
        )
        .unwrap_err();
        problem(&e, "reveal.jwt.public_key_file", "P-256 only");

        let e = reveal(&jwt("jwks_file = \"j\""), &[("j", b"{".to_vec())]).unwrap_err();
        problem(&e, "reveal.jwt.jwks_file", "not JSON");
        let e = reveal(&jwt("jwks_file = \"j\""), &[("j", b"{}".to_vec())]).unwrap_err();
        problem(&e, "reveal.jwt.jwks_file", "no \"keys\" array");
        let only_enc = br#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"oct","k":"AAAA"}]}"#;
        let e = reveal(&jwt("jwks_file = \"j\""), &[("j", only_enc.to_vec())]).unwrap_err();
        problem(&e, "reveal.jwt.jwks_file", "no signing key");
        let broken = br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA"}]}"#;
        let e = reveal(&jwt("jwks_file = \"j\""), &[("j", broken.to_vec())]).unwrap_err();
        problem(&e, "reveal.jwt.jwks_file", "key 0 is not a valid JWK");

        let e = reveal(
            &jwt("hs256_secret_file = \"s\"\nleeway_secs = 3600\nissuer = \"\"\nheader = \"bad header\""),
            &[("s", SECRET.to_vec())],
        )
        .unwrap_err();
        problem(&e, "reveal.jwt.leeway_secs", "at most 300");
        problem(&e, "reveal.jwt.issuer", "empty value");
        problem(&e, "reveal.jwt.header", "not an HTTP header name");
    }

    #[test]
    fn public_keys_in_pem_and_jwks_bind_each_key_to_one_algorithm() {
        let ec = rcgen::KeyPair::generate().unwrap();
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let text =
            format!("{JWT_RULE}[jwt]\npublic_key_file = \"rsa.pem\"\njwks_file = \"keys.json\"\n");
        // an EC P-256 JWK from the generated key's uncompressed point
        let point = ec.public_key_raw();
        assert_eq!(point.len(), 65);
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        let jwks = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
             "x": b64(&point[1..33]), "y": b64(&point[33..])},
            {"kty": "EC", "crv": "P-256", "kid": "ec-enc", "use": "enc",
             "x": b64(&point[1..33]), "y": b64(&point[33..])},
            {"kty": "RSA", "kid": "rsa-384", "alg": "RS384", "n": "AQAB", "e": "AQAB"},
        ]});
        let r = reveal(
            &text,
            &[
                ("rsa.pem", rsa.public_key_pem().into_bytes()),
                ("keys.json", jwks.to_string().into_bytes()),
            ],
        )
        .unwrap();
        let keys = r.jwt.unwrap().keys;
        let got: Vec<(Algorithm, Option<&str>, &str)> = keys
            .iter()
            .map(|k| (k.alg, k.kid.as_deref(), k.source.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Algorithm::RS256, None, "rsa.pem"),
                (Algorithm::ES256, Some("ec-1"), "keys.json#0"),
            ]
        );
        // a PEM EC P-256 key is ES256
        let text = format!("{JWT_RULE}[jwt]\npublic_key_file = \"ec.pem\"\n");
        let r = reveal(&text, &[("ec.pem", ec.public_key_pem().into_bytes())]).unwrap();
        assert_eq!(r.jwt.unwrap().keys[0].alg, Algorithm::ES256);
    }

    #[test]
    fn claims_match_strings_arrays_scopes_and_nested_paths() {
        let claims = serde_json::json!({
            "role": "support",
            "groups": ["ops", "support"],
            "scope": "read:customers write:notes",
            "scp": ["a b"],
            "realm_access": {"roles": ["billing"]},
            "https://example.com/roles": ["auditor"],
            "level": 3,
            "admin": true,
        });
        let claims = claims.as_object().unwrap();
        let m = |c: &str, v: &str| claim_matches(claims, c, v);
        assert!(m("role", "support"));
        assert!(!m("role", "Support"));
        assert!(!m("role", "supp"));
        assert!(m("groups", "support"));
        assert!(!m("groups", "ops support"));
        assert!(m("scope", "write:notes"));
        assert!(!m("scope", "write"));
        // an array is matched element by element, never split
        assert!(!m("scp", "a"));
        assert!(m("scp", "a b"));
        assert!(m("realm_access.roles", "billing"));
        assert!(m("https://example.com/roles", "auditor"));
        assert!(!m("level", "3"));
        assert!(!m("admin", "true"));
        assert!(!m("missing", "x"));
        assert!(!m("realm_access", "billing"));
    }

    #[test]
    fn subject_rules_name_known_attributes() {
        assert_eq!(
            parse_subject("cn=billing, O=Acme").unwrap(),
            vec![("CN", "billing".to_owned()), ("O", "Acme".to_owned())]
        );
        assert!(parse_subject("XX=1").unwrap_err().contains("'XX'"));
        assert!(parse_subject("billing").unwrap_err().contains("TYPE=value"));
    }
}
