//! The Infisical KMS face end to end: sealgate started in-process with its
//! KMS listener, raw HTTP for every error status and shape, the official
//! `infisicalsdk` client through tests/sdk/infisical_flow.py (key life
//! cycle) and tests/sdk/infisical_sign_flow.py (sign-verify and aes-128-gcm
//! keys, signatures checked with Python's `cryptography`), and token expiry
//! with a hand-driven clock. Signatures are also checked here with aws-lc-rs
//! directly against the public key the face returns.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealgate::clock::ManualClock;
use sealgate::keys::{KeyStore, RootKeySource, StoreOptions};
use sealgate::kms::infisical::{InfisicalFace, InfisicalSettings};
use sealgate::kms::{Face, KmsRequest};

struct Kms {
    app: sealgate::app::App,
    base: String,
    id: String,
    secret: String,
}

async fn start_with(quotas: &[(&str, u32)]) -> Kms {
    let f = start_kms_fixture(quotas).await;
    let base = format!("http://{}", f.app.kms_addr.unwrap());
    Kms {
        app: f.app,
        base,
        id: f.id,
        secret: f.secret,
    }
}

async fn start() -> Kms {
    start_with(&[]).await
}

async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, http::HeaderMap, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (status, h, text) = send(method, url, &headers, body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, h, v)
}

async fn login(k: &Kms, id: &str, secret: &str) -> (u16, Value) {
    let body = json!({"clientId": id, "clientSecret": secret}).to_string();
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/auth/universal-auth/login", k.base),
        None,
        &body,
    )
    .await;
    (s, v)
}

async fn token(k: &Kms) -> String {
    let (s, v) = login(k, &k.id, &k.secret).await;
    assert_eq!(s, 200, "{v}");
    v["accessToken"].as_str().unwrap().to_string()
}

async fn create_key(k: &Kms, tok: &str, project: &str, name: &str) -> Value {
    let body = json!({"projectId": project, "name": name}).to_string();
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys", k.base),
        Some(tok),
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["key"].clone()
}

/// Asserts Infisical's error shape and returns the body.
fn assert_error(status: u16, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["statusCode"], want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(
        body["reqId"]
            .as_str()
            .is_some_and(|r| r.starts_with("req-")),
        "{body}"
    );
    assert!(body.get("message").is_some(), "{body}");
}

