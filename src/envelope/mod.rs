//! The field envelope: one JSON value sealed into one JSON string.
//!
//! PURE: no I/O. Takes bytes, a key, a context and an RNG; returns values.
//!
//! # Format, version 1
//!
//! An envelope is the text `sg1.` followed by the unpadded base64url
//! (RFC 4648 §5) encoding of these bytes:
//!
//! ```text
//! offset  size  field
//! 0       1     flags: bits 0-1 value kind (0 = JSON text, 1 = string),
//!               bits 2-7 reserved, must be 0
//! 1       16    CMK key id (UUID bytes)
//! 17      1-5   CMK version, unsigned LEB128, minimal encoding
//! h-52    40    wrapped DEK (RFC 3394 AES key wrap of a 32-byte DEK)
//! h-12    12    nonce (random per value)
//! h       n     AES-256-GCM ciphertext of the n-byte plaintext
//! h+n     16    GCM tag
//! ```
//!
//! `h` is the header length: 70 bytes while the CMK version is below 128,
//! at most 74. The plaintext is a string's unescaped UTF-8 (kind 1) or the
//! exact JSON text of any other value (kind 0), so numbers such as
//! `12345678901234567890.000` or `1e400` come back byte for byte.
//!
//! The AAD binds the envelope to its header and its place:
//!
//! ```text
//! AAD = "sg1" || header bytes (flags .. nonce) || LEB128(len(context)) || context
//! ```
//!
//! Overhead: 86 bytes (70 header + 16 tag) before encoding. A 16-byte
//! string value (`"0123456789abcdef"`, 18 characters of JSON) becomes a
//! 142-character JSON string: 4 prefix + 136 base64url + 2 quotes, i.e.
//! +124 characters in the document.
//!
//! # Provider form (`sg2.`)
//!
//! A DEK wrapped by a remote KMS (`[provider]`) travels as that KMS's
//! CiphertextBlob, of its own size. Such envelopes are `sg2.` + base64url of:
//!
//! ```text
//! offset  size  field
//! 0       1     flags, as in version 1
//! 1       16    the remote key's id as sealgate names it (its KeyId's
//!               UUID bytes, else the first 16 bytes of SHA-256(KeyId))
//! 17      1-2   T = length of the context template, LEB128, minimal, 0..=256
//! 17+u    T     the route's context template, canonical form (UTF-8): the
//!               remote EncryptionContext the DEK is bound to names it
//! 17+u+T  1-2   L = length of the blob, unsigned LEB128, minimal, 1..=4096
//! ..      L     the remote CiphertextBlob
//! h-12    12    nonce
//! h       n     AES-256-GCM ciphertext
//! h+n     16    GCM tag
//! ```
//!
//! with `AAD = "sg2" || header || LEB128(len(context)) || context`. The
//! field after the flags is made once per DEK ([`provider_field`]) and
//! kept in the [`SealingKey`].
//! Overhead: 47 + T + L bytes (one more from T = 128, and from L = 128).
//!
//! Decoding is strict: a missing or other-version prefix, `=` padding,
//! non-canonical base64 trailing bits, a truncated body, reserved flag bits,
//! an unknown kind, or a non-minimal or out-of-range version varint are all
//! [`EnvelopeError::Malformed`] (or [`EnvelopeError::UnsupportedVersion`]);
//! any authentication failure (wrong key, wrong context, flipped bit) is the
//! single opaque [`EnvelopeError::DoesNotOpen`]. No plaintext is returned
//! unless the tag verifies.

mod deterministic;
mod format;
mod value;

pub use deterministic::{looks_deterministic, seal_deterministic, DetEnvelope, DetKey, DET_PREFIX};

#[cfg(test)]
mod tests;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::Nonce;
use rand::{CryptoRng, RngCore};
use serde::de::IgnoredAny;
use zeroize::{Zeroize, Zeroizing};

use crate::secret::DekCipher;
use format::{MAX_HEADER_LEN, NONCE_LEN, TAG_LEN};

/// Text prefix of every envelope of format version 1.
pub const PREFIX: &str = "sg1.";

/// Which CMK version wrapped the DEK of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CmkRef {
    /// The CMK's KeyId (a UUID, as 16 bytes).
    pub key_id: [u8; 16],
    /// The CMK version number (1 for the first).
    pub version: u32,
}

/// A DEK wrapped under a CMK version with AES key wrap (RFC 3394): 40 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WrappedDek(pub [u8; 40]);

