//! The key model and its state machine, as data (sozu habit): key metadata,
//! the commands that change it, and `State::plan`, which turns one change
//! into a list of record writes without doing any I/O.
//!
//! PURE: no filesystem, no clock, no RNG. New key ids and sealed material
//! come in through [`MaterialSource`]; time comes in as `now` (unix seconds).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::asymmetric::AsymmetricSpec;
use super::provider::KeyError;

/// Longest alias (characters).
pub const ALIAS_MAX_LEN: usize = 60;
/// Longest description (bytes).
pub const DESCRIPTION_MAX_BYTES: usize = 1024;
/// Shortest and longest automatic rotation period (days).
pub const ROTATE_DAYS_RANGE: std::ops::RangeInclusive<u32> = 7..=365;
/// Default automatic rotation period (days).
pub const DEFAULT_ROTATE_DAYS: u32 = 365;
/// Shortest and longest deletion pending window (days).
pub const PENDING_WINDOW_DAYS_RANGE: std::ops::RangeInclusive<u32> = 7..=30;
/// Longest tag key (characters).
pub const TAG_KEY_MAX_LEN: usize = 127;
/// Longest tag value (characters).
pub const TAG_VALUE_MAX_LEN: usize = 255;
/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// A CMK's globally unique id: a UUID, shown in its hyphenated lowercase form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(uuid::Uuid);

impl KeyId {
    /// A fresh random (v4) id.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
    /// The id from its 16 raw bytes (as carried in envelopes and blobs).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    /// Parses the textual UUID form; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0.hyphenated())
    }
}

/// What a key's material is (the spec half of a [`KeyUsage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// AES-256 (symmetric).
    Aes256,
    /// AES-128 (symmetric).
    Aes128,
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// SM2 (no key of it can be made here).
    Sm2,
}

/// What a key is for (the purpose half of a [`KeyUsage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Encryption and decryption.
    EncryptDecrypt,
    /// Signing and verification.
    SignVerify,
}

/// What a CMK is for and what material it holds: a [`KeySpec`] ×
/// [`KeyPurpose`] the store can hold ([`KeyUsage::parts`]). Its stored
/// spelling is Tencent's `KeyUsage` name, kept so existing stores and
/// backups load (Tencent's `KeyUsage`
/// values, plus the usages the other faces need: AES-128 symmetric keys and
/// RSA-4096 signing keys). Every usage but the SM2 ones can be created; SM2
/// has no well-kept Rust implementation (see [`super::asymmetric`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KeyUsage {
    /// Symmetric AES-256 encryption and decryption (the default).
    #[default]
    #[serde(rename = "ENCRYPT_DECRYPT")]
    EncryptDecrypt,
    /// RSA-2048 asymmetric decryption.
    #[serde(rename = "ASYMMETRIC_DECRYPT_RSA_2048")]
    AsymmetricDecryptRsa2048,
    /// SM2 asymmetric decryption.
    #[serde(rename = "ASYMMETRIC_DECRYPT_SM2")]
    AsymmetricDecryptSm2,
    /// SM2 signing and verification.
    #[serde(rename = "ASYMMETRIC_SIGN_VERIFY_SM2")]
    AsymmetricSignVerifySm2,
    /// RSA-2048 signing and verification.
    #[serde(rename = "ASYMMETRIC_SIGN_VERIFY_RSA_2048")]
    AsymmetricSignVerifyRsa2048,
    /// ECC signing and verification.
    #[serde(rename = "ASYMMETRIC_SIGN_VERIFY_ECC")]
    AsymmetricSignVerifyEcc,
    /// ECDSA P-384 signing and verification.
    #[serde(rename = "ASYMMETRIC_SIGN_VERIFY_ECDSA384")]
    AsymmetricSignVerifyEcdsa384,
    /// Symmetric AES-128-GCM encryption (Infisical `aes-128-gcm`, Alibaba
    /// `Aliyun_AES_128`); not a Tencent usage.
    #[serde(rename = "ENCRYPT_DECRYPT_AES_128")]
    EncryptDecryptAes128,
    /// RSA-4096 signing and verification (Infisical `RSA_4096`); not a
    /// Tencent usage.
    #[serde(rename = "ASYMMETRIC_SIGN_VERIFY_RSA_4096")]
    AsymmetricSignVerifyRsa4096,
    /// RSA-3072 decryption (Alibaba `RSA_3072` ENCRYPT/DECRYPT); not Tencent.
    #[serde(rename = "ASYMMETRIC_DECRYPT_RSA_3072")]
    AsymmetricDecryptRsa3072,
    /// RSA-3072 signing (Alibaba `RSA_3072` SIGN/VERIFY); not Tencent.
    #[serde(rename = "ASYMMETRIC_SIGN_VERIFY_RSA_3072")]
    AsymmetricSignVerifyRsa3072,
}

