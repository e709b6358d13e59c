//! Per-caller reveal and masking of opened response fields: decides, from
//! the request's headers, verified mTLS client certificate, source address
//! and verified JWT, whether the caller sees a route's `reveal.fields` in
//! clear, and masks them for everyone else. The decision (who, which rule,
//! which fields, revealed or masked, why a JWT was refused) goes to the
//! audit log — never a value, a token or a claim's value.
//!
//! A JWT is verified at most once per request, and only when a `jwt_claim`
//! rule is reached: the algorithm must be one a configured key is bound to
//! (`none` and every other are refused before any key is tried), the
//! signature must verify, `exp` must be present and not past (less the
//! route's leeway), `nbf` if present not ahead, and `iss` / `aud` as the
//! route configures. Anything else is masked.

use http::HeaderMap;
use std::net::SocketAddr;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::error::BodySide;
use super::error::ProxyError;
use crate::envelope;
use crate::policy::{self, JwtVerifier, Mask, Reveal, RevealTo, SUBJECT_ATTRIBUTES};
use crate::tls::ConnectionInfo;

/// What the mask puts where a non-string value (or an envelope) stood under `keep_last`.
const STARS: &str = "****";
/// Longest certificate subject the audit line carries.
const MAX_SUBJECT: usize = 512;
/// Longest token looked at; a longer one is refused unread.
const MAX_TOKEN: usize = 16 * 1024;

/// Why a caller's JWT did not count. Never carries the token or a claim's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    /// The request carries no token in the configured header.
    Missing,
    /// The header is there but is not `Bearer <token>`, or holds several tokens.
    NotBearer,
    /// Not three base64url parts with a JSON header, or too long.
    Malformed,
    /// `alg: none` (an unsigned token).
    AlgNone,
    /// An algorithm no configured key is bound to.
    AlgNotAccepted,
    /// No configured key for the token's algorithm and `kid`.
    NoKey,
    /// The signature does not verify under any candidate key.
    BadSignature,
    /// No `exp` claim (or not a number).
    NoExpiry,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    NotYetValid,
    /// `iss` is missing or not an accepted issuer.
    WrongIssuer,
    /// `aud` is missing, or names none of the accepted audiences.
    WrongAudience,
    /// The claims are not a JSON object, or another check failed.
    Invalid,
}

impl JwtRejection {
    /// The reason in words, for the audit line.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtRejection::Missing => "no token",
            JwtRejection::NotBearer => "token rejected: not a single Bearer token",
            JwtRejection::Malformed => "token rejected: malformed",
            JwtRejection::AlgNone => "token rejected: alg none (unsigned)",
            JwtRejection::AlgNotAccepted => "token rejected: alg not accepted",
            JwtRejection::NoKey => "token rejected: no key for its alg/kid",
            JwtRejection::BadSignature => "token rejected: bad signature",
            JwtRejection::NoExpiry => "token rejected: no exp",
            JwtRejection::Expired => "token rejected: expired",
            JwtRejection::NotYetValid => "token rejected: not yet valid (nbf)",
            JwtRejection::WrongIssuer => "token rejected: wrong issuer",
            JwtRejection::WrongAudience => "token rejected: wrong audience",
            JwtRejection::Invalid => "token rejected: invalid claims",
        }
    }
}

/// The verified claims of a token.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// The token a request carries in `cfg.header`: `Bearer <token>` for
/// `authorization`; for another header its value, `Bearer ` optional.
fn token_of<'h>(cfg: &JwtVerifier, headers: &'h HeaderMap) -> Result<&'h str, JwtRejection> {
    let mut values = headers.get_all(cfg.header.as_str()).iter();
    let Some(value) = values.next() else {
        return Err(JwtRejection::Missing);
    };
    if values.next().is_some() {
        return Err(JwtRejection::NotBearer);
    }
    let text = value.to_str().map_err(|_| JwtRejection::NotBearer)?.trim();
    let bearer = text
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let token = match bearer {
        Some(t) => t,
        None if cfg.header != "authorization" => text,
        None => return Err(JwtRejection::NotBearer),
    };
    if token.is_empty() || token.contains(' ') {
        return Err(JwtRejection::NotBearer);
    }
    Ok(token)
}

