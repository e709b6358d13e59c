//! Tencent Cloud KMS (API 3.0, version 2019-01-18) on the wire: the response
//! envelope, the error type and codes, the per-action quota table, and typed,
//! validated requests for every action sealgate serves.
//!
//! Pure: parsing takes a `serde_json::Value` (the API 3.0 JSON body, or the
//! value [`params_from_flat`] builds from v1 / legacy `/v2/index.php`
//! parameters) and returns a typed request or a [`TencentError`] carrying the
//! documented code. Rule for codes: a missing required parameter is
//! `MissingParameter`; a bad value with an action-specific code gets that code
//! (`InvalidParameterValue.InvalidKeyId`, `…InvalidAlias`, …); any other bad
//! type, format or range is `InvalidParameter`.
//!
//! Integer and boolean parameters accept a JSON number/bool or its string
//! form, because v1 and legacy parameters arrive as strings.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::kms::context;
use crate::ratelimit::{Quota, QuotaTable};
use crate::secret::SecretBytes;

/// The API version this face speaks.
pub const API_VERSION: &str = "2019-01-18";
/// The service name in TC3 credential scopes.
pub const SERVICE: &str = "kms";
/// The response content type, exactly (the Python SDK ignores an error body
/// whose content type carries `; charset=…`).
pub const CONTENT_TYPE: &str = "application/json";

/// Error codes used by this face (common codes and KMS codes).
pub mod codes {
    #![allow(missing_docs)]
    pub const AUTH_FAILURE: &str = "AuthFailure";
    pub const AUTH_SIGNATURE_FAILURE: &str = "AuthFailure.SignatureFailure";
    pub const AUTH_SIGNATURE_EXPIRE: &str = "AuthFailure.SignatureExpire";
    pub const AUTH_SECRET_ID_NOT_FOUND: &str = "AuthFailure.SecretIdNotFound";
    pub const AUTH_INVALID_AUTHORIZATION: &str = "AuthFailure.InvalidAuthorization";
    pub const AUTH_UNAUTHORIZED_OPERATION: &str = "AuthFailure.UnauthorizedOperation";
    pub const FAILED_OPERATION: &str = "FailedOperation";
    pub const FAILED_OPERATION_DECRYPT_ERROR: &str = "FailedOperation.DecryptError";
    pub const FAILED_OPERATION_ENCRYPTION_ERROR: &str = "FailedOperation.EncryptionError";
    pub const FAILED_OPERATION_SIGN_ERROR: &str = "FailedOperation.SignError";
    pub const FAILED_OPERATION_VERIFY_ERROR: &str = "FailedOperation.VerifyError";
    pub const FAILED_OPERATION_ROTATE_TASK_RUNNING: &str = "FailedOperation.RotateTaskRunning";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const INVALID_ACTION: &str = "InvalidAction";
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    pub const INVALID_PARAMETER_DECRYPT_MATERIAL_ERROR: &str =
        "InvalidParameter.DecryptMaterialError";
    pub const INVALID_PARAMETER_INVALID_PENDING_WINDOW_IN_DAYS: &str =
        "InvalidParameter.InvalidPendingWindowInDays";
    pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";
    pub const ALIAS_ALREADY_EXISTS: &str = "InvalidParameterValue.AliasAlreadyExists";
    pub const DUPLICATED_KEY_ID: &str = "InvalidParameterValue.DuplicatedKeyId";
    pub const INVALID_ALIAS: &str = "InvalidParameterValue.InvalidAlias";
    pub const INVALID_CIPHERTEXT: &str = "InvalidParameterValue.InvalidCiphertext";
    pub const INVALID_KEY_ID: &str = "InvalidParameterValue.InvalidKeyId";
    pub const INVALID_KEY_USAGE: &str = "InvalidParameterValue.InvalidKeyUsage";
    pub const INVALID_PLAINTEXT: &str = "InvalidParameterValue.InvalidPlaintext";
    pub const INVALID_TYPE: &str = "InvalidParameterValue.InvalidType";
    pub const MATERIAL_NOT_MATCH: &str = "InvalidParameterValue.MaterialNotMatch";
    pub const TAG_KEYS_DUPLICATED: &str = "InvalidParameterValue.TagKeysDuplicated";
    pub const TAGS_NOT_EXISTED: &str = "InvalidParameterValue.TagsNotExisted";
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    pub const CMK_LIMIT_EXCEEDED: &str = "LimitExceeded.CmkLimitExceeded";
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    pub const NO_SUCH_VERSION: &str = "NoSuchVersion";
    pub const REQUEST_LIMIT_EXCEEDED: &str = "RequestLimitExceeded";
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFound";
    pub const CMK_ARCHIVED: &str = "ResourceUnavailable.CmkArchived";
    pub const CMK_DISABLED: &str = "ResourceUnavailable.CmkDisabled";
    pub const CMK_NOT_FOUND: &str = "ResourceUnavailable.CmkNotFound";
    pub const CMK_NOT_PENDING_DELETE: &str = "ResourceUnavailable.CmkNotPendingDelete";
    pub const CMK_SHOULD_BE_DISABLED: &str = "ResourceUnavailable.CmkShouldBeDisabled";
    pub const CMK_STATE_NOT_SUPPORT: &str = "ResourceUnavailable.CmkStateNotSupport";
    pub const TOKEN_EXPIRED: &str = "ResourceUnavailable.TokenExpired";
    pub const UNAUTHORIZED_OPERATION: &str = "UnauthorizedOperation";
    pub const UNKNOWN_PARAMETER: &str = "UnknownParameter";
    pub const UNSUPPORTED_OPERATION: &str = "UnsupportedOperation";
    pub const EXTERNAL_CMK_CAN_NOT_ROTATE: &str = "UnsupportedOperation.ExternalCmkCanNotRotate";
    pub const NOT_EXTERNAL_CMK: &str = "UnsupportedOperation.NotExternalCmk";
    pub const NOT_USER_CREATED_CMK: &str = "UnsupportedOperation.NotUserCreatedCmk";
    pub const ROTATE_NOT_SUPPORTED: &str = "UnsupportedOperation.RotateNotSupported";
    pub const SERVICE_TEMPORARY_UNAVAILABLE: &str =
        "UnsupportedOperation.ServiceTemporaryUnavailable";
    pub const UNSUPPORTED_KEY_USAGE_IN_CURRENT_REGION: &str =
        "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion";
}

/// An error as the Tencent face reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct TencentError {
    /// The documented error code, e.g. `ResourceUnavailable.CmkDisabled`.
    pub code: &'static str,
    /// Human-readable detail (never plaintext or key bytes).
    pub message: String,
    /// The legacy API's numeric code when it is not the one
    /// [`super::legacy::legacy_code`] derives from `code` (a replay is `AuthFailure.SignatureFailure` in
    /// API 3.0 but 4500 in the legacy table).
    pub legacy_code: Option<i64>,
}

impl TencentError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            legacy_code: None,
        }
    }

    /// The same error with `code` as its legacy numeric code.
    pub fn with_legacy_code(mut self, code: i64) -> Self {
        self.legacy_code = Some(code);
        self
    }

    /// A signed request sent a second time within its window: refused as a
    /// signature failure in API 3.0 (no replay code is documented there),
    /// 4500 (replay attack) in the legacy table.
    pub fn replayed() -> Self {
        Self::new(
            codes::AUTH_SIGNATURE_FAILURE,
            "This signed request was already used: each is accepted once (a call with the same body in the same second, whatever its action, repeats the signature); send it again in a later second.",
        )
        .with_legacy_code(LEGACY_REPLAY)
    }

    /// `MissingParameter` for `name`.
    pub fn missing(name: &str) -> Self {
        Self::new(
            codes::MISSING_PARAMETER,
            format!("The request is missing a required parameter `{name}`."),
        )
    }

    /// `InvalidParameter` for `name`, saying why.
    pub fn invalid(name: &str, why: &str) -> Self {
        Self::new(
            codes::INVALID_PARAMETER,
            format!("Invalid parameter `{name}`: {why}."),
        )
    }

    /// A specific value code for `name`, saying why.
    pub fn value(code: &'static str, name: &str, why: &str) -> Self {
        Self::new(code, format!("Invalid value of `{name}`: {why}."))
    }

    /// `RequestLimitExceeded`.
    pub fn rate_limited() -> Self {
        Self::new(
            codes::REQUEST_LIMIT_EXCEEDED,
            "The request rate of this action exceeds its quota.",
        )
    }
}