impl KeyUsage {
    /// Every usage, in documentation order.
    pub const ALL: [KeyUsage; 11] = [
        KeyUsage::EncryptDecrypt,
        KeyUsage::AsymmetricDecryptRsa2048,
        KeyUsage::AsymmetricDecryptSm2,
        KeyUsage::AsymmetricSignVerifySm2,
        KeyUsage::AsymmetricSignVerifyRsa2048,
        KeyUsage::AsymmetricSignVerifyEcc,
        KeyUsage::AsymmetricSignVerifyEcdsa384,
        KeyUsage::EncryptDecryptAes128,
        KeyUsage::AsymmetricSignVerifyRsa4096,
        KeyUsage::AsymmetricDecryptRsa3072,
        KeyUsage::AsymmetricSignVerifyRsa3072,
    ];

    /// The wire name, e.g. `ENCRYPT_DECRYPT`.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyUsage::EncryptDecrypt => "ENCRYPT_DECRYPT",
            KeyUsage::AsymmetricDecryptRsa2048 => "ASYMMETRIC_DECRYPT_RSA_2048",
            KeyUsage::AsymmetricDecryptSm2 => "ASYMMETRIC_DECRYPT_SM2",
            KeyUsage::AsymmetricSignVerifySm2 => "ASYMMETRIC_SIGN_VERIFY_SM2",
            KeyUsage::AsymmetricSignVerifyRsa2048 => "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
            KeyUsage::AsymmetricSignVerifyEcc => "ASYMMETRIC_SIGN_VERIFY_ECC",
            KeyUsage::AsymmetricSignVerifyEcdsa384 => "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
            KeyUsage::EncryptDecryptAes128 => "ENCRYPT_DECRYPT_AES_128",
            KeyUsage::AsymmetricSignVerifyRsa4096 => "ASYMMETRIC_SIGN_VERIFY_RSA_4096",
            KeyUsage::AsymmetricDecryptRsa3072 => "ASYMMETRIC_DECRYPT_RSA_3072",
            KeyUsage::AsymmetricSignVerifyRsa3072 => "ASYMMETRIC_SIGN_VERIFY_RSA_3072",
        }
    }

    /// What the key's material is and what it is for, in sealgate's own
    /// terms: each face translates these to its dialect's names.
    pub fn parts(self) -> (KeySpec, KeyPurpose) {
        use KeyPurpose::{EncryptDecrypt as Enc, SignVerify as Sign};
        match self {
            KeyUsage::EncryptDecrypt => (KeySpec::Aes256, Enc),
            KeyUsage::EncryptDecryptAes128 => (KeySpec::Aes128, Enc),
            KeyUsage::AsymmetricDecryptRsa2048 => (KeySpec::Rsa2048, Enc),
            KeyUsage::AsymmetricDecryptRsa3072 => (KeySpec::Rsa3072, Enc),
            KeyUsage::AsymmetricDecryptSm2 => (KeySpec::Sm2, Enc),
            KeyUsage::AsymmetricSignVerifyRsa2048 => (KeySpec::Rsa2048, Sign),
            KeyUsage::AsymmetricSignVerifyRsa3072 => (KeySpec::Rsa3072, Sign),
            KeyUsage::AsymmetricSignVerifyRsa4096 => (KeySpec::Rsa4096, Sign),
            KeyUsage::AsymmetricSignVerifyEcc => (KeySpec::EcP256, Sign),
            KeyUsage::AsymmetricSignVerifyEcdsa384 => (KeySpec::EcP384, Sign),
            KeyUsage::AsymmetricSignVerifySm2 => (KeySpec::Sm2, Sign),
        }
    }

    /// The usage of a spec and purpose, if the store has one (no AES key
    /// signs; no RSA-4096, P-256 or P-384 key decrypts).
    pub fn from_parts(spec: KeySpec, purpose: KeyPurpose) -> Option<KeyUsage> {
        KeyUsage::ALL
            .into_iter()
            .find(|u| u.parts() == (spec, purpose))
    }

    /// True for the symmetric usages (32 bytes of material per version).
    pub fn is_symmetric(&self) -> bool {
        matches!(
            self,
            KeyUsage::EncryptDecrypt | KeyUsage::EncryptDecryptAes128
        )
    }

    /// The private key an asymmetric usage holds; `None` for the symmetric
    /// usages and for SM2 (not served).
    pub fn asymmetric_spec(&self) -> Option<AsymmetricSpec> {
        match self {
            KeyUsage::AsymmetricDecryptRsa2048 | KeyUsage::AsymmetricSignVerifyRsa2048 => {
                Some(AsymmetricSpec::Rsa2048)
            }
            KeyUsage::AsymmetricSignVerifyRsa4096 => Some(AsymmetricSpec::Rsa4096),
            KeyUsage::AsymmetricDecryptRsa3072 | KeyUsage::AsymmetricSignVerifyRsa3072 => {
                Some(AsymmetricSpec::Rsa3072)
            }
            KeyUsage::AsymmetricSignVerifyEcc => Some(AsymmetricSpec::EcP256),
            KeyUsage::AsymmetricSignVerifyEcdsa384 => Some(AsymmetricSpec::EcP384),
            KeyUsage::EncryptDecrypt
            | KeyUsage::EncryptDecryptAes128
            | KeyUsage::AsymmetricDecryptSm2
            | KeyUsage::AsymmetricSignVerifySm2 => None,
        }
    }

    /// True for the usages that sign and verify.
    pub fn is_signing(&self) -> bool {
        matches!(
            self,
            KeyUsage::AsymmetricSignVerifySm2
                | KeyUsage::AsymmetricSignVerifyRsa2048
                | KeyUsage::AsymmetricSignVerifyRsa4096
                | KeyUsage::AsymmetricSignVerifyRsa3072
                | KeyUsage::AsymmetricSignVerifyEcc
                | KeyUsage::AsymmetricSignVerifyEcdsa384
        )
    }

    /// True for the usages this store can hold material for (all but SM2).
    pub fn is_supported(&self) -> bool {
        self.is_symmetric() || self.asymmetric_spec().is_some()
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyUsage {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        KeyUsage::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| KeyError::InvalidParameter("KeyUsage".into()))
    }
}