/// The JOSE header fields verification needs, read before any key is tried.
#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
}

/// Verifies `token` under `cfg`: the claims, or why not.
pub fn verify_token(cfg: &JwtVerifier, token: &str) -> Result<Claims, JwtRejection> {
    if token.len() > MAX_TOKEN || token.split('.').count() != 3 {
        return Err(JwtRejection::Malformed);
    }
    let head = token.split('.').next().unwrap_or("");
    let head = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| JwtRejection::Malformed)?;
    let head: JoseHeader = serde_json::from_slice(&head).map_err(|_| JwtRejection::Malformed)?;
    let alg = match head.alg.as_str() {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        a if a.eq_ignore_ascii_case("none") => return Err(JwtRejection::AlgNone),
        _ => return Err(JwtRejection::AlgNotAccepted),
    };
    if !cfg.keys.iter().any(|k| k.alg == alg) {
        return Err(JwtRejection::AlgNotAccepted);
    }
    let mut validation = Validation::new(alg);
    validation.leeway = cfg.leeway_secs;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    let mut required = vec!["exp"];
    if !cfg.issuer.is_empty() {
        validation.set_issuer(&cfg.issuer);
        required.push("iss");
    }
    if !cfg.audience.is_empty() {
        validation.set_audience(&cfg.audience);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    let candidates = cfg.keys.iter().filter(|k| {
        k.alg == alg
            && match (&head.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    });
    let mut tried = false;
    for key in candidates {
        tried = true;
        match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            // another key may have signed it
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            // the signature verified (claims are checked after it) or the token is bad
            Err(e) => return Err(rejection(e.kind())),
        }
    }
    Err(if tried {
        JwtRejection::BadSignature
    } else {
        JwtRejection::NoKey
    })
}

fn rejection(kind: &ErrorKind) -> JwtRejection {
    match kind {
        ErrorKind::InvalidSignature => JwtRejection::BadSignature,
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
        ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => JwtRejection::NoExpiry,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => JwtRejection::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => JwtRejection::WrongAudience,
        ErrorKind::InvalidClaimFormat(c) if c == "exp" => JwtRejection::NoExpiry,
        ErrorKind::InvalidClaimFormat(c) if c == "nbf" => JwtRejection::NotYetValid,
        ErrorKind::InvalidAlgorithm => JwtRejection::AlgNotAccepted,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            JwtRejection::Malformed
        }
        _ => JwtRejection::Invalid,
    }
}

/// The reveal decision for one request, as the audit line records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealDecision {
    /// The caller sees the fields in clear.
    pub revealed: bool,
    /// The rule that matched (`header x-role`, `cert_subject CN=billing`, `source 10.0.0.0/8`).
    pub rule: Option<String>,
    /// The verified client certificate's subject, when it presented one.
    pub subject: Option<String>,
    /// Why the route's `jwt_claim` rules did not match, when none matched
    /// (`jwt_claim role: token rejected: expired`); never a token or a value.
    pub reason: Option<String>,
    /// The fields the decision covers (selectors as written).
    pub fields: Vec<String>,
    /// Values revealed or masked in the response.
    pub count: u32,
}

/// Decides whether the caller of this request sees `reveal`'s fields in clear.
pub fn decide(
    reveal: &Reveal,
    headers: &HeaderMap,
    conn: Option<&ConnectionInfo>,
    peer: SocketAddr,
) -> RevealDecision {
    let subject = conn
        .and_then(|c| c.client_certificate.as_ref())
        .and_then(|der| certificate_subject(der));
    let mut jwt: Option<Result<Claims, JwtRejection>> = None;
    let rule = reveal.to.iter().find(|rule| match rule {
        RevealTo::Header { name, value } => headers
            .get_all(name.as_str())
            .iter()
            .any(|v| v.as_bytes() == value.as_bytes()),
        RevealTo::CertSubject { attributes, .. } => subject.as_ref().is_some_and(|s| {
            attributes
                .iter()
                .all(|(ty, want)| s.iter().any(|(t, v)| t == ty && v == want))
        }),
        RevealTo::Source(cidr) => cidr.contains(peer.ip()),
        RevealTo::JwtClaim { claim, value } => {
            let verified = jwt.get_or_insert_with(|| match &reveal.jwt {
                Some(cfg) => token_of(cfg, headers).and_then(|t| verify_token(cfg, t)),
                None => Err(JwtRejection::Missing),
            });
            matches!(verified, Ok(claims) if policy::claim_matches(claims, claim, value))
        }
    });
    let reason = match (&rule, &jwt) {
        (None, Some(verified)) => {
            let rules: Vec<String> = reveal
                .to
                .iter()
                .filter(|r| matches!(r, RevealTo::JwtClaim { .. }))
                .map(RevealTo::describe)
                .collect();
            let why = match verified {
                Ok(_) => "claim does not match",
                Err(r) => r.as_str(),
            };
            Some(format!("{}: {why}", rules.join(", ")))
        }
        _ => None,
    };
    RevealDecision {
        revealed: rule.is_some(),
        rule: rule.map(RevealTo::describe),
        subject: subject.map(|s| render_subject(&s)),
        reason,
        fields: reveal
            .fields
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        count: 0,
    }
}

