//! The KMS instance API (`alibabacloud-dkms-gcs`, API version
//! `dkms-gcs-0.2`): the actions served ([`InstanceAction`]), header parsing,
//! the RSA_PKCS1_SHA_256 request signature checked against a registered
//! client public key, the protobuf codec, and the messages of AdvanceEncrypt,
//! AdvanceDecrypt and AdvanceGenerateDataKey (which share their typed
//! requests with the OpenAPI). The other actions' messages live in
//! `instance_actions`.
//!
//! What the SDK sends (captured, tests/sdk/vectors/alibaba_python_sdks.jsonl):
//! `POST /`, protobuf body, `content-type`/`accept: application/x-protobuf`,
//! `date` (RFC 1123), `content-sha256` (upper-case hex SHA-256 of the body),
//! `x-kms-apiversion`, `x-kms-apiname`, `x-kms-signaturemethod`,
//! `x-kms-acccesskeyid` (sic, three c's) and
//! `authorization: Bearer <Base64 signature>` over
//!
//! ```text
//! POST\n<content-sha256>\n<content-type>\n<date>\n<x-kms-* headers sorted, "name:value\n">/
//! ```
//!
//! The protobuf codec is hand-written for these messages: varints and
//! length-delimited fields, unknown fields skipped, a repeated field's last
//! value wins (proto3 rules), strings must be UTF-8.
//!
//! Replays: the instance API carries no nonce; a captured request stays
//! valid for the 15-minute window. Serve it over TLS only.

use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::advance::{Algorithm, PaddingMode};
use super::sign::{RequestParts, DEFAULT_MAX_SKEW_SECS};
use super::wire::{
    check_advance_decrypt, check_advance_encrypt, check_key_ref, codes, AdvanceDecrypt,
    AdvanceEncrypt, AdvanceGenerateDataKey, AlibabaError, KeyRef, Request,
};
use crate::secret::SecretBytes;

/// The `x-kms-apiversion` this face speaks.
pub const API_VERSION: &str = "dkms-gcs-0.2";
/// The only `x-kms-signaturemethod`.
pub const SIGNATURE_METHOD: &str = "RSA_PKCS1_SHA_256";
/// Request and response content type.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Largest request body (documented: 3 MB, else HTTP 413).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Instance-API error codes with their HTTP statuses (common error codes
/// page of the KMS instance API).
pub mod codes_instance {
    #![allow(missing_docs)]
    pub const INVALID_API_NAME: (&str, u16) = ("InvalidApiName", 400);
    pub const INVALID_API_VERSION: (&str, u16) = ("InvalidApiVersion", 400);
    pub const INVALID_PARAM: (&str, u16) = ("InvalidParam", 400);
    pub const REQUEST_TIME_TOO_SKEWED: (&str, u16) = ("RequestTimeTooSkewed", 400);
    pub const PAYLOAD_TOO_LARGE: (&str, u16) = ("RequestEntityTooLarge", 413);
    pub const SIGNATURE_NOT_MATCH: (&str, u16) = ("SignatureNotMatch", 401);
    /// An `x-kms-acccesskeyid` no client key is registered under.
    pub const UNAUTHORIZED: (&str, u16) = ("Unauthorized", 404);
}

