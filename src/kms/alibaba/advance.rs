//! AdvanceEncrypt / AdvanceDecrypt: the pure crypto of Alibaba's "advanced"
//! symmetric operations, given the raw 32-byte material of a CMK version.
//!
//! Modes (seed 003): `AES_GCM` (default; 12-byte Iv, random when absent; Aad
//! is GCM only), `AES_CBC` (16-byte Iv, random when absent) and `AES_ECB`
//! (no Iv), the last two with `PKCS7_PADDING` (default) or `NO_PADDING`
//! (plaintext must be a multiple of 16 bytes). Plaintext is limited to the
//! seed's 6 KB guidance ([`MAX_PLAINTEXT_BYTES`]); Aad to 8,192 bytes.
//!
//! # CiphertextBlob (version 1)
//!
//! AdvanceDecrypt needs only the blob, so the blob carries everything else:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "SGA1" (distinct from the key store's Decrypt blobs)
//! 4       1     algorithm: 1 AES_GCM, 2 AES_CBC, 3 AES_ECB
//! 5       1     padding: 0 none (GCM), 1 PKCS7_PADDING, 2 NO_PADDING
//! 6       1     n = KeyId length (1..=255), then n bytes of KeyId (UTF-8)
//! .       1     m = KeyVersionId length (1..=255), then m bytes (UTF-8)
//! .       1     i = Iv length (GCM 12, CBC 16, ECB 0), then i bytes
//! .       rest  GCM: ciphertext ‖ 16-byte tag
//!               CBC/ECB: ciphertext (whole blocks) ‖ 16-byte MAC
//! ```
//!
//! Everything before the ciphertext (the header) is authenticated: for GCM
//! it is additional data ahead of the caller's Aad; for CBC and ECB, which
//! authenticate nothing themselves, sealgate appends a MAC —
//! HMAC-SHA-256 truncated to 16 bytes over header ‖ ciphertext, keyed by
//! HMAC-SHA-256(material, "sealgate/advance/v1/cbc-ecb-mac"). The MAC is
//! checked before any block is decrypted, so a tampered blob fails as a whole
//! (no padding oracle) and the CBC/ECB bytes themselves stay plain AES-CBC /
//! AES-ECB. Callers see one opaque [`AdvanceError::DoesNotOpen`] for any
//! blob that does not open.

use aes::cipher::block_padding::{NoPadding, Pkcs7};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::{CmkMaterial, SecretBytes};

/// The first four bytes of every Advance blob.
pub const MAGIC: &[u8; 4] = b"SGA1";
/// Largest plaintext AdvanceEncrypt takes (the documented 6 KB guidance).
pub const MAX_PLAINTEXT_BYTES: usize = 6 * 1024;
/// Largest Aad (documented for AdvanceDecrypt: 8,192 bytes).
pub const MAX_AAD_BYTES: usize = 8192;
/// GCM Iv length.
pub const GCM_IV_LEN: usize = 12;
/// CBC Iv length (one AES block).
pub const CBC_IV_LEN: usize = 16;
/// AES block size.
pub const BLOCK: usize = 16;
/// GCM tag and CBC/ECB MAC length.
pub const TAG_LEN: usize = 16;
/// Largest blob an AdvanceDecrypt accepts: a maximal header plus a padded
/// 6 KB ciphertext and its tag.
pub const MAX_BLOB_BYTES: usize = 4 + 2 + 3 * 256 + MAX_PLAINTEXT_BYTES + BLOCK + TAG_LEN;

const MAC_LABEL: &[u8] = b"sealgate/advance/v1/cbc-ecb-mac";
/// The CMK version material also wraps DEKs (AES-KW); Advance* encrypts
/// under a key derived from it, so no AES key serves two schemes.
const ENC_LABEL: &[u8] = b"sealgate/advance/v1/enc";

fn enc_key(material: &CmkMaterial) -> zeroize::Zeroizing<[u8; 32]> {
    zeroize::Zeroizing::new(hmac256(material.expose(), ENC_LABEL))
}

/// An Advance encryption algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// AES-256-GCM (default).
    AesGcm,
    /// AES-256-CBC.
    AesCbc,
    /// AES-256-ECB.
    AesEcb,
}

impl Algorithm {
    /// The wire spelling (`AES_GCM`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::AesGcm => "AES_GCM",
            Algorithm::AesCbc => "AES_CBC",
            Algorithm::AesEcb => "AES_ECB",
        }
    }

    /// Parses the wire spelling (case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AES_GCM" => Some(Algorithm::AesGcm),
            "AES_CBC" => Some(Algorithm::AesCbc),
            "AES_ECB" => Some(Algorithm::AesEcb),
            _ => None,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Algorithm::AesGcm => 1,
            Algorithm::AesCbc => 2,
            Algorithm::AesEcb => 3,
        }
    }

    /// The Iv length this algorithm uses (0 for ECB).
    pub fn iv_len(self) -> usize {
        match self {
            Algorithm::AesGcm => GCM_IV_LEN,
            Algorithm::AesCbc => CBC_IV_LEN,
            Algorithm::AesEcb => 0,
        }
    }
}