/// The API 3.0 success body: `{"Response": {<fields>, "RequestId"}}`.
/// `fields` should be a JSON object; anything else is ignored.
pub fn success_body(request_id: &str, fields: Value) -> Value {
    let mut m = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("RequestId".into(), Value::String(request_id.into()));
    let mut outer = Map::new();
    outer.insert("Response".into(), Value::Object(m));
    Value::Object(outer)
}

/// The API 3.0 error body:
/// `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`.
pub fn error_body(request_id: &str, err: &TencentError) -> Value {
    serde_json::json!({
        "Response": {
            "Error": { "Code": err.code, "Message": err.message },
            "RequestId": request_id,
        }
    })
}

/// The legacy table's code for a replayed request (Nonce + Timestamp reused).
pub const LEGACY_REPLAY: i64 = 4500;

/// The limiter's table: every action at its documented rate, per second;
/// an action missing from it gets 100/s.
pub fn quota_table() -> QuotaTable {
    default_quotas().into_iter().fold(
        QuotaTable::new(Quota::per_second(100)),
        |t, (action, rate)| t.quota(action, Quota::per_second(rate)),
    )
}

/// Documented request rates per action (requests per second). See
/// docs/kms-tencent.md for which were found on the API pages and which default.
pub fn default_quotas() -> Vec<(&'static str, u32)> {
    vec![
        ("CreateKey", 100),
        ("DescribeKey", 100),
        ("DescribeKeys", 100),
        ("ListKeys", 100),
        ("ListKeyDetail", 100),
        ("EnableKey", 100),
        ("EnableKeys", 100),
        ("DisableKey", 100),
        ("DisableKeys", 100),
        ("ScheduleKeyDeletion", 100),
        ("CancelKeyDeletion", 100),
        ("UpdateAlias", 100),
        ("UpdateKeyDescription", 100),
        ("EnableKeyRotation", 100),
        ("DisableKeyRotation", 100),
        ("GetKeyRotationStatus", 100),
        ("RotateKey", 100),
        ("Encrypt", 300),
        ("Decrypt", 300),
        ("ReEncrypt", 100),
        ("GenerateDataKey", 100),
        ("GenerateRandom", 150),
        ("GetPublicKey", 100),
        ("AsymmetricRsaDecrypt", 200),
        ("AsymmetricSm2Decrypt", 200),
        ("SignByAsymmetricKey", 100),
        ("VerifyByAsymmetricKey", 100),
        ("ListAlgorithms", 100),
        ("GetServiceStatus", 100),
        ("GetParametersForImport", 100),
        ("ImportKeyMaterial", 100),
        ("DeleteImportedKeyMaterial", 100),
    ]
}

macro_rules! actions {
    ($($name:ident),* $(,)?) => {
        /// A KMS action this face serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Action { $($name),* }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$name),*];

            /// The wire name (`X-TC-Action` / `Action`).
            pub fn name(self) -> &'static str {
                match self { $(Action::$name => stringify!($name)),* }
            }

            /// The action with this wire name.
            pub fn from_name(name: &str) -> Option<Action> {
                match name { $(stringify!($name) => Some(Action::$name),)* _ => None }
            }
        }
    };
}

actions!(
    CreateKey,
    DescribeKey,
    DescribeKeys,
    ListKeys,
    ListKeyDetail,
    EnableKey,
    EnableKeys,
    DisableKey,
    DisableKeys,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    UpdateAlias,
    UpdateKeyDescription,
    EnableKeyRotation,
    DisableKeyRotation,
    GetKeyRotationStatus,
    RotateKey,
    Encrypt,
    Decrypt,
    ReEncrypt,
    GenerateDataKey,
    GenerateRandom,
    GetPublicKey,
    AsymmetricRsaDecrypt,
    AsymmetricSm2Decrypt,
    SignByAsymmetricKey,
    VerifyByAsymmetricKey,
    ListAlgorithms,
    GetServiceStatus,
    GetParametersForImport,
    ImportKeyMaterial,
    DeleteImportedKeyMaterial,
);

/// The action named `name`, or `InvalidAction`.
pub fn parse_action(name: &str) -> Result<Action, TencentError> {
    Action::from_name(name).ok_or_else(|| {
        TencentError::new(
            codes::INVALID_ACTION,
            "The requested action does not exist.",
        )
    })
}

/// `Ok` for version 2019-01-18, `NoSuchVersion` otherwise.
pub fn check_version(version: &str) -> Result<(), TencentError> {
    if version == API_VERSION {
        Ok(())
    } else {
        Err(TencentError::new(
            codes::NO_SUCH_VERSION,
            "The API version does not exist; this service speaks 2019-01-18.",
        ))
    }
}

// ------------------------------------------------------------ value types

str_enum!(
    /// What a CMK is for (CreateKey `KeyUsage`).
    KeyUsage {
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        AsymmetricDecryptRsa2048 = "ASYMMETRIC_DECRYPT_RSA_2048",
        AsymmetricDecryptSm2 = "ASYMMETRIC_DECRYPT_SM2",
        AsymmetricSignVerifySm2 = "ASYMMETRIC_SIGN_VERIFY_SM2",
        AsymmetricSignVerifyEcc = "ASYMMETRIC_SIGN_VERIFY_ECC",
        AsymmetricSignVerifyRsa2048 = "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
        AsymmetricSignVerifyEcdsa384 = "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
    }
);

str_enum!(
    /// A CMK's state as reported in `KeyState`.
    KeyState {
        Enabled = "Enabled",
        Disabled = "Disabled",
        PendingDelete = "PendingDelete",
        PendingImport = "PendingImport",
        Archived = "Archived",
    }
);

str_enum!(
    /// RSA padding for AsymmetricRsaDecrypt, import wrapping, and the
    /// optional re-encryption of returned plaintexts.
    RsaAlgorithm {
        Pkcs1V15 = "RSAES_PKCS1_V1_5",
        OaepSha1 = "RSAES_OAEP_SHA_1",
        OaepSha256 = "RSAES_OAEP_SHA_256",
    }
);

str_enum!(
    /// Algorithm for `EncryptionPublicKey` (Decrypt / GenerateDataKey).
    EnvelopeAlgorithm {
        Sm2 = "SM2",
        Sm2C1C3C2Asn1 = "SM2_C1C3C2_ASN1",
        RsaPkcs1V15 = "RSAES_PKCS1_V1_5",
        RsaOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaOaepSha256 = "RSAES_OAEP_SHA_256",
    }
);

str_enum!(
    /// Whether a signing `Message` is the raw message or its digest.
    MessageType {
        Raw = "RAW",
        Digest = "DIGEST",
    }
);

str_enum!(
    /// ListKeyDetail `Origin` filter.
    OriginFilter {
        TencentKms = "TENCENT_KMS",
        External = "EXTERNAL",
        All = "ALL",
    }
);

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Tag key.
    pub tag_key: String,
    /// Tag value.
    pub tag_value: String,
}

/// A ListKeyDetail tag filter: key and any of the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// Tag key.
    pub tag_key: String,
    /// Accepted values (empty: any).
    pub tag_value: Vec<String>,
}

pub use crate::kms::context::EncryptionContext;