/// Where a CMK's material comes from (Tencent `Type`: 1 = made here, 2 = EXTERNAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KeyOrigin {
    /// Material generated by this store (Type 1).
    #[default]
    #[serde(rename = "KMS")]
    Kms,
    /// Material imported by the user (Type 2); the key waits in
    /// `PendingImport` until it arrives.
    #[serde(rename = "EXTERNAL")]
    External,
}

impl KeyOrigin {
    /// From Tencent's `Type` parameter (1 or 2).
    pub fn from_type(t: u32) -> Result<Self, KeyError> {
        match t {
            1 => Ok(KeyOrigin::Kms),
            2 => Ok(KeyOrigin::External),
            _ => Err(KeyError::InvalidParameter("Type".into())),
        }
    }
    /// Tencent's `Type` number.
    pub fn type_number(&self) -> u32 {
        match self {
            KeyOrigin::Kms => 1,
            KeyOrigin::External => 2,
        }
    }
}

/// A CMK's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Kept, but neither seals nor opens.
    Disabled,
    /// Scheduled for deletion at `deletion_date`; neither seals nor opens.
    PendingDelete,
    /// EXTERNAL key waiting for its material.
    PendingImport,
}

impl KeyState {
    /// The wire name, e.g. `PendingDelete`.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDelete => "PendingDelete",
            KeyState::PendingImport => "PendingImport",
        }
    }

    /// The error an operation needing an enabled key reports in this state.
    pub fn unusable_error(&self) -> Option<KeyError> {
        match self {
            KeyState::Enabled => None,
            KeyState::Disabled => Some(KeyError::CmkDisabled),
            KeyState::PendingDelete => Some(KeyError::CmkPendingDelete),
            KeyState::PendingImport => Some(KeyError::CmkPendingImport),
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tag on a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Tag key (unique per key).
    pub tag_key: String,
    /// Tag value.
    pub tag_value: String,
}

/// One version of a CMK's material, as described (no material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyVersionInfo {
    /// Version number, 1 for the first.
    pub version: u32,
    /// When the version was made (unix seconds).
    pub create_time: u64,
}

/// Everything known about a CMK except its material: what `describe` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    /// Globally unique id.
    pub key_id: KeyId,
    /// Unique alias, if any.
    pub alias: Option<String>,
    /// Free text, at most 1,024 bytes.
    pub description: String,
    /// What the key is for.
    pub key_usage: KeyUsage,
    /// Where the material comes from.
    pub origin: KeyOrigin,
    /// Lifecycle state.
    pub key_state: KeyState,
    /// Creation time (unix seconds).
    pub create_time: u64,
    /// Who created the key (a credential id or an operator name; may be empty).
    pub owner: String,
    /// Tags, tag keys unique.
    pub tags: Vec<Tag>,
    /// Whether automatic rotation is on.
    pub key_rotation_enabled: bool,
    /// Automatic rotation period in days (7–365).
    pub rotate_days: u32,
    /// Last rotation (manual or automatic), unix seconds.
    pub last_rotate_time: Option<u64>,
    /// When automatic rotation next falls due, unix seconds.
    pub next_rotate_time: Option<u64>,
    /// When a pending deletion completes, unix seconds.
    pub deletion_date: Option<u64>,
    /// Versions below this no longer decrypt (Vault transit's
    /// `min_decryption_version`); `None` = every version decrypts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_decryption_version: Option<u32>,
    /// The version new ciphertexts are made with (none until material exists).
    pub primary_version: Option<u32>,
    /// All versions, oldest first; each still opens what it sealed.
    pub versions: Vec<KeyVersionInfo>,
}

/// One version's material, sealed under the root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SealedVersion {
    /// Version number.
    pub version: u32,
    /// `nonce ‖ ciphertext ‖ tag` of the 32-byte material (AES-256-GCM under
    /// the root key, AAD = key id + version).
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

/// A CMK as stored and backed up: metadata plus sealed material per version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyRecord {
    /// The key's metadata.
    pub metadata: KeyMetadata,
    /// Sealed material, one entry per version in `metadata.versions`.
    pub material: Vec<SealedVersion>,
}

impl KeyRecord {
    /// The sealed material of one version.
    pub fn sealed(&self, version: u32) -> Option<&[u8]> {
        self.material
            .iter()
            .find(|v| v.version == version)
            .map(|v| v.sealed.as_slice())
    }
}

