//! Alibaba Cloud KMS (OpenAPI 2016-01-20) on the wire: success and error
//! bodies, error codes with their HTTP statuses, the quota classes, and typed,
//! validated requests for every action sealgate serves.
//!
//! Pure: parsing takes the flat parameter list of a request (query string
//! and form body merged, as [`super::sign::Verified::params`] returns it) and
//! gives a typed request or an [`AlibabaError`]. Map parameters
//! (`EncryptionContext`, `Tags`, `Filters`) arrive as JSON strings. Bytes
//! parameters of the Advance actions (Plaintext, Iv, Aad, CiphertextBlob)
//! are Base64 in this face; the instance API ([`super::instance`]) carries
//! them raw and builds the same typed requests.
//!
//! Rule for codes: a missing required parameter is `MissingParameter`; a bad
//! value is `InvalidParameter` (400) unless the action documents its own.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::advance::{Algorithm, PaddingMode, MAX_AAD_BYTES, MAX_BLOB_BYTES, MAX_PLAINTEXT_BYTES};
use crate::kms::context;
use crate::ratelimit::{Quota, QuotaTable};
use crate::secret::SecretBytes;

/// The OpenAPI version this face speaks.
pub const API_VERSION: &str = "2016-01-20";
/// The response content type.
pub const CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// Largest Encrypt plaintext (documented: 6 KB).
pub const MAX_ENCRYPT_PLAINTEXT_BYTES: usize = 6 * 1024;
/// Largest EncryptionContext JSON string, in characters.
pub const MAX_ENCRYPTION_CONTEXT_CHARS: usize = 8192;
/// Largest key description, in characters (documented: 0–8,192).
pub const MAX_DESCRIPTION_CHARS: usize = 8192;
/// Largest KeyId / alias / ARN accepted.
pub const MAX_KEY_REF_LEN: usize = 512;

/// Error codes with the HTTP status Alibaba returns them with.
pub mod codes {
    #![allow(missing_docs)]
    pub const MISSING_PARAMETER: (&str, u16) = ("MissingParameter", 400);
    pub const INVALID_PARAMETER: (&str, u16) = ("InvalidParameter", 400);
    pub const INVALID_ACTION: (&str, u16) = ("InvalidAction.NotFound", 404);
    pub const INVALID_VERSION: (&str, u16) = ("InvalidVersion", 400);
    pub const INCOMPLETE_SIGNATURE: (&str, u16) = ("IncompleteSignature", 400);
    pub const SIGNATURE_DOES_NOT_MATCH: (&str, u16) = ("SignatureDoesNotMatch", 400);
    pub const ACCESS_KEY_NOT_FOUND: (&str, u16) = ("InvalidAccessKeyId.NotFound", 404);
    pub const SIGNATURE_NONCE_USED: (&str, u16) = ("SignatureNonceUsed", 400);
    pub const TIMESTAMP_EXPIRED: (&str, u16) = ("InvalidTimeStamp.Expired", 400);
    pub const TIMESTAMP_FORMAT: (&str, u16) = ("InvalidTimeStamp.Format", 400);
    pub const THROTTLING: (&str, u16) = ("Rejected.Throttling", 429);
    pub const KEY_NOT_FOUND: (&str, u16) = ("Forbidden.KeyNotFound", 404);
    pub const ALIAS_NOT_FOUND: (&str, u16) = ("Forbidden.AliasNotFound", 404);
    pub const RESOURCE_NOT_FOUND: (&str, u16) = ("Forbidden.ResourceNotFound", 404);
    pub const KEY_VERSION_NOT_FOUND: (&str, u16) = ("Forbidden.KeyVersionNotFound", 404);
    pub const ONLY_SYMMETRIC_KEY: (&str, u16) = ("Forbidden.OnlySymmetricKeySupported", 404);
    pub const RESOURCE_EXISTS: (&str, u16) = ("Rejected.ResourceExist", 409);
    pub const UNEXPECTED_STATE: (&str, u16) = ("Rejected.UnexpectedState", 409);
    pub const KEY_DISABLED: (&str, u16) = ("Rejected.Disabled", 409);
    pub const LIMIT_EXCEEDED: (&str, u16) = ("Rejected.LimitExceeded", 409);
    pub const INVALID_CIPHERTEXT: (&str, u16) = ("InvalidCiphertext", 400);
    pub const INVALID_KEY_SPEC: (&str, u16) = ("InvalidParameter.KeySpec", 400);
    pub const INVALID_KEY_USAGE: (&str, u16) = ("InvalidParameter.KeyUsage", 400);
    pub const INVALID_ALIAS_NAME: (&str, u16) = ("InvalidParameter.AliasName", 400);
    pub const INVALID_ROTATION_INTERVAL: (&str, u16) = ("InvalidParameter.RotationInterval", 400);
    pub const UNSUPPORTED_OPERATION: (&str, u16) = ("UnsupportedOperation", 400);
    pub const INTERNAL_FAILURE: (&str, u16) = ("InternalFailure", 500);
}

/// An error as the Alibaba face reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct AlibabaError {
    /// The HTTP status (4xx/5xx).
    pub status: u16,
    /// The documented code, e.g. `Forbidden.KeyNotFound`.
    pub code: &'static str,
    /// Human-readable detail (never plaintext or key bytes).
    pub message: String,
}

impl AlibabaError {
    /// An error from a `(code, status)` pair of [`codes`].
    pub fn new(code: (&'static str, u16), message: impl Into<String>) -> Self {
        Self {
            status: code.1,
            code: code.0,
            message: message.into(),
        }
    }

    /// `MissingParameter` for `name`.
    pub fn missing(name: &str) -> Self {
        Self::new(
            codes::MISSING_PARAMETER,
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    /// `InvalidParameter` for `name`, saying why.
    pub fn invalid(name: &str, why: &str) -> Self {
        Self::new(
            codes::INVALID_PARAMETER,
            format!("The specified parameter \"{name}\" is not valid: {why}."),
        )
    }

    /// A specific code for `name`, saying why.
    pub fn value(code: (&'static str, u16), name: &str, why: &str) -> Self {
        Self::new(
            code,
            format!("The specified parameter \"{name}\" is not valid: {why}."),
        )
    }

    /// `Rejected.Throttling` (429).
    pub fn throttled() -> Self {
        Self::new(
            codes::THROTTLING,
            "Request was denied due to request throttling.",
        )
    }

    /// `Forbidden.KeyNotFound` (404).
    pub fn key_not_found() -> Self {
        Self::new(codes::KEY_NOT_FOUND, "The specified Key is not found.")
    }

    /// A short hint for the `Recommend` field.
    pub fn recommend(&self) -> &'static str {
        match self.code {
            c if c.starts_with("Rejected.Throttling") => {
                "Retry after a short delay; the per-class quota was exceeded."
            }
            c if c.starts_with("InvalidTimeStamp") => {
                "Synchronise the client clock; requests must be within 15 minutes of server time."
            }
            c if c.starts_with("Signature")
                || c.starts_with("IncompleteSignature")
                || c.starts_with("InvalidAccessKeyId") =>
            {
                "Check the AccessKey pair and that the request is signed as sent."
            }
            c if c.starts_with("Forbidden") => "Check the KeyId, alias or key version.",
            c if c.starts_with("Rejected") => "Check the state of the key.",
            c if c.starts_with("Internal") => "Retry; if it persists, report the RequestId.",
            _ => "Check the request parameters.",
        }
    }
}

/// The success body: the action's fields plus `RequestId`. `fields` should
/// be a JSON object; anything else is ignored.
pub fn success_body(request_id: &str, fields: Value) -> Value {
    let mut m = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("RequestId".into(), Value::String(request_id.into()));
    Value::Object(m)
}

/// The error body `{RequestId, HostId, Code, Message, Recommend}`; send it
/// with status [`AlibabaError::status`].
pub fn error_body(request_id: &str, host_id: &str, err: &AlibabaError) -> Value {
    serde_json::json!({
        "RequestId": request_id,
        "HostId": host_id,
        "Code": err.code,
        "Message": err.message,
        "Recommend": err.recommend(),
    })
}

// ------------------------------------------------------------------ actions

macro_rules! actions {
    ($($name:ident => $class:ident),* $(,)?) => {
        /// A KMS action this face serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Action { $($name),* }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$name),*];

            /// The wire name (`x-acs-action` / `Action`).
            pub fn name(self) -> &'static str {
                match self { $(Action::$name => stringify!($name)),* }
            }

            /// The action with this wire name.
            pub fn from_name(name: &str) -> Option<Action> {
                match name { $(stringify!($name) => Some(Action::$name),)* _ => None }
            }

            /// The quota class the action counts against.
            pub fn class(self) -> QuotaClass {
                match self { $(Action::$name => QuotaClass::$class),* }
            }
        }
    };
}

actions!(
    CreateKey => CreateKey,
    DescribeKey => Read,
    ListKeys => Read,
    EnableKey => Write,
    DisableKey => Write,
    ScheduleKeyDeletion => Write,
    CancelKeyDeletion => Write,
    CreateAlias => Write,
    UpdateAlias => Write,
    DeleteAlias => Write,
    ListAliases => Read,
    CreateKeyVersion => Write,
    ListKeyVersions => Read,
    DescribeKeyVersion => Read,
    UpdateRotationPolicy => Write,
    Encrypt => SymmetricCrypto,
    Decrypt => SymmetricCrypto,
    ReEncrypt => SymmetricCrypto,
    GenerateDataKey => SymmetricCrypto,
    GenerateDataKeyWithoutPlaintext => SymmetricCrypto,
    AdvanceEncrypt => SymmetricCrypto,
    AdvanceDecrypt => SymmetricCrypto,
    AdvanceGenerateDataKey => SymmetricCrypto,
    GetPublicKey => Read,
    AsymmetricSign => AsymmetricCrypto,
    AsymmetricVerify => AsymmetricCrypto,
    AsymmetricEncrypt => AsymmetricCrypto,
    AsymmetricDecrypt => AsymmetricCrypto,
    DescribeRegions => Read,
    DescribeService => Read,
    ListAliasesByKeyId => Read,
    UpdateKeyDescription => Write,
);

/// The shared-gateway quota classes (per account, PROTOCOLS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaClass {
    /// CreateKey: 10/s.
    CreateKey,
    /// Read-only management calls: 50/s.
    Read,
    /// Management writes: 30/s.
    Write,
    /// Symmetric cryptographic operations: 1,000/s.
    SymmetricCrypto,
    /// Asymmetric cryptographic operations (AsymmetricSign, AsymmetricVerify,
    /// AsymmetricEncrypt, AsymmetricDecrypt): 200/s. GetPublicKey is a read.
    AsymmetricCrypto,
}