/// The selectors to open for this caller: all of `decrypt`, except that a
/// masked caller under the `envelope` mask does not get the masked fields opened.
pub fn open_selectors<'a>(
    reveal: Option<(&'a Reveal, &RevealDecision)>,
    decrypt: &'a policy::SelectorSet,
) -> &'a policy::SelectorSet {
    match reveal {
        Some((r, d)) if !d.revealed && r.mask == Mask::Envelope => &r.open_unmasked,
        _ => decrypt,
    }
}

/// Applies the decision to a response body whose fields are already opened:
/// masks `reveal.fields` for a masked caller, counts them for a revealed
/// one. The decision, with its count, is stored in `decided` for the audit
/// line (also when the body fails).
pub fn apply(
    reveal: &Reveal,
    mut decision: RevealDecision,
    body: &[u8],
    decided: &mut Option<RevealDecision>,
) -> Result<Option<Vec<u8>>, ProxyError> {
    let mut n = 0u32;
    let out = policy::rewrite(body, &reveal.fields, |site| {
        n += 1;
        if decision.revealed {
            return Ok::<_, ProxyError>(None);
        }
        Ok(mask_value(&reveal.mask, site.raw))
    })
    .map_err(|e| ProxyError::from_rewrite(e, BodySide::Response));
    decision.count = n;
    *decided = Some(decision);
    out
}

/// The JSON that replaces one value under `mask`; `None` leaves it.
fn mask_value(mask: &Mask, raw: &[u8]) -> Option<Vec<u8>> {
    let text: Option<String> = serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        });
    let json = |s: &str| serde_json::to_vec(s).unwrap_or_else(|_| b"null".to_vec());
    match mask {
        Mask::Null => Some(b"null".to_vec()),
        Mask::Fixed(s) => Some(json(s)),
        Mask::Envelope => match text {
            // the envelope itself, unopened
            Some(s) if envelope::looks_like_envelope(&s) => None,
            // plaintext (stored before sealing, or opened by an overlapping selector): withhold it
            _ => Some(b"null".to_vec()),
        },
        Mask::KeepLast(k) => match text {
            Some(s) if !envelope::looks_like_envelope(&s) => {
                let len = s.chars().count();
                let shown = if len > *k { *k } else { 0 };
                let mut out: String = "*".repeat(len - shown);
                out.extend(s.chars().skip(len - shown));
                Some(json(&out))
            }
            _ => Some(json(STARS)),
        },
    }
}

