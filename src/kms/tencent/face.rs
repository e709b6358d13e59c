//! The Tencent Cloud KMS face: one request → signature check ([`sign`]) →
//! replay check (each signature, legacy: each Nonce + Timestamp, accepted
//! once while within the skew window; [`crate::kms::replay`]) →
//! per-credential rate limit → typed request ([`wire::parse_request`]) →
//! key store → Tencent's response envelope.
//!
//! Every answer is HTTP 200 with `Content-Type: application/json` exactly;
//! errors carry the documented code (see docs/kms-tencent.md for the table).
//! The legacy `/v2/index.php` API ([`legacy`]: its actions, parameter
//! mapping and flat lower-camel body) runs through the same path.
//!
//! Asymmetric keys are served through [`crate::keys::asymmetric`]
//! (aws-lc-rs): RSA-2048 decryption (PKCS#1 v1.5, OAEP SHA-1/SHA-256) and
//! signing (RSA_PSS_SHA_256, RSA_PKCS1_SHA_256), ECC P-256 (`ECC_P256_R1`)
//! and ECDSA P-384 (`ECC_P384_R1`) signing, GetPublicKey. The SM2 usages are
//! answered with `UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion`
//! (no well-kept SM2 implementation in Rust). EXTERNAL keys work:
//! GetParametersForImport hands out an RSA-2048 wrapping key and
//! ImportKeyMaterial unwraps 32 bytes of AES-256 material with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
    Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1,
    OAEP_SHA256_MGF1SHA256,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::legacy;
use super::sign::{self, RequestParts, VerifyPolicy};
use super::wire::{
    self, codes, Action, EncryptionContext, EnvelopeAlgorithm, MessageType, ParamStyle, Request,
    ReturnWrapping, RsaAlgorithm, TencentError,
};
use crate::keys::asymmetric::{self, PrivateKey, RsaPadding, SignInput, SigningAlgorithm};
use crate::keys::blob::blob_cmk;
use crate::keys::{
    CreateKeyRequest, KeyError, KeyId, KeyMetadata, KeyOrigin, KeyState, KeyStore, KeyUsage, Tag,
};
use crate::kms::access::{Access, Principal};
use crate::kms::replay::{expiry_after_window, ReplayCache, ReplayRefused};
use crate::kms::{Face, KmsRequest};
use crate::ratelimit::{Quota, RateLimiter, SystemClock};
use crate::secret::SecretBytes;

/// Path of the legacy API.
pub const LEGACY_PATH: &str = "/v2/index.php";
/// How long GetParametersForImport parameters stay valid (seconds).
pub const IMPORT_PARAMETERS_TTL: u64 = 24 * 3600;
/// Default quota for an action missing from the table (requests/s).
const DEFAULT_QUOTA: u32 = 100;

/// Wrapping parameters handed out by GetParametersForImport, kept in memory
/// until used or replaced (a restart drops them; ask again).
struct PendingImport {
    token: String,
    algorithm: RsaAlgorithm,
    key: PrivateDecryptingKey,
    valid_to: u64,
}

/// The Tencent Cloud KMS face over a [`KeyStore`].
pub struct TencentFace {
    store: Arc<KeyStore>,
    access: Access,
    limiter: RateLimiter<SystemClock>,
    policy: VerifyPolicy,
    /// Signatures (legacy: Nonce + Timestamp) already accepted, per SecretId.
    replays: ReplayCache,
    imports: Mutex<HashMap<KeyId, PendingImport>>,
}

impl std::fmt::Debug for TencentFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TencentFace").finish_non_exhaustive()
    }
}

/// The request after authentication: who, which action, its parameters
/// (a legacy request: the API 3.0 action it counts against, and its steps).
struct Authenticated {
    caller: Principal,
    action: Action,
    params: Value,
    legacy: Option<legacy::Call>,
}

fn now_secs() -> u64 {
    crate::keys::unix_now()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn ctx_bytes(ctx: &Option<EncryptionContext>) -> &[u8] {
    ctx.as_ref().map(|c| c.canonical.as_bytes()).unwrap_or(b"")
}

/// The generic mapping of store errors to Tencent codes; actions with a more
/// precise documented code check for it before calling the store.
fn key_error(e: KeyError) -> TencentError {
    match e {
        KeyError::CmkNotFound => TencentError::new(codes::CMK_NOT_FOUND, "The CMK does not exist."),
        KeyError::CmkDisabled => TencentError::new(codes::CMK_DISABLED, "The CMK is disabled."),
        KeyError::CmkPendingDelete => TencentError::new(
            codes::CMK_STATE_NOT_SUPPORT,
            "The CMK is pending deletion.",
        ),
        KeyError::CmkPendingImport => TencentError::new(
            codes::CMK_STATE_NOT_SUPPORT,
            "The CMK is waiting for its key material to be imported.",
        ),
        KeyError::InvalidState(m) => TencentError::new(codes::CMK_STATE_NOT_SUPPORT, m),
        KeyError::UsageMismatch => TencentError::new(
            codes::INVALID_KEY_USAGE,
            "The CMK's KeyUsage does not allow this operation.",
        ),
        KeyError::VersionRetired => TencentError::new(
            codes::CMK_STATE_NOT_SUPPORT,
            "The CMK version of this ciphertext is below the key's minimum decryption version.",
        ),
        KeyError::DoesNotOpen | KeyError::VersionNotFound => TencentError::new(
            codes::INVALID_CIPHERTEXT,
            "The ciphertext does not decrypt (wrong EncryptionContext, damaged or not made by this KMS).",
        ),
        KeyError::InvalidAlias => TencentError::value(
            codes::INVALID_ALIAS,
            "Alias",
            "1-60 letters, digits, - and _, starting with a letter or digit",
        ),
        KeyError::AliasAlreadyExists => TencentError::new(
            codes::ALIAS_ALREADY_EXISTS,
            "Another CMK already has this alias.",
        ),
        KeyError::InvalidParameter(m) => TencentError::new(codes::INVALID_PARAMETER, m),
        KeyError::LimitExceeded => TencentError::new(
            codes::CMK_LIMIT_EXCEEDED,
            "The number of CMKs has reached its limit.",
        ),
        KeyError::UnsupportedKeyUsage => TencentError::new(
            codes::UNSUPPORTED_KEY_USAGE_IN_CURRENT_REGION,
            "This KeyUsage is not supported by this KMS (no SM2; imported material is symmetric only).",
        ),
        KeyError::DuplicateTagKey => TencentError::new(
            codes::TAG_KEYS_DUPLICATED,
            "A tag key is listed twice.",
        ),
        KeyError::Store(m) | KeyError::ImportConflict(m) | KeyError::Unavailable(m) => {
            tracing::error!(error = %m, "Tencent face: key store failure");
            TencentError::new(codes::INTERNAL_ERROR, "Internal error.")
        }
    }
}

fn unauthorized() -> TencentError {
    TencentError::new(
        codes::AUTH_UNAUTHORIZED_OPERATION,
        "This credential is not allowed to use this CMK or action.",
    )
}

/// Tencent's name of a usage. The two usages only the other faces create
/// (`ENCRYPT_DECRYPT_AES_128`, `ASYMMETRIC_SIGN_VERIFY_RSA_4096`) show under
/// their own names, in Tencent's naming pattern.
fn usage_str(u: KeyUsage) -> &'static str {
    u.as_str()
}