/// An access credential for the KMS faces, as stored (secret sealed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CredentialRecord {
    /// Public id, `AKID` + 32 letters/digits.
    pub id: String,
    /// The secret, sealed under the root key (AAD = id).
    #[serde(with = "b64")]
    pub sealed_secret: Vec<u8>,
    /// Creation time (unix seconds).
    pub created_at: u64,
    /// Revoked credentials authenticate nothing.
    pub revoked: bool,
    /// Keys this credential may use; `None` = all keys.
    pub allowed_keys: Option<Vec<KeyId>>,
}

/// A credential as listed (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CredentialInfo {
    /// Public id.
    pub id: String,
    /// Creation time (unix seconds).
    pub created_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Keys it may use; `None` = all keys.
    pub allowed_keys: Option<Vec<KeyId>>,
}

impl From<&CredentialRecord> for CredentialInfo {
    fn from(r: &CredentialRecord) -> Self {
        CredentialInfo {
            id: r.id.clone(),
            created_at: r.created_at,
            revoked: r.revoked,
            allowed_keys: r.allowed_keys.clone(),
        }
    }
}

/// Parameters of a new key (Tencent CreateKey).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CreateKeyRequest {
    /// Unique alias (1–60 of letters, digits, `-`, `_`; starts with a letter
    /// or digit; `kms-` reserved; not UUID-shaped).
    pub alias: Option<String>,
    /// At most 1,024 bytes.
    pub description: String,
    /// Defaults to ENCRYPT_DECRYPT.
    pub key_usage: KeyUsage,
    /// KMS (Type 1, default) or EXTERNAL (Type 2).
    pub origin: KeyOrigin,
    /// Tags; duplicate tag keys are refused.
    pub tags: Vec<Tag>,
    /// Creator (credential id or operator name).
    pub owner: String,
}

/// A change to the key store, as data. Applied by `KeyStore::execute`; the
/// admin socket carries these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Command")]
pub enum KeyCommand {
    /// Create a key.
    Create(CreateKeyRequest),
    /// Disabled → Enabled.
    Enable {
        /// KeyId or alias.
        key: String,
    },
    /// Enabled → Disabled.
    Disable {
        /// KeyId or alias.
        key: String,
    },
    /// Enabled/Disabled → PendingDelete, deleted after the window.
    ScheduleDeletion {
        /// KeyId or alias.
        key: String,
        /// 7–30 days.
        pending_window_days: u32,
    },
    /// PendingDelete → Disabled (PendingImport if it never had material).
    CancelDeletion {
        /// KeyId or alias.
        key: String,
    },
    /// Set or change the alias.
    UpdateAlias {
        /// KeyId or alias.
        key: String,
        /// The new alias.
        alias: String,
    },
    /// Replace the description.
    UpdateDescription {
        /// KeyId or alias.
        key: String,
        /// At most 1,024 bytes.
        description: String,
    },
    /// Turn on automatic rotation every `rotate_days` (7–365).
    EnableRotation {
        /// KeyId or alias.
        key: String,
        /// Rotation period; `None` = 365.
        rotate_days: Option<u32>,
    },
    /// Turn off automatic rotation.
    DisableRotation {
        /// KeyId or alias.
        key: String,
    },
    /// Make a new primary version now.
    Rotate {
        /// KeyId or alias.
        key: String,
    },
    /// Versions below `version` stop decrypting (1 = all decrypt again);
    /// at most the primary version.
    SetMinDecryptionVersion {
        /// KeyId or alias.
        key: String,
        /// The lowest version that still decrypts.
        version: u32,
    },
}

/// A backup: every key and credential, material still sealed under the root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Backup {
    /// Always [`Backup::FORMAT`].
    pub format: String,
    /// When it was written (unix seconds).
    pub created_at: u64,
    /// The store's key-check value: proves which root key sealed this backup.
    #[serde(with = "b64")]
    pub key_check: Vec<u8>,
    /// Every key.
    pub keys: Vec<KeyRecord>,
    /// Every credential.
    pub credentials: Vec<CredentialRecord>,
}