/// Documented maximum `EncryptionContext` length, in characters.
pub const MAX_ENCRYPTION_CONTEXT_CHARS: usize = 1024;
/// Documented maximum Encrypt plaintext, in bytes (after Base64 decoding).
pub const MAX_PLAINTEXT_BYTES: usize = 4096;
/// Documented maximum description length (CreateKey / UpdateKeyDescription), bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Maximum KeyIds in one batch call.
pub const MAX_BATCH_KEY_IDS: usize = 100;
/// Upper bound on a KeyId's length (ours are UUIDs; generous for others).
pub const MAX_KEY_ID_LEN: usize = 128;
/// Largest ImportKeyMaterial `ValidTo` the API accepts.
pub const MAX_VALID_TO: i64 = 2_147_443_200;

// ---------------------------------------------------------------- requests

/// CreateKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// 1–60 of `[A-Za-z0-9_-]`, starting with a letter or digit, not `kms-…`.
    pub alias: String,
    /// Up to 1,024 bytes.
    pub description: Option<String>,
    /// Default ENCRYPT_DECRYPT.
    pub key_usage: KeyUsage,
    /// `Type` 2: EXTERNAL (material imported later); 1 (default): KMS-made.
    pub external: bool,
    /// Tags (keys unique).
    pub tags: Vec<Tag>,
    /// HSM cluster (accepted and ignored by sealgate).
    pub hsm_cluster_id: Option<String>,
}

/// A request naming one CMK (DescribeKey, EnableKey, DisableKey,
/// CancelKeyDeletion, DisableKeyRotation, GetKeyRotationStatus, RotateKey,
/// GetPublicKey, DeleteImportedKeyMaterial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// The CMK.
    pub key_id: String,
}

/// A request naming 1–100 distinct CMKs (DescribeKeys, EnableKeys, DisableKeys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIds {
    /// The CMKs, in request order.
    pub key_ids: Vec<String>,
}

/// ListKeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeys {
    /// Default 0.
    pub offset: u32,
    /// 1–200, default 10.
    pub limit: u32,
    /// 0 (default): user-created; 1: created by cloud products.
    pub role: u32,
}

/// ListKeyDetail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeyDetail {
    /// Default 0.
    pub offset: u32,
    /// 1–200, default 10.
    pub limit: u32,
    /// 0 (default) or 1.
    pub role: u32,
    /// Creation time order: false (0, default) descending, true (1) ascending.
    pub ascending: bool,
    /// `None`: all states (0); else 1 Enabled … 5 Archived.
    pub key_state: Option<KeyState>,
    /// Fuzzy match on KeyId or Alias.
    pub search_key_alias: Option<String>,
    /// Origin filter (default all).
    pub origin: OriginFilter,
    /// `None`: ALL; default when absent or empty: ENCRYPT_DECRYPT.
    pub key_usage: Option<KeyUsage>,
    /// Tag filters.
    pub tag_filters: Vec<TagFilter>,
}

/// ScheduleKeyDeletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleKeyDeletion {
    /// The CMK.
    pub key_id: String,
    /// 7–30.
    pub pending_window_in_days: u32,
}

/// UpdateAlias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateAlias {
    /// The CMK.
    pub key_id: String,
    /// New alias (CreateKey rules).
    pub alias: String,
}

/// UpdateKeyDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateKeyDescription {
    /// The CMK.
    pub key_id: String,
    /// Up to 1,024 bytes.
    pub description: String,
}

/// EnableKeyRotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnableKeyRotation {
    /// The CMK.
    pub key_id: String,
    /// 7–365, default 365.
    pub rotate_days: u32,
}

/// Encrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypt {
    /// The CMK.
    pub key_id: String,
    /// Decoded plaintext, at most 4 KiB.
    pub plaintext: SecretBytes,
    /// Optional context.
    pub encryption_context: Option<EncryptionContext>,
}

/// Optional re-encryption of a returned plaintext under a caller's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnWrapping {
    /// PEM public key (RSA-2048 or SM2).
    pub public_key_pem: String,
    /// Default SM2.
    pub algorithm: EnvelopeAlgorithm,
}

/// Decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypt {
    /// The ciphertext as returned by Encrypt / GenerateDataKey.
    pub ciphertext_blob: String,
    /// Must equal the one given at encryption.
    pub encryption_context: Option<EncryptionContext>,
    /// Return the plaintext encrypted under this public key.
    pub return_wrapping: Option<ReturnWrapping>,
}

/// ReEncrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEncrypt {
    /// The ciphertext to re-encrypt.
    pub ciphertext_blob: String,
    /// Target CMK; `None`: the blob's own CMK (its current version).
    pub destination_key_id: Option<String>,
    /// Context of the source ciphertext.
    pub source_encryption_context: Option<EncryptionContext>,
    /// Context for the new ciphertext.
    pub destination_encryption_context: Option<EncryptionContext>,
}

/// GenerateDataKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateDataKey {
    /// The CMK.
    pub key_id: String,
    /// 1–1024; from NumberOfBytes, else KeySpec (AES_128 → 16, AES_256 → 32).
    pub number_of_bytes: u32,
    /// Optional context.
    pub encryption_context: Option<EncryptionContext>,
    /// Return the plaintext encrypted under this public key.
    pub return_wrapping: Option<ReturnWrapping>,
    /// `IsHostedByKms` = 1 (KMS keeps the data key; sealgate does not offer it).
    pub hosted_by_kms: bool,
    /// Name of a hosted data key.
    pub data_key_name: Option<String>,
    /// Description of a hosted data key (≤ 100 bytes).
    pub description: Option<String>,
}

/// GenerateRandom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateRandom {
    /// 1–1024.
    pub number_of_bytes: u32,
}

/// AsymmetricRsaDecrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricRsaDecrypt {
    /// The CMK.
    pub key_id: String,
    /// Decoded ciphertext.
    pub ciphertext: Vec<u8>,
    /// Padding used by the encrypter.
    pub algorithm: RsaAlgorithm,
}

/// AsymmetricSm2Decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricSm2Decrypt {
    /// The CMK.
    pub key_id: String,
    /// Decoded C1C3C2 ASN.1 ciphertext, at most 256 bytes.
    pub ciphertext: Vec<u8>,
}

/// SignByAsymmetricKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignByAsymmetricKey {
    /// The CMK.
    pub key_id: String,
    /// e.g. SM2DSA, ECC_P256_R1, RSA_PSS_SHA_256, RSA_PKCS1_SHA_256.
    pub algorithm: String,
    /// Decoded message (RAW: ≤ 4096 bytes) or digest (DIGEST: 32 bytes).
    pub message: Vec<u8>,
    /// Default RAW.
    pub message_type: MessageType,
}

/// VerifyByAsymmetricKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyByAsymmetricKey {
    /// The CMK.
    pub key_id: String,
    /// Decoded signature.
    pub signature_value: Vec<u8>,
    /// As in [`SignByAsymmetricKey`].
    pub algorithm: String,
    /// Decoded message or digest.
    pub message: Vec<u8>,
    /// Default RAW.
    pub message_type: MessageType,
}

/// GetParametersForImport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetParametersForImport {
    /// The EXTERNAL CMK.
    pub key_id: String,
    /// How the material will be wrapped.
    pub wrapping_algorithm: RsaAlgorithm,
    /// Always RSA_2048.
    pub wrapping_key_spec: &'static str,
}

/// ImportKeyMaterial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportKeyMaterial {
    /// The EXTERNAL CMK.
    pub key_id: String,
    /// Decoded wrapped material.
    pub encrypted_key_material: Vec<u8>,
    /// Token from GetParametersForImport.
    pub import_token: String,
    /// Expiry (unix seconds); 0: never. Must also be in the future — the
    /// caller checks that against its clock.
    pub valid_to: i64,
}