fn origin_str(o: KeyOrigin) -> &'static str {
    match o {
        KeyOrigin::Kms => "TENCENT_KMS",
        KeyOrigin::External => "EXTERNAL",
    }
}

fn ts(t: Option<u64>) -> i64 {
    t.and_then(|v| i64::try_from(v).ok()).unwrap_or(0)
}

/// Store metadata in Tencent's `KeyMetadata` shape.
fn wire_metadata(m: &KeyMetadata) -> wire::KeyMetadata {
    let id = m.key_id.to_string();
    wire::KeyMetadata {
        resource_id: format!("creatorUin/0/{id}"),
        key_id: id,
        alias: m.alias.clone().unwrap_or_default(),
        create_time: ts(Some(m.create_time)),
        description: m.description.clone(),
        key_state: m.key_state.as_str(),
        key_usage: usage_str(m.key_usage),
        key_type: i64::from(m.origin.type_number()),
        creator_uin: 0,
        key_rotation_enabled: m.key_rotation_enabled,
        owner: "user".into(),
        next_rotate_time: ts(m.next_rotate_time),
        deletion_date: ts(m.deletion_date),
        origin: origin_str(m.origin),
        valid_to: 0,
        rotate_days: i64::from(m.rotate_days),
        last_rotate_time: ts(m.last_rotate_time),
    }
}

fn metadata_value(m: &KeyMetadata) -> Value {
    serde_json::to_value(wire_metadata(m)).unwrap_or(Value::Null)
}

fn json_response(body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(wire::CONTENT_TYPE),
    );
    r
}

/// Decodes a PEM (or bare Base64) SubjectPublicKeyInfo.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    B64.decode(body).ok()
}

/// Encrypts `plaintext` under the caller's RSA public key (the optional
/// `EncryptionPublicKey` of Decrypt and GenerateDataKey).
fn wrap_for_caller(w: &ReturnWrapping, plaintext: &[u8]) -> Result<Vec<u8>, TencentError> {
    let bad_key = || {
        TencentError::invalid(
            "EncryptionPublicKey",
            "must be a PEM RSA public key (SubjectPublicKeyInfo)",
        )
    };
    let rsa = |der: &[u8]| PublicEncryptingKey::from_der(der).map_err(|_| bad_key());
    let failed = || {
        TencentError::new(
            codes::FAILED_OPERATION_ENCRYPTION_ERROR,
            "Encryption failed.",
        )
    };
    match w.algorithm {
        EnvelopeAlgorithm::Sm2 | EnvelopeAlgorithm::Sm2C1C3C2Asn1 => Err(TencentError::new(
            codes::UNSUPPORTED_KEY_USAGE_IN_CURRENT_REGION,
            "SM2 is not supported by this KMS; set EncryptionAlgorithm to an RSAES_* value.",
        )),
        EnvelopeAlgorithm::RsaPkcs1V15 => {
            let der = pem_to_der(&w.public_key_pem).ok_or_else(bad_key)?;
            let k = Pkcs1PublicEncryptingKey::new(rsa(&der)?).map_err(|_| bad_key())?;
            let mut out = vec![0u8; k.ciphertext_size()];
            let n = k.encrypt(plaintext, &mut out).map_err(|_| failed())?.len();
            out.truncate(n);
            Ok(out)
        }
        EnvelopeAlgorithm::RsaOaepSha1 | EnvelopeAlgorithm::RsaOaepSha256 => {
            let der = pem_to_der(&w.public_key_pem).ok_or_else(bad_key)?;
            let k = OaepPublicEncryptingKey::new(rsa(&der)?).map_err(|_| bad_key())?;
            let alg = if w.algorithm == EnvelopeAlgorithm::RsaOaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let mut out = vec![0u8; k.ciphertext_size()];
            let n = k
                .encrypt(alg, plaintext, &mut out, None)
                .map_err(|_| failed())?
                .len();
            out.truncate(n);
            Ok(out)
        }
    }
}