/// Padding for CBC and ECB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaddingMode {
    /// PKCS#7 (default).
    Pkcs7,
    /// None: the plaintext must be whole blocks.
    NoPadding,
}

impl PaddingMode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PaddingMode::Pkcs7 => "PKCS7_PADDING",
            PaddingMode::NoPadding => "NO_PADDING",
        }
    }

    /// Parses the wire spelling (case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PKCS7_PADDING" => Some(PaddingMode::Pkcs7),
            "NO_PADDING" => Some(PaddingMode::NoPadding),
            _ => None,
        }
    }
}

/// Why an Advance operation failed. Messages carry no plaintext or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvanceError {
    /// Plaintext longer than [`MAX_PLAINTEXT_BYTES`].
    #[error("Plaintext is larger than 6 KB; encrypt a data key instead (envelope encryption)")]
    PlaintextTooLarge,
    /// Empty plaintext.
    #[error("Plaintext is empty")]
    EmptyPlaintext,
    /// Aad longer than [`MAX_AAD_BYTES`].
    #[error("Aad is larger than 8192 bytes")]
    AadTooLarge,
    /// An Iv of the wrong length for the algorithm.
    #[error("Iv must be {expected} bytes for {algorithm}")]
    BadIvLength {
        /// The algorithm.
        algorithm: &'static str,
        /// Its Iv length.
        expected: usize,
    },
    /// NO_PADDING with a plaintext that is not whole 16-byte blocks.
    #[error("with NO_PADDING the plaintext length must be a multiple of 16 bytes")]
    NotBlockAligned,
    /// KeyId or KeyVersionId empty or longer than 255 bytes.
    #[error("KeyId and KeyVersionId must be 1-255 bytes")]
    BadKeyName,
    /// The blob is not an Advance blob, is malformed or truncated, or does
    /// not authenticate under the key and Aad given.
    #[error("the ciphertext blob does not open")]
    DoesNotOpen,
}

/// What AdvanceEncrypt is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct SealParams<'a> {
    /// The resolved KeyId (not an alias).
    pub key_id: &'a str,
    /// The CMK version whose material is used (the primary one).
    pub key_version_id: &'a str,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Padding (CBC/ECB; `None` means PKCS7_PADDING; ignored for GCM).
    pub padding: Option<PaddingMode>,
    /// Caller's Iv (GCM/CBC; ignored for ECB); random when `None`.
    pub iv: Option<&'a [u8]>,
    /// Additional authenticated data (GCM only; ignored otherwise).
    pub aad: &'a [u8],
}

/// The metadata a blob carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    /// The KeyId.
    pub key_id: String,
    /// The CMK version.
    pub key_version_id: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Padding (CBC/ECB), `None` for GCM.
    pub padding: Option<PaddingMode>,
    /// The Iv (empty for ECB).
    pub iv: Vec<u8>,
}

/// A sealed AdvanceEncrypt result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The whole blob (Base64 it for the OpenAPI face).
    pub blob: Vec<u8>,
    /// What it carries (the response's KeyId, KeyVersionId, Algorithm,
    /// PaddingMode and Iv).
    pub header: BlobHeader,
}

/// A parsed (not yet authenticated) Advance blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBlob<'a> {
    /// Header fields.
    pub header: BlobHeader,
    header_bytes: &'a [u8],
    body: &'a [u8],
}

/// What a blob handed to AdvanceDecrypt is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobKind<'a> {
    /// An Advance blob (starts with [`MAGIC`] and parses).
    Advance(ParsedBlob<'a>),
    /// Anything else: hand it to the key store's own Decrypt.
    Plain(&'a [u8]),
}

/// The result of AdvanceDecrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The KeyId.
    pub key_id: String,
    /// The CMK version that opened it.
    pub key_version_id: String,
    /// The algorithm (`None` when the store's plain Decrypt opened it and did
    /// not say).
    pub algorithm: Option<Algorithm>,
    /// Padding (CBC/ECB).
    pub padding: Option<PaddingMode>,
    /// The plaintext.
    pub plaintext: SecretBytes,
}

/// True when `blob` starts with the Advance marker — the key store's plain
/// Decrypt refuses such blobs.
pub fn is_advance_blob(blob: &[u8]) -> bool {
    blob.starts_with(MAGIC)
}

fn check_name(s: &str) -> Result<u8, AdvanceError> {
    match u8::try_from(s.len()) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(AdvanceError::BadKeyName),
    }
}

fn header_bytes(h: &BlobHeader) -> Result<Vec<u8>, AdvanceError> {
    let kl = check_name(&h.key_id)?;
    let vl = check_name(&h.key_version_id)?;
    let il = u8::try_from(h.iv.len()).map_err(|_| AdvanceError::DoesNotOpen)?;
    let padding = match h.padding {
        None => 0,
        Some(PaddingMode::Pkcs7) => 1,
        Some(PaddingMode::NoPadding) => 2,
    };
    let mut out = Vec::with_capacity(9 + h.key_id.len() + h.key_version_id.len() + h.iv.len());
    out.extend_from_slice(MAGIC);
    out.push(h.algorithm.tag());
    out.push(padding);
    out.push(kl);
    out.extend_from_slice(h.key_id.as_bytes());
    out.push(vl);
    out.extend_from_slice(h.key_version_id.as_bytes());
    out.push(il);
    out.extend_from_slice(&h.iv);
    Ok(out)
}

