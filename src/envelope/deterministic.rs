//! The deterministic (searchable) field envelope: equal values sealed under
//! the same CMK version, context and field label give equal envelope text,
//! so an upstream can still match on equality.
//!
//! PURE: no I/O, no RNG.
//!
//! # Format, deterministic version 1
//!
//! The text `sgd1.` followed by the unpadded base64url of:
//!
//! ```text
//! offset  size  field
//! 0       1     flags: bits 0-1 value kind (0 = JSON text, 1 = string),
//!               bits 2-7 reserved, must be 0
//! 1       16    CMK key id (UUID bytes)
//! 17      1-5   CMK version, unsigned LEB128, minimal encoding
//! h       n     AES-256-GCM-SIV ciphertext of the n-byte plaintext
//! h+n     16    GCM-SIV tag (the synthetic IV)
//! ```
//!
//! There is no wrapped DEK and no nonce: the key is derived from the CMK
//! version's material and the route context inside the key store
//! ([`crate::keys::KeyProvider::derive_key`]), and the nonce is fixed (all
//! zero). AES-GCM-SIV (RFC 8452) is nonce-misuse resistant: reusing a nonce
//! reveals only whether two (AAD, plaintext) pairs are equal — which is the
//! point here — and nothing else.
//!
//! `AAD = "sgd1" || header || LEB128(len(context)) || context`, where the
//! context is the same per-field context the random envelope binds (route
//! context, NUL, field label): a value moved to another field does not open.
//!
//! Overhead: 34 bytes (18 header + 16 tag) before encoding; a 16-byte string
//! becomes a 73-character JSON string (5 prefix + 66 base64url + 2 quotes).
//!
//! What it leaks: equality and therefore frequency. See docs/searchable.md.

use aes_gcm_siv::aead::AeadInPlace;
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use serde::de::IgnoredAny;
use zeroize::Zeroizing;

use super::format::{put_varint, read_varint_u32, TAG_LEN};
use super::{value, CmkRef, EnvelopeError, Opened, ValueKind};
use crate::secret::DataKey;

/// Text prefix of every deterministic envelope.
pub const DET_PREFIX: &str = "sgd1.";
/// First bytes of the AAD.
const AAD_TAG: &[u8; 4] = b"sgd1";
/// Largest header: flags, key id, 5-byte version.
const MAX_HEADER_LEN: usize = 1 + 16 + 5;
/// Smallest decoded envelope: 1-byte version, empty ciphertext.
const MIN_DECODED_LEN: usize = 1 + 16 + 1 + TAG_LEN;
/// The fixed nonce (see the module docs for why that is sound here).
const NONCE: [u8; 12] = [0u8; 12];

/// An initialised AES-256-GCM-SIV cipher under a derived key, with the CMK
/// version it was derived from. Redacted `Debug`.
#[derive(Clone)]
pub struct DetKey {
    /// The CMK version whose material the key was derived from.
    pub cmk: CmkRef,
    cipher: Aes256GcmSiv,
}

impl DetKey {
    /// Runs the key schedule for a derived key.
    pub fn new(cmk: CmkRef, key: &DataKey) -> Self {
        DetKey {
            cmk,
            cipher: Aes256GcmSiv::new(key.expose().into()),
        }
    }
}

impl std::fmt::Debug for DetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DetKey({:?}, <redacted>)", self.cmk)
    }
}

/// True when `s` starts with a deterministic prefix of some version (`sgd<digits>.`).
pub fn looks_deterministic(s: &str) -> bool {
    let Some(rest) = s.as_bytes().strip_prefix(b"sgd") else {
        return false;
    };
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    digits > 0 && rest.get(digits) == Some(&b'.')
}

fn write_header(out: &mut [u8; MAX_HEADER_LEN], kind: ValueKind, cmk: &CmkRef) -> usize {
    out[0] = match kind {
        ValueKind::Json => 0,
        ValueKind::String => 1,
    };
    out[1..17].copy_from_slice(&cmk.key_id);
    17 + put_varint(&mut out[17..], u64::from(cmk.version))
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(AAD_TAG.len() + header.len() + 5 + context.len());
    v.extend_from_slice(AAD_TAG);
    v.extend_from_slice(header);
    let mut n = [0u8; 10];
    let len = put_varint(&mut n, context.len() as u64);
    v.extend_from_slice(&n[..len]);
    v.extend_from_slice(context);
    v
}

