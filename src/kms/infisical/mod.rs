//! The Infisical KMS face: universal-auth login, bearer access tokens, and
//! the `/api/v1/kms/keys` routes over the shared key store.
//!
//! - [`wire`]: errors, strict request validation (zod-shaped issues), the
//!   key object (PURE);
//! - [`names`]: per-project key names mapped onto store aliases (PURE);
//! - [`tokens`]: the access-token table.
//!
//! A request goes: route → (login: rate limit by client IP) or
//! (authenticate the bearer token → rate limit by identity) → validate →
//! key store → `{key}` / `{keys, totalCount}` / `{ciphertext}` … or
//! `{reqId, statusCode, message, error}`.
//!
//! The credentials of `sealgate credentials create` are the universal-auth
//! `clientId` / `clientSecret`. A credential limited to some keys sees and
//! uses only those, and may not create keys.
//!
//! Key kinds, as Infisical names them (`keyUsage` / `encryptionAlgorithm`):
//! `encrypt-decrypt` / `aes-256-gcm` and `aes-128-gcm` (store usages
//! `EncryptDecrypt`, `EncryptDecryptAes128`), `sign-verify` / `RSA_4096` and
//! `ECC_NIST_P256` (`AsymmetricSignVerifyRsa4096`, `AsymmetricSignVerifyEcc`).
//! Sign-verify keys answer `/public-key` (Base64 DER SubjectPublicKeyInfo),
//! `/signing-algorithms`, `/sign` and `/verify` through
//! [`KeyStore::with_private_key`]; RSA signs with RSASSA-PSS and
//! PKCS#1 v1.5 over SHA-256/384/512, P-256 with ECDSA over SHA-256 only
//! (aws-lc-rs pairs P-256 with SHA-256; Infisical also offers SHA-384/512
//! there). As in Infisical, a digest (`isDigest`) is refused for RSASSA-PSS,
//! and a signature that does not verify is `signatureValid: false`, not an
//! error. The wrong kind of key for a route is 400 with Infisical's message
//! (`Unsupported key type, expected sign-verify but got encrypt-decrypt`).

pub mod names;
pub mod tokens;
pub mod wire;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::access::{Access, Principal};
use super::{Dialect, Face, KmsOutcome, KmsReply, KmsRequest};
use crate::clock::{Clock, SystemClock};
use crate::keys::asymmetric::{SignInput, SigningAlgorithm};
use crate::keys::blob::blob_cmk;
use crate::keys::{CreateKeyRequest, KeyError, KeyId, KeyMetadata, KeyState, KeyStore, Tag};
use crate::limits::Limiter;
use crate::ratelimit::{Quota, QuotaTable, RateLimiter};
use names::{alias_for, deleted_alias, infisical_name, PROJECT_TAG};
use tokens::{TokenCheck, TokenTable};
use wire::{ApiError, KeyView};

/// Infisical's default universal-auth access token TTL and max TTL (30 days).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 2_592_000;
/// Organisation id every key reports (sealgate has no organisations).
pub const ORG_ID: &str = "00000000-0000-4000-8000-000000000000";
/// Window a deleted key waits in the store before its material is purged
/// (the store's shortest deletion window).
pub const DELETE_WINDOW_DAYS: u32 = 7;

/// Limits and token lifetimes of the face.
///
/// Rates are per minute, as Infisical documents them (Infisical Cloud, free
/// plan: read 200/min, write 90/min, and a global cap of 600/min; the login
/// route uses `authRateLimit`, 60/min in Infisical's source). Infisical keys
/// its buckets by client IP; sealgate keys them by identity (the
/// credential), and login by client IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfisicalSettings {
    /// GET routes, per identity per minute.
    pub read_per_minute: u32,
    /// POST/PATCH/DELETE routes (encrypt and decrypt included), per identity per minute.
    pub write_per_minute: u32,
    /// Every route together, per identity per minute.
    pub global_per_minute: u32,
    /// Logins, per client IP per minute.
    pub login_per_minute: u32,
    /// `expiresIn` of a new access token (seconds).
    pub token_ttl_secs: u64,
    /// `accessTokenMaxTTL` reported at login (seconds).
    pub token_max_ttl_secs: u64,
}

impl Default for InfisicalSettings {
    fn default() -> Self {
        Self {
            read_per_minute: 200,
            write_per_minute: 90,
            global_per_minute: 600,
            login_per_minute: 60,
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            token_max_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
        }
    }
}