macro_rules! instance_actions {
    ($($(#[$doc:meta])* $name:ident => $quota:literal,)*) => {
        /// An action of the instance API served here (every key operation
        /// of `alibabacloud-dkms-gcs`; GetSecretValue is not: sealgate
        /// keeps no secrets).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum InstanceAction {
            $($(#[$doc])* $name,)*
        }

        impl InstanceAction {
            /// Every action, in the order of the SDK's client.
            pub const ALL: &'static [InstanceAction] = &[$(InstanceAction::$name),*];

            /// The `x-kms-apiname`.
            pub fn name(self) -> &'static str {
                match self {
                    $(InstanceAction::$name => stringify!($name),)*
                }
            }

            /// The OpenAPI action whose quota class this action counts under
            /// (the limiter is keyed by OpenAPI action names).
            pub fn quota_action(self) -> &'static str {
                match self {
                    $(InstanceAction::$name => $quota,)*
                }
            }
        }
    };
}

instance_actions! {
    /// Encrypt (symmetric: detached Iv; RSA: OAEP).
    Encrypt => "Encrypt",
    /// Decrypt of an Encrypt / GenerateDataKey ciphertext.
    Decrypt => "Decrypt",
    /// Sign (RAW message or DIGEST).
    Sign => "AsymmetricSign",
    /// Verify.
    Verify => "AsymmetricVerify",
    /// GenerateRandom.
    GenerateRandom => "GenerateDataKey",
    /// GenerateDataKey (sealed as Encrypt seals).
    GenerateDataKey => "GenerateDataKey",
    /// GetPublicKey.
    GetPublicKey => "GetPublicKey",
    /// AdvanceEncrypt.
    AdvanceEncrypt => "AdvanceEncrypt",
    /// AdvanceDecrypt.
    AdvanceDecrypt => "AdvanceDecrypt",
    /// AdvanceGenerateDataKey.
    AdvanceGenerateDataKey => "AdvanceGenerateDataKey",
    /// GenerateDataKeyPair.
    GenerateDataKeyPair => "GenerateDataKey",
    /// GenerateDataKeyPairWithoutPlaintext.
    GenerateDataKeyPairWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
    /// AdvanceGenerateDataKeyPair.
    AdvanceGenerateDataKeyPair => "AdvanceGenerateDataKey",
    /// AdvanceGenerateDataKeyPairWithoutPlaintext.
    AdvanceGenerateDataKeyPairWithoutPlaintext => "AdvanceGenerateDataKey",
}

impl InstanceAction {
    /// The action named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// AdvanceEncrypt, AdvanceDecrypt and AdvanceGenerateDataKey: the three
    /// that share their typed requests with the OpenAPI.
    pub fn is_advance_crypto(self) -> bool {
        matches!(
            self,
            InstanceAction::AdvanceEncrypt
                | InstanceAction::AdvanceDecrypt
                | InstanceAction::AdvanceGenerateDataKey
        )
    }
}

/// A registered client public key (RSA, DER: SubjectPublicKeyInfo or
/// PKCS#1 RSAPublicKey), validated when made.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientPublicKey {
    der: Vec<u8>,
}

impl std::fmt::Debug for ClientPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientPublicKey({} DER bytes)", self.der.len())
    }
}

/// Why a client public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RSA public key (PEM or DER SubjectPublicKeyInfo / RSAPublicKey)")]
pub struct BadPublicKey;

impl ClientPublicKey {
    /// From DER.
    pub fn from_der(der: &[u8]) -> Result<Self, BadPublicKey> {
        aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|_| BadPublicKey)?;
        Ok(Self { der: der.to_vec() })
    }

    /// From PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, BadPublicKey> {
        let mut inside = false;
        let mut b64 = String::new();
        for line in pem.lines().map(str::trim) {
            if line == "-----BEGIN PUBLIC KEY-----" || line == "-----BEGIN RSA PUBLIC KEY-----" {
                inside = true;
            } else if line.starts_with("-----END ") {
                break;
            } else if inside {
                b64.push_str(line);
            }
        }
        let der = B64.decode(b64).map_err(|_| BadPublicKey)?;
        Self::from_der(&der)
    }

    /// From PEM text or raw DER bytes, whichever `bytes` is.
    pub fn parse(bytes: &[u8]) -> Result<Self, BadPublicKey> {
        match std::str::from_utf8(bytes) {
            Ok(s) if s.contains("-----BEGIN") => Self::from_pem(s),
            _ => Self::from_der(bytes),
        }
    }

    /// Checks an RSA PKCS#1 v1.5 SHA-256 signature of `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.der)
            .verify(msg, signature)
            .is_ok()
    }
}

/// An authenticated instance-API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCaller {
    /// The client key's id (`x-kms-acccesskeyid`).
    pub access_key_id: String,
    /// The action.
    pub action: InstanceAction,
    /// The request's `date` (unix seconds).
    pub timestamp: i64,
}

const RFC1123: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Parses an RFC 1123 date (`Mon, 23 Nov 2026 12:01:26 GMT`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let dt = time::PrimitiveDateTime::parse(s.trim(), RFC1123).ok()?;
    Some(dt.assume_utc().unix_timestamp())
}

