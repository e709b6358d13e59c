//! The Infisical wire format, PURE: error bodies, request validation in the
//! shape Infisical's zod schemas report it, the typed requests of every
//! route, and the key object.
//!
//! Errors are `{reqId, statusCode, message, error}`; a failed validation is
//! 422 `ValidationFailure` whose `message` is the list of zod-style issues
//! (`{code, message, path, …}`). Bodies are checked as Infisical's zod
//! objects check them: members a route does not know are dropped (zod's
//! default `strip`; official clients send some, e.g. the Node SDK repeats
//! the path's `keyId` in the body), while missing required fields and
//! wrongly typed or out-of-range known fields are issues.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::keys::asymmetric::SigningAlgorithm;
use crate::keys::blob::BLOB_OVERHEAD;
use crate::keys::{KeyPurpose, KeySpec, KeyUsage};

/// Largest plaintext (decoded) `encrypt` takes, and largest data `sign` takes.
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest decoded ciphertext `decrypt` takes: a 4,096-byte plaintext's blob.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + BLOB_OVERHEAD;
/// Key names: slugs of 1–32 characters.
pub const NAME_MAX: usize = 32;
/// Longest description (characters, after trimming).
pub const DESCRIPTION_MAX: usize = 500;
/// Longest project id (it is kept as a key-store tag value).
pub const PROJECT_ID_MAX: usize = 255;
/// List page size: default and maximum.
pub const LIST_LIMIT_MAX: u64 = 100;

/// Key usages Infisical knows.
pub const KEY_USAGES: [&str; 2] = ["encrypt-decrypt", "sign-verify"];
/// Symmetric algorithms (encrypt-decrypt keys).
pub const SYMMETRIC_ALGORITHMS: [&str; 2] = ["aes-256-gcm", "aes-128-gcm"];
/// Asymmetric algorithms (sign-verify keys).
pub const ASYMMETRIC_ALGORITHMS: [&str; 2] = ["RSA_4096", "ECC_NIST_P256"];
/// Every `encryptionAlgorithm` value the create route accepts.
pub const ALGORITHMS: [&str; 4] = ["aes-256-gcm", "aes-128-gcm", "RSA_4096", "ECC_NIST_P256"];
/// Signing algorithms of the sign and verify routes.
pub const SIGNING_ALGORITHMS: [&str; 9] = [
    "RSASSA_PSS_SHA_512",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "ECDSA_SHA_512",
    "ECDSA_SHA_384",
    "ECDSA_SHA_256",
];

// ---- key kinds and signing algorithms ---------------------------------------

/// `keyUsage` of encrypt-decrypt keys.
pub const ENCRYPT_DECRYPT: &str = "encrypt-decrypt";
/// `keyUsage` of sign-verify keys.
pub const SIGN_VERIFY: &str = "sign-verify";

/// The store usage a created key gets for Infisical's `keyUsage` and
/// `encryptionAlgorithm` (the key algorithm for sign-verify keys); `None`
/// for a pair Infisical does not accept.
pub fn store_usage(key_usage: &str, algorithm: &str) -> Option<KeyUsage> {
    let purpose = match key_usage {
        ENCRYPT_DECRYPT => KeyPurpose::EncryptDecrypt,
        SIGN_VERIFY => KeyPurpose::SignVerify,
        _ => return None,
    };
    let spec = match algorithm {
        "aes-256-gcm" => KeySpec::Aes256,
        "aes-128-gcm" => KeySpec::Aes128,
        "RSA_4096" => KeySpec::Rsa4096,
        "ECC_NIST_P256" => KeySpec::EcP256,
        _ => return None,
    };
    KeyUsage::from_parts(spec, purpose)
}

/// How a store key shows in the key object: `(keyUsage,
/// encryptionAlgorithm)`. Infisical reports a sign-verify key's key
/// algorithm in `encryptionAlgorithm`. Keys made by other faces with a
/// usage Infisical has no name for (asymmetric decryption) show the store's
/// usage name.
pub fn key_kind(usage: KeyUsage) -> (&'static str, &'static str) {
    let (spec, purpose) = usage.parts();
    let algorithm = match spec {
        KeySpec::Aes256 => "aes-256-gcm",
        KeySpec::Aes128 => "aes-128-gcm",
        KeySpec::Rsa2048 => "RSA_2048",
        KeySpec::Rsa3072 => "RSA_3072",
        KeySpec::Rsa4096 => "RSA_4096",
        KeySpec::EcP256 => "ECC_NIST_P256",
        KeySpec::EcP384 => "ECC_NIST_P384",
        KeySpec::Sm2 => "SM2",
    };
    let kind = match purpose {
        KeyPurpose::SignVerify => SIGN_VERIFY,
        KeyPurpose::EncryptDecrypt if usage.is_symmetric() => ENCRYPT_DECRYPT,
        KeyPurpose::EncryptDecrypt => usage.as_str(),
    };
    (kind, algorithm)
}

