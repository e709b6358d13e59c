//! The Alibaba Cloud KMS face end to end: sealgate started in-process with
//! its KMS listener, raw signed requests for the error shapes and the
//! semantics a client depends on, and the three official Python SDKs
//! (`tests/sdk/alibaba_*.py`, pinned and installed by `tests/sdk/setup.sh`).

mod common;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{
    make_client_key, sdk_node_dir, sdk_python, send, start_audited_kms_fixture, start_kms_fixture,
    KmsFixture,
};
use sealgate::kms::alibaba::sign;
use serde_json::Value;

type Kms = KmsFixture;

async fn start_kms(quotas: &[(&str, u32)]) -> Kms {
    start_kms_fixture(quotas).await
}

fn now() -> i64 {
    sealgate::clock::unix_now() as i64
}

fn nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The query string of an RPC v1 request (HMAC-SHA1), signed.
fn rpc_query(id: &str, secret: &str, action: &str, params: &[(&str, &str)], nonce: &str) -> String {
    let ts = sign::format_acs_date(now()).unwrap();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", action),
        ("Version", "2016-01-20"),
        ("Format", "JSON"),
        ("AccessKeyId", id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", &ts),
    ];
    p.extend_from_slice(params);
    let sig = sign::sign_rpc(secret.as_bytes(), "POST", &p);
    p.push(("Signature", &sig));
    sign::form_encode(&p)
}

async fn post_query(k: &Kms, query: &str) -> (u16, Value) {
    let (status, headers, body) =
        send("POST", &format!("http://{}/?{query}", k.host()), &[], "").await;
    assert!(
        headers
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("application/json")),
        "{headers:?}"
    );
    (status, serde_json::from_str(&body).unwrap())
}

async fn call_as(
    k: &Kms,
    id: &str,
    secret: &str,
    action: &str,
    params: &[(&str, &str)],
) -> (u16, Value) {
    post_query(k, &rpc_query(id, secret, action, params, &nonce())).await
}

async fn call(k: &Kms, action: &str, params: &[(&str, &str)]) -> (u16, Value) {
    call_as(k, &k.id, &k.secret, action, params).await
}

/// A successful call's body.
async fn ok(k: &Kms, action: &str, params: &[(&str, &str)]) -> Value {
    let (s, v) = call(k, action, params).await;
    assert_eq!(s, 200, "{action}: {v}");
    assert!(v["RequestId"].is_string(), "{v}");
    v
}

/// Asserts an error of Alibaba's shape with this status and code.
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, v) = got;
    assert_eq!((*s, v["Code"].as_str()), (status, Some(code)), "{v}");
    for field in ["RequestId", "HostId", "Message", "Recommend"] {
        assert!(v[field].is_string(), "{field} missing: {v}");
    }
}