/// Formats unix seconds as an RFC 1123 date.
pub fn format_http_date(ts: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()?
        .format(RFC1123)
        .ok()
}

/// The string the client signs (see the module docs).
pub fn string_to_sign(req: &RequestParts<'_>) -> String {
    let h = |n: &str| req.header(n).unwrap_or_default();
    let mut kms: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| n.starts_with("x-kms-"))
        .map(|n| {
            let v = req.header(&n).unwrap_or_default();
            (n, v)
        })
        .collect();
    kms.sort();
    kms.dedup();
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        req.method.to_ascii_uppercase(),
        h("content-sha256"),
        h("content-type"),
        h("date")
    );
    for (n, v) in kms {
        out.push_str(&n);
        out.push(':');
        out.push_str(v.trim());
        out.push('\n');
    }
    out.push('/');
    out
}

fn invalid_param(what: &str) -> AlibabaError {
    AlibabaError::new(
        codes_instance::INVALID_PARAM,
        format!("The Param {what} is invalid."),
    )
}

/// Verifies an instance-API request: version, api name, signature method,
/// body size and hash, date window (15 minutes), then the signature with
/// the client key `key_lookup` returns for `x-kms-acccesskeyid`.
pub fn verify(
    req: &RequestParts<'_>,
    key_lookup: impl Fn(&str) -> Option<ClientPublicKey>,
    now: i64,
) -> Result<InstanceCaller, AlibabaError> {
    verify_with_skew(req, key_lookup, now, DEFAULT_MAX_SKEW_SECS)
}

/// [`verify`] with a chosen window, seconds.
pub fn verify_with_skew(
    req: &RequestParts<'_>,
    key_lookup: impl Fn(&str) -> Option<ClientPublicKey>,
    now: i64,
    max_skew_secs: i64,
) -> Result<InstanceCaller, AlibabaError> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(AlibabaError::new(
            codes_instance::PAYLOAD_TOO_LARGE,
            "The request body is larger than 3 MB.",
        ));
    }
    let version = req.header("x-kms-apiversion").unwrap_or_default();
    if version.trim() != API_VERSION {
        return Err(AlibabaError::new(
            codes_instance::INVALID_API_VERSION,
            "The ApiVersion is invalid; this service speaks dkms-gcs-0.2.",
        ));
    }
    let name = req.header("x-kms-apiname").unwrap_or_default();
    let action = InstanceAction::from_name(name.trim()).ok_or_else(|| {
        AlibabaError::new(
            codes_instance::INVALID_API_NAME,
            "The ApiName is invalid or not served here.",
        )
    })?;
    match req.header("x-kms-signaturemethod") {
        None => return Err(invalid_param("x-kms-signaturemethod")),
        Some(m) if m.trim() != SIGNATURE_METHOD => {
            return Err(invalid_param("x-kms-signaturemethod"))
        }
        Some(_) => {}
    }
    let access_key_id = req
        .header("x-kms-acccesskeyid")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AlibabaError::new(
                codes::MISSING_PARAMETER,
                "Parameter x-kms-acccesskeyid does not exist in http header or body.",
            )
        })?;
    let ts = req
        .header("date")
        .and_then(|d| parse_http_date(&d))
        .ok_or_else(|| invalid_param("Date"))?;
    if ts.abs_diff(now) > max_skew_secs.unsigned_abs() {
        return Err(AlibabaError::new(
            codes_instance::REQUEST_TIME_TOO_SKEWED,
            "Request time exceeds server time more than 15 minutes.",
        ));
    }
    let body_hash = hex::encode_upper(Sha256::digest(req.body));
    match req.header("content-sha256") {
        Some(h) if h.trim().eq_ignore_ascii_case(&body_hash) => {}
        _ => return Err(invalid_param("content-sha256")),
    }
    let auth = req.header("authorization").unwrap_or_default();
    let sig = auth
        .trim()
        .strip_prefix("Bearer ")
        .and_then(|s| B64.decode(s.trim()).ok())
        .ok_or_else(|| {
            AlibabaError::new(
                codes::INCOMPLETE_SIGNATURE,
                "The Authorization header is not Bearer <Base64 signature>.",
            )
        })?;
    let key = key_lookup(&access_key_id).ok_or_else(|| {
        AlibabaError::new(
            codes_instance::UNAUTHORIZED,
            format!("The AccessKey ID \"{access_key_id}\" does not exist in our records."),
        )
    })?;
    if !key.verify(string_to_sign(req).as_bytes(), &sig) {
        return Err(AlibabaError::new(
            codes_instance::SIGNATURE_NOT_MATCH,
            "Signature is not matched.",
        ));
    }
    Ok(InstanceCaller {
        access_key_id,
        action,
        timestamp: ts,
    })
}