/// The scheme an Infisical signing algorithm name stands for. `ECDSA_SHA_256`
/// is P-256 with SHA-256 and `ECDSA_SHA_384` P-384 with SHA-384 (the curves
/// the store signs with those hashes); `ECDSA_SHA_512` has no scheme here.
pub fn signing_algorithm(name: &str) -> Option<SigningAlgorithm> {
    use SigningAlgorithm::*;
    Some(match name {
        "RSASSA_PSS_SHA_256" => RsaPssSha256,
        "RSASSA_PSS_SHA_384" => RsaPssSha384,
        "RSASSA_PSS_SHA_512" => RsaPssSha512,
        "RSASSA_PKCS1_V1_5_SHA_256" => RsaPkcs1Sha256,
        "RSASSA_PKCS1_V1_5_SHA_384" => RsaPkcs1Sha384,
        "RSASSA_PKCS1_V1_5_SHA_512" => RsaPkcs1Sha512,
        "ECDSA_SHA_256" => EcdsaP256Sha256,
        "ECDSA_SHA_384" => EcdsaP384Sha384,
        _ => return None,
    })
}

/// The Infisical name of a signing scheme.
pub fn signing_algorithm_name(alg: SigningAlgorithm) -> &'static str {
    use SigningAlgorithm::*;
    match alg {
        RsaPssSha256 => "RSASSA_PSS_SHA_256",
        RsaPssSha384 => "RSASSA_PSS_SHA_384",
        RsaPssSha512 => "RSASSA_PSS_SHA_512",
        RsaPkcs1Sha256 => "RSASSA_PKCS1_V1_5_SHA_256",
        RsaPkcs1Sha384 => "RSASSA_PKCS1_V1_5_SHA_384",
        RsaPkcs1Sha512 => "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaP256Sha256 => "ECDSA_SHA_256",
        EcdsaP384Sha384 => "ECDSA_SHA_384",
    }
}

/// The names of `supported`, in Infisical's enum order (PSS, then
/// PKCS#1 v1.5, then ECDSA; SHA-512 first), as `/signing-algorithms` lists them.
pub fn signing_algorithm_names(supported: &[SigningAlgorithm]) -> Vec<&'static str> {
    SIGNING_ALGORITHMS
        .iter()
        .copied()
        .filter(|n| signing_algorithm(n).is_some_and(|a| supported.contains(&a)))
        .collect()
}

/// Infisical's name of a hash in its digest messages (`SHA256`, …).
pub fn hash_name(alg: SigningAlgorithm) -> &'static str {
    match alg.digest_len() {
        32 => "SHA256",
        48 => "SHA384",
        _ => "SHA512",
    }
}

/// An error in Infisical's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `error` field (Infisical's error class name).
    pub error: &'static str,
    /// The `message` field: a string, or the list of issues for 422.
    pub message: Value,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: Value::String(message.into()),
            retry_after: None,
        }
    }
    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 401 `UnauthorizedError`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "UnauthorizedError", message)
    }
    /// 403 `TokenError`: a bad, expired or revoked access token.
    pub fn token(message: impl Into<String>) -> Self {
        Self::new(403, "TokenError", message)
    }
    /// 403 `PermissionDenied`: the identity may not do this.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, "PermissionDenied", message)
    }
    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }
    /// 404 for a method and path no route serves (Fastify's shape).
    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(404, "Not Found", format!("Route {method}:{path} not found"))
    }
    /// 422 `ValidationFailure` with the issues as `message`.
    pub fn validation(issues: Vec<Value>) -> Self {
        Self {
            status: 422,
            error: "ValidationFailure",
            message: Value::Array(issues),
            retry_after: None,
        }
    }
    /// 429 `RateLimitExceeded`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                429,
                "RateLimitExceeded",
                format!("Rate limit exceeded. Please try again in {secs} seconds"),
            )
        }
    }
    /// 500 `InternalServerError` (details go to the log, not the client).
    pub fn internal() -> Self {
        Self::new(500, "InternalServerError", "Something went wrong")
    }
}

/// The error body: `{reqId, statusCode, message, error}`.
pub fn error_body(req_id: &str, e: &ApiError) -> Value {
    json!({
        "reqId": req_id,
        "statusCode": e.status,
        "message": e.message,
        "error": e.error,
    })
}

// ---- issues, in zod's shape ------------------------------------------------

fn path_value(path: &[&str]) -> Value {
    Value::Array(path.iter().map(|p| Value::String((*p).into())).collect())
}

/// zod's name for the type of a JSON value (`received` in invalid_type).
fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

/// `invalid_type`: `Required` when missing, else `Expected X, received Y`.
pub fn invalid_type(path: &[&str], expected: &str, got: Option<&Value>) -> Value {
    let received = type_name(got);
    invalid_type_named(path, expected, received)
}

fn invalid_type_named(path: &[&str], expected: &str, received: &str) -> Value {
    let message = if received == "undefined" {
        "Required".to_string()
    } else {
        format!("Expected {expected}, received {received}")
    };
    json!({"code": "invalid_type", "expected": expected, "received": received, "path": path_value(path), "message": message})
}