/// A parsed, validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request {
    CreateKey(CreateKey),
    DescribeKey(KeyRef),
    DescribeKeys(KeyIds),
    ListKeys(ListKeys),
    ListKeyDetail(ListKeyDetail),
    EnableKey(KeyRef),
    EnableKeys(KeyIds),
    DisableKey(KeyRef),
    DisableKeys(KeyIds),
    ScheduleKeyDeletion(ScheduleKeyDeletion),
    CancelKeyDeletion(KeyRef),
    UpdateAlias(UpdateAlias),
    UpdateKeyDescription(UpdateKeyDescription),
    EnableKeyRotation(EnableKeyRotation),
    DisableKeyRotation(KeyRef),
    GetKeyRotationStatus(KeyRef),
    RotateKey(KeyRef),
    Encrypt(Encrypt),
    Decrypt(Decrypt),
    ReEncrypt(ReEncrypt),
    GenerateDataKey(GenerateDataKey),
    GenerateRandom(GenerateRandom),
    GetPublicKey(KeyRef),
    AsymmetricRsaDecrypt(AsymmetricRsaDecrypt),
    AsymmetricSm2Decrypt(AsymmetricSm2Decrypt),
    SignByAsymmetricKey(SignByAsymmetricKey),
    VerifyByAsymmetricKey(VerifyByAsymmetricKey),
    ListAlgorithms,
    GetServiceStatus,
    GetParametersForImport(GetParametersForImport),
    ImportKeyMaterial(ImportKeyMaterial),
    DeleteImportedKeyMaterial(KeyRef),
}

// ----------------------------------------------------------- field access

struct Params<'a>(&'a Map<String, Value>);

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        present(self.0.get(name))
    }

    fn str_opt(&self, name: &str) -> Result<Option<&'a str>, TencentError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(TencentError::invalid(name, "must be a string")),
        }
    }

    /// Optional string, with "" treated as absent.
    fn str_nonempty(&self, name: &str) -> Result<Option<&'a str>, TencentError> {
        Ok(self.str_opt(name)?.filter(|s| !s.is_empty()))
    }

    fn str_req(&self, name: &str) -> Result<&'a str, TencentError> {
        self.str_opt(name)?
            .ok_or_else(|| TencentError::missing(name))
    }

    fn int_opt(&self, name: &str) -> Result<Option<i64>, TencentError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| TencentError::invalid(name, "must be an integer")),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| TencentError::invalid(name, "must be an integer")),
            Some(_) => Err(TencentError::invalid(name, "must be an integer")),
        }
    }

    fn u32_in(
        &self,
        name: &str,
        lo: u32,
        hi: u32,
        default: Option<u32>,
        code: &'static str,
    ) -> Result<u32, TencentError> {
        match self.int_opt(name)? {
            None => default.ok_or_else(|| TencentError::missing(name)),
            Some(n) if n >= i64::from(lo) && n <= i64::from(hi) => {
                u32::try_from(n).map_err(|_| TencentError::invalid(name, "out of range"))
            }
            Some(_) => Err(TencentError::value(
                code,
                name,
                &format!("must be between {lo} and {hi}"),
            )),
        }
    }

    fn list(&self, name: &str) -> Result<Option<&'a Vec<Value>>, TencentError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(TencentError::invalid(name, "must be an array")),
        }
    }

    fn key_id(&self, name: &str) -> Result<String, TencentError> {
        let s = self.str_req(name)?;
        check_key_id(name, s)?;
        Ok(s.to_string())
    }

    fn key_id_opt(&self, name: &str) -> Result<Option<String>, TencentError> {
        match self.str_nonempty(name)? {
            None => Ok(None),
            Some(s) => {
                check_key_id(name, s)?;
                Ok(Some(s.to_string()))
            }
        }
    }

    fn b64_req(&self, name: &str, code: &'static str) -> Result<Vec<u8>, TencentError> {
        let s = self.str_req(name)?;
        if s.is_empty() {
            return Err(TencentError::missing(name));
        }
        B64.decode(s.trim())
            .map_err(|_| TencentError::value(code, name, "must be Base64"))
    }

    fn context(&self, name: &str) -> Result<Option<EncryptionContext>, TencentError> {
        self.str_nonempty(name)?
            .map(|s| parse_encryption_context(name, s))
            .transpose()
    }

    fn return_wrapping(&self) -> Result<Option<ReturnWrapping>, TencentError> {
        let Some(pem) = self.str_nonempty("EncryptionPublicKey")? else {
            return Ok(None);
        };
        let algorithm = match self.str_nonempty("EncryptionAlgorithm")? {
            None => EnvelopeAlgorithm::Sm2,
            Some(a) => EnvelopeAlgorithm::parse(a).ok_or_else(|| {
                TencentError::invalid("EncryptionAlgorithm", "unsupported algorithm")
            })?,
        };
        Ok(Some(ReturnWrapping {
            public_key_pem: pem.to_string(),
            algorithm,
        }))
    }

    fn key_ids(&self) -> Result<KeyIds, TencentError> {
        let list = self
            .list("KeyIds")?
            .ok_or_else(|| TencentError::missing("KeyIds"))?;
        if list.is_empty() {
            return Err(TencentError::missing("KeyIds"));
        }
        if list.len() > MAX_BATCH_KEY_IDS {
            return Err(TencentError::invalid("KeyIds", "at most 100 KeyIds"));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for v in list {
            let s = v
                .as_str()
                .ok_or_else(|| TencentError::invalid("KeyIds", "must be strings"))?;
            check_key_id("KeyIds", s)?;
            if out.iter().any(|o| o == s) {
                return Err(TencentError::value(
                    codes::DUPLICATED_KEY_ID,
                    "KeyIds",
                    "a KeyId is listed twice",
                ));
            }
            out.push(s.to_string());
        }
        Ok(KeyIds { key_ids: out })
    }

    fn tags(&self) -> Result<Vec<Tag>, TencentError> {
        let Some(list) = self.list("Tags")? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Tag> = Vec::new();
        for t in list {
            let obj = t
                .as_object()
                .ok_or_else(|| TencentError::invalid("Tags", "each tag is an object"))?;
            let p = Params(obj);
            let tag_key = p.str_req("TagKey")?.to_string();
            let tag_value = p.str_opt("TagValue")?.unwrap_or("").to_string();
            if out.iter().any(|o| o.tag_key == tag_key) {
                return Err(TencentError::value(
                    codes::TAG_KEYS_DUPLICATED,
                    "Tags",
                    "a tag key is listed twice",
                ));
            }
            out.push(Tag { tag_key, tag_value });
        }
        Ok(out)
    }
}

fn check_key_id(name: &str, s: &str) -> Result<(), TencentError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_KEY_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/');
    if ok {
        Ok(())
    } else {
        Err(TencentError::value(
            codes::INVALID_KEY_ID,
            name,
            "not a valid KeyId",
        ))
    }
}

/// Checks an alias: 1–60 of `[A-Za-z0-9_-]`, first a letter or digit, and
/// not the `kms-` prefix reserved for cloud products.
pub fn check_alias(name: &str, s: &str) -> Result<(), TencentError> {
    let b = s.as_bytes();
    let ok = (1..=60).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && !s.starts_with("kms-");
    if ok {
        Ok(())
    } else {
        Err(TencentError::value(
            codes::INVALID_ALIAS,
            name,
            "1-60 letters, digits, - and _, starting with a letter or digit; the kms- prefix is reserved",
        ))
    }
}

/// Parses an `EncryptionContext` JSON string (at most 1,024 characters, a
/// JSON object).
pub fn parse_encryption_context(name: &str, s: &str) -> Result<EncryptionContext, TencentError> {
    let rules = context::ContextRules {
        max_chars: MAX_ENCRYPTION_CONTEXT_CHARS,
        strings_only: false,
    };
    context::parse(s, rules).map_err(|e| match e {
        context::ContextError::TooLong => TencentError::invalid(name, "at most 1024 characters"),
        _ => TencentError::invalid(name, "must be a JSON object string"),
    })
}

