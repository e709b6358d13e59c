//! The Alibaba Cloud KMS face over the key store: the OpenAPI (RPC style,
//! ACS3-HMAC-SHA256 or signature v1) and the KMS instance API (protobuf,
//! RSA client keys), both on the KMS listener.
//!
//! One request: signature check ([`sign::verify`] with the store's
//! credentials and a replay cache, or [`instance::verify`] with the
//! registered client keys) → per-caller quota of the action's class
//! ([`wire::quota_table`]) → typed request ([`wire::parse_request`] /
//! [`instance::parse_request`]) → key store → JSON or protobuf answer.
//!
//! Key versions: `Encrypt`, `GenerateDataKey*` and `ReEncrypt` seal under
//! the key's **initial** version (as Alibaba's KMS instances document for
//! Encrypt: rotation does not move them), the `Advance*` actions under the
//! **primary** one; Decrypt and AdvanceDecrypt use the version the blob
//! names. A KeyVersionId is `<KeyId>-v<N>`. Aliases are `alias/<name>`,
//! where `<name>` is the store's alias (one per key).
//!
//! Asymmetric keys (CreateKey RSA_2048 / RSA_3072 with either usage,
//! EC_P256 SIGN/VERIFY) have one version, `<KeyId>-v1`: GetPublicKey,
//! AsymmetricSign / AsymmetricVerify (a SHA-256 `Digest`) and
//! AsymmetricEncrypt / AsymmetricDecrypt (RSAES-OAEP) name it and no other.
//! EC_SM2 and EC_P256K keys are refused (aws-lc-rs has neither curve).
//!
//! The OpenAPI actions are served by family, one method each, in the
//! modules `keys`, `aliases`, `symmetric`, `asymmetric` and `service` below
//! this one; `dispatch` is the table that maps a typed request to its
//! method. The sealing both APIs share (`advance_*`, `generate_data_key`)
//! stays here.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::rsa::{
    OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};

use super::advance::{self, Algorithm, BlobKind, SealParams};
use super::client_keys::ClientKeys;
use super::errors::{advance_error, internal, invalid_ciphertext, key_error};
use super::instance;
use super::sign::{self, AuthError, NonceCache, VerifyPolicy};
use super::wire::{self, codes, AlibabaError, Request};
use crate::clock::SystemClock;
use crate::keys::asymmetric::{
    public_key_pem, AsymmetricSpec, RsaPadding, SignInput, SigningAlgorithm,
};
use crate::keys::blob::{blob_cmk, seal_blob};
use crate::keys::model::validate_alias;
use crate::keys::store::VersionChoice;
use crate::keys::{
    CreateKeyRequest, KeyError, KeyId, KeyMetadata, KeyOrigin, KeyPurpose, KeySpec, KeyState,
    KeyStore, KeyUsage, Tag,
};
use crate::kms::access::{Access, Principal};
use crate::kms::context;
use crate::kms::{Dialect, Face, KeyNote, KmsOutcome, KmsReply, KmsRequest};
use crate::limits::Limiter;
use crate::ratelimit::{Quota, RateLimiter};
use crate::secret::SecretBytes;

mod aliases;
mod asymmetric;
mod keys;
mod service;
mod symmetric;