impl QuotaClass {
    /// Every class.
    pub const ALL: [QuotaClass; 5] = [
        QuotaClass::CreateKey,
        QuotaClass::Read,
        QuotaClass::Write,
        QuotaClass::SymmetricCrypto,
        QuotaClass::AsymmetricCrypto,
    ];

    /// The class's bucket name in the rate limiter.
    pub fn name(self) -> &'static str {
        match self {
            QuotaClass::CreateKey => "alibaba:CreateKey",
            QuotaClass::Read => "alibaba:read",
            QuotaClass::Write => "alibaba:write",
            QuotaClass::SymmetricCrypto => "alibaba:symmetric-crypto",
            QuotaClass::AsymmetricCrypto => "alibaba:asymmetric-crypto",
        }
    }

    /// The class's name in `[kms.alibaba.quotas]` (its bucket name without
    /// the `alibaba:` prefix).
    pub fn config_name(self) -> &'static str {
        let n = self.name();
        n.strip_prefix("alibaba:").unwrap_or(n)
    }

    /// Documented requests per second.
    pub fn per_second(self) -> u32 {
        match self {
            QuotaClass::CreateKey => 10,
            QuotaClass::Read => 50,
            QuotaClass::Write => 30,
            QuotaClass::SymmetricCrypto => 1000,
            QuotaClass::AsymmetricCrypto => 200,
        }
    }
}

/// The quota class of `action`.
pub fn class_of(action: Action) -> QuotaClass {
    action.class()
}

/// `(class name, per second)` for every class.
pub fn quota_classes() -> Vec<(&'static str, u32)> {
    QuotaClass::ALL
        .iter()
        .map(|c| (c.name(), c.per_second()))
        .collect()
}

/// `(action, class name)` for every action, for [`quota_table`].
pub fn action_classes() -> Vec<(&'static str, &'static str)> {
    Action::ALL
        .iter()
        .map(|a| (a.name(), a.class().name()))
        .collect()
}

/// The limiter's table: every class at its documented rate and every action
/// in its class; unknown actions get the write quota. Check with the action
/// name: `limiter.check(access_key_id, action.name())`.
pub fn quota_table() -> QuotaTable {
    let classes = quota_classes().into_iter().fold(
        QuotaTable::new(Quota::per_second(QuotaClass::Write.per_second())),
        |t, (class, rate)| t.quota(class, Quota::per_second(rate)),
    );
    action_classes()
        .into_iter()
        .fold(classes, |t, (action, class)| t.member(action, class))
}

/// The action named `name`, or `InvalidAction.NotFound`.
pub fn parse_action(name: &str) -> Result<Action, AlibabaError> {
    Action::from_name(name).ok_or_else(|| {
        AlibabaError::new(
            codes::INVALID_ACTION,
            "Specified api is not found, please check your url and method.",
        )
    })
}

/// `Ok` for 2016-01-20, `InvalidVersion` otherwise.
pub fn check_version(version: &str) -> Result<(), AlibabaError> {
    if version == API_VERSION {
        Ok(())
    } else {
        Err(AlibabaError::new(
            codes::INVALID_VERSION,
            "Specified parameter Version is not valid; this service speaks 2016-01-20.",
        ))
    }
}

// -------------------------------------------------------------- value types

str_enum!(
    /// CreateKey `KeySpec`.
    KeySpec {
        AliyunAes256 = "Aliyun_AES_256",
        AliyunAes128 = "Aliyun_AES_128",
        AliyunAes192 = "Aliyun_AES_192",
        AliyunSm4 = "Aliyun_SM4",
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EcP256 = "EC_P256",
        EcP256K = "EC_P256K",
        EcSm2 = "EC_SM2",
    }
);

str_enum!(
    /// AsymmetricSign / AsymmetricVerify `Algorithm`.
    SignAlgorithm {
        RsaPssSha256 = "RSA_PSS_SHA_256",
        RsaPkcs1Sha256 = "RSA_PKCS1_SHA_256",
        EcdsaSha256 = "ECDSA_SHA_256",
        Sm2Dsa = "SM2DSA",
    }
);

str_enum!(
    /// AsymmetricEncrypt / AsymmetricDecrypt `Algorithm`.
    EncryptAlgorithm {
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        Sm2Pke = "SM2PKE",
    }
);

/// Length of the SHA-256 digest every served signing algorithm signs.
pub const SHA256_DIGEST_LEN: usize = 32;
/// Largest AsymmetricEncrypt plaintext of any served key (RSA_3072 with
/// RSAES_OAEP_SHA_1: 342 bytes); the key's own limit is checked later.
pub const MAX_ASYMMETRIC_PLAINTEXT_BYTES: usize = 342;
/// Largest ciphertext or signature of a served key (RSA-3072: 384 bytes;
/// a little room so a wrong length is reported by the key, not here).
pub const MAX_ASYMMETRIC_BLOB_BYTES: usize = 1024;

str_enum!(
    /// CreateKey `KeyUsage`.
    KeyUsage {
        EncryptDecrypt = "ENCRYPT/DECRYPT",
        SignVerify = "SIGN/VERIFY",
    }
);

str_enum!(
    /// CreateKey `Origin`.
    Origin {
        AliyunKms = "Aliyun_KMS",
        External = "EXTERNAL",
    }
);

str_enum!(
    /// CreateKey `ProtectionLevel`.
    ProtectionLevel {
        Software = "SOFTWARE",
        Hsm = "HSM",
    }
);

str_enum!(
    /// KeyMetadata `KeyState`.
    KeyState {
        Enabled = "Enabled",
        Disabled = "Disabled",
        PendingDeletion = "PendingDeletion",
        PendingImport = "PendingImport",
    }
);

pub use crate::kms::context::EncryptionContext;

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// A rotation interval, in seconds (7–365 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationInterval(pub u64);

impl RotationInterval {
    /// The wire form the API returns, e.g. `604800s`.
    pub fn to_wire(self) -> String {
        format!("{}s", self.0)
    }
}

/// Paging of the List* actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number (default 1).
    pub number: u32,
    /// Entries per page, 1–100 (default 10).
    pub size: u32,
}

// ----------------------------------------------------------------- requests

/// CreateKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// Default Aliyun_AES_256.
    pub key_spec: KeySpec,
    /// Default ENCRYPT/DECRYPT for symmetric specs, SIGN/VERIFY for EC ones.
    pub key_usage: KeyUsage,
    /// Default Aliyun_KMS.
    pub origin: Origin,
    /// Default SOFTWARE.
    pub protection_level: ProtectionLevel,
    /// Up to 8,192 characters.
    pub description: Option<String>,
    /// Turn on automatic rotation.
    pub enable_automatic_rotation: bool,
    /// Required when rotation is on.
    pub rotation_interval: Option<RotationInterval>,
    /// Tags (keys unique).
    pub tags: Vec<Tag>,
    /// KMS instance (accepted; sealgate has one).
    pub dkms_instance_id: Option<String>,
}

/// A request naming one key: a KeyId, an `alias/…` name or an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// As sent.
    pub key_id: String,
}

impl KeyRef {
    /// True for `alias/…` (the store resolves it) or an alias ARN.
    pub fn is_alias(&self) -> bool {
        self.key_id.starts_with("alias/") || self.key_id.contains(":alias/")
    }
}

/// ListKeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeys {
    /// Paging.
    pub page: Page,
    /// `Filters`: every entry must match (AND); an entry matches when the
    /// key's property is one of its `Values` (OR). Entries with the same
    /// `Key` are merged into one (their values OR-ed).
    pub filters: Vec<KeyFilter>,
}