impl InfisicalSettings {
    /// Defaults with the `[kms.infisical.quotas]` overrides (`read`,
    /// `write`, `global`, `login`; per minute; validated at config load).
    pub fn from_quotas(quotas: &BTreeMap<String, Quota>) -> Self {
        let mut s = Self::default();
        let get = |k: &str, d: u32| quotas.get(k).map(|q| q.rate).unwrap_or(d);
        s.read_per_minute = get(READ, s.read_per_minute);
        s.write_per_minute = get(WRITE, s.write_per_minute);
        s.global_per_minute = get(GLOBAL, s.global_per_minute);
        s.login_per_minute = get(LOGIN, s.login_per_minute);
        s
    }
}

impl InfisicalSettings {
    /// The limiter's table: the four classes, per minute (a route names
    /// its class; nothing falls to the default).
    fn quota_table(&self) -> QuotaTable {
        [
            (READ, self.read_per_minute),
            (WRITE, self.write_per_minute),
            (GLOBAL, self.global_per_minute),
            (LOGIN, self.login_per_minute),
        ]
        .into_iter()
        .fold(
            QuotaTable::new(Quota::per_minute(self.write_per_minute)),
            |t, (class, n)| t.quota(class, Quota::per_minute(n)),
        )
    }
}

/// The face. `C` is its clock (tests pass a manual one): the rate limiter
/// counts on its monotonic reading, access tokens expire by its wall time.
pub struct InfisicalFace<C: Clock + Clone = SystemClock> {
    store: Arc<KeyStore>,
    access: Access,
    settings: InfisicalSettings,
    tokens: TokenTable,
    limiter: Limiter<C>,
    clock: C,
}

impl InfisicalFace<SystemClock> {
    /// The face over `store` on the system clock.
    pub fn new(store: Arc<KeyStore>, settings: InfisicalSettings) -> Self {
        Self::with_clock(store, settings, SystemClock)
    }

    /// The face with the config's quota overrides.
    pub fn from_config(store: Arc<KeyStore>, config: &crate::config::Config) -> Self {
        Self::new(
            store,
            InfisicalSettings::from_quotas(&config.kms_quotas.infisical),
        )
    }
}

/// Rate-limit classes.
const READ: &str = "read";
const WRITE: &str = "write";
const GLOBAL: &str = "global";
const LOGIN: &str = "login";
/// The rate-limit classes, as `[kms.infisical.quotas]` names them.
pub const QUOTA_CLASSES: [&str; 4] = [READ, WRITE, GLOBAL, LOGIN];

/// What a route does: the handler it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    List,
    Create,
    Get,
    Update,
    Delete,
    ByName,
    Encrypt,
    Decrypt,
    PublicKey,
    SigningAlgorithms,
    Sign,
    Verify,
}

/// One row of the route table.
#[derive(Debug, PartialEq, Eq)]
struct RouteSpec {
    method: &'static str,
    /// `{}` stands for one segment: the key's id, or its name.
    path: &'static str,
    op: Op,
    /// The action name audit lines and metrics use (after the official
    /// SDKs' method names).
    action: &'static str,
    /// The limiter class besides the global one: Infisical's `readLimit`
    /// for its GET routes, `writeLimit` for the others (encrypt, decrypt,
    /// sign and verify included); login has its own.
    class: &'static str,
}

const fn spec(
    method: &'static str,
    path: &'static str,
    op: Op,
    action: &'static str,
    class: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        op,
        action,
        class,
    }
}

/// The API: the first row whose method and path match serves a request.
#[rustfmt::skip]
static ROUTES: &[RouteSpec] = &[
    spec("POST", "/api/v1/auth/universal-auth/login", Op::Login, "Login", LOGIN),
    spec("GET", "/api/v1/kms/keys", Op::List, "ListKeys", READ),
    spec("POST", "/api/v1/kms/keys", Op::Create, "CreateKey", WRITE),
    spec("GET", "/api/v1/kms/keys/key-name/{}", Op::ByName, "GetKeyByName", READ),
    spec("GET", "/api/v1/kms/keys/{}", Op::Get, "GetKey", READ),
    spec("PATCH", "/api/v1/kms/keys/{}", Op::Update, "UpdateKey", WRITE),
    spec("DELETE", "/api/v1/kms/keys/{}", Op::Delete, "DeleteKey", WRITE),
    spec("POST", "/api/v1/kms/keys/{}/encrypt", Op::Encrypt, "EncryptData", WRITE),
    spec("POST", "/api/v1/kms/keys/{}/decrypt", Op::Decrypt, "DecryptData", WRITE),
    spec("GET", "/api/v1/kms/keys/{}/public-key", Op::PublicKey, "GetPublicKey", READ),
    spec("GET", "/api/v1/kms/keys/{}/signing-algorithms", Op::SigningAlgorithms, "ListSigningAlgorithms", READ),
    spec("POST", "/api/v1/kms/keys/{}/sign", Op::Sign, "Sign", WRITE),
    spec("POST", "/api/v1/kms/keys/{}/verify", Op::Verify, "Verify", WRITE),
];