impl Backup {
    /// Format tag of backup files this build writes and reads.
    pub const FORMAT: &'static str = "sealgate-key-backup-v1";
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportReport {
    /// Keys added.
    pub keys_imported: usize,
    /// Keys already present, identical.
    pub keys_unchanged: usize,
    /// Credentials added.
    pub credentials_imported: usize,
    /// Credentials already present, identical.
    pub credentials_unchanged: usize,
}

/// The alias rule [`validate_alias`] checks, in words (for error messages).
pub const ALIAS_RULE: &str = "an alias is 1-60 characters of letters, digits, '-' and '_', \
     starts with a letter or digit, does not start with \"kms-\" (reserved) and is not \
     shaped like a KeyId (a UUID)";

/// Checks an alias against the CreateKey rules ([`ALIAS_RULE`]).
pub fn validate_alias(alias: &str) -> Result<(), KeyError> {
    let len = alias.chars().count();
    let first_ok = alias
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let chars_ok = alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let reserved = alias.len() >= 4 && alias[..4].eq_ignore_ascii_case("kms-");
    // A UUID-shaped alias would be ambiguous with a KeyId.
    let uuid_shaped = KeyId::parse(alias).is_some();
    if (1..=ALIAS_MAX_LEN).contains(&len) && first_ok && chars_ok && !reserved && !uuid_shaped {
        Ok(())
    } else {
        Err(KeyError::InvalidAlias)
    }
}

/// Checks a description's length.
pub fn validate_description(description: &str) -> Result<(), KeyError> {
    if description.len() > DESCRIPTION_MAX_BYTES {
        return Err(KeyError::InvalidParameter(
            "Description longer than 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// Checks tags: non-empty keys, bounded lengths, no duplicate keys.
pub fn validate_tags(tags: &[Tag]) -> Result<(), KeyError> {
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        if t.tag_key.is_empty() || t.tag_key.chars().count() > TAG_KEY_MAX_LEN {
            return Err(KeyError::InvalidParameter("TagKey".into()));
        }
        if t.tag_value.chars().count() > TAG_VALUE_MAX_LEN {
            return Err(KeyError::InvalidParameter("TagValue".into()));
        }
        if !seen.insert(t.tag_key.as_str()) {
            return Err(KeyError::DuplicateTagKey);
        }
    }
    Ok(())
}

/// Where new key ids and sealed material come from (the store: RNG + root key;
/// tests: a fake).
pub trait MaterialSource {
    /// A fresh key id.
    fn new_key_id(&mut self) -> KeyId;
    /// Fresh material of `usage` (32 random bytes, or a private key as
    /// PKCS#8 DER) for `key` version `version`, sealed.
    fn sealed_material(
        &mut self,
        key: KeyId,
        version: u32,
        usage: KeyUsage,
    ) -> Result<Vec<u8>, KeyError>;
}

/// One record write; a plan's writes commit in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Insert or replace a key.
    PutKey(Box<KeyRecord>),
    /// Remove a key for good.
    DeleteKey(KeyId),
    /// Insert or replace a credential.
    PutCredential(CredentialRecord),
}

/// A change the store applies: the admin commands plus the ones only the
/// store itself issues.
#[derive(Clone, Debug)]
pub enum Change {
    /// An operator/API command.
    Command(KeyCommand),
    /// EXTERNAL material arrived for `key` (sealed as version 1).
    ImportMaterial {
        /// The key.
        key: KeyId,
        /// Material sealed for (key, 1).
        sealed: Vec<u8>,
    },
    /// Rotation because the period elapsed.
    AutoRotate {
        /// The key.
        key: KeyId,
    },
    /// Deletion window over.
    Purge {
        /// The key.
        key: KeyId,
    },
    /// A new credential.
    AddCredential(CredentialRecord),
    /// Revoke a credential.
    RevokeCredential {
        /// Credential id.
        id: String,
    },
    /// Restore a backup (already checked to be sealed under our root key).
    RestoreBackup(Box<Backup>),
}

/// What a change did, beyond its writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The key the change was about.
    Key(KeyId),
    /// A credential id.
    Credential(String),
    /// A backup was restored.
    Restored(ImportReport),
}

/// The result of planning a change: the writes, and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Writes to commit, in order.
    pub mutations: Vec<Mutation>,
    /// What the change did.
    pub outcome: Outcome,
}

/// Limits the state machine enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most keys the store holds (any state).
    pub max_keys: usize,
}

/// The whole key store as values: keys, the alias index, credentials.
#[derive(Clone, Debug, Default)]
pub struct State {
    keys: BTreeMap<KeyId, KeyRecord>,
    aliases: HashMap<String, KeyId>,
    credentials: BTreeMap<String, CredentialRecord>,
}

impl State {
    /// Builds the state from stored records; fails on duplicate aliases or
    /// records that do not hang together.
    pub fn from_records(
        keys: Vec<KeyRecord>,
        credentials: Vec<CredentialRecord>,
    ) -> Result<State, String> {
        let mut state = State::default();
        for k in keys {
            check_record(&k)?;
            let id = k.metadata.key_id;
            if let Some(a) = &k.metadata.alias {
                if state.aliases.insert(a.clone(), id).is_some() {
                    return Err(format!("alias {a} is used by two keys"));
                }
            }
            if state.keys.insert(id, k).is_some() {
                return Err(format!("key {id} stored twice"));
            }
        }
        for c in credentials {
            state.credentials.insert(c.id.clone(), c);
        }
        Ok(state)
    }

    /// Number of keys (any state).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// A key by id.
    pub fn key(&self, id: &KeyId) -> Option<&KeyRecord> {
        self.keys.get(id)
    }