/// `custom` issue with a message.
pub fn custom(path: &[&str], message: &str) -> Value {
    json!({"code": "custom", "message": message, "path": path_value(path)})
}

/// `too_small` / `too_big` for a string length.
pub fn string_length(path: &[&str], len: usize, min: usize, max: usize) -> Option<Value> {
    if len < min {
        Some(
            json!({"code": "too_small", "minimum": min, "type": "string", "inclusive": true, "exact": false,
            "message": format!("String must contain at least {min} character(s)"), "path": path_value(path)}),
        )
    } else if len > max {
        Some(
            json!({"code": "too_big", "maximum": max, "type": "string", "inclusive": true, "exact": false,
            "message": format!("String must contain at most {max} character(s)"), "path": path_value(path)}),
        )
    } else {
        None
    }
}

/// `invalid_enum_value`.
pub fn invalid_enum(path: &[&str], options: &[&str], got: &str) -> Value {
    let expected = options
        .iter()
        .map(|o| format!("'{o}'"))
        .collect::<Vec<_>>()
        .join(" | ");
    json!({"code": "invalid_enum_value", "received": got, "options": options, "path": path_value(path),
        "message": format!("Invalid enum value. Expected {expected}, received '{got}'")})
}

/// `invalid_string` uuid.
pub fn invalid_uuid(path: &[&str]) -> Value {
    json!({"validation": "uuid", "code": "invalid_string", "message": "Invalid uuid", "path": path_value(path)})
}

// ---- bodies -----------------------------------------------------------------

/// What a field of a body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON string.
    Str,
    /// A JSON boolean.
    Bool,
}

/// One field of a body: name, kind, required.
pub type FieldSpec = (&'static str, Kind, bool);

/// A body checked against its field list: the object, and the issues found so far.
#[derive(Debug)]
pub struct Checked {
    /// The body object.
    pub object: Map<String, Value>,
    /// Issues found (missing or mistyped fields).
    pub issues: Vec<Value>,
}

impl Checked {
    /// A string field that passed the type check.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.object.get(name).and_then(Value::as_str)
    }
    /// A boolean field that passed the type check.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.object.get(name).and_then(Value::as_bool)
    }
    /// 422 if any issue was found.
    pub fn finish(self) -> Result<Map<String, Value>, ApiError> {
        if self.issues.is_empty() {
            Ok(self.object)
        } else {
            Err(ApiError::validation(self.issues))
        }
    }
}

/// Parses a JSON body and checks it against its field list the way a zod
/// object does: members not in the list are dropped, not refused (the
/// published OpenAPI says `additionalProperties: false`, but the service
/// validates with zod's stripping objects, and official SDKs rely on it).
/// Bad JSON is 400; a body that is not an object, and missing or mistyped
/// fields, are collected as issues for a 422.
pub fn check_body(body: &[u8], fields: &[FieldSpec]) -> Result<Checked, ApiError> {
    let value: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(body)
                .map_err(|_| ApiError::bad_request("Body is not valid JSON"))?,
        )
    };
    let object = match value {
        Some(Value::Object(m)) => m,
        other => {
            return Err(ApiError::validation(vec![invalid_type(
                &[],
                "object",
                other.as_ref(),
            )]))
        }
    };
    let mut object = object;
    // zod's `strip`: unknown members vanish before anything reads the body.
    object.retain(|k, _| fields.iter().any(|(n, _, _)| n == k));
    let mut issues = Vec::new();
    for (name, kind, required) in fields {
        let got = object.get(*name);
        let ok = match (got, kind) {
            (None, _) => !required,
            (Some(Value::String(_)), Kind::Str) | (Some(Value::Bool(_)), Kind::Bool) => true,
            _ => false,
        };
        if !ok {
            let expected = match kind {
                Kind::Str => "string",
                Kind::Bool => "boolean",
            };
            issues.push(invalid_type(&[name], expected, got));
        }
    }
    // Mistyped fields are dropped so the typed accessors see only good ones.
    for (name, kind, _) in fields {
        let keep = matches!(
            (object.get(*name), kind),
            (Some(Value::String(_)), Kind::Str) | (Some(Value::Bool(_)), Kind::Bool) | (None, _)
        );
        if !keep {
            object.remove(*name);
        }
    }
    Ok(Checked { object, issues })
}

/// A slug: lower-case letters and digits in hyphen-separated runs.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Checks a key name (slug, 1–32); pushes issues.
pub fn check_name(path: &[&str], name: &str, issues: &mut Vec<Value>) {
    if let Some(i) = string_length(path, name.chars().count(), 1, NAME_MAX) {
        issues.push(i);
    } else if !is_slug(name) {
        issues.push(custom(
            path,
            "Name must be a valid slug: lowercase letters, digits and single hyphens",
        ));
    }
}

