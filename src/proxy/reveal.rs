//! Per-caller reveal and masking of opened response fields: decides, from
//! the request's headers, verified mTLS client certificate and source
//! address, whether the caller sees a route's `reveal.fields` in clear, and
//! masks them for everyone else. The decision (who, which rule, which
//! fields, revealed or masked) goes to the audit log — never a value.

use http::{HeaderMap, StatusCode};
use std::net::SocketAddr;

use super::error::ProxyError;
use super::fields::{rewrite_error, FieldCounts};
use crate::envelope;
use crate::policy::{self, Mask, Reveal, RevealTo, SUBJECT_ATTRIBUTES};
use crate::tls::ConnectionInfo;

/// What the mask puts where a non-string value (or an envelope) stood under `keep_last`.
const STARS: &str = "****";
/// Longest certificate subject the audit line carries.
const MAX_SUBJECT: usize = 512;

/// The reveal decision for one request, as the audit line records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealDecision {
    /// The caller sees the fields in clear.
    pub revealed: bool,
    /// The rule that matched (`header x-role`, `cert_subject CN=billing`, `source 10.0.0.0/8`).
    pub rule: Option<String>,
    /// The verified client certificate's subject, when it presented one.
    pub subject: Option<String>,
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
    });
    RevealDecision {
        revealed: rule.is_some(),
        rule: rule.map(RevealTo::describe),
        subject: subject.map(|s| render_subject(&s)),
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
/// one, and stores the decision in `counts` for the audit line.
pub fn apply(
    reveal: &Reveal,
    mut decision: RevealDecision,
    body: &[u8],
    counts: &mut FieldCounts,
) -> Result<Option<Vec<u8>>, ProxyError> {
    let mut n = 0u32;
    let out = policy::rewrite(body, &reveal.fields, |site| {
        n += 1;
        if decision.revealed {
            return Ok::<_, ProxyError>(None);
        }
        Ok(mask_value(&reveal.mask, site.raw))
    })
    .map_err(|e| rewrite_error(e, true));
    decision.count = n;
    counts.reveal = Some(decision);
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

/// True when `e` says the upstream body is not JSON: it holds nothing to mask.
pub fn is_not_json(e: &ProxyError) -> bool {
    e.code == "upstream_invalid_json" && e.status == StatusCode::BAD_GATEWAY
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