/// `CN=billing, O=Acme` in certificate order, bounded for the audit line.
fn render_subject(attrs: &[(String, String)]) -> String {
    let mut s = attrs
        .iter()
        .map(|(t, v)| format!("{t}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if s.len() > MAX_SUBJECT {
        let mut cut = MAX_SUBJECT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// One DER TLV: tag, content, what follows. Low tag numbers and definite
/// lengths only (all a certificate's names use).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject attributes of a DER X.509 certificate, in order: known types
/// by name (`CN`, `O`, …, see [`SUBJECT_ATTRIBUTES`]), others as `OID.<hex>`.
/// `None` when the certificate cannot be walked. The certificate has been
/// verified by rustls against the client CA before this sees it.
pub fn certificate_subject(der: &[u8]) -> Option<Vec<(String, String)>> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject
    let (mut tag, _, mut rest) = tlv(tbs)?;
    if tag == 0xa0 {
        (tag, _, rest) = tlv(rest)?;
    }
    if tag != 0x02 {
        return None;
    }
    for _ in 0..3 {
        let (t, _, r) = tlv(rest)?;
        if t != SEQUENCE {
            return None;
        }
        rest = r;
    }
    let (SEQUENCE, mut rdns, _) = tlv(rest)? else {
        return None;
    };
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (SET, mut atvs, r) = tlv(rdns)? else {
            return None;
        };
        rdns = r;
        while !atvs.is_empty() {
            let (SEQUENCE, atv, r) = tlv(atvs)? else {
                return None;
            };
            atvs = r;
            let (0x06, oid, r) = tlv(atv)? else {
                return None;
            };
            let (vt, val, _) = tlv(r)?;
            let value = match vt {
                // UTF8String, PrintableString, TeletexString (ASCII in practice), IA5String
                0x0c | 0x13 | 0x14 | 0x16 => std::str::from_utf8(val).ok()?.to_owned(),
                // BMPString: UTF-16BE
                0x1e => {
                    let units: Vec<u16> = val
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16(&units).ok()?
                }
                _ => continue,
            };
            let name = SUBJECT_ATTRIBUTES
                .iter()
                .find(|(_, o)| *o == oid)
                .map(|(n, _)| (*n).to_owned())
                .unwrap_or_else(|| format!("OID.{}", hex::encode(oid)));
            out.push((name, value));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_last_shows_only_the_tail_of_a_long_enough_string() {
        let m = Mask::KeepLast(4);
        assert_eq!(
            mask_value(&m, br#""123-45-6789""#).unwrap(),
            br#""*******6789""#
        );
        assert_eq!(mask_value(&m, br#""abcd""#).unwrap(), br#""****""#);
        assert_eq!(mask_value(&m, b"4111").unwrap(), br#""****""#);
        assert_eq!(
            mask_value(&m, "\"日本語テキスト\"".as_bytes()).unwrap(),
            "\"***テキスト\"".as_bytes()
        );
    }

    #[test]
    fn envelope_mask_keeps_envelopes_and_withholds_plaintext() {
        assert_eq!(mask_value(&Mask::Envelope, br#""sg1.AAAA""#), None);
        assert_eq!(
            mask_value(&Mask::Envelope, br#""123-45-6789""#).unwrap(),
            b"null"
        );
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
        let header = jsonwebtoken::Header::new(Algorithm::HS256);
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn verifier(text: &str) -> JwtVerifier {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), SECRET).unwrap();
        let policy = format!(
            r#"[[route]]
name = "r"
path = "/x"
key = "k"
response.decrypt = ["$.ssn"]
[route.reveal]
to = [{{ jwt_claim = "role", value = "support" }}]
mask = "null"
[route.reveal.jwt]
hs256_secret_file = "s"
{text}
"#
        );
        let file = dir.path().join("p.toml").display().to_string();
        let set = policy::PolicySet::from_sources(&[(file, policy)]).unwrap();
        set.routes()[0]
            .reveal
            .as_ref()
            .unwrap()
            .jwt
            .clone()
            .unwrap()
    }

    fn unsigned(claims: serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn tokens_verify_only_when_signed_current_and_addressed_to_us() {
        use serde_json::json;
        let cfg = verifier("");
        let ok = hs256(json!({"role": "support", "exp": now() + 60}), SECRET);
        assert_eq!(verify_token(&cfg, &ok).unwrap()["role"], "support");
        let cases = [
            (
                hs256(json!({"role": "support", "exp": now() - 120}), SECRET),
                JwtRejection::Expired,
            ),
            (
                hs256(json!({"role": "support", "exp": now() + 60}), &[b'x'; 32]),
                JwtRejection::BadSignature,
            ),
            (
                hs256(json!({"role": "support"}), SECRET),
                JwtRejection::NoExpiry,
            ),
            (
                hs256(json!({"role": "support", "exp": "soon"}), SECRET),
                JwtRejection::NoExpiry,
            ),
            (
                hs256(
                    json!({"role": "support", "exp": now() + 600, "nbf": now() + 300}),
                    SECRET,
                ),
                JwtRejection::NotYetValid,
            ),
            (
                // RFC 7519: a token addressed to someone is refused by whoever is not named
                hs256(
                    json!({"role": "support", "exp": now() + 60, "aud": "other"}),
                    SECRET,
                ),
                JwtRejection::WrongAudience,
            ),
            (
                unsigned(json!({"role": "support", "exp": now() + 60})),
                JwtRejection::AlgNone,
            ),
            ("a.b".to_owned(), JwtRejection::Malformed),
            ("!!.e30.e30".to_owned(), JwtRejection::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(verify_token(&cfg, &token).unwrap_err(), want, "{token}");
        }
        // an RS256 header meets no key (this route has an HS256 secret only)
        let rs = format!(
            "{}.e30.AAAA",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#)
        );
        assert_eq!(
            verify_token(&cfg, &rs).unwrap_err(),
            JwtRejection::AlgNotAccepted
        );
        // within the leeway an expired token still counts; without it, not
        let late = hs256(json!({"exp": now() - 10}), SECRET);
        assert!(verify_token(&cfg, &late).is_ok());
        let strict = verifier("leeway_secs = 0");
        assert_eq!(
            verify_token(&strict, &late).unwrap_err(),
            JwtRejection::Expired
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        use serde_json::json;
        let cfg = verifier("issuer = \"https://idp\"\naudience = \"sealgate\"");
        let t = |c| verify_token(&cfg, &hs256(c, SECRET));
        let exp = now() + 60;
        assert!(t(json!({"exp": exp, "iss": "https://idp", "aud": ["x", "sealgate"]})).is_ok());
        assert_eq!(
            t(json!({"exp": exp, "iss": "https://evil", "aud": "sealgate"})).unwrap_err(),
            JwtRejection::WrongIssuer
        );
        assert_eq!(
            t(json!({"exp": exp, "aud": "sealgate"})).unwrap_err(),
            JwtRejection::WrongIssuer
        );
        assert_eq!(
            t(json!({"exp": exp, "iss": "https://idp", "aud": "other"})).unwrap_err(),
            JwtRejection::WrongAudience
        );
        assert_eq!(
            t(json!({"exp": exp, "iss": "https://idp"})).unwrap_err(),
            JwtRejection::WrongAudience
        );
    }

    #[test]
    fn the_token_is_read_from_a_bearer_authorization_or_the_named_header() {
        let cfg = verifier("");
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, v.parse().unwrap());
            }
            m
        };
        assert_eq!(token_of(&cfg, &h(&[])), Err(JwtRejection::Missing));
        assert_eq!(
            token_of(&cfg, &h(&[("authorization", "Bearer a.b.c")])),
            Ok("a.b.c")
        );
        assert_eq!(
            token_of(&cfg, &h(&[("authorization", "bearer   a.b.c ")])),
            Ok("a.b.c")
        );
        for bad in ["a.b.c", "Basic dXNlcjpwdw==", "Bearer ", "Bearer a b"] {
            assert_eq!(
                token_of(&cfg, &h(&[("authorization", bad)])),
                Err(JwtRejection::NotBearer),
                "{bad}"
            );
        }
        assert_eq!(
            token_of(
                &cfg,
                &h(&[("authorization", "Bearer a"), ("authorization", "Bearer b")])
            ),
            Err(JwtRejection::NotBearer)
        );
        let named = verifier("header = \"X-Id-Token\"");
        assert_eq!(
            token_of(&named, &h(&[("x-id-token", "a.b.c")])),
            Ok("a.b.c")
        );
        assert_eq!(
            token_of(&named, &h(&[("x-id-token", "Bearer a.b.c")])),
            Ok("a.b.c")
        );
        assert_eq!(
            token_of(&named, &h(&[("authorization", "Bearer a.b.c")])),
            Err(JwtRejection::Missing)
        );
    }

    #[test]
    fn certificate_subjects_are_read_from_generated_certificates() {
        let mut p = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let subject = certificate_subject(cert.der()).unwrap();
        assert!(subject.contains(&("CN".to_owned(), "billing".to_owned())));
        assert!(subject.contains(&("O".to_owned(), "Acme".to_owned())));
        assert_eq!(certificate_subject(&cert.der()[..40]), None);
    }
}