fn description(p: &Params<'_>, max: usize) -> Result<Option<String>, TencentError> {
    match p.str_opt("Description")? {
        None => Ok(None),
        Some(d) if d.len() > max => Err(TencentError::invalid(
            "Description",
            &format!("at most {max} bytes"),
        )),
        Some(d) => Ok(Some(d.to_string())),
    }
}

fn message_type(p: &Params<'_>) -> Result<MessageType, TencentError> {
    match p.str_nonempty("MessageType")? {
        None => Ok(MessageType::Raw),
        Some(s) => MessageType::parse(s)
            .ok_or_else(|| TencentError::invalid("MessageType", "RAW or DIGEST")),
    }
}

fn sign_message(p: &Params<'_>, mt: MessageType) -> Result<Vec<u8>, TencentError> {
    let m = p.b64_req("Message", codes::INVALID_PARAMETER)?;
    match mt {
        MessageType::Raw if m.len() > 4096 => {
            Err(TencentError::invalid("Message", "at most 4096 bytes"))
        }
        // 32 bytes (SHA-256) as documented; 48 (SHA-384) for ECDSA P-384 keys
        MessageType::Digest if m.len() != 32 && m.len() != 48 => Err(TencentError::invalid(
            "Message",
            "a digest is 32 bytes (48 for ECC_P384_R1)",
        )),
        _ => Ok(m),
    }
}

fn rsa_algorithm(p: &Params<'_>, name: &str) -> Result<RsaAlgorithm, TencentError> {
    let s = p.str_req(name)?;
    RsaAlgorithm::parse(s).ok_or_else(|| {
        TencentError::invalid(
            name,
            "RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
        )
    })
}

fn key_ref(p: &Params<'_>) -> Result<KeyRef, TencentError> {
    Ok(KeyRef {
        key_id: p.key_id("KeyId")?,
    })
}

fn paging(p: &Params<'_>) -> Result<(u32, u32, u32), TencentError> {
    let offset = p.u32_in("Offset", 0, u32::MAX, Some(0), codes::INVALID_PARAMETER)?;
    let limit = p.u32_in("Limit", 1, 200, Some(10), codes::INVALID_PARAMETER)?;
    let role = p.u32_in("Role", 0, 1, Some(0), codes::INVALID_PARAMETER)?;
    Ok((offset, limit, role))
}