    /// All keys, by id.
    pub fn keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values()
    }

    /// All credentials, by id.
    pub fn credentials(&self) -> impl Iterator<Item = &CredentialRecord> {
        self.credentials.values()
    }

    /// A credential by id.
    pub fn credential(&self, id: &str) -> Option<&CredentialRecord> {
        self.credentials.get(id)
    }

    /// Finds a key by KeyId or alias.
    pub fn resolve(&self, key: &str) -> Result<&KeyRecord, KeyError> {
        if let Some(id) = KeyId::parse(key) {
            if let Some(k) = self.keys.get(&id) {
                return Ok(k);
            }
        }
        self.aliases
            .get(key)
            .and_then(|id| self.keys.get(id))
            .ok_or(KeyError::CmkNotFound)
    }

    /// Applies committed writes.
    pub fn commit(&mut self, mutations: Vec<Mutation>) {
        for m in mutations {
            match m {
                Mutation::PutKey(rec) => {
                    let id = rec.metadata.key_id;
                    if let Some(old) = self.keys.get(&id) {
                        if let Some(a) = &old.metadata.alias {
                            self.aliases.remove(a);
                        }
                    }
                    if let Some(a) = &rec.metadata.alias {
                        self.aliases.insert(a.clone(), id);
                    }
                    self.keys.insert(id, *rec);
                }
                Mutation::DeleteKey(id) => {
                    if let Some(old) = self.keys.remove(&id) {
                        if let Some(a) = &old.metadata.alias {
                            self.aliases.remove(a);
                        }
                    }
                }
                Mutation::PutCredential(c) => {
                    self.credentials.insert(c.id.clone(), c);
                }
            }
        }
    }

    /// Turns one change into writes, checking every rule first. Does not
    /// modify the state: commit the plan's writes once they are durable.
    pub fn plan(
        &self,
        change: Change,
        now: u64,
        limits: Limits,
        source: &mut dyn MaterialSource,
    ) -> Result<Plan, KeyError> {
        match change {
            Change::Command(cmd) => self.plan_command(cmd, now, limits, source),
            Change::ImportMaterial { key, sealed } => {
                let mut rec = self.keys.get(&key).cloned().ok_or(KeyError::CmkNotFound)?;
                if rec.metadata.origin != KeyOrigin::External {
                    return Err(KeyError::InvalidState(
                        "key material can only be imported into an EXTERNAL key".into(),
                    ));
                }
                if rec.metadata.key_state != KeyState::PendingImport {
                    return Err(KeyError::InvalidState(
                        "key material was already imported".into(),
                    ));
                }
                rec.metadata.key_state = KeyState::Enabled;
                add_version(&mut rec, 1, sealed, now);
                Ok(put(rec))
            }
            Change::AutoRotate { key } => {
                let rec = self.keys.get(&key).ok_or(KeyError::CmkNotFound)?;
                rotate(rec, now, source)
            }
            Change::Purge { key } => {
                let rec = self.keys.get(&key).ok_or(KeyError::CmkNotFound)?;
                if rec.metadata.key_state != KeyState::PendingDelete {
                    return Err(KeyError::InvalidState("key is not pending deletion".into()));
                }
                Ok(Plan {
                    mutations: vec![Mutation::DeleteKey(key)],
                    outcome: Outcome::Key(key),
                })
            }
            Change::AddCredential(c) => {
                if self.credentials.contains_key(&c.id) {
                    return Err(KeyError::InvalidParameter("credential id in use".into()));
                }
                if let Some(allowed) = &c.allowed_keys {
                    if allowed.iter().any(|k| !self.keys.contains_key(k)) {
                        return Err(KeyError::CmkNotFound);
                    }
                }
                let id = c.id.clone();
                Ok(Plan {
                    mutations: vec![Mutation::PutCredential(c)],
                    outcome: Outcome::Credential(id),
                })
            }
            Change::RevokeCredential { id } => {
                let mut c = self
                    .credentials
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| KeyError::InvalidParameter("no such credential".into()))?;
                c.revoked = true;
                Ok(Plan {
                    mutations: vec![Mutation::PutCredential(c)],
                    outcome: Outcome::Credential(id),
                })
            }
            Change::RestoreBackup(backup) => self.plan_restore(*backup, limits),
        }
    }

    fn plan_command(
        &self,
        cmd: KeyCommand,
        now: u64,
        limits: Limits,
        source: &mut dyn MaterialSource,
    ) -> Result<Plan, KeyError> {
        match cmd {
            KeyCommand::Create(req) => self.plan_create(req, now, limits, source),
            KeyCommand::Enable { key } => {
                let mut rec = self.resolve(&key)?.clone();
                match rec.metadata.key_state {
                    KeyState::Enabled | KeyState::Disabled => {}
                    other => return Err(other.unusable_error().unwrap_or(KeyError::CmkDisabled)),
                }
                rec.metadata.key_state = KeyState::Enabled;
                Ok(put(rec))
            }
            KeyCommand::Disable { key } => {
                let mut rec = self.resolve(&key)?.clone();
                match rec.metadata.key_state {
                    KeyState::Enabled | KeyState::Disabled => {}
                    other => return Err(other.unusable_error().unwrap_or(KeyError::CmkDisabled)),
                }
                rec.metadata.key_state = KeyState::Disabled;
                Ok(put(rec))
            }
            KeyCommand::ScheduleDeletion {
                key,
                pending_window_days,
            } => {
                if !PENDING_WINDOW_DAYS_RANGE.contains(&pending_window_days) {
                    return Err(KeyError::InvalidParameter(
                        "PendingWindowInDays must be 7-30".into(),
                    ));
                }
                let mut rec = self.resolve(&key)?.clone();
                if rec.metadata.key_state == KeyState::PendingDelete {
                    return Err(KeyError::CmkPendingDelete);
                }
                rec.metadata.key_state = KeyState::PendingDelete;
                rec.metadata.deletion_date = Some(now + u64::from(pending_window_days) * DAY);
                Ok(put(rec))
            }
            KeyCommand::CancelDeletion { key } => {
                let mut rec = self.resolve(&key)?.clone();
                if rec.metadata.key_state != KeyState::PendingDelete {
                    return Err(KeyError::InvalidState("key is not pending deletion".into()));
                }
                // As Tencent does: a cancelled deletion leaves the key
                // disabled; a key that never got material waits for it again.
                rec.metadata.key_state = if rec.material.is_empty() {
                    KeyState::PendingImport
                } else {
                    KeyState::Disabled
                };
                rec.metadata.deletion_date = None;
                Ok(put(rec))
            }
            KeyCommand::UpdateAlias { key, alias } => {
                validate_alias(&alias)?;
                let mut rec = self.resolve(&key)?.clone();
                if let Some(owner) = self.aliases.get(&alias) {
                    if *owner != rec.metadata.key_id {
                        return Err(KeyError::AliasAlreadyExists);
                    }
                }
                rec.metadata.alias = Some(alias);
                Ok(put(rec))
            }
            KeyCommand::UpdateDescription { key, description } => {
                validate_description(&description)?;
                let mut rec = self.resolve(&key)?.clone();
                rec.metadata.description = description;
                Ok(put(rec))
            }
            KeyCommand::EnableRotation { key, rotate_days } => {
                let days = rotate_days.unwrap_or(DEFAULT_ROTATE_DAYS);
                if !ROTATE_DAYS_RANGE.contains(&days) {
                    return Err(KeyError::InvalidParameter(
                        "RotateDays must be 7-365".into(),
                    ));
                }
                let mut rec = self.resolve(&key)?.clone();
                check_rotatable(&rec)?;
                if rec.metadata.key_state == KeyState::PendingDelete {
                    return Err(KeyError::CmkPendingDelete);
                }
                rec.metadata.key_rotation_enabled = true;
                rec.metadata.rotate_days = days;
                rec.metadata.next_rotate_time = Some(now + u64::from(days) * DAY);
                Ok(put(rec))
            }
            KeyCommand::DisableRotation { key } => {
                let mut rec = self.resolve(&key)?.clone();
                rec.metadata.key_rotation_enabled = false;
                rec.metadata.next_rotate_time = None;
                Ok(put(rec))
            }
            KeyCommand::Rotate { key } => {
                let rec = self.resolve(&key)?;
                rotate(rec, now, source)
            }
            KeyCommand::SetMinDecryptionVersion { key, version } => {
                let mut rec = self.resolve(&key)?.clone();
                let primary = rec
                    .metadata
                    .primary_version
                    .ok_or(KeyError::CmkPendingImport)?;
                if version == 0 || version > primary {
                    return Err(KeyError::InvalidParameter(format!(
                        "the minimum decryption version must be 1-{primary} (the primary version)"
                    )));
                }
                rec.metadata.min_decryption_version = (version > 1).then_some(version);
                Ok(put(rec))
            }
        }
    }

    fn plan_create(
        &self,
        req: CreateKeyRequest,
        now: u64,
        limits: Limits,
        source: &mut dyn MaterialSource,
    ) -> Result<Plan, KeyError> {
        if let Some(a) = &req.alias {
            validate_alias(a)?;
            if self.aliases.contains_key(a) {
                return Err(KeyError::AliasAlreadyExists);
            }
        }
        validate_description(&req.description)?;
        validate_tags(&req.tags)?;
        if !req.key_usage.is_supported() {
            return Err(KeyError::UnsupportedKeyUsage);
        }
        if req.origin == KeyOrigin::External && !req.key_usage.is_symmetric() {
            // imported material is 32 bytes of symmetric key
            return Err(KeyError::UnsupportedKeyUsage);
        }
        if self.keys.len() >= limits.max_keys {
            return Err(KeyError::LimitExceeded);
        }
        let mut key_id = source.new_key_id();
        while self.keys.contains_key(&key_id) {
            key_id = source.new_key_id();
        }
        let mut rec = KeyRecord {
            metadata: KeyMetadata {
                key_id,
                alias: req.alias,
                description: req.description,
                key_usage: req.key_usage,
                origin: req.origin,
                key_state: KeyState::PendingImport,
                create_time: now,
                owner: req.owner,
                tags: req.tags,
                key_rotation_enabled: false,
                rotate_days: DEFAULT_ROTATE_DAYS,
                last_rotate_time: None,
                next_rotate_time: None,
                deletion_date: None,
                min_decryption_version: None,
                primary_version: None,
                versions: Vec::new(),
            },
            material: Vec::new(),
        };
        if req.origin == KeyOrigin::Kms {
            let sealed = source.sealed_material(key_id, 1, rec.metadata.key_usage)?;
            add_version(&mut rec, 1, sealed, now);
            rec.metadata.key_state = KeyState::Enabled;
        }
        Ok(put(rec))
    }

    fn plan_restore(&self, backup: Backup, limits: Limits) -> Result<Plan, KeyError> {
        let mut report = ImportReport::default();
        let mut mutations = Vec::new();
        // Aliases the restored keys will hold, to catch clashes among them too.
        let mut aliases: HashMap<&str, KeyId> = self
            .aliases
            .iter()
            .map(|(a, id)| (a.as_str(), *id))
            .collect();
        let mut new_keys = 0usize;
        for rec in &backup.keys {
            check_record(rec).map_err(KeyError::ImportConflict)?;
            let id = rec.metadata.key_id;
            match self.keys.get(&id) {
                Some(existing) if existing == rec => {
                    report.keys_unchanged += 1;
                    continue;
                }
                Some(_) => {
                    return Err(KeyError::ImportConflict(format!(
                        "key {id} exists and differs from the backup"
                    )))
                }
                None => {}
            }
            if let Some(a) = &rec.metadata.alias {
                if let Some(other) = aliases.insert(a.as_str(), id) {
                    if other != id {
                        return Err(KeyError::ImportConflict(format!(
                            "alias {a} of key {id} is held by key {other}"
                        )));
                    }
                }
            }
            new_keys += 1;
            report.keys_imported += 1;
            mutations.push(Mutation::PutKey(Box::new(rec.clone())));
        }
        if self.keys.len() + new_keys > limits.max_keys {
            return Err(KeyError::LimitExceeded);
        }
        for c in &backup.credentials {
            match self.credentials.get(&c.id) {
                Some(existing) if existing == c => report.credentials_unchanged += 1,
                Some(_) => {
                    return Err(KeyError::ImportConflict(format!(
                        "credential {} exists and differs from the backup",
                        c.id
                    )))
                }
                None => {
                    report.credentials_imported += 1;
                    mutations.push(Mutation::PutCredential(c.clone()));
                }
            }
        }
        Ok(Plan {
            mutations,
            outcome: Outcome::Restored(report),
        })
    }
}