/// `HostId` of every error body.
pub const HOST_ID: &str = "kms.sealgate.local";
/// The one region this face serves, as DescribeRegions lists it and as its
/// ARNs name it (any region a client is configured with reaches it).
pub const REGION_ID: &str = "local";
/// Prefix of the ARNs this face hands out (`<prefix>:key/<KeyId>`).
pub const ARN_PREFIX: &str = "acs:kms:local:sealgate";
/// Prefix of the limiter's class names (`alibaba:CreateKey`, `alibaba:read`,
/// `alibaba:write`, `alibaba:symmetric-crypto`, `alibaba:asymmetric-crypto`;
/// also the older `[kms_quotas]` spelling).
pub const QUOTA_PREFIX: &str = "alibaba:";
/// A key-limited credential used on another key (or for CreateKey).
pub const FORBIDDEN_RAM: (&str, u16) = ("Forbidden.RAM", 403);

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub(super) enum Caller<'a> {
    /// A `sealgate credentials` AccessKeyId (OpenAPI), authenticated.
    Credential(&'a Principal),
    /// A registered client key (instance API): every key. The request's
    /// key is noted here (a [`Principal`] notes its own).
    ClientKey(&'a KeyNote),
}

/// AdvanceEncrypt / AdvanceGenerateDataKey result.
pub(super) struct AdvanceSealed {
    pub(super) key_id: String,
    pub(super) sealed: advance::Sealed,
}

/// The Alibaba Cloud KMS face over a [`KeyStore`].
pub struct AlibabaFace {
    pub(super) store: Arc<KeyStore>,
    access: Access,
    limiter: Limiter,
    nonces: NonceCache,
    policy: VerifyPolicy,
    client_keys: ClientKeys,
}

impl std::fmt::Debug for AlibabaFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlibabaFace").finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX)
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn date(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(sign::format_acs_date)
        .unwrap_or_default()
}

/// `<KeyId>-v<N>`.
pub fn version_id(key: &KeyId, version: u32) -> String {
    format!("{key}-v{version}")
}

/// The version number of a KeyVersionId of `key`.
pub fn parse_version_id(key: &KeyId, s: &str) -> Option<u32> {
    s.strip_prefix(key.to_string().as_str())?
        .strip_prefix("-v")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

fn arn(key: &KeyId) -> String {
    format!("{ARN_PREFIX}:key/{key}")
}

fn forbidden_ram() -> AlibabaError {
    AlibabaError::new(
        FORBIDDEN_RAM,
        "This AccessKey is not allowed to use the specified key or action.",
    )
}

fn alias_not_found() -> AlibabaError {
    AlibabaError::new(codes::ALIAS_NOT_FOUND, "The specified alias is not found.")
}

/// A KeyId parameter in the store's terms: the store reference and
/// whether it named an alias. `None`: it cannot name any key here.
fn store_ref(r: &str) -> Option<(String, bool)> {
    let (name, alias) = if let Some(i) = r.find(":alias/") {
        (&r[i + ":alias/".len()..], true)
    } else if let Some(i) = r.find(":key/") {
        (&r[i + ":key/".len()..], false)
    } else if let Some(a) = r.strip_prefix("alias/") {
        (a, true)
    } else {
        (r, false)
    };
    if alias {
        validate_alias(name).ok()?;
        Some((name.to_string(), true))
    } else {
        KeyId::parse(name).map(|id| (id.to_string(), false))
    }
}

fn state_str(s: KeyState) -> &'static str {
    match s {
        KeyState::Enabled => wire::KeyState::Enabled.as_str(),
        KeyState::Disabled => wire::KeyState::Disabled.as_str(),
        KeyState::PendingDelete => wire::KeyState::PendingDeletion.as_str(),
        KeyState::PendingImport => wire::KeyState::PendingImport.as_str(),
    }
}

/// Alibaba's `KeySpec` and `KeyUsage` names of a store usage.
pub(super) fn spec_and_usage(u: KeyUsage) -> (&'static str, &'static str) {
    let (spec, purpose) = u.parts();
    let spec = match spec {
        KeySpec::Aes256 => wire::KeySpec::AliyunAes256.as_str(),
        KeySpec::Aes128 => wire::KeySpec::AliyunAes128.as_str(),
        KeySpec::Rsa2048 => wire::KeySpec::Rsa2048.as_str(),
        KeySpec::Rsa3072 => wire::KeySpec::Rsa3072.as_str(),
        KeySpec::Rsa4096 => wire::KeySpec::Rsa4096.as_str(),
        KeySpec::EcP256 => wire::KeySpec::EcP256.as_str(),
        // made by the Tencent face only; Alibaba's spelling of the curve
        KeySpec::EcP384 => "EC_P384",
        KeySpec::Sm2 => wire::KeySpec::EcSm2.as_str(),
    };
    let usage = match purpose {
        KeyPurpose::EncryptDecrypt => wire::KeyUsage::EncryptDecrypt.as_str(),
        KeyPurpose::SignVerify => wire::KeyUsage::SignVerify.as_str(),
    };
    (spec, usage)
}

/// The store usage of a CreateKey KeySpec + KeyUsage: AES-256, AES-128,
/// RSA-2048 / RSA-3072 (either usage) and EC_P256 (SIGN/VERIFY). EC_SM2 and
/// EC_P256K have no implementation here (aws-lc-rs has neither curve); the
/// other specs are not offered.
fn store_usage(spec: wire::KeySpec, usage: wire::KeyUsage) -> Result<KeyUsage, AlibabaError> {
    use wire::KeySpec as S;
    let not_offered = || {
        AlibabaError::value(
            codes::INVALID_KEY_SPEC,
            "KeySpec",
            "sealgate holds Aliyun_AES_256, Aliyun_AES_128, RSA_2048, RSA_3072 and EC_P256 keys (EC_SM2, EC_P256K, Aliyun_AES_192 and Aliyun_SM4 are not served)",
        )
    };
    let spec = match spec {
        S::AliyunAes256 => KeySpec::Aes256,
        S::AliyunAes128 => KeySpec::Aes128,
        S::Rsa2048 => KeySpec::Rsa2048,
        S::Rsa3072 => KeySpec::Rsa3072,
        S::EcP256 => KeySpec::EcP256,
        _ => return Err(not_offered()),
    };
    let purpose = match usage {
        wire::KeyUsage::EncryptDecrypt => KeyPurpose::EncryptDecrypt,
        wire::KeyUsage::SignVerify => KeyPurpose::SignVerify,
    };
    if (spec, purpose) == (KeySpec::EcP256, KeyPurpose::EncryptDecrypt) {
        return Err(AlibabaError::value(
            codes::INVALID_KEY_USAGE,
            "KeyUsage",
            "an EC_P256 key is SIGN/VERIFY",
        ));
    }
    KeyUsage::from_parts(spec, purpose).ok_or_else(not_offered)
}

/// Every KeySpec the wire knows, for DescribeService to offer those
/// [`store_usage`] accepts (so it lists exactly what CreateKey creates).
const WIRE_KEY_SPECS: [wire::KeySpec; 10] = [
    wire::KeySpec::AliyunAes256,
    wire::KeySpec::AliyunAes128,
    wire::KeySpec::AliyunAes192,
    wire::KeySpec::AliyunSm4,
    wire::KeySpec::Rsa2048,
    wire::KeySpec::Rsa3072,
    wire::KeySpec::Rsa4096,
    wire::KeySpec::EcP256,
    wire::KeySpec::EcP256K,
    wire::KeySpec::EcSm2,
];

/// DescribeService's body: the protection levels (SOFTWARE only: CreateKey
/// refuses HSM) and, per key spec CreateKey accepts, its protection levels
/// and usages, in the shape of Alibaba's DescribeService response.
fn describe_service() -> Value {
    let software = wire::ProtectionLevel::Software.as_str();
    let specs: Vec<Value> = WIRE_KEY_SPECS
        .iter()
        .filter_map(|spec| {
            let usages: Vec<&str> = [wire::KeyUsage::EncryptDecrypt, wire::KeyUsage::SignVerify]
                .into_iter()
                .filter(|u| store_usage(*spec, *u).is_ok())
                .map(wire::KeyUsage::as_str)
                .collect();
            (!usages.is_empty()).then(|| {
                json!({
                    "Name": spec.as_str(),
                    "SupportedProtectionLevels": { "SupportedProtectionLevel": [software] },
                    "Usages": { "Usage": usages },
                })
            })
        })
        .collect();
    json!({
        "ProtectionLevels": { "ProtectionLevel": [{ "Type": software }] },
        "KeySpecs": { "KeySpec": specs },
    })
}

/// What an asymmetric action needs of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// GetPublicKey: any asymmetric key.
    Any,
    /// AsymmetricSign / AsymmetricVerify: a SIGN/VERIFY key.
    Sign,
    /// AsymmetricEncrypt / AsymmetricDecrypt: an RSA ENCRYPT/DECRYPT key.
    Decrypt,
}