/// The returned `Plaintext`: Base64 of the plaintext, or of it encrypted
/// under the caller's public key.
fn returned_plaintext(
    wrapping: &Option<ReturnWrapping>,
    plaintext: &SecretBytes,
) -> Result<String, TencentError> {
    match wrapping {
        None => Ok(b64(plaintext.expose())),
        Some(w) => Ok(b64(&wrap_for_caller(w, plaintext.expose())?)),
    }
}

/// Unwraps imported key material with the wrapping key.
fn unwrap_material(p: &PendingImport, wrapped: &[u8]) -> Option<SecretBytes> {
    let mut out = vec![0u8; p.key.key_size_bytes()];
    let n = match p.algorithm {
        RsaAlgorithm::Pkcs1V15 => {
            let k = Pkcs1PrivateDecryptingKey::new(p.key.clone()).ok()?;
            k.decrypt(wrapped, &mut out).ok()?.len()
        }
        RsaAlgorithm::OaepSha1 | RsaAlgorithm::OaepSha256 => {
            let k = OaepPrivateDecryptingKey::new(p.key.clone()).ok()?;
            let alg = if p.algorithm == RsaAlgorithm::OaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            k.decrypt(alg, wrapped, &mut out, None).ok()?.len()
        }
    };
    out.truncate(n);
    Some(SecretBytes::new(out))
}

