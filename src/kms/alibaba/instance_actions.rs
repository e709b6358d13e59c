//! The key operations of the KMS instance API (`alibabacloud-dkms-gcs`,
//! `dkms-gcs-0.2`) beyond the three Advance actions' OpenAPI forms: parse
//! (protobuf → typed request) → apply (key store) → encode (protobuf
//! response), one request type and one response layout per action.
//!
//! Field numbers are those of the SDK's own `api.proto` (alibabacloud-dkms-gcs
//! 1.0.2, `openapi_util/protobuf/api_pb2.py`).
//!
//! Ciphertexts follow the instance API's rules: **Encrypt** (and
//! GenerateDataKey, GenerateDataKeyPair*) seals under the key's *initial*
//! version and returns the ciphertext alone — the caller keeps `Iv`,
//! `Algorithm` and `PaddingMode` and sends them back with `KeyId` and `Aad`
//! to **Decrypt** ([`advance::seal_detached`]). **AdvanceEncrypt** (and the
//! Advance* data-key actions) seals under the *primary* version into a
//! self-describing blob that AdvanceDecrypt opens alone; AdvanceDecrypt also
//! opens an Encrypt ciphertext when given its KeyId, Algorithm, Iv and
//! PaddingMode. With an RSA ENCRYPT/DECRYPT key, Encrypt / Decrypt are
//! RSAES-OAEP (`RSAES_OAEP_SHA_256` default, `RSAES_OAEP_SHA_1`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::rngs::OsRng;

use super::advance::{self, Algorithm, BlobHeader, PaddingMode, SealParams};
use super::errors::{advance_error, internal, invalid_ciphertext, key_error};
use super::face::{
    oaep_algorithm, oaep_encrypt, signing_algorithm, spec_and_usage, version_id, AlibabaFace,
    Caller,
};
use super::instance::{
    self, as_bytes, as_i32, as_string, AdvanceDecryptResponse, AdvanceEncryptResponse,
    AdvanceGenerateDataKeyResponse, Decoder, Encoder, InstanceAction,
};
use super::wire::{self, check_key_ref, codes, AlibabaError, KeyRef, Request};
use crate::keys::asymmetric::{self, AsymmetricSpec, PrivateKey, RsaPadding, SignInput};
use crate::keys::blob::blob_cmk;
use crate::keys::store::VersionChoice;
use crate::keys::{KeyError, KeyMetadata};
use crate::kms::KeyNote;
use crate::secret::SecretBytes;

/// Largest GenerateRandom `Length` and GenerateDataKey `NumberOfBytes`.
pub const MAX_RANDOM_BYTES: usize = 1024;

// ------------------------------------------------------------------ requests

/// Where a field of a request message goes.
#[derive(Clone, Copy)]
enum Slot {
    KeyId,
    Plaintext,
    CiphertextBlob,
    Algorithm,
    Aad,
    Iv,
    PaddingMode,
    Digest,
    Message,
    MessageType,
    Signature,
    Number,
    KeyPairSpec,
    KeyFormat,
}

/// The request message layout of each action (field number → slot).
fn slot(action: InstanceAction, num: u64) -> Option<Slot> {
    use InstanceAction as A;
    use Slot::*;
    Some(match (action, num) {
        (A::Encrypt, 1) => KeyId,
        (A::Encrypt, 2) => Plaintext,
        (A::Encrypt | A::Decrypt, 3) => Algorithm,
        (A::Encrypt | A::Decrypt, 4) => Aad,
        (A::Encrypt | A::Decrypt, 5) => Iv,
        (A::Encrypt | A::Decrypt, 6) => PaddingMode,
        (A::Decrypt, 1) => CiphertextBlob,
        (A::Decrypt, 2) => KeyId,
        (A::Sign | A::Verify, 1) => KeyId,
        (A::Sign | A::Verify, 2) => Digest,
        (A::Sign, 3) | (A::Verify, 4) => Algorithm,
        (A::Sign, 4) | (A::Verify, 5) => Message,
        (A::Sign, 5) | (A::Verify, 6) => MessageType,
        (A::Verify, 3) => Signature,
        (A::GenerateRandom, 1) => Number,
        (A::GenerateDataKey | A::GetPublicKey, 1) => KeyId,
        (A::GenerateDataKey, 2) => Algorithm,
        (A::GenerateDataKey, 3) => Number,
        (A::GenerateDataKey, 4) => Aad,
        (A::GenerateDataKeyPair | A::GenerateDataKeyPairWithoutPlaintext, n) => match n {
            1 => KeyId,
            2 => Algorithm,
            3 => KeyPairSpec,
            4 => KeyFormat,
            5 => Aad,
            _ => return None,
        },
        (A::AdvanceGenerateDataKeyPair | A::AdvanceGenerateDataKeyPairWithoutPlaintext, n) => {
            match n {
                1 => KeyId,
                2 => KeyPairSpec,
                3 => KeyFormat,
                4 => Aad,
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The raw fields of one request (proto3: absent = empty / zero).
#[derive(Default)]
struct Raw {
    key_id: String,
    plaintext: Option<SecretBytes>,
    ciphertext_blob: Vec<u8>,
    algorithm: String,
    aad: Vec<u8>,
    iv: Vec<u8>,
    padding_mode: String,
    digest: Vec<u8>,
    message: Vec<u8>,
    message_type: String,
    signature: Vec<u8>,
    number: i32,
    key_pair_spec: String,
    key_format: String,
}

fn decode(action: InstanceAction, body: &[u8]) -> Result<Raw, AlibabaError> {
    let mut r = Raw::default();
    let mut d = Decoder { b: body, at: 0 };
    while let Some((num, f)) = d.next()? {
        let Some(slot) = slot(action, num) else {
            continue;
        };
        match slot {
            Slot::KeyId => r.key_id = as_string(f)?,
            Slot::Plaintext => r.plaintext = Some(SecretBytes::new(as_bytes(f)?)),
            Slot::CiphertextBlob => r.ciphertext_blob = as_bytes(f)?,
            Slot::Algorithm => r.algorithm = as_string(f)?,
            Slot::Aad => r.aad = as_bytes(f)?,
            Slot::Iv => r.iv = as_bytes(f)?,
            Slot::PaddingMode => r.padding_mode = as_string(f)?,
            Slot::Digest => r.digest = as_bytes(f)?,
            Slot::Message => r.message = as_bytes(f)?,
            Slot::MessageType => r.message_type = as_string(f)?,
            Slot::Signature => r.signature = as_bytes(f)?,
            Slot::Number => r.number = as_i32(f)?,
            Slot::KeyPairSpec => r.key_pair_spec = as_string(f)?,
            Slot::KeyFormat => r.key_format = as_string(f)?,
        }
    }
    Ok(r)
}

/// What a `Message` is: the message itself, or its SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `RAW` (default): hashed here with the Algorithm's hash.
    Raw,
    /// `DIGEST`: the 32-byte digest, signed as given.
    Digest,
}

impl MessageType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Raw => "RAW",
            MessageType::Digest => "DIGEST",
        }
    }
}

/// The format of a data key pair's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM (default): `PRIVATE KEY` (PKCS#8) and `PUBLIC KEY` (X.509).
    Pem,
    /// DER of the same structures.
    Der,
}