/// Everything needed to seal: the header that travels in every envelope and
/// the initialised cipher of the DEK.
#[derive(Debug)]
pub struct SealingKey {
    /// CMK and version that wrapped the DEK.
    pub cmk: CmkRef,
    /// The wrapped DEK, copied into every envelope.
    pub wrapped: WrappedDek,
    /// The DEK's initialised cipher.
    pub cipher: DekCipher,
    /// For a DEK a remote KMS wrapped: its header field (see
    /// [`provider_field`]); envelopes are then of the provider form `sg2.`.
    pub remote: Option<Box<[u8]>>,
}

/// Text prefix of the provider form (DEK wrapped by a remote KMS).
pub const PROVIDER_PREFIX: &str = format::PROVIDER_PREFIX;

/// The `remote` field of a [`SealingKey`] for a remote CiphertextBlob:
/// `key_id || LEB128(len(template)) || template || LEB128(len(blob)) ||
/// blob`. The template is at most 256 bytes, the blob 1 to 4096 bytes.
pub fn provider_field(
    key_id: &[u8; 16],
    template: &str,
    blob: &[u8],
) -> Result<Box<[u8]>, EnvelopeError> {
    format::provider_field(key_id, template, blob).map(Vec::into_boxed_slice)
}

/// Longest context template an `sg2.` envelope carries, in bytes.
pub const MAX_PROVIDER_TEMPLATE_LEN: usize = format::MAX_TEMPLATE_LEN;

/// A typed error for anything that does not parse or open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not an envelope, or a malformed one.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// The envelope's format version is not one this build reads.
    #[error("unsupported envelope version")]
    UnsupportedVersion,
    /// Authentication failed: wrong key, wrong context, or tampered bytes.
    #[error("envelope does not open")]
    DoesNotOpen,
    /// The value to seal is not valid JSON text.
    #[error("value is not valid JSON")]
    InvalidValue,
    /// The value is too large for one AES-GCM message.
    #[error("value too large to seal")]
    TooLarge,
}

/// How a sealed value is typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Any JSON value but a string, kept as its exact text.
    Json,
    /// A JSON string, kept as its unescaped UTF-8.
    String,
}

/// Stack space for a small plaintext's header, ciphertext and tag.
const STACK_BODY: usize = 256;
/// Stack space for a small AAD.
const STACK_AAD: usize = 256;

/// Seals one JSON value (its raw JSON text) into envelope text, with a fresh
/// random nonce from `rng`.
pub fn seal(
    key: &SealingKey,
    value_json: &[u8],
    context: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(key, value_json, context, nonce)
}

/// Seals with a caller-chosen nonce: for known-answer vectors only. Reusing
/// a nonce under one DEK destroys GCM's confidentiality and integrity.
pub fn seal_with_nonce(
    key: &SealingKey,
    value_json: &[u8],
    context: &[u8],
    nonce: [u8; 12],
) -> Result<String, EnvelopeError> {
    seal_raw(key, value_json, context, nonce, |prefix, raw| {
        if prefix == PREFIX {
            format::to_text(raw)
        } else {
            format::to_provider_text(raw)
        }
    })
}

/// Seals like [`seal`] and appends the envelope text to `out` (no quotes,
/// no `String` of its own): for callers splicing many values into one body.
/// On error `out` is as it was.
pub fn seal_append(
    key: &SealingKey,
    value_json: &[u8],
    context: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_raw(key, value_json, context, nonce, |prefix, raw| {
        format::append_text(prefix, raw, out)
    })?
}

