//! The ciphertext blob of KMS `Encrypt` / `GenerateDataKey`: data sealed
//! directly under a CMK version, self-describing so `Decrypt` needs only the
//! blob (and the same encryption context).
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! offset  len  field
//! 0       1    format version = 0x01
//! 1       16   CMK KeyId (UUID bytes)
//! 17      4    CMK version
//! 21      12   nonce (random)
//! 33      n+16 AES-GCM ciphertext ‖ tag
//! ```
//!
//! Overhead: 49 bytes. The GCM key is `HMAC-SHA256(material,
//! "sealgate/kms-blob/v1")` for an AES-256 CMK, and the first 16 bytes of
//! `HMAC-SHA256(material, "sealgate/kms-blob/aes-128-gcm/v1")` (AES-128-GCM)
//! for an AES-128 CMK — the key's usage, fixed at creation, picks which; so
//! the CMK material itself is used only as the AES-KW key for DEKs (domain
//! separation). AAD = bytes 0..21 (format, key id, version) ‖ the encryption
//! context bytes.
//!
//! PURE: no I/O; the nonce comes from the caller's RNG.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::provider::KeyError;
use crate::envelope::CmkRef;
use crate::secret::{CmkMaterial, SecretBytes};

/// Format version byte of blobs this build writes.
pub const BLOB_FORMAT_V1: u8 = 0x01;
/// Header length (format, key id, version, nonce).
pub const BLOB_HEADER_LEN: usize = 33;
/// Bytes a blob adds to its plaintext.
pub const BLOB_OVERHEAD: usize = BLOB_HEADER_LEN + 16;
const SUBKEY_LABEL: &[u8] = b"sealgate/kms-blob/v1";
const SUBKEY_LABEL_AES128: &[u8] = b"sealgate/kms-blob/aes-128-gcm/v1";

/// The AEAD a CMK's blobs use (from its usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobCipher {
    /// AES-256-GCM (ENCRYPT_DECRYPT keys).
    Aes256Gcm,
    /// AES-128-GCM (ENCRYPT_DECRYPT_AES_128 keys).
    Aes128Gcm,
}

enum Cipher {
    Aes256(Box<Aes256Gcm>),
    Aes128(Box<Aes128Gcm>),
}

impl Cipher {
    fn encrypt(&self, nonce: &[u8], payload: Payload<'_, '_>) -> Result<Vec<u8>, aes_gcm::Error> {
        match self {
            Cipher::Aes256(c) => c.encrypt(Nonce::from_slice(nonce), payload),
            Cipher::Aes128(c) => c.encrypt(Nonce::from_slice(nonce), payload),
        }
    }
    fn decrypt(&self, nonce: &[u8], payload: Payload<'_, '_>) -> Result<Vec<u8>, aes_gcm::Error> {
        match self {
            Cipher::Aes256(c) => c.decrypt(Nonce::from_slice(nonce), payload),
            Cipher::Aes128(c) => c.decrypt(Nonce::from_slice(nonce), payload),
        }
    }
}

/// Reads which CMK version sealed a blob, checking the layout.
pub fn blob_cmk(blob: &[u8]) -> Result<CmkRef, KeyError> {
    if blob.len() < BLOB_OVERHEAD {
        return Err(KeyError::InvalidParameter("CiphertextBlob".into()));
    }
    if blob[0] != BLOB_FORMAT_V1 {
        return Err(KeyError::InvalidParameter("CiphertextBlob".into()));
    }
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&blob[1..17]);
    let mut v = [0u8; 4];
    v.copy_from_slice(&blob[17..21]);
    Ok(CmkRef {
        key_id,
        version: u32::from_be_bytes(v),
    })
}

fn cipher(material: &CmkMaterial, which: BlobCipher) -> Result<Cipher, KeyError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(material.expose())
        .map_err(|_| KeyError::Store("subkey derivation failed".into()))?;
    mac.update(match which {
        BlobCipher::Aes256Gcm => SUBKEY_LABEL,
        BlobCipher::Aes128Gcm => SUBKEY_LABEL_AES128,
    });
    let subkey = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    Ok(match which {
        BlobCipher::Aes256Gcm => Cipher::Aes256(Box::new(Aes256Gcm::new(subkey.as_ref().into()))),
        BlobCipher::Aes128Gcm => Cipher::Aes128(Box::new(
            Aes128Gcm::new_from_slice(&subkey[..16])
                .map_err(|_| KeyError::Store("subkey derivation failed".into()))?,
        )),
    })
}

