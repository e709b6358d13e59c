//! The Tencent Cloud KMS face end to end: sealgate started in-process with
//! its KMS listener on 127.0.0.1:0, requests signed with TC3 or v1 by
//! `kms::tencent::sign`'s client functions, the legacy `/v2/index.php` API,
//! a real-socket quota burst, and the official Python SDK
//! (`tests/sdk/tencent_flow.py`, installed pinned by `tests/sdk/setup.sh`).

mod common;

use std::path::PathBuf;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::*;
use sealgate::kms::tencent::sign::{self, RequestParts, SignatureScheme};
use serde_json::{json, Value};

type Kms = KmsFixture;

async fn start_kms(quotas: &[(&str, u32)]) -> Kms {
    start_kms_fixture(quotas).await
}

fn now() -> i64 {
    sealgate::clock::unix_now() as i64
}

/// What came back: the parsed body, after checking status and content type.
fn checked(status: u16, headers: &http::HeaderMap, body: &str) -> Value {
    assert_eq!(status, 200, "Tencent answers 200 always: {body}");
    assert_eq!(
        headers.get("content-type").unwrap().to_str().unwrap(),
        "application/json",
        "content type must be exactly application/json"
    );
    serde_json::from_str(body).unwrap()
}

/// The latest timestamp at or before `latest` that `id` has not yet signed
/// `body` with. sealgate accepts a signature once, and TC3 signs only the
/// body, Host, Content-Type and the second — not the action — so two calls
/// with one body in one second (DescribeKey then DisableKey of a key) would
/// collide. A real client waits for the next second (the SDK flow scripts
/// do); these helpers step back within the ±300 s window instead.
fn unused_timestamp(id: &str, body: &str, latest: i64) -> i64 {
    static USED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashSet<(String, String, i64)>>,
    > = std::sync::OnceLock::new();
    let mut used = USED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut ts = latest;
    while !used.insert((id.to_string(), body.to_string(), ts)) {
        ts -= 1;
    }
    ts
}

/// A TC3-signed API 3.0 call with full control over the signing inputs
/// (`timestamp` is the latest to use: see [`unused_timestamp`]).
#[allow(clippy::too_many_arguments)]
async fn tc3_raw(
    host: &str,
    id: &str,
    secret: &str,
    action: &str,
    version: &str,
    timestamp: i64,
    body: &str,
    authorization: Option<&str>,
) -> Value {
    let timestamp = unused_timestamp(id, body, timestamp);
    let ts = timestamp.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("host", host),
        ("x-tc-action", action),
        ("x-tc-version", version),
        ("x-tc-region", "ap-guangzhou"),
        ("x-tc-timestamp", ts.as_str()),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let auth = match authorization {
        Some(a) => a.to_string(),
        None => sign::tc3_authorization(
            id,
            secret.as_bytes(),
            "kms",
            timestamp,
            &parts,
            &["content-type", "host"],
        )
        .unwrap(),
    };
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("authorization", &auth));
    let (status, h, b) = send("POST", &format!("http://{host}/"), &all, body).await;
    checked(status, &h, &b)
}

async fn call_as(k: &Kms, id: &str, secret: &str, action: &str, params: Value) -> Value {
    tc3_raw(
        &k.host(),
        id,
        secret,
        action,
        "2019-01-18",
        now(),
        &params.to_string(),
        None,
    )
    .await
}

async fn call(k: &Kms, action: &str, params: Value) -> Value {
    call_as(k, &k.id, &k.secret, action, params).await
}