// ------------------------------------------------------------------ protobuf

/// A malformed protobuf body.
fn bad_body() -> AlibabaError {
    AlibabaError::invalid("body", "not a valid protobuf message for this ApiName")
}

/// One decoded field's value.
pub(super) enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// A protobuf message being read.
pub(super) struct Decoder<'a> {
    pub(super) b: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Decoder<'a> {
    fn varint(&mut self) -> Result<u64, AlibabaError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = *self.b.get(self.at).ok_or_else(bad_body)?;
            self.at += 1;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad_body())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AlibabaError> {
        let end = self.at.checked_add(n).ok_or_else(bad_body)?;
        let s = self.b.get(self.at..end).ok_or_else(bad_body)?;
        self.at = end;
        Ok(s)
    }

    /// The next known-typed field, skipping fixed-width ones.
    pub(super) fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, AlibabaError> {
        loop {
            if self.at >= self.b.len() {
                return Ok(None);
            }
            let key = self.varint()?;
            let num = key >> 3;
            if num == 0 {
                return Err(bad_body());
            }
            match key & 7 {
                0 => return Ok(Some((num, Field::Varint(self.varint()?)))),
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| bad_body())?;
                    return Ok(Some((num, Field::Bytes(self.take(n)?))));
                }
                1 => {
                    self.take(8)?;
                }
                5 => {
                    self.take(4)?;
                }
                _ => return Err(bad_body()),
            }
        }
    }
}

pub(super) fn as_bytes(f: Field<'_>) -> Result<Vec<u8>, AlibabaError> {
    match f {
        Field::Bytes(b) => Ok(b.to_vec()),
        Field::Varint(_) => Err(bad_body()),
    }
}

pub(super) fn as_string(f: Field<'_>) -> Result<String, AlibabaError> {
    String::from_utf8(as_bytes(f)?).map_err(|_| bad_body())
}

pub(super) fn as_i32(f: Field<'_>) -> Result<i32, AlibabaError> {
    match f {
        // int32 is sign-extended to 64 bits on the wire.
        Field::Varint(v) => Ok(v as i64 as i32),
        Field::Bytes(_) => Err(bad_body()),
    }
}

/// Raw fields of the three request messages.
#[derive(Default)]
struct RawRequest {
    key_id: String,
    plaintext: Vec<u8>,
    ciphertext_blob: Vec<u8>,
    algorithm: String,
    aad: Vec<u8>,
    iv: Vec<u8>,
    padding: String,
    number_of_bytes: i32,
}

fn decode(action: InstanceAction, body: &[u8]) -> Result<RawRequest, AlibabaError> {
    let mut r = RawRequest::default();
    let mut d = Decoder { b: body, at: 0 };
    while let Some((num, f)) = d.next()? {
        match (action, num) {
            (InstanceAction::AdvanceEncrypt, 1)
            | (InstanceAction::AdvanceDecrypt, 2)
            | (InstanceAction::AdvanceGenerateDataKey, 1) => r.key_id = as_string(f)?,
            (InstanceAction::AdvanceEncrypt, 2) => r.plaintext = as_bytes(f)?,
            (InstanceAction::AdvanceDecrypt, 1) => r.ciphertext_blob = as_bytes(f)?,
            (InstanceAction::AdvanceEncrypt | InstanceAction::AdvanceDecrypt, 3) => {
                r.algorithm = as_string(f)?
            }
            (InstanceAction::AdvanceEncrypt | InstanceAction::AdvanceDecrypt, 4)
            | (InstanceAction::AdvanceGenerateDataKey, 3) => r.aad = as_bytes(f)?,
            (InstanceAction::AdvanceEncrypt | InstanceAction::AdvanceDecrypt, 5) => {
                r.iv = as_bytes(f)?
            }
            (InstanceAction::AdvanceEncrypt | InstanceAction::AdvanceDecrypt, 6) => {
                r.padding = as_string(f)?
            }
            (InstanceAction::AdvanceGenerateDataKey, 2) => r.number_of_bytes = as_i32(f)?,
            _ => {}
        }
    }
    Ok(r)
}