/// Seals one JSON value deterministically: same key, value and context give
/// the same text.
pub fn seal_deterministic(
    key: &DetKey,
    value_json: &[u8],
    context: &[u8],
) -> Result<String, EnvelopeError> {
    let (kind, plain) = value::prepare(value_json)?;
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = write_header(&mut header, kind, &key.cmk);
    let header = &header[..header_len];
    let mut body = Zeroizing::new(Vec::with_capacity(
        header_len + plain.bytes().len() + TAG_LEN,
    ));
    body.extend_from_slice(header);
    body.extend_from_slice(plain.bytes());
    let tag = key
        .cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&NONCE),
            &aad(header, context),
            &mut body[header_len..],
        )
        .map_err(|_| EnvelopeError::TooLarge)?;
    body.extend_from_slice(&tag);
    let mut out = String::with_capacity(DET_PREFIX.len() + (body.len() * 4).div_ceil(3));
    out.push_str(DET_PREFIX);
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &body[..],
        &mut out,
    );
    Ok(out)
}

/// A parsed deterministic envelope: header checked, not yet opened.
#[derive(Clone, Debug)]
pub struct DetEnvelope {
    kind: ValueKind,
    cmk: CmkRef,
    header_len: usize,
    raw: Vec<u8>,
}

impl DetEnvelope {
    /// Strictly decodes envelope text and checks its header.
    pub fn parse(text: &str) -> Result<DetEnvelope, EnvelopeError> {
        let body = match text.strip_prefix(DET_PREFIX) {
            Some(b) => b,
            None if looks_deterministic(text) => return Err(EnvelopeError::UnsupportedVersion),
            None => return Err(EnvelopeError::Malformed("missing sgd1. prefix")),
        };
        if body.len() < (MIN_DECODED_LEN * 4).div_ceil(3) {
            return Err(EnvelopeError::Malformed("truncated"));
        }
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
            .map_err(|_| EnvelopeError::Malformed("invalid base64url"))?;
        if raw.len() < MIN_DECODED_LEN {
            return Err(EnvelopeError::Malformed("truncated"));
        }
        let kind = match raw[0] {
            0 => ValueKind::Json,
            1 => ValueKind::String,
            f if f & !0b11 != 0 => return Err(EnvelopeError::Malformed("reserved flag bits set")),
            _ => return Err(EnvelopeError::Malformed("unknown value kind")),
        };
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&raw[1..17]);
        let (version, n) = read_varint_u32(&raw[17..])?;
        let header_len = 17 + n;
        if raw.len() < header_len + TAG_LEN {
            return Err(EnvelopeError::Malformed("truncated"));
        }
        Ok(DetEnvelope {
            kind,
            cmk: CmkRef { key_id, version },
            header_len,
            raw,
        })
    }

    /// The CMK version the key was derived from.
    pub fn cmk(&self) -> CmkRef {
        self.cmk
    }

    /// Verifies and decrypts; returns the value's JSON text.
    pub fn open(&self, key: &DetKey, context: &[u8]) -> Result<Opened, EnvelopeError> {
        if key.cmk != self.cmk {
            return Err(EnvelopeError::DoesNotOpen);
        }
        let header = &self.raw[..self.header_len];
        let (ct, tag) =
            self.raw[self.header_len..].split_at(self.raw.len() - self.header_len - TAG_LEN);
        let mut buf = Zeroizing::new(Vec::with_capacity(ct.len() + 2));
        let start = match self.kind {
            ValueKind::String => {
                buf.push(b'"');
                1
            }
            ValueKind::Json => 0,
        };
        buf.extend_from_slice(ct);
        key.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&NONCE),
                &aad(header, context),
                &mut buf[start..],
                tag.into(),
            )
            .map_err(|_| EnvelopeError::DoesNotOpen)?;
        match self.kind {
            ValueKind::String => {
                let s = std::str::from_utf8(&buf[1..])
                    .map_err(|_| EnvelopeError::Malformed("sealed string is not UTF-8"))?;
                if value::needs_no_escape(s.as_bytes()) {
                    buf.push(b'"');
                    Ok(Opened(buf))
                } else {
                    Ok(Opened(value::quote(s)?))
                }
            }
            ValueKind::Json => {
                let s = std::str::from_utf8(&buf)
                    .map_err(|_| EnvelopeError::Malformed("sealed value is not UTF-8"))?;
                serde_json::from_str::<IgnoredAny>(s)
                    .map_err(|_| EnvelopeError::Malformed("sealed value is not JSON"))?;
                Ok(Opened(buf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: u32, byte: u8) -> DetKey {
        DetKey::new(
            CmkRef {
                key_id: [7; 16],
                version,
            },
            &DataKey::from_bytes([byte; 32]),
        )
    }

    #[test]
    fn equal_values_seal_equal_and_open_back() {
        let k = key(1, 1);
        let a = seal_deterministic(&k, br#""alice@example.com""#, b"users\0email").unwrap();
        let b = seal_deterministic(&k, br#""alice@example.com""#, b"users\0email").unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(DET_PREFIX));
        let c = seal_deterministic(&k, br#""bob@example.com""#, b"users\0email").unwrap();
        assert_ne!(a, c);
        let env = DetEnvelope::parse(&a).unwrap();
        assert_eq!(env.cmk(), k.cmk);
        let opened = env.open(&k, b"users\0email").unwrap();
        assert_eq!(opened.json(), br#""alice@example.com""#);
        // escaped strings and other JSON types come back the same
        for v in [
            &br#""a\"b\u00e9""#[..],
            b"12.50",
            b"true",
            b"null",
            br#"{"x":[1]}"#,
        ] {
            let t = seal_deterministic(&k, v, b"c").unwrap();
            let back = DetEnvelope::parse(&t).unwrap().open(&k, b"c").unwrap();
            let want: serde_json::Value = serde_json::from_slice(v).unwrap();
            let got: serde_json::Value = serde_json::from_slice(back.json()).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn other_context_key_or_version_differs_and_does_not_open() {
        let k = key(1, 1);
        let a = seal_deterministic(&k, br#""x""#, b"users\0email").unwrap();
        assert_ne!(
            a,
            seal_deterministic(&k, br#""x""#, b"users\0name").unwrap()
        );
        assert_ne!(
            a,
            seal_deterministic(&key(2, 1), br#""x""#, b"users\0email").unwrap()
        );
        assert_ne!(
            a,
            seal_deterministic(&key(1, 2), br#""x""#, b"users\0email").unwrap()
        );
        let env = DetEnvelope::parse(&a).unwrap();
        assert_eq!(
            env.open(&k, b"users\0name").unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
        assert_eq!(
            env.open(&key(1, 2), b"users\0email").unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
    }

    #[test]
    fn strict_parsing() {
        let k = key(1, 1);
        let a = seal_deterministic(&k, br#""x""#, b"c").unwrap();
        assert!(looks_deterministic(&a));
        assert!(!looks_deterministic("sg1.AAAA"));
        assert_eq!(
            DetEnvelope::parse("sgd2.AAAA").unwrap_err(),
            EnvelopeError::UnsupportedVersion
        );
        assert!(matches!(
            DetEnvelope::parse("sgd1.AAAA"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            DetEnvelope::parse(&format!("{a}=")),
            Err(EnvelopeError::Malformed(_))
        ));
        // a flipped bit anywhere does not open
        let mut raw = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &a[DET_PREFIX.len()..],
        )
        .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let text = format!(
            "{DET_PREFIX}{}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw)
        );
        assert_eq!(
            DetEnvelope::parse(&text)
                .unwrap()
                .open(&k, b"c")
                .unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
        raw[0] = 0x80;
        let text = format!(
            "{DET_PREFIX}{}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw)
        );
        assert!(matches!(
            DetEnvelope::parse(&text),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