/// The `Response` of a successful call (panics with the error otherwise).
async fn ok(k: &Kms, action: &str, params: Value) -> Value {
    let v = call(k, action, params).await;
    let r = v["Response"].clone();
    assert!(r.get("Error").is_none(), "{action} failed: {r}");
    let rid = r["RequestId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(rid).is_ok(), "RequestId {rid:?}");
    r
}

fn code(v: &Value) -> String {
    let r = &v["Response"];
    assert!(
        uuid::Uuid::parse_str(r["RequestId"].as_str().unwrap_or("")).is_ok(),
        "error without RequestId: {v}"
    );
    r["Error"]["Code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
        .to_string()
}

async fn err(k: &Kms, action: &str, params: Value) -> String {
    code(&call(k, action, params).await)
}

async fn create_key(k: &Kms, alias: &str) -> String {
    let r = ok(k, "CreateKey", json!({"Alias": alias})).await;
    r["KeyId"].as_str().unwrap().to_string()
}

fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

#[tokio::test]
async fn authentication_errors_are_tencents() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "auth-a").await;
    let other = create_key(&k, "auth-b").await;
    let body = json!({"KeyId": key, "Plaintext": "aGVsbG8="}).to_string();
    let host = k.host();
    let v = |id: &str, secret: &str, ts: i64| {
        let (host, body) = (host.clone(), body.clone());
        let (id, secret) = (id.to_string(), secret.to_string());
        async move {
            tc3_raw(
                &host,
                &id,
                &secret,
                "Encrypt",
                "2019-01-18",
                ts,
                &body,
                None,
            )
            .await
        }
    };

    let good = v(&k.id, &k.secret, now()).await;
    assert!(good["Response"]["CiphertextBlob"].is_string(), "{good}");
    let wrong_secret = format!("{}x", k.secret);
    assert_eq!(
        code(&v(&k.id, &wrong_secret, now()).await),
        "AuthFailure.SignatureFailure"
    );
    assert_eq!(
        code(&v(&k.id, &k.secret, now() - 600).await),
        "AuthFailure.SignatureExpire"
    );
    assert_eq!(
        code(&v(&k.id, &k.secret, now() + 600).await),
        "AuthFailure.SignatureExpire"
    );
    // An unknown SecretId is not told apart from a wrong secret (no id
    // enumeration): see unknown_revoked_and_wrong_secret_look_the_same.
    assert_eq!(
        code(&v("AKIDnobodyhasthisid", &k.secret, now()).await),
        "AuthFailure.SignatureFailure"
    );
    let garbage = tc3_raw(
        &host,
        &k.id,
        &k.secret,
        "Encrypt",
        "2019-01-18",
        now(),
        &body,
        Some("TC3-HMAC-SHA256 this is not it"),
    )
    .await;
    assert_eq!(code(&garbage), "AuthFailure.InvalidAuthorization");

    // A body changed after signing does not verify.
    let signed = tc3_signed_headers(&k, "Encrypt", now(), &body);
    let tampered = body.replace("aGVsbG8=", "aGVsbG9=");
    assert_eq!(
        code(&send_headers(&k, &signed, &tampered).await),
        "AuthFailure.SignatureFailure"
    );

    // A credential limited to one key: that key works, others do not.
    let (lid, lsecret) = k.credential(Some(vec![key.clone()]));
    let mine = call_as(
        &k,
        &lid,
        &lsecret,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "AA=="}),
    )
    .await;
    let blob = mine["Response"]["CiphertextBlob"]
        .as_str()
        .unwrap_or_else(|| panic!("{mine}"))
        .to_string();
    for (action, params) in [
        ("Encrypt", json!({"KeyId": other, "Plaintext": "AA=="})),
        ("DescribeKey", json!({"KeyId": other})),
        ("DisableKey", json!({"KeyId": other})),
        ("CreateKey", json!({"Alias": "limited-made"})),
    ] {
        let v = call_as(&k, &lid, &lsecret, action, params).await;
        assert_eq!(code(&v), "AuthFailure.UnauthorizedOperation", "{action}");
    }
    // ... including a ciphertext made under another key by someone else.
    let theirs = ok(&k, "Encrypt", json!({"KeyId": other, "Plaintext": "AA=="})).await;
    let v = call_as(
        &k,
        &lid,
        &lsecret,
        "Decrypt",
        json!({"CiphertextBlob": theirs["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(code(&v), "AuthFailure.UnauthorizedOperation");
    let v = call_as(
        &k,
        &lid,
        &lsecret,
        "Decrypt",
        json!({"CiphertextBlob": blob}),
    )
    .await;
    assert_eq!(v["Response"]["Plaintext"], "AA==", "{v}");
    // ListKeys shows a limited credential only its keys.
    let v = call_as(&k, &lid, &lsecret, "ListKeys", json!({})).await;
    assert_eq!(v["Response"]["TotalCount"], 1, "{v}");
    assert_eq!(v["Response"]["Keys"][0]["KeyId"], key.as_str());

    // A revoked credential authenticates nothing.
    k.app.store.revoke_credential(&lid).unwrap();
    let v = call_as(&k, &lid, &lsecret, "ListKeys", json!({})).await;
    assert_eq!(code(&v), "AuthFailure.SignatureFailure");
}

/// The `Response.Error` of a call, without its RequestId.
fn error_of(v: &Value) -> Value {
    code(v);
    v["Response"]["Error"].clone()
}

#[tokio::test]
async fn unknown_revoked_and_wrong_secret_look_the_same() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "enum-a").await;
    let (rid, rsecret) = k.credential(None);
    let params = || json!({"KeyId": key, "Plaintext": "aGVsbG8="});
    // The revoked credential worked before it was revoked.
    let before = call_as(&k, &rid, &rsecret, "Encrypt", params()).await;
    assert!(before["Response"]["CiphertextBlob"].is_string(), "{before}");
    k.app.store.revoke_credential(&rid).unwrap();

    let wrong = call_as(&k, &k.id, &format!("{}x", k.secret), "Encrypt", params()).await;
    let unknown = call_as(
        &k,
        "AKIDnobodyhasthisid0000000000000000",
        &k.secret,
        "Encrypt",
        params(),
    )
    .await;
    let revoked = call_as(&k, &rid, &rsecret, "Encrypt", params()).await;
    let wrong = error_of(&wrong);
    assert_eq!(wrong["Code"], "AuthFailure.SignatureFailure", "{wrong}");
    assert_eq!(
        error_of(&unknown),
        wrong,
        "unknown SecretId vs wrong secret"
    );
    assert_eq!(
        error_of(&revoked),
        wrong,
        "revoked SecretId vs wrong secret"
    );

    // The same through signature v1 (the other way in).
    let v1 = |id: &str, secret: &str| {
        let (id, secret) = (id.to_string(), secret.to_string());
        let host = k.host();
        async move {
            let ts = now().to_string();
            let nonce = rand::random::<u32>().to_string();
            let mut all: Vec<(&str, &str)> = vec![
                ("SecretId", &id),
                ("Timestamp", &ts),
                ("Nonce", &nonce),
                ("SignatureMethod", "HmacSHA256"),
                ("Action", "ListKeys"),
                ("Version", "2019-01-18"),
            ];
            let sig = sign::sign_v1(
                secret.as_bytes(),
                SignatureScheme::V1HmacSha256,
                "GET",
                &host,
                "/",
                &all,
            );
            all.push(("Signature", &sig));
            let query = sign::form_encode(&all);
            let url = format!("http://{host}/?{query}");
            let (s, h, b) = send("GET", &url, &[("host", host.as_str())], "").await;
            error_of(&checked(s, &h, &b))
        }
    };
    let wrong = v1(&k.id, "not-the-secret").await;
    assert_eq!(wrong["Code"], "AuthFailure.SignatureFailure", "{wrong}");
    assert_eq!(
        v1("AKIDnobodyhasthisid0000000000000000", &k.secret).await,
        wrong
    );
    assert_eq!(v1(&rid, &rsecret).await, wrong);
}

#[tokio::test]
async fn actions_and_parameters_are_checked() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "params").await;
    assert_eq!(err(&k, "NoSuchAction", json!({})).await, "InvalidAction");
    let v = tc3_raw(
        &k.host(),
        &k.id,
        &k.secret,
        "Encrypt",
        "2017-03-12",
        now(),
        "{}",
        None,
    )
    .await;
    assert_eq!(code(&v), "NoSuchVersion");
    assert_eq!(
        err(&k, "Encrypt", json!({"KeyId": key})).await,
        "MissingParameter"
    );
    assert_eq!(
        err(&k, "Encrypt", json!({"Plaintext": "AA=="})).await,
        "MissingParameter"
    );
    let big = b64(&vec![1u8; 4097]);
    assert_eq!(
        err(&k, "Encrypt", json!({"KeyId": key, "Plaintext": big})).await,
        "InvalidParameterValue.InvalidPlaintext"
    );
    let most = b64(&vec![1u8; 4096]);
    ok(&k, "Encrypt", json!({"KeyId": key, "Plaintext": most})).await;
    assert_eq!(
        err(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "%%%"})).await,
        "InvalidParameterValue.InvalidPlaintext"
    );
    let ctx = format!(r#"{{"a":"{}"}}"#, "x".repeat(1020));
    assert_eq!(
        err(
            &k,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "AA==", "EncryptionContext": ctx})
        )
        .await,
        "InvalidParameter"
    );
    assert_eq!(
        err(
            &k,
            "Decrypt",
            json!({"CiphertextBlob": "not base64 at all!"})
        )
        .await,
        "InvalidParameterValue.InvalidCiphertext"
    );
    assert_eq!(
        err(&k, "Decrypt", json!({"CiphertextBlob": b64(b"short")})).await,
        "InvalidParameterValue.InvalidCiphertext"
    );
    for n in [0, 1025] {
        assert_eq!(
            err(
                &k,
                "GenerateDataKey",
                json!({"KeyId": key, "NumberOfBytes": n})
            )
            .await,
            "InvalidParameter"
        );
        assert_eq!(
            err(&k, "GenerateRandom", json!({"NumberOfBytes": n})).await,
            "InvalidParameter"
        );
    }
    assert_eq!(
        err(
            &k,
            "ScheduleKeyDeletion",
            json!({"KeyId": key, "PendingWindowInDays": 6})
        )
        .await,
        "InvalidParameter.InvalidPendingWindowInDays"
    );
    assert_eq!(
        err(&k, "DescribeKeys", json!({"KeyIds": [key, key]})).await,
        "InvalidParameterValue.DuplicatedKeyId"
    );
    assert_eq!(
        err(&k, "DescribeKey", json!({"KeyId": "not a key id!"})).await,
        "InvalidParameterValue.InvalidKeyId"
    );
    let missing = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        err(&k, "DescribeKey", json!({"KeyId": missing})).await,
        "ResourceUnavailable.CmkNotFound"
    );
    // A non-JSON body.
    let v = tc3_raw(
        &k.host(),
        &k.id,
        &k.secret,
        "ListKeys",
        "2019-01-18",
        now(),
        "KeyId=1",
        None,
    )
    .await;
    assert_eq!(code(&v), "InvalidParameter");
    // Generated sizes.
    let r = ok(&k, "GenerateRandom", json!({"NumberOfBytes": 17})).await;
    assert_eq!(
        B64.decode(r["Plaintext"].as_str().unwrap()).unwrap().len(),
        17
    );
    let r = ok(
        &k,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_128", "NumberOfBytes": 48}),
    )
    .await;
    assert_eq!(
        B64.decode(r["Plaintext"].as_str().unwrap()).unwrap().len(),
        48,
        "NumberOfBytes wins over KeySpec"
    );
    let r = ok(
        &k,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_128"}),
    )
    .await;
    assert_eq!(
        B64.decode(r["Plaintext"].as_str().unwrap()).unwrap().len(),
        16
    );
}