/// Seals `plaintext` under one CMK version, binding `context`.
pub fn seal_blob<R: RngCore + CryptoRng>(
    cmk: CmkRef,
    material: &CmkMaterial,
    which: BlobCipher,
    plaintext: &[u8],
    context: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(BLOB_OVERHEAD + plaintext.len());
    out.push(BLOB_FORMAT_V1);
    out.extend_from_slice(&cmk.key_id);
    out.extend_from_slice(&cmk.version.to_be_bytes());
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let aad = [&out[..21], context].concat();
    let ct = cipher(material, which)?
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| KeyError::Store("encryption failed".into()))?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a blob with the material of the version named in it.
pub fn open_blob(
    material: &CmkMaterial,
    which: BlobCipher,
    blob: &[u8],
    context: &[u8],
) -> Result<SecretBytes, KeyError> {
    blob_cmk(blob)?;
    let aad = [&blob[..21], context].concat();
    cipher(material, which)?
        .decrypt(
            &blob[21..33],
            Payload {
                msg: &blob[33..],
                aad: &aad,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| KeyError::DoesNotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn cmk() -> CmkRef {
        CmkRef {
            key_id: [0x11; 16],
            version: 7,
        }
    }

    #[test]
    fn round_trip_and_header() {
        let m = CmkMaterial::from_bytes([3; 32]);
        let blob = seal_blob(
            cmk(),
            &m,
            BlobCipher::Aes256Gcm,
            b"hello",
            b"ctx",
            &mut OsRng,
        )
        .unwrap();
        assert_eq!(blob.len(), 5 + BLOB_OVERHEAD);
        assert_eq!(blob_cmk(&blob).unwrap(), cmk());
        assert_eq!(
            open_blob(&m, BlobCipher::Aes256Gcm, &blob, b"ctx")
                .unwrap()
                .expose(),
            b"hello"
        );
    }

    #[test]
    fn wrong_context_key_or_bytes_do_not_open() {
        let m = CmkMaterial::from_bytes([3; 32]);
        let blob = seal_blob(
            cmk(),
            &m,
            BlobCipher::Aes256Gcm,
            b"hello",
            b"ctx",
            &mut OsRng,
        )
        .unwrap();
        assert_eq!(
            open_blob(&m, BlobCipher::Aes256Gcm, &blob, b"other"),
            Err(KeyError::DoesNotOpen)
        );
        assert_eq!(
            open_blob(
                &CmkMaterial::from_bytes([4; 32]),
                BlobCipher::Aes256Gcm,
                &blob,
                b"ctx"
            ),
            Err(KeyError::DoesNotOpen)
        );
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            assert!(
                open_blob(&m, BlobCipher::Aes256Gcm, &bad, b"ctx").is_err(),
                "byte {i}"
            );
        }
        for n in 0..blob.len() {
            assert!(
                open_blob(&m, BlobCipher::Aes256Gcm, &blob[..n], b"ctx").is_err(),
                "len {n}"
            );
        }
    }

    #[test]
    fn aes_128_blobs_open_only_as_aes_128() {
        let m = CmkMaterial::from_bytes([3; 32]);
        let blob = seal_blob(cmk(), &m, BlobCipher::Aes128Gcm, b"hi", b"c", &mut OsRng).unwrap();
        assert_eq!(blob.len(), 2 + BLOB_OVERHEAD);
        assert_eq!(
            open_blob(&m, BlobCipher::Aes128Gcm, &blob, b"c")
                .unwrap()
                .expose(),
            b"hi"
        );
        assert_eq!(
            open_blob(&m, BlobCipher::Aes256Gcm, &blob, b"c"),
            Err(KeyError::DoesNotOpen)
        );
    }

    #[test]
    fn empty_plaintext_is_fine() {
        let m = CmkMaterial::from_bytes([3; 32]);
        let blob = seal_blob(cmk(), &m, BlobCipher::Aes256Gcm, b"", b"", &mut OsRng).unwrap();
        assert!(open_blob(&m, BlobCipher::Aes256Gcm, &blob, b"")
            .unwrap()
            .is_empty());
    }
}