impl TencentFace {
    /// A face over `store` with the documented quotas, overridden per action
    /// by `quota_overrides` (`[kms.tencent.quotas]`, validated at load).
    pub fn new(store: Arc<KeyStore>, quota_overrides: &BTreeMap<String, Quota>) -> Self {
        let overrides: HashMap<String, Quota> = quota_overrides
            .iter()
            .map(|(k, q)| (k.clone(), *q))
            .collect();
        let limiter = RateLimiter::from_table(
            SystemClock,
            Quota::per_second(DEFAULT_QUOTA),
            wire::default_quotas(),
        )
        .with_overrides(overrides);
        Self {
            access: Access::new(store.clone()),
            store,
            limiter,
            policy: VerifyPolicy::default(),
            replays: ReplayCache::default(),
            imports: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the signature and reads the action and its parameters.
    fn authenticate(&self, req: &KmsRequest, legacy: bool) -> Result<Authenticated, TencentError> {
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
            .collect();
        let authority = req.uri.authority().map(|a| a.as_str().to_string());
        if !req.headers.contains_key(http::header::HOST) {
            if let Some(a) = authority.as_deref() {
                headers.push(("host", a));
            }
        }
        let parts = RequestParts {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query().unwrap_or(""),
            headers: &headers,
            body: &req.body,
        };
        // An unknown or revoked SecretId fails as a wrong secret does
        // (AuthFailure.SignatureFailure), not with Tencent's
        // AuthFailure.SecretIdNotFound: that code would tell anyone which
        // SecretIds exist (see docs/kms-tencent.md).
        let (principal, verified) = self.access.authenticate(
            |lookup| {
                sign::verify(
                    &parts,
                    lookup,
                    i64::try_from(now_secs()).unwrap_or(i64::MAX),
                    &self.policy,
                )
            },
            |v| v.caller.secret_id.as_str(),
            || sign::AuthError::SignatureFailure("signature does not match"),
        )?;
        // TC3 leaves X-TC-Action unsigned, so a captured request could be
        // sent again with another action: each signature (legacy: each
        // Nonce + Timestamp) is accepted once while its timestamp is within
        // the skew window. Remembered only after it verified, so nobody can
        // spend another caller's tokens.
        let token = sign::replay_token(&verified, legacy);
        let expires = expiry_after_window(verified.caller.timestamp, self.policy.max_skew_secs);
        self.replays
            .check_and_insert(&verified.caller.secret_id, &token, expires)
            .map_err(|r| match r {
                ReplayRefused::Used => TencentError::replayed(),
                ReplayRefused::Full => TencentError::rate_limited(),
            })?;
        let caller = principal;
        let (action, version, params) = match verified.v1_params {
            Some(flat) => {
                let get = |n: &str| flat.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                let action = get("Action").ok_or_else(|| TencentError::missing("Action"))?;
                let style = if legacy {
                    ParamStyle::Legacy
                } else {
                    ParamStyle::Api3
                };
                let params = wire::params_from_flat(&flat, style)?;
                (action, get("Version"), params)
            }
            None => {
                let action = req
                    .header("x-tc-action")
                    .ok_or_else(|| TencentError::missing("X-TC-Action"))?
                    .to_string();
                let version = req.header("x-tc-version").map(str::to_string);
                if version.is_none() && !legacy {
                    return Err(TencentError::missing("X-TC-Version"));
                }
                let is_form = req
                    .header("content-type")
                    .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
                let params = if req.method == http::Method::GET || is_form {
                    let src = if req.method == http::Method::GET {
                        parts.query.to_string()
                    } else {
                        String::from_utf8_lossy(&req.body).into_owned()
                    };
                    let flat = sign::form_decode(&src)
                        .map_err(|_| TencentError::invalid("query", "malformed encoding"))?;
                    wire::params_from_flat(&flat, ParamStyle::Api3)?
                } else if req.body.iter().all(u8::is_ascii_whitespace) {
                    json!({})
                } else {
                    serde_json::from_slice(&req.body).map_err(|_| {
                        TencentError::invalid("body", "the request body must be a JSON object")
                    })?
                };
                (action, version, params)
            }
        };
        if legacy {
            let call = legacy::translate(action.trim(), params)?;
            return Ok(Authenticated {
                caller,
                action: call.quota_action(),
                params: Value::Null,
                legacy: Some(call),
            });
        }
        let action = wire::parse_action(action.trim())?;
        if let Some(v) = version.as_deref() {
            wire::check_version(v.trim())?;
        }
        Ok(Authenticated {
            caller,
            action,
            params,
            legacy: None,
        })
    }

    fn process(
        &self,
        req: &KmsRequest,
        legacy: bool,
    ) -> Result<Value, (Option<Action>, TencentError)> {
        let auth = self.authenticate(req, legacy).map_err(|e| (None, e))?;
        let action = auth.action;
        self.limiter
            .check(auth.caller.id(), action.name())
            .map_err(|_| (Some(action), TencentError::rate_limited()))?;
        if let Some(call) = auth.legacy {
            return legacy::run(call, |request| self.dispatch(&auth.caller, request))
                .map_err(|e| (Some(action), e));
        }
        let request = wire::parse_request(action, &auth.params).map_err(|e| (Some(action), e))?;
        self.dispatch(&auth.caller, request)
            .map_err(|e| (Some(action), e))
    }

    /// Whether `caller` is limited to some keys (or no longer live).
    fn limited(&self, caller: &Principal) -> bool {
        !self.access.unrestricted(caller)
    }

    /// Checks that `caller` may use `key`, then describes it.
    fn key(&self, caller: &Principal, key: &str) -> Result<KeyMetadata, TencentError> {
        if !self.access.may_use(caller, key) {
            return Err(unauthorized());
        }
        self.store.describe(key).map_err(key_error)
    }

    /// The CMK that sealed a Base64 `CiphertextBlob`, after checking the
    /// caller may use it; returns the decoded blob.
    fn blob(&self, caller: &Principal, blob: &str) -> Result<Vec<u8>, TencentError> {
        let invalid = || {
            TencentError::new(
                codes::INVALID_CIPHERTEXT,
                "CiphertextBlob is not a ciphertext of this KMS.",
            )
        };
        let bytes = B64.decode(blob.trim()).map_err(|_| invalid())?;
        let cmk = blob_cmk(&bytes).map_err(|_| invalid())?;
        let id = KeyId::from_bytes(cmk.key_id).to_string();
        if !self.access.may_use(caller, &id) {
            return Err(unauthorized());
        }
        Ok(bytes)
    }

    fn visible_keys(&self, caller: &Principal) -> Vec<KeyMetadata> {
        let all = self.store.list(0, usize::MAX).keys;
        if self.limited(caller) {
            all.into_iter()
                .filter(|m| self.access.may_use(caller, &m.key_id.to_string()))
                .collect()
        } else {
            all
        }
    }

    fn dispatch(&self, caller: &Principal, request: Request) -> Result<Value, TencentError> {
        let store = &self.store;
        match request {
            Request::CreateKey(c) => {
                if self.limited(caller) {
                    return Err(unauthorized());
                }
                let m = store
                    .create(CreateKeyRequest {
                        alias: Some(c.alias),
                        description: c.description.unwrap_or_default(),
                        key_usage: c.key_usage.as_str().parse().map_err(|_| {
                            TencentError::value(
                                codes::INVALID_KEY_USAGE,
                                "KeyUsage",
                                "unknown key usage",
                            )
                        })?,
                        origin: if c.external {
                            KeyOrigin::External
                        } else {
                            KeyOrigin::Kms
                        },
                        tags: c
                            .tags
                            .into_iter()
                            .map(|t| Tag {
                                tag_key: t.tag_key,
                                tag_value: t.tag_value,
                            })
                            .collect(),
                        owner: caller.id().to_string(),
                    })
                    .map_err(key_error)?;
                Ok(json!({
                    "KeyId": m.key_id.to_string(),
                    "Alias": m.alias.clone().unwrap_or_default(),
                    "CreateTime": ts(Some(m.create_time)),
                    "Description": m.description,
                    "KeyState": m.key_state.as_str(),
                    "KeyUsage": usage_str(m.key_usage),
                    "TagCode": 0,
                    "TagMsg": "",
                }))
            }
            Request::DescribeKey(k) => {
                let m = self.key(caller, &k.key_id)?;
                Ok(json!({ "KeyMetadata": metadata_value(&m) }))
            }
            Request::DescribeKeys(k) => {
                let mut out = Vec::with_capacity(k.key_ids.len());
                for id in &k.key_ids {
                    out.push(metadata_value(&self.key(caller, id)?));
                }
                Ok(json!({ "KeyMetadatas": out }))
            }
            Request::ListKeys(l) => {
                let keys = if l.role == 1 {
                    Vec::new()
                } else {
                    self.visible_keys(caller)
                };
                let page: Vec<Value> = keys
                    .iter()
                    .skip(l.offset as usize)
                    .take(l.limit as usize)
                    .map(|m| json!({ "KeyId": m.key_id.to_string() }))
                    .collect();
                Ok(json!({ "Keys": page, "TotalCount": keys.len() }))
            }
            Request::ListKeyDetail(l) => {
                let mut keys: Vec<KeyMetadata> = if l.role == 1 {
                    Vec::new()
                } else {
                    self.visible_keys(caller)
                };
                keys.retain(|m| {
                    let state_ok = l
                        .key_state
                        .is_none_or(|s| s.as_str() == m.key_state.as_str());
                    let usage_ok = l
                        .key_usage
                        .is_none_or(|u| u.as_str() == m.key_usage.as_str());
                    let origin_ok = match l.origin {
                        wire::OriginFilter::All => true,
                        wire::OriginFilter::TencentKms => m.origin == KeyOrigin::Kms,
                        wire::OriginFilter::External => m.origin == KeyOrigin::External,
                    };
                    let search_ok = l.search_key_alias.as_deref().is_none_or(|s| {
                        m.key_id.to_string().contains(s)
                            || m.alias.as_deref().is_some_and(|a| a.contains(s))
                    });
                    let tags_ok = l.tag_filters.iter().all(|f| {
                        m.tags.iter().any(|t| {
                            t.tag_key == f.tag_key
                                && (f.tag_value.is_empty() || f.tag_value.contains(&t.tag_value))
                        })
                    });
                    state_ok && usage_ok && origin_ok && search_ok && tags_ok
                });
                if !l.ascending {
                    keys.reverse();
                }
                let page: Vec<Value> = keys
                    .iter()
                    .skip(l.offset as usize)
                    .take(l.limit as usize)
                    .map(metadata_value)
                    .collect();
                Ok(json!({ "TotalCount": keys.len(), "KeyMetadatas": page }))
            }
            Request::EnableKey(k) => {
                self.key(caller, &k.key_id)?;
                store.enable(&k.key_id).map_err(key_error)?;
                Ok(json!({}))
            }
            Request::DisableKey(k) => {
                self.key(caller, &k.key_id)?;
                store.disable(&k.key_id).map_err(key_error)?;
                Ok(json!({}))
            }
            Request::EnableKeys(k) => self.batch(caller, &k.key_ids, true),
            Request::DisableKeys(k) => self.batch(caller, &k.key_ids, false),
            Request::ScheduleKeyDeletion(r) => {
                let m = self.key(caller, &r.key_id)?;
                if m.key_state == KeyState::Enabled {
                    return Err(TencentError::new(
                        codes::CMK_SHOULD_BE_DISABLED,
                        "Disable the CMK before scheduling its deletion.",
                    ));
                }
                let m = store
                    .schedule_deletion(&r.key_id, r.pending_window_in_days)
                    .map_err(key_error)?;
                Ok(json!({
                    "DeletionDate": ts(m.deletion_date),
                    "KeyId": m.key_id.to_string(),
                }))
            }
            Request::CancelKeyDeletion(k) => {
                let m = self.key(caller, &k.key_id)?;
                if m.key_state != KeyState::PendingDelete {
                    return Err(TencentError::new(
                        codes::CMK_NOT_PENDING_DELETE,
                        "The CMK is not pending deletion.",
                    ));
                }
                let m = store.cancel_deletion(&k.key_id).map_err(key_error)?;
                Ok(json!({ "KeyId": m.key_id.to_string() }))
            }
            Request::UpdateAlias(u) => {
                self.key(caller, &u.key_id)?;
                store.update_alias(&u.key_id, &u.alias).map_err(key_error)?;
                Ok(json!({}))
            }
            Request::UpdateKeyDescription(u) => {
                self.key(caller, &u.key_id)?;
                store
                    .update_description(&u.key_id, &u.description)
                    .map_err(key_error)?;
                Ok(json!({}))
            }
            Request::EnableKeyRotation(r) => {
                let m = self.key(caller, &r.key_id)?;
                check_rotatable(&m)?;
                store
                    .enable_rotation(&r.key_id, Some(r.rotate_days))
                    .map_err(key_error)?;
                Ok(json!({}))
            }
            Request::DisableKeyRotation(k) => {
                self.key(caller, &k.key_id)?;
                store.disable_rotation(&k.key_id).map_err(key_error)?;
                Ok(json!({}))
            }
            Request::GetKeyRotationStatus(k) => {
                let m = self.key(caller, &k.key_id)?;
                Ok(json!({ "KeyRotationEnabled": m.key_rotation_enabled }))
            }
            Request::RotateKey(k) => {
                let m = self.key(caller, &k.key_id)?;
                check_rotatable(&m)?;
                store.rotate(&k.key_id).map_err(|e| match e {
                    KeyError::CmkDisabled => TencentError::new(
                        codes::CMK_STATE_NOT_SUPPORT,
                        "Only an enabled CMK rotates.",
                    ),
                    e => key_error(e),
                })?;
                Ok(json!({ "TaskId": uuid::Uuid::new_v4().to_string() }))
            }
            Request::Encrypt(e) => {
                self.key(caller, &e.key_id)?;
                let ct = store
                    .encrypt(
                        &e.key_id,
                        e.plaintext.expose(),
                        ctx_bytes(&e.encryption_context),
                    )
                    .map_err(key_error)?;
                Ok(json!({
                    "CiphertextBlob": b64(&ct.blob),
                    "KeyId": ct.key_id.to_string(),
                }))
            }
            Request::Decrypt(d) => {
                let blob = self.blob(caller, &d.ciphertext_blob)?;
                let out = store
                    .decrypt(&blob, ctx_bytes(&d.encryption_context))
                    .map_err(key_error)?;
                Ok(json!({
                    "KeyId": out.key_id.to_string(),
                    "Plaintext": returned_plaintext(&d.return_wrapping, &out.plaintext)?,
                }))
            }
            Request::ReEncrypt(r) => {
                let blob = self.blob(caller, &r.ciphertext_blob)?;
                let source = blob_cmk(&blob).map_err(key_error)?;
                let dest = match &r.destination_key_id {
                    Some(d) => d.clone(),
                    None => KeyId::from_bytes(source.key_id).to_string(),
                };
                self.key(caller, &dest)?;
                let out = store
                    .re_encrypt(
                        &blob,
                        ctx_bytes(&r.source_encryption_context),
                        &dest,
                        ctx_bytes(&r.destination_encryption_context),
                    )
                    .map_err(key_error)?;
                Ok(json!({
                    "CiphertextBlob": b64(&out.ciphertext.blob),
                    "KeyId": out.ciphertext.key_id.to_string(),
                    "SourceKeyId": out.source_key_id.to_string(),
                    "ReEncrypted": true,
                }))
            }
            Request::GenerateDataKey(g) => {
                self.key(caller, &g.key_id)?;
                if g.hosted_by_kms {
                    return Err(TencentError::new(
                        codes::UNSUPPORTED_OPERATION,
                        "Data keys hosted by the KMS (IsHostedByKms=1) are not offered; use IsHostedByKms=0.",
                    ));
                }
                let n = g.number_of_bytes as usize;
                let out = store
                    .generate_data_key_blob(
                        &g.key_id,
                        crate::keys::DataKeySpec::Bytes(n),
                        ctx_bytes(&g.encryption_context),
                    )
                    .map_err(key_error)?;
                Ok(json!({
                    "KeyId": out.key_id.to_string(),
                    "Plaintext": returned_plaintext(&g.return_wrapping, &out.plaintext)?,
                    "CiphertextBlob": b64(&out.blob),
                }))
            }
            Request::GenerateRandom(g) => {
                let r = store
                    .generate_random(g.number_of_bytes as usize)
                    .map_err(key_error)?;
                Ok(json!({ "Plaintext": b64(r.expose()) }))
            }
            Request::GetPublicKey(k) => {
                let (m, der) = self.private_key(caller, &k.key_id, |m, key| {
                    Ok((m.clone(), key.public_key_der()?))
                })?;
                Ok(json!({
                    "KeyId": m.key_id.to_string(),
                    "PublicKey": b64(&der),
                    "PublicKeyPem": asymmetric::public_key_pem(&der),
                }))
            }
            Request::AsymmetricRsaDecrypt(r) => {
                let padding = match r.algorithm {
                    RsaAlgorithm::Pkcs1V15 => RsaPadding::Pkcs1V15,
                    RsaAlgorithm::OaepSha1 => RsaPadding::OaepSha1,
                    RsaAlgorithm::OaepSha256 => RsaPadding::OaepSha256,
                };
                let (m, plaintext) = self.private_key(caller, &r.key_id, |m, key| {
                    if !matches!(
                        m.key_usage,
                        KeyUsage::AsymmetricDecryptRsa2048 | KeyUsage::AsymmetricDecryptRsa3072
                    ) {
                        return Err(KeyError::UsageMismatch);
                    }
                    Ok((m.clone(), key.decrypt(padding, &r.ciphertext)?))
                })?;
                Ok(json!({
                    "KeyId": m.key_id.to_string(),
                    "Plaintext": b64(plaintext.expose()),
                }))
            }
            Request::AsymmetricSm2Decrypt(r) => {
                // no SM2 key can exist here: any key has the wrong usage
                let m = self.key(caller, &r.key_id)?;
                Err(TencentError::new(
                    codes::INVALID_KEY_USAGE,
                    format!(
                        "The CMK's KeyUsage is {}, not ASYMMETRIC_DECRYPT_SM2 (SM2 is not supported by this KMS).",
                        usage_str(m.key_usage)
                    ),
                ))
            }
            Request::SignByAsymmetricKey(r) => {
                let signature = self.private_key(caller, &r.key_id, |m, key| {
                    let alg = signing_algorithm(m.key_usage, &r.algorithm)?;
                    key.sign(alg, sign_input(&r.message, r.message_type))
                })?;
                Ok(json!({ "Signature": b64(&signature) }))
            }
            Request::VerifyByAsymmetricKey(r) => {
                let valid = self.private_key(caller, &r.key_id, |m, key| {
                    let alg = signing_algorithm(m.key_usage, &r.algorithm)?;
                    key.verify(
                        alg,
                        sign_input(&r.message, r.message_type),
                        &r.signature_value,
                    )
                })?;
                Ok(json!({ "SignatureValid": valid }))
            }
            Request::ListAlgorithms => Ok(list_algorithms()),
            Request::GetServiceStatus => Ok(json!({
                "ServiceEnabled": true,
                "InvalidType": 0,
                "UserLevel": 0,
                "CmkUserCount": self.visible_keys(caller).len(),
                "IsAllowedDataKeyHosted": false,
            })),
            Request::GetParametersForImport(g) => {
                let m = self.external_key(caller, &g.key_id)?;
                if m.key_state != KeyState::PendingImport {
                    return Err(TencentError::new(
                        codes::CMK_STATE_NOT_SUPPORT,
                        "The CMK already has its key material.",
                    ));
                }
                let failed = || TencentError::new(codes::INTERNAL_ERROR, "Internal error.");
                let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| failed())?;
                let public = key.public_key().as_der().map_err(|_| failed())?;
                let token = Alphanumeric.sample_string(&mut OsRng, 48);
                let valid_to = now_secs() + IMPORT_PARAMETERS_TTL;
                self.imports
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        m.key_id,
                        PendingImport {
                            token: token.clone(),
                            algorithm: g.wrapping_algorithm,
                            key,
                            valid_to,
                        },
                    );
                Ok(json!({
                    "KeyId": m.key_id.to_string(),
                    "ImportToken": token,
                    "PublicKey": b64(public.as_ref()),
                    "ParametersValidTo": valid_to,
                }))
            }
            Request::ImportKeyMaterial(i) => {
                let m = self.external_key(caller, &i.key_id)?;
                if m.key_state != KeyState::PendingImport {
                    return Err(TencentError::new(
                        codes::CMK_STATE_NOT_SUPPORT,
                        "The CMK already has its key material.",
                    ));
                }
                if i.valid_to != 0 {
                    return Err(TencentError::new(
                        codes::UNSUPPORTED_OPERATION,
                        "Key material expiry is not supported; omit ValidTo or pass 0.",
                    ));
                }
                let material = {
                    let mut imports = self.imports.lock().unwrap_or_else(PoisonError::into_inner);
                    let p = imports.get(&m.key_id).ok_or_else(|| {
                        TencentError::invalid("ImportToken", "no import parameters were issued for this CMK (call GetParametersForImport)")
                    })?;
                    if !bool::from(p.token.as_bytes().ct_eq(i.import_token.as_bytes())) {
                        return Err(TencentError::invalid(
                            "ImportToken",
                            "not the token issued for this CMK",
                        ));
                    }
                    if p.valid_to <= now_secs() {
                        imports.remove(&m.key_id);
                        return Err(TencentError::new(
                            codes::TOKEN_EXPIRED,
                            "The import token has expired; call GetParametersForImport again.",
                        ));
                    }
                    let material = unwrap_material(p, &i.encrypted_key_material)
                        .filter(|k| k.len() == 32)
                        .ok_or_else(|| {
                            TencentError::new(
                                codes::INVALID_PARAMETER_DECRYPT_MATERIAL_ERROR,
                                "EncryptedKeyMaterial does not decrypt to 32 bytes of key material under the wrapping key.",
                            )
                        })?;
                    imports.remove(&m.key_id);
                    material
                };
                store
                    .import_key_material(&i.key_id, &material)
                    .map_err(key_error)?;
                Ok(json!({}))
            }
            Request::DeleteImportedKeyMaterial(k) => {
                self.external_key(caller, &k.key_id)?;
                Err(TencentError::new(
                    codes::UNSUPPORTED_OPERATION,
                    "Deleting imported key material is not supported; schedule the CMK's deletion instead.",
                ))
            }
        }
    }

