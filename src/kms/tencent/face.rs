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
//!
//! The actions are served by family, one method each, in the modules
//! `keys`, `symmetric`, `asymmetric`, `import` and `service` below this
//! one; `dispatch` is the table that maps a typed request to its method.

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

use super::errors::{asymmetric_error, key_error};
use super::legacy;
use super::sign::{self, VerifyPolicy};
use super::wire::{
    self, codes, Action, EnvelopeAlgorithm, MessageType, ParamStyle, Request, ReturnWrapping,
    RsaAlgorithm, TencentError,
};
use crate::clock::SystemClock;
use crate::keys::asymmetric::{
    public_key_pem, PrivateKey, RsaPadding, SignInput, SigningAlgorithm,
};
use crate::keys::blob::blob_cmk;
use crate::keys::{
    CreateKeyRequest, KeyError, KeyId, KeyMetadata, KeyOrigin, KeyState, KeyStore, KeyUsage, Tag,
};
use crate::kms::access::{Access, Principal};
use crate::kms::context;
use crate::kms::replay::{expiry_after_window, ReplayCache, ReplayRefused};
use crate::kms::{Dialect, Face, KmsOutcome, KmsReply, KmsRequest};
use crate::limits::Limiter;
use crate::ratelimit::{Quota, RateLimiter};
use crate::secret::SecretBytes;

mod asymmetric;
mod import;
mod keys;
mod service;
mod symmetric;

/// Path of the legacy API.
pub const LEGACY_PATH: &str = "/v2/index.php";
/// How long GetParametersForImport parameters stay valid (seconds).
pub const IMPORT_PARAMETERS_TTL: u64 = 24 * 3600;

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
    limiter: Limiter,
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

/// The action a request names (`X-TC-Action`, else its `Action`
/// parameter), if it is one this face serves: for the audit line of a
/// request refused before it proves itself. A legacy action keeps its
/// legacy name.
fn claimed_action(req: &KmsRequest, legacy: bool) -> Option<&'static str> {
    let named = match req.header("x-tc-action") {
        Some(h) => h.trim().to_string(),
        None => req
            .flat_params()
            .into_iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v)?,
    };
    if legacy {
        legacy::ACTIONS
            .iter()
            .find(|(n, _, _)| *n == named)
            .map(|(n, _, _)| *n)
    } else {
        wire::parse_action(&named).ok().map(Action::name)
    }
}

fn now_secs() -> u64 {
    crate::clock::unix_now()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unauthorized() -> TencentError {
    TencentError::new(
        codes::AUTH_UNAUTHORIZED_OPERATION,
        "This credential is not allowed to use this CMK or action.",
    )
}

/// Tencent's `KeyUsage` name of a store usage. The usages only the other
/// faces create (AES-128, RSA-3072, RSA-4096) show in Tencent's naming
/// pattern.
fn usage_str(u: KeyUsage) -> &'static str {
    use wire::KeyUsage as W;
    match u {
        KeyUsage::EncryptDecrypt => W::EncryptDecrypt.as_str(),
        KeyUsage::AsymmetricDecryptRsa2048 => W::AsymmetricDecryptRsa2048.as_str(),
        KeyUsage::AsymmetricDecryptSm2 => W::AsymmetricDecryptSm2.as_str(),
        KeyUsage::AsymmetricSignVerifySm2 => W::AsymmetricSignVerifySm2.as_str(),
        KeyUsage::AsymmetricSignVerifyRsa2048 => W::AsymmetricSignVerifyRsa2048.as_str(),
        KeyUsage::AsymmetricSignVerifyEcc => W::AsymmetricSignVerifyEcc.as_str(),
        KeyUsage::AsymmetricSignVerifyEcdsa384 => W::AsymmetricSignVerifyEcdsa384.as_str(),
        KeyUsage::EncryptDecryptAes128 => "ENCRYPT_DECRYPT_AES_128",
        KeyUsage::AsymmetricDecryptRsa3072 => "ASYMMETRIC_DECRYPT_RSA_3072",
        KeyUsage::AsymmetricSignVerifyRsa3072 => "ASYMMETRIC_SIGN_VERIFY_RSA_3072",
        KeyUsage::AsymmetricSignVerifyRsa4096 => "ASYMMETRIC_SIGN_VERIFY_RSA_4096",
    }
}