/// The key properties a ListKeys filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterKey {
    /// `KeyState` (Enabled, Disabled, PendingDeletion, PendingImport).
    KeyState,
    /// `KeySpec` (Aliyun_AES_256, RSA_2048, …).
    KeySpec,
    /// `KeyUsage` (ENCRYPT/DECRYPT, SIGN/VERIFY).
    KeyUsage,
    /// `ProtectionLevel` (always SOFTWARE here).
    ProtectionLevel,
    /// `CreatorType` (always User here).
    CreatorType,
    /// `DKMSInstanceId` (keys here belong to no KMS instance).
    DkmsInstanceId,
    /// `keyId` (also `KeyId`).
    KeyId,
    /// `AliasName` (`alias/…`).
    AliasName,
    /// `Creator`.
    Creator,
    /// `TagKey`: any tag of the key.
    TagKey,
    /// `TagValue`: any tag of the key.
    TagValue,
}

impl FilterKey {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "KeyState" => FilterKey::KeyState,
            "KeySpec" => FilterKey::KeySpec,
            "KeyUsage" => FilterKey::KeyUsage,
            "ProtectionLevel" => FilterKey::ProtectionLevel,
            "CreatorType" => FilterKey::CreatorType,
            "DKMSInstanceId" => FilterKey::DkmsInstanceId,
            "keyId" | "KeyId" => FilterKey::KeyId,
            "AliasName" => FilterKey::AliasName,
            "Creator" => FilterKey::Creator,
            "TagKey" => FilterKey::TagKey,
            "TagValue" => FilterKey::TagValue,
            _ => return None,
        })
    }
}

/// One ListKeys filter: a property and the values it may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter {
    /// The property.
    pub key: FilterKey,
    /// Accepted values (at least one).
    pub values: Vec<String>,
}

/// Most entries in `Filters`, and most values in one entry (the API's limits).
pub const MAX_FILTERS: usize = 10;

/// Parses ListKeys `Filters`: a JSON array of at most 10
/// `{"Key": …, "Values": [up to 10 strings]}`. An entry with no values
/// constrains nothing and is dropped.
pub fn parse_filters(text: &str) -> Result<Vec<KeyFilter>, AlibabaError> {
    let bad = |why: &str| AlibabaError::invalid("Filters", why);
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(text) else {
        return Err(bad("a JSON array of {\"Key\", \"Values\"} objects"));
    };
    if entries.len() > MAX_FILTERS {
        return Err(bad("at most 10 filters"));
    }
    let mut out: Vec<KeyFilter> = Vec::new();
    for e in &entries {
        let Some(obj) = e.as_object() else {
            return Err(bad("each filter is an object with Key and Values"));
        };
        if obj.keys().any(|k| k != "Key" && k != "Values") {
            return Err(bad("a filter has only Key and Values"));
        }
        let name = obj
            .get("Key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a filter needs a Key"))?;
        let key = FilterKey::parse(name).ok_or_else(|| {
            bad("Key is one of KeyState, KeySpec, KeyUsage, ProtectionLevel, CreatorType, DKMSInstanceId, keyId, AliasName, Creator, TagKey, TagValue")
        })?;
        let values = match obj.get("Values") {
            None => Vec::new(),
            Some(Value::Array(vs)) => {
                if vs.len() > MAX_FILTERS {
                    return Err(bad("at most 10 Values per filter"));
                }
                vs.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad("Values are strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => return Err(bad("Values is an array of strings")),
        };
        if values.is_empty() {
            continue;
        }
        match out.iter_mut().find(|f| f.key == key) {
            Some(f) => f.values.extend(values),
            None => out.push(KeyFilter { key, values }),
        }
    }
    Ok(out)
}

/// ScheduleKeyDeletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleKeyDeletion {
    /// The key.
    pub key: KeyRef,
    /// 7–366.
    pub pending_window_in_days: u32,
}

/// CreateAlias / UpdateAlias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasBinding {
    /// `alias/` + 1–255 of letters, digits, `_`, `-`, `/`.
    pub alias_name: String,
    /// The key it names.
    pub key: KeyRef,
}

/// DeleteAlias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAlias {
    /// The alias.
    pub alias_name: String,
}

/// ListKeyVersions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeyVersions {
    /// The key.
    pub key: KeyRef,
    /// Paging.
    pub page: Page,
}

/// DescribeKeyVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeKeyVersion {
    /// The key.
    pub key: KeyRef,
    /// The version.
    pub key_version_id: String,
}

/// UpdateRotationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRotationPolicy {
    /// The key.
    pub key: KeyRef,
    /// On or off.
    pub enable_automatic_rotation: bool,
    /// Required when turning rotation on.
    pub rotation_interval: Option<RotationInterval>,
}

/// Encrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypt {
    /// The key (its primary version is used).
    pub key: KeyRef,
    /// The Plaintext string's bytes, as sent (at most 6 KB); Decrypt returns
    /// the same string.
    pub plaintext: SecretBytes,
    /// Optional context.
    pub encryption_context: Option<EncryptionContext>,
    /// `DryRun=true`: check only.
    pub dry_run: bool,
}

/// Decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypt {
    /// The blob as returned by Encrypt / GenerateDataKey.
    pub ciphertext_blob: String,
    /// Must equal the one given at encryption.
    pub encryption_context: Option<EncryptionContext>,
    /// `DryRun=true`: check only.
    pub dry_run: bool,
}

/// ReEncrypt (symmetric source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEncrypt {
    /// The blob to re-encrypt.
    pub ciphertext_blob: String,
    /// Target key.
    pub destination_key: KeyRef,
    /// Context of the source blob.
    pub source_encryption_context: Option<EncryptionContext>,
    /// Context for the new blob.
    pub destination_encryption_context: Option<EncryptionContext>,
    /// Asymmetric source key (sealgate answers UnsupportedOperation).
    pub source_key_id: Option<String>,
    /// Asymmetric source key version.
    pub source_key_version_id: Option<String>,
    /// Asymmetric source algorithm.
    pub source_encryption_algorithm: Option<String>,
    /// `DryRun=true`: check only.
    pub dry_run: bool,
}

/// GenerateDataKey / GenerateDataKeyWithoutPlaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateDataKey {
    /// The key (its primary version is used).
    pub key: KeyRef,
    /// 1–1024; NumberOfBytes wins over KeySpec (AES_128 → 16, AES_256 → 32,
    /// the default).
    pub number_of_bytes: u32,
    /// Optional context.
    pub encryption_context: Option<EncryptionContext>,
    /// `DryRun=true`: check only.
    pub dry_run: bool,
}

/// AdvanceEncrypt (also built by the instance API from protobuf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvanceEncrypt {
    /// The key (its primary version is used).
    pub key: KeyRef,
    /// Raw plaintext, 1 byte – 6 KB.
    pub plaintext: SecretBytes,
    /// `None`: the key's default (AES_GCM).
    pub algorithm: Option<Algorithm>,
    /// Caller's Iv (GCM 12 / CBC 16 bytes); random when `None`.
    pub iv: Option<Vec<u8>>,
    /// GCM additional data, at most 8,192 bytes.
    pub aad: Vec<u8>,
    /// CBC/ECB padding; `None`: PKCS7_PADDING.
    pub padding: Option<PaddingMode>,
}

/// AdvanceDecrypt (also built by the instance API from protobuf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvanceDecrypt {
    /// Raw blob bytes.
    pub ciphertext_blob: Vec<u8>,
    /// Needed only for blobs of Encrypt / GenerateDataKey (checked against
    /// the blob's key when given).
    pub key: Option<KeyRef>,
    /// Ditto.
    pub algorithm: Option<Algorithm>,
    /// Ditto.
    pub iv: Option<Vec<u8>>,
    /// GCM additional data.
    pub aad: Vec<u8>,
    /// Ditto.
    pub padding: Option<PaddingMode>,
}

/// AdvanceGenerateDataKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvanceGenerateDataKey {
    /// The key (its primary version is used).
    pub key: KeyRef,
    /// 1–1024, default 32.
    pub number_of_bytes: u32,
    /// GCM additional data for sealing the data key.
    pub aad: Vec<u8>,
}

/// A key version named by an asymmetric action (`KeyId` + `KeyVersionId`,
/// both required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionRef {
    /// The key.
    pub key: KeyRef,
    /// The version, `<KeyId>-v<N>` in sealgate.
    pub key_version_id: String,
    /// `DryRun=true`: check the key, version, state and parameters only.
    pub dry_run: bool,
}

/// AsymmetricSign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricSign {
    /// Key and version.
    pub version: KeyVersionRef,
    /// The signing algorithm.
    pub algorithm: SignAlgorithm,
    /// The message's SHA-256 digest (32 bytes; sent Base64).
    pub digest: Vec<u8>,
}