/// A request matched to its route: the row, and the `{}` segment (empty
/// for routes without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route<'a> {
    spec: &'static RouteSpec,
    arg: &'a str,
}

/// The route of `method` and `path` (one trailing `/` ignored).
fn route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    ROUTES
        .iter()
        .filter(|s| s.method == method.as_str())
        .find_map(|s| {
            let mut arg = "";
            let mut got = path.split('/');
            let mut want = s.path.split('/');
            loop {
                match (got.next(), want.next()) {
                    (None, None) => return Some(Route { spec: s, arg }),
                    (Some(g), Some("{}")) => arg = g,
                    (Some(g), Some(w)) if g == w => {}
                    _ => return None,
                }
            }
        })
}

fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Some(secs) = retry_after {
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
    }
    r
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Maps a store error to Infisical's shape; store failures are logged here.
fn store_error(e: KeyError) -> ApiError {
    match e {
        KeyError::CmkNotFound => ApiError::not_found("Key not found"),
        KeyError::CmkDisabled => ApiError::bad_request("Key is disabled"),
        KeyError::CmkPendingDelete => ApiError::not_found("Key not found"),
        KeyError::CmkPendingImport => {
            ApiError::bad_request("Key has no key material yet (pending import)")
        }
        KeyError::UsageMismatch => ApiError::bad_request("Key usage does not allow this operation"),
        KeyError::DoesNotOpen => {
            ApiError::bad_request("Failed to decrypt: the ciphertext does not open under this key")
        }
        KeyError::VersionNotFound => ApiError::bad_request(
            "Failed to decrypt: the key version of this ciphertext does not exist",
        ),
        KeyError::VersionRetired => ApiError::bad_request(
            "Failed to decrypt: the key version is below the key's minimum decryption version",
        ),
        KeyError::LimitExceeded => ApiError::bad_request("The key store's key limit is reached"),
        KeyError::InvalidParameter(m) => ApiError::bad_request(m),
        KeyError::InvalidState(m) => ApiError::bad_request(m),
        other => {
            tracing::error!(error = %other, "Infisical face: key store failure");
            ApiError::internal()
        }
    }
}