/// The store usage of a CreateKey `KeyUsage`.
fn store_usage(u: wire::KeyUsage) -> KeyUsage {
    use wire::KeyUsage as W;
    match u {
        W::EncryptDecrypt => KeyUsage::EncryptDecrypt,
        W::AsymmetricDecryptRsa2048 => KeyUsage::AsymmetricDecryptRsa2048,
        W::AsymmetricDecryptSm2 => KeyUsage::AsymmetricDecryptSm2,
        W::AsymmetricSignVerifySm2 => KeyUsage::AsymmetricSignVerifySm2,
        W::AsymmetricSignVerifyEcc => KeyUsage::AsymmetricSignVerifyEcc,
        W::AsymmetricSignVerifyRsa2048 => KeyUsage::AsymmetricSignVerifyRsa2048,
        W::AsymmetricSignVerifyEcdsa384 => KeyUsage::AsymmetricSignVerifyEcdsa384,
    }
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

impl TencentFace {
    /// A face over `store` with the documented quotas, overridden per action
    /// by `quota_overrides` (`[kms.tencent.quotas]`, validated at load).
    pub fn new(store: Arc<KeyStore>, quota_overrides: &BTreeMap<String, Quota>) -> Self {
        let quotas = wire::quota_table()
            .with_overrides(quota_overrides.iter().map(|(k, q)| (k.clone(), *q)));
        let limiter = Limiter::local("tencent", RateLimiter::from_quotas(SystemClock, quotas));
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
        let headers = req.header_pairs();
        let parts = req.signing_parts(&headers);
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

    /// Serves one request, noting on `outcome` what it came to.
    fn process(
        &self,
        req: &KmsRequest,
        legacy: bool,
        outcome: &mut KmsOutcome,
    ) -> Result<Value, TencentError> {
        // the action the request claims, recorded even when it is refused
        // before it proves itself (a legacy action by its legacy name)
        if let Some(name) = claimed_action(req, legacy) {
            outcome.action = name;
        }
        let auth = self.authenticate(req, legacy).inspect_err(|e| {
            outcome.limited = e.code == codes::REQUEST_LIMIT_EXCEEDED;
        })?;
        outcome.credential = Some(auth.caller.id().to_string());
        if auth.legacy.is_none() {
            outcome.action = auth.action.name();
        }
        let served = self.serve(&auth, outcome);
        outcome.key = auth.caller.key();
        served
    }

    fn serve(&self, auth: &Authenticated, outcome: &mut KmsOutcome) -> Result<Value, TencentError> {
        if self
            .limiter
            .check_now(auth.caller.id(), auth.action.name())
            .is_err()
        {
            outcome.limited = true;
            return Err(TencentError::rate_limited());
        }
        if let Some(call) = &auth.legacy {
            return legacy::run(call.clone(), |request| self.dispatch(&auth.caller, request));
        }
        let request = wire::parse_request(auth.action, &auth.params)?;
        self.dispatch(&auth.caller, request)
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

    /// The action table, by family (each in its own module).
    fn dispatch(&self, caller: &Principal, request: Request) -> Result<Value, TencentError> {
        use Request as R;
        match request {
            // keys
            R::CreateKey(r) => self.create_key(caller, r),
            R::DescribeKey(r) => self.describe_key(caller, r),
            R::DescribeKeys(r) => self.describe_keys(caller, r),
            R::ListKeys(r) => self.list_keys(caller, r),
            R::ListKeyDetail(r) => self.list_key_detail(caller, r),
            R::EnableKey(r) => self.enable_key(caller, r),
            R::DisableKey(r) => self.disable_key(caller, r),
            R::EnableKeys(k) => self.batch(caller, &k.key_ids, true),
            R::DisableKeys(k) => self.batch(caller, &k.key_ids, false),
            R::ScheduleKeyDeletion(r) => self.schedule_key_deletion(caller, r),
            R::CancelKeyDeletion(r) => self.cancel_key_deletion(caller, r),
            R::UpdateAlias(r) => self.update_alias(caller, r),
            R::UpdateKeyDescription(r) => self.update_key_description(caller, r),
            R::EnableKeyRotation(r) => self.enable_key_rotation(caller, r),
            R::DisableKeyRotation(r) => self.disable_key_rotation(caller, r),
            R::GetKeyRotationStatus(r) => self.get_key_rotation_status(caller, r),
            R::RotateKey(r) => self.rotate_key(caller, r),
            // symmetric
            R::Encrypt(r) => self.encrypt(caller, r),
            R::Decrypt(r) => self.decrypt(caller, r),
            R::ReEncrypt(r) => self.re_encrypt(caller, r),
            R::GenerateDataKey(r) => self.generate_data_key(caller, r),
            R::GenerateRandom(r) => self.generate_random(caller, r),
            // asymmetric
            R::GetPublicKey(r) => self.get_public_key(caller, r),
            R::AsymmetricRsaDecrypt(r) => self.asymmetric_rsa_decrypt(caller, r),
            R::AsymmetricSm2Decrypt(r) => self.asymmetric_sm2_decrypt(caller, r),
            R::SignByAsymmetricKey(r) => self.sign_by_asymmetric_key(caller, r),
            R::VerifyByAsymmetricKey(r) => self.verify_by_asymmetric_key(caller, r),
            R::ListAlgorithms => self.list_algorithms(caller),
            // import
            R::GetParametersForImport(r) => self.get_parameters_for_import(caller, r),
            R::ImportKeyMaterial(r) => self.import_key_material(caller, r),
            R::DeleteImportedKeyMaterial(r) => self.delete_imported_key_material(caller, r),
            // service
            R::GetServiceStatus => self.get_service_status(caller),
        }
    }
}

impl TencentFace {
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

impl Face for TencentFace {
    fn handle(&self, req: KmsRequest) -> KmsReply {
        let request_id = uuid::Uuid::new_v4().to_string();
        let legacy = req.uri.path() == LEGACY_PATH;
        let mut outcome = KmsOutcome::new(Dialect::Tencent);
        let body = match self.process(&req, legacy, &mut outcome) {
            Ok(fields) => {
                if legacy {
                    legacy::success_body(&request_id, fields)
                } else {
                    wire::success_body(&request_id, fields)
                }
            }
            Err(e) => {
                outcome.code = Some(e.code);
                tracing::info!(
                    request_id = %request_id,
                    action = outcome.action,
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
        KmsReply {
            response: json_response(&body),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_keep_the_names_stores_and_clients_know() {
        // Tencent's names are the stored spelling (existing stores load)
        for u in KeyUsage::ALL {
            assert_eq!(usage_str(u), u.as_str(), "{u:?}");
        }
        use wire::KeyUsage as W;
        for w in [
            W::EncryptDecrypt,
            W::AsymmetricDecryptRsa2048,
            W::AsymmetricDecryptSm2,
            W::AsymmetricSignVerifySm2,
            W::AsymmetricSignVerifyEcc,
            W::AsymmetricSignVerifyRsa2048,
            W::AsymmetricSignVerifyEcdsa384,
        ] {
            assert_eq!(usage_str(store_usage(w)), w.as_str());
        }
    }
}