fn mac_key(material: &CmkMaterial) -> [u8; 32] {
    hmac256(material.expose(), MAC_LABEL)
}

fn hmac256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn cbc_ecb_mac(material: &CmkMaterial, header: &[u8], ct: &[u8]) -> [u8; TAG_LEN] {
    let mut key = mac_key(material);
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(&key) {
        Ok(m) => m,
        Err(_) => return [0u8; TAG_LEN],
    };
    zeroize::Zeroize::zeroize(&mut key);
    m.update(header);
    m.update(ct);
    let full: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// AES-256-CBC over `pt` (padding as given). NO_PADDING needs whole blocks.
fn cbc_encrypt(
    key: &[u8; 32],
    iv: &[u8],
    pt: &[u8],
    padding: PaddingMode,
) -> Result<Vec<u8>, AdvanceError> {
    let enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(|_| {
        AdvanceError::BadIvLength {
            algorithm: "AES_CBC",
            expected: CBC_IV_LEN,
        }
    })?;
    Ok(match padding {
        PaddingMode::Pkcs7 => enc.encrypt_padded_vec_mut::<Pkcs7>(pt),
        PaddingMode::NoPadding => {
            if pt.len() % BLOCK != 0 {
                return Err(AdvanceError::NotBlockAligned);
            }
            enc.encrypt_padded_vec_mut::<NoPadding>(pt)
        }
    })
}

fn cbc_decrypt(
    key: &[u8; 32],
    iv: &[u8],
    ct: &[u8],
    padding: PaddingMode,
) -> Result<Vec<u8>, AdvanceError> {
    if ct.len() % BLOCK != 0 {
        return Err(AdvanceError::DoesNotOpen);
    }
    let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
        .map_err(|_| AdvanceError::DoesNotOpen)?;
    match padding {
        PaddingMode::Pkcs7 => dec.decrypt_padded_vec_mut::<Pkcs7>(ct),
        PaddingMode::NoPadding => dec.decrypt_padded_vec_mut::<NoPadding>(ct),
    }
    .map_err(|_| AdvanceError::DoesNotOpen)
}

fn ecb_encrypt(key: &[u8; 32], pt: &[u8], padding: PaddingMode) -> Result<Vec<u8>, AdvanceError> {
    let enc = ecb::Encryptor::<aes::Aes256>::new_from_slice(key)
        .map_err(|_| AdvanceError::DoesNotOpen)?;
    Ok(match padding {
        PaddingMode::Pkcs7 => enc.encrypt_padded_vec_mut::<Pkcs7>(pt),
        PaddingMode::NoPadding => {
            if pt.len() % BLOCK != 0 {
                return Err(AdvanceError::NotBlockAligned);
            }
            enc.encrypt_padded_vec_mut::<NoPadding>(pt)
        }
    })
}

fn ecb_decrypt(key: &[u8; 32], ct: &[u8], padding: PaddingMode) -> Result<Vec<u8>, AdvanceError> {
    if ct.len() % BLOCK != 0 {
        return Err(AdvanceError::DoesNotOpen);
    }
    let dec = ecb::Decryptor::<aes::Aes256>::new_from_slice(key)
        .map_err(|_| AdvanceError::DoesNotOpen)?;
    match padding {
        PaddingMode::Pkcs7 => dec.decrypt_padded_vec_mut::<Pkcs7>(ct),
        PaddingMode::NoPadding => dec.decrypt_padded_vec_mut::<NoPadding>(ct),
    }
    .map_err(|_| AdvanceError::DoesNotOpen)
}

fn gcm_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + aad.len());
    v.extend_from_slice(header);
    v.extend_from_slice(aad);
    v
}