impl<C: Clock + Clone> InfisicalFace<C> {
    /// The face on `clock`: the limiter's buckets and the access tokens'
    /// expiry read it.
    pub fn with_clock(store: Arc<KeyStore>, settings: InfisicalSettings, clock: C) -> Self {
        // Infisical documents per-minute quotas: real per-minute buckets.
        let limiter = Limiter::local(
            "infisical",
            RateLimiter::from_quotas(clock.clone(), settings.quota_table()),
        );
        Self {
            access: Access::new(store.clone()),
            store,
            settings,
            tokens: TokenTable::default(),
            limiter,
            clock,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &InfisicalSettings {
        &self.settings
    }

    fn limit(&self, caller: &str, class: &str) -> Result<(), ApiError> {
        self.limiter
            .check_now(caller, class)
            .map_err(|r| ApiError::rate_limited(secs_ceil(r.0)))
    }

    /// The identity behind the request's bearer token.
    fn authenticate(&self, req: &KmsRequest) -> Result<Principal, ApiError> {
        let header = req.header("authorization").unwrap_or("").trim();
        let token = match header.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => "",
        };
        if token.is_empty() {
            return Err(ApiError::unauthorized("Authentication token is missing"));
        }
        match self.tokens.check(token, self.clock.unix_secs()) {
            // A revoked credential's tokens die with it.
            TokenCheck::Valid(identity) => self.access.principal(&identity).ok_or_else(|| {
                ApiError::token(
                    "The identity of this access token was revoked. Please re-authenticate.",
                )
            }),
            TokenCheck::Expired => Err(ApiError::token(
                "Your token has expired. Please re-authenticate.",
            )),
            TokenCheck::Unknown => Err(ApiError::token(
                "The provided access token is malformed. Please use a valid token or generate a new one and try again.",
            )),
        }
    }

    fn login(&self, req: &KmsRequest, outcome: &mut KmsOutcome) -> Result<Value, ApiError> {
        let ip: IpAddr = req.peer.ip();
        self.limit(&format!("ip:{ip}"), LOGIN)?;
        let body = wire::parse_login(&req.body)?;
        let refused = || ApiError::unauthorized("Invalid credentials");
        // Unknown, revoked and wrong-secret logins all end at the same
        // constant-time comparison and the same 401.
        let (who, _) = self
            .access
            .authenticate(
                |lookup| {
                    let secret = lookup(&body.client_id).ok_or_else(refused)?;
                    if bool::from(secret.expose().ct_eq(body.client_secret.as_bytes())) {
                        Ok(body.client_id.as_str())
                    } else {
                        Err(refused())
                    }
                },
                |id| *id,
                refused,
            )
            .inspect_err(|_| {
                tracing::info!(client_id = %body.client_id, "Infisical universal-auth login refused");
            })?;
        outcome.credential = Some(who.id().to_string());
        let token = self
            .tokens
            .issue(
                who.id(),
                self.clock.unix_secs(),
                self.settings.token_ttl_secs,
            )
            .map_err(|_| ApiError::rate_limited(60))?;
        Ok(json!({
            "accessToken": token,
            "expiresIn": self.settings.token_ttl_secs,
            "accessTokenMaxTTL": self.settings.token_max_ttl_secs,
            "tokenType": "Bearer",
        }))
    }

    fn view(&self, meta: &KeyMetadata) -> KeyView {
        let (project_id, name) = match infisical_name(meta) {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (
                String::new(),
                meta.alias
                    .clone()
                    .unwrap_or_else(|| meta.key_id.to_string()),
            ),
        };
        let (key_usage, algorithm) = wire::key_kind(meta.key_usage);
        KeyView {
            key_usage,
            algorithm,
            id: meta.key_id.to_string(),
            name,
            description: meta.description.clone(),
            is_disabled: meta.key_state != KeyState::Enabled,
            org_id: ORG_ID.into(),
            project_id,
            version: meta.primary_version.unwrap_or(0),
            created_at: meta.create_time,
            updated_at: meta
                .last_rotate_time
                .unwrap_or(meta.create_time)
                .max(meta.create_time),
        }
    }

    /// A live key this identity may use, by its id path parameter.
    fn load(&self, identity: &Principal, key_id: &str) -> Result<KeyMetadata, ApiError> {
        let id = wire::check_key_id(key_id)?;
        let not_found = || ApiError::not_found(format!("Key with ID {id} not found"));
        let meta = self.store.describe(&id.to_string()).map_err(|e| match e {
            KeyError::CmkNotFound => not_found(),
            other => store_error(other),
        })?;
        if meta.key_state == KeyState::PendingDelete {
            return Err(not_found());
        }
        if !self.access.may_use(identity, &id.to_string()) {
            return Err(ApiError::permission_denied(
                "You are not allowed to use this key",
            ));
        }
        Ok(meta)
    }

    fn create(&self, identity: &Principal, req: &KmsRequest) -> Result<Value, ApiError> {
        let body = wire::parse_create(&req.body)?;
        // parse_create refused every other pair (422)
        let key_usage =
            wire::store_usage(&body.key_usage, &body.encryption_algorithm).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "encryptionAlgorithm {} is not supported for {} keys",
                    body.encryption_algorithm, body.key_usage
                ))
            })?;
        if !self.access.unrestricted(identity) {
            return Err(ApiError::permission_denied(
                "You are not allowed to create keys: this identity is limited to some keys",
            ));
        }
        let meta = self
            .store
            .create(CreateKeyRequest {
                alias: Some(alias_for(&body.project_id, &body.name)),
                description: body.description,
                tags: vec![Tag {
                    tag_key: PROJECT_TAG.into(),
                    tag_value: body.project_id.clone(),
                }],
                owner: identity.id().to_string(),
                key_usage,
                ..CreateKeyRequest::default()
            })
            .map_err(|e| match e {
                KeyError::AliasAlreadyExists => ApiError::bad_request(format!(
                    "Key with name \"{}\" already exists in project",
                    body.name
                )),
                other => store_error(other),
            })?;
        identity.note_key(meta.key_id);
        Ok(json!({"key": wire::key_json(&self.view(&meta))}))
    }

    fn list(&self, identity: &Principal, req: &KmsRequest) -> Result<Value, ApiError> {
        let q = wire::parse_list_query(&wire::query_params(req.uri.query().unwrap_or("")));
        let q = q?;
        let search = q.search.as_ref().map(|s| s.to_lowercase());
        let mut keys: Vec<KeyView> = self
            .store
            .list(0, usize::MAX)
            .keys
            .iter()
            .filter(|m| m.key_state != KeyState::PendingDelete)
            .filter(|m| infisical_name(m).is_some_and(|(p, _)| p == q.project_id))
            .filter(|m| self.access.may_list(identity, &m.key_id.to_string()))
            .map(|m| self.view(m))
            .filter(|v| {
                search
                    .as_ref()
                    .is_none_or(|s| v.name.to_lowercase().contains(s.as_str()))
            })
            .collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        if q.descending {
            keys.reverse();
        }
        let total = keys.len();
        let page: Vec<Value> = keys
            .iter()
            .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(q.limit).unwrap_or(usize::MAX))
            .map(wire::key_json)
            .collect();
        Ok(json!({"keys": page, "totalCount": total}))
    }

    fn by_name(
        &self,
        identity: &Principal,
        name: &str,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        let params = wire::query_params(req.uri.query().unwrap_or(""));
        let mut issues = Vec::new();
        wire::check_name(&["keyName"], name, &mut issues);
        let project = params
            .iter()
            .find(|(k, _)| k == "projectId")
            .map(|(_, v)| v.as_str());
        match project {
            None => issues.push(wire::invalid_type(&["projectId"], "string", None)),
            Some("") => issues.push(wire::custom(&["projectId"], "Project ID is required")),
            Some(_) => {}
        }
        if !issues.is_empty() {
            return Err(ApiError::validation(issues));
        }
        let project = project.unwrap_or("");
        let not_found = || ApiError::not_found(format!("Key with name \"{name}\" not found"));
        let meta = self
            .store
            .describe(&alias_for(project, name))
            .map_err(|e| match e {
                KeyError::CmkNotFound => not_found(),
                other => store_error(other),
            })?;
        if meta.key_state == KeyState::PendingDelete
            || infisical_name(&meta) != Some((project, name))
        {
            return Err(not_found());
        }
        if !self.access.may_use(identity, &meta.key_id.to_string()) {
            return Err(ApiError::permission_denied(
                "You are not allowed to use this key",
            ));
        }
        Ok(json!({"key": wire::key_json(&self.view(&meta))}))
    }

    fn update(
        &self,
        identity: &Principal,
        key_id: &str,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        wire::check_key_id(key_id)?;
        let body = wire::parse_update(&req.body)?;
        let meta = self.load(identity, key_id)?;
        let id = meta.key_id.to_string();
        if let Some(name) = &body.name {
            let Some((project, current)) = infisical_name(&meta) else {
                return Err(ApiError::bad_request(
                    "This key was not created through the Infisical API and has no project; it cannot be renamed here",
                ));
            };
            if current != name {
                let project = project.to_string();
                self.store
                    .update_alias(&id, &alias_for(&project, name))
                    .map_err(|e| match e {
                        KeyError::AliasAlreadyExists => ApiError::bad_request(format!(
                            "Key with name \"{name}\" already exists in project"
                        )),
                        other => store_error(other),
                    })?;
            }
        }
        if let Some(description) = &body.description {
            self.store
                .update_description(&id, description)
                .map_err(store_error)?;
        }
        if let Some(disabled) = body.is_disabled {
            let state = self.store.describe(&id).map_err(store_error)?.key_state;
            match (disabled, state) {
                (true, KeyState::Enabled) => {
                    self.store.disable(&id).map_err(store_error)?;
                }
                (false, KeyState::Disabled) => {
                    self.store.enable(&id).map_err(store_error)?;
                }
                _ => {}
            }
        }
        let meta = self.store.describe(&id).map_err(store_error)?;
        Ok(json!({"key": wire::key_json(&self.view(&meta))}))
    }

    fn delete(&self, identity: &Principal, key_id: &str) -> Result<Value, ApiError> {
        let meta = self.load(identity, key_id)?;
        let id = meta.key_id.to_string();
        let shown = self.view(&meta);
        self.store
            .schedule_deletion(&id, DELETE_WINDOW_DAYS)
            .map_err(store_error)?;
        // Free the name at once, as Infisical does; the material stays
        // (sealed, unusable) for the deletion window.
        if meta.alias.is_some() {
            if let Err(e) = self.store.update_alias(&id, &deleted_alias(&meta.key_id)) {
                tracing::warn!(key_id = %id, error = %e, "deleted key keeps its name until purged");
            }
        }
        Ok(json!({"key": wire::key_json(&shown)}))
    }

    fn encrypt(
        &self,
        identity: &Principal,
        key_id: &str,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        wire::check_key_id(key_id)?;
        let plaintext = zeroize::Zeroizing::new(wire::parse_encrypt(&req.body)?);
        let meta = self.load(identity, key_id)?;
        require_kind(&meta, wire::ENCRYPT_DECRYPT)?;
        let ct = self
            .store
            .encrypt(&meta.key_id.to_string(), &plaintext, b"")
            .map_err(store_error)?;
        Ok(json!({"ciphertext": wire::b64(&ct.blob)}))
    }

    fn decrypt(
        &self,
        identity: &Principal,
        key_id: &str,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        wire::check_key_id(key_id)?;
        let blob = wire::parse_decrypt(&req.body)?;
        let meta = self.load(identity, key_id)?;
        require_kind(&meta, wire::ENCRYPT_DECRYPT)?;
        let cmk = blob_cmk(&blob)
            .map_err(|_| ApiError::bad_request("Failed to decrypt: invalid ciphertext"))?;
        if KeyId::from_bytes(cmk.key_id) != meta.key_id {
            return Err(ApiError::bad_request(
                "Failed to decrypt: the ciphertext was not made with this key",
            ));
        }
        let opened = self.store.decrypt(&blob, b"").map_err(store_error)?;
        Ok(json!({"plaintext": wire::b64(opened.plaintext.expose())}))
    }

    /// Runs `f` with the private key of a sign-verify key this identity may
    /// use (after Infisical's checks: found, permitted, enabled, sign-verify).
    fn with_signing_key<R>(
        &self,
        identity: &Principal,
        key_id: &str,
        f: impl FnOnce(&KeyMetadata, &crate::keys::asymmetric::PrivateKey) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let meta = self.load(identity, key_id)?;
        require_kind(&meta, wire::SIGN_VERIFY)?;
        self.store
            .with_private_key(&meta.key_id.to_string(), f)
            .map_err(store_error)?
    }

    fn public_key(&self, identity: &Principal, key_id: &str) -> Result<Value, ApiError> {
        let der = self.with_signing_key(identity, key_id, |_, pk| {
            pk.public_key_der().map_err(store_error)
        })?;
        Ok(json!({"publicKey": wire::b64(&der)}))
    }

    fn signing_algorithms(&self, identity: &Principal, key_id: &str) -> Result<Value, ApiError> {
        let meta = self.load(identity, key_id)?;
        usable(&meta)?;
        let spec = meta
            .key_usage
            .asymmetric_spec()
            .filter(|_| meta.key_usage.is_signing())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Key with ID '{}' is not intended for signing",
                    meta.key_id
                ))
            })?;
        Ok(json!({"signingAlgorithms": wire::signing_algorithm_names(spec.signing_algorithms())}))
    }

    fn sign(
        &self,
        identity: &Principal,
        key_id: &str,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        wire::check_key_id(key_id)?;
        let body = wire::parse_sign(&req.body, false)?;
        let data = zeroize::Zeroizing::new(body.data);
        let (id, signature) = self.with_signing_key(identity, key_id, |meta, pk| {
            let alg = scheme_for(meta, &body.signing_algorithm, body.is_digest)?;
            let input = sign_input(alg, &data, body.is_digest, "sign")?;
            let sig = pk.sign(alg, input).map_err(store_error)?;
            Ok((meta.key_id, sig))
        })?;
        Ok(json!({
            "signature": wire::b64(&signature),
            "keyId": id.to_string(),
            "signingAlgorithm": body.signing_algorithm,
        }))
    }

    fn verify(
        &self,
        identity: &Principal,
        key_id: &str,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        wire::check_key_id(key_id)?;
        let body = wire::parse_sign(&req.body, true)?;
        let signature = body.signature.unwrap_or_default();
        let (id, valid) = self.with_signing_key(identity, key_id, |meta, pk| {
            let alg = scheme_for(meta, &body.signing_algorithm, body.is_digest)?;
            let input = sign_input(alg, &body.data, body.is_digest, "verify")?;
            let valid = pk.verify(alg, input, &signature).map_err(store_error)?;
            Ok((meta.key_id, valid))
        })?;
        Ok(json!({
            "signatureValid": valid,
            "keyId": id.to_string(),
            "signingAlgorithm": body.signing_algorithm,
        }))
    }

    /// Routes one request, noting on `outcome` what it came to.
    fn dispatch(&self, req: &KmsRequest, outcome: &mut KmsOutcome) -> Result<Value, ApiError> {
        let path = req.uri.path();
        let Some(r) = route(&req.method, path) else {
            return Err(ApiError::route_not_found(req.method.as_str(), path));
        };
        outcome.action = r.spec.action;
        if r.spec.op == Op::Login {
            return self.login(req, outcome);
        }
        let identity = self.authenticate(req)?;
        outcome.credential = Some(identity.id().to_string());
        let served = self.serve(&identity, r, req);
        outcome.key = identity.key();
        served
    }

    fn serve(
        &self,
        identity: &Principal,
        r: Route<'_>,
        req: &KmsRequest,
    ) -> Result<Value, ApiError> {
        self.limit(identity.id(), GLOBAL)?;
        self.limit(identity.id(), r.spec.class)?;
        let id = r.arg;
        match r.spec.op {
            Op::Login => Err(ApiError::route_not_found(
                req.method.as_str(),
                req.uri.path(),
            )),
            Op::List => self.list(identity, req),
            Op::Create => self.create(identity, req),
            Op::Get => {
                let meta = self.load(identity, id)?;
                Ok(json!({"key": wire::key_json(&self.view(&meta))}))
            }
            Op::ByName => self.by_name(identity, id, req),
            Op::Update => self.update(identity, id, req),
            Op::Delete => self.delete(identity, id),
            Op::Encrypt => self.encrypt(identity, id, req),
            Op::Decrypt => self.decrypt(identity, id, req),
            Op::PublicKey => self.public_key(identity, id),
            Op::SigningAlgorithms => self.signing_algorithms(identity, id),
            Op::Sign => self.sign(identity, id, req),
            Op::Verify => self.verify(identity, id, req),
        }
    }
}