/// Decodes a Base64 field bounded to `max` decoded bytes; pushes issues.
pub fn check_base64(
    path: &[&str],
    what: &str,
    s: &str,
    max: usize,
    issues: &mut Vec<Value>,
) -> Option<Vec<u8>> {
    match B64.decode(s.as_bytes()) {
        Ok(bytes) if bytes.len() <= max => Some(bytes),
        Ok(_) => {
            issues.push(custom(path, &format!("data cannot exceed {max} bytes")));
            None
        }
        Err(_) => {
            issues.push(custom(path, &format!("{what} must be base64 encoded")));
            None
        }
    }
}

/// Standard Base64.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

// ---- typed requests ---------------------------------------------------------

/// `POST /api/v1/auth/universal-auth/login`.
#[derive(Debug)]
pub struct LoginBody {
    /// The credential id.
    pub client_id: String,
    /// The credential secret.
    pub client_secret: String,
}

/// Parses a login body.
pub fn parse_login(body: &[u8]) -> Result<LoginBody, ApiError> {
    let c = check_body(
        body,
        &[
            ("clientId", Kind::Str, true),
            ("clientSecret", Kind::Str, true),
        ],
    )?;
    let client_id = c.str("clientId").unwrap_or("").trim().to_string();
    let client_secret = c.str("clientSecret").unwrap_or("").trim().to_string();
    c.finish()?;
    Ok(LoginBody {
        client_id,
        client_secret,
    })
}

/// `POST /api/v1/kms/keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyBody {
    /// Project the key belongs to.
    pub project_id: String,
    /// Slug, unique in the project.
    pub name: String,
    /// Trimmed; empty when not given.
    pub description: String,
    /// `encrypt-decrypt` (default) or `sign-verify`.
    pub key_usage: String,
    /// Default `aes-256-gcm`.
    pub encryption_algorithm: String,
}

fn check_description(c: &Checked, issues: &mut Vec<Value>) -> Option<String> {
    let d = c.str("description")?.trim().to_string();
    if let Some(i) = string_length(&["description"], d.chars().count(), 0, DESCRIPTION_MAX) {
        issues.push(i);
    } else if d.len() > crate::keys::model::DESCRIPTION_MAX_BYTES {
        issues.push(custom(
            &["description"],
            "description cannot exceed 1024 bytes of UTF-8",
        ));
    }
    Some(d)
}

fn check_project_id(path: &[&str], p: &str, issues: &mut Vec<Value>) {
    if let Some(i) = string_length(path, p.chars().count(), 1, PROJECT_ID_MAX) {
        issues.push(i);
    }
}

/// Parses a create-key body.
pub fn parse_create(body: &[u8]) -> Result<CreateKeyBody, ApiError> {
    let mut c = check_body(
        body,
        &[
            ("projectId", Kind::Str, true),
            ("name", Kind::Str, true),
            ("description", Kind::Str, false),
            ("keyUsage", Kind::Str, false),
            ("encryptionAlgorithm", Kind::Str, false),
        ],
    )?;
    let mut issues = std::mem::take(&mut c.issues);
    let project_id = c.str("projectId").unwrap_or("").to_string();
    if c.str("projectId").is_some() {
        check_project_id(&["projectId"], &project_id, &mut issues);
    }
    let name = c.str("name").unwrap_or("").to_string();
    if c.str("name").is_some() {
        check_name(&["name"], &name, &mut issues);
    }
    let description = check_description(&c, &mut issues).unwrap_or_default();
    let key_usage = c.str("keyUsage").unwrap_or("encrypt-decrypt").to_string();
    let usage_ok = KEY_USAGES.contains(&key_usage.as_str());
    if !usage_ok {
        issues.push(invalid_enum(&["keyUsage"], &KEY_USAGES, &key_usage));
    }
    let algorithm = c
        .str("encryptionAlgorithm")
        .unwrap_or("aes-256-gcm")
        .to_string();
    let alg_ok = ALGORITHMS.contains(&algorithm.as_str());
    if !alg_ok {
        issues.push(invalid_enum(
            &["encryptionAlgorithm"],
            &ALGORITHMS,
            &algorithm,
        ));
    }
    if usage_ok && alg_ok {
        if key_usage == "encrypt-decrypt" && !SYMMETRIC_ALGORITHMS.contains(&algorithm.as_str()) {
            issues.push(custom(&[], "encryptionAlgorithm must be a valid symmetric encryption algorithm. Valid options are: aes-256-gcm, aes-128-gcm"));
        }
        if key_usage == "sign-verify" && !ASYMMETRIC_ALGORITHMS.contains(&algorithm.as_str()) {
            issues.push(custom(&[], "encryptionAlgorithm must be a valid asymmetric sign-verify algorithm. Valid options are: RSA_4096, ECC_NIST_P256"));
        }
    }
    c.issues = issues;
    c.finish()?;
    Ok(CreateKeyBody {
        project_id,
        name,
        description,
        key_usage,
        encryption_algorithm: algorithm,
    })
}

/// `PATCH /api/v1/kms/keys/{keyId}`: each field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateKeyBody {
    /// New name.
    pub name: Option<String>,
    /// Disable (true) or enable (false).
    pub is_disabled: Option<bool>,
    /// New description (trimmed).
    pub description: Option<String>,
}