fn opt_key(s: String) -> Result<Option<KeyRef>, AlibabaError> {
    if s.is_empty() {
        return Ok(None);
    }
    check_key_ref("KeyId", &s)?;
    Ok(Some(KeyRef { key_id: s }))
}

fn opt_algorithm(s: &str) -> Result<Option<Algorithm>, AlibabaError> {
    if s.is_empty() {
        return Ok(None);
    }
    Algorithm::parse(s)
        .map(Some)
        .ok_or_else(|| AlibabaError::invalid("Algorithm", "AES_GCM, AES_CBC or AES_ECB"))
}

fn opt_padding(s: &str) -> Result<Option<PaddingMode>, AlibabaError> {
    if s.is_empty() {
        return Ok(None);
    }
    PaddingMode::parse(s)
        .map(Some)
        .ok_or_else(|| AlibabaError::invalid("PaddingMode", "PKCS7_PADDING or NO_PADDING"))
}

/// Decodes and validates the protobuf body of `action` into the same typed
/// request the OpenAPI face builds ([`Request::AdvanceEncrypt`], …).
pub fn parse_request(action: InstanceAction, body: &[u8]) -> Result<Request, AlibabaError> {
    let r = decode(action, body)?;
    Ok(match action {
        InstanceAction::AdvanceEncrypt => {
            let key = opt_key(r.key_id)?.ok_or_else(|| AlibabaError::missing("KeyId"))?;
            Request::AdvanceEncrypt(check_advance_encrypt(AdvanceEncrypt {
                key,
                plaintext: SecretBytes::new(r.plaintext),
                algorithm: opt_algorithm(&r.algorithm)?,
                iv: (!r.iv.is_empty()).then_some(r.iv),
                aad: r.aad,
                padding: opt_padding(&r.padding)?,
            })?)
        }
        InstanceAction::AdvanceDecrypt => {
            Request::AdvanceDecrypt(check_advance_decrypt(AdvanceDecrypt {
                ciphertext_blob: r.ciphertext_blob,
                key: opt_key(r.key_id)?,
                algorithm: opt_algorithm(&r.algorithm)?,
                iv: (!r.iv.is_empty()).then_some(r.iv),
                aad: r.aad,
                padding: opt_padding(&r.padding)?,
            })?)
        }
        InstanceAction::AdvanceGenerateDataKey => {
            let key = opt_key(r.key_id)?.ok_or_else(|| AlibabaError::missing("KeyId"))?;
            let n = match r.number_of_bytes {
                0 => 32,
                n @ 1..=1024 => n.unsigned_abs(),
                _ => return Err(AlibabaError::invalid("NumberOfBytes", "1 to 1024")),
            };
            if r.aad.len() > super::advance::MAX_AAD_BYTES {
                return Err(AlibabaError::invalid("Aad", "at most 8192 bytes"));
            }
            Request::AdvanceGenerateDataKey(AdvanceGenerateDataKey {
                key,
                number_of_bytes: n,
                aad: r.aad,
            })
        }
        other => {
            return Err(AlibabaError::new(
                codes_instance::INVALID_API_NAME,
                format!(
                    "The ApiName \"{}\" has no OpenAPI request form.",
                    other.name()
                ),
            ))
        }
    })
}

/// A protobuf message being written (proto3: default values are omitted).
pub(super) struct Encoder(pub(super) Vec<u8>);