/// 400 unless the key is enabled (Infisical checks `isDisabled` first).
fn usable(meta: &KeyMetadata) -> Result<(), ApiError> {
    match meta.key_state.unusable_error() {
        None => Ok(()),
        Some(e) => Err(store_error(e)),
    }
}

/// 400 unless the key is enabled and of the `keyUsage` the route needs,
/// with Infisical's message for the wrong kind.
fn require_kind(meta: &KeyMetadata, want: &str) -> Result<(), ApiError> {
    usable(meta)?;
    let (got, algorithm) = wire::key_kind(meta.key_usage);
    if got != want {
        return Err(ApiError::bad_request(format!(
            "Unsupported key type, expected {want} but got {got}"
        )));
    }
    if want == wire::SIGN_VERIFY && meta.key_usage.asymmetric_spec().is_none() {
        // SM2: the store holds no such keys, but say so if one shows up
        return Err(ApiError::bad_request(format!(
            "Unsupported sign/verify algorithm for sign/verify key: {algorithm}"
        )));
    }
    Ok(())
}

/// The scheme of a signing algorithm name for this key: 400 with
/// Infisical's message when the key's algorithm cannot use it, and for a
/// digest under RSASSA-PSS (Infisical refuses those too).
fn scheme_for(
    meta: &KeyMetadata,
    name: &str,
    is_digest: bool,
) -> Result<SigningAlgorithm, ApiError> {
    let (_, key_alg) = wire::key_kind(meta.key_usage);
    let supported = meta
        .key_usage
        .asymmetric_spec()
        .map(|s| s.signing_algorithms())
        .unwrap_or_default();
    let Some(alg) = wire::signing_algorithm(name).filter(|a| supported.contains(a)) else {
        let ecdsa_hash = name.starts_with("ECDSA") && key_alg.starts_with("ECC");
        return Err(ApiError::bad_request(if ecdsa_hash {
            format!(
                "KMS {key_alg} key cannot be used with {name} on this server: it signs {key_alg} with {} only",
                wire::signing_algorithm_names(supported).join(", ")
            )
        } else {
            format!("KMS {key_alg} key cannot be used with {name}")
        }));
    };
    if is_digest && name.starts_with("RSASSA_PSS") {
        return Err(ApiError::bad_request(
            "RSA PSS does not support digested input",
        ));
    }
    Ok(alg)
}