/// Parses an update-key body.
pub fn parse_update(body: &[u8]) -> Result<UpdateKeyBody, ApiError> {
    let mut c = check_body(
        body,
        &[
            ("name", Kind::Str, false),
            ("isDisabled", Kind::Bool, false),
            ("description", Kind::Str, false),
        ],
    )?;
    let mut issues = std::mem::take(&mut c.issues);
    let name = c.str("name").map(str::to_string);
    if let Some(n) = &name {
        check_name(&["name"], n, &mut issues);
    }
    let description = check_description(&c, &mut issues);
    let is_disabled = c.bool("isDisabled");
    c.issues = issues;
    c.finish()?;
    Ok(UpdateKeyBody {
        name,
        is_disabled,
        description,
    })
}

/// Parses `{plaintext}` (encrypt) → the decoded plaintext.
pub fn parse_encrypt(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut c = check_body(body, &[("plaintext", Kind::Str, true)])?;
    let mut issues = std::mem::take(&mut c.issues);
    let pt = c
        .str("plaintext")
        .and_then(|s| check_base64(&["plaintext"], "plaintext", s, MAX_PLAINTEXT, &mut issues));
    c.issues = issues;
    c.finish()?;
    Ok(pt.unwrap_or_default())
}

/// Parses `{ciphertext}` (decrypt) → the decoded ciphertext.
pub fn parse_decrypt(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut c = check_body(body, &[("ciphertext", Kind::Str, true)])?;
    let mut issues = std::mem::take(&mut c.issues);
    let ct = c.str("ciphertext").and_then(|s| {
        check_base64(
            &["ciphertext"],
            "ciphertext",
            s,
            MAX_CIPHERTEXT,
            &mut issues,
        )
    });
    c.issues = issues;
    c.finish()?;
    Ok(ct.unwrap_or_default())
}

/// `POST …/sign` and `…/verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignBody {
    /// One of [`SIGNING_ALGORITHMS`].
    pub signing_algorithm: String,
    /// Whether `data` is already a digest.
    pub is_digest: bool,
    /// The data (decoded).
    pub data: Vec<u8>,
    /// The signature to check (verify only; decoded).
    pub signature: Option<Vec<u8>>,
}

/// Parses a sign (`verify == false`) or verify body.
pub fn parse_sign(body: &[u8], verify: bool) -> Result<SignBody, ApiError> {
    let mut fields = vec![
        ("signingAlgorithm", Kind::Str, true),
        ("isDigest", Kind::Bool, false),
        ("data", Kind::Str, true),
    ];
    if verify {
        fields.push(("signature", Kind::Str, true));
    }
    let mut c = check_body(body, &fields)?;
    let mut issues = std::mem::take(&mut c.issues);
    let alg = c.str("signingAlgorithm").unwrap_or("").to_string();
    if c.str("signingAlgorithm").is_some() && !SIGNING_ALGORITHMS.contains(&alg.as_str()) {
        issues.push(invalid_enum(
            &["signingAlgorithm"],
            &SIGNING_ALGORITHMS,
            &alg,
        ));
    }
    let data = c
        .str("data")
        .and_then(|s| check_base64(&["data"], "data", s, MAX_PLAINTEXT, &mut issues));
    let signature = if verify {
        c.str("signature")
            .and_then(|s| check_base64(&["signature"], "signature", s, MAX_PLAINTEXT, &mut issues))
    } else {
        None
    };
    let is_digest = c.bool("isDigest").unwrap_or(false);
    c.issues = issues;
    c.finish()?;
    Ok(SignBody {
        signing_algorithm: alg,
        is_digest,
        data: data.unwrap_or_default(),
        signature,
    })
}

/// Checks a `keyId` path parameter (a UUID).
pub fn check_key_id(s: &str) -> Result<crate::keys::KeyId, ApiError> {
    crate::keys::KeyId::parse(s)
        .filter(|_| s.len() == 36)
        .ok_or_else(|| ApiError::validation(vec![invalid_uuid(&["keyId"])]))
}

/// `GET /api/v1/kms/keys` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The project.
    pub project_id: String,
    /// Keys to skip.
    pub offset: u64,
    /// Page size (1–100).
    pub limit: u64,
    /// Descending order by name.
    pub descending: bool,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
}

fn number_param(
    params: &[(String, String)],
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    issues: &mut Vec<Value>,
) -> u64 {
    let Some((_, raw)) = params.iter().find(|(k, _)| k == name) else {
        return default;
    };
    let v: f64 = if raw.trim().is_empty() {
        0.0
    } else {
        raw.trim().parse().unwrap_or(f64::NAN)
    };
    if v.is_nan() {
        issues.push(invalid_type_named(&[name], "number", "nan"));
        return default;
    }
    if v < min as f64 {
        issues.push(json!({"code": "too_small", "minimum": min, "type": "number", "inclusive": true, "exact": false,
            "message": format!("Number must be greater than or equal to {min}"), "path": [name]}));
        return default;
    }
    if v > max as f64 {
        issues.push(json!({"code": "too_big", "maximum": max, "type": "number", "inclusive": true, "exact": false,
            "message": format!("Number must be less than or equal to {max}"), "path": [name]}));
        return default;
    }
    if v.fract() != 0.0 {
        issues.push(invalid_type_named(&[name], "integer", "float"));
        return default;
    }
    v as u64
}