/// AsymmetricVerify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricVerify {
    /// Key and version.
    pub version: KeyVersionRef,
    /// The signing algorithm.
    pub algorithm: SignAlgorithm,
    /// The message's SHA-256 digest (32 bytes; sent Base64).
    pub digest: Vec<u8>,
    /// The signature (`Value`, sent Base64).
    pub value: Vec<u8>,
}

/// AsymmetricEncrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricEncrypt {
    /// Key and version.
    pub version: KeyVersionRef,
    /// The encryption algorithm.
    pub algorithm: EncryptAlgorithm,
    /// The plaintext (sent Base64), 1 byte up to the key's OAEP limit.
    pub plaintext: SecretBytes,
}

/// AsymmetricDecrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricDecrypt {
    /// Key and version.
    pub version: KeyVersionRef,
    /// The encryption algorithm the blob was made with.
    pub algorithm: EncryptAlgorithm,
    /// The ciphertext (sent Base64).
    pub ciphertext_blob: Vec<u8>,
}

/// ListAliasesByKeyId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAliasesByKeyId {
    /// The key whose aliases are listed.
    pub key: KeyRef,
    /// Paging.
    pub page: Page,
}

/// UpdateKeyDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateKeyDescription {
    /// The key.
    pub key: KeyRef,
    /// The new description, up to 8,192 characters; empty removes it.
    pub description: String,
}

/// A parsed, validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request {
    CreateKey(CreateKey),
    DescribeKey(KeyRef),
    ListKeys(ListKeys),
    EnableKey(KeyRef),
    DisableKey(KeyRef),
    ScheduleKeyDeletion(ScheduleKeyDeletion),
    CancelKeyDeletion(KeyRef),
    CreateAlias(AliasBinding),
    UpdateAlias(AliasBinding),
    DeleteAlias(DeleteAlias),
    ListAliases(Page),
    CreateKeyVersion(KeyRef),
    ListKeyVersions(ListKeyVersions),
    DescribeKeyVersion(DescribeKeyVersion),
    UpdateRotationPolicy(UpdateRotationPolicy),
    Encrypt(Encrypt),
    Decrypt(Decrypt),
    ReEncrypt(ReEncrypt),
    GenerateDataKey(GenerateDataKey),
    GenerateDataKeyWithoutPlaintext(GenerateDataKey),
    AdvanceEncrypt(AdvanceEncrypt),
    AdvanceDecrypt(AdvanceDecrypt),
    AdvanceGenerateDataKey(AdvanceGenerateDataKey),
    GetPublicKey(KeyVersionRef),
    AsymmetricSign(AsymmetricSign),
    AsymmetricVerify(AsymmetricVerify),
    AsymmetricEncrypt(AsymmetricEncrypt),
    AsymmetricDecrypt(AsymmetricDecrypt),
    DescribeRegions,
    DescribeService,
    ListAliasesByKeyId(ListAliasesByKeyId),
    UpdateKeyDescription(UpdateKeyDescription),
}

// ------------------------------------------------------------- field access

/// The flat parameters of one request, by name. A name sent twice is
/// refused (which value was meant is ambiguous).
struct Params<'a>(BTreeMap<&'a str, &'a str>);

impl<'a> Params<'a> {
    fn new(list: &'a [(String, String)]) -> Result<Self, AlibabaError> {
        let mut m = BTreeMap::new();
        for (k, v) in list {
            if m.insert(k.as_str(), v.as_str()).is_some() {
                return Err(AlibabaError::invalid(k, "sent more than once"));
            }
        }
        Ok(Params(m))
    }

    /// Optional string, with "" treated as absent.
    fn opt(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).copied().filter(|s| !s.is_empty())
    }

    fn req(&self, name: &str) -> Result<&'a str, AlibabaError> {
        self.opt(name).ok_or_else(|| AlibabaError::missing(name))
    }

    fn key(&self, name: &str) -> Result<KeyRef, AlibabaError> {
        let s = self.req(name)?;
        check_key_ref(name, s)?;
        Ok(KeyRef {
            key_id: s.to_string(),
        })
    }

    fn u32_in(
        &self,
        name: &str,
        lo: u32,
        hi: u32,
        default: Option<u32>,
    ) -> Result<u32, AlibabaError> {
        match self.opt(name) {
            None => default.ok_or_else(|| AlibabaError::missing(name)),
            Some(s) => match s.trim().parse::<u32>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(AlibabaError::invalid(
                    name,
                    &format!("an integer from {lo} to {hi}"),
                )),
            },
        }
    }

    fn bool_opt(&self, name: &str) -> Result<Option<bool>, AlibabaError> {
        match self.opt(name) {
            None => Ok(None),
            Some(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(AlibabaError::invalid(name, "true or false")),
        }
    }

    fn context(&self, name: &str) -> Result<Option<EncryptionContext>, AlibabaError> {
        self.opt(name)
            .map(|s| parse_encryption_context(name, s))
            .transpose()
    }

    fn page(&self) -> Result<Page, AlibabaError> {
        Ok(Page {
            number: self.u32_in("PageNumber", 1, u32::MAX, Some(1))?,
            size: self.u32_in("PageSize", 1, 100, Some(10))?,
        })
    }

    fn b64(&self, name: &str) -> Result<Option<Vec<u8>>, AlibabaError> {
        self.opt(name)
            .map(|s| {
                B64.decode(s.trim())
                    .map_err(|_| AlibabaError::invalid(name, "must be Base64"))
            })
            .transpose()
    }

    /// `KeyId` and `KeyVersionId`, both required.
    fn key_version(&self) -> Result<KeyVersionRef, AlibabaError> {
        let key = self.key("KeyId")?;
        let v = self.req("KeyVersionId")?;
        check_key_ref("KeyVersionId", v)?;
        Ok(KeyVersionRef {
            key,
            key_version_id: v.to_string(),
            dry_run: self.bool_opt("DryRun")?.unwrap_or(false),
        })
    }

    /// A required Base64 parameter of 1 to `max` bytes.
    fn b64_req(&self, name: &str, max: usize) -> Result<Vec<u8>, AlibabaError> {
        let v = self.b64(name)?.ok_or_else(|| AlibabaError::missing(name))?;
        if v.is_empty() {
            return Err(AlibabaError::missing(name));
        }
        if v.len() > max {
            return Err(AlibabaError::invalid(
                name,
                &format!("at most {max} bytes (before Base64)"),
            ));
        }
        Ok(v)
    }

    fn sign_algorithm(&self) -> Result<SignAlgorithm, AlibabaError> {
        SignAlgorithm::parse(self.req("Algorithm")?).ok_or_else(|| {
            AlibabaError::invalid(
                "Algorithm",
                "RSA_PSS_SHA_256, RSA_PKCS1_SHA_256, ECDSA_SHA_256 or SM2DSA",
            )
        })
    }

    /// `Digest`: Base64 of a SHA-256 digest.
    fn digest(&self) -> Result<Vec<u8>, AlibabaError> {
        let d = self.b64_req("Digest", SHA256_DIGEST_LEN)?;
        if d.len() != SHA256_DIGEST_LEN {
            return Err(AlibabaError::invalid(
                "Digest",
                "Base64 of a 32-byte SHA-256 digest",
            ));
        }
        Ok(d)
    }

    fn encrypt_algorithm(&self) -> Result<EncryptAlgorithm, AlibabaError> {
        EncryptAlgorithm::parse(self.req("Algorithm")?).ok_or_else(|| {
            AlibabaError::invalid(
                "Algorithm",
                "RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1 or SM2PKE",
            )
        })
    }

    fn algorithm(&self) -> Result<Option<Algorithm>, AlibabaError> {
        self.opt("Algorithm")
            .map(|s| {
                Algorithm::parse(s).ok_or_else(|| {
                    AlibabaError::invalid("Algorithm", "AES_GCM, AES_CBC or AES_ECB")
                })
            })
            .transpose()
    }

    fn padding(&self) -> Result<Option<PaddingMode>, AlibabaError> {
        self.opt("PaddingMode")
            .map(|s| {
                PaddingMode::parse(s).ok_or_else(|| {
                    AlibabaError::invalid("PaddingMode", "PKCS7_PADDING or NO_PADDING")
                })
            })
            .transpose()
    }
}

/// Checks a KeyId, alias or ARN: 1–512 of letters, digits and `-_/:.`.
pub fn check_key_ref(name: &str, s: &str) -> Result<(), AlibabaError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_KEY_REF_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b':' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AlibabaError::invalid(name, "not a KeyId, alias or ARN"))
    }
}

/// Checks an alias name: `alias/` then 1–255 of letters, digits, `_`, `-`,
/// `/`; the `alias/acs` prefix is reserved for cloud services.
pub fn check_alias_name(s: &str) -> Result<(), AlibabaError> {
    let rest = s.strip_prefix("alias/").unwrap_or("");
    let ok = (1..=255).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'))
        && !s.starts_with("alias/acs");
    if ok {
        Ok(())
    } else {
        Err(AlibabaError::value(
            codes::INVALID_ALIAS_NAME,
            "AliasName",
            "alias/ followed by 1-255 letters, digits, _, - or /; alias/acs is reserved",
        ))
    }
}