async fn create_key(k: &Kms) -> String {
    let v = ok(k, "CreateKey", &[("Description", "test")]).await;
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_nonces_and_unknown_things_fail_in_alibabas_shape() {
    let k = start_kms(&[]).await;
    let key = create_key(&k).await;

    // a wrong secret, an unknown AccessKeyId
    let bad = format!("{}x", k.secret);
    assert_error(
        &call_as(&k, &k.id, &bad, "DescribeKey", &[("KeyId", &key)]).await,
        400,
        "SignatureDoesNotMatch",
    );
    // (not InvalidAccessKeyId.NotFound: that would tell which ids exist)
    assert_error(
        &call_as(
            &k,
            "AKIDnobody",
            &k.secret,
            "DescribeKey",
            &[("KeyId", &key)],
        )
        .await,
        400,
        "SignatureDoesNotMatch",
    );

    // the same signed request twice: the nonce is not accepted again
    let q = rpc_query(
        &k.id,
        &k.secret,
        "DescribeKey",
        &[("KeyId", &key)],
        &nonce(),
    );
    let (s, v) = post_query(&k, &q).await;
    assert_eq!(s, 200, "{v}");
    assert_error(&post_query(&k, &q).await, 400, "SignatureNonceUsed");

    // a tampered parameter breaks the signature
    let tampered = q.replace(&key, &uuid::Uuid::new_v4().to_string());
    assert_error(
        &post_query(&k, &tampered).await,
        400,
        "SignatureDoesNotMatch",
    );

    // unknown key, alias, action, missing parameter
    let other = uuid::Uuid::new_v4().to_string();
    assert_error(
        &call(&k, "DescribeKey", &[("KeyId", &other)]).await,
        404,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        &call(&k, "Encrypt", &[("KeyId", &other), ("Plaintext", "x")]).await,
        404,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        &call(&k, "DescribeKey", &[("KeyId", "alias/nobody")]).await,
        404,
        "Forbidden.AliasNotFound",
    );
    assert_error(
        &call(&k, "NoSuchAction", &[]).await,
        404,
        "InvalidAction.NotFound",
    );
    assert_error(
        &call(&k, "Encrypt", &[("KeyId", &key)]).await,
        400,
        "MissingParameter",
    );
}

/// Status, Code and Message of an error (RequestId and HostId differ per call).
fn error_of((s, v): &(u16, Value)) -> (u16, Value, Value) {
    assert!(v["RequestId"].is_string(), "{v}");
    (*s, v["Code"].clone(), v["Message"].clone())
}

/// An ACS3-signed DescribeKey.
async fn acs3_describe(k: &Kms, id: &str, secret: &str, key: &str) -> (u16, Value) {
    let query = sign::form_encode(&[("KeyId", key)]);
    let date = sign::format_acs_date(now()).unwrap();
    let n = nonce();
    let host = k.host();
    let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut headers = vec![
        ("host", host.as_str()),
        ("x-acs-action", "DescribeKey"),
        ("x-acs-version", "2016-01-20"),
        ("x-acs-date", date.as_str()),
        ("x-acs-signature-nonce", n.as_str()),
        ("x-acs-content-sha256", empty_hash),
    ];
    let signed: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let parts = sign::RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: b"",
    };
    let auth = sign::acs3_authorization(id, secret.as_bytes(), &parts, &signed).unwrap();
    headers.push(("authorization", auth.as_str()));
    let (s, _, body) = send("POST", &format!("http://{host}/?{query}"), &headers, "").await;
    (s, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_revoked_and_wrong_secret_look_the_same() {
    let k = start_kms(&[]).await;
    let key = create_key(&k).await;
    let (rid, rsecret) = k.credential(None);
    let describe = [("KeyId", key.as_str())];
    let (s, v) = call_as(&k, &rid, &rsecret, "DescribeKey", &describe).await;
    assert_eq!(s, 200, "worked before it was revoked: {v}");
    k.app.store.revoke_credential(&rid).unwrap();
    let bad = format!("{}x", k.secret);
    let unknown = "AKIDnobodyhasthisid0000000000000000";

    // RPC v1
    let wrong = call_as(&k, &k.id, &bad, "DescribeKey", &describe).await;
    assert_error(&wrong, 400, "SignatureDoesNotMatch");
    let wrong = error_of(&wrong);
    let got = call_as(&k, unknown, &k.secret, "DescribeKey", &describe).await;
    assert_eq!(error_of(&got), wrong, "unknown AccessKeyId vs wrong secret");
    let got = call_as(&k, &rid, &rsecret, "DescribeKey", &describe).await;
    assert_eq!(error_of(&got), wrong, "revoked AccessKeyId vs wrong secret");

    // ACS3
    let wrong = acs3_describe(&k, &k.id, &bad, &key).await;
    assert_error(&wrong, 400, "SignatureDoesNotMatch");
    let wrong = error_of(&wrong);
    let got = acs3_describe(&k, unknown, &k.secret, &key).await;
    assert_eq!(error_of(&got), wrong, "ACS3: unknown vs wrong secret");
    let got = acs3_describe(&k, &rid, &rsecret, &key).await;
    assert_eq!(error_of(&got), wrong, "ACS3: revoked vs wrong secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acs3_requests_work_and_replays_are_refused() {
    let k = start_kms(&[]).await;
    let key = create_key(&k).await;
    let query = sign::form_encode(&[("KeyId", key.as_str())]);
    let date = sign::format_acs_date(now()).unwrap();
    let n = nonce();
    let host = k.host();
    let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut headers = vec![
        ("host", host.as_str()),
        ("x-acs-action", "DescribeKey"),
        ("x-acs-version", "2016-01-20"),
        ("x-acs-date", date.as_str()),
        ("x-acs-signature-nonce", n.as_str()),
        ("x-acs-content-sha256", empty_hash),
    ];
    let signed: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let parts = sign::RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: b"",
    };
    let auth = sign::acs3_authorization(&k.id, k.secret.as_bytes(), &parts, &signed).unwrap();
    headers.push(("authorization", auth.as_str()));
    let url = format!("http://{host}/?{query}");
    let (s, _, body) = send("POST", &url, &headers, "").await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["KeyMetadata"]["KeyId"], key.as_str());
    let (s, _, body) = send("POST", &url, &headers, "").await;
    assert_error(
        &(s, serde_json::from_str(&body).unwrap()),
        400,
        "SignatureNonceUsed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_takes_6_kb_and_its_blob_is_bound_to_the_context() {
    let k = start_kms(&[]).await;
    let key = create_key(&k).await;
    let ctx = r#"{"tenant":"acme","field":"ssn"}"#;
    let max = "a".repeat(6 * 1024);
    let v = ok(
        &k,
        "Encrypt",
        &[
            ("KeyId", &key),
            ("Plaintext", &max),
            ("EncryptionContext", ctx),
        ],
    )
    .await;
    let blob = v["CiphertextBlob"].as_str().unwrap().to_string();
    // the same context in another order and spacing opens it
    let v = ok(
        &k,
        "Decrypt",
        &[
            ("CiphertextBlob", &blob),
            (
                "EncryptionContext",
                r#"{ "field": "ssn", "tenant": "acme" }"#,
            ),
        ],
    )
    .await;
    assert_eq!(v["Plaintext"], max.as_str());
    assert_eq!(v["KeyId"], key.as_str());
    assert_error(
        &call(
            &k,
            "Decrypt",
            &[
                ("CiphertextBlob", &blob),
                ("EncryptionContext", r#"{"tenant":"evil"}"#),
            ],
        )
        .await,
        400,
        "InvalidCiphertext",
    );
    let over = "a".repeat(6 * 1024 + 1);
    let got = call(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", &over)]).await;
    assert_error(&got, 400, "InvalidParameter");
    assert!(
        got.1["Message"].as_str().unwrap().contains("6 KB"),
        "{}",
        got.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advance_encrypt_follows_the_primary_version_and_decrypt_refuses_its_blobs() {
    let k = start_kms(&[]).await;
    let key = create_key(&k).await;
    let aad = B64.encode(b"row 17");
    let pt = B64.encode(b"card 4111");

    let a1 = ok(
        &k,
        "AdvanceEncrypt",
        &[("KeyId", &key), ("Plaintext", &pt), ("Aad", &aad)],
    )
    .await;
    let e1 = ok(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", "classic")]).await;
    let v1 = a1["KeyVersionId"].as_str().unwrap().to_string();
    assert_eq!(e1["KeyVersionId"], v1.as_str(), "one version: the same");
    assert_eq!(a1["Algorithm"], "AES_GCM");
    assert_eq!(B64.decode(a1["Iv"].as_str().unwrap()).unwrap().len(), 12);

    let rotated = ok(&k, "CreateKeyVersion", &[("KeyId", &key)]).await;
    let v2 = rotated["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v1, v2);

    let a2 = ok(
        &k,
        "AdvanceEncrypt",
        &[("KeyId", &key), ("Plaintext", &pt), ("Aad", &aad)],
    )
    .await;
    assert_eq!(
        a2["KeyVersionId"],
        v2.as_str(),
        "AdvanceEncrypt uses the primary"
    );
    let e2 = ok(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", "classic")]).await;
    assert_eq!(
        e2["KeyVersionId"],
        v1.as_str(),
        "Encrypt keeps the initial version"
    );

    // Decrypt refuses an Advance blob; AdvanceDecrypt opens both kinds
    let got = call(
        &k,
        "Decrypt",
        &[("CiphertextBlob", a2["CiphertextBlob"].as_str().unwrap())],
    )
    .await;
    assert_error(&got, 400, "InvalidCiphertext");
    assert!(
        got.1["Message"]
            .as_str()
            .unwrap()
            .contains("AdvanceDecrypt"),
        "{}",
        got.1
    );
    for (blob, version) in [(&a1, &v1), (&a2, &v2)] {
        let d = ok(
            &k,
            "AdvanceDecrypt",
            &[
                ("CiphertextBlob", blob["CiphertextBlob"].as_str().unwrap()),
                ("Aad", &aad),
            ],
        )
        .await;
        assert_eq!(d["Plaintext"], pt.as_str());
        assert_eq!(d["KeyVersionId"], version.as_str());
    }
    let d = ok(
        &k,
        "AdvanceDecrypt",
        &[("CiphertextBlob", e2["CiphertextBlob"].as_str().unwrap())],
    )
    .await;
    assert_eq!(d["Plaintext"], B64.encode(b"classic").as_str());
    // a wrong Aad does not open
    assert_error(
        &call(
            &k,
            "AdvanceDecrypt",
            &[
                ("CiphertextBlob", a2["CiphertextBlob"].as_str().unwrap()),
                ("Aad", &B64.encode(b"row 18")),
            ],
        )
        .await,
        400,
        "InvalidCiphertext",
    );
    // NO_PADDING needs whole blocks; a wrong Iv length is refused
    assert_error(
        &call(
            &k,
            "AdvanceEncrypt",
            &[
                ("KeyId", &key),
                ("Plaintext", &pt),
                ("Algorithm", "AES_CBC"),
                ("PaddingMode", "NO_PADDING"),
            ],
        )
        .await,
        400,
        "InvalidParameter",
    );
    assert_error(
        &call(
            &k,
            "AdvanceEncrypt",
            &[
                ("KeyId", &key),
                ("Plaintext", &pt),
                ("Iv", &B64.encode([0u8; 16])),
            ],
        )
        .await,
        400,
        "InvalidParameter",
    );
    // the 6 KB guidance is enforced with a clear error
    let big = B64.encode(vec![7u8; 6 * 1024 + 1]);
    let got = call(
        &k,
        "AdvanceEncrypt",
        &[("KeyId", &key), ("Plaintext", &big)],
    )
    .await;
    assert_error(&got, 400, "InvalidParameter");
    assert!(
        got.1["Message"].as_str().unwrap().contains("6 KB"),
        "{}",
        got.1
    );
    // a disabled key neither seals nor opens
    ok(&k, "DisableKey", &[("KeyId", &key)]).await;
    assert_error(
        &call(&k, "AdvanceEncrypt", &[("KeyId", &key), ("Plaintext", &pt)]).await,
        409,
        "Rejected.Disabled",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_calls_get_429_per_class_and_caller() {
    let k = start_kms(&[("alibaba:read", 1)]).await;
    let key = create_key(&k).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (s, v) = call(&k, "DescribeKey", &[("KeyId", &key)]).await;
        if s != 200 {
            assert_error(&(s, v.clone()), 429, "Rejected.Throttling");
        }
        codes.push(s);
    }
    // one per second: five quick calls cannot all pass
    assert_eq!(codes[0], 200);
    assert!(codes.contains(&429), "{codes:?}");
    // other classes and other callers have their own buckets
    ok(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", "x")]).await;
    let (id2, secret2) = k.credential(None);
    let (s, v) = call_as(&k, &id2, &secret2, "DescribeKey", &[("KeyId", &key)]).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limited_credentials_only_reach_their_keys() {
    let k = start_kms(&[]).await;
    let mine = create_key(&k).await;
    let other = create_key(&k).await;
    let other_blob = ok(&k, "Encrypt", &[("KeyId", &other), ("Plaintext", "x")]).await
        ["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    let (id, secret) = k.credential(Some(vec![mine.clone()]));
    let (s, v) = call_as(
        &k,
        &id,
        &secret,
        "Encrypt",
        &[("KeyId", &mine), ("Plaintext", "x")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_error(
        &call_as(
            &k,
            &id,
            &secret,
            "Encrypt",
            &[("KeyId", &other), ("Plaintext", "x")],
        )
        .await,
        403,
        "Forbidden.RAM",
    );
    assert_error(
        &call_as(
            &k,
            &id,
            &secret,
            "Decrypt",
            &[("CiphertextBlob", &other_blob)],
        )
        .await,
        403,
        "Forbidden.RAM",
    );
    assert_error(
        &call_as(&k, &id, &secret, "CreateKey", &[]).await,
        403,
        "Forbidden.RAM",
    );
    let (s, v) = call_as(&k, &id, &secret, "ListKeys", &[]).await;
    assert_eq!(s, 200, "{v}");
    let listed: Vec<&str> = v["Keys"]["Key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [mine.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_service_aliases_by_key_and_descriptions_answer_and_fail_in_alibabas_shape() {
    let k = start_kms(&[]).await;
    let a = create_key(&k).await;
    let b = create_key(&k).await;

    let r = ok(&k, "DescribeRegions", &[]).await;
    assert_eq!(
        r["Regions"]["Region"],
        serde_json::json!([{"RegionId": "local"}]),
        "{r}"
    );
    let v = ok(&k, "DescribeService", &[]).await;
    assert_eq!(
        v["ProtectionLevels"]["ProtectionLevel"][0]["Type"], "SOFTWARE",
        "{v}"
    );
    let spec = &v["KeySpecs"]["KeySpec"][0];
    assert_eq!(spec["Name"], "Aliyun_AES_256", "{v}");
    assert_eq!(
        spec["SupportedProtectionLevels"]["SupportedProtectionLevel"][0],
        "SOFTWARE"
    );
    assert_eq!(
        spec["Usages"]["Usage"],
        serde_json::json!(["ENCRYPT/DECRYPT"])
    );

    // ListAliasesByKeyId: the key's alias (sealgate keeps one), by id, alias or ARN
    let l = ok(&k, "ListAliasesByKeyId", &[("KeyId", &a)]).await;
    assert_eq!(
        (
            l["TotalCount"].as_u64(),
            l["PageNumber"].as_u64(),
            l["PageSize"].as_u64()
        ),
        (Some(0), Some(1), Some(10)),
        "{l}"
    );
    assert_eq!(l["Aliases"]["Alias"], serde_json::json!([]));
    ok(
        &k,
        "CreateAlias",
        &[("AliasName", "alias/by-key"), ("KeyId", &a)],
    )
    .await;
    let arn = format!("acs:kms:local:sealgate:key/{a}");
    for key in [a.as_str(), "alias/by-key", arn.as_str()] {
        let l = ok(&k, "ListAliasesByKeyId", &[("KeyId", key)]).await;
        assert_eq!(l["TotalCount"], 1, "{key}: {l}");
        let alias = &l["Aliases"]["Alias"][0];
        assert_eq!(alias["AliasName"], "alias/by-key");
        assert_eq!(alias["KeyId"], a.as_str());
        assert_eq!(alias["AliasArn"], "acs:kms:local:sealgate:alias/by-key");
    }
    // page 2 of a one-alias list is empty, and says so
    let l = ok(
        &k,
        "ListAliasesByKeyId",
        &[("KeyId", &a), ("PageNumber", "2"), ("PageSize", "1")],
    )
    .await;
    assert_eq!(
        (
            l["TotalCount"].as_u64(),
            l["Aliases"]["Alias"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0)),
        "{l}"
    );
    let unknown = "0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b";
    for (params, status, code) in [
        (vec![], 400, "MissingParameter"),
        (vec![("KeyId", "")], 400, "MissingParameter"),
        (vec![("KeyId", "not a key!")], 400, "InvalidParameter"),
        (
            vec![("KeyId", &a), ("PageSize", "0")],
            400,
            "InvalidParameter",
        ),
        (
            vec![("KeyId", &a), ("PageNumber", "x")],
            400,
            "InvalidParameter",
        ),
        (vec![("KeyId", unknown)], 404, "Forbidden.KeyNotFound"),
        (
            vec![("KeyId", "alias/nobody")],
            404,
            "Forbidden.AliasNotFound",
        ),
    ] {
        assert_error(&call(&k, "ListAliasesByKeyId", &params).await, status, code);
    }

    // UpdateKeyDescription replaces, and an empty one removes, the description
    ok(
        &k,
        "UpdateKeyDescription",
        &[("KeyId", &b), ("Description", "new words")],
    )
    .await;
    let d = ok(&k, "DescribeKey", &[("KeyId", &b)]).await;
    assert_eq!(d["KeyMetadata"]["Description"], "new words");
    ok(
        &k,
        "UpdateKeyDescription",
        &[("KeyId", "alias/by-key"), ("Description", "via alias")],
    )
    .await;
    assert_eq!(k.app.store.describe(&a).unwrap().description, "via alias");
    ok(
        &k,
        "UpdateKeyDescription",
        &[("KeyId", &b), ("Description", "")],
    )
    .await;
    let d = ok(&k, "DescribeKey", &[("KeyId", &b)]).await;
    assert_eq!(d["KeyMetadata"]["Description"], "");
    let long = "d".repeat(8193);
    // within the API's 8,192 characters but over the key store's 1,024 bytes
    let over_store = "d".repeat(1025);
    for (params, status, code) in [
        (vec![("KeyId", b.as_str())], 400, "MissingParameter"),
        (vec![("Description", "x")], 400, "MissingParameter"),
        (
            vec![("KeyId", "not a key!"), ("Description", "x")],
            400,
            "InvalidParameter",
        ),
        (
            vec![("KeyId", b.as_str()), ("Description", long.as_str())],
            400,
            "InvalidParameter",
        ),
        (
            vec![("KeyId", b.as_str()), ("Description", over_store.as_str())],
            400,
            "InvalidParameter",
        ),
        (
            vec![("KeyId", unknown), ("Description", "x")],
            404,
            "Forbidden.KeyNotFound",
        ),
        (
            vec![("KeyId", "alias/nobody"), ("Description", "x")],
            404,
            "Forbidden.AliasNotFound",
        ),
    ] {
        assert_error(
            &call(&k, "UpdateKeyDescription", &params).await,
            status,
            code,
        );
    }

    // a key-limited credential reaches only its keys through the new actions
    let (id, secret) = k.credential(Some(vec![b.clone()]));
    assert_error(
        &call_as(&k, &id, &secret, "ListAliasesByKeyId", &[("KeyId", &a)]).await,
        403,
        "Forbidden.RAM",
    );
    assert_error(
        &call_as(
            &k,
            &id,
            &secret,
            "UpdateKeyDescription",
            &[("KeyId", &a), ("Description", "x")],
        )
        .await,
        403,
        "Forbidden.RAM",
    );
    assert_eq!(
        call_as(&k, &id, &secret, "DescribeRegions", &[]).await.0,
        200
    );
    assert_eq!(k.app.store.describe(&a).unwrap().description, "via alias");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_created_moved_and_deleted() {
    let k = start_kms(&[]).await;
    let a = create_key(&k).await;
    let b = create_key(&k).await;
    ok(
        &k,
        "CreateAlias",
        &[("AliasName", "alias/app"), ("KeyId", &a)],
    )
    .await;
    assert_error(
        &call(
            &k,
            "CreateAlias",
            &[("AliasName", "alias/app"), ("KeyId", &b)],
        )
        .await,
        409,
        "Rejected.ResourceExist",
    );
    let d = ok(&k, "DescribeKey", &[("KeyId", "alias/app")]).await;
    assert_eq!(d["KeyMetadata"]["KeyId"], a.as_str());
    ok(
        &k,
        "UpdateAlias",
        &[("AliasName", "alias/app"), ("KeyId", &b)],
    )
    .await;
    let d = ok(&k, "DescribeKey", &[("KeyId", "alias/app")]).await;
    assert_eq!(d["KeyMetadata"]["KeyId"], b.as_str());
    let l = ok(&k, "ListAliases", &[]).await;
    assert_eq!(l["TotalCount"], 1, "{l}");
    assert_eq!(l["Aliases"]["Alias"][0]["KeyId"], b.as_str());
    ok(&k, "DeleteAlias", &[("AliasName", "alias/app")]).await;
    assert_error(
        &call(&k, "DescribeKey", &[("KeyId", "alias/app")]).await,
        404,
        "Forbidden.AliasNotFound",
    );
    assert_error(
        &call(&k, "DeleteAlias", &[("AliasName", "alias/app")]).await,
        404,
        "Forbidden.AliasNotFound",
    );
    // the store keeps the change: the alias is free again
    ok(
        &k,
        "CreateAlias",
        &[("AliasName", "alias/app"), ("KeyId", &a)],
    )
    .await;
    assert_eq!(k.app.store.describe("app").unwrap().key_id.to_string(), a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_api_refuses_unknown_client_keys_in_protobuf() {
    use sha2::Digest;
    let k = start_kms(&[]).await;
    let body = b"\x0a\x03abc";
    let hash = hex::encode_upper(sha2::Sha256::digest(body));
    let date = sealgate::kms::alibaba::instance::format_http_date(now()).unwrap();
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("accept", "application/x-protobuf"),
        ("date", date.as_str()),
        ("content-sha256", hash.as_str()),
        ("x-kms-apiversion", "dkms-gcs-0.2"),
        ("x-kms-apiname", "AdvanceEncrypt"),
        ("x-kms-signaturemethod", "RSA_PKCS1_SHA_256"),
        ("x-kms-acccesskeyid", "KAAP.nobody"),
        ("authorization", "Bearer AAAA"),
    ];
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/", k.host()));
    let req = headers
        .iter()
        .fold(req, |r, (n, v)| r.header(*n, *v))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
        .unwrap();
    let resp = common::client().request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/x-protobuf"
    );
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    // the instance API's documented answer (its common error codes)
    assert!(text.contains("Unauthorized"), "{text}");
}

// ------------------------------------------------------ asymmetric keys

async fn create_asymmetric(k: &Kms, spec: &str, usage: &str) -> (String, String) {
    let v = ok(k, "CreateKey", &[("KeySpec", spec), ("KeyUsage", usage)]).await;
    let m = &v["KeyMetadata"];
    assert_eq!(
        (m["KeySpec"].as_str(), m["KeyUsage"].as_str()),
        (Some(spec), Some(usage)),
        "{v}"
    );
    let key = m["KeyId"].as_str().unwrap().to_string();
    let kv = m["PrimaryKeyVersion"].as_str().unwrap().to_string();
    assert_eq!(kv, format!("{key}-v1"));
    (key, kv)
}

/// GetPublicKey's PEM, as DER SubjectPublicKeyInfo.
async fn public_key_der(k: &Kms, key: &str, kv: &str) -> Vec<u8> {
    let v = ok(k, "GetPublicKey", &[("KeyId", key), ("KeyVersionId", kv)]).await;
    assert_eq!(
        (v["KeyId"].as_str(), v["KeyVersionId"].as_str()),
        (Some(key), Some(kv)),
        "{v}"
    );
    let pem = v["PublicKey"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(
        pem.trim_end().ends_with("-----END PUBLIC KEY-----"),
        "{pem}"
    );
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(body).unwrap()
}

fn sha256(m: &[u8]) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, m).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_keys_sign_with_digests_checked_against_the_published_key() {
    use aws_lc_rs::signature::{self, UnparsedPublicKey};
    let k = start_kms(&[]).await;
    let msg = b"pay 10 to bob";
    let digest = sha256(msg);

    for (spec, algs) in [
        (
            "RSA_2048",
            vec![
                (
                    "RSA_PSS_SHA_256",
                    &signature::RSA_PSS_2048_8192_SHA256 as &dyn signature::VerificationAlgorithm,
                ),
                ("RSA_PKCS1_SHA_256", &signature::RSA_PKCS1_2048_8192_SHA256),
            ],
        ),
        (
            "RSA_3072",
            vec![
                (
                    "RSA_PSS_SHA_256",
                    &signature::RSA_PSS_2048_8192_SHA256 as &dyn signature::VerificationAlgorithm,
                ),
                ("RSA_PKCS1_SHA_256", &signature::RSA_PKCS1_2048_8192_SHA256),
            ],
        ),
        (
            "EC_P256",
            vec![(
                "ECDSA_SHA_256",
                &signature::ECDSA_P256_SHA256_ASN1 as &dyn signature::VerificationAlgorithm,
            )],
        ),
    ] {
        let (key, kv) = create_asymmetric(&k, spec, "SIGN/VERIFY").await;
        let der = public_key_der(&k, &key, &kv).await;
        for (alg, verifier) in algs {
            let v = ok(
                &k,
                "AsymmetricSign",
                &[
                    ("KeyId", &key),
                    ("KeyVersionId", &kv),
                    ("Algorithm", alg),
                    ("Digest", &digest),
                ],
            )
            .await;
            assert_eq!(
                (v["KeyId"].as_str(), v["KeyVersionId"].as_str()),
                (Some(key.as_str()), Some(kv.as_str()))
            );
            let sig_b64 = v["Value"].as_str().unwrap().to_string();
            let sig = B64.decode(&sig_b64).unwrap();
            // independently: aws-lc-rs against the PEM GetPublicKey gave
            let public = UnparsedPublicKey::new(verifier, &der);
            assert!(public.verify(msg, &sig).is_ok(), "{spec} {alg}");
            assert!(
                public.verify(b"pay 99 to bob", &sig).is_err(),
                "{spec} {alg}"
            );
            // and through AsymmetricVerify
            let verify = |d: String, s: String| {
                let (k, key, kv) = (&k, key.clone(), kv.clone());
                async move {
                    ok(
                        k,
                        "AsymmetricVerify",
                        &[
                            ("KeyId", &key),
                            ("KeyVersionId", &kv),
                            ("Algorithm", alg),
                            ("Digest", &d),
                            ("Value", &s),
                        ],
                    )
                    .await["Value"]
                        .clone()
                }
            };
            assert_eq!(
                verify(digest.clone(), sig_b64.clone()).await,
                Value::Bool(true),
                "{spec} {alg}"
            );
            assert_eq!(
                verify(sha256(b"other"), sig_b64.clone()).await,
                Value::Bool(false)
            );
            let mut bad = sig.clone();
            bad[5] ^= 1;
            assert_eq!(
                verify(digest.clone(), B64.encode(&bad)).await,
                Value::Bool(false)
            );
        }
        // an algorithm of another KeySpec, SM2DSA, a digest of the wrong size
        let (wrong, right) = if spec == "EC_P256" {
            ("RSA_PSS_SHA_256", "ECDSA_SHA_256")
        } else {
            ("ECDSA_SHA_256", "RSA_PKCS1_SHA_256")
        };
        let short = B64.encode([7u8; 20]);
        for (alg, d) in [
            (wrong, digest.as_str()),
            ("SM2DSA", digest.as_str()),
            ("RSA_PSS_SHA_384", digest.as_str()),
            (right, short.as_str()),
            (right, "not base64!"),
        ] {
            assert_error(
                &call(
                    &k,
                    "AsymmetricSign",
                    &[
                        ("KeyId", &key),
                        ("KeyVersionId", &kv),
                        ("Algorithm", alg),
                        ("Digest", d),
                    ],
                )
                .await,
                400,
                "InvalidParameter",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_rsa_keys_encrypt_and_decrypt_with_oaep() {
    use aws_lc_rs::rsa::{
        OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
    };
    let k = start_kms(&[]).await;
    for (spec, max256, max1) in [("RSA_2048", 190usize, 214usize), ("RSA_3072", 318, 342)] {
        let (key, kv) = create_asymmetric(&k, spec, "ENCRYPT/DECRYPT").await;
        let der = public_key_der(&k, &key, &kv).await;
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).unwrap()).unwrap();
        let params = |alg: &'static str, name: &'static str, value: String| {
            vec![
                ("KeyId".to_string(), key.clone()),
                ("KeyVersionId".to_string(), kv.clone()),
                ("Algorithm".to_string(), alg.to_string()),
                (name.to_string(), value),
            ]
        };
        let run = |action: &'static str, p: Vec<(String, String)>| {
            let k = &k;
            async move {
                let refs: Vec<(&str, &str)> =
                    p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                call(k, action, &refs).await
            }
        };
        for (alg, oaep, max) in [
            ("RSAES_OAEP_SHA_256", &OAEP_SHA256_MGF1SHA256, max256),
            ("RSAES_OAEP_SHA_1", &OAEP_SHA1_MGF1SHA1, max1),
        ] {
            // encrypted locally with the published key, decrypted by sealgate
            let secret = vec![0x5au8; max];
            let mut ct = vec![0u8; public.ciphertext_size()];
            let ct = public
                .encrypt(oaep, &secret, &mut ct, None)
                .unwrap()
                .to_vec();
            let (s, v) = run(
                "AsymmetricDecrypt",
                params(alg, "CiphertextBlob", B64.encode(&ct)),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(
                B64.decode(v["Plaintext"].as_str().unwrap()).unwrap(),
                secret,
                "{spec} {alg}"
            );
            assert_eq!(v["KeyVersionId"].as_str(), Some(kv.as_str()));
            // AsymmetricEncrypt → AsymmetricDecrypt
            let (s, v) = run(
                "AsymmetricEncrypt",
                params(alg, "Plaintext", B64.encode(b"hello")),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            let blob = v["CiphertextBlob"].as_str().unwrap().to_string();
            assert_eq!(B64.decode(&blob).unwrap().len(), public.ciphertext_size());
            let (s, v) = run(
                "AsymmetricDecrypt",
                params(alg, "CiphertextBlob", blob.clone()),
            )
            .await;
            assert_eq!(
                (s, B64.decode(v["Plaintext"].as_str().unwrap()).unwrap()),
                (200, b"hello".to_vec())
            );
            // the other OAEP hash does not open it
            let other = if alg == "RSAES_OAEP_SHA_1" {
                "RSAES_OAEP_SHA_256"
            } else {
                "RSAES_OAEP_SHA_1"
            };
            assert_error(
                &run("AsymmetricDecrypt", params(other, "CiphertextBlob", blob)).await,
                400,
                "InvalidCiphertext",
            );
            // one byte over the documented limit
            assert_error(
                &run(
                    "AsymmetricEncrypt",
                    params(alg, "Plaintext", B64.encode(vec![1u8; max + 1])),
                )
                .await,
                400,
                "InvalidParameter",
            );
        }
        let mut dry = params("RSAES_OAEP_SHA_256", "Plaintext", B64.encode(b"x"));
        dry.push(("DryRun".to_string(), "true".to_string()));
        let (s, v) = run("AsymmetricEncrypt", dry).await;
        assert_eq!((s, v["CiphertextBlob"].as_str()), (200, Some("")), "{v}");
        assert_error(
            &run(
                "AsymmetricEncrypt",
                params("SM2PKE", "Plaintext", B64.encode(b"x")),
            )
            .await,
            400,
            "InvalidParameter",
        );
        // a decryption key does not sign; symmetric actions refuse it
        assert_error(
            &call(
                &k,
                "AsymmetricSign",
                &[
                    ("KeyId", &key),
                    ("KeyVersionId", &kv),
                    ("Algorithm", "RSA_PSS_SHA_256"),
                    ("Digest", &sha256(b"m")),
                ],
            )
            .await,
            400,
            "UnsupportedOperation",
        );
        assert_error(
            &call(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", "x")]).await,
            404,
            "Forbidden.OnlySymmetricKeySupported",
        );
        assert_error(
            &call(&k, "GenerateDataKey", &[("KeyId", &key)]).await,
            404,
            "Forbidden.OnlySymmetricKeySupported",
        );
        assert_error(
            &call(
                &k,
                "AdvanceEncrypt",
                &[("KeyId", &key), ("Plaintext", "eA==")],
            )
            .await,
            404,
            "Forbidden.OnlySymmetricKeySupported",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_key_specs_versions_states_and_quotas() {
    // CreateKey is called a dozen times below: its 10/s quota must not decide the test
    let k = start_kms(&[
        ("alibaba:asymmetric-crypto", 1),
        ("alibaba:CreateKey", 1000),
    ])
    .await;
    // specs sealgate cannot hold keep InvalidParameter.KeySpec; EC_P256 signs only
    for spec in ["EC_SM2", "EC_P256K", "RSA_4096"] {
        assert_error(
            &call(&k, "CreateKey", &[("KeySpec", spec)]).await,
            400,
            "InvalidParameter.KeySpec",
        );
        assert_error(
            &call(
                &k,
                "CreateKey",
                &[("KeySpec", spec), ("KeyUsage", "SIGN/VERIFY")],
            )
            .await,
            400,
            "InvalidParameter.KeySpec",
        );
    }
    assert_error(
        &call(&k, "CreateKey", &[("KeySpec", "Aliyun_SM4")]).await,
        400,
        "InvalidParameter.KeySpec",
    );
    assert_error(
        &call(
            &k,
            "CreateKey",
            &[("KeySpec", "EC_P256"), ("KeyUsage", "ENCRYPT/DECRYPT")],
        )
        .await,
        400,
        "InvalidParameter.KeyUsage",
    );
    assert_error(
        &call(
            &k,
            "CreateKey",
            &[
                ("KeySpec", "RSA_2048"),
                ("EnableAutomaticRotation", "true"),
                ("RotationInterval", "30d"),
            ],
        )
        .await,
        400,
        "InvalidParameter",
    );
    // defaults: RSA is ENCRYPT/DECRYPT, EC_P256 SIGN/VERIFY
    let v = ok(&k, "CreateKey", &[("KeySpec", "RSA_3072")]).await;
    assert_eq!(v["KeyMetadata"]["KeyUsage"], "ENCRYPT/DECRYPT");
    let v = ok(&k, "CreateKey", &[("KeySpec", "EC_P256")]).await;
    assert_eq!(v["KeyMetadata"]["KeyUsage"], "SIGN/VERIFY");
    let ec = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let d = ok(&k, "DescribeKey", &[("KeyId", &ec)]).await;
    assert_eq!(
        (
            d["KeyMetadata"]["KeySpec"].as_str(),
            d["KeyMetadata"]["KeyUsage"].as_str()
        ),
        (Some("EC_P256"), Some("SIGN/VERIFY"))
    );

    let (key, kv) = create_asymmetric(&k, "RSA_2048", "SIGN/VERIFY").await;
    let digest = sha256(b"m");
    let sign = |version: String| {
        let (k, key, digest) = (&k, key.clone(), digest.clone());
        async move {
            call(
                k,
                "AsymmetricSign",
                &[
                    ("KeyId", &key),
                    ("KeyVersionId", &version),
                    ("Algorithm", "RSA_PSS_SHA_256"),
                    ("Digest", &digest),
                ],
            )
            .await
        }
    };
    // exactly the key's one version; another version, another key's, none
    let symmetric = create_key(&k).await;
    for other in [
        format!("{key}-v2"),
        format!("{ec}-v1"),
        format!("{key}-v0"),
        "v1".to_string(),
    ] {
        assert_error(
            &call(
                &k,
                "GetPublicKey",
                &[("KeyId", &key), ("KeyVersionId", &other)],
            )
            .await,
            404,
            "Forbidden.KeyVersionNotFound",
        );
    }
    assert_error(
        &call(&k, "GetPublicKey", &[("KeyId", &key)]).await,
        400,
        "MissingParameter",
    );
    assert_error(
        &call(
            &k,
            "GetPublicKey",
            &[
                ("KeyId", &uuid::Uuid::new_v4().to_string()),
                ("KeyVersionId", &kv),
            ],
        )
        .await,
        404,
        "Forbidden.KeyNotFound",
    );
    assert_error(
        &call(
            &k,
            "GetPublicKey",
            &[
                ("KeyId", &symmetric),
                ("KeyVersionId", &format!("{symmetric}-v1")),
            ],
        )
        .await,
        400,
        "UnsupportedOperation",
    );
    // DryRun: checked, not performed
    let v = ok(
        &k,
        "GetPublicKey",
        &[("KeyId", &key), ("KeyVersionId", &kv), ("DryRun", "true")],
    )
    .await;
    assert_eq!(
        (v["KeyVersionId"].as_str(), v["PublicKey"].as_str()),
        (Some(kv.as_str()), Some(""))
    );
    assert_error(
        &call(
            &k,
            "GetPublicKey",
            &[
                ("KeyId", &key),
                ("KeyVersionId", &format!("{key}-v2")),
                ("DryRun", "true"),
            ],
        )
        .await,
        404,
        "Forbidden.KeyVersionNotFound",
    );
    assert_error(
        &call(&k, "CreateKeyVersion", &[("KeyId", &key)]).await,
        404,
        "Forbidden.OnlySymmetricKeySupported",
    );

    // the asymmetric class allows 1/s here: five quick signs cannot all pass,
    // while GetPublicKey (a read) and Encrypt (symmetric) have their own buckets
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = sign(kv.clone()).await;
        if r.0 != 200 {
            assert_error(&r, 429, "Rejected.Throttling");
        }
        statuses.push(r.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    ok(
        &k,
        "GetPublicKey",
        &[("KeyId", &key), ("KeyVersionId", &kv)],
    )
    .await;
    ok(&k, "Encrypt", &[("KeyId", &symmetric), ("Plaintext", "x")]).await;
    let (id2, secret2) = k.credential(None);
    let (s, v) = call_as(
        &k,
        &id2,
        &secret2,
        "AsymmetricSign",
        &[
            ("KeyId", &key),
            ("KeyVersionId", &kv),
            ("Algorithm", "RSA_PSS_SHA_256"),
            ("Digest", &digest),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // a disabled key neither signs nor publishes its key
    ok(&k, "DisableKey", &[("KeyId", &key)]).await;
    assert_error(
        &call(
            &k,
            "GetPublicKey",
            &[("KeyId", &key), ("KeyVersionId", &kv), ("DryRun", "true")],
        )
        .await,
        409,
        "Rejected.Disabled",
    );
    assert_error(
        &call(
            &k,
            "GetPublicKey",
            &[("KeyId", &key), ("KeyVersionId", &kv)],
        )
        .await,
        409,
        "Rejected.Disabled",
    );
    // a key-limited credential does not reach the key
    let (id3, secret3) = k.credential(Some(vec![symmetric.clone()]));
    assert_error(
        &call_as(
            &k,
            &id3,
            &secret3,
            "GetPublicKey",
            &[("KeyId", &ec), ("KeyVersionId", &format!("{ec}-v1"))],
        )
        .await,
        403,
        "Forbidden.RAM",
    );
}

// ----------------------------------------------------------- official SDKs

/// Runs one SDK script with `args`; fails the test, printing its output,
/// if it exits non-zero. Returns its stdout.
async fn run_script(script: &str, args: Vec<String>) -> String {
    let python = sdk_python();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let name = script.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(path)
            .args(&args)
            .output()
            .expect("run the SDK script")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_steps(out: &str, steps: &[&str]) {
    for step in steps {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("\"step\": \"{step}\"")))
            .unwrap_or_else(|| panic!("no step {step:?} in:\n{out}"));
        assert!(line.contains("\"ok\": true"), "{line}");
    }
    assert!(out.contains("\"step\": \"done\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openapi_sdk_walks_a_key_life() {
    let k = start_kms(&[]).await;
    let out = run_script(
        "alibaba_flow.py",
        vec![k.host(), k.id.clone(), k.secret.clone()],
    )
    .await;
    assert_steps(
        &out,
        &[
            "CreateKey",
            "Decrypt with another EncryptionContext",
            "GenerateDataKey",
            "CreateKeyVersion",
            "ListKeyVersions",
            "DescribeKey(after rotation)",
            "Encrypt(initial version after rotation)",
            "Decrypt(after rotation)",
            "UpdateRotationPolicy",
            "wrong AccessKeySecret",
            "CreateKey(RSA_2048 SIGN/VERIFY)",
            "GetPublicKey",
            "AsymmetricSign",
            "AsymmetricSign(verified by cryptography)",
            "AsymmetricVerify",
            "AsymmetricVerify(tampered digest)",
            "CreateKey(RSA_2048 ENCRYPT/DECRYPT)",
            "AsymmetricEncrypt",
            "AsymmetricDecrypt",
            "AsymmetricDecrypt(encrypted by cryptography)",
            "AsymmetricSign(wrong KeyVersionId)",
            "CreateKey(EC_SM2)",
        ],
    );
}

/// Runs one Node SDK flow (tests/sdk/*.mjs) under node with the pinned
/// Node SDKs, then checks that each of `steps` went ok and the flow ended.
async fn run_node_flow(script: &str, args: Vec<String>, steps: &[&str]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let sdk_dir = sdk_node_dir();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(path)
            .arg("--sdk-dir")
            .arg(sdk_dir)
            .args(&args)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    for step in steps.iter().chain(&["done"]) {
        assert!(
            records
                .iter()
                .any(|r| r["step"] == *step && r["ok"] == true),
            "step {step:?} missing or failed in:\n{stdout}"
        );
    }
}

/// Alibaba's official Node SDK (RPC, signature v1): the Python flow's key
/// life, and DescribeRegions, DescribeService, ListAliasesByKeyId and
/// UpdateKeyDescription, which its README demo and common clients call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk_walks_a_key_life_and_its_readme_demo_calls() {
    let k = start_kms(&[]).await;
    run_node_flow(
        "alibaba_flow.mjs",
        vec![k.host(), k.id.clone(), k.secret.clone()],
        &[
            "DescribeRegions",
            "DescribeService",
            "CreateKey",
            "ListKeys",
            "DescribeKey",
            "Encrypt",
            "Decrypt",
            "Decrypt with another EncryptionContext",
            "UpdateKeyDescription",
            "UpdateKeyDescription(empty clears it)",
            "Encrypt refused while disabled",
            "DisableKey and EnableKey",
            "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext",
            "ListAliasesByKeyId",
            "ListAliasesByKeyId(by alias)",
            "UpdateAlias then ListAliasesByKeyId",
            "ListAliases",
            "DeleteAlias",
            "ListAliasesByKeyId(unknown key)",
            "ListAliasesByKeyId(unknown alias)",
            "ListAliasesByKeyId(no KeyId)",
            "UpdateKeyDescription(unknown key)",
            "UpdateKeyDescription(no Description)",
            "CreateKeyVersion",
            "ListKeyVersions",
            "DescribeKeyVersion",
            "Encrypt(initial version after rotation)",
            "UpdateRotationPolicy",
            "ScheduleKeyDeletion and CancelKeyDeletion",
            "CreateKey(RSA_2048 SIGN/VERIFY)",
            "GetPublicKey",
            "AsymmetricSign",
            "AsymmetricSign(verified by node:crypto)",
            "AsymmetricVerify",
            "AsymmetricVerify(tampered digest)",
            "CreateKey(RSA_2048 ENCRYPT/DECRYPT)",
            "AsymmetricEncrypt",
            "AsymmetricDecrypt",
            "AsymmetricDecrypt(encrypted by node:crypto)",
            "CreateKey(EC_SM2)",
            "wrong AccessKeySecret",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_rpc_sdk_advance_encrypts_in_every_mode() {
    let k = start_kms(&[]).await;
    let out = run_script(
        "alibaba_legacy_flow.py",
        vec![k.host(), k.id.clone(), k.secret.clone()],
    )
    .await;
    assert_steps(
        &out,
        &[
            "AdvanceEncrypt AES_GCM ",
            "AdvanceDecrypt AES_GCM ",
            "AdvanceDecrypt wrong Aad refused",
            "AdvanceEncrypt AES_CBC PKCS7_PADDING",
            "AdvanceDecrypt AES_CBC NO_PADDING",
            "AdvanceEncrypt AES_ECB PKCS7_PADDING",
            "AdvanceDecrypt AES_ECB NO_PADDING",
            "AdvanceEncrypt(new primary)",
            "AdvanceDecrypt(old version)",
            "Encrypt(initial version)",
            "AdvanceDecrypt(Encrypt blob)",
            "Decrypt(AdvanceEncrypt blob) refused",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkms_gcs_sdk_uses_the_instance_api_with_a_cli_registered_client_key() {
    use sealgate::cli::credentials::{run_to, CredentialsCommand};
    use sealgate::cli::keys::StoreArgs;

    let k = start_kms(&[]).await;
    let key = create_key(&k).await;
    ok(
        &k,
        "CreateAlias",
        &[("AliasName", "alias/instance"), ("KeyId", &key)],
    )
    .await;
    let keys_dir = k.dir.join("client-key");
    std::fs::create_dir_all(&keys_dir).unwrap();
    let id = "KAAP.sealgate-test-0001";
    let password = "test-password";
    let (key_file, pub_pem) = make_client_key(&keys_dir, id, password);

    // registered through the CLI while the server runs
    let mut out = Vec::new();
    run_to(
        CredentialsCommand::AddClientKey {
            store: StoreArgs {
                data_dir: k.dir.join("data"),
                root_key_file: None,
                store_url: common::store_url_for(&k.dir.join("data")),
                json: false,
            },
            id: id.into(),
            public_key: pub_pem,
        },
        &mut out,
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&out).contains(id));

    for key_ref in [key.clone(), "alias/instance".to_string()] {
        let out = run_script(
            "alibaba_instance_flow.py",
            vec![
                k.host(),
                key_file.display().to_string(),
                password.into(),
                key_ref,
            ],
        )
        .await;
        assert_steps(
            &out,
            &[
                "AdvanceEncrypt AES_GCM ",
                "AdvanceDecrypt AES_GCM ",
                "AdvanceDecrypt wrong Aad refused",
                "AdvanceEncrypt AES_CBC PKCS7_PADDING iv",
                "AdvanceDecrypt AES_ECB NO_PADDING",
                "AdvanceGenerateDataKey",
                "AdvanceDecrypt(data key)",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_keys_applies_filters() {
    let k = start_kms(&[]).await;
    let sym = create_key(&k).await;
    let disabled = create_key(&k).await;
    ok(&k, "DisableKey", &[("KeyId", &disabled)]).await;
    let (rsa, _) = create_asymmetric(&k, "RSA_2048", "SIGN/VERIFY").await;
    ok(
        &k,
        "CreateAlias",
        &[("KeyId", &sym), ("AliasName", "alias/orders")],
    )
    .await;
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v["Keys"]["Key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["KeyId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<String>>()
    };
    let list = |filters: &'static str| {
        let k = &k;
        async move { ok(k, "ListKeys", &[("Filters", filters), ("PageSize", "100")]).await }
    };
    let v = list(r#"[{"Key":"KeyState","Values":["Enabled"]}]"#).await;
    assert_eq!(ids(&v), sorted(vec![&sym, &rsa]));
    assert_eq!(v["TotalCount"], 2, "{v}");
    // two entries of one Key are OR-ed; different Keys are AND-ed
    let v = list(
        r#"[{"Key":"KeyState","Values":["Disabled"]},{"Key":"KeyState","Values":["Enabled"]},{"Key":"KeyUsage","Values":["ENCRYPT/DECRYPT"]}]"#,
    )
    .await;
    assert_eq!(ids(&v), sorted(vec![&sym, &disabled]));
    let v = list(r#"[{"Key":"KeySpec","Values":["RSA_2048","EC_P256"]}]"#).await;
    assert_eq!(ids(&v), vec![rsa.clone()]);
    let v = list(r#"[{"Key":"AliasName","Values":["alias/orders"]}]"#).await;
    assert_eq!(ids(&v), vec![sym.clone()]);
    let filter = format!(r#"[{{"Key":"keyId","Values":["{disabled}"]}}]"#);
    let v = ok(&k, "ListKeys", &[("Filters", &filter)]).await;
    assert_eq!(ids(&v), vec![disabled.clone()]);
    // always-true and never-true properties of this KMS
    let v = list(r#"[{"Key":"ProtectionLevel","Values":["SOFTWARE"]},{"Key":"CreatorType","Values":["User"]}]"#).await;
    assert_eq!(v["TotalCount"], 3, "{v}");
    let v = list(r#"[{"Key":"ProtectionLevel","Values":["HSM"]}]"#).await;
    assert_eq!(v["TotalCount"], 0, "{v}");
    // an entry with no values constrains nothing
    let v = list(r#"[{"Key":"KeyState","Values":[]}]"#).await;
    assert_eq!(v["TotalCount"], 3, "{v}");
    // malformed filters are refused
    for bad in [
        r#"{"Key":"KeyState"}"#,
        r#"[{"Key":"Colour","Values":["red"]}]"#,
        r#"[{"Key":"KeyState","Values":"Enabled"}]"#,
        r#"[{"Key":"KeyState","Values":[1]}]"#,
        r#"[{"Key":"KeyState","Values":["Enabled"],"Extra":1}]"#,
    ] {
        assert_error(
            &call(&k, "ListKeys", &[("Filters", bad)]).await,
            400,
            "InvalidParameter",
        );
    }
    let eleven = format!(
        "[{}]",
        [r#"{"Key":"KeyState","Values":["Enabled"]}"#; 11].join(",")
    );
    assert_error(
        &call(&k, "ListKeys", &[("Filters", &eleven)]).await,
        400,
        "InvalidParameter",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_128_keys_encrypt_and_decrypt() {
    let k = start_kms(&[]).await;
    let v = ok(&k, "CreateKey", &[("KeySpec", "Aliyun_AES_128")]).await;
    assert_eq!(v["KeyMetadata"]["KeySpec"], "Aliyun_AES_128", "{v}");
    let key = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let ctx = r#"{"tenant":"acme"}"#;
    let e = ok(
        &k,
        "Encrypt",
        &[
            ("KeyId", &key),
            ("Plaintext", "4111-1111"),
            ("EncryptionContext", ctx),
        ],
    )
    .await;
    let blob = e["CiphertextBlob"].as_str().unwrap().to_string();
    let d = ok(
        &k,
        "Decrypt",
        &[("CiphertextBlob", &blob), ("EncryptionContext", ctx)],
    )
    .await;
    assert_eq!(d["Plaintext"], "4111-1111");
    // the key's blobs are AES-128-GCM
    let raw = B64.decode(&blob).unwrap();
    let cmk = sealgate::keys::blob::blob_cmk(&raw).unwrap();
    assert_eq!(
        k.app.store.blob_cipher(&cmk),
        sealgate::keys::blob::BlobCipher::Aes128Gcm
    );
    // Aliyun_AES_192 stays unserved
    assert_error(
        &call(&k, "CreateKey", &[("KeySpec", "Aliyun_AES_192")]).await,
        400,
        "InvalidParameter.KeySpec",
    );
}

/// The KeyVersionId an AdvanceEncrypt blob's header names
/// ("SGA1" | alg | padding | len + KeyId | len + KeyVersionId | …).
fn advance_blob_version(blob_b64: &str) -> String {
    let b = B64.decode(blob_b64).unwrap();
    assert_eq!(&b[..4], b"SGA1");
    let kl = b[6] as usize;
    let at = 7 + kl;
    let vl = b[at] as usize;
    String::from_utf8(b[at + 1..at + 1 + vl].to_vec()).unwrap()
}

/// The CMK version a store blob (Encrypt's CiphertextBlob) names.
fn store_blob_version(blob_b64: &str) -> u32 {
    let blob = B64.decode(blob_b64).unwrap();
    sealgate::keys::blob::blob_cmk(&blob).unwrap().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_key_version_makes_a_new_primary_that_new_ciphertexts_name() {
    let k = start_kms(&[]).await;
    let key = create_key(&k).await;
    let pt = B64.encode(b"before");
    let primary = |d: &Value| {
        d["KeyMetadata"]["PrimaryKeyVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v1 = primary(&ok(&k, "DescribeKey", &[("KeyId", &key)]).await);
    let a1 = ok(&k, "AdvanceEncrypt", &[("KeyId", &key), ("Plaintext", &pt)]).await;
    let e1 = ok(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", "old")]).await;
    let a1_blob = a1["CiphertextBlob"].as_str().unwrap().to_string();
    let e1_blob = e1["CiphertextBlob"].as_str().unwrap().to_string();
    assert_eq!(advance_blob_version(&a1_blob), v1);
    assert_eq!(store_blob_version(&e1_blob), 1);

    let rotated = ok(&k, "CreateKeyVersion", &[("KeyId", &key)]).await;
    let v2 = rotated["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v1, v2);

    // DescribeKey, ListKeyVersions and DescribeKeyVersion all see it.
    assert_eq!(
        primary(&ok(&k, "DescribeKey", &[("KeyId", &key)]).await),
        v2
    );
    let l = ok(&k, "ListKeyVersions", &[("KeyId", &key)]).await;
    assert_eq!(l["TotalCount"], 2, "{l}");
    let ids: Vec<&str> = l["KeyVersions"]["KeyVersion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["KeyVersionId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&v1.as_str()) && ids.contains(&v2.as_str()),
        "{l}"
    );
    let d = ok(
        &k,
        "DescribeKeyVersion",
        &[("KeyId", &key), ("KeyVersionId", &v2)],
    )
    .await;
    assert_eq!(d["KeyVersion"]["KeyVersionId"], v2.as_str());

    // AdvanceEncrypt seals under the new primary (read from the blob itself);
    // Encrypt keeps the initial version, as documented (docs/kms-alibaba.md).
    let a2 = ok(&k, "AdvanceEncrypt", &[("KeyId", &key), ("Plaintext", &pt)]).await;
    let a2_blob = a2["CiphertextBlob"].as_str().unwrap().to_string();
    assert_eq!(
        advance_blob_version(&a2_blob),
        v2,
        "new primary in the blob"
    );
    let e2 = ok(&k, "Encrypt", &[("KeyId", &key), ("Plaintext", "old")]).await;
    assert_eq!(
        store_blob_version(e2["CiphertextBlob"].as_str().unwrap()),
        1
    );

    // What was sealed before the rotation still opens.
    let d = ok(&k, "AdvanceDecrypt", &[("CiphertextBlob", &a1_blob)]).await;
    assert_eq!(
        (d["Plaintext"].as_str(), d["KeyVersionId"].as_str()),
        (Some(pt.as_str()), Some(v1.as_str()))
    );
    let d = ok(&k, "Decrypt", &[("CiphertextBlob", &e1_blob)]).await;
    assert_eq!(d["Plaintext"], "old");
    let d = ok(&k, "AdvanceDecrypt", &[("CiphertextBlob", &a2_blob)]).await;
    assert_eq!(d["KeyVersionId"], v2.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_name_the_credential_action_key_and_code() {
    let k = start_audited_kms_fixture().await;
    let key = create_key(&k).await;
    let other = create_key(&k).await;
    ok(
        &k,
        "CreateAlias",
        &[("KeyId", &key), ("AliasName", "alias/audited")],
    )
    .await;
    let blob = ok(
        &k,
        "Encrypt",
        &[("KeyId", "alias/audited"), ("Plaintext", "audit me")],
    )
    .await["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&k, "Decrypt", &[("CiphertextBlob", &blob)]).await;
    let (lim, lim_secret) = k.credential(Some(vec![key.clone()]));
    let refused = call_as(&k, &lim, &lim_secret, "DisableKey", &[("KeyId", &other)]).await;
    assert_error(&refused, 403, "Forbidden.RAM");
    let forged = call_as(
        &k,
        &k.id,
        "not-the-secret",
        "DisableKey",
        &[("KeyId", &key)],
    )
    .await;
    assert_error(&forged, 400, "SignatureDoesNotMatch");
    let id = k.id.clone();
    let records = k.kms_audit_records().await;
    let find = |action: &str, caller: Option<&str>| {
        records
            .iter()
            .find(|r| r["action"] == action && r["caller"].as_str() == caller)
            .unwrap_or_else(|| panic!("no {action} by {caller:?} in {records:#?}"))
    };
    // the alias resolved to its KeyId; Decrypt's key comes from the blob
    for action in ["kms.alibaba.Encrypt", "kms.alibaba.Decrypt"] {
        let r = find(action, Some(&id));
        assert_eq!(
            (&r["key_id"], &r["result"]),
            (&Value::from(key.clone()), &Value::from("ok"))
        );
        assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "kms.alibaba.CreateKey" && r["key_id"] == other.as_str()),
        "CreateKey names the key it made: {records:#?}"
    );
    let r = find("kms.alibaba.DisableKey", Some(&lim));
    assert_eq!(
        r["key_id"],
        other.as_str(),
        "the key asked for, though refused"
    );
    assert_eq!(r["result"], "Forbidden.RAM");
    let r = find("kms.alibaba.unknown", None);
    assert_eq!(r["result"], "SignatureDoesNotMatch");
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("audit me") && !text.contains(&blob));
}