#[tokio::test]
async fn key_life_cycle_and_cryptography() {
    let k = start_kms(&[]).await;
    let r = ok(
        &k,
        "CreateKey",
        json!({"Alias": "life", "Description": "d1", "Tags": [{"TagKey": "team", "TagValue": "a"}]}),
    )
    .await;
    assert_eq!(r["KeyState"], "Enabled");
    assert_eq!(r["KeyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(r["Alias"], "life");
    let key = r["KeyId"].as_str().unwrap().to_string();
    assert_eq!(
        err(&k, "CreateKey", json!({"Alias": "life"})).await,
        "InvalidParameterValue.AliasAlreadyExists"
    );
    assert_eq!(
        err(&k, "CreateKey", json!({"Alias": "kms-reserved"})).await,
        "InvalidParameterValue.InvalidAlias"
    );
    assert_eq!(
        err(
            &k,
            "CreateKey",
            json!({"Alias": "sm2", "KeyUsage": "ASYMMETRIC_DECRYPT_SM2"})
        )
        .await,
        "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion"
    );
    assert_eq!(
        err(
            &k,
            "CreateKey",
            json!({"Alias": "rsa-ext", "KeyUsage": "ASYMMETRIC_DECRYPT_RSA_2048", "Type": 2})
        )
        .await,
        "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion"
    );
    assert_eq!(
        err(
            &k,
            "CreateKey",
            json!({"Alias": "t", "Tags": [{"TagKey": "x"}, {"TagKey": "x"}]})
        )
        .await,
        "InvalidParameterValue.TagKeysDuplicated"
    );

    // Encrypt / Decrypt with a context, whose key order does not matter.
    let msg = b"field value \x00\xff";
    let r = ok(
        &k,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(msg), "EncryptionContext": r#"{"a":1,"b":"x"}"#}),
    )
    .await;
    assert_eq!(r["KeyId"], key.as_str());
    let blob = r["CiphertextBlob"].as_str().unwrap().to_string();
    let r = ok(
        &k,
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": r#"{ "b": "x", "a": 1 }"#}),
    )
    .await;
    assert_eq!(B64.decode(r["Plaintext"].as_str().unwrap()).unwrap(), msg);
    assert_eq!(r["KeyId"], key.as_str());
    assert_eq!(
        err(&k, "Decrypt", json!({"CiphertextBlob": blob})).await,
        "InvalidParameterValue.InvalidCiphertext"
    );
    // Alias works where a KeyId does.
    ok(&k, "Encrypt", json!({"KeyId": "life", "Plaintext": "AA=="})).await;

    // ReEncrypt onto another key.
    let other = create_key(&k, "life-other").await;
    let r = ok(
        &k,
        "ReEncrypt",
        json!({"CiphertextBlob": blob, "SourceEncryptionContext": r#"{"a":1,"b":"x"}"#, "DestinationKeyId": other}),
    )
    .await;
    assert_eq!(r["SourceKeyId"], key.as_str());
    assert_eq!(r["KeyId"], other.as_str());
    assert_eq!(r["ReEncrypted"], true);
    let r = ok(
        &k,
        "Decrypt",
        json!({"CiphertextBlob": r["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(B64.decode(r["Plaintext"].as_str().unwrap()).unwrap(), msg);

    // Describe, list, update.
    ok(
        &k,
        "UpdateKeyDescription",
        json!({"KeyId": key, "Description": "d2"}),
    )
    .await;
    ok(&k, "UpdateAlias", json!({"KeyId": key, "Alias": "life2"})).await;
    assert_eq!(
        err(
            &k,
            "UpdateAlias",
            json!({"KeyId": key, "Alias": "life-other"})
        )
        .await,
        "InvalidParameterValue.AliasAlreadyExists"
    );
    let r = ok(&k, "DescribeKey", json!({"KeyId": key})).await;
    let m = &r["KeyMetadata"];
    assert_eq!(
        (
            m["Alias"].as_str(),
            m["Description"].as_str(),
            m["Origin"].as_str(),
            m["Type"].as_i64()
        ),
        (Some("life2"), Some("d2"), Some("TENCENT_KMS"), Some(1))
    );
    let r = ok(&k, "DescribeKeys", json!({"KeyIds": [key, other]})).await;
    assert_eq!(r["KeyMetadatas"].as_array().unwrap().len(), 2);
    let r = ok(&k, "ListKeys", json!({"Limit": 1})).await;
    assert_eq!(r["TotalCount"], 2);
    assert_eq!(r["Keys"].as_array().unwrap().len(), 1);
    let r = ok(
        &k,
        "ListKeyDetail",
        json!({"SearchKeyAlias": "life2", "TagFilters": [{"TagKey": "team", "TagValue": ["a"]}]}),
    )
    .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    assert_eq!(r["KeyMetadatas"][0]["KeyId"], key.as_str());

    // Rotation: status, RotateKey, old ciphertexts still open.
    ok(
        &k,
        "EnableKeyRotation",
        json!({"KeyId": key, "RotateDays": 30}),
    )
    .await;
    let r = ok(&k, "GetKeyRotationStatus", json!({"KeyId": key})).await;
    assert_eq!(r["KeyRotationEnabled"], true);
    let r = ok(&k, "RotateKey", json!({"KeyId": key})).await;
    assert!(r["TaskId"].is_string());
    let r = ok(
        &k,
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": r#"{"a":1,"b":"x"}"#}),
    )
    .await;
    assert_eq!(B64.decode(r["Plaintext"].as_str().unwrap()).unwrap(), msg);
    ok(&k, "DisableKeyRotation", json!({"KeyId": key})).await;
    let r = ok(&k, "GetKeyRotationStatus", json!({"KeyId": key})).await;
    assert_eq!(r["KeyRotationEnabled"], false);

    // Disable / enable / deletion.
    assert_eq!(
        err(
            &k,
            "ScheduleKeyDeletion",
            json!({"KeyId": key, "PendingWindowInDays": 7})
        )
        .await,
        "ResourceUnavailable.CmkShouldBeDisabled"
    );
    ok(&k, "DisableKeys", json!({"KeyIds": [key, other]})).await;
    assert_eq!(
        err(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "AA=="})).await,
        "ResourceUnavailable.CmkDisabled"
    );
    assert_eq!(
        err(
            &k,
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": r#"{"a":1,"b":"x"}"#})
        )
        .await,
        "ResourceUnavailable.CmkDisabled"
    );
    assert_eq!(
        err(&k, "CancelKeyDeletion", json!({"KeyId": key})).await,
        "ResourceUnavailable.CmkNotPendingDelete"
    );
    let r = ok(
        &k,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await;
    let in_a_week = now() + 7 * 86_400;
    let d = r["DeletionDate"].as_i64().unwrap();
    assert!((in_a_week - 60..=in_a_week + 60).contains(&d), "{r}");
    let r = ok(&k, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(r["KeyMetadata"]["KeyState"], "PendingDelete");
    assert_eq!(
        err(&k, "EnableKey", json!({"KeyId": key})).await,
        "ResourceUnavailable.CmkStateNotSupport"
    );
    assert_eq!(
        err(&k, "EnableKeys", json!({"KeyIds": [other, key]})).await,
        "ResourceUnavailable.CmkStateNotSupport"
    );
    let r = ok(&k, "DescribeKey", json!({"KeyId": other})).await;
    assert_eq!(
        r["KeyMetadata"]["KeyState"], "Disabled",
        "a refused batch changes nothing"
    );
    let r = ok(&k, "CancelKeyDeletion", json!({"KeyId": key})).await;
    assert_eq!(r["KeyId"], key.as_str());
    ok(&k, "EnableKeys", json!({"KeyIds": [key, other]})).await;
    ok(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "AA=="})).await;

    // Asymmetric actions on a symmetric key; service facts.
    assert_eq!(
        err(&k, "GetPublicKey", json!({"KeyId": key})).await,
        "InvalidParameterValue.InvalidKeyUsage"
    );
    assert_eq!(
        err(
            &k,
            "AsymmetricRsaDecrypt",
            json!({"KeyId": key, "Ciphertext": "AA==", "Algorithm": "RSAES_OAEP_SHA_256"})
        )
        .await,
        "InvalidParameterValue.InvalidKeyUsage"
    );
    let r = ok(&k, "ListAlgorithms", json!({})).await;
    assert_eq!(
        r["SymmetricAlgorithms"][0],
        json!({"KeyUsage": "ENCRYPT_DECRYPT", "Algorithm": "AES_256"})
    );
    let r = ok(&k, "GetServiceStatus", json!({})).await;
    assert_eq!(r["ServiceEnabled"], true);
}

#[tokio::test]
async fn asymmetric_keys_sign_verify_and_decrypt() {
    use aws_lc_rs::signature::{self, UnparsedPublicKey};
    let k = start_kms(&[]).await;
    let create = |alias: &'static str, usage: &'static str| {
        let k = &k;
        async move {
            let r = ok(k, "CreateKey", json!({"Alias": alias, "KeyUsage": usage})).await;
            assert_eq!(r["KeyUsage"], usage);
            r["KeyId"].as_str().unwrap().to_string()
        }
    };
    let public_key = |key: String| {
        let k = &k;
        async move {
            let r = ok(k, "GetPublicKey", json!({"KeyId": key})).await;
            assert_eq!(r["KeyId"], key.as_str());
            let der = B64.decode(r["PublicKey"].as_str().unwrap()).unwrap();
            let pem = r["PublicKeyPem"].as_str().unwrap();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert_eq!(B64.decode(body).unwrap(), der, "PEM and DER differ");
            der
        }
    };
    let msg = b"pay 10 to bob";
    let ecc = create("ecc", "ASYMMETRIC_SIGN_VERIFY_ECC").await;
    let p384 = create("p384", "ASYMMETRIC_SIGN_VERIFY_ECDSA384").await;
    let rsa = create("rsa-sign", "ASYMMETRIC_SIGN_VERIFY_RSA_2048").await;
    let dec = create("rsa-dec", "ASYMMETRIC_DECRYPT_RSA_2048").await;
    let sym = create_key(&k, "sym").await;

    // signatures verify with aws-lc-rs directly against the published key
    for (key, alg, verifier, digest) in [
        (
            &ecc,
            "ECC_P256_R1",
            &signature::ECDSA_P256_SHA256_ASN1 as &dyn signature::VerificationAlgorithm,
            &aws_lc_rs::digest::SHA256,
        ),
        (
            &p384,
            "ECC_P384_R1",
            &signature::ECDSA_P384_SHA384_ASN1,
            &aws_lc_rs::digest::SHA384,
        ),
        (
            &rsa,
            "RSA_PSS_SHA_256",
            &signature::RSA_PSS_2048_8192_SHA256,
            &aws_lc_rs::digest::SHA256,
        ),
        (
            &rsa,
            "RSA_PKCS1_SHA_256",
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &aws_lc_rs::digest::SHA256,
        ),
    ] {
        let der = public_key(key.clone()).await;
        let r = ok(
            &k,
            "SignByAsymmetricKey",
            json!({"KeyId": key, "Algorithm": alg, "Message": b64(msg)}),
        )
        .await;
        let sig = B64.decode(r["Signature"].as_str().unwrap()).unwrap();
        let public = UnparsedPublicKey::new(verifier, &der);
        assert!(public.verify(msg, &sig).is_ok(), "{alg}");
        assert!(public.verify(b"pay 99 to bob", &sig).is_err(), "{alg}");
        let d = aws_lc_rs::digest::digest(digest, msg);
        let r = ok(
            &k,
            "SignByAsymmetricKey",
            json!({"KeyId": key, "Algorithm": alg, "Message": b64(d.as_ref()), "MessageType": "DIGEST"}),
        )
        .await;
        let sig2 = B64.decode(r["Signature"].as_str().unwrap()).unwrap();
        assert!(public.verify(msg, &sig2).is_ok(), "{alg} DIGEST");
        for (m, valid) in [(&msg[..], true), (b"pay 99 to bob", false)] {
            let r = ok(
                &k,
                "VerifyByAsymmetricKey",
                json!({"KeyId": key, "Algorithm": alg, "Message": b64(m), "SignatureValue": b64(&sig)}),
            )
            .await;
            assert_eq!(r["SignatureValid"], valid, "{alg}");
        }
    }
    // wrong algorithm for the key, wrong digest length, wrong usage
    assert_eq!(
        err(
            &k,
            "SignByAsymmetricKey",
            json!({"KeyId": ecc, "Algorithm": "RSA_PSS_SHA_256", "Message": b64(msg)})
        )
        .await,
        "InvalidParameter"
    );
    assert_eq!(
        err(&k, "SignByAsymmetricKey", json!({"KeyId": ecc, "Algorithm": "ECC_P256_R1", "Message": b64(&[0; 48]), "MessageType": "DIGEST"})).await,
        "InvalidParameter"
    );
    assert_eq!(
        err(&k, "SignByAsymmetricKey", json!({"KeyId": ecc, "Algorithm": "ECC_P256_R1", "Message": b64(&[0; 31]), "MessageType": "DIGEST"})).await,
        "InvalidParameter"
    );
    for key in [&dec, &sym] {
        assert_eq!(
            err(
                &k,
                "SignByAsymmetricKey",
                json!({"KeyId": key, "Algorithm": "RSA_PSS_SHA_256", "Message": b64(msg)})
            )
            .await,
            "InvalidParameterValue.InvalidKeyUsage"
        );
    }
    assert_eq!(
        err(
            &k,
            "AsymmetricRsaDecrypt",
            json!({"KeyId": rsa, "Ciphertext": b64(&[1; 256]), "Algorithm": "RSAES_OAEP_SHA_256"})
        )
        .await,
        "InvalidParameterValue.InvalidKeyUsage",
        "a signing key does not decrypt"
    );
    assert_eq!(
        err(&k, "Encrypt", json!({"KeyId": ecc, "Plaintext": "AA=="})).await,
        "InvalidParameterValue.InvalidKeyUsage"
    );
    assert_eq!(
        err(
            &k,
            "AsymmetricSm2Decrypt",
            json!({"KeyId": ecc, "Ciphertext": "AA=="})
        )
        .await,
        "InvalidParameterValue.InvalidKeyUsage"
    );
    assert_eq!(
        err(&k, "EnableKeyRotation", json!({"KeyId": ecc})).await,
        "UnsupportedOperation.RotateNotSupported"
    );

    // RSA decryption: each padding, then garbage
    let der = public_key(dec.clone()).await;
    let public = PublicEncryptingKey::from_der(&der).unwrap();
    let mut ct = vec![0u8; 256];
    let n = OaepPublicEncryptingKey::new(public)
        .unwrap()
        .encrypt(&OAEP_SHA256_MGF1SHA256, b"top secret", &mut ct, None)
        .unwrap()
        .len();
    let r = ok(
        &k,
        "AsymmetricRsaDecrypt",
        json!({"KeyId": dec, "Ciphertext": b64(&ct[..n]), "Algorithm": "RSAES_OAEP_SHA_256"}),
    )
    .await;
    assert_eq!(
        B64.decode(r["Plaintext"].as_str().unwrap()).unwrap(),
        b"top secret"
    );
    assert_eq!(r["KeyId"], dec.as_str());
    assert_eq!(
        err(
            &k,
            "AsymmetricRsaDecrypt",
            json!({"KeyId": dec, "Ciphertext": b64(&ct[..n]), "Algorithm": "RSAES_OAEP_SHA_1"})
        )
        .await,
        "FailedOperation.DecryptError",
        "the other OAEP hash does not decrypt"
    );
    assert_eq!(
        err(
            &k,
            "AsymmetricRsaDecrypt",
            json!({"KeyId": dec, "Ciphertext": b64(b"junk"), "Algorithm": "RSAES_PKCS1_V1_5"})
        )
        .await,
        "FailedOperation.DecryptError"
    );

    // a disabled key neither signs nor hands out its public key
    ok(&k, "DisableKey", json!({"KeyId": ecc})).await;
    assert_eq!(
        err(
            &k,
            "SignByAsymmetricKey",
            json!({"KeyId": ecc, "Algorithm": "ECC_P256_R1", "Message": b64(msg)})
        )
        .await,
        "ResourceUnavailable.CmkDisabled"
    );
    assert_eq!(
        err(&k, "GetPublicKey", json!({"KeyId": ecc})).await,
        "ResourceUnavailable.CmkDisabled"
    );

    // ListAlgorithms names what is served, and no SM2
    let r = ok(&k, "ListAlgorithms", json!({})).await;
    let signing = r["AsymmetricSignVerifyAlgorithms"].as_array().unwrap();
    for (usage, alg) in [
        ("ASYMMETRIC_SIGN_VERIFY_ECC", "ECC_P256_R1"),
        ("ASYMMETRIC_SIGN_VERIFY_ECDSA384", "ECC_P384_R1"),
        ("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PSS_SHA_256"),
        ("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PKCS1_SHA_256"),
    ] {
        assert!(
            signing.contains(&json!({"KeyUsage": usage, "Algorithm": alg})),
            "{usage} {alg} missing from {r}"
        );
    }
    assert!(!r.to_string().contains("SM2"), "{r}");
    assert_eq!(
        r["AsymmetricAlgorithms"][0]["KeyUsage"],
        "ASYMMETRIC_DECRYPT_RSA_2048"
    );
}

#[tokio::test]
async fn external_keys_import_material_wrapped_with_rsa() {
    let k = start_kms(&[]).await;
    let normal = create_key(&k, "not-external").await;
    let r = ok(&k, "CreateKey", json!({"Alias": "ext", "Type": 2})).await;
    assert_eq!(r["KeyState"], "PendingImport");
    let key = r["KeyId"].as_str().unwrap().to_string();
    assert_eq!(
        err(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "AA=="})).await,
        "ResourceUnavailable.CmkStateNotSupport"
    );
    let gp = |id: &str| json!({"KeyId": id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"});
    assert_eq!(
        err(&k, "GetParametersForImport", gp(&normal)).await,
        "UnsupportedOperation.NotExternalCmk"
    );
    let p = ok(&k, "GetParametersForImport", gp(&key)).await;
    let valid_to = p["ParametersValidTo"].as_i64().unwrap();
    assert!((now() + 86_300..=now() + 86_500).contains(&valid_to), "{p}");
    let token = p["ImportToken"].as_str().unwrap().to_string();
    let der = B64.decode(p["PublicKey"].as_str().unwrap()).unwrap();
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).unwrap()).unwrap();
    let wrap = |material: &[u8]| {
        let mut out = vec![0u8; public.ciphertext_size()];
        let n = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
            .unwrap()
            .len();
        b64(&out[..n])
    };
    let material = [0x5au8; 32];
    let import = |token: &str, wrapped: String| json!({"KeyId": key, "EncryptedKeyMaterial": wrapped, "ImportToken": token});
    assert_eq!(
        err(
            &k,
            "ImportKeyMaterial",
            import("wrong-token", wrap(&material))
        )
        .await,
        "InvalidParameter"
    );
    assert_eq!(
        err(&k, "ImportKeyMaterial", import(&token, wrap(&[1u8; 16]))).await,
        "InvalidParameter.DecryptMaterialError"
    );
    assert_eq!(
        err(&k, "ImportKeyMaterial", import(&token, b64(&[7u8; 256]))).await,
        "InvalidParameter.DecryptMaterialError"
    );
    ok(&k, "ImportKeyMaterial", import(&token, wrap(&material))).await;
    let r = ok(&k, "DescribeKey", json!({"KeyId": key})).await;
    let m = &r["KeyMetadata"];
    assert_eq!(
        (
            m["KeyState"].as_str(),
            m["Origin"].as_str(),
            m["Type"].as_i64()
        ),
        (Some("Enabled"), Some("EXTERNAL"), Some(2))
    );
    let r = ok(
        &k,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "c2VhbA=="}),
    )
    .await;
    let r = ok(
        &k,
        "Decrypt",
        json!({"CiphertextBlob": r["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(r["Plaintext"], "c2VhbA==");
    assert_eq!(
        err(&k, "ImportKeyMaterial", import(&token, wrap(&material))).await,
        "ResourceUnavailable.CmkStateNotSupport"
    );
    assert_eq!(
        err(&k, "EnableKeyRotation", json!({"KeyId": key})).await,
        "UnsupportedOperation.ExternalCmkCanNotRotate"
    );
    assert_eq!(
        err(&k, "RotateKey", json!({"KeyId": key})).await,
        "UnsupportedOperation.ExternalCmkCanNotRotate"
    );
}

#[tokio::test]
async fn data_key_can_come_back_under_the_callers_public_key() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "wrapped").await;
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let der = private.public_key().as_der().unwrap();
    let body = B64.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let r = ok(
        &k,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionPublicKey": pem, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    )
    .await;
    let wrapped = B64.decode(r["Plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(wrapped.len(), 256, "RSA-2048 ciphertext");
    let dec = OaepPrivateDecryptingKey::new(private).unwrap();
    let mut out = vec![0u8; dec.min_output_size()];
    let dk = dec
        .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut out, None)
        .unwrap()
        .to_vec();
    assert_eq!(dk.len(), 32);
    let plain = ok(
        &k,
        "Decrypt",
        json!({"CiphertextBlob": r["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(
        B64.decode(plain["Plaintext"].as_str().unwrap()).unwrap(),
        dk
    );
    assert_eq!(
        err(
            &k,
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionPublicKey": pem})
        )
        .await,
        "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion",
        "SM2 (the default algorithm) is not offered"
    );
}

#[tokio::test]
async fn tc3_get_with_query_parameters() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "tc3-get").await;
    let host = k.host();
    let query = sign::form_encode(&[("KeyId", &key), ("Plaintext", "Z2V0")]);
    let ts = now();
    let tss = ts.to_string();
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", host.as_str()),
        ("x-tc-action", "Encrypt"),
        ("x-tc-version", "2019-01-18"),
        ("x-tc-timestamp", tss.as_str()),
    ];
    let parts = RequestParts {
        method: "GET",
        path: "/",
        query: &query,
        headers: &headers,
        body: b"",
    };
    let auth = sign::tc3_authorization(
        &k.id,
        k.secret.as_bytes(),
        "kms",
        ts,
        &parts,
        &["content-type", "host"],
    )
    .unwrap();
    let mut all = headers.to_vec();
    all.push(("authorization", &auth));
    let (s, h, b) = send("GET", &format!("http://{host}/?{query}"), &all, "").await;
    let v = checked(s, &h, &b);
    let blob = v["Response"]["CiphertextBlob"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let r = ok(&k, "Decrypt", json!({"CiphertextBlob": blob})).await;
    assert_eq!(r["Plaintext"], "Z2V0");
}

/// v1-signed parameters for `action`, Signature included, with a fresh
/// random Nonce (as the SDKs send) and the current time.
fn v1_params(
    k: &Kms,
    path: &str,
    method: &str,
    scheme: SignatureScheme,
    params: &[(&str, &str)],
) -> Vec<(String, String)> {
    let nonce = rand::random::<u32>().to_string();
    v1_params_at(k, path, method, scheme, params, &nonce, now())
}

/// [`v1_params`] with a chosen Nonce and Timestamp.
fn v1_params_at(
    k: &Kms,
    path: &str,
    method: &str,
    scheme: SignatureScheme,
    params: &[(&str, &str)],
    nonce: &str,
    timestamp: i64,
) -> Vec<(String, String)> {
    let ts = timestamp.to_string();
    let host = k.host();
    let mut all: Vec<(&str, &str)> = vec![
        ("SecretId", &k.id),
        ("Timestamp", &ts),
        ("Nonce", nonce),
        (
            "SignatureMethod",
            if scheme == SignatureScheme::V1HmacSha256 {
                "HmacSHA256"
            } else {
                "HmacSHA1"
            },
        ),
    ];
    all.extend_from_slice(params);
    let sig = sign::sign_v1(k.secret.as_bytes(), scheme, method, &host, path, &all);
    let mut out: Vec<(String, String)> = all
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    out.push(("Signature".into(), sig));
    out
}

fn encode(params: &[(String, String)]) -> String {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    sign::form_encode(&pairs)
}

#[tokio::test]
async fn signature_v1_get_and_post_form() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "v1").await;
    let host = k.host();
    let p = v1_params(
        &k,
        "/",
        "GET",
        SignatureScheme::V1HmacSha256,
        &[
            ("Action", "Encrypt"),
            ("Version", "2019-01-18"),
            ("Region", "ap-guangzhou"),
            ("KeyId", &key),
            ("Plaintext", "djEgaGVsbG8="),
            ("EncryptionContext", r#"{"k":"v w"}"#),
        ],
    );
    let (s, h, b) = send(
        "GET",
        &format!("http://{host}/?{}", encode(&p)),
        &[("host", &host)],
        "",
    )
    .await;
    let v = checked(s, &h, &b);
    let blob = v["Response"]["CiphertextBlob"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();

    let p = v1_params(
        &k,
        "/",
        "POST",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "Decrypt"),
            ("Version", "2019-01-18"),
            ("CiphertextBlob", &blob),
            ("EncryptionContext", r#"{"k":"v w"}"#),
        ],
    );
    let (s, h, b) = send(
        "POST",
        &format!("http://{host}/"),
        &[
            ("host", &host),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &encode(&p),
    )
    .await;
    let v = checked(s, &h, &b);
    assert_eq!(v["Response"]["Plaintext"], "djEgaGVsbG8=", "{v}");

    // Batch parameters in flat form.
    let p = v1_params(
        &k,
        "/",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "DescribeKeys"),
            ("Version", "2019-01-18"),
            ("KeyIds.0", &key),
        ],
    );
    let (s, h, b) = send(
        "GET",
        &format!("http://{host}/?{}", encode(&p)),
        &[("host", &host)],
        "",
    )
    .await;
    let v = checked(s, &h, &b);
    assert_eq!(
        v["Response"]["KeyMetadatas"][0]["KeyId"],
        key.as_str(),
        "{v}"
    );

    // A parameter changed after signing.
    let mut p = v1_params(
        &k,
        "/",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[("Action", "ListKeys"), ("Version", "2019-01-18")],
    );
    p.push(("Limit".into(), "5".into()));
    let (s, h, b) = send(
        "GET",
        &format!("http://{host}/?{}", encode(&p)),
        &[("host", &host)],
        "",
    )
    .await;
    assert_eq!(code(&checked(s, &h, &b)), "AuthFailure.SignatureFailure");
}

#[tokio::test]
async fn legacy_v2_index_php() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "legacy").await;
    let host = k.host();
    let legacy = |params: Vec<(String, String)>| {
        let host = host.clone();
        async move {
            let (s, h, b) = send(
                "GET",
                &format!("http://{host}/v2/index.php?{}", encode(&params)),
                &[("host", &host)],
                "",
            )
            .await;
            checked(s, &h, &b)
        }
    };
    let v = legacy(v1_params(
        &k,
        "/v2/index.php",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "GenerateDataKey"),
            ("keyId", &key),
            ("keySpec", "AES_256"),
            ("numberOfBytes", "24"),
            ("encryptionContext", r#"{"app":"old"}"#),
        ],
    ))
    .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["message"], "");
    assert!(uuid::Uuid::parse_str(v["requestId"].as_str().unwrap()).is_ok());
    assert_eq!(v["keyId"], key.as_str());
    let dk = B64.decode(v["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(dk.len(), 24, "numberOfBytes wins");
    let blob = v["ciphertextBlob"].as_str().unwrap().to_string();

    let v = legacy(v1_params(
        &k,
        "/v2/index.php",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "Decrypt"),
            ("ciphertextBlob", &blob),
            ("encryptionContext", r#"{"app":"old"}"#),
        ],
    ))
    .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(B64.decode(v["plaintext"].as_str().unwrap()).unwrap(), dk);

    let v = legacy(v1_params(
        &k,
        "/v2/index.php",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "Encrypt"),
            ("keyId", &key),
            ("plaintext", "AA=="),
        ],
    ))
    .await;
    assert_eq!(v["code"], 0, "{v}");
    assert!(v["ciphertextBlob"].is_string());

    // Errors: flat, numeric code, the API 3.0 code alongside.
    let missing = uuid::Uuid::new_v4().to_string();
    let v = legacy(v1_params(
        &k,
        "/v2/index.php",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "Encrypt"),
            ("keyId", &missing),
            ("plaintext", "AA=="),
        ],
    ))
    .await;
    assert_eq!(v["code"], 5000, "{v}");
    assert_eq!(v["codeDesc"], "ResourceUnavailable.CmkNotFound");
    assert!(v.get("Response").is_none());
    let v = legacy(v1_params(
        &k,
        "/v2/index.php",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[("Action", "ListKeys")],
    ))
    .await;
    assert_eq!(v["codeDesc"], "InvalidAction", "{v}");
    let mut p = v1_params(
        &k,
        "/v2/index.php",
        "GET",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "Encrypt"),
            ("keyId", &key),
            ("plaintext", "AA=="),
        ],
    );
    p.last_mut().unwrap().1 = "AAAA".into();
    let v = legacy(p).await;
    assert_eq!(v["code"], 4100, "{v}");
    assert_eq!(v["codeDesc"], "AuthFailure.SignatureFailure");
}