#[tokio::test]
async fn login_returns_a_bearer_token_with_infisical_ttls() {
    let k = start().await;
    let (s, v) = login(&k, &k.id, &k.secret).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tokenType"], "Bearer");
    assert_eq!(v["expiresIn"], 2_592_000);
    assert_eq!(v["accessTokenMaxTTL"], 2_592_000);
    let t = v["accessToken"].as_str().unwrap();
    assert!(!t.contains(&k.secret));
    // two logins, two different tokens, both good
    let t2 = token(&k).await;
    assert_ne!(t, t2);
    for tok in [t, t2.as_str()] {
        let (s, _, v) = call(
            "GET",
            &format!("{}/api/v1/kms/keys?projectId=p", k.base),
            Some(tok),
            "",
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    k.app.shutdown().await;
}

#[tokio::test]
async fn login_errors_401_and_422() {
    let k = start().await;
    let (s, v) = login(&k, &k.id, "wrong-secret-wrong-secret-wrong-secret-x").await;
    assert_error(s, &v, 401, "UnauthorizedError");
    assert_eq!(v["message"], "Invalid credentials");
    let (s, v) = login(&k, "AKIDnobody", &k.secret).await;
    assert_error(s, &v, 401, "UnauthorizedError");
    // a revoked credential no longer logs in
    let other = k.app.store.create_credential(None).unwrap();
    let other_secret = String::from_utf8(other.secret.expose().to_vec()).unwrap();
    assert_eq!(login(&k, &other.id, &other_secret).await.0, 200);
    k.app.store.revoke_credential(&other.id).unwrap();
    assert_eq!(login(&k, &other.id, &other_secret).await.0, 401);

    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/auth/universal-auth/login", k.base),
        None,
        r#"{"clientId": "x", "clientSecret": 7, "extra": true}"#,
    )
    .await;
    assert_error(s, &v, 422, "ValidationFailure");
    // the unknown member is stripped, as zod does; the mistyped one is the issue
    let issues = v["message"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "{v}");
    assert_eq!(issues[0]["path"], json!(["clientSecret"]));
    k.app.shutdown().await;
}

#[tokio::test]
async fn unknown_revoked_and_wrong_secret_look_the_same() {
    let k = start().await;
    let other = k.app.store.create_credential(None).unwrap();
    let other_secret = String::from_utf8(other.secret.expose().to_vec()).unwrap();
    assert_eq!(login(&k, &other.id, &other_secret).await.0, 200);
    k.app.store.revoke_credential(&other.id).unwrap();
    // everything but the per-request reqId
    let shape = |(s, mut v): (u16, Value)| {
        assert!(v["reqId"].is_string(), "{v}");
        v.as_object_mut().unwrap().remove("reqId");
        (s, v)
    };
    let wrong = shape(login(&k, &k.id, &format!("{}x", k.secret)).await);
    assert_eq!(wrong.0, 401, "{wrong:?}");
    let unknown = shape(login(&k, "AKIDnobodyhasthisid0000000000000000", &k.secret).await);
    assert_eq!(unknown, wrong, "unknown clientId vs wrong secret");
    let revoked = shape(login(&k, &other.id, &other_secret).await);
    assert_eq!(revoked, wrong, "revoked clientId vs wrong secret");
    k.app.shutdown().await;
}

#[tokio::test]
async fn missing_token_is_401_bad_token_is_403_revoked_identity_is_403() {
    let k = start().await;
    let url = format!("{}/api/v1/kms/keys?projectId=p", k.base);
    let (s, _, v) = call("GET", &url, None, "").await;
    assert_error(s, &v, 401, "UnauthorizedError");
    let (s, _, v) = send("GET", &url, &[("authorization", "Basic abc")], "")
        .await
        .pipe_json();
    assert_error(s, &v, 401, "UnauthorizedError");
    let (s, _, v) = call("GET", &url, Some("not-a-token"), "").await;
    assert_error(s, &v, 403, "TokenError");

    let other = k.app.store.create_credential(None).unwrap();
    let secret = String::from_utf8(other.secret.expose().to_vec()).unwrap();
    let (_, v) = login(&k, &other.id, &secret).await;
    let tok = v["accessToken"].as_str().unwrap().to_string();
    assert_eq!(call("GET", &url, Some(&tok), "").await.0, 200);
    k.app.store.revoke_credential(&other.id).unwrap();
    let (s, _, v) = call("GET", &url, Some(&tok), "").await;
    assert_error(s, &v, 403, "TokenError");
    k.app.shutdown().await;
}

trait PipeJson {
    fn pipe_json(self) -> (u16, http::HeaderMap, Value);
}

impl PipeJson for (u16, http::HeaderMap, String) {
    fn pipe_json(self) -> (u16, http::HeaderMap, Value) {
        let v = serde_json::from_str(&self.2).unwrap_or_else(|_| panic!("not JSON: {}", self.2));
        (self.0, self.1, v)
    }
}

#[tokio::test]
async fn key_life_cycle_over_raw_http() {
    let k = start().await;
    let tok = token(&k).await;
    let key = create_key(&k, &tok, "proj-1", "orders").await;
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
        "keyUsage",
    ] {
        assert!(key.get(f).is_some(), "key object lacks {f}: {key}");
    }
    assert_eq!(key["name"], "orders");
    assert_eq!(key["projectId"], "proj-1");
    assert_eq!(key["encryptionAlgorithm"], "aes-256-gcm");
    assert_eq!(key["keyUsage"], "encrypt-decrypt");
    assert_eq!(key["isDisabled"], false);
    assert_eq!(key["version"], 1);
    let id = key["id"].as_str().unwrap();

    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys/{id}/encrypt", k.base),
        Some(&tok),
        r#"{"plaintext": "c2VjcmV0"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ct = v["ciphertext"].as_str().unwrap().to_string();
    // the same store serves every face: the blob opens in the store directly
    let blob = base64_decode(&ct);
    let opened = k.app.store.decrypt(&blob, b"").unwrap();
    assert_eq!(opened.plaintext.expose(), b"secret");
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys/{id}/decrypt", k.base),
        Some(&tok),
        &json!({ "ciphertext": ct }).to_string(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["plaintext"], "c2VjcmV0");

    // duplicate name in the same project: 400
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys", k.base),
        Some(&tok),
        r#"{"projectId": "proj-1", "name": "orders"}"#,
    )
    .await;
    assert_error(s, &v, 400, "BadRequest");

    // disable: encrypt refused with 400, decrypt too; enable again
    let (s, _, v) = call(
        "PATCH",
        &format!("{}/api/v1/kms/keys/{id}", k.base),
        Some(&tok),
        r#"{"isDisabled": true}"#,
    )
    .await;
    assert_eq!((s, &v["key"]["isDisabled"]), (200, &json!(true)), "{v}");
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys/{id}/encrypt", k.base),
        Some(&tok),
        r#"{"plaintext": "c2VjcmV0"}"#,
    )
    .await;
    assert_error(s, &v, 400, "BadRequest");
    assert_eq!(v["message"], "Key is disabled");

    // delete: 404 afterwards, for get, encrypt and by name
    let (s, _, v) = call(
        "DELETE",
        &format!("{}/api/v1/kms/keys/{id}", k.base),
        Some(&tok),
        "{}",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key"]["id"], id);
    for (m, path, body) in [
        ("GET", format!("/api/v1/kms/keys/{id}"), ""),
        (
            "POST",
            format!("/api/v1/kms/keys/{id}/encrypt"),
            r#"{"plaintext": ""}"#,
        ),
        (
            "GET",
            "/api/v1/kms/keys/key-name/orders?projectId=proj-1".to_string(),
            "",
        ),
    ] {
        let (s, _, v) = call(m, &format!("{}{path}", k.base), Some(&tok), body).await;
        assert_error(s, &v, 404, "NotFound");
    }
    // its material waits out the store's deletion window, unusable
    let meta = k.app.store.describe(id).unwrap();
    assert_eq!(meta.key_state, sealgate::keys::KeyState::PendingDelete);
    k.app.shutdown().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn validation_failures_are_422_with_a_list_of_issues() {
    let k = start().await;
    let tok = token(&k).await;
    let key = create_key(&k, &tok, "p", "v").await;
    let id = key["id"].as_str().unwrap();
    let big = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(vec![0u8; 4097])
    };
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "POST",
            format!("/api/v1/kms/keys/{id}/encrypt"),
            json!({ "plaintext": big }).to_string(),
            "data cannot exceed 4096 bytes",
        ),
        (
            "POST",
            format!("/api/v1/kms/keys/{id}/encrypt"),
            r#"{"plaintext": 7, "context": "x"}"#.into(),
            "Expected string, received number",
        ),
        (
            "POST",
            format!("/api/v1/kms/keys/{id}/encrypt"),
            "{}".into(),
            "Required",
        ),
        (
            "POST",
            "/api/v1/kms/keys/not-a-uuid/encrypt".into(),
            r#"{"plaintext": "aGk="}"#.into(),
            "Invalid uuid",
        ),
        (
            "POST",
            "/api/v1/kms/keys".into(),
            r#"{"projectId": "p", "name": "Bad Name"}"#.into(),
            "Name must be a valid slug: lowercase letters, digits and single hyphens",
        ),
        (
            "POST",
            "/api/v1/kms/keys".into(),
            json!({"projectId": "p", "name": "n", "description": "d".repeat(501)}).to_string(),
            "String must contain at most 500 character(s)",
        ),
        (
            "PATCH",
            format!("/api/v1/kms/keys/{id}"),
            r#"{"isDisabled": "yes"}"#.into(),
            "Expected boolean, received string",
        ),
        (
            "GET",
            "/api/v1/kms/keys?projectId=p&limit=500".into(),
            String::new(),
            "Number must be less than or equal to 100",
        ),
        (
            "POST",
            format!("/api/v1/kms/keys/{id}/sign"),
            r#"{"signingAlgorithm": "MD5", "data": "aGk="}"#.into(),
            "Invalid enum value. Expected 'RSASSA_PSS_SHA_512' | 'RSASSA_PSS_SHA_384' | 'RSASSA_PSS_SHA_256' | 'RSASSA_PKCS1_V1_5_SHA_512' | 'RSASSA_PKCS1_V1_5_SHA_384' | 'RSASSA_PKCS1_V1_5_SHA_256' | 'ECDSA_SHA_512' | 'ECDSA_SHA_384' | 'ECDSA_SHA_256', received 'MD5'",
        ),
    ];
    for (m, path, body, message) in cases {
        let (s, _, v) = call(m, &format!("{}{path}", k.base), Some(&tok), &body).await;
        assert_error(s, &v, 422, "ValidationFailure");
        let issues = v["message"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert!(
            issues.iter().any(|i| i["message"] == message),
            "{m} {path}: {v}"
        );
    }
    // malformed JSON is a 400
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys/{id}/encrypt", k.base),
        Some(&tok),
        "{",
    )
    .await;
    assert_error(s, &v, 400, "BadRequest");
    k.app.shutdown().await;
}