/// Encrypt.
#[derive(Debug)]
pub struct EncryptRequest {
    /// KeyId, alias or ARN.
    pub key: KeyRef,
    /// Plaintext (1 B – 6 KB for AES keys; the OAEP limit for RSA keys).
    pub plaintext: SecretBytes,
    /// Algorithm as sent (checked against the key's type when applied).
    pub algorithm: Option<String>,
    /// Aad (AES_GCM).
    pub aad: Vec<u8>,
    /// Iv (AES_GCM 12 / AES_CBC 16 bytes; random when absent).
    pub iv: Option<Vec<u8>>,
    /// PaddingMode (AES_CBC / AES_ECB).
    pub padding: Option<PaddingMode>,
}

/// Decrypt.
#[derive(Debug)]
pub struct DecryptRequest {
    /// KeyId, alias or ARN (required: the ciphertext names no key).
    pub key: KeyRef,
    /// The ciphertext Encrypt returned.
    pub ciphertext_blob: Vec<u8>,
    /// Algorithm as sent.
    pub algorithm: Option<String>,
    /// Aad.
    pub aad: Vec<u8>,
    /// The Iv Encrypt returned.
    pub iv: Vec<u8>,
    /// PaddingMode.
    pub padding: Option<PaddingMode>,
}

/// Sign, or Verify with a signature.
#[derive(Debug)]
pub struct SignRequest {
    /// KeyId, alias or ARN.
    pub key: KeyRef,
    /// Algorithm (default: RSA_PSS_SHA_256 for RSA keys, ECDSA_SHA_256 for EC_P256).
    pub algorithm: Option<wire::SignAlgorithm>,
    /// The message or digest.
    pub message: Vec<u8>,
    /// What `message` is.
    pub message_type: MessageType,
    /// Verify's signature (`None` for Sign).
    pub signature: Option<Vec<u8>>,
}

/// GenerateDataKey.
#[derive(Debug)]
pub struct GenerateDataKeyRequest {
    /// KeyId, alias or ARN.
    pub key: KeyRef,
    /// Data key length, 1–1024 (32).
    pub number_of_bytes: usize,
    /// Aad.
    pub aad: Vec<u8>,
}

/// GenerateDataKeyPair, …WithoutPlaintext and their Advance forms.
#[derive(Debug)]
pub struct DataKeyPairRequest {
    /// The symmetric key that seals the private key.
    pub key: KeyRef,
    /// KeyPairSpec.
    pub spec: AsymmetricSpec,
    /// KeyFormat.
    pub format: KeyFormat,
    /// Aad.
    pub aad: Vec<u8>,
    /// Return the private key in plaintext too.
    pub with_plaintext: bool,
    /// Seal as AdvanceEncrypt does (primary version, self-describing blob).
    pub advance: bool,
}

/// A typed instance-API request (Advance crypto: the OpenAPI's own types).
#[derive(Debug)]
pub enum InstanceRequest {
    /// AdvanceEncrypt, AdvanceDecrypt, AdvanceGenerateDataKey.
    Advance(Request),
    /// Encrypt.
    Encrypt(EncryptRequest),
    /// Decrypt.
    Decrypt(DecryptRequest),
    /// Sign / Verify.
    Sign(SignRequest),
    /// GenerateRandom of `n` bytes.
    GenerateRandom(usize),
    /// GenerateDataKey.
    GenerateDataKey(GenerateDataKeyRequest),
    /// GetPublicKey.
    GetPublicKey(KeyRef),
    /// The data key pair actions.
    DataKeyPair(DataKeyPairRequest),
}