/// Parses the list query (unknown parameters are ignored, as Infisical does).
pub fn parse_list_query(params: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let mut issues = Vec::new();
    let project_id = match get("projectId") {
        Some(p) => {
            check_project_id(&["projectId"], p, &mut issues);
            p.to_string()
        }
        None => {
            issues.push(invalid_type(&["projectId"], "string", None));
            String::new()
        }
    };
    let offset = number_param(params, "offset", 0, 0, u64::MAX, &mut issues);
    let limit = number_param(
        params,
        "limit",
        LIST_LIMIT_MAX,
        1,
        LIST_LIMIT_MAX,
        &mut issues,
    );
    if let Some(o) = get("orderBy") {
        if o != "name" {
            issues.push(invalid_enum(&["orderBy"], &["name"], o));
        }
    }
    let descending = match get("orderDirection") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            issues.push(invalid_enum(&["orderDirection"], &["asc", "desc"], o));
            false
        }
    };
    let search = get("search")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if !issues.is_empty() {
        return Err(ApiError::validation(issues));
    }
    Ok(ListQuery {
        project_id,
        offset,
        limit,
        descending,
        search,
    })
}

/// Parses a query string (`+` is a space, `%XX` decoded) leniently, as
/// Infisical's server does ([`crate::kms::form::decode_lenient`]).
pub fn query_params(query: &str) -> Vec<(String, String)> {
    crate::kms::form::decode_lenient(query)
}

// ---- the key object ---------------------------------------------------------

/// A key as the Infisical face shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// The store's KeyId.
    pub id: String,
    /// The name (a slug for keys made here; the alias or id otherwise).
    pub name: String,
    /// Description.
    pub description: String,
    /// True unless the key is enabled.
    pub is_disabled: bool,
    /// The organisation id this server reports.
    pub org_id: String,
    /// The project ("" for keys not made through this face).
    pub project_id: String,
    /// Primary version (0 before any material exists).
    pub version: u32,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Last change of material (creation or rotation), unix seconds.
    pub updated_at: u64,
    /// `keyUsage` (see [`key_kind`]).
    pub key_usage: &'static str,
    /// `encryptionAlgorithm`: the cipher, or a sign-verify key's key algorithm.
    pub algorithm: &'static str,
}

/// The key object: every field the SDK's `KmsKey` requires, plus
/// `keyUsage` and `kmipMetadata` as the API returns them.
pub fn key_json(k: &KeyView) -> Value {
    json!({
        "id": k.id,
        "description": k.description,
        "isDisabled": k.is_disabled,
        "orgId": k.org_id,
        "name": k.name,
        "createdAt": iso_time(k.created_at),
        "updatedAt": iso_time(k.updated_at),
        "projectId": k.project_id,
        "keyUsage": k.key_usage,
        "kmipMetadata": Value::Null,
        "version": k.version,
        "encryptionAlgorithm": k.algorithm,
    })
}