#[tokio::test]
async fn quota_holds_on_a_real_socket() {
    let k = start_kms(&[("Encrypt", 5)]).await;
    let key = create_key(&k, "burst").await;
    let params = json!({"KeyId": key, "Plaintext": "AA=="});
    let mut codes = Vec::new();
    for i in 0..30u8 {
        // Distinct requests: a byte-identical one in the same second would
        // be refused as a replay before the quota is consulted.
        let v = call(&k, "Encrypt", json!({"KeyId": key, "Plaintext": b64(&[i])})).await;
        codes.push(
            v["Response"]["Error"]["Code"]
                .as_str()
                .unwrap_or("ok")
                .to_string(),
        );
    }
    assert!(
        codes[..5].iter().all(|c| c == "ok"),
        "the first 5 are within quota: {codes:?}"
    );
    assert!(
        codes.iter().any(|c| c == "RequestLimitExceeded"),
        "30 back-to-back Encrypts at 5/s must hit the quota: {codes:?}"
    );
    assert!(codes
        .iter()
        .all(|c| c == "ok" || c == "RequestLimitExceeded"));
    // Other actions and other credentials have their own buckets.
    ok(&k, "DescribeKey", json!({"KeyId": key})).await;
    let (id2, secret2) = k.credential(None);
    let v = call_as(&k, &id2, &secret2, "Encrypt", params.clone()).await;
    assert!(v["Response"]["CiphertextBlob"].is_string(), "{v}");
}