    /// Enables or disables every listed key, after checking all of them.
    fn batch(
        &self,
        caller: &Principal,
        ids: &[String],
        enable: bool,
    ) -> Result<Value, TencentError> {
        for id in ids {
            let m = self.key(caller, id)?;
            if !matches!(m.key_state, KeyState::Enabled | KeyState::Disabled) {
                return Err(key_error(
                    m.key_state
                        .unusable_error()
                        .unwrap_or(KeyError::CmkDisabled),
                ));
            }
        }
        for id in ids {
            if enable {
                self.store.enable(id).map_err(key_error)?;
            } else {
                self.store.disable(id).map_err(key_error)?;
            }
        }
        Ok(json!({}))
    }

    /// An EXTERNAL key the caller may use.
    fn external_key(&self, caller: &Principal, key: &str) -> Result<KeyMetadata, TencentError> {
        let m = self.key(caller, key)?;
        if m.origin != KeyOrigin::External {
            return Err(TencentError::new(
                codes::NOT_EXTERNAL_CMK,
                "The CMK is not an EXTERNAL (Type 2) key.",
            ));
        }
        Ok(m)
    }

    /// Runs `f` with the private key of an enabled asymmetric CMK the
    /// caller may use; a symmetric key is `InvalidKeyUsage`.
    fn private_key<R>(
        &self,
        caller: &Principal,
        key: &str,
        f: impl FnOnce(&KeyMetadata, &PrivateKey) -> Result<R, KeyError>,
    ) -> Result<R, TencentError> {
        let m = self.key(caller, key)?;
        self.store
            .with_private_key(&m.key_id.to_string(), f)
            .and_then(|r| r)
            .map_err(asymmetric_error)
    }
}

