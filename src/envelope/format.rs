//! The byte layout of a version 1 envelope and of the provider form
//! (`sg2.`): header encoding and strict decoding, the LEB128 varints, the
//! AAD, and the base64url text forms.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{CmkRef, EnvelopeError, ValueKind, WrappedDek, PREFIX};

/// Bytes before the header that the AAD starts with: the version tag.
pub(crate) const AAD_TAG: &[u8; 3] = b"sg1";
/// The AAD's version tag of the provider form (`sg2.`).
pub(crate) const PROVIDER_AAD_TAG: &[u8; 3] = b"sg2";
/// Text prefix of the provider form.
pub(crate) const PROVIDER_PREFIX: &str = "sg2.";
/// Longest remote CiphertextBlob the provider form carries.
pub(crate) const MAX_BLOB_LEN: usize = 4096;
/// Longest context template the provider form carries (bytes of UTF-8).
pub(crate) const MAX_TEMPLATE_LEN: usize = 256;
/// Smallest decoded provider envelope: flags, key id, an empty template
/// (its 1-byte length), a 1-byte length, a 1-byte blob, nonce, empty
/// ciphertext, tag.
const MIN_PROVIDER_LEN: usize = FLAGS_LEN + KEY_ID_LEN + 1 + 1 + 1 + NONCE_LEN + TAG_LEN;
/// Length of the flags byte.
const FLAGS_LEN: usize = 1;
/// Length of the CMK key id.
const KEY_ID_LEN: usize = 16;
/// Length of the wrapped DEK.
const WRAPPED_LEN: usize = 40;
/// Length of the GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of the GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Largest header: flags, key id, 5-byte version, wrapped DEK, nonce.
pub(crate) const MAX_HEADER_LEN: usize = FLAGS_LEN + KEY_ID_LEN + 5 + WRAPPED_LEN + NONCE_LEN;
/// Smallest decoded envelope: a 1-byte version and an empty ciphertext.
const MIN_DECODED_LEN: usize = FLAGS_LEN + KEY_ID_LEN + 1 + WRAPPED_LEN + NONCE_LEN + TAG_LEN;

/// Flags bits that carry the value kind.
const KIND_MASK: u8 = 0b0000_0011;
/// Kind code of a value stored as its JSON text.
const KIND_JSON: u8 = 0;
/// Kind code of a string stored as its unescaped UTF-8.
const KIND_STRING: u8 = 1;

/// Writes `v` as unsigned LEB128 into `out`; returns the bytes written.
/// `out` must hold at least 10 bytes for a u64 (5 for a u32).
pub(crate) fn put_varint(out: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out[i] = byte;
            return i + 1;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

/// Reads a minimal unsigned LEB128 u32 (at most 5 bytes) from the start
/// of `buf`; returns the value and the bytes read.
pub(crate) fn read_varint_u32(buf: &[u8]) -> Result<(u32, usize), EnvelopeError> {
    let mut value: u64 = 0;
    for i in 0..5 {
        let byte = *buf.get(i).ok_or(EnvelopeError::Malformed("truncated"))?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(EnvelopeError::Malformed("non-minimal CMK version"));
            }
            let v = u32::try_from(value)
                .map_err(|_| EnvelopeError::Malformed("CMK version out of range"))?;
            return Ok((v, i + 1));
        }
    }
    Err(EnvelopeError::Malformed("CMK version out of range"))
}

/// Writes the header (flags through nonce) into `out`; returns its length.
/// `out` must hold at least [`MAX_HEADER_LEN`] bytes.
pub(crate) fn write_header(
    out: &mut [u8],
    kind: ValueKind,
    cmk: &CmkRef,
    wrapped: &WrappedDek,
    nonce: &[u8; NONCE_LEN],
) -> usize {
    out[0] = match kind {
        ValueKind::Json => KIND_JSON,
        ValueKind::String => KIND_STRING,
    };
    let mut at = FLAGS_LEN;
    out[at..at + KEY_ID_LEN].copy_from_slice(&cmk.key_id);
    at += KEY_ID_LEN;
    at += put_varint(&mut out[at..], u64::from(cmk.version));
    out[at..at + WRAPPED_LEN].copy_from_slice(&wrapped.0);
    at += WRAPPED_LEN;
    out[at..at + NONCE_LEN].copy_from_slice(nonce);
    at + NONCE_LEN
}

/// The fields of a decoded header.
pub(crate) struct Header {
    /// How the plaintext is typed.
    pub(crate) kind: ValueKind,
    /// The CMK version that wrapped the DEK.
    pub(crate) cmk: CmkRef,
    /// The wrapped DEK.
    pub(crate) wrapped: WrappedDek,
    /// Header length in bytes (the nonce ends it).
    pub(crate) len: usize,
}