fn required_key(s: String) -> Result<KeyRef, AlibabaError> {
    if s.is_empty() {
        return Err(AlibabaError::missing("KeyId"));
    }
    check_key_ref("KeyId", &s)?;
    Ok(KeyRef { key_id: s })
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn padding(s: &str) -> Result<Option<PaddingMode>, AlibabaError> {
    if s.is_empty() {
        return Ok(None);
    }
    PaddingMode::parse(s)
        .map(Some)
        .ok_or_else(|| AlibabaError::invalid("PaddingMode", "PKCS7_PADDING or NO_PADDING"))
}

fn aad(a: Vec<u8>) -> Result<Vec<u8>, AlibabaError> {
    if a.len() > advance::MAX_AAD_BYTES {
        return Err(AlibabaError::invalid("Aad", "at most 8192 bytes"));
    }
    Ok(a)
}

fn number(n: i32, name: &str, default: Option<usize>) -> Result<usize, AlibabaError> {
    match (n, default) {
        (0, Some(d)) => Ok(d),
        (0, None) => Err(AlibabaError::missing(name)),
        (n, _) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_RANDOM_BYTES).contains(n))
            .ok_or_else(|| AlibabaError::invalid(name, "1 to 1024")),
    }
}

fn key_pair_spec(s: &str) -> Result<AsymmetricSpec, AlibabaError> {
    match s {
        "" => Err(AlibabaError::missing("KeyPairSpec")),
        "RSA_2048" => Ok(AsymmetricSpec::Rsa2048),
        "RSA_3072" => Ok(AsymmetricSpec::Rsa3072),
        "RSA_4096" => Ok(AsymmetricSpec::Rsa4096),
        "EC_P256" => Ok(AsymmetricSpec::EcP256),
        _ => Err(AlibabaError::invalid(
            "KeyPairSpec",
            "RSA_2048, RSA_3072, RSA_4096 or EC_P256 (EC_P256K and EC_SM2 are not served)",
        )),
    }
}

/// Decodes and validates the protobuf body of `action`.
pub fn parse(action: InstanceAction, body: &[u8]) -> Result<InstanceRequest, AlibabaError> {
    use InstanceAction as A;
    if action.is_advance_crypto() {
        return instance::parse_request(action, body).map(InstanceRequest::Advance);
    }
    let r = decode(action, body)?;
    Ok(match action {
        A::Encrypt => {
            let key = required_key(r.key_id)?;
            let plaintext = r
                .plaintext
                .filter(|p| !p.is_empty())
                .ok_or_else(|| AlibabaError::missing("Plaintext"))?;
            if plaintext.len() > advance::MAX_PLAINTEXT_BYTES {
                return Err(AlibabaError::invalid(
                    "Plaintext",
                    "at most 6 KB per call; encrypt a data key instead (envelope encryption)",
                ));
            }
            InstanceRequest::Encrypt(EncryptRequest {
                key,
                plaintext,
                algorithm: opt(r.algorithm),
                aad: aad(r.aad)?,
                iv: (!r.iv.is_empty()).then_some(r.iv),
                padding: padding(&r.padding_mode)?,
            })
        }
        A::Decrypt => {
            if r.ciphertext_blob.is_empty() {
                return Err(AlibabaError::missing("CiphertextBlob"));
            }
            if r.ciphertext_blob.len() > advance::MAX_BLOB_BYTES {
                return Err(AlibabaError::invalid(
                    "CiphertextBlob",
                    "too large for a 6 KB plaintext",
                ));
            }
            InstanceRequest::Decrypt(DecryptRequest {
                key: required_key(r.key_id)?,
                ciphertext_blob: r.ciphertext_blob,
                algorithm: opt(r.algorithm),
                aad: aad(r.aad)?,
                iv: r.iv,
                padding: padding(&r.padding_mode)?,
            })
        }
        A::Sign | A::Verify => {
            let key = required_key(r.key_id)?;
            let algorithm = match r.algorithm.as_str() {
                "" => None,
                s => Some(wire::SignAlgorithm::parse(s).ok_or_else(|| {
                    AlibabaError::invalid(
                        "Algorithm",
                        "RSA_PSS_SHA_256, RSA_PKCS1_SHA_256 or ECDSA_SHA_256",
                    )
                })?),
            };
            let mut message_type = match r.message_type.as_str() {
                "" | "RAW" => MessageType::Raw,
                "DIGEST" => MessageType::Digest,
                _ => return Err(AlibabaError::invalid("MessageType", "RAW or DIGEST")),
            };
            // The SDK's older `Digest` field: a digest, when no Message is sent.
            let message = if !r.message.is_empty() {
                r.message
            } else if !r.digest.is_empty() {
                message_type = MessageType::Digest;
                r.digest
            } else {
                return Err(AlibabaError::missing("Message"));
            };
            let signature = if action == A::Verify {
                if r.signature.is_empty() {
                    return Err(AlibabaError::missing("Signature"));
                }
                if r.signature.len() > wire::MAX_ASYMMETRIC_BLOB_BYTES {
                    return Err(AlibabaError::invalid("Signature", "too long for any key"));
                }
                Some(r.signature)
            } else {
                None
            };
            InstanceRequest::Sign(SignRequest {
                key,
                algorithm,
                message,
                message_type,
                signature,
            })
        }
        A::GenerateRandom => InstanceRequest::GenerateRandom(number(r.number, "Length", None)?),
        A::GenerateDataKey => {
            let key = required_key(r.key_id)?;
            if !matches!(r.algorithm.as_str(), "" | "AES_GCM") {
                return Err(AlibabaError::invalid("Algorithm", "AES_GCM"));
            }
            InstanceRequest::GenerateDataKey(GenerateDataKeyRequest {
                key,
                number_of_bytes: number(r.number, "NumberOfBytes", Some(32))?,
                aad: aad(r.aad)?,
            })
        }
        A::GetPublicKey => InstanceRequest::GetPublicKey(required_key(r.key_id)?),
        A::GenerateDataKeyPair
        | A::GenerateDataKeyPairWithoutPlaintext
        | A::AdvanceGenerateDataKeyPair
        | A::AdvanceGenerateDataKeyPairWithoutPlaintext => {
            let key = required_key(r.key_id)?;
            if !matches!(r.algorithm.as_str(), "" | "AES_GCM") {
                return Err(AlibabaError::invalid("Algorithm", "AES_GCM"));
            }
            let format = match r.key_format.as_str() {
                "" | "PEM" => KeyFormat::Pem,
                "DER" => KeyFormat::Der,
                _ => return Err(AlibabaError::invalid("KeyFormat", "PEM or DER")),
            };
            InstanceRequest::DataKeyPair(DataKeyPairRequest {
                key,
                spec: key_pair_spec(&r.key_pair_spec)?,
                format,
                aad: aad(r.aad)?,
                with_plaintext: matches!(
                    action,
                    A::GenerateDataKeyPair | A::AdvanceGenerateDataKeyPair
                ),
                advance: matches!(
                    action,
                    A::AdvanceGenerateDataKeyPair | A::AdvanceGenerateDataKeyPairWithoutPlaintext
                ),
            })
        }
        A::AdvanceEncrypt | A::AdvanceDecrypt | A::AdvanceGenerateDataKey => {
            return Err(internal("instance API: Advance crypto parsed twice"))
        }
    })
}