/// Errors of the asymmetric actions: as [`key_error`], except that a
/// ciphertext that does not decrypt is `FailedOperation.DecryptError` (RSA
/// padding failures say nothing more) and a bad algorithm is named.
fn asymmetric_error(e: KeyError) -> TencentError {
    match e {
        KeyError::DoesNotOpen => TencentError::new(
            codes::FAILED_OPERATION_DECRYPT_ERROR,
            "The ciphertext does not decrypt with this key and Algorithm.",
        ),
        e => key_error(e),
    }
}

/// Tencent's signing algorithm names, per key usage. `ECC_P256_R1` is the
/// documented name for ASYMMETRIC_SIGN_VERIFY_ECC keys (`ECC` is accepted as
/// well); ASYMMETRIC_SIGN_VERIFY_ECDSA384 keys sign with `ECC_P384_R1`
/// (ECDSA P-384, SHA-384) — the document names no algorithm for them.
const SIGNING_ALGORITHMS: &[(KeyUsage, &str, SigningAlgorithm)] = &[
    (
        KeyUsage::AsymmetricSignVerifyRsa2048,
        "RSA_PSS_SHA_256",
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa2048,
        "RSA_PKCS1_SHA_256",
        SigningAlgorithm::RsaPkcs1Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa4096,
        "RSA_PSS_SHA_256",
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa4096,
        "RSA_PKCS1_SHA_256",
        SigningAlgorithm::RsaPkcs1Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa3072,
        "RSA_PSS_SHA_256",
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyRsa3072,
        "RSA_PKCS1_SHA_256",
        SigningAlgorithm::RsaPkcs1Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyEcc,
        "ECC_P256_R1",
        SigningAlgorithm::EcdsaP256Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyEcc,
        "ECC",
        SigningAlgorithm::EcdsaP256Sha256,
    ),
    (
        KeyUsage::AsymmetricSignVerifyEcdsa384,
        "ECC_P384_R1",
        SigningAlgorithm::EcdsaP384Sha384,
    ),
];