async fn create_kind(
    k: &Kms,
    tok: &str,
    project: &str,
    name: &str,
    usage: &str,
    alg: &str,
) -> Value {
    let body =
        json!({"projectId": project, "name": name, "keyUsage": usage, "encryptionAlgorithm": alg})
            .to_string();
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys", k.base),
        Some(tok),
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["key"].clone()
}

/// `METHOD /api/v1/kms/keys/{id}/{route}` with a body.
async fn key_call(k: &Kms, tok: &str, m: &str, id: &str, route: &str, body: &str) -> (u16, Value) {
    let (s, _, v) = call(
        m,
        &format!("{}/api/v1/kms/keys/{id}/{route}", k.base),
        Some(tok),
        body,
    )
    .await;
    (s, v)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// aws-lc-rs's verification scheme for an Infisical signing algorithm name,
/// straight from the library (no sealgate code).
fn lc_scheme(alg: &str) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
    use aws_lc_rs::signature::*;
    match alg {
        "RSASSA_PSS_SHA_256" => &RSA_PSS_2048_8192_SHA256,
        "RSASSA_PSS_SHA_384" => &RSA_PSS_2048_8192_SHA384,
        "RSASSA_PSS_SHA_512" => &RSA_PSS_2048_8192_SHA512,
        "RSASSA_PKCS1_V1_5_SHA_256" => &RSA_PKCS1_2048_8192_SHA256,
        "RSASSA_PKCS1_V1_5_SHA_384" => &RSA_PKCS1_2048_8192_SHA384,
        "RSASSA_PKCS1_V1_5_SHA_512" => &RSA_PKCS1_2048_8192_SHA512,
        "ECDSA_SHA_256" => &ECDSA_P256_SHA256_ASN1,
        other => panic!("no scheme for {other}"),
    }
}

fn lc_verifies(spki: &[u8], alg: &str, message: &[u8], sig: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(lc_scheme(alg), spki)
        .verify(message, sig)
        .is_ok()
}