async fn run_sdk_flow(k: &Kms, extra: Vec<String>) -> String {
    let python = sdk_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/tencent_flow.py");
    let mut args = vec![
        script.display().to_string(),
        "--endpoint".into(),
        k.host(),
        "--secret-id".into(),
        k.id.clone(),
        "--secret-key".into(),
        k.secret.clone(),
    ];
    args.extend(extra);
    // a --rotate-cmd reaches the store as the server does
    let env = store_env_of(&k.dir.join("data"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(&args)
            .envs(env)
            .output()
            .expect("run tencent_flow.py")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tencent_flow.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_walks_a_key_life() {
    let k = start_kms(&[]).await;
    let out = run_sdk_flow(&k, Vec::new()).await;
    for step in [
        "CreateKey",
        "Encrypt while disabled",
        "Rotate",
        "Decrypt old ciphertext",
        "Wrong SecretKey",
        "Sign ECC",
        "Sign RSA PSS",
        "Sign RSA PKCS1",
        "AsymmetricRsaDecrypt",
        "Sign with a decryption key",
        "CreateKey SM2",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("\"step\": \"{step}\"")))
            .unwrap_or_else(|| panic!("no step {step:?} in:\n{out}"));
        assert!(line.contains("\"ok\": true"), "{line}");
    }
    assert!(out.contains("\"via\": \"RotateKey\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_with_rotation_through_the_cli() {
    let k = start_kms(&[]).await;
    let cmd = format!(
        "{} keys rotate --data-dir {} {{key_id}}",
        env!("CARGO_BIN_EXE_sealgate"),
        k.dir.join("data").display()
    );
    let out = run_sdk_flow(&k, vec!["--rotate-cmd".into(), cmd]).await;
    assert!(out.contains("\"via\": \"command\""), "{out}");
    let key = out
        .lines()
        .find(|l| l.contains("\"step\": \"CreateKey\""))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v["key_id"].as_str().map(str::to_string))
        .unwrap();
    let m = k.app.store.describe(&key).unwrap();
    assert_eq!(m.versions.len(), 2, "the CLI rotated the key once");
}

/// The headers of a TC3-signed POST of `body` as `action` at `timestamp`
/// (Authorization included), to send as they are or altered.
fn tc3_signed_headers(k: &Kms, action: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
    common::tc3_signed_headers(&k.host(), &k.id, &k.secret, action, timestamp, body)
}

async fn send_headers(k: &Kms, headers: &[(String, String)], body: &str) -> Value {
    let (s, h, b) =
        common::send_owned_headers("POST", &format!("http://{}/", k.host()), headers, body).await;
    checked(s, &h, &b)
}

/// `headers` with `name` set to `value`.
fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            if n.eq_ignore_ascii_case(name) {
                (n.clone(), value.to_string())
            } else {
                (n.clone(), v.clone())
            }
        })
        .collect()
}