/// Parses an `EncryptionContext` JSON string: an object whose values are
/// strings, at most 8,192 characters.
pub fn parse_encryption_context(name: &str, s: &str) -> Result<EncryptionContext, AlibabaError> {
    let rules = context::ContextRules {
        max_chars: MAX_ENCRYPTION_CONTEXT_CHARS,
        strings_only: true,
    };
    context::parse(s, rules).map_err(|e| match e {
        context::ContextError::TooLong => AlibabaError::invalid(name, "at most 8192 characters"),
        _ => AlibabaError::invalid(name, "must be a JSON object of strings"),
    })
}

/// Parses `integer[unit]` (unit d, h, m or s; bare integer = seconds) into
/// seconds, 7–365 days.
pub fn parse_rotation_interval(s: &str) -> Result<RotationInterval, AlibabaError> {
    let bad = || {
        AlibabaError::value(
            codes::INVALID_ROTATION_INTERVAL,
            "RotationInterval",
            "integer[unit] with unit d, h, m or s, from 7 to 365 days",
        )
    };
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last() {
        Some(b'd') => (&s[..s.len() - 1], 86_400u64),
        Some(b'h') => (&s[..s.len() - 1], 3_600),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b's') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = n.checked_mul(mul).ok_or_else(bad)?;
    if (7 * 86_400..=365 * 86_400).contains(&secs) {
        Ok(RotationInterval(secs))
    } else {
        Err(bad())
    }
}

fn parse_tags(s: &str) -> Result<Vec<Tag>, AlibabaError> {
    let v: Value = serde_json::from_str(s)
        .map_err(|_| AlibabaError::invalid("Tags", "a JSON array of {TagKey, TagValue}"))?;
    let Value::Array(list) = v else {
        return Err(AlibabaError::invalid(
            "Tags",
            "a JSON array of {TagKey, TagValue}",
        ));
    };
    let mut out: Vec<Tag> = Vec::with_capacity(list.len());
    for t in list {
        let key = t.get("TagKey").and_then(Value::as_str);
        let value = t.get("TagValue").and_then(Value::as_str).unwrap_or("");
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(AlibabaError::invalid("Tags", "every tag needs a TagKey"));
        };
        if out.iter().any(|o| o.key == key) {
            return Err(AlibabaError::invalid("Tags", "a TagKey is listed twice"));
        }
        out.push(Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    Ok(out)
}

fn rotation(p: &Params<'_>, enabled: bool) -> Result<Option<RotationInterval>, AlibabaError> {
    match p.opt("RotationInterval") {
        Some(s) => parse_rotation_interval(s).map(Some),
        None if enabled => Err(AlibabaError::missing("RotationInterval")),
        None => Ok(None),
    }
}

fn aad(p: &Params<'_>) -> Result<Vec<u8>, AlibabaError> {
    let a = p.b64("Aad")?.unwrap_or_default();
    if a.len() > MAX_AAD_BYTES {
        return Err(AlibabaError::invalid("Aad", "at most 8192 bytes"));
    }
    Ok(a)
}

fn data_key_len(p: &Params<'_>) -> Result<u32, AlibabaError> {
    if p.opt("NumberOfBytes").is_some() {
        return p.u32_in("NumberOfBytes", 1, 1024, None);
    }
    match p.opt("KeySpec") {
        None | Some("AES_256") => Ok(32),
        Some("AES_128") => Ok(16),
        Some(_) => Err(AlibabaError::value(
            codes::INVALID_KEY_SPEC,
            "KeySpec",
            "AES_256 or AES_128",
        )),
    }
}

/// Parses and validates the parameters of `action`. `params` is the flat
/// list of query and form parameters; unknown names (the common signing
/// parameters, newer optional ones) are ignored.
pub fn parse_request(action: Action, params: &[(String, String)]) -> Result<Request, AlibabaError> {
    let p = Params::new(params)?;
    let dry_run = || p.bool_opt("DryRun").map(|b| b.unwrap_or(false));
    Ok(match action {
        Action::CreateKey => {
            let key_spec = match p.opt("KeySpec") {
                None => KeySpec::AliyunAes256,
                Some(s) => KeySpec::parse(s).ok_or_else(|| {
                    AlibabaError::value(codes::INVALID_KEY_SPEC, "KeySpec", "unknown key spec")
                })?,
            };
            let symmetric = matches!(
                key_spec,
                KeySpec::AliyunAes256
                    | KeySpec::AliyunAes128
                    | KeySpec::AliyunAes192
                    | KeySpec::AliyunSm4
            );
            let key_usage = match p.opt("KeyUsage") {
                None if symmetric || key_spec.as_str().starts_with("RSA") => {
                    KeyUsage::EncryptDecrypt
                }
                None => KeyUsage::SignVerify,
                Some(s) => KeyUsage::parse(s).ok_or_else(|| {
                    AlibabaError::value(
                        codes::INVALID_KEY_USAGE,
                        "KeyUsage",
                        "ENCRYPT/DECRYPT or SIGN/VERIFY",
                    )
                })?,
            };
            if symmetric && key_usage == KeyUsage::SignVerify {
                return Err(AlibabaError::value(
                    codes::INVALID_KEY_USAGE,
                    "KeyUsage",
                    "a symmetric key is ENCRYPT/DECRYPT",
                ));
            }
            if matches!(key_spec, KeySpec::EcP256 | KeySpec::EcP256K)
                && key_usage == KeyUsage::EncryptDecrypt
            {
                return Err(AlibabaError::value(
                    codes::INVALID_KEY_USAGE,
                    "KeyUsage",
                    "an EC_P256 / EC_P256K key is SIGN/VERIFY",
                ));
            }
            let origin = match p.opt("Origin") {
                None => Origin::AliyunKms,
                Some(s) => Origin::parse(s)
                    .ok_or_else(|| AlibabaError::invalid("Origin", "Aliyun_KMS or EXTERNAL"))?,
            };
            let protection_level = match p.opt("ProtectionLevel") {
                None => ProtectionLevel::Software,
                Some(s) => ProtectionLevel::parse(s)
                    .ok_or_else(|| AlibabaError::invalid("ProtectionLevel", "SOFTWARE or HSM"))?,
            };
            let description = p.opt("Description").map(str::to_string);
            if description
                .as_ref()
                .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
            {
                return Err(AlibabaError::invalid(
                    "Description",
                    "at most 8192 characters",
                ));
            }
            let enable = p.bool_opt("EnableAutomaticRotation")?.unwrap_or(false);
            Request::CreateKey(CreateKey {
                key_spec,
                key_usage,
                origin,
                protection_level,
                description,
                enable_automatic_rotation: enable,
                rotation_interval: rotation(&p, enable)?,
                tags: p
                    .opt("Tags")
                    .map(parse_tags)
                    .transpose()?
                    .unwrap_or_default(),
                dkms_instance_id: p.opt("DKMSInstanceId").map(str::to_string),
            })
        }
        Action::DescribeKey => Request::DescribeKey(p.key("KeyId")?),
        // Neither takes parameters of its own; others are ignored, as the
        // service does with parameters an action does not know.
        Action::DescribeRegions => Request::DescribeRegions,
        Action::DescribeService => Request::DescribeService,
        Action::ListAliasesByKeyId => Request::ListAliasesByKeyId(ListAliasesByKeyId {
            key: p.key("KeyId")?,
            page: p.page()?,
        }),
        Action::UpdateKeyDescription => {
            let key = p.key("KeyId")?;
            // Required, but may be empty: an empty Description removes the
            // old one (the documented way to delete it), so presence is
            // checked here, not through `opt`, which reads "" as absent.
            let description =
                p.0.get("Description")
                    .copied()
                    .ok_or_else(|| AlibabaError::missing("Description"))?;
            if description.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(AlibabaError::invalid(
                    "Description",
                    "at most 8192 characters",
                ));
            }
            Request::UpdateKeyDescription(UpdateKeyDescription {
                key,
                description: description.to_string(),
            })
        }
        Action::ListKeys => {
            let filters = match p.opt("Filters") {
                Some(f) if !f.trim().is_empty() => parse_filters(f)?,
                _ => Vec::new(),
            };
            Request::ListKeys(ListKeys {
                page: p.page()?,
                filters,
            })
        }
        Action::EnableKey => Request::EnableKey(p.key("KeyId")?),
        Action::DisableKey => Request::DisableKey(p.key("KeyId")?),
        Action::ScheduleKeyDeletion => Request::ScheduleKeyDeletion(ScheduleKeyDeletion {
            key: p.key("KeyId")?,
            pending_window_in_days: p.u32_in("PendingWindowInDays", 7, 366, None)?,
        }),
        Action::CancelKeyDeletion => Request::CancelKeyDeletion(p.key("KeyId")?),
        Action::CreateAlias | Action::UpdateAlias => {
            let alias_name = p.req("AliasName")?;
            check_alias_name(alias_name)?;
            let b = AliasBinding {
                alias_name: alias_name.to_string(),
                key: p.key("KeyId")?,
            };
            if action == Action::CreateAlias {
                Request::CreateAlias(b)
            } else {
                Request::UpdateAlias(b)
            }
        }
        Action::DeleteAlias => {
            let alias_name = p.req("AliasName")?;
            check_alias_name(alias_name)?;
            Request::DeleteAlias(DeleteAlias {
                alias_name: alias_name.to_string(),
            })
        }
        Action::ListAliases => Request::ListAliases(p.page()?),
        Action::CreateKeyVersion => Request::CreateKeyVersion(p.key("KeyId")?),
        Action::ListKeyVersions => Request::ListKeyVersions(ListKeyVersions {
            key: p.key("KeyId")?,
            page: p.page()?,
        }),
        Action::DescribeKeyVersion => {
            let key = p.key("KeyId")?;
            let v = p.req("KeyVersionId")?;
            check_key_ref("KeyVersionId", v)?;
            Request::DescribeKeyVersion(DescribeKeyVersion {
                key,
                key_version_id: v.to_string(),
            })
        }
        Action::UpdateRotationPolicy => {
            let key = p.key("KeyId")?;
            let enable = p
                .bool_opt("EnableAutomaticRotation")?
                .ok_or_else(|| AlibabaError::missing("EnableAutomaticRotation"))?;
            Request::UpdateRotationPolicy(UpdateRotationPolicy {
                key,
                enable_automatic_rotation: enable,
                rotation_interval: rotation(&p, enable)?,
            })
        }
        Action::Encrypt => {
            let key = p.key("KeyId")?;
            let plaintext = p.req("Plaintext")?;
            if plaintext.len() > MAX_ENCRYPT_PLAINTEXT_BYTES {
                return Err(AlibabaError::invalid(
                    "Plaintext",
                    "at most 6 KB; encrypt a data key instead (envelope encryption)",
                ));
            }
            Request::Encrypt(Encrypt {
                key,
                plaintext: SecretBytes::new(plaintext.as_bytes().to_vec()),
                encryption_context: p.context("EncryptionContext")?,
                dry_run: dry_run()?,
            })
        }
        Action::Decrypt => Request::Decrypt(Decrypt {
            ciphertext_blob: p.req("CiphertextBlob")?.to_string(),
            encryption_context: p.context("EncryptionContext")?,
            dry_run: dry_run()?,
        }),
        Action::ReEncrypt => Request::ReEncrypt(ReEncrypt {
            ciphertext_blob: p.req("CiphertextBlob")?.to_string(),
            destination_key: p.key("DestinationKeyId")?,
            source_encryption_context: p.context("SourceEncryptionContext")?,
            destination_encryption_context: p.context("DestinationEncryptionContext")?,
            source_key_id: p.opt("SourceKeyId").map(str::to_string),
            source_key_version_id: p.opt("SourceKeyVersionId").map(str::to_string),
            source_encryption_algorithm: p.opt("SourceEncryptionAlgorithm").map(str::to_string),
            dry_run: dry_run()?,
        }),
        Action::GenerateDataKey | Action::GenerateDataKeyWithoutPlaintext => {
            let g = GenerateDataKey {
                key: p.key("KeyId")?,
                number_of_bytes: data_key_len(&p)?,
                encryption_context: p.context("EncryptionContext")?,
                dry_run: dry_run()?,
            };
            if action == Action::GenerateDataKey {
                Request::GenerateDataKey(g)
            } else {
                Request::GenerateDataKeyWithoutPlaintext(g)
            }
        }
        Action::AdvanceEncrypt => {
            let key = p.key("KeyId")?;
            let plaintext = p
                .b64("Plaintext")?
                .ok_or_else(|| AlibabaError::missing("Plaintext"))?;
            let plaintext = SecretBytes::new(plaintext);
            Request::AdvanceEncrypt(check_advance_encrypt(AdvanceEncrypt {
                key,
                plaintext,
                algorithm: p.algorithm()?,
                iv: p.b64("Iv")?,
                aad: aad(&p)?,
                padding: p.padding()?,
            })?)
        }
        Action::AdvanceDecrypt => {
            let blob = p
                .b64("CiphertextBlob")?
                .ok_or_else(|| AlibabaError::missing("CiphertextBlob"))?;
            let key = match p.opt("KeyId") {
                Some(_) => Some(p.key("KeyId")?),
                None => None,
            };
            Request::AdvanceDecrypt(check_advance_decrypt(AdvanceDecrypt {
                ciphertext_blob: blob,
                key,
                algorithm: p.algorithm()?,
                iv: p.b64("Iv")?,
                aad: aad(&p)?,
                padding: p.padding()?,
            })?)
        }
        Action::AdvanceGenerateDataKey => Request::AdvanceGenerateDataKey(AdvanceGenerateDataKey {
            key: p.key("KeyId")?,
            number_of_bytes: p.u32_in("NumberOfBytes", 1, 1024, Some(32))?,
            aad: aad(&p)?,
        }),
        Action::GetPublicKey => Request::GetPublicKey(p.key_version()?),
        Action::AsymmetricSign => Request::AsymmetricSign(AsymmetricSign {
            version: p.key_version()?,
            algorithm: p.sign_algorithm()?,
            digest: p.digest()?,
        }),
        Action::AsymmetricVerify => Request::AsymmetricVerify(AsymmetricVerify {
            version: p.key_version()?,
            algorithm: p.sign_algorithm()?,
            digest: p.digest()?,
            value: p.b64_req("Value", MAX_ASYMMETRIC_BLOB_BYTES)?,
        }),
        Action::AsymmetricEncrypt => Request::AsymmetricEncrypt(AsymmetricEncrypt {
            version: p.key_version()?,
            algorithm: p.encrypt_algorithm()?,
            plaintext: SecretBytes::new(p.b64_req("Plaintext", MAX_ASYMMETRIC_PLAINTEXT_BYTES)?),
        }),
        Action::AsymmetricDecrypt => Request::AsymmetricDecrypt(AsymmetricDecrypt {
            version: p.key_version()?,
            algorithm: p.encrypt_algorithm()?,
            ciphertext_blob: p.b64_req("CiphertextBlob", MAX_ASYMMETRIC_BLOB_BYTES)?,
        }),
    })
}