/// Parses and validates the parameters of `action`. `params` is the JSON
/// object of the request body (or built by [`params_from_flat`]); unknown
/// fields are ignored, as the SDKs may send newer optional ones.
pub fn parse_request(action: Action, params: &Value) -> Result<Request, TencentError> {
    let empty = Map::new();
    let obj = match params {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => {
            return Err(TencentError::invalid(
                "body",
                "the request body must be a JSON object",
            ))
        }
    };
    let p = Params(obj);
    Ok(match action {
        Action::CreateKey => {
            let alias = p.str_req("Alias")?;
            check_alias("Alias", alias)?;
            let key_usage = match p.str_nonempty("KeyUsage")? {
                None => KeyUsage::EncryptDecrypt,
                Some(u) => KeyUsage::parse(u).ok_or_else(|| {
                    TencentError::value(codes::INVALID_KEY_USAGE, "KeyUsage", "unknown key usage")
                })?,
            };
            let external = match p.int_opt("Type")? {
                None | Some(1) => false,
                Some(2) => true,
                Some(_) => return Err(TencentError::value(codes::INVALID_TYPE, "Type", "1 or 2")),
            };
            Request::CreateKey(CreateKey {
                alias: alias.to_string(),
                description: description(&p, MAX_DESCRIPTION_BYTES)?,
                key_usage,
                external,
                tags: p.tags()?,
                hsm_cluster_id: p.str_nonempty("HsmClusterId")?.map(str::to_string),
            })
        }
        Action::DescribeKey => Request::DescribeKey(key_ref(&p)?),
        Action::DescribeKeys => Request::DescribeKeys(p.key_ids()?),
        Action::ListKeys => {
            let (offset, limit, role) = paging(&p)?;
            Request::ListKeys(ListKeys {
                offset,
                limit,
                role,
            })
        }
        Action::ListKeyDetail => {
            let (offset, limit, role) = paging(&p)?;
            let ascending = p.u32_in("OrderType", 0, 1, Some(0), codes::INVALID_PARAMETER)? == 1;
            let key_state = match p.u32_in("KeyState", 0, 5, Some(0), codes::INVALID_PARAMETER)? {
                1 => Some(KeyState::Enabled),
                2 => Some(KeyState::Disabled),
                3 => Some(KeyState::PendingDelete),
                4 => Some(KeyState::PendingImport),
                5 => Some(KeyState::Archived),
                _ => None,
            };
            let origin = match p.str_nonempty("Origin")? {
                None => OriginFilter::All,
                Some(o) => OriginFilter::parse(o).ok_or_else(|| {
                    TencentError::invalid("Origin", "TENCENT_KMS, EXTERNAL or ALL")
                })?,
            };
            let key_usage = match p.str_nonempty("KeyUsage")? {
                None => Some(KeyUsage::EncryptDecrypt),
                Some("ALL") => None,
                Some(u) => Some(
                    KeyUsage::parse(u)
                        .ok_or_else(|| TencentError::invalid("KeyUsage", "ALL or a key usage"))?,
                ),
            };
            let mut tag_filters = Vec::new();
            for f in p.list("TagFilters")?.into_iter().flatten() {
                let obj = f
                    .as_object()
                    .ok_or_else(|| TencentError::invalid("TagFilters", "objects"))?;
                let fp = Params(obj);
                let tag_key = fp.str_req("TagKey")?.to_string();
                let mut tag_value = Vec::new();
                for v in fp.list("TagValue")?.into_iter().flatten() {
                    tag_value.push(
                        v.as_str()
                            .ok_or_else(|| TencentError::invalid("TagValue", "strings"))?
                            .to_string(),
                    );
                }
                tag_filters.push(TagFilter { tag_key, tag_value });
            }
            Request::ListKeyDetail(ListKeyDetail {
                offset,
                limit,
                role,
                ascending,
                key_state,
                search_key_alias: p.str_nonempty("SearchKeyAlias")?.map(str::to_string),
                origin,
                key_usage,
                tag_filters,
            })
        }
        Action::EnableKey => Request::EnableKey(key_ref(&p)?),
        Action::EnableKeys => Request::EnableKeys(p.key_ids()?),
        Action::DisableKey => Request::DisableKey(key_ref(&p)?),
        Action::DisableKeys => Request::DisableKeys(p.key_ids()?),
        Action::ScheduleKeyDeletion => Request::ScheduleKeyDeletion(ScheduleKeyDeletion {
            key_id: p.key_id("KeyId")?,
            pending_window_in_days: p.u32_in(
                "PendingWindowInDays",
                7,
                30,
                None,
                codes::INVALID_PARAMETER_INVALID_PENDING_WINDOW_IN_DAYS,
            )?,
        }),
        Action::CancelKeyDeletion => Request::CancelKeyDeletion(key_ref(&p)?),
        Action::UpdateAlias => {
            let key_id = p.key_id("KeyId")?;
            let alias = p.str_req("Alias")?;
            check_alias("Alias", alias)?;
            Request::UpdateAlias(UpdateAlias {
                key_id,
                alias: alias.to_string(),
            })
        }
        Action::UpdateKeyDescription => {
            let key_id = p.key_id("KeyId")?;
            let description = description(&p, MAX_DESCRIPTION_BYTES)?
                .ok_or_else(|| TencentError::missing("Description"))?;
            Request::UpdateKeyDescription(UpdateKeyDescription {
                key_id,
                description,
            })
        }
        Action::EnableKeyRotation => Request::EnableKeyRotation(EnableKeyRotation {
            key_id: p.key_id("KeyId")?,
            rotate_days: p.u32_in("RotateDays", 7, 365, Some(365), codes::INVALID_PARAMETER)?,
        }),
        Action::DisableKeyRotation => Request::DisableKeyRotation(key_ref(&p)?),
        Action::GetKeyRotationStatus => Request::GetKeyRotationStatus(key_ref(&p)?),
        Action::RotateKey => Request::RotateKey(key_ref(&p)?),
        Action::Encrypt => {
            let key_id = p.key_id("KeyId")?;
            let raw = p.b64_req("Plaintext", codes::INVALID_PLAINTEXT)?;
            let plaintext = SecretBytes::new(raw);
            if plaintext.len() > MAX_PLAINTEXT_BYTES {
                return Err(TencentError::value(
                    codes::INVALID_PLAINTEXT,
                    "Plaintext",
                    "at most 4 KB after Base64 decoding",
                ));
            }
            Request::Encrypt(Encrypt {
                key_id,
                plaintext,
                encryption_context: p.context("EncryptionContext")?,
            })
        }
        Action::Decrypt => {
            let blob = p.str_req("CiphertextBlob")?;
            if blob.is_empty() {
                return Err(TencentError::missing("CiphertextBlob"));
            }
            Request::Decrypt(Decrypt {
                ciphertext_blob: blob.to_string(),
                encryption_context: p.context("EncryptionContext")?,
                return_wrapping: p.return_wrapping()?,
            })
        }
        Action::ReEncrypt => {
            let blob = p.str_req("CiphertextBlob")?;
            if blob.is_empty() {
                return Err(TencentError::missing("CiphertextBlob"));
            }
            Request::ReEncrypt(ReEncrypt {
                ciphertext_blob: blob.to_string(),
                destination_key_id: p.key_id_opt("DestinationKeyId")?,
                source_encryption_context: p.context("SourceEncryptionContext")?,
                destination_encryption_context: p.context("DestinationEncryptionContext")?,
            })
        }
        Action::GenerateDataKey => {
            let key_id = p.key_id("KeyId")?;
            let number_of_bytes = match p.int_opt("NumberOfBytes")? {
                Some(_) => p.u32_in("NumberOfBytes", 1, 1024, None, codes::INVALID_PARAMETER)?,
                None => match p.str_nonempty("KeySpec")? {
                    Some("AES_128") => 16,
                    Some("AES_256") => 32,
                    Some(_) => return Err(TencentError::invalid("KeySpec", "AES_128 or AES_256")),
                    None => return Err(TencentError::missing("KeySpec or NumberOfBytes")),
                },
            };
            let hosted_by_kms =
                p.u32_in("IsHostedByKms", 0, 1, Some(0), codes::INVALID_PARAMETER)? == 1;
            let data_key_name = p.str_nonempty("DataKeyName")?.map(str::to_string);
            if hosted_by_kms && data_key_name.is_none() {
                return Err(TencentError::missing("DataKeyName"));
            }
            Request::GenerateDataKey(GenerateDataKey {
                key_id,
                number_of_bytes,
                encryption_context: p.context("EncryptionContext")?,
                return_wrapping: p.return_wrapping()?,
                hosted_by_kms,
                data_key_name,
                description: description(&p, 100)?,
            })
        }
        Action::GenerateRandom => Request::GenerateRandom(GenerateRandom {
            number_of_bytes: p.u32_in("NumberOfBytes", 1, 1024, None, codes::INVALID_PARAMETER)?,
        }),
        Action::GetPublicKey => Request::GetPublicKey(key_ref(&p)?),
        Action::AsymmetricRsaDecrypt => Request::AsymmetricRsaDecrypt(AsymmetricRsaDecrypt {
            key_id: p.key_id("KeyId")?,
            ciphertext: p.b64_req("Ciphertext", codes::INVALID_PARAMETER)?,
            algorithm: rsa_algorithm(&p, "Algorithm")?,
        }),
        Action::AsymmetricSm2Decrypt => {
            let key_id = p.key_id("KeyId")?;
            let ciphertext = p.b64_req("Ciphertext", codes::INVALID_PARAMETER)?;
            if ciphertext.len() > 256 {
                return Err(TencentError::invalid("Ciphertext", "at most 256 bytes"));
            }
            Request::AsymmetricSm2Decrypt(AsymmetricSm2Decrypt { key_id, ciphertext })
        }
        Action::SignByAsymmetricKey => {
            let key_id = p.key_id("KeyId")?;
            let algorithm = p.str_req("Algorithm")?.to_string();
            let message_type = message_type(&p)?;
            let message = sign_message(&p, message_type)?;
            Request::SignByAsymmetricKey(SignByAsymmetricKey {
                key_id,
                algorithm,
                message,
                message_type,
            })
        }
        Action::VerifyByAsymmetricKey => {
            let key_id = p.key_id("KeyId")?;
            let signature_value = p.b64_req("SignatureValue", codes::INVALID_PARAMETER)?;
            let algorithm = p.str_req("Algorithm")?.to_string();
            let message_type = message_type(&p)?;
            let message = sign_message(&p, message_type)?;
            Request::VerifyByAsymmetricKey(VerifyByAsymmetricKey {
                key_id,
                signature_value,
                algorithm,
                message,
                message_type,
            })
        }
        Action::ListAlgorithms => Request::ListAlgorithms,
        Action::GetServiceStatus => Request::GetServiceStatus,
        Action::GetParametersForImport => {
            let key_id = p.key_id("KeyId")?;
            let wrapping_algorithm = rsa_algorithm(&p, "WrappingAlgorithm")?;
            if p.str_req("WrappingKeySpec")? != "RSA_2048" {
                return Err(TencentError::invalid("WrappingKeySpec", "only RSA_2048"));
            }
            Request::GetParametersForImport(GetParametersForImport {
                key_id,
                wrapping_algorithm,
                wrapping_key_spec: "RSA_2048",
            })
        }
        Action::ImportKeyMaterial => {
            let key_id = p.key_id("KeyId")?;
            let encrypted_key_material =
                p.b64_req("EncryptedKeyMaterial", codes::INVALID_PARAMETER)?;
            let import_token = p.str_req("ImportToken")?;
            if import_token.is_empty() {
                return Err(TencentError::missing("ImportToken"));
            }
            let valid_to = p.int_opt("ValidTo")?.unwrap_or(0);
            if !(0..=MAX_VALID_TO).contains(&valid_to) {
                return Err(TencentError::invalid(
                    "ValidTo",
                    "0 or a unix time up to 2147443200",
                ));
            }
            Request::ImportKeyMaterial(ImportKeyMaterial {
                key_id,
                encrypted_key_material,
                import_token: import_token.to_string(),
                valid_to,
            })
        }
        Action::DeleteImportedKeyMaterial => Request::DeleteImportedKeyMaterial(key_ref(&p)?),
    })
}

// ------------------------------------------------------- flat parameters

/// How flat (v1 / legacy) parameter names are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamStyle {
    /// API 3.0 names (`KeyId`, `KeyIds.0`, `Tags.0.TagKey`).
    Api3,
    /// Legacy `/v2/index.php` lower-camel names (`keyId`, `numberOfBytes`),
    /// mapped to their API 3.0 spelling.
    Legacy,
}

/// Signing and routing parameters, not action parameters.
pub const COMMON_PARAMS: &[&str] = &[
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    "Signature",
    "SignatureMethod",
    "Token",
    "Language",
    "RequestClient",
];

enum Node {
    Leaf(String),
    Tree(BTreeMap<String, Node>),
}

fn upper_camel(seg: &str) -> String {
    let mut c = seg.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn node_to_value(n: Node) -> Value {
    match n {
        Node::Leaf(s) => Value::String(s),
        Node::Tree(m) => {
            let numeric = !m.is_empty() && m.keys().all(|k| k.bytes().all(|b| b.is_ascii_digit()));
            if numeric {
                let mut items: Vec<(u64, Node)> = m
                    .into_iter()
                    .map(|(k, v)| (k.parse::<u64>().unwrap_or(u64::MAX), v))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| node_to_value(v)).collect())
            } else {
                Value::Object(m.into_iter().map(|(k, v)| (k, node_to_value(v))).collect())
            }
        }
    }
}