/// Decodes and checks the header at the start of `raw` (a whole decoded
/// envelope, tag included).
pub(crate) fn read_header(raw: &[u8]) -> Result<Header, EnvelopeError> {
    if raw.len() < MIN_DECODED_LEN {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    let flags = raw[0];
    if flags & !KIND_MASK != 0 {
        return Err(EnvelopeError::Malformed("reserved flag bits set"));
    }
    let kind = match flags & KIND_MASK {
        KIND_JSON => ValueKind::Json,
        KIND_STRING => ValueKind::String,
        _ => return Err(EnvelopeError::Malformed("unknown value kind")),
    };
    let mut at = FLAGS_LEN;
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&raw[at..at + KEY_ID_LEN]);
    at += KEY_ID_LEN;
    let (version, n) = read_varint_u32(&raw[at..])?;
    at += n;
    let rest = raw.len().saturating_sub(at);
    if rest < WRAPPED_LEN + NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    let mut wrapped = [0u8; WRAPPED_LEN];
    wrapped.copy_from_slice(&raw[at..at + WRAPPED_LEN]);
    at += WRAPPED_LEN + NONCE_LEN;
    Ok(Header {
        kind,
        cmk: CmkRef { key_id, version },
        wrapped: WrappedDek(wrapped),
        len: at,
    })
}

/// Length of the AAD for a header of `header_len` bytes and a context.
pub(crate) fn aad_len(header_len: usize, context: &[u8]) -> usize {
    let mut scratch = [0u8; 10];
    AAD_TAG.len() + header_len + put_varint(&mut scratch, context.len() as u64) + context.len()
}

/// Writes `tag || header || LEB128(len(context)) || context` into `out`,
/// which must be exactly [`aad_len`] bytes long; `tag` is `"sg1"` (or
/// `"sg2"` for the provider form).
pub(crate) fn write_aad(out: &mut [u8], tag: &[u8; 3], header: &[u8], context: &[u8]) {
    let mut at = tag.len();
    out[..at].copy_from_slice(tag);
    out[at..at + header.len()].copy_from_slice(header);
    at += header.len();
    at += put_varint(&mut out[at..], context.len() as u64);
    out[at..at + context.len()].copy_from_slice(context);
}

/// Encodes the binary envelope as its text form: `sg1.` + base64url, no padding.
pub(crate) fn to_text(raw: &[u8]) -> String {
    let encoded = (raw.len() * 4).div_ceil(3);
    let mut out = String::with_capacity(PREFIX.len() + encoded);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(raw, &mut out);
    out
}

/// Encodes a binary provider envelope as `sg2.` + base64url, no padding.
pub(crate) fn to_provider_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(PROVIDER_PREFIX.len() + (raw.len() * 4).div_ceil(3));
    out.push_str(PROVIDER_PREFIX);
    URL_SAFE_NO_PAD.encode_string(raw, &mut out);
    out
}

/// Appends the text form of `raw` (as [`to_text`], with `prefix`) to `out`.
pub(crate) fn append_text(
    prefix: &str,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let mark = out.len();
    out.extend_from_slice(prefix.as_bytes());
    let at = out.len();
    out.resize(at + (raw.len() * 4).div_ceil(3), 0);
    match URL_SAFE_NO_PAD.encode_slice(raw, &mut out[at..]) {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(mark);
            Err(EnvelopeError::TooLarge)
        }
    }
}

/// Strips the prefix and strictly decodes the base64url body: no padding,
/// canonical trailing bits only.
pub(crate) fn from_text(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    let body = match text.strip_prefix(PREFIX) {
        Some(body) => body,
        None if version_prefix_len(text).is_some() => {
            return Err(EnvelopeError::UnsupportedVersion)
        }
        None => return Err(EnvelopeError::Malformed("missing sg1. prefix")),
    };
    // Refuse before allocating: anything shorter cannot hold a header and tag.
    if body.len() < (MIN_DECODED_LEN * 4).div_ceil(3) {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| EnvelopeError::Malformed("invalid base64url"))
}

/// Strictly decodes the body of a provider envelope (`sg2.` + base64url).
pub(crate) fn from_provider_text(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    let body = text
        .strip_prefix(PROVIDER_PREFIX)
        .ok_or(EnvelopeError::Malformed("missing sg2. prefix"))?;
    if body.len() < (MIN_PROVIDER_LEN * 4).div_ceil(3) {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| EnvelopeError::Malformed("invalid base64url"))
}