/// Unix seconds as JavaScript's `toISOString` writes them.
pub fn iso_time(secs: u64) -> String {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(e: ApiError) -> Vec<Value> {
        assert_eq!(e.status, 422, "{e:?}");
        assert_eq!(e.error, "ValidationFailure");
        e.message.as_array().unwrap().clone()
    }

    #[test]
    fn unknown_members_are_stripped_missing_and_mistyped_fields_reported() {
        // the Node SDK's encrypt body: keyId repeats the path parameter
        let body = br#"{"keyId":"0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b","plaintext":"aGk="}"#;
        assert_eq!(parse_encrypt(body).unwrap(), b"hi");
        let c = check_body(
            br#"{"a": 1, "plaintext": "x", "b": {"c": 2}}"#,
            &[("plaintext", Kind::Str, true)],
        )
        .unwrap();
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        assert_eq!(c.object.keys().collect::<Vec<_>>(), ["plaintext"]);
        // an unknown member does not excuse a known one's type
        let e = parse_encrypt(br#"{"plaintext": 5, "extra": 1}"#).unwrap_err();
        let list = issues(e);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["code"], "invalid_type");
        assert_eq!(list[0]["path"], json!(["plaintext"]));
        assert_eq!(list[0]["message"], "Expected string, received number");
        let list = issues(parse_encrypt(b"{}").unwrap_err());
        assert_eq!(list[0]["message"], "Required");
        let list = issues(parse_encrypt(b"").unwrap_err());
        assert_eq!(list[0]["path"], json!([]));
        assert_eq!(list[0]["expected"], "object");
    }

    #[test]
    fn bad_json_is_400() {
        let e = parse_encrypt(b"{nope").unwrap_err();
        assert_eq!((e.status, e.error), (400, "BadRequest"));
    }

    #[test]
    fn plaintext_bounds() {
        let ok = b64(&[7u8; 4096]);
        assert_eq!(
            parse_encrypt(format!(r#"{{"plaintext":"{ok}"}}"#).as_bytes()).unwrap(),
            vec![7u8; 4096]
        );
        let big = b64(&[7u8; 4097]);
        let list =
            issues(parse_encrypt(format!(r#"{{"plaintext":"{big}"}}"#).as_bytes()).unwrap_err());
        assert_eq!(list[0]["message"], "data cannot exceed 4096 bytes");
        let list = issues(parse_encrypt(br#"{"plaintext":"not base64!"}"#).unwrap_err());
        assert_eq!(list[0]["message"], "plaintext must be base64 encoded");
        // a 4,096-byte plaintext's ciphertext still decrypts
        let ct = b64(&vec![1u8; MAX_CIPHERTEXT]);
        assert!(parse_decrypt(format!(r#"{{"ciphertext":"{ct}"}}"#).as_bytes()).is_ok());
    }

    #[test]
    fn create_defaults_and_rules() {
        let c = parse_create(br#"{"projectId":"p1","name":"my-key"}"#).unwrap();
        assert_eq!(c.encryption_algorithm, "aes-256-gcm");
        assert_eq!(c.key_usage, "encrypt-decrypt");
        assert_eq!(c.description, "");
        for bad in ["My-Key", "-a", "a-", "a--b", "a_b", ""] {
            let body = json!({"projectId": "p", "name": bad}).to_string();
            let list = issues(parse_create(body.as_bytes()).unwrap_err());
            assert_eq!(list[0]["path"], json!(["name"]), "{bad}");
        }
        let long = "a".repeat(33);
        let list = issues(
            parse_create(
                json!({"projectId": "p", "name": long})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap_err(),
        );
        assert_eq!(list[0]["code"], "too_big");
        let list = issues(
            parse_create(br#"{"projectId":"p","name":"k","encryptionAlgorithm":"RSA_4096"}"#)
                .unwrap_err(),
        );
        assert_eq!(list[0]["code"], "custom");
        let desc = "d".repeat(501);
        let list = issues(
            parse_create(
                json!({"projectId": "p", "name": "k", "description": desc})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap_err(),
        );
        assert_eq!(list[0]["path"], json!(["description"]));
        let list = issues(parse_create(br#"{"name":"k","keyUsage":"x"}"#).unwrap_err());
        assert_eq!(list.len(), 2, "{list:?}");
    }

    #[test]
    fn update_is_strict_and_optional() {
        assert_eq!(parse_update(b"{}").unwrap(), UpdateKeyBody::default());
        let u = parse_update(br#"{"isDisabled":true,"description":"  x "}"#).unwrap();
        assert_eq!(u.is_disabled, Some(true));
        assert_eq!(u.description.as_deref(), Some("x"));
        let list = issues(parse_update(br#"{"isDisabled":"yes"}"#).unwrap_err());
        assert_eq!(list[0]["expected"], "boolean");
    }

    #[test]
    fn list_query_rules() {
        let q = parse_list_query(&query_params("projectId=p%201&search=+ab+")).unwrap();
        assert_eq!(q.project_id, "p 1");
        assert_eq!((q.offset, q.limit, q.descending), (0, 100, false));
        assert_eq!(q.search.as_deref(), Some("ab"));
        let list = issues(parse_list_query(&query_params("limit=101&offset=-1")).unwrap_err());
        assert_eq!(list.len(), 3, "{list:?}");
        let list = issues(
            parse_list_query(&query_params(
                "projectId=p&orderBy=id&orderDirection=up&limit=x",
            ))
            .unwrap_err(),
        );
        assert_eq!(list.len(), 3, "{list:?}");
    }

    #[test]
    fn key_ids_must_be_uuids() {
        assert!(check_key_id("0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b").is_ok());
        let e = check_key_id("0b6f4a4e3f7e4b1c9a512f0e8f1d2c3b").unwrap_err();
        assert_eq!(issues(e)[0]["message"], "Invalid uuid");
    }

    #[test]
    fn sign_bodies() {
        let s = parse_sign(
            br#"{"signingAlgorithm":"ECDSA_SHA_256","data":"aGk="}"#,
            false,
        )
        .unwrap();
        assert_eq!(s.data, b"hi");
        assert!(!s.is_digest);
        assert_eq!(s.signature, None);
        let list =
            issues(parse_sign(br#"{"signingAlgorithm":"MD5","data":"aGk="}"#, true).unwrap_err());
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0]["path"], json!(["signature"]));
        assert_eq!(list[0]["message"], "Required");
        assert_eq!(list[1]["code"], "invalid_enum_value");
        let v = parse_sign(
            br#"{"signingAlgorithm":"RSASSA_PSS_SHA_256","isDigest":true,"data":"aGk=","signature":"AAE="}"#,
            true,
        )
        .unwrap();
        assert!(v.is_digest);
        assert_eq!(v.signature.as_deref(), Some(&[0u8, 1][..]));
        // sign takes no signature (stripped, unread); isDigest stays a
        // boolean; Base64 and size checks
        let s = parse_sign(
            br#"{"keyId":"k","signingAlgorithm":"ECDSA_SHA_256","data":"aGk=","signature":"aGk="}"#,
            false,
        )
        .unwrap();
        assert_eq!(s.signature, None);
        let list = issues(
            parse_sign(
                br#"{"signingAlgorithm":"ECDSA_SHA_256","data":"aGk=","signature":"aGk=","isDigest":1}"#,
                false,
            )
            .unwrap_err(),
        );
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["path"], json!(["isDigest"]));
        assert_eq!(list[0]["message"], "Expected boolean, received number");
        let list = issues(
            parse_sign(
                br#"{"signingAlgorithm":"ECDSA_SHA_256","data":"a b","signature":"!"}"#,
                true,
            )
            .unwrap_err(),
        );
        assert_eq!(list[0]["message"], "data must be base64 encoded");
        assert_eq!(list[1]["message"], "signature must be base64 encoded");
        let big = b64(&[0u8; 4097]);
        let body = json!({"signingAlgorithm": "ECDSA_SHA_256", "data": big}).to_string();
        let list = issues(parse_sign(body.as_bytes(), false).unwrap_err());
        assert_eq!(list[0]["message"], "data cannot exceed 4096 bytes");
        assert_eq!(list[0]["path"], json!(["data"]));
    }

    #[test]
    fn key_object_has_every_sdk_field() {
        let v = key_json(&KeyView {
            id: "i".into(),
            name: "n".into(),
            description: String::new(),
            is_disabled: false,
            org_id: "o".into(),
            project_id: "p".into(),
            version: 1,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
            key_usage: SIGN_VERIFY,
            algorithm: "RSA_4096",
        });
        for f in [
            "id",
            "description",
            "isDisabled",
            "orgId",
            "name",
            "createdAt",
            "updatedAt",
            "projectId",
            "version",
            "encryptionAlgorithm",
        ] {
            assert!(v.get(f).is_some(), "{f}");
        }
        assert_eq!(v["createdAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["keyUsage"], "sign-verify");
        assert_eq!(v["encryptionAlgorithm"], "RSA_4096");
    }

    #[test]
    fn created_kinds_map_to_store_usages_and_back() {
        for (usage, alg, want) in [
            ("encrypt-decrypt", "aes-256-gcm", KeyUsage::EncryptDecrypt),
            (
                "encrypt-decrypt",
                "aes-128-gcm",
                KeyUsage::EncryptDecryptAes128,
            ),
            (
                "sign-verify",
                "RSA_4096",
                KeyUsage::AsymmetricSignVerifyRsa4096,
            ),
            (
                "sign-verify",
                "ECC_NIST_P256",
                KeyUsage::AsymmetricSignVerifyEcc,
            ),
        ] {
            assert_eq!(store_usage(usage, alg), Some(want));
            assert_eq!(key_kind(want), (usage, alg));
        }
        assert_eq!(store_usage("sign-verify", "aes-256-gcm"), None);
        assert_eq!(store_usage("encrypt-decrypt", "RSA_4096"), None);
        // every store usage has a face, sign-verify exactly for the signing ones
        for u in KeyUsage::ALL {
            assert_eq!(key_kind(u).0 == SIGN_VERIFY, u.is_signing(), "{u}");
        }
    }

    #[test]
    fn signing_algorithm_names_round_trip_and_follow_the_key_spec() {
        use crate::keys::asymmetric::AsymmetricSpec;
        for name in SIGNING_ALGORITHMS {
            if let Some(a) = signing_algorithm(name) {
                assert_eq!(signing_algorithm_name(a), name);
            }
        }
        assert_eq!(signing_algorithm("ECDSA_SHA_512"), None);
        assert_eq!(signing_algorithm("MD5"), None);
        assert_eq!(
            signing_algorithm_names(AsymmetricSpec::Rsa4096.signing_algorithms()),
            vec![
                "RSASSA_PSS_SHA_512",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_256",
            ]
        );
        assert_eq!(
            signing_algorithm_names(AsymmetricSpec::EcP256.signing_algorithms()),
            vec!["ECDSA_SHA_256"]
        );
        assert_eq!(hash_name(SigningAlgorithm::RsaPkcs1Sha384), "SHA384");
        assert_eq!(hash_name(SigningAlgorithm::EcdsaP256Sha256), "SHA256");
        assert_eq!(hash_name(SigningAlgorithm::RsaPssSha512), "SHA512");
    }

    #[test]
    fn error_shape() {
        let v = error_body("req-1", &ApiError::rate_limited(0));
        assert_eq!(v["statusCode"], 429);
        assert_eq!(v["error"], "RateLimitExceeded");
        assert_eq!(v["reqId"], "req-1");
        assert!(v["message"].as_str().unwrap().contains("1 seconds"));
    }
}