/// The store's signing scheme for an Alibaba `Algorithm` on this key's
/// spec: RSA_PSS_SHA_256 / RSA_PKCS1_SHA_256 on RSA keys, ECDSA_SHA_256 on
/// EC_P256 keys; SM2DSA never (no SM2 keys).
pub(super) fn signing_algorithm(
    m: &KeyMetadata,
    alg: wire::SignAlgorithm,
) -> Result<SigningAlgorithm, AlibabaError> {
    let spec = m.key_usage.asymmetric_spec();
    let rsa = spec.is_some_and(AsymmetricSpec::is_rsa);
    match alg {
        wire::SignAlgorithm::RsaPssSha256 if rsa => Ok(SigningAlgorithm::RsaPssSha256),
        wire::SignAlgorithm::RsaPkcs1Sha256 if rsa => Ok(SigningAlgorithm::RsaPkcs1Sha256),
        wire::SignAlgorithm::EcdsaSha256 if spec == Some(AsymmetricSpec::EcP256) => {
            Ok(SigningAlgorithm::EcdsaP256Sha256)
        }
        _ => Err(AlibabaError::invalid(
            "Algorithm",
            &format!(
                "{} is not a signing algorithm of a {} key",
                alg.as_str(),
                spec_and_usage(m.key_usage).0
            ),
        )),
    }
}

/// The RSA padding of an AsymmetricEncrypt / AsymmetricDecrypt `Algorithm`
/// (SM2PKE: no SM2 keys here).
pub(super) fn oaep_algorithm(alg: wire::EncryptAlgorithm) -> Result<RsaPadding, AlibabaError> {
    match alg {
        wire::EncryptAlgorithm::RsaesOaepSha256 => Ok(RsaPadding::OaepSha256),
        wire::EncryptAlgorithm::RsaesOaepSha1 => Ok(RsaPadding::OaepSha1),
        wire::EncryptAlgorithm::Sm2Pke => Err(AlibabaError::invalid(
            "Algorithm",
            "SM2PKE is for EC_SM2 keys, which sealgate does not hold",
        )),
    }
}