/// Builds the JSON parameter object from flat `name=value` pairs: common
/// parameters are dropped, `X.N` becomes an array element and `X.N.Field` a
/// field of one (`KeyIds.0`, `Tags.0.TagKey`); every leaf is a string.
/// Legacy names are first mapped to API 3.0 spelling (`keyId` → `KeyId`).
pub fn params_from_flat(
    pairs: &[(String, String)],
    style: ParamStyle,
) -> Result<Value, TencentError> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (name, value) in pairs {
        let segs: Vec<String> = name
            .split('.')
            .map(|s| match style {
                ParamStyle::Api3 => s.to_string(),
                ParamStyle::Legacy => upper_camel(s),
            })
            .collect();
        if segs.len() == 1 && COMMON_PARAMS.contains(&segs[0].as_str()) {
            continue;
        }
        if segs.iter().any(String::is_empty) {
            return Err(TencentError::invalid(name, "malformed parameter name"));
        }
        let mut cur = &mut root;
        let last = segs.len() - 1;
        for (i, seg) in segs.into_iter().enumerate() {
            if i == last {
                if cur.contains_key(&seg) {
                    return Err(TencentError::invalid(name, "given twice"));
                }
                cur.insert(seg, Node::Leaf(value.clone()));
                break;
            }
            let entry = cur
                .entry(seg)
                .or_insert_with(|| Node::Tree(BTreeMap::new()));
            cur = match entry {
                Node::Tree(m) => m,
                Node::Leaf(_) => {
                    return Err(TencentError::invalid(
                        name,
                        "conflicts with another parameter",
                    ))
                }
            };
        }
    }
    Ok(node_to_value(Node::Tree(root)))
}

// ------------------------------------------------------- response pieces