/// AdvanceEncrypt: seals `plaintext` under `material` (the CMK version named
/// in `params`). A missing Iv is drawn from `rng`.
pub fn seal<R: RngCore + CryptoRng>(
    material: &CmkMaterial,
    params: &SealParams<'_>,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Sealed, AdvanceError> {
    if plaintext.is_empty() {
        return Err(AdvanceError::EmptyPlaintext);
    }
    if plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(AdvanceError::PlaintextTooLarge);
    }
    if params.aad.len() > MAX_AAD_BYTES {
        return Err(AdvanceError::AadTooLarge);
    }
    check_name(params.key_id)?;
    check_name(params.key_version_id)?;
    let algorithm = params.algorithm;
    let iv = match (algorithm, params.iv) {
        (Algorithm::AesEcb, _) => Vec::new(),
        (a, Some(iv)) if iv.len() == a.iv_len() => iv.to_vec(),
        (a, Some(_)) => {
            return Err(AdvanceError::BadIvLength {
                algorithm: a.as_str(),
                expected: a.iv_len(),
            })
        }
        (a, None) => {
            let mut iv = vec![0u8; a.iv_len()];
            rng.fill_bytes(&mut iv);
            iv
        }
    };
    let padding = match algorithm {
        Algorithm::AesGcm => None,
        _ => Some(params.padding.unwrap_or(PaddingMode::Pkcs7)),
    };
    let header = BlobHeader {
        key_id: params.key_id.to_string(),
        key_version_id: params.key_version_id.to_string(),
        algorithm,
        padding,
        iv,
    };
    let hb = header_bytes(&header)?;
    let derived = enc_key(material);
    let key: &[u8; 32] = &derived;
    let mut blob = hb.clone();
    match (algorithm, padding) {
        (Algorithm::AesGcm, _) => {
            let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| AdvanceError::DoesNotOpen)?;
            let aad = gcm_aad(&hb, params.aad);
            let ct = cipher
                .encrypt(
                    Nonce::from_slice(&header.iv),
                    Payload {
                        msg: plaintext,
                        aad: &aad,
                    },
                )
                .map_err(|_| AdvanceError::DoesNotOpen)?;
            blob.extend_from_slice(&ct);
        }
        (Algorithm::AesCbc, Some(p)) => {
            let ct = cbc_encrypt(key, &header.iv, plaintext, p)?;
            let mac = cbc_ecb_mac(material, &hb, &ct);
            blob.extend_from_slice(&ct);
            blob.extend_from_slice(&mac);
        }
        (Algorithm::AesEcb, Some(p)) => {
            let ct = ecb_encrypt(key, plaintext, p)?;
            let mac = cbc_ecb_mac(material, &hb, &ct);
            blob.extend_from_slice(&ct);
            blob.extend_from_slice(&mac);
        }
        (_, None) => return Err(AdvanceError::DoesNotOpen),
    }
    Ok(Sealed { blob, header })
}

/// Encrypt of the KMS instance API: the same crypto as [`seal`], but the
/// header stays out of the blob — the caller keeps the Iv, Algorithm and
/// PaddingMode and sends them back with the KeyId to Decrypt, as the
/// instance API documents. The returned [`Sealed::blob`] is the ciphertext
/// alone: GCM `ciphertext ‖ tag`, CBC/ECB `ciphertext ‖ MAC`. The header
/// (with the KeyVersionId) is still authenticated, so a blob opens only
/// under the key, version, algorithm, padding and Iv it was made with.
pub fn seal_detached<R: RngCore + CryptoRng>(
    material: &CmkMaterial,
    params: &SealParams<'_>,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Sealed, AdvanceError> {
    let mut sealed = seal(material, params, plaintext, rng)?;
    let header_len = header_bytes(&sealed.header)?.len();
    sealed.blob = sealed.blob.split_off(header_len);
    Ok(sealed)
}

/// Opens a [`seal_detached`] blob given the header it was made under.
pub fn open_detached(
    material: &CmkMaterial,
    header: &BlobHeader,
    body: &[u8],
    aad: &[u8],
) -> Result<SecretBytes, AdvanceError> {
    let valid_header = match header.algorithm {
        Algorithm::AesGcm => header.padding.is_none(),
        _ => header.padding.is_some(),
    } && header.iv.len() == header.algorithm.iv_len();
    let valid_body = match header.algorithm {
        Algorithm::AesGcm => body.len() > TAG_LEN,
        _ => body.len() >= TAG_LEN + BLOCK && (body.len() - TAG_LEN) % BLOCK == 0,
    };
    if !valid_header || !valid_body || body.len() > MAX_BLOB_BYTES {
        return Err(AdvanceError::DoesNotOpen);
    }
    let hb = header_bytes(header)?;
    let parsed = ParsedBlob {
        header: header.clone(),
        header_bytes: &hb,
        body,
    };
    open(material, &parsed, aad)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AdvanceError> {
        let end = self.at.checked_add(n).ok_or(AdvanceError::DoesNotOpen)?;
        let s = self.b.get(self.at..end).ok_or(AdvanceError::DoesNotOpen)?;
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, AdvanceError> {
        Ok(self.take(1)?[0])
    }

    fn name(&mut self) -> Result<String, AdvanceError> {
        let n = usize::from(self.byte()?);
        if n == 0 {
            return Err(AdvanceError::DoesNotOpen);
        }
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| AdvanceError::DoesNotOpen)
    }
}