#[tokio::test]
async fn sign_verify_keys_sign_and_verify_over_raw_http() {
    let k = start().await;
    let tok = token(&k).await;
    let rsa = create_kind(&k, &tok, "p", "rsa", "sign-verify", "RSA_4096").await;
    let ecc = create_kind(&k, &tok, "p", "ecc", "sign-verify", "ECC_NIST_P256").await;
    for (key, alg, usage) in [
        (
            &rsa,
            "RSA_4096",
            sealgate::keys::KeyUsage::AsymmetricSignVerifyRsa4096,
        ),
        (
            &ecc,
            "ECC_NIST_P256",
            sealgate::keys::KeyUsage::AsymmetricSignVerifyEcc,
        ),
    ] {
        assert_eq!(key["keyUsage"], "sign-verify", "{key}");
        assert_eq!(key["encryptionAlgorithm"], alg, "{key}");
        assert_eq!(key["version"], 1, "{key}");
        let id = key["id"].as_str().unwrap();
        assert_eq!(k.app.store.describe(id).unwrap().key_usage, usage);
        // get and list show the same kind
        let (s, _, v) = call(
            "GET",
            &format!("{}/api/v1/kms/keys/{id}", k.base),
            Some(&tok),
            "",
        )
        .await;
        assert_eq!((s, &v["key"]["encryptionAlgorithm"]), (200, &json!(alg)));
    }

    let message = b"release v1.2.3";
    for (key, want_algs, spki_len) in [
        (
            &rsa,
            vec![
                "RSASSA_PSS_SHA_512",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_256",
            ],
            550,
        ),
        (&ecc, vec!["ECDSA_SHA_256"], 91),
    ] {
        let id = key["id"].as_str().unwrap();
        let (s, v) = key_call(&k, &tok, "GET", id, "signing-algorithms", "").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v, json!({ "signingAlgorithms": want_algs }));
        let (s, v) = key_call(&k, &tok, "GET", id, "public-key", "").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        let spki = base64_decode(v["publicKey"].as_str().unwrap());
        assert_eq!(spki.len(), spki_len, "DER SubjectPublicKeyInfo");
        for alg in want_algs {
            let body = json!({"signingAlgorithm": alg, "data": b64(message)}).to_string();
            let (s, v) = key_call(&k, &tok, "POST", id, "sign", &body).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["keyId"], id);
            assert_eq!(v["signingAlgorithm"], alg);
            let sig = base64_decode(v["signature"].as_str().unwrap());
            // checked with aws-lc-rs directly against the returned public key
            assert!(lc_verifies(&spki, alg, message, &sig), "{alg}");
            assert!(!lc_verifies(&spki, alg, b"release v1.2.4", &sig), "{alg}");
            for (data, valid) in [(&message[..], true), (b"release v1.2.4", false)] {
                let body =
                    json!({"signingAlgorithm": alg, "data": b64(data), "signature": b64(&sig)})
                        .to_string();
                let (s, v) = key_call(&k, &tok, "POST", id, "verify", &body).await;
                assert_eq!(s, 200, "{v}");
                assert_eq!(
                    v,
                    json!({"signatureValid": valid, "keyId": id, "signingAlgorithm": alg})
                );
            }
        }
    }

    // a digest: PKCS#1 v1.5 is deterministic, so signing the digest gives
    // the very signature of the message
    let rsa_id = rsa["id"].as_str().unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
    let mut sigs = Vec::new();
    for (data, is_digest) in [(digest.as_ref(), true), (&message[..], false)] {
        let body = json!({"signingAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256", "isDigest": is_digest, "data": b64(data)})
            .to_string();
        let (s, v) = key_call(&k, &tok, "POST", rsa_id, "sign", &body).await;
        assert_eq!(s, 200, "{v}");
        sigs.push(v["signature"].clone());
    }
    assert_eq!(sigs[0], sigs[1]);
    let body = json!({"signingAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256", "isDigest": true, "data": b64(digest.as_ref()), "signature": sigs[0]})
        .to_string();
    let (s, v) = key_call(&k, &tok, "POST", rsa_id, "verify", &body).await;
    assert_eq!((s, &v["signatureValid"]), (200, &json!(true)), "{v}");
    // ECDSA over a digest verifies as a signature over the message
    let ecc_id = ecc["id"].as_str().unwrap();
    let (_, v) = key_call(&k, &tok, "GET", ecc_id, "public-key", "").await;
    let ecc_spki = base64_decode(v["publicKey"].as_str().unwrap());
    let body =
        json!({"signingAlgorithm": "ECDSA_SHA_256", "isDigest": true, "data": b64(digest.as_ref())})
            .to_string();
    let (s, v) = key_call(&k, &tok, "POST", ecc_id, "sign", &body).await;
    assert_eq!(s, 200, "{v}");
    let sig = base64_decode(v["signature"].as_str().unwrap());
    assert!(lc_verifies(&ecc_spki, "ECDSA_SHA_256", message, &sig));

    // garbage and another key's signatures do not verify: false, not an error
    for (id, alg, sig) in [
        (ecc_id, "ECDSA_SHA_256", b64(b"not a signature")),
        (
            ecc_id,
            "ECDSA_SHA_256",
            sigs[0].as_str().unwrap().to_string(),
        ),
        (rsa_id, "RSASSA_PSS_SHA_256", b64(&[0u8; 512])),
    ] {
        let body =
            json!({"signingAlgorithm": alg, "data": b64(message), "signature": sig}).to_string();
        let (s, v) = key_call(&k, &tok, "POST", id, "verify", &body).await;
        assert_eq!((s, &v["signatureValid"]), (200, &json!(false)), "{v}");
    }

    // refused combinations: 400 with Infisical's messages
    let cases = [
        (
            ecc_id,
            "sign",
            json!({"signingAlgorithm": "RSASSA_PSS_SHA_256", "data": "aGk="}),
            "KMS ECC_NIST_P256 key cannot be used with RSASSA_PSS_SHA_256",
        ),
        (
            rsa_id,
            "verify",
            json!({"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk=", "signature": "aGk="}),
            "KMS RSA_4096 key cannot be used with ECDSA_SHA_256",
        ),
        (
            ecc_id,
            "sign",
            json!({"signingAlgorithm": "ECDSA_SHA_384", "data": "aGk="}),
            "KMS ECC_NIST_P256 key cannot be used with ECDSA_SHA_384 on this server: it signs ECC_NIST_P256 with ECDSA_SHA_256 only",
        ),
        (
            rsa_id,
            "sign",
            json!({"signingAlgorithm": "RSASSA_PSS_SHA_256", "isDigest": true, "data": b64(digest.as_ref())}),
            "RSA PSS does not support digested input",
        ),
        (
            rsa_id,
            "sign",
            json!({"signingAlgorithm": "RSASSA_PKCS1_V1_5_SHA_512", "isDigest": true, "data": b64(digest.as_ref())}),
            "Failed to sign RSA digest with RSASSA_PKCS1_V1_5_SHA_512 due to signing error. Ensure that your digest is hashed with SHA512.",
        ),
        (
            ecc_id,
            "verify",
            json!({"signingAlgorithm": "ECDSA_SHA_256", "isDigest": true, "data": "aGk=", "signature": "aGk="}),
            "Failed to verify ECC digest with ECDSA_SHA_256 due to verifying error. Ensure that your digest is hashed with SHA256.",
        ),
    ];
    for (id, route, body, message) in cases {
        let (s, v) = key_call(&k, &tok, "POST", id, route, &body.to_string()).await;
        assert_error(s, &v, 400, "BadRequest");
        assert_eq!(v["message"], message);
    }

    // a disabled key neither signs nor shows its public key
    let (s, _, v) = call(
        "PATCH",
        &format!("{}/api/v1/kms/keys/{ecc_id}", k.base),
        Some(&tok),
        r#"{"isDisabled": true}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for (m, route, body) in [
        ("GET", "public-key", ""),
        ("GET", "signing-algorithms", ""),
        (
            "POST",
            "sign",
            r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk="}"#,
        ),
    ] {
        let (s, v) = key_call(&k, &tok, m, ecc_id, route, body).await;
        assert_error(s, &v, 400, "BadRequest");
        assert_eq!(v["message"], "Key is disabled");
    }
    k.app.shutdown().await;
}