impl Encoder {
    pub(super) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A length-delimited field; empty values are omitted (proto3 default).
    pub(super) fn bytes(&mut self, num: u64, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        self.varint(num << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A bool field (`false` is omitted).
    pub(super) fn bool(&mut self, num: u64, v: bool) {
        if v {
            self.varint(num << 3);
            self.varint(1);
        }
    }

    pub(super) fn int32(&mut self, num: u64, v: i32) {
        if v == 0 {
            return;
        }
        self.varint(num << 3);
        self.varint(i64::from(v) as u64);
    }
}

/// AdvanceEncryptResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdvanceEncryptResponse {
    /// 1: KeyId.
    pub key_id: String,
    /// 2: CiphertextBlob (raw).
    pub ciphertext_blob: Vec<u8>,
    /// 3: Iv.
    pub iv: Vec<u8>,
    /// 4: RequestId.
    pub request_id: String,
    /// 5: Algorithm.
    pub algorithm: String,
    /// 6: PaddingMode.
    pub padding_mode: String,
    /// 7: KeyVersionId.
    pub key_version_id: String,
}

impl AdvanceEncryptResponse {
    /// Protobuf bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::new());
        e.bytes(1, self.key_id.as_bytes());
        e.bytes(2, &self.ciphertext_blob);
        e.bytes(3, &self.iv);
        e.bytes(4, self.request_id.as_bytes());
        e.bytes(5, self.algorithm.as_bytes());
        e.bytes(6, self.padding_mode.as_bytes());
        e.bytes(7, self.key_version_id.as_bytes());
        e.0
    }
}

/// AdvanceDecryptResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdvanceDecryptResponse {
    /// 1: KeyId.
    pub key_id: String,
    /// 2: Plaintext.
    pub plaintext: SecretBytes,
    /// 3: RequestId.
    pub request_id: String,
    /// 4: Algorithm.
    pub algorithm: String,
    /// 5: PaddingMode.
    pub padding_mode: String,
    /// 6: KeyVersionId.
    pub key_version_id: String,
}

impl AdvanceDecryptResponse {
    /// Protobuf bytes (they hold the plaintext: send, then drop).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::new());
        e.bytes(1, self.key_id.as_bytes());
        e.bytes(2, self.plaintext.expose());
        e.bytes(3, self.request_id.as_bytes());
        e.bytes(4, self.algorithm.as_bytes());
        e.bytes(5, self.padding_mode.as_bytes());
        e.bytes(6, self.key_version_id.as_bytes());
        e.0
    }
}

/// AdvanceGenerateDataKeyResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdvanceGenerateDataKeyResponse {
    /// 1: KeyId.
    pub key_id: String,
    /// 2: Iv.
    pub iv: Vec<u8>,
    /// 3: Plaintext (the data key).
    pub plaintext: SecretBytes,
    /// 4: CiphertextBlob.
    pub ciphertext_blob: Vec<u8>,
    /// 5: RequestId.
    pub request_id: String,
    /// 6: Algorithm.
    pub algorithm: String,
    /// 7: KeyVersionId.
    pub key_version_id: String,
}

impl AdvanceGenerateDataKeyResponse {
    /// Protobuf bytes (they hold the data key: send, then drop).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::new());
        e.bytes(1, self.key_id.as_bytes());
        e.bytes(2, &self.iv);
        e.bytes(3, self.plaintext.expose());
        e.bytes(4, &self.ciphertext_blob);
        e.bytes(5, self.request_id.as_bytes());
        e.bytes(6, self.algorithm.as_bytes());
        e.bytes(7, self.key_version_id.as_bytes());
        e.0
    }
}