/// Parses an Advance blob strictly: magic, known algorithm/padding pair, the
/// algorithm's Iv length, and a ciphertext of a possible length. It is not
/// authenticated until [`open`].
pub fn parse_blob(blob: &[u8]) -> Result<ParsedBlob<'_>, AdvanceError> {
    if blob.len() > MAX_BLOB_BYTES || !is_advance_blob(blob) {
        return Err(AdvanceError::DoesNotOpen);
    }
    let mut r = Reader { b: blob, at: 4 };
    let algorithm = match r.byte()? {
        1 => Algorithm::AesGcm,
        2 => Algorithm::AesCbc,
        3 => Algorithm::AesEcb,
        _ => return Err(AdvanceError::DoesNotOpen),
    };
    let padding = match (algorithm, r.byte()?) {
        (Algorithm::AesGcm, 0) => None,
        (Algorithm::AesCbc | Algorithm::AesEcb, 1) => Some(PaddingMode::Pkcs7),
        (Algorithm::AesCbc | Algorithm::AesEcb, 2) => Some(PaddingMode::NoPadding),
        _ => return Err(AdvanceError::DoesNotOpen),
    };
    let key_id = r.name()?;
    let key_version_id = r.name()?;
    let il = usize::from(r.byte()?);
    if il != algorithm.iv_len() {
        return Err(AdvanceError::DoesNotOpen);
    }
    let iv = r.take(il)?.to_vec();
    let header_bytes = &blob[..r.at];
    let body = &blob[r.at..];
    let ok = match algorithm {
        Algorithm::AesGcm => body.len() > TAG_LEN,
        _ => body.len() >= TAG_LEN + BLOCK && (body.len() - TAG_LEN) % BLOCK == 0,
    };
    if !ok {
        return Err(AdvanceError::DoesNotOpen);
    }
    Ok(ParsedBlob {
        header: BlobHeader {
            key_id,
            key_version_id,
            algorithm,
            padding,
            iv,
        },
        header_bytes,
        body,
    })
}

/// Sorts a blob given to AdvanceDecrypt: an Advance blob (parsed strictly —
/// a blob with the marker that does not parse is an error, never handed on),
/// or anything else for the store's plain Decrypt.
pub fn classify(blob: &[u8]) -> Result<BlobKind<'_>, AdvanceError> {
    if is_advance_blob(blob) {
        parse_blob(blob).map(BlobKind::Advance)
    } else {
        Ok(BlobKind::Plain(blob))
    }
}

/// AdvanceDecrypt of a parsed Advance blob with the material of the version
/// named in its header.
pub fn open(
    material: &CmkMaterial,
    parsed: &ParsedBlob<'_>,
    aad: &[u8],
) -> Result<SecretBytes, AdvanceError> {
    if aad.len() > MAX_AAD_BYTES {
        return Err(AdvanceError::AadTooLarge);
    }
    let h = &parsed.header;
    let derived = enc_key(material);
    let key: &[u8; 32] = &derived;
    let pt = match (h.algorithm, h.padding) {
        (Algorithm::AesGcm, _) => {
            let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| AdvanceError::DoesNotOpen)?;
            let full_aad = gcm_aad(parsed.header_bytes, aad);
            cipher
                .decrypt(
                    Nonce::from_slice(&h.iv),
                    Payload {
                        msg: parsed.body,
                        aad: &full_aad,
                    },
                )
                .map_err(|_| AdvanceError::DoesNotOpen)?
        }
        (alg, Some(p)) => {
            let split = parsed.body.len() - TAG_LEN;
            let (ct, mac) = parsed.body.split_at(split);
            let want = cbc_ecb_mac(material, parsed.header_bytes, ct);
            if !bool::from(want.ct_eq(mac)) {
                return Err(AdvanceError::DoesNotOpen);
            }
            if alg == Algorithm::AesCbc {
                cbc_decrypt(key, &h.iv, ct, p)?
            } else {
                ecb_decrypt(key, ct, p)?
            }
        }
        (_, None) => return Err(AdvanceError::DoesNotOpen),
    };
    Ok(SecretBytes::new(pt))
}