/// `KeyMetadata` as DescribeKey / DescribeKeys / ListKeyDetail return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    /// The CMK.
    pub key_id: String,
    /// Alias.
    pub alias: String,
    /// Unix seconds.
    pub create_time: i64,
    /// Description.
    pub description: String,
    /// Enabled, Disabled, PendingDelete, PendingImport, Archived.
    pub key_state: &'static str,
    /// e.g. ENCRYPT_DECRYPT.
    pub key_usage: &'static str,
    /// 1: KMS-made; 2: EXTERNAL.
    #[serde(rename = "Type")]
    pub key_type: i64,
    /// Creator (0 for sealgate).
    pub creator_uin: i64,
    /// Whether scheduled rotation is on.
    pub key_rotation_enabled: bool,
    /// "user" for user-created keys.
    pub owner: String,
    /// Next scheduled rotation (0: none).
    pub next_rotate_time: i64,
    /// Deletion date for PendingDelete keys (0: none).
    pub deletion_date: i64,
    /// TENCENT_KMS or EXTERNAL.
    pub origin: &'static str,
    /// Material expiry for EXTERNAL keys (0: none).
    pub valid_to: i64,
    /// `creatorUin/<KeyId>`-style resource name.
    pub resource_id: String,
    /// Rotation period in days.
    pub rotate_days: i64,
    /// Last rotation (0: never).
    pub last_rotate_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(action: &str, v: Value) -> Result<Request, TencentError> {
        parse_request(Action::from_name(action).unwrap(), &v)
    }

    fn code(action: &str, v: Value) -> &'static str {
        parse(action, v).unwrap_err().code
    }

    #[test]
    fn envelope_shapes() {
        let ok = success_body("r-1", json!({"KeyId": "k"}));
        assert_eq!(ok, json!({"Response": {"KeyId": "k", "RequestId": "r-1"}}));
        let err = error_body("r-2", &TencentError::new(codes::CMK_DISABLED, "disabled"));
        assert_eq!(
            err,
            json!({"Response": {"Error": {"Code": "ResourceUnavailable.CmkDisabled", "Message": "disabled"}, "RequestId": "r-2"}})
        );
    }

    #[test]
    fn actions_round_trip_and_have_quotas() {
        let quotas = default_quotas();
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(*a));
            assert!(
                quotas.iter().any(|(n, _)| n == &a.name()),
                "{} has no quota",
                a.name()
            );
        }
        assert_eq!(quotas.len(), Action::ALL.len());
        let q = |n: &str| quotas.iter().find(|(a, _)| *a == n).unwrap().1;
        assert_eq!(
            (
                q("Encrypt"),
                q("Decrypt"),
                q("GenerateDataKey"),
                q("AsymmetricRsaDecrypt")
            ),
            (300, 300, 100, 200)
        );
        assert_eq!(parse_action("Nope").unwrap_err().code, "InvalidAction");
        assert_eq!(
            check_version("2017-03-12").unwrap_err().code,
            "NoSuchVersion"
        );
        assert!(check_version("2019-01-18").is_ok());
    }

    #[test]
    fn encrypt_parameters() {
        let r = parse("Encrypt", json!({"KeyId": "k1", "Plaintext": "aGVsbG8=", "EncryptionContext": "{\"b\": 1, \"a\": \"x\"}"})).unwrap();
        let Request::Encrypt(e) = r else { panic!() };
        assert_eq!(e.plaintext.expose(), b"hello");
        assert_eq!(
            e.encryption_context.unwrap().canonical,
            r#"{"a":"x","b":1}"#
        );
        assert_eq!(
            code("Encrypt", json!({"Plaintext": "aGVsbG8="})),
            "MissingParameter"
        );
        assert_eq!(code("Encrypt", json!({"KeyId": "k1"})), "MissingParameter");
        assert_eq!(
            code(
                "Encrypt",
                json!({"KeyId": "k1", "Plaintext": "not base64!"})
            ),
            "InvalidParameterValue.InvalidPlaintext"
        );
        assert_eq!(
            code("Encrypt", json!({"KeyId": "", "Plaintext": "aGVsbG8="})),
            "InvalidParameterValue.InvalidKeyId"
        );
        assert_eq!(
            code("Encrypt", json!({"KeyId": 5, "Plaintext": "aGVsbG8="})),
            "InvalidParameter"
        );
        // 4096 bytes pass, 4097 do not.
        let ok = B64.encode(vec![7u8; 4096]);
        assert!(parse("Encrypt", json!({"KeyId": "k", "Plaintext": ok})).is_ok());
        let big = B64.encode(vec![7u8; 4097]);
        assert_eq!(
            code("Encrypt", json!({"KeyId": "k", "Plaintext": big})),
            "InvalidParameterValue.InvalidPlaintext"
        );
        // Context: 1024 chars pass, 1025 do not; must be a JSON object.
        let pad = "x".repeat(1024 - 8);
        let ctx = format!(r#"{{"a":"{pad}"}}"#);
        assert_eq!(ctx.chars().count(), 1024);
        assert!(parse(
            "Encrypt",
            json!({"KeyId": "k", "Plaintext": "AA==", "EncryptionContext": ctx})
        )
        .is_ok());
        let ctx = format!(r#"{{"a":"{pad}x"}}"#);
        assert_eq!(
            code(
                "Encrypt",
                json!({"KeyId": "k", "Plaintext": "AA==", "EncryptionContext": ctx})
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                "Encrypt",
                json!({"KeyId": "k", "Plaintext": "AA==", "EncryptionContext": "[1]"})
            ),
            "InvalidParameter"
        );
    }

    #[test]
    fn generate_data_key_sizes() {
        let n = |v: Value| match parse("GenerateDataKey", v).unwrap() {
            Request::GenerateDataKey(g) => g.number_of_bytes,
            _ => unreachable!(),
        };
        assert_eq!(n(json!({"KeyId": "k", "KeySpec": "AES_128"})), 16);
        assert_eq!(n(json!({"KeyId": "k", "KeySpec": "AES_256"})), 32);
        assert_eq!(
            n(json!({"KeyId": "k", "KeySpec": "AES_128", "NumberOfBytes": 64})),
            64,
            "NumberOfBytes wins"
        );
        assert_eq!(n(json!({"KeyId": "k", "NumberOfBytes": "1024"})), 1024);
        assert_eq!(
            code("GenerateDataKey", json!({"KeyId": "k"})),
            "MissingParameter"
        );
        assert_eq!(
            code("GenerateDataKey", json!({"KeyId": "k", "NumberOfBytes": 0})),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                "GenerateDataKey",
                json!({"KeyId": "k", "NumberOfBytes": 1025})
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                "GenerateDataKey",
                json!({"KeyId": "k", "KeySpec": "AES_512"})
            ),
            "InvalidParameter"
        );
    }

    #[test]
    fn create_key_rules() {
        let Request::CreateKey(c) = parse("CreateKey", json!({"Alias": "app-1_x"})).unwrap() else {
            panic!()
        };
        assert_eq!((c.key_usage, c.external), (KeyUsage::EncryptDecrypt, false));
        for bad in ["", "-lead", "kms-reserved", "has space", &"a".repeat(61)] {
            assert_eq!(
                code("CreateKey", json!({"Alias": bad})),
                "InvalidParameterValue.InvalidAlias",
                "{bad:?}"
            );
        }
        assert!(parse("CreateKey", json!({"Alias": "a".repeat(60)})).is_ok());
        assert_eq!(code("CreateKey", json!({})), "MissingParameter");
        assert_eq!(
            code("CreateKey", json!({"Alias": "a", "KeyUsage": "SIGN"})),
            "InvalidParameterValue.InvalidKeyUsage"
        );
        assert_eq!(
            code("CreateKey", json!({"Alias": "a", "Type": 3})),
            "InvalidParameterValue.InvalidType"
        );
        let Request::CreateKey(c) = parse(
            "CreateKey",
            json!({"Alias": "a", "Type": 2, "KeyUsage": "ASYMMETRIC_DECRYPT_RSA_2048"}),
        )
        .unwrap() else {
            panic!()
        };
        assert!(c.external);
        assert_eq!(c.key_usage, KeyUsage::AsymmetricDecryptRsa2048);
        assert_eq!(
            code(
                "CreateKey",
                json!({"Alias": "a", "Description": "d".repeat(1025)})
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                "CreateKey",
                json!({"Alias": "a", "Tags": [{"TagKey": "t", "TagValue": "1"}, {"TagKey": "t", "TagValue": "2"}]})
            ),
            "InvalidParameterValue.TagKeysDuplicated"
        );
    }

    #[test]
    fn ranges_of_management_actions() {
        assert_eq!(
            code(
                "ScheduleKeyDeletion",
                json!({"KeyId": "k", "PendingWindowInDays": 6})
            ),
            "InvalidParameter.InvalidPendingWindowInDays"
        );
        assert_eq!(
            code(
                "ScheduleKeyDeletion",
                json!({"KeyId": "k", "PendingWindowInDays": 31})
            ),
            "InvalidParameter.InvalidPendingWindowInDays"
        );
        assert_eq!(
            code("ScheduleKeyDeletion", json!({"KeyId": "k"})),
            "MissingParameter"
        );
        assert!(parse(
            "ScheduleKeyDeletion",
            json!({"KeyId": "k", "PendingWindowInDays": 7})
        )
        .is_ok());
        let Request::EnableKeyRotation(r) =
            parse("EnableKeyRotation", json!({"KeyId": "k"})).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.rotate_days, 365);
        assert_eq!(
            code("EnableKeyRotation", json!({"KeyId": "k", "RotateDays": 6})),
            "InvalidParameter"
        );
        let Request::ListKeys(l) = parse("ListKeys", json!({})).unwrap() else {
            panic!()
        };
        assert_eq!((l.offset, l.limit), (0, 10));
        assert_eq!(code("ListKeys", json!({"Limit": 201})), "InvalidParameter");
        assert_eq!(
            code("DescribeKeys", json!({"KeyIds": ["a", "a"]})),
            "InvalidParameterValue.DuplicatedKeyId"
        );
        assert_eq!(
            code("DescribeKeys", json!({"KeyIds": []})),
            "MissingParameter"
        );
        let many: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
        assert_eq!(
            code("EnableKeys", json!({"KeyIds": many})),
            "InvalidParameter"
        );
        let Request::ListKeyDetail(d) =
            parse("ListKeyDetail", json!({"KeyState": 2, "KeyUsage": "ALL"})).unwrap()
        else {
            panic!()
        };
        assert_eq!((d.key_state, d.key_usage), (Some(KeyState::Disabled), None));
        assert_eq!(
            code(
                "GetParametersForImport",
                json!({"KeyId": "k", "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_4096"})
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                "ImportKeyMaterial",
                json!({"KeyId": "k", "EncryptedKeyMaterial": "AA==", "ImportToken": "t", "ValidTo": 2147443201i64})
            ),
            "InvalidParameter"
        );
        assert_eq!(
            code(
                "SignByAsymmetricKey",
                json!({"KeyId": "k", "Algorithm": "SM2DSA", "Message": "AA==", "MessageType": "DIGEST"})
            ),
            "InvalidParameter"
        );
        assert_eq!(code("GenerateRandom", json!({})), "MissingParameter");
    }

    #[test]
    fn flat_params_build_the_same_value() {
        let pairs: Vec<(String, String)> = [
            ("Action", "DescribeKeys"),
            ("Nonce", "1"),
            ("KeyIds.1", "b"),
            ("KeyIds.0", "a"),
            ("Tags.0.TagKey", "t"),
            ("Tags.0.TagValue", "v"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let v = params_from_flat(&pairs, ParamStyle::Api3).unwrap();
        assert_eq!(
            v,
            json!({"KeyIds": ["a", "b"], "Tags": [{"TagKey": "t", "TagValue": "v"}]})
        );
        let Request::DescribeKeys(k) = parse_request(Action::DescribeKeys, &v).unwrap() else {
            panic!()
        };
        assert_eq!(k.key_ids, ["a", "b"]);

        // Seed 002: legacy GenerateDataKey with lower-camel names.
        let legacy: Vec<(String, String)> = [
            ("Action", "GenerateDataKey"),
            ("keyId", "kms-345sdfk"),
            ("keySpec", "AES_256"),
            ("numberOfBytes", "24"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let v = params_from_flat(&legacy, ParamStyle::Legacy).unwrap();
        let Request::GenerateDataKey(g) = parse_request(Action::GenerateDataKey, &v).unwrap()
        else {
            panic!()
        };
        assert_eq!((g.key_id.as_str(), g.number_of_bytes), ("kms-345sdfk", 24));

        let clash: Vec<(String, String)> = [("A", "1"), ("A.0", "2")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(
            params_from_flat(&clash, ParamStyle::Api3).unwrap_err().code,
            "InvalidParameter"
        );
    }

    #[test]
    fn key_metadata_serializes_with_wire_names() {
        let m = KeyMetadata {
            key_id: "k".into(),
            alias: "a".into(),
            create_time: 1,
            description: String::new(),
            key_state: KeyState::Enabled.as_str(),
            key_usage: KeyUsage::EncryptDecrypt.as_str(),
            key_type: 1,
            creator_uin: 0,
            key_rotation_enabled: false,
            owner: "user".into(),
            next_rotate_time: 0,
            deletion_date: 0,
            origin: "TENCENT_KMS",
            valid_to: 0,
            resource_id: "k".into(),
            rotate_days: 365,
            last_rotate_time: 0,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["KeyId"], "k");
        assert_eq!(v["Type"], 1);
        assert_eq!(v["KeyRotationEnabled"], false);
        assert_eq!(v["KeyState"], "Enabled");
    }
}