fn key_state(k: &Kms, key: &str) -> sealgate::keys::KeyState {
    k.app.store.describe(key).unwrap().key_state
}

#[tokio::test]
async fn tc3_replays_and_action_swaps_are_refused() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "replay-tc3").await;
    let body = json!({ "KeyId": key }).to_string();
    let ts = now();
    let describe = tc3_signed_headers(&k, "DescribeKey", ts, &body);
    let v = send_headers(&k, &describe, &body).await;
    assert_eq!(v["Response"]["KeyMetadata"]["KeyId"], key.as_str(), "{v}");

    // TC3 does not sign X-TC-Action: the captured DescribeKey sent again as
    // DisableKey must not disable the key.
    let swapped = with_header(&describe, "x-tc-action", "DisableKey");
    let v = send_headers(&k, &swapped, &body).await;
    assert_eq!(code(&v), "AuthFailure.SignatureFailure", "{v}");
    assert_eq!(key_state(&k, &key), sealgate::keys::KeyState::Enabled);

    // The same request twice: the second is refused.
    let v = send_headers(&k, &describe, &body).await;
    assert_eq!(code(&v), "AuthFailure.SignatureFailure", "{v}");
    assert!(
        v["Response"]["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );

    // Distinct requests in the same second still pass.
    for p in ["AA==", "AQ==", "Ag=="] {
        let body = json!({ "KeyId": key, "Plaintext": p }).to_string();
        let v = send_headers(&k, &tc3_signed_headers(&k, "Encrypt", ts, &body), &body).await;
        assert!(v["Response"]["CiphertextBlob"].is_string(), "{p}: {v}");
    }
    // So does the same body from another credential.
    let (id2, secret2) = k.credential(None);
    let v = call_as(&k, &id2, &secret2, "DescribeKey", json!({ "KeyId": key })).await;
    assert!(v["Response"]["KeyMetadata"].is_object(), "{v}");
}

#[tokio::test]
async fn v1_replays_are_refused() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "replay-v1").await;
    let host = k.host();
    for scheme in [SignatureScheme::V1HmacSha1, SignatureScheme::V1HmacSha256] {
        let p = v1_params(
            &k,
            "/",
            "GET",
            scheme,
            &[
                ("Action", "DescribeKey"),
                ("Version", "2019-01-18"),
                ("KeyId", &key),
            ],
        );
        let url = format!("http://{host}/?{}", encode(&p));
        let (s, h, b) = send("GET", &url, &[("host", &host)], "").await;
        let v = checked(s, &h, &b);
        assert_eq!(v["Response"]["KeyMetadata"]["KeyId"], key.as_str(), "{v}");
        let (s, h, b) = send("GET", &url, &[("host", &host)], "").await;
        assert_eq!(
            code(&checked(s, &h, &b)),
            "AuthFailure.SignatureFailure",
            "{scheme:?}"
        );
    }
    // A form POST sent twice.
    let p = v1_params(
        &k,
        "/",
        "POST",
        SignatureScheme::V1HmacSha1,
        &[
            ("Action", "Encrypt"),
            ("Version", "2019-01-18"),
            ("KeyId", &key),
            ("Plaintext", "AA=="),
        ],
    );
    let form = [
        ("host", host.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let url = format!("http://{host}/");
    let (s, h, b) = send("POST", &url, &form, &encode(&p)).await;
    assert!(checked(s, &h, &b)["Response"]["CiphertextBlob"].is_string());
    let (s, h, b) = send("POST", &url, &form, &encode(&p)).await;
    assert_eq!(code(&checked(s, &h, &b)), "AuthFailure.SignatureFailure");
    // Distinct requests in the same second (fresh nonces) pass.
    for _ in 0..3 {
        let p = v1_params(
            &k,
            "/",
            "GET",
            SignatureScheme::V1HmacSha256,
            &[("Action", "ListKeys"), ("Version", "2019-01-18")],
        );
        let (s, h, b) = send(
            "GET",
            &format!("http://{host}/?{}", encode(&p)),
            &[("host", &host)],
            "",
        )
        .await;
        let v = checked(s, &h, &b);
        assert!(v["Response"]["Keys"].is_array(), "{v}");
    }
}

#[tokio::test]
async fn legacy_nonce_and_timestamp_are_used_once() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "replay-legacy").await;
    let host = k.host();
    let legacy = |params: Vec<(String, String)>| {
        let host = host.clone();
        async move {
            let (s, h, b) = send(
                "GET",
                &format!("http://{host}/v2/index.php?{}", encode(&params)),
                &[("host", &host)],
                "",
            )
            .await;
            checked(s, &h, &b)
        }
    };
    let ts = now();
    let at = |plaintext: &str, nonce: &str| {
        v1_params_at(
            &k,
            "/v2/index.php",
            "GET",
            SignatureScheme::V1HmacSha1,
            &[
                ("Action", "Encrypt"),
                ("keyId", &key),
                ("plaintext", plaintext),
            ],
            nonce,
            ts,
        )
    };
    let v = legacy(at("AA==", "4242")).await;
    assert_eq!(v["code"], 0, "{v}");
    // The same request again, and another one reusing Nonce + Timestamp:
    // both refused with the legacy table's replay code.
    for p in [at("AA==", "4242"), at("AQ==", "4242")] {
        let v = legacy(p).await;
        assert_eq!(v["code"], 4500, "{v}");
        assert_eq!(v["codeDesc"], "AuthFailure.SignatureFailure", "{v}");
    }
    // Another nonce in the same second passes.
    let v = legacy(at("AQ==", "4243")).await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test]