/// The data as the message or its digest; a digest must be as long as the
/// algorithm's hash (400 with Infisical's sign-time message otherwise).
fn sign_input<'a>(
    alg: SigningAlgorithm,
    data: &'a [u8],
    is_digest: bool,
    what: &str,
) -> Result<SignInput<'a>, ApiError> {
    if !is_digest {
        return Ok(SignInput::Raw(data));
    }
    if data.len() != alg.digest_len() {
        let family = if wire::signing_algorithm_name(alg).starts_with("ECDSA") {
            "ECC"
        } else {
            "RSA"
        };
        return Err(ApiError::bad_request(format!(
            "Failed to {what} {family} digest with {} due to {what}ing error. Ensure that your digest is hashed with {}.",
            wire::signing_algorithm_name(alg),
            wire::hash_name(alg)
        )));
    }
    Ok(SignInput::Digest(data))
}

impl<C: Clock + Clone> InfisicalFace<C> {
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

impl<C: Clock + Clone> Face for InfisicalFace<C> {
    fn handle(&self, req: KmsRequest) -> KmsReply {
        let req_id = format!(
            "req-{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 14)
        );
        let mut outcome = KmsOutcome::new(Dialect::Infisical);
        let response = match self.dispatch(&req, &mut outcome) {
            Ok(body) => json_response(200, &body, None),
            Err(e) => {
                outcome.code = Some(e.error);
                outcome.limited = e.status == 429;
                json_response(e.status, &wire::error_body(&req_id, &e), e.retry_after)
            }
        };
        KmsReply { response, outcome }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let id = "0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b";
        let r = |m: Method, p: &str| route(&m, p).map(|r| (r.spec.op, r.arg.to_string()));
        assert_eq!(
            r(Method::GET, "/api/v1/kms/keys"),
            Some((Op::List, "".into()))
        );
        assert_eq!(
            r(Method::POST, "/api/v1/kms/keys/"),
            Some((Op::Create, "".into()))
        );
        assert_eq!(
            r(Method::GET, "/api/v1/kms/keys/key-name/abc"),
            Some((Op::ByName, "abc".into()))
        );
        assert_eq!(
            r(Method::POST, &format!("/api/v1/kms/keys/{id}/encrypt")),
            Some((Op::Encrypt, id.into()))
        );
        assert_eq!(
            r(Method::DELETE, &format!("/api/v1/kms/keys/{id}")),
            Some((Op::Delete, id.into()))
        );
        assert_eq!(r(Method::PUT, "/api/v1/kms/keys"), None);
        assert_eq!(r(Method::GET, "/api/v1/kms/keysx"), None);
        assert_eq!(r(Method::GET, "/api/v2/secrets"), None);
        assert_eq!(
            r(Method::POST, &format!("/api/v1/kms/keys/{id}/encrypt/x")),
            None
        );
        assert_eq!(
            r(Method::GET, "/api/v1/auth/universal-auth/login"),
            None,
            "login is POST only"
        );
        assert_eq!(
            r(Method::POST, "/api/v1/auth/universal-auth/login/"),
            Some((Op::Login, "".into()))
        );
    }