/// The protobuf `Error{1 StatusCode, 2 ErrorCode, 3 ErrorMessage,
/// 4 RequestId}`; send it with status [`AlibabaError::status`].
pub fn error_body(request_id: &str, err: &AlibabaError) -> Vec<u8> {
    let mut e = Encoder(Vec::new());
    e.int32(1, i32::from(err.status));
    e.bytes(2, err.code.as_bytes());
    e.bytes(3, err.message.as_bytes());
    e.bytes(4, request_id.as_bytes());
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};

    fn sign_headers(kp: &KeyPair, action: &str, body: &[u8], date: &str) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = vec![
            ("accept".into(), CONTENT_TYPE.into()),
            ("host".into(), "127.0.0.1:1".into()),
            ("date".into(), date.into()),
            ("x-kms-apiversion".into(), API_VERSION.into()),
            ("x-kms-apiname".into(), action.into()),
            ("x-kms-signaturemethod".into(), SIGNATURE_METHOD.into()),
            ("x-kms-acccesskeyid".into(), "KAAP.test".into()),
            ("content-type".into(), CONTENT_TYPE.into()),
            (
                "content-sha256".into(),
                hex::encode_upper(Sha256::digest(body)),
            ),
        ];
        let refs: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &refs,
            body,
        };
        let sts = string_to_sign(&req);
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            sts.as_bytes(),
            &mut sig,
        )
        .unwrap();
        h.push((
            "authorization".into(),
            format!("Bearer {}", B64.encode(sig)),
        ));
        h
    }

    fn key_pair() -> (KeyPair, ClientPublicKey) {
        let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let pk = ClientPublicKey::from_der(kp.public_key().as_ref()).unwrap();
        (kp, pk)
    }

    #[test]
    fn signed_request_verifies_and_any_change_fails() {
        let (kp, pk) = key_pair();
        let body = AdvanceEncryptResponse {
            key_id: "k".into(),
            ..Default::default()
        }
        .encode();
        let date = "Mon, 23 Nov 2026 12:01:26 GMT";
        let now = parse_http_date(date).unwrap();
        let h = sign_headers(&kp, "AdvanceEncrypt", &body, date);
        let refs: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &refs,
            body: &body,
        };
        let look = |id: &str| (id == "KAAP.test").then(|| pk.clone());
        let c = verify(&req, look, now).unwrap();
        assert_eq!(c.action, InstanceAction::AdvanceEncrypt);
        assert_eq!(c.access_key_id, "KAAP.test");
        let code = |r: &RequestParts<'_>, now: i64| verify(r, look, now).unwrap_err().code;
        assert_eq!(code(&req, now + 901), "RequestTimeTooSkewed");
        assert_eq!(
            code(&RequestParts { body: b"x", ..req }, now),
            "InvalidParam"
        );
        let (_, other) = key_pair();
        assert_eq!(
            verify(&req, |_| Some(other.clone()), now).unwrap_err().code,
            "SignatureNotMatch"
        );
        assert_eq!(
            verify(&req, |_| None, now).unwrap_err().code,
            "Unauthorized"
        );
        for (name, value, want) in [
            ("x-kms-apiname", "AdvanceDecrypt", "SignatureNotMatch"),
            ("x-kms-apiname", "GetSecretValue", "InvalidApiName"),
            ("x-kms-apiversion", "dkms-gcs-0.1", "InvalidApiVersion"),
            ("x-kms-signaturemethod", "RSA_PSS_SHA_256", "InvalidParam"),
            ("date", "2026-11-23T12:01:26Z", "InvalidParam"),
            ("authorization", "Basic abc", "IncompleteSignature"),
        ] {
            let changed: Vec<(&str, &str)> = refs
                .iter()
                .map(|(k, v)| if *k == name { (*k, value) } else { (*k, *v) })
                .collect();
            assert_eq!(
                code(
                    &RequestParts {
                        headers: &changed,
                        ..req
                    },
                    now
                ),
                want,
                "{name}"
            );
        }
        // An extra x-kms-* header is part of the signed string.
        let mut extra = refs.clone();
        extra.push(("x-kms-extra", "1"));
        assert_eq!(
            code(
                &RequestParts {
                    headers: &extra,
                    ..req
                },
                now
            ),
            "SignatureNotMatch"
        );
    }

    /// Requests captured from alibabacloud-dkms-gcs 1.0.2 verify against the
    /// client key's public half; their bodies decode as sent.
    #[test]
    fn dkms_gcs_captured_vectors() {
        let text = include_str!("../../../tests/sdk/vectors/alibaba_python_sdks.jsonl");
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["sdk"] != "dkms-gcs" {
                continue;
            }
            let pk =
                ClientPublicKey::parse(v["client_public_key_pem"].as_str().unwrap().as_bytes())
                    .unwrap();
            let id = v["client_key_id"].as_str().unwrap().to_string();
            let headers: Vec<(String, String)> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        h[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let body = B64.decode(v["body_b64"].as_str().unwrap()).unwrap();
            let req = RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: &refs,
                body: &body,
            };
            let now = parse_http_date(&req.header("date").unwrap()).unwrap();
            let look = |asked: &str| (asked == id).then(|| pk.clone());
            let c = verify(&req, look, now).unwrap();
            assert_eq!(c.action.name(), v["action"].as_str().unwrap());
            match parse_request(c.action, &body).unwrap() {
                Request::AdvanceEncrypt(a) => {
                    assert_eq!(a.key.key_id, "k1");
                    assert_eq!(a.plaintext.expose(), b"hello world");
                    assert_eq!(a.aad, b"aad");
                    assert_eq!(a.algorithm, None);
                }
                Request::AdvanceDecrypt(d) => {
                    assert_eq!(d.ciphertext_blob, b"\x00\x01blob");
                    assert_eq!(d.aad, b"aad");
                    assert_eq!(d.key, None);
                }
                Request::AdvanceGenerateDataKey(g) => {
                    assert_eq!(g.key.key_id, "k1");
                    assert_eq!(g.number_of_bytes, 32);
                }
                other => panic!("unexpected {other:?}"),
            }
            let mut tampered = body.clone();
            tampered.push(0);
            let bad = RequestParts {
                body: &tampered,
                ..req
            };
            assert!(verify(&bad, look, now).is_err());
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn protobuf_codec() {
        // Responses decode field by field as the SDK's generated classes do.
        let r = AdvanceGenerateDataKeyResponse {
            key_id: "k".into(),
            iv: vec![1; 12],
            plaintext: SecretBytes::new(vec![2; 32]),
            ciphertext_blob: vec![3; 300],
            request_id: "r".into(),
            algorithm: "AES_GCM".into(),
            key_version_id: "v".into(),
        };
        let b = r.encode();
        let mut d = Decoder { b: &b, at: 0 };
        let mut nums = Vec::new();
        while let Some((num, f)) = d.next().unwrap() {
            let len = match f {
                Field::Bytes(x) => x.len(),
                Field::Varint(_) => 0,
            };
            nums.push((num, len));
        }
        assert_eq!(
            nums,
            [(1, 1), (2, 12), (3, 32), (4, 300), (5, 1), (6, 7), (7, 1)]
        );
        let e = error_body("rid", &AlibabaError::key_not_found());
        assert_eq!(&e[..3], &[0x08, 0x94, 0x03]); // StatusCode = 404
                                                  // Unknown fields (varint, fixed64, fixed32, bytes) are skipped.
        let mut body = vec![0x0a, 2, b'k', b'1', 0x10, 64];
        body.extend_from_slice(&[
            0x78, 1, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x85, 0x01, 0, 0, 0, 0,
        ]);
        body.extend_from_slice(&[0x8a, 0x01, 1, 0]);
        let Request::AdvanceGenerateDataKey(g) =
            parse_request(InstanceAction::AdvanceGenerateDataKey, &body).unwrap()
        else {
            panic!()
        };
        assert_eq!((g.key.key_id.as_str(), g.number_of_bytes), ("k1", 64));
        // Truncated, bad wire type, negative size, bad UTF-8, missing KeyId.
        for bad in [
            &[0x0a, 5, b'k'][..],
            &[0x0b, 1],
            &[0x10, 0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0x0a, 1, 0xff],
            &[0x10, 5],
        ] {
            assert!(
                parse_request(InstanceAction::AdvanceGenerateDataKey, bad).is_err(),
                "{bad:?}"
            );
        }
        let e = parse_request(InstanceAction::AdvanceEncrypt, &[0x0a, 1, b'k']).unwrap_err();
        assert_eq!(e.code, "MissingParameter");
    }

    #[test]
    fn public_keys_in_pem_and_der() {
        let (kp, pk) = key_pair();
        let der = kp.public_key().as_ref().to_vec();
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            B64.encode(&der)
        );
        assert_eq!(ClientPublicKey::parse(pem.as_bytes()).unwrap(), pk);
        assert!(ClientPublicKey::parse(b"not a key").is_err());
        assert!(ClientPublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )
        .is_err());
        assert_eq!(
            format_http_date(parse_http_date("Mon, 23 Nov 2026 12:01:26 GMT").unwrap()).unwrap(),
            "Mon, 23 Nov 2026 12:01:26 GMT"
        );
    }
}
