//! Value typing: turns the raw JSON text of a value into the bytes that get
//! sealed (a string's unescaped UTF-8, or any other value's exact text), and
//! back into JSON text on opening.
//!
//! Strings are unescaped here rather than through serde_json so that the
//! only buffer holding a plaintext is one we size up front and zeroize.

use serde::de::IgnoredAny;
use zeroize::Zeroizing;

use super::{EnvelopeError, ValueKind};

/// The bytes to seal: borrowed from the input when no unescaping was
/// needed, otherwise an owned buffer that is zeroized on drop.
pub(crate) enum Plain<'a> {
    /// The input bytes themselves.
    Borrowed(&'a [u8]),
    /// An unescaped copy.
    Owned(Zeroizing<Vec<u8>>),
}

impl Plain<'_> {
    /// The bytes to seal.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Plain::Borrowed(b) => b,
            Plain::Owned(v) => v,
        }
    }
}

/// True for the four JSON whitespace bytes.
fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Classifies one JSON value given as raw text and returns what to seal.
///
/// Whitespace around the value is dropped; everything else is kept: a
/// string becomes its unescaped UTF-8, any other value its exact text.
pub(crate) fn prepare(value_json: &[u8]) -> Result<(ValueKind, Plain<'_>), EnvelopeError> {
    let start = value_json
        .iter()
        .position(|&b| !is_json_ws(b))
        .ok_or(EnvelopeError::InvalidValue)?;
    let end = value_json
        .iter()
        .rposition(|&b| !is_json_ws(b))
        .map_or(start, |i| i + 1);
    let text = &value_json[start..end];
    if text[0] == b'"' {
        return Ok((ValueKind::String, unescape_string(text)?));
    }
    let s = std::str::from_utf8(text).map_err(|_| EnvelopeError::InvalidValue)?;
    serde_json::from_str::<IgnoredAny>(s).map_err(|_| EnvelopeError::InvalidValue)?;
    Ok((ValueKind::Json, Plain::Borrowed(text)))
}

/// Reads four hex digits at `at` as a UTF-16 code unit.
fn hex4(inner: &[u8], at: usize) -> Result<u32, EnvelopeError> {
    let digits = inner.get(at..at + 4).ok_or(EnvelopeError::InvalidValue)?;
    let mut v = 0u32;
    for &d in digits {
        let n = (d as char)
            .to_digit(16)
            .ok_or(EnvelopeError::InvalidValue)?;
        v = v << 4 | n;
    }
    Ok(v)
}

/// Validates a JSON string literal (quotes included) and returns its
/// unescaped UTF-8. Lone surrogates are refused, as serde_json does.
pub(crate) fn unescape_string(text: &[u8]) -> Result<Plain<'_>, EnvelopeError> {
    if text.len() < 2 || text[0] != b'"' || text[text.len() - 1] != b'"' {
        return Err(EnvelopeError::InvalidValue);
    }
    let inner = &text[1..text.len() - 1];
    if !inner.contains(&b'\\') {
        if inner.iter().any(|&b| b < 0x20 || b == b'"') {
            return Err(EnvelopeError::InvalidValue);
        }
        std::str::from_utf8(inner).map_err(|_| EnvelopeError::InvalidValue)?;
        return Ok(Plain::Borrowed(inner));
    }
    // Unescaping never lengthens, so this buffer never reallocates (which
    // would leave an unzeroized copy behind).
    let mut out = Zeroizing::new(Vec::with_capacity(inner.len()));
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b < 0x20 || b == b'"' {
            return Err(EnvelopeError::InvalidValue);
        }
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *inner.get(i + 1).ok_or(EnvelopeError::InvalidValue)?;
        i += 2;
        let simple = match esc {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => return Err(EnvelopeError::InvalidValue),
        };
        if esc != b'u' {
            out.push(simple);
            continue;
        }
        let unit = hex4(inner, i)?;
        i += 4;
        let scalar = match unit {
            0xD800..=0xDBFF => {
                if inner.get(i..i + 2) != Some(b"\\u") {
                    return Err(EnvelopeError::InvalidValue);
                }
                let low = hex4(inner, i + 2)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(EnvelopeError::InvalidValue);
                }
                i += 6;
                0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(EnvelopeError::InvalidValue),
            u => u,
        };
        let c = char::from_u32(scalar).ok_or(EnvelopeError::InvalidValue)?;
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    std::str::from_utf8(&out).map_err(|_| EnvelopeError::InvalidValue)?;
    Ok(Plain::Owned(out))
}

/// Bytes serde_json writes for byte `b` inside a string literal.
fn escaped_width(b: u8) -> usize {
    match b {
        b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 2,
        0x00..=0x1f => 6,
        _ => 1,
    }
}

/// Length of the JSON string literal serde_json writes for `s`, quotes included.
pub(crate) fn escaped_len(s: &[u8]) -> usize {
    2 + s.iter().map(|&b| escaped_width(b)).sum::<usize>()
}

/// True when `s` can be quoted without any escape.
pub(crate) fn needs_no_escape(s: &[u8]) -> bool {
    s.iter().all(|&b| escaped_width(b) == 1)
}

/// Writes `s` as a JSON string literal (exactly as `serde_json::to_string`)
/// into a buffer sized up front, so no partial copy is left unzeroized.
pub(crate) fn quote(s: &str) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let mut out = Zeroizing::new(Vec::with_capacity(escaped_len(s.as_bytes())));
    serde_json::to_writer(&mut *out, s)
        .map_err(|_| EnvelopeError::Malformed("sealed string does not quote"))?;
    Ok(out)
}