    #[test]
    fn routes_fall_in_infisicals_limiter_classes() {
        let id = "0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b";
        let class = |m: Method, p: String| route(&m, &p).map(|r| r.spec.class);
        for sub in ["public-key", "signing-algorithms"] {
            assert_eq!(
                class(Method::GET, format!("/api/v1/kms/keys/{id}/{sub}")),
                Some(READ)
            );
        }
        for sub in ["sign", "verify", "encrypt", "decrypt"] {
            assert_eq!(
                class(Method::POST, format!("/api/v1/kms/keys/{id}/{sub}")),
                Some(WRITE)
            );
        }
        assert_eq!(class(Method::GET, "/api/v1/kms/keys".into()), Some(READ));
        assert_eq!(class(Method::POST, "/api/v1/kms/keys".into()), Some(WRITE));
        assert_eq!(
            class(Method::POST, "/api/v1/auth/universal-auth/login".into()),
            Some(LOGIN)
        );
        // every row is reachable: none hides behind an earlier one
        for (n, s) in ROUTES.iter().enumerate() {
            let path = s.path.replace("{}", "x-unique");
            let m = Method::from_bytes(s.method.as_bytes()).unwrap();
            assert_eq!(
                route(&m, &path).map(|r| r.spec),
                Some(&ROUTES[n]),
                "{}",
                s.path
            );
        }
    }

    #[test]
    fn digests_must_match_the_hash_length() {
        let alg = SigningAlgorithm::RsaPkcs1Sha384;
        assert_eq!(
            sign_input(alg, &[0; 48], true, "sign").unwrap(),
            SignInput::Digest(&[0; 48])
        );
        assert_eq!(
            sign_input(alg, &[0; 5], false, "sign").unwrap(),
            SignInput::Raw(&[0; 5])
        );
        let e = sign_input(alg, &[0; 32], true, "sign").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Failed to sign RSA digest with RSASSA_PKCS1_V1_5_SHA_384 due to signing error. Ensure that your digest is hashed with SHA384."
        );
        let e = sign_input(SigningAlgorithm::EcdsaP256Sha256, &[], true, "verify").unwrap_err();
        assert_eq!(
            e.message,
            "Failed to verify ECC digest with ECDSA_SHA_256 due to verifying error. Ensure that your digest is hashed with SHA256."
        );
    }

    #[test]
    fn quota_overrides_by_class() {
        let q = BTreeMap::from([("write".to_string(), Quota::per_minute(5))]);
        let s = InfisicalSettings::from_quotas(&q);
        assert_eq!(s.write_per_minute, 5);
        assert_eq!(s.read_per_minute, 200);
    }
}