/// The provider form's header fields that follow the flags, written once
/// per DEK: `key id (16) || LEB128(len(template)) || template ||
/// LEB128(len(blob)) || blob`.
pub(crate) fn provider_field(
    key_id: &[u8; KEY_ID_LEN],
    template: &str,
    blob: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if blob.is_empty() || blob.len() > MAX_BLOB_LEN {
        return Err(EnvelopeError::Malformed(
            "remote ciphertext blob length out of range",
        ));
    }
    if template.len() > MAX_TEMPLATE_LEN {
        return Err(EnvelopeError::Malformed("context template too long"));
    }
    let mut v = Vec::with_capacity(KEY_ID_LEN + 4 + template.len() + blob.len());
    let mut n = [0u8; 10];
    v.extend_from_slice(key_id);
    let k = put_varint(&mut n, template.len() as u64);
    v.extend_from_slice(&n[..k]);
    v.extend_from_slice(template.as_bytes());
    let k = put_varint(&mut n, blob.len() as u64);
    v.extend_from_slice(&n[..k]);
    v.extend_from_slice(blob);
    Ok(v)
}

/// A decoded provider header: the value kind, the key id, where the
/// template, the blob and the whole field lie in the raw bytes, and the
/// header length (the nonce ends it).
pub(crate) struct ProviderHeader {
    /// How the plaintext is typed.
    pub(crate) kind: ValueKind,
    /// The remote key's id as sealgate names it (`keys::remote::cmk_of`).
    pub(crate) key_id: [u8; KEY_ID_LEN],
    /// Start and end of the context template (UTF-8, checked).
    pub(crate) template: (usize, usize),
    /// Start and end of the remote CiphertextBlob.
    pub(crate) blob: (usize, usize),
    /// Header length in bytes.
    pub(crate) len: usize,
}

/// Reads `LEB128(n) || n bytes` at `at`, `n` within `1..=max` (`0..=max`
/// with `empty_ok`); answers the bytes' start and end.
fn read_sized(
    raw: &[u8],
    at: usize,
    max: usize,
    empty_ok: bool,
    what: &'static str,
) -> Result<(usize, usize), EnvelopeError> {
    let (len, n) = read_varint_u32(raw.get(at..).unwrap_or_default())
        .map_err(|_| EnvelopeError::Malformed("bad length"))?;
    let len = len as usize;
    if (len == 0 && !empty_ok) || len > max {
        return Err(EnvelopeError::Malformed(what));
    }
    let start = at + n;
    Ok((start, start + len))
}

/// Decodes and checks the header of a provider envelope (whole decoded
/// bytes, tag included).
pub(crate) fn read_provider_header(raw: &[u8]) -> Result<ProviderHeader, EnvelopeError> {
    if raw.len() < MIN_PROVIDER_LEN {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    let kind = read_flags(raw[0])?;
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&raw[FLAGS_LEN..FLAGS_LEN + KEY_ID_LEN]);
    let template = read_sized(
        raw,
        FLAGS_LEN + KEY_ID_LEN,
        MAX_TEMPLATE_LEN,
        true,
        "context template length out of range",
    )?;
    if raw.len() < template.1 + 1 {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    std::str::from_utf8(&raw[template.0..template.1])
        .map_err(|_| EnvelopeError::Malformed("context template is not UTF-8"))?;
    let blob = read_sized(
        raw,
        template.1,
        MAX_BLOB_LEN,
        false,
        "remote ciphertext blob length out of range",
    )?;
    if raw.len() < blob.1 + NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed("truncated"));
    }
    Ok(ProviderHeader {
        kind,
        key_id,
        template,
        blob,
        len: blob.1 + NONCE_LEN,
    })
}

/// The value kind in a flags byte; reserved bits must be 0.
fn read_flags(flags: u8) -> Result<ValueKind, EnvelopeError> {
    if flags & !KIND_MASK != 0 {
        return Err(EnvelopeError::Malformed("reserved flag bits set"));
    }
    match flags & KIND_MASK {
        KIND_JSON => Ok(ValueKind::Json),
        KIND_STRING => Ok(ValueKind::String),
        _ => Err(EnvelopeError::Malformed("unknown value kind")),
    }
}

/// The flags byte of a value kind.
pub(crate) fn flags_of(kind: ValueKind) -> u8 {
    match kind {
        ValueKind::Json => KIND_JSON,
        ValueKind::String => KIND_STRING,
    }
}

/// Length of a `sg<digits>.` prefix at the start of `text`, if there is one.
pub(crate) fn version_prefix_len(text: &str) -> Option<usize> {
    let rest = text.as_bytes().strip_prefix(b"sg")?;
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || rest.get(digits) != Some(&b'.') {
        return None;
    }
    Some(2 + digits + 1)
}