/// Seals into the binary envelope and hands it to `emit` (which encodes it).
fn seal_raw<R>(
    key: &SealingKey,
    value_json: &[u8],
    context: &[u8],
    nonce: [u8; 12],
    emit: impl FnOnce(&'static str, &[u8]) -> R,
) -> Result<R, EnvelopeError> {
    let (kind, plain) = value::prepare(value_json)?;
    let pt = plain.bytes();

    let mut header_stack = [0u8; STACK_HEADER];
    let mut header_heap;
    let (header, prefix, tag): (&[u8], _, _) = match &key.remote {
        None => {
            let n = format::write_header(&mut header_stack, kind, &key.cmk, &key.wrapped, &nonce);
            (&header_stack[..n], PREFIX, format::AAD_TAG)
        }
        Some(blob) => {
            let n = 1 + blob.len() + NONCE_LEN;
            let out: &mut [u8] = if n <= STACK_HEADER {
                &mut header_stack[..n]
            } else {
                header_heap = vec![0u8; n];
                &mut header_heap
            };
            out[0] = format::flags_of(kind);
            out[1..1 + blob.len()].copy_from_slice(blob);
            out[1 + blob.len()..].copy_from_slice(&nonce);
            (&*out, PROVIDER_PREFIX, format::PROVIDER_AAD_TAG)
        }
    };
    let header_len = header.len();

    let aad_len = format::aad_len(header_len, context);
    let mut aad_stack = [0u8; STACK_AAD];
    let mut aad_heap;
    let aad: &mut [u8] = if aad_len <= STACK_AAD {
        &mut aad_stack[..aad_len]
    } else {
        aad_heap = vec![0u8; aad_len];
        &mut aad_heap
    };
    format::write_aad(aad, tag, header, context);

    let total = header_len
        .checked_add(pt.len())
        .and_then(|n| n.checked_add(TAG_LEN))
        .ok_or(EnvelopeError::TooLarge)?;
    let mut body_stack = [0u8; STACK_BODY];
    let mut body_heap;
    let body: &mut [u8] = if total <= STACK_BODY {
        &mut body_stack[..total]
    } else {
        body_heap = Zeroizing::new(vec![0u8; total]);
        &mut body_heap
    };
    let (head, rest) = body.split_at_mut(header_len);
    head.copy_from_slice(header);
    let (ct, tag_out) = rest.split_at_mut(pt.len());
    ct.copy_from_slice(pt);
    match key
        .cipher
        .cipher()
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, ct)
    {
        Ok(tag) => tag_out.copy_from_slice(&tag),
        Err(_) => {
            ct.zeroize();
            return Err(EnvelopeError::TooLarge);
        }
    }
    Ok(emit(prefix, body))
}

/// Stack space for a header (a provider form's blob included).
const STACK_HEADER: usize = 512;
const _: () = assert!(STACK_HEADER >= MAX_HEADER_LEN);

/// True when `s` starts like an envelope of some version (`sg<digits>.`,
/// or the deterministic `sgd<digits>.`). A newer version is then reported
/// as unsupported rather than passed through as if it were the plain value.
pub fn looks_like_envelope(s: &str) -> bool {
    format::version_prefix_len(s).is_some() || deterministic::looks_deterministic(s)
}

/// A parsed envelope: header fields checked, not yet opened.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// How the plaintext is typed.
    kind: ValueKind,
    /// The CMK version that wrapped the DEK.
    cmk: CmkRef,
    /// The wrapped DEK.
    wrapped: WrappedDek,
    /// Length of the header at the start of `raw`.
    header_len: usize,
    /// The decoded bytes: header, ciphertext, tag.
    raw: Vec<u8>,
    /// Provider form: where the remote CiphertextBlob lies in `raw`.
    blob: Option<(usize, usize)>,
    /// Provider form: where the context template lies in `raw`.
    template: (usize, usize),
}

impl Envelope {
    /// Decodes envelope text and checks its header; does not decrypt.
    pub fn parse(text: &str) -> Result<Envelope, EnvelopeError> {
        if text.starts_with(PROVIDER_PREFIX) {
            let raw = format::from_provider_text(text)?;
            let header = format::read_provider_header(&raw)?;
            return Ok(Envelope {
                kind: header.kind,
                // the remote key's id as sealgate names it; the remote KMS
                // tracks versions inside its blob
                cmk: CmkRef {
                    key_id: header.key_id,
                    version: 0,
                },
                wrapped: WrappedDek([0; 40]),
                header_len: header.len,
                raw,
                blob: Some(header.blob),
                template: header.template,
            });
        }
        let raw = format::from_text(text)?;
        let header = format::read_header(&raw)?;
        Ok(Envelope {
            kind: header.kind,
            cmk: header.cmk,
            wrapped: header.wrapped,
            header_len: header.len,
            raw,
            blob: None,
            template: (0, 0),
        })
    }

    /// The remote KMS's CiphertextBlob of this envelope's DEK, for an
    /// envelope of the provider form (`sg2.`); `None` for `sg1.`.
    pub fn provider_blob(&self) -> Option<&[u8]> {
        self.blob.map(|(s, e)| &self.raw[s..e])
    }

    /// The context template an envelope of the provider form names (the
    /// remote EncryptionContext its DEK is bound to); `None` for `sg1.`.
    pub fn provider_template(&self) -> Option<&str> {
        self.blob?;
        std::str::from_utf8(&self.raw[self.template.0..self.template.1]).ok()
    }