/// The scheme `name` means for a key of `usage`; `UsageMismatch` for a key
/// that does not sign, `InvalidParameter` for a name it does not sign with.
fn signing_algorithm(usage: KeyUsage, name: &str) -> Result<SigningAlgorithm, KeyError> {
    if !usage.is_signing() {
        return Err(KeyError::UsageMismatch);
    }
    SIGNING_ALGORITHMS
        .iter()
        .find(|(u, n, _)| *u == usage && *n == name)
        .map(|(_, _, a)| *a)
        .ok_or_else(|| {
            let names: Vec<&str> = SIGNING_ALGORITHMS
                .iter()
                .filter(|(u, _, _)| *u == usage)
                .map(|(_, n, _)| *n)
                .collect();
            KeyError::InvalidParameter(format!(
                "Algorithm {name} is not one of this {} key's: {}",
                usage.as_str(),
                names.join(", ")
            ))
        })
}

fn sign_input(message: &[u8], message_type: MessageType) -> SignInput<'_> {
    match message_type {
        MessageType::Raw => SignInput::Raw(message),
        MessageType::Digest => SignInput::Digest(message),
    }
}

/// ListAlgorithms: what this KMS serves (SM2 is not listed).
fn list_algorithms() -> Value {
    let info = |usage: KeyUsage, algorithm: &str| json!({ "KeyUsage": usage.as_str(), "Algorithm": algorithm });
    let signing: Vec<Value> = SIGNING_ALGORITHMS
        .iter()
        .filter(|(u, n, _)| {
            // Tencent's own usages only
            !matches!(
                u,
                KeyUsage::AsymmetricSignVerifyRsa4096 | KeyUsage::AsymmetricSignVerifyRsa3072
            ) && *n != "ECC"
        })
        .map(|(u, n, _)| info(*u, n))
        .collect();
    json!({
        "SymmetricAlgorithms": [info(KeyUsage::EncryptDecrypt, "AES_256")],
        "AsymmetricAlgorithms": [
            info(KeyUsage::AsymmetricDecryptRsa2048, "RSAES_PKCS1_V1_5"),
            info(KeyUsage::AsymmetricDecryptRsa2048, "RSAES_OAEP_SHA_1"),
            info(KeyUsage::AsymmetricDecryptRsa2048, "RSAES_OAEP_SHA_256"),
        ],
        "AsymmetricSignVerifyAlgorithms": signing,
    })
}