fn put(rec: KeyRecord) -> Plan {
    let id = rec.metadata.key_id;
    Plan {
        mutations: vec![Mutation::PutKey(Box::new(rec))],
        outcome: Outcome::Key(id),
    }
}

fn add_version(rec: &mut KeyRecord, version: u32, sealed: Vec<u8>, now: u64) {
    rec.metadata.versions.push(KeyVersionInfo {
        version,
        create_time: now,
    });
    rec.metadata.primary_version = Some(version);
    rec.material.push(SealedVersion { version, sealed });
}

fn check_rotatable(rec: &KeyRecord) -> Result<(), KeyError> {
    if !rec.metadata.key_usage.is_symmetric() {
        return Err(KeyError::UsageMismatch);
    }
    if rec.metadata.origin != KeyOrigin::Kms {
        return Err(KeyError::InvalidState("EXTERNAL keys do not rotate".into()));
    }
    Ok(())
}

fn rotate(rec: &KeyRecord, now: u64, source: &mut dyn MaterialSource) -> Result<Plan, KeyError> {
    check_rotatable(rec)?;
    if let Some(e) = rec.metadata.key_state.unusable_error() {
        return Err(e);
    }
    let mut rec = rec.clone();
    let next = rec
        .metadata
        .versions
        .iter()
        .map(|v| v.version)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(KeyError::LimitExceeded)?;
    let sealed = source.sealed_material(rec.metadata.key_id, next, rec.metadata.key_usage)?;
    add_version(&mut rec, next, sealed, now);
    rec.metadata.last_rotate_time = Some(now);
    if rec.metadata.key_rotation_enabled {
        rec.metadata.next_rotate_time = Some(now + u64::from(rec.metadata.rotate_days) * DAY);
    }
    Ok(put(rec))
}

/// Checks that a record hangs together: versions 1..n, material for each,
/// primary among them, state consistent with material.
pub fn check_record(rec: &KeyRecord) -> Result<(), String> {
    let id = rec.metadata.key_id;
    let versions: Vec<u32> = rec.metadata.versions.iter().map(|v| v.version).collect();
    let expected: Vec<u32> = (1..=versions.len() as u32).collect();
    if versions != expected {
        return Err(format!("key {id}: versions are not 1..n"));
    }
    let material: Vec<u32> = rec.material.iter().map(|v| v.version).collect();
    if material != versions {
        return Err(format!("key {id}: material does not match versions"));
    }
    if rec.metadata.primary_version != versions.last().copied() {
        return Err(format!("key {id}: primary version is not the newest"));
    }
    if versions.is_empty()
        && !matches!(
            rec.metadata.key_state,
            KeyState::PendingImport | KeyState::PendingDelete
        )
    {
        return Err(format!("key {id}: usable state without material"));
    }
    if let Some(a) = &rec.metadata.alias {
        validate_alias(a).map_err(|_| format!("key {id}: invalid alias"))?;
    }
    Ok(())
}

/// Serde helper: bytes as standard base64 text.
pub(crate) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