// ------------------------------------------------------------------- apply

/// What an asymmetric action needs of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// GetPublicKey: any asymmetric key.
    Asymmetric,
    /// Sign / Verify: a SIGN/VERIFY key.
    Sign,
}

fn unsupported(m: &KeyMetadata, what: &str) -> AlibabaError {
    let (spec, usage) = spec_and_usage(m.key_usage);
    AlibabaError::new(
        codes::UNSUPPORTED_OPERATION,
        format!(
            "The specified key ({spec}, {usage}) does not support this operation; it needs {what}."
        ),
    )
}

fn wrong_algorithm(m: &KeyMetadata, alg: &str) -> AlibabaError {
    AlibabaError::invalid(
        "Algorithm",
        &format!(
            "{alg} is not an algorithm of a {} key",
            spec_and_usage(m.key_usage).0
        ),
    )
}

/// An RSA ENCRYPT/DECRYPT key (Encrypt / Decrypt go RSAES-OAEP).
fn is_rsa_decrypt(m: &KeyMetadata) -> bool {
    m.key_usage
        .asymmetric_spec()
        .is_some_and(AsymmetricSpec::is_rsa)
        && !m.key_usage.is_signing()
}

fn oaep(m: &KeyMetadata, alg: Option<&str>) -> Result<(RsaPadding, &'static str), AlibabaError> {
    let alg = match alg {
        None => wire::EncryptAlgorithm::RsaesOaepSha256,
        Some(s) => wire::EncryptAlgorithm::parse(s).ok_or_else(|| wrong_algorithm(m, s))?,
    };
    Ok((oaep_algorithm(alg)?, alg.as_str()))
}

/// The AES algorithm, padding and Iv of an Encrypt / Decrypt on an AES key.
fn aes_mode(
    m: &KeyMetadata,
    alg: Option<&str>,
    padding: Option<PaddingMode>,
) -> Result<(Algorithm, Option<PaddingMode>), AlibabaError> {
    let alg = match alg {
        None => Algorithm::AesGcm,
        Some(s) => Algorithm::parse(s).ok_or_else(|| wrong_algorithm(m, s))?,
    };
    let padding = match alg {
        Algorithm::AesGcm => None,
        _ => Some(padding.unwrap_or(PaddingMode::Pkcs7)),
    };
    Ok((alg, padding))
}

/// `-----BEGIN PRIVATE KEY-----` PEM of PKCS#8 DER (the text is secret too).
fn private_key_pem(der: &[u8]) -> SecretBytes {
    let b64 = zeroize::Zeroizing::new(B64.encode(der));
    let mut pem = zeroize::Zeroizing::new(String::with_capacity(b64.len() + 80));
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    SecretBytes::new(pem.as_bytes().to_vec())
}

/// A detached seal (Encrypt's rule: the key's initial version).
struct Detached {
    key_id: String,
    sealed: advance::Sealed,
}