/// The checks AdvanceEncrypt's parameters share across both faces: plaintext
/// 1 byte – 6 KB, Iv length for the algorithm, Aad ≤ 8,192 bytes,
/// NO_PADDING only with whole blocks.
pub fn check_advance_encrypt(r: AdvanceEncrypt) -> Result<AdvanceEncrypt, AlibabaError> {
    if r.plaintext.is_empty() {
        return Err(AlibabaError::missing("Plaintext"));
    }
    if r.plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(AlibabaError::invalid(
            "Plaintext",
            "at most 6 KB per AdvanceEncrypt; encrypt a data key instead (envelope encryption)",
        ));
    }
    if r.aad.len() > MAX_AAD_BYTES {
        return Err(AlibabaError::invalid("Aad", "at most 8192 bytes"));
    }
    let alg = r.algorithm.unwrap_or(Algorithm::AesGcm);
    if let Some(iv) = &r.iv {
        if alg != Algorithm::AesEcb && iv.len() != alg.iv_len() {
            return Err(AlibabaError::invalid(
                "Iv",
                &format!("{} bytes for {}", alg.iv_len(), alg.as_str()),
            ));
        }
    }
    if alg != Algorithm::AesGcm
        && r.padding == Some(PaddingMode::NoPadding)
        && r.plaintext.len() % 16 != 0
    {
        return Err(AlibabaError::invalid(
            "Plaintext",
            "with NO_PADDING the length must be a multiple of 16 bytes",
        ));
    }
    Ok(r)
}