    /// The header field after the flags of an envelope of the provider
    /// form (key id, template and blob: what identifies its DEK).
    pub fn provider_field(&self) -> Option<&[u8]> {
        self.blob.map(|(_, end)| &self.raw[1..end])
    }

    /// The CMK version that wrapped this envelope's DEK; for the provider
    /// form, the remote key's id as sealgate names it, version 0.
    pub fn cmk(&self) -> CmkRef {
        self.cmk
    }

    /// This envelope's wrapped DEK.
    pub fn wrapped(&self) -> &WrappedDek {
        &self.wrapped
    }

    /// How the sealed value is typed.
    pub fn value_kind(&self) -> ValueKind {
        self.kind
    }

    /// Length of the sealed plaintext in bytes.
    pub fn plaintext_len(&self) -> usize {
        self.raw.len() - self.header_len - TAG_LEN
    }

    /// Verifies and decrypts with the unwrapped DEK's cipher and the
    /// context the value was sealed under; returns the value's JSON text.
    pub fn open(&self, cipher: &DekCipher, context: &[u8]) -> Result<Opened, EnvelopeError> {
        // Room for the quotes of a string, so the common case needs no
        // second buffer; nothing here ever reallocates.
        let mut buf = Zeroizing::new(Vec::with_capacity(self.plaintext_len() + 2));
        self.open_value(cipher, context, &mut buf)?;
        Ok(Opened(buf))
    }

    /// [`Envelope::open`] straight onto the end of `out` (e.g. the body
    /// being rewritten), with no buffer of its own: the value's JSON text is
    /// appended. On failure nothing is left appended, and whatever was
    /// decrypted into `out` is zeroized first.
    pub fn open_append(
        &self,
        cipher: &DekCipher,
        context: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let mark = out.len();
        let opened = self.open_value(cipher, context, out);
        if opened.is_err() {
            out[mark..].zeroize();
            out.truncate(mark);
        }
        opened
    }

    /// Appends the opened value's JSON text to `buf`; on failure `buf` may
    /// hold part of it (the callers zeroize).
    fn open_value(
        &self,
        cipher: &DekCipher,
        context: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let header = &self.raw[..self.header_len];
        let nonce = Nonce::from_slice(&header[self.header_len - NONCE_LEN..]);
        let (ct, tag) = self.raw[self.header_len..].split_at(self.plaintext_len());

        let aad_len = format::aad_len(self.header_len, context);
        let mut aad_stack = [0u8; STACK_AAD];
        let mut aad_heap;
        let aad: &mut [u8] = if aad_len <= STACK_AAD {
            &mut aad_stack[..aad_len]
        } else {
            aad_heap = vec![0u8; aad_len];
            &mut aad_heap
        };
        let aad_tag = match self.blob {
            Some(_) => format::PROVIDER_AAD_TAG,
            None => format::AAD_TAG,
        };
        format::write_aad(aad, aad_tag, header, context);

        let mark = buf.len();
        if self.kind == ValueKind::String {
            buf.push(b'"');
        }
        let start = buf.len();
        buf.extend_from_slice(ct);
        cipher
            .cipher()
            .decrypt_in_place_detached(nonce, aad, &mut buf[start..], tag.into())
            .map_err(|_| EnvelopeError::DoesNotOpen)?;

        match self.kind {
            ValueKind::String => {
                let s = std::str::from_utf8(&buf[start..])
                    .map_err(|_| EnvelopeError::Malformed("sealed string is not UTF-8"))?;
                if value::needs_no_escape(s.as_bytes()) {
                    buf.push(b'"');
                } else {
                    let quoted = value::quote(s)?;
                    buf[mark..].zeroize();
                    buf.truncate(mark);
                    buf.extend_from_slice(&quoted);
                }
                Ok(())
            }
            ValueKind::Json => {
                let s = std::str::from_utf8(&buf[start..])
                    .map_err(|_| EnvelopeError::Malformed("sealed value is not UTF-8"))?;
                serde_json::from_str::<IgnoredAny>(s)
                    .map_err(|_| EnvelopeError::Malformed("sealed value is not JSON"))?;
                Ok(())
            }
        }
    }
}

/// An opened value: its JSON text, zeroized on drop, redacted in `Debug`.
pub struct Opened(Zeroizing<Vec<u8>>);

impl Opened {
    /// The JSON text of the original value (a string comes back quoted).
    pub fn json(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened(<{} bytes redacted>)", self.0.len())
    }
}