impl AlibabaFace {
    /// Serves one authenticated instance-API request: parse, apply, encode.
    pub(super) fn instance_action(
        &self,
        action: InstanceAction,
        body: &[u8],
        request_id: &str,
        note: &KeyNote,
    ) -> Result<Vec<u8>, AlibabaError> {
        let caller = Caller::ClientKey(note);
        let rid = request_id;
        match parse(action, body)? {
            InstanceRequest::Advance(r) => self.instance_advance(caller, r, rid),
            InstanceRequest::Encrypt(e) => self.instance_encrypt(caller, e, rid),
            InstanceRequest::Decrypt(d) => self.instance_decrypt(caller, d, rid),
            InstanceRequest::Sign(s) => self.instance_sign(caller, s, rid),
            InstanceRequest::GenerateRandom(n) => {
                let random = self.store.generate_random(n).map_err(key_error)?;
                let mut e = Encoder(Vec::new());
                e.bytes(1, random.expose());
                e.bytes(2, rid.as_bytes());
                Ok(e.0)
            }
            InstanceRequest::GenerateDataKey(g) => {
                let dk = self
                    .store
                    .generate_random(g.number_of_bytes)
                    .map_err(key_error)?;
                let d = self.seal_initial_detached(
                    caller,
                    &g.key,
                    Algorithm::AesGcm,
                    None,
                    None,
                    &g.aad,
                    &dk,
                )?;
                let mut e = Encoder(Vec::new());
                e.bytes(1, d.key_id.as_bytes());
                e.bytes(2, &d.sealed.header.iv);
                e.bytes(3, dk.expose());
                e.bytes(4, &d.sealed.blob);
                e.bytes(5, rid.as_bytes());
                e.bytes(6, Algorithm::AesGcm.as_str().as_bytes());
                Ok(e.0)
            }
            InstanceRequest::GetPublicKey(key) => {
                let m = self.asymmetric(caller, &key, Need::Asymmetric)?;
                let der = self
                    .store
                    .with_private_key(&m.key_id.to_string(), |_, k| k.public_key_der())
                    .and_then(|r| r)
                    .map_err(key_error)?;
                let mut e = Encoder(Vec::new());
                e.bytes(1, m.key_id.to_string().as_bytes());
                e.bytes(2, asymmetric::public_key_pem(&der).as_bytes());
                e.bytes(3, rid.as_bytes());
                Ok(e.0)
            }
            InstanceRequest::DataKeyPair(p) => self.instance_data_key_pair(caller, p, rid),
        }
    }

    /// AdvanceEncrypt / AdvanceDecrypt / AdvanceGenerateDataKey.
    fn instance_advance(
        &self,
        caller: Caller<'_>,
        request: Request,
        rid: &str,
    ) -> Result<Vec<u8>, AlibabaError> {
        Ok(match request {
            Request::AdvanceEncrypt(a) => {
                let s = self.advance_encrypt(caller, a)?;
                let h = s.sealed.header;
                AdvanceEncryptResponse {
                    key_id: s.key_id,
                    ciphertext_blob: s.sealed.blob,
                    iv: h.iv,
                    request_id: rid.to_string(),
                    algorithm: h.algorithm.as_str().to_string(),
                    padding_mode: h.padding.map(|p| p.as_str()).unwrap_or("").to_string(),
                    key_version_id: h.key_version_id,
                }
                .encode()
            }
            Request::AdvanceDecrypt(d) => {
                let blob = &d.ciphertext_blob;
                let detached = !advance::is_advance_blob(blob) && blob_cmk(blob).is_err();
                let o = match (&d.key, detached) {
                    // an Encrypt ciphertext, with what Encrypt returned beside it
                    (Some(key), true) => {
                        let (m, alg, padding) =
                            self.aes_key(caller, key, d.algorithm, d.padding)?;
                        let iv = d.iv.clone().unwrap_or_default();
                        let (key_version_id, plaintext) =
                            self.open_initial_detached(&m, alg, padding, iv, blob, &d.aad)?;
                        advance::Opened {
                            key_id: m.key_id.to_string(),
                            key_version_id,
                            algorithm: Some(alg),
                            padding,
                            plaintext,
                        }
                    }
                    _ => self.advance_decrypt(caller, d)?,
                };
                AdvanceDecryptResponse {
                    key_id: o.key_id,
                    plaintext: o.plaintext,
                    request_id: rid.to_string(),
                    algorithm: o.algorithm.map(|a| a.as_str()).unwrap_or("").to_string(),
                    padding_mode: o.padding.map(|p| p.as_str()).unwrap_or("").to_string(),
                    key_version_id: o.key_version_id,
                }
                .encode()
            }
            Request::AdvanceGenerateDataKey(g) => {
                let (s, dk) = self.advance_generate_data_key(caller, g)?;
                let h = s.sealed.header;
                AdvanceGenerateDataKeyResponse {
                    key_id: s.key_id,
                    iv: h.iv,
                    plaintext: dk,
                    ciphertext_blob: s.sealed.blob,
                    request_id: rid.to_string(),
                    algorithm: h.algorithm.as_str().to_string(),
                    key_version_id: h.key_version_id,
                }
                .encode()
            }
            _ => return Err(internal("instance API parsed a non-Advance request")),
        })
    }

    /// A symmetric key the caller may use, with the AES mode asked for.
    fn aes_key(
        &self,
        caller: Caller<'_>,
        key: &KeyRef,
        alg: Option<Algorithm>,
        padding: Option<PaddingMode>,
    ) -> Result<(KeyMetadata, Algorithm, Option<PaddingMode>), AlibabaError> {
        let m = self.resolve(caller, &key.key_id)?;
        if !m.key_usage.is_symmetric() {
            return Err(key_error(KeyError::UsageMismatch));
        }
        let (alg, padding) = aes_mode(&m, alg.map(Algorithm::as_str), padding)?;
        Ok((m, alg, padding))
    }

    /// An asymmetric key the caller may use, fit for `need`.
    fn asymmetric(
        &self,
        caller: Caller<'_>,
        key: &KeyRef,
        need: Need,
    ) -> Result<KeyMetadata, AlibabaError> {
        let m = self.resolve(caller, &key.key_id)?;
        match need {
            _ if m.key_usage.asymmetric_spec().is_none() => {
                Err(unsupported(&m, "an asymmetric key"))
            }
            Need::Sign if !m.key_usage.is_signing() => {
                Err(unsupported(&m, "an asymmetric SIGN/VERIFY key"))
            }
            _ => Ok(m),
        }
    }

