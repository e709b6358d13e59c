//! The field envelope: one JSON value sealed into one JSON string.
//!
//! PURE: no I/O. Takes bytes, a key, a context and an RNG; returns values.
//! (Byte layout: see the format section written by the envelope work.)

use crate::secret::DekCipher;

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
}

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
}