async fn tc3_host_signed_without_its_port_is_accepted() {
    // The Node.js SDK sends `Host: h:port` but signs `host:h`.
    let k = start_kms(&[]).await;
    let host = k.host();
    let bare = host.rsplit_once(':').unwrap().0.to_string();
    let ts = now();
    let body = json!({}).to_string();
    let sign_as = |signed_host: &str| {
        let tss = ts.to_string();
        let headers = [
            ("content-type", "application/json"),
            ("host", signed_host),
            ("x-tc-timestamp", tss.as_str()),
        ];
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        sign::tc3_authorization(
            &k.id,
            k.secret.as_bytes(),
            "kms",
            ts,
            &parts,
            &["content-type", "host"],
        )
        .unwrap()
    };
    let base = tc3_signed_headers(&k, "ListKeys", ts, &body);
    let v = send_headers(
        &k,
        &with_header(&base, "authorization", &sign_as(&bare)),
        &body,
    )
    .await;
    assert!(v["Response"]["Keys"].is_array(), "{v}");
    // Another host name, or another port, is still a signature failure.
    for other in ["kms.example".to_string(), format!("{bare}:1")] {
        let v = send_headers(
            &k,
            &with_header(&base, "authorization", &sign_as(&other)),
            &body,
        )
        .await;
        assert_eq!(code(&v), "AuthFailure.SignatureFailure", "{other}: {v}");
    }
}