    /// Seals `plaintext` detached under the key's initial version.
    #[allow(clippy::too_many_arguments)]
    fn seal_initial_detached(
        &self,
        caller: Caller<'_>,
        key: &KeyRef,
        alg: Algorithm,
        padding: Option<PaddingMode>,
        iv: Option<&[u8]>,
        aad: &[u8],
        plaintext: &SecretBytes,
    ) -> Result<Detached, AlibabaError> {
        let m = self.resolve(caller, &key.key_id)?;
        if !m.key_usage.is_symmetric() {
            return Err(key_error(KeyError::UsageMismatch));
        }
        let key_id = m.key_id.to_string();
        let sealed = self
            .store
            .with_version_material(&key_id, VersionChoice::Initial, |cmk, material| {
                let kv = version_id(&m.key_id, cmk.version);
                advance::seal_detached(
                    material,
                    &SealParams {
                        key_id: &key_id,
                        key_version_id: &kv,
                        algorithm: alg,
                        padding,
                        iv,
                        aad,
                    },
                    plaintext.expose(),
                    &mut OsRng,
                )
            })
            .map_err(key_error)?
            .map_err(advance_error)?;
        Ok(Detached { key_id, sealed })
    }

    /// Opens a detached ciphertext under the key's initial version: the
    /// KeyVersionId and the plaintext.
    fn open_initial_detached(
        &self,
        m: &KeyMetadata,
        alg: Algorithm,
        padding: Option<PaddingMode>,
        iv: Vec<u8>,
        blob: &[u8],
        aad: &[u8],
    ) -> Result<(String, SecretBytes), AlibabaError> {
        let iv = match alg {
            Algorithm::AesEcb => Vec::new(),
            _ if iv.is_empty() => return Err(AlibabaError::missing("Iv")),
            a if iv.len() != a.iv_len() => {
                return Err(AlibabaError::invalid(
                    "Iv",
                    &format!("{} bytes for {}", a.iv_len(), a.as_str()),
                ))
            }
            _ => iv,
        };
        let key_id = m.key_id.to_string();
        self.store
            .with_version_material(&key_id, VersionChoice::Initial, |cmk, material| {
                let header = BlobHeader {
                    key_id: key_id.clone(),
                    key_version_id: version_id(&m.key_id, cmk.version),
                    algorithm: alg,
                    padding,
                    iv,
                };
                advance::open_detached(material, &header, blob, aad)
                    .map(|p| (header.key_version_id, p))
            })
            .map_err(key_error)?
            .map_err(advance_error)
    }

    fn instance_encrypt(
        &self,
        caller: Caller<'_>,
        r: EncryptRequest,
        rid: &str,
    ) -> Result<Vec<u8>, AlibabaError> {
        let m = self.resolve(caller, &r.key.key_id)?;
        let mut e = Encoder(Vec::new());
        if is_rsa_decrypt(&m) {
            let (pad, alg) = oaep(&m, r.algorithm.as_deref())?;
            let der = self
                .store
                .with_private_key(&m.key_id.to_string(), |_, k| k.public_key_der())
                .and_then(|r| r)
                .map_err(key_error)?;
            let blob = oaep_encrypt(&der, pad, r.plaintext.expose())?;
            e.bytes(1, m.key_id.to_string().as_bytes());
            e.bytes(2, &blob);
            e.bytes(4, rid.as_bytes());
            e.bytes(5, alg.as_bytes());
            return Ok(e.0);
        }
        if !m.key_usage.is_symmetric() {
            return Err(unsupported(&m, "a symmetric or RSA ENCRYPT/DECRYPT key"));
        }
        let (alg, padding) = aes_mode(&m, r.algorithm.as_deref(), r.padding)?;
        let d = self.seal_initial_detached(
            caller,
            &r.key,
            alg,
            padding,
            r.iv.as_deref(),
            &r.aad,
            &r.plaintext,
        )?;
        let h = &d.sealed.header;
        e.bytes(1, d.key_id.as_bytes());
        e.bytes(2, &d.sealed.blob);
        e.bytes(3, &h.iv);
        e.bytes(4, rid.as_bytes());
        e.bytes(5, alg.as_str().as_bytes());
        e.bytes(
            6,
            h.padding.map(PaddingMode::as_str).unwrap_or("").as_bytes(),
        );
        Ok(e.0)
    }

    fn instance_decrypt(
        &self,
        caller: Caller<'_>,
        r: DecryptRequest,
        rid: &str,
    ) -> Result<Vec<u8>, AlibabaError> {
        let m = self.resolve(caller, &r.key.key_id)?;
        let mut e = Encoder(Vec::new());
        if is_rsa_decrypt(&m) {
            let (pad, alg) = oaep(&m, r.algorithm.as_deref())?;
            let plaintext = self
                .store
                .with_private_key(&m.key_id.to_string(), |_, k| {
                    k.decrypt(pad, &r.ciphertext_blob)
                })
                .and_then(|r| r)
                .map_err(|e| match e {
                    KeyError::DoesNotOpen => {
                        invalid_ciphertext("does not decrypt with this key and Algorithm")
                    }
                    e => key_error(e),
                })?;
            e.bytes(1, m.key_id.to_string().as_bytes());
            e.bytes(2, plaintext.expose());
            e.bytes(3, rid.as_bytes());
            e.bytes(4, alg.as_bytes());
            return Ok(e.0);
        }
        if !m.key_usage.is_symmetric() {
            return Err(unsupported(&m, "a symmetric or RSA ENCRYPT/DECRYPT key"));
        }
        let (alg, padding) = aes_mode(&m, r.algorithm.as_deref(), r.padding)?;
        let (_, plaintext) =
            self.open_initial_detached(&m, alg, padding, r.iv, &r.ciphertext_blob, &r.aad)?;
        e.bytes(1, m.key_id.to_string().as_bytes());
        e.bytes(2, plaintext.expose());
        e.bytes(3, rid.as_bytes());
        e.bytes(4, alg.as_str().as_bytes());
        e.bytes(5, padding.map(PaddingMode::as_str).unwrap_or("").as_bytes());
        Ok(e.0)
    }