/// RSAES-OAEP encryption under a DER SubjectPublicKeyInfo; a plaintext
/// longer than the key and padding allow (190 / 214 bytes for RSA_2048,
/// 318 / 342 for RSA_3072) is `InvalidParameter`.
pub(super) fn oaep_encrypt(
    public_key_der: &[u8],
    padding: RsaPadding,
    plaintext: &[u8],
) -> Result<Vec<u8>, AlibabaError> {
    let alg = match padding {
        RsaPadding::OaepSha1 => &OAEP_SHA1_MGF1SHA1,
        _ => &OAEP_SHA256_MGF1SHA256,
    };
    let bad = || internal("the key's public half does not parse for OAEP");
    let key = PublicEncryptingKey::from_der(public_key_der).map_err(|_| bad())?;
    let key = OaepPublicEncryptingKey::new(key).map_err(|_| bad())?;
    let max = key.max_plaintext_size(alg);
    if plaintext.len() > max {
        return Err(AlibabaError::invalid(
            "Plaintext",
            &format!("at most {max} bytes for this key and Algorithm"),
        ));
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(alg, plaintext, &mut out, None)
        .map_err(|_| internal("RSA-OAEP encryption failed"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Whether a key has one of the filter's values for its property.
fn filter_matches(m: &KeyMetadata, f: &wire::KeyFilter) -> bool {
    use wire::FilterKey;
    let (spec, usage) = spec_and_usage(m.key_usage);
    let any = |candidate: &str| f.values.iter().any(|v| v == candidate);
    match f.key {
        FilterKey::KeyState => any(state_str(m.key_state)),
        FilterKey::KeySpec => any(spec),
        FilterKey::KeyUsage => any(usage),
        FilterKey::ProtectionLevel => any(wire::ProtectionLevel::Software.as_str()),
        FilterKey::CreatorType => any("User"),
        FilterKey::DkmsInstanceId => false,
        FilterKey::KeyId => any(&m.key_id.to_string()),
        FilterKey::AliasName => m
            .alias
            .as_deref()
            .is_some_and(|a| any(&format!("alias/{a}"))),
        FilterKey::Creator => any(&m.owner),
        FilterKey::TagKey => m.tags.iter().any(|t| any(&t.tag_key)),
        FilterKey::TagValue => m.tags.iter().any(|t| any(&t.tag_value)),
    }
}

fn key_metadata(m: &KeyMetadata) -> Value {
    let (spec, usage) = spec_and_usage(m.key_usage);
    let rotation = m.key_rotation_enabled;
    json!({
        "KeyId": m.key_id.to_string(),
        "Arn": arn(&m.key_id),
        "KeyState": state_str(m.key_state),
        "KeySpec": spec,
        "KeyUsage": usage,
        "Origin": match m.origin {
            KeyOrigin::Kms => wire::Origin::AliyunKms.as_str(),
            KeyOrigin::External => wire::Origin::External.as_str(),
        },
        "ProtectionLevel": wire::ProtectionLevel::Software.as_str(),
        "Description": m.description,
        "Creator": m.owner,
        "CreationDate": date(m.create_time),
        "DeleteDate": m.deletion_date.map(date).unwrap_or_default(),
        "MaterialExpireTime": "",
        "AutomaticRotation": if rotation { "Enabled" } else { "Disabled" },
        "RotationInterval": if rotation {
            wire::RotationInterval(u64::from(m.rotate_days) * 86_400).to_wire()
        } else {
            String::new()
        },
        "LastRotationDate": m.last_rotate_time.map(date).unwrap_or_default(),
        "NextRotationDate": if rotation {
            m.next_rotate_time.map(date).unwrap_or_default()
        } else {
            String::new()
        },
        "PrimaryKeyVersion": m.primary_version.map(|v| version_id(&m.key_id, v)).unwrap_or_default(),
        "DKMSInstanceId": "",
        "DeletionProtection": "Disabled",
        "DeletionProtectionDescription": "",
    })
}

fn key_version(m: &KeyMetadata, version: u32) -> Option<Value> {
    let v = m.versions.iter().find(|v| v.version == version)?;
    Some(json!({
        "KeyId": m.key_id.to_string(),
        "KeyVersionId": version_id(&m.key_id, v.version),
        "CreationDate": date(v.create_time),
    }))
}

/// A rotation interval (seconds) as the store's whole days (7–365).
fn interval_days(r: Option<wire::RotationInterval>) -> Option<u32> {
    r.map(|r| {
        let days = (r.0 + 43_200) / 86_400;
        u32::try_from(days.clamp(7, 365)).unwrap_or(365)
    })
}

fn page<T>(items: Vec<T>, p: wire::Page) -> Vec<T> {
    let skip = (p.number.saturating_sub(1) as usize).saturating_mul(p.size as usize);
    items.into_iter().skip(skip).take(p.size as usize).collect()
}

/// The bytes a Decrypt returns as `Plaintext`: the string Encrypt was given
/// (its bytes are UTF-8); other blobs of the shared store (sealed from raw
/// bytes by another face) come back as Base64.
fn plaintext_text(p: &SecretBytes) -> String {
    match std::str::from_utf8(p.expose()) {
        Ok(s) => s.to_string(),
        Err(_) => b64(p.expose()),
    }
}

fn respond(
    status: u16,
    content_type: &'static str,
    request_id: &str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-acs-request-id", v);
    }
    r
}

impl AlibabaFace {
    /// A face over `store` with Alibaba's documented per-class quotas, each
    /// overridable by a `[kms.alibaba.quotas]` entry keyed by class
    /// (`symmetric-crypto`, …; validated at config load); instance-API
    /// client keys are read from the store's data directory.
    pub fn new(store: Arc<KeyStore>, quota_overrides: &BTreeMap<String, Quota>) -> Self {
        let quotas = wire::quota_table().with_overrides(
            quota_overrides
                .iter()
                .map(|(class, q)| (format!("{QUOTA_PREFIX}{class}"), *q)),
        );
        let limiter = Limiter::local("alibaba", RateLimiter::from_quotas(SystemClock, quotas));
        let client_keys = ClientKeys::new(store.data_dir());
        Self {
            access: Access::new(store.clone()),
            store,
            limiter,
            nonces: NonceCache::default(),
            policy: VerifyPolicy::default(),
            client_keys,
        }
    }

    // ------------------------------------------------------------ access

    /// Whether an AccessKeyId is limited to some keys (or no longer live).
    fn limited(&self, caller: Caller<'_>) -> bool {
        match caller {
            Caller::ClientKey(_) => false,
            Caller::Credential(who) => !self.access.unrestricted(who),
        }
    }

    /// May the caller use the key `store_ref` names (noted either way).
    fn check_access(&self, caller: Caller<'_>, store_ref: &str) -> Result<(), AlibabaError> {
        match caller {
            Caller::Credential(who) if !self.access.may_use(who, store_ref) => Err(forbidden_ram()),
            Caller::Credential(_) => Ok(()),
            Caller::ClientKey(note) => {
                self.access.note(note, store_ref);
                Ok(())
            }
        }
    }

    /// May the caller see the key in a listing (nothing noted).
    fn may_list(&self, caller: Caller<'_>, key: &KeyId) -> bool {
        match caller {
            Caller::Credential(who) => self.access.may_list(who, &key.to_string()),
            Caller::ClientKey(_) => true,
        }
    }

    /// Resolves a KeyId / alias / ARN parameter the caller may use.
    pub(super) fn resolve(
        &self,
        caller: Caller<'_>,
        key: &str,
    ) -> Result<KeyMetadata, AlibabaError> {
        let Some((r, alias)) = store_ref(key) else {
            if self.limited(caller) {
                return Err(forbidden_ram());
            }
            return Err(if key.contains("alias/") {
                alias_not_found()
            } else {
                AlibabaError::key_not_found()
            });
        };
        self.check_access(caller, &r)?;
        self.store.describe(&r).map_err(|e| match e {
            KeyError::CmkNotFound if alias => alias_not_found(),
            e => key_error(e),
        })
    }

    /// The key that sealed a store blob, after checking the caller may use it.
    fn blob_key(&self, caller: Caller<'_>, blob: &[u8]) -> Result<(KeyId, u32), AlibabaError> {
        if advance::is_advance_blob(blob) {
            return Err(invalid_ciphertext(
                "was made by AdvanceEncrypt; open it with AdvanceDecrypt",
            ));
        }
        let cmk =
            blob_cmk(blob).map_err(|_| invalid_ciphertext("is not a ciphertext of this KMS"))?;
        let id = KeyId::from_bytes(cmk.key_id);
        self.check_access(caller, &id.to_string())?;
        Ok((id, cmk.version))
    }

    fn decode_blob(s: &str) -> Result<Vec<u8>, AlibabaError> {
        B64.decode(s.trim())
            .map_err(|_| invalid_ciphertext("is not Base64"))
    }

    /// Seals `plaintext` under the key's initial version (Encrypt's rule).
    fn seal_initial(
        &self,
        key: &KeyId,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<(u32, Vec<u8>), AlibabaError> {
        self.store
            .with_version_material(&key.to_string(), VersionChoice::Initial, |cmk, m| {
                let which = self.store.blob_cipher(&cmk);
                seal_blob(cmk, m, which, plaintext, context, &mut OsRng).map(|b| (cmk.version, b))
            })
            .and_then(|r| r)
            .map_err(key_error)
    }

    // --------------------------------------------------------- handlers

    /// The action table, by family (each in its own module).
    fn dispatch(&self, caller: Caller<'_>, request: Request) -> Result<Value, AlibabaError> {
        use Request as R;
        match request {
            // keys
            R::CreateKey(r) => self.create_key(caller, r),
            R::DescribeKey(r) => self.describe_key(caller, r),
            R::ListKeys(r) => self.list_keys(caller, r),
            R::EnableKey(r) => self.enable_key(caller, r),
            R::DisableKey(r) => self.disable_key(caller, r),
            R::ScheduleKeyDeletion(r) => self.schedule_key_deletion(caller, r),
            R::CancelKeyDeletion(r) => self.cancel_key_deletion(caller, r),
            R::UpdateKeyDescription(r) => self.update_key_description(caller, r),
            R::CreateKeyVersion(r) => self.create_key_version(caller, r),
            R::ListKeyVersions(r) => self.list_key_versions(caller, r),
            R::DescribeKeyVersion(r) => self.describe_key_version(caller, r),
            R::UpdateRotationPolicy(r) => self.update_rotation_policy(caller, r),
            // aliases
            R::CreateAlias(r) => self.create_alias(caller, r),
            R::UpdateAlias(r) => self.update_alias(caller, r),
            R::DeleteAlias(r) => self.delete_alias(caller, r),
            R::ListAliases(r) => self.list_aliases(caller, r),
            R::ListAliasesByKeyId(r) => self.list_aliases_by_key_id(caller, r),
            // symmetric
            R::Encrypt(r) => self.encrypt(caller, r),
            R::Decrypt(r) => self.decrypt(caller, r),
            R::ReEncrypt(r) => self.re_encrypt(caller, r),
            R::GenerateDataKey(g) => self.generate_data_key(caller, g, true),
            R::GenerateDataKeyWithoutPlaintext(g) => self.generate_data_key(caller, g, false),
            R::AdvanceEncrypt(r) => self.advance_encrypt_openapi(caller, r),
            R::AdvanceDecrypt(r) => self.advance_decrypt_openapi(caller, r),
            R::AdvanceGenerateDataKey(r) => self.advance_generate_data_key_openapi(caller, r),
            // asymmetric
            R::GetPublicKey(r) => self.get_public_key(caller, r),
            R::AsymmetricSign(r) => self.asymmetric_sign(caller, r),
            R::AsymmetricVerify(r) => self.asymmetric_verify(caller, r),
            R::AsymmetricEncrypt(r) => self.asymmetric_encrypt(caller, r),
            R::AsymmetricDecrypt(r) => self.asymmetric_decrypt(caller, r),
            // service
            R::DescribeRegions => self.describe_regions(caller),
            R::DescribeService => self.describe_service(caller),
        }
    }

    /// The key and KeyVersionId of an asymmetric action: a key the caller
    /// may use whose usage fits `purpose`, and its one version (asymmetric
    /// keys do not rotate), named exactly as [`version_id`] names it.
    fn asymmetric_key(
        &self,
        caller: Caller<'_>,
        v: &wire::KeyVersionRef,
        purpose: Purpose,
    ) -> Result<(KeyMetadata, String), AlibabaError> {
        let m = self.resolve(caller, &v.key.key_id)?;
        let fits = match purpose {
            _ if m.key_usage.asymmetric_spec().is_none() => false,
            Purpose::Any => true,
            Purpose::Sign => m.key_usage.is_signing(),
            Purpose::Decrypt => !m.key_usage.is_signing(),
        };
        if !fits {
            let (spec, usage) = spec_and_usage(m.key_usage);
            return Err(AlibabaError::new(
                codes::UNSUPPORTED_OPERATION,
                format!(
                    "The specified key ({spec}, {usage}) does not support this operation{}.",
                    match purpose {
                        Purpose::Any => "; it needs an asymmetric key",
                        Purpose::Sign => "; it needs an asymmetric SIGN/VERIFY key",
                        Purpose::Decrypt => "; it needs an asymmetric ENCRYPT/DECRYPT key",
                    }
                ),
            ));
        }
        let version = parse_version_id(&m.key_id, &v.key_version_id)
            .filter(|n| Some(*n) == m.primary_version)
            .ok_or_else(|| key_error(KeyError::VersionNotFound))?;
        let kv = version_id(&m.key_id, version);
        Ok((m, kv))
    }

    /// DryRun of an asymmetric action: the key's state is checked (a
    /// disabled key is refused as it would be), nothing is computed; the
    /// result field is `empty`.
    fn dry_run_asymmetric(
        &self,
        m: &KeyMetadata,
        kv: String,
        field: &str,
        empty: Value,
    ) -> Result<Value, AlibabaError> {
        self.store
            .with_private_key(&m.key_id.to_string(), |_, _| ())
            .map_err(key_error)?;
        let mut out = json!({ "KeyId": m.key_id.to_string(), "KeyVersionId": kv });
        out[field] = empty;
        Ok(out)
    }

    /// DryRun: the key's initial version, once its state allows sealing.
    fn dry_run(&self, key: &KeyId) -> Result<u32, AlibabaError> {
        self.store
            .with_version_material(&key.to_string(), VersionChoice::Initial, |cmk, _| {
                cmk.version
            })
            .map_err(key_error)
    }

    fn generate_data_key(
        &self,
        caller: Caller<'_>,
        g: wire::GenerateDataKey,
        with_plaintext: bool,
    ) -> Result<Value, AlibabaError> {
        let m = self.resolve(caller, &g.key.key_id)?;
        if g.dry_run {
            let v = self.dry_run(&m.key_id)?;
            return Ok(json!({
                "KeyId": m.key_id.to_string(),
                "KeyVersionId": version_id(&m.key_id, v),
                "CiphertextBlob": "",
            }));
        }
        let dk = self
            .store
            .generate_random(g.number_of_bytes as usize)
            .map_err(key_error)?;
        // Alibaba seals the Base64 text: Decrypt of the blob returns it.
        let text = SecretBytes::new(b64(dk.expose()).into_bytes());
        let (v, blob) = self.seal_initial(
            &m.key_id,
            text.expose(),
            context::aad(&g.encryption_context),
        )?;
        let mut out = json!({
            "KeyId": m.key_id.to_string(),
            "KeyVersionId": version_id(&m.key_id, v),
            "CiphertextBlob": b64(&blob),
        });
        if with_plaintext {
            out["Plaintext"] = Value::String(plaintext_text(&text));
        }
        Ok(out)
    }

    /// AdvanceEncrypt under the key's primary version.
    pub(super) fn advance_encrypt(
        &self,
        caller: Caller<'_>,
        a: wire::AdvanceEncrypt,
    ) -> Result<AdvanceSealed, AlibabaError> {
        let m = self.resolve(caller, &a.key.key_id)?;
        if !m.key_usage.is_symmetric() {
            return Err(key_error(KeyError::UsageMismatch));
        }
        let key_id = m.key_id.to_string();
        let sealed = self
            .store
            .with_version_material(&key_id, VersionChoice::Primary, |cmk, material| {
                let kv = version_id(&m.key_id, cmk.version);
                advance::seal(
                    material,
                    &SealParams {
                        key_id: &key_id,
                        key_version_id: &kv,
                        algorithm: a.algorithm.unwrap_or(Algorithm::AesGcm),
                        padding: a.padding,
                        iv: a.iv.as_deref(),
                        aad: &a.aad,
                    },
                    a.plaintext.expose(),
                    &mut OsRng,
                )
            })
            .map_err(key_error)?
            .map_err(advance_error)?;
        Ok(AdvanceSealed { key_id, sealed })
    }

    /// A random data key, AdvanceEncrypted (AES_GCM, the caller's Aad).
    pub(super) fn advance_generate_data_key(
        &self,
        caller: Caller<'_>,
        g: wire::AdvanceGenerateDataKey,
    ) -> Result<(AdvanceSealed, SecretBytes), AlibabaError> {
        let mut dk = vec![0u8; g.number_of_bytes as usize];
        OsRng.fill_bytes(&mut dk);
        let dk = SecretBytes::new(dk);
        let s = self.advance_encrypt(
            caller,
            wire::AdvanceEncrypt {
                key: g.key,
                plaintext: dk.clone(),
                algorithm: Some(Algorithm::AesGcm),
                iv: None,
                aad: g.aad,
                padding: None,
            },
        )?;
        Ok((s, dk))
    }

    pub(super) fn advance_decrypt(
        &self,
        caller: Caller<'_>,
        d: wire::AdvanceDecrypt,
    ) -> Result<advance::Opened, AlibabaError> {
        let given = match &d.key {
            Some(k) => Some(self.resolve(caller, &k.key_id)?.key_id),
            None => None,
        };
        let mismatch = || AlibabaError::invalid("KeyId", "it is not the key of the CiphertextBlob");
        match advance::classify(&d.ciphertext_blob).map_err(advance_error)? {
            BlobKind::Advance(parsed) => {
                let h = &parsed.header;
                let id = KeyId::parse(&h.key_id)
                    .ok_or_else(|| invalid_ciphertext("names no key of this KMS"))?;
                if given.is_some_and(|g| g != id) {
                    return Err(mismatch());
                }
                let version = parse_version_id(&id, &h.key_version_id)
                    .ok_or_else(|| invalid_ciphertext("names no key version of this KMS"))?;
                let id_str = id.to_string();
                self.check_access(caller, &id_str)?;
                let plaintext = self
                    .store
                    .with_version_material(&id_str, VersionChoice::Number(version), |_, m| {
                        advance::open(m, &parsed, &d.aad)
                    })
                    .map_err(key_error)?
                    .map_err(advance_error)?;
                Ok(advance::Opened {
                    key_id: id_str,
                    key_version_id: h.key_version_id.clone(),
                    algorithm: Some(h.algorithm),
                    padding: h.padding,
                    plaintext,
                })
            }
            BlobKind::Plain(blob) => {
                let cmk = blob_cmk(blob)
                    .map_err(|_| invalid_ciphertext("is not a ciphertext of this KMS"))?;
                let id = KeyId::from_bytes(cmk.key_id);
                if given.is_some_and(|g| g != id) {
                    return Err(mismatch());
                }
                self.check_access(caller, &id.to_string())?;
                let opened = self.store.decrypt(blob, b"").map_err(key_error)?;
                Ok(advance::Opened {
                    key_id: id.to_string(),
                    key_version_id: version_id(&id, cmk.version),
                    algorithm: Some(Algorithm::AesGcm),
                    padding: None,
                    plaintext: opened.plaintext,
                })
            }
        }
    }

    // ---------------------------------------------------------- the APIs

    fn openapi(&self, req: &KmsRequest, outcome: &mut KmsOutcome) -> Result<Value, AlibabaError> {
        let headers = req.header_pairs();
        let parts = req.signing_parts(&headers);
        // An unknown or revoked AccessKeyId fails as a wrong secret does
        // (SignatureDoesNotMatch), not with InvalidAccessKeyId.NotFound: that
        // code would tell anyone which ids exist (see docs/kms-alibaba.md).
        let (principal, verified) = self.access.authenticate(
            |lookup| sign::verify(&parts, lookup, &self.nonces, now_secs(), &self.policy),
            |v| v.caller.access_key_id.as_str(),
            || AuthError::SignatureDoesNotMatch("signature does not match"),
        )?;
        outcome.credential = Some(principal.id().to_string());
        wire::check_version(verified.version.trim())?;
        let action = wire::parse_action(verified.action.trim())?;
        outcome.action = action.name();
        if self
            .limiter
            .check_now(principal.id(), action.name())
            .is_err()
        {
            outcome.limited = true;
            return Err(AlibabaError::throttled());
        }
        let served = wire::parse_request(action, &verified.params)
            .and_then(|request| self.dispatch(Caller::Credential(&principal), request));
        outcome.key = principal.key();
        served
    }

    /// The instance API; the key the request touches is noted on `note`.
    fn instance_api(
        &self,
        req: &KmsRequest,
        request_id: &str,
        outcome: &mut KmsOutcome,
        note: &KeyNote,
    ) -> Result<Vec<u8>, AlibabaError> {
        let headers = req.header_pairs();
        let parts = req.signing_parts(&headers);
        let who = instance::verify(&parts, |id| self.client_keys.lookup(id), now_secs())?;
        outcome.credential = Some(who.access_key_id.clone());
        outcome.action = who.action.name();
        if self
            .limiter
            .check_now(&who.access_key_id, who.action.quota_action())
            .is_err()
        {
            outcome.limited = true;
            return Err(AlibabaError::throttled());
        }
        self.instance_action(who.action, &req.body, request_id, note)
    }
}

/// The store alias of an `alias/<name>` AliasName, if sealgate can hold it.
fn alias_name(alias: &str) -> Result<&str, AlibabaError> {
    let name = alias.strip_prefix("alias/").unwrap_or(alias);
    validate_alias(name).map_err(key_error)?;
    Ok(name)
}

impl AlibabaFace {
    /// Counts this face's quotas in `backend` (`--limits`), shared by the
    /// nodes that use it; `None` keeps them in this process.
    pub fn with_shared_limits(
        self,
        backend: Option<std::sync::Arc<crate::limits::SharedLimits>>,
    ) -> Self {
        Self {
            limiter: self.limiter.shared_by(backend),
            ..self
        }
    }
}

impl Face for AlibabaFace {
    fn handle(&self, req: KmsRequest) -> KmsReply {
        let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
        if req.headers.contains_key("x-kms-apiname") {
            let mut outcome = KmsOutcome::new(Dialect::AlibabaInstance);
            let note = KeyNote::default();
            let served = self.instance_api(&req, &request_id, &mut outcome, &note);
            outcome.key = note.get();
            let response = match served {
                Ok(body) => respond(200, instance::CONTENT_TYPE, &request_id, body),
                Err(e) => {
                    tracing::debug!(
                        code = e.code,
                        status = e.status,
                        "Alibaba instance API error"
                    );
                    outcome.code = Some(e.code);
                    outcome.limited |= e.code == codes::THROTTLING.0;
                    respond(
                        e.status,
                        instance::CONTENT_TYPE,
                        &request_id,
                        instance::error_body(&request_id, &e),
                    )
                }
            };
            return KmsReply { response, outcome };
        }
        let mut outcome = KmsOutcome::new(Dialect::Alibaba);
        let (status, body) = match self.openapi(&req, &mut outcome) {
            Ok(fields) => (200, wire::success_body(&request_id, fields)),
            Err(e) => {
                tracing::debug!(code = e.code, status = e.status, "Alibaba OpenAPI error");
                outcome.code = Some(e.code);
                // a full nonce cache answers with the throttling code too
                outcome.limited |= e.code == codes::THROTTLING.0;
                (e.status, wire::error_body(&request_id, HOST_ID, &e))
            }
        };
        let response = respond(
            status,
            wire::CONTENT_TYPE,
            &request_id,
            body.to_string().into_bytes(),
        );
        KmsReply { response, outcome }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_service_offers_exactly_what_create_key_makes() {
        let v = describe_service();
        assert_eq!(
            v["ProtectionLevels"]["ProtectionLevel"],
            json!([{ "Type": "SOFTWARE" }])
        );
        let specs = v["KeySpecs"]["KeySpec"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = specs.iter().filter_map(|s| s["Name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "Aliyun_AES_256",
                "Aliyun_AES_128",
                "RSA_2048",
                "RSA_3072",
                "EC_P256"
            ]
        );
        for s in &specs {
            let spec = s["Name"].as_str().and_then(wire::KeySpec::parse).unwrap();
            assert_eq!(
                s["SupportedProtectionLevels"]["SupportedProtectionLevel"],
                json!(["SOFTWARE"])
            );
            for u in s["Usages"]["Usage"].as_array().unwrap() {
                let usage = u.as_str().and_then(wire::KeyUsage::parse).unwrap();
                assert!(store_usage(spec, usage).is_ok(), "{s}");
            }
        }
        assert_eq!(
            specs[2]["Usages"]["Usage"],
            json!(["ENCRYPT/DECRYPT", "SIGN/VERIFY"])
        );
        assert_eq!(specs[4]["Usages"]["Usage"], json!(["SIGN/VERIFY"]));
        // the region DescribeRegions names is the one in every ARN
        assert_eq!(ARN_PREFIX.split(':').nth(2), Some(REGION_ID));
    }

    #[test]
    fn key_references_map_to_the_store() {
        let id = KeyId::new_random();
        let s = id.to_string();
        assert_eq!(store_ref(&s), Some((s.clone(), false)));
        assert_eq!(
            store_ref(&format!("{ARN_PREFIX}:key/{s}")),
            Some((s.clone(), false))
        );
        assert_eq!(store_ref("alias/app-key"), Some(("app-key".into(), true)));
        assert_eq!(
            store_ref("acs:kms:cn-hangzhou:123:alias/app-key"),
            Some(("app-key".into(), true))
        );
        // a bare alias name is not a KeyId in Alibaba's API
        assert_eq!(store_ref("app-key"), None);
        // alias/<uuid> must not reach the key by id
        assert_eq!(store_ref(&format!("alias/{s}")), None);
        assert_eq!(store_ref("alias/a/b"), None);
    }

    #[test]
    fn version_ids_round_trip_only_for_their_key() {
        let a = KeyId::new_random();
        let b = KeyId::new_random();
        let v = version_id(&a, 3);
        assert_eq!(parse_version_id(&a, &v), Some(3));
        assert_eq!(parse_version_id(&b, &v), None);
        assert_eq!(parse_version_id(&a, &format!("{a}-v0")), None);
        assert_eq!(parse_version_id(&a, &format!("{a}-vx")), None);
    }

    #[test]
    fn key_specs_map_to_store_usages_and_back() {
        use wire::KeySpec as S;
        use wire::KeyUsage as U;
        for (spec, usage, want) in [
            (S::AliyunAes256, U::EncryptDecrypt, KeyUsage::EncryptDecrypt),
            (
                S::Rsa2048,
                U::EncryptDecrypt,
                KeyUsage::AsymmetricDecryptRsa2048,
            ),
            (
                S::Rsa2048,
                U::SignVerify,
                KeyUsage::AsymmetricSignVerifyRsa2048,
            ),
            (
                S::Rsa3072,
                U::EncryptDecrypt,
                KeyUsage::AsymmetricDecryptRsa3072,
            ),
            (
                S::Rsa3072,
                U::SignVerify,
                KeyUsage::AsymmetricSignVerifyRsa3072,
            ),
            (S::EcP256, U::SignVerify, KeyUsage::AsymmetricSignVerifyEcc),
            (
                S::AliyunAes128,
                U::EncryptDecrypt,
                KeyUsage::EncryptDecryptAes128,
            ),
        ] {
            let got = store_usage(spec, usage).unwrap();
            assert_eq!(got, want);
            // DescribeKey shows what CreateKey was given
            assert_eq!(spec_and_usage(got), (spec.as_str(), usage.as_str()));
        }
        for spec in [
            S::EcSm2,
            S::EcP256K,
            S::Rsa4096,
            S::AliyunSm4,
            S::AliyunAes192,
        ] {
            for usage in [U::EncryptDecrypt, U::SignVerify] {
                assert_eq!(
                    store_usage(spec, usage).unwrap_err().code,
                    "InvalidParameter.KeySpec",
                    "{spec:?}"
                );
            }
        }
        assert_eq!(
            store_usage(S::AliyunAes128, U::SignVerify)
                .unwrap_err()
                .code,
            "InvalidParameter.KeySpec"
        );
    }

    #[test]
    fn oaep_encryption_respects_the_documented_plaintext_limits() {
        for (spec, sha256, sha1) in [
            (AsymmetricSpec::Rsa2048, 190, 214),
            (AsymmetricSpec::Rsa3072, 318, 342),
        ] {
            let key = crate::keys::asymmetric::PrivateKey::from_pkcs8(
                spec,
                spec.generate_pkcs8().unwrap(),
            )
            .unwrap();
            let der = key.public_key_der().unwrap();
            for (padding, max) in [
                (RsaPadding::OaepSha256, sha256),
                (RsaPadding::OaepSha1, sha1),
            ] {
                let pt = vec![9u8; max];
                let ct = oaep_encrypt(&der, padding, &pt).unwrap();
                assert_eq!(key.decrypt(padding, &ct).unwrap().expose(), &pt[..]);
                let e = oaep_encrypt(&der, padding, &vec![9u8; max + 1]).unwrap_err();
                assert_eq!(e.code, "InvalidParameter");
            }
        }
    }

    #[test]
    fn rotation_intervals_become_whole_days_in_range() {
        let d = |s| interval_days(Some(wire::RotationInterval(s)));
        assert_eq!(d(7 * 86_400), Some(7));
        assert_eq!(d(30 * 86_400), Some(30));
        assert_eq!(d(365 * 86_400), Some(365));
        assert_eq!(interval_days(None), None);
    }
}