/// Runs tests/sdk/setup-node-tencent.sh once per test binary (the pinned
/// Node.js SDK under target/); returns its install prefix.
fn node_sdk_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/sdk/setup-node-tencent.sh"))
            .output()
            .expect("run tests/sdk/setup-node-tencent.sh");
        assert!(
            out.status.success(),
            "tests/sdk/setup-node-tencent.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.trim().lines().last().unwrap_or("").trim())
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk_walks_a_key_life_on_a_non_default_port() {
    let k = start_kms(&[]).await;
    let port = k.app.kms_addr.unwrap().port();
    assert!(port != 80 && port != 443);
    let sdk = node_sdk_dir();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/tencent_flow.mjs");
    let args = vec![
        script.display().to_string(),
        "--sdk-dir".into(),
        sdk.display().to_string(),
        "--endpoint".into(),
        k.host(),
        "--secret-id".into(),
        k.id.clone(),
        "--secret-key".into(),
        k.secret.clone(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(&args)
            .output()
            .expect("run node tencent_flow.mjs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tencent_flow.mjs failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "CreateKey",
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "Decrypt data key",
        "DescribeKey",
        "ListKeys",
        "DisableKey",
        "Encrypt while disabled",
        "EnableKey",
        "Wrong SecretKey",
        "ListKeys v1 HmacSHA256",
    ] {
        let line = out_line(&stdout, step);
        assert_eq!(line["ok"], true, "{line}");
    }
}

/// The JSON line a flow script printed for `step`.
fn out_line(stdout: &str, step: &str) -> Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["step"] == step)
        .unwrap_or_else(|| panic!("no step {step:?} in:\n{stdout}"))
}

#[tokio::test]
async fn legacy_generate_data_key_defaults_and_names_params_as_sent() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "legacy-defaults").await;
    let host = k.host();
    let legacy = |params: &[(&str, &str)]| {
        let p = v1_params(
            &k,
            "/v2/index.php",
            "GET",
            SignatureScheme::V1HmacSha1,
            params,
        );
        let host = host.clone();
        async move {
            let (s, h, b) = send(
                "GET",
                &format!("http://{host}/v2/index.php?{}", encode(&p)),
                &[("host", &host)],
                "",
            )
            .await;
            checked(s, &h, &b)
        }
    };
    // Seed 002: keySpec and numberOfBytes are optional.
    let v = legacy(&[("Action", "GenerateDataKey"), ("keyId", &key)]).await;
    assert_eq!(v["code"], 0, "{v}");
    let dk = B64.decode(v["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(dk.len(), 32, "the default is AES_256");
    let v = legacy(&[
        ("Action", "Decrypt"),
        ("ciphertextBlob", v["ciphertextBlob"].as_str().unwrap()),
    ])
    .await;
    assert_eq!(B64.decode(v["plaintext"].as_str().unwrap()).unwrap(), dk);
    let v = legacy(&[
        ("Action", "GenerateDataKey"),
        ("keyId", &key),
        ("keySpec", "AES_128"),
    ])
    .await;
    assert_eq!(
        B64.decode(v["plaintext"].as_str().unwrap()).unwrap().len(),
        16
    );

    // Errors name the parameters as the legacy client spelled them.
    let v = legacy(&[
        ("Action", "GenerateDataKey"),
        ("keyId", &key),
        ("keySpec", "AES_512"),
    ])
    .await;
    assert_eq!(v["code"], 4000, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("`keySpec`") && !m.contains("KeySpec"), "{m}");
    let v = legacy(&[("Action", "GenerateDataKey")]).await;
    assert_eq!(v["codeDesc"], "MissingParameter", "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("`keyId`") && !m.contains("KeyId"), "{m}");
    let v = legacy(&[
        ("Action", "GenerateDataKey"),
        ("keyId", &key),
        ("numberOfBytes", "2000"),
    ])
    .await;
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("`numberOfBytes`") && !m.contains("NumberOfBytes"),
        "{m}"
    );
    // API 3.0 still requires KeySpec or NumberOfBytes.
    assert_eq!(
        err(&k, "GenerateDataKey", json!({ "KeyId": key })).await,
        "MissingParameter"
    );
}

/// Runs the real binary; returns its stdout, asserting it succeeded.
async fn sealgate_cli(args: Vec<String>) -> String {
    let env = store_env(&args);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(&args)
            .envs(env)
            .output()
            .expect("run sealgate")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "sealgate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_json_output_is_lowercase_and_works_against_the_face() {
    let k = start_kms(&[]).await;
    let data = k.dir.join("data").display().to_string();
    let cli = |cmd: &[&str]| {
        let mut args: Vec<String> = vec!["credentials".into()];
        args.extend(cmd.iter().map(|s| s.to_string()));
        args.extend(["--data-dir".into(), data.clone(), "--json".into()]);
        sealgate_cli(args)
    };
    let created: Value = serde_json::from_str(&cli(&["create"]).await).unwrap();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let secret = created["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    assert!(created.get("Id").is_none() && created.get("Secret").is_none());
    // The printed pair is a working credential (at once on the embedded
    // store; on PostgreSQL the CLI wrote it there and the server follows
    // within the propagation bound).
    wait_for("the new credential to work against the face", || async {
        let v = call_as(&k, id, secret, "ListKeys", json!({})).await;
        v["Response"]["Keys"].is_array().then_some(())
    })
    .await;

    let listed: Value = serde_json::from_str(&cli(&["list"]).await).unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(mine["revoked"], false, "{mine}");
    assert!(mine["created_at"].is_u64(), "{mine}");
    let revoked: Value = serde_json::from_str(&cli(&["revoke", id]).await).unwrap();
    assert_eq!(revoked["id"], id, "{revoked}");
    assert_eq!(revoked["revoked"], true, "{revoked}");
}

/// The CMK version a Base64 `CiphertextBlob` names (the store blob's header).
fn blob_version(blob_b64: &str) -> u32 {
    let blob = B64.decode(blob_b64).unwrap();
    sealgate::keys::blob::blob_cmk(&blob).unwrap().version
}

#[tokio::test]
async fn rotate_key_makes_a_new_primary_version_that_new_ciphertexts_name() {
    let k = start_kms(&[]).await;
    let key = create_key(&k, "rotate-me").await;
    let before = ok(&k, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(before["KeyMetadata"]["LastRotateTime"], 0, "{before}");
    let old = ok(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "b2xk"})).await;
    let old_blob = old["CiphertextBlob"].as_str().unwrap().to_string();
    assert_eq!(blob_version(&old_blob), 1);

    let r = ok(&k, "RotateKey", json!({"KeyId": key})).await;
    assert!(r["TaskId"].is_string(), "{r}");

    // The face reports the rotation; the store holds a second, primary version.
    let after = ok(&k, "DescribeKey", json!({"KeyId": key})).await;
    let rotated_at = after["KeyMetadata"]["LastRotateTime"].as_i64().unwrap();
    assert!(rotated_at >= now() - 60, "LastRotateTime set: {after}");
    let m = k.app.store.describe(&key).unwrap();
    assert_eq!((m.versions.len(), m.primary_version), (2, Some(2)));

    // What is sealed from now on names version 2; version 1 still opens.
    let new = ok(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "bmV3"})).await;
    let new_blob = new["CiphertextBlob"].as_str().unwrap().to_string();
    assert_eq!(blob_version(&new_blob), 2, "sealed under the new primary");
    let dk = ok(
        &k,
        "GenerateDataKey",
        json!({"KeyId": key, "NumberOfBytes": 32}),
    )
    .await;
    assert_eq!(blob_version(dk["CiphertextBlob"].as_str().unwrap()), 2);
    for (blob, plain) in [(&old_blob, "b2xk"), (&new_blob, "bmV3")] {
        let r = ok(&k, "Decrypt", json!({"CiphertextBlob": blob})).await;
        assert_eq!(r["Plaintext"], plain);
    }
    // A second rotation moves on again.
    ok(&k, "RotateKey", json!({"KeyId": key})).await;
    let third = ok(&k, "Encrypt", json!({"KeyId": key, "Plaintext": "bmV3"})).await;
    assert_eq!(blob_version(third["CiphertextBlob"].as_str().unwrap()), 3);
}

#[tokio::test]
async fn audit_lines_name_the_credential_action_key_and_code() {
    let k = start_audited_kms_fixture().await;
    let key = create_key(&k, "audited").await;
    let other = create_key(&k, "elsewhere").await;
    let blob = ok(
        &k,
        "Encrypt",
        json!({"KeyId": "audited", "Plaintext": b64(b"audit me")}),
    )
    .await["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&k, "Decrypt", json!({"CiphertextBlob": blob})).await;
    let (lim, lim_secret) = k.credential(Some(vec![key.clone()]));
    let refused = call_as(&k, &lim, &lim_secret, "DisableKey", json!({"KeyId": other})).await;
    assert_eq!(code(&refused), "AuthFailure.UnauthorizedOperation");
    let forged = call_as(
        &k,
        &k.id,
        "not-the-secret",
        "DisableKey",
        json!({"KeyId": key}),
    )
    .await;
    assert_eq!(code(&forged), "AuthFailure.SignatureFailure");
    let id = k.id.clone();
    let records = k.kms_audit_records().await;
    let find = |action: &str, caller: Option<&str>| {
        records
            .iter()
            .find(|r| r["action"] == action && r["caller"].as_str() == caller)
            .unwrap_or_else(|| panic!("no {action} by {caller:?} in {records:#?}"))
    };
    let created = find("kms.tencent.CreateKey", Some(&id));
    assert_eq!(created["key_id"], key, "CreateKey names the key it made");
    // the alias resolved to its KeyId; Decrypt's key comes from the blob
    for action in ["kms.tencent.Encrypt", "kms.tencent.Decrypt"] {
        let r = find(action, Some(&id));
        assert_eq!((&r["key_id"], &r["result"]), (&json!(key), &json!("ok")));
        assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let r = find("kms.tencent.DisableKey", Some(&lim));
    assert_eq!(r["key_id"], other, "the key asked for, though refused");
    assert_eq!(r["result"], "AuthFailure.UnauthorizedOperation");
    // a forged signature proves no credential: no caller, no key; the
    // action is the one the request claimed (what was attempted)
    let r = find("kms.tencent.DisableKey", None);
    assert_eq!(r["result"], "AuthFailure.SignatureFailure");
    assert!(r.get("key_id").is_none(), "{r}");
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(&b64(b"audit me")) && !text.contains(&blob));
}