#[tokio::test]
async fn aes_128_keys_and_the_wrong_kind_of_key_for_a_route() {
    let k = start().await;
    let tok = token(&k).await;
    let aes128 = create_kind(&k, &tok, "p", "short", "encrypt-decrypt", "aes-128-gcm").await;
    assert_eq!(aes128["encryptionAlgorithm"], "aes-128-gcm");
    assert_eq!(aes128["keyUsage"], "encrypt-decrypt");
    let id = aes128["id"].as_str().unwrap();
    assert_eq!(
        k.app.store.describe(id).unwrap().key_usage,
        sealgate::keys::KeyUsage::EncryptDecryptAes128
    );
    let (s, v) = key_call(
        &k,
        &tok,
        "POST",
        id,
        "encrypt",
        r#"{"plaintext": "c2VjcmV0"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ct = v["ciphertext"].as_str().unwrap().to_string();
    assert_eq!(
        k.app
            .store
            .decrypt(&base64_decode(&ct), b"")
            .unwrap()
            .plaintext
            .expose(),
        b"secret"
    );
    let (s, v) = key_call(
        &k,
        &tok,
        "POST",
        id,
        "decrypt",
        &json!({ "ciphertext": ct }).to_string(),
    )
    .await;
    assert_eq!((s, &v["plaintext"]), (200, &json!("c2VjcmV0")), "{v}");

    // the symmetric keys refuse the sign-verify routes
    let sym = create_key(&k, &tok, "p", "sym").await;
    for key in [&aes128, &sym] {
        let id = key["id"].as_str().unwrap();
        for (m, route, body) in [
            ("GET", "public-key", ""),
            (
                "POST",
                "sign",
                r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk="}"#,
            ),
            (
                "POST",
                "verify",
                r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk=", "signature": "aGk="}"#,
            ),
        ] {
            let (s, v) = key_call(&k, &tok, m, id, route, body).await;
            assert_error(s, &v, 400, "BadRequest");
            assert_eq!(
                v["message"],
                "Unsupported key type, expected sign-verify but got encrypt-decrypt"
            );
        }
        let (s, v) = key_call(&k, &tok, "GET", id, "signing-algorithms", "").await;
        assert_error(s, &v, 400, "BadRequest");
        assert_eq!(
            v["message"],
            format!("Key with ID '{id}' is not intended for signing")
        );
    }
    // and the sign-verify keys refuse encrypt and decrypt
    let rsa = create_kind(&k, &tok, "p", "rsa", "sign-verify", "RSA_4096").await;
    let rsa_id = rsa["id"].as_str().unwrap();
    for (route, body) in [
        ("encrypt", r#"{"plaintext": "aGk="}"#.to_string()),
        ("decrypt", json!({ "ciphertext": ct }).to_string()),
    ] {
        let (s, v) = key_call(&k, &tok, "POST", rsa_id, route, &body).await;
        assert_error(s, &v, 400, "BadRequest");
        assert_eq!(
            v["message"],
            "Unsupported key type, expected encrypt-decrypt but got sign-verify"
        );
    }
    // usage and algorithm must agree (422, as Infisical's schema refines)
    for (body, message) in [
        (
            r#"{"projectId": "p", "name": "b", "keyUsage": "sign-verify", "encryptionAlgorithm": "aes-128-gcm"}"#,
            "encryptionAlgorithm must be a valid asymmetric sign-verify algorithm. Valid options are: RSA_4096, ECC_NIST_P256",
        ),
        (
            r#"{"projectId": "p", "name": "b", "keyUsage": "sign-verify"}"#,
            "encryptionAlgorithm must be a valid asymmetric sign-verify algorithm. Valid options are: RSA_4096, ECC_NIST_P256",
        ),
        (
            r#"{"projectId": "p", "name": "b", "encryptionAlgorithm": "ECC_NIST_P256"}"#,
            "encryptionAlgorithm must be a valid symmetric encryption algorithm. Valid options are: aes-256-gcm, aes-128-gcm",
        ),
    ] {
        let (s, _, v) = call(
            "POST",
            &format!("{}/api/v1/kms/keys", k.base),
            Some(&tok),
            body,
        )
        .await;
        assert_error(s, &v, 422, "ValidationFailure");
        assert_eq!(v["message"][0]["message"], message, "{v}");
    }
    k.app.shutdown().await;
}

#[tokio::test]
async fn sign_verify_routes_validate_404_and_403() {
    let k = start().await;
    let tok = token(&k).await;
    let rsa = create_kind(&k, &tok, "p", "rsa", "sign-verify", "RSA_4096").await;
    let id = rsa["id"].as_str().unwrap();
    let big = b64(&[0u8; 4097]);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "verify",
            r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk="}"#.into(),
            "Required",
        ),
        (
            "sign",
            r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk=", "isDigest": "yes"}"#.into(),
            "Expected boolean, received string",
        ),
        (
            "sign",
            r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "not base64!"}"#.into(),
            "data must be base64 encoded",
        ),
        (
            "verify",
            r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk=", "signature": "%%"}"#.into(),
            "signature must be base64 encoded",
        ),
        (
            "sign",
            json!({"signingAlgorithm": "ECDSA_SHA_256", "data": big}).to_string(),
            "data cannot exceed 4096 bytes",
        ),
        (
            "sign",
            r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk=", "isDigest": "no", "signature": "aGk="}"#.into(),
            "Expected boolean, received string",
        ),
        ("sign", r#"{"data": "aGk="}"#.into(), "Required"),
    ];
    for (route, body, message) in cases {
        let (s, v) = key_call(&k, &tok, "POST", id, route, &body).await;
        assert_error(s, &v, 422, "ValidationFailure");
        let issues = v["message"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert!(
            issues.iter().any(|i| i["message"] == message),
            "{route} {body}: {v}"
        );
    }
    // unknown key: 404 on every route (the body is valid)
    let nobody = "0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b";
    let sign = r#"{"signingAlgorithm": "RSASSA_PSS_SHA_256", "data": "aGk="}"#;
    let verify =
        r#"{"signingAlgorithm": "RSASSA_PSS_SHA_256", "data": "aGk=", "signature": "aGk="}"#;
    let routes = [
        ("GET", "public-key", ""),
        ("GET", "signing-algorithms", ""),
        ("POST", "sign", sign),
        ("POST", "verify", verify),
    ];
    for (m, route, body) in routes {
        let (s, v) = key_call(&k, &tok, m, nobody, route, body).await;
        assert_error(s, &v, 404, "NotFound");
        assert_eq!(v["message"], format!("Key with ID {nobody} not found"));
    }
    // a credential limited to other keys: 403
    let other = create_key(&k, &tok, "p", "other").await;
    let limited = k
        .app
        .store
        .create_credential(Some(vec![other["id"].as_str().unwrap().to_string()]))
        .unwrap();
    let secret = String::from_utf8(limited.secret.expose().to_vec()).unwrap();
    let (_, v) = login(&k, &limited.id, &secret).await;
    let ltok = v["accessToken"].as_str().unwrap().to_string();
    for (m, route, body) in routes {
        let (s, v) = key_call(&k, &ltok, m, id, route, body).await;
        assert_error(s, &v, 403, "PermissionDenied");
    }
    k.app.shutdown().await;
}

#[tokio::test]
async fn sign_and_verify_are_writes_public_key_and_algorithms_are_reads() {
    let k = start_with(&[
        ("infisical_write_per_minute", 3),
        ("infisical_read_per_minute", 2),
    ])
    .await;
    let tok = token(&k).await;
    let key = create_kind(&k, &tok, "p", "ecc", "sign-verify", "ECC_NIST_P256").await; // write 1
    let id = key["id"].as_str().unwrap();
    let sign = r#"{"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk="}"#;
    let (s, v) = key_call(&k, &tok, "POST", id, "sign", sign).await; // write 2
    assert_eq!(s, 200, "{v}");
    let verify =
        json!({"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk=", "signature": v["signature"]})
            .to_string();
    assert_eq!(
        key_call(&k, &tok, "POST", id, "verify", &verify).await.0,
        200
    ); // write 3
    let (s, v) = key_call(&k, &tok, "POST", id, "sign", sign).await;
    assert_error(s, &v, 429, "RateLimitExceeded");
    // reads have their own bucket: 2 of them, then 429
    assert_eq!(key_call(&k, &tok, "GET", id, "public-key", "").await.0, 200);
    assert_eq!(
        key_call(&k, &tok, "GET", id, "signing-algorithms", "")
            .await
            .0,
        200
    );
    let (s, v) = key_call(&k, &tok, "GET", id, "public-key", "").await;
    assert_error(s, &v, 429, "RateLimitExceeded");
    k.app.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_keys_are_404() {
    let k = start().await;
    let tok = token(&k).await;
    let (s, _, v) = call(
        "PUT",
        &format!("{}/api/v1/kms/keys", k.base),
        Some(&tok),
        "{}",
    )
    .await;
    assert_error(s, &v, 404, "Not Found");
    assert_eq!(v["message"], "Route PUT:/api/v1/kms/keys not found");
    let (s, _, v) = call(
        "GET",
        &format!(
            "{}/api/v1/kms/keys/0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b",
            k.base
        ),
        Some(&tok),
        "",
    )
    .await;
    assert_error(s, &v, 404, "NotFound");
    // the body is validated before the key is looked up, as in Infisical
    let (s, _, v) = call(
        "POST",
        &format!(
            "{}/api/v1/kms/keys/0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b/encrypt",
            k.base
        ),
        Some(&tok),
        "{}",
    )
    .await;
    assert_error(s, &v, 422, "ValidationFailure");
    // a name in another project is not found
    create_key(&k, &tok, "p1", "only-here").await;
    let (s, _, v) = call(
        "GET",
        &format!("{}/api/v1/kms/keys/key-name/only-here?projectId=p2", k.base),
        Some(&tok),
        "",
    )
    .await;
    assert_error(s, &v, 404, "NotFound");
    k.app.shutdown().await;
}

#[tokio::test]
async fn a_credential_limited_to_some_keys_sees_and_uses_only_those() {
    let k = start().await;
    let tok = token(&k).await;
    let a = create_key(&k, &tok, "p", "a").await;
    let b = create_key(&k, &tok, "p", "b").await;
    let limited = k
        .app
        .store
        .create_credential(Some(vec![a["id"].as_str().unwrap().to_string()]))
        .unwrap();
    let secret = String::from_utf8(limited.secret.expose().to_vec()).unwrap();
    let (_, v) = login(&k, &limited.id, &secret).await;
    let ltok = v["accessToken"].as_str().unwrap().to_string();

    let (s, _, v) = call(
        "GET",
        &format!("{}/api/v1/kms/keys?projectId=p", k.base),
        Some(&ltok),
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["totalCount"], 1, "{v}");
    assert_eq!(v["keys"][0]["name"], "a");
    let (s, _, v) = call(
        "POST",
        &format!(
            "{}/api/v1/kms/keys/{}/encrypt",
            k.base,
            b["id"].as_str().unwrap()
        ),
        Some(&ltok),
        r#"{"plaintext": "aGk="}"#,
    )
    .await;
    assert_error(s, &v, 403, "PermissionDenied");
    let (s, _, v) = call(
        "POST",
        &format!("{}/api/v1/kms/keys", k.base),
        Some(&ltok),
        r#"{"projectId": "p", "name": "c"}"#,
    )
    .await;
    assert_error(s, &v, 403, "PermissionDenied");
    k.app.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_per_identity_and_overridable() {
    let k = start_with(&[
        ("infisical_write_per_minute", 3),
        ("infisical_login_per_minute", 3),
    ])
    .await;
    let tok = token(&k).await; // login 1 of 3
    let key = create_key(&k, &tok, "p", "rl").await; // write 1 of 3
    let url = format!(
        "{}/api/v1/kms/keys/{}/encrypt",
        k.base,
        key["id"].as_str().unwrap()
    );
    for _ in 0..2 {
        assert_eq!(
            call("POST", &url, Some(&tok), r#"{"plaintext": ""}"#)
                .await
                .0,
            200
        );
    }
    let (s, h, v) = call("POST", &url, Some(&tok), r#"{"plaintext": ""}"#).await;
    assert_error(s, &v, 429, "RateLimitExceeded");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // reads have their own bucket
    let (s, _, _) = call(
        "GET",
        &format!("{}/api/v1/kms/keys?projectId=p", k.base),
        Some(&tok),
        "",
    )
    .await;
    assert_eq!(s, 200);
    // another identity is not affected
    let other = k.app.store.create_credential(None).unwrap();
    let secret = String::from_utf8(other.secret.expose().to_vec()).unwrap();
    let (_, v) = login(&k, &other.id, &secret).await; // login 2 of 3 (same IP)
    let otok = v["accessToken"].as_str().unwrap().to_string();
    assert_eq!(
        call("POST", &url, Some(&otok), r#"{"plaintext": ""}"#)
            .await
            .0,
        200
    );
    // logins are limited per client IP
    assert_eq!(login(&k, &k.id, &k.secret).await.0, 200); // 3 of 3
    let (s, v) = login(&k, &k.id, &k.secret).await;
    assert_error(s, &v, 429, "RateLimitExceeded");
    k.app.shutdown().await;
}

fn direct_request(method: &str, path: &str, token: Option<&str>, body: &str) -> KmsRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(t) = token {
        headers.insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    KmsRequest {
        method: method.parse().unwrap(),
        uri: path.parse().unwrap(),
        headers,
        body: bytes::Bytes::from(body.to_string()),
        peer: "127.0.0.1:5000".parse().unwrap(),
    }
}

async fn response_json(r: sealgate::kms::KmsReply) -> (u16, Value) {
    use http_body_util::BodyExt;
    let r = r.response;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let store = Arc::new(
        KeyStore::open(
            dir.path(),
            RootKeySource::Key(sealgate::secret::RootKey::from_bytes([7; 32])),
            StoreOptions {
                clock: clock.clone(),
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let cred = store.create_credential(None).unwrap();
    let settings = InfisicalSettings {
        token_ttl_secs: 600,
        ..InfisicalSettings::default()
    };
    let face = InfisicalFace::with_clock(store.clone(), settings, clock.clone());
    let login = json!({"clientId": cred.id, "clientSecret": String::from_utf8(cred.secret.expose().to_vec()).unwrap()});
    let (s, v) = response_json(face.handle(direct_request(
        "POST",
        "/api/v1/auth/universal-auth/login",
        None,
        &login.to_string(),
    )))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expiresIn"], 600);
    let tok = v["accessToken"].as_str().unwrap().to_string();
    let list = || direct_request("GET", "/api/v1/kms/keys?projectId=p", Some(&tok), "");
    clock.advance(Duration::from_secs(599));
    assert_eq!(response_json(face.handle(list())).await.0, 200);
    clock.advance(Duration::from_secs(1));
    let (s, v) = response_json(face.handle(list())).await;
    assert_error(s, &v, 403, "TokenError");
    assert_eq!(
        v["message"],
        "Your token has expired. Please re-authenticate."
    );
}

#[tokio::test]
async fn write_quota_is_per_real_minute_on_a_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        KeyStore::open(
            dir.path(),
            RootKeySource::Key(sealgate::secret::RootKey::from_bytes([7; 32])),
            StoreOptions::default(),
        )
        .unwrap(),
    );
    let cred = store.create_credential(None).unwrap();
    let settings = InfisicalSettings {
        write_per_minute: 3,
        ..InfisicalSettings::default()
    };
    let clock = Arc::new(ManualClock::default());
    let face = InfisicalFace::with_clock(store.clone(), settings, clock.clone());
    let login = json!({"clientId": cred.id, "clientSecret": String::from_utf8(cred.secret.expose().to_vec()).unwrap()});
    let (s, v) = response_json(face.handle(direct_request(
        "POST",
        "/api/v1/auth/universal-auth/login",
        None,
        &login.to_string(),
    )))
    .await;
    assert_eq!(s, 200, "{v}");
    let tok = v["accessToken"].as_str().unwrap().to_string();
    let mut n = 0;
    let mut create = || {
        n += 1;
        let body = json!({"name": format!("k{n}"), "projectId": "p"}).to_string();
        face.handle(direct_request(
            "POST",
            "/api/v1/kms/keys",
            Some(&tok),
            &body,
        ))
    };
    for _ in 0..3 {
        let (s, v) = response_json(create()).await;
        assert_eq!(s, 200, "{v}");
    }
    let r = create();
    assert!(r.outcome.limited && r.outcome.action == "CreateKey");
    let wait = r.response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_string();
    let (s, v) = response_json(r).await;
    assert_error(s, &v, 429, "RateLimitExceeded");
    assert_eq!(wait, "20", "one token per 20 s at 3 per minute");
    // 19 s later still refused; at 20 s one more passes, and only one.
    clock.advance(Duration::from_secs(19));
    assert_eq!(response_json(create()).await.0, 429);
    clock.advance(Duration::from_secs(1));
    assert_eq!(response_json(create()).await.0, 200);
    assert_eq!(response_json(create()).await.0, 429);
    // a full minute later, a full minute's worth
    clock.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        assert_eq!(response_json(create()).await.0, 200);
    }
    assert_eq!(response_json(create()).await.0, 429);
}

/// Runs `tests/sdk/<script>` against a fresh sealgate and asserts that each
/// of `want` appears as a step that went ok in its JSON-lines output. A
/// `.py` script runs in the SDK venv, a `.mjs` one under node with the
/// pinned Node SDKs (`--sdk-dir`).
async fn run_sdk_script(script: &str, want: &[String]) {
    let k = start().await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let mut cmd = if script.ends_with(".mjs") {
        let mut c = std::process::Command::new("node");
        c.arg(path).arg("--sdk-dir").arg(sdk_node_dir());
        c
    } else {
        let mut c = std::process::Command::new(sdk_python());
        c.arg(path);
        c
    };
    let (host, id, secret) = (k.base.clone(), k.id.clone(), k.secret.clone());
    let out = tokio::task::spawn_blocking(move || {
        cmd.args([
            "--host",
            &host,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
        ])
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for w in want {
        assert!(
            steps
                .iter()
                .any(|s| s["step"] == w.as_str() && s["ok"] == true),
            "step {w} missing:\n{stdout}"
        );
    }
    k.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_infisical_sdk_drives_the_key_life_cycle() {
    let want = [
        "login",
        "create_key",
        "encrypt",
        "decrypt",
        "get_key_by_id",
        "get_key_by_name",
        "list_paging",
        "list_search",
        "disable",
        "encrypt_refused_when_disabled",
        "asymmetric_algorithm_without_usage",
        "delete",
        "deleted_key_gone",
        "done",
    ]
    .map(String::from);
    run_sdk_script("infisical_flow.py", &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_infisical_sdk_signs_verifies_and_uses_aes_128_keys() {
    let mut want = vec![
        "login",
        "create_RSA_4096",
        "create_ECC_NIST_P256",
        "get_key_by_id_parses",
        "list_keys_parses",
        "signing_algorithms_RSA_4096",
        "signing_algorithms_ECC_NIST_P256",
        "public_key_RSA_4096",
        "public_key_ECC_NIST_P256",
        "sign_digest_RSASSA_PKCS1_V1_5_SHA_256",
        "sign_digest_ECDSA_SHA_256",
        "pss_digest_refused",
        "create_aes_128",
        "aes_128_round_trip",
        "sign_with_encrypt_key",
        "encrypt_with_sign_key",
        "done",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for alg in [
        "RSASSA_PSS_SHA_512",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_256",
        "ECDSA_SHA_256",
    ] {
        for step in ["sign", "independent_verify", "independent_rejects_tampered"] {
            want.push(format!("{step}_{alg}"));
        }
        want.push(format!("verify_{alg}_True"));
        want.push(format!("verify_{alg}_False"));
    }
    run_sdk_script("infisical_sign_flow.py", &want).await;
}

/// Infisical's official Node SDK sends the path's `keyId` in the body of
/// encrypt, decrypt, sign and verify: the face strips members it does not
/// know, as Infisical's zod schemas do, so every SDK call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_infisical_node_sdk_encrypts_decrypts_signs_and_verifies() {
    let mut want = vec![
        "login",
        "create_key",
        "encrypt",
        "decrypt",
        "get_key_by_name",
        "get_key_by_name_unknown",
        "encrypt_not_base64_422",
        "sign_is_digest_mistyped_422",
        "create_RSA_4096",
        "create_ECC_NIST_P256",
        "signing_algorithms_RSA_4096",
        "signing_algorithms_ECC_NIST_P256",
        "public_key_RSA_4096",
        "public_key_ECC_NIST_P256",
        "sign_digest_RSASSA_PKCS1_V1_5_SHA_256",
        "sign_digest_ECDSA_SHA_256",
        "sign_with_encrypt_key",
        "encrypt_with_sign_key",
        "delete",
        "deleted_key_gone",
        "deleted_key_no_decrypt",
        "wrong_secret",
        "bogus_token",
        "done",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for alg in [
        "RSASSA_PSS_SHA_512",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_256",
        "ECDSA_SHA_256",
    ] {
        for step in ["sign", "independent_verify", "independent_rejects_tampered"] {
            want.push(format!("{step}_{alg}"));
        }
        want.push(format!("verify_{alg}_true"));
        want.push(format!("verify_{alg}_false"));
    }
    run_sdk_script("infisical_flow.mjs", &want).await;
}

#[tokio::test]
async fn audit_lines_name_the_credential_action_key_and_code() {
    let f = start_audited_kms_fixture().await;
    let base = format!("http://{}", f.host());
    let login_body =
        |id: &str, secret: &str| json!({"clientId": id, "clientSecret": secret}).to_string();
    let login_url = format!("{base}/api/v1/auth/universal-auth/login");
    let (s, _, v) = call("POST", &login_url, None, &login_body(&f.id, &f.secret)).await;
    assert_eq!(s, 200, "{v}");
    let tok = v["accessToken"].as_str().unwrap().to_string();
    let keys = format!("{base}/api/v1/kms/keys");
    let body = json!({"projectId": "p", "name": "audited"}).to_string();
    let (s, _, v) = call("POST", &keys, Some(&tok), &body).await;
    assert_eq!(s, 200, "{v}");
    let key = v["key"]["id"].as_str().unwrap().to_string();
    let enc = json!({"plaintext": b64(b"audit me")}).to_string();
    let (s, _, v) = call("POST", &format!("{keys}/{key}/encrypt"), Some(&tok), &enc).await;
    assert_eq!(s, 200, "{v}");
    // a sign route on an encrypt-decrypt key: a 400 with Infisical's class
    let sign = json!({"data": b64(b"m"), "signingAlgorithm": "RSASSA_PSS_SHA_256"}).to_string();
    let (s, _, v) = call("POST", &format!("{keys}/{key}/sign"), Some(&tok), &sign).await;
    assert_error(s, &v, 400, "BadRequest");
    let (s, _, v) = call("POST", &login_url, None, &login_body(&f.id, "wrong")).await;
    assert_error(s, &v, 401, "UnauthorizedError");
    let id = f.id.clone();
    let records = f.kms_audit_records().await;
    let find = |action: &str, result: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["result"] == result)
            .unwrap_or_else(|| panic!("no {action} {result} in {records:#?}"))
    };
    assert_eq!(find("kms.infisical.Login", "ok")["caller"], id);
    let created = find("kms.infisical.CreateKey", "ok");
    assert_eq!(
        (&created["caller"], &created["key_id"]),
        (&json!(id), &json!(key))
    );
    let r = find("kms.infisical.EncryptData", "ok");
    assert_eq!((&r["caller"], &r["key_id"]), (&json!(id), &json!(key)));
    assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    // errors are recorded with Infisical's error class, not an HTTP status
    let r = find("kms.infisical.Sign", "BadRequest");
    assert_eq!((&r["caller"], &r["key_id"]), (&json!(id), &json!(key)));
    let r = find("kms.infisical.Login", "UnauthorizedError");
    assert!(
        r.get("caller").is_none(),
        "a refused login proves no one: {r}"
    );
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("http_") && !text.contains(&b64(b"audit me")));
}