    /// Sign, or Verify when the request carries a signature.
    fn instance_sign(
        &self,
        caller: Caller<'_>,
        r: SignRequest,
        rid: &str,
    ) -> Result<Vec<u8>, AlibabaError> {
        let m = self.asymmetric(caller, &r.key, Need::Sign)?;
        let wire_alg = match r.algorithm {
            Some(a) => a,
            None if m.key_usage.asymmetric_spec() == Some(AsymmetricSpec::EcP256) => {
                wire::SignAlgorithm::EcdsaSha256
            }
            None => wire::SignAlgorithm::RsaPssSha256,
        };
        let alg = signing_algorithm(&m, wire_alg)?;
        let input = match r.message_type {
            MessageType::Raw => SignInput::Raw(&r.message),
            MessageType::Digest => SignInput::Digest(&r.message),
        };
        let key = m.key_id.to_string();
        let mut e = Encoder(Vec::new());
        e.bytes(1, key.as_bytes());
        let done = |k: &PrivateKey| match &r.signature {
            None => k.sign(alg, input).map(Ok),
            Some(sig) => k.verify(alg, input, sig).map(Err),
        };
        match self
            .store
            .with_private_key(&key, |_, k| done(k))
            .and_then(|r| r)
            .map_err(key_error)?
        {
            Ok(signature) => e.bytes(2, &signature),
            Err(valid) => e.bool(2, valid),
        }
        e.bytes(3, rid.as_bytes());
        e.bytes(4, wire_alg.as_str().as_bytes());
        e.bytes(5, r.message_type.as_str().as_bytes());
        Ok(e.0)
    }

    fn instance_data_key_pair(
        &self,
        caller: Caller<'_>,
        p: DataKeyPairRequest,
        rid: &str,
    ) -> Result<Vec<u8>, AlibabaError> {
        // the sealing key first: no key pair is made for a key that cannot seal
        let m = self.resolve(caller, &p.key.key_id)?;
        if !m.key_usage.is_symmetric() {
            return Err(key_error(KeyError::UsageMismatch));
        }
        let pkcs8 = p.spec.generate_pkcs8().map_err(key_error)?;
        let public_der = PrivateKey::from_pkcs8(p.spec, SecretBytes::new(pkcs8.expose().to_vec()))
            .and_then(|k| k.public_key_der())
            .map_err(key_error)?;
        let (private, public) = match p.format {
            KeyFormat::Der => (pkcs8, public_der),
            KeyFormat::Pem => (
                private_key_pem(pkcs8.expose()),
                asymmetric::public_key_pem(&public_der).into_bytes(),
            ),
        };
        let spec = match p.spec {
            AsymmetricSpec::Rsa2048 => "RSA_2048",
            AsymmetricSpec::Rsa3072 => "RSA_3072",
            AsymmetricSpec::Rsa4096 => "RSA_4096",
            AsymmetricSpec::EcP256 => "EC_P256",
            AsymmetricSpec::EcP384 => return Err(internal("EC_P384 is not a KeyPairSpec")),
        };
        let (key_id, sealed) = if p.advance {
            let s = self.advance_encrypt(
                caller,
                wire::AdvanceEncrypt {
                    key: p.key,
                    plaintext: SecretBytes::new(private.expose().to_vec()),
                    algorithm: Some(Algorithm::AesGcm),
                    iv: None,
                    aad: p.aad,
                    padding: None,
                },
            )?;
            (s.key_id, s.sealed)
        } else {
            let d = self.seal_initial_detached(
                caller,
                &p.key,
                Algorithm::AesGcm,
                None,
                None,
                &p.aad,
                &private,
            )?;
            (d.key_id, d.sealed)
        };
        // field numbers shift by one when the plaintext private key is absent
        let mut e = Encoder(Vec::new());
        e.bytes(1, key_id.as_bytes());
        e.bytes(2, &sealed.header.iv);
        e.bytes(3, spec.as_bytes());
        let mut n = 4;
        if p.with_plaintext {
            e.bytes(n, private.expose());
            n += 1;
        }
        e.bytes(n, &sealed.blob);
        e.bytes(n + 1, &public);
        e.bytes(n + 2, rid.as_bytes());
        e.bytes(n + 3, Algorithm::AesGcm.as_str().as_bytes());
        if p.advance {
            e.bytes(n + 4, sealed.header.key_version_id.as_bytes());
        }
        Ok(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[(u64, &[u8])]) -> Vec<u8> {
        let mut e = Encoder(Vec::new());
        for (n, b) in fields {
            e.bytes(*n, b);
        }
        e.0
    }

    #[test]
    fn every_sdk_action_has_a_name_and_a_quota_class() {
        for a in InstanceAction::ALL {
            assert_eq!(InstanceAction::from_name(a.name()), Some(*a));
            assert!(wire::Action::from_name(a.quota_action()).is_some(), "{a:?}");
        }
        assert_eq!(InstanceAction::ALL.len(), 14);
        assert_eq!(InstanceAction::from_name("GetSecretValue"), None);
        assert_eq!(InstanceAction::from_name("Hash"), None);
    }

    #[test]
    fn requests_decode_with_the_sdks_field_numbers() {
        let InstanceRequest::Encrypt(e) = parse(
            InstanceAction::Encrypt,
            &msg(&[
                (1, b"alias/k"),
                (2, b"pt"),
                (3, b"AES_CBC"),
                (4, b"aad"),
                (5, &[7; 16]),
                (6, b"NO_PADDING"),
            ]),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                e.key.key_id.as_str(),
                e.plaintext.expose(),
                e.aad.as_slice()
            ),
            ("alias/k", &b"pt"[..], &b"aad"[..])
        );
        assert_eq!(e.algorithm.as_deref(), Some("AES_CBC"));
        assert_eq!(e.iv, Some(vec![7; 16]));
        assert_eq!(e.padding, Some(PaddingMode::NoPadding));

        let InstanceRequest::Decrypt(d) = parse(
            InstanceAction::Decrypt,
            &msg(&[(1, b"blob"), (2, b"k"), (5, &[1; 12])]),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.ciphertext_blob.as_slice(), d.key.key_id.as_str()),
            (&b"blob"[..], "k")
        );
        assert_eq!(d.iv, vec![1; 12]);