/// The checks AdvanceDecrypt's parameters share across both faces.
pub fn check_advance_decrypt(r: AdvanceDecrypt) -> Result<AdvanceDecrypt, AlibabaError> {
    if r.ciphertext_blob.is_empty() {
        return Err(AlibabaError::missing("CiphertextBlob"));
    }
    if r.ciphertext_blob.len() > MAX_BLOB_BYTES.max(MAX_PLAINTEXT_BYTES * 2) {
        return Err(AlibabaError::invalid(
            "CiphertextBlob",
            "too large for a 6 KB plaintext",
        ));
    }
    if r.aad.len() > MAX_AAD_BYTES {
        return Err(AlibabaError::invalid("Aad", "at most 8192 bytes"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let e = AlibabaError::key_not_found();
        let b = error_body("rid", "kms.example", &e);
        assert_eq!(e.status, 404);
        assert_eq!(b["Code"], "Forbidden.KeyNotFound");
        assert_eq!(b["RequestId"], "rid");
        assert_eq!(b["HostId"], "kms.example");
        assert!(b["Message"].as_str().unwrap().contains("not found"));
        assert!(!b["Recommend"].as_str().unwrap().is_empty());
        let t = AlibabaError::throttled();
        assert_eq!((t.code, t.status), ("Rejected.Throttling", 429));
        let s = success_body("rid", serde_json::json!({"KeyId": "k"}));
        assert_eq!(s, serde_json::json!({"KeyId": "k", "RequestId": "rid"}));
    }

    #[test]
    fn quota_classes_limit_at_the_documented_rates() {
        let clock = Arc::new(ManualClock::default());
        let l = crate::ratelimit::RateLimiter::from_quotas(clock.clone(), quota_table());
        for (action, rate) in [
            ("CreateKey", 10u32),
            ("DescribeKey", 50),
            ("EnableKey", 30),
            ("Encrypt", 1000),
            ("AsymmetricSign", 200),
        ] {
            for i in 0..rate {
                assert!(l.check("ak", action).is_ok(), "{action} #{i}");
            }
            assert!(l.check("ak", action).is_err(), "{action} over quota");
        }
        // Encrypt and AdvanceDecrypt share the symmetric bucket (spent above).
        assert!(l.check("ak", "AdvanceDecrypt").is_err());
        // Another caller has its own buckets.
        assert!(l.check("other", "Encrypt").is_ok());
        clock.advance(std::time::Duration::from_secs(1));
        assert!(l.check("ak", "AdvanceDecrypt").is_ok());
        assert_eq!(class_of(Action::ListKeyVersions), QuotaClass::Read);
        assert_eq!(class_of(Action::UpdateRotationPolicy), QuotaClass::Write);
    }

    #[test]
    fn actions_and_version() {
        assert_eq!(parse_action("Encrypt").unwrap(), Action::Encrypt);
        let e = parse_action("RotateKey").unwrap_err();
        assert_eq!((e.code, e.status), ("InvalidAction.NotFound", 404));
        assert!(check_version("2016-01-20").is_ok());
        assert_eq!(
            check_version("2019-01-18").unwrap_err().code,
            "InvalidVersion"
        );
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(*a));
        }
    }

    #[test]
    fn sdk_demo_actions_parse_with_their_documented_parameters() {
        // DescribeRegions and DescribeService take no parameters of their own
        assert_eq!(
            parse_request(Action::DescribeRegions, &kv(&[])).unwrap(),
            Request::DescribeRegions
        );
        assert_eq!(
            parse_request(Action::DescribeService, &kv(&[("RegionId", "x")])).unwrap(),
            Request::DescribeService
        );
        for a in [
            "DescribeRegions",
            "DescribeService",
            "ListAliasesByKeyId",
            "UpdateKeyDescription",
        ] {
            assert_eq!(parse_action(a).unwrap().name(), a);
        }
        assert_eq!(class_of(Action::DescribeRegions), QuotaClass::Read);
        assert_eq!(class_of(Action::ListAliasesByKeyId), QuotaClass::Read);
        assert_eq!(class_of(Action::UpdateKeyDescription), QuotaClass::Write);

        let r = parse_request(
            Action::ListAliasesByKeyId,
            &kv(&[("KeyId", "k1"), ("PageNumber", "2"), ("PageSize", "5")]),
        )
        .unwrap();
        let Request::ListAliasesByKeyId(l) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (l.key.key_id.as_str(), l.page.number, l.page.size),
            ("k1", 2, 5)
        );
        let e = parse_request(Action::ListAliasesByKeyId, &kv(&[])).unwrap_err();
        assert_eq!((e.code, e.status), ("MissingParameter", 400));
        let e = parse_request(Action::ListAliasesByKeyId, &kv(&[("KeyId", "a b")])).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        let e = parse_request(
            Action::ListAliasesByKeyId,
            &kv(&[("KeyId", "k1"), ("PageSize", "101")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameter");

        let r = parse_request(
            Action::UpdateKeyDescription,
            &kv(&[("KeyId", "k1"), ("Description", "new words")]),
        )
        .unwrap();
        let Request::UpdateKeyDescription(u) = r else {
            panic!("{r:?}")
        };
        assert_eq!(u.description, "new words");
        // present but empty clears the description; absent is missing
        let r = parse_request(
            Action::UpdateKeyDescription,
            &kv(&[("KeyId", "k1"), ("Description", "")]),
        )
        .unwrap();
        let Request::UpdateKeyDescription(u) = r else {
            panic!("{r:?}")
        };
        assert_eq!(u.description, "");
        let e = parse_request(Action::UpdateKeyDescription, &kv(&[("KeyId", "k1")])).unwrap_err();
        assert_eq!(e.code, "MissingParameter");
        assert!(e.message.contains("Description"), "{e:?}");
        let e =
            parse_request(Action::UpdateKeyDescription, &kv(&[("Description", "d")])).unwrap_err();
        assert!(e.message.contains("KeyId"), "{e:?}");
        let long = "d".repeat(MAX_DESCRIPTION_CHARS + 1);
        let e = parse_request(
            Action::UpdateKeyDescription,
            &kv(&[("KeyId", "k1"), ("Description", &long)]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
    }

    #[test]
    fn encrypt_with_context_and_limits() {
        let r = parse_request(
            Action::Encrypt,
            &kv(&[
                ("KeyId", "alias/app"),
                ("Plaintext", "aGVsbG8="),
                ("EncryptionContext", r#"{"z":"1", "a":"b c"}"#),
                ("Signature", "ignored"),
            ]),
        )
        .unwrap();
        let Request::Encrypt(e) = r else { panic!() };
        assert!(e.key.is_alias());
        assert_eq!(e.plaintext.expose(), b"aGVsbG8=");
        assert_eq!(
            e.encryption_context.unwrap().canonical,
            r#"{"a":"b c","z":"1"}"#
        );
        let big = "x".repeat(6 * 1024 + 1);
        let e = parse_request(Action::Encrypt, &kv(&[("KeyId", "k"), ("Plaintext", &big)]))
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        let e = parse_request(Action::Encrypt, &kv(&[("KeyId", "k")])).unwrap_err();
        assert_eq!((e.code, e.status), ("MissingParameter", 400));
        for bad in [r#"["a"]"#, r#"{"a":1}"#, "not json"] {
            let e = parse_request(
                Action::Encrypt,
                &kv(&[
                    ("KeyId", "k"),
                    ("Plaintext", "p"),
                    ("EncryptionContext", bad),
                ]),
            )
            .unwrap_err();
            assert_eq!(e.code, "InvalidParameter", "{bad}");
        }
        let e = parse_request(
            Action::Encrypt,
            &kv(&[("KeyId", "k"), ("KeyId", "j"), ("Plaintext", "p")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
    }

    #[test]
    fn generate_data_key_sizes() {
        let n = |pairs: &[(&str, &str)]| match parse_request(Action::GenerateDataKey, &kv(pairs)) {
            Ok(Request::GenerateDataKey(g)) => Ok(g.number_of_bytes),
            Ok(_) => panic!(),
            Err(e) => Err(e.code),
        };
        assert_eq!(n(&[("KeyId", "k")]), Ok(32));
        assert_eq!(n(&[("KeyId", "k"), ("KeySpec", "AES_128")]), Ok(16));
        assert_eq!(
            n(&[
                ("KeyId", "k"),
                ("KeySpec", "AES_128"),
                ("NumberOfBytes", "64")
            ]),
            Ok(64)
        );
        assert_eq!(
            n(&[("KeyId", "k"), ("NumberOfBytes", "1025")]),
            Err("InvalidParameter")
        );
        assert_eq!(
            n(&[("KeyId", "k"), ("KeySpec", "AES_512")]),
            Err("InvalidParameter.KeySpec")
        );
    }

    #[test]
    fn management_parameters() {
        let r = parse_request(
            Action::CreateKey,
            &kv(&[
                ("EnableAutomaticRotation", "true"),
                ("RotationInterval", "30d"),
                ("Tags", r#"[{"TagKey":"env","TagValue":"test"}]"#),
            ]),
        )
        .unwrap();
        let Request::CreateKey(c) = r else { panic!() };
        assert_eq!(c.key_spec, KeySpec::AliyunAes256);
        assert_eq!(c.key_usage, KeyUsage::EncryptDecrypt);
        assert_eq!(c.rotation_interval, Some(RotationInterval(30 * 86_400)));
        assert_eq!(c.tags.len(), 1);
        let e = parse_request(
            Action::CreateKey,
            &kv(&[("EnableAutomaticRotation", "true")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "MissingParameter");
        for (iv, ok) in [
            ("604800s", true),
            ("7d", true),
            ("6d", false),
            ("366d", false),
            ("7w", false),
            ("d", false),
        ] {
            assert_eq!(parse_rotation_interval(iv).is_ok(), ok, "{iv}");
        }
        let e = parse_request(
            Action::CreateKey,
            &kv(&[("KeySpec", "Aliyun_AES_256"), ("KeyUsage", "SIGN/VERIFY")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameter.KeyUsage");
        for (days, ok) in [("7", true), ("366", true), ("6", false), ("367", false)] {
            let r = parse_request(
                Action::ScheduleKeyDeletion,
                &kv(&[("KeyId", "k"), ("PendingWindowInDays", days)]),
            );
            assert_eq!(r.is_ok(), ok, "{days}");
        }
        for (alias, ok) in [
            ("alias/app", true),
            ("alias/a/b-c_d", true),
            ("app", false),
            ("alias/", false),
            ("alias/acs-thing", false),
            ("alias/sp ace", false),
        ] {
            let r = parse_request(
                Action::CreateAlias,
                &kv(&[("AliasName", alias), ("KeyId", "k")]),
            );
            assert_eq!(r.is_ok(), ok, "{alias}");
        }
        let r = parse_request(
            Action::ListKeyVersions,
            &kv(&[("KeyId", "k"), ("PageSize", "100")]),
        )
        .unwrap();
        assert_eq!(
            r,
            Request::ListKeyVersions(ListKeyVersions {
                key: KeyRef { key_id: "k".into() },
                page: Page {
                    number: 1,
                    size: 100
                }
            })
        );
        assert!(parse_request(Action::ListAliases, &kv(&[("PageSize", "101")])).is_err());
        let e = parse_request(Action::UpdateRotationPolicy, &kv(&[("KeyId", "k")])).unwrap_err();
        assert_eq!(e.code, "MissingParameter");
    }

    #[test]
    fn asymmetric_parameters_need_a_version_and_a_sha256_digest() {
        let digest = B64.encode([1u8; 32]);
        let digest = digest.as_str();
        let r = parse_request(
            Action::AsymmetricSign,
            &kv(&[
                ("KeyId", "k"),
                ("KeyVersionId", "k-v1"),
                ("Algorithm", "RSA_PSS_SHA_256"),
                ("Digest", digest),
            ]),
        )
        .unwrap();
        let Request::AsymmetricSign(a) = r else {
            panic!()
        };
        assert_eq!(a.version.key_version_id, "k-v1");
        assert_eq!(a.algorithm, SignAlgorithm::RsaPssSha256);
        assert_eq!(a.digest, vec![1u8; 32]);
        let sign = |pairs: &[(&str, &str)]| {
            parse_request(Action::AsymmetricSign, &kv(pairs))
                .map(|_| ())
                .map_err(|e| e.code)
        };
        let short = B64.encode([1u8; 31]);
        let short = short.as_str();
        let long = B64.encode([1u8; 33]);
        let long = long.as_str();
        for (pairs, code) in [
            (
                vec![
                    ("KeyId", "k"),
                    ("Algorithm", "RSA_PSS_SHA_256"),
                    ("Digest", digest),
                ],
                "MissingParameter",
            ),
            (
                vec![("KeyId", "k"), ("KeyVersionId", "k-v1"), ("Digest", digest)],
                "MissingParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("KeyVersionId", "k-v1"),
                    ("Algorithm", "RSA_PSS_SHA_256"),
                ],
                "MissingParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("KeyVersionId", "k-v1"),
                    ("Algorithm", "RSA_PSS_SHA_512"),
                    ("Digest", digest),
                ],
                "InvalidParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("KeyVersionId", "k-v1"),
                    ("Algorithm", "ECDSA_SHA_256"),
                    ("Digest", short),
                ],
                "InvalidParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("KeyVersionId", "k-v1"),
                    ("Algorithm", "ECDSA_SHA_256"),
                    ("Digest", long),
                ],
                "InvalidParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("KeyVersionId", "k v1"),
                    ("Algorithm", "ECDSA_SHA_256"),
                    ("Digest", digest),
                ],
                "InvalidParameter",
            ),
        ] {
            assert_eq!(sign(&pairs), Err(code), "{pairs:?}");
        }
        let e = parse_request(
            Action::AsymmetricVerify,
            &kv(&[
                ("KeyId", "k"),
                ("KeyVersionId", "k-v1"),
                ("Algorithm", "SM2DSA"),
                ("Digest", digest),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.code, "MissingParameter", "Value is required");
        let r = parse_request(
            Action::AsymmetricEncrypt,
            &kv(&[
                ("KeyId", "k"),
                ("KeyVersionId", "k-v1"),
                ("Algorithm", "RSAES_OAEP_SHA_1"),
                ("Plaintext", "SGVsbG8gd29ybGQ="),
            ]),
        )
        .unwrap();
        let Request::AsymmetricEncrypt(a) = r else {
            panic!()
        };
        assert_eq!(a.plaintext.expose(), b"Hello world");
        assert_eq!(a.algorithm, EncryptAlgorithm::RsaesOaepSha1);
        let too_long = B64.encode(vec![0u8; MAX_ASYMMETRIC_PLAINTEXT_BYTES + 1]);
        for (alg, pt) in [
            ("RSAES_PKCS1_V1_5", "eA=="),
            ("RSAES_OAEP_SHA_256", too_long.as_str()),
        ] {
            let e = parse_request(
                Action::AsymmetricEncrypt,
                &kv(&[
                    ("KeyId", "k"),
                    ("KeyVersionId", "k-v1"),
                    ("Algorithm", alg),
                    ("Plaintext", pt),
                ]),
            )
            .unwrap_err();
            assert_eq!(e.code, "InvalidParameter", "{alg}");
        }
        let r = parse_request(
            Action::AsymmetricDecrypt,
            &kv(&[
                ("KeyId", "alias/a"),
                ("KeyVersionId", "k-v1"),
                ("Algorithm", "RSAES_OAEP_SHA_256"),
                ("CiphertextBlob", "AAEC"),
            ]),
        )
        .unwrap();
        let Request::AsymmetricDecrypt(d) = r else {
            panic!()
        };
        assert_eq!(d.ciphertext_blob, vec![0, 1, 2]);
        assert!(matches!(
            parse_request(
                Action::GetPublicKey,
                &kv(&[("KeyId", "k"), ("KeyVersionId", "k-v1")])
            ),
            Ok(Request::GetPublicKey(_))
        ));
        // the documented classes: GetPublicKey is a read, the rest asymmetric crypto
        assert_eq!(class_of(Action::GetPublicKey), QuotaClass::Read);
        for a in [
            Action::AsymmetricSign,
            Action::AsymmetricVerify,
            Action::AsymmetricEncrypt,
            Action::AsymmetricDecrypt,
        ] {
            assert_eq!(class_of(a), QuotaClass::AsymmetricCrypto, "{a:?}");
        }
        let e = parse_request(
            Action::CreateKey,
            &kv(&[("KeySpec", "EC_P256"), ("KeyUsage", "ENCRYPT/DECRYPT")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameter.KeyUsage");
        let Ok(Request::CreateKey(c)) =
            parse_request(Action::CreateKey, &kv(&[("KeySpec", "RSA_2048")]))
        else {
            panic!()
        };
        assert_eq!(c.key_usage, KeyUsage::EncryptDecrypt);
    }

    #[test]
    fn advance_parameters_are_base64_and_checked() {
        let r = parse_request(
            Action::AdvanceEncrypt,
            &kv(&[
                ("KeyId", "k"),
                ("Plaintext", "aGVsbG8gd29ybGQ="),
                ("Algorithm", "AES_CBC"),
                ("Iv", "AAECAwQFBgcICQoLDA0ODw=="),
                ("PaddingMode", "PKCS7_PADDING"),
            ]),
        )
        .unwrap();
        let Request::AdvanceEncrypt(a) = r else {
            panic!()
        };
        assert_eq!(a.plaintext.expose(), b"hello world");
        assert_eq!(a.iv.as_deref(), Some(&(0u8..16).collect::<Vec<_>>()[..]));
        assert_eq!(a.algorithm, Some(Algorithm::AesCbc));
        for (pairs, code) in [
            (
                vec![("KeyId", "k"), ("Plaintext", "%%%")],
                "InvalidParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("Plaintext", "YQ=="),
                    ("Algorithm", "AES_XTS"),
                ],
                "InvalidParameter",
            ),
            (
                vec![("KeyId", "k"), ("Plaintext", "YQ=="), ("Iv", "AAECAw==")],
                "InvalidParameter",
            ),
            (
                vec![
                    ("KeyId", "k"),
                    ("Plaintext", "YQ=="),
                    ("Algorithm", "AES_ECB"),
                    ("PaddingMode", "NO_PADDING"),
                ],
                "InvalidParameter",
            ),
            (vec![("KeyId", "k")], "MissingParameter"),
        ] {
            let e = parse_request(Action::AdvanceEncrypt, &kv(&pairs)).unwrap_err();
            assert_eq!(e.code, code, "{pairs:?}");
        }
        let big = B64.encode(vec![0u8; MAX_PLAINTEXT_BYTES + 1]);
        let e = parse_request(
            Action::AdvanceEncrypt,
            &kv(&[("KeyId", "k"), ("Plaintext", &big)]),
        )
        .unwrap_err();
        assert!(e.message.contains("6 KB"));
        let r = parse_request(
            Action::AdvanceDecrypt,
            &kv(&[("CiphertextBlob", "c2VhbGdhdGU+/w=="), ("Aad", "YWFk")]),
        )
        .unwrap();
        let Request::AdvanceDecrypt(d) = r else {
            panic!()
        };
        assert_eq!(d.ciphertext_blob, b"sealgate>\xff");
        assert_eq!(d.aad, b"aad");
        let r = parse_request(Action::AdvanceGenerateDataKey, &kv(&[("KeyId", "k")])).unwrap();
        let Request::AdvanceGenerateDataKey(g) = r else {
            panic!()
        };
        assert_eq!(g.number_of_bytes, 32);
    }
}