/// AdvanceDecrypt of any blob: an Advance blob is opened with the material
/// `material_for(key_id, key_version_id)` returns; any other blob goes to
/// `plain` (the key store's own Decrypt, which also checks state and
/// context). Errors of either kind come back as `E`.
pub fn open_any<E, M, P>(blob: &[u8], aad: &[u8], material_for: M, plain: P) -> Result<Opened, E>
where
    E: From<AdvanceError>,
    M: FnOnce(&str, &str) -> Result<CmkMaterial, E>,
    P: FnOnce(&[u8]) -> Result<Opened, E>,
{
    match classify(blob)? {
        BlobKind::Plain(b) => plain(b),
        BlobKind::Advance(parsed) => {
            let h = &parsed.header;
            let material = material_for(&h.key_id, &h.key_version_id)?;
            let plaintext = open(&material, &parsed, aad)?;
            Ok(Opened {
                key_id: h.key_id.clone(),
                key_version_id: h.key_version_id.clone(),
                algorithm: Some(h.algorithm),
                padding: h.padding,
                plaintext,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // NIST SP 800-38A, F.1.5 (ECB-AES256.Encrypt) and F.2.5 (CBC-AES256.Encrypt).
    const NIST_KEY: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
    const NIST_IV: &str = "000102030405060708090a0b0c0d0e0f";
    const NIST_PT: &str = concat!(
        "6bc1bee22e409f96e93d7e117393172a",
        "ae2d8a571e03ac9c9eb76fac45af8e51",
        "30c81c46a35ce411e5fbc1191a0a52ef",
        "f69f2445df4f9b17ad2b417be66c3710"
    );
    const NIST_CBC_CT: &str = concat!(
        "f58c4c04d6e5f1ba779eabfb5f7bfbd6",
        "9cfc4e967edb808d679f777bc6702c7d",
        "39f23369a9d9bacfa530e26304231461",
        "b2eb05e2c39be9fcda6c19078c6a9d1b"
    );
    const NIST_ECB_CT: &str = concat!(
        "f3eed1bdb5d2a03c064b5a7e3db181f8",
        "591ccb10d410ed26dc5ba74a31362870",
        "b6ed21b99ca6f4f9f153e7b1beafed1d",
        "23304b7a39f9f3ff067d8d8f9e24ecc7"
    );

    fn nist_key() -> [u8; 32] {
        unhex(NIST_KEY).try_into().unwrap()
    }

    #[test]
    fn nist_sp800_38a_cbc_and_ecb() {
        let key = nist_key();
        let iv = unhex(NIST_IV);
        let pt = unhex(NIST_PT);
        let cbc = cbc_encrypt(&key, &iv, &pt, PaddingMode::NoPadding).unwrap();
        assert_eq!(hex::encode(&cbc), NIST_CBC_CT);
        assert_eq!(
            cbc_decrypt(&key, &iv, &cbc, PaddingMode::NoPadding).unwrap(),
            pt
        );
        let ecb = ecb_encrypt(&key, &pt, PaddingMode::NoPadding).unwrap();
        assert_eq!(hex::encode(&ecb), NIST_ECB_CT);
        assert_eq!(ecb_decrypt(&key, &ecb, PaddingMode::NoPadding).unwrap(), pt);
        // PKCS#7 adds one whole block of 0x10 to aligned input: the NIST
        // blocks come first, unchanged.
        let padded = cbc_encrypt(&key, &iv, &pt, PaddingMode::Pkcs7).unwrap();
        assert_eq!(padded.len(), 80);
        assert_eq!(hex::encode(&padded[..64]), NIST_CBC_CT);
        let padded = ecb_encrypt(&key, &pt, PaddingMode::Pkcs7).unwrap();
        assert_eq!(hex::encode(&padded[..64]), NIST_ECB_CT);
    }

    fn material() -> CmkMaterial {
        CmkMaterial::from_bytes(nist_key())
    }

    fn params<'a>(
        algorithm: Algorithm,
        padding: Option<PaddingMode>,
        iv: Option<&'a [u8]>,
        aad: &'a [u8],
    ) -> SealParams<'a> {
        SealParams {
            key_id: "key-sealgate-1",
            key_version_id: "key-sealgate-1-v2",
            algorithm,
            padding,
            iv,
            aad,
        }
    }

    #[test]
    fn round_trip_every_algorithm_and_padding() {
        let mut rng = StdRng::seed_from_u64(7);
        let m = material();
        let cases = [
            (Algorithm::AesGcm, None),
            (Algorithm::AesCbc, Some(PaddingMode::Pkcs7)),
            (Algorithm::AesCbc, Some(PaddingMode::NoPadding)),
            (Algorithm::AesCbc, None),
            (Algorithm::AesEcb, Some(PaddingMode::Pkcs7)),
            (Algorithm::AesEcb, Some(PaddingMode::NoPadding)),
        ];
        for (alg, pad) in cases {
            for len in [1usize, 15, 16, 17, 32, MAX_PLAINTEXT_BYTES] {
                if pad == Some(PaddingMode::NoPadding) && len % 16 != 0 {
                    continue;
                }
                let pt: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let s = seal(&m, &params(alg, pad, None, b"aad"), &pt, &mut rng).unwrap();
                assert!(is_advance_blob(&s.blob));
                assert_eq!(s.header.algorithm, alg);
                assert_eq!(s.header.iv.len(), alg.iv_len());
                let expect_pad = if alg == Algorithm::AesGcm {
                    None
                } else {
                    Some(pad.unwrap_or(PaddingMode::Pkcs7))
                };
                assert_eq!(s.header.padding, expect_pad);
                let opened: Result<Opened, AdvanceError> = open_any(
                    &s.blob,
                    b"aad",
                    |k, v| {
                        assert_eq!((k, v), ("key-sealgate-1", "key-sealgate-1-v2"));
                        Ok(material())
                    },
                    |_| panic!("an Advance blob must not go to the plain path"),
                );
                let opened = opened.unwrap();
                assert_eq!(opened.plaintext.expose(), &pt[..], "{alg:?} {pad:?} {len}");
                assert_eq!(opened.algorithm, Some(alg));
                assert_eq!(opened.padding, expect_pad);
            }
        }
    }

    #[test]
    fn given_iv_is_used_and_checked() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = material();
        let iv = unhex(NIST_IV);
        let pt = unhex(NIST_PT);
        let s = seal(
            &m,
            &params(
                Algorithm::AesCbc,
                Some(PaddingMode::NoPadding),
                Some(&iv),
                b"",
            ),
            &pt,
            &mut rng,
        )
        .unwrap();
        assert_eq!(s.header.iv, iv);
        // The CBC bytes in the blob are plain AES-256-CBC with the given Iv,
        // under the key derived from the version material (not the material).
        let parsed = parse_blob(&s.blob).unwrap();
        let derived = enc_key(&m);
        let want = cbc_encrypt(&derived, &iv, &pt, PaddingMode::NoPadding).unwrap();
        assert_eq!(&parsed.body[..64], &want[..]);
        assert_ne!(
            hex::encode(&parsed.body[..64]),
            NIST_CBC_CT,
            "the raw material is not the key"
        );
        let e = seal(
            &m,
            &params(Algorithm::AesCbc, None, Some(&iv[..12]), b""),
            &pt,
            &mut rng,
        )
        .unwrap_err();
        assert_eq!(
            e,
            AdvanceError::BadIvLength {
                algorithm: "AES_CBC",
                expected: 16
            }
        );
        let e = seal(
            &m,
            &params(Algorithm::AesGcm, None, Some(&iv), b""),
            &pt,
            &mut rng,
        )
        .unwrap_err();
        assert!(matches!(e, AdvanceError::BadIvLength { expected: 12, .. }));
        // ECB ignores an Iv.
        let s = seal(
            &m,
            &params(Algorithm::AesEcb, None, Some(&iv), b""),
            &pt,
            &mut rng,
        )
        .unwrap();
        assert!(s.header.iv.is_empty());
        // Two GCM seals without an Iv differ.
        let a = seal(
            &m,
            &params(Algorithm::AesGcm, None, None, b""),
            &pt,
            &mut rng,
        )
        .unwrap();
        let b = seal(
            &m,
            &params(Algorithm::AesGcm, None, None, b""),
            &pt,
            &mut rng,
        )
        .unwrap();
        assert_ne!(a.header.iv, b.header.iv);
    }

    #[test]
    fn wrong_aad_fails_for_gcm_only() {
        let mut rng = StdRng::seed_from_u64(2);
        let m = material();
        let s = seal(
            &m,
            &params(Algorithm::AesGcm, None, None, b"ctx-1"),
            b"secret",
            &mut rng,
        )
        .unwrap();
        let p = parse_blob(&s.blob).unwrap();
        assert_eq!(open(&m, &p, b"ctx-2"), Err(AdvanceError::DoesNotOpen));
        assert_eq!(open(&m, &p, b""), Err(AdvanceError::DoesNotOpen));
        assert_eq!(open(&m, &p, b"ctx-1").unwrap().expose(), b"secret");
        // Aad does not apply to CBC (documented): it opens without it.
        let s = seal(
            &m,
            &params(Algorithm::AesCbc, None, None, b"ignored"),
            b"x",
            &mut rng,
        )
        .unwrap();
        let p = parse_blob(&s.blob).unwrap();
        assert_eq!(open(&m, &p, b"").unwrap().expose(), b"x");
    }

    #[test]
    fn any_changed_byte_or_wrong_key_fails() {
        let mut rng = StdRng::seed_from_u64(3);
        let m = material();
        let other = CmkMaterial::from_bytes([9u8; 32]);
        for alg in [Algorithm::AesGcm, Algorithm::AesCbc, Algorithm::AesEcb] {
            let s = seal(
                &m,
                &params(alg, None, None, b""),
                b"attack at dawn!",
                &mut rng,
            )
            .unwrap();
            let p = parse_blob(&s.blob).unwrap();
            assert_eq!(open(&other, &p, b""), Err(AdvanceError::DoesNotOpen));
            for i in 0..s.blob.len() {
                let mut t = s.blob.clone();
                t[i] ^= 0x01;
                let r = parse_blob(&t).and_then(|p| open(&m, &p, b""));
                assert!(r.is_err(), "{alg:?}: flipping byte {i} still opened");
            }
            for cut in 0..s.blob.len() {
                let r = parse_blob(&s.blob[..cut]).and_then(|p| open(&m, &p, b""));
                assert_eq!(
                    r,
                    Err(AdvanceError::DoesNotOpen),
                    "{alg:?}: truncated to {cut}"
                );
            }
        }
    }

    #[test]
    fn size_guidance_and_padding_rules_are_enforced() {
        let mut rng = StdRng::seed_from_u64(4);
        let m = material();
        let big = vec![0u8; MAX_PLAINTEXT_BYTES + 1];
        let e = seal(
            &m,
            &params(Algorithm::AesGcm, None, None, b""),
            &big,
            &mut rng,
        )
        .unwrap_err();
        assert_eq!(e, AdvanceError::PlaintextTooLarge);
        assert!(e.to_string().contains("6 KB"));
        let e = seal(
            &m,
            &params(Algorithm::AesGcm, None, None, b""),
            b"",
            &mut rng,
        )
        .unwrap_err();
        assert_eq!(e, AdvanceError::EmptyPlaintext);
        let aad = vec![0u8; MAX_AAD_BYTES + 1];
        let e = seal(
            &m,
            &params(Algorithm::AesGcm, None, None, &aad),
            b"x",
            &mut rng,
        )
        .unwrap_err();
        assert_eq!(e, AdvanceError::AadTooLarge);
        for alg in [Algorithm::AesCbc, Algorithm::AesEcb] {
            let e = seal(
                &m,
                &params(alg, Some(PaddingMode::NoPadding), None, b""),
                &[1u8; 17],
                &mut rng,
            )
            .unwrap_err();
            assert_eq!(e, AdvanceError::NotBlockAligned);
        }
    }

    #[test]
    fn plain_blobs_go_to_the_store_and_marked_garbage_does_not() {
        let opened: Result<Opened, AdvanceError> = open_any(
            b"store-blob",
            b"",
            |_, _| panic!("not an Advance blob"),
            |b| {
                Ok(Opened {
                    key_id: "k".into(),
                    key_version_id: "v".into(),
                    algorithm: None,
                    padding: None,
                    plaintext: SecretBytes::new(b.to_vec()),
                })
            },
        );
        assert_eq!(opened.unwrap().plaintext.expose(), b"store-blob");
        // The marker followed by garbage is refused, not handed on.
        let r: Result<Opened, AdvanceError> = open_any(
            b"SGA1garbage",
            b"",
            |_, _| panic!("does not parse"),
            |_| panic!("must not fall through to the plain path"),
        );
        assert_eq!(r.unwrap_err(), AdvanceError::DoesNotOpen);
        assert!(!is_advance_blob(b"SGA"));
        assert!(matches!(classify(b"xyz"), Ok(BlobKind::Plain(_))));
    }

    #[test]
    fn blob_layout_is_as_documented() {
        let mut rng = StdRng::seed_from_u64(5);
        let iv = [7u8; 12];
        let s = seal(
            &material(),
            &SealParams {
                key_id: "k",
                key_version_id: "v1",
                algorithm: Algorithm::AesGcm,
                padding: Some(PaddingMode::Pkcs7),
                iv: Some(&iv),
                aad: b"",
            },
            b"abc",
            &mut rng,
        )
        .unwrap();
        let mut want = b"SGA1".to_vec();
        want.extend_from_slice(&[1, 0, 1, b'k', 2, b'v', b'1', 12]);
        want.extend_from_slice(&iv);
        assert_eq!(&s.blob[..want.len()], &want[..]);
        assert_eq!(s.blob.len(), want.len() + 3 + TAG_LEN);
    }

    /// Encrypt's detached blobs: the ciphertext alone (a plain AES-GCM
    /// `ciphertext ‖ tag` for GCM), opening only with the header they were
    /// made under.
    #[test]
    fn detached_blobs_open_only_under_their_header() {
        let m = material();
        let mut rng = StdRng::seed_from_u64(7);
        for (alg, pad) in [
            (Algorithm::AesGcm, None),
            (Algorithm::AesCbc, Some(PaddingMode::Pkcs7)),
            (Algorithm::AesEcb, Some(PaddingMode::NoPadding)),
        ] {
            let pt = b"sixteen bytes!!!";
            let s = seal_detached(&m, &params(alg, pad, None, b"aad"), pt, &mut rng).unwrap();
            assert!(!s.blob.starts_with(MAGIC));
            let padded = if pad == Some(PaddingMode::Pkcs7) {
                32
            } else {
                16
            };
            assert_eq!(s.blob.len(), padded + TAG_LEN);
            let h = s.header.clone();
            assert_eq!(open_detached(&m, &h, &s.blob, b"aad").unwrap().expose(), pt);
            // another version, key, Iv or Aad (GCM) does not open it
            let mut other = h.clone();
            other.key_version_id = "key-sealgate-1-v3".into();
            assert_eq!(
                open_detached(&m, &other, &s.blob, b"aad"),
                Err(AdvanceError::DoesNotOpen)
            );
            let mut other = h.clone();
            other.key_id = "key-sealgate-2".into();
            assert!(open_detached(&m, &other, &s.blob, b"aad").is_err());
            if alg != Algorithm::AesEcb {
                let mut other = h.clone();
                other.iv[0] ^= 1;
                assert!(open_detached(&m, &other, &s.blob, b"aad").is_err());
            }
            if alg == Algorithm::AesGcm {
                assert!(open_detached(&m, &h, &s.blob, b"aaD").is_err());
                // what AdvanceEncrypt makes is the same bytes after its header
                let key = enc_key(&m);
                let cipher = Aes256Gcm::new_from_slice(&key[..]).unwrap();
                let mut full = header_bytes(&h).unwrap();
                full.extend_from_slice(b"aad");
                let opened = cipher
                    .decrypt(
                        Nonce::from_slice(&h.iv),
                        Payload {
                            msg: &s.blob,
                            aad: &full,
                        },
                    )
                    .unwrap();
                assert_eq!(opened, pt);
            }
            let mut tampered = s.blob.clone();
            tampered[0] ^= 1;
            assert!(open_detached(&m, &h, &tampered, b"aad").is_err());
        }
    }
}