        // Verify: 2 Digest, 3 Signature, 4 Algorithm, 5 Message, 6 MessageType
        let InstanceRequest::Sign(v) = parse(
            InstanceAction::Verify,
            &msg(&[
                (1, b"k"),
                (3, b"sig"),
                (4, b"RSA_PKCS1_SHA_256"),
                (5, b"message"),
                (6, b"RAW"),
            ]),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(v.signature.as_deref(), Some(&b"sig"[..]));
        assert_eq!(v.algorithm, Some(wire::SignAlgorithm::RsaPkcs1Sha256));
        assert_eq!(
            (v.message.as_slice(), v.message_type),
            (&b"message"[..], MessageType::Raw)
        );
        // Sign with the older Digest field only: a DIGEST
        let InstanceRequest::Sign(s) =
            parse(InstanceAction::Sign, &msg(&[(1, b"k"), (2, &[9; 32])])).unwrap()
        else {
            panic!()
        };
        assert_eq!((s.message_type, s.signature), (MessageType::Digest, None));

        let mut e = Encoder(Vec::new());
        e.int32(1, 1024);
        assert!(matches!(
            parse(InstanceAction::GenerateRandom, &e.0).unwrap(),
            InstanceRequest::GenerateRandom(1024)
        ));
        let InstanceRequest::DataKeyPair(p) = parse(
            InstanceAction::AdvanceGenerateDataKeyPairWithoutPlaintext,
            &msg(&[(1, b"k"), (2, b"EC_P256"), (3, b"DER"), (4, b"a")]),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                p.spec,
                p.format,
                p.with_plaintext,
                p.advance,
                p.aad.as_slice()
            ),
            (
                AsymmetricSpec::EcP256,
                KeyFormat::Der,
                false,
                true,
                &b"a"[..]
            )
        );
    }

    #[test]
    fn bad_requests_get_the_documented_codes() {
        let code = |a, body: &[u8]| parse(a, body).unwrap_err().code;
        let mut e = Encoder(Vec::new());
        e.int32(1, 1025);
        assert_eq!(
            code(InstanceAction::GenerateRandom, &e.0),
            "InvalidParameter"
        );
        let mut e = Encoder(Vec::new());
        e.int32(1, -1);
        assert_eq!(
            code(InstanceAction::GenerateRandom, &e.0),
            "InvalidParameter"
        );
        assert_eq!(
            code(InstanceAction::GenerateRandom, &[]),
            "MissingParameter"
        );
        assert_eq!(
            code(InstanceAction::Encrypt, &msg(&[(1, b"k")])),
            "MissingParameter"
        );
        assert_eq!(
            code(InstanceAction::Encrypt, &msg(&[(2, b"p")])),
            "MissingParameter"
        );
        assert_eq!(
            code(InstanceAction::Encrypt, &msg(&[(1, b"k"), (2, &[0; 6145])])),
            "InvalidParameter"
        );
        assert_eq!(
            code(InstanceAction::Decrypt, &msg(&[(1, b"blob")])),
            "MissingParameter"
        );
        assert_eq!(
            code(InstanceAction::Verify, &msg(&[(1, b"k"), (5, b"m")])),
            "MissingParameter"
        );
        assert_eq!(
            code(
                InstanceAction::Sign,
                &msg(&[(1, b"k"), (4, b"m"), (5, b"HEX")])
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                InstanceAction::Sign,
                &msg(&[(1, b"k"), (3, b"SM3"), (4, b"m")])
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                InstanceAction::GenerateDataKeyPair,
                &msg(&[(1, b"k"), (3, b"EC_SM2")])
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(InstanceAction::GenerateDataKeyPair, &msg(&[(1, b"k")])),
            "MissingParameter"
        );
        assert_eq!(
            code(
                InstanceAction::GenerateDataKeyPair,
                &msg(&[(1, b"k"), (3, b"RSA_2048"), (4, b"JWK")])
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                InstanceAction::GenerateDataKey,
                &msg(&[(1, b"k"), (2, b"AES_CBC")])
            ),
            "InvalidParameter"
        );
        // a field of the wrong wire type is a malformed body
        assert_eq!(
            code(InstanceAction::GetPublicKey, &[0x08, 1]),
            "InvalidParameter"
        );
    }

    #[test]
    fn private_keys_in_pem_are_pkcs8_text() {
        let pem = private_key_pem(&[1, 2, 3]);
        let text = std::str::from_utf8(pem.expose()).unwrap();
        assert_eq!(
            text,
            "-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"
        );
    }
}