fn check_rotatable(m: &KeyMetadata) -> Result<(), TencentError> {
    if m.origin == KeyOrigin::External {
        return Err(TencentError::new(
            codes::EXTERNAL_CMK_CAN_NOT_ROTATE,
            "EXTERNAL CMKs do not rotate.",
        ));
    }
    if !m.key_usage.is_symmetric() {
        return Err(TencentError::new(
            codes::ROTATE_NOT_SUPPORTED,
            "Only ENCRYPT_DECRYPT CMKs rotate.",
        ));
    }
    Ok(())
}

impl Face for TencentFace {
    fn handle(&self, req: KmsRequest) -> Response<Full<Bytes>> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let legacy = req.uri.path() == LEGACY_PATH;
        let body = match self.process(&req, legacy) {
            Ok(fields) => {
                if legacy {
                    legacy::success_body(&request_id, fields)
                } else {
                    wire::success_body(&request_id, fields)
                }
            }
            Err((action, e)) => {
                tracing::info!(
                    request_id = %request_id,
                    action = action.map(Action::name).unwrap_or("-"),
                    code = e.code,
                    peer = %req.peer,
                    "Tencent KMS request refused"
                );
                if legacy {
                    legacy::error_body(&request_id, &e)
                } else {
                    wire::error_body(&request_id, &e)
                }
            }
        };
        json_response(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_documented_codes() {
        let cases = [
            (KeyError::CmkNotFound, "ResourceUnavailable.CmkNotFound"),
            (KeyError::CmkDisabled, "ResourceUnavailable.CmkDisabled"),
            (
                KeyError::CmkPendingDelete,
                "ResourceUnavailable.CmkStateNotSupport",
            ),
            (
                KeyError::CmkPendingImport,
                "ResourceUnavailable.CmkStateNotSupport",
            ),
            (
                KeyError::DoesNotOpen,
                "InvalidParameterValue.InvalidCiphertext",
            ),
            (
                KeyError::VersionNotFound,
                "InvalidParameterValue.InvalidCiphertext",
            ),
            (
                KeyError::AliasAlreadyExists,
                "InvalidParameterValue.AliasAlreadyExists",
            ),
            (KeyError::InvalidAlias, "InvalidParameterValue.InvalidAlias"),
            (KeyError::LimitExceeded, "LimitExceeded.CmkLimitExceeded"),
            (
                KeyError::UnsupportedKeyUsage,
                "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion",
            ),
            (
                KeyError::DuplicateTagKey,
                "InvalidParameterValue.TagKeysDuplicated",
            ),
            (KeyError::Store("disk on fire".into()), "InternalError"),
        ];
        for (e, code) in cases {
            assert_eq!(key_error(e.clone()).code, code, "{e:?}");
        }
        // Store failures do not leak their detail to the client.
        assert!(!key_error(KeyError::Store("disk on fire".into()))
            .message
            .contains("fire"));
    }

    #[test]
    fn pem_public_keys_decode() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\nAwQF\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_to_der(pem), Some(vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(pem_to_der("AAECAwQF"), Some(vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(pem_to_der("-----BEGIN X-----\n%%%\n"), None);
    }

    #[test]
    fn sm2_return_wrapping_is_unsupported_and_bad_keys_are_refused() {
        let secret = SecretBytes::new(vec![1; 32]);
        let sm2 = ReturnWrapping {
            public_key_pem: "AAEC".into(),
            algorithm: EnvelopeAlgorithm::Sm2,
        };
        assert_eq!(
            returned_plaintext(&Some(sm2), &secret).unwrap_err().code,
            "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion"
        );
        let junk = ReturnWrapping {
            public_key_pem: "AAEC".into(),
            algorithm: EnvelopeAlgorithm::RsaOaepSha256,
        };
        assert_eq!(
            returned_plaintext(&Some(junk), &secret).unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(returned_plaintext(&None, &secret).unwrap(), b64(&[1; 32]));
    }
}
